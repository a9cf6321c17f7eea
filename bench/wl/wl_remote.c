/* wl_remote.c: random cross-thread frees, 8 bytes to 16 KiB.
 *
 * Every thread allocates a block of a random size, swaps it into a random
 * slot of one table all threads share, and frees the block it took out:
 * with N threads, a block is freed by another thread than its own N-1
 * times in N. Unlike xmalloc (producers that never free, consumers that
 * never allocate) every thread does both, in random order, to blocks of
 * every other thread: the pattern of work queues, caches and message
 * passing between worker threads (mimalloc-bench's mstress and rptest are
 * of this kind).
 *
 * Sizes: 60% 8..128 bytes, 30% 129..1024, 10% 1025..16384 (uniform within
 * each band). The table has 8,192 slots per thread, so about 8,192 x N
 * blocks live at once (weak scaling). Each thread does 6M swaps at -s 1.
 *
 * Each block starts with its size and a tag (the thread's random stream)
 * and ends with a byte of the tag; the thread that frees a block checks
 * them (a broken allocator fails, it cannot win). check: each thread's
 * stream of sizes (independent of scheduling), and the total count.
 *
 * Timed: from the start barrier until every thread is done. Untimed:
 * freeing what is left in the table. Also reported: ops_per_s (mallocs
 * and frees per second, all threads).
 */
#define _GNU_SOURCE
#include "wl.h"

#include <pthread.h>
#include <stdatomic.h>

#define SLOTS_PER_THREAD 8192
#define BASE_SWAPS 6000000.0

/* A block's first byte says what it holds: 0xff, a head (its size, shifted
 * left by 8, then its tag) and the tag's byte at the end; otherwise the
 * block is under 16 bytes, and the byte is its size, repeated at its end. */
typedef struct {
  uint64_t size_ff, tag;
} head_t;

static _Atomic(unsigned char *) *table;
static size_t nslots;
static long swaps;
static pthread_barrier_t start_bar;

typedef struct {
  uint64_t seed, check;
  char pad[48];
} worker_t;

static inline size_t block_size(uint64_t r) {
  uint32_t band = (uint32_t)(r % 10), x = (uint32_t)(r >> 32);
  if (band < 6) return 8 + x % 121;
  if (band < 9) return 129 + x % 896;
  return 1025 + x % 15360;
}

static void fill(unsigned char *p, size_t size, uint64_t tag) {
  if (size >= sizeof(head_t)) {
    head_t h = {(uint64_t)size << 8 | 0xff, tag};
    memcpy(p, &h, sizeof h);
    p[size - 1] = (unsigned char)(tag >> 8);
  } else {
    p[0] = p[size - 1] = (unsigned char)size;
  }
}

static void check_and_free(unsigned char *p) {
  if (p[0] == 0xff) {
    head_t h;
    memcpy(&h, p, sizeof h);
    size_t size = (size_t)(h.size_ff >> 8);
    if (size < sizeof(head_t) || size > 16384 || p[size - 1] != (unsigned char)(h.tag >> 8))
      wl_fail("heap corruption");
  } else if (p[0] < 8 || p[0] >= sizeof(head_t) || p[p[0] - 1] != p[0]) {
    wl_fail("heap corruption (small block)");
  }
  free(p);
}

static void *worker(void *arg) {
  worker_t *w = arg;
  uint64_t rng = w->seed, acc = WL_CHECK_INIT;
  pthread_barrier_wait(&start_bar);
  for (long i = 0; i < swaps; i++) {
    uint64_t r = wl_rand(&rng);
    size_t size = block_size(r);
    unsigned char *p = malloc(size);
    if (p == NULL) wl_fail("malloc returned NULL");
    fill(p, size, r);
    acc = (acc ^ size) * 0x100000001b3ull;
    size_t slot = (size_t)(wl_rand(&rng) % nslots);
    unsigned char *old = atomic_exchange_explicit(&table[slot], p, memory_order_acq_rel);
    if (old != NULL) check_and_free(old);
  }
  w->check = acc;
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a = wl_parse(argc, argv);
  swaps = wl_n(&a, BASE_SWAPS);
  nslots = (size_t)SLOTS_PER_THREAD * (size_t)a.threads;
  table = calloc(nslots, sizeof *table);
  worker_t *w = calloc((size_t)a.threads, sizeof *w);
  pthread_t *th = calloc((size_t)a.threads, sizeof *th);
  if (table == NULL || w == NULL || th == NULL) wl_fail("malloc returned NULL");
  pthread_barrier_init(&start_bar, NULL, (unsigned)a.threads + 1);
  for (int i = 0; i < a.threads; i++) {
    w[i].seed = wl_seed(a.seed * UINT64_C(0x9e3779b97f4a7c15) + (uint64_t)i);
    if (pthread_create(&th[i], NULL, worker, &w[i]) != 0) wl_fail("pthread_create failed");
  }
  double work = wl_time_threads(&start_bar, th, a.threads);

  uint64_t check = WL_CHECK_INIT;
  for (int i = 0; i < a.threads; i++) check = wl_mix(check, w[i].check);
  check = wl_mix(check, (uint64_t)swaps * (uint64_t)a.threads);
  for (size_t i = 0; i < nslots; i++) {
    unsigned char *p = atomic_load_explicit(&table[i], memory_order_relaxed);
    if (p != NULL) check_and_free(p);
  }
  pthread_barrier_destroy(&start_bar);
  free(table);
  free(w);
  free(th);

  char extra[64];
  snprintf(extra, sizeof extra, "ops_per_s=%.0f", 2.0 * (double)swaps * a.threads / work);
  wl_report("remote", &a, work, check, extra);
  return 0;
}
