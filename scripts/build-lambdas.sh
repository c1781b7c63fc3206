#!/usr/bin/env bash
# Builds every roomcast Lambda function for the deploy templates:
#   target/lambda/<function>/bootstrap.zip   (connect, disconnect, message, typing, default, http,
#   events, deliver, fanout)
# arm64 (Graviton, provided.al2023), optimized and stripped (the `lambda` profile in Cargo.toml:
# release without debug info, stripped). Both deploy templates deploy these very zips:
# terraform/ reads them (variable artifacts_dir) and infra/template.yaml names them (CodeUri), so
# `sam deploy` uploads the same artifacts Terraform does.
#
# Needs cargo-lambda (pip install cargo-lambda, which brings zig for cross-linking), or set
# ROOMCAST_CARGO_LAMBDA to its path. The first build takes several minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_lambda="${ROOMCAST_CARGO_LAMBDA:-cargo-lambda}"
# cargo-lambda finds zig through the Python beside it (pip's ziglang): put its venv first.
case "$cargo_lambda" in */*) PATH="$(dirname "$cargo_lambda"):$PATH" ;; esac
rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu \
  || rustup target add aarch64-unknown-linux-gnu
"$cargo_lambda" lambda build --profile lambda --arm64 --output-format zip \
  --package roomcast-aws --lambda-dir target/lambda
for f in connect disconnect message typing default http events deliver fanout; do
  ls -l "target/lambda/$f/bootstrap.zip"
done
