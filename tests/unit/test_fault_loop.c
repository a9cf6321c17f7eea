/* test_fault_loop KIND: SQLite-style fault loops over one kind of os-layer
 * call (os.h: reserve, commit, commit_meta, return, map, thread, read,
 * publish).
 *
 * For N = 1, 2, ... a forked child (its heap untouched: the parent never
 * allocates from neap) makes the Nth call of the kind fail and runs a
 * mixed workload: small objects of every size, large and aligned ones,
 * calloc, realloc growing blocks across the small/large line, a thread
 * whose objects the main thread frees, the statistics, neap_release, the
 * cgroup reader on a fake tree, the stats file. It checks that
 *   - every allocation either succeeded or returned NULL with ENOMEM
 *     (posix_memalign: returned ENOMEM), and every block holds its data;
 *   - the heap checker finds nothing wrong, and the statistics keep their
 *     invariants;
 *   - with the fault gone, everything can be freed (live bytes back to 0)
 *     and the whole workload runs again with every allocation succeeding;
 *   - the cgroup limit read is the tree's (or none, when a read failed),
 *     and the stats file is whole or absent, never a temporary left over.
 * The loop ends at the first N the workload completes without reaching;
 * the test prints how many failure points it went through.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "heap.h"
#include "stats.h"
#include "internal.h"
#include "memlimit.h"
#include "neap.h"
#include "os/os.h"
#include "../test.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define MAX_N 5000
#define HELD 40000

static neap_os_call kind;
static const char *statsdir, *cgroot;
static void *held[HELD];
static size_t held_size[HELD], nheld;
static bool must_succeed; /* the second round: the fault is gone */
static double scale = 1;  /* NEAP_STRESS_SCALE: the sanitizer runs' smaller workload */
#define SCALED(n) ((size_t)((double)(n) * scale) + 1)

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fault loop: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  _exit(1);
}

static uint64_t stamp(size_t i) { return 0x9e3779b97f4a7c15ull * (i + 1); }

/* An allocation's outcome: kept (stamped at both ends), or NULL with
 * ENOMEM. */
static void keep(void *p, size_t size, const char *what) {
  if (p == NULL) {
    if (errno != ENOMEM) die("%s of %zu returned NULL with errno %d", what, size, errno);
    if (must_succeed) die("%s of %zu failed with no fault armed", what, size);
    return;
  }
  if (nheld == HELD) die("too many blocks");
  if (size >= 16) {
    uint64_t s = stamp(nheld);
    memcpy(p, &s, 8);
    memcpy((char *)p + size - 8, &s, 8);
  }
  held[nheld] = p;
  held_size[nheld++] = size;
}

static void check_block(size_t i) {
  if (held_size[i] < 16) return;
  uint64_t s = stamp(i), a, b;
  memcpy(&a, held[i], 8);
  memcpy(&b, (char *)held[i] + held_size[i] - 8, 8);
  if (a != s || b != s) die("block %zu (%p, %zu bytes) lost its data", i, held[i], held_size[i]);
}

static void free_from(size_t from) {
  for (size_t i = from; i < nheld; i++) {
    check_block(i);
    neap_free(held[i]);
  }
  nheld = from;
}

static void *thread_allocates(void *arg) {
  size_t n = (size_t)(uintptr_t)arg;
  void **out = malloc(n * sizeof *out); /* the harness's memory: glibc's */
  for (size_t i = 0; i < n; i++) {
    errno = 0;
    out[i] = neap_malloc(32 + i % 700);
    if (out[i] == NULL && errno != ENOMEM) die("thread's malloc gave errno %d", errno);
    if (out[i] == NULL && must_succeed) die("thread's malloc failed with no fault armed");
  }
  return out;
}

/* The cgroup reader on the fake tree: the limit is the tree's, or none
 * when a read failed; never another value. */
static void read_cgroup(void) {
  uint64_t limit = neap__cgroup_limit(cgroot);
  if (limit != 0 && limit != 300 * MiB) die("cgroup limit %llu is not the tree's", (unsigned long long)limit);
  if (must_succeed && limit != 300 * MiB) die("cgroup limit not found with no fault armed");
}

static void workload(void) {
  size_t start = nheld;
  for (size_t i = 0; i < SCALED(20000); i++) {
    size_t size = 8 + (i * 37) % 4000;
    errno = 0;
    keep(neap_malloc(size), size, "malloc");
    if (i % 3 == 0 && nheld > start) free_from(nheld - 1);
  }
  for (size_t i = 0; i < 24; i++) { /* large: the heap grows past one arena */
    size_t size = (i % 6 == 0 ? 9 * MiB : 1 * MiB + i * 4096);
    errno = 0;
    keep(neap_malloc(size), size, "malloc");
  }
  for (size_t i = 0; i < SCALED(200); i++) {
    size_t align = (size_t)4096 << (i % 7), size = 5000 + i;
    errno = 0;
    keep(neap_aligned_alloc(align, size), size, "aligned_alloc");
    void *p = NULL;
    int r = neap_posix_memalign(&p, 64, 300);
    if (r != 0 && r != ENOMEM) die("posix_memalign returned %d", r);
    errno = r;
    keep(r == 0 ? p : NULL, 300, "posix_memalign");
  }
  for (size_t i = 0; i < SCALED(2000); i++) {
    errno = 0;
    size_t n = i % 50 + 1;
    void *p = neap_calloc(n, 64);
    if (p != NULL)
      for (size_t k = 0; k < n * 64; k++)
        if (((unsigned char *)p)[k] != 0) die("calloc'd byte %zu is not zero", k);
    keep(p, n * 64, "calloc");
  }
  /* realloc: grow across the small/large line; a failure leaves the block. */
  for (size_t i = 0; i < SCALED(100); i++) {
    errno = 0;
    void *p = neap_malloc(100);
    if (p == NULL) {
      keep(p, 100, "malloc");
      continue;
    }
    memset(p, 0x77, 100);
    size_t size = 100;
    for (size_t to = 1000; to <= 300000; to *= 3) {
      errno = 0;
      void *q = neap_realloc(p, to);
      if (q == NULL) {
        if (errno != ENOMEM) die("realloc returned NULL with errno %d", errno);
        if (must_succeed) die("realloc failed with no fault armed");
        break;
      }
      p = q;
      size = to;
    }
    for (size_t k = 0; k < 100; k++)
      if (((unsigned char *)p)[k] != 0x77) die("realloc lost the block's data");
    keep(p, size, "realloc");
  }
  /* Another thread's objects, freed here (remote frees). */
  pthread_t t;
  if (pthread_create(&t, NULL, thread_allocates, (void *)(uintptr_t)3000) == 0) {
    void **out;
    pthread_join(t, (void **)&out);
    for (size_t i = 0; i < 3000; i++) neap_free(out[i]);
    free(out);
  }
  neap_stats_t s;
  neap_stats_read(&s, sizeof s);
  test_check_stats(&s, NULL);
  free_from(start + (nheld - start) / 2); /* half of it goes back ... */
  neap_release();                        /* ... to the OS */
  read_cgroup();
  /* The stats file: as the scavenger's tick writes it. */
  for (uint32_t k = 1; k <= 3; k++) neap__statsfile_tick(k * 10000u);
}

/* The stats file is whole (its pid line and a heap_sys line) or absent,
 * and no temporary file is left. */
static void check_stats_file(void) {
  char path[256];
  snprintf(path, sizeof path, "%s/neap.%d", statsdir, (int)getpid());
  FILE *f = fopen(path, "r");
  if (f != NULL) {
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char want[64];
    snprintf(want, sizeof want, "pid: %d\n", (int)getpid());
    if (strncmp(buf, want, strlen(want)) != 0 || strstr(buf, "\nheap_sys: ") == NULL) die("stats file is not whole");
  } else if (must_succeed && kind != NEAP_OS_PUBLISH) {
    die("no stats file with no fault armed");
  }
  /* This process's temporary file may be there while the scavenger
   * thread writes (the loops where it runs): one that stays is left
   * behind. (Earlier children, which _exit, may leave theirs mid-write:
   * the next process to publish removes those.) */
  snprintf(path, sizeof path, "%s/.neap.%d.tmp", statsdir, (int)getpid());
  for (int tries = 0; access(path, F_OK) == 0; tries++) {
    if (tries == 100) die("the temporary stats file %s was left behind", path);
    usleep(10000);
  }
  /* And the earlier children's are gone: this one's first publish
   * removed them (unless a fault kept it from listing the directory). */
  DIR *d = opendir(statsdir);
  struct dirent *e;
  int stale = 0;
  while (d != NULL && (e = readdir(d)) != NULL) stale += strstr(e->d_name, ".tmp") != NULL;
  if (d != NULL) closedir(d);
  if (stale != 0 && must_succeed) die("%d temporary stats files of dead processes not removed", stale);
}

static void heap_ok(const char *when) {
  const char *m = neap__heap_check();
  if (m != NULL) die("%s: %s", when, m);
}

/* One child: fail the Nth call, run, check, recover. Exit 0: the fault
 * fired and all is well; 3: the workload never reached it; 1: a finding. */
static void child(void *arg) {
  long n = (long)(intptr_t)arg;
  neap_os_counters c0, c1;
  neap__os_counters(&c0);
  neap__os_fail_nth(kind, n);
  workload();
  neap__os_fail_nth(kind, 0);
  neap__os_counters(&c1);
  bool fired = c1.injected[kind] != c0.injected[kind];
  heap_ok("after the workload");
  check_stats_file();
  free_from(0);
  neap_thread_flush();
  if (neap__heap_live_objects() != 0) die("%zu objects still live after freeing all", neap__heap_live_objects());
  must_succeed = true;
  workload();
  check_stats_file();
  free_from(0);
  heap_ok("after the second round");
  if (test__failed != 0) die("the statistics broke an invariant");
  _exit(fired ? 0 : 3);
}

static void write_file(const char *dir, const char *name, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  if (f == NULL || fputs(text, f) < 0) {
    perror(path);
    exit(2);
  }
  fclose(f);
}

/* A cgroup v2 tree: this process in /a/b, a 300 MiB limit on /a, a
 * larger one on /a/b (a failed read of /a's may not yield /a/b's). */
static void make_cgroup_tree(char *root) {
  char path[512];
  static const char *const dirs[] = {"", "/proc", "/proc/self", "/sys", "/sys/fs", "/sys/fs/cgroup",
                                     "/sys/fs/cgroup/a", "/sys/fs/cgroup/a/b"};
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    snprintf(path, sizeof path, "%s%s", root, dirs[i]);
    mkdir(path, 0700);
  }
  snprintf(path, sizeof path, "%s/proc/self", root);
  write_file(path, "cgroup", "0::/a/b\n");
  write_file(path, "mountinfo", "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n");
  snprintf(path, sizeof path, "%s/sys/fs/cgroup/a", root);
  write_file(path, "memory.max", "314572800\n");
  snprintf(path, sizeof path, "%s/sys/fs/cgroup/a/b", root);
  write_file(path, "memory.max", "1073741824\n");
  write_file(path, "memory.high", "max\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s KIND (reserve, commit, ...)\n", argv[0]);
    return 2;
  }
  static char dir[64], cg[64];
  snprintf(dir, sizeof dir, "/dev/shm/neap-fault.%d", (int)getpid());
  snprintf(cg, sizeof cg, "/dev/shm/neap-fault-cg.%d", (int)getpid());
  static char env[128];
  snprintf(env, sizeof env, "NEAP_STATS_DIR=%s", dir);
  /* Options neap reads at start: the stats file here, no background
   * scavenger (the workload ticks the stats file itself, and the loops
   * count the calls of one thread), no limit from the machine's cgroup. */
  const char *envs[] = {env, "NEAPDEBUG=scavenger=0", "NEAP_MEMLIMIT=off", NULL};
  if (getenv("NEAP_FAULT_SCAVENGER") != NULL) envs[1] = "NEAP_RELEASE_DELAY=0"; /* it runs, returning at once */
  test_reexec_with(argv, envs);
  statsdir = getenv("NEAP_STATS_DIR");
  const char *sc = getenv("NEAP_STRESS_SCALE");
  if (sc != NULL && atof(sc) > 0) scale = atof(sc);
  mkdir(statsdir, 0700);
  cgroot = cg;
  make_cgroup_tree(cg);
  kind = NEAP_OS_CALLS;
  for (int k = 0; k < NEAP_OS_CALLS; k++)
    if (strcmp(argv[1], neap__os_call_name((neap_os_call)k)) == 0) kind = (neap_os_call)k;
  if (!CHECK(kind != NEAP_OS_CALLS)) return TEST_DONE();

  long n = 1;
  for (; n <= MAX_N; n++) {
    char out[4096];
    int st = test_run_child(child, (void *)(intptr_t)n, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 3) break;
    if (!CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
      fprintf(stderr, "  %s fails at call %ld: status %d\n%s", argv[1], n, st, out);
      break;
    }
  }
  CHECK(n <= MAX_N);
  fprintf(stderr, "fault loop %s: %ld failure points, each a clean outcome\n", argv[1], n - 1);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, cg);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return TEST_DONE();
}
