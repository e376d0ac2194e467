#!/bin/sh
# tests/check_plugin_imports.sh NM PLUGIN [needs:LIBRARY]... [kernel:NAME]... SYMBOL... — fails
# unless PLUGIN's dynamic section lists every needs:LIBRARY (a prefix of a NEEDED entry, e.g.
# libcudnn.so.9), its symbol table defines the host launch stub of every kernel:NAME (nvcc's
# __device_stub__ of a __global__ function whose mangled name holds NAME: the kernel was compiled
# and is launched from host code) and its dynamic symbol table imports every SYMBOL (e.g. the HIP
# plugin must import hipMalloc and hipLaunchKernel, the call hipLaunchKernelGGL becomes): evidence,
# without a GPU, that the code really links the vendor libraries, allocates and launches. Prints
# the vendor imports it found.
nm=$1 plugin=$2
shift 2
imports=$("$nm" -D --undefined-only "$plugin") || exit 1
needed=$(LC_ALL=C readelf -d "$plugin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p') || exit 1
stubs=$("$nm" --defined-only "$plugin" | grep '__device_stub__') || stubs=''
status=0
for s in "$@"; do
  case $s in
    needs:*)
      lib=${s#needs:}
      printf '%s\n' "$needed" | grep -q "^$lib" || { echo "$plugin does not link $lib (NEEDED: $needed)"; status=1; }
      ;;
    kernel:*)
      kernel=${s#kernel:}
      printf '%s\n' "$stubs" | grep -q "__device_stub__.*$kernel" || { echo "$plugin has no launch stub of kernel $kernel"; status=1; }
      ;;
    *)
      printf '%s\n' "$imports" | grep -Eq " $s(@|\$)" || { echo "$plugin does not import $s"; status=1; }
      ;;
  esac
done
printf 'NEEDED: %s\n' "$needed" | tr '\n' ' '
echo
printf '%s\n' "$imports" | grep -E ' (hip|__hip|cuda|__cuda|cudnn|cublas|nccl)'
exit $status
