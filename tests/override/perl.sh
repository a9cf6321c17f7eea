#!/bin/bash
# perl.sh LIB [REPO_ROOT]: words.pl (word and bigram counts over generated
# text, string building, sorting, nested structures), plain and with
# LD_PRELOAD=LIB: identical output.
# shellcheck source=tests/override/lib.sh
. "$(dirname "$0")/lib.sh"
ov_init perl "$@"
ov_require perl
ov_check_active perl -e 'my %h = map { $_ => 1 } 1 .. 1000'
ov_pair perl
ov_finish
