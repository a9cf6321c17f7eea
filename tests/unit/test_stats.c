/* Statistics: the invariants neap.h promises hold in every snapshot taken
 * while 8 threads allocate, free each other's objects and make large
 * ones; the figures are exact once they stop; the printers' output reads
 * back; and the kernel's RSS reconciles with neap's mappings.
 *
 *   test_stats            all of it
 * Under sanitizers the reconciliation is skipped (their shadow memory is
 * in RSS and is not neap's).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "neap.h"
#include "statsfmt.h"
#include "test.h"

#define THREADS 8
#define SLOTS 4096

static _Atomic bool stop;
static _Atomic uint64_t worker_mallocs; /* what the workers really did */
static _Atomic(void *) handoff[THREADS][64]; /* objects passed to the next thread */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}

static size_t pick_size(uint64_t r) {
  unsigned k = (unsigned)(r % 100);
  if (k < 60) return 8 + (r >> 8) % 256;
  if (k < 95) return 256 + (r >> 8) % 8192;
  if (k < 99) return 8192 + (r >> 8) % 32768;
  return 40000 + (r >> 8) % 400000; /* large */
}

static void *worker(void *arg) {
  unsigned me = (unsigned)(uintptr_t)arg;
  uint64_t seed = 0x9e3779b97f4a7c15ull * (me + 1);
  void *slot[SLOTS] = {0};
  uint64_t made = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    for (int i = 0; i < 1000; i++) {
      uint64_t r = rnd(&seed);
      unsigned k = (unsigned)(r % SLOTS);
      if (slot[k] != NULL) {
        if ((r >> 40) % 4 == 0) { /* give it to the next thread to free */
          void *old = atomic_exchange(&handoff[(me + 1) % THREADS][(r >> 32) % 64], slot[k]);
          neap_free(old);
        } else {
          neap_free(slot[k]);
        }
        slot[k] = NULL;
      } else {
        slot[k] = neap_malloc(pick_size(r));
        made++;
        if (slot[k] == NULL) CHECK(slot[k] != NULL);
        memset(slot[k], 1, 8);
      }
    }
    for (int j = 0; j < 64; j++) neap_free(atomic_exchange(&handoff[me][j], NULL));
  }
  for (int k = 0; k < SLOTS; k++) neap_free(slot[k]);
  atomic_fetch_add(&worker_mallocs, made);
  return NULL;
}

static void test_invariants_under_load(void) {
  neap_stats_t base;
  CHECK_EQ(neap_stats_read(&base, sizeof base), 0);
  pthread_t t[THREADS];
  for (unsigned i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
  neap_stats_t prev = base, s;
  unsigned long snaps = 0;
  uint64_t t0 = now_ns();
  unsigned long fails_before = test__failed;
  /* 3 s and at least 100 snapshots, however loaded the machine (2
   * minutes at most). */
  while ((now_ns() - t0 < 3000000000ull || snaps < 100) && now_ns() - t0 < 120000000000ull) {
    CHECK_EQ(neap_stats_read(&s, sizeof s), 0);
    test_check_stats(&s, &prev);
    prev = s;
    snaps++;
    if (test__failed != fails_before) break;
  }
  atomic_store(&stop, true);
  for (unsigned i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  for (unsigned i = 0; i < THREADS; i++)
    for (int j = 0; j < 64; j++) neap_free(atomic_exchange(&handoff[i][j], NULL));
  printf("# %lu snapshots under load, invariants held in each; %" PRIu64 " mallocs\n", snaps,
         s.mallocs - base.mallocs);
  CHECK(snaps > 100);
  CHECK(s.mallocs - base.mallocs > 100000);
  CHECK(s.threads >= 2);

  /* Quiet now: everything the workers made is freed, exactly. */
  neap_stats_t end;
  neap_stats_read(&end, sizeof end);
  test_check_stats(&end, &prev);
  CHECK_EQ(end.heap_objects, base.heap_objects);
  CHECK_EQ(end.heap_alloc, base.heap_alloc);
  CHECK_EQ(end.mallocs - base.mallocs, end.frees - base.frees);
  /* And the counts are exact again, though thousands of snapshots were
   * taken mid-flight: short readings are not carried forward. */
  CHECK_EQ(end.mallocs - base.mallocs, atomic_load(&worker_mallocs));
}

/* Exact figures for a known set of objects: counts and bytes per class. */
static void test_exact(void) {
  neap_thread_flush();
  neap_stats_t a, b;
  neap_stats_read(&a, sizeof a);
  enum { N = 1000 };
  static void *p[N];
  uint64_t bytes = 0;
  for (int i = 0; i < N; i++) {
    p[i] = neap_malloc(i < N - 4 ? 100 : 100000); /* 996 small, 4 large */
    bytes += neap_usable_size(p[i]);
  }
  neap_stats_read(&b, sizeof b);
  test_check_stats(&b, &a);
  CHECK_EQ(b.heap_objects - a.heap_objects, N);
  CHECK_EQ(b.heap_alloc - a.heap_alloc, bytes);
  CHECK_EQ(b.mallocs - a.mallocs, N);
  const neap_stats_class_t *large_a = &a.by_class[a.nclasses - 1], *large_b = &b.by_class[b.nclasses - 1];
  CHECK_EQ(large_b->size, 0);
  CHECK_EQ(large_b->mallocs - large_a->mallocs, 4);
  size_t cls100 = 0;
  while (cls100 < b.nclasses && b.by_class[cls100].size < 100) cls100++;
  CHECK_EQ(b.by_class[cls100].size, neap_usable_size(p[0]));
  CHECK_EQ(b.by_class[cls100].mallocs - a.by_class[cls100].mallocs, N - 4);
  for (int i = 0; i < N; i += 2) neap_free(p[i]);
  neap_stats_t c;
  neap_stats_read(&c, sizeof c);
  test_check_stats(&c, &b);
  CHECK_EQ(c.frees - b.frees, N / 2);
  CHECK_EQ(c.by_class[cls100].frees - b.by_class[cls100].frees, N / 2 - 2);
  for (int i = 1; i < N; i += 2) neap_free(p[i]);
  neap_stats_read(&c, sizeof c);
  CHECK_EQ(c.heap_objects, a.heap_objects);
  CHECK_EQ(c.heap_alloc, a.heap_alloc);
  CHECK_EQ(c.total_alloc - a.total_alloc, bytes);
  /* An older, smaller struct gets its prefix; a NULL one is refused. */
  uint64_t two[2] = {0, 0};
  CHECK_EQ(neap_stats_read((neap_stats_t *)(void *)two, sizeof two), 0);
  CHECK_EQ(two[0], NEAP_STATS_VERSION);
  CHECK_EQ(neap_stats_read(NULL, sizeof c), EINVAL);
  CHECK_EQ(neap_stats_read(&c, 4), EINVAL);
}

typedef struct sink {
  char buf[65536];
  size_t n;
} sink;

static void sink_write(void *arg, const char *buf, size_t len) {
  sink *k = arg;
  if (len > sizeof k->buf - 1 - k->n) len = sizeof k->buf - 1 - k->n;
  memcpy(k->buf + k->n, buf, len);
  k->n += len;
  k->buf[k->n] = '\0';
}

/* The text form reads back to the same snapshot; JSON and Prometheus have
 * their shape (real parsers check them in tests/tool/test_formats.sh). */
static void test_formats(void) {
  static sink k;
  neap_stats_t s, back;
  neap_stats_read(&s, sizeof s);
  k.n = 0;
  CHECK_EQ(neap_stats_format_snapshot(&s, sink_write, &k, NEAP_STATS_TEXT), 0);
  CHECK(neap__stats_parse_text(k.buf, &back) > 30);
  CHECK(memcmp(&s, &back, sizeof s) == 0);
  CHECK(strstr(k.buf, "heap_alloc: ") == k.buf + strlen("version: 2\n"));
  k.n = 0;
  CHECK_EQ(neap_stats_format_snapshot(&s, sink_write, &k, NEAP_STATS_JSON), 0);
  CHECK(k.buf[0] == '{' && strstr(k.buf, "\"heap_alloc\": ") != NULL && strstr(k.buf, "\"by_class\": [") != NULL);
  k.n = 0;
  CHECK_EQ(neap_stats_format_snapshot(&s, sink_write, &k, NEAP_STATS_PROMETHEUS), 0);
  CHECK(strstr(k.buf, "# TYPE neap_mallocs_total counter\nneap_mallocs_total ") != NULL);
  CHECK(strstr(k.buf, "# TYPE neap_heap_alloc_bytes gauge\n") != NULL);
  CHECK(strstr(k.buf, "neap_scav_cpu_seconds_total ") != NULL);
  CHECK(strstr(k.buf, "neap_class_frees_total{size=\"large\"} ") != NULL);
  CHECK_EQ(neap_stats_print(sink_write, &k, (neap_stats_format)7), EINVAL);
  CHECK_EQ(neap_stats_print(NULL, &k, NEAP_STATS_TEXT), EINVAL);
  /* Several processes, labelled. */
  const neap_stats_t *two[2] = {&s, &s};
  const char *labels[2] = {"pid=\"1\"", "pid=\"2\""};
  k.n = 0;
  neap__stats_emit(two, labels, 2, NEAP_STATS_PROMETHEUS, sink_write, &k);
  CHECK(strstr(k.buf, "neap_heap_objects{pid=\"2\"} ") != NULL);
  CHECK(strstr(k.buf, "neap_class_mallocs_total{pid=\"1\",size=\"16\"} ") != NULL);
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
/* RSS of the mappings inside neap's heap (neap_owns of their start), and
 * of all mappings. */
static uint64_t smaps_heap_rss(uint64_t *all) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (f == NULL) return 0;
  char line[512];
  bool in = false;
  uint64_t rss = 0, total = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned long long kb, lo, hi;
    char perms[8];
    if (sscanf(line, "Rss: %llu kB", &kb) == 1) {
      total += kb * 1024;
      if (in) rss += kb * 1024;
    } else if (sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) == 3 && strlen(perms) == 4) {
      in = neap_owns((void *)(uintptr_t)lo) != 0;
    }
  }
  fclose(f);
  *all = total;
  return rss;
}
#endif

static void test_reconcile(void) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  printf("# reconciliation skipped under a sanitizer\n");
#else
  enum { N = 2048 };
  static void *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = neap_malloc(i % 2 ? 64 * 1024 : 100000); /* about 160 MiB in all, written */
    memset(p[i], 7, neap_usable_size(p[i]));
  }
  neap_stats_t s;
  neap_stats_read(&s, sizeof s);
  uint64_t all = 0, heap = smaps_heap_rss(&all);
  uint64_t meta = s.sys - s.heap_sys;
  uint64_t heap_resident = s.heap_sys - s.heap_released + s.heap_released_resident;
  uint64_t other = s.kernel_rss - heap;
  printf("# kernel RSS %" PRIu64 " KiB = neap heap %" PRIu64 " KiB (neap says at most %" PRIu64
         ") + the rest %" PRIu64 " KiB: neap metadata (at most %" PRIu64 ") and the program (binary, libc, stacks)\n",
         s.kernel_rss >> 10, heap >> 10, heap_resident >> 10, other >> 10, meta >> 10);
  CHECK(heap >= s.heap_alloc / 100 * 98);      /* the live objects are resident (they were written) */
  CHECK(heap <= heap_resident);                /* nothing resident that neap does not count */
  CHECK(other <= meta + ((uint64_t)24 << 20)); /* the rest: metadata and the program itself */
  CHECK(all >= s.kernel_rss - (1 << 20) && all <= s.kernel_rss + (1 << 20)); /* smaps agrees with rollup */
  CHECK(s.kernel_vsz >= s.reserved);
  for (int i = 0; i < N; i++) neap_free(p[i]);
#endif
}

int main(void) {
  test_exact();
  test_formats();
  test_invariants_under_load();
  test_reconcile();
  return TEST_DONE();
}
