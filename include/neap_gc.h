/* neap's garbage collector: collected objects beside malloc'd ones, in the
 * same heap, with the Go runtime's pacing.
 *
 * A collected object lives until no pointer to it (or into it) is left in
 * the roots or in other live objects, then the collector frees it. It is
 * conservative: any aligned word that holds an address inside an object
 * keeps the object alive, wherever it is:
 *   - the stacks and registers of every thread neap knows: any thread
 *     that allocated through neap (malloc included) or called a neap_gc_
 *     function. They are stopped by a signal (NEAP_GC_SIGNALS, default
 *     SIGPWR) for the collection's mark;
 *   - the static data of the program and of every loaded shared object;
 *   - every thread's static TLS (__thread variables);
 *   - live malloc'd objects (neap_malloc), unless the program opts out
 *     (NEAP_GC_SCAN_MALLOC=0) or allocated them with neap_malloc_noscan;
 *   - ranges added with neap_gc_add_roots.
 * Memory neap does not know (another allocator's blocks, an mmap of the
 * program's own) is not scanned unless added. Objects carry no padding, so
 * a pointer one past the end of an object points into the next object (or
 * into nothing) and keeps that one alive, not its own: keep a pointer to
 * the start or inside while the object is needed. A pointer the program
 * hides (xor-ed, compressed, stored in a file) keeps nothing alive.
 *
 * Collections run when the collected heap reaches its goal: the live heap
 * after the last collection plus GOGC percent (NEAP_GC=100 by default) of
 * it and of the roots scanned, at least 4 MiB x GOGC/100 (Go's formula);
 * lower when the memory limit (NEAP_MEMLIMIT, shared with malloc) needs
 * it; at least every two minutes (NEAP_GC_FORCE_PERIOD); and when the
 * program has gone quiet with a heap well above its last live size (the
 * idle collection, NEAP_GC_IDLE). The collector stops the world for the
 * mark (parallel, NEAP_GC_MARKERS threads, chosen from the heap's size by
 * default) and sweeps lazily afterwards; memory swept free goes back to the
 * OS one release delay later (NEAP_RELEASE_DELAY).
 *
 * The signal: a thread blocked in a system call when a collection stops it
 * runs neap's handler and goes back into the call, which the kernel
 * restarts (SA_RESTART) for most calls; the calls Linux never restarts
 * (sleeps, poll, epoll_wait, select, sem_timedwait, ...: signal(7)) fail
 * with EINTR, as under Boehm GC, and a program that sleeps must loop on it.
 * A thread neap knows must not block the stop signal: a stop waits for it.
 *
 * Misuse: neap_free or neap_realloc of a collected object, neap_gc_free of
 * a malloc'd one or of anything that is not the start of a live collected
 * object, prints one line "neap: ..." and aborts.
 */
#ifndef NEAP_GC_H_PUBLIC
#define NEAP_GC_H_PUBLIC

#include <stddef.h>

#include "neap.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A collected object of n bytes, zeroed, scanned for pointers. NULL with
 * errno ENOMEM when the heap cannot grow (after a collection). */
NEAP_API void *neap_gc_malloc(size_t n) NEAP_MALLOC_ATTR NEAP_ALLOC_SIZE(1);
/* A collected object never scanned (strings, numbers, pixels): not zeroed. */
NEAP_API void *neap_gc_malloc_noscan(size_t n) NEAP_MALLOC_ATTR NEAP_ALLOC_SIZE(1);
/* Frees a collected object now (optional: the collector frees it anyway
 * once unreachable). NULL does nothing. */
NEAP_API void neap_gc_free(void *p);
/* Resizes a collected object, keeping its kind (scan or noscan) and its
 * contents; p NULL is neap_gc_malloc. The old object is freed if moved. */
NEAP_API void *neap_gc_realloc(void *p, size_t n) NEAP_ALLOC_SIZE(2);
/* A full collection now (Go's runtime.GC), counted as forced. */
NEAP_API void neap_gc_collect(void);
/* GOGC: the heap grows by pct percent of the live heap between
 * collections; returns the previous value. A negative value turns
 * automatic collection off (the memory limit still applies). */
NEAP_API int neap_gc_set_percent(int pct);
/* Extra roots: [lo, hi) is scanned at every collection until removed. */
NEAP_API void neap_gc_add_roots(void *lo, void *hi);
NEAP_API void neap_gc_remove_roots(void *lo, void *hi);
/* Makes this thread known to the collector now (it is anyway once it
 * calls into neap), and with NEAP_GC_THREADS=registered, one it stops. */
NEAP_API void neap_gc_register_thread(void);
/* This thread holds no collected pointer from now on: it is neither
 * stopped nor scanned until it registers again. */
NEAP_API void neap_gc_unregister_thread(void);
/* The start of the collected object p points into, or NULL. */
NEAP_API void *neap_gc_base(const void *p);
/* The usable size of the collected object p points into (0: none). */
NEAP_API size_t neap_gc_size(const void *p);
/* Whether p is in the collector's heap (a collected span, live or not). */
NEAP_API int neap_gc_is_heap_ptr(const void *p);
/* A malloc'd block (free it with neap_free) that the collector never
 * scans: for large buffers of bytes in a program that uses both heaps.
 * Every such block takes whole 8 KiB pages. */
NEAP_API void *neap_malloc_noscan(size_t n) NEAP_MALLOC_ATTR NEAP_ALLOC_SIZE(1);

/* What the collector has done (also in neap_stats_t and `neap stats`). */
typedef struct neap_gc_stats {
  uint64_t cycles, forced, idle;   /* collections: all, neap_gc_collect, idle */
  uint64_t heap_live;              /* marked at the end of the last mark, bytes */
  uint64_t heap_alloc;             /* allocated since, plus heap_live (the trigger's count) */
  uint64_t next_gc;                /* the goal: the next collection starts here */
  uint64_t heap_inuse;             /* bytes in collected spans */
  uint64_t last_gc_ns;             /* CLOCK_MONOTONIC of the last collection's end */
  uint64_t pause_total_ns, pause_max_ns;
  uint64_t pause_ns[16];           /* the last 16 pauses, newest at (cycles + 15) % 16 */
  uint64_t root_bytes;             /* scanned in the last cycle: stacks, globals, TLS, malloc'd, added */
  uint64_t stack_bytes, global_bytes, tls_bytes, malloc_bytes;
  uint64_t cpu_ns;                 /* all collection work so far */
  double cpu_fraction;             /* of the process's CPU time since it started (Go's GCCPUFraction) */
  uint32_t markers;                /* in the last cycle */
  uint32_t threads_stopped;        /* by the last cycle's stop (the collecting thread not counted) */
  int32_t percent;                 /* GOGC */
} neap_gc_stats;
NEAP_API void neap_gc_stats_read(neap_gc_stats *out);

#ifdef __cplusplus
}
#endif

#endif
