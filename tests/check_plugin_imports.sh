#!/bin/sh
# tests/check_plugin_imports.sh NM PLUGIN SYMBOL... — fails unless PLUGIN's dynamic symbol table
# imports every SYMBOL (e.g. the HIP plugin must import hipMalloc and hipLaunchKernel, the call
# hipLaunchKernelGGL becomes): evidence, without a GPU, that the code really allocates and
# launches. Prints the plugin's imports from the vendor runtime.
nm=$1 plugin=$2
shift 2
imports=$("$nm" -D --undefined-only "$plugin") || exit 1
status=0
for s in "$@"; do
  printf '%s\n' "$imports" | grep -Eq " $s(@|\$)" || { echo "$plugin does not import $s"; status=1; }
done
printf '%s\n' "$imports" | grep -E ' (hip|__hip)'
exit $status
