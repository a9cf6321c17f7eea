/* Producer/consumer: memory stays bounded when every object is freed by
 * another thread than the one that allocated it.
 *
 * Producers allocate objects of mixed sizes and pass them through bounded
 * rings to consumers, which free them: several GiB flow through while at
 * most a few MiB are in flight. Remote frees must find their way back to
 * the producers' spans (merged when a span runs dry, or reclaimed from the
 * central lists), so the heap may not grow past a small multiple of what
 * is in flight. An allocator that parked remote frees forever would grow
 * by the whole volume.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "heap.h"
#include "internal.h"
#include "neap.h"
#include "test.h"

enum { RING = 4096, PAIRS = 2 };

typedef struct ring {
  _Atomic size_t head, tail; /* single producer, single consumer */
  void *slot[RING];
  _Atomic int done;
  size_t count;
} ring;

static ring rings[PAIRS];
static size_t per_producer = 2000000;
static _Atomic uint64_t bad_blocks;

static void *producer(void *arg) {
  ring *r = arg;
  uint64_t x = 0x9e3779b97f4a7c15ull ^ (uintptr_t)arg;
  for (size_t i = 0; i < r->count; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t sz = 16 + (size_t)(x % 2032);
    unsigned char *p = neap_malloc(sz);
    if (p == NULL) abort();
    *(size_t *)(void *)p = sz; /* the consumer checks both ends */
    p[sz - 1] = 0xa5;
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    while (h - atomic_load_explicit(&r->tail, memory_order_acquire) == RING) sched_yield();
    r->slot[h % RING] = p;
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
  }
  atomic_store_explicit(&r->done, 1, memory_order_release);
  return NULL;
}

static void *consumer(void *arg) {
  ring *r = arg;
  for (;;) {
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (t == atomic_load_explicit(&r->head, memory_order_acquire)) {
      if (atomic_load_explicit(&r->done, memory_order_acquire) &&
          t == atomic_load_explicit(&r->head, memory_order_acquire))
        break;
      sched_yield();
      continue;
    }
    unsigned char *p = r->slot[t % RING];
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    size_t sz = *(size_t *)(void *)p;
    if (sz < 16 || sz > 2048 || p[sz - 1] != 0xa5) atomic_fetch_add(&bad_blocks, 1);
    neap_free(p);
  }
  return NULL;
}

static void test_memory_stays_bounded(void) {
  const char *scale = getenv("NEAP_STRESS_SCALE");
  if (scale != NULL && atof(scale) > 0) per_producer = (size_t)((double)per_producer * atof(scale));
  pthread_t prod[PAIRS], cons[PAIRS];
  for (int i = 0; i < PAIRS; i++) {
    rings[i].count = per_producer;
    pthread_create(&cons[i], NULL, consumer, &rings[i]);
    pthread_create(&prod[i], NULL, producer, &rings[i]);
  }
  /* Sample the heap while it runs. */
  uint64_t max_grown = 0;
  for (;;) {
    int running = 0;
    for (int i = 0; i < PAIRS; i++) running += !atomic_load(&rings[i].done);
    neap_heap_stats st;
    neap__heap_stats(&st);
    if (st.pages_grown > max_grown) max_grown = st.pages_grown;
    if (!running) break;
    usleep(2000);
  }
  for (int i = 0; i < PAIRS; i++) {
    pthread_join(prod[i], NULL);
    pthread_join(cons[i], NULL);
  }
  double total_mib = (double)per_producer * PAIRS * 1032.0 / 1048576.0;
  double grown_mib = (double)max_grown * NEAP_PAGE_SIZE / 1048576.0;
  double inflight_mib = (double)RING * PAIRS * 2048.0 / 1048576.0;
  fprintf(stderr, "prodcons: %.0f MiB passed through, at most %.1f MiB in flight, heap peaked at %.1f MiB\n",
          total_mib, inflight_mib, grown_mib);
  /* 4x the worst-case bytes in flight, plus the fixed 4 MiB chunk. */
  CHECK(grown_mib <= 4 * inflight_mib + 4);
  CHECK_EQ(atomic_load(&bad_blocks), 0);
  CHECK_EQ(neap__heap_live_bytes(), 0);
  CHECK_EQ(neap__heap_live_objects(), 0);
  test_heap_check("after producer/consumer");
}

int main(void) {
  RUN(test_memory_stays_bounded);
  return TEST_DONE();
}
