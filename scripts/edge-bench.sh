#!/usr/bin/env bash
# The edge build under load (issue 20; method and figures in docs/benchmarks.md, "Edge and the
# raw limit"): the same generator as scripts/bench.sh (`roomcast-bench run`) against
# `wrangler dev` running the production edge bundle (functions/edge: a Worker and one ChatRoom
# Durable Object per room, in workerd on this machine), and, in the same run and at the same
# scale, against roomcast-local with its memory and durable (embedded) stores; then the
# write-loop floor (`roomcast-bench floor`). Two scenarios per server:
#   edge-s1    s1's shape at a scale one workerd takes: connections in rooms of 10, a fixed rate
#   edge-room  one room of 10 (one Durable Object), rate raised until p99 > 50 ms or loss:
#              the per-room throughput
# The edge binds a socket to the room in its URL (/rooms/{room}/ws); the generator puts each
# connection's room into the URL's `{room}`. Results: bench/results/edge/<scenario>-<server>.json,
# bench/results/edge/floor.json and bench/results/edge/summary.md.
#
#   bash scripts/edge-bench.sh            builds the production bundle and release binaries
#   bash scripts/edge-bench.sh --smoke    seconds-long runs on debug binaries and the bundle
#                                         already in functions/edge/build (built if missing);
#                                         fails on any loss, duplicate or error (CI)
#
# Servers are pinned to core 0 and the generator to core 1, as in scripts/bench.sh; the script
# runs in its own scheduler autogroup at nice -10 when it may (root).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/bench-session.sh
source scripts/bench-session.sh

smoke=0
case "$*" in
  "") ;;
  --smoke) smoke=1 ;;
  *) echo "usage: $0 [--smoke]" >&2; exit 2 ;;
esac

START=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$*" "$(($(date +%s) - START))"; }

# ROOT, EDGE, TOOLS, NPM_DIR, WRANGLER; edge_tools, edge_bundle.
# shellcheck source=scripts/edge-build.sh
source scripts/edge-build.sh
edge_env

SECRET="bench-secret-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
SERVER_CPU="${SERVER_CPU:-0}"
GENERATOR_CPU="${GENERATOR_CPU:-1}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PROFILE=release
[ "$smoke" = 1 ] && PROFILE="${BENCH_PROFILE:-debug}"
BIN="$TARGET_DIR/$PROFILE"
RUN=$(mktemp -d "${TMPDIR:-/tmp}/roomcast-edge-bench.XXXXXX")
if [ "$smoke" = 1 ]; then
  RESULTS="$RUN/results"
else
  RESULTS="${RESULTS:-bench/results/edge}"
fi
mkdir -p "$RESULTS"

SERVER_PID=""     # what to stop: roomcast-local, or wrangler's process group leader
SERVER_PIDS=""    # what to measure (comma-separated)
cleanup() {
  stop_server
  rm -rf "$RUN"
}
trap cleanup EXIT

step "tools: wrangler and Node 22, worker-build, wasm-bindgen-cli (cached in ${CACHE:-})"
edge_tools
export WRANGLER_SEND_METRICS=false

if [ "$smoke" = 1 ] && [ -f "$EDGE/build/index.js" ]; then
  step "edge bundle: the one in $EDGE/build (smoke)"
else
  step "edge bundle: production (scripts/edge-build.sh: worker-build --release --no-opt, no features)"
  edge_bundle
fi
# wrangler dev runs from a copy (bundle and wrangler.toml without its [build] step), so a build
# elsewhere in the tree cannot change the bundle under the run.
mkdir -p "$RUN/edge"
cp -r "$EDGE/build" "$RUN/edge/build"
awk '/^\[build\]/ { skip = 1; next } /^\[/ { skip = 0 } !skip' "$EDGE/wrangler.toml" >"$RUN/edge/wrangler.toml"

step "build ($PROFILE): roomcast-local, roomcast-bench"
if [ "$PROFILE" = release ]; then
  cargo build --release --locked -p roomcast-local -p roomcast-bench
else
  cargo build --locked -p roomcast-local -p roomcast-bench
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_health() { # port
  for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health" || true)" = 200 ] && return 0
    sleep 0.1
  done
  echo "no /health on port $1" >&2
  return 1
}

# start_server NAME: edge, roomcast-memory or roomcast-embedded, pinned to SERVER_CPU; sets
# SERVER_PID, SERVER_PIDS and URL.
start_server() {
  local port
  port=$(free_port)
  rm -rf "$RUN/state" && mkdir -p "$RUN/state"
  case "$1" in
    edge)
      # The generator's abuse limits lifted as for roomcast-local below; logs at warn, as
      # RUST_LOG=warn there.
      (
        cd "$RUN/edge"
        XDG_CONFIG_HOME="$RUN/config" CI=true exec setsid taskset -c "$SERVER_CPU" "$WRANGLER" dev \
          --ip 127.0.0.1 --port "$port" --inspector-port "$(free_port)" --persist-to "$RUN/state" \
          --show-interactive-dev-session=false \
          --var "ROOMCAST_JWT_SECRET:$SECRET" --var ROOMCAST_RATE_PER_SEC:1000000 \
          --var ROOMCAST_RATE_BURST:1000000 --var ROOMCAST_MAX_CONNECTIONS_PER_USER:1000 \
          --var ROOMCAST_IDLE_TIMEOUT_SECS:3600 --var ROOMCAST_LOG:warn
      ) >"$RUN/server.log" 2>&1 &
      SERVER_PID=$!
      URL="ws://127.0.0.1:$port/rooms/{room}/ws"
      wait_health "$port" || { tail -40 "$RUN/server.log" >&2; return 1; }
      # setsid gave it a session, and so a scheduler autogroup, of its own: give it this
      # script's priority, which roomcast-local inherits (once it is serving, setsid is done).
      awk '{ print $NF }' /proc/self/autogroup >"/proc/$SERVER_PID/autogroup" 2>/dev/null || true
      # wrangler (node) serves through workerd: the processes measured are its workerd ones.
      SERVER_PIDS=$(ps -o pid=,comm= -g "$SERVER_PID" | awk '$2 == "workerd" { print $1 }' | paste -sd,)
      [ -n "$SERVER_PIDS" ] || { echo "no workerd under wrangler dev" >&2; return 1; }
      ;;
    roomcast-memory | roomcast-embedded)
      RUST_LOG=warn taskset -c "$SERVER_CPU" "$BIN/roomcast-local" --port "$port" \
        --data-dir "$RUN/state" --jwt-secret "$SECRET" --store "${1#roomcast-}" \
        "${ROOMCAST_BENCH_LIMITS[@]}" --max-connections-per-ip 1000000 \
        >"$RUN/server.log" 2>&1 &
      SERVER_PID=$!
      SERVER_PIDS=$SERVER_PID
      URL="ws://127.0.0.1:$port/"
      wait_health "$port"
      ;;
  esac
  sleep 0.5
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  # wrangler dev leads its own process group (setsid): node, esbuild and workerd end with it.
  kill -TERM -- "-$SERVER_PID" 2>/dev/null || kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID="" SERVER_PIDS=""
}

# gen SCENARIO SERVER ARGS...: the generator pinned to GENERATOR_CPU against the running server.
gen() {
  local scenario=$1 server=$2
  shift 2
  taskset -c "$GENERATOR_CPU" "$BIN/roomcast-bench" run --url "$URL" --jwt-secret "$SECRET" \
    --server-pid "$SERVER_PIDS" --label "$scenario-$server" \
    --out "$RESULTS/$scenario-$server.json" "$@"
}

if [ "$smoke" = 1 ]; then
  S1=(--connections 100 --rooms 10 --rates 20 --step-secs 2 --drain-secs 5 --stop-p99-ms 100000 --fail-on-loss)
  ROOM=(--connections 10 --rooms 1 --rates "20,40" --step-secs 2 --drain-secs 5 --stop-p99-ms 100000 --fail-on-loss)
  SERVERS="edge roomcast-embedded"
else
  S1=(--connections "${EDGE_S1_CONNECTIONS:-1000}" --rooms "${EDGE_S1_ROOMS:-100}"
    --rates "${EDGE_S1_RATES:-25,50,100}" --step-secs 10 --drain-secs 5 --stop-p99-ms 100)
  ROOM=(--connections 10 --rooms 1 --rates "${EDGE_ROOM_RATES:-5,10,25,50,100,200,400,700,1000,1500,2000,3000,4000,6000}"
    --step-secs 8 --drain-secs 3 --stop-p99-ms 50)
  SERVERS="${SERVERS:-edge roomcast-memory roomcast-embedded}"
fi

for server in $SERVERS; do
  step "$server: start"
  start_server "$server"
  echo "measuring pids $SERVER_PIDS; $URL"
  step "edge-s1: $server"
  gen edge-s1 "$server" "${S1[@]}"
  # A fresh room object for the per-room run: the same server, another tenant's room.
  step "edge-room: $server"
  gen edge-room "$server" "${ROOM[@]}" --tenant bench-room
  stop_server
done

step "write-loop floor (roomcast-bench floor)"
if [ "$smoke" = 1 ]; then
  taskset -c "$SERVER_CPU,$GENERATOR_CPU" "$BIN/roomcast-bench" floor --connections 50 --secs 0.5 \
    --batches 1,8 --out "$RESULTS/floor.json"
else
  taskset -c "$SERVER_CPU,$GENERATOR_CPU" "$BIN/roomcast-bench" floor --connections 1000 --secs 5 \
    --batches 1,8,64 --out "$RESULTS/floor.json"
fi

step "summary: $RESULTS/summary.md"
{
  echo "| scenario | server | connections | rooms | in/s | delivered/s | lost | dup | acked/sent | p50 | p99 | server CPU | µs CPU per delivery | passed |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for scenario in edge-s1 edge-room; do
    for server in $SERVERS; do
      f="$RESULTS/$scenario-$server.json"
      [ -f "$f" ] || continue
      jq -r --arg sc "$scenario" --arg sv "$server" '
        . as $run | .phases[] |
        "| \($sc) | \($sv) | \($run.connect.connected) | \($run.config.rooms) | \(.sent_per_sec | floor) | \(.delivered_per_sec | floor) | \(.lost) | \(.duplicates) | \(.acked)/\(.sent) | \(.latency.p50_ms * 100 | round / 100) ms | \(.latency.p99_ms * 100 | round / 100) ms | \(if .server_cpu then (.server_cpu * 100 | round | tostring) + " %" else "–" end) | \(if .server_cpu and .delivered_per_sec > 0 then (.server_cpu * 1e6 / .delivered_per_sec * 10 | round / 10 | tostring) else "–" end) | \(.passed) |"' "$f"
    done
  done
} | tee "$RESULTS/summary.md"
echo "edge benchmarks took $(($(date +%s) - START)) s"
