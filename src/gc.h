/* The collector's layers: what gcalloc.c (allocation, spans, sweeping, the
 * object map), gcroots.c (threads, the stop, the roots), gcmark.c (the
 * markers) and gc.c (the cycle, pacing, statistics) share. gc.c has the
 * essay.
 */
#ifndef NEAP_GC_H
#define NEAP_GC_H

#include "cache.h"
#include "pagemap.h"

/* --- a thread's collected allocation (gcalloc.c) */

/* One per size class and kind: the current span and a window of 64 of
 * its objects, as a malloc slot's (cache.h) but with no free stack:
 * collected objects are freed by the sweep, in their spans. `bits` has a 1
 * for each free object of the window; allocation takes the lowest and
 * sets its in-use bit, so the in-use bitmap says exactly which objects
 * exist (the object map, below). */
typedef struct neap_gc_slot {
  uint64_t bits;            /* written by this thread only; read by the collector with the world stopped */
  uintptr_t base;           /* address of the window's object 0 */
  _Atomic uint64_t *inuse;  /* the span's in-use word for the window */
  uint32_t size;            /* the class's object size */
  uint8_t zero;             /* objects taken need zeroing (scan kind, span not fresh) */
  uint8_t word;             /* the window's bitmap word */
  uint16_t unused16;
  neap_span *span;          /* NULL: none yet */
  uint64_t unused[3];
} __attribute__((aligned(64))) neap_gc_slot;
_Static_assert(sizeof(neap_gc_slot) == 64, "a gc slot is one line");

#define NEAP_GC_KINDS 2 /* NEAP_KIND_GC_SCAN, NEAP_KIND_GC_NOSCAN: slot[kind - 1] */
typedef struct neap_gc_cache {
  neap_gc_slot slot[NEAP_GC_KINDS][NEAP_NUM_CLASSES];
  uint64_t unflushed; /* bytes of windows loaded, not yet added to the cycle's count */
} neap_gc_cache;

/* This thread's: never NULL (the empty one, whose windows are all empty,
 * until the first collected allocation makes one). */
extern __thread neap_gc_cache *neap__tls_gc __attribute__((tls_model("initial-exec")));
extern neap_gc_cache neap__gc_empty;

/* Slow path of a collected allocation of class cls (0: large, size
 * bytes); kind is NEAP_KIND_GC_SCAN or _NOSCAN. NULL with ENOMEM. */
void *neap__gc_alloc_slow(unsigned kind, unsigned cls, size_t size);
/* Gives back c's collected spans (thread exit, flush, a forked child's
 * abandoned caches); c->gc stays for reuse unless `release`. */
void neap__gc_cache_flush(neap_cache *c, bool release);

/* --- the object map */

/* The collected object containing address p, exactly: an object of a
 * collected span that is allocated (in use, not freed explicitly); p may
 * point anywhere inside it. NULL otherwise: outside the heap, a malloc'd
 * object, a free slot, a span's tail. *sp gets its span, *idx its index.
 * Lock-free; exact while no thread allocates or sweeps in that span. */
void *neap__gc_object(uintptr_t p, neap_span **sp, unsigned *idx);
NEAP_INLINE _Atomic uint64_t *neap__gc_markword(neap_span *s, unsigned w) { return &s->bits[2 * s->nwords + w]; }
/* An object's size: its class's, or a large object's pages. */
NEAP_INLINE size_t neap__gc_objsize(const neap_span *s) {
  return s->sizeclass ? s->elemsize : neap__span_bytes(s);
}

/* --- sweeping (gcalloc.c) */

/* The current cycle: spans whose sweepgen differs hold the marks of the
 * last cycle and are swept before their objects are used. */
extern _Atomic uint32_t neap__gc_sweepgen;
/* Sweeps every span on the centrals' unswept lists: before a cycle marks
 * (the collector, holding the cycle's lock), and in the background
 * (a span at a time under that lock; it gives up as soon as a collection
 * holds it). Returns the spans swept. */
size_t neap__gc_sweep_all(bool background);
/* With the world stopped, after the mark: sweeps every cache's current
 * spans in place, and starts the next sweep generation. */
void neap__gc_sweep_cached_stw(void);
/* After the world restarts: frees the large objects the mark left
 * unmarked, clears the others' marks; returns the bytes freed. */
size_t neap__gc_sweep_large(void);
/* Bytes in collected spans and large objects (heap in use by the
 * collector) and live at the last count. */
typedef struct neap_gc_heap {
  uint64_t span_bytes;   /* pages in collected spans, small and large */
  uint64_t large_bytes;  /* of those, large objects' */
} neap_gc_heap;
void neap__gc_heap(neap_gc_heap *out);
void neap__gc_alloc_fork(neap_fork_phase phase);

/* --- roots and the stop (gcroots.c) */

/* One range to scan. */
typedef struct neap_gc_range {
  uintptr_t lo, hi;
} neap_gc_range;

/* A job for the markers: a range of roots, or a stretch of malloc'd
 * spans to scan. */
typedef struct neap_gc_job {
  uintptr_t lo, hi;
  uint8_t kind; /* NEAP_GC_JOB_* */
} neap_gc_job;
enum { NEAP_GC_JOB_RANGE, NEAP_GC_JOB_MALLOC_PAGES };

/* Root bytes by kind, for the statistics and the trace. */
typedef struct neap_gc_rootstats {
  uint64_t stack_bytes, global_bytes, tls_bytes, malloc_bytes, added_bytes;
  uint32_t threads_stopped;
} neap_gc_rootstats;

/* Runs fn(ctx) with every other thread neap knows stopped and every root
 * listed in the job table (neap__gc_jobs), with the dynamic loader's list
 * of objects held still (no dlopen or dlclose meanwhile). Takes the
 * registry lock and the roots lock around it. */
void neap__gc_stop_the_world(void (*fn)(void *ctx), void *ctx);
/* The job table of the stop in progress. */
extern neap_gc_job *neap__gc_jobs;
extern size_t neap__gc_njobs;
extern neap_gc_rootstats neap__gc_roots_now;
/* neap's own statics that hold heap addresses (an arena's base, the next
 * one's) but no pointer to an object: left out of the static roots, so
 * that the object at an arena's start is not kept alive by them. At most
 * 8 ranges; callable before anything else (no lock, no allocation). */
void neap__gc_not_root(const void *p, size_t n);
/* Registers this thread (neap_gc_register_thread): creates its cache. */
void neap__gc_thread_known(void);
void neap__gc_roots_fork(neap_fork_phase phase);
/* The signal the stop uses (NEAP_GC_SIGNALS). */
int neap__gc_stop_signal(void);

/* --- marking (gcmark.c) */

typedef struct neap_gc_markstats {
  uint64_t marked_bytes, marked_objects, scanned_bytes;
  uint64_t malloc_bytes; /* of live malloc'd objects scanned as roots */
  uint64_t cpu_ns;       /* all markers */
  uint64_t cpu_self_ns;  /* the calling thread's part of it */
  uint32_t markers;
} neap_gc_markstats;
/* Marks from the job table with n markers (this thread is one). */
void neap__gc_mark(unsigned n, neap_gc_markstats *out);
/* Markers to use for this much work (NEAP_GC_MARKERS overrides). */
unsigned neap__gc_markers_for(uint64_t heap_bytes);
/* Starts the marker threads and maps the stacks n markers need, with the
 * world running; returns how many can run (at least 1). */
unsigned neap__gc_markers_ready(unsigned n);
uint64_t neap__gc_mark_sys(void); /* bytes mapped for the mark's stacks */
void neap__gc_mark_fork_child(void);

#if NEAP_TESTING
/* The collector's lists, checked (tests, when no other thread allocates
 * collected objects): every span on one list at most, none of them in a
 * slot, each list's links whole, every slot's span swept. NULL, or what
 * is wrong. */
const char *neap__gc_check_lists(void);
/* Test hook: the last word the mark found pointing into [~watch, ~watch +
 * size) was at watch_from (why an object is still alive); watch holds
 * the address complemented, so that it is no root itself. */
extern uintptr_t neap__gc_watch, neap__gc_watch_size, neap__gc_watch_from;
#endif

/* --- pacing, apart from the clocks (gc.c; the tests drive them) */

/* The heap goal after a cycle that marked `live` bytes with `roots` bytes
 * of roots: Go's formula with its 4 MiB x GOGC/100 floor (UINT64_MAX with
 * GOGC off), lowered under a memory limit (0: none) to what the limit
 * leaves beside `other` bytes the rest of the heap holds, unless the CPU
 * limiter is on. */
uint64_t neap__gc_goal(uint64_t live, uint64_t roots, int64_t gogc, uint64_t limit, uint64_t other, bool limited);
/* The CPU limiter's leaky bucket after a cycle: fills with its gc_ns,
 * drains with other_ns of the rest of the process's CPU time, holds one
 * second per CPU; returns whether it is full (collection capped). */
bool neap__gc_bucket(int64_t *bucket, uint64_t gc_ns, uint64_t other_ns, unsigned ncpu);
/* The background thread's clock: each look (at most one per
 * NEAP_GC_CLOCK_STEP_NS counts) says whether to collect now: forced
 * after the period without a collection, or idle once per quiet spell
 * (under 5% of a CPU and no collected allocation for idle_ms, with at
 * least 4 MiB of collected spans). */
#define NEAP_GC_CLOCK_STEP_NS 200000000ull
enum { NEAP_GC_CLOCK_NONE, NEAP_GC_CLOCK_PERIODIC, NEAP_GC_CLOCK_IDLE };
typedef struct neap_gc_clock {
  uint64_t start, last_t, last_proc, last_alloc, quiet_since;
  bool idle_done;
} neap_gc_clock;
typedef struct neap_gc_look {
  uint64_t now, proc;         /* monotonic clock and the program's CPU time (neap's threads' not counted), ns */
  uint64_t allocated, live;   /* the trigger's count since the last cycle, and its live bytes */
  uint64_t span_bytes;        /* in collected spans */
  uint64_t last_gc;           /* end of the last collection (monotonic), 0: none yet */
  long force_ms, idle_ms;     /* NEAP_GC_FORCE_PERIOD, NEAP_GC_IDLE (0: off) */
  bool enabled;               /* GOGC not off */
} neap_gc_look;
unsigned neap__gc_clock_step(neap_gc_clock *c, const neap_gc_look *l);

/* --- the cycle (gc.c) */

/* Called by allocation when its thread has loaded a window of `bytes`:
 * adds them to the cycle's count, and collects when it reaches the
 * trigger. */
void neap__gc_note_alloc(uint64_t bytes);
/* The same without the trigger's test (a thread's last count, at exit). */
void neap__gc_note_alloc_quiet(uint64_t bytes);
/* Explicit frees take their bytes off the count. */
void neap__gc_note_free(uint64_t bytes);
/* The cycle's lock, for the background sweeper: a try (false while a
 * collection runs or waits), and its release. */
bool neap__gc_cycle_trylock(void);
void neap__gc_cycle_unlock(void);
/* Whether this thread is one of neap's own (the scavenger, the
 * collector's background thread, markers): never stopped nor scanned. */
extern __thread bool neap__tls_internal __attribute__((tls_model("initial-exec")));
void neap__gc_fork(neap_fork_phase phase);
bool neap__gc_scan_malloc(void);
/* The collector's fields of a statistics snapshot (neap.h); gc_sys gets
 * what the collector mapped outside the metadata pools. */
struct neap_stats;
void neap__gc_stats_fill(struct neap_stats *s);

#endif
