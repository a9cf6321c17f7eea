/* The interfaces between the heap's layers, top to bottom:
 *   malloc.c (API) -> cache.c (per thread) -> central.c (per class)
 *   -> heap.c (pages, large objects) -> pagealloc.c, arena.c -> os/
 * Off-heap metadata comes from meta.c at any level.
 */
#ifndef NEAP_HEAP_H
#define NEAP_HEAP_H

#include "lock.h"
#include "span.h"

/* fork: each layer with a lock takes it before fork (PREPARE) and lets it
 * go in the parent and the child afterwards (init.c registers the
 * handlers; the order is the lock order: cache registry, centrals, heap,
 * meta; lock.h: neap__lock_fork). */
/* init.c: once per process (options, fork handlers); idempotent. */
void neap__process_init(void);

/* --- meta.c: off-heap metadata (never next to user data) */
/* What metadata is for, for the statistics (span_sys, cache_sys...). */
typedef enum { NEAP_META_SPAN, NEAP_META_CACHE, NEAP_META_ARENA, NEAP_META_KINDS } neap_meta_kind;
typedef struct neap_pool {
  size_t size;         /* object size, a multiple of 16 */
  neap_meta_kind kind; /* what its memory counts as */
  void *free;          /* free list */
  size_t inuse;        /* objects handed out */
} neap_pool;
/* zeroed, 64-byte aligned, never freed; NULL on ENOMEM */
void *neap__meta_alloc(size_t size, neap_meta_kind kind);
void *neap__pool_alloc(neap_pool *p);     /* zeroed; NULL on ENOMEM */
void neap__pool_free(neap_pool *p, void *x);
typedef struct neap_meta_stats {
  size_t mapped, inuse;
  /* By kind: carved out of mappings (sys) and handed out now (inuse);
   * mapped - the sum of sys is slack not carved yet. */
  size_t sys[NEAP_META_KINDS], kind_inuse[NEAP_META_KINDS];
} neap_meta_stats;
void neap__meta_stats(neap_meta_stats *out);
/* Counts `size` bytes mapped outside the bump allocator (the page map's
 * committed tables) as metadata of `kind`, in use for good. */
void neap__meta_note_mapped(size_t size, neap_meta_kind kind);
size_t neap__meta_mapped(void); /* bytes mapped, without the lock (a relaxed read) */
void neap__meta_fork(neap_fork_phase phase);

/* --- heap.c: the page heap */
/* A span of npages for size class cls (>0) with its pages set in the
 * arena index; NULL with ENOMEM when the heap cannot grow. */
neap_span *neap__heap_alloc_small_span(unsigned cls);
/* A large span of at least `size` bytes whose base is aligned to `align`
 * (a power of two; <= NEAP_PAGE_SIZE means no constraint). *zeroed says
 * whether its memory is known to read as zero. NULL when out of memory. */
neap_span *neap__heap_alloc_large(size_t size, size_t align, bool *zeroed);
void neap__heap_free_span(neap_span *s);  /* small or large; takes the heap lock */
/* Large span in place: shrink to / try to grow to npages; true on success. */
bool neap__heap_resize_large(neap_span *s, size_t npages);
/* One scavenging pass over the free pages not yet returned to the OS,
 * from the highest address down (scav.c drives it; see its essay). A page
 * is eligible once it has been free for delay_ms and its chunk is not
 * dense (see heap.c: DENSE_PAGES), or always when `force`. Eligible runs
 * are taken out of the page allocator, returned (madvise) without the
 * heap lock, and put back marked scavenged (and lazy, for MADV_FREE). */
typedef struct neap_scav_pass {
  uint32_t now_ms;     /* in: the scavenger clock (neap__now_ms) */
  uint32_t delay_ms;   /* in: the release delay */
  bool force;          /* in: ignore the delay and the density rule */
  bool dontneed;       /* in: MADV_DONTNEED, else MADV_FREE */
  size_t max_bytes;    /* in: stop once this much went back (0: no bound) */
  uint64_t keep_pages; /* in: leave at least this many free pages unreturned */
  uint64_t cursor;     /* in/out: continue below this page (UINT64_MAX: the top) */
  size_t released;     /* out (added to): bytes returned */
  bool young;          /* out: a page was skipped as too young ... */
  uint32_t next_ms;    /* ... and the first of them is eligible this much later */
  bool dense;          /* out: a page was skipped in a chunk that is dense now */
  bool kept;           /* out: the pass ended at keep_pages with pages due */
  bool done;           /* out: the pass reached the bottom (cursor is reset) */
} neap_scav_pass;
void neap__heap_scavenge(neap_scav_pass *sp);
/* The program's recent demand for pages, for the scavenger's retention
 * rule (scav.c): the most pages in use over the demand window (two
 * halves; `rotate` starts a new half), in use now, free and not returned,
 * and when pages were last taken and given (ms clock). */
typedef struct neap_heap_demand {
  uint64_t recent_peak_pages, inuse_pages, dirty_pages;
  uint32_t last_alloc_ms, last_free_ms;
} neap_heap_demand;
void neap__heap_demand(neap_heap_demand *d, bool rotate);
/* Returns every free page not yet returned to the OS now, ignoring the
 * delay and density; the bytes returned. */
size_t neap__heap_release(bool dontneed);
/* NEAPDEBUG=disablethp: MADV_NOHUGEPAGE on every arena, now and later. */
void neap__heap_disable_thp(void);
/* The memory limit on what neap holds from the OS (0: none). */
void neap__heap_set_limit(size_t bytes, bool hard);
/* What neap holds from the OS: grown pages not returned, plus metadata. */
size_t neap__heap_held(void);
void neap__heap_fork(neap_fork_phase phase);
/* Heap-wide page counts for statistics and tests. */
typedef struct neap_heap_stats {
  uint64_t pages_grown, pages_free, pages_scavenged, pages_inuse;
  uint64_t pages_lazy;  /* free, returned with MADV_FREE, not reused since */
  uint64_t pa_mapped;   /* bytes of page-allocator bookkeeping committed */
  uint64_t held;        /* neap__heap_held */
  uint64_t arenas, bytes_reserved;
} neap_heap_stats;
void neap__heap_stats(neap_heap_stats *out);
/* The heap's pages and every span's live objects, under one hold of the
 * heap lock, so that live bytes <= in-use pages exactly. Small spans count
 * their allocated objects minus frees other threads announced and the
 * owner has not merged yet; class 0 counts large objects (whole pages).
 * O(spans): a walk of the span table. */
typedef struct neap_heap_snapshot {
  neap_heap_stats pages;
  uint64_t live[NEAP_NUM_CLASSES];
  uint64_t large_live_bytes;
} neap_heap_snapshot;
void neap__heap_snapshot(neap_heap_snapshot *out);

/* --- scav.c: the background scavenger, the memory limit */
/* The scavenger's clock in milliseconds (wraps every 49 days; compare
 * differences). Tests may swap it: neap__scav_test_clock. */
uint32_t neap__now_ms(void);
/* Free pages appeared (a central's lock may be held): wakes a parked
 * scavenger. One relaxed load when there is nothing to do. */
void neap__scav_kick(void);
/* After an allocation from the page heap: starts the thread once the heap
 * has grown big enough (one relaxed load otherwise). Never wakes it:
 * allocation gives it nothing to do. */
void neap__scav_start_if_needed(void);
/* The heap grew to `bytes` (called under the heap lock: only notes it). */
void neap__scav_heap_grew(uint64_t bytes);
/* An allocation needs `bytes` held under the limit: take back the caches'
 * kept spans and return free pages now (all of them when `all`). Called
 * with no neap lock held. */
void neap__scav_limit_work(size_t bytes, bool all);
void neap__scav_fork(neap_fork_phase phase);
bool neap__scav_is_self(void); /* is this the scavenger thread? */
/* CPU time (ns) a thread other than the scavenger spent on neap's own
 * statistics: not the program's work (see program_busy in scav.c). */
void neap__scav_note_stats_cpu(uint64_t ns);
/* What the scavenger did, for statistics. */
typedef struct neap_scav_totals {
  uint64_t bg_bytes;     /* returned by the background thread after the delay */
  uint64_t eager_bytes;  /* returned for the memory limit */
  uint64_t forced_bytes; /* returned by neap_release / malloc_trim */
  uint64_t cycles;       /* background passes completed */
  uint64_t cpu_ns;       /* CPU time spent returning memory, all kinds */
  bool running;          /* the background thread exists */
} neap_scav_totals;
void neap__scav_totals(neap_scav_totals *out);
/* The pacer: a token bucket of CPU time, filled at rate_bp hundredths of
 * a percent of wall time, holding at most 100 s of that. */
typedef struct neap__pacer {
  uint64_t rate_bp;
  int64_t credit, cap; /* ns x 10000 */
  uint64_t last_ns;
} neap__pacer;
void neap__pacer_init(neap__pacer *p, long cpu_bp, uint64_t now_ns);
void neap__pacer_refill(neap__pacer *p, uint64_t now_ns);
void neap__pacer_charge(neap__pacer *p, uint64_t worked_ns);
bool neap__pacer_may_work(const neap__pacer *p);
int64_t neap__pacer_credit_ns(const neap__pacer *p);
uint64_t neap__pacer_wait_ns(const neap__pacer *p); /* until credit is positive again */
/* Test hooks: swap the clock (NULL: the real one); run one background step. */
void neap__scav_test_clock(uint32_t (*fn)(void));
uint32_t neap__scav_test_step(uint32_t now, size_t *released);

/* --- central.c: one per size class */
neap_span *neap__central_cache_span(unsigned cls, neap_cache *c);
void neap__central_uncache_span(neap_span *s);
void neap__central_notify(neap_span *s);
void neap__central_drain(unsigned cls); /* forwards or settles notified spans */
/* Gives every empty span that central lists hold back to the page heap;
 * returns the number of pages freed. Takes central locks: call it with no
 * heap lock held. */
size_t neap__central_reclaim(void);
void neap__central_fork(neap_fork_phase phase);

/* --- cache.c: per thread */
/* This thread's cache. Never NULL: a thread without a cache of its own
 * points at neap__empty_cache, whose windows are all empty and which owns
 * no span, so the fast paths need no NULL test and fall to the slow path. */
extern __thread neap_cache *neap__tls_cache __attribute__((tls_model("initial-exec")));
extern neap_cache neap__empty_cache;
/* This thread's own cache, or NULL while it has none. */
NEAP_INLINE neap_cache *neap__cache_mine(void) {
  neap_cache *c = neap__tls_cache;
  return c == &neap__empty_cache ? NULL : c;
}
neap_cache *neap__cache_get_slow(void);   /* creates this thread's cache; NULL on ENOMEM or when exiting */
/* For a thread whose cache was destroyed at exit (its last pthread key
 * destructors may still allocate): one object through a cache that is
 * made, used and given back at once. */
bool neap__cache_exiting(void);
void *neap__cache_alloc_exiting(unsigned cls, bool zero);
/* Large-object counts of a thread with no cache (objects, bytes: + alloc, - free). */
void neap__cache_count_large_cacheless(uint64_t objects, uint64_t bytes);
void *neap__cache_refill(neap_cache *c, neap_slot *slot); /* next object of the slot's class, or NULL with ENOMEM */
void neap__cache_flush(neap_cache *c);    /* hands every span back */
/* In the child, the caches of the parent's other threads are abandoned:
 * such a thread may have been halfway through changing its cache when
 * fork copied it, so nothing may walk those caches again. Their spans stay
 * theirs (the child's frees into them take the remote path and are not
 * reused), and their counts stay in the statistics. */
void neap__cache_fork(neap_fork_phase phase);
void neap__cache_free_remote(neap_span *s, uintptr_t p);
/* Gives back to the page heap the empty spans caches keep for their next
 * refills (cache.c: keep_empty): from every cache when `all`, else only
 * from caches that have not refilled since the previous call. Takes the
 * registry lock; call with no other neap lock held. Returns pages freed. */
size_t neap__cache_trim(bool all);
bool neap__cache_trim_pending(void); /* does any cache keep empty spans? */
void neap__cache_inbox_push(neap_cache *owner, neap_span *s);
/* The free of small object p of span s, checked (malloc.c: checked_span),
 * that the fast path did not take: onto c's free stack, or straight back
 * to its span when the thread has no cache. */
void neap__cache_free_small(neap_cache *c, neap_span *s, void *p);
/* Whether p, a small object of class cls that holds its free mark, is in
 * some thread's free stack (a double free if so). Takes the registry lock;
 * exact when no other thread is freeing p or handing it out meanwhile. */
bool neap__cache_stacked(const void *p, unsigned cls);
/* Asks every thread to give back all the objects on its free stacks at
 * its next slow path (a refill, a full stack); this one at once if `now`
 * (neap_release: not the memory limit's work, which runs inside an
 * allocation, with this thread's cache in the middle of a refill). */
void neap__cache_stack_trim(bool now);
/* Objects handed out so far, summed over every cache (live and retired),
 * from windows and free stacks alike: nmalloc[0] counts large objects, large_bytes their bytes (whole
 * pages). Read without stopping the owners: a count may run ahead of the
 * truth by a window being loaded or dropped as it is read, never behind
 * (stats.c relies on that). */
typedef struct neap_cache_counts {
  uint64_t nmalloc[NEAP_NUM_CLASSES];
  uint64_t stacked[NEAP_NUM_CLASSES]; /* objects in free stacks: in use by the spans, free to the program */
  uint64_t large_bytes;
  uint64_t threads; /* caches registered now */
} neap_cache_counts;
void neap__cache_counts(neap_cache_counts *out);
/* The whole snapshot without the kernel's view (stats.c): for mallinfo
 * and the tests, which must not do I/O. */
struct neap_stats;
void neap__stats_snapshot(struct neap_stats *s, bool kernel);
/* The same (with the kernel's view) if no other thread is taking one now;
 * false otherwise. The scavenger's stats file uses it: a thread that
 * reads the statistics without pause would otherwise starve it. */
bool neap__stats_try_snapshot(struct neap_stats *s);
void neap__stats_fork(neap_fork_phase phase);
/* statsfile.c: publish the stats file if it is due (the scavenger thread
 * calls it after each step); returns the ms until it next wants to run,
 * UINT32_MAX for never. */
uint32_t neap__statsfile_tick(uint32_t now_ms);
void neap__statsfile_fork(neap_fork_phase phase);

#endif
