/* wl_larson.c: larson-like server simulation (objects freed by other threads).
 *
 * Imitates Larson & Krishnan's "larson" benchmark (Memory allocation for
 * long-running server applications, ISMM 1998), as used by Hoard, mimalloc
 * and others: worker threads replace random blocks in an array of live
 * blocks, and the arrays move from thread to thread, so that most blocks are
 * freed by a thread other than the one that allocated them.
 *
 * There are N arrays (one per thread, -t N) of 1000 slots; each holds a
 * block of random size 16..4096 bytes. The work is done in rounds; in round r
 * thread i works on array (i - 1 - r) mod N, i.e. it takes over the array
 * that thread i-1 worked on in the round before, and does 10,000 steps on it:
 * pick a random slot, check the block, free it, malloc a new one of random
 * size, touch it (an 8-byte tag at the start, one byte at the end). A
 * pthread barrier separates the rounds. With -t 1 the single thread keeps its
 * own array (no handoff partner) and the barrier is trivial.
 *
 * Scaling: weak. Work per thread is fixed (700 rounds x 10,000 steps at
 * -s 1), so -t N does N times the total work of -t 1 and work_s is
 * comparable across thread counts.
 *
 * Timed: the rounds. Untimed: filling the arrays (each thread its own
 * before the start), freeing the blocks after the last round. Also reported:
 * ops_per_s (replacement steps per second, all threads together).
 *
 * check: each array carries its own random state and checksum (of the sizes
 * and tags of the blocks it freed), so its sequence does not depend on which
 * thread ran it or on scheduling; the arrays' checksums are combined in
 * array order with the step count.
 */
#define _GNU_SOURCE
#include "wl.h"

#include <pthread.h>

#define SLOTS 1000u
#define STEPS_PER_ROUND 10000
#define BASE_ROUNDS 700.0

typedef struct {
  unsigned char *p;
  uint64_t tag;
  uint32_t size;
} slot_t;

typedef struct {
  char pad0[64];
  uint64_t rng, acc;
  char pad1[48];
  slot_t s[SLOTS];
  char pad2[64];
} array_t;

static array_t *arrays;
static int nthreads;
static long rounds;
static pthread_barrier_t round_bar, start_bar, end_bar;

static inline void fill(slot_t *s, uint64_t *rng) {
  uint64_t r = wl_rand(rng);
  uint32_t size = 16 + (uint32_t)((r >> 32) % 4081); /* 16..4096 */
  unsigned char *p = malloc(size);
  if (!p) wl_fail("malloc returned NULL");
  uint64_t tag = r | 1;
  memcpy(p, &tag, sizeof tag);
  p[size - 1] = (unsigned char)(tag >> 8);
  s->p = p;
  s->tag = tag;
  s->size = size;
}

static inline void verify(const slot_t *s) {
  uint64_t t;
  memcpy(&t, s->p, sizeof t);
  if (t != s->tag || s->p[s->size - 1] != (unsigned char)(s->tag >> 8)) wl_fail("heap corruption");
}

static void *worker(void *arg) {
  int id = (int)(intptr_t)arg;
  array_t *own = &arrays[id];
  for (uint32_t i = 0; i < SLOTS; i++) fill(&own->s[i], &own->rng);
  pthread_barrier_wait(&start_bar);

  array_t *arr = own;
  for (long r = 0; r < rounds; r++) {
    int j = (int)((id + nthreads - 1 - (int)(r % nthreads)) % nthreads);
    arr = &arrays[j];
    uint64_t rng = arr->rng, acc = arr->acc;
    for (int n = 0; n < STEPS_PER_ROUND; n++) {
      uint64_t x = wl_rand(&rng);
      slot_t *s = &arr->s[(uint32_t)(((x >> 32) * SLOTS) >> 32)];
      verify(s);
      acc = (acc ^ s->size ^ (s->tag << 16)) * 0x100000001b3ull;
      free(s->p);
      fill(s, &rng);
    }
    arr->rng = rng;
    arr->acc = acc;
    if (r + 1 < rounds) pthread_barrier_wait(&round_bar);
  }
  pthread_barrier_wait(&end_bar);

  /* The arrays of the last round are a permutation: each is freed once. */
  for (uint32_t i = 0; i < SLOTS; i++) {
    verify(&arr->s[i]);
    free(arr->s[i].p);
    arr->s[i].p = NULL;
  }
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a = wl_parse(argc, argv);
  nthreads = a.threads;
  rounds = wl_n(&a, BASE_ROUNDS);

  arrays = calloc((size_t)nthreads, sizeof *arrays);
  pthread_t *th = calloc((size_t)nthreads, sizeof *th);
  if (!arrays || !th) wl_fail("malloc returned NULL");
  for (int i = 0; i < nthreads; i++) {
    arrays[i].rng = wl_seed(a.seed * UINT64_C(0x9e3779b97f4a7c15) + (uint64_t)i);
    arrays[i].acc = WL_CHECK_INIT;
  }
  pthread_barrier_init(&round_bar, NULL, (unsigned)nthreads);
  pthread_barrier_init(&start_bar, NULL, (unsigned)nthreads + 1);
  pthread_barrier_init(&end_bar, NULL, (unsigned)nthreads + 1);
  for (int i = 0; i < nthreads; i++)
    if (pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i) != 0) wl_fail("pthread_create failed");

  pthread_barrier_wait(&start_bar);
  double t0 = wl_now();
  pthread_barrier_wait(&end_bar);
  double work = wl_now() - t0;
  for (int i = 0; i < nthreads; i++) pthread_join(th[i], NULL);

  uint64_t check = WL_CHECK_INIT;
  for (int i = 0; i < nthreads; i++) check = wl_mix(wl_mix(check, arrays[i].acc), arrays[i].rng);
  long steps = (long)nthreads * rounds * STEPS_PER_ROUND;
  check = wl_mix(check, (uint64_t)steps);

  pthread_barrier_destroy(&round_bar);
  pthread_barrier_destroy(&start_bar);
  pthread_barrier_destroy(&end_bar);
  free(arrays);
  free(th);

  char extra[64];
  snprintf(extra, sizeof extra, "ops_per_s=%.0f", (double)steps / work);
  wl_report("larson", &a, work, check, extra);
  return 0;
}
