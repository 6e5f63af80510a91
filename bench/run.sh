#!/bin/sh
# Build the benchmarks (-Dbench=true) and run them all: the ceilings and the
# generation benchmark of DALLE-S and DALLE-XS (random-weight bundles made
# once by bench_make_model), first with all cores (windows, then whole
# images for the check and the memory peak), then with one thread (windows).
# About 6 minutes on an idle 2-core machine. Results: bench/README.md.
#
#   bench/run.sh [extra bench_generate options]
#   BUILD=dir (default build-bench), TOKENS=n (window, default 64),
#   REPEAT=r (windows of each kind, best kept; default 3),
#   ONE_THREAD=0 to skip the one-thread run, REV=text to name the sources
#   when they are not a git checkout, DTYPES="f32 bf16 int8" (default) the
#   weight precisions (bench_make_model --dtype; f16 too if listed), each
#   a model of its own with the same random weights. LINEAR=0 skips the
#   kernel-level run at the end (bench_linear: one step's linear layers,
#   few-row kernel vs OpenBLAS, reduced-precision kernels).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-bench}
TOKENS=${TOKENS:-64}
REPEAT=${REPEAT:-3}
if [ -d "$BUILD" ]; then
    meson configure "$BUILD" -Dbench=true >/dev/null
else
    meson setup "$BUILD" -Dbench=true >/dev/null
fi
ninja -C "$BUILD" bench/bench_ceilings bench/bench_make_model bench/bench_generate \
    bench/bench_linear >/dev/null
B=$BUILD/bench
DTYPES=${DTYPES:-f32 bf16 int8}
MODELS=
for w in S XS; do
    lw=$(echo "$w" | tr 'A-Z' 'a-z')
    for d in $DTYPES; do
        # float32 keeps the historical name dalle_s.dalle / dalle_xs.dalle
        if [ "$d" = f32 ]; then f="$B/dalle_$lw.dalle"; else f="$B/dalle_${lw}_$d.dalle"; fi
        [ -f "$f" ] || "$B/bench_make_model" "$w" "$f" --dtype "$d"
        MODELS="$MODELS $f"
    done
done

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    REV=$(git rev-parse --short HEAD)
    git diff --quiet HEAD -- lib include || REV="$REV + uncommitted changes in lib/ or include/"
else
    REV=${REV:-"(not a git checkout)"}
fi
echo "# libdalle $REV, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "# bench_generate --tokens $TOKENS --repeat $REPEAT --full 1024 $* (all cores)"
# shellcheck disable=SC2086 # MODELS is a list of paths without spaces
"$B/bench_generate" --tokens "$TOKENS" --repeat "$REPEAT" --full 1024 "$@" $MODELS
if [ "${ONE_THREAD:-1}" != 0 ]; then
    echo
    echo "# bench_generate --threads 1 --tokens $TOKENS --repeat $REPEAT $* (one thread, windows only)"
    # shellcheck disable=SC2086
    "$B/bench_generate" --threads 1 --tokens "$TOKENS" --repeat "$REPEAT" "$@" $MODELS
fi
if [ "${LINEAR:-1}" != 0 ]; then
    for w in S XS; do
        echo
        echo "# bench_linear $w 7 1 2 (one step's linear layers alone)"
        "$B/bench_linear" "$w" 7 1 2
    done
fi
