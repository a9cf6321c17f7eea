/* gcb.h: the allocation layer of the collector benchmarks (bench/gc/).
 *
 * One source per benchmark, built once per way of managing its memory:
 *   GCB_BOEHM   Boehm GC (Debian's libgc): GC_MALLOC, nothing freed; the
 *               collector's pauses are timed from its collection events
 *   GCB_NEAP    neap's collector (neap_gc_malloc, nothing freed); its
 *               pauses come from neap_gc_stats_read at the end
 *   GCB_MALLOC  malloc/free with explicit frees of everything the program
 *               drops (the allocator is chosen with LD_PRELOAD: neap,
 *               glibc, ...): what a collector is compared against
 * GCB_FREE(p) frees in the malloc build and does nothing under a
 * collector; the benchmarks call it where a C program without a collector
 * would free, so that both builds do the same work besides.
 *
 * Output: one line on stdout, `key=value` pairs as bench/wl/wl.h's:
 *   bench=NAME mode=MODE threads=N depth=D work_s=S check=HEX
 *   gcs=N pause_mean_ms=X pause_max_ms=Y pause_total_ms=Z
 * (the gc figures are 0 in the malloc build).
 */
#ifndef NEAP_BENCH_GCB_H
#define NEAP_BENCH_GCB_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double gcb_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Collections seen and their pauses (the collector's own thread writes
 * them, with the world stopped: no lock needed). */
static struct {
  unsigned long n;
  double start, total, max;
} gcb_pauses;

#if defined(GCB_BOEHM)
#define GC_THREADS /* pthread_create registers threads with the collector */
#include <gc/gc.h>
#define GCB_MODE "boehm"
#define GCB_ALLOC(n) GC_MALLOC(n)
#define GCB_ALLOC_ATOMIC(n) GC_MALLOC_ATOMIC(n)
#define GCB_FREE(p) ((void)(p))

static void gcb_event(GC_EventType e) {
  if (e == GC_EVENT_START) {
    gcb_pauses.start = gcb_now();
  } else if (e == GC_EVENT_END) {
    double d = gcb_now() - gcb_pauses.start;
    gcb_pauses.n++;
    gcb_pauses.total += d;
    if (d > gcb_pauses.max) gcb_pauses.max = d;
  }
}
static inline void gcb_init(void) {
  GC_INIT();
  GC_set_on_collection_event(gcb_event);
}

#elif defined(GCB_NEAP)
#include "neap_gc.h"
#define GCB_MODE "neap"
static inline void *gcb_xgc(void *p) {
  if (p == NULL) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  return p;
}
#define GCB_ALLOC(n) gcb_xgc(neap_gc_malloc(n))
#define GCB_ALLOC_ATOMIC(n) gcb_xgc(neap_gc_malloc_noscan(n))
#define GCB_FREE(p) ((void)(p))
static inline void gcb_init(void) {}
/* The collector's own account, read once the work is done. */
#define GCB_PAUSES_AT_END 1
static inline void gcb_read_pauses(void) {
  neap_gc_stats s;
  neap_gc_stats_read(&s);
  gcb_pauses.n = s.cycles;
  gcb_pauses.total = (double)s.pause_total_ns * 1e-9;
  gcb_pauses.max = (double)s.pause_max_ns * 1e-9;
}

#elif defined(GCB_MALLOC)
#define GCB_MODE "malloc"
static inline void *gcb_xmalloc(size_t n, int zero) {
  void *p = zero ? calloc(1, n) : malloc(n);
  if (p == NULL) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  return p;
}
#define GCB_ALLOC(n) gcb_xmalloc((n), 1)
#define GCB_ALLOC_ATOMIC(n) gcb_xmalloc((n), 0)
#define GCB_FREE(p) free(p)
static inline void gcb_init(void) {}

#else
#error "build with -DGCB_BOEHM, -DGCB_NEAP or -DGCB_MALLOC"
#endif

/* Arguments: -t THREADS (each runs the whole benchmark), -d DEPTH. */
static inline void gcb_args(int argc, char **argv, int *threads, int *depth) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "-t") == 0) *threads = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "-d") == 0) *depth = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "usage: %s [-t THREADS] [-d DEPTH]\n", argv[0]);
      exit(2);
    }
  }
  if (*threads < 1 || *depth < 4 || *depth > 28) {
    fprintf(stderr, "%s: threads >= 1, depth in 4..28\n", argv[0]);
    exit(2);
  }
}

/* Runs fn(depth) on `threads` threads at once and prints the line; the
 * check is the sum of what the runs returned. */
typedef struct gcb_run {
  uint64_t (*fn)(int depth);
  int depth;
  uint64_t result;
} gcb_run;

static void *gcb_thread(void *arg) {
  gcb_run *r = arg;
  r->result = r->fn(r->depth);
  return NULL;
}

static inline int gcb_main(const char *name, uint64_t (*fn)(int), int argc, char **argv, int depth) {
  int threads = 1;
  gcb_args(argc, argv, &threads, &depth);
  gcb_init();
  gcb_run runs[64];
  if (threads > 64) threads = 64;
  double t0 = gcb_now();
  pthread_t tid[64];
  for (int i = 0; i < threads; i++) {
    runs[i] = (gcb_run){fn, depth, 0};
    if (threads == 1) gcb_thread(&runs[0]);
    else if (pthread_create(&tid[i], NULL, gcb_thread, &runs[i]) != 0) exit(1);
  }
  if (threads > 1)
    for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
  double t = gcb_now() - t0;
#ifdef GCB_PAUSES_AT_END
  gcb_read_pauses();
#endif
  uint64_t check = 0;
  for (int i = 0; i < threads; i++) check += runs[i].result;
  double mean = gcb_pauses.n ? gcb_pauses.total / (double)gcb_pauses.n : 0;
  printf("bench=%s mode=%s threads=%d depth=%d work_s=%.4f check=%llx gcs=%lu pause_mean_ms=%.2f "
         "pause_max_ms=%.2f pause_total_ms=%.1f\n",
         name, GCB_MODE, threads, depth, t, (unsigned long long)check, gcb_pauses.n, mean * 1e3,
         gcb_pauses.max * 1e3, gcb_pauses.total * 1e3);
  return 0;
}

#endif
