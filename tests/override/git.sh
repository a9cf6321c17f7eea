#!/bin/bash
# git.sh LIB [REPO_ROOT]: git on a generated tree of 4000 files (init, add,
# commits with fixed names and dates, renames, deletes, a branch and a
# merge, log --stat, diff, blame, grep, archive, gc, fsck, count-objects),
# plain and with LD_PRELOAD=LIB: identical output (pack sizes aside).
# shellcheck source=tests/override/lib.sh
. "$(dirname "$0")/lib.sh"
ov_init git "$@"
ov_require git
ov_check_active git --version
ov_pair git
ov_finish
