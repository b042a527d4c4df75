#!/usr/bin/env bash
# Install what LatchGate needs from Debian, only what is missing.
#   install-deps.sh build   toolchain and C build deps
#   install-deps.sh test    build deps + the real services tests start (redis, squid)
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
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "[install-deps] apt-get install ${need[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
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
