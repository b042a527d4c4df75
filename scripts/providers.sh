#!/usr/bin/env bash
# Build, place and pin the provider modules, or prove that the committed ones
# are what the sources build to.
#
#   scripts/providers.sh build   (make providers)
#       rebuild every crate in providers/ with scripts/build-providers.sh, then
#       builtin providers    -> providers/dist/       pinned in providers/digests.txt
#       test-only fixtures   -> providers/dist-test/  pinned in providers/digests-test.txt
#       (a crate is test-only when its Cargo.toml has
#        [package.metadata.latchgate] test-only = true), and list every manifest
#       whose provider_module_digest no longer matches digests.txt.
#
#   scripts/providers.sh check   (make providers-check, part of make test)
#       rebuild into a temporary directory and fail, naming each file, when a
#       rebuilt module differs from its pin, a committed module differs from its
#       pin, a module is missing, unpinned or in the wrong directory, or a
#       manifest pins another digest than digests.txt.
#
# env: PROVIDERS_DIR (default <repo>/providers), MANIFESTS_DIR (default
# <repo>/manifests), and everything scripts/build-providers.sh reads (SKIP_APT …).
set -euo pipefail

mode=${1:-}
case "$mode" in build | check) ;; *) echo "usage: $0 build|check" >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WS=$(cd "${PROVIDERS_DIR:-$ROOT/providers}" && pwd)
MANIFESTS=${MANIFESTS_DIR:-$ROOT/manifests}
DIST=$WS/dist
DIST_TEST=$WS/dist-test
PINS=$WS/digests.txt
PINS_TEST=$WS/digests-test.txt

log() { printf '[providers] %s\n' "$*" >&2; }
rel() { printf '%s' "${1#"$ROOT"/}"; }
sha() { printf 'sha256:%s' "$(sha256sum < "$1" | cut -d' ' -f1)"; }

stage=$(mktemp -d "${TMPDIR:-/tmp}/latchgate-providers.XXXXXX")
trap 'rm -rf "$stage"' EXIT

t0=$SECONDS
"$ROOT/scripts/build-providers.sh" "$WS" "$stage" >&2
log "rebuilt $(find "$stage" -name '*.wasm' | wc -l) modules in $((SECONDS - t0)) s"

# Package names marked test-only (cdylib file name = package name, see build-providers.sh).
read -r -d '' PY <<'EOF' || true
import json, sys
m = json.load(sys.stdin)
for p in m["packages"]:
    if ((p.get("metadata") or {}).get("latchgate") or {}).get("test-only") is True:
        print(p["name"])
EOF
CARGO_BIN=/usr/bin/cargo; [ -x "$CARGO_BIN" ] || CARGO_BIN=cargo
mapfile -t test_only < <(cd "$WS" && "$CARGO_BIN" metadata --no-deps --format-version 1 | python3 -c "$PY")
is_test_only() { local n; for n in "${test_only[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }

# pin_of FILE.wasm PINS -> the digest pinned for FILE.wasm, or nothing
pin_of() { [ -f "$2" ] && awk -v f="$1" '$1 !~ /^#/ && $2 == f { print $1 }' "$2" || true; }

write_pins() {  # DIR PINS_FILE WHAT
  local dir=$1 out=$2 f
  {
    echo "# sha256 of $(rel "$dir")/*.wasm: $3."
    echo "# Written by \`make providers\`, checked by \`make providers-check\`."
    for f in "$dir"/*.wasm; do [ -e "$f" ] && printf '%s  %s\n' "$(sha "$f")" "${f##*/}"; done
  } > "$out.tmp"
  mv "$out.tmp" "$out"
}

# manifest_pins -> "file provider digest" per manifest
manifest_pins() {
  local m provider digest
  for m in "$MANIFESTS"/*.yaml "$MANIFESTS"/*.yml; do
    [ -e "$m" ] || continue
    provider=$(sed -n 's/^provider:[[:space:]]*\([a-z_0-9]*\).*/\1/p' "$m" | head -n1)
    digest=$(sed -n 's/^provider_module_digest:[[:space:]]*\(sha256:[0-9a-f]*\).*/\1/p' "$m" | head -n1)
    [ -n "$provider" ] && printf '%s %s %s\n' "$m" "$provider" "${digest:-none}"
  done
}

if [ "$mode" = build ]; then
  mkdir -p "$DIST" "$DIST_TEST"
  rm -f "$DIST"/*.wasm "$DIST_TEST"/*.wasm
  for f in "$stage"/*.wasm; do
    name=${f##*/}
    if is_test_only "${name%.wasm}"; then cp "$f" "$DIST_TEST/$name"; else cp "$f" "$DIST/$name"; fi
  done
  write_pins "$DIST" "$PINS" "builtin providers, the only modules a deployment ships"
  write_pins "$DIST_TEST" "$PINS_TEST" "test-only fixtures, never shipped"
  cat "$PINS" "$PINS_TEST" | grep -v '^#' >&2
  stale=0
  while read -r m provider digest; do
    want=$(pin_of "$provider.wasm" "$PINS")
    if [ "$digest" != "$want" ]; then
      log "STALE PIN $(rel "$m"): provider_module_digest $digest, $provider.wasm is now ${want:-unbuilt}"
      stale=1
    fi
  done < <(manifest_pins)
  [ $stale = 0 ] || log "update provider_module_digest in the manifests above (grep -rl <old digest> .)"
  exit 0
fi

# ---- check -----------------------------------------------------------------
failures=()
fail() { failures+=("$*"); }

for f in "$stage"/*.wasm; do
  name=${f##*/}
  if is_test_only "${name%.wasm}"; then dir=$DIST_TEST pins=$PINS_TEST; else dir=$DIST pins=$PINS; fi
  built=$(sha "$f")
  pinned=$(pin_of "$name" "$pins")
  if [ -z "$pinned" ]; then
    fail "$(rel "$dir")/$name: not pinned in $(rel "$pins") (rebuilt: $built)"
  elif [ "$built" != "$pinned" ]; then
    fail "$(rel "$dir")/$name: rebuilt $built, $(rel "$pins") pins $pinned"
  fi
  if [ ! -f "$dir/$name" ]; then
    fail "$(rel "$dir")/$name: missing (run make providers)"
  elif [ "$(sha "$dir/$name")" != "$built" ]; then
    fail "$(rel "$dir")/$name: committed file is $(sha "$dir/$name"), rebuilt $built"
  fi
done
for pins in "$PINS" "$PINS_TEST"; do
  [ -f "$pins" ] || { fail "$(rel "$pins"): missing"; continue; }
  while read -r digest name; do
    [ -f "$stage/$name" ] || fail "$(rel "$pins"): pins $name, which no crate builds"
  done < <(grep -v '^#' "$pins" | grep .)
done
for dir in "$DIST" "$DIST_TEST"; do
  for f in "$dir"/*.wasm; do
    [ -e "$f" ] || continue
    name=${f##*/}
    [ -f "$stage/$name" ] || { fail "$(rel "$f"): no crate builds it"; continue; }
    if [ "$dir" = "$DIST" ] && is_test_only "${name%.wasm}"; then
      fail "$(rel "$f"): test-only fixture in the production dist/"
    fi
  done
done
while read -r m provider digest; do
  want=$(pin_of "$provider.wasm" "$PINS")
  [ "$digest" = "$want" ] || fail "$(rel "$m"): provider_module_digest $digest, $(rel "$PINS") pins ${want:-nothing} for $provider.wasm"
done < <(manifest_pins)

if [ ${#failures[@]} -gt 0 ]; then
  printf '[providers] DIGEST CHECK FAILED: %s\n' "${failures[@]}" >&2
  log "rebuild with \`make providers\` and commit dist/, dist-test/, the digest files and the manifests together"
  exit 1
fi
log "ok: every module rebuilds byte-identical to its pin, every manifest pins the committed module ($((SECONDS - t0)) s)"
