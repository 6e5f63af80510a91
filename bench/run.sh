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
#   when they are not a git checkout.
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
ninja -C "$BUILD" bench/bench_ceilings bench/bench_make_model bench/bench_generate >/dev/null
B=$BUILD/bench
[ -f "$B/dalle_s.dalle" ] || "$B/bench_make_model" S "$B/dalle_s.dalle"
[ -f "$B/dalle_xs.dalle" ] || "$B/bench_make_model" XS "$B/dalle_xs.dalle"

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    REV=$(git rev-parse --short HEAD)
    git diff --quiet HEAD -- lib include || REV="$REV + uncommitted changes in lib/ or include/"
else
    REV=${REV:-"(not a git checkout)"}
fi
echo "# libdalle $REV, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "# bench_generate --tokens $TOKENS --repeat $REPEAT --full 1024 $* (all cores)"
"$B/bench_generate" --tokens "$TOKENS" --repeat "$REPEAT" --full 1024 "$@" "$B/dalle_s.dalle" "$B/dalle_xs.dalle"
if [ "${ONE_THREAD:-1}" != 0 ]; then
    echo
    echo "# bench_generate --threads 1 --tokens $TOKENS --repeat $REPEAT $* (one thread, windows only)"
    "$B/bench_generate" --threads 1 --tokens "$TOKENS" --repeat "$REPEAT" "$@" "$B/dalle_s.dalle" "$B/dalle_xs.dalle"
fi
