# lib.sh: shared functions of the override tests (bash). A test script:
#
#   . "$(dirname "$0")/lib.sh"
#   ov_init sqlite "$@"        # $1: the preload library (default $NEAP_LIB),
#                              # $2: the repository root (default: derived)
#   ov_require sqlite          # the workload's programs are installed
#   ov_check_active sqlite3 -version
#   ov_pair sqlite             # plain run vs LD_PRELOAD run, compared
#   ov_finish                  # "N passed, N failed", exit status
#
# The workloads themselves are in workloads.sh (shared with
# bench/programs.sh). Every check prints PASS: or FAIL: and counts.
# Environment: NEAP_LIB (the library when no $1), OV_KEEP=1 (keep the work
# directory when something failed), OV_TIMEOUT (seconds a plain run may
# take, default 600; the preload run gets max(120, 4 x the plain time)).

OV_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/override/workloads.sh
. "$OV_DIR/workloads.sh"

OV_PASSED=0
OV_FAILED=0
OV_WORK=

ov_pass() { OV_PASSED=$((OV_PASSED + 1)); echo "PASS: $*"; }
ov_fail() { OV_FAILED=$((OV_FAILED + 1)); echo "FAIL: $*"; }

ov_finish() {
    echo "$OV_PASSED passed, $OV_FAILED failed"
    [ "$OV_FAILED" -eq 0 ] && exit 0
    exit 1
}

ov_cleanup() {
    [ -n "$OV_WORK" ] && [ -d "$OV_WORK" ] || return 0
    if [ "${OV_KEEP:-0}" = 1 ] && [ "$OV_FAILED" -gt 0 ]; then
        echo "kept the work directory: $OV_WORK"
    else
        chmod -R u+w "$OV_WORK" 2>/dev/null
        rm -rf "$OV_WORK"
    fi
}

# ov_init NAME [LIB [ROOT]]
ov_init() {
    OV_NAME=$1
    shift
    local lib=${1:-${NEAP_LIB:-}}
    if [ -n "${2:-}" ]; then
        WL_REPO_ROOT=$(cd "$2" && pwd) || { ov_fail "no repository root $2"; ov_finish; }
    fi
    if [ -z "$lib" ]; then
        echo "usage: $0 PRELOAD_LIBRARY [REPO_ROOT]   (or set NEAP_LIB)"
        ov_fail "no preload library given"
        ov_finish
    fi
    if [ ! -f "$lib" ]; then
        ov_fail "preload library $lib does not exist"
        ov_finish
    fi
    case $lib in /*) OV_LIB=$lib ;; *) OV_LIB=$PWD/$lib ;; esac
    OV_LIB_REAL=$(readlink -f "$OV_LIB")
    OV_WORK=$(mktemp -d "${TMPDIR:-/tmp}/neap-override-$OV_NAME.XXXXXX") || exit 1
    trap ov_cleanup EXIT
    trap 'echo "interrupted"; exit 130' INT TERM HUP
    echo "$OV_NAME: library $OV_LIB ($OV_LIB_REAL)"
    ov_check_exports
}

# The library must define malloc (and free), or every preload run would just
# be glibc again and the test would pass for nothing.
ov_check_exports() {
    local syms sym missing=
    if ! command -v nm >/dev/null 2>&1; then
        ov_fail "nm not found (Debian package binutils): cannot check the library's exports"
        ov_finish
    fi
    syms=$(nm -D --defined-only "$OV_LIB" 2>&1) || {
        ov_fail "nm -D cannot read $OV_LIB: $syms"
        ov_finish
    }
    for sym in malloc free calloc realloc; do
        echo "$syms" | grep -qw "$sym" || missing="$missing $sym"
    done
    # grep -w would also accept malloc@GLIBC...; insist on an exact name.
    if ! echo "$syms" | awk '$3 == "malloc" && $2 ~ /^[TWi]$/ { found = 1 } END { exit !found }'; then
        ov_fail "$OV_LIB does not export malloc (nm -D --defined-only); refusing to compare glibc with glibc"
        ov_finish
    fi
    if [ -n "$missing" ]; then
        ov_fail "$OV_LIB does not export:$missing"
    else
        ov_pass "library exports malloc, free, calloc, realloc"
    fi
}

# ov_require WORKLOAD: every program of wl_WORKLOAD_needs is installed.
ov_require() {
    local need prog pkg ok=1
    for need in $("wl_$1_needs"); do
        prog=${need%%:*}
        pkg=${need#*:}
        if ! command -v "$prog" >/dev/null 2>&1; then
            ov_fail "$prog not found: install the Debian package $pkg"
            ok=0
        fi
    done
    [ $ok = 1 ] || ov_finish
}

# ov_check_active [--from REGEX] PROGRAM ARGS...: run PROGRAM under
# LD_PRELOAD with LD_DEBUG=bindings and check that the dynamic linker bound
# malloc and free (from an object other than the library itself: the
# program, libc, ...; with --from, from an object whose path matches the
# extended regex REGEX, e.g. cc1 started by gcc) to the library; and that
# the library really is mapped (/proc/self/maps of a preloaded process).
ov_check_active() {
    local d=$OV_WORK/ld-debug sym bad='' from=''
    if [ "$1" = --from ]; then
        from=$2
        shift 2
    fi
    mkdir -p "$d"
    env -u LD_PRELOAD LD_PRELOAD="$OV_LIB" LD_DEBUG=bindings LD_DEBUG_OUTPUT="$d/log" \
        "$@" >/dev/null 2>&1 </dev/null
    for sym in malloc free; do
        cat "$d"/log.* 2>/dev/null | grep -F " to $OV_LIB [" | grep -F "normal symbol \`$sym'" |
            grep -vF "binding file $OV_LIB " | grep -E "binding file [^ ]*(${from:-.})" | grep -q . ||
            bad="$bad $sym"
    done
    if [ -n "$bad" ]; then
        ov_fail "$* under LD_PRELOAD: the dynamic linker did not bind$bad${from:+ (from an object matching $from)} to $OV_LIB (LD_DEBUG=bindings)"
    elif ! env -u LD_PRELOAD LD_PRELOAD="$OV_LIB" cat /proc/self/maps | grep -qF "$OV_LIB_REAL"; then
        ov_fail "$OV_LIB_REAL is not in /proc/self/maps of a preloaded process"
    else
        ov_pass "$1 binds malloc and free to the preloaded library${from:+ (in $from)}"
    fi
    rm -rf "$d"
}

ov_now() { date +%s.%N; }
ov_secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

ov_describe_rc() {
    local rc=$1
    if [ "$rc" -eq 124 ]; then
        echo "$rc (timed out)"
    elif [ "$rc" -gt 128 ]; then
        echo "$rc (killed by SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128))))"
    else
        echo "$rc"
    fi
}

# ov_run_workload NAME SRC OUT LIB TIMEOUT: one run of the workload in the
# fresh directory OUT (LIB empty: plain), stdout+stderr to OUT.log.
ov_run_workload() {
    local name=$1 src=$2 out=$3 lib=$4 limit=$5
    mkdir -p "$out"
    wl_argv "$name" "$src"
    if [ -n "$lib" ]; then
        (cd "$out" && exec timeout -k 10 "$limit" env -u LD_PRELOAD LD_PRELOAD="$lib" "${WL_ARGV[@]}") \
            >"$out.log" 2>&1 </dev/null
    else
        (cd "$out" && exec timeout -k 10 "$limit" env -u LD_PRELOAD "${WL_ARGV[@]}") \
            >"$out.log" 2>&1 </dev/null
    fi
}

# ov_pair NAME [--allow-plain-failure]: set the workload up, run it plain
# and under LD_PRELOAD, compare the normalized output and the exit status.
# When they differ, the pair runs once more and the second verdict counts,
# with the first difference left in the log: the real programs' own test
# suites have timing-dependent tests (python's threaded lru_cache test has
# failed in the *plain* run on a loaded machine), and a difference neap
# causes shows up twice.
# The two run directories stay as $OV_WORK/NAME-plain and NAME-preload for
# the caller (gcc.sh compares the objects). A plain run that fails means
# the test itself is broken: a failure unless --allow-plain-failure (the
# python tests: a test that fails here fails alike in both runs).
ov_pair() {
    if ov_pair_once "$@" quiet; then
        return 0
    fi
    echo "--- $1: the runs differed; running the pair again (the second verdict counts)"
    rm -rf "$OV_WORK/$1-src" "$OV_WORK/$1-plain" "$OV_WORK/$1-preload"
    ov_pair_once "$@"
}

# ov_pair_once NAME [--allow-plain-failure] [quiet]: one pair; with quiet,
# a difference is printed but not counted as a failure (returns 1).
ov_pair_once() {
    local name=$1 allow=${2:-} quiet=${3:-} src=$OV_WORK/$1-src plain=$OV_WORK/$1-plain preload=$OV_WORK/$1-preload
    [ "$allow" = quiet ] && allow= quiet=quiet
    local t0 t1 t2 rc_plain rc_preload limit same=1
    mkdir -p "$src"
    if ! (wl_env && "wl_${name}_setup" "$src"); then
        ov_fail "$name: setting up the workload failed"
        return 1
    fi
    t0=$(ov_now)
    ov_run_workload "$name" "$src" "$plain" "" "${OV_TIMEOUT:-600}"
    rc_plain=$?
    t1=$(ov_now)
    limit=$(awk -v a="$t0" -v b="$t1" 'BEGIN { l = int(4 * (b - a)) + 1; print (l < 120 ? 120 : l) }')
    ov_run_workload "$name" "$src" "$preload" "$OV_LIB" "$limit"
    rc_preload=$?
    t2=$(ov_now)
    OV_SECS_PLAIN=$(ov_secs "$t0" "$t1")
    OV_SECS_PRELOAD=$(ov_secs "$t1" "$t2")
    echo "$name: plain ${OV_SECS_PLAIN} s (exit $(ov_describe_rc $rc_plain)), preload ${OV_SECS_PRELOAD} s (exit $(ov_describe_rc $rc_preload), limit ${limit} s)"
    "wl_${name}_normalize" "$plain" "$plain.log" >"$plain.norm" 2>&1
    "wl_${name}_normalize" "$preload" "$preload.log" >"$preload.norm" 2>&1
    if [ "$rc_plain" -ne 0 ] && [ "$allow" != --allow-plain-failure ]; then
        echo "--- $name: the plain run (no preload) failed with exit $(ov_describe_rc $rc_plain); last lines:"
        tail -n 20 "$plain.log" | sed 's/^/    /'
        [ -n "$quiet" ] || ov_fail "$name: the plain run (no preload) failed"
        return 1
    fi
    if ! cmp -s "$plain.norm" "$preload.norm"; then
        same=0
        echo "--- $name: normalized output differs (first 40 lines of diff -u plain preload):"
        diff -u --label plain --label preload "$plain.norm" "$preload.norm" | head -n 40
    fi
    if [ "$rc_plain" -ne "$rc_preload" ]; then
        same=0
        echo "--- $name: exit status differs: plain $(ov_describe_rc $rc_plain), preload $(ov_describe_rc $rc_preload); last lines of the preload run:"
        tail -n 20 "$preload.log" | sed 's/^/    /'
    fi
    if [ $same = 1 ]; then
        ov_pass "$name: output ($(wc -l <"$plain.norm") normalized lines) and exit status ($rc_plain) identical"
    elif [ -n "$quiet" ]; then
        return 1
    else
        ov_fail "$name: plain and preloaded runs differ (exit codes: plain $rc_plain, preload $rc_preload)"
    fi
}
