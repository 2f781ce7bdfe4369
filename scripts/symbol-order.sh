#!/usr/bin/env bash
# Rewrites link/symbol-order.txt, the order in which release builds link the server's
# functions (see build.rs and docs/architecture.md, "Release binary: code layout"): runs
# every Nexmark query (the bench, a small event count) with the server under callgrind, once
# for the views alone and once more with the DataFusion baseline and the default log level,
# then lists the functions of the binary that ran, those every view run ran first. Run it
# again when the code has changed a lot: a function the file does not name is laid out with
# the code that never runs.
# Usage: scripts/symbol-order.sh (needs valgrind; FRESHET_BENCH_EVENTS, default 50000).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/freshet-bench}"
command -v valgrind >/dev/null || { echo "symbol-order.sh needs valgrind" >&2; exit 1; }
profiles=$(mktemp -d)
trap 'rm -rf "$profiles"' EXIT
mkdir "$profiles/views" "$profiles/extra"
wrapper="valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file"
events="${FRESHET_BENCH_EVENTS:-50000}"
# The views alone, one server (so one profile) per query: what each query's server runs.
FRESHET_BENCH_EVENTS="$events" FRESHET_BENCH_BASELINE=0 \
  FRESHET_BENCH_SERVER_WRAPPER="$wrapper=$profiles/views/callgrind.%p" cargo bench --bench nexmark
# Then the rest a server runs: the baseline's ad-hoc queries over stored tables, and logging
# at `info`, the default filter (a line per start, listener and statement error; the bench's
# servers log at `warn`).
FRESHET_BENCH_EVENTS="$events" \
  FRESHET_BENCH_SERVER_WRAPPER="env -u RUST_LOG $wrapper=$profiles/extra/callgrind.%p" cargo bench --bench nexmark
# Names of the previous list that still exist and did not run this time are kept, after.
cp link/symbol-order.txt "$profiles/previous"
python3 scripts/symbol_order.py "$CARGO_TARGET_DIR/release/freshet" --keep "$profiles/previous" \
  --views "$profiles"/views/callgrind.* --extra "$profiles"/extra/callgrind.* > link/symbol-order.txt
echo "link/symbol-order.txt: $(wc -l < link/symbol-order.txt) functions"
