/* wl_cache_thrash.c: Hoard's cache-thrash (active false sharing); with
 * WL_SCRATCH (wl_cache_scratch.c includes this file) Hoard's cache-scratch.
 *
 * Imitates "cache-thrash" from the Hoard benchmarks (Berger et al., Hoard: A
 * Scalable Memory Allocator for Multithreaded Applications, ASPLOS 2000): N
 * threads (-t N) each repeatedly malloc a small object (8 bytes, as Hoard's
 * default objSize), write each of its bytes many times (1000 volatile
 * read-modify-writes per byte), check it and free it. The threads share
 * nothing, but an allocator that hands objects on one cache line to
 * different threads makes them fight over that line on every write (active
 * false sharing): the run then takes far longer with 2+ threads on 2+ cores.
 * Allocators that give each thread its own pages/lines are unaffected.
 *
 * Scaling: weak. Each thread does 200,000 iterations at -s 1 (1.6e9 byte
 * writes in all per thread), so work_s is comparable across thread counts
 * and should stay flat as threads are added (up to the number of cores).
 *
 * Timed: from the start barrier until every thread is done.
 *
 * check: the final bytes of every object (their start value depends on the
 * thread and the iteration), checked against the arithmetic expectation
 * ("heap corruption" and exit 2 on mismatch); per-thread checksums combined
 * in thread order. -r is not used (nothing is random).
 */
#define _GNU_SOURCE
#ifndef WL_SCRATCH
#define WL_SCRATCH 0
#endif
#include "wl.h"

#include <pthread.h>

#define OBJ 8
#define WRITES 1000
#define BASE_ITERS 200000.0

typedef struct {
  char pad0[64];
  int id;
  long iters;
  uint64_t check;
  unsigned char *given; /* cache-scratch: the object the main thread made for it */
  char pad1[64];
} worker_t;

static pthread_barrier_t start_bar;

#if WL_SCRATCH
static uint64_t given_tag(int id) { return UINT64_C(0x0101010101010101) * (uint64_t)(id * 7 + 3); }
#endif

static void *worker(void *arg) {
  worker_t *w = arg;
  uint64_t acc = WL_CHECK_INIT;
  pthread_barrier_wait(&start_bar);
#if WL_SCRATCH
  uint64_t t;
  memcpy(&t, w->given, sizeof t);
  if (t != given_tag(w->id)) wl_fail("heap corruption");
  acc = (acc ^ t) * 0x100000001b3ull;
  free(w->given);
  w->given = NULL;
#endif
  for (long it = 0; it < w->iters; it++) {
    unsigned char *p = malloc(OBJ);
    if (!p) wl_fail("malloc returned NULL");
    unsigned char start = (unsigned char)(w->id * 31 + it);
    volatile unsigned char *v = p;
    for (int k = 0; k < OBJ; k++) v[k] = start;
    for (int r = 0; r < WRITES; r++)
      for (int k = 0; k < OBJ; k++) v[k] = (unsigned char)(v[k] + k + 1);
    uint64_t word = 0;
    for (int k = 0; k < OBJ; k++) {
      unsigned char want = (unsigned char)(start + WRITES * (k + 1));
      if (v[k] != want) wl_fail("heap corruption");
      word = word << 8 | v[k];
    }
    acc = (acc ^ word) * 0x100000001b3ull;
    free(p);
  }
  w->check = acc;
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a = wl_parse(argc, argv);
  long iters = wl_n(&a, BASE_ITERS);
  worker_t *ws = calloc((size_t)a.threads, sizeof *ws);
  pthread_t *th = calloc((size_t)a.threads, sizeof *th);
  if (!ws || !th) wl_fail("malloc returned NULL");
  pthread_barrier_init(&start_bar, NULL, (unsigned)a.threads + 1);
#if WL_SCRATCH
  /* The handed objects, allocated back to back by the main thread. */
  for (int i = 0; i < a.threads; i++) {
    ws[i].given = malloc(OBJ);
    if (!ws[i].given) wl_fail("malloc returned NULL");
    uint64_t t = given_tag(i);
    memcpy(ws[i].given, &t, sizeof t);
  }
#endif
  for (int i = 0; i < a.threads; i++) {
    ws[i].id = i;
    ws[i].iters = iters;
    if (pthread_create(&th[i], NULL, worker, &ws[i]) != 0) wl_fail("pthread_create failed");
  }
  double work = wl_time_threads(&start_bar, th, a.threads);

  uint64_t check = WL_CHECK_INIT;
  for (int i = 0; i < a.threads; i++) check = wl_mix(check, ws[i].check);
  check = wl_mix(check, (uint64_t)iters);
  pthread_barrier_destroy(&start_bar);
  free(ws);
  free(th);
  wl_report(WL_SCRATCH ? "cache_scratch" : "cache_thrash", &a, work, check, "");
  return 0;
}
