#!/usr/bin/env bash
# roomcast soak (issue 15): a bounded run of mixed traffic with connection churn against the
# released local server, on loopback only, sampling the server's RSS and open fds.
#
# Starts `roomcast-local` (embedded durable store in a fresh temporary data dir, an HS256 secret
# of 48 random characters passed through the environment, every limit at its production
# default) and runs `roomcast-bench soak` against it (bench/src/soak.rs says what it does):
# by default 400 connections in 40 rooms, 150 messages/s, 2 disconnect+reconnects/s (a quarter
# as new users with new tokens, the rest resuming with `join {since}`), typing, presence, read
# cursors, history pages and HTTP GETs with service tokens. Every 30 s it samples the server;
# the baseline is the end of the warm-up (5 min, at most a quarter of the run).
#
#   bash scripts/soak.sh                        60 minutes (plus about a minute of set-up,
#                                               drain, read-back and teardown)
#   bash scripts/soak.sh --minutes 1            a quick check
#   bash scripts/soak.sh --out DIR              where the results go (default target/soak/<time>)
#   bash scripts/soak.sh --bin-dir DIR          use roomcast-local and roomcast-bench from DIR
#                                               instead of building them (cargo build --release)
#   bash scripts/soak.sh --port 3111            the server's port
#   bash scripts/soak.sh -- --rate 300          anything after -- goes to `roomcast-bench soak`
#
# Writes DIR/timeseries.csv (one row per sample), DIR/summary.json, DIR/summary.md,
# DIR/server.log and DIR/command.txt. Exits non-zero when the verdict fails: RSS at the end more
# than 20 % above the warm-up's end, more fds at the end than after the warm-up (or with no
# clients than before any), a server connection count that differs from the generator's, any
# acknowledged message lost or stored twice, any live delivery lost or duplicated, any message
# unacknowledged, any error, or the server crashing.
#
# SERVER_CPU and GENERATOR_CPU pin the two processes with taskset when set.
set -euo pipefail
cd "$(dirname "$0")/.."

invocation="bash scripts/soak.sh $*"
minutes=60
out=""
bin_dir=""
port=3111
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=${2:?--minutes needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --port) port=${2:?--port needs a value}; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown argument: $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
case "$minutes" in
  '' | *[!0-9.]*) echo "--minutes must be a number" >&2; exit 2 ;;
esac

step() { printf '\n==> %s\n' "$*"; }

if [ -z "$bin_dir" ]; then
  step "build (release): roomcast-local, roomcast-bench"
  cargo build --release --locked -p roomcast-local -p roomcast-bench
  bin_dir="${CARGO_TARGET_DIR:-$PWD/target}/release"
fi
for b in roomcast-local roomcast-bench; do
  if [ ! -x "$bin_dir/$b" ]; then
    echo "$bin_dir/$b is missing" >&2
    exit 2
  fi
done

[ -n "$out" ] || out="target/soak/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "port $port is in use; pick another with --port" >&2
  exit 2
fi

ROOMCAST_JWT_SECRET="soak-$(head -c 36 /dev/urandom | base64 | tr -d '/+=' | head -c 43)"
export ROOMCAST_JWT_SECRET
data_dir=$(mktemp -d "${TMPDIR:-/tmp}/roomcast-soak.XXXXXX")
server_pid=""
# shellcheck disable=SC2317 # run by the EXIT trap, which shellcheck 0.9 does not follow
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$data_dir"
}
trap cleanup EXIT

# taskset execs the program, so $! below is the server's own pid either way.
server_pin=()
generator_pin=()
if [ -n "${SERVER_CPU:-}" ]; then server_pin=(taskset -c "$SERVER_CPU"); fi
if [ -n "${GENERATOR_CPU:-}" ]; then generator_pin=(taskset -c "$GENERATOR_CPU"); fi

{
  echo "$invocation"
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (work tree differs)')"
  echo "started $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores"
} >"$out/command.txt"

step "server: roomcast-local --store embedded on 127.0.0.1:$port (data in $data_dir)"
"${server_pin[@]}" "$bin_dir/roomcast-local" --host 127.0.0.1 --port "$port" \
  --data-dir "$data_dir" --store embedded --log-level warn >"$out/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$out/server.log" >&2
    exit 1
  fi
  sleep 0.05
done
sleep 1
# The pid sampled must be the server itself, not a wrapper.
case "$(readlink "/proc/$server_pid/exe" 2>/dev/null || true)" in
  */roomcast-local) ;;
  *) echo "pid $server_pid is not roomcast-local" >&2; exit 1 ;;
esac

step "soak: $minutes min (progress every 30 s; results in $out)"
status=0
"${generator_pin[@]}" "$bin_dir/roomcast-bench" soak --url "ws://127.0.0.1:$port/" \
  --server-pid "$server_pid" --minutes "$minutes" --data-dir "$data_dir" --out-dir "$out" \
  "${extra[@]}" || status=$?

step "server: stop"
if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "the server died during the run" >&2
  status=1
fi
kill -TERM "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=""
if grep -q 'panicked' "$out/server.log"; then
  echo "the server panicked: see $out/server.log" >&2
  status=1
fi
echo "data dir at the end: $(du -sh "$data_dir" | cut -f1)" | tee -a "$out/command.txt"
if [ "$status" = 0 ]; then
  step "soak passed ($out/summary.md)"
else
  step "soak FAILED with status $status ($out/summary.md)"
fi
exit "$status"
