/* fork while every lock is in use: the child's heap is whole.
 *
 * Three threads allocate and free small and large blocks, hand some to
 * each other to free (cross-thread frees: the centrals' pending stacks and
 * the caches' inboxes), and one of them asks for statistics and gives
 * memory back now and then (the stats, scavenger-work, registry and heap
 * locks). Meanwhile the main thread forks. Each child must find its heap
 * consistent (the heap checker, over every layer), allocate and free
 * through every path, start a thread of its own that does the same, and
 * check again. A lock a parent's thread held at the fork, or a structure
 * caught halfway, shows up as a hang (the alarm), an abort or a finding.
 *
 * The ThreadSanitizer build runs it too, so the fork handlers are
 * race-checked; ThreadSanitizer cannot follow a thread started in the
 * child of a threaded process, so there the child starts none (and the
 * scavenger is off: CMakeLists.txt).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "neap.h"
#include "test.h"

enum { WORKERS = 3, SLOTS = 64, MAILBOX = 256 };

static _Atomic int stop;
/* Blocks one worker leaves for the next to free. */
static _Atomic(void *) mailbox[WORKERS][MAILBOX];

static size_t pick_size(uint64_t r) {
  if ((r >> 20) % 16 == 0) return (40 * 1024) << ((r >> 30) % 4); /* large: 40-320 KiB */
  return 8 + (size_t)((r >> 33) % 3000);
}

static void *worker(void *arg) {
  unsigned me = (unsigned)(uintptr_t)arg;
  uint64_t r = 0x9e3779b97f4a7c15ull * (me + 1);
  void *slot[SLOTS] = {0};
  for (uint64_t n = 0; !atomic_load_explicit(&stop, memory_order_relaxed); n++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    unsigned i = (unsigned)(r >> 58);
    if (slot[i] != NULL && (r & 3) == 0) {
      /* hand it to the next worker, freeing what it left there */
      void *old = atomic_exchange(&mailbox[(me + 1) % WORKERS][(r >> 8) % MAILBOX], slot[i]);
      neap_free(old);
    } else {
      neap_free(slot[i]);
    }
    size_t sz = pick_size(r);
    slot[i] = neap_malloc(sz);
    if (slot[i] == NULL) abort();
    memset(slot[i], (int)me, sz < 256 ? sz : 256);
    for (unsigned k = 0; k < 4; k++) neap_free(atomic_exchange(&mailbox[me][(r >> (10 + k * 8)) % MAILBOX], NULL));
    if (me == 0 && n % 4096 == 0) {
      neap_stats_t st;
      neap_stats_read(&st, sizeof st);
      if (n % 16384 == 0) neap_release();
    }
  }
  for (unsigned i = 0; i < SLOTS; i++) neap_free(slot[i]);
  return NULL;
}

/* The child's own traffic: every size path, a realloc chain, frees of
 * blocks the parent's threads allocated (still in the child's heap). */
static int child_traffic(void) {
  void *p[256];
  for (unsigned i = 0; i < 256; i++) {
    size_t sz = pick_size(0x123456789ull * (i + 1) << 16);
    p[i] = neap_malloc(sz);
    if (p[i] == NULL) return 1;
    memset(p[i], 7, sz < 64 ? sz : 64);
  }
  void *q = NULL;
  for (size_t n = 16; n < 1 << 20; n *= 3) {
    q = neap_realloc(q, n);
    if (q == NULL) return 2;
  }
  neap_free(q);
  for (unsigned i = 0; i < 256; i++) neap_free(p[i]);
  for (unsigned w = 0; w < WORKERS; w++)
    for (unsigned k = 0; k < MAILBOX; k++) neap_free(atomic_exchange(&mailbox[w][k], NULL));
  return 0;
}

#if !defined(__SANITIZE_THREAD__)
static void *child_thread(void *arg) {
  (void)arg;
  return (void *)(uintptr_t)child_traffic();
}
#endif

static int child(void) {
  const char *m = neap__heap_check();
  if (m != NULL) {
    fprintf(stderr, "child, at fork: %s\n", m);
    return 10;
  }
  int rc = child_traffic();
  if (rc != 0) return rc;
#if !defined(__SANITIZE_THREAD__)
  pthread_t t;
  void *trc;
  if (pthread_create(&t, NULL, child_thread, NULL) != 0) return 11;
  pthread_join(t, &trc);
  if (trc != NULL) return 12;
#endif
  neap_stats_t st;
  neap_stats_read(&st, sizeof st);
  neap_release();
  m = neap__heap_check();
  if (m != NULL) {
    fprintf(stderr, "child, at exit: %s\n", m);
    return 13;
  }
  return 0;
}

static void test_fork_under_load(void) {
  int rounds = 40;
  const char *scale = getenv("NEAP_STRESS_SCALE");
  if (scale != NULL && atof(scale) > 0) rounds = (int)(rounds * atof(scale)) + 1;
  pthread_t t[WORKERS];
  for (unsigned i = 0; i < WORKERS; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
  int ok = 0;
  for (int k = 0; k < rounds; k++) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
      alarm(60); /* a lock left held hangs the child: fail, don't hang */
      _exit(child());
    }
    int st = 0;
    if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0) ok++;
    else fprintf(stderr, "fork %d: child ended with status 0x%x\n", k, st);
  }
  atomic_store(&stop, 1);
  for (unsigned i = 0; i < WORKERS; i++) pthread_join(t[i], NULL);
  for (unsigned w = 0; w < WORKERS; w++)
    for (unsigned k = 0; k < MAILBOX; k++) neap_free(atomic_exchange(&mailbox[w][k], NULL));
  fprintf(stderr, "fork: %d of %d children found their heap whole\n", ok, rounds);
  CHECK_EQ(ok, rounds);
  const char *m = neap__heap_check();
  if (!CHECK(m == NULL)) fprintf(stderr, "  parent: %s\n", m);
}

int main(void) {
  RUN(test_fork_under_load);
  return TEST_DONE();
}
