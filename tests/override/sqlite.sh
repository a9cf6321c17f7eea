#!/bin/bash
# sqlite.sh LIB [REPO_ROOT]: the sqlite3 shell running a generated SQL
# script (300k + 600k rows, indexes, updates, deletes, joins, group by,
# window functions, VACUUM), plain and with LD_PRELOAD=LIB: identical output.
# shellcheck source=tests/override/lib.sh
. "$(dirname "$0")/lib.sh"
ov_init sqlite "$@"
ov_require sqlite
ov_check_active sqlite3 -version
ov_pair sqlite
ov_finish
