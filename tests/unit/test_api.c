/* test_api: the C semantics promised in include/neap.h, errno values
 * included, and the misuse checks that abort.
 *
 * Every test frees what it allocates, so after each one the heap's live
 * object count must be back to zero (checked by run()). The out-of-memory
 * test runs first, while the heap has committed little, so that the
 * allocation it makes fail really has to grow the heap.
 *
 * Misuse tests run in forked children (test.h) and must die of SIGABRT
 * after printing a line "neap: <what> <pointer>"; the pointer's hex digits
 * must appear in that line.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "heap.h"
#include "internal.h"
#include "neap.h"
#include "sizeclass.h"
#include "options.h"
#include "os/os.h"
#include "../test.h"

_Static_assert(sizeof(size_t) == 8, "neap and these tests assume a 64-bit size_t");

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

#if defined(__GLIBC__)
/* glibc's own allocator, reached even if a neap override of malloc is
 * linked in: the pointers neap must refuse as foreign. */
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
#define FOREIGN_MALLOC __libc_malloc
#define FOREIGN_FREE __libc_free
#else
#define FOREIGN_MALLOC malloc
#define FOREIGN_FREE free
#endif

/* Hide a value from the optimiser: keeps gcc from warning about (or
 * folding) requests it can see are absurd, and keeps _FORTIFY_SOURCE's
 * alloc_size bookkeeping from objecting when we write the whole usable
 * size, which may exceed the size asked for. */
static size_t opaque(size_t x) {
  __asm__ volatile("" : "+r"(x));
  return x;
}
static unsigned char *launder(void *p) {
  __asm__ volatile("" : "+r"(p));
  return p;
}

static int aligned_to(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

/* A byte pattern that depends on the offset and a seed, not on the
 * address, so it survives a realloc that moves the block. */
static unsigned char pat(size_t i, unsigned seed) {
  return (unsigned char)((i * 131u + (i >> 9) + seed * 7u + 1u) & 0xffu);
}
static void fill(void *p, size_t n, unsigned seed) {
  unsigned char *b = launder(p);
  for (size_t i = 0; i < n; i++) b[i] = pat(i, seed);
}
/* n if all n bytes hold the pattern, else the first offset that does not. */
static size_t first_bad(const void *p, size_t n, unsigned seed) {
  const unsigned char *b = launder((void *)(uintptr_t)p);
  for (size_t i = 0; i < n; i++)
    if (b[i] != pat(i, seed)) return i;
  return n;
}
static size_t first_nonzero(const void *p, size_t n) {
  const unsigned char *b = launder((void *)(uintptr_t)p);
  for (size_t i = 0; i < n; i++)
    if (b[i] != 0) return i;
  return n;
}

/* Write a block: all of it when small, else its first and last MiB (the
 * 192 MiB blocks of the alignment test would otherwise cost their size in
 * resident memory). */
static void touch(void *p, size_t n) {
  unsigned char *b = launder(p);
  if (n <= 2 * MiB) {
    memset(b, 0x5a, n);
  } else {
    memset(b, 0x5a, MiB);
    memset(b + n - MiB, 0x5a, MiB);
  }
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

/* ---- out of memory (runs first) */

static void test_out_of_memory(void) {
  const size_t big = 256 * MiB;
  neap_os_counters c0, c1;
  neap_free(neap_malloc(64)); /* the heap exists before we arm the fault */
  size_t live0 = neap__heap_live_bytes();
  neap__os_counters(&c0);
  neap__os_fail_nth(NEAP_OS_COMMIT, 1);
  errno = 0;
  void *p = neap_malloc(opaque(big));
  int e = errno;
  neap__os_counters(&c1);
  neap__os_fail_nth(NEAP_OS_COMMIT, 0); /* in case it never fired */
  CHECK(p == NULL);
  CHECK_EQ(e, ENOMEM);
  CHECK_EQ(c1.injected[NEAP_OS_COMMIT] - c0.injected[NEAP_OS_COMMIT], 1);
  CHECK_EQ(neap__heap_live_bytes(), live0);
  if (p) neap_free(p);

  /* neap keeps working: the same request now succeeds. */
  p = neap_malloc(opaque(big));
  CHECK(p != NULL);
  if (p) {
    CHECK(neap_usable_size(p) >= big);
    touch(p, big);
    neap_free(p);
  }
  void *q = neap_malloc(100);
  CHECK(q != NULL);
  neap_free(q);
}

/* ---- alignment, usable size, disjointness */

#define SWEEP_MAX 8192
static void *sweep_ptr[SWEEP_MAX];
static size_t sweep_size[SWEEP_MAX];
static uintptr_t sweep_sorted[SWEEP_MAX];

static size_t sweep_next(size_t s) { return s < 4096 ? s + 1 : s + 61; }

/* The usable sizes of the sweep's blocks as a thread that never
 * allocated sees them (its cache is the empty one: every call takes the
 * full check, not the fast path through the thread's own slots). */
static size_t sweep_usable_elsewhere[SWEEP_MAX];
static size_t sweep_n;
static void *usable_elsewhere(void *arg) {
  (void)arg;
  for (size_t i = 0; i < sweep_n; i++) sweep_usable_elsewhere[i] = neap_usable_size(sweep_ptr[i]);
  return NULL;
}

static void test_alignment_and_usable(void) {
  size_t n = 0;
  int bad_align = 0, bad_usable = 0, bad_start = 0, bad_owns = 0, nulls = 0;
  for (size_t s = 0; s <= 70000 && n < SWEEP_MAX; s = sweep_next(s)) {
    void *p = neap_malloc(opaque(s));
    if (!p) {
      nulls++;
      continue;
    }
    size_t u = neap_usable_size(p);
    if (!aligned_to(p, 16)) bad_align++;
    if (u < s) bad_usable++;
    if (neap__object_start(p) != p || (u && neap__object_start(launder(p) + u - 1) != p)) bad_start++;
    if (!neap_owns(p) || (u && !neap_owns(launder(p) + u - 1))) bad_owns++;
    memset(launder(p), 0xa5, u); /* the whole usable size is ours */
    fill(p, s, (unsigned)n);
    sweep_ptr[n] = p;
    sweep_size[n] = s;
    n++;
  }
  CHECK_EQ(nulls, 0);
  CHECK_EQ(bad_align, 0);
  CHECK_EQ(bad_usable, 0);
  CHECK_EQ(bad_start, 0);
  CHECK_EQ(bad_owns, 0);

  /* The fast path and the full check agree, block by block; a small
   * block's usable size is its class's. */
  sweep_n = n;
  pthread_t t;
  CHECK(pthread_create(&t, NULL, usable_elsewhere, NULL) == 0);
  pthread_join(t, NULL);
  size_t differ = 0, not_class = 0;
  for (size_t i = 0; i < n; i++) {
    size_t u = neap_usable_size(sweep_ptr[i]);
    differ += u != sweep_usable_elsewhere[i];
    not_class += sweep_size[i] <= NEAP_SMALL_MAX && u != neap__class_size[neap__size_class(sweep_size[i])];
  }
  CHECK_EQ(differ, 0);
  CHECK_EQ(not_class, 0);

  /* All blocks live at once: none overlaps another, no pattern got
   * overwritten, and the live counts are exact. */
  size_t want_bytes = 0;
  for (size_t i = 0; i < n; i++) {
    sweep_sorted[i] = (uintptr_t)sweep_ptr[i];
    want_bytes += neap_usable_size(sweep_ptr[i]);
  }
  CHECK_EQ(neap__heap_live_objects(), n);
  CHECK_EQ(neap__heap_live_bytes(), want_bytes);
  qsort(sweep_sorted, n, sizeof sweep_sorted[0], cmp_ptr);
  int overlaps = 0, damaged = 0;
  for (size_t i = 0; i + 1 < n; i++) {
    size_t u = neap_usable_size((void *)sweep_sorted[i]);
    if (sweep_sorted[i] + (u ? u : 1) > sweep_sorted[i + 1]) overlaps++;
  }
  for (size_t i = 0; i < n; i++)
    if (first_bad(sweep_ptr[i], sweep_size[i], (unsigned)i) != sweep_size[i]) damaged++;
  CHECK_EQ(overlaps, 0);
  CHECK_EQ(damaged, 0);
  for (size_t i = 0; i < n; i++) neap_free(sweep_ptr[i]);

  /* A few large sizes. */
  static const size_t large[] = {32768, 32769, 40 * KiB, 100000, MiB - 1, MiB, MiB + 1,
                                 4 * MiB, 4 * MiB + 1, 10 * MiB};
  for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
    size_t s = large[i];
    unsigned char *p = neap_malloc(opaque(s));
    CHECK(p != NULL);
    if (!p) continue;
    size_t u = neap_usable_size(p);
    CHECK(aligned_to(p, 16));
    CHECK(u >= s);
    CHECK(neap_owns(p) && neap_owns(p + u - 1));
    CHECK_PTR_EQ(neap__object_start(p + u - 1), p);
    memset(launder(p), 0x3c, u);
    neap_free(p);
  }
}

/* ---- malloc(0) */

static void test_malloc_zero(void) {
  void *a = neap_malloc(0), *b = neap_malloc(0);
  CHECK(a != NULL);
  CHECK(b != NULL);
  CHECK(a != b);
  CHECK(aligned_to(a, 16) && aligned_to(b, 16));
  CHECK(neap_owns(a));
  CHECK_PTR_EQ(neap__object_start(a), a);
  CHECK_EQ(neap__heap_live_objects(), 2);
  neap_free(a);
  neap_free(b);

  /* Many at once are all distinct. */
  enum { N = 1000 };
  static uintptr_t v[N];
  int nulls = 0;
  for (int i = 0; i < N; i++) {
    void *p = neap_malloc(opaque(0));
    nulls += p == NULL;
    v[i] = (uintptr_t)p;
  }
  CHECK_EQ(nulls, 0);
  qsort(v, N, sizeof v[0], cmp_ptr);
  int dups = 0;
  for (int i = 0; i + 1 < N; i++) dups += v[i] == v[i + 1];
  CHECK_EQ(dups, 0);
  for (int i = 0; i < N; i++) neap_free((void *)v[i]);
}

/* ---- impossible requests: NULL with ENOMEM, and neap keeps working */

static void test_huge_requests(void) {
  static const size_t sizes[] = {
      SIZE_MAX,           SIZE_MAX - 1,       SIZE_MAX - 15,      SIZE_MAX - 8191,
      SIZE_MAX - 4 * MiB, (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX, (size_t)1 << 62,
      (size_t)1 << 48,    (size_t)1 << 44, /* 16 TiB: over the 4 TiB the heap can index */
  };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    errno = 0;
    void *p = neap_malloc(opaque(sizes[i]));
    if (!CHECK(p == NULL)) fprintf(stderr, "  neap_malloc(%zu) succeeded\n", sizes[i]);
    CHECK_ERRNO(ENOMEM);
    if (p) neap_free(p);
  }

  static const struct {
    size_t n, size;
  } overflow[] = {
      {SIZE_MAX / 2 + 1, 2},
      {2, SIZE_MAX / 2 + 1},
      {SIZE_MAX, SIZE_MAX},
      {SIZE_MAX, 2},
      {(size_t)1 << 32, (size_t)1 << 32},
      {SIZE_MAX / 16 + 1, 16},
      {3, SIZE_MAX / 3 + 1},
      /* no overflow, but too big */
      {(size_t)1 << 62, 1},
      {1, (size_t)1 << 62},
      {(size_t)1 << 31, (size_t)1 << 31},
      {1, SIZE_MAX},
  };
  for (size_t i = 0; i < sizeof overflow / sizeof overflow[0]; i++) {
    errno = 0;
    void *p = neap_calloc(opaque(overflow[i].n), opaque(overflow[i].size));
    if (!CHECK(p == NULL)) fprintf(stderr, "  neap_calloc(%zu, %zu) succeeded\n", overflow[i].n, overflow[i].size);
    CHECK_ERRNO(ENOMEM);
    if (p) neap_free(p);
  }

  /* n*size == 0 is a zero-size request, not an overflow: like malloc(0). */
  void *z1 = neap_calloc(0, opaque(SIZE_MAX)), *z2 = neap_calloc(opaque(SIZE_MAX), 0);
  CHECK(z1 != NULL && z2 != NULL && z1 != z2);
  neap_free(z1);
  neap_free(z2);

  /* Aligned requests that cannot be met. */
  errno = 0;
  void *p = neap_aligned_alloc(64, opaque(SIZE_MAX));
  CHECK(p == NULL);
  CHECK_ERRNO(ENOMEM);
  errno = 0;
  p = neap_aligned_alloc(64 * MiB, opaque(SIZE_MAX - 1000));
  CHECK(p == NULL);
  CHECK_ERRNO(ENOMEM);
  errno = 0;
  p = neap_aligned_alloc(opaque((size_t)1 << 63), 1);
  CHECK(p == NULL);
  CHECK_ERRNO(ENOMEM);
  void *out = &out;
  CHECK_EQ(neap_posix_memalign(&out, 64, opaque(SIZE_MAX)), ENOMEM);
  CHECK(out == &out || out == NULL);
  out = &out;
  CHECK_EQ(neap_posix_memalign(&out, opaque((size_t)1 << 63), 16), ENOMEM);
  CHECK(out == &out || out == NULL);

  /* Still working. */
  void *a = neap_malloc(100), *b = neap_malloc(MiB), *c = neap_calloc(10, 10);
  CHECK(a && b && c);
  CHECK_EQ(c ? first_nonzero(c, 100) : 0, 100);
  neap_free(a);
  neap_free(b);
  neap_free(c);
}

/* ---- calloc is zero even for reused memory */

#define REUSE_MAX 4096
static void *reuse[REUSE_MAX];

static void calloc_reuse_one(size_t size) {
  size_t count = 2 * MiB / size;
  if (count < 8) count = 8;
  if (count > REUSE_MAX) count = REUSE_MAX;
  int nulls = 0, dirty = 0;

  /* Dirty the whole usable size of many blocks, then free them (every
   * other one first, so the free lists are not in allocation order). */
  for (size_t i = 0; i < count; i++) {
    reuse[i] = neap_malloc(size);
    if (!reuse[i]) {
      nulls++;
      continue;
    }
    memset(launder(reuse[i]), 0xaa, neap_usable_size(reuse[i]));
  }
  for (size_t i = 0; i < count; i += 2) neap_free(reuse[i]);
  for (size_t i = 1; i < count; i += 2) neap_free(reuse[i]);

  /* calloc(1, size): the size bytes are zero; dirty again and free. */
  for (size_t i = 0; i < count; i++) {
    reuse[i] = neap_calloc(1, size);
    if (!reuse[i]) {
      nulls++;
      continue;
    }
    if (first_nonzero(reuse[i], size) != size) dirty++;
    memset(launder(reuse[i]), 0xaa, neap_usable_size(reuse[i]));
  }
  size_t usable = reuse[0] ? neap_usable_size(reuse[0]) : size;
  for (size_t i = count; i-- > 0;) neap_free(reuse[i]);

  /* calloc of the class's full usable size, as n * elem when it divides:
   * the bytes past the first request must be zero too. */
  size_t elem = usable % 16 == 0 ? 16 : 1;
  for (size_t i = 0; i < count; i++) {
    reuse[i] = neap_calloc(usable / elem, elem);
    if (!reuse[i]) {
      nulls++;
      continue;
    }
    if (first_nonzero(reuse[i], usable) != usable) dirty++;
  }
  for (size_t i = 0; i < count; i++) neap_free(reuse[i]);

  if (!CHECK_EQ(nulls, 0) || !CHECK_EQ(dirty, 0)) fprintf(stderr, "  size %zu\n", size);
}

static void test_calloc_zero_on_reuse(void) {
  static const size_t sizes[] = {1,    16,   24,    32,    48,    64,    80,   100,
                                 128,  256,  500,   1024,  2048,  3000,  4096, 8192,
                                 10000, 16384, 20000, 27000, 32768, 40 * KiB, 100000, MiB,
                                 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) calloc_reuse_one(sizes[i]);
}

/* Blocks freed while their window is still being handed out come back
 * before the span's next pass, while the span may still count as fresh
 * from the OS: calloc must zero them all the same. Run first, so that the
 * spans are made of pages fresh from the OS. */
static void test_calloc_zero_window_reuse(void) {
  static const size_t sizes[] = {1500, 2500, 6000, 9000};
  void *p[256];
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t size = sizes[k];
    int dirty = 0;
    for (int round = 0; round < 4; round++) {
      for (int i = 0; i < 256; i++) {
        p[i] = neap_calloc(1, size);
        CHECK(p[i] != NULL);
        if (p[i] == NULL) return;
        const unsigned char *b = p[i];
        for (size_t j = 0; j < size; j++) dirty += b[j] != 0;
        memset(launder(p[i]), 0x5a, size);
        if (i % 3 == 0) neap_free(p[i]); /* into the window in use */
      }
      for (int i = 0; i < 256; i++)
        if (i % 3 != 0) neap_free(p[i]);
    }
    CHECK_EQ(dirty, 0);
  }
}

/* ---- realloc */

static void test_realloc_null_and_zero(void) {
  /* NULL: acts like malloc. */
  void *p = neap_realloc(NULL, 100);
  CHECK(p != NULL);
  if (p) {
    CHECK(neap_usable_size(p) >= 100);
    CHECK(aligned_to(p, 16));
    fill(p, 100, 1);
    neap_free(p);
  }
  /* realloc(NULL, 0) is malloc(0): a unique pointer (as glibc). */
  p = neap_realloc(NULL, opaque(0));
  CHECK(p != NULL);
  neap_free(p);

  /* realloc(p, 0) frees p and returns NULL without touching errno. */
  static const size_t sizes[] = {1, 100, 32768, 100000, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    p = neap_malloc(sizes[i]);
    CHECK(p != NULL);
    size_t live = neap__heap_live_objects();
    errno = EILSEQ;
    void *q = neap_realloc(p, opaque(0));
    CHECK(q == NULL);
    CHECK_ERRNO(EILSEQ);
    CHECK_EQ(neap__heap_live_objects(), live - 1);
    CHECK(neap__object_start(p) == NULL);
  }
}

static void test_realloc_contents(void) {
  static const size_t seq[] = {1,      7,        16,       17,       100,      1000,    4096,
                               8192,   30000,    32768,    32769,    40000,    100000,  MiB,
                               5 * MiB, 10 * MiB, 3 * MiB, 100000,   40000,    32769,   32768,
                               1000,   100,      16,       1,        5 * MiB,  24,      MiB,
                               2 * MiB, 3000};
  unsigned seed = 11;
  size_t old = seq[0];
  unsigned char *p = neap_malloc(old);
  CHECK(p != NULL);
  if (!p) return;
  fill(p, old, seed);
  for (size_t i = 1; i < sizeof seq / sizeof seq[0]; i++) {
    size_t n = seq[i];
    unsigned char *q = neap_realloc(p, n);
    if (!CHECK(q != NULL)) {
      neap_free(p);
      return;
    }
    size_t keep = old < n ? old : n;
    if (!CHECK_EQ(first_bad(q, keep, seed), keep)) fprintf(stderr, "  realloc %zu -> %zu\n", old, n);
    CHECK(aligned_to(q, 16));
    CHECK(neap_usable_size(q) >= n);
    CHECK_PTR_EQ(neap__object_start(q), q);
    CHECK_EQ(neap__heap_live_objects(), 1);
    p = q;
    old = n;
    fill(p, n, ++seed);
  }
  neap_free(p);
}

static void test_realloc_in_place(void) {
  static const size_t sizes[] = {2, 100, 1000, 5000, 20000, 32768, 40000, 100000, MiB, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t s = sizes[i];
    unsigned char *p = neap_malloc(s);
    CHECK(p != NULL);
    if (!p) continue;
    size_t u = neap_usable_size(p);
    fill(p, u, 3);
    /* Grow to the usable size: same block. */
    unsigned char *q = neap_realloc(p, u);
    if (!CHECK_PTR_EQ(q, p)) fprintf(stderr, "  grow %zu -> %zu moved\n", s, u);
    if (q) p = q;
    /* Shrink slightly: same block. */
    q = neap_realloc(p, s - 1);
    if (!CHECK_PTR_EQ(q, p)) fprintf(stderr, "  shrink %zu -> %zu moved\n", u, s - 1);
    if (q) p = q;
    /* And back to the original size. */
    q = neap_realloc(p, s);
    if (!CHECK_PTR_EQ(q, p)) fprintf(stderr, "  grow %zu -> %zu moved\n", s - 1, s);
    if (q) p = q;
    CHECK_EQ(first_bad(p, s, 3), s);
    CHECK(neap_usable_size(p) >= s);
    neap_free(p);
  }
}

static void test_realloc_fails_cleanly(void) {
  static const size_t sizes[] = {1000, 100000, MiB};
  static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 8191, (size_t)PTRDIFF_MAX + 1, (size_t)1 << 44};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    unsigned char *p = neap_malloc(sizes[i]);
    CHECK(p != NULL);
    if (!p) continue;
    size_t u = neap_usable_size(p);
    fill(p, sizes[i], 5);
    for (size_t j = 0; j < sizeof huge / sizeof huge[0]; j++) {
      errno = 0;
      void *q = neap_realloc(p, opaque(huge[j]));
      CHECK(q == NULL);
      CHECK_ERRNO(ENOMEM);
      if (q) p = q;
    }
    /* The old block is intact and still ours. */
    CHECK_EQ(neap_usable_size(p), u);
    CHECK_EQ(first_bad(p, sizes[i], 5), sizes[i]);
    CHECK_PTR_EQ(neap__object_start(p), p);
    unsigned char *q = neap_realloc(p, sizes[i] * 2);
    CHECK(q != NULL);
    if (q) {
      CHECK_EQ(first_bad(q, sizes[i], 5), sizes[i]);
      p = q;
    }
    neap_free(p);
  }
}

/* ---- aligned allocation */

static const size_t *aligned_sizes(size_t a, size_t *n) {
  static size_t s[6];
  s[0] = 0;
  s[1] = 1;
  s[2] = a - 1;
  s[3] = a;
  s[4] = 3 * a + 5;
  s[5] = 100000;
  *n = 6;
  return s;
}

static void check_aligned_block(void *p, size_t a, size_t s, int *bad) {
  if (!p || !aligned_to(p, a) || !aligned_to(p, 16) || neap_usable_size(p) < s || !neap_owns(p) ||
      neap__object_start(p) != p) {
    if (*bad < 5)
      fprintf(stderr, "  alignment %zu size %zu: p=%p usable=%zu\n", a, s, p, p ? neap_usable_size(p) : 0);
    ++*bad;
  }
  if (p) touch(p, s);
}

static void test_aligned_alloc(void) {
  int bad = 0, k = 0;
  for (size_t a = 1; a <= 64 * MiB; a <<= 1) {
    size_t n;
    const size_t *sizes = aligned_sizes(a, &n);
    for (size_t i = 0; i < n; i++) {
      void *p = neap_aligned_alloc(a, sizes[i]);
      check_aligned_block(p, a, sizes[i], &bad);
      if (!p) continue;
      if (k++ & 1)
        neap_free_aligned_sized(p, a, sizes[i]);
      else
        neap_free(p);
    }
  }
  CHECK_EQ(bad, 0);

  /* Several at once at page and larger alignments do not overlap. */
  enum { N = 64 };
  static uintptr_t v[N];
  for (int i = 0; i < N; i++) {
    size_t a = (size_t)1 << (4 + i % 14); /* 16 B .. 128 KiB */
    void *p = neap_aligned_alloc(a, a + (size_t)i);
    CHECK(p != NULL && aligned_to(p, a));
    v[i] = (uintptr_t)p;
  }
  qsort(v, N, sizeof v[0], cmp_ptr);
  int overlaps = 0;
  for (int i = 0; i + 1 < N; i++) overlaps += v[i] + neap_usable_size((void *)v[i]) > v[i + 1];
  CHECK_EQ(overlaps, 0);
  for (int i = 0; i < N; i++) neap_free((void *)v[i]);

  /* Not a power of two: NULL with EINVAL. */
  static const size_t bad_align[] = {0, 3, 24, 48, 1000, 65537, 3 * MiB, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad_align / sizeof bad_align[0]; i++) {
    errno = 0;
    void *p = neap_aligned_alloc(opaque(bad_align[i]), 64);
    if (!CHECK(p == NULL)) fprintf(stderr, "  aligned_alloc(%zu, 64) succeeded\n", bad_align[i]);
    CHECK_ERRNO(EINVAL);
    if (p) neap_free(p);
  }
}

static void test_posix_memalign(void) {
  int bad = 0, fails = 0;
  for (size_t a = sizeof(void *); a <= 64 * MiB; a <<= 1) {
    size_t n;
    const size_t *sizes = aligned_sizes(a, &n);
    for (size_t i = 0; i < n; i++) {
      void *p = NULL;
      int r = neap_posix_memalign(&p, a, sizes[i]);
      if (r != 0) {
        fails++;
        continue;
      }
      check_aligned_block(p, a, sizes[i], &bad);
      neap_free(p);
    }
  }
  CHECK_EQ(fails, 0);
  CHECK_EQ(bad, 0);

  /* EINVAL, and *out untouched, for alignments that are not a power-of-two
   * multiple of sizeof(void *). */
  static const size_t bad_align[] = {0, 3, 12, 24, sizeof(void *) * 3, 48, 1000, 65537, SIZE_MAX,
                                     ((size_t)1 << 63) + 8};
  for (size_t i = 0; i < sizeof bad_align / sizeof bad_align[0]; i++) {
    void *out = &out;
    CHECK_EQ(neap_posix_memalign(&out, opaque(bad_align[i]), 64), EINVAL);
    CHECK_PTR_EQ(out, &out);
  }
  for (size_t a = 1; a < sizeof(void *); a <<= 1) { /* powers of two, too small */
    void *out = &out;
    CHECK_EQ(neap_posix_memalign(&out, opaque(a), 64), EINVAL);
    CHECK_PTR_EQ(out, &out);
  }
}

/* ---- free(NULL), usable_size(NULL), sized free, owns */

static int a_static;

static void test_free_null_and_sized(void) {
  size_t live = neap__heap_live_objects();
  neap_free(NULL);
  CHECK_EQ(neap_usable_size(NULL), 0);
  CHECK_EQ(neap__heap_live_objects(), live);

  static const size_t sizes[] = {0, 1, 15, 16, 17, 100, 1000, 32768, 32769, 100000, MiB, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p = neap_malloc(sizes[i]);
    CHECK(p != NULL);
    neap_free_sized(p, sizes[i]);
    p = neap_malloc(sizes[i]); /* any size up to the usable size is fine */
    CHECK(p != NULL);
    neap_free_sized(p, neap_usable_size(p));
  }
  void *p = neap_calloc(10, 30);
  neap_free_sized(p, 300);
  CHECK_EQ(neap__heap_live_objects(), live);
  CHECK_EQ(neap__heap_live_bytes(), 0);
}

static void test_owns(void) {
  int on_stack = 0;
  static const char literal[] = "not neap's";
  unsigned char *small = neap_malloc(64), *large = neap_malloc(MiB);
  CHECK(small && large);
  CHECK(neap_owns(small));
  CHECK(neap_owns(small + 17));
  CHECK(neap_owns(small + neap_usable_size(small) - 1));
  CHECK(neap_owns(large));
  CHECK(neap_owns(large + 8192));
  CHECK(neap_owns(large + neap_usable_size(large) - 1));
  CHECK_PTR_EQ(neap__object_start(small + 17), small);
  CHECK_PTR_EQ(neap__object_start(large + 8192 + 5), large);

  unsigned char *foreign = FOREIGN_MALLOC(64);
  CHECK(foreign != NULL);
  CHECK(!neap_owns(foreign));
  CHECK(!neap_owns(foreign + 10));
  CHECK(!neap_owns(&on_stack));
  CHECK(!neap_owns(&a_static));
  CHECK(!neap_owns(literal));
  CHECK(!neap_owns("a string literal"));
  CHECK(!neap_owns(NULL));
  CHECK(neap__object_start(&on_stack) == NULL);
  CHECK(neap__object_start(foreign) == NULL);
  FOREIGN_FREE(foreign);

  /* A freed object is no longer live (the arena is still neap's). */
  neap_free(small);
  CHECK(neap__object_start(small) == NULL);
  neap_free(large);
  CHECK(neap__object_start(large) == NULL);
}

/* ---- misuse: each in a forked child, must abort with "neap: ... <ptr>" */

struct misuse {
  void *p;      /* what the child passes to neap */
  size_t size;  /* for sized frees */
  void *named;  /* the pointer the message must name */
};

static void do_double_free(void *arg) {
  struct misuse *m = arg;
  neap_free(m->p);
  neap_free(m->p);
}
static void do_free(void *arg) { neap_free(((struct misuse *)arg)->p); }
static void do_free_sized(void *arg) {
  struct misuse *m = arg;
  neap_free_sized(m->p, m->size);
}
static void do_usable_size(void *arg) { (void)neap_usable_size(((struct misuse *)arg)->p); }
static void do_realloc0_then_free(void *arg) {
  struct misuse *m = arg;
  (void)neap_realloc(m->p, opaque(0));
  neap_free(m->p);
}

/* The line starting "neap: " names the pointer (its hex digits, any case,
 * any zero padding). */
static int names_pointer(const char *out, const void *p) {
  char hex[32], low[4096];
  snprintf(hex, sizeof hex, "%jx", (uintmax_t)(uintptr_t)p);
  size_t i = 0;
  for (; out[i] && i + 1 < sizeof low; i++) low[i] = (char)(out[i] >= 'A' && out[i] <= 'F' ? out[i] + 32 : out[i]);
  low[i] = 0;
  for (const char *s = low; (s = strstr(s, "neap: ")) != NULL; s++) {
    const char *eol = strchr(s, '\n');
    const char *hit = strstr(s, hex);
    if ((s == low || s[-1] == '\n') && hit && (!eol || hit < eol)) return 1;
  }
  return 0;
}

static void expect_abort(const char *what, void (*fn)(void *), struct misuse *m) {
  char out[4096];
  int st = test_run_child(fn, m, out, sizeof out);
  int died = st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
  int line = test_has_line_starting(out, "neap: ");
  int named = names_pointer(out, m->named);
  if (!CHECK(died && line && named)) {
    fprintf(stderr, "  %s: ", what);
    if (st == -1)
      fprintf(stderr, "fork failed");
    else if (WIFSIGNALED(st))
      fprintf(stderr, "signal %d", WTERMSIG(st));
    else
      fprintf(stderr, "exit %d", WEXITSTATUS(st));
    fprintf(stderr, ", stderr \"%s\" (want \"neap: ... %p\")\n", out, m->named);
  }
}

/* The most objects of 64 bytes a free stack holds: it grows there while
 * it overflows, and the next free after that gives back its older half. */
static unsigned stack_most_64(void) {
  void *p = neap_malloc(64);
  unsigned cap = neap__tls_cache->slot[neap__size_class(64)].cap_max;
  neap_free(p);
  return cap;
}

/* Frees p (64 bytes), then enough other objects of its class to spill it
 * off the free stack back to its span (they are allocated first, so that
 * no malloc pops it). */
static void free_and_spill(void *p) {
  unsigned n = stack_most_64();
  void **other = neap_malloc(n * sizeof *other);
  for (unsigned i = 0; i < n; i++) other[i] = neap_malloc(64);
  neap_free(p);
  for (unsigned i = 0; i < n; i++) neap_free(other[i]);
}

/* A double free once the first free has left the free stack. */
static void do_double_free_spilled(void *arg) {
  struct misuse *m = arg;
  free_and_spill(m->p);
  neap_free(m->p);
}

/* malloc_usable_size of a freed object, after its free stack spilled it
 * to its span (the fast path reads the object's free mark, which the
 * spill keeps). */
static void do_usable_size_spilled(void *arg) {
  struct misuse *m = arg;
  free_and_spill(m->p);
  (void)neap_usable_size(m->p);
}

/* A write after free: the program stores into an object it freed, which
 * waits on the free stack (its link, here); the next malloc of its class
 * pops it. */
static void do_write_after_free(void *arg) {
  struct misuse *m = arg;
  neap_free(m->p);
  memset(m->p, 0x5a, 8);
  if (neap_malloc(64) != NULL) _exit(3); /* aborts first */
}

/* A double free with a write in between: the first free's mark is
 * overwritten, so the second free is taken; the object is then on the
 * stack twice (linked to itself), and the second pop finds the program's
 * data. */
static void do_double_free_written(void *arg) {
  struct misuse *m = arg;
  neap_free(m->p);
  memset(m->p, 0x5a, 8);
  neap_free(m->p);
  void *a = neap_malloc(64);
  memset(a, 0x33, 64);
  if (neap_malloc(64) != NULL) _exit(3); /* aborts first */
}

/* The same, but the second free finds the stack full at its most and
 * spills its older half, the first copy with it, before pushing the
 * object: the spill finds the program's data where the copy's mark was.
 * Allocating first empties the class's stack. */
static void do_double_free_written_spilled(void *arg) {
  struct misuse *m = arg;
  unsigned n = stack_most_64();
  void **other = neap_malloc(2 * n * sizeof *other);
  for (unsigned i = 0; i < 2 * n; i++) other[i] = neap_malloc(64);
  neap_free(m->p);
  memset(m->p, 0x5a, 8);
  for (unsigned i = 0; i < n - 1; i++) neap_free(other[i]);
  neap_free(m->p);
}

/* An object of a fresh span never handed out: the first object a fresh
 * span hands out is its first, so its second (in the same span) has never
 * been allocated. Found among the classes this process has not used. */
static unsigned char *never_handed_out(unsigned char **first) {
  for (unsigned cls = NEAP_NUM_CLASSES - 1; cls > 0; cls--) {
    if (neap__class_objects[cls] < 2) continue;
    unsigned char *p = neap_malloc(neap__class_size[cls]);
    neap_span *s = neap__span_of((uintptr_t)p);
    if (s != NULL && s->base == (uintptr_t)p && !neap__span_held(s, 1)) {
      *first = p;
      return p + neap__class_size[cls];
    }
    neap_free(p);
  }
  return NULL;
}

static void test_misuse_aborts(void) {
  unsigned char *small = neap_malloc(64), *large = neap_malloc(MiB);
  void *foreign = FOREIGN_MALLOC(64);
  CHECK(small && large && foreign);
  struct misuse m;

  m = (struct misuse){small, 0, small};
  expect_abort("double free (small)", do_double_free, &m);
  m = (struct misuse){large, 0, large};
  expect_abort("double free (large)", do_double_free, &m);
  m = (struct misuse){small + 16, 0, small + 16};
  expect_abort("interior free (small+16)", do_free, &m);
  m = (struct misuse){large + 8192, 0, large + 8192};
  expect_abort("interior free (large+8192)", do_free, &m);
  m = (struct misuse){large + 16, 0, large + 16};
  expect_abort("interior free (large+16)", do_free, &m);
  m = (struct misuse){small, 5000, small};
  expect_abort("free_sized, size too big (small)", do_free_sized, &m);
  m = (struct misuse){large, 4 * MiB, large};
  expect_abort("free_sized, size too big (large)", do_free_sized, &m);
  m = (struct misuse){small + 16, 0, small + 16};
  expect_abort("usable_size of an interior pointer", do_usable_size, &m);
  m = (struct misuse){small, 0, small};
  expect_abort("usable_size of a freed object, spilled", do_usable_size_spilled, &m);
  m = (struct misuse){small, 0, small};
  expect_abort("free after realloc(p, 0)", do_realloc0_then_free, &m);
  m = (struct misuse){small, 0, small};
  expect_abort("double free after the free stack spilled it", do_double_free_spilled, &m);
  m = (struct misuse){small, 0, small};
  expect_abort("write after free", do_write_after_free, &m);
  m = (struct misuse){small, 0, small};
  expect_abort("double free with a write after the first", do_double_free_written, &m);
  m = (struct misuse){small, 0, small};
  expect_abort("double free with a write after the first, spilled", do_double_free_written_spilled, &m);
  unsigned char *first = NULL, *never = never_handed_out(&first);
  CHECK(never != NULL);
  if (never != NULL) {
    m = (struct misuse){never, 0, never};
    expect_abort("free of an object never handed out", do_free, &m);
    neap_free(first);
  }

  /* The tail: the bytes after a span's last object start at a multiple
   * of the object size, so only its free mark (on the fast path) and the
   * bitmap (the padding past the last object, set in both bitmaps) tell
   * them from an object. One-page spans start on a page. */
  unsigned tails = 0;
  for (unsigned cls = 1; cls < NEAP_NUM_CLASSES && tails < 3; cls++) {
    size_t size = neap__class_size[cls], n = neap__class_objects[cls];
    if (neap__class_pages[cls] != 1 || n * size == NEAP_PAGE_SIZE) continue;
    unsigned char *p = neap_malloc(size);
    CHECK(p != NULL);
    unsigned char *tail = (unsigned char *)((uintptr_t)p & ~(uintptr_t)(NEAP_PAGE_SIZE - 1)) + n * size;
    m = (struct misuse){tail, 0, tail};
    expect_abort("free of a span's tail", do_free, &m);
    neap_free(p);
    tails++;
  }
  CHECK(tails == 3);

  /* The parent's heap is untouched by the children. */
  CHECK_PTR_EQ(neap__object_start(small), small);
  CHECK_PTR_EQ(neap__object_start(large), large);
  neap_free(small);
  neap_free(large);
  FOREIGN_FREE(foreign);
}

/* A program may store in an object the very values of a free mark: a
 * free object's in its span, a stack's that is no stack (another class's
 * slot, an address that is no slot), this thread's own stack's for the
 * object's class. The free fast path then sends the object to the slow
 * path, which finds it in use in its span and on no stack, and frees it
 * like any other: the next malloc of its class pops it. Freeing an
 * object again while it holds the mark its free gave it aborts. */
static void test_free_mark_as_data(void) {
  neap_slot *mine = &neap__tls_cache->slot[neap__size_class(64)];
  uint64_t keys[] = {NEAP_MARK_KEY, NEAP_MARK_KEY | (uintptr_t)(mine + 1), NEAP_MARK_KEY | 0x1234560,
                     0};
  uint64_t *p = neap_malloc(64);
  CHECK(p != NULL);
  keys[3] = mine->marker; /* the cache exists now */
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    uint64_t next = i == 3 ? (uintptr_t)p : 0x5a5a; /* linked to itself: the worst case */
    neap__mark_set(p, next, keys[i]);
    CHECK(neap__maybe_free(p) && neap__mark_key(p) == keys[i]);
    neap_free(p);
    CHECK(neap__object_start(p) == NULL);
    uint64_t *q = neap_malloc(64);
    CHECK_PTR_EQ(q, p); /* the newest object of the class's free stack */
    CHECK(!neap__maybe_free(q));
    p = q;
  }
  /* A live object whose bytes 14-15 look like a mark's, and no more. */
  uint64_t words[2] = {0xffff000000001234, (uint64_t)NEAP_MARK_TAG << 48};
  memcpy(p, words, sizeof words);
  CHECK(neap__maybe_free(p) && !neap__mark_tagged(neap__mark_key(p)));
  neap_free(p);
  uint64_t *q = neap_malloc(64);
  CHECK_PTR_EQ(q, p);
  struct misuse m = {q, 0, q};
  expect_abort("double free of an object holding its free mark", do_double_free, &m);
  neap_free(q);
}

/* ---- memory neap does not own: the NEAPDEBUG=warnforeign policy */

static void do_foreign_calls(void *arg) {
  unsigned char *glibc = arg;
  int on_stack = 0;
  neap_free(&on_stack);
  neap_free(glibc);
  neap_free(&a_static);
  neap_free_sized(glibc, 64);
  if (neap_usable_size(&on_stack) != 0) _exit(3);
  errno = 0;
  if (neap_realloc(glibc, 100) != NULL || errno != EINVAL) _exit(4);
  if (glibc[0] != 0xab || glibc[63] != 0xab) _exit(5); /* left untouched */
  void *p = neap_malloc(100); /* and neap works on */
  if (p == NULL) _exit(6);
  neap_free(p);
}

static void do_foreign_warn(void *arg) {
  neap__opt.warnforeign = 1;
  do_foreign_calls(arg);
}

static void do_foreign_abort(void *arg) {
  neap__opt.warnforeign = 2;
  neap_free(((struct misuse *)arg)->p);
}

static int count_lines_starting(const char *out, const char *prefix) {
  int n = 0;
  for (const char *s = out; s && *s; s = strchr(s, '\n'), s = s ? s + 1 : s)
    if (strncmp(s, prefix, strlen(prefix)) == 0) n++;
  return n;
}

static void test_foreign_pointers(void) {
  unsigned char *glibc = FOREIGN_MALLOC(64);
  CHECK(glibc != NULL);
  memset(glibc, 0xab, 64);
  char out[4096];

  /* Default: ignored silently, realloc fails with EINVAL, nothing breaks. */
  int st = test_run_child(do_foreign_calls, glibc, out, sizeof out);
  CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK_EQ(strlen(out), 0);

  /* warnforeign=1: the same, and one warning naming the first pointer. */
  st = test_run_child(do_foreign_warn, glibc, out, sizeof out);
  CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK_EQ(count_lines_starting(out, "neap: free of a pointer neap does not own 0x"), 1);
  CHECK_EQ(count_lines_starting(out, "neap: "), 2); /* the warning and "(ignored; ...)" */

  /* warnforeign=2: misuse, aborts with the pointer named. */
  struct misuse m = {glibc, 0, glibc};
  expect_abort("free of a glibc pointer, warnforeign=2", do_foreign_abort, &m);
  m = (struct misuse){&a_static, 0, &a_static};
  expect_abort("free of a static, warnforeign=2", do_foreign_abort, &m);
  FOREIGN_FREE(glibc);
}

/* Whether object p is in use to its span (on a free stack, for instance). */
static int span_holds(void *p) {
  neap_span *s = neap__span_of((uintptr_t)p);
  if (s == NULL || s->sizeclass == 0) return 0;
  return neap__span_held(s, (unsigned)(((uintptr_t)p - s->base) / s->elemsize));
}

struct trim_thread {
  void *x;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stage; /* 1: x freed; 2: released */
  int held_before, held_after;
};

static void *trim_thread_main(void *arg) {
  struct trim_thread *t = arg;
  t->x = neap_malloc(48);
  void *keep = neap_malloc(48); /* keeps x's span alive */
  neap_free(t->x);
  t->held_before = span_holds(t->x);
  pthread_mutex_lock(&t->mu);
  t->stage = 1;
  pthread_cond_broadcast(&t->cv);
  while (t->stage != 2) pthread_cond_wait(&t->cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
  /* A class this thread has not used: its first malloc is a slow refill,
   * where the trim is obeyed. */
  void *y = neap_malloc(20000);
  t->held_after = span_holds(t->x);
  neap_free(y);
  neap_free(keep);
  return NULL;
}

/* neap_release gives back the objects on the caller's free stacks at once,
 * and another thread's at its next slow path: their spans no longer hold
 * them. */
static void test_release_trims_stacks(void) {
  void *a = neap_malloc(64), *b = neap_malloc(64);
  CHECK(a != NULL && b != NULL && neap__span_of((uintptr_t)a) == neap__span_of((uintptr_t)b));
  neap_free(a);
  CHECK(span_holds(a)); /* on this thread's stack */
  neap_release();
  CHECK(!span_holds(a) && span_holds(b));
  neap_free(b);

  struct trim_thread t = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  pthread_t th;
  CHECK(pthread_create(&th, NULL, trim_thread_main, &t) == 0);
  pthread_mutex_lock(&t.mu);
  while (t.stage != 1) pthread_cond_wait(&t.cv, &t.mu);
  pthread_mutex_unlock(&t.mu);
  neap_release();
  pthread_mutex_lock(&t.mu);
  t.stage = 2;
  pthread_cond_broadcast(&t.cv);
  pthread_mutex_unlock(&t.mu);
  pthread_join(th, NULL);
  CHECK(t.held_before && !t.held_after);
}

/* Each test must leave the heap empty. */
#define RUN_CLEAN(t)                                  \
  do {                                                \
    RUN(t);                                           \
    CHECK_EQ(neap__heap_live_objects(), 0);           \
    CHECK_EQ(neap__heap_live_bytes(), 0);             \
  } while (0)

int main(void) {
  /* First, while every span is fresh from the OS (see the test). */
  RUN_CLEAN(test_calloc_zero_window_reuse);
  RUN_CLEAN(test_out_of_memory);
  RUN_CLEAN(test_alignment_and_usable);
  RUN_CLEAN(test_malloc_zero);
  RUN_CLEAN(test_huge_requests);
  RUN_CLEAN(test_calloc_zero_on_reuse);
  RUN_CLEAN(test_realloc_null_and_zero);
  RUN_CLEAN(test_realloc_contents);
  RUN_CLEAN(test_realloc_in_place);
  RUN_CLEAN(test_realloc_fails_cleanly);
  RUN_CLEAN(test_aligned_alloc);
  RUN_CLEAN(test_posix_memalign);
  RUN_CLEAN(test_free_null_and_sized);
  RUN_CLEAN(test_owns);
  RUN_CLEAN(test_misuse_aborts);
  RUN_CLEAN(test_free_mark_as_data);
  RUN_CLEAN(test_release_trims_stacks);
  RUN_CLEAN(test_foreign_pointers);
  return TEST_DONE();
}
