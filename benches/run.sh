#!/usr/bin/env bash
# Every benchmark, one after the other (release build in $HOME/.cache/freshet-bench, outside
# the clone); each rewrites its own section of BENCHMARKS.md. Usage: benches/run.sh [name ...]
# (default: all). Sizes: see the FRESHET_BENCH_* variables at the top of each benches/*.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/freshet-bench}"
benches=("$@")
if ((${#benches[@]} == 0)); then
  # nexmark also runs the dbsp peer (benches/peer) and writes the side-by-side table; `peer`
  # alone prints the peer's own figures.
  benches=(foundation maintenance mysql_cdc postgres_cdc nexmark)
fi
for b in "${benches[@]}"; do
  echo "=== $b"
  if [ "$b" = peer ]; then
    # The dbsp peer: its own cargo root and target dir (it must not slow Freshet's build).
    (cd benches/peer && CARGO_TARGET_DIR="$HOME/.cache/freshet-peer" cargo run --release)
  else
    cargo bench --bench "$b"
  fi
done
