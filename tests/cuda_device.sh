#!/bin/sh
# The CUDA checks that need a GPU (docs/cuda.md), in two halves:
#
#   sh tests/cuda_device.sh pack   on the development machine: builds
#       build-cuda (BUILD=dir to change; a CUDA build) and copies
#       tests/test_cuda_ops, tests/test_cuda_model and tests/test_cuda_vae,
#       with the shared libraries they need that a bare GPU machine may lack
#       (OpenBLAS and its Fortran runtime), the golden DALLE bundles (f32, and
#       one f16, bf16 and int8 bundle), the golden VAE bundles (vae_resblocks,
#       openai_dvae_64, vqgan) and the golden files they are checked against
#       (DALLE_GOLDEN or ../shared/golden: the *.npy and case.json of the four
#       dalle_* cases and of vae_resblocks, openai_dvae, vqgan) into
#       .devcarry/, which .git/info/exclude ignores (the device tool's `carry`
#       takes it along)
#
#   sh tests/cuda_device.sh run    on the GPU machine (the device tool, with
#       carry [".devcarry"]): the GPU and driver; test_cuda_ops (every kernel
#       against the CPU), then its quick sweep under compute-sanitizer's
#       memcheck, racecheck and synccheck; test_cuda_model gpu (the
#       transformer with backend = cuda against the golden logits, greedy and
#       seeded sampling against the CPU), then under memcheck; test_cuda_vae
#       gpu (the VAEs with backend = cuda against every golden VAE case and
#       the CPU), then under memcheck; test_cuda_clip gpu (both CLIPs with
#       backend = cuda against their golden cases and the CPU), then under
#       memcheck (SANITIZE=0 leaves every compute-sanitizer run out: the
#       tests alone take a minute or two). Logs go to $OUT
#       (or /tmp/cuda-device); the last lines are a summary.
#
# The binary runs there as built here: libdalle links cudart statically and
# loads cuBLAS itself, so the machine needs only its driver and a
# libcublas.so.13 (the CUDA toolkit's or a pip wheel's; searched below).
#
#   sh tests/cuda_device.sh pack-bench   here: builds $BUILD with -Dbench=true
#       and copies bench_gpu, bench_make_model, libdalle and the libraries
#       they need, and bench/torch_dalle.py, into .devbench/
#   sh tests/cuda_device.sh run-bench    there (carry [".devbench"]): makes the
#       DALLE-S, DALLE-XS and a bf16 DALLE-S, runs bench_gpu at batch 1, 8, 64
#       against the GPU's ceilings, then the PyTorch reference on the same
#       GPU; logs to $OUT (bench_gpu.log, torch.log, summary.txt)
set -u
mode=${1:-}

# The shared libraries a program needs that a bare GPU machine may lack,
# gzipped into DIR (the carry limit is 64 MiB and OpenBLAS alone is ~35).
pack_libs() { # pack_libs DIR PROGRAM...
    dir=$1
    shift
    for prog in "$@"; do
        ldd "$prog" | awk '/=> \// {print $3}'
    done | sort -u | while read -r lib; do
        case "$(basename "$lib")" in
        libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux* | libgcc_s.so.*) ;;
        *) cp -L "$lib" "$dir/" ;;
        esac
    done
    gzip -9 "$dir"/lib*.so*
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qx "/$dir/" "$exclude" 2>/dev/null || echo "/$dir/" >>"$exclude"
    du -sh "$dir"
    ls "$dir"
}

# There: the packed libraries unpacked, cuBLAS 13 found, LD_LIBRARY_PATH set;
# the GPU and driver into $out/machine.txt.
prepare() { # prepare DIR
    for z in "$1"/lib*.so*.gz; do
        [ -f "$z" ] && [ ! -f "${z%.gz}" ] && gunzip -c "$z" >"${z%.gz}"
    done
    cublas=$(ldconfig -p 2>/dev/null | awk '/libcublas\.so\.13 / {print $NF; exit}')
    if [ -z "$cublas" ]; then
        cublas=$(find /usr/local /opt /usr/lib -name 'libcublas.so.13' 2>/dev/null | head -n 1)
    fi
    LD_LIBRARY_PATH="$PWD/$1${cublas:+:$(dirname "$cublas")}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
    {
        echo "cuBLAS: ${cublas:-not found}"
        nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader
    } 2>&1 | tee "$out/machine.txt"
}

case "$mode" in
pack)
    set -e
    build=${BUILD:-build-cuda}
    [ -f "$build/build.ninja" ] || meson setup "$build" -Dcuda=enabled
    ninja -C "$build" # the tests and the golden bundles they read
    golden=${DALLE_GOLDEN:-$(cd .. && pwd)/shared/golden}
    rm -rf .devcarry
    mkdir -p .devcarry/bundles .devcarry/golden
    cp "$build/tests/test_cuda_ops" "$build/tests/test_cuda_model" "$build/tests/test_cuda_vae" \
        "$build/tests/test_cuda_clip" .devcarry/
    # CLIP: not the TorchScript bundle (the same weights as openai_clip; its
    # loading is host code, tested by test_clip), to keep the carry small
    for b in dalle_full dalle_variants dalle_cfg dalle_shared_attn dalle_full_int8 \
        dalle_variants_bf16 dalle_cfg_f16 vae_resblocks openai_dvae_64 vqgan \
        clip_dalle_pytorch openai_clip; do
        cp "$build/tests/$b.dalle" .devcarry/bundles/
    done
    for c in dalle_full dalle_variants dalle_cfg dalle_shared_attn vae_resblocks openai_dvae \
        vqgan clip_dalle_pytorch openai_clip; do
        mkdir -p ".devcarry/golden/$c"
        cp "$golden/$c/case.json" "$golden/$c"/*.npy ".devcarry/golden/$c/"
    done
    pack_libs .devcarry "$build/tests/test_cuda_model"
    ;;
pack-bench)
    set -e
    build=${BUILD:-build-cuda}
    [ -f "$build/build.ninja" ] || meson setup "$build" -Dcuda=enabled
    meson configure "$build" -Dbench=true >/dev/null
    ninja -C "$build" bench/bench_gpu bench/bench_make_model
    rm -rf .devbench
    mkdir -p .devbench
    cp "$build/bench/bench_gpu" "$build/bench/bench_make_model" bench/torch_dalle.py .devbench/
    pack_libs .devbench "$build/bench/bench_gpu" "$build/bench/bench_make_model"
    ;;
run-bench)
    out=${OUT:-/tmp/cuda-device}
    mkdir -p "$out"
    [ -x .devbench/bench_gpu ] || { echo "no .devbench/bench_gpu: run 'sh tests/cuda_device.sh pack-bench' here and carry .devbench"; exit 2; }
    prepare .devbench
    models=
    for w in S XS; do
        f=/tmp/dalle_$(echo "$w" | tr 'A-Z' 'a-z').dalle
        [ -f "$f" ] || .devbench/bench_make_model "$w" "$f" >/dev/null
        models="$models $f"
    done
    # DALLE-S with bf16 matrices: the GPU keeps them 16-bit (k_linear_lowp)
    f=/tmp/dalle_s_bf16.dalle
    [ -f "$f" ] || .devbench/bench_make_model S "$f" --dtype bf16 >/dev/null
    models="$models $f"
    # shellcheck disable=SC2086 # two paths without spaces
    timeout 300 .devbench/bench_gpu --batches 1,8,64 --tokens 32 --repeat 3 $models \
        >"$out/bench_gpu.log" 2>&1
    brc=$?
    cat "$out/bench_gpu.log"
    PYTHONUNBUFFERED=1 timeout 240 python3 .devbench/torch_dalle.py --batches 1,8,64 \
        --tokens 32 --repeat 3 >"$out/torch.log" 2>&1
    trc=$?
    cat "$out/torch.log"
    echo "bench_gpu: exit $brc; torch_dalle.py: exit $trc" | tee "$out/summary.txt"
    [ "$brc" -ne 0 ] && exit "$brc"
    exit "$trc"
    ;;
run)
    out=${OUT:-/tmp/cuda-device}
    mkdir -p "$out"
    [ -x .devcarry/test_cuda_ops ] && [ -x .devcarry/test_cuda_model ] && [ -x .devcarry/test_cuda_vae ] && [ -x .devcarry/test_cuda_clip ] || { echo "no .devcarry/test_cuda_ops, test_cuda_model, test_cuda_vae or test_cuda_clip: run 'sh tests/cuda_device.sh pack' here and carry .devcarry"; exit 2; }
    prepare .devcarry
    timeout 240 .devcarry/test_cuda_ops >"$out/test_cuda_ops.log" 2>&1
    rc=$?
    grep -v '^ok ' "$out/test_cuda_ops.log" | tail -n 40
    summary="test_cuda_ops: exit $rc ($(grep -c '^ok ' "$out/test_cuda_ops.log") ok, $(grep -c '^FAIL' "$out/test_cuda_ops.log") failed)"
    if [ "${SANITIZE:-1}" != 0 ] && command -v compute-sanitizer >/dev/null 2>&1; then
        for tool in memcheck racecheck synccheck; do
            timeout 110 compute-sanitizer --tool "$tool" --error-exitcode 99 \
                .devcarry/test_cuda_ops quick >"$out/sanitizer_$tool.log" 2>&1
            src=$?
            tail -n 3 "$out/sanitizer_$tool.log"
            summary="$summary
compute-sanitizer $tool: exit $src (0: clean; 99: errors found; 124: timed out)"
        done
    else
        summary="$summary
compute-sanitizer: not run (SANITIZE=0, or not on this machine)"
    fi
    # A model test in gpu mode (NAME TIMEOUT BUNDLE...), then under
    # memcheck; its exit status in $last, a summary line each.
    gpu_test() {
        name=$1 limit=$2
        shift 2
        set -- .devcarry/golden "$@"
        timeout "$limit" ".devcarry/$name" gpu "$@" >"$out/$name.log" 2>&1
        last=$?
        grep -v '^ok ' "$out/$name.log" | tail -n 40
        summary="$summary
$name gpu: exit $last ($(grep -c '^ok ' "$out/$name.log") ok, $(grep -c '^FAIL' "$out/$name.log") failed; 77: skipped)"
        if [ "${SANITIZE:-1}" != 0 ] && command -v compute-sanitizer >/dev/null 2>&1; then
            timeout 150 compute-sanitizer --tool memcheck --error-exitcode 99 \
                ".devcarry/$name" gpu "$@" >"$out/sanitizer_${name#test_cuda_}_memcheck.log" 2>&1
            src=$?
            tail -n 3 "$out/sanitizer_${name#test_cuda_}_memcheck.log"
            summary="$summary
compute-sanitizer memcheck of $name: exit $src (0: clean; 99: errors found; 124: timed out)"
        fi
    }
    b=.devcarry/bundles
    # the transformer on the GPU (backend = cuda) against the golden cases
    gpu_test test_cuda_model 240 $b/dalle_full.dalle $b/dalle_variants.dalle $b/dalle_cfg.dalle \
        $b/dalle_shared_attn.dalle $b/dalle_full_int8.dalle $b/dalle_variants_bf16.dalle \
        $b/dalle_cfg_f16.dalle
    mrc=$last
    # the VAEs on the GPU (backend = cuda) against the golden VAE cases
    gpu_test test_cuda_vae 120 $b/vae_resblocks.dalle $b/openai_dvae_64.dalle $b/vqgan.dalle \
        $b/dalle_full.dalle $b/dalle_variants.dalle $b/dalle_shared_attn.dalle $b/dalle_cfg.dalle
    vrc=$last
    # both CLIPs on the GPU (backend = cuda) against their golden cases and the CPU
    gpu_test test_cuda_clip 120 $b/clip_dalle_pytorch.dalle $b/openai_clip.dalle $b/openai_clip.dalle
    crc=$last
    echo "----"
    echo "$summary" | tee "$out/summary.txt"
    [ "$rc" -ne 0 ] && exit "$rc"
    [ "$mrc" -ne 0 ] && exit "$mrc"
    [ "$vrc" -ne 0 ] && exit "$vrc"
    exit "$crc"
    ;;
*)
    echo "usage: sh tests/cuda_device.sh pack|run|pack-bench|run-bench" >&2
    exit 2
    ;;
esac
