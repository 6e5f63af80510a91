#!/bin/sh
# A short libFuzzer run of every fuzz target (CI): SECONDS each.
# Needs clang with libFuzzer (Debian: clang libclang-rt-14-dev); without it
# the run is reported as skipped, and the replay of the seed corpora in the
# ordinary test suite still runs.
# usage: tests/fuzz/run.sh SECONDS   (writes build/fuzz-check.json)
set -u
secs=${1:-20}
cd "$(dirname "$0")/../.."
log=build/fuzz-check.json
mkdir -p build
: > "$log"
result() { printf '{"name": "fuzz/%s", "result": "%s"}\n' "$1" "$2" >> "$log"; echo "$2 fuzz/$1"; }

# every target: tests/fuzz/fuzz_<name>.c (fuzz_util.c is their helper)
targets=$(for f in tests/fuzz/fuzz_*.c; do n=${f##*/fuzz_}; n=${n%.c}; [ "$n" != util ] && echo "$n"; done)

if ! command -v clang >/dev/null 2>&1 ||
   ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){(void)d;(void)n;return 0;}' |
     clang -x c -fsanitize=fuzzer - -o /tmp/dalle-fuzz-probe 2>/dev/null; then
    for t in $targets; do result "$t" SKIP; done
    echo "clang with libFuzzer not found: fuzzing skipped"
    exit 0
fi
if [ -d build-fuzz/meson-private ]; then
    CC=clang meson setup --reconfigure build-fuzz -Dfuzz=true -Dcuda=disabled -Dbuildtype=debug >/dev/null
else
    CC=clang meson setup build-fuzz -Dfuzz=true -Dcuda=disabled -Dbuildtype=debug >/dev/null
fi
status=0
for t in $targets; do
    if ! ninja -C build-fuzz "tests/fuzz_$t" >/dev/null; then
        result "$t" FAIL; status=1; continue
    fi
    seeds=tests/fuzz/corpus
    [ "$t" != bundle ] && seeds="tests/fuzz/corpus_$t"
    work=$(mktemp -d)
    cp "$seeds"/* "$work"/ 2>/dev/null || true
    if (cd "$work" && "$OLDPWD/build-fuzz/tests/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 \
            -timeout=10 -print_final_stats=1 . 2>fuzz.log); then
        grep -E 'stat::number_of_executed_units' "$work/fuzz.log" | sed "s/^/fuzz_$t: /"
        result "$t" OK
    else
        tail -n 40 "$work/fuzz.log"
        cp "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* build/ 2>/dev/null || true
        result "$t" FAIL; status=1
    fi
    rm -rf "$work"
done
exit $status
