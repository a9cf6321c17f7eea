#!/bin/sh
# run.sh clean|uaf|leak PROG [LIBNEAP]: PROG under memcheck (with LIBNEAP
# preloaded, when given), and what memcheck must say.
mode=$1 prog=$2 lib=$3
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# neap's malloc is neap's: valgrind must not put its own in its place
# (somalloc names no library, so it replaces malloc nowhere).
set -- valgrind --soname-synonyms=somalloc=nouserintercepts --leak-check=full --errors-for-leak-kinds=definite \
  --error-exitcode=99 "$prog" "$mode"
if [ -n "$lib" ]; then LD_PRELOAD=$lib "$@" >"$out" 2>&1; else "$@" >"$out" 2>&1; fi
rc=$?
fail() {
  echo "FAIL  $mode: $1 (exit status $rc)"
  sed 's/^/      /' "$out"
  exit 1
}
case $mode in
clean)
  [ "$rc" -eq 0 ] || fail "memcheck found something"
  grep -q "ERROR SUMMARY: 0 errors" "$out" || fail "errors reported"
  grep -q "definitely lost: [1-9]" "$out" && fail "a leak reported"
  ;;
uaf)
  [ "$rc" -eq 99 ] || fail "memcheck found no error"
  grep -q "Invalid read of size 1" "$out" || fail "no invalid read"
  grep -q "inside a block of size [0-9,]* free'd" "$out" || fail "not named as a freed block"
  ;;
leak)
  [ "$rc" -eq 99 ] || fail "memcheck found no error"
  grep -q "definitely lost: 1,024 bytes in 1 blocks" "$out" || fail "the lost block (1,024 usable bytes) not reported"
  ;;
esac
echo "ok    $mode: $(grep -E 'ERROR SUMMARY|definitely lost' "$out" | sed 's/^==[0-9]*== *//' | tr '\n' ' ')"
