/* The heap checker's interface between the layers (check.c has the essay).
 *
 * Only in builds with NEAP_TESTING (the tests' libraries and every
 * debug build): each layer that owns state has a check function that
 * verifies the invariants its essay states and adds what it saw to the
 * tallies in neap_check, which check.c compares across layers (every
 * span the page map holds is on exactly one list; the statistics count
 * what the bitmaps say). The first violation found is kept as a one-line
 * message; the rest of the walk goes on but records nothing more.
 */
#ifndef NEAP_CHECK_H
#define NEAP_CHECK_H

#include "cache.h"
#include "central.h"
#include "heap.h"
#include "meta.h"
#include "pagemap.h"
#include "scav.h"
#include "stats.h"

#if NEAP_TESTING

/* The registered caches the checker knows by address (more are not
 * checked for ownership; a test never has that many threads at once). */
#define NEAP_CHECK_MAX_CACHES 4096

typedef struct neap_check {
  bool failed;
  char msg[200];
  /* From the caches (cache.c): the registered ones, sorted, and the
   * spans and objects they hold. */
  neap_cache *caches[NEAP_CHECK_MAX_CACHES];
  size_t ncaches;
  bool caches_overflow;  /* more than NEAP_CHECK_MAX_CACHES */
  bool abandoned;        /* a forked child abandoned the parent's other caches */
  uint64_t cache_spans;  /* current spans and spans on own lists */
  uint64_t stacked[NEAP_NUM_CLASSES]; /* objects on free stacks */
  uint64_t inbox_spans;  /* spans in inboxes */
  /* From the centrals (central.c). */
  uint64_t central_spans, pending_spans;
  /* From the page heap's walk (heap.c, span.c). */
  uint64_t owned_spans, unowned_spans, large_spans, notified_spans;
  uint64_t dropped_spans; /* abandoned: dead spans a parent's thread was freeing */
  uint64_t gc_spans;      /* the collector's, small and large */
  uint64_t held[NEAP_NUM_CLASSES]; /* objects held by the program: in use, not freed remotely */
  uint64_t large_bytes;
} neap_check;

/* Records a failure (the first only): "<what> <where>". Returns false. */
bool neap__check_fail(neap_check *ck, const char *what, const void *where);
#define NEAP_CHECK(ck, cond, what, where) ((cond) ? true : neap__check_fail((ck), (what), (where)))

/* Whether c is a registered cache (ck->caches, filled by the caches' check). */
bool neap__check_cache_known(const neap_check *ck, const neap_cache *c);

/* Walks a chain of spans through pending_next (an inbox, a pending
 * stack): each a live small span, notified, and no more of them than
 * there are spans. Returns how many; `what` is the failure's message. */
uint64_t neap__check_pending_chain(neap_check *ck, neap_span *s, const char *what);

/* Each layer's part, in the order check.c calls them (the lock order). */
void neap__scav_check_hold(bool hold);        /* locks / unlocks the scavenger's work lock */
void neap__cache_check(neap_check *ck);       /* registry lock */
void neap__central_check(neap_check *ck);     /* each central's lock in turn */
void neap__heap_check_pages(neap_check *ck);  /* heap lock: pages, arenas, the page map */
void neap__scav_check(neap_check *ck);        /* heap lock: the scavenger's index against the pages */
/* One live small span's geometry, bitmaps and (whole) free marks and
 * remote count; adds the objects the program holds to ck->held. */
void neap__span_check(neap_check *ck, neap_span *s, bool whole);
void neap__cache_check_info(neap_check *ck, neap_span *s); /* the page info a small span's pages carry */
void neap__meta_check(neap_check *ck);        /* meta lock: the metadata accounts */
uint64_t neap__span_pool_inuse(void);         /* span records handed out */
extern const int neap__debug_level;           /* the library's NEAP_DEBUG */
uint64_t neap__cache_pool_inuse(void);        /* cache records handed out */
/* Every page of every arena, under the heap lock: fn(ctx, page, its
 * neap_pa_page state, the span it belongs to or NULL). */
void neap__heap_each_page(void (*fn)(void *ctx, uint64_t pg, int state, neap_span *s), void *ctx);

/* For tests that plant a corruption of each structure: where the
 * structures private to a layer are. */
typedef struct neap_check_targets {
  struct neap_pagealloc *pa;  /* the page heap's page allocator */
  uint64_t *pages_inuse;      /* the page heap's count of pages in spans */
  uint64_t *pages_lazy;       /* the scavenger's count of free pages returned lazily */
  uint16_t *scav_chunk_inuse; /* its counts of pages in use, per chunk of the first arena */
  uint64_t *scav_lazy;        /* its lazy bits of the first arena */
  size_t *meta_inuse;         /* the metadata allocator's bytes in use */
} neap_check_targets;
void neap__check_targets(neap_check_targets *t);
void neap__heap_check_targets(neap_check_targets *t);
void neap__scav_check_targets(neap_check_targets *t);
void neap__meta_check_targets(neap_check_targets *t);

#endif
#endif
