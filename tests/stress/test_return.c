/* test_return: neap gives memory back, measured the way a container sees
 * it (/proc/self/smaps_rollup), with the process idle (no allocator calls:
 * sampling uses open/read and nanosleep) after the frees. One scenario per
 * run, named by argv[1]; the background scavenger and the default release
 * delay (1 s) do the work unless the scenario says otherwise.
 *
 *   peak       10 x 256 MiB (half small blocks, half large) allocated,
 *              touched and freed; RSS <= baseline + 16 MiB within 2 s
 *   small      300 MiB of small objects, all freed; the same bound
 *   polled     256 MiB of 1 MiB blocks, all freed, while a thread reads
 *              neap_stats_read without pause (neap's own statistics are
 *              not the program's work: the scavenger must not take the
 *              process for busy and hold its pages longer); the same
 *              bound
 *   clusters   1 GiB of 64 B and 1 KiB objects, 90% freed in contiguous
 *              clusters; RSS <= 1.2 x live + 16 MiB within 3 s
 *   frag       the same objects, 90% freed at random (survivors
 *              scattered); RSS within 3 s <= 0.75 x the RSS right after
 *              the frees (every span that empties goes back)
 *   lazyfree   run with NEAPDEBUG=madvdontneed=0: after a 256 MiB peak,
 *              neap's heap_released_resident is within 10% of the
 *              kernel's LazyFree (and RSS stays: MADV_FREE)
 *   limit      parent: runs `limit-child` with NEAP_MEMLIMIT=128MiB and
 *              without a limit, sampling its RSS every 2 ms: the
 *              transient peak (160 MiB unlimited) stays under the limit
 *   hard       NEAP_MEMLIMIT=64MiB, hard mode: the allocation that cannot
 *              fit gets NULL/ENOMEM; after frees, allocations succeed
 *   fork       threads churn with NEAP_RELEASE_DELAY=0 while the main
 *              thread forks; each child allocates, sees its own scavenger
 *              return memory, and exits cleanly
 *   thp        run with NEAPDEBUG=disablethp=1: the heap's mapping is
 *              marked MADV_NOHUGEPAGE ("nh" in /proc/self/smaps)
 * Sizes scale with NEAP_RETURN_SCALE (default 1).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "neap.h"
#include "../test.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static double scale = 1.0;
static char self[4096];

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static size_t rss(void) { return test_rss_of(0); }

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Idle for up to `secs` after t0, sampling RSS every 100 ms; returns the
 * RSS at the end and stores in *when the first time (s after t0) it was
 * <= bound (-1 if never). */
static size_t idle_until(double t0, double secs, size_t bound, double *when) {
  *when = -1;
  size_t r = rss();
  for (;;) {
    double t = now_s() - t0;
    r = rss();
    if (*when < 0 && r <= bound) *when = t;
    if (t >= secs) return r;
    sleep_s(0.1);
  }
}

/* After frees: idles 2 s sampling RSS, reports it on stderr after `what`,
 * and checks that it came back to within 16 MiB of base. */
static void check_back_in_2s(const char *what, size_t base) {
  double t0 = now_s(), when;
  size_t after = rss(), bound = base + 16 * MiB;
  size_t end = idle_until(t0, 2.0, bound, &when);
  fprintf(stderr, "%s; RSS baseline %zu KiB, after the frees %zu KiB, at 2 s %zu KiB (<= baseline + 16 MiB after %.1f s)\n",
          what, base >> 10, after >> 10, end >> 10, when);
  CHECK(end <= bound);
}

static void touch(char *p, size_t n) {
  for (size_t i = 0; i < n; i += 4096) p[i] = (char)i;
  p[n - 1] = 1;
}

/* --- peak: 10 rounds of 256 MiB, half small, half large */
static void scenario_peak(void) {
  neap_free(neap_malloc(1));
  size_t base = rss();
  size_t round = (size_t)(256 * MiB * scale);
  double t_start = now_s();
  for (int r = 0; r < 10; r++) {
    size_t cap = round / 256 + 64, n = 0, small = 0, large = 0;
    void **ptrs = neap_malloc(cap * sizeof *ptrs);
    while (small + large < round && n < cap) {
      size_t sz;
      if (large < small) sz = (64 * KiB) << (next_rand() % 7); /* 64 KiB .. 4 MiB */
      else sz = 16 + next_rand() % 1009;
      char *p = neap_malloc(sz);
      if (p == NULL) {
        CHECK(p != NULL);
        return;
      }
      touch(p, sz);
      ptrs[n++] = p;
      if (sz > 32 * KiB) large += sz;
      else small += sz;
    }
    for (size_t i = n; i > 1; i--) { /* free in random order */
      size_t j = next_rand() % i;
      void *t = ptrs[i - 1];
      ptrs[i - 1] = ptrs[j];
      ptrs[j] = t;
    }
    for (size_t i = 0; i < n; i++) neap_free(ptrs[i]);
    neap_free(ptrs);
  }
  char what[64];
  snprintf(what, sizeof what, "peak: %.2f s for 10 rounds", now_s() - t_start);
  check_back_in_2s(what, base);
}

/* --- polled: an idle program whose one active thread polls the stats */
static _Atomic int polling;
static _Atomic unsigned long polls;

static void *poll_stats(void *arg) {
  (void)arg;
  neap_stats_t st;
  while (atomic_load(&polling)) {
    CHECK_EQ(neap_stats_read(&st, sizeof st), 0);
    atomic_fetch_add(&polls, 1);
  }
  return NULL;
}

static void scenario_polled(void) {
  neap_free(neap_malloc(1));
  size_t base = rss();
  size_t n = (size_t)(256 * scale);
  char **ptrs = neap_malloc(n * sizeof *ptrs);
  CHECK(ptrs != NULL);
  if (ptrs == NULL) return;
  for (size_t i = 0; i < n; i++) {
    ptrs[i] = neap_malloc(MiB);
    CHECK(ptrs[i] != NULL);
    if (ptrs[i] != NULL) touch(ptrs[i], MiB);
  }
  atomic_store(&polling, 1);
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, poll_stats, NULL), 0);
  for (size_t i = 0; i < n; i++) neap_free(ptrs[i]);
  neap_free(ptrs);
  check_back_in_2s("polled", base);
  atomic_store(&polling, 0);
  pthread_join(t, NULL);
  fprintf(stderr, "polled: %lu stats reads meanwhile\n", atomic_load(&polls));
  CHECK(atomic_load(&polls) > 0);
}

/* --- small: 300 MiB of small objects, all freed */
static void scenario_small(void) {
  neap_free(neap_malloc(1));
  size_t base = rss();
  size_t total = (size_t)(300 * MiB * scale), got = 0, n = 0, cap = total / 16 + 1;
  void **ptrs = neap_malloc(cap * sizeof *ptrs);
  while (got < total && n < cap) {
    size_t sz = 16 + next_rand() % 1009;
    char *p = neap_malloc(sz);
    p[0] = 1;
    p[sz - 1] = 2;
    ptrs[n++] = p;
    got += sz;
  }
  for (size_t i = 0; i < n; i++) neap_free(ptrs[i]);
  neap_free(ptrs);
  char what[64];
  snprintf(what, sizeof what, "small: %zu objects", n);
  check_back_in_2s(what, base);
}

/* --- 1 GiB of 64 B and 1 KiB objects (one of each in turn); survivors
 * are chained through their first word and the pointer array is freed. */
typedef struct {
  void *head;   /* survivors */
  size_t live;  /* their bytes */
  size_t count; /* objects allocated */
} objects;

static void alloc_and_free(objects *o, int clustered) {
  size_t total = (size_t)(1024 * MiB * scale), got = 0, n = 0, cap = total / 64 + 2;
  void **ptrs = neap_malloc(cap * sizeof *ptrs);
  while (got < total && n < cap) {
    size_t sz = (n & 1) ? 1024 : 64;
    uint64_t *p = neap_malloc(sz);
    p[0] = n;
    p[sz / 8 - 1] = ~(uint64_t)n;
    ptrs[n++] = p;
    got += sz;
  }
  o->head = NULL;
  o->live = 0;
  o->count = n;
  /* Free 90%: whole clusters of 4096 consecutive objects, or each object
   * at random; in a scattered order (index i * P mod n). */
  size_t P = 2654435761u % n;
  while (P == 0 || n % P == 0) P++;
  for (size_t k = 0; k < n; k++) {
    size_t i = (k * P) % n;
    uint64_t *p = ptrs[i];
    int survive = clustered ? (i / 4096) % 10 == 0 : (i * 0x9e3779b97f4a7c15ull >> 40) % 10 == 0;
    size_t sz = (i & 1) ? 1024 : 64;
    if (p[0] != i || p[sz / 8 - 1] != ~(uint64_t)i) CHECK_FAIL("heap corruption");
    if (survive) {
      p[0] = (uint64_t)(uintptr_t)o->head;
      o->head = p;
      o->live += sz;
    } else {
      neap_free(p);
    }
  }
  neap_free(ptrs);
}

static void free_survivors(objects *o) {
  while (o->head != NULL) {
    uint64_t *p = o->head;
    o->head = (void *)(uintptr_t)p[0];
    neap_free(p);
  }
}

static void scenario_clusters(void) {
  objects o;
  alloc_and_free(&o, 1);
  double t0 = now_s(), when;
  size_t after = rss();
  size_t bound = o.live + o.live / 5 + 16 * MiB;
  size_t end = idle_until(t0, 3.0, bound, &when);
  fprintf(stderr, "clusters: %zu objects, live %zu KiB; RSS after the frees %zu KiB, at 3 s %zu KiB "
          "(bound %zu KiB, met after %.1f s)\n", o.count, o.live >> 10, after >> 10, end >> 10, bound >> 10, when);
  CHECK(end <= bound);
  free_survivors(&o);
}

static void scenario_frag(void) {
  objects o;
  alloc_and_free(&o, 0);
  double t0 = now_s(), when;
  size_t after = rss();
  size_t bound = (size_t)((double)after * 0.75);
  size_t end = idle_until(t0, 3.0, bound, &when);
  fprintf(stderr, "frag: %zu objects, live %zu KiB; RSS after the frees %zu KiB, at 3 s %zu KiB = %.3f of it "
          "(<= 0.75 after %.1f s)\n", o.count, o.live >> 10, after >> 10, end >> 10, (double)end / (double)after, when);
  CHECK(end <= bound);
  free_survivors(&o);
}

/* --- lazyfree: MADV_FREE, and neap's account of what may still be resident */
static void scenario_lazyfree(void) {
  neap_free(neap_malloc(1));
  size_t total = (size_t)(256 * MiB * scale), n = 0;
  void *ptrs[1024];
  for (size_t got = 0; got < total && n < 1024; n++) {
    size_t sz = (n % 4 == 0) ? 64 * KiB : 1 * MiB;
    char *p = neap_malloc(sz);
    memset(p, 7, sz);
    ptrs[n] = p;
    got += sz;
  }
  for (size_t i = 0; i < n; i++) neap_free(ptrs[i]);
  size_t before = rss();
  sleep_s(2.5); /* the delay, and a pass */
  neap_stats_t st;
  CHECK_EQ(neap_stats_read(&st, sizeof st), 0);
  size_t kernel = test_smaps_field(0, "LazyFree"), after = rss();
  double diff = (double)st.heap_released_resident - (double)kernel;
  if (diff < 0) diff = -diff;
  fprintf(stderr, "lazyfree: RSS %zu KiB before, %zu KiB after the scavenger; LazyFree %zu KiB, "
          "neap's heap_released_resident %" PRIu64 " KiB (difference %.1f%%)\n",
          before >> 10, after >> 10, kernel >> 10, st.heap_released_resident >> 10,
          kernel ? 100.0 * diff / (double)kernel : 100.0);
  CHECK(kernel >= total / 2);           /* the pages went back lazily */
  CHECK(diff <= 0.10 * (double)kernel); /* and neap knows how many */
  CHECK(after >= total / 2);            /* they still count in RSS: MADV_FREE */
}

/* --- the memory limit */
static void limit_child(void) {
  /* 100 x 1 MiB, every other freed: 50 MiB of holes no 2 MiB block fits
   * in; then 30 x 2 MiB. Unlimited, neap holds 160 MiB until the delay
   * passes; live is never above 110 MiB. */
  void *a[100], *b[30];
  for (int i = 0; i < 100; i++) {
    a[i] = neap_malloc(MiB);
    memset(a[i], 1, MiB);
  }
  for (int i = 0; i < 100; i += 2) neap_free(a[i]);
  for (int i = 0; i < 30; i++) {
    b[i] = neap_malloc(2 * MiB);
    memset(b[i], 2, 2 * MiB);
  }
  sleep_s(0.05); /* let the parent sample the peak */
  for (int i = 1; i < 100; i += 2) neap_free(a[i]);
  for (int i = 0; i < 30; i++) neap_free(b[i]);
}

/* Runs this program as `limit-child` with NEAP_MEMLIMIT=value, sampling
 * its RSS every 2 ms; returns the highest sample (0 if the child failed). */
static size_t run_limit_child(const char *value) {
  pid_t pid = fork();
  if (pid == 0) {
    setenv("NEAP_MEMLIMIT", value, 1);
    execl(self, self, "limit-child", (char *)NULL);
    _exit(127);
  }
  size_t peak = 0;
  int st = 0;
  for (;;) {
    size_t r = test_rss_of(pid);
    if (r > peak) peak = r;
    if (waitpid(pid, &st, WNOHANG) == pid) break;
    sleep_s(0.002);
  }
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? peak : 0;
}

static void scenario_limit(void) {
  size_t unlimited = run_limit_child("off");
  size_t limited = run_limit_child("128MiB");
  fprintf(stderr, "limit: peak RSS %zu KiB without a limit, %zu KiB with NEAP_MEMLIMIT=128MiB\n",
          unlimited >> 10, limited >> 10);
  CHECK(unlimited > 150 * MiB); /* the scenario does go over without a limit */
  CHECK(limited > 0);
  CHECK(limited <= 128 * MiB + 8 * MiB); /* the limit, plus what neap does not manage */
}

static void scenario_hard(void) {
  neap_stats_t st;
  neap_free(neap_malloc(1));
  CHECK_EQ(neap_stats_read(&st, sizeof st), 0);
  CHECK_EQ(st.memlimit, 64 * MiB);
  CHECK_EQ(st.memlimit_hard, 1);
  CHECK_EQ(st.memlimit_source, 1);
  void *p[200];
  int n = 0;
  errno = 0;
  while (n < 200) {
    p[n] = neap_malloc(MiB);
    if (p[n] == NULL) break;
    memset(p[n], 3, MiB);
    n++;
  }
  CHECK(n < 200);
  CHECK_ERRNO(ENOMEM);
  CHECK(n >= 50 && n <= 64);
  neap_stats_read(&st, sizeof st);
  CHECK(st.held <= 64 * MiB);
  /* Still working: small objects fit, and after frees large ones again. */
  void *q = neap_malloc(100);
  CHECK(q != NULL);
  neap_free(q);
  for (int i = 0; i < 8; i++) neap_free(p[--n]);
  for (int i = 0; i < 4; i++) {
    p[n] = neap_malloc(MiB);
    CHECK(p[n] != NULL);
    if (p[n]) n++;
  }
  while (n > 0) neap_free(p[--n]);
  fprintf(stderr, "hard: 1 MiB blocks failed with ENOMEM at %d MiB held (limit 64 MiB); recovered\n",
          (int)(st.held >> 20));
}

/* --- fork while the scavenger runs */
static _Atomic int stop;

static void *churn(void *arg) {
  uint64_t r = (uint64_t)(uintptr_t)arg * 7919 + 1;
  void *slot[64] = {0};
  while (!atomic_load(&stop)) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    unsigned i = (unsigned)(r >> 58);
    neap_free(slot[i]);
    size_t sz = (r >> 20) % 4 == 0 ? (64 * KiB) << ((r >> 30) % 5) : 16 + (r >> 33) % 2000;
    slot[i] = neap_malloc(sz);
    memset(slot[i], 1, sz < 4096 ? sz : 4096);
  }
  for (int i = 0; i < 64; i++) neap_free(slot[i]);
  return NULL;
}

static void scenario_fork(void) {
  pthread_t t[3];
  for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1));
  int ok = 0;
  const int rounds = 30;
  for (int k = 0; k < rounds; k++) {
    sleep_s(0.03);
    pid_t pid = fork();
    if (pid == 0) {
      /* The child: allocate past the start size, free, and see a new
       * scavenger give it back. */
      char *big = neap_malloc(32 * MiB);
      if (big == NULL) _exit(2);
      memset(big, 5, 32 * MiB);
      neap_free(big);
      neap_stats_t st;
      for (int i = 0; i < 200; i++) {
        neap_stats_read(&st, sizeof st);
        if (st.scav_bg_bytes >= 32 * MiB) break;
        sleep_s(0.01);
      }
      if (st.scav_bg_bytes < 32 * MiB) _exit(3);
      void *q = neap_malloc(4 * MiB);
      neap_free(q);
      neap_release();
      _exit(0);
    }
    int st = 0;
    alarm(30);
    waitpid(pid, &st, 0);
    alarm(0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) ok++;
    else fprintf(stderr, "fork: child %d ended with status 0x%x\n", k, st);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
  neap_stats_t st;
  neap_stats_read(&st, sizeof st);
  fprintf(stderr, "fork: %d of %d children exited cleanly; parent's scavenger: %" PRIu64 " cycles, %" PRIu64
          " KiB returned\n", ok, rounds, st.scav_cycles, st.scav_bg_bytes >> 10);
  CHECK_EQ(ok, rounds);
  CHECK(st.scav_bg_bytes > 0);
}

/* --- NEAPDEBUG=disablethp=1: the heap's mappings say "nh" (MADV_NOHUGEPAGE) */
static void scenario_thp(void) {
  char *p = neap_malloc(16 * MiB);
  memset(p, 1, 16 * MiB);
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  int in_vma = 0, found = 0, nh = 0;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in_vma = (uintptr_t)p >= lo && (uintptr_t)p < hi;
      found |= in_vma;
    } else if (in_vma && strncmp(line, "VmFlags:", 8) == 0) {
      nh = strstr(line, " nh") != NULL;
    }
  }
  if (f) fclose(f);
  fprintf(stderr, "thp: the heap's mapping %s MADV_NOHUGEPAGE\n", nh ? "has" : "lacks");
  CHECK(found);
  CHECK(nh);
  neap_free(p);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_return peak|small|polled|clusters|frag|lazyfree|limit|hard|fork|thp\n");
    return 2;
  }
  const char *sc = getenv("NEAP_RETURN_SCALE");
  if (sc) scale = atof(sc);
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return 1;
  self[n] = 0;
  if (strcmp(argv[1], "limit-child") == 0) {
    limit_child();
    return 0;
  }
  static const struct {
    const char *name;
    void (*fn)(void);
  } scenarios[] = {{"peak", scenario_peak},         {"small", scenario_small}, {"polled", scenario_polled},
                   {"clusters", scenario_clusters},
                   {"frag", scenario_frag},         {"lazyfree", scenario_lazyfree}, {"limit", scenario_limit},
                   {"hard", scenario_hard},         {"fork", scenario_fork},   {"thp", scenario_thp}};
  for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
    if (strcmp(argv[1], scenarios[i].name) == 0) {
      RUN(scenarios[i].fn);
      return TEST_DONE();
    }
  }
  fprintf(stderr, "test_return: unknown scenario %s\n", argv[1]);
  return 2;
}
