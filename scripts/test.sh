#!/usr/bin/env bash
# The one command that runs every roomcast test. It installs what the tests need (today: the
# wasm32 target for the core crate's portability check) and runs:
#   1. formatting and clippy (warnings are errors),
#   2. the core crate built for wasm32-unknown-unknown (the edge build's target),
#   3. every test in the workspace: unit tests, the store conformance suites (memory, embedded),
#      the service tests with a fake clock, and the black-box protocol suite over real
#      WebSockets against the real roomcast-local binary (including kill -9 and restart).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
fi

step "format"
cargo fmt --all -- --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "core crate for wasm32-unknown-unknown"
cargo check -p roomcast-core --target wasm32-unknown-unknown --locked

step "workspace tests"
cargo test --workspace --locked

step "all suites passed"
