#!/usr/bin/env bash
# Installs what the project needs on a Debian bookworm machine (as root), only if missing.
#   scripts/install-deps.sh build   compiler, CMake, libraries
#   scripts/install-deps.sh test    build + Node.js + the npm packages of tests/js
#   scripts/install-deps.sh bench   build + wrk, h2load
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-build}

pkgs=(g++ cmake ninja-build ccache pkg-config
      libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
      librocksdb-dev libssl-dev zlib1g-dev libspdlog-dev libfmt-dev libcli11-dev
      libgtest-dev libgmock-dev libbenchmark-dev)
case "$what" in
  test) command -v node >/dev/null 2>&1 || pkgs+=(nodejs npm) ;;
  bench) pkgs+=(wrk nghttp2-client redis-server redis-tools) ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ "$what" = test ]; then
  # The npm packages the integration and real-client suites use, pinned by package-lock.json.
  if [ ! -d tests/js/node_modules/@muxy/extensions-js ] || \
     [ tests/js/package-lock.json -nt tests/js/node_modules/.package-lock.json ]; then
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
