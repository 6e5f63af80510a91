#!/bin/sh
# Install the library into a scratch root and use it as an application
# would: pkg-config --cflags --libs dalle, #include <dalle/dalle.h>, then
# check the soname and that only the public symbols are exported.
# usage: tests/install_check.sh BUILD_DIR   (writes BUILD_DIR/install-check.json)
set -u
build=$1
log="$build/install-check.json"
: > "$log"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
failures=0

result() { # result NAME OK|FAIL|SKIP [detail]
    printf '{"name": "install/%s", "result": "%s"}\n' "$1" "$2" >> "$log"
    echo "$2 $1 ${3:-}"
    [ "$2" = FAIL ] && failures=$((failures + 1))
    return 0
}

meson install -C "$build" --destdir "$root" --quiet >/dev/null || { result install FAIL; exit 1; }
pcdir=$(dirname "$(find "$root" -name dalle.pc | head -n 1)")
lib=$(find "$root" -name 'libdalle.so.1' | head -n 1)
[ -n "$lib" ] && [ -f "$pcdir/dalle.pc" ] && result install OK || { result install FAIL; exit 1; }
[ -f "$(find "$root" -path '*/include/dalle/dalle.h' | head -n 1)" ] && result header OK || result header FAIL

flags=$(PKG_CONFIG_PATH="$pcdir" PKG_CONFIG_SYSROOT_DIR="$root" pkg-config --cflags --libs dalle)
if cc -std=c11 -Wall -Wextra -Werror examples/bundle_info.c $flags -o "$root/bundle_info"; then
    result compile-with-pkg-config OK "($flags)"
else
    result compile-with-pkg-config FAIL "($flags)"
fi

bundle="$build/tests/dalle_full.dalle"
if [ -f "$bundle" ]; then
    out=$(LD_LIBRARY_PATH=$(dirname "$lib") "$root/bundle_info" "$bundle")
    if echo "$out" | grep -q '^kind: dalle' && echo "$out" | grep -q 'transformer'; then
        result app-opens-golden-bundle OK
    else
        result app-opens-golden-bundle FAIL "$out"
    fi
else
    result app-opens-golden-bundle SKIP "(no golden bundle: ../shared/golden absent)"
fi

exe=$(find "$root" -path '*/bin/dalle' | head -n 1)
# `dalle convert` runs the Python package installed beside it
# (PREFIX/share/libdalle/python): --info reads a bundle with it.
if [ -n "$exe" ] && [ -d "$(dirname "$exe")/../share/libdalle/python/dalle" ] &&
   LD_LIBRARY_PATH=$(dirname "$lib") "$exe" convert --info tests/fuzz/corpus/small.dalle | grep -q 'libdalle bundle'; then
    result installed-dalle-convert OK
else
    result installed-dalle-convert FAIL "(the installed dalle cannot run the installed converter)"
fi

# The Python package installs with pip (offline: the system's setuptools)
# and, pointed at the installed library, reads a bundle through it. pip
# builds in a copy, so the source tree gets no build/ or egg-info.
if /usr/bin/python3 -m venv --system-site-packages "$root/venv" >/dev/null 2>&1 &&
   cp -r bindings/python "$root/pysrc" &&
   "$root/venv/bin/pip" install -q --no-build-isolation --no-index "$root/pysrc" >/dev/null 2>&1 &&
   bundle_kind=$(cd "$root" && DALLE_LIBRARY="$lib" venv/bin/python -c \
       "import sys, dalle; print(dalle.Bundle(sys.argv[1]).kind)" \
       "$OLDPWD/tests/fuzz/corpus/small.dalle") && [ "$bundle_kind" = dvae ] &&
   [ -x "$root/venv/bin/dalle-convert" ]; then
    result pip-install-python-package OK
else
    result pip-install-python-package FAIL "(python3 -m venv + pip install ./bindings/python)"
fi

soname=$(readelf -d "$lib" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = libdalle.so.1 ] && result soname OK || result soname FAIL "($soname)"

# Every defined dynamic symbol is dalle_* or clip_*, versioned DALLE_1.x.
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v -E '^(dalle_|clip_)[A-Za-z0-9_]*@@?DALLE_1\.[0-9]+$' | grep -v -E '^DALLE_1\.[0-9]+$' || true)
count=$(nm -D --defined-only "$lib" | grep -c -E ' (dalle_|clip_)')
if [ -z "$bad" ] && [ "$count" -gt 10 ]; then
    result exported-symbols OK "($count public symbols, nothing else)"
else
    result exported-symbols FAIL "(unexpected: $bad)"
fi
[ "$failures" -eq 0 ]
