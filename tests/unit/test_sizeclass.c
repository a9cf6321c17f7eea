/* Unit test of the size-class table (src/sizeclass.h).
 *
 *   test_sizeclass [GENERATOR [HEADER]]
 *
 * Checks every rule of tools/mksizeclasses.c again on the compiled tables,
 * deriving each expected value here from the rule itself, and checks the
 * lookups exhaustively: every size 0..NEAP_SMALL_MAX, every byte offset of
 * every span. With GENERATOR (the built tools/mksizeclasses), it also runs
 * it and compares its output with the committed header, byte for byte:
 * HEADER, or src/sizeclass_table.h found from this file's path. Without
 * GENERATOR that check is skipped, with a message.
 */
#define _POSIX_C_SOURCE 200809L

#include "sizeclass.h"

#include "../test.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NSMALL (NEAP_NUM_CLASSES - 1)

static const char *generator_path, *header_path;

/* Rule 3, from scratch: the fewest pages (at most 16) whose tail is at
 * most 1/8; if that span holds fewer than 8 objects, the fewest with that
 * tail holding at least 16, where there is one. */
static unsigned tail_pages(uint32_t size, unsigned min_objects)
{
  for (unsigned pages = 1; pages <= 16; pages++) {
    size_t span = pages * NEAP_PAGE_SIZE;
    if (span % size <= span / 8 && span / size >= min_objects)
      return pages;
  }
  return 0;
}

static unsigned expected_pages(uint32_t size)
{
  unsigned pages = tail_pages(size, 1);
  if (pages * NEAP_PAGE_SIZE / size >= 8)
    return pages;
  unsigned longer = tail_pages(size, 16);
  return longer ? longer : pages;
}

static void test_class_zero(void)
{
  CHECK_EQ(neap__class_size[0], 0);
  CHECK_EQ(neap__class_pages[0], 0);
  CHECK_EQ(neap__class_objects[0], 0);
  CHECK_EQ(neap__class_divmul[0], 0);
}

static void test_count(void)
{
  CHECK(NSMALL >= 60 && NSMALL <= 72);
  CHECK(NEAP_NUM_CLASSES <= 256); /* class numbers are uint8_t */
}

static void test_sizes(void)
{
  CHECK_EQ(neap__class_size[1], 16);
  CHECK_EQ(neap__class_size[NSMALL], NEAP_SMALL_MAX);
  for (unsigned c = 1; c <= NSMALL; c++) {
    uint32_t s = neap__class_size[c];
    if (!CHECK(s > neap__class_size[c - 1]))
      fprintf(stderr, "  class %u (%u) after %u\n", c, s, neap__class_size[c - 1]);
    if (!CHECK_EQ(s % NEAP_ALIGN, 0))
      fprintf(stderr, "  class %u\n", c);
    /* The 128-byte lookup can only name a class that starts on its grid. */
    if (s > NEAP_SIZE_TO_CLASS16_MAX && !CHECK_EQ(s % 128, 0))
      fprintf(stderr, "  class %u\n", c);
  }
}

static void test_powers_of_two(void)
{
  for (uint32_t pw = 16; pw <= NEAP_SMALL_MAX; pw *= 2) {
    int found = 0;
    for (unsigned c = 1; c <= NSMALL; c++)
      found |= neap__class_size[c] == pw;
    if (!CHECK(found))
      fprintf(stderr, "  no class of %u bytes\n", pw);
  }
}

/* Rule 2: a request one byte above class c-1 loses at most 1/8 in class
 * c, unless the two are only the 16-byte quantum apart. */
static void test_rounding_waste(void)
{
  for (unsigned c = 1; c <= NSMALL; c++) {
    uint32_t p = neap__class_size[c - 1], s = neap__class_size[c];
    if (s - p <= 16)
      continue;
    if (!CHECK(8 * (s - p - 1) <= s))
      fprintf(stderr, "  %u -> %u wastes %u of %u bytes\n", p, s, s - p - 1, s);
  }
}

static void test_spans(void)
{
  unsigned max_pages = 0, max_objects = 0;
  for (unsigned c = 1; c <= NSMALL; c++) {
    uint32_t s = neap__class_size[c];
    unsigned pages = neap__class_pages[c], objects = neap__class_objects[c];
    size_t span = pages * NEAP_PAGE_SIZE;
    if (!CHECK_EQ(pages, expected_pages(s)))
      fprintf(stderr, "  class %u (%u bytes)\n", c, s);
    CHECK(pages >= 1 && pages <= 16);
    if (!CHECK_EQ(objects, span / s))
      fprintf(stderr, "  class %u (%u bytes)\n", c, s);
    CHECK(objects >= 1 && objects <= 512);
    if (!CHECK(span % s <= span / 8))
      fprintf(stderr, "  class %u: tail %zu of %zu\n", c, span % s, span);
    max_pages = pages > max_pages ? pages : max_pages;
    max_objects = objects > max_objects ? objects : max_objects;
  }
  CHECK_EQ(NEAP_CLASS_MAX_PAGES, max_pages);
  CHECK_EQ(NEAP_CLASS_MAX_OBJECTS, max_objects);
}

/* Every byte offset of every span maps to its object's index, and the low
 * half of the same product tells object starts from everything else: it is
 * below divmul exactly when the offset is a multiple of the size (the free
 * fast path checks pointers with it, so it must hold everywhere). */
static void test_divmul(void)
{
  for (unsigned c = 1; c <= NSMALL; c++) {
    uint32_t s = neap__class_size[c];
    size_t span = neap__class_pages[c] * NEAP_PAGE_SIZE;
    size_t bad = 0;
    for (size_t off = 0; off < span; off++) {
      unsigned want = (unsigned)(off / s);
      uint64_t prod = (uint64_t)off * neap__class_divmul[c];
      unsigned raw = (unsigned)(prod >> 32);
      int start = (uint32_t)prod < neap__class_divmul[c];
      if ((raw != want || neap__class_object_index(c, off) != want || start != (off % s == 0)) && bad++ == 0)
        fprintf(stderr, "  class %u (%u bytes): offset %zu gives %u (start %d), not %u\n", c, s, off, raw,
                start, want);
    }
    if (!CHECK_EQ(bad, 0))
      fprintf(stderr, "  class %u: %zu offsets wrong\n", c, bad);
  }
}

/* Every size maps to the smallest class that holds it (size 0 as 1). */
static void test_size_class(void)
{
  unsigned want = 1;
  size_t bad = 0;
  for (size_t n = 0; n <= NEAP_SMALL_MAX; n++) {
    while (neap__class_size[want] < (n ? n : 1))
      want++;
    unsigned got = neap__size_class(n);
    if (got != want && bad++ == 0)
      fprintf(stderr, "  size %zu gives class %u, not %u\n", n, got, want);
  }
  CHECK_EQ(bad, 0);
  CHECK_EQ(neap__size_class(0), 1);
  CHECK_EQ(neap__size_class(NEAP_SMALL_MAX), NSMALL);
  /* The tables' own ends: all entries name a real class. */
  for (unsigned i = 0; i < NEAP_SIZE_TO_CLASS16_LEN; i++)
    CHECK(neap__size_to_class16[i] >= 1 && neap__size_to_class16[i] <= NSMALL);
  for (unsigned i = 0; i < NEAP_SIZE_TO_CLASS128_LEN; i++)
    CHECK(neap__size_to_class128[i] >= 1 && neap__size_to_class128[i] <= NSMALL);
}

/* The list prefers the Go runtime's classes (go1.19 sizeclasses.go): each
 * of Go's sizes that is a multiple of 16 and whose gaps to its neighbours
 * in Go's list keep rule 2 is one of ours. */
static void test_go_classes_kept(void)
{
  static const uint32_t go[] = {
      8,     16,    24,    32,    48,    64,    80,    96,    112,   128,   144,   160,   176,   192,
      208,   224,   240,   256,   288,   320,   352,   384,   416,   448,   480,   512,   576,   640,
      704,   768,   896,   1024,  1152,  1280,  1408,  1536,  1792,  2048,  2304,  2688,  3072,  3200,
      3456,  4096,  4864,  5376,  6144,  6528,  6784,  6912,  8192,  9472,  9728,  10240, 10880, 12288,
      13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768};
  const unsigned n = sizeof go / sizeof go[0];
  for (unsigned i = 0; i < n; i++) {
    uint32_t s = go[i], p = i > 0 ? go[i - 1] : 0, q = i + 1 < n ? go[i + 1] : 0;
    if (s % 16 != 0 || (s - p > 16 && 8 * (s - p - 1) > s) || (q && q - s > 16 && 8 * (q - s - 1) > q))
      continue;
    int found = 0;
    for (unsigned c = 1; c <= NSMALL; c++)
      found |= neap__class_size[c] == s;
    if (!CHECK(found))
      fprintf(stderr, "  Go's class of %u bytes is missing\n", s);
  }
}

/* --- the generator reproduces the committed header */

static char gen_out[1 << 16], committed[1 << 16];

/* Reads all of f into buf; the length, or -1 if it does not fit. */
static long read_all(FILE *f, char *buf, size_t cap)
{
  size_t n = fread(buf, 1, cap, f);
  if (n == cap || ferror(f))
    return -1;
  return (long)n;
}

static void test_generator(void)
{
  if (!generator_path || access(generator_path, X_OK) != 0) {
    fprintf(stderr, "test_generator: skipped (pass the built tools/mksizeclasses as argv[1])\n");
    return;
  }
  char default_header[4096];
  if (!header_path) { /* src/sizeclass_table.h beside this file's tests/unit/ */
    const char *me = __FILE__, *tail = "tests/unit/test_sizeclass.c";
    size_t len = strlen(me), tlen = strlen(tail);
    size_t root = len >= tlen && strcmp(me + len - tlen, tail) == 0 ? len - tlen : 0;
    snprintf(default_header, sizeof default_header, "%.*ssrc/sizeclass_table.h", (int)root, me);
    if (access(default_header, R_OK) != 0) { /* compiled from elsewhere with a relative path */
      fprintf(stderr, "test_generator: skipped (cannot find %s; pass the header as argv[2])\n", default_header);
      return;
    }
    header_path = default_header;
  }

  char cmd[4200];
  if (!CHECK(strchr(generator_path, '\'') == NULL))
    return;
  snprintf(cmd, sizeof cmd, "'%s'", generator_path);
  FILE *p = popen(cmd, "r");
  if (!CHECK(p != NULL))
    return;
  long n_out = read_all(p, gen_out, sizeof gen_out);
  int status = pclose(p);
  CHECK_EQ(status, 0);
  CHECK(n_out > 0);

  FILE *h = fopen(header_path, "rb");
  if (!CHECK(h != NULL)) {
    fprintf(stderr, "  cannot open %s\n", header_path);
    return;
  }
  long n_committed = read_all(h, committed, sizeof committed);
  fclose(h);
  CHECK(n_committed > 0);
  if (n_out <= 0 || n_committed <= 0)
    return;

  size_t common = (size_t)(n_out < n_committed ? n_out : n_committed), i = 0, line = 1;
  while (i < common && gen_out[i] == committed[i])
    line += gen_out[i++] == '\n';
  if (!CHECK(n_out == n_committed && i == common))
    fprintf(stderr, "  %s differs from the generator's output from line %zu on: regenerate it\n", header_path, line);
}

int main(int argc, char **argv)
{
  generator_path = argc > 1 ? argv[1] : NULL;
  header_path = argc > 2 ? argv[2] : NULL;
  RUN(test_class_zero);
  RUN(test_count);
  RUN(test_sizes);
  RUN(test_powers_of_two);
  RUN(test_rounding_waste);
  RUN(test_spans);
  RUN(test_divmul);
  RUN(test_size_class);
  RUN(test_go_classes_kept);
  RUN(test_generator);
  return TEST_DONE();
}
