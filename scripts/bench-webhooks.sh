#!/usr/bin/env bash
# Webhook delivery on the local server (issue 17; figures in docs/benchmarks.md): starts the
# release `roomcast-local` (embedded store, webhooks to loopback allowed) on loopback and runs
# `roomcast-bench webhooks` against it (bench/src/webhooks.rs says what it measures): event
# latency from the store to the endpoint (p50/p99/max) at a paced rate, then events per second
# one endpoint receives while messages are stored as fast as acknowledged.
#
#   bash scripts/bench-webhooks.sh                  2,000 paced messages at 200/s, then 5,000
#   bash scripts/bench-webhooks.sh --smoke          200 at 100/s, then 500 (seconds; the debug
#                                                   build; CI)
#   bash scripts/bench-webhooks.sh --bin-dir DIR    use binaries from DIR (no build)
#   bash scripts/bench-webhooks.sh -- --rate 500    anything after -- goes to the generator
#
# Writes bench/results/webhooks-local.json (not with --smoke).
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir=""
smoke=false
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=true; shift ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown argument: $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done

if [ -z "$bin_dir" ]; then
  # Like scripts/bench.sh: the smoke run checks the path, not the speed, so it takes the
  # debug build the tests already made; a measurement takes release.
  if $smoke; then
    cargo build --locked -p roomcast-local -p roomcast-bench
    bin_dir="${CARGO_TARGET_DIR:-$PWD/target}/debug"
  else
    cargo build --release --locked -p roomcast-local -p roomcast-bench
    bin_dir="${CARGO_TARGET_DIR:-$PWD/target}/release"
  fi
fi

ROOMCAST_JWT_SECRET="hooks-$(head -c 36 /dev/urandom | base64 | tr -d '/+=' | head -c 43)"
export ROOMCAST_JWT_SECRET
data_dir=$(mktemp -d "${TMPDIR:-/tmp}/roomcast-hooks.XXXXXX")
log="$data_dir.log"
server_pid=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$data_dir" "$log"
}
trap cleanup EXIT

# Port 0: the server prints the one it bound.
"$bin_dir/roomcast-local" --host 127.0.0.1 --port 0 --data-dir "$data_dir" --store embedded \
  --rate-per-sec 2000 --rate-burst 2000 --webhook-allow-private --log-level warn \
  >"$log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 1 200); do
  port=$(sed -n 's|^roomcast-local listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$log")
  [ -n "$port" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then cat "$log" >&2; exit 1; fi
  sleep 0.05
done
[ -n "$port" ] || { echo "the server printed no address" >&2; cat "$log" >&2; exit 1; }

if $smoke; then
  args=(--messages 200 --rate 100 --burst 500)
else
  mkdir -p bench/results
  args=(--out bench/results/webhooks-local.json)
fi
"$bin_dir/roomcast-bench" webhooks --url "ws://127.0.0.1:$port/" "${args[@]}" "${extra[@]}"
if grep -q 'panicked' "$log"; then
  echo "the server panicked:" >&2
  cat "$log" >&2
  exit 1
fi
