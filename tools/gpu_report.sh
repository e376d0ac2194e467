#!/bin/sh
# tools/gpu_report.sh — the one command for a person with a GPU: runs, for one backend (cuda by
# default), the op conformance (plain, --exact, --gradient), the model check against ref on both
# models, the determinism check, and the benchmark beside cpu, and writes everything to one
# report file (written to a temporary name and renamed: an earlier report is never half
# overwritten). Exits 0 only when every check passed.
#
#   tools/gpu_report.sh [--backend cuda] [--beside cpu] [--build build] [--out parity-cuda-report.txt] [--quick]
#
# --quick shortens the benchmark (one model, no per-op cases, 0.2 s per case): for trying the
# script itself; a report to send back should be made without it.
set -u
backend=cuda beside=cpu build=build out= quick=0
while [ $# -gt 0 ]; do
  case $1 in
    --backend) backend=$2; shift 2 ;;
    --beside) beside=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "gpu_report.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || out=parity-$backend-report.txt
parity=$build/tools/parity
if [ ! -x "$parity" ]; then
  echo "gpu_report.sh: $parity not found: build first (cmake -S . -B $build && cmake --build $build), or pass --build DIR" >&2
  exit 2
fi
out_dir=$(dirname -- "$out")
if [ ! -d "$out_dir" ]; then echo "gpu_report.sh: folder '$out_dir' of --out does not exist" >&2; exit 2; fi
tmp=$(mktemp "$out.tmp.XXXXXX") || exit 2
json_dir=$(mktemp -d) || exit 2
trap 'rm -f "$tmp"; rm -rf "$json_dir"' EXIT INT TERM

failed=0
stage() {  # stage NAME COMMAND... : runs it, appends its output and exit status to the report
  name=$1; shift
  printf '\n==== %s\n$ %s\n' "$name" "$*" >>"$tmp"
  start=$(date +%s)
  "$@" >>"$tmp" 2>&1
  rc=$?
  printf -- '---- %s: exit %d, %d s\n' "$name" "$rc" "$(($(date +%s) - start))" >>"$tmp"
  printf '%-40s exit %d\n' "$name" "$rc"
  [ "$rc" -eq 0 ] || failed=1
}

{
  echo "parity report for backend '$backend' (beside '$beside'), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm); git: $(git -C "$(dirname -- "$0")/.." rev-parse --short HEAD 2>/dev/null || echo unknown)"
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
} >"$tmp"

stage "info" "$parity" info
stage "check ops" "$parity" check ops --backend "$backend" --json "$json_dir/ops.json"
stage "check ops --exact" "$parity" check ops --backend "$backend" --exact
stage "check ops --gradient" "$parity" check ops --backend "$backend" --gradient
stage "check model seed-cnn vs ref" "$parity" check model --model seed-cnn --backend "$backend" --against ref --steps 3
stage "check model seed-cnn-112 vs ref" "$parity" check model --model seed-cnn-112 --backend "$backend" --against ref --batch 4
stage "check determinism" "$parity" check determinism --backend "$backend"
if [ "$quick" -eq 1 ]; then
  stage "bench (quick)" "$parity" bench --backend "$backend,$beside" --models seed-cnn --no-ops --no-scaling --no-rss \
    --min-time 0.2 --warmup 1 --json "$json_dir/bench.json"
else
  stage "bench" "$parity" bench --backend "$backend,$beside" --json "$json_dir/bench.json"
fi
for f in "$json_dir"/*.json; do
  [ -f "$f" ] && printf '\n==== %s\n%s\n' "$(basename "$f")" "$(cat "$f")" >>"$tmp"
done
printf '\nresult: %s\n' "$([ $failed -eq 0 ] && echo 'every check passed' || echo 'FAILED (see the stages above)')" >>"$tmp"
mv -f "$tmp" "$out" || exit 2
trap 'rm -rf "$json_dir"' EXIT
echo "report written to $out"
exit $failed
