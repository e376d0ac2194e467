#!/usr/bin/env bash
# tools/simt_coverage.sh — gcov line coverage of the native GPU kernel sources as the `simt`
# backend executes them: builds the kernel translation units with --coverage (build-cov/), runs
# the simt-labelled tests (conformance at warp 32 and 64, the emulator's own tests), and prints
# per-file and total line coverage of backends/native/ and ops/kernels/. A line counts as
# covered if either warp width executed it. Lines of pk.h that only the CUDA or HIP compilers
# see are not in the simt build at all, so they are listed as compile-only, not as uncovered.
# Fails (exit 1) when the total is below the required percentage, --min or the environment's
# PARITY_SIMT_COVERAGE_MIN (default 99), naming the figure and every line not run.
# Usage: tools/simt_coverage.sh [--min PERCENT] [build-dir]   (needs gcc's gcov and python3)
set -euo pipefail
cd "$(dirname "$0")/.."
min=${PARITY_SIMT_COVERAGE_MIN:-99}
if [ "${1:-}" = "--min" ]; then
  [ $# -ge 2 ] || { echo "usage: $0 [--min PERCENT] [build-dir]" >&2; exit 2; }
  min=$2
  shift 2
fi
[[ $min =~ ^[0-9]+([.][0-9]+)?$ ]] ||
  { echo "$0: the required coverage (--min or PARITY_SIMT_COVERAGE_MIN) must be a percentage, got '$min'" >&2; exit 2; }
build=${1:-build-cov}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPARITY_SIMT_COVERAGE=ON -DPARITY_WITH_HIP=OFF >/dev/null
cmake --build "$build" --target test_conformance test_simt_runtime test_simt_model test_native_half -- -j2
find "$build" -name '*.gcda' -delete
ctest --test-dir "$build" -L simt -j2 --output-on-failure >/dev/null
objdir=$(cd "$(dirname "$(find "$build" -name 'simt_kernels_w32.cpp.o' | head -1)")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for w in 32 64; do
  (mkdir -p "$out/w$w" && cd "$out/w$w" && gcov --json-format "$objdir/simt_kernels_w$w.cpp.o" >/dev/null)
done
python3 - "$out" "$PWD" "$min" <<'PY'
import gzip, json, math, os, sys, glob
out, root, required = sys.argv[1], sys.argv[2], float(sys.argv[3])
lines = {}  # file -> {line: executed}
for path in glob.glob(os.path.join(out, '*', '*.gcov.json.gz')):
    data = json.load(gzip.open(path))
    for f in data['files']:
        name = os.path.relpath(os.path.realpath(os.path.join(data.get('current_working_directory', root), f['file'])), root)
        if not (name.startswith('backends/native/') or name.startswith('ops/kernels/')):
            continue
        d = lines.setdefault(name, {})
        for l in f['lines']:
            d[l['line_number']] = d.get(l['line_number'], False) or l['count'] > 0
total = hit = 0
print('gcov line coverage of the native kernel sources under simt (warp 32 and 64):')
for name in sorted(lines):
    d = lines[name]
    n, h = len(d), sum(d.values())
    total += n; hit += h
    missed = sorted(k for k, v in d.items() if not v)
    print(f'  {name:40s} {h:4d}/{n:<4d} {100.0 * h / max(n, 1):5.1f}%' + (f'   not run: lines {missed}' if missed else ''))
percent = math.floor(10000.0 * hit / max(total, 1)) / 100  # rounded down: 98.999% does not print as 99
print(f'  {"total":40s} {hit:4d}/{total:<4d} {percent:6.2f}%')
print('  compile-only (no simt code): the CUDA and HIP branches of backends/native/pk.h, backends/hip/*.cpp')
if total == 0 or 100 * hit < required * total:
    print(f'FAILED: line coverage {hit}/{total} = {percent:.2f}% is below the required {required:g}%; not run:')
    for name in sorted(lines):
        for line in sorted(k for k, v in lines[name].items() if not v):
            print(f'  {name}:{line}')
    sys.exit(1)
print(f'line coverage {hit}/{total} = {percent:.2f}% meets the required {required:g}%')
PY
