#!/usr/bin/env bash
# Fuzzes roomcast-core with cargo-fuzz (libFuzzer; needs the nightly toolchain). Targets, in fuzz/:
#   frame    client frame parsing and validation, API Gateway route selection
#   token    JWT verification and claims (hostile claims signed with the verifier's key), $connect
#   service  sequences of client actions from several users and connections against ChatService
#            on the memory stores with a fake clock, checking the protocol's invariants each step
#
#   bash scripts/fuzz.sh                     short mode (CI): 20 s per target
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh    long mode: 10 minutes per target
#   bash scripts/fuzz.sh token service       only these targets
#
# Other knobs: FUZZ_RSS_MB (libFuzzer's -rss_limit_mb and -malloc_limit_mb, default 2048),
# FUZZ_TIMEOUT (seconds one input may take before it counts as a hang, default 10),
# FUZZ_SANITIZER (default `none`: the code under test is safe Rust, where panics, hangs and
# allocations are what libFuzzer finds anyway, and runs ~5x faster without AddressSanitizer;
# `address` adds ASan for the unsafe code in dependencies).
# Seeds live in fuzz/corpus/<target>/ (committed, keep them few); what a run adds goes to
# fuzz/runs/<target>/ (git-ignored); crashes to fuzz/artifacts/<target>/, and the script fails.
# Reproduce one: (cd fuzz && cargo +nightly fuzz run <target> artifacts/<target>/crash-…).
# Each run's final libFuzzer stats (executions, peak RSS) are in fuzz/runs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/roomcast"
FUZZ_TOOLS="$CACHE/cargo-fuzz"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-20}"
RSS_MB="${FUZZ_RSS_MB:-2048}"
TIMEOUT="${FUZZ_TIMEOUT:-10}"
SANITIZER="${FUZZ_SANITIZER:-none}"

if [ ! -x "$FUZZ_TOOLS/bin/cargo-fuzz" ]; then
  cargo install --locked cargo-fuzz --root "$FUZZ_TOOLS"
fi
export PATH="$FUZZ_TOOLS/bin:$PATH"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(frame token service)
fi

# Largest input per target: a whole WebSocket message for frames; past the 8 KB token limit for
# tokens; a few hundred steps for the service.
max_len() {
  case "$1" in
    frame) echo 131072 ;;
    token) echo 16384 ;;
    *) echo 8192 ;;
  esac
}

cd fuzz
for t in "${targets[@]}"; do
  cargo +nightly fuzz build --sanitizer "$SANITIZER" "$t"
done
for t in "${targets[@]}"; do
  printf '\n--> fuzz %s for %s s\n' "$t" "$SECONDS_PER_TARGET"
  mkdir -p "runs/$t"
  extra=()
  if [ -f "$t.dict" ]; then
    extra+=("-dict=$t.dict")
  fi
  cargo +nightly fuzz run --sanitizer "$SANITIZER" "$t" "runs/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb="$RSS_MB" -malloc_limit_mb="$RSS_MB" \
    -timeout="$TIMEOUT" -max_len="$(max_len "$t")" -print_final_stats=1 "${extra[@]}" \
    2>&1 | tee "runs/$t.log" | grep -E '^(#[0-9]+.*(DONE|pulse)|stat::|==[0-9]+==|SUMMARY|thread)' || true
  if ! grep -q '^Done [0-9]* runs' "runs/$t.log"; then
    echo "fuzz target $t failed: see fuzz/runs/$t.log and fuzz/artifacts/$t/" >&2
    exit 1
  fi
  echo "corpus: $(find "runs/$t" -type f | wc -l) generated + $(find "corpus/$t" -type f | wc -l) seeds"
done
