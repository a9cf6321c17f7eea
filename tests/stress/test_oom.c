/* test_oom MODE: running out of memory for real, not by fault injection.
 *
 *   as       RLIMIT_AS (what `prlimit --as` sets) 400 MiB above what the
 *            process has mapped: arena reservations fail once the address
 *            space is used up. The program allocates 1 MiB blocks, then
 *            small ones, until NULL; frees everything; allocates again.
 *   data     RLIMIT_DATA 100 MiB above the process's data: reservations
 *            (no access) succeed but making them writable fails, as under
 *            vm.overcommit_memory=2 (strict accounting) when the commit
 *            charge is full, without changing the machine's settings.
 *   threads  NEAP_MEMLIMIT=64MiB in hard mode (ctest sets it) and four
 *            threads allocating and freeing against it while a fifth reads
 *            the statistics without pause.
 * In every mode: each failed allocation returns NULL with ENOMEM, no block
 * loses its data, the heap checker finds nothing wrong, the statistics
 * keep their invariants, and after freeing, allocation works again. In
 * `threads`, what neap holds never passes the limit by more than one span
 * per thread in every snapshot (the largest span here is 2 MiB).
 *
 * The limits apply in a forked child, so that they bound the heap and not
 * the test's own start. Not under sanitizers: their shadow memory is
 * terabytes of address space.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "heap.h"
#include "internal.h"
#include "neap.h"
#include "../test.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define MAXB 200000

static void *blocks[MAXB];
static size_t sizes[MAXB], nblocks;

static uint64_t stamp(size_t i) { return 0xa24baed4963ee407ull * (i + 7); }

static void put(void *p, size_t size) {
  uint64_t s = stamp(nblocks);
  memcpy(p, &s, 8);
  memcpy((char *)p + size - 8, &s, 8);
  blocks[nblocks] = p;
  sizes[nblocks++] = size;
}

static void free_all(void) {
  for (size_t i = 0; i < nblocks; i++) {
    uint64_t s = stamp(i), a, b;
    memcpy(&a, blocks[i], 8);
    memcpy(&b, (char *)blocks[i] + sizes[i] - 8, 8);
    if (a != s || b != s) CHECK_FAIL("a block lost its data");
    neap_free(blocks[i]);
  }
  nblocks = 0;
}

/* Allocates size-byte blocks until one fails (or `cap` bytes); returns the
 * bytes allocated. The failure must be ENOMEM. */
static size_t fill(size_t size, size_t cap) {
  size_t got = 0;
  while (nblocks < MAXB && got < cap) {
    errno = 0;
    void *p = neap_malloc(size);
    if (p == NULL) {
      CHECK_ERRNO(ENOMEM);
      break;
    }
    put(p, size);
    got += size;
  }
  return got;
}

static void heap_ok(const char *when) {
  const char *m = neap__heap_check();
  if (!CHECK(m == NULL)) fprintf(stderr, "  %s: %s\n", when, m);
  neap_stats_t s;
  neap_stats_read(&s, sizeof s);
  test_check_stats(&s, NULL);
}

/* A field of /proc/self/status in bytes ("VmData", "VmSize"). */
static size_t status_kib(const char *field) {
  char buf[4096];
  if (!test__read_proc(0, "status", buf, sizeof buf)) return 0;
  char *p = strstr(buf, field);
  return p ? (size_t)strtoul(p + strlen(field) + 1, NULL, 10) * KiB : 0;
}

static void run_limited(int resource, size_t room) {
  struct rlimit rl;
  size_t now = status_kib(resource == RLIMIT_AS ? "VmSize:" : "VmData:");
  rl.rlim_cur = rl.rlim_max = now + room;
  if (!CHECK(setrlimit(resource, &rl) == 0)) return;
  /* Large blocks until the limit, then small ones in what is left. */
  size_t big1 = fill(MiB, (size_t)4 << 30), small1 = fill(100, (size_t)1 << 30);
  fprintf(stderr, "  first round: %zu MiB in 1 MiB blocks, then %zu KiB in 100-byte ones\n", big1 / MiB,
          small1 / KiB);
  CHECK(big1 >= room / 4 && big1 < room);
  heap_ok("at the limit");
  neap_stats_t st;
  neap_stats_read(&st, sizeof st);
  CHECK_EQ(st.memlimit, (uint64_t)1 << 30); /* NEAP_MEMLIMIT, as ctest sets it: untouched by the failures */
  free_all();
  neap_release();
  CHECK_EQ(neap__heap_live_objects(), 0);
  heap_ok("after freeing");
  size_t big2 = fill(MiB, (size_t)4 << 30);
  fprintf(stderr, "  second round: %zu MiB in 1 MiB blocks\n", big2 / MiB);
  CHECK(big2 + 8 * MiB >= big1); /* nearly as much again */
  heap_ok("at the limit again");
  free_all();
  CHECK_EQ(neap__heap_live_objects(), 0);
}

static void child_as(void *arg) {
  (void)arg;
  run_limited(RLIMIT_AS, 400 * MiB);
  _exit(test__failed != 0);
}

static void child_data(void *arg) {
  (void)arg;
  run_limited(RLIMIT_DATA, 100 * MiB);
  _exit(test__failed != 0);
}

static void run_mode(void (*fn)(void *), const char *name) {
  char out[8192];
  int st = test_run_child(fn, NULL, out, sizeof out);
  fprintf(stderr, "%s", out);
  if (!CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0)) fprintf(stderr, "  %s: status %d\n", name, st);
}

/* --- threads against the hard limit */

#define THREADS 4
#define PER_THREAD 4096
#define LARGEST (2 * MiB)
static atomic_bool done;
static atomic_ulong enomem, allocs, after_enomem;
static uint64_t limit;
static atomic_uint_least64_t worst_over;

static void *hammer(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull;
  static _Thread_local void *mine[PER_THREAD];
  static _Thread_local size_t msize[PER_THREAD];
  bool failed = false;
  while (!atomic_load(&done)) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    size_t k = (rng >> 33) % PER_THREAD;
    if (mine[k] != NULL) {
      if (((unsigned char *)mine[k])[msize[k] - 1] != (unsigned char)k) CHECK_FAIL("a block lost its data");
      neap_free(mine[k]);
      mine[k] = NULL;
      continue;
    }
    unsigned r = (unsigned)(rng >> 20);
    size_t size = r % 64 == 0 ? (size_t)(r % LARGEST) + 16 : r % 4096 + 16;
    errno = 0;
    void *p = neap_malloc(size);
    if (p == NULL) {
      if (errno != ENOMEM) CHECK_FAIL("a failed allocation's errno is not ENOMEM");
      atomic_fetch_add(&enomem, 1);
      failed = true;
      for (size_t j = 0; j < PER_THREAD; j += 2) { /* give back half */
        neap_free(mine[j]);
        mine[j] = NULL;
      }
      continue;
    }
    if (failed) atomic_fetch_add(&after_enomem, 1);
    ((unsigned char *)p)[size - 1] = (unsigned char)k;
    mine[k] = p;
    msize[k] = size;
    atomic_fetch_add(&allocs, 1);
  }
  for (size_t j = 0; j < PER_THREAD; j++) neap_free(mine[j]);
  return NULL;
}

static void *watch(void *arg) {
  (void)arg;
  neap_stats_t prev, s;
  memset(&prev, 0, sizeof prev);
  unsigned long n = 0;
  while (!atomic_load(&done)) {
    neap_stats_read(&s, sizeof s);
    test_check_stats(&s, n ? &prev : NULL);
    if (s.held > limit && s.held - limit > atomic_load(&worst_over)) atomic_store(&worst_over, s.held - limit);
    prev = s;
    n++;
  }
  fprintf(stderr, "  %lu snapshots\n", n);
  return NULL;
}

static void test_threads_hard_limit(void) {
  neap_stats_t s;
  neap_stats_read(&s, sizeof s);
  limit = s.memlimit;
  if (!CHECK(limit == 64 * MiB && s.memlimit_hard == 1)) return;
  pthread_t t[THREADS], w;
  pthread_create(&w, NULL, watch, NULL);
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, hammer, (void *)(uintptr_t)(i + 1));
  struct timespec d = {4, 0};
  nanosleep(&d, NULL);
  atomic_store(&done, true);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  pthread_join(w, NULL);
  unsigned long over = (unsigned long)atomic_load(&worst_over);
  fprintf(stderr, "  %lu allocations, %lu ENOMEM, %lu allocations after an ENOMEM; held passed the limit by %lu KiB "
                  "at most\n",
          atomic_load(&allocs), atomic_load(&enomem), atomic_load(&after_enomem), over / KiB);
  CHECK(atomic_load(&enomem) > 0);       /* the limit was reached ... */
  CHECK(atomic_load(&after_enomem) > 0); /* ... and allocation went on after it */
  CHECK(over <= THREADS * (LARGEST + NEAP_PAGE_SIZE));
  neap_thread_flush();
  heap_ok("after the threads");
  CHECK_EQ(neap__heap_live_objects(), 0);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "as") == 0) run_mode(child_as, "as");
  else if (strcmp(mode, "data") == 0) run_mode(child_data, "data");
  else if (strcmp(mode, "threads") == 0) RUN(test_threads_hard_limit);
  else {
    fprintf(stderr, "usage: %s as|data|threads\n", argv[0]);
    return 2;
  }
  return TEST_DONE();
}
