#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need when it is missing,
# then runs formatting and lint checks, unit tests and the end-to-end tests (real servers,
# real sockets). Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/freshet-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

apt_packages=()
command -v psql >/dev/null 2>&1 || apt_packages+=(postgresql-client)
command -v curl >/dev/null 2>&1 || apt_packages+=(curl)
command -v clang >/dev/null 2>&1 || apt_packages+=(clang)
# MySQL CDC tests start their own throwaway MariaDB servers from these binaries.
{ command -v mariadbd || [ -x /usr/sbin/mariadbd ]; } >/dev/null 2>&1 || apt_packages+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || apt_packages+=(mariadb-client)
# PostgreSQL CDC tests start their own throwaway PostgreSQL servers (wal_level=logical).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_packages+=(postgresql)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || apt_packages+=(libclang-dev)
if ((${#apt_packages[@]})); then
  echo "installing: ${apt_packages[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -o DPkg::Lock::Timeout=600 -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${apt_packages[@]}"
fi
if ! python3 -c "import psycopg" >/dev/null 2>&1; then
  echo "installing: psycopg"
  python3 -m pip install -q "psycopg[binary]>=3.1"
fi

cargo fmt --check
cargo clippy --all-targets -q -- -D warnings
cargo test -q
