#!/usr/bin/env bash
# The one command that runs every roomcast test. It installs what the tests need (the wasm32
# target for the core crate's portability check; from PyPI, each in its own cached venv: moto, a
# DynamoDB and SSM implementation; cargo-lambda; python-hcl2 and PyYAML to read the deploy
# templates; checkov; the SAM CLI with cfn-lint) and runs:
#   1. formatting and clippy (warnings are errors),
#   2. the core crate built for wasm32-unknown-unknown (the edge build's target),
#   3. the deploy templates: checkov on terraform/ and infra/template.yaml (no failed check;
#      skips are inline with their reasons), cfn-lint and `sam validate --lint`,
#   3b. the generated API specs (docs/schema/): AsyncAPI and OpenAPI through the official npm
#      parsers (the workspace tests check the files equal a fresh generation and play
#      docs/protocol.md's example frames through the schemas),
#   4. every test in the workspace: unit tests, the store conformance suites (memory, embedded,
#      DynamoDB on moto), the service tests with a fake clock, the black-box protocol suite over
#      real WebSockets against the real roomcast-local binary (including kill -9 and restart),
#      the process lifecycle tests (SIGTERM, kill -9 under load, slow consumers), the Lambda
#      handlers with API Gateway event fixtures, the suite against the local server on DynamoDB,
#      its core cases against the real function binaries under `cargo lambda watch`, and the
#      consistency test of the deploy templates against the code (functions/aws/tests/deploy.rs),
#   5. the edge build (scripts/edge.sh): the Worker and its Durable Object built offline, store
#      conformance inside a Durable Object, the protocol suite against `wrangler dev`, a restart
#      of wrangler dev under load, a latency measurement,
#   6. the widget: SDK frame types and tsc, bundle check, SDK unit tests, the npm package,
#      real-Chromium browser tests (the React bindings included), and the support
#      bot example (examples/support-bot) driven through the widget and the console
#      (scripts/widget.sh).
# Webhook deliveries in the tests are checked with the official `standardwebhooks` verifier
# (PyPI, its own venv), and the benchmark smoke runs end with the webhook delivery one.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
fi

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/roomcast"
# venv NAME REQUIREMENT...: a venv under the cache holding exactly these requirements (rebuilt
# when the list changes). Each tool gets its own, so their pins cannot clash.
venv() {
  local dir="$CACHE/$1-venv"
  shift
  if [ "$(cat "$dir/.requirements" 2>/dev/null)" != "$*" ]; then
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
    echo "$*" >"$dir/.requirements"
  fi
}

step "DynamoDB, SSM and SQS emulator (moto server from PyPI)"
venv moto 'moto[dynamodb,ssm,sqs]>=5,<6' flask flask-cors
export ROOMCAST_MOTO_BIN="$CACHE/moto-venv/bin/moto_server"
"$ROOMCAST_MOTO_BIN" --help >/dev/null

step "cargo-lambda (from PyPI): runs the function binaries"
venv lambda 'cargo-lambda>=1.8,<2' ziglang
export ROOMCAST_CARGO_LAMBDA="$CACHE/lambda-venv/bin/cargo-lambda"
"$ROOMCAST_CARGO_LAMBDA" lambda --version

step "deploy template tools (from PyPI): python-hcl2 + PyYAML, checkov, SAM CLI + cfn-lint"
venv deploy 'python-hcl2>=8,<9' 'pyyaml>=6,<7'
export ROOMCAST_DEPLOY_PYTHON="$CACHE/deploy-venv/bin/python"
venv checkov 'checkov>=3.2,<4'
venv sam 'aws-sam-cli>=1.150,<2' 'cfn-lint>=1.30,<2'

step "format"
cargo fmt --all -- --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "production builds carry no test support (roomcast-testkit is a dev-dependency only)"
# The Lambda zips (roomcast-aws with its default `lambda` feature) and the local server (with
# and without DynamoDB) must not link the testkit: its conformance suites, harness and process
# and AWS test gear stay out of every shipped artifact. (scripts/edge.sh checks the Worker.)
for target in "roomcast-aws" "roomcast-local" "roomcast-local --features dynamodb"; do
  # shellcheck disable=SC2086 # word splitting of the features is wanted
  if cargo tree --locked -e normal,build -p $target 2>/dev/null | grep -q roomcast-testkit; then
    echo "$target depends on roomcast-testkit outside its dev-dependencies" >&2
    exit 1
  fi
done
echo "no production build depends on roomcast-testkit"

step "core crate for wasm32-unknown-unknown (as the edge build uses it, and with the schema feature)"
cargo check -p roomcast-core --target wasm32-unknown-unknown --locked
cargo check -p roomcast-core --target wasm32-unknown-unknown --locked --features schema

step "deploy templates: checkov (offline), cfn-lint, sam validate --lint"
# --skip-download: no policy or version downloads (this machine has no internet beyond the
# package registries); --quiet lists failed checks only; a failed check fails the run.
"$CACHE/checkov-venv/bin/checkov" --skip-download --quiet --compact --framework terraform -d terraform
"$CACHE/checkov-venv/bin/checkov" --skip-download --quiet --compact --framework cloudformation \
  -f infra/template.yaml
"$CACHE/sam-venv/bin/cfn-lint" infra/template.yaml
SAM_CLI_TELEMETRY=0 "$CACHE/sam-venv/bin/sam" validate --lint --template-file infra/template.yaml

# -- token examples (issue 16): infra/local/tests/backend_tokens.rs runs them; it fails, naming
# these variables, when they are not set.
step "token examples: jsonwebtoken (npm ci, examples/tokens/node), PyJWT (venv)"
(cd examples/tokens/node && npm ci --no-audit --no-fund --loglevel=error)
export ROOMCAST_TOKENS_NODE_DIR="$PWD/examples/tokens/node"
mapfile -t token_requirements < <(grep -Ev '^[[:space:]]*(#|$)' examples/tokens/python/requirements.txt)
venv tokens "${token_requirements[@]}"
export ROOMCAST_TOKENS_PYTHON="$CACHE/tokens-venv/bin/python"
"$ROOMCAST_TOKENS_PYTHON" -c 'import jwt, cryptography'
# -- end token examples

step "webhook signature verifier: the official standardwebhooks (PyPI, venv)"
venv webhooks 'standardwebhooks>=1.0.0,<2'
export ROOMCAST_WEBHOOKS_PYTHON="$CACHE/webhooks-venv/bin/python"
"$ROOMCAST_WEBHOOKS_PYTHON" -c 'import standardwebhooks'

step "API specs (docs/schema): AsyncAPI 3 with @asyncapi/parser, OpenAPI 3.1 with @readme/openapi-parser (npm ci); the workspace tests check they equal a fresh generation from the wire types"
(cd docs/schema/validate && npm ci --no-audit --no-fund --loglevel=error && node validate.mjs)

step "workspace tests"
cargo test --workspace --all-features --locked

step "edge build (Cloudflare Workers) against wrangler dev"
bash scripts/edge.sh

step "edge under load, briefly (scripts/edge-bench.sh --smoke): the load generator against wrangler dev and the local server; fails on loss, duplicates, out-of-order deliveries or errors"
bash scripts/edge-bench.sh --smoke

step "widget: SDK frame types and tsc, bundle, SDK unit tests, the npm package, real-Chromium browser tests (widget, console, React bindings)"
bash scripts/widget.sh

step "fuzz targets, briefly (scripts/fuzz.sh: frame, token, service; 20 s each)"
bash scripts/fuzz.sh

step "benchmark smoke run (scripts/bench.sh --smoke): the load generator, seconds against roomcast, raw-broadcast and the Socket.IO peer; fails on loss, duplicates or errors"
bash scripts/bench.sh --smoke

step "webhook delivery smoke run (scripts/bench-webhooks.sh --smoke): latency and events/s, seconds, against the debug build"
bash scripts/bench-webhooks.sh --smoke

step "attachment benchmark smoke run (docs/benchmarks.md, Attachments): a 5 MiB image uploaded and seen by another member, twice, against the debug build"
cargo run --locked -p roomcast-local --example attachment_bench -- 2

step "support desk benchmark smoke run (docs/benchmarks.md, Support desk): a visitor's first message to the agent's inbox, three visitors, against the debug build"
cargo run --locked -p roomcast-local --example desk_bench -- 3

step "pipelining benchmark smoke run (docs/benchmarks.md, One client pipelining): one client, 200 messages one at a time and pipelined, durable and memory, against the debug build; fails on an ack or a delivery out of order"
cargo run --locked -p roomcast-local --example pipeline_bench -- 200

step "message log restart smoke run (docs/benchmarks.md, Store engines): fills an embedded store with 20,000 messages, reopens it and checks every room's head and one message in a hundred by its key, against the debug build"
cargo run --locked -p roomcast-local --example log_recovery -- 20000

step "AWS fan-out benchmark smoke run (docs/benchmarks.md, AWS fan-out at scale): messages to rooms of 10 and 1,500 through the message handler and the Management API client, the big room split across fanout invocations, twice, against the debug build"
cargo run --locked -p roomcast-aws --example fanout -- --sizes 10,1500 --messages 2

step "store engines (docs/benchmarks.md, Store engines): bench/engines' tests, then scripts/engines.sh --smoke, which fails if any engine loses an acknowledged message after kill -9"
cargo test --release --locked --manifest-path bench/engines/Cargo.toml
bash scripts/engines.sh --smoke

step "all suites passed"
