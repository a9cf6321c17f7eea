/* test_scav_policy: the scavenger's policy, deterministic: a fake clock
 * stamps the pages the heap frees and drives single background steps (no
 * thread: the test runs itself again with NEAPDEBUG=scavenger=0).
 *   - a free page goes back after the release delay, not before; while
 *     the program is active the step looks again every quarter delay;
 *   - the density rule: free pages in a chunk that is dense now (496 of
 *     512 pages in use), or was dense less than a delay ago, stay; a
 *     forced release (neap_release) takes them anyway;
 *   - retention: while the program is active, pages wait four delays and
 *     those its recent demand may take back are kept; once it is idle for
 *     a delay they go back;
 *   - busy by CPU time (a tenth of a core or more, on the fake clock's CPU
 *     times): pages wait; once the CPU goes quiet, they go back;
 *   - with nothing to return, the step parks (no timed wake-up);
 *   - the CPU budget: the pacer's long-run work is the budget (1%), its
 *     burst 100 s worth of it, over a simulated hour.
 */
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "scav.h"
#include "neap.h"
#include "options.h"
#include "os/os.h"
#include "../test.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define CHUNK ((size_t)4 << 20)

/* The clock and the CPU times the policies see (os.h's fake clock). */
static neap_os_fake_time fake;
#define fake_now fake.now_ms

/* Free pages not yet returned. */
static size_t dirty_bytes(void) {
  neap_heap_stats hs;
  neap__heap_stats(&hs);
  return (size_t)(hs.pages_free - hs.pages_scavenged) << NEAP_PAGE_SHIFT;
}

static void test_delay(void) {
  fake_now = 100000;
  neap_release();
  CHECK_EQ(dirty_bytes(), 0);
  char *p = neap_malloc(8 * MiB);
  memset(p, 1, 8 * MiB);
  fake_now = 200000;
  neap_free(p);
  CHECK_EQ(dirty_bytes(), 8 * MiB);
  size_t rel = 1;
  fake_now = 200500;
  /* Not yet; the program freed pages 500 ms ago, so it counts as active:
   * the scavenger looks again in a quarter delay, to see it go idle. */
  CHECK_EQ(neap__scav_test_step(fake_now, &rel), 250);
  CHECK_EQ(rel, 0);
  fake_now = 200999;
  CHECK_EQ(neap__scav_test_step(fake_now, &rel), 250);
  CHECK_EQ(rel, 0);
  CHECK_EQ(dirty_bytes(), 8 * MiB);
  fake_now = 201000;
  CHECK_EQ(neap__scav_test_step(fake_now, &rel), UINT32_MAX); /* all returned: park */
  CHECK_EQ(rel, 8 * MiB);
  CHECK_EQ(dirty_bytes(), 0);
  /* Nothing to do: parks again at once. */
  fake_now = 260000;
  CHECK_EQ(neap__scav_test_step(fake_now, &rel), UINT32_MAX);
  CHECK_EQ(rel, 0);
}

static void test_density(void) {
  fake_now = 300000;
  neap_release();
  const size_t big = 24 * MiB;
  char *a = neap_malloc(big);
  memset(a, 1, big);
  /* C: the first whole chunk inside a (chunks are 4 MiB-aligned). */
  uintptr_t c = ((uintptr_t)a + CHUNK - 1) & ~(uintptr_t)(CHUNK - 1);
  size_t keep = c + CHUNK - 64 * KiB - (uintptr_t)a; /* C keeps 504 of its 512 pages */
  CHECK_PTR_EQ(neap_realloc(a, keep), a);
  CHECK_EQ(dirty_bytes(), big - keep);
  size_t rel = 0;
  fake_now = 305000; /* long after the delay */
  uint32_t sleep = neap__scav_test_step(fake_now, &rel);
  CHECK_EQ(rel, big - keep - 64 * KiB); /* everything past C; C's 8 free pages stay */
  CHECK_EQ(dirty_bytes(), 64 * KiB);
  CHECK_EQ(sleep, 1000); /* dense chunks: look again in a delay */

  /* C stops being dense at 310000: its old free pages wait a delay more. */
  fake_now = 310000;
  CHECK_PTR_EQ(neap_realloc(a, keep - 100 * NEAP_PAGE_SIZE), a);
  CHECK_EQ(dirty_bytes(), 108 * NEAP_PAGE_SIZE);
  fake_now = 310500;
  CHECK_EQ(neap__scav_test_step(fake_now, &rel), 250);
  CHECK_EQ(rel, 0);
  fake_now = 311000;
  CHECK_EQ(neap__scav_test_step(fake_now, &rel), UINT32_MAX);
  CHECK_EQ(rel, 108 * NEAP_PAGE_SIZE);
  CHECK_EQ(dirty_bytes(), 0);

  /* Dense again, with 8 free pages: a forced release takes them. */
  fake_now = 320000;
  CHECK_PTR_EQ(neap_realloc(a, c + CHUNK - (uintptr_t)a), a); /* grows in place over C */
  CHECK_PTR_EQ(neap_realloc(a, keep), a);
  CHECK_EQ(dirty_bytes(), 64 * KiB);
  fake_now = 330000;
  neap__scav_test_step(fake_now, &rel);
  CHECK_EQ(rel, 0);
  CHECK_EQ(dirty_bytes(), 64 * KiB);
  CHECK(neap_release() >= 64 * KiB);
  CHECK_EQ(dirty_bytes(), 0);
  neap_free(a);
}

/* From a heap with nothing to return, at time t: 8 MiB touched, and freed
 * at t + 100 ms. */
static void free_8mib_at(uint32_t t) {
  fake_now = t;
  neap_release();
  char *p = neap_malloc(8 * MiB);
  memset(p, 1, 8 * MiB);
  fake_now = t + 100;
  neap_free(p);
}

static void test_retention(void) {
  free_8mib_at(400000);
  /* The program goes on working: more than a delay later the 8 MiB would
   * be due, but it took and gave pages 150 ms ago, so it is busy (its
   * pages wait four delays) and its recent demand says it may want them
   * back: kept, looked at again in a quarter delay. */
  fake_now = 401050;
  neap_free(neap_malloc(MiB));
  fake_now = 401200;
  size_t rel = 1;
  CHECK_EQ(neap__scav_test_step(fake_now, &rel), 250);
  CHECK_EQ(rel, 0);
  CHECK_EQ(dirty_bytes(), 8 * MiB); /* the 1 MiB block reused the freed pages */
  /* Idle for a delay: everything due goes back. */
  fake_now = 402050;
  CHECK_EQ(neap__scav_test_step(fake_now, &rel), UINT32_MAX);
  CHECK_EQ(rel, 8 * MiB);
  CHECK_EQ(dirty_bytes(), 0);
}

/* Busy by its CPU time alone: the program takes and gives no pages, but
 * its threads use half a core: its free pages wait four delays, looked at
 * every quarter delay. Once its CPU goes quiet, the plain delay applies
 * and they go back. */
static void test_busy(void) {
  free_8mib_at(500000);
  size_t rel = 1;
  neap__scav_test_step(fake_now, &rel); /* a first look at the CPU times */
  for (fake_now = 500350; fake_now <= 502600; fake_now += 250) {
    fake.process_cpu_ns += 125000000; /* half of the 250 ms */
    CHECK_EQ(neap__scav_test_step(fake_now, &rel), 250);
    CHECK_EQ(rel, 0);
  }
  CHECK_EQ(dirty_bytes(), 8 * MiB); /* 2.5 s after the free, past the 1 s delay */
  fake_now += 250; /* a quiet quarter delay */
  CHECK_EQ(neap__scav_test_step(fake_now, &rel), UINT32_MAX);
  CHECK_EQ(rel, 8 * MiB);
  CHECK_EQ(dirty_bytes(), 0);
}

static void test_pacer(void) {
  static const long budgets[] = {100, 500, 1}; /* 1%, 5%, 0.01% (hundredths of a percent) */
  for (size_t b = 0; b < sizeof budgets / sizeof budgets[0]; b++) {
    neap__pacer p;
    neap__pacer_init(&p, budgets[b], 0);
    const uint64_t sec = 1000000000ull, quantum = 1000000ull; /* 1 ms of work at a time */
    const uint64_t cap = 100 * sec * (uint64_t)budgets[b] / 10000; /* 100 s worth */
    CHECK_EQ((uint64_t)neap__pacer_credit_ns(&p), cap); /* starts full */
    /* A simulated hour with always something to return. */
    uint64_t now = 0, worked = 0, end = 3600 * sec;
    while (now < end) {
      neap__pacer_refill(&p, now);
      if (neap__pacer_may_work(&p)) {
        neap__pacer_charge(&p, quantum);
        worked += quantum;
        now += quantum;
      } else {
        uint64_t w = neap__pacer_wait_ns(&p);
        if (w == 0) CHECK(w > 0);
        now += w;
      }
    }
    uint64_t budget = end / 10000 * (uint64_t)budgets[b];
    CHECK(worked <= budget + cap + quantum); /* never more than the budget and one burst */
    CHECK(worked >= budget - budget / 100);  /* and the budget is used */
    /* After a quiet spell the bucket is full, never more. */
    neap__pacer_refill(&p, now + 100000 * sec);
    CHECK_EQ((uint64_t)neap__pacer_credit_ns(&p), cap);
  }
}

int main(int argc, char **argv) {
  (void)argc;
  /* Without the background thread and without a limit. */
  static const char *const env[] = {"NEAPDEBUG=scavenger=0", "NEAP_MEMLIMIT=off", "NEAP_RELEASE_DELAY", NULL};
  test_reexec_with(argv, env);
  neap_free(neap_malloc(1)); /* the library is up; the constructor parsed the options */
  CHECK_EQ(neap__opt.scavenger, 0);
  CHECK_EQ(neap__opt.release_delay, 1000);
  neap__os_fake_time(&fake);
  RUN(test_delay);
  RUN(test_density);
  RUN(test_retention);
  RUN(test_busy);
  RUN(test_pacer);
  neap__os_fake_time(NULL);
  return TEST_DONE();
}
