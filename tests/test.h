/* A dependency-free test harness for neap's tests.
 *
 * A test program is a main() that calls RUN(test_x) for each static void
 * test_x(void) and returns TEST_DONE(). Inside a test:
 *   CHECK(cond)            any truth value
 *   CHECK_FAIL(msg)        a failed check, with a message
 *   CHECK_EQ(a, b)         integers; both values are printed on failure
 *   CHECK_PTR_EQ(a, b)     pointers
 *   CHECK_ERRNO(e)         errno == e (the name of the value is printed)
 *   CHECK_ABORTS(fn, arg, needle)
 *                          runs fn(arg) in a forked child whose stderr goes
 *                          to a pipe; passes when the child dies of SIGABRT
 *                          and some line of its stderr starts with needle
 * A failed check prints "file:line: FAILED: expr" and the test goes on.
 *
 * The counts are of checks, not of tests: the last line of output, on
 * stdout, is exactly "N passed, N failed" with N the number of checks, and
 * TEST_DONE() is non-zero when any check failed. Checks are counted with
 * atomics, so worker threads may use them.
 *
 * The harness never calls malloc itself: messages go to unbuffered stderr,
 * the summary is formatted on the stack and written with write(2), and the
 * child's output is read into a caller's buffer.
 */
#ifndef NEAP_TEST_H
#define NEAP_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST__FN __attribute__((unused)) static

static unsigned long test__passed, test__failed;

TEST__FN int test__check(int ok, const char *file, int line, const char *expr) {
  __atomic_fetch_add(ok ? &test__passed : &test__failed, 1, __ATOMIC_RELAXED);
  if (!ok) fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, expr);
  return ok;
}

TEST__FN int test__check_eq(uintmax_t a, uintmax_t b, const char *file, int line, const char *ea,
                          const char *eb) {
  int ok = test__check(a == b, file, line, "CHECK_EQ(left, right)");
  if (!ok)
    fprintf(stderr, "  left:  %s is %ju (signed %jd, 0x%jx)\n  right: %s is %ju (signed %jd, 0x%jx)\n", ea, a,
            (intmax_t)a, a, eb, b, (intmax_t)b, b);
  return ok;
}

#define CHECK(c) test__check(!!(c), __FILE__, __LINE__, #c)
#define CHECK_FAIL(msg) test__check(0, __FILE__, __LINE__, msg)
#define CHECK_EQ(a, b) test__check_eq((uintmax_t)(a), (uintmax_t)(b), __FILE__, __LINE__, #a, #b)
#define CHECK_PTR_EQ(a, b)                                                                          \
  test__check_eq((uintmax_t)(uintptr_t)(const void *)(a), (uintmax_t)(uintptr_t)(const void *)(b), \
                 __FILE__, __LINE__, #a, #b)
#define CHECK_ERRNO(e) test__check_eq((uintmax_t)errno, (uintmax_t)(e), __FILE__, __LINE__, "errno", #e)

/* Runs fn(arg) in a child with stderr captured into out (NUL-terminated,
 * truncated to cap-1 bytes). Returns the wait status, or -1 if fork failed.
 * The child exits 0 if fn returns; core dumps are switched off. */
TEST__FN int test_run_child(void (*fn)(void *), void *arg, char *out, size_t cap) {
  int fds[2], status = -1;
  size_t n = 0;
  if (cap) out[0] = 0;
  fflush(stdout);
  fflush(stderr);
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    signal(SIGABRT, SIG_DFL);
    alarm(30); /* a child that deadlocks (say, on a lock held at fork) dies of SIGALRM */
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    fn(arg);
    _exit(0);
  }
  close(fds[1]);
  for (;;) {
    char junk[256];
    char *dst = n + 1 < cap ? out + n : junk;
    size_t room = n + 1 < cap ? cap - 1 - n : sizeof junk;
    ssize_t r = read(fds[0], dst, room);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (dst != junk) n += (size_t)r;
  }
  if (cap) out[n] = 0;
  close(fds[0]);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

/* 1 if some line of text starts with needle. */
TEST__FN int test_has_line_starting(const char *text, const char *needle) {
  size_t len = strlen(needle);
  for (const char *s = text;; s++) {
    if (strncmp(s, needle, len) == 0) return 1;
    if (!(s = strchr(s, '\n'))) return 0;
  }
}

TEST__FN int test__aborts(void (*fn)(void *), void *arg, const char *needle, const char *file,
                        int line, const char *what) {
  char out[4096];
  int st = test_run_child(fn, arg, out, sizeof out);
  int ok = st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && test_has_line_starting(out, needle);
  test__check(ok, file, line, what);
  if (!ok) {
    if (st == -1)
      fprintf(stderr, "  fork failed\n");
    else if (WIFSIGNALED(st))
      fprintf(stderr, "  child died of signal %d\n", WTERMSIG(st));
    else
      fprintf(stderr, "  child exited with status %d\n", WEXITSTATUS(st));
    fprintf(stderr, "  child stderr (want a line starting \"%s\"): \"%s\"\n", needle, out);
  }
  return ok;
}
#define CHECK_ABORTS(fn, arg, needle) \
  test__aborts(fn, arg, needle, __FILE__, __LINE__, "CHECK_ABORTS(" #fn ", " #arg ")")

/* /proc/<pid>/<name> (pid 0: self) into buf, NUL-terminated, with
 * open/read: no allocation, so a process measuring itself stays idle.
 * false if it cannot be read. */
TEST__FN bool test__read_proc(int pid, const char *name, char *buf, size_t size) {
  char path[64];
  if (pid == 0) snprintf(path, sizeof path, "/proc/self/%s", name);
  else snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  return true;
}

/* The resident set of process pid (0: self), in bytes, from statm: the
 * kernel's counters, O(1). Tests that sample their own RSS every 100 ms
 * use this, not smaps_rollup's Rss, which walks every page table: about
 * 5 ms per read at 1 GiB resident on the development VM, so 5% of a core
 * spent by the test itself, half of what makes the scavenger treat the
 * process as busy and keep the pages the test waits to see returned
 * (scav.c: program_busy). */
TEST__FN size_t test_rss_of(int pid) {
  char buf[256];
  if (!test__read_proc(pid, "statm", buf, sizeof buf)) return 0;
  char *p = strchr(buf, ' '); /* size resident shared ... (pages) */
  if (p == NULL) return 0;
  return (size_t)strtoul(p + 1, NULL, 10) * (size_t)sysconf(_SC_PAGESIZE);
}

TEST__FN size_t test_rss_bytes(void) { return test_rss_of(0); }

/* A field of /proc/<pid>/smaps_rollup in bytes ("Rss", "LazyFree", ...;
 * pid 0: self). 0 if absent. */
TEST__FN size_t test_smaps_field(int pid, const char *field) {
  char buf[4096];
  if (!test__read_proc(pid, "smaps_rollup", buf, sizeof buf)) return 0;
  size_t flen = strlen(field);
  for (char *line = buf; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
    if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
      unsigned long kb = strtoul(line + flen + 1, NULL, 10);
      return (size_t)kb << 10;
    }
  }
  return 0;
}

/* Makes sure the test runs in the environment it needs: the first time
 * (NEAP_TEST_CHILD unset) it sets each "NAME=value" of env (a bare "NAME"
 * unsets it) and executes itself again, which is the only way to give
 * neap options it reads before main. Returns in the second run only. */
TEST__FN void test_reexec_with(char **argv, const char *const *env) {
  if (getenv("NEAP_TEST_CHILD") != NULL) return;
  setenv("NEAP_TEST_CHILD", "1", 1);
  for (; *env != NULL; env++) {
    char name[128];
    const char *eq = strchr(*env, '=');
    size_t n = eq ? (size_t)(eq - *env) : strlen(*env);
    if (n >= sizeof name) continue;
    memcpy(name, *env, n);
    name[n] = 0;
    if (eq) setenv(name, eq + 1, 1);
    else unsetenv(name);
  }
  execv("/proc/self/exe", argv);
  perror("execv");
  exit(1);
}

/* Runs one test function and reports its own count of failed checks. */
#define RUN(t)                                                                   \
  do {                                                                           \
    const char *test__only = getenv("TEST_ONLY"); /* runs only tests naming it */ \
    if (test__only != NULL && strstr(#t, test__only) == NULL) break;             \
    unsigned long test__f0 = __atomic_load_n(&test__failed, __ATOMIC_RELAXED);  \
    t();                                                                         \
    unsigned long test__f1 = __atomic_load_n(&test__failed, __ATOMIC_RELAXED);  \
    fprintf(stderr, "%-40s %s\n", #t, test__f1 == test__f0 ? "ok" : "FAILED"); \
  } while (0)

/* Prints the summary line and gives main's return value. */
TEST__FN int test_done(void) {
  char line[96];
  unsigned long p = __atomic_load_n(&test__passed, __ATOMIC_RELAXED);
  unsigned long f = __atomic_load_n(&test__failed, __ATOMIC_RELAXED);
  int n = snprintf(line, sizeof line, "%lu passed, %lu failed\n", p, f);
  fflush(stdout);
  if (n > 0 && write(1, line, (size_t)n) < 0) return 2;
  return f != 0;
}
#define TEST_DONE() test_done()


#if defined(NEAP_INTERNAL_H) && NEAP_TESTING
/* The heap checker finds nothing wrong (no other thread may be inside neap). */
static inline void test_heap_check(const char *when) {
  const char *m = neap__heap_check();
  if (!CHECK(m == NULL)) fprintf(stderr, "  %s: %s\n", when, m);
}
#endif

#ifdef NEAP_H
/* The invariants neap.h promises for every snapshot, and monotonic
 * cumulative counts against the previous snapshot (prev may be NULL).
 * Counts failures through CHECK only when one fails, so that a loop of a
 * million snapshots does not flood the pass count. */
static inline void test_check_stats(const neap_stats_t *s, const neap_stats_t *prev) {
  uint64_t sum = s->heap_sys + s->span_sys + s->cache_sys + s->arena_meta_sys + s->pagealloc_sys + s->other_sys + s->gc_sys;
  if (s->sys != sum) CHECK_EQ(s->sys, sum);
  if (s->heap_sys != s->heap_inuse + s->heap_idle) CHECK_EQ(s->heap_sys, s->heap_inuse + s->heap_idle);
  if (s->heap_idle < s->heap_released) CHECK(s->heap_idle >= s->heap_released);
  if (s->heap_objects != s->mallocs - s->frees) CHECK_EQ(s->heap_objects, s->mallocs - s->frees);
  if (s->heap_alloc > s->heap_inuse) {
    fprintf(stderr, "heap_alloc %" PRIu64 " heap_inuse %" PRIu64 " objects %" PRIu64 "\n", s->heap_alloc, s->heap_inuse, s->heap_objects);
    CHECK(s->heap_alloc <= s->heap_inuse);
  }
  if (s->held != s->sys - s->heap_released) CHECK_EQ(s->held, s->sys - s->heap_released);
  if (s->frees > s->mallocs) CHECK(s->frees <= s->mallocs);
  uint64_t m = 0, f = 0;
  for (uint64_t i = 0; i < s->nclasses; i++) m += s->by_class[i].mallocs, f += s->by_class[i].frees;
  if (m != s->mallocs || f != s->frees) CHECK(m == s->mallocs && f == s->frees);
  if (prev == NULL) return;
  if (s->mallocs < prev->mallocs || s->frees < prev->frees || s->total_alloc < prev->total_alloc)
    CHECK(s->mallocs >= prev->mallocs && s->frees >= prev->frees && s->total_alloc >= prev->total_alloc);
  for (uint64_t i = 0; i < s->nclasses; i++)
    if (s->by_class[i].mallocs < prev->by_class[i].mallocs || s->by_class[i].frees < prev->by_class[i].frees)
      CHECK(s->by_class[i].mallocs >= prev->by_class[i].mallocs && s->by_class[i].frees >= prev->by_class[i].frees);
  if (s->scav_bg_bytes < prev->scav_bg_bytes || s->scav_cycles < prev->scav_cycles)
    CHECK(s->scav_bg_bytes >= prev->scav_bg_bytes && s->scav_cycles >= prev->scav_cycles);
}
#endif

#endif
