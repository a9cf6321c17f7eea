/* The page heap (heap.c): spans from pages, pages from arenas. heap.c has
 * the essay. */
#ifndef NEAP_HEAP_H
#define NEAP_HEAP_H

#include "lock.h"
#include "span.h"

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
  uint32_t now_ms;     /* in: the scavenger clock (neap__os_now_ms) */
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

#endif
