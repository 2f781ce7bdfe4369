#!/usr/bin/env bash
# Builds (release) and starts the Freshet server with the default settings:
# data in ./freshet-data, PostgreSQL protocol on 127.0.0.1:5434, HTTP on 127.0.0.1:8434.
# Extra arguments go to `freshet server` (e.g. --data-dir DIR). Installs the C toolchain
# RocksDB's bindings need (clang, libclang-dev) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/freshet-target}"
if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -o DPkg::Lock::Timeout=600 -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 clang libclang-dev
fi
exec cargo run --release --bin freshet -- server "$@"
