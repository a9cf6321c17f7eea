/* test_fault: out-of-memory paths, driven by the os layer's fault hook.
 *
 * A scenario (an allocation function and a size) runs once for each N in
 * 1..MAX_NTH:
 *   1. pad: allocate 1 MiB blocks until the os layer reports a commit, so
 *      the heap's committed memory is (nearly) used up and what follows
 *      must grow the heap;
 *   2. arm neap__os_fail_nth(NEAP_OS_COMMIT, N) and allocate blocks of the scenario's
 *      size, holding them all, until one allocation fails;
 *   3. that allocation returned NULL with errno ENOMEM (posix_memalign:
 *      returned ENOMEM), exactly one fault was injected, and the heap's live
 *      bytes are exactly the sum of neap_usable_size over the blocks held
 *      (a failed allocation leaks nothing into the accounts);
 *   4. the fault fires once: the same request now succeeds;
 *   5. everything is freed and the live bytes and objects are zero again.
 * The realloc scenarios grow held blocks (small and large) until a realloc
 * fails, and then check the old block is intact: same usable size, same
 * contents, still the start of a live object.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "neap.h"
#include "os/os.h"
#include "../test.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define MAX_NTH 4
#define PAD_SIZE MiB
#define PAD_MAX 8192
#define HELD_MAX ((size_t)1 << 20)
#define REALLOC_MAX 16384
/* How many blocks a realloc scenario grows, at most: enough to use up a
 * few chunks, bounded so a fault that never fires costs little. */
static size_t realloc_count(size_t from, size_t to) {
  size_t n = REALLOC_MAX;
  if (n > 64 * MiB / from) n = 64 * MiB / from;
  if (n > 256 * MiB / to) n = 256 * MiB / to;
  return n;
}

enum kind { K_MALLOC, K_CALLOC, K_ALIGNED, K_MEMALIGN, K_REALLOC };

struct scenario {
  const char *name;
  enum kind kind;
  size_t size;
  size_t arg; /* calloc: element count; aligned: alignment; realloc: the size grown to */
};

static const struct scenario scenarios[] = {
    {"malloc 64", K_MALLOC, 64, 0},
    {"malloc 1024", K_MALLOC, 1024, 0},
    {"malloc 32768", K_MALLOC, 32768, 0},
    {"malloc 40 KiB", K_MALLOC, 40 * KiB, 0},
    {"malloc 1 MiB", K_MALLOC, MiB, 0},
    {"malloc 6 MiB", K_MALLOC, 6 * MiB, 0}, /* more than one 4 MiB chunk */
    {"calloc 16 x 4", K_CALLOC, 64, 16},
    {"calloc 3 x 1000", K_CALLOC, 3000, 3},
    {"calloc 1 x 3 MiB", K_CALLOC, 3 * MiB, 1},
    {"aligned_alloc 64, 100", K_ALIGNED, 100, 64},
    {"aligned_alloc 4096, 12288", K_ALIGNED, 3 * 4096, 4096},
    {"aligned_alloc 1 MiB, 1 MiB + 5", K_ALIGNED, MiB + 5, MiB},
    {"posix_memalign 256, 5000", K_MEMALIGN, 5000, 256},
    {"realloc 100 -> 2 MiB", K_REALLOC, 100, 2 * MiB},
    {"realloc 1 MiB -> 5 MiB", K_REALLOC, MiB, 5 * MiB},
    {"realloc 200 -> 3000", K_REALLOC, 200, 3000},
};

static void *pads[PAD_MAX];
static size_t npads;
static void *held[HELD_MAX];
static size_t nheld;

static neap_os_counters counters(void) {
  neap_os_counters c;
  neap__os_counters(&c);
  return c;
}

static unsigned char pat(size_t i, size_t seed) { return (unsigned char)((i * 251u + seed * 13u + 7u) & 0xffu); }
static void fill(void *p, size_t n, size_t seed) {
  unsigned char *b = p;
  for (size_t i = 0; i < n; i++) b[i] = pat(i, seed);
}
static int intact(const void *p, size_t n, size_t seed) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != pat(i, seed)) return 0;
  return 1;
}
static int zero_at(const unsigned char *p, size_t from, size_t to) {
  for (size_t i = from; i < to; i++)
    if (p[i]) return 0;
  return 1;
}

/* Use up the committed memory: 1 MiB blocks, never touched, until the heap
 * has had to commit more. */
static void pad_until_growth(void) {
  uint64_t c0 = counters().calls[NEAP_OS_COMMIT];
  while (npads < PAD_MAX && counters().calls[NEAP_OS_COMMIT] == c0) {
    void *p = neap_malloc(PAD_SIZE);
    if (!CHECK(p != NULL)) break;
    pads[npads++] = p;
  }
  CHECK(npads < PAD_MAX);
}

static size_t usable_sum(void *const *v, size_t n) {
  size_t sum = 0;
  for (size_t i = 0; i < n; i++) sum += neap_usable_size(v[i]);
  return sum;
}

/* One allocation of the scenario's kind; *err gets errno (posix_memalign:
 * its return value) when it fails. */
static void *alloc_one(const struct scenario *s, int *err) {
  void *p = NULL;
  errno = 0;
  switch (s->kind) {
  case K_MALLOC:
    p = neap_malloc(s->size);
    break;
  case K_CALLOC:
    p = neap_calloc(s->arg, s->size / s->arg);
    break;
  case K_ALIGNED:
    p = neap_aligned_alloc(s->arg, s->size);
    break;
  case K_MEMALIGN: {
    int r = neap_posix_memalign(&p, s->arg, s->size);
    if (r) {
      *err = r;
      return NULL;
    }
    break;
  }
  case K_REALLOC:
    break;
  }
  *err = errno;
  return p;
}

/* A successful allocation is what it should be. */
static int good_block(const struct scenario *s, const void *p) {
  const unsigned char *b = p;
  if (((uintptr_t)p & 15) || neap_usable_size(p) < s->size) return 0;
  if ((s->kind == K_ALIGNED || s->kind == K_MEMALIGN) && ((uintptr_t)p & (s->arg - 1))) return 0;
  if (s->kind == K_CALLOC) {
    /* All of a small block; the ends of a large one (touching all of it
     * would cost its size in resident memory). */
    if (s->size <= 64 * KiB) return zero_at(b, 0, s->size);
    return zero_at(b, 0, 8 * KiB) && zero_at(b, s->size - 8 * KiB, s->size);
  }
  return 1;
}

static void free_all(void) {
  for (size_t i = 0; i < nheld; i++) neap_free(held[i]);
  for (size_t i = 0; i < npads; i++) neap_free(pads[i]);
  nheld = npads = 0;
}

static void run_alloc_scenario(const struct scenario *s, long nth) {
  size_t base = neap__heap_live_bytes();
  pad_until_growth();
  uint64_t injected0 = counters().injected[NEAP_OS_COMMIT];
  neap__os_fail_nth(NEAP_OS_COMMIT, nth);
  int err = 0, failed = 0, bad = 0;
  while (nheld < HELD_MAX - 1) { /* the retry below needs a slot */
    void *p = alloc_one(s, &err);
    if (!p) {
      failed = 1;
      break;
    }
    bad += !good_block(s, p);
    held[nheld++] = p;
  }
  uint64_t injected = counters().injected[NEAP_OS_COMMIT] - injected0;
  if (!failed) neap__os_fail_nth(NEAP_OS_COMMIT, 0);
  if (!CHECK(failed) || !CHECK_EQ(err, ENOMEM) || !CHECK_EQ(injected, 1) || !CHECK_EQ(bad, 0))
    fprintf(stderr, "  scenario \"%s\", N=%ld: %zu blocks held\n", s->name, nth, nheld);
  CHECK_EQ(neap__heap_live_bytes(), base + usable_sum(held, nheld) + usable_sum(pads, npads));
  CHECK_EQ(neap__heap_live_objects(), nheld + npads);

  /* The fault has fired and is gone: the same request succeeds now. */
  void *p = alloc_one(s, &err);
  if (!CHECK(p != NULL) || !CHECK(good_block(s, p)))
    fprintf(stderr, "  scenario \"%s\", N=%ld: retry gave %p (errno %d)\n", s->name, nth, p, err);
  if (p) held[nheld++] = p;
  CHECK_EQ(neap__heap_live_bytes(), base + usable_sum(held, nheld) + usable_sum(pads, npads));
  neap__os_fail_nth(NEAP_OS_COMMIT, 0);

  free_all();
  CHECK_EQ(neap__heap_live_bytes(), base);
  CHECK_EQ(neap__heap_live_objects(), 0);
}

static void run_realloc_scenario(const struct scenario *s, long nth) {
  size_t base = neap__heap_live_bytes();
  size_t from = s->size, to = s->arg;
  static void *blocks[REALLOC_MAX];
  size_t count = realloc_count(from, to), old_usable = 0;
  for (size_t i = 0; i < count; i++) {
    blocks[i] = neap_malloc(from);
    CHECK(blocks[i] != NULL);
    fill(blocks[i], from, i);
  }
  pad_until_growth();
  uint64_t injected0 = counters().injected[NEAP_OS_COMMIT];
  neap__os_fail_nth(NEAP_OS_COMMIT, nth);
  size_t i = 0;
  int failed = 0, err = 0, moved_bad = 0;
  for (; i < count; i++) {
    old_usable = neap_usable_size(blocks[i]);
    errno = 0;
    void *q = neap_realloc(blocks[i], to);
    err = errno;
    if (!q) {
      failed = 1;
      break;
    }
    moved_bad += !intact(q, from, i) || neap_usable_size(q) < to;
    blocks[i] = q;
  }
  uint64_t injected = counters().injected[NEAP_OS_COMMIT] - injected0;
  if (!failed) neap__os_fail_nth(NEAP_OS_COMMIT, 0);
  if (!CHECK(failed) || !CHECK_EQ(err, ENOMEM) || !CHECK_EQ(injected, 1) || !CHECK_EQ(moved_bad, 0))
    fprintf(stderr, "  scenario \"%s\", N=%ld: %zu reallocs done\n", s->name, nth, i);
  CHECK_EQ(neap__heap_live_bytes(), base + usable_sum(blocks, count) + usable_sum(pads, npads));
  CHECK_EQ(neap__heap_live_objects(), count + npads);

  if (failed) {
    /* The block whose realloc failed is untouched. */
    void *p = blocks[i];
    CHECK_EQ(neap_usable_size(p), old_usable);
    CHECK(intact(p, from, i));
    CHECK_PTR_EQ(neap__object_start(p), p);
    /* And the same realloc works now. */
    void *q = neap_realloc(p, to);
    if (CHECK(q != NULL)) {
      CHECK(intact(q, from, i));
      CHECK(neap_usable_size(q) >= to);
      blocks[i] = q;
    }
  }
  neap__os_fail_nth(NEAP_OS_COMMIT, 0);
  for (size_t j = 0; j < count; j++) neap_free(blocks[j]);
  free_all();
  CHECK_EQ(neap__heap_live_bytes(), base);
  CHECK_EQ(neap__heap_live_objects(), 0);
}

static void test_fault_injection(void) {
  CHECK_EQ(neap__heap_live_bytes(), 0);
  for (size_t k = 0; k < sizeof scenarios / sizeof scenarios[0]; k++) {
    const struct scenario *s = &scenarios[k];
    unsigned long failed0 = test__failed;
    for (long nth = 1; nth <= MAX_NTH; nth++) {
      if (s->kind == K_REALLOC)
        run_realloc_scenario(s, nth);
      else
        run_alloc_scenario(s, nth);
    }
    fprintf(stderr, "  %-32s %s\n", s->name, test__failed == failed0 ? "ok" : "FAILED");
  }
}

/* After all that, ordinary allocation still works and the accounts are
 * exact. */
static void test_still_working(void) {
  void *a = neap_malloc(100), *b = neap_malloc(10 * MiB), *c = neap_calloc(100, 100);
  CHECK(a && b && c);
  CHECK_EQ(neap__heap_live_bytes(), neap_usable_size(a) + neap_usable_size(b) + neap_usable_size(c));
  neap_free(a);
  neap_free(b);
  neap_free(c);
  CHECK_EQ(neap__heap_live_bytes(), 0);
  CHECK_EQ(neap__heap_live_objects(), 0);
}

int main(void) {
  RUN(test_fault_injection);
  RUN(test_still_working);
  return TEST_DONE();
}
