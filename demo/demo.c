/* make demo: the incident neap is built for, replayed.
 *
 * Two scenarios from the reports of services restarted for "leaks" that
 * were memory the allocator had freed but kept:
 *   peak   allocate and touch 256 MiB (half small blocks, half 64 KiB to
 *          4 MiB ones) ten times, freeing each, then idle;
 *   frag   about 1 GiB of 64-byte and 1 KiB objects (one of each in
 *          turn), 90% freed at random, then idle;
 *   gc     the seed's Go program, in C on a garbage collector: a 256 MiB
 *          collected buffer built and dropped ten times, then idle
 *          (under Go the last one stayed resident until the forced
 *          collection two minutes later).
 * peak and frag run three times: under glibc's malloc, under neap (LD_PRELOAD of
 * libneap.so), and under neap with NEAPDEBUG=madvdontneed=0 (pages go
 * back with MADV_FREE). The run samples itself every 100 ms from a thread
 * that never allocates: under neap, neap's own account (neap_stats_read,
 * found with dlsym): bytes in use, free but kept, returned, and returned
 * but possibly still resident. With each sample the driver reads the
 * kernel's view (RSS and LazyFree) from /proc/PID/smaps_rollup, from
 * outside, as a monitoring agent would: the walk of a 1 GiB heap's page
 * tables takes some 12 ms, and done in the run ten times a second it made
 * the run look busy to neap's scavenger (a tenth of a core), which then
 * held its free pages four delays instead of one, at random.
 *
 * gc runs under Boehm GC (libgc.so.1, loaded with dlopen, when the
 * machine has it) and under neap's collector (neap_gc_malloc_noscan from
 * the preloaded libneap.so, with NEAPDEBUG=gctrace=1: the driver shows
 * its trace lines).
 *
 * The driver prints an RSS-over-time table per scenario, with the
 * allocator's or collector's own account beside the kernel's, and writes
 * one SVG plot per scenario (demo-peak.svg, demo-frag.svg, demo-gc.svg)
 * into the current directory or -o DIR.
 *
 *   neap-demo [-o DIR] [-s SCALE] [-i IDLE_S] [--lib PATH]
 *   neap-demo work peak|frag|gc SCALE IDLE_S  (one run; the driver's child)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "neap.h"
#include "neap_gc.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

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

/* ---------------------------------------------------------------- the run */

static int (*stats_read)(neap_stats_t *, size_t);
/* Boehm GC's calls, when the gc scene runs under it (dlopen). */
static struct {
  void (*init)(void);
  void *(*malloc_atomic)(size_t);
  size_t (*heap_size)(void), (*free_bytes)(void), (*unmapped_bytes)(void);
} boehm;
static int gc_scene;
static void (*gc_stats_read)(neap_gc_stats *);
static _Atomic int phase;         /* 0 working, 1 idle after the last free */
static _Atomic int stop_sampling;
static double t_free;             /* when the last free returned */

/* A smaps_rollup field in KiB, -1 if absent. */
static long smaps_kib(const char *buf, const char *field) {
  size_t n = strlen(field);
  for (const char *l = buf; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
    if (strncmp(l, field, n) == 0 && l[n] == ':') return strtol(l + n + 1, NULL, 10);
  return -1;
}

/* One line per 100 ms on stdout (write(2), no stdio):
 * "S t phase inuse_kib free_kib released_kib resident_kib" */
static void *sampler(void *arg) {
  (void)arg;
  double t0 = now_s();
  while (!atomic_load(&stop_sampling)) {
    char line[256];
    long inuse = -1, fre = -1, rel = -1, res = -1;
    neap_stats_t st;
    if (boehm.heap_size) { /* Boehm's account: heap, free in it, unmapped */
      size_t heap = boehm.heap_size(), free_b = boehm.free_bytes();
      inuse = (long)((heap - free_b) >> 10);
      fre = (long)(free_b >> 10);
      rel = (long)(boehm.unmapped_bytes() >> 10);
    } else if (gc_scene && gc_stats_read) {
      /* neap's collector: live at the last collection, bytes in collected
       * spans. (Its own call, not neap_stats_read, which reads
       * smaps_rollup: ten times a second on this heap that is 7% of a
       * CPU, and a program that busy is not idle to the collector.) */
      neap_gc_stats g;
      gc_stats_read(&g);
      res = (long)(g.heap_live >> 10);
      inuse = (long)(g.heap_inuse >> 10);
    } else if (stats_read && stats_read(&st, sizeof st) == 0) {
      inuse = (long)(st.heap_inuse >> 10);
      fre = (long)((st.heap_idle - st.heap_released) >> 10);
      rel = (long)(st.heap_released >> 10);
      res = (long)(st.heap_released_resident >> 10);
    }
    int ph = atomic_load(&phase);
    double t = ph ? now_s() - t_free : now_s() - t0;
    int len = snprintf(line, sizeof line, "S %.2f %d %ld %ld %ld %ld\n", t, ph, inuse, fre, rel, res);
    if (write(1, line, (size_t)len) < 0) break;
    sleep_s(0.1);
  }
  return NULL;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void work_peak(double scale) {
  size_t round = (size_t)(256 * MiB * scale);
  for (int r = 0; r < 10; r++) {
    size_t cap = round / 256 + 64, n = 0, small = 0, large = 0;
    void **ptrs = malloc(cap * sizeof *ptrs);
    while (small + large < round && n < cap) {
      size_t sz = large < small ? (64 * KiB) << (next_rand() % 7) : 16 + next_rand() % 1009;
      char *p = malloc(sz);
      if (p == NULL) exit(1);
      for (size_t i = 0; i < sz; i += 4096) p[i] = (char)i;
      ptrs[n++] = p;
      *(sz > 32 * KiB ? &large : &small) += sz;
    }
    for (size_t i = n; i > 1; i--) {
      size_t j = next_rand() % i;
      void *t = ptrs[i - 1];
      ptrs[i - 1] = ptrs[j];
      ptrs[j] = t;
    }
    for (size_t i = 0; i < n; i++) free(ptrs[i]);
    free(ptrs);
  }
}

static void *survivors;

static void work_frag(double scale) {
  size_t total = (size_t)(1024 * MiB * scale), got = 0, n = 0, cap = total / 64 + 2;
  void **ptrs = malloc(cap * sizeof *ptrs);
  while (got < total && n < cap) {
    size_t sz = (n & 1) ? 1024 : 64;
    uint64_t *p = malloc(sz);
    if (p == NULL) exit(1);
    p[0] = n;
    p[sz / 8 - 1] = n;
    ptrs[n++] = p;
    got += sz;
  }
  size_t P = 2654435761u % n;
  while (P == 0 || n % P == 0) P++;
  for (size_t k = 0; k < n; k++) {
    size_t i = (k * P) % n;
    void **p = ptrs[i];
    if ((i * 0x9e3779b97f4a7c15ull >> 40) % 10 == 0) {
      p[0] = survivors;
      survivors = p;
    } else {
      free(p);
    }
  }
  free(ptrs);
}

/* The seed: each round's buffer is reachable only through gc_buf while it
 * is used, and dropped before the next is made. */
static void *volatile gc_buf;
static void *(*gc_alloc)(size_t);

/* The collector's allocation call: Boehm's (loaded and initialised here,
 * before the sampler reads its account) or neap's. */
static int gc_setup(void) {
  void *(*alloc)(size_t) = NULL;
  if (getenv("NEAP_DEMO_BOEHM")) {
    void *h = dlopen("libgc.so.1", RTLD_NOW);
    if (h == NULL) return -1;
    *(void **)&boehm.init = dlsym(h, "GC_init");
    *(void **)&boehm.malloc_atomic = dlsym(h, "GC_malloc_atomic");
    *(void **)&boehm.heap_size = dlsym(h, "GC_get_heap_size");
    *(void **)&boehm.free_bytes = dlsym(h, "GC_get_free_bytes");
    *(void **)&boehm.unmapped_bytes = dlsym(h, "GC_get_unmapped_bytes");
    if (!boehm.init || !boehm.malloc_atomic || !boehm.heap_size || !boehm.free_bytes || !boehm.unmapped_bytes)
      return -1;
    boehm.init();
    alloc = boehm.malloc_atomic;
  } else {
    *(void **)&alloc = dlsym(RTLD_DEFAULT, "neap_gc_malloc_noscan");
    if (alloc == NULL) return -1;
  }
  gc_alloc = alloc;
  return 0;
}

static int work_gc(double scale) {
  size_t size = (size_t)(256 * MiB * scale);
  for (int r = 0; r < 10; r++) {
    unsigned char *b = gc_alloc(size);
    if (b == NULL) return -1;
    gc_buf = b;
    for (size_t i = 0; i < size; i += 4096) b[i] = (unsigned char)(i >> 12) + (unsigned char)r;
    gc_buf = NULL;
  }
  return 0;
}

static int run_work(const char *scenario, double scale, double idle) {
  *(void **)&stats_read = dlsym(RTLD_DEFAULT, "neap_stats_read");
  gc_scene = strcmp(scenario, "gc") == 0;
  if (gc_scene && gc_setup() != 0) return 3;
  if (gc_scene) *(void **)&gc_stats_read = dlsym(RTLD_DEFAULT, "neap_gc_stats_read");
  pthread_t t;
  pthread_create(&t, NULL, sampler, NULL);
  if (strcmp(scenario, "peak") == 0) work_peak(scale);
  else if (gc_scene) {
    if (work_gc(scale) != 0) return 4; /* out of memory */
  } else work_frag(scale);
  t_free = now_s();
  atomic_store(&phase, 1);
  sleep_s(idle); /* idle: no allocator calls */
  atomic_store(&stop_sampling, 1);
  pthread_join(t, NULL);
  while (survivors) {
    void *next = *(void **)survivors;
    free(survivors);
    survivors = next;
  }
  return 0;
}

/* ------------------------------------------------------------- the driver */

#define MAXS 4096
typedef struct sample {
  double t;
  int phase;
  long rss, lazy, inuse, fre, rel, res;
} sample;

typedef struct series {
  const char *name;
  sample s[MAXS];
  int n;
  double work_s;
} series;

static char self[4096];

/* One run of a scenario in a child: lib preloaded (NULL: none), with
 * NEAPDEBUG=neapdebug (NULL: unset), under Boehm GC if `boehm`, its
 * stderr into errpath (NULL: the driver's). */
static int collect(series *out, const char *scenario, const char *lib, const char *neapdebug, int under_boehm,
                   const char *errpath, double scale, double idle) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  double t0 = now_s();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    if (lib) setenv("LD_PRELOAD", lib, 1);
    else unsetenv("LD_PRELOAD");
    if (neapdebug) setenv("NEAPDEBUG", neapdebug, 1);
    else unsetenv("NEAPDEBUG");
    if (under_boehm) setenv("NEAP_DEMO_BOEHM", "1", 1);
    else unsetenv("NEAP_DEMO_BOEHM");
    if (errpath) {
      int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd >= 0) {
        dup2(fd, 2);
        close(fd);
      }
    }
    char sc[32], id[32];
    snprintf(sc, sizeof sc, "%g", scale);
    snprintf(id, sizeof id, "%g", idle);
    execl(self, self, "work", scenario, sc, id, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  char line[256];
  out->n = 0;
  double first_idle = -1;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
  while (fgets(line, sizeof line, f)) {
    sample s;
    if (sscanf(line, "S %lf %d %ld %ld %ld %ld", &s.t, &s.phase, &s.inuse, &s.fre, &s.rel, &s.res) == 6 &&
        out->n < MAXS) {
      /* The kernel's view at the same moment, from outside (see the top). */
      char buf[4096];
      int fd = open(path, O_RDONLY);
      ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
      if (fd >= 0) close(fd);
      if (n <= 0) continue; /* exiting */
      buf[n] = 0;
      s.rss = smaps_kib(buf, "Rss");
      s.lazy = smaps_kib(buf, "LazyFree");
      if (s.rss < 0) continue;
      if (s.lazy < 0) s.lazy = 0;
      if (s.phase && first_idle < 0) first_idle = now_s() - t0;
      out->s[out->n++] = s;
    }
  }
  fclose(f);
  int st = 0;
  waitpid(pid, &st, 0);
  out->work_s = first_idle;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1; /* 3: the collector is not there */
}

/* The last sample at or before idle time t (phase 1; for t = 0 the first
 * one), or NULL. */
static const sample *at(const series *s, double t) {
  const sample *best = NULL;
  for (int i = 0; i < s->n; i++) {
    if (!s->s[i].phase) continue;
    if (best == NULL || s->s[i].t <= t + 0.05) best = &s->s[i];
    if (s->s[i].t > t + 0.05) break;
  }
  return best;
}

static long peak_rss(const series *s) {
  long m = 0;
  for (int i = 0; i < s->n; i++)
    if (s->s[i].rss > m) m = s->s[i].rss;
  return m;
}

static void mib(char *out, size_t n, long kib) {
  if (kib < 0) snprintf(out, n, "-");
  else snprintf(out, n, "%.1f", (double)kib / 1024.0);
}

/* Each run's work time and peak RSS, then the time column's head. */
static void print_summary(const series *runs, int nruns) {
  printf("  work time (s):");
  for (int r = 0; r < nruns; r++) printf("  %s %.1f", runs[r].name, runs[r].work_s);
  printf("\n  peak RSS (MiB):");
  for (int r = 0; r < nruns; r++) printf("  %s %.1f", runs[r].name, (double)peak_rss(&runs[r]) / 1024.0);
  printf("\n\n  %6s |", "t (s)");
}

static void print_table(const char *scenario, series *runs, int nruns, double idle) {
  printf("\n%s: RSS (MiB) after the last free, and neap's own account\n", scenario);
  print_summary(runs, nruns);
  for (int r = 0; r < nruns; r++) printf(" %10s", runs[r].name);
  printf(" | %-40s | %-40s\n", "neap: in use / free / returned / resident", "neap MADV_FREE: same, kernel LazyFree");
  for (double t = 0; t <= idle + 1e-9; t += 0.5) {
    char c[8][16];
    printf("  %6.1f |", t);
    for (int r = 0; r < nruns; r++) {
      const sample *s = at(&runs[r], t);
      mib(c[0], sizeof c[0], s ? s->rss : -1);
      printf(" %10s", c[0]);
    }
    printf(" |");
    for (int r = 1; r < nruns && r < 3; r++) {
      const sample *s = at(&runs[r], t);
      if (!s) {
        printf(" %-40s |", "-");
        continue;
      }
      char buf[128];
      mib(c[0], 16, s->inuse), mib(c[1], 16, s->fre), mib(c[2], 16, s->rel), mib(c[3], 16, s->res);
      if (r == 2) {
        mib(c[4], 16, s->lazy);
        snprintf(buf, sizeof buf, "%s / %s / %s / %s, %s", c[0], c[1], c[2], c[3], c[4]);
      } else {
        snprintf(buf, sizeof buf, "%s / %s / %s / %s", c[0], c[1], c[2], c[3]);
      }
      printf(" %-40s %s", buf, r == 1 ? "|" : "");
    }
    printf("\n");
  }
}

/* RSS over time, one line per run: the working phase squeezed into the
 * first quarter of the x axis, the idle phase after the last free in the
 * rest, so that both the peak and the return show. */
static void write_svg(const char *dir, const char *scenario, series *runs, int nruns, double idle) {
  char path[4200];
  snprintf(path, sizeof path, "%s/demo-%s.svg", dir, scenario);
  FILE *f = fopen(path, "w");
  if (!f) {
    perror(path);
    return;
  }
  const double W = 760, H = 360, L = 70, R = 20, T = 40, B = 50;
  const double pw = W - L - R, ph = H - T - B, split = L + pw * 0.25;
  long ymax = 1;
  double wmax = 0.1;
  for (int r = 0; r < nruns; r++) {
    if (peak_rss(&runs[r]) > ymax) ymax = peak_rss(&runs[r]);
    for (int i = 0; i < runs[r].n; i++)
      if (!runs[r].s[i].phase && runs[r].s[i].t > wmax) wmax = runs[r].s[i].t;
  }
  double ytop = (double)ymax / 1024.0 * 1.1;
  static const char *colors[] = {"#d62728", "#1f77b4", "#2ca02c"};
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
          "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
  fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"15\">%s: RSS over time (MiB); last free at the dashed line</text>\n",
          L, scenario);
  fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, T + ph, L + pw, T + ph);
  fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, T, L, T + ph);
  fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"gray\" stroke-dasharray=\"4,4\"/>\n", split,
          T, split, T + ph);
  for (int k = 0; k <= 4; k++) {
    double y = T + ph - ph * k / 4.0;
    fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n", L - 6, y + 4, ytop * k / 4.0);
  }
  for (int k = 0; k <= (int)idle; k++) {
    double x = split + (pw * 0.75) * k / idle;
    fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">+%d s</text>\n", x, T + ph + 18, k);
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">working</text>\n", L + pw * 0.125, T + ph + 18);
  for (int r = 0; r < nruns; r++) {
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colors[r % 3]);
    for (int i = 0; i < runs[r].n; i++) {
      const sample *s = &runs[r].s[i];
      double x = s->phase ? split + (pw * 0.75) * (s->t > idle ? idle : s->t) / idle : L + (pw * 0.25) * s->t / wmax;
      double y = T + ph - ph * ((double)s->rss / 1024.0) / ytop;
      fprintf(f, "%.1f,%.1f ", x, y);
    }
    fprintf(f, "\"/>\n<text x=\"%.0f\" y=\"%.0f\" fill=\"%s\">%s</text>\n", L + pw - 160, T + 16 + 16.0 * r,
            colors[r % 3], runs[r].name);
  }
  fprintf(f, "</svg>\n");
  fclose(f);
  printf("  plot: %s\n", path);
}

/* The third scene: the seed on Boehm GC and on neap's collector. */
static int scene_gc(const char *dir, const char *lib, double scale, double idle) {
  static series runs[2];
  char trace[4200];
  snprintf(trace, sizeof trace, "%s/demo-gc-trace.txt", dir);
  int n = 0;
  runs[n].name = "boehm";
  fprintf(stderr, "  running gc under Boehm GC...\n");
  int rc = collect(&runs[n], "gc", NULL, NULL, 1, "/dev/null", scale, idle);
  if (rc == 0) n++;
  else if (rc == 3) printf("\n(Boehm GC is not installed here: apt-get install libgc1 to see it beside neap)\n");
  else return -1;
  runs[n].name = "neap";
  fprintf(stderr, "  running gc under neap's collector...\n");
  if (collect(&runs[n], "gc", lib, "gctrace=1", 0, trace, scale, idle) != 0) return -1;
  n++;
  printf("\ngc: the seed's program on a collector (a %.0f MiB buffer made and dropped ten times):\n"
         "RSS (MiB) after the last drop, and each collector's own account\n",
         256 * scale);
  print_summary(runs, n);
  for (int r = 0; r < n; r++) printf(" %8s", runs[r].name);
  printf(" | %-28s", "neap: live / in its spans");
  if (n == 2) printf(" | %s", "boehm: heap in use / free / unmapped");
  printf("\n");
  for (double t = 0; t <= idle + 1e-9; t += 0.5) {
    char c[4][16], buf[128];
    printf("  %6.1f |", t);
    for (int r = 0; r < n; r++) {
      const sample *x = at(&runs[r], t);
      mib(c[0], sizeof c[0], x ? x->rss : -1);
      printf(" %8s", c[0]);
    }
    const sample *x = at(&runs[n - 1], t);
    if (x) {
      mib(c[0], 16, x->res), mib(c[1], 16, x->inuse);
      snprintf(buf, sizeof buf, "%s / %s", c[0], c[1]);
    } else {
      snprintf(buf, sizeof buf, "-");
    }
    printf(" | %-28s", buf);
    if (n == 2 && (x = at(&runs[0], t)) != NULL) {
      mib(c[0], 16, x->inuse), mib(c[1], 16, x->fre), mib(c[2], 16, x->rel);
      printf(" | %s / %s / %s", c[0], c[1], c[2]);
    }
    printf("\n");
  }
  /* neap's trace: Go's gctrace line per collection. */
  FILE *f = fopen(trace, "r");
  if (f != NULL) {
    static char lines[64][256];
    char line[256];
    int total = 0;
    while (fgets(line, sizeof line, f))
      if (strncmp(line, "gc ", 3) == 0) snprintf(lines[total++ % 64], sizeof lines[0], "%s", line);
    fclose(f);
    printf("\n  neap's NEAPDEBUG=gctrace=1, %d collections%s:\n", total, total > 12 ? " (the last 12)" : "");
    for (int i = total > 12 ? total - 12 : 0; i < total; i++) printf("    %s", lines[i % 64]);
  }
  write_svg(dir, "gc", runs, n, idle);
  printf("\nneap's collector runs once the program has gone quiet (NEAP_GC_IDLE: 1 s under 5%% of a CPU with no\n"
         "collected allocation): the \"(idle)\" line. The dropped buffer's pages go back to the OS one\n"
         "NEAP_RELEASE_DELAY (1 s) later. Go kept it until its forced collection two minutes later; Boehm GC\n"
         "returns memory only after several collections, and a quiet program makes none. The peaks differ\n"
         "by pacing: GOGC=100 (Go's default, neap's) lets the heap grow to twice what the last collection\n"
         "found live before the next; Boehm collects sooner (NEAP_GC=67 matches it).\n");
  return 0;
}

/* libneap.so next to this program (build/), or in ../lib (installed). */
static int find_lib(char *out, size_t n) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", self);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  const char *tries[] = {"%s/libneap.so", "%s/../lib/libneap.so", "%s/../lib64/libneap.so"};
  for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
    snprintf(out, n, tries[i], dir);
    if (access(out, R_OK) == 0) return 0;
  }
  return -1;
}

int main(int argc, char **argv) {
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) return 1;
  self[len] = 0;
  if (argc == 5 && strcmp(argv[1], "work") == 0) return run_work(argv[2], atof(argv[3]), atof(argv[4]));
  const char *dir = ".";
  double scale = 1.0, idle = 3.0;
  char lib[4200] = "";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) dir = argv[++i];
    else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) scale = atof(argv[++i]);
    else if (strcmp(argv[i], "-i") == 0 && i + 1 < argc) idle = atof(argv[++i]);
    else if (strcmp(argv[i], "--lib") == 0 && i + 1 < argc) snprintf(lib, sizeof lib, "%s", argv[++i]);
    else {
      fprintf(stderr, "usage: neap-demo [-o DIR] [-s SCALE] [-i IDLE_SECONDS] [--lib libneap.so]\n");
      return 2;
    }
  }
  if (!lib[0] && find_lib(lib, sizeof lib) != 0) {
    fprintf(stderr, "neap-demo: libneap.so not found next to %s (use --lib)\n", self);
    return 1;
  }
  printf("neap demo: memory freed, and when the process sees it again (idle %.0f s after the last free;\n"
         "then a garbage-collected program)\n", idle);
  printf("glibc = the system malloc; neap = LD_PRELOAD=%s; neap-free = the same with NEAPDEBUG=madvdontneed=0\n", lib);
  static series runs[3];
  const char *scenarios[] = {"peak", "frag"};
  for (int k = 0; k < 2; k++) {
    runs[0].name = "glibc";
    runs[1].name = "neap";
    runs[2].name = "neap-free";
    for (int r = 0; r < 3; r++) {
      fprintf(stderr, "  running %s under %s...\n", scenarios[k], runs[r].name);
      if (collect(&runs[r], scenarios[k], r ? lib : NULL, r == 2 ? "madvdontneed=0" : NULL, 0, NULL, scale, idle) !=
          0) {
        fprintf(stderr, "neap-demo: the %s run of %s failed\n", runs[r].name, scenarios[k]);
        return 1;
      }
    }
    print_table(scenarios[k], runs, 3, idle);
    write_svg(dir, scenarios[k], runs, 3, idle);
  }
  printf("\nin use: bytes in spans with live objects; free: free pages neap still holds (they go back once free\n"
         "for NEAP_RELEASE_DELAY, 1 s); returned: given back to the OS; resident: returned with MADV_FREE and\n"
         "not yet reclaimed by the kernel, so still counted in RSS (compare the kernel's LazyFree).\n");
  if (scene_gc(dir, lib, scale, idle < 5 ? 5 : idle) != 0) {
    fprintf(stderr, "neap-demo: the gc scene failed\n");
    return 1;
  }
  return 0;
}
