/* test_scav_threads: the scavenger racing the program. Four threads
 * allocate and free (small and large blocks, half of the frees by another
 * thread through a shared exchange), every block filled with a pattern
 * derived from its address and checked before it is freed, while:
 *   - the background scavenger runs with no release delay (every free
 *     page is a candidate at once) and a 50% CPU budget;
 *   - a soft memory limit far below the program's peak makes allocations
 *     run the limit's work (trim every cache, return pages) all the time;
 *   - a fifth thread calls neap_release and reads the statistics, whose
 *     invariants must hold in every snapshot.
 * A page returned while in use, or reused while being returned, breaks a
 * pattern; ThreadSanitizer (make tsan) checks the locking. At the end
 * everything is freed: no live bytes, and neap_release leaves no free page
 * unreturned. The test runs itself again with the environment it needs.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "neap.h"
#include "../test.h"

#define THREADS 4
#define SLOTS 512
#define XCHG 256

static double scale = 1.0;
static _Atomic(void *) exchange[XCHG];
static _Atomic int done;

static void fill(uint64_t *p, size_t n) {
  uint64_t v = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
  size_t words = n / 8;
  if (words == 0) return;
  p[0] = v;
  p[words - 1] = ~v;
  for (size_t i = 512; i < words; i += 512) p[i] = v + i; /* a word per 4 KiB page */
}

static void check_free(uint64_t *p) {
  if (p == NULL) return;
  size_t n = neap_usable_size(p), words = n / 8;
  uint64_t v = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
  int ok = words == 0 || (p[0] == v && p[words - 1] == ~v);
  for (size_t i = 512; ok && i < words; i += 512) ok = p[i] == v + i;
  if (!ok) CHECK_FAIL("pattern intact before free");
  neap_free(p);
}

static void *worker(void *arg) {
  uint64_t r = (uint64_t)(uintptr_t)arg * 0x2545F4914F6CDD1Dull + 1;
  uint64_t *slot[SLOTS] = {0};
  long iters = (long)(50000 * scale);
  for (long it = 0; it < iters; it++) {
    r ^= r << 13;
    r ^= r >> 7;
    r ^= r << 17;
    unsigned i = (unsigned)(r % SLOTS);
    uint64_t *old = slot[i];
    if (old != NULL && (r >> 40) % 2 == 0) {
      /* Hand it to another thread to free. */
      old = atomic_exchange(&exchange[(r >> 20) % XCHG], old);
    }
    check_free(old);
    size_t sz = (r >> 32) % 16 == 0 ? ((size_t)32 << 10) + (r >> 12) % (2u << 20) : 1 + (r >> 24) % 3000;
    uint64_t *p = neap_malloc(sz);
    if (p == NULL) {
      CHECK(p != NULL);
      break;
    }
    fill(p, neap_usable_size(p));
    slot[i] = p;
  }
  for (unsigned i = 0; i < SLOTS; i++) check_free(slot[i]);
  return NULL;
}

static void check_stats(const neap_stats_t *s) { test_check_stats(s, NULL); }

static void *releaser(void *arg) {
  (void)arg;
  size_t total = 0;
  while (!atomic_load(&done)) {
    total += neap_release();
    neap_stats_t s;
    neap_stats_read(&s, sizeof s);
    check_stats(&s);
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  return (void *)total;
}

int main(int argc, char **argv) {
  (void)argc;
  static const char *const env[] = {"NEAP_RELEASE_DELAY=0", "NEAP_SCAVENGER_CPU=50%", "NEAP_MEMLIMIT=24MiB",
                                     "NEAP_MEMLIMIT_MODE", NULL};
  test_reexec_with(argv, env);
  const char *sc = getenv("NEAP_STRESS_SCALE");
  if (sc) scale = atof(sc);
  pthread_t t[THREADS], rel;
  pthread_create(&rel, NULL, releaser, NULL);
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  atomic_store(&done, 1);
  void *released;
  pthread_join(rel, &released);
  for (unsigned i = 0; i < XCHG; i++) check_free(atomic_exchange(&exchange[i], NULL));
  neap_thread_flush();
  neap_release();
  test_heap_check("after the threads and the scavenger");
  neap_stats_t s;
  CHECK_EQ(neap_stats_read(&s, sizeof s), 0);
  check_stats(&s);
  CHECK_EQ(neap__heap_live_bytes(), 0);
  CHECK_EQ(s.heap_objects, 0);
  CHECK_EQ(s.heap_idle, s.heap_released); /* nothing free left unreturned */
  CHECK_EQ(s.memlimit, (uint64_t)24 << 20);
  CHECK(s.scav_eager_bytes > 0); /* the limit did work */
  fprintf(stderr, "scav_threads: released by neap_release %zu KiB, background %llu KiB, for the limit %llu KiB; "
          "%llu cycles, %.1f ms CPU\n", (size_t)released >> 10, (unsigned long long)s.scav_bg_bytes >> 10,
          (unsigned long long)s.scav_eager_bytes >> 10, (unsigned long long)s.scav_cycles,
          (double)s.scav_cpu_ns / 1e6);
  return TEST_DONE();
}
