#!/bin/sh
# Prints the CUDA toolkit root that the nvcc given as $1 belongs to.
# nvcc is often a wrapper script or a symlink (/usr/local/bin/nvcc ->
# /usr/local/cuda-X/bin/nvcc), so the folder above it is not always the
# toolkit: ask nvcc itself, which reports its TOP in a dry run.
nvcc=$1
dir=$(mktemp -d 2>/dev/null) || dir=/tmp
printf 'int main(void){return 0;}\n' > "$dir/probe.cu"
top=$("$nvcc" -dryrun -c "$dir/probe.cu" -o "$dir/probe.o" 2>&1 |
      sed -n 's/^#\$ TOP=//p' | head -n 1)
rm -rf "$dir"
if [ -n "$top" ] && [ -d "$top" ]; then
  (cd "$top" && pwd -P)
else
  real=$(readlink -f "$nvcc")
  dirname "$(dirname "$real")"
fi
