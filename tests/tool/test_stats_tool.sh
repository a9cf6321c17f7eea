#!/bin/bash
# test_stats_tool.sh BUILD_DIR: the statistics seen from outside. A neap
# process publishes its stats file (mode 0600, removed at exit); `neap
# stats` reads it in three formats (JSON checked with Python's parser,
# Prometheus with promtool); `neap serve` is scraped with curl;
# NEAPDEBUG=statsonexit and `neap run --stats/--trace/--memlimit` work;
# errors give one line and a non-zero status.
# Exit 77 (skip) when promtool or curl is missing, except under CI=true.
set -u
build=$1
tool=$build/neap lib=$build/libneap.so
py=/usr/bin/python3
pass=0 fail=0
check() { if [ "$2" -eq 0 ]; then pass=$((pass + 1)); echo "ok    $1"; else fail=$((fail + 1)); echo "FAIL  $1"; fi; }
for cmd in promtool curl; do
  if ! command -v $cmd >/dev/null; then
    if [ "${CI:-}" = true ]; then echo "FAIL  $cmd is missing (.ci/run installs it)"; exit 1; fi
    echo "skip: $cmd is missing (apt-get install prometheus curl)"; exit 77
  fi
done
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

# A neap process with a 64 MiB heap that keeps allocating for a while.
prog='
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))  # a normal exit: neap removes its file
keep = [bytearray(1000) for i in range(65000)]
print("ready", flush=True)
for i in range(300):
    keep.append(bytearray(4096)); time.sleep(0.1)
'
start_neap() { # start_neap VAR [ENV...]: starts the program, waits for "ready"
  local var=$1; shift
  env "$@" LD_PRELOAD="$lib" $py -c "$prog" >"$tmp/$var.out" &
  local p=$!
  pids+=("$p")
  for _ in $(seq 100); do grep -q ready "$tmp/$var.out" 2>/dev/null && break; sleep 0.1; done
  printf -v "$var" '%s' "$p"
}
wait_file() { for _ in $(seq 50); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1; }

start_neap P
wait_file /dev/shm/neap.$P; check "the process publishes /dev/shm/neap.$P" $?
sleep 1.5 # the file was first written as the heap passed 8 MiB; now it is refreshed
mode=$(stat -c %a /dev/shm/neap.$P 2>/dev/null); owner=$(stat -c %u /dev/shm/neap.$P 2>/dev/null)
[ "$mode" = 600 ] && [ "$owner" = "$(id -u)" ]; check "the file is mode 0600 and ours ($mode, uid $owner)" $?

out=$("$tool" stats $P); rc=$?
[ $rc -eq 0 ] && echo "$out" | grep -q "^heap_alloc: [0-9]" && echo "$out" | grep -q "^class 16: mallocs [0-9]* frees [0-9]*$"
check "neap stats PID: text" $?
alloc=$(echo "$out" | sed -n 's/^heap_alloc: //p')
[ "${alloc:-0}" -ge $((60 << 20)) ]; check "it sees the 64 MiB heap (heap_alloc $alloc)" $?

"$tool" stats $P --json >"$tmp/s.json"
$py - "$tmp/s.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["version"] == 3, d["version"]
assert d["sys"] == d["heap_sys"] + d["span_sys"] + d["cache_sys"] + d["arena_meta_sys"] + d["pagealloc_sys"] + d["other_sys"] + d["gc_sys"]
assert d["heap_sys"] == d["heap_inuse"] + d["heap_idle"]
assert d["heap_objects"] == d["mallocs"] - d["frees"]
assert d["mallocs"] == sum(c["mallocs"] for c in d["by_class"])
assert d["by_class"][-1]["size"] == 0 and len(d["by_class"]) > 60
PY
check "neap stats --json: Python's json parses it, the invariants hold" $?

"$tool" stats $P --prom >"$tmp/s.prom"
promtool check metrics <"$tmp/s.prom" >"$tmp/promtool.out" 2>&1; rc=$?
[ $rc -eq 0 ]; check "neap stats --prom: promtool check metrics passes" $?
[ $rc -eq 0 ] || cat "$tmp/promtool.out"
grep -q '^neap_heap_alloc_bytes [0-9]' "$tmp/s.prom" && grep -q '^# TYPE neap_mallocs_total counter' "$tmp/s.prom"
check "Prometheus names and types (neap_heap_alloc_bytes, neap_mallocs_total counter)" $?

timeout 5 "$tool" stats $P --watch 1 >"$tmp/watch.out"
n=$(grep -c '^--- process' "$tmp/watch.out"); m=$(sed -n 's/^mallocs: //p' "$tmp/watch.out" | sort -u | wc -l)
[ "$n" -ge 3 ] && [ "$m" -ge 2 ]; check "--watch 1 prints every second, figures refreshed ($n prints, $m distinct)" $?

# serve: two neap processes and one that is not.
start_neap Q
sleep 1
port=$((20000 + RANDOM % 20000))
"$tool" serve --listen 127.0.0.1:$port $P $Q $$ 2>"$tmp/serve.err" &
S=$!; pids+=("$S")
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
curl -s "http://127.0.0.1:$port/metrics" >"$tmp/m.prom"; rc=$?
[ $rc -eq 0 ] && promtool check metrics <"$tmp/m.prom"; check "neap serve /metrics scraped with curl passes promtool" $?
grep -q "^neap_up{pid=\"$P\"} 1" "$tmp/m.prom" && grep -q "^neap_up{pid=\"$$\"} 0" "$tmp/m.prom" &&
  grep -q "^neap_heap_alloc_bytes{pid=\"$Q\"} [0-9]" "$tmp/m.prom"
check "both neap processes up and labelled, the other one down" $?
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/nothing")
[ "$code" = 404 ]; check "an unknown path is a 404" $?
"$tool" serve --listen 127.0.0.1:$port $P 2>"$tmp/serve2.err"; rc=$?
[ $rc -eq 1 ] && grep -q "^neap serve: cannot listen" "$tmp/serve2.err"; check "a port in use: one line, status 1" $?
kill $S

# Removed at exit; a killed process's file is not believed.
kill $Q; wait $Q 2>/dev/null
sleep 0.2
[ ! -e /dev/shm/neap.$Q ]; check "the file is removed when the process exits" $?
start_neap K
wait_file /dev/shm/neap.$K
kill -KILL $K; wait $K 2>/dev/null
[ -e /dev/shm/neap.$K ]; check "a process killed by SIGKILL leaves its file" $?
start_neap L
wait_file /dev/shm/neap.$L
[ ! -e /dev/shm/neap.$K ]; check "the next neap process of the user removes it" $?
sleep 30 & Z=$!; pids+=("$Z")
printf 'pid: %s\nstarttime: 1\nversion: 2\nheap_alloc: 5\n' $Z >/dev/shm/neap.$Z
out=$("$tool" stats $Z 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "stale"; check "a stale file is refused: $out" $?
rm -f /dev/shm/neap.$Z

# Elsewhere, or nowhere.
mkdir "$tmp/dir"
start_neap R NEAP_STATS_DIR="$tmp/dir"
wait_file "$tmp/dir/neap.$R"; check "NEAP_STATS_DIR moves the file" $?
"$tool" stats $R >/dev/null; check "neap stats finds it there (from the process's environment)" $?
start_neap O NEAP_STATS_DIR=off
sleep 1.5
out=$("$tool" stats $O 2>&1); rc=$?
[ $rc -eq 1 ] && [ ! -e /dev/shm/neap.$O ] && echo "$out" | grep -q "NEAP_STATS_DIR=off"
check "NEAP_STATS_DIR=off: no file, and neap stats says why ($out)" $?

# Errors: one line, non-zero.
out=$("$tool" stats 999999999 2>&1); rc=$?
[ $rc -eq 1 ] && [ "$(echo "$out" | wc -l)" -eq 1 ] && echo "$out" | grep -q "no process"
check "no such process: $out" $?
out=$("$tool" stats $$ 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "not a neap process"; check "not a neap process: $out" $?
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1 &&
  setpriv --reuid=65534 --regid=65534 --clear-groups "$tool" --help >/dev/null 2>&1; then
  out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$tool" stats $P 2>&1); rc=$?
  [ $rc -eq 1 ] && [ "$(echo "$out" | wc -l)" -eq 1 ] && echo "$out" | grep -q "permission denied"
  check "another user's process: one line, permission denied ($out)" $?
fi
"$tool" stats abc >/dev/null 2>&1; [ $? -eq 2 ]; check "a bad pid is a usage error" $?
"$tool" stats $P --frob >/dev/null 2>&1; [ $? -eq 2 ]; check "an unknown option is a usage error" $?
for c in stats inspect serve demo run; do
  "$tool" $c --help | grep -q "^usage: neap $c"; check "neap $c --help" $?
done

# At exit, and through neap run.
err=$(NEAPDEBUG=statsonexit=1 LD_PRELOAD="$lib" $py -c 'x = [bytearray(100) for i in range(1000)]' 2>&1 >/dev/null)
echo "$err" | grep -q "^heap_alloc: [0-9]" && echo "$err" | grep -q "^mallocs: [0-9]"
check "NEAPDEBUG=statsonexit=1 prints the stats at exit" $?
err=$("$tool" run --stats -- $py -c 'pass' 2>&1 >/dev/null)
echo "$err" | grep -q "^heap_objects: "; check "neap run --stats" $?
err=$("$tool" run --memlimit 300MiB -- $py -c 'import os; print(os.environ["NEAP_MEMLIMIT"])' 2>&1)
[ "$err" = 300MiB ]; check "neap run --memlimit sets NEAP_MEMLIMIT ($err)" $?
err=$(NEAPDEBUG=printopts=1 "$tool" run --trace -- $py -c 'pass' 2>&1 >/dev/null)
echo "$err" | grep -q "scavtrace=1"; check "neap run --trace adds scavtrace=1 to NEAPDEBUG" $?

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
