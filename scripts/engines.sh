#!/usr/bin/env bash
# Store engine comparison (issue 20; results in docs/benchmarks.md, "Store engines"):
# roomcast's append workload against redb (today's layout), fjall, SQLite WAL and an
# append-only log, each behind the same group-commit writer thread (bench/engines), and the
# same writer with no engine (memory: the floor, nothing durable).
#
#   bash scripts/engines.sh            the full comparison (about 10 minutes): a markdown table on
#                                      stdout, JSON in bench/results/engines.json
#   bash scripts/engines.sh --smoke    tiny counts (under a minute once built), JSON in
#                                      bench/engines/target/engines-smoke.json; fails if any engine
#                                      loses an acknowledged message after kill -9
#   ENGINES=redb,log bash scripts/engines.sh   some engines only
#
# Its own cargo workspace and target directory (bench/engines/target). The stores are written
# under bench/engines/data (removed after each engine). The machine is shared: compare engines
# within one run; run it as `nice -n 10 bash scripts/engines.sh` to disturb others less.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=()
out=bench/results/engines.json
if [ "${1:-}" = "--smoke" ]; then
  smoke=(--smoke)
  out=bench/engines/target/engines-smoke.json
fi

nice -n 10 cargo build --release --locked --manifest-path bench/engines/Cargo.toml
exec bench/engines/target/release/engine-bench compare "${smoke[@]}" \
  --engines "${ENGINES:-redb,fjall,sqlite,log,memory}" \
  --data-dir bench/engines/data --out "$out"
