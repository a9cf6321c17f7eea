#!/bin/sh
# neap_tool.sh NEAP_TOOL LIBNEAP: the command-line tool's `run`.
tool=$1 lib=$2
pass=0 fail=0
check() { if [ "$2" -eq 0 ]; then pass=$((pass + 1)); echo "ok    $1"; else fail=$((fail + 1)); echo "FAIL  $1"; fi; }
libdir=$(cd "$(dirname "$lib")" && pwd)

out=$("$tool" --help); rc=$?
[ $rc -eq 0 ] && echo "$out" | grep -q "^usage: neap <command>" && echo "$out" | grep -q "run \[OPTIONS\] \[--\] CMD" &&
  echo "$out" | grep -q "stats PID" && echo "$out" | grep -q "inspect PID" && echo "$out" | grep -q "serve"
check "neap --help" $?
out=$("$tool" run --help); rc=$?
[ $rc -eq 0 ] && echo "$out" | grep -q "^usage: neap run" && echo "$out" | grep -q "exit status"
check "neap run --help" $?
"$tool" >/dev/null 2>&1; [ $? -eq 2 ]; check "neap with no command: usage error 2" $?
"$tool" frobnicate >/dev/null 2>&1; [ $? -eq 2 ]; check "neap with an unknown command: 2" $?
"$tool" run >/dev/null 2>&1; [ $? -eq 2 ]; check "neap run with no CMD: 2" $?

out=$(env -u LD_PRELOAD "$tool" run -- sh -c 'echo "$LD_PRELOAD"')
[ "$out" = "$libdir/libneap.so" ]
check "LD_PRELOAD is the library next to the tool ($out)" $?
out=$(LD_PRELOAD=/nonexistent/other.so "$tool" run -- sh -c 'echo "$LD_PRELOAD"' 2>/dev/null)
[ "$out" = "$libdir/libneap.so:/nonexistent/other.so" ]
check "an existing LD_PRELOAD is kept, after neap ($out)" $?
"$tool" run -- sh -c 'exit 7'; rc=$?
[ $rc -eq 7 ]; check "exit status passes through (7 -> $rc)" $?
"$tool" run sh -c 'kill -TERM $$'; rc=$?
[ $rc -eq 143 ]; check "death by signal passes through (SIGTERM -> $rc)" $?
"$tool" run -- /nonexistent/program 2>/dev/null; rc=$?
[ $rc -eq 127 ]; check "a missing command gives 127 ($rc)" $?
# The program really runs on neap: neap_owns is there to be found.
out=$("$tool" run -- grep -c libneap /proc/self/maps)
[ "${out:-0}" -ge 1 ]; check "the program has libneap mapped ($out mappings)" $?

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
