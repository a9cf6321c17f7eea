#!/usr/bin/perl
# words.pl: a string- and hash-heavy Perl workload for the override tests and
# bench/programs.sh. Generates text from a fixed pseudo-random sequence,
# counts words and bigrams, builds and rewrites strings, sorts, and builds
# nested structures; prints results that depend only on the data (every
# hash is walked in sorted order), so the output is identical under every
# allocator. usage: perl words.pl [LINES] (default 100000)
use strict;
use warnings;

my $lines = shift // 100000;
my @syl = qw(ka lo mi ne qua ru sto ti vel xo zan ber chi dor eph fun gli hos);
my $seed = 12345;
sub rnd { my ($n) = @_; $seed = ($seed * 1103515245 + 12345) % 2147483648; return ($seed >> 8) % $n; }
sub cksum { my ($h, $s) = @_; $h = ($h * 31 + ord($_)) % 4294967296 for split //, $s; return $h; }

# 1. Text.
my @text;
for my $l (1 .. $lines) {
    my @w;
    for (1 .. 12) {
        my $n = 1 + rnd(3);
        $n += 10 + rnd(40) if rnd(100) == 0;
        push @w, join('', map { $syl[rnd(scalar @syl)] } 1 .. $n);
    }
    push @text, join(' ', @w);
}

# 2. Word and bigram counts.
my (%count, %bigram, %first);
for my $line (@text) {
    my @w = split / /, $line;
    for my $i (0 .. $#w) {
        $count{$w[$i]}++;
        $bigram{"$w[$i] $w[$i + 1]"}++ if $i < $#w;
        push @{ $first{ substr($w[$i], 0, 1) } }, $w[$i] if $i % 5 == 0;
    }
}
my $distinct = keys %count;
my $total = 0;
$total += $_ for values %count;
printf "lines=%d words=%d distinct=%d bigrams=%d\n", $lines, $total, $distinct, scalar keys %bigram;

# 3. The most frequent words and bigrams (count descending, then by text).
my @top = (sort { $count{$b} <=> $count{$a} or $a cmp $b } keys %count)[0 .. 9];
print "top: ", join(' ', map { "$_=$count{$_}" } @top), "\n";
my @topb = (sort { $bigram{$b} <=> $bigram{$a} or $a cmp $b } keys %bigram)[0 .. 4];
print "top bigrams: ", join(', ', map { "$_=$bigram{$_}" } @topb), "\n";

# 4. String building: a long string rewritten a few ways.
my $big = join("\n", @text);
my $len0 = length $big;
(my $up = $big) =~ s/\b(\w)(\w*)/\U$1\E$2/g;
(my $sub = $big) =~ s/ka/<ka>/g;
$sub =~ s/lo/<lo>/g;
my $rev = join(' ', reverse split / /, substr($big, 0, 2_000_000));
my $cat = '';
$cat .= sprintf("%s:%d;", $_, $count{$_}) for sort keys %count;
printf "len=%d upper=%08x sub=%d/%08x rev=%08x cat=%d/%08x\n", $len0, cksum(0, substr($up, 0, 300000)),
    length $sub, cksum(0, substr($sub, -300000)), cksum(0, substr($rev, 0, 300000)), length $cat, cksum(0, $cat);

# 5. Nested structures: per first letter, records of words sorted by
# length then text; dropped and rebuilt hashes.
my %groups;
for my $k (sort keys %first) {
    my %seen;
    my @recs = map { { word => $_, n => $count{$_}, len => length $_ } } grep { !$seen{$_}++ } @{ $first{$k} };
    @recs = sort { $a->{len} <=> $b->{len} or $a->{word} cmp $b->{word} } @recs;
    $groups{$k} = { recs => \@recs, sum => 0, longest => $recs[-1]{word} };
    $groups{$k}{sum} += $_->{n} for @recs;
}
my $gh = 0;
for my $k (sort keys %groups) {
    my $g = $groups{$k};
    $gh = cksum($gh, join(',', map { "$_->{word}/$_->{n}" } @{ $g->{recs} }));
    printf "group %s: %d words, sum %d, longest %d\n", $k, scalar @{ $g->{recs} }, $g->{sum}, length $g->{longest};
}
printf "groups=%08x\n", $gh;

# 6. Churn: delete rare words, re-add them under another key, repeat.
for my $round (1 .. 3) {
    my @rare = grep { $count{$_} <= $round } keys %count;
    delete @count{@rare};
    $count{"$_#$round"} = length $_ for @rare;
}
my $ch = 0;
$ch = cksum($ch, "$_=$count{$_}") for sort keys %count;
printf "after churn: %d keys, %08x\n", scalar keys %count, $ch;
