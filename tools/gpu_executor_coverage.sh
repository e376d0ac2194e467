#!/usr/bin/env bash
# tools/gpu_executor_coverage.sh — gcov line coverage of the one GPU executor source
# (backends/gpu/: the host code the CUDA and HIP plugins share) as the gpu_emu plugin runs it on
# the emulated device: builds the plugin with its executor sources instrumented (build-cov/, the
# same folder as tools/simt_coverage.sh), runs tests/test_gpu_emu and tests/test_gpu_hooks (the node
# hooks of ABI 8), and prints per-file and total
# line coverage of backends/gpu/ (the runtime mappings apart: each is one target's), then the
# emulated target's own sources, then the lines only the real CUDA and HIP builds compile (their
# runtime mappings, devices and vendor calls), counted, since nothing here executes them.
# Usage: tools/gpu_executor_coverage.sh [build-dir]   (needs gcc's gcov and python3)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-cov}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPARITY_GPU_EMU_COVERAGE=ON -DPARITY_WITH_HIP=OFF >/dev/null
cmake --build "$build" --target test_gpu_emu test_gpu_hooks parity_backend_gpu_emu -- -j2
find "$build" -name '*.gcda' -path '*gpu_emu*' -delete
ctest --test-dir "$build" -R '^(GpuEmu|GpuHooks)\.' -j2 --output-on-failure >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
find "$(cd "$build" && pwd)" -path '*parity_backend_gpu_emu.dir*' -name '*.gcda' | while read -r gcda; do
  dir="$out/$(basename "$gcda" .gcda)"
  mkdir -p "$dir" && (cd "$dir" && gcov --json-format "${gcda%.gcda}.o" >/dev/null)
done
python3 - "$out" "$PWD" <<'PY'
import gzip, json, os, sys, glob, re
out, root = sys.argv[1], sys.argv[2]
lines = {}  # file -> {line: executed}
for path in glob.glob(os.path.join(out, '*', '*.gcov.json.gz')):
    data = json.load(gzip.open(path))
    for f in data['files']:
        name = os.path.relpath(os.path.realpath(os.path.join(data.get('current_working_directory', root), f['file'])), root)
        if not (name.startswith('backends/gpu/') or name.startswith('backends/gpu_emu/emu_library')
                or name.startswith('backends/gpu_emu/emu_device')):
            continue
        d = lines.setdefault(name, {})
        for l in f['lines']:
            d[l['line_number']] = d.get(l['line_number'], False) or l['count'] > 0
def report(title, names):
    total = hit = 0
    print(title)
    for name in sorted(names):
        d = lines[name]
        n, h = len(d), sum(d.values())
        total += n; hit += h
        missed = sorted(k for k, v in d.items() if not v)
        print(f'  {name:36s} {h:4d}/{n:<4d} {100.0 * h / max(n, 1):5.1f}%' + (f'   not run: lines {missed}' if missed else ''))
    print(f'  {"total":36s} {hit:4d}/{total:<4d} {100.0 * hit / max(total, 1):5.1f}%')
shared = [n for n in lines if n.startswith('backends/gpu/') and not os.path.basename(n).startswith('runtime_')]
report('gcov line coverage of the GPU executor source (backends/gpu) on the emulated device:', shared)
report('the emulated target (its runtime mapping, device and routes):',
       [n for n in lines if n not in shared])
def code_lines(path):  # lines with code: not blank, not only a comment
    count = 0
    for line in open(path):
        s = line.strip()
        if s and not s.startswith('//') and not s.startswith('/*') and not s.startswith('*'):
            count += 1
    return count
print('compile-only (the real targets: runtime mapping, device, vendor calls), lines of code:')
for target, files in (('cuda', ['backends/gpu/runtime_cuda.h', 'backends/cuda/cuda_check.h', 'backends/cuda/cuda_device.cpp',
                                'backends/cuda/cuda_library.h', 'backends/cuda/cuda_library.cpp',
                                'backends/cuda/cuda_conv_search.cpp', 'backends/cuda/cuda_kernels.h',
                                'backends/cuda/cuda_kernels.cu']),
                      ('hip', sorted(glob.glob('backends/gpu/runtime_hip.h') + glob.glob('backends/hip/*.cpp')
                                     + glob.glob('backends/hip/*.h')))):
    present = [f for f in files if os.path.exists(f)]
    counts = [(f, code_lines(f)) for f in present]
    print(f'  {target}: {sum(c for _, c in counts)} lines: ' + ', '.join(f'{f} {c}' for f, c in counts))
PY
