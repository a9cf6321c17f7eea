#!/bin/sh
# bad_input.sh BAD_INPUT LIBNEAP: misuse under LD_PRELOAD.
#   - a double free and an interior free abort (SIGABRT) with one line
#     "neap: <what> <pointer>" naming the pointer;
#   - a pointer neap does not own (stack, static) is ignored by default, warned
#     about once with NEAPDEBUG=warnforeign=1, and aborts with warnforeign=2.
prog=$1 lib=$2
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() { # description, condition result (0 = ok)
  if [ "$2" -eq 0 ]; then pass=$((pass + 1)); echo "ok    $1"; else fail=$((fail + 1)); echo "FAIL  $1"; sed 's/^/      stderr: /' "$tmp/err"; fi
}

run() { # env assignments... -- mode
  env "$@" >"$tmp/out" 2>"$tmp/err"
  echo $?
}

# hex digits of the pointer the program printed, without 0x and leading zeros
ptr() { sed -n 1p "$tmp/out" | sed 's/^0x0*//'; }

rc=$(run LD_PRELOAD="$lib" "$prog" double)
p=$(ptr)
[ "$rc" -eq 134 ] && grep -qx "neap: double free 0x0*$p" "$tmp/err" && [ "$(grep -c '^neap' "$tmp/err")" -eq 1 ]
check "double free aborts with one line naming 0x$p (rc $rc)" $?

rc=$(run LD_PRELOAD="$lib" "$prog" interior)
p=$(ptr)
[ "$rc" -eq 134 ] && grep -qx "neap: free of an interior pointer 0x0*$p" "$tmp/err"
check "interior free aborts with one line naming 0x$p (rc $rc)" $?

rc=$(run LD_PRELOAD="$lib" "$prog" foreign)
[ "$rc" -eq 0 ] && grep -qx "survived usable=0 realloc=NULL errno=EINVAL" "$tmp/out" && [ ! -s "$tmp/err" ]
check "foreign pointers ignored silently by default (rc $rc)" $?

rc=$(run LD_PRELOAD="$lib" NEAPDEBUG=warnforeign=1 "$prog" foreign)
p=$(ptr)
[ "$rc" -eq 0 ] && grep -q "^survived" "$tmp/out" &&
  [ "$(grep -c '^neap: free of a pointer neap does not own' "$tmp/err")" -eq 1 ] &&
  grep -q "^neap: free of a pointer neap does not own 0x0*$p\$" "$tmp/err"
check "warnforeign=1 warns once, naming 0x$p (rc $rc)" $?

rc=$(run LD_PRELOAD="$lib" NEAPDEBUG=warnforeign=2 "$prog" foreign)
p=$(ptr)
[ "$rc" -eq 134 ] && grep -qx "neap: free of a pointer neap does not own 0x0*$p" "$tmp/err"
check "warnforeign=2 aborts naming 0x$p (rc $rc)" $?

rc=$(run LD_PRELOAD="$lib" NEAPDEBUG=nosuchkey=1 "$prog" foreign)
[ "$rc" -eq 0 ] && grep -q "^neap: NEAPDEBUG: unknown key 'nosuchkey', ignored" "$tmp/err"
check "an unknown NEAPDEBUG key is reported, and ignored (rc $rc)" $?

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
