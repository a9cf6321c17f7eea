/* The page heap (heap.c): the backend every kind of span gets its pages
 * from. It knows spans as records that own runs of pages, and nothing of
 * what a frontend keeps in them; heap.c has the essay.
 */
#ifndef NEAP_HEAP_H
#define NEAP_HEAP_H

#include "lock.h"
#include "span.h"

/* --- pages for spans */

/* Gives span record s (a frontend's, from span.c) npages pages whose base
 * is aligned to `align` (a power of two; <= NEAP_PAGE_SIZE means no
 * constraint): sets s->base, s->first_page and s->npages and maps every
 * page to s in the page map, with a zero page info (the frontend writes
 * its own: pagemap.h). s must be whole before the call, class and state
 * included: the heap's walkers (neap__heap_walk) may read it as soon as
 * its pages are mapped. *zeroed says whether the memory is known to read as
 * zero. Reclaims (below) and grows the heap as needed, under the memory
 * limit. 0, or ENOMEM with s untouched. */
int neap__heap_alloc_pages(neap_span *s, uint64_t npages, size_t align, bool *zeroed);
/* Takes s's pages back: unmapped from s, free for any span; the record
 * stays the frontend's. */
void neap__heap_free_pages(neap_span *s);
/* Grows s in place to npages (the pages after it must be free) or shrinks
 * it; true on success, with s->npages changed. */
bool neap__heap_resize_pages(neap_span *s, uint64_t npages);

/* --- hooks: what the frontends and the scavenger register (init.c) */

/* Why the heap asks its reclaimers for pages. */
typedef enum neap_reclaim {
  NEAP_RECLAIM_SHORT,   /* no free run fits: give back what is empty, cheaply, before the heap grows */
  NEAP_RECLAIM_IDLE,    /* the scavenger's round: what idle holders keep */
  NEAP_RECLAIM_LIMIT,   /* the memory limit: everything (threads' free stacks at their next slow path) */
  NEAP_RECLAIM_RELEASE, /* neap_release: everything, this thread's free stacks now */
  NEAP_RECLAIM_PENDING, /* no action: how many pages the holders keep (an upper bound for IDLE) */
} neap_reclaim;
/* A reclaimer gives empty spans it holds back to the heap (through
 * neap__heap_free_pages) and returns how many pages (for PENDING: counts
 * them and gives nothing); called with no neap lock held but the
 * scavenger's work lock (SCAV_WORK, which ranks outside every lock a
 * reclaimer takes). */
typedef size_t neap_reclaimer(neap_reclaim why);
#define NEAP_MAX_RECLAIMERS 4
void neap__heap_add_reclaimer(neap_reclaimer *fn);
/* Runs every reclaimer; the pages they gave back. */
size_t neap__heap_reclaim(neap_reclaim why);

/* What the heap tells the scavenger, which keeps its own index of the
 * pages (scav.c). All but after_alloc and kick are called under the heap
 * lock. */
typedef struct neap_heap_observer {
  int (*arena_added)(size_t k);                   /* arena k joined: 0 or ENOMEM */
  void (*grew)(uint64_t bytes);                   /* the heap now has this many bytes grown */
  uint64_t (*taken)(uint64_t first, uint64_t n);  /* pages went to a span; returns how many were returned
                                                     lazily (MADV_FREE: they may hold old data) */
  void (*freed)(uint64_t first, uint64_t n);      /* pages came back from a span */
  void (*returned)(uint64_t first, uint64_t n, bool lazy); /* free pages went back to the OS */
  void (*after_alloc)(void);                      /* after pages were taken, the heap unlocked */
  void (*kick)(void);                             /* pages were freed, the heap unlocked */
} neap_heap_observer;
void neap__heap_set_observer(const neap_heap_observer *o);

/* The memory limit: what neap holds from the OS (grown pages not returned,
 * plus metadata) stays under `bytes` (0: none). Before an allocation that
 * could pass it the heap runs its reclaimers (NEAP_RECLAIM_LIMIT) and then
 * `return_fn`, which returns free pages to the OS (at least `bytes` of
 * them; all it can when `all`). Hard: an allocation that still does not
 * fit fails with ENOMEM. */
void neap__heap_set_limit(size_t bytes, bool hard, void (*return_fn)(size_t bytes, bool all));
/* What neap holds from the OS. */
size_t neap__heap_held(void);

/* --- the scavenger's access to free pages (heap.c takes its lock in each
 * call; the scavenger's own lock serialises its passes) */

/* The highest run of free pages not yet returned, below page `below` (at
 * most `max` pages), as `pick` narrows it: pick is called under the heap
 * lock with the run and with how many free pages are not returned in all
 * (`dirty`), and sets [lo, hi) to take (empty: none) and where the walk
 * goes on. The part taken, cut to whole OS pages, leaves the page
 * allocator until neap__heap_put_back, so that nothing allocates it while
 * it is returned. */
typedef struct neap_pick {
  uint64_t base, n, dirty; /* in */
  uint64_t lo, hi;         /* out: what to take; lo == hi: nothing */
  uint64_t next_below;     /* out: where the walk continues */
} neap_pick;
typedef void neap_pick_fn(void *ctx, neap_pick *p);
typedef struct neap_free_run {
  uint64_t first, n; /* pages taken (n 0: none this time) */
  uintptr_t addr;    /* the first one's address */
} neap_free_run;
/* false when no free, unreturned page is left below `below`. */
bool neap__heap_take_unreturned(uint64_t below, uint64_t max, neap_pick_fn *pick, void *ctx, neap_free_run *run);
/* Puts a run taken above back: returned to the OS (lazily: with MADV_FREE)
 * or, if returning failed, as it was. */
void neap__heap_put_back(const neap_free_run *run, bool returned, bool lazy);
/* One page past the highest grown one: where a walk from the top starts. */
uint64_t neap__heap_top(void);

/* Calls fn(ctx) with the heap lock held: for a hook's owner to read or
 * change, at one moment, what the heap's notifications keep up to date. */
void neap__heap_with_lock(void (*fn)(void *ctx), void *ctx);

/* --- looking */

/* Arena k in index order, or NULL past the last: without the lock, for
 * the collector's walk of malloc'd spans with the world stopped. */
struct neap_arena;
struct neap_arena *neap__heap_arena(size_t k);

/* NEAPDEBUG=disablethp: MADV_NOHUGEPAGE on every arena, now and later. */
void neap__heap_disable_thp(void);
void neap__heap_fork(neap_fork_phase phase);
/* Heap-wide page counts. */
typedef struct neap_heap_stats {
  uint64_t pages_grown, pages_free, pages_scavenged, pages_inuse;
  uint64_t pa_mapped;   /* bytes of page-allocator bookkeeping committed */
  uint64_t held;        /* neap__heap_held */
  uint64_t arenas, bytes_reserved;
} neap_heap_stats;
void neap__heap_stats(neap_heap_stats *out);
/* The page counts and every live span, in one hold of the heap lock (no
 * span can come or go meanwhile): fn(ctx, s) for each span, in index
 * order, after one fn(ctx, NULL) before the first, where the caller reads
 * at the same moment what the heap's notifications keep (the scavenger's
 * counts). fn runs with the lock held and must not call back into the
 * heap. */
void neap__heap_walk(neap_heap_stats *out, void (*fn)(void *ctx, neap_span *s), void *ctx);

#endif
