#!/bin/sh
# The fuzzing campaign (make fuzz): FUZZ_SEC seconds in all, split
#   55%  libFuzzer on fuzz_api (clang, ASan+UBSan, coverage-guided),
#   15%  libFuzzer on fuzz_text,
#   30%  the plain driver's 4-thread fuzz_api under ThreadSanitizer.
# libFuzzer starts from the committed corpus (tests/fuzz/corpus) and adds
# the inputs that reach new code to BUILD_FUZZ/corpus; a crash is saved in
# BUILD_FUZZ/findings/ (tests/fuzz/README.md: what to do with it).
# Usage: campaign.sh BUILD_FUZZ BUILD_TSAN FUZZ_SEC
set -eu
fz=$1 ts=$2 total=$3
api=$((total * 55 / 100))
text=$((total * 15 / 100))
mt=$((total - api - text))
src=$(dirname "$0")
mkdir -p "$fz/corpus/api" "$fz/corpus/text" "$fz/findings"
echo "== fuzz_api, libFuzzer, ASan+UBSan: $api s"
"$fz/fuzz_api" -max_total_time="$api" -max_len=4096 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix="$fz/findings/" "$fz/corpus/api" "$src/corpus/api"
echo "== fuzz_text, libFuzzer, ASan+UBSan: $text s"
"$fz/fuzz_text" -max_total_time="$text" -max_len=2048 -print_final_stats=1 \
  -artifact_prefix="$fz/findings/" "$fz/corpus/text" "$src/corpus/text"
echo "== fuzz_api, 4 threads, ThreadSanitizer: $mt s"
"$ts/fuzz_api" --threads 4 --seconds "$mt"
echo "fuzz: campaign done, no finding; new corpus inputs in $fz/corpus"
