#!/usr/bin/env bash
# fuzz/run.sh — builds the libFuzzer targets (fuzz/CMakeLists.txt, clang++-14) into build-fuzz/ and
# runs each for SECONDS (default 60). Usage: bash fuzz/run.sh [SECONDS [TARGET...]]
#
# A target reads its committed seeds in fuzz/corpus/<target>/ without changing them; what it finds
# new goes to build-fuzz/corpus/<target>/, which later runs start from. Any crash, sanitizer report,
# uncaught exception other than parity::Error, leak, input slower than 10 s, process above 2 GiB or
# single allocation above 256 MiB (the seeds are KBs, so a parser asking for that much believed a
# length field) is a finding: its input is saved in build-fuzz/findings/<target>/ and named below,
# and the script exits 1 after running every target.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "usage: bash fuzz/run.sh [SECONDS [TARGET...]]" >&2; exit 2; }
shift $(($# > 0 ? 1 : 0))
build="build-fuzz"
cxx=${PARITY_FUZZ_CXX:-clang++-14}

build_start=$SECONDS
cmake -S fuzz -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
cmake --build "$build"
echo "fuzz: built in $((SECONDS - build_start))s"

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets <"$build/targets.txt"

failed=()
for target in "${targets[@]}"; do
  binary=$build/fuzz_$target seeds=fuzz/corpus/$target
  [ -x "$binary" ] || { echo "fuzz: no target '$target' (fuzz/CMakeLists.txt lists them)"; exit 2; }
  [ -d "$seeds" ] || { echo "fuzz: target '$target' has no seed corpus $seeds"; exit 2; }
  corpus=$build/corpus/$target findings=$build/findings/$target log=$build/logs/$target.log
  mkdir -p "$corpus" "$findings" "$build/logs"
  options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256
           -artifact_prefix="$findings/" -print_final_stats=1)
  [ -f "fuzz/fuzz_$target.dict" ] && options+=(-dict="fuzz/fuzz_$target.dict")
  echo "fuzz: $target for ${seconds}s (log $log)"
  status=0
  UBSAN_OPTIONS=print_stacktrace=1 "$binary" "${options[@]}" "$corpus" "$seeds" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  inputs=$(find "$corpus" -type f | wc -l)
  echo "fuzz: $target: ${runs:-?} runs, ${rate:-?} exec/s, $inputs inputs in $corpus, exit status $status"
  if [ "$status" -ne 0 ]; then
    grep -E '^==[0-9]+==|^SUMMARY|runtime error|uncaught exception|what\(\)' "$log" | head -n 20 || true
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    echo "fuzz: FINDING in $target: input ${artifact:-not saved (see $log)}"
    [ -n "$artifact" ] && echo "fuzz: reproduce with $binary $artifact"
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in: ${failed[*]}"
  exit 1
fi
echo "fuzz: no findings (${#targets[@]} targets, ${seconds}s each)"
