#!/usr/bin/env bash
# The edge build's test command (functions/edge: a Cloudflare Worker and one ChatRoom Durable
# Object per room). Offline apart from the package registries; everything it installs is cached
# under ${XDG_CACHE_HOME:-$HOME/.cache}/roomcast, so a warm run only builds and tests:
#   1. tools (scripts/edge-build.sh, sourced: the same set-up and build command as wrangler.toml's
#      [build]): the wasm32 target; worker-build and the wasm-bindgen CLI matching the crate's
#      Cargo.lock (crates.io, `cargo install`); wrangler with workerd and esbuild, and a Node 22
#      for it (npm, pinned by functions/edge/package-lock.json),
#   2. format, clippy for wasm32 with and without the `dev` feature (warnings are errors), the
#      unit tests of the crate's pure modules on the host, and a check that the production
#      dependency graph (no features) holds no test code (roomcast-testkit),
#   3. the deployable bundle: `wrangler deploy --dry-run --outdir` (no network, no Cloudflare
#      login), which runs wrangler.toml's [build] (scripts/edge-build.sh: `worker-build --release
#      --no-opt`, no features) and bundles what a deploy would upload; its sizes (wasm and JS,
#      total and gzipped), and a check that it holds no dev-only code; the teardown (the stub
#      Worker in functions/edge/teardown with its `deleted_classes` migration, `wrangler
#      delete`) dry-run the same way,
#   4. the bundle with the `dev` feature (the conformance route the tests use): the same command
#      with `--features dev`, and its gzipped size,
#   5. against `wrangler dev` (tests/tests/edge.rs), on that bundle (ROOMCAST_EDGE_KEEP_BUNDLE=1:
#      wrangler's [build] keeps it): the store conformance suites inside a
#      Durable Object, every protocol suite case that applies to the edge build, the limits
#      cases (rate limit, idle and maximum-age closes by alarms), a SIGKILL of wrangler dev under
#      load that must lose no acknowledged message, the fault cases (`edge_fault_*`, through the
#      dev build's `POST /__dev/fault`: the object reset in the middle of a fan-out, a SQLite
#      error inside an append, the alarm handler run twice; each must lose no acknowledged
#      message, duplicate none, and let clients resume with `join {since}`), the integration
#      events cases (webhooks to loopback receivers, a SIGKILL between the ack and the delivery),
#      the attachments cases (R2 as wrangler dev simulates it, the Worker's signed byte routes,
#      the alarm's sweep of abandoned uploads), and the latency measurements (acks and fan-out; store to webhook).
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)

step() { printf '\n==> %s (%ss)\n' "$*" "$(($(date +%s) - START))"; }

# ROOT, EDGE, CACHE, TOOLS, NPM_DIR, EDGE_TARGET (the edge crate's own target directory, kept
# between runs; the host test harness builds in the workspace's usual one), WRANGLER; edge_cargo,
# edge_tools, edge_bundle.
# shellcheck source=scripts/edge-build.sh
source scripts/edge-build.sh
edge_env

step "toolchain, worker-build, wasm-bindgen-cli, wrangler and Node 22 (cached in $CACHE)"
cargo --version
edge_tools
export WRANGLER_SEND_METRICS=false
echo "node $(node --version), wrangler $("$WRANGLER" --version 2>/dev/null | tail -1)"

step "format and clippy (edge crate, wasm32, without and with the dev feature; warnings are errors)"
edge_cargo fmt --manifest-path "$EDGE/Cargo.toml" -- --check
for features in "" dev; do
  edge_cargo clippy --manifest-path "$EDGE/Cargo.toml" --target wasm32-unknown-unknown --all-targets \
    --locked --features "$features" -- -D warnings
done

step "no test code in the production build's dependencies"
# The bundle deployed (no features) must not link roomcast-testkit: the conformance suites come
# with the `dev` feature only (the crate's unit tests use it as a dev-dependency, which
# `-e normal,build` leaves out). With the feature it must be there, so the check below cannot
# pass by looking at the wrong graph.
edge_tree() {
  edge_cargo tree --manifest-path "$EDGE/Cargo.toml" --target wasm32-unknown-unknown \
    -e normal,build --prefix none --locked "$@"
}
dev_tree=$(edge_tree --features dev)
grep -q '^roomcast-testkit ' <<<"$dev_tree" || { echo "roomcast-testkit not found with --features dev" >&2; exit 1; }
production_tree=$(edge_tree)
if grep -q '^roomcast-testkit ' <<<"$production_tree"; then
  echo "roomcast-testkit is in the production dependency graph of the edge build" >&2
  exit 1
fi
echo "roomcast-testkit: not a dependency of the production build"

step "unit tests of the edge crate's pure modules (host)"
edge_cargo test --manifest-path "$EDGE/Cargo.toml" --lib --locked --quiet

# Strings only the `dev` feature compiles in (panic locations in the testkit and src/dev.rs).
DEV_ONLY='testkit/src/\|src/dev\.rs'
# Prints a bundle's sizes and fails over the Workers free plan's 3 MB (gzipped) limit.
bundle_sizes() { # label wasm js
  local wasm_bytes js_bytes wasm_gz js_gz total_gz
  wasm_bytes=$(wc -c <"$2") js_bytes=$(wc -c <"$3")
  wasm_gz=$(gzip -9c "$2" | wc -c) js_gz=$(gzip -9c "$3" | wc -c)
  total_gz=$(cat "$2" "$3" | gzip -9 | wc -c)
  echo "$1: $((wasm_bytes + js_bytes)) bytes (wasm $wasm_bytes, JS $js_bytes); gzip -9 $total_gz bytes (wasm $wasm_gz, JS $js_gz); Workers free plan limit 3 MB gzipped"
  [ "$total_gz" -lt 3000000 ] || { echo "$1 is over the 3 MB limit" >&2; return 1; }
}

step "deployable bundle: wrangler deploy --dry-run (wrangler.toml's [build]: scripts/edge-build.sh, no features; no network, no login)"
DRY_RUN=$(mktemp -d)
trap 'rm -rf "$DRY_RUN"' EXIT
# No credentials and a fresh wrangler config: the dry run must need neither a login nor the
# network. Where this user may make a network namespace, it runs in one with no network at all
# (the crates the build needs were fetched by the clippy runs above, the tools are installed).
OFFLINE=()
if unshare -n true 2>/dev/null; then
  OFFLINE=(unshare -n)
  echo "in a network namespace without network (unshare -n)"
fi
offline_wrangler() {
  (
    cd "$EDGE"
    "${OFFLINE[@]}" env -u CLOUDFLARE_API_TOKEN -u CLOUDFLARE_ACCOUNT_ID -u CLOUDFLARE_API_KEY -u CLOUDFLARE_EMAIL \
      -u WRANGLER_COMMAND -u ROOMCAST_EDGE_KEEP_BUNDLE \
      XDG_CONFIG_HOME="$DRY_RUN/config" CI=true WRANGLER_SEND_METRICS=false \
      "$WRANGLER" "$@"
  )
}
offline_wrangler deploy --dry-run --outdir "$DRY_RUN/out" ||
  { echo "wrangler deploy --dry-run failed: functions/edge cannot be deployed as it is" >&2; exit 1; }
DEPLOY_WASM=$(find "$DRY_RUN/out" -maxdepth 1 -name '*.wasm' | head -1)
if [ -z "$DEPLOY_WASM" ] || [ ! -f "$DRY_RUN/out/index.js" ]; then
  echo "the dry run wrote no index.js and .wasm" >&2
  exit 1
fi
bundle_sizes "deployable bundle (wrangler deploy --dry-run --outdir)" "$DEPLOY_WASM" "$DRY_RUN/out/index.js"
if grep -aq "$DEV_ONLY" "$DEPLOY_WASM"; then
  echo "the deployable bundle holds dev-only code (the \`dev\` feature)" >&2
  exit 1
fi
echo "the deployable bundle holds no dev-only code"
# The teardown docs/deploy.md documents: the stub with the `deleted_classes` migration, then
# `wrangler delete` (both only as far as a dry run goes).
offline_wrangler deploy --dry-run --config teardown/wrangler.toml --outdir "$DRY_RUN/teardown" ||
  { echo "the teardown Worker (functions/edge/teardown) does not pass wrangler deploy --dry-run" >&2; exit 1; }
offline_wrangler delete --dry-run || { echo "wrangler delete --dry-run failed" >&2; exit 1; }

step "bundle with the dev feature (the tests'): scripts/edge-build.sh's worker-build --release --no-opt --features dev"
edge_bundle --features dev
grep -aq "$DEV_ONLY" "$EDGE/build/index_bg.wasm" || { echo "the dev bundle lacks the dev-only code the check above looks for" >&2; exit 1; }
bundle_sizes "dev bundle (worker-build output)" "$EDGE/build/index_bg.wasm" "$EDGE/build/index.js"
# Every `wrangler dev` the tests start runs wrangler.toml's [build]: it keeps this bundle.
export ROOMCAST_EDGE_KEEP_BUNDLE=1

step "protocol suite, store conformance, restart under load and faults against wrangler dev"
export ROOMCAST_EDGE_DIR="$EDGE" ROOMCAST_WRANGLER="$WRANGLER"
cargo test --manifest-path "$ROOT/Cargo.toml" -p roomcast-protocol-tests --test edge --locked \
  -- --skip edge_latency

step "latency under wrangler dev (alone, one at a time, so other cases do not skew it)"
cargo test --manifest-path "$ROOT/Cargo.toml" -p roomcast-protocol-tests --test edge --locked \
  -- --exact edge_latency_of_acks_and_fanout edge_latency_of_webhook_deliveries \
  --test-threads 1 --nocapture

step "edge suites passed"
