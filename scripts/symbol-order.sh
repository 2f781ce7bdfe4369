#!/usr/bin/env bash
# Rewrites link/symbol-order.txt, the order in which release builds link the server's
# functions (see build.rs): runs every Nexmark query (the bench, a small event count) with
# the server under callgrind, then lists the functions of the binary that ran, by the
# instructions they executed, most first. Run it again when the code has changed a lot: a
# function the file does not name is laid out with the code that never runs.
# Usage: scripts/symbol-order.sh (needs valgrind; FRESHET_BENCH_EVENTS, default 50000).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/freshet-bench}"
command -v valgrind >/dev/null || { echo "symbol-order.sh needs valgrind" >&2; exit 1; }
profiles=$(mktemp -d)
trap 'rm -rf "$profiles"' EXIT
wrapper="valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file=$profiles/callgrind.%p"
FRESHET_BENCH_EVENTS="${FRESHET_BENCH_EVENTS:-50000}" FRESHET_BENCH_SERVER_WRAPPER="$wrapper" \
  cargo bench --bench nexmark
# The bench's servers log at `warn`; a user's logs at `info` (the default filter, a line per
# start, listener and statement error): one more run, of one query, with the default.
FRESHET_BENCH_EVENTS="${FRESHET_BENCH_EVENTS:-50000}" FRESHET_BENCH_QUERIES=q2 \
  FRESHET_BENCH_SERVER_WRAPPER="env -u RUST_LOG $wrapper" cargo bench --bench nexmark
# Names of the previous list that still exist and did not run this time are kept, after.
cp link/symbol-order.txt "$profiles/previous"
python3 scripts/symbol_order.py "$CARGO_TARGET_DIR/release/freshet" --keep "$profiles/previous" \
  "$profiles"/callgrind.* > link/symbol-order.txt
echo "link/symbol-order.txt: $(wc -l < link/symbol-order.txt) functions"
