/* wl.h: what every workload program of the benchmark suite shares.
 *
 * A workload is a small C program that allocates with plain malloc/free
 * (the allocator under test is chosen with LD_PRELOAD by bench/suite.py)
 * and prints one line on stdout, `key=value` pairs separated by spaces:
 *   workload=NAME threads=N work_s=SECONDS check=HEX [more keys]
 * work_s is the time of the measured part (CLOCK_MONOTONIC), leaving out
 * setup and any idle period; check is a checksum of what the program
 * computed, identical under every allocator (the runner compares it, so a
 * broken allocator cannot win). Optional keys: live_kib (bytes still
 * allocated at the end), rss_idle_kib (RSS after the idle period),
 * rss_2s_kib (RSS 2 s after the last free), anything else worth a column.
 *
 * Arguments, all optional:
 *   -t N     threads (workloads that use them)
 *   -s X     scale the amount of work (1.0: about 1-3 s under glibc here)
 *   -i SEC   idle period for the memory-return workloads (default 10)
 *   -r SEED  random seed (default 1)
 */
#ifndef NEAP_BENCH_WL_H
#define NEAP_BENCH_WL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

typedef struct wl_args {
  int threads;
  double scale, idle;
  uint64_t seed;
} wl_args;

static inline void wl_usage(const char *prog) {
  fprintf(stderr, "usage: %s [-t THREADS] [-s SCALE] [-i IDLE_S] [-r SEED]\n", prog);
  exit(2);
}

static inline wl_args wl_parse(int argc, char **argv) {
  wl_args a = {.threads = 1, .scale = 1.0, .idle = 10.0, .seed = 1};
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) wl_usage(argv[0]);
    const char *v = argv[++i];
    switch (argv[i - 1][0] == '-' ? argv[i - 1][1] : 0) {
    case 't': a.threads = atoi(v); break;
    case 's': a.scale = atof(v); break;
    case 'i': a.idle = atof(v); break;
    case 'r': a.seed = strtoull(v, NULL, 0); break;
    default: wl_usage(argv[0]);
    }
  }
  if (a.threads < 1 || a.scale <= 0 || a.idle < 0) wl_usage(argv[0]);
  return a;
}

/* Scaled count, at least 1. */
static inline long wl_n(const wl_args *a, double base) {
  double n = base * a->scale;
  return n < 1 ? 1 : (long)n;
}

static inline double wl_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void wl_sleep(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* Releases the threads waiting at bar (their start) and times them until
 * all n have ended: the measured part of a threaded workload. */
static inline double wl_time_threads(pthread_barrier_t *bar, pthread_t *th, int n) {
  pthread_barrier_wait(bar);
  double t0 = wl_now();
  for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
  return wl_now() - t0;
}

/* Resident set in KiB, from /proc/self/statm (no stdio: no allocation). */
static inline long wl_rss_kib(void) {
  char buf[128];
  long resident = -1;
  int fd = open("/proc/self/statm", O_RDONLY);
  if (fd >= 0) {
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0) {
      buf[n] = 0;
      char *sp = strchr(buf, ' ');
      if (sp) resident = strtol(sp + 1, NULL, 10) * (sysconf(_SC_PAGESIZE) / 1024);
    }
  }
  return resident;
}

/* xorshift64*: fast, deterministic, the same sequence everywhere. */
static inline uint64_t wl_rand(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

/* FNV-1a over a value, for the check. */
static inline uint64_t wl_mix(uint64_t h, uint64_t v) {
  for (int i = 0; i < 8; i++) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= 0x100000001b3ull;
  }
  return h;
}
#define WL_CHECK_INIT 0xcbf29ce484222325ull

/* Failures: a message on stderr and exit status 2 (the runner reports it). */
static inline __attribute__((noreturn)) void wl_fail(const char *what) {
  fputs(what, stderr);
  fputc('\n', stderr);
  _exit(2);
}

static inline __attribute__((noreturn)) void wl_corrupt(const char *what) {
  fprintf(stderr, "heap corruption (%s)\n", what);
  _exit(2);
}

static inline void *wl_xmalloc(size_t n) {
  void *p = malloc(n);
  if (p == NULL) wl_fail("malloc returned NULL");
  return p;
}

/* splitmix64: a well-mixed, non-zero seed for stream i of seed s (wl_rand
 * needs a non-zero state). */
static inline uint64_t wl_seed(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x ? x : 1;
}

/* The idle period of the memory-return workloads, from t_free (the time of
 * the last free): sleeps until -i seconds after it, sampling the RSS 2 s
 * after it (or at the end, when the idle period is shorter). */
static inline void wl_idle(const wl_args *a, double t_free, long *rss_2s, long *rss_idle) {
  double since = wl_now() - t_free;
  if (a->idle >= 2) {
    if (since < 2) wl_sleep(2 - since);
    *rss_2s = wl_rss_kib();
    double left = a->idle - (wl_now() - t_free);
    if (left > 0) wl_sleep(left);
    *rss_idle = wl_rss_kib();
  } else {
    if (a->idle > since) wl_sleep(a->idle - since);
    *rss_2s = *rss_idle = wl_rss_kib();
  }
}

/* Prints the result line; `extra` is more "key=value" text or "". */
static inline void wl_report(const char *name, const wl_args *a, double work_s, uint64_t check,
                             const char *extra) {
  printf("workload=%s threads=%d work_s=%.6f check=%016llx%s%s\n", name, a->threads, work_s,
         (unsigned long long)check, extra && *extra ? " " : "", extra ? extra : "");
  fflush(stdout);
}

#endif
