#!/bin/sh
# run-micro.sh: run bench/micro.c under neap and the reference allocators.
#
# Builds two binaries from bench/micro.c into BUILD/bench/:
#   micro-neap  -DNEAP_NATIVE, neap_malloc/neap_free, linked to BUILD/libneap.a
#   micro-libc  plain malloc/free: glibc, or what LD_PRELOAD puts in front
# then, for each repetition and each workload, runs every allocator found,
# rotating the order each repetition so that drift (thermal, noisy
# neighbours) hits all of them alike:
#   neap          micro-neap
#   neap-preload  LD_PRELOAD=BUILD/libneap.so micro-libc (only once
#                 libneap.so exports malloc: the drop-in override)
#   glibc         micro-libc
#   mimalloc      LD_PRELOAD=libmimalloc.so.2 micro-libc
#   jemalloc      LD_PRELOAD=libjemalloc.so.2 micro-libc
#   tcmalloc      LD_PRELOAD=libtcmalloc_minimal.so.4 micro-libc
# Every run is a row of BUILD/bench/micro.csv
# (allocator,workload,rep,seconds,ns_per_op,maxrss_kib); raw output goes
# to BUILD/bench/micro.log. At the end a table per workload gives medians
# and ratios. Exit status 0 when every run succeeded, 1 when a run or the
# neap build failed (the table still prints), 2 for bad usage or when
# micro-libc does not build.
#
# Environment: CC (default cc), CFLAGS (default -O2 -g), NEAP_BUILD_DIR
# (default <repo>/build), NEAP_LDLIBS (extra libraries for libneap.a),
# MIMALLOC_SO, JEMALLOC_SO, TCMALLOC_SO (a reference allocator's .so
# instead of the system one).
# POSIX sh; taskset is used when present.

set -eu

usage() {
    cat <<EOF
usage: $0 [-r N] [-n OPS] [--only WORKLOAD] [--no-build]
  -r N             repetitions (default 5)
  -n OPS           timed operations per run, every workload
                   (default: micro's own, about 0.5-1 s under glibc)
  --only WORKLOAD  run one workload: mixed or prodcons
  --no-build       use the binaries already in BUILD/bench
EOF
}

die() {
    echo "run-micro: $*" >&2
    exit 2
}

is_count() {
    case $1 in
    '' | *[!0-9]*) return 1 ;;
    esac
    [ "$1" -gt 0 ]
}

reps=5
ops=
only=
build=1
while [ $# -gt 0 ]; do
    case $1 in
    -r) [ $# -ge 2 ] || die "-r needs a value"; reps=$2; shift 2 ;;
    -r*) reps=${1#-r}; shift ;;
    -n) [ $# -ge 2 ] || die "-n needs a value"; ops=$2; shift 2 ;;
    -n*) ops=${1#-n}; shift ;;
    --only) [ $# -ge 2 ] || die "--only needs a value"; only=$2; shift 2 ;;
    --only=*) only=${1#--only=}; shift ;;
    --no-build) build=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
is_count "$reps" || die "-r wants a positive integer, not '$reps'"
[ -z "$ops" ] || is_count "$ops" || die "-n wants a positive integer, not '$ops'"

workloads="mixed prodcons"
if [ -n "$only" ]; then
    case " $workloads " in
    *" $only "*) workloads=$only ;;
    *) die "unknown workload '$only' (have: $workloads)" ;;
    esac
fi

root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
builddir=${NEAP_BUILD_DIR:-$root/build}
out=$builddir/bench
mkdir -p "$out"
src=$root/bench/micro.c
neap_a=$builddir/libneap.a
neap_so=$builddir/libneap.so
cc=${CC:-cc}
cflags=${CFLAGS:--O2 -g}
# The project's strict warning list (STYLE.md), fatal here too.
warn="-std=c11 -Wall -Wextra -Wshadow -Wconversion -Wmissing-prototypes -Wstrict-prototypes -Werror"
failed=0
shared=0

# A preloaded allocator must not leak into the glibc or neap rows.
if [ -n "${LD_PRELOAD:-}" ]; then
    echo "run-micro: ignoring LD_PRELOAD=$LD_PRELOAD from the environment"
    unset LD_PRELOAD
fi

# ---- build ----------------------------------------------------------------

have_neap=0
if [ "$build" = 1 ]; then
    # shellcheck disable=SC2086 # cflags/warn are word lists on purpose
    $cc $cflags $warn -pthread "$src" -o "$out/micro-libc" ||
        die "building micro-libc failed"
    if [ -f "$neap_a" ]; then
        # shellcheck disable=SC2086
        if $cc $cflags $warn -pthread -DNEAP_NATIVE -I"$root/include" "$src" \
            "$neap_a" ${NEAP_LDLIBS:-} -o "$out/micro-neap"; then
            have_neap=1
        else
            echo "run-micro: building micro-neap against $neap_a failed; neap skipped"
            failed=1
        fi
    fi
else
    [ -x "$out/micro-libc" ] || die "--no-build: $out/micro-libc is missing"
    [ -x "$out/micro-neap" ] && have_neap=1
fi

# ---- which allocators -------------------------------------------------------

# Reference allocators: the Debian/Ubuntu packages' sonames, looked up in the
# multiarch directory first.
multiarch=$($cc -print-multiarch 2>/dev/null || true)
find_so() {
    for d in ${multiarch:+/usr/lib/$multiarch} /usr/lib64 /usr/lib /usr/local/lib; do
        if [ -f "$d/$1" ]; then
            echo "$d/$1"
            return 0
        fi
    done
    return 1
}

# Does $1 define malloc in its dynamic symbol table (the drop-in override)?
exports_malloc() {
    nm -D --defined-only "$1" 2>/dev/null | awk '
        { name = $NF; sub(/@.*/, "", name) }
        name == "malloc" && $(NF - 1) ~ /^[TWi]$/ { found = 1 }
        END { exit !found }'
}

allocators=
if [ "$have_neap" = 1 ]; then
    allocators="neap"
elif [ "$build" = 1 ] && [ ! -f "$neap_a" ]; then
    echo "skip neap: $neap_a not found (build neap first)"
elif [ "$build" = 0 ]; then
    echo "skip neap: $out/micro-neap not found"
fi

pre_neap=
if [ ! -f "$neap_so" ]; then
    echo "skip neap-preload: $neap_so not found"
elif ! command -v nm >/dev/null 2>&1; then
    echo "skip neap-preload: nm not found (binutils), cannot tell whether libneap.so exports malloc"
elif exports_malloc "$neap_so"; then
    pre_neap=$neap_so
    allocators="$allocators neap-preload"
else
    echo "skip neap-preload: $neap_so does not export malloc yet (no drop-in override)"
fi

allocators="$allocators glibc"

install_hint="apt-get install libmimalloc2.0 libjemalloc2 libtcmalloc-minimal4"
pre_mimalloc=
pre_jemalloc=
pre_tcmalloc=
# reference NAME SONAME OVERRIDE: sets pre_NAME and adds NAME when found.
reference() {
    if [ -n "$3" ]; then
        so=$3
        [ -f "$so" ] || so=
    else
        so=$(find_so "$2" || true)
    fi
    eval "pre_$1=\$so"
    if [ -n "$so" ]; then
        allocators="$allocators $1"
    elif [ -n "$3" ]; then
        echo "skip $1: $3 not found"
    else
        echo "skip $1: $2 not found ($install_hint)"
    fi
}
reference mimalloc libmimalloc.so.2 "${MIMALLOC_SO:-}"
reference jemalloc libjemalloc.so.2 "${JEMALLOC_SO:-}"
reference tcmalloc libtcmalloc_minimal.so.4 "${TCMALLOC_SO:-}"
# shellcheck disable=SC2086
set -- $allocators
nalloc=$#
allocators=$*

# ---- CPU pinning -------------------------------------------------------------

# Pin mixed to the last allowed CPU and prodcons to the last two, so runs do
# not migrate; without taskset (or on one CPU) run unpinned.
cpus=
if command -v taskset >/dev/null 2>&1; then
    cpus=$(taskset -pc $$ 2>/dev/null | sed 's/.*: *//' | awk -F, '{
        for (i = 1; i <= NF; i++) {
            n = split($i, r, "-")
            lo = r[1]; hi = (n > 1) ? r[2] : r[1]
            for (c = lo + 0; c <= hi + 0; c++) printf "%d ", c
        }
    }') || cpus=
fi
pin_mixed=
pin_prodcons=
if [ -n "$cpus" ]; then
    # shellcheck disable=SC2086
    set -- $cpus
    ncpu=$#
    last1=$(echo "$cpus" | awk '{ print $NF }')
    last2=$(echo "$cpus" | awk '{ print $(NF - 1) "," $NF }')
    pin_mixed="taskset -c $last1"
    if [ "$ncpu" -ge 2 ]; then
        pin_prodcons="taskset -c $last2"
        echo "pinning: mixed on CPU $last1, prodcons on CPUs $last2"
    else
        echo "pinning: mixed on CPU $last1, prodcons unpinned (one CPU allowed)"
    fi
else
    echo "pinning: none (taskset not found)"
fi

# ---- runs --------------------------------------------------------------------

csv=$out/micro.csv
log=$out/micro.log
tmp=$(mktemp -d "${TMPDIR:-/tmp}/run-micro.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
echo "allocator,workload,rep,seconds,ns_per_op,maxrss_kib" >"$csv"
: >"$log"

# rotate K WORD...: the words with the first K moved to the end.
rotate() {
    k=$1
    shift
    front=
    back=
    i=0
    for word; do
        if [ "$i" -lt "$k" ]; then front="$front $word"; else back="$back $word"; fi
        i=$((i + 1))
    done
    # shellcheck disable=SC2086 # split on purpose: one word per allocator
    echo $back $front
}

# run_one ALLOCATOR WORKLOAD REP: one run, one CSV row.
run_one() {
    a=$1
    w=$2
    r=$3
    bin=$out/micro-libc
    pre=
    case $a in
    neap) bin=$out/micro-neap ;;
    neap-preload) pre=$pre_neap ;;
    glibc) ;;
    mimalloc) pre=$pre_mimalloc ;;
    jemalloc) pre=$pre_jemalloc ;;
    tcmalloc) pre=$pre_tcmalloc ;;
    esac
    case $w in
    mixed) pin=$pin_mixed ;;
    *) pin=$pin_prodcons ;;
    esac
    # shellcheck disable=SC2086 # $pin is a word list or empty
    if $pin env ${pre:+LD_PRELOAD=$pre} "$bin" ${ops:+-n "$ops"} "$w" \
        >"$tmp/out" 2>"$tmp/err"; then
        rc=0
    else
        rc=$?
    fi
    {
        echo "# $a $w rep=$r rc=$rc"
        cat "$tmp/out" "$tmp/err"
    } >>"$log"
    line=$(grep '^workload=' "$tmp/out" || true)
    why=
    if [ "$rc" != 0 ]; then
        why="exit status $rc"
    elif [ -z "$line" ]; then
        why="no result line"
    elif grep -q 'cannot be preloaded' "$tmp/err"; then
        why="LD_PRELOAD of $pre failed"
    fi
    if [ -n "$why" ]; then
        failed=1
        printf 'rep %d/%d  %-9s %-13s FAILED: %s\n' "$r" "$reps" "$w" "$a" "$why"
        sed 's/^/    /' "$tmp/err" | tail -n 5
        return 0
    fi
    row=$(echo "$line" | awk '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        print v["seconds"] "," v["ns_per_op"] "," v["maxrss_kib"] "," v["cpu_per_wall"]
    }')
    echo "$a,$w,$r,${row%,*}" >>"$csv"
    echo "$row" | awk -F, -v r="$r" -v n="$reps" -v w="$w" -v a="$a" '{
        printf "rep %d/%d  %-9s %-13s %9.4f s %9.2f ns/op %8d KiB  cpu/wall %s\n", \
            r, n, w, a, $1, $2, $3, $4
    }'
    # Two threads that never ran side by side measured a same-CPU hand-off.
    if [ "$w" = prodcons ] && echo "$row" | awk -F, '{ exit !($4 < 1.25) }'; then
        shared=$((shared + 1))
    fi
}

echo "allocators: $allocators"
echo "workloads: $workloads; repetitions: $reps${ops:+; ops per run: $ops}"
rep=1
while [ "$rep" -le "$reps" ]; do
    # shellcheck disable=SC2086
    order=$(rotate $(((rep - 1) % nalloc)) $allocators)
    for w in $workloads; do
        for a in $order; do
            run_one "$a" "$w" "$rep"
        done
    done
    rep=$((rep + 1))
done

# ---- summary -------------------------------------------------------------------

echo
echo "results: $csv"
for w in $workloads; do
    awk -F, -v w="$w" -v order="$allocators" -v reps="$reps" '
    function median(list,    a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) {          # insertion sort: n is small
            t = a[i] + 0
            for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
            a[j + 1] = t
        }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    NR > 1 && $2 == w {
        sec[$1] = sec[$1] " " $4; ns[$1] = ns[$1] " " $5; rss[$1] = rss[$1] " " $6
        runs[$1]++
    }
    END {
        na = split(order, names, " ")
        best = ""
        for (i = 1; i <= na; i++) {
            a = names[i]
            if (!(a in runs)) continue
            msec[a] = median(sec[a]); mns[a] = median(ns[a]); mrss[a] = median(rss[a])
            if (a !~ /^neap/ && (best == "" || mns[a] < mns[best])) best = a
        }
        printf "\n%s: medians of %d runs; ratio = ns/op / reference ns/op (below 1 is faster)\n", w, reps
        printf "%-13s %10s %10s %11s %5s %14s %12s\n", "allocator", "seconds", "ns/op", \
            "maxrss_kib", "runs", "vs_fastest", "vs_mimalloc"
        for (i = 1; i <= na; i++) {
            a = names[i]
            if (!(a in runs)) {
                printf "%-13s %10s %10s %11s %5s\n", a, "-", "-", "-", "0/" reps
                continue
            }
            vf = (best != "") ? sprintf("%.2f", mns[a] / mns[best]) : "-"
            vm = ("mimalloc" in mns) ? sprintf("%.2f", mns[a] / mns["mimalloc"]) : "-"
            printf "%-13s %10.4f %10.2f %11d %5s %14s %12s\n", a, msec[a], mns[a], mrss[a], \
                runs[a] "/" reps, vf, vm
        }
        if (best != "") printf "vs_fastest: relative to %s, the fastest allocator other than neap\n", best
    }' "$csv"
done

if [ "$shared" != 0 ]; then
    echo
    echo "note: $shared prodcons runs had cpu/wall below 1.25: producer and consumer"
    echo "shared a CPU (a busy or small machine), so those runs measured a same-CPU"
    echo "hand-off rather than a cross-core remote free; see $log"
fi

if [ "$failed" != 0 ]; then
    echo
    echo "run-micro: some runs or builds failed; see $log"
    exit 1
fi
exit 0
