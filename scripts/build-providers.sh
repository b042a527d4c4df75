#!/usr/bin/env bash
# LatchGate copy of the shared, tested recipe (../shared/tools/build-providers.sh),
# unchanged but for this header. Placing and pinning the modules is
# scripts/providers.sh's job (make providers / make providers-check).
# build-providers.sh — build every cdylib crate of a Cargo workspace to WebAssembly
# using Debian bookworm's rustc-web (1.96) + rust-web-src + -Zbuild-std.
# No rustup target / rust-std download is needed: std is compiled from
# /usr/lib/rustlib/src/rust/library (package rust-web-src); std's own crate
# deps (libc, dlmalloc, hashbrown, ...) come from crates.io.
#
# usage: build-providers.sh [WORKSPACE_DIR] [OUT_DIR]
#   WORKSPACE_DIR  Cargo workspace holding provider crates (default: providers)
#   OUT_DIR        where <package>.wasm files are copied (default: WORKSPACE_DIR/dist)
# env:
#   CORE_TARGET       target for raw core-module providers       (default wasm32-unknown-unknown; or wasm32-wasip1)
#   COMPONENT_TARGET  target for WIT component providers         (default wasm32-unknown-unknown; or wasm32-wasip2)
#   SKIP_APT=1        do not apt-get install (packages already there)
#   TOOLS_DIR         where wasm-component-ld is cargo-installed (default: WORKSPACE_DIR/target/tools)
#   WASM_COMPONENT_LD_VERSION  (default 0.5.31)
#   PROFILE           cargo profile (default release)
#
# A crate is a "component" provider if it depends on wit-bindgen (linked with
# wasm-component-ld), otherwise a raw core-module provider (linked with wasm-ld).
# The two kinds use separate target dirs so their std builds don't thrash.
set -euo pipefail

WS=$(cd "${1:-providers}" && pwd)
OUT=${2:-$WS/dist}
CORE_TARGET=${CORE_TARGET:-wasm32-unknown-unknown}
COMPONENT_TARGET=${COMPONENT_TARGET:-wasm32-unknown-unknown}
PROFILE=${PROFILE:-release}
TOOLS_DIR=${TOOLS_DIR:-$WS/target/tools}
WCL_VERSION=${WASM_COMPONENT_LD_VERSION:-0.5.31}

log() { printf '[build-providers] %s\n' "$*" >&2; }

# ---- 1. Debian toolchain -------------------------------------------------
pkgs=(rustc-web cargo-web rust-web-src)
case "$CORE_TARGET $COMPONENT_TARGET" in *wasi*) pkgs+=(wasi-libc) ;; esac
if [ "${SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# Always use Debian's compiler explicitly: rustup's proxies (~/.cargo/bin) usually come
# first in PATH, and /usr/bin/cargo would otherwise pick rustup's rustc (no rust-src -> error).
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
CARGO=/usr/bin/cargo
export RUSTC_BOOTSTRAP=1          # unlock -Z flags on the stable Debian compiler/cargo
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS   # would override the per-target flags set below

rel=$($RUSTC -vV | sed -n 's/^release: //p')
llvm=$($RUSTC -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
src=$(readlink -f "$($RUSTC --print sysroot)/lib/rustlib/src/rust")
[ -f "$src/library/Cargo.lock" ] || { echo "rust-web-src missing: $src/library" >&2; exit 1; }
case "$src" in *"$rel"*) ;; *) echo "rustc $rel does not match std sources $src" >&2; exit 1 ;; esac

# wasm linker = lld matching rustc's LLVM (rustc-web 1.96 -> LLVM 22 -> lld-22)
WASM_LD=/usr/lib/llvm-$llvm/bin/wasm-ld
if [ ! -x "$WASM_LD" ]; then
  if [ "${SKIP_APT:-0}" != 1 ]; then
    log "apt-get install lld-$llvm"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "lld-$llvm" >/dev/null
  fi
fi
[ -x "$WASM_LD" ] || { echo "no $WASM_LD (apt-get install lld-$llvm)" >&2; exit 1; }
log "rustc $rel (LLVM $llvm), std src $src, linker $WASM_LD"

# ---- 2. classify workspace members ---------------------------------------
read -r -d '' PY <<'EOF' || true
import json, sys
m = json.load(sys.stdin)
members = set(m["workspace_members"])
for p in m["packages"]:
    if p["id"] not in members: continue
    if not any("cdylib" in t["crate_types"] for t in p["targets"]): continue
    kind = "component" if any(d["name"] == "wit-bindgen" for d in p["dependencies"]) else "core"
    lib = next(t["name"] for t in p["targets"] if "cdylib" in t["crate_types"])
    print(kind, p["name"], lib.replace("-", "_"))
EOF
mapfile -t crates < <(cd "$WS" && $CARGO metadata --no-deps --format-version 1 | python3 -c "$PY")
[ ${#crates[@]} -gt 0 ] || { echo "no cdylib crates in $WS" >&2; exit 1; }

lock=(); [ -f "$WS/Cargo.lock" ] && lock=(--locked)
mkdir -p "$OUT"

build_group() {  # kind target linker [rustflags...]
  local kind=$1 target=$2 linker=$3; shift 3
  local pk=() libs=() c k n l
  for c in "${crates[@]}"; do
    read -r k n l <<<"$c"
    [ "$k" = "$kind" ] && pk+=(-p "$n") && libs+=("$n:$l")
  done
  [ ${#pk[@]} -gt 0 ] || return 0
  local tvar; tvar=$(echo "$target" | tr 'a-z-' 'A-Z_')
  local tdir="$WS/target/wasm-$kind"
  log "building $kind providers (${pk[*]}) for $target"
  local t0=$SECONDS
  ( cd "$WS" && env "CARGO_TARGET_${tvar}_LINKER=$linker" \
      "CARGO_TARGET_${tvar}_RUSTFLAGS=$*" \
      $CARGO build "${lock[@]}" --profile "$PROFILE" --target "$target" --target-dir "$tdir" \
      -Zbuild-std=std,panic_abort "${pk[@]}" )
  log "$kind build took $((SECONDS - t0)) s"
  local pdir=$PROFILE; [ "$PROFILE" = dev ] && pdir=debug
  for c in "${libs[@]}"; do
    cp "$tdir/$target/$pdir/${c#*:}.wasm" "$OUT/${c%%:*}.wasm"
    printf '%s\t%s bytes\t%s\tsha256 %s\n' "$OUT/${c%%:*}.wasm" "$(stat -c %s "$OUT/${c%%:*}.wasm")" \
      "$kind/$target" "$(sha256sum < "$OUT/${c%%:*}.wasm" | cut -c1-16)"
  done
}

wasi_flags() { case "$1" in *wasi*) echo "-Clink-self-contained=no -L/usr/lib/wasm32-wasi" ;; esac; }
# strip machine-specific paths from panic locations so the .wasm is the same on every machine
REMAP="--remap-path-prefix=$WS=/ws --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"

# ---- 3. core-module providers (exports alloc/run, imports env.*) ----------
build_group core "$CORE_TARGET" "$WASM_LD" $REMAP $(wasi_flags "$CORE_TARGET")

# ---- 4. WIT component providers (wit-bindgen) -----------------------------
if printf '%s\n' "${crates[@]}" | grep -q '^component '; then
  WCL=$TOOLS_DIR/bin/wasm-component-ld
  if [ ! -x "$WCL" ]; then
    log "cargo install wasm-component-ld@$WCL_VERSION -> $TOOLS_DIR"
    $CARGO install --locked --quiet --root "$TOOLS_DIR" "wasm-component-ld@$WCL_VERSION"
  fi
  build_group component "$COMPONENT_TARGET" "$WCL" \
    "-Clink-arg=--wasm-ld-path=$WASM_LD" $REMAP $(wasi_flags "$COMPONENT_TARGET")
fi
