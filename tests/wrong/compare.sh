#!/bin/sh
# compare.sh BUILD: the misuse table's columns, measured: each case of
# tests/wrong/wrong.c under neap (BUILD/libneap.so), glibc and mimalloc
# (Debian's libmimalloc2.0, if installed), three runs each, as one
# Markdown table on stdout. What a run ends with: the allocator's first
# line on stderr and the signal, or what the program saw when it survived.
build=${1:-build}
prog=$build/wrong
mi=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2
cases="double-free-small double-free-medium double-free-large double-free-aligned
double-free-after-reuse-of-others double-free-after-release double-free-after-reuse interior-pointer
never-handed-out misaligned foreign realloc-freed usable-size-freed free-sized-wrong write-after-free-head
write-after-free-body overflow-into-live overflow-into-free fork-child-frees signal-handler-reentry"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

outcome() { # preload case: one run's outcome, in a few words
  LD_PRELOAD=$1 timeout 30 "$prog" "$2" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  line=$(grep -v '^ptr\|^end' "$tmp/err" | head -n 1 | sed 's/ 0x[0-9a-f]*//; s/|/\\|/g')
  case $rc in
  0) echo "survives: $(sed -n 's/^saw: //p' "$tmp/out" | head -n 1)" ;;
  124) echo "hangs" ;;
  134) echo "abort: $line" ;;
  139) echo "SIGSEGV" ;;
  *) echo "exit $rc${line:+: $line}" ;;
  esac
}

cell() { # preload case: the outcome of three runs, merged when they agree
  a=$(outcome "$1" "$2") b=$(outcome "$1" "$2") c=$(outcome "$1" "$2")
  if [ "$a" = "$b" ] && [ "$b" = "$c" ]; then echo "$a"; else echo "$a; $b; $c"; fi
}

echo "| misuse | neap | glibc $(ldd --version | head -n 1 | sed 's/.* //') | mimalloc |"
echo "|---|---|---|---|"
for c in $cases; do
  n=$(cell "$build/libneap.so" "$c")
  g=$(cell "" "$c")
  if [ -f "$mi" ]; then m=$(cell "$mi" "$c"); else m="(not installed)"; fi
  echo "| $c | $n | $g | $m |"
done
