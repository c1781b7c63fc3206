#!/usr/bin/env bash
# The widget's test command (issue 6). Installs what it needs, then:
#   0. checks that the SDK's frame types (widget/src/sdk/generated/frames.ts) are what
#      docs/schema generates, and type-checks the SDK and the React bindings (tsc, strict);
#   1. checks that the committed bundle (widget/dist/, which the local server embeds) is exactly
#      what widget/src builds to, and that the widget stays under its gzipped-size budget;
#   2. runs the SDK's unit tests (node's test runner: backoff, close codes, order/de-duplication,
#      outbox, resume against a scripted socket), and packs the npm package (`roomcast`,
#      `roomcast/react`), installs it in an empty project, imports it and type-checks the README's
#      React snippet against it;
#   3. builds the real roomcast-local binary and runs the browser tests in headless Chromium
#      (Debian's package, driven by playwright-core): visitor and agent in two browser contexts,
#      kill -9 and restart of the server mid-conversation, 360-px and keyboard use, connection
#      rotation before the server's cut-off, history scroll-back; and examples/support-bot
#      (Python 3.11+, its venv made from PyPI) answering in the widget, handing off to the agent
#      console, silent once an agent accepts, with axe-core finding no violation in either UI;
#      reactions and replies between two widget users and from the agent console (live, after a
#      reload, the original deleted); the README's React snippet (two users chatting, one dropped
#      and catching up, history paged back) and every React hook (desk, typing, presence, read
#      state, reactions and replies, unmount and remount), in strict mode.
#
#   bash scripts/widget.sh                 everything
#   bash scripts/widget.sh --screenshots   also write the screenshots to docs/img/
#
# Environment: ROOMCAST_BIN (a roomcast-local binary to test instead of building one),
# CHROMIUM (default /usr/bin/chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

screenshots=0
for arg in "$@"; do
  case "$arg" in
    --screenshots) screenshots=1 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

step "node"
node -e 'const [M] = process.versions.node.split(".").map(Number); if (M < 18) { console.error(`node ${process.version}: 18 or newer is needed`); process.exit(1); } console.log(`node ${process.version}`)'

step "Chromium (Debian's package)"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "Chromium is missing and neither root nor sudo is available to install it" >&2
    exit 1
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
"$CHROMIUM" --version 2>/dev/null | head -n1

step "npm dependencies (esbuild, playwright-core, axe-core, TypeScript, json-schema-to-typescript, tsx, React: exact versions from widget/package-lock.json)"
stamp=widget/node_modules/.roomcast-package-lock.json
if ! cmp -s widget/package-lock.json "$stamp" 2>/dev/null; then
  (cd widget && npm ci --no-audit --no-fund --loglevel=error)
  cp widget/package-lock.json "$stamp"
else
  echo "up to date"
fi

step "SDK types: widget/src/sdk/generated/frames.ts must be what docs/schema generates (json-schema-to-typescript); tsc --noEmit (strict) over the SDK and the React bindings"
(cd widget && npm run --silent check:types && npm run --silent typecheck)

step "bundle: widget/dist must be what widget/src builds to (gzipped sizes below)"
node widget/build.mjs --check

step "SDK unit tests"
(cd widget && npm run --silent test:unit)

step "npm package: npm pack, installed into an empty project, imported through its exports map, the README's React snippet type-checked against it (sizes below)"
(cd widget && npm run --silent test:package)

step "support bot (examples/support-bot): Python 3.11+ and a venv from PyPI"
python3 - <<'PY'
import sys
v = sys.version_info
print(f"python {v.major}.{v.minor}")
sys.exit("python 3.11 or newer is needed" if v < (3, 11) else 0)
PY
bot_venv="${XDG_CACHE_HOME:-$HOME/.cache}/roomcast/support-bot-venv"
bot_requirements=examples/support-bot/requirements.txt
if ! cmp -s "$bot_requirements" "$bot_venv/.requirements" 2>/dev/null; then
  rm -rf "$bot_venv"
  python3 -m venv "$bot_venv"
  "$bot_venv/bin/pip" install --quiet --disable-pip-version-check -r "$bot_requirements"
  cp "$bot_requirements" "$bot_venv/.requirements"
else
  echo "up to date"
fi
export ROOMCAST_SUPPORT_BOT_PYTHON="$bot_venv/bin/python"
"$ROOMCAST_SUPPORT_BOT_PYTHON" -c 'import standardwebhooks'

step "roomcast-local"
if [ -z "${ROOMCAST_BIN:-}" ]; then
  cargo build -p roomcast-local --locked
  ROOMCAST_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/roomcast-local"
fi
export ROOMCAST_BIN
"$ROOMCAST_BIN" --version

step "browser tests (headless Chromium)"
if [ "$screenshots" = 1 ]; then
  export ROOMCAST_SCREENSHOTS="$PWD/docs/img"
fi
(cd widget && node --test --test-concurrency=1 test/browser/)

step "widget suites passed in $(($(date +%s) - started)) s"
