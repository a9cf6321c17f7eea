#!/bin/sh
# run.sh PROG LIBNEAP CASE abort|silent TEXT: one row of the misuse table.
#   abort   the program dies of SIGABRT after printing exactly one line
#           "neap: <message> <pointer>", the message matching TEXT (an
#           extended regular expression) and the pointer the one the program
#           printed ("ptr 0x..."), when the message names one;
#   silent  the program exits 0 and prints "saw: TEXT..."; and the allocator
#           still works: the program's own check found no block handed out
#           twice and no byte changed ("heap works: 0 ..., 0 ...").
prog=$1 lib=$2 case=$3 expect=$4 text=$5
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
LD_PRELOAD="$lib" timeout 60 "$prog" "$case" >"$out" 2>"$err"
rc=$?
ptr=$(sed -n 's/^ptr 0x0*//p' "$out" | head -n 1)
fail() {
  echo "FAIL  $case: $1 (exit status $rc)"
  sed 's/^/      stdout: /' "$out"
  sed 's/^/      stderr: /' "$err"
  exit 1
}
case $expect in
abort)
  [ "$rc" -eq 134 ] || fail "did not abort"
  [ "$(grep -c '^neap' "$err")" -eq 1 ] || fail "not exactly one neap line"
  grep -Eq "^neap: ($text)( 0x0*$ptr)?$" "$err" || fail "the neap line is not \"neap: $text 0x$ptr\""
  echo "ok    $case: $(grep '^neap' "$err")"
  ;;
silent)
  [ "$rc" -eq 0 ] || fail "did not exit normally"
  grep -Eq "^saw: ($text)" "$out" || fail "did not see \"$text\""
  if grep -q '^saw: heap works' "$out"; then
    grep -q '^saw: heap works: 0 blocks handed out twice, 0 bytes changed' "$out" || fail "the heap no longer works"
  fi
  echo "ok    $case: $(grep '^saw' "$out" | head -n 1)"
  ;;
*)
  fail "unknown expectation $expect"
  ;;
esac
