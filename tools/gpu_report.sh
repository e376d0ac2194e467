#!/bin/sh
# tools/gpu_report.sh — the one command for a person with a GPU: runs, for one backend (cuda by
# default), the op conformance (plain, --exact, --gradient), the model check against ref on both
# models, the determinism check, and the benchmark beside cpu, and writes everything to one
# report file (written to a temporary name and renamed: an earlier report is never half
# overwritten). Each check also runs on gpu_emu, the same GPU executor on the emulated device, and
# the report ends with a table of both: a check failing on both is in parity's logic; failing on
# the real backend only, in the device, the driver or the vendor library. Exits 0 only when every
# check of the chosen backend passed.
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
}

# The emulated device beside a real GPU backend (not beside itself or a host backend).
emulated=
if [ "$backend" = cuda ] || [ "$backend" = hip ]; then
  "$parity" info 2>/dev/null | grep -Eq '^  gpu_emu +available' && emulated=gpu_emu
fi
table=
present=no
"$parity" info 2>/dev/null | grep -Eq "^  $backend +available" && present=yes
check() {  # check NAME ARGS... : `parity ARGS --backend B` on the backend, then on gpu_emu
  check_name=$1; shift
  stage "$check_name" "$parity" "$@" --backend "$backend"
  real=$rc
  [ "$real" -eq 0 ] || failed=1
  emu=-
  if [ -n "$emulated" ]; then
    stage "$check_name (gpu_emu)" "$parity" "$@" --backend "$emulated"
    emu=$rc
  fi
  if [ "$real" -eq 0 ]; then verdict=pass
  elif [ "$present" = no ]; then verdict="$backend is unavailable here (see info)"
  elif [ "$emu" = - ]; then verdict="fails (no emulated run to compare)"
  elif [ "$emu" -eq 0 ]; then verdict="fails on the device only: the device, driver or vendor library"
  else verdict="fails emulated too: parity's logic"
  fi
  table="$table$(printf '%-34s %-6s %-8s %s' "$check_name" "$real" "$emu" "$verdict")
"
}

{
  echo "parity report for backend '$backend' (beside '$beside'), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm); git: $(git -C "$(dirname -- "$0")/.." rev-parse --short HEAD 2>/dev/null || echo unknown)"
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
} >"$tmp"

stage "info" "$parity" info
check "check ops" check ops --json "$json_dir/ops.json"
check "check ops --exact" check ops --exact
check "check ops --gradient" check ops --gradient
check "check model seed-cnn vs ref" check model --model seed-cnn --against ref --steps 3
check "check model seed-cnn-112 vs ref" check model --model seed-cnn-112 --against ref --batch 4
check "check determinism" check determinism
if [ "$quick" -eq 1 ]; then
  stage "bench (quick)" "$parity" bench --backend "$backend,$beside" --models seed-cnn --no-ops --no-scaling --no-rss \
    --min-time 0.2 --warmup 1 --json "$json_dir/bench.json"
else
  stage "bench" "$parity" bench --backend "$backend,$beside" --json "$json_dir/bench.json"
fi
[ "$rc" -eq 0 ] || failed=1
for f in "$json_dir"/*.json; do
  [ -f "$f" ] && printf '\n==== %s\n%s\n' "$(basename "$f")" "$(cat "$f")" >>"$tmp"
done
{
  printf '\n==== exit status of each check: %s and %s\n' "$backend" "${emulated:-(no emulated device)}"
  printf '%-34s %-6s %-8s %s\n' check "$backend" gpu_emu verdict
  printf '%s' "$table"
} | tee -a "$tmp"
printf '\nresult: %s\n' "$([ $failed -eq 0 ] && echo 'every check passed' || echo 'FAILED (see the stages above)')" >>"$tmp"
mv -f "$tmp" "$out" || exit 2
trap 'rm -rf "$json_dir"' EXIT
echo "report written to $out"
exit $failed
