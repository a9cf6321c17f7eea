#!/bin/bash
# gcc.sh LIB [REPO_ROOT]: (1) gcc -O2 compiles neap's own sources
# (src/*.c, src/os/*.c), plain and with LD_PRELOAD=LIB: identical
# diagnostics, and the object files identical byte for byte (cmp);
# (2) g++ compiles cxx_prog.cpp and runs it (threads, maps of strings),
# both under the preload in the preloaded run: identical output.
# shellcheck source=tests/override/lib.sh
. "$(dirname "$0")/lib.sh"
ov_init gcc "$@"
ov_require gcc
ov_require cxx
ov_check_active --from /cc1 gcc -c -x c /dev/null -o /dev/null
ov_check_active --from /cc1plus g++ -c -x c++ /dev/null -o /dev/null
if ov_pair gcc; then
    # The objects: same list (compared in the normalized output), same bytes.
    n=0
    bad=
    for o in "$OV_WORK"/gcc-plain/obj/*.o; do
        n=$((n + 1))
        cmp -s "$o" "$OV_WORK/gcc-preload/obj/${o##*/}" || bad="$bad ${o##*/}"
    done
    if [ "$n" -eq 0 ]; then
        ov_fail "gcc: no object files were produced"
    elif [ -n "$bad" ]; then
        ov_fail "gcc: object files differ between plain and preloaded gcc:$bad"
        for o in $bad; do
            cmp "$OV_WORK/gcc-plain/obj/$o" "$OV_WORK/gcc-preload/obj/$o" 2>&1 | sed 's/^/    /'
        done
    else
        ov_pass "gcc: $n object files identical byte for byte"
    fi
fi
ov_pair cxx
ov_finish
