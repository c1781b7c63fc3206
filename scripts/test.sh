#!/usr/bin/env bash
# The one command that runs every roomcast test. It installs what the tests need (the wasm32
# target for the core crate's portability check; moto, a DynamoDB implementation, and
# cargo-lambda, from PyPI)
# and runs:
#   1. formatting and clippy (warnings are errors),
#   2. the core crate built for wasm32-unknown-unknown (the edge build's target),
#   3. every test in the workspace: unit tests, the store conformance suites (memory, embedded,
#      DynamoDB on moto), the service tests with a fake clock, the black-box protocol suite over
#      real WebSockets against the real roomcast-local binary (including kill -9 and restart),
#      the process lifecycle tests (SIGTERM, kill -9 under load, slow consumers), the Lambda
#      handlers with API Gateway event fixtures, the suite against the local server on DynamoDB,
#      and its core cases against the real function binaries under `cargo lambda watch`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
fi

step "DynamoDB emulator (moto server from PyPI, in a venv under the user cache)"
MOTO_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/roomcast/moto-venv"
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[dynamodb]>=5,<6' flask flask-cors
fi
export ROOMCAST_MOTO_BIN="$MOTO_VENV/bin/moto_server"
"$ROOMCAST_MOTO_BIN" --help >/dev/null

step "cargo-lambda (from PyPI, in a venv under the user cache): runs the function binaries"
LAMBDA_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/roomcast/lambda-venv"
if [ ! -x "$LAMBDA_VENV/bin/cargo-lambda" ]; then
  python3 -m venv "$LAMBDA_VENV"
  "$LAMBDA_VENV/bin/pip" install --quiet --disable-pip-version-check 'cargo-lambda>=1.8,<2' ziglang
fi
export ROOMCAST_CARGO_LAMBDA="$LAMBDA_VENV/bin/cargo-lambda"
"$ROOMCAST_CARGO_LAMBDA" lambda --version

step "format"
cargo fmt --all -- --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "core crate for wasm32-unknown-unknown"
cargo check -p roomcast-core --target wasm32-unknown-unknown --locked

step "workspace tests"
cargo test --workspace --all-features --locked

step "all suites passed"
