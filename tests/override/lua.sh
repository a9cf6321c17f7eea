#!/bin/bash
# lua.sh LIB [REPO_ROOT]: words.lua (the same steps as words.pl), plain and
# with LD_PRELOAD=LIB: identical output. Skipped (exit 0) when lua5.4 is
# not installed.
if ! command -v lua5.4 >/dev/null 2>&1; then
    echo "SKIP: lua5.4 is not installed (Debian package lua5.4)"
    echo "0 passed, 0 failed"
    exit 0
fi
# shellcheck source=tests/override/lib.sh
. "$(dirname "$0")/lib.sh"
ov_init lua "$@"
ov_require lua
ov_check_active lua5.4 -e 'local t = {} for i = 1, 1000 do t[i] = tostring(i) end'
ov_pair lua
ov_finish
