#!/usr/bin/env bash
# Fuzz the parsers and the filter engine with cargo-fuzz (libFuzzer + AddressSanitizer).
#   infra/fuzz.sh [SECONDS_PER_TARGET]   (default 300)
# Crashes land in fuzz/artifacts/<target>/; turn each into a test (tests/corpus or a unit test).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-300}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
# cargo fuzz passes -Z flags (sanitizers), which need nightly; this machine has only stable.
export RUSTC_BOOTSTRAP=1
targets=${FUZZ_TARGETS:-parse_event parse_record filter}
for target in $targets; do
  echo "== $target: ${secs}s"
  cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY)' || true
  if ls "artifacts/$target"/crash-* >/dev/null 2>&1; then
    echo "CRASH in $target: see fuzz/artifacts/$target/"; exit 1
  fi
done
echo "no crash"
