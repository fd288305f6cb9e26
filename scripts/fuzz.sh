#!/usr/bin/env bash
# Longer fuzzing of the Wire parsers (`make fuzz`): builds the libFuzzer target Fuzz/WireFuzz
# together with Sources/Wire/*.swift (Wire is standard-library only) with
# -sanitize=fuzzer,address into .build-fuzz/, seeds the corpus with valid packets, and runs it.
#
#   FUZZ_SECONDS=600 scripts/fuzz.sh           # run longer (default 60 s)
#   scripts/fuzz.sh .build-fuzz/artifacts/crash-...   # replay one input (extra args go to libFuzzer)
#
# A crash leaves its input in .build-fuzz/artifacts/; turn it into a test in
# Tests/WireTests/FuzzRegressionTests.swift.
set -euo pipefail
cd "$(dirname "$0")/.."

out=.build-fuzz
bin="$out/wire-fuzz"
mkdir -p "$out/corpus" "$out/artifacts"

# Rebuild only when a source changed.
sources=(Sources/Wire/*.swift Fuzz/WireFuzz/*.swift)
if [ ! -x "$bin" ] || [ -n "$(find "${sources[@]}" -newer "$bin" 2>/dev/null)" ]; then
  echo "fuzz: building $bin"
  swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name WireFuzz \
    "${sources[@]}" -o "$bin"
fi

WIRE_FUZZ_WRITE_SEEDS="$out/corpus" "$bin"

if [ $# -gt 0 ]; then
  exec "$bin" -artifact_prefix="$out/artifacts/" "$@"
fi
exec "$bin" -max_total_time="${FUZZ_SECONDS:-60}" -max_len=1500 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$out/artifacts/" "$out/corpus"
