#!/usr/bin/perl
# Deterministic hash/string/array churn for allocator integration tests.
# Debian's perl uses the system malloc (usemymalloc=n), so every SV, hash
# bucket array and string buffer goes through malloc/realloc/free.
# Output depends only on the perl version; run.sh also fixes PERL_HASH_SEED.
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);

my $scale = @ARGV ? $ARGV[0] : 1;
my $seed = 12345;
sub rnd {    # small LCG: identical everywhere, unlike rand()
    $seed = ($seed * 1103515245 + 12345) % 2147483648;
    return $seed % $_[0];
}
sub rstr {
    my ($lo, $hi) = @_;
    my $n = $lo + rnd($hi - $lo + 1);
    return join '', map { chr(97 + rnd(26)) } 1 .. $n;
}
my $total = Digest::MD5->new;
sub report {
    my ($name, $s) = @_;
    my $h = substr(md5_hex($s), 0, 16);
    $total->add("$name$h");
    print "$name: $h\n";
}

# 1. hash of strings -> array refs, grown and shrunk several times
{
    my %h;
    my $acc = 0;
    for my $round (1 .. 4) {
        for my $i (1 .. int(40000 * $scale)) {
            my $k = rstr(1, 20) . $i;
            $h{$k} = [ $i, $k x rnd(4), { r => $round } ];
        }
        my @keys = sort keys %h;
        for my $k (@keys[ grep { $_ % 4 != 0 } 0 .. $#keys ]) {
            my $v = delete $h{$k};
            $acc = ($acc * 31 + $v->[0] + length $v->[1]) % 4294967296;
        }
    }
    report('hash', join(',', $acc, scalar(keys %h), map { "$_=" . $h{$_}[0] } sort keys %h));
}

# 2. string building, substitution, split/join, sprintf
{
    my $s = join ' ', map { rstr(0, 30) } 1 .. int(30000 * $scale);
    my @acc;
    for my $round (1 .. 5) {
        $s =~ s/a/AA/g;
        $s =~ tr/e//d;
        $s = lc uc $s;
        my @w = sort { length($a) <=> length($b) or $a cmp $b } split ' ', $s;
        push @acc, scalar @w;
        my $f = join '|', map { sprintf '%s:%08x:%.3f', $w[$_], $_, length($w[$_]) * 1.5 } 0 .. $#w;
        push @acc, md5_hex($f);
        $s = join ' ', reverse @w;
        $s = substr($s, 0, length($s) / 2) . ' ' . join '', map { 'x' x $_ } grep { $_ % 13 == 0 } 0 .. 3000;
        $s .= $s if length($s) < 200000;
    }
    report('string', join ',', @acc);
}

# 3. arrays: push/pop/shift/splice, nested structures
{
    my @lists = map { [] } 1 .. 128;
    my $acc = 0;
    for my $i (1 .. int(300000 * $scale)) {
        my $l = $lists[ rnd(128) ];
        if (@$l && rnd(100) < 45) {
            $acc = ($acc + (rnd(2) ? pop @$l : shift @$l)) % 4294967296;
        } else {
            push @$l, $i;
        }
        if ($i % 4000 == 0) {
            my $j = rnd(128);
            splice @{ $lists[$j] }, 0, int(@{ $lists[$j] } / 2);
        }
    }
    report('array', join ',', $acc, map { scalar @$_ } @lists);
}

# 4. big strings grown by repeated appends and chopped (realloc path)
{
    my $b = '';
    my $acc = 0;
    for my $i (1 .. int(60000 * $scale)) {
        my $k = (1, 7, 100, 1000, 5000, 40000)[ rnd(6) ];
        if (length($b) > 4_000_000 || (length($b) && rnd(10) < 3)) {
            substr($b, 0, rnd(length($b) + 1), '');
        } else {
            $b .= chr($i & 0x7f) x $k;
        }
        $acc = ($acc * 1000003 + length $b) % 4294967296;
    }
    report('buffer', "$acc," . md5_hex($b));
}

print 'total: ', $total->hexdigest, "\n";
