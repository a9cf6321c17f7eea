/* test_stress: many threads allocating, reallocating and freeing at once,
 * with about half of the frees done by a thread other than the allocator.
 *
 * Each worker slot (one per thread) keeps a table of live blocks. An
 * operation picks a random entry: an empty one is filled by malloc, calloc,
 * aligned_alloc or posix_memalign with a size from 1 byte to 4 MiB (mostly
 * small: about 90% up to 1 KiB, 10% up to 64 KiB, 0.2% from 64 KiB to
 * 4 MiB); a full one is reallocated (10%) or freed (90%), five ninths of
 * those frees by posting the block to another slot's mailbox, which that
 * slot's thread drains and frees.
 * Every block carries a pattern derived from its address and size, checked
 * word for word before every realloc and free; calloc'd blocks are checked
 * for zeros first.
 *
 * Threads churn: each slot runs GENERATIONS threads one after another, the
 * main thread replacing each as it ends while the other slots keep going.
 * A generation either frees its blocks or leaves them to its successor (so
 * those are freed by another thread too); some call neap_thread_flush
 * mid-run or before exit, the others let thread exit flush their caches.
 * At the end the main thread frees what is left and the heap's live bytes
 * and objects must both be zero.
 *
 * Usage: test_stress [threads [scale [seed]]]; the environment variables
 * NEAP_STRESS_THREADS, NEAP_STRESS_SCALE (a factor on the operation count,
 * e.g. 0.05 under ASan/TSan) and NEAP_STRESS_SEED do the same. The seed is
 * printed; thread interleaving is of course not reproducible.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "neap.h"
#include "../test.h"

#define MAX_THREADS 64
#define SLOTS 1024 /* live blocks per worker */
#define MAILBOX_CAP 4096
#define GENERATIONS 4
#define BASE_OPS_PER_THREAD 600000L /* 4 threads: 2.4 million operations */
#define MAX_SIZE ((size_t)4 << 20)

typedef struct {
  unsigned char *p;
  size_t size;
  size_t align; /* 0 unless from an aligned allocation */
} block;

typedef struct {
  pthread_mutex_t mu;
  size_t n;
  block items[MAILBOX_CAP];
} mailbox;

typedef struct {
  int slot, gen;
  long ops;
  uint64_t rng;
  block live[SLOTS]; /* survives from one generation to the next */
  block drained[MAILBOX_CAP];
  unsigned long errors, allocs, frees, sent, received, reallocs, flushes;
} slot_state;

static mailbox boxes[MAX_THREADS];
static slot_state slots[MAX_THREADS];
static int nthreads = 4;

/* ---- randomness (splitmix64: small, seedable, no libc state) */

static uint64_t next_rand(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}
static size_t rand_below(uint64_t *s, size_t n) { return (size_t)(next_rand(s) % n); }

/* Log-uniform-ish: a random power of two, then a random size below the next. */
static size_t rand_size(uint64_t *s) {
  size_t u = rand_below(s, 1000), bits;
  if (u < 898) {
    bits = rand_below(s, 10); /* 1 B .. 1 KiB */
  } else if (u < 998) {
    bits = 10 + rand_below(s, 6); /* 1 KiB .. 64 KiB: across the 32 KiB small/large line */
  } else if (u < 999) {
    return MAX_SIZE;
  } else {
    bits = 16 + rand_below(s, 6); /* 64 KiB .. 4 MiB */
  }
  size_t lo = (size_t)1 << bits;
  return lo + rand_below(s, lo);
}

/* ---- patterns */

static uint64_t pattern_key(const void *p, size_t size) {
  return ((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15u) ^ ((uint64_t)size * 0xc2b2ae3d27d4eb4fu) ^ 1;
}
static uint64_t pattern_word(uint64_t key, size_t i) { return key ^ ((uint64_t)i * 0xff51afd7ed558ccdu); }
/* The byte at offset i of a block of `size` bytes filled with key. */
static unsigned char pattern_byte(uint64_t key, size_t size, size_t i) {
  if (i < size / 8 * 8) {
    uint64_t w = pattern_word(key, i / 8);
    unsigned char b[8];
    memcpy(b, &w, 8);
    return b[i % 8];
  }
  return (unsigned char)((key >> (8 * (i % 8))) ^ i ^ 0x5c);
}

static void pattern_fill(unsigned char *p, size_t size) {
  uint64_t key = pattern_key(p, size);
  uint64_t *w = (uint64_t *)(void *)p; /* blocks are 16-byte aligned */
  size_t nw = size / 8;
  for (size_t i = 0; i < nw; i++) w[i] = pattern_word(key, i);
  for (size_t i = nw * 8; i < size; i++) p[i] = pattern_byte(key, size, i);
}

/* Checks the first n bytes of a block filled as (was, size) and now at p.
 * Returns 1 if they match; reports the first bad offset otherwise. */
static int pattern_check(const unsigned char *p, const void *was, size_t size, size_t n, const char *when) {
  uint64_t key = pattern_key(was, size);
  const uint64_t *w = (const uint64_t *)(const void *)p;
  size_t nw = (n < size ? n : size) / 8, i = 0;
  for (; i < nw; i++)
    if (w[i] != pattern_word(key, i)) break;
  for (i *= 8; i < n; i++)
    if (p[i] != pattern_byte(key, size, i)) break;
  if (i == n) return 1;
  fprintf(stderr, "  %s: block %p (was %p) of %zu bytes: byte %zu is 0x%02x, want 0x%02x\n", when, (const void *)p,
          was, size, i, p[i], pattern_byte(key, size, i));
  return 0;
}

static int all_zero(const unsigned char *p, size_t n) {
  const uint64_t *w = (const uint64_t *)(const void *)p;
  size_t i = 0;
  for (; i < n / 8; i++)
    if (w[i]) return 0;
  for (i *= 8; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

/* ---- one block's life */

static int block_ok(slot_state *st, const block *b, const char *when) {
  int ok = pattern_check(b->p, b->p, b->size, b->size, when);
  if (neap_usable_size(b->p) < b->size) {
    fprintf(stderr, "  %s: usable size %zu < %zu\n", when, neap_usable_size(b->p), b->size);
    ok = 0;
  }
  if (!ok) st->errors++;
  return ok;
}

static void block_free(slot_state *st, block *b, const char *when) {
  if (!block_ok(st, b, when)) {
    b->p = NULL; /* leak it: freeing a damaged block could crash */
    return;
  }
  uint64_t r = next_rand(&st->rng) % 4;
  if (b->align && r == 0)
    neap_free_aligned_sized(b->p, b->align, b->size);
  else if (!b->align && r == 0)
    neap_free_sized(b->p, b->size);
  else
    neap_free(b->p);
  st->frees++;
  b->p = NULL;
}

static void block_alloc(slot_state *st, block *b) {
  size_t size = rand_size(&st->rng), align = 0;
  size_t kind = rand_below(&st->rng, 100);
  int zeroed = 0;
  void *p;
  if (kind < 70) {
    p = neap_malloc(size);
  } else if (kind < 85) {
    size_t n = 1 + rand_below(&st->rng, 4);
    size = (size + n - 1) / n * n;
    p = neap_calloc(n, size / n);
    zeroed = 1;
  } else if (kind < 95) {
    align = (size_t)16 << rand_below(&st->rng, 9); /* 16 B .. 4 KiB */
    p = neap_aligned_alloc(align, size);
  } else {
    align = sizeof(void *) << rand_below(&st->rng, 14); /* up to 64 KiB or so */
    if (neap_posix_memalign(&p, align, size) != 0) p = NULL;
  }
  if (!p || ((uintptr_t)p & 15) != 0 || (align && ((uintptr_t)p & (align - 1)) != 0) || !neap_owns(p) ||
      neap_usable_size(p) < size || (zeroed && !all_zero(p, size))) {
    if (st->errors++ < 10)
      fprintf(stderr, "  alloc of %zu (kind %zu, align %zu) gave %p, usable %zu%s\n", size, kind, align, p,
              p ? neap_usable_size(p) : 0, zeroed && p && !all_zero(p, size) ? ", not zeroed" : "");
    b->p = NULL;
    return; /* leaked on purpose: it is suspect */
  }
  b->p = p;
  b->size = size;
  b->align = align;
  pattern_fill(b->p, size);
  st->allocs++;
}

static void block_realloc(slot_state *st, block *b) {
  if (!block_ok(st, b, "before realloc")) {
    b->p = NULL;
    return;
  }
  /* Mostly a nearby size (often in place), sometimes anything. */
  size_t n = rand_below(&st->rng, 2) ? rand_size(&st->rng) : b->size / 2 + rand_below(&st->rng, b->size + 16);
  if (n == 0) n = 1;
  if (n > MAX_SIZE) n = MAX_SIZE;
  unsigned char *q = neap_realloc(b->p, n);
  if (!q) {
    st->errors++;
    fprintf(stderr, "  realloc(%p, %zu) failed\n", (void *)b->p, n);
    return;
  }
  size_t keep = b->size < n ? b->size : n;
  if (((uintptr_t)q & 15) != 0 || !pattern_check(q, b->p, b->size, keep, "after realloc")) st->errors++;
  b->p = q;
  b->size = n;
  b->align = 0; /* realloc promises only the default alignment */
  pattern_fill(q, n);
  st->reallocs++;
}

/* ---- mailboxes */

static int mailbox_post(int to, const block *b) {
  mailbox *m = &boxes[to];
  int ok = 0;
  pthread_mutex_lock(&m->mu);
  if (m->n < MAILBOX_CAP) {
    m->items[m->n++] = *b;
    ok = 1;
  }
  pthread_mutex_unlock(&m->mu);
  return ok;
}

static void mailbox_drain(slot_state *st) {
  block *got = st->drained;
  mailbox *m = &boxes[st->slot];
  size_t n;
  pthread_mutex_lock(&m->mu);
  n = m->n;
  memcpy(got, m->items, n * sizeof *got);
  m->n = 0;
  pthread_mutex_unlock(&m->mu);
  for (size_t i = 0; i < n; i++) block_free(st, &got[i], "free by another thread");
  st->received += n;
}

/* ---- workers */

static void *worker(void *arg) {
  slot_state *st = arg;
  for (long op = 0; op < st->ops; op++) {
    block *b = &st->live[rand_below(&st->rng, SLOTS)];
    size_t r = rand_below(&st->rng, 100);
    if (!b->p) {
      block_alloc(st, b);
    } else if (r < 10) {
      block_realloc(st, b);
    } else if (r < 60 && nthreads > 1) {
      /* Hand it to another slot's thread, checked first so damage is
       * blamed on the right side. */
      int to = (int)rand_below(&st->rng, (size_t)nthreads - 1);
      if (to >= st->slot) to++;
      if (block_ok(st, b, "before posting") && mailbox_post(to, b)) {
        st->sent++;
        b->p = NULL;
      } else {
        block_free(st, b, "local free (mailbox full)");
      }
    } else {
      block_free(st, b, "local free");
    }
    if ((op & 63) == 0) mailbox_drain(st);
    if (st->slot % 2 == 0 && (op == st->ops / 3 || op == 2 * st->ops / 3)) {
      neap_thread_flush();
      st->flushes++;
    }
  }
  mailbox_drain(st);
  /* Odd generations free their blocks; even ones leave them to the next
   * thread in this slot (or to main). */
  if (st->gen % 2)
    for (int i = 0; i < SLOTS; i++)
      if (st->live[i].p) block_free(st, &st->live[i], "free at thread end");
  if ((st->slot + st->gen) % 2) {
    neap_thread_flush();
    st->flushes++;
  }
  return NULL;
}

static double env_or_arg(int argc, char **argv, int i, const char *name, double dflt) {
  const char *s = argc > i ? argv[i] : getenv(name);
  if (!s || !*s) return dflt;
  char *end;
  double v = strtod(s, &end);
  if (*end || v <= 0) {
    fprintf(stderr, "bad %s value \"%s\", using %g\n", name, s, dflt);
    return dflt;
  }
  return v;
}

int main(int argc, char **argv) {
  nthreads = (int)env_or_arg(argc, argv, 1, "NEAP_STRESS_THREADS", 4);
  if (nthreads < 1) nthreads = 1;
  if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
  double scale = env_or_arg(argc, argv, 2, "NEAP_STRESS_SCALE", 1.0);
  uint64_t seed = (uint64_t)env_or_arg(argc, argv, 3, "NEAP_STRESS_SEED", 20240611);
  long ops = (long)(BASE_OPS_PER_THREAD * scale) / GENERATIONS;
  if (ops < 1) ops = 1;
  fprintf(stderr, "stress: threads=%d generations=%d ops/generation=%ld (total %ld) seed=%llu\n", nthreads,
          GENERATIONS, ops, ops * GENERATIONS * nthreads, (unsigned long long)seed);

  for (int i = 0; i < nthreads; i++) {
    pthread_mutex_init(&boxes[i].mu, NULL);
    slots[i].slot = i;
  }
  pthread_t tid[MAX_THREADS];
  /* Start generation 0 everywhere; then, slot by slot, replace each thread
   * as it finishes while the others run on. */
  for (int g = 0; g < GENERATIONS; g++) {
    for (int i = 0; i < nthreads; i++) {
      slot_state *st = &slots[i];
      if (g > 0) CHECK_EQ(pthread_join(tid[i], NULL), 0);
      st->gen = g;
      st->ops = ops;
      st->rng = seed ^ ((uint64_t)i << 32) ^ ((uint64_t)g << 48) ^ 0x5eed;
      CHECK_EQ(pthread_create(&tid[i], NULL, worker, st), 0);
    }
  }
  for (int i = 0; i < nthreads; i++) CHECK_EQ(pthread_join(tid[i], NULL), 0);

  /* Free what is left, checking it, from the main thread. */
  unsigned long allocs = 0, frees = 0, sent = 0, reallocs = 0, flushes = 0, errors = 0;
  for (int i = 0; i < nthreads; i++) {
    slot_state *st = &slots[i];
    mailbox_drain(st);
    for (int j = 0; j < SLOTS; j++)
      if (st->live[j].p) block_free(st, &st->live[j], "free by main at the end");
    allocs += st->allocs;
    frees += st->frees;
    sent += st->sent;
    reallocs += st->reallocs;
    flushes += st->flushes;
    errors += st->errors;
  }
  neap_thread_flush();
  fprintf(stderr, "stress: %lu allocs, %lu frees (%lu by another thread via mailboxes), %lu reallocs, %lu flushes\n",
          allocs, frees, sent, reallocs, flushes);
  CHECK_EQ(errors, 0);
  CHECK_EQ(allocs, frees);
  CHECK(nthreads == 1 || sent * 4 > frees); /* a good share crossed threads */
  CHECK_EQ(neap__heap_live_bytes(), 0);
  CHECK_EQ(neap__heap_live_objects(), 0);
  test_heap_check("after the stress run");
  return TEST_DONE();
}
