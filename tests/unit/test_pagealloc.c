/* The page allocator against a brute-force model, plus its edge cases and
 * its out-of-memory paths.
 *
 * The model is a plain bitmap over the index space (pages of chunks never
 * grown are "used") with its own word-level first fit; neap__pa_alloc must
 * give exactly the model's answer every time, and neap__pa_check (every
 * summary recomputed from the bitmaps) must pass after every step.
 *
 * Usage: test_pagealloc [seed [steps]]   (defaults: a fixed seed, 1,000,000)
 */
#include "../test.h"

#include <stdlib.h>

#include "os/os.h"
#include "pagealloc.h"

/* The library's versions win when it is linked in. */
__attribute__((weak, noreturn)) void neap__fatal(const char *msg, const void *ptr) {
  fprintf(stderr, "neap: %s %p\n", msg, ptr);
  abort();
}
__attribute__((weak, noreturn)) void neap__assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "neap: assertion failed: %s (%s:%d)\n", expr, file, line);
  abort();
}

#define CP ((uint64_t)NEAP_CHUNK_PAGES)
#define FAIL NEAP_PA_FAIL

static uint64_t rng_state;
static uint64_t rnd(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}
static uint64_t rnd_below(uint64_t n) { return rnd() % n; }

/* ------------------------------------------------------------------ model */

typedef struct model {
  uint64_t nchunks;
  uint64_t *used, *scav; /* one bit per page; never-grown pages are used */
  uint32_t *nfree;       /* free pages per chunk */
  uint64_t *list;        /* grown chunks, ascending */
  size_t nlist;
  uint64_t grown, free, scavd;
} model;

static void model_init(model *m, uint64_t nchunks) {
  m->nchunks = nchunks;
  m->used = malloc(nchunks * 8 * sizeof(uint64_t));
  m->scav = calloc(nchunks * 8, sizeof(uint64_t));
  m->nfree = calloc(nchunks, sizeof(uint32_t));
  m->list = malloc(nchunks * sizeof(uint64_t));
  m->nlist = 0;
  m->grown = m->free = m->scavd = 0;
  memset(m->used, 0xff, nchunks * 8 * sizeof(uint64_t));
}

static void model_fini(model *m) {
  free(m->used);
  free(m->scav);
  free(m->nfree);
  free(m->list);
}

static bool mbit(const uint64_t *b, uint64_t i) { return (b[i / 64] >> (i % 64)) & 1; }
static void mput(uint64_t *b, uint64_t i, bool v) {
  if (v)
    b[i / 64] |= (uint64_t)1 << (i % 64);
  else
    b[i / 64] &= ~((uint64_t)1 << (i % 64));
}

static void model_grow(model *m, uint64_t c0, uint64_t c1) {
  for (uint64_t c = c0; c < c1; c++) {
    for (unsigned w = 0; w < 8; w++) {
      m->used[c * 8 + w] = 0;
      m->scav[c * 8 + w] = ~(uint64_t)0;
    }
    m->nfree[c] = (uint32_t)CP;
    size_t i = m->nlist++;
    while (i > 0 && m->list[i - 1] > c) {
      m->list[i] = m->list[i - 1];
      i--;
    }
    m->list[i] = c;
  }
  m->grown += (c1 - c0) * CP;
  m->free += (c1 - c0) * CP;
  m->scavd += (c1 - c0) * CP;
}

/* Lowest run of n free pages, scanning runs of bits word by word. */
static uint64_t model_first_fit(const model *m, uint64_t n) {
  uint64_t carry = 0, prev = FAIL - 1;
  for (size_t li = 0; li < m->nlist; li++) {
    uint64_t c = m->list[li];
    if (c != prev + 1) carry = 0;
    prev = c;
    if (m->nfree[c] == 0) {
      carry = 0;
      continue;
    }
    if (m->nfree[c] == CP) {
      if (carry + CP >= n) return c * CP - carry;
      carry += CP;
      continue;
    }
    for (unsigned w = 0; w < 8; w++) {
      uint64_t x = m->used[c * 8 + w];
      if (x == ~(uint64_t)0) {
        carry = 0;
        continue;
      }
      unsigned pos = 0;
      while (pos < 64) {
        uint64_t y = x >> pos;
        if (y & 1) { /* a run of used pages */
          pos += (unsigned)__builtin_ctzll(~y);
          carry = 0;
          continue;
        }
        unsigned zeros = y == 0 ? 64 - pos : (unsigned)__builtin_ctzll(y);
        if (carry + zeros >= n) return c * CP + w * 64 + pos - carry;
        carry += zeros;
        pos += zeros;
      }
    }
  }
  return FAIL;
}

static bool model_range_free(const model *m, uint64_t base, uint64_t n) {
  if (base >= m->nchunks * CP || n > m->nchunks * CP - base) return false;
  for (uint64_t p = base; p < base + n; p++)
    if (mbit(m->used, p)) return false;
  return true;
}

/* Mark in use; returns how many were scavenged. */
static uint64_t model_alloc(model *m, uint64_t base, uint64_t n) {
  uint64_t s = 0;
  for (uint64_t p = base; p < base + n; p++) {
    s += mbit(m->scav, p);
    mput(m->scav, p, false);
    mput(m->used, p, true);
    m->nfree[p / CP]--;
  }
  m->free -= n;
  m->scavd -= s;
  return s;
}

static void model_free(model *m, uint64_t base, uint64_t n) {
  for (uint64_t p = base; p < base + n; p++) {
    mput(m->used, p, false);
    m->nfree[p / CP]++;
  }
  m->free += n;
}

static bool dirty(const model *m, uint64_t p) {
  return p < m->nchunks * CP && !mbit(m->used, p) && !mbit(m->scav, p);
}

static uint64_t model_find_unscav(const model *m, uint64_t below, uint64_t maxp, uint64_t *len) {
  *len = 0;
  if (below > m->nchunks * CP) below = m->nchunks * CP;
  uint64_t top = FAIL;
  for (size_t li = m->nlist; li-- > 0 && top == FAIL;) {
    uint64_t c = m->list[li];
    if (c * CP >= below) continue;
    uint64_t p = (c + 1) * CP < below ? (c + 1) * CP : below;
    while (p > c * CP) { /* word by word, downward */
      uint64_t w = (p - 1) / 64, d = ~m->used[w] & ~m->scav[w];
      if (p - w * 64 < 64) d &= ((uint64_t)1 << (p - w * 64)) - 1;
      if (d != 0) {
        top = w * 64 + 63 - (uint64_t)__builtin_clzll(d);
        break;
      }
      p = w * 64;
    }
  }
  if (top == FAIL) return FAIL;
  uint64_t b = top;
  while (b > 0 && top + 1 - b < maxp && dirty(m, b - 1)) b--;
  *len = top + 1 - b;
  return b;
}

static uint64_t model_count_scav(const model *m, uint64_t base, uint64_t n) {
  uint64_t k = 0;
  for (uint64_t p = base; p < base + n && p < m->nchunks * CP; p++) k += mbit(m->scav, p);
  return k;
}

static void model_mark_scav(model *m, uint64_t base, uint64_t n) {
  for (uint64_t p = base; p < base + n; p++) {
    m->scavd += !mbit(m->scav, p);
    mput(m->scav, p, true);
  }
}

/* ------------------------------------------------------- random test */

typedef struct live {
  uint64_t base, n;
} live;

static bool rfailed;
#define RCHECK(cond, step)                                                   \
  do {                                                                       \
    if (!rfailed && !(cond)) {                                               \
      CHECK(cond);                                                           \
      fprintf(stderr, "  at step %lu\n", (unsigned long)(step));             \
      rfailed = true;                                                        \
    }                                                                        \
  } while (0)

static uint64_t seed = 0x6e656170u; /* "neap" */
static uint64_t nsteps = 1000000;

static uint64_t pick_size(void) {
  uint64_t r = rnd_below(100);
  if (r < 50) return 1 + rnd_below(8);
  if (r < 80) return 1 + rnd_below(64);
  if (r < 95) return 1 + rnd_below(600);
  return 400 + rnd_below(201); /* most of these span chunk boundaries */
}

static void grow_both(neap_pagealloc *pa, model *m, uint64_t c0, uint64_t c1) {
  CHECK_EQ(neap__pa_grow(pa, c0 * CP, (c1 - c0) * CP), 0);
  model_grow(m, c0, c1);
}

static void test_random_vs_model(void) {
  static neap_pagealloc pa; /* zero: grow initialises it */
  model m;
  model_init(&m, 4200);
  rng_state = seed;
  rfailed = false;
  /* Groups of chunks with gaps, crossing boundaries of every summary level:
   * 8 and 16 chunks (level 3), 64 (level 2), 512 (level 1), 4096 (root). */
  static const uint64_t initial[][2] = {{0, 3}, {5, 21}, {30, 31}, {60, 75}, {500, 520}, {4090, 4100}};
  static const uint64_t later[][2] = {{3, 5}, {600, 610}, {4100, 4110}, {21, 30}, {75, 80}};
  for (size_t i = 0; i < sizeof initial / sizeof initial[0]; i++)
    grow_both(&pa, &m, initial[i][0], initial[i][1]);
  CHECK(neap__pa_check(&pa));

  size_t cap = 1 << 16, nlive = 0, next_grow = 0;
  live *lv = malloc(cap * sizeof *lv);
  uint64_t nalloc = 0, nfail = 0, nfree_ops = 0, nat = 0, nscavops = 0, maxlive = 0;
  for (uint64_t step = 0; step < nsteps && !rfailed; step++) {
    if (next_grow < sizeof later / sizeof later[0] && step == (next_grow + 1) * nsteps / 6) {
      grow_both(&pa, &m, later[next_grow][0], later[next_grow][1]);
      next_grow++;
    }
    bool filling = (step / 4000) % 2 == 0;
    uint64_t r = rnd_below(1000);
    if (r < 30) { /* scavenger search, then mark (part of) the run */
      nscavops++;
      uint64_t below = rnd_below(4120 * CP), maxp = 1 + rnd_below(700), n1, n2;
      if (rnd_below(4) == 0) below = FAIL;
      uint64_t b1 = neap__pa_find_unscavenged(&pa, below, maxp, &n1);
      uint64_t b2 = model_find_unscav(&m, below, maxp, &n2);
      RCHECK(b1 == b2 && n1 == n2, step);
      if (b1 != FAIL && rnd_below(2) == 0) {
        uint64_t off = rnd_below(n1), k = 1 + rnd_below(n1 - off);
        if (rnd_below(2) == 0) off = 0, k = n1;
        neap__pa_mark_scavenged(&pa, b1 + off, k);
        model_mark_scav(&m, b1 + off, k);
      }
    } else if (r < 60) { /* in-place growth of a live run, or a random range */
      nat++;
      uint64_t base, k = 1 + rnd_below(40), ns1 = 0, ns2 = 0;
      size_t li = nlive ? (size_t)rnd_below(nlive) : 0;
      bool extend = nlive > 0 && rnd_below(4) != 0;
      base = extend ? lv[li].base + lv[li].n : rnd_below(4120 * CP);
      if (!extend) k = 1 + rnd_below(700);
      bool ok1 = neap__pa_alloc_at(&pa, base, k, &ns1);
      bool ok2 = model_range_free(&m, base, k);
      RCHECK(ok1 == ok2, step);
      if (ok1 && ok2) {
        ns2 = model_alloc(&m, base, k);
        RCHECK(ns1 == ns2, step);
        if (extend) {
          lv[li].n += k;
        } else {
          if (nlive == cap) lv = realloc(lv, (cap *= 2) * sizeof *lv);
          lv[nlive++] = (live){base, k};
        }
      }
    } else if (r < 80) { /* queries */
      uint64_t p = rnd_below(4120 * CP), n = 1 + rnd_below(2000);
      RCHECK(neap__pa_is_free(&pa, p) == (p < m.nchunks * CP && !mbit(m.used, p)), step);
      RCHECK(neap__pa_count_scavenged(&pa, p, n) == model_count_scav(&m, p, n), step);
    } else if (nlive == 0 || rnd_below(1000) < (filling ? 620u : 380u)) {
      nalloc++;
      uint64_t n = pick_size(), ns1 = 0;
      uint64_t got = neap__pa_alloc(&pa, n, &ns1);
      uint64_t want = model_first_fit(&m, n);
      RCHECK(got == want, step);
      if (got != want) fprintf(stderr, "  alloc(%lu): got %lu, model %lu\n", (unsigned long)n,
                               (unsigned long)got, (unsigned long)want);
      if (got == FAIL) {
        nfail++;
      } else if (got == want) {
        uint64_t ns2 = model_alloc(&m, got, n);
        RCHECK(ns1 == ns2, step);
        if (nlive == cap) lv = realloc(lv, (cap *= 2) * sizeof *lv);
        lv[nlive++] = (live){got, n};
      }
    } else {
      nfree_ops++;
      size_t li = (size_t)rnd_below(nlive);
      live *a = &lv[li];
      if (a->n > 1 && rnd_below(5) == 0) { /* trim the head or the tail */
        uint64_t k = 1 + rnd_below(a->n - 1);
        if (rnd_below(2) == 0) {
          neap__pa_free(&pa, a->base, k);
          model_free(&m, a->base, k);
          a->base += k;
        } else {
          neap__pa_free(&pa, a->base + a->n - k, k);
          model_free(&m, a->base + a->n - k, k);
        }
        a->n -= k;
      } else {
        neap__pa_free(&pa, a->base, a->n);
        model_free(&m, a->base, a->n);
        *a = lv[--nlive];
      }
    }
    if (nlive > maxlive) maxlive = nlive;
    RCHECK(neap__pa_check(&pa), step);
    RCHECK(neap__pa_pages_grown(&pa) == m.grown, step);
    RCHECK(neap__pa_pages_free(&pa) == m.free, step);
    RCHECK(neap__pa_pages_scavenged(&pa) == m.scavd, step);
  }
  CHECK(!rfailed);
  CHECK_EQ(next_grow, sizeof later / sizeof later[0]);
  if (nsteps >= 100000) CHECK(nfail > 0 && nalloc > nfail); /* both outcomes were exercised */
  fprintf(stderr,
          "  %lu steps: %lu allocs (%lu failed), %lu frees, %lu alloc_at, %lu scavenge; max live %lu\n",
          (unsigned long)nsteps, (unsigned long)nalloc, (unsigned long)nfail, (unsigned long)nfree_ops,
          (unsigned long)nat, (unsigned long)nscavops, (unsigned long)maxlive);
  free(lv);
  model_fini(&m);
  neap__pa_destroy(&pa);
}

/* ------------------------------------------------------- edge cases */

static void test_empty(void) {
  neap_pagealloc pa;
  memset(&pa, 0, sizeof pa);
  uint64_t ns = 7;
  CHECK_EQ(neap__pa_alloc(&pa, 1, &ns), FAIL); /* zero value, never initialised */
  CHECK_EQ(ns, 0);
  CHECK(!neap__pa_alloc_at(&pa, 0, 1, NULL));
  CHECK(!neap__pa_is_free(&pa, 0));
  CHECK_EQ(neap__pa_find_unscavenged(&pa, FAIL, 10, &ns), FAIL);
  CHECK_EQ(neap__pa_count_scavenged(&pa, 0, 100), 0);
  CHECK(neap__pa_check(&pa));
  CHECK_EQ(neap__pa_init(&pa), 0); /* initialised, nothing grown */
  CHECK_EQ(neap__pa_alloc(&pa, 1, NULL), FAIL);
  CHECK_EQ(neap__pa_pages_grown(&pa), 0);
  CHECK(neap__pa_check(&pa));
  neap__pa_destroy(&pa);
}

static void test_chunks_and_gaps(void) {
  neap_pagealloc pa = {0};
  uint64_t ns;
  /* chunks 0, 1, 2, then a gap (3), then 4 */
  CHECK_EQ(neap__pa_grow(&pa, 0, 3 * CP), 0);
  CHECK_EQ(neap__pa_grow(&pa, 4 * CP, CP), 0);
  CHECK_EQ(neap__pa_pages_grown(&pa), 4 * CP);
  CHECK_EQ(neap__pa_alloc(&pa, 4 * CP, NULL), FAIL); /* the gap breaks the run */
  CHECK_EQ(neap__pa_alloc(&pa, 3 * CP + 1, NULL), FAIL);
  CHECK_EQ(neap__pa_alloc(&pa, 3 * CP, &ns), 0); /* exactly the first group */
  CHECK_EQ(ns, 3 * CP);
  CHECK_EQ(neap__pa_alloc(&pa, CP, &ns), 4 * CP); /* exactly a chunk */
  CHECK_EQ(neap__pa_alloc(&pa, 1, NULL), FAIL);
  CHECK_EQ(neap__pa_pages_free(&pa), 0);
  CHECK(neap__pa_check(&pa));
  neap__pa_free(&pa, CP, CP); /* the middle chunk: a hole of exactly a chunk */
  CHECK_EQ(neap__pa_alloc(&pa, CP + 1, NULL), FAIL);
  CHECK_EQ(neap__pa_alloc(&pa, CP, &ns), CP);
  CHECK_EQ(ns, 0); /* freed pages are dirty */
  /* a hole crossing the boundary of chunks 0 and 1, then exact fits */
  neap__pa_free(&pa, 400, 300);
  CHECK_EQ(neap__pa_alloc(&pa, 301, NULL), FAIL);
  CHECK_EQ(neap__pa_alloc(&pa, 200, NULL), 400);
  CHECK_EQ(neap__pa_alloc(&pa, 100, NULL), 600);
  CHECK_EQ(neap__pa_alloc(&pa, 1, NULL), FAIL);
  /* growing the gap joins the groups into one run of 3 chunks + 1 page */
  neap__pa_free(&pa, 2 * CP - 1, 1);
  neap__pa_free(&pa, 2 * CP, CP);
  neap__pa_free(&pa, 4 * CP, CP);
  CHECK_EQ(neap__pa_alloc(&pa, 3 * CP, NULL), FAIL);
  CHECK_EQ(neap__pa_grow(&pa, 3 * CP, CP), 0);
  CHECK(neap__pa_check(&pa));
  CHECK_EQ(neap__pa_alloc(&pa, 3 * CP + 1, &ns), 2 * CP - 1);
  CHECK_EQ(ns, CP); /* only chunk 3 was fresh */
  CHECK(neap__pa_check(&pa));
  neap__pa_destroy(&pa);
}

/* The hint may point into a gap whose metadata was never committed: a
 * run that ends exactly where a granule of leaf summaries (512 chunks)
 * begins, with the next grown chunk far above. */
static void test_hint_in_gap(void) {
  neap_pagealloc pa = {0};
  CHECK_EQ(neap__pa_grow(&pa, 0, 512 * CP), 0);
  CHECK_EQ(neap__pa_grow(&pa, 2000 * CP, CP), 0);
  CHECK_EQ(neap__pa_alloc(&pa, 512 * CP, NULL), 0);
  CHECK_EQ(neap__pa_alloc(&pa, 1, NULL), 2000 * CP);
  CHECK_EQ(neap__pa_alloc(&pa, CP - 1, NULL), 2000 * CP + 1);
  CHECK_EQ(neap__pa_alloc(&pa, 1, NULL), FAIL);
  CHECK(!neap__pa_is_free(&pa, 1000 * CP));
  CHECK(!neap__pa_alloc_at(&pa, 1000 * CP, 1, NULL));
  CHECK_EQ(neap__pa_count_scavenged(&pa, 511 * CP, 2000 * CP), 0);
  CHECK(neap__pa_check(&pa));
  /* growing a gap below the hint brings the hint down */
  CHECK_EQ(neap__pa_grow(&pa, 1000 * CP, CP), 0);
  CHECK(neap__pa_check(&pa));
  CHECK_EQ(neap__pa_alloc(&pa, 1, NULL), 1000 * CP);
  neap__pa_destroy(&pa);
}

static void test_first_fit_small(void) {
  neap_pagealloc pa = {0};
  CHECK_EQ(neap__pa_grow(&pa, 0, 2 * CP), 0);
  for (uint64_t i = 0; i < 2 * CP; i++) CHECK_EQ(neap__pa_alloc(&pa, 1, NULL), i);
  CHECK_EQ(neap__pa_alloc(&pa, 1, NULL), FAIL);
  /* free every third page: 1-page allocs refill them lowest first */
  for (uint64_t i = 5; i < 2 * CP; i += 3) neap__pa_free(&pa, i, 1);
  neap__pa_free(&pa, 699, 2); /* 698..701 is now a run of 4 */
  CHECK_EQ(neap__pa_alloc(&pa, 3, NULL), 698);
  CHECK_EQ(neap__pa_alloc(&pa, 2, NULL), FAIL);
  for (uint64_t i = 5; i < 2 * CP; i += 3) {
    if (i == 698) continue;
    CHECK_EQ(neap__pa_alloc(&pa, 1, NULL), i);
  }
  CHECK_EQ(neap__pa_alloc(&pa, 1, NULL), FAIL);
  /* runs inside one word, across words and across the chunk boundary */
  neap__pa_free(&pa, 70, 10);
  neap__pa_free(&pa, 120, 20);
  neap__pa_free(&pa, 500, 40);
  CHECK_EQ(neap__pa_alloc(&pa, 11, NULL), 120);
  CHECK_EQ(neap__pa_alloc(&pa, 10, NULL), 70);
  CHECK_EQ(neap__pa_alloc(&pa, 30, NULL), 500);
  CHECK_EQ(neap__pa_alloc(&pa, 9, NULL), 131);
  CHECK_EQ(neap__pa_alloc(&pa, 10, NULL), 530);
  CHECK_EQ(neap__pa_pages_free(&pa), 0);
  CHECK(neap__pa_check(&pa));
  neap__pa_destroy(&pa);
}

static void test_alloc_at(void) {
  neap_pagealloc pa = {0};
  uint64_t ns;
  CHECK_EQ(neap__pa_grow(&pa, 0, 2 * CP), 0); /* chunk 2 is not grown */
  CHECK_EQ(neap__pa_grow(&pa, 3 * CP, CP), 0);
  CHECK_EQ(neap__pa_alloc(&pa, 10, NULL), 0);
  CHECK(!neap__pa_alloc_at(&pa, 5, 10, &ns)); /* partly used */
  CHECK(!neap__pa_alloc_at(&pa, 2 * CP - 5, 10, &ns)); /* into a chunk never grown */
  CHECK(!neap__pa_alloc_at(&pa, 2 * CP, 1, &ns));
  CHECK(!neap__pa_alloc_at(&pa, 4 * CP - 1, 2, &ns)); /* past the end */
  CHECK(!neap__pa_alloc_at(&pa, 100 * CP, 1, &ns));
  CHECK_EQ(neap__pa_pages_free(&pa), 3 * CP - 10);
  CHECK(neap__pa_alloc_at(&pa, 10, CP, &ns)); /* crossing chunks 0/1 */
  CHECK_EQ(ns, CP);
  CHECK(neap__pa_alloc_at(&pa, 3 * CP + 511, 1, &ns));
  CHECK_EQ(ns, 1);
  CHECK(!neap__pa_is_free(&pa, 3 * CP + 511));
  CHECK(neap__pa_is_free(&pa, 3 * CP + 510));
  CHECK(!neap__pa_is_free(&pa, 2 * CP + 5));
  /* the hint moves past an alloc_at that covers it */
  CHECK_EQ(neap__pa_alloc(&pa, 1, NULL), CP + 10);
  neap__pa_free(&pa, 0, 10);
  CHECK(neap__pa_alloc_at(&pa, 0, 10, &ns));
  CHECK_EQ(ns, 0);
  CHECK_EQ(neap__pa_alloc(&pa, 1, NULL), CP + 11);
  CHECK(neap__pa_check(&pa));
  neap__pa_destroy(&pa);
}

/* Many bit patterns in one chunk, runs of every length at every offset:
 * each leaf summary is checked against a second computation, and the
 * longest run must be found exactly where a plain scan finds it. */
static void test_chunk_patterns(void) {
  neap_pagealloc pa = {0};
  bool used[CP] = {0}, ok = true;
  uint64_t runs[CP][2], nruns = 0; /* the used runs of the last pattern */
  CHECK_EQ(neap__pa_grow(&pa, 0, CP), 0);
  /* A run of L inside a word after a run of L-1 elsewhere, for each L and
   * both orders: the longest run is seen only if every gap is measured. */
  for (uint64_t L = 2; L <= 62 && ok; L++) {
    for (int order = 0; order < 2; order++) {
      uint64_t a = order ? 192 : 64, b = order ? 64 : 192;
      ok &= neap__pa_alloc_at(&pa, 0, CP, NULL);
      neap__pa_free(&pa, a + 1, L - 1);
      neap__pa_free(&pa, b + 1, L);
      ok &= neap__pa_check(&pa);
      ok &= neap__pa_alloc(&pa, L + 1, NULL) == FAIL;
      ok &= neap__pa_alloc(&pa, L, NULL) == b + 1;
      ok &= neap__pa_alloc(&pa, L - 1, NULL) == a + 1;
      neap__pa_free(&pa, 0, CP);
    }
  }
  rng_state = seed ^ 0x5157;
  for (int trial = 0; trial < 10000 && ok; trial++) {
    for (uint64_t r = 0; r < nruns; r++) neap__pa_free(&pa, runs[r][0], runs[r][1]);
    nruns = 0;
    uint64_t mean = (uint64_t)1 << rnd_below(7);
    bool u = rnd_below(2);
    for (uint64_t p = 0; p < CP;) {
      uint64_t len = 1 + rnd_below(2 * mean);
      if (len > CP - p) len = CP - p;
      for (uint64_t i = p; i < p + len; i++) used[i] = u;
      if (u) {
        ok &= neap__pa_alloc_at(&pa, p, len, NULL);
        runs[nruns][0] = p;
        runs[nruns++][1] = len;
      }
      p += len;
      u = !u;
    }
    ok &= neap__pa_check(&pa);
    uint64_t best = 0, at = FAIL, run = 0;
    for (uint64_t p = 0; p < CP; p++) {
      run = used[p] ? 0 : run + 1;
      if (run > best) best = run, at = p + 1 - run;
    }
    if (best == 0) continue;
    ok &= neap__pa_alloc(&pa, best + 1, NULL) == FAIL;
    uint64_t got = neap__pa_alloc(&pa, best, NULL);
    ok &= got == at;
    if (got != FAIL) neap__pa_free(&pa, got, best);
  }
  CHECK(ok);
  CHECK(neap__pa_check(&pa));
  neap__pa_destroy(&pa);
}

/* 2^21 pages: one root entry entirely free, which needs the special
 * summary encoding; then a run chained across two root entries. */
static void test_root_entry_all_free(void) {
  const uint64_t R = (uint64_t)1 << 21;
  neap_pagealloc pa = {0};
  uint64_t ns;
  CHECK_EQ(neap__pa_grow(&pa, R, R), 0);
  CHECK(neap__pa_check(&pa));
  CHECK_EQ(neap__pa_alloc(&pa, R + 1, NULL), FAIL);
  CHECK_EQ(neap__pa_alloc(&pa, R, &ns), R);
  CHECK_EQ(ns, R);
  CHECK_EQ(neap__pa_pages_free(&pa), 0);
  CHECK(neap__pa_check(&pa));
  neap__pa_free(&pa, R, R);
  CHECK(neap__pa_check(&pa));
  CHECK_EQ(neap__pa_grow(&pa, 2 * R, 2 * CP), 0);
  CHECK_EQ(neap__pa_alloc(&pa, R + 2 * CP, &ns), R);
  CHECK_EQ(ns, 2 * CP);
  neap__pa_free(&pa, R + 100, R);
  CHECK_EQ(neap__pa_alloc(&pa, R, NULL), R + 100);
  CHECK(neap__pa_check(&pa));
  neap__pa_destroy(&pa);

  /* 2^21 pages starting half-way into a root entry */
  CHECK_EQ(neap__pa_grow(&pa, R / 2, R), 0);
  CHECK_EQ(neap__pa_alloc(&pa, 1, NULL), R / 2);
  CHECK_EQ(neap__pa_alloc(&pa, R, NULL), FAIL);
  neap__pa_free(&pa, R / 2, 1);
  CHECK_EQ(neap__pa_alloc(&pa, 100000, NULL), R / 2);
  CHECK_EQ(neap__pa_alloc(&pa, R - 100000, NULL), R / 2 + 100000);
  CHECK_EQ(neap__pa_pages_free(&pa), 0);
  neap__pa_free(&pa, R / 2, R);
  CHECK_EQ(neap__pa_alloc(&pa, R, NULL), R / 2);
  CHECK(neap__pa_check(&pa));
  neap__pa_destroy(&pa);
}

static void test_scavenged(void) {
  neap_pagealloc pa = {0};
  uint64_t ns, n;
  CHECK_EQ(neap__pa_grow(&pa, 0, 4 * CP), 0);
  CHECK_EQ(neap__pa_pages_scavenged(&pa), 4 * CP);
  CHECK_EQ(neap__pa_count_scavenged(&pa, 0, 4 * CP), 4 * CP);
  CHECK_EQ(neap__pa_count_scavenged(&pa, 100, 10 * CP), 4 * CP - 100);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, FAIL, 100, &n), FAIL);
  CHECK_EQ(n, 0);
  CHECK_EQ(neap__pa_alloc(&pa, 10, &ns), 0);
  CHECK_EQ(ns, 10);
  CHECK_EQ(neap__pa_pages_scavenged(&pa), 4 * CP - 10);
  CHECK_EQ(neap__pa_count_scavenged(&pa, 0, 20), 10);
  neap__pa_free(&pa, 0, 10);
  CHECK_EQ(neap__pa_pages_scavenged(&pa), 4 * CP - 10);
  CHECK_EQ(neap__pa_count_scavenged(&pa, 0, 20), 10);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, FAIL, 100, &n), 0);
  CHECK_EQ(n, 10);
  CHECK_EQ(neap__pa_alloc(&pa, 600, &ns), 0);
  CHECK_EQ(ns, 590);
  neap__pa_free(&pa, 50, 10);
  neap__pa_free(&pa, 100, 100);
  neap__pa_free(&pa, 520, 80); /* 520..599, then fresh pages from 600 */
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 4 * CP, 1000, &n), 520);
  CHECK_EQ(n, 80);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 4 * CP, 30, &n), 570); /* the highest part */
  CHECK_EQ(n, 30);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 560, 1000, &n), 520);
  CHECK_EQ(n, 40);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 521, 1000, &n), 520);
  CHECK_EQ(n, 1);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 520, 1000, &n), 100);
  CHECK_EQ(n, 100);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 100, 1000, &n), 50);
  CHECK_EQ(n, 10);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 50, 1000, &n), FAIL);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 0, 1000, &n), FAIL);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 4 * CP, 0, &n), FAIL);
  neap__pa_mark_scavenged(&pa, 100, 100);
  CHECK_EQ(neap__pa_pages_scavenged(&pa), 4 * CP - 600 + 100);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 520, 1000, &n), 50);
  CHECK_EQ(neap__pa_count_scavenged(&pa, 0, 600), 100);
  neap__pa_mark_scavenged(&pa, 190, 10); /* already scavenged: counted once */
  CHECK_EQ(neap__pa_pages_scavenged(&pa), 4 * CP - 600 + 100);
  neap__pa_mark_scavenged(&pa, 55, 5);
  CHECK_EQ(neap__pa_pages_scavenged(&pa), 4 * CP - 600 + 105);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 520, 1000, &n), 50);
  CHECK_EQ(n, 5);
  CHECK(neap__pa_check(&pa));
  /* a dirty run across the chunk boundary, and an alloc that takes some
   * scavenged and some dirty pages */
  neap__pa_free(&pa, 490, 30);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 4 * CP, 1000, &n), 490);
  CHECK_EQ(n, 110);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 4 * CP, 100, &n), 500);
  CHECK_EQ(n, 100);
  neap__pa_mark_scavenged(&pa, 490, 110);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 4 * CP, 1000, &n), 50);
  CHECK_EQ(neap__pa_alloc(&pa, 60, &ns), 100);
  CHECK_EQ(ns, 60); /* 100..159 were marked scavenged above */
  CHECK(neap__pa_check(&pa));
  /* a dirty run in a chunk far above: found through the dirty-bit levels */
  CHECK_EQ(neap__pa_grow(&pa, 5000 * CP, CP), 0);
  CHECK_EQ(neap__pa_alloc_at(&pa, 5000 * CP + 7, 3, NULL), true);
  neap__pa_free(&pa, 5000 * CP + 7, 3);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, FAIL, 1000, &n), 5000 * CP + 7);
  CHECK_EQ(n, 3);
  CHECK_EQ(neap__pa_find_unscavenged(&pa, 5000 * CP + 7, 1000, &n), 50);
  CHECK_EQ(n, 5);
  CHECK(neap__pa_check(&pa));
  neap__pa_destroy(&pa);
}

/* Out of memory: every commit the allocator makes can fail, and each
 * failure leaves it as it was. */
static void test_fault_injection(void) {
  neap_pagealloc pa = {0};
  neap__os_fail_nth(NEAP_OS_COMMIT, 1);
  CHECK_EQ(neap__pa_init(&pa), ENOMEM);
  neap__os_fail_nth(NEAP_OS_COMMIT, 0);
  CHECK(neap__pa_check(&pa));
  CHECK_EQ(neap__pa_grow(&pa, 0, 2 * CP), 0);
  CHECK_EQ(neap__pa_alloc(&pa, 100, NULL), 0);

  /* A grow far away needs new granules at several summary levels, new
   * bits and a new block of chunk bitmaps. Fail its first commit, then its
   * second, third, ... until it goes through. */
  neap__os_fail_nth(NEAP_OS_COMMIT, 1);
  CHECK_EQ(neap__pa_grow(&pa, 40000 * CP, 3 * CP), ENOMEM);
  neap__os_fail_nth(NEAP_OS_COMMIT, 0);
  int failures = 0, err;
  for (;;) {
    CHECK(neap__pa_check(&pa));
    CHECK_EQ(neap__pa_pages_grown(&pa), 2 * CP);
    CHECK_EQ(neap__pa_pages_free(&pa), 2 * CP - 100);
    CHECK(!neap__pa_is_free(&pa, 40000 * CP));
    CHECK(!neap__pa_alloc_at(&pa, 40000 * CP, 1, NULL));
    CHECK_EQ(neap__pa_alloc(&pa, 2 * CP, NULL), FAIL);
    uint64_t p = neap__pa_alloc(&pa, 7, NULL);
    CHECK_EQ(p, 100);
    neap__pa_free(&pa, p, 7);
    neap__os_fail_nth(NEAP_OS_COMMIT, 2);
    err = neap__pa_grow(&pa, 40000 * CP, 3 * CP);
    neap__os_fail_nth(NEAP_OS_COMMIT, 0);
    if (err == 0 || failures > 50) break;
    CHECK_EQ(err, ENOMEM);
    failures++;
  }
  CHECK_EQ(err, 0);
  CHECK(failures >= 4);
  CHECK(neap__pa_check(&pa));
  CHECK_EQ(neap__pa_pages_grown(&pa), 5 * CP);
  CHECK_EQ(neap__pa_alloc(&pa, 3 * CP, NULL), 40000 * CP);
  CHECK_EQ(neap__pa_alloc(&pa, 10, NULL), 100);
  CHECK(neap__pa_check(&pa));
  fprintf(stderr, "  grow failed %d times before it went through\n", failures + 1);
  neap__pa_destroy(&pa);
}

int main(int argc, char **argv) {
  if (argc > 1) seed = strtoull(argv[1], NULL, 0);
  if (argc > 2) nsteps = strtoull(argv[2], NULL, 0);
  printf("test_pagealloc: seed %#lx, %lu steps\n", (unsigned long)seed, (unsigned long)nsteps);
  fflush(stdout);
  RUN(test_empty);
  RUN(test_chunks_and_gaps);
  RUN(test_hint_in_gap);
  RUN(test_first_fit_small);
  RUN(test_alloc_at);
  RUN(test_chunk_patterns);
  RUN(test_root_entry_all_free);
  RUN(test_scavenged);
  RUN(test_fault_injection);
  uint64_t t0 = neap__os_nanotime();
  RUN(test_random_vs_model);
  fprintf(stderr, "  random test: %.2f s\n", (double)(neap__os_nanotime() - t0) / 1e9);
  return TEST_DONE();
}
