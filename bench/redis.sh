#!/bin/bash
# redis.sh: a real server under every allocator: Debian's redis-server,
# driven by redis-benchmark (list pushes, then ranges of 100 elements).
#
# The server is what is measured, not the client: on a machine of two
# cores the client's share of them makes throughput swing by a third from
# one run to the next. So each allocator gets two figures:
#   instructions  the server's, under callgrind, for a fixed script
#                 (30,000 LPUSH, then 10,000 LRANGE_100; pipelined by 16):
#                 repeatable to a fraction of a percent;
#   cpu s         the server's own user + system time (from /proc) for a
#                 larger script (300,000 LPUSH, then 100,000 LRANGE_100),
#                 medians of -r repetitions, allocators in an order rotated
#                 each repetition.
# Allocators: the server's own (Debian links it with jemalloc), and neap,
# tcmalloc, mimalloc and jemalloc through LD_PRELOAD (those that are
# installed). redis calls malloc_usable_size on every allocation and free,
# which is why it is here (issue 23).
#
# Output: a Markdown table on stdout and in BENCH/redis.md.
# Environment: NEAP_BUILD_DIR (default <repo>/build), NEAP_SO (default
# NEAP_BUILD_DIR/libneap.so), NEAP_BENCH_DIR (default NEAP_BUILD_DIR/bench).
# Installs redis-server and redis-tools with apt-get when they are missing
# and the runner is root.

set -u

reps=3
while [ $# -gt 0 ]; do
    case $1 in
    -r) [ $# -ge 2 ] || { echo "usage: $0 [-r REPS]" >&2; exit 2; }; reps=$2; shift 2 ;;
    *) echo "usage: $0 [-r REPS]" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
build=${NEAP_BUILD_DIR:-$root/build}
neap_so=${NEAP_SO:-$build/libneap.so}
out_dir=${NEAP_BENCH_DIR:-$build/bench}
mkdir -p "$out_dir"

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null 2>&1
    fi
    command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null ||
        { echo "redis.sh: redis-server and redis-benchmark are needed (apt-get install redis-server redis-tools)" >&2; exit 1; }
fi

lib=/usr/lib/x86_64-linux-gnu
names=(linked)
libs=("")
[ -e "$neap_so" ] && { names+=(neap); libs+=("$neap_so"); }
[ -e $lib/libtcmalloc_minimal.so.4 ] && { names+=(tcmalloc); libs+=($lib/libtcmalloc_minimal.so.4); }
[ -e $lib/libmimalloc.so.2 ] && { names+=(mimalloc); libs+=($lib/libmimalloc.so.2); }
[ -e $lib/libjemalloc.so.2 ] && { names+=(jemalloc); libs+=($lib/libjemalloc.so.2); }
port=$((20000 + $$ % 20000))

wait_up() {
    for _ in $(seq 300); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "redis.sh: the server did not start" >&2
    return 1
}

# the_script N_PUSH N_RANGE: the client's part.
the_script() {
    redis-benchmark -p "$port" -t lpush -n "$1" -P 16 -q >/dev/null 2>&1 &&
        redis-benchmark -p "$port" -t lrange_100 -n "$2" -P 16 -q >/dev/null 2>&1
}

server_args=(--port "$port" --save '' --appendonly no --daemonize no)

# instructions LIB: the server's instruction count for the small script.
instructions() {
    local cg=$out_dir/redis.callgrind.$$
    valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=/dev/null --log-file="$cg" \
        env ${1:+LD_PRELOAD=$1} redis-server "${server_args[@]}" >/dev/null 2>&1 &
    local pid=$!
    wait_up || { kill $pid; return 1; }
    the_script 30000 10000
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
    wait $pid
    # The last "refs" line is the server's (env execs it: the same pid).
    grep "refs:" "$cg" | tail -1 | awk '{gsub(",", "", $NF); print $NF}'
    rm -f "$cg"
}

# cpu LIB: the server's CPU seconds for the large script.
cpu() {
    env ${1:+LD_PRELOAD=$1} redis-server "${server_args[@]}" >/dev/null 2>&1 &
    local pid=$!
    wait_up || { kill $pid; return 1; }
    the_script 300000 100000
    local t
    t=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' /proc/$pid/stat)
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
    wait $pid
    echo "$t"
}

median() { sort -n | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]}'; }

n=${#names[@]}
declare -A ins cpus
for i in $(seq 0 $((n - 1))); do
    ins[${names[$i]}]=$(instructions "${libs[$i]}")
    echo "redis: ${names[$i]} instructions ${ins[${names[$i]}]}" >&2
done
for r in $(seq 1 "$reps"); do
    for k in $(seq 0 $((n - 1))); do
        i=$(((k + r) % n))
        t=$(cpu "${libs[$i]}")
        cpus[${names[$i]}]="${cpus[${names[$i]}]:-} $t"
        echo "redis: rep $r ${names[$i]} cpu $t s" >&2
    done
done

{
    echo "# redis-server under each allocator: $(date -u +%Y-%m-%d)"
    echo
    echo "Server instructions (callgrind; 30,000 LPUSH then 10,000 LRANGE_100) and server CPU seconds"
    echo "(300,000 LPUSH then 100,000 LRANGE_100; median of $reps); ratios to the server's own allocator"
    echo "(Debian links jemalloc)."
    echo
    echo "| allocator | instructions (M) | vs linked | cpu s | vs linked |"
    echo "|---|--:|--:|--:|--:|"
    base_i=${ins[linked]}
    base_c=$(echo "${cpus[linked]}" | tr ' ' '\n' | grep . | median)
    for name in "${names[@]}"; do
        c=$(echo "${cpus[$name]}" | tr ' ' '\n' | grep . | median)
        awk -v n="$name" -v i="${ins[$name]}" -v bi="$base_i" -v c="$c" -v bc="$base_c" \
            'BEGIN {printf "| %s | %.1f | %.3f | %.2f | %.2f |\n", n, i / 1e6, i / bi, c, (bc > 0 ? c / bc : 0)}'
    done
} | tee "$out_dir/redis.md"
