#!/bin/bash
# programs.sh: real programs under glibc, mimalloc and neap (LD_PRELOAD).
#
# The workloads are the override tests' (tests/override/workloads.sh):
#   python  /usr/bin/python3 -m test, a CPU-bound list of its own tests
#           (PYTHONMALLOC=malloc; NEAP_PY_TESTS replaces the list)
#   sqlite  the sqlite3 shell on a generated SQL script (300k + 600k rows)
#   git     init/add/commit/merge/log/gc/fsck on 4000 generated files
#   gcc     gcc -O2 -c on neap's own sources
#   cxx     g++ compiles tests/override/cxx_prog.cpp, then runs it (6 threads)
#   perl    tests/override/words.pl
#   lua     tests/override/words.lua
# Each workload is set up once (untimed). Then, for each repetition and
# each workload, every allocator runs it once, in an order rotated each
# repetition, under bench/runstat (build/bench/runstat, built by make): wall time,
# user and system time, peak RSS (the largest single process of the
# workload), minor faults, exit status. The whole workload runs under the
# allocator: the shell that drives it and every process it starts.
# Every run's normalized output is compared with glibc's first run; a run
# that fails or prints something else is reported and left out of the
# medians.
#
# Output: a Markdown table per workload (medians, and neap's ratios to
# glibc and to mimalloc) and a summary table, on stdout and in
# BENCH/programs.md; every run as a row of BENCH/programs.csv
# (allocator,workload,rep,elapsed_s,user_s,sys_s,maxrss_kib,minflt,exit_status,output_ok).
# Exit status 0 when every run succeeded with the expected output, 1 when
# one did not, 2 for bad usage.
#
# Environment: NEAP_BUILD_DIR (default <repo>/build), NEAP_SO (default
# NEAP_BUILD_DIR/libneap.so), MIMALLOC_SO (default the system's
# libmimalloc.so.2), NEAP_BENCH_DIR (where runstat and the results go,
# default NEAP_BUILD_DIR/bench), CC (default cc), BENCH_TIMEOUT (seconds
# per run, default 900), plus the workloads' own (NEAP_PY_TESTS,
# NEAP_PYTHONMALLOC, NEAP_SQLITE_ROWS, NEAP_GIT_FILES, NEAP_CXX_ARGS,
# NEAP_WORDS_LINES).

set -u

usage() {
    cat <<EOF
usage: $0 [-r REPS] [--only W1,W2,...] [--alloc A1,A2,...]
  -r REPS     repetitions (default 3)
  --only      workloads, from: python sqlite git gcc cxx perl lua (default all)
  --alloc     allocators, from: glibc mimalloc neap (default all that are there)
EOF
    exit 2
}

reps=3
only=
allocs_wanted="glibc mimalloc neap"
while [ $# -gt 0 ]; do
    case $1 in
    -r) [ $# -ge 2 ] || usage; reps=$2; shift 2 ;;
    --only) [ $# -ge 2 ] || usage; only=$(echo "$2" | tr , ' '); shift 2 ;;
    --alloc) [ $# -ge 2 ] || usage; allocs_wanted=$(echo "$2" | tr , ' '); shift 2 ;;
    -h | --help) usage ;;
    *) usage ;;
    esac
done
case $reps in '' | *[!0-9]* | 0) usage ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
build=${NEAP_BUILD_DIR:-$root/build}
neap_so=${NEAP_SO:-$build/libneap.so}
mimalloc_so=${MIMALLOC_SO:-/usr/lib/x86_64-linux-gnu/libmimalloc.so.2}
bench=${NEAP_BENCH_DIR:-$build/bench}

# shellcheck source=tests/override/workloads.sh
WL_REPO_ROOT=$root
. "$root/tests/override/workloads.sh"
: "${NEAP_PY_TESTS:=$WL_PY_TESTS_BENCH}"
export NEAP_PY_TESTS

mkdir -p "$bench" || exit 2
runstat=$build/bench/runstat # built by CMake (make)
if [ ! -x "$runstat" ]; then
    echo "programs.sh: $runstat missing: run make first" >&2
    exit 2
fi

# The allocators: NAME and its library (empty: glibc, no preload).
names=()
libs=()
for a in $allocs_wanted; do
    case $a in
    glibc) names+=(glibc); libs+=("") ;;
    mimalloc)
        if [ -f "$mimalloc_so" ]; then
            names+=(mimalloc); libs+=("$mimalloc_so")
        else
            echo "programs.sh: no $mimalloc_so (Debian package libmimalloc2.0): mimalloc left out" >&2
        fi ;;
    neap)
        if nm -D --defined-only "$neap_so" 2>/dev/null | awk '$3 == "malloc" { f = 1 } END { exit !f }'; then
            case $neap_so in /*) ;; *) neap_so=$PWD/$neap_so ;; esac
            names+=(neap); libs+=("$neap_so")
        else
            echo "programs.sh: $neap_so is missing or does not export malloc: neap left out" >&2
        fi ;;
    *) echo "programs.sh: unknown allocator $a" >&2; usage ;;
    esac
done
[ ${#names[@]} -gt 0 ] || { echo "programs.sh: no allocator to run" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/neap-programs.XXXXXX") || exit 2
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM HUP

# Set the workloads up; leave out those whose programs are missing.
workloads=()
for w in ${only:-$WL_ALL}; do
    case " $WL_ALL " in *" $w "*) ;; *) echo "programs.sh: unknown workload $w" >&2; usage ;; esac
    missing=
    for need in $("wl_${w}_needs"); do
        command -v "${need%%:*}" >/dev/null 2>&1 || missing="$missing ${need%%:*} (Debian package ${need#*:})"
    done
    if [ -n "$missing" ]; then
        echo "programs.sh: $w left out, not installed:$missing" >&2
        continue
    fi
    mkdir -p "$work/$w-src"
    if ! (wl_env && "wl_${w}_setup" "$work/$w-src"); then
        echo "programs.sh: setting up $w failed: left out" >&2
        continue
    fi
    workloads+=("$w")
done
[ ${#workloads[@]} -gt 0 ] || { echo "programs.sh: no workload to run" >&2; exit 2; }

csv=$bench/programs.csv
echo "allocator,workload,rep,elapsed_s,user_s,sys_s,maxrss_kib,minflt,exit_status,output_ok" >"$csv"
echo "programs.sh: ${#workloads[@]} workloads (${workloads[*]}) x ${#names[@]} allocators (${names[*]}) x $reps reps; runs in $work" >&2
status=0
mkdir -p "$work/norm"
n=${#names[@]}
for rep in $(seq 1 "$reps"); do
    for w in "${workloads[@]}"; do
        for k in $(seq 0 $((n - 1))); do
            i=$(((k + rep - 1) % n))
            name=${names[$i]}
            lib=${libs[$i]}
            out=$work/run
            chmod -R u+w "$out" 2>/dev/null
            rm -rf "$out" "$work/stat"
            mkdir -p "$out"
            wl_argv "$w" "$work/$w-src"
            (
                cd "$out" || exit
                if [ -n "$lib" ]; then
                    exec env -u LD_PRELOAD "$runstat" -o "$work/stat" -- timeout -k 10 "${BENCH_TIMEOUT:-900}" \
                        env LD_PRELOAD="$lib" "${WL_ARGV[@]}"
                else
                    exec env -u LD_PRELOAD "$runstat" -o "$work/stat" -- timeout -k 10 "${BENCH_TIMEOUT:-900}" \
                        "${WL_ARGV[@]}"
                fi
            ) >"$work/run.log" 2>&1 </dev/null
            read -r el us sy rss flt code <"$work/stat" || { el=0 us=0 sy=0 rss=0 flt=0 code=255; }
            # Same output as glibc's first run (the reference)?
            norm=$work/norm/$w-$name-$rep
            "wl_${w}_normalize" "$out" "$work/run.log" >"$norm" 2>&1
            ref=$work/norm/$w-glibc-1
            ok=yes
            if [ "$code" -ne 0 ]; then
                ok=no
            elif [ -f "$ref" ] && ! cmp -s "$ref" "$norm"; then
                ok=no
            fi
            echo "$name,$w,$rep,$el,$us,$sy,$rss,$flt,$code,$ok" >>"$csv"
            printf 'rep %d/%d %-7s %-9s %8.2f s %8.1f MiB  exit %d%s\n' "$rep" "$reps" "$w" "$name" "$el" \
                "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$code" "$([ $ok = yes ] || echo '  FAILED')" >&2
            if [ $ok = no ]; then
                status=1
                cp "$work/run.log" "$bench/programs-failed-$w-$name-$rep.log"
                echo "  output kept in $bench/programs-failed-$w-$name-$rep.log; last lines:" >&2
                tail -n 10 "$work/run.log" | sed 's/^/    /' >&2
                if [ -f "$ref" ] && [ "$code" -eq 0 ]; then
                    diff -u --label glibc --label "$name" "$ref" "$norm" | head -n 20 | sed 's/^/    /' >&2
                fi
            fi
        done
    done
done
# Runs that came before glibc's first one (never, with glibc first in the
# list) were compared with nothing: check them now.
for w in "${workloads[@]}"; do
    ref=$work/norm/$w-glibc-1
    [ -f "$ref" ] || continue
    for f in "$work/norm/$w"-*; do
        cmp -s "$ref" "$f" && continue
        b=${f##*/}
        rest=${b#"$w"-}
        if awk -F, -v a="${rest%-*}" -v w="$w" -v r="${rest##*-}" \
            '$1 == a && $2 == w && $3 == r && $10 == "yes" { f = 1 } END { exit !f }' "$csv"; then
            echo "programs.sh: $w under ${rest%-*} (rep ${rest##*-}) printed something else than glibc" >&2
            awk -F, -v OFS=, -v a="${rest%-*}" -v w="$w" -v r="${rest##*-}" \
                '$1 == a && $2 == w && $3 == r { $10 = "no" } { print }' "$csv" >"$csv.tmp" && mv "$csv.tmp" "$csv"
            status=1
        fi
    done
done

# ---------------------------------------------------------------- tables
# median COLUMN WORKLOAD ALLOCATOR: over the runs that succeeded.
median() {
    awk -F, -v c="$1" -v w="$2" -v a="$3" '$2 == w && $1 == a && $10 == "yes" { print $c }' "$csv" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
okcount() {
    awk -F, -v w="$1" -v a="$2" '$2 == w && $1 == a { n++; if ($10 == "yes") k++ } END { printf "%d/%d", k, n }' "$csv"
}
fmt() { # VALUE DIVISOR DECIMALS
    awk -v v="$1" -v d="$2" -v p="$3" 'BEGIN { if (v == "-") print "-"; else printf "%.*f\n", p, v / d }'
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f\n", a / b }'
}

md=$bench/programs.md
{
    echo "# Real programs: glibc, mimalloc, neap"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $reps repetitions; medians of the successful runs."
    echo "Wall: elapsed seconds of the whole workload. RSS: peak resident set of its largest process."
    for w in "${workloads[@]}"; do
        echo
        echo "### $w"
        echo
        echo "| allocator | wall s | peak RSS MiB | user s | sys s | minor faults | runs ok |"
        echo "|---|--:|--:|--:|--:|--:|--:|"
        for name in "${names[@]}"; do
            echo "| $name | $(fmt "$(median 4 "$w" "$name")" 1 2) | $(fmt "$(median 7 "$w" "$name")" 1024 1) |" \
                "$(fmt "$(median 5 "$w" "$name")" 1 2) | $(fmt "$(median 6 "$w" "$name")" 1 2) |" \
                "$(fmt "$(median 8 "$w" "$name")" 1 0) | $(okcount "$w" "$name") |"
        done
        for base in glibc mimalloc; do
            case " ${names[*]} " in *" neap "*) ;; *) continue ;; esac
            case " ${names[*]} " in *" $base "*) ;; *) continue ;; esac
            echo "| neap / $base | $(ratio "$(median 4 "$w" neap)" "$(median 4 "$w" "$base")") |" \
                "$(ratio "$(median 7 "$w" neap)" "$(median 7 "$w" "$base")") |" \
                "$(ratio "$(median 5 "$w" neap)" "$(median 5 "$w" "$base")") |" \
                "$(ratio "$(median 6 "$w" neap)" "$(median 6 "$w" "$base")") |" \
                "$(ratio "$(median 8 "$w" neap)" "$(median 8 "$w" "$base")") | |"
        done
    done
    echo
    echo "### Summary (median wall s / peak RSS MiB)"
    echo
    header="| workload |"
    rule="|---|"
    for name in "${names[@]}"; do
        header="$header $name |"
        rule="$rule--:|"
    done
    for base in glibc mimalloc; do
        case " ${names[*]} " in *" neap "*) ;; *) continue ;; esac
        case " ${names[*]} " in *" $base "*) ;; *) continue ;; esac
        header="$header neap / $base |"
        rule="$rule--:|"
    done
    echo "$header"
    echo "$rule"
    for w in "${workloads[@]}"; do
        row="| $w |"
        for name in "${names[@]}"; do
            row="$row $(fmt "$(median 4 "$w" "$name")" 1 2) / $(fmt "$(median 7 "$w" "$name")" 1024 0) |"
        done
        for base in glibc mimalloc; do
            case " ${names[*]} " in *" neap "*) ;; *) continue ;; esac
            case " ${names[*]} " in *" $base "*) ;; *) continue ;; esac
            row="$row $(ratio "$(median 4 "$w" neap)" "$(median 4 "$w" "$base")") / $(ratio "$(median 7 "$w" neap)" "$(median 7 "$w" "$base")") |"
        done
        echo "$row"
    done
} >"$md"
cat "$md"
echo >&2
echo "programs.sh: rows in $csv, tables in $md" >&2
[ $status -eq 0 ] || echo "programs.sh: some runs failed or printed something else (see above)" >&2
exit $status
