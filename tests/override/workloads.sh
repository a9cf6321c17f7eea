# workloads.sh: the real-program workloads shared by the override tests
# (tests/override/*.sh, through lib.sh) and bench/programs.sh. Bash; source
# it, it runs nothing by itself.
#
# A workload NAME is four functions:
#   wl_NAME_needs            the programs it runs, as PROGRAM:DEBIAN-PACKAGE
#   wl_NAME_setup SRC        writes its inputs into the empty directory SRC
#                            (untimed, never under the allocator under test)
#   wl_NAME_run SRC          the workload itself; runs in a fresh empty
#                            directory (the current one), reads SRC, writes
#                            its results to stdout/stderr and files in the
#                            current directory
#   wl_NAME_normalize OUT LOG
#                            prints what must be identical between two runs:
#                            LOG (its stdout+stderr) with timings and such
#                            removed, plus whatever it takes from OUT
# wl_argv NAME SRC sets WL_ARGV to a command line (bash -c ...) that runs
# wl_NAME_run SRC; run it with LD_PRELOAD set to put an allocator under the
# whole workload (the shell, the program and every process it starts).
#
# Sizes: each run takes roughly 5-20 s under glibc on a 2-core machine,
# python about 90 s (the bench uses a shorter list of python tests).

# shellcheck disable=SC2034 # WL_ALL, WL_ARGV, ...: for those who source this
WL_SELF=${BASH_SOURCE[0]}
case $WL_SELF in /*) ;; *) WL_SELF=$PWD/$WL_SELF ;; esac
WL_DIR=$(cd "$(dirname "$WL_SELF")" && pwd)
WL_SELF=$WL_DIR/workloads.sh
: "${WL_REPO_ROOT:=$(cd "$WL_DIR/../.." && pwd)}"

WL_ALL="python sqlite git gcc cxx perl lua"

# The environment every workload runs in (both runs alike).
wl_env() {
    export LC_ALL=C.UTF-8 TZ=UTC
    unset LANG LANGUAGE
}

wl_argv() {
    WL_ARGV=(/bin/bash -c '. "$1" && wl_env && "wl_$2_run" "$3"' workload "$WL_SELF" "$1" "$2")
}

# Default normalization: hex addresses (which differ between allocators)
# become 0xADDR.
wl_norm_default() {
    sed -E 's/0x[0-9a-fA-F]{6,}/0xADDR/g' "$1"
}

# ---------------------------------------------------------------- python
# /usr/bin/python3 (the Debian interpreter, not a pyenv shim) running its
# own regression tests (libpython3.11-testsuite). PYTHONMALLOC=malloc makes
# every Python object allocation go through malloc instead of pymalloc, so
# the allocator under test sees all of them; set NEAP_PYTHONMALLOC= (empty)
# to keep pymalloc. NEAP_PY_TESTS replaces the list of tests.
WL_PY_TESTS="test_dict test_list test_set test_unicode test_threading test_json test_re
 test_pickle test_gc test_collections test_itertools test_functools test_long test_decimal
 test_statistics test_email test_ast test_bytes test_array test_sort test_deque test_weakref
 test_descr test_struct test_difflib test_csv test_tokenize test_marshal test_hashlib
 test_zlib test_lzma test_bz2 test_ctypes test_zipfile test_copy test_format test_heapq
 test_fstring test_math test_random test_memoryview test_os test_mmap test_thread
 test_threading_local test_sys test_tracemalloc test_codecs test_unicodedata"
# CPU-bound ones, no sleeps: what bench/programs.sh times.
WL_PY_TESTS_BENCH="test_dict test_list test_set test_unicode test_json test_re test_pickle
 test_collections test_itertools test_long test_decimal test_statistics test_email test_ast
 test_bytes test_descr test_difflib test_tarfile test_zipfile test_codecs"
WL_PYTHON=/usr/bin/python3

wl_python_needs() { echo "$WL_PYTHON:python3"; }
wl_python_setup() {
    "$WL_PYTHON" -c 'import test.libregrtest' 2>/dev/null || {
        echo "the Python test suite is missing (Debian package libpython3.11-testsuite)" >&2
        return 1
    }
    # shellcheck disable=SC2086 # a list of names
    printf '%s\n' ${NEAP_PY_TESTS:-$WL_PY_TESTS} >"$1/tests"
}
wl_python_run() {
    mkdir -p tmp
    # shellcheck disable=SC2046
    TMPDIR=$PWD/tmp PYTHONHASHSEED=0 PYTHONMALLOC=${NEAP_PYTHONMALLOC-malloc} \
        "$WL_PYTHON" -m test --junit-xml "$PWD/junit.xml" $(cat "$1/tests")
}
wl_python_normalize() {
    # Timestamps and load averages off the progress lines, durations off
    # everything; then the outcome of every test case from the JUnit file
    # (parsed by a plain python3, no preload).
    sed -E -e 's/^[0-9]+:[0-9]{2}:[0-9]{2} (load avg: [0-9.]+ )?//' \
        -e '/^Total duration:/d' -e 's/ (passed|failed|skipped)? ?in [0-9.]+ (ms|sec|min)( [0-9]+ sec)?//' \
        -e 's/ \([0-9.]+ (ms|sec|min)( [0-9]+ sec)?\)//' \
        -e 's/0x[0-9a-fA-F]{6,}/0xADDR/g' -e 's/pid [0-9]+/pid N/g' "$2"
    echo "--- test cases (junit.xml) ---"
    if [ -f "$1/junit.xml" ]; then
        env -u LD_PRELOAD "$WL_PYTHON" - "$1/junit.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
# regrtest's JUnit: <testcase name="test.test_x.Class.test_y"> with a child
# <skipped>, <failure> or <error> when not plain ok; <output> (a traceback)
# for expected failures.
rows = []
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    tags = [child.tag for child in case]
    status = "ok"
    for kind in ("output", "skipped", "failure", "error"):
        if kind in tags:
            status = kind
    rows.append("%s %s" % (status, case.get("name", "?")))
counts = {}
for r in rows:
    counts[r.split()[0]] = counts.get(r.split()[0], 0) + 1
print("cases:", len(rows), " ".join("%s=%d" % kv for kv in sorted(counts.items())))
print("\n".join(sorted(rows)))
EOF
    else
        echo "no junit.xml"
    fi
}

# ---------------------------------------------------------------- sqlite
# The sqlite3 shell on an in-memory database: 300k + 600k rows made by
# recursive CTEs, indexes, updates, deletes, joins, group by, window
# functions, json_each, group_concat, VACUUM, integrity_check.
WL_SQLITE_ROWS=${NEAP_SQLITE_ROWS:-300000}
wl_sqlite_needs() { echo "sqlite3:sqlite3"; }
wl_sqlite_setup() {
    local n=$WL_SQLITE_ROWS
    cat >"$1/work.sql" <<EOF
.bail on
PRAGMA cache_size = -400000;
CREATE TABLE item(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, price REAL, tags TEXT);
CREATE TABLE grp(id INTEGER PRIMARY KEY, label TEXT, parent INTEGER);
CREATE TABLE sale(id INTEGER PRIMARY KEY, item INTEGER, qty INTEGER, day INTEGER, note TEXT);
WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < $n)
INSERT INTO item SELECT x, (x * 7919) % 997, printf('item-%06d-%s', (x * 104729) % 1000003, hex(x * x)),
  ((x * 31337) % 100000) / 100.0, printf('t%d,t%d,t%d', x % 13, x % 29, x % 101) FROM s;
WITH RECURSIVE s(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM s WHERE x < 996)
INSERT INTO grp SELECT x, printf('group %03d %s', x, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26, 1 + x % 7)),
  x / 10 FROM s;
WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < $n * 2)
INSERT INTO sale SELECT x, 1 + (x * 2654435761) % $n, 1 + x % 17, x % 365,
  CASE WHEN x % 5 = 0 THEN printf('note %d', x) END FROM s;
CREATE INDEX item_grp ON item(grp, price);
CREATE INDEX item_name ON item(name);
CREATE INDEX sale_item ON sale(item);
CREATE INDEX sale_day ON sale(day, qty);
SELECT 'items', count(*), sum(grp), printf('%.2f', total(price)), sum(length(name)) FROM item;
SELECT 'sales', count(*), sum(qty), count(note) FROM sale;
UPDATE item SET price = price * 1.1, name = name || '-x' WHERE grp % 7 = 3;
UPDATE sale SET note = coalesce(note, '') || '+' WHERE day BETWEEN 100 AND 130;
DELETE FROM sale WHERE qty = 13 AND day % 3 = 0;
DELETE FROM item WHERE id % 101 = 0;
SELECT 'after', (SELECT count(*) FROM item), (SELECT count(*) FROM sale), (SELECT sum(length(note)) FROM sale);
SELECT g.label, count(*) AS n, sum(s.qty) AS q, printf('%.2f', sum(s.qty * i.price)) AS revenue
  FROM sale s JOIN item i ON i.id = s.item JOIN grp g ON g.id = i.grp
  GROUP BY g.id ORDER BY sum(s.qty * i.price) DESC, g.id LIMIT 15;
SELECT day, count(*), sum(qty), max(i.name) FROM sale s JOIN item i ON i.id = s.item
  WHERE day % 30 = 0 GROUP BY day ORDER BY day;
SELECT p.parent, count(DISTINCT i.id), printf('%.3f', avg(i.price)) FROM item i JOIN grp p ON p.id = i.grp
  GROUP BY p.parent HAVING count(*) > 1000 ORDER BY 3 DESC, 1 LIMIT 10;
SELECT name FROM item ORDER BY name DESC LIMIT 5;
SELECT count(*), sum(length(x)) FROM (SELECT group_concat(name, ';') AS x FROM item GROUP BY grp);
SELECT 'tags', value, count(*) FROM item, json_each('["' || replace(tags, ',', '","') || '"]')
  GROUP BY value ORDER BY count(*) DESC, value LIMIT 8;
SELECT 'rank', id, grp, rnk FROM
  (SELECT id, grp, rank() OVER (PARTITION BY grp ORDER BY price DESC, id) AS rnk FROM item)
  WHERE rnk = 1 ORDER BY grp LIMIT 10;
SELECT 'checksum', sum(id * 7 + grp), sum(length(name) * id % 1000), printf('%.4f', total(price)) FROM item;
SELECT 'checksum', sum((id % 1000) * qty), sum(day), sum(length(note)) FROM sale;
SELECT 'distinct', count(DISTINCT substr(name, 6, 3)), count(DISTINCT tags) FROM item;
CREATE TABLE wide AS SELECT grp, group_concat(name || tags, '') AS txt FROM item GROUP BY grp;
SELECT 'wide', count(*), sum(length(txt)), max(length(txt)) FROM wide;
DROP TABLE wide;
VACUUM;
PRAGMA integrity_check;
EOF
}
wl_sqlite_run() { sqlite3 <"$1/work.sql"; }
wl_sqlite_normalize() { wl_norm_default "$2"; }

# ---------------------------------------------------------------- git
# git init, 4000 generated files, add and commit (fixed names, emails and
# dates, so every hash is the same in every run), edits, renames, deletes,
# a branch and a merge, then log --stat, diff, blame, grep, archive, gc,
# fsck, count-objects.
WL_GIT_FILES=${NEAP_GIT_FILES:-4000}
wl_git_needs() { echo "git:git" "awk:mawk" "sha256sum:coreutils"; }
wl_git_setup() {
    # tree/: the first commit; v2/: files rewritten by the second commit.
    awk -v n="$WL_GIT_FILES" -v dir="$1" '
    function rnd(m) { seed = (seed * 1103515245 + 12345) % 2147483648; return int(seed / 256) % m }
    function body(f, lines,   s, i, j, k) {
        s = ""
        for (i = 0; i < lines; i++) {
            s = s "line " i " of " f ":"
            k = 3 + rnd(10)
            for (j = 0; j < k; j++) s = s " " w[1 + rnd(nw)]
            s = s "\n"
        }
        return s
    }
    BEGIN {
        seed = 4242
        nw = split("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega", w, " ")
        for (f = 0; f < n; f++) {
            d = sprintf("d%02d/s%d", f % 40, f % 3)
            path = sprintf("%s/tree/%s/f%05d.txt", dir, d, f)
            dirs[dir "/tree/" d] = 1; dirs[dir "/v2/" d] = 1
            files[f] = path
        }
        for (d in dirs) system("mkdir -p \"" d "\"")
        for (f = 0; f < n; f++) {
            printf "%s", body(f, 10 + rnd(60)) > files[f]
            close(files[f])
            if (f % 7 == 0) {
                v2 = files[f]; sub("/tree/", "/v2/", v2)
                printf "%s%s", body(f, 5), body(f + n, 20 + rnd(20)) > v2
                close(v2)
            }
        }
    }'
}
wl_git_run() {
    local src=$1 i
    export HOME=$PWD/home GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
    export GIT_AUTHOR_NAME="Ada Author" GIT_AUTHOR_EMAIL=ada@example.com
    export GIT_COMMITTER_NAME="Cy Committer" GIT_COMMITTER_EMAIL=cy@example.com
    mkdir -p home
    commit() { # DAY MESSAGE
        export GIT_AUTHOR_DATE="2024-01-$1T12:00:00Z" GIT_COMMITTER_DATE="2024-01-$1T12:30:00Z"
        git commit -q -m "$2" || exit
    }
    set -e
    git init -q -b main repo
    cd repo
    git config gc.auto 0
    git config maintenance.auto false
    git config core.fsyncMethod batch 2>/dev/null || true
    cp -R "$src/tree/." .
    git add -A
    commit 01 "initial: $(git ls-files | wc -l) files"
    cp -R "$src/v2/." .
    git add -A
    commit 02 "rewrite every 7th file"
    git mv d05 d05-renamed
    git rm -q -r d07/s1
    for i in d00/s0/f00000.txt d10/s1/f00010.txt d20/s2/f00020.txt d30/s0/f00030.txt; do
        sed 's/alpha/ALPHA/g' "$i" >tmp && mv tmp "$i"
    done
    git add -A
    commit 03 "rename d05, drop d07/s1, shout alpha"
    git checkout -q -b feature
    for i in 11 12 13; do
        for f in "d$i"/s2/*.txt; do echo "feature line for $f" >>"$f"; done
    done
    git add -A
    commit 04 "feature: append to d11-d13/s2"
    git checkout -q main
    for f in d2*/s1/*.txt; do sed '1d' "$f" >tmp && mv tmp "$f"; done
    git add -A
    commit 05 "main: drop the first line of d2*/s1"
    export GIT_AUTHOR_DATE="2024-01-06T12:00:00Z" GIT_COMMITTER_DATE="2024-01-06T12:30:00Z"
    git merge -q --no-edit feature
    set +e
    git log --stat --summary
    git log --oneline --graph --all
    git diff --stat HEAD~3 HEAD | tail -n 5
    git diff HEAD~4 HEAD -- d00 | sha256sum
    git blame -s d10/s1/f00010.txt | head -n 5
    git grep -c omega | sort | tail -n 3
    git grep -h -o -w -e alpha -e ALPHA | sort | uniq -c
    git archive --format=tar HEAD | sha256sum
    git rev-list --all --objects | wc -l
    git gc -q --prune=now
    git fsck --full --strict --no-progress && echo "fsck ok"
    git count-objects -v
    git rev-parse HEAD 'HEAD^{tree}'
}
wl_git_normalize() {
    # Pack sizes depend on the delta search (multithreaded), not on the
    # objects: keep the counts, drop the sizes.
    wl_norm_default "$2" | sed -E 's/^(size|size-pack|size-garbage): [0-9]+$/\1: N/'
}

# ---------------------------------------------------------------- gcc
# gcc -O2 on neap's own C sources (a copy taken at setup, so that edits
# made during the run cannot make two runs differ). The objects land in
# obj/; the caller compares them byte for byte.
WL_CFLAGS="-O2 -c -std=gnu11 -D_GNU_SOURCE -Iinclude -Isrc -g0"
wl_gcc_needs() { echo "gcc:gcc"; }
wl_gcc_setup() {
    mkdir -p "$1/neap"
    cp -R "$WL_REPO_ROOT/src" "$WL_REPO_ROOT/include" "$1/neap/" || return
    (cd "$1/neap" && ls src/*.c src/os/*.c) >"$1/sources" || return
    [ -s "$1/sources" ]
}
wl_gcc_run() {
    local out=$PWD/obj f rc=0
    mkdir -p "$out"
    cd "$1/neap" || exit
    while read -r f; do
        echo "cc $f"
        # shellcheck disable=SC2086
        gcc $WL_CFLAGS "$f" -o "$out/$(echo "${f%.c}" | tr / _).o" || rc=1
    done <"$1/sources"
    return $rc
}
wl_gcc_normalize() { wl_norm_default "$2"; ls "$1/obj"; }

# ---------------------------------------------------------------- cxx
# g++ compiles tests/override/cxx_prog.cpp (std::map, std::string,
# std::vector, std::thread), then the program runs: 6 threads build maps of
# strings and hand strings to each other; it prints checksums.
wl_cxx_needs() { echo "g++:g++"; }
wl_cxx_setup() { cp "$WL_DIR/cxx_prog.cpp" "$1/"; }
wl_cxx_run() {
    g++ -O2 -std=c++17 -pthread "$1/cxx_prog.cpp" -o cxx_prog || exit
    # shellcheck disable=SC2086 # three numbers
    ./cxx_prog ${NEAP_CXX_ARGS:-6 200000 3}
}
wl_cxx_normalize() { wl_norm_default "$2"; }

# ---------------------------------------------------------------- perl, lua
# tests/override/words.pl and words.lua: the same word counting, string
# building, sorting and nested structures in each language (their outputs
# are even identical to each other).
wl_perl_needs() { echo "perl:perl-base"; }
wl_perl_setup() { cp "$WL_DIR/words.pl" "$1/"; }
wl_perl_run() { PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0 perl "$1/words.pl" ${NEAP_WORDS_LINES:+"$NEAP_WORDS_LINES"}; }
wl_perl_normalize() { wl_norm_default "$2"; }

wl_lua_needs() { echo "lua5.4:lua5.4"; }
wl_lua_setup() { cp "$WL_DIR/words.lua" "$1/"; }
wl_lua_run() { lua5.4 "$1/words.lua" ${NEAP_WORDS_LINES:+"$NEAP_WORDS_LINES"}; }
wl_lua_normalize() { wl_norm_default "$2"; }
