/* thread_churn: a million short threads, under LD_PRELOAD.
 *
 * Each thread allocates a little (small blocks of several classes and one
 * large block), frees most of it, and hands one block to the main thread,
 * which frees it after the thread has gone. Threads end every way a
 * thread can: returning, pthread_exit, and cancellation. Every thread's cache must be
 * handed back when it ends, so the process must not grow: after a warm-up
 * the heap neap holds (mallinfo2's arena) and the RSS stay flat to within
 * a few MiB over the whole run.
 * Usage: thread_churn [THREADS] (default 1000000).
 */
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"

#define BATCH 8

static _Atomic(void *) handed[BATCH];

static void *body(void *arg) {
  uintptr_t k = (uintptr_t)arg;
  void *keep[12];
  for (int i = 0; i < 12; i++) {
    size_t n = (size_t)(16u << (i % 8)) + k % 64; /* 16 B .. 2 KiB, several classes */
    keep[i] = malloc(n);
    if (keep[i] == NULL) abort();
    memset(keep[i], (int)k, n);
  }
  void *large = malloc(64 * 1024 + k % 4096);
  if (large == NULL) abort();
  memset(large, 1, 4096);
  free(large);
  for (int i = 1; i < 12; i++) free(keep[i]);
  /* keep[0] is freed by the main thread, after this one is gone. */
  switch (k % 3) {
  case 0: return keep[0];
  case 1: pthread_exit(keep[0]);
  default: /* wait to be cancelled */
    atomic_store(&handed[k % BATCH], keep[0]);
    for (;;) pause(); /* a cancellation point */
  }
}

int main(int argc, char **argv) {
  long total = argc > 1 ? atol(argv[1]) : 1000000;
  long warmup = total / 20 < 20000 ? total / 20 : 20000;
  size_t rss0 = 0, arena0 = 0, rss_max = 0, arena_max = 0;
  long done = 0, failed = 0;
  while (done < total) {
    pthread_t t[BATCH];
    int n = 0;
    for (; n < BATCH && done + n < total; n++)
      if (pthread_create(&t[n], NULL, body, (void *)(uintptr_t)(done + n)) != 0) break;
    if (n == 0) {
      failed++;
      break;
    }
    for (int i = 0; i < n; i++) {
      long k = done + i;
      void *r = NULL;
      if (k % 3 == 2) {
        while ((r = atomic_exchange(&handed[k % BATCH], NULL)) == NULL) sched_yield();
        pthread_cancel(t[i]);
        void *res = NULL;
        pthread_join(t[i], &res);
        if (res != PTHREAD_CANCELED) failed++;
      } else {
        pthread_join(t[i], &r);
      }
      if (r == NULL) failed++;
      free(r);
    }
    long before = done;
    done += n;
    if (before < warmup && done >= warmup) {
      rss0 = test_rss_bytes();
      arena0 = mallinfo2().arena;
    }
    if (done >= warmup && (done / BATCH) % 1024 == 0) {
      size_t r = test_rss_bytes(), a = mallinfo2().arena;
      if (r > rss_max) rss_max = r;
      if (a > arena_max) arena_max = a;
    }
  }
  size_t rss1 = test_rss_bytes(), arena1 = mallinfo2().arena;
  if (rss1 > rss_max) rss_max = rss1;
  if (arena1 > arena_max) arena_max = arena1;
  printf("threads %ld; after warm-up: RSS %zu KiB, neap heap %zu KiB; most later: RSS %zu KiB, heap %zu KiB\n",
         done, rss0 >> 10, arena0 >> 10, rss_max >> 10, arena_max >> 10);
  CHECK_EQ(failed, 0);
  CHECK_EQ(done, total);
  CHECK(rss_max <= rss0 + ((size_t)8 << 20));
  CHECK(arena_max <= arena0 + ((size_t)4 << 20));
  return TEST_DONE();
}
