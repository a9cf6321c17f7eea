/* mksizeclasses: prints src/sizeclass_table.h, neap's table of size classes.
 *
 *   gcc -O2 tools/mksizeclasses.c -o /tmp/mk && /tmp/mk > src/sizeclass_table.h
 *
 * The output depends on nothing but the constants below, so running the
 * program again reproduces the committed header byte for byte (the unit
 * test tests/unit/test_sizeclass.c checks that).
 *
 * The rules every small class obeys (the generator refuses to print a table
 * that breaks one, and the unit test checks them again):
 *   1. Sizes are multiples of 16 (C's max_align_t), from 16 to 32768; every
 *      power of two in between is a class, so aligned_alloc can serve an
 *      alignment a from the class of a power of two >= a.
 *   2. Rounding a request up to its class wastes at most 1/8: for
 *      neighbours p < s, (s - p - 1) / s <= 12.5%, except where s - p is
 *      the 16-byte quantum itself (below 128 bytes no finer step exists).
 *   3. A span has the smallest number of 8 KiB neap pages that leaves a
 *      tail (the bytes after the last whole object) of at most 1/8 of the
 *      span; where that span holds fewer than FEW_OBJECTS (8) objects
 *      (objects over about 1 KiB), the smallest such span that holds at
 *      least MIN_OBJECTS (16), if 16 pages can (objects up to 8 KiB). At
 *      most 16 pages and at most 512 objects (the allocator keeps one
 *      512-bit bitmap per span).
 *   4. Above 1024 bytes every size is a multiple of 128, because the
 *      lookup table for those sizes has one entry per 128 bytes; at and
 *      below 1024 the table has one entry per 16 bytes.
 *
 * How the list is chosen: first the Go runtime's own method
 * (mksizeclasses.go, see go-runtime.md §1), run on a 16-byte quantum:
 * candidate sizes step by 16 up to 256, then by size/8 (32 from 256, 64
 * from 512, 128 from 1024) and by 256 from 2048; a candidate whose span
 * has the same pages and object count as its predecessor's replaces it
 * (the bigger size costs nothing); then each class grows to the largest
 * multiple of 128 that still fits the same number of objects in its span.
 * On a 16-byte quantum this gives Go's 67 classes less 8 and 24.
 *
 * Go tolerates a few neighbours more than 12.5% apart (768 -> 896,
 * 3456 -> 4096, 8192 -> 9472, ...), which rule 2 forbids, so a repair pass
 * walks the list and fixes each such gap p -> s with the cheapest of:
 *   raise p  (p not a power of two) to a size closer to s;
 *   lower s  (s not a power of two) to a size closer to p;
 *   insert a new class between p and s, only when neither move works.
 * Among the moves that satisfy rule 2 on every gap they touch it takes the
 * one whose worst-case total waste (below) is smallest; on a tie, raise
 * before lower, then the smaller size.
 *
 * The list is chosen with Go's spans (the fewest pages with the tail rule
 * alone: span_pages); the spans the table gives each class then follow
 * rule 3 (class_pages), a function of the final size alone.
 *
 * Why lengthen spans of fewer than 8 objects, where Go's have as few as
 * 2: a neap thread cache allocates from its current span until the span
 * is full and gives an empty span back (or keeps it), so a class with few
 * objects per span makes those slow-path moves every few allocations when
 * objects die at random. Go's garbage collector frees a span's dead
 * objects in bulk, so it never sees that cost. On the larson benchmark
 * (sizes 16..4096, random frees) 2-to-8-object spans sent 63% of mallocs
 * and 57% of frees down the slow path; 16-object spans for every class
 * cut its time by 40%, and lengthening only the classes under 8 objects
 * by 36%. Only those, because longer spans return less: a span goes back
 * to the OS when all its objects are free, which after 90% of objects die
 * at random is 43% of 8-object spans but 19% of 16-object ones (the
 * test_return_frag scenario). An untouched part of a span costs address
 * space, not RSS; larson's peak RSS grew from 5.0 to 6.0 MiB.
 *
 * Waste figures, as Go's table prints them, for class s after class p:
 *   tail waste         span bytes - objects * s
 *   max rounding waste (s - p - 1) / s: a request of p + 1 bytes
 *   max total waste    (span - objects * (p + 1)) / span: a span full of
 *                      (p + 1)-byte requests, rounding and tail together.
 * All arithmetic is integer, so the printed table is the same everywhere.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Must agree with src/internal.h; src/sizeclass.c checks at compile time. */
enum {
  PAGE_SIZE = 8192,    /* NEAP_PAGE_SIZE, a neap page */
  SMALL_MAX = 32768,   /* NEAP_SMALL_MAX */
  QUANTUM = 16,        /* NEAP_ALIGN */
  MAX_SPAN_PAGES = 16, /* rule 3 */
  MAX_OBJECTS = 512,   /* rule 3: one 512-bit bitmap per span */
  FEW_OBJECTS = 8,     /* rule 3: a shortest span with fewer is lengthened */
  MIN_OBJECTS = 16,    /* ... to hold this many, where 16 pages allow */
  FINE_MAX = 1024,     /* neap__size_to_class16 covers sizes up to here */
  FINE_STEP = 16,      /* ... one entry per 16 bytes */
  COARSE_STEP = 128,   /* neap__size_to_class128: one entry per 128 bytes */
  MAX_CLASSES = 255,   /* class numbers fit the uint8_t lookup tables */
  MIN_SMALL = 60,      /* the size of the table we aim for, */
  MAX_SMALL = 72       /* in small classes */
};

#define FINE_LEN (FINE_MAX / FINE_STEP + 1)
#define COARSE_LEN ((SMALL_MAX - FINE_MAX) / COARSE_STEP + 1)

/* Small classes in increasing size; class k (k >= 1) is cls[k - 1]. */
static unsigned cls[MAX_CLASSES];
static unsigned ncls;

_Noreturn static void die(const char *what, unsigned a, unsigned b)
{
  fprintf(stderr, "mksizeclasses: %s (%u, %u)\n", what, a, b);
  exit(1);
}

static bool is_pow2(unsigned x) { return x != 0 && (x & (x - 1)) == 0; }

/* Rule 4: the step a size must be a multiple of. */
static unsigned grid(unsigned size) { return size <= FINE_MAX ? FINE_STEP : COARSE_STEP; }

/* Rule 3: the smallest span (in pages) whose tail is at most 1/8. */
static unsigned span_pages(unsigned size)
{
  for (unsigned pages = 1; pages <= MAX_SPAN_PAGES; pages++) {
    unsigned span = pages * PAGE_SIZE;
    if (span % size <= span / 8)
      return pages;
  }
  die("no span length keeps the tail under 1/8", size, MAX_SPAN_PAGES);
}

static unsigned span_objects(unsigned size) { return span_pages(size) * PAGE_SIZE / size; }

/* Rule 3 in full: the span the table gives a class of this size. */
static unsigned class_pages(unsigned size)
{
  if (span_objects(size) >= FEW_OBJECTS)
    return span_pages(size);
  for (unsigned pages = span_pages(size); pages <= MAX_SPAN_PAGES; pages++) {
    unsigned span = pages * PAGE_SIZE;
    if (span % size <= span / 8 && span / size >= MIN_OBJECTS)
      return pages;
  }
  return span_pages(size);
}

/* Rule 2 for neighbours p < s (p = 0 before the first class). */
static bool rounding_ok(unsigned p, unsigned s) { return s - p <= QUANTUM || 8 * (s - p - 1) <= s; }

/* Worst-case total waste of class s after class p, as a fraction. */
typedef struct {
  uint64_t num, den;
} frac;

static frac waste_in(unsigned p, unsigned s, unsigned pages)
{
  uint64_t span = (uint64_t)pages * PAGE_SIZE;
  frac w = {span - span / s * (p + 1), span};
  return w;
}

static frac total_waste(unsigned p, unsigned s) { return waste_in(p, s, span_pages(s)); }
static frac class_waste(unsigned p, unsigned s) { return waste_in(p, s, class_pages(s)); }

static bool frac_less(frac a, frac b) { return a.num * b.den < b.num * a.den; }

static frac frac_max(frac a, frac b) { return frac_less(a, b) ? b : a; }

/* Pass 1: the Go runtime's method on a 16-byte quantum (see the top). */
static void go_classes(void)
{
  unsigned align = QUANTUM;
  for (unsigned size = QUANTUM; size <= SMALL_MAX; size += align) {
    if (is_pow2(size)) {
      if (size >= 2048)
        align = 256;
      else if (size >= 128)
        align = size / 8;
    }
    unsigned pages = span_pages(size);
    if (ncls > 0 && span_pages(cls[ncls - 1]) == pages && span_objects(cls[ncls - 1]) == span_objects(size)) {
      cls[ncls - 1] = size; /* same span, same count: the larger size is free */
      continue;
    }
    if (ncls == MAX_CLASSES)
      die("too many classes", ncls, size);
    cls[ncls++] = size;
  }
  /* Grow each class to the largest multiple of 128 (Go's largeSizeDiv)
   * that still fits as many objects into its span. */
  for (unsigned i = 0; i < ncls; i++) {
    unsigned span = span_pages(cls[i]) * PAGE_SIZE;
    unsigned grown = span / (span / cls[i]) / COARSE_STEP * COARSE_STEP;
    if (grown > cls[i])
      cls[i] = grown;
  }
}

/* Pass 2: mend the gaps that break rule 2. */
enum move { NONE, RAISE, LOWER, INSERT };

static void repair(void)
{
  unsigned i = 0;
  while (i < ncls) {
    unsigned p = i > 0 ? cls[i - 1] : 0, s = cls[i];
    if (rounding_ok(p, s)) {
      i++;
      continue;
    }
    enum move best = NONE;
    unsigned best_size = 0;
    frac best_cost = {1, 0}; /* worse than any real cost */
    for (int kind = RAISE; kind <= INSERT; kind++) {
      if (kind == INSERT && best != NONE)
        break; /* a new class only when moving one cannot help */
      if (kind == RAISE && (i == 0 || is_pow2(p)))
        continue;
      if (kind == LOWER && (i + 1 == ncls || is_pow2(s)))
        continue;
      for (unsigned x = p + 1; x < s; x++) {
        if (x % grid(x) != 0)
          continue;
        /* The two gaps the move changes, and their classes' waste. */
        unsigned a, b, c; /* the gaps a -> x and x -> c */
        if (kind == RAISE) {
          a = i >= 2 ? cls[i - 2] : 0;
          c = s;
        } else if (kind == LOWER) {
          a = p;
          c = cls[i + 1];
        } else {
          a = p;
          c = s;
        }
        b = x;
        if (!rounding_ok(a, b) || !rounding_ok(b, c))
          continue;
        frac cost = frac_max(total_waste(a, b), total_waste(b, c));
        if (frac_less(cost, best_cost)) {
          best = (enum move)kind;
          best_size = x;
          best_cost = cost;
        }
      }
    }
    switch (best) {
    case RAISE:
      cls[i - 1] = best_size;
      break;
    case LOWER:
      cls[i] = best_size;
      break;
    case INSERT:
      if (ncls == MAX_CLASSES)
        die("too many classes", ncls, best_size);
      for (unsigned k = ncls; k > i; k--)
        cls[k] = cls[k - 1];
      cls[i] = best_size;
      ncls++;
      break;
    case NONE:
      die("cannot mend the gap between", p, s);
    }
    i = i > 0 ? i - 1 : 0; /* the move changed the gap before, too */
  }
}

/* The magic divisor: (off * m) >> 32 == off / size for every offset in a
 * span. m = ceil(2^32 / size), as Go's divMul (^uint32(0)/size + 1);
 * verify() proves it exhaustively for each class. */
static uint32_t divmul(unsigned size) { return (uint32_t)((((uint64_t)1 << 32) + size - 1) / size); }

/* The class for a request of n bytes: the first whose size is >= n. */
static unsigned class_of(unsigned n)
{
  for (unsigned k = 0; k < ncls; k++)
    if (cls[k] >= n)
      return k + 1;
  die("no class holds", n, SMALL_MAX);
}

/* Every rule, once more, on the finished list. */
static void verify(void)
{
  if (ncls < MIN_SMALL || ncls > MAX_SMALL)
    die("class count outside the range aimed for", ncls, MAX_SMALL);
  if (cls[0] != QUANTUM || cls[ncls - 1] != SMALL_MAX)
    die("classes must run from 16 to 32768", cls[0], cls[ncls - 1]);
  for (unsigned k = 0; k < ncls; k++) {
    unsigned p = k > 0 ? cls[k - 1] : 0, s = cls[k];
    if (s <= p)
      die("sizes must increase", p, s);
    if (s % grid(s) != 0)
      die("size off the lookup grid", s, grid(s));
    if (!rounding_ok(p, s))
      die("rounding waste above 1/8", p, s);
    unsigned pages = class_pages(s), span = pages * PAGE_SIZE, objects = span / s;
    if (objects < 1 || objects > MAX_OBJECTS)
      die("objects per span out of range", s, objects);
    if (span % s > span / 8)
      die("tail waste above 1/8", s, span % s);
    uint32_t m = divmul(s);
    for (unsigned off = 0; off < span; off++)
      if ((unsigned)(((uint64_t)off * m) >> 32) != off / s)
        die("divmul inexact", s, off);
  }
  for (unsigned pw = QUANTUM; pw <= SMALL_MAX; pw *= 2)
    if (cls[class_of(pw) - 1] != pw)
      die("power of two missing", pw, 0);
}

/* --- output */

/* A fraction as a percentage with two decimals, rounded half up, the
 * integer part padded to width. */
static void print_percent(uint64_t num, uint64_t den, int width)
{
  uint64_t hundredths = (num * 20000 + den) / (2 * den);
  printf("%*" PRIu64 ".%02" PRIu64 "%%", width, hundredths / 100, hundredths % 100);
}

/* An initializer macro: name, then values wrapped at 80 columns. */
/* An initialiser: `#define NAME { v0, v1, ... }`; with `map`, the macro
 * takes a parameter F and wraps every value in it, `#define NAME(F) { F(v0),
 * ... }`, so C code can derive tables of its own from it at compile time
 * (malloc.c: the byte offset of a class's cache slot for each size). */
static void print_values(const char *name, const unsigned *v, unsigned n, bool map)
{
  printf("#define %s%s \\\n  {", name, map ? "(F)" : "");
  unsigned col = 3;
  for (unsigned i = 0; i < n; i++) {
    char buf[24];
    int len = snprintf(buf, sizeof buf, map ? "F(%u)%s" : "%u%s", v[i], i + 1 < n ? "," : "");
    if (col + 1 + (unsigned)len > 76) {
      printf(" \\\n   ");
      col = 3;
    }
    printf(" %s", buf);
    col += 1 + (unsigned)len;
  }
  printf(" }\n");
}

static void print_init(const char *name, const unsigned *v, unsigned n) { print_values(name, v, n, false); }

static void print_table(void)
{
  unsigned n = ncls + 1; /* with class 0 */
  unsigned size[MAX_CLASSES + 1], pages[MAX_CLASSES + 1], objects[MAX_CLASSES + 1], dm[MAX_CLASSES + 1];
  unsigned fine[FINE_LEN], coarse[COARSE_LEN];
  unsigned max_pages = 0, max_objects = 0;
  size[0] = pages[0] = objects[0] = dm[0] = 0; /* class 0: large objects */
  for (unsigned k = 1; k < n; k++) {
    size[k] = cls[k - 1];
    pages[k] = class_pages(size[k]);
    objects[k] = pages[k] * PAGE_SIZE / size[k];
    dm[k] = divmul(size[k]);
    if (pages[k] > max_pages)
      max_pages = pages[k];
    if (objects[k] > max_objects)
      max_objects = objects[k];
  }
  for (unsigned i = 0; i < FINE_LEN; i++) /* sizes (i-1)*16+1 .. i*16 */
    fine[i] = class_of(i == 0 ? 1 : i * FINE_STEP);
  for (unsigned i = 0; i < COARSE_LEN; i++) /* sizes .. 1024 + i*128 */
    coarse[i] = class_of(FINE_MAX + i * COARSE_STEP);

  /* Worst figures where the step exceeds the quantum, for the summary. */
  frac worst_round = {0, 1}, worst_total = {0, 1};
  unsigned worst_round_k = 0, worst_total_k = 0;
  for (unsigned k = 1; k < n; k++) {
    unsigned p = size[k - 1], s = size[k];
    frac r = {s - p - 1, s}, t = class_waste(p, s);
    if (s - p <= QUANTUM)
      continue;
    if (frac_less(worst_round, r)) {
      worst_round = r;
      worst_round_k = k;
    }
    if (frac_less(worst_total, t)) {
      worst_total = t;
      worst_total_k = k;
    }
  }

  printf("/* generated by tools/mksizeclasses.c; do not edit.\n"
         " *\n"
         " * neap's size classes: %u small classes (1..%u) for objects up to %u bytes;\n"
         " * class 0 stands for large objects, which get spans of their own.\n"
         " * The rules and how the list is chosen: the comment at the top of\n"
         " * tools/mksizeclasses.c. Spans are counted in %u-byte neap pages.\n"
         " *\n"
         " * Columns: tail = bytes left after the last object of a span; round =\n"
         " * the most a request can lose to rounding up (a request one byte above\n"
         " * the class before); total = the most a span can lose, rounding and\n"
         " * tail together (a span full of such requests).\n"
         " *\n"
         " * Below 128 bytes the %u-byte step dominates (class 1 loses %u of %u\n"
         " * bytes to a 1-byte request). Where the step is larger, the worst\n"
         " * rounding waste is ",
         ncls, ncls, SMALL_MAX, PAGE_SIZE, QUANTUM, QUANTUM - 1, QUANTUM);
  print_percent(worst_round.num, worst_round.den, 0);
  printf(" (class %u) and the worst total waste\n * ", worst_round_k);
  print_percent(worst_total.num, worst_total.den, 0);
  printf(" (class %u).\n", worst_total_k);
  printf(" *\n"
         " * class  bytes/obj  pages/span  objects/span  tail bytes   max round   max total\n");
  for (unsigned k = 1; k < n; k++) {
    unsigned p = size[k - 1], s = size[k], span = pages[k] * PAGE_SIZE;
    frac t = class_waste(p, s);
    printf(" * %5u  %9u  %10u  %12u  %10u    ", k, s, pages[k], objects[k], span - objects[k] * s);
    print_percent(s - p - 1, s, 3);
    printf("     ");
    print_percent(t.num, t.den, 3);
    printf("\n");
  }
  printf(" */\n"
         "#ifndef NEAP_SIZECLASS_TABLE_H\n"
         "#define NEAP_SIZECLASS_TABLE_H\n"
         "\n"
         "/* The geometry this table was computed for (checked in sizeclass.c). */\n"
         "#define NEAP_SIZECLASS_PAGE_SIZE %u\n"
         "#define NEAP_SIZECLASS_SMALL_MAX %u\n"
         "\n"
         "#define NEAP_NUM_CLASSES %u /* table entries: class 0 (large) + %u small */\n"
         "#define NEAP_CLASS_MAX_PAGES %u /* longest span of a small class */\n"
         "#define NEAP_CLASS_MAX_OBJECTS %u /* most objects in one span */\n"
         "#define NEAP_SIZE_TO_CLASS16_MAX %u /* sizes up to here use size_to_class16 */\n"
         "#define NEAP_SIZE_TO_CLASS16_LEN %u\n"
         "#define NEAP_SIZE_TO_CLASS128_LEN %u\n"
         "\n",
         PAGE_SIZE, SMALL_MAX, n, ncls, max_pages, max_objects, FINE_MAX, FINE_LEN, COARSE_LEN);
  print_init("NEAP_CLASS_SIZE_INIT", size, n);
  print_init("NEAP_CLASS_PAGES_INIT", pages, n);
  print_init("NEAP_CLASS_OBJECTS_INIT", objects, n);
  print_init("NEAP_CLASS_DIVMUL_INIT", dm, n);
  printf("/* [i]: the class of sizes (i-1)*16+1 .. i*16; [0] serves size 0. Each wrapped in F. */\n");
  print_values("NEAP_SIZE_TO_CLASS16_MAP", fine, FINE_LEN, true);
  printf("/* [i]: the class of sizes 1024+(i-1)*128+1 .. 1024+i*128; [0] unused. */\n");
  print_init("NEAP_SIZE_TO_CLASS128_INIT", coarse, COARSE_LEN);
  printf("\n#endif\n");
}

int main(void)
{
  go_classes();
  repair();
  verify();
  print_table();
  return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}
