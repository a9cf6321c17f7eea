/* The heap checker: a walk of everything neap owns that verifies every
 * invariant the layers' essays state, for tests, the fuzzer and debug
 * builds (NEAP_TESTING; libneap.so and libneap.a leave it out).
 *
 * What it verifies, layer by layer (each layer checks its own part, in
 * check functions beside the code that keeps the invariants):
 *   page allocator  the summaries against the chunk bitmaps, the dirty
 *                   bits, the totals, the search hint (neap__pa_check);
 *   page heap       for every page of every arena: a live span in the page
 *                   map iff the page allocator has it in use (never-grown
 *                   fence pages map to nothing), each span's pages mapped
 *                   to it and to nothing else, zero page info on pages of
 *                   no span, scavenged pages only among free ones, the
 *                   heap's page totals; the arena index finding every
 *                   arena;
 *   scavenger       its index: lazy bits only on returned pages, the
 *                   per-chunk counts of pages in use, its totals;
 *   page info       what a frontend writes on its spans' pages (cache.c:
 *                   a small span's class slot and each page's offset;
 *                   zero for large ones);
 *   spans           geometry from the size class, padding bits set in both
 *                   bitmaps, remote bits only on objects in use, the
 *                   remote-free count and flags, and every free object
 *                   holding its span's free mark (a write after free the
 *                   program made is found here);
 *   centrals        the partial and full lists (links, class, state, room),
 *                   the pending stacks;
 *   caches          every slot's window, current span and free stack (each
 *                   object's mark, a live object of the slot's class,
 *                   no cycle), the own lists and their counts, live counts
 *                   against the bitmaps, the inbox, fresh objects still
 *                   zero where calloc will not clear them, and the empty
 *                   cache untouched;
 *   across layers   every small span the page map holds is owned by a
 *                   registered cache and on exactly one of its lists, or
 *                   on exactly one central list; every notified span is
 *                   on one pending stack or inbox; the span and cache
 *                   records in use are exactly the live ones;
 *   statistics      the invariants neap.h promises, and the live objects
 *                   of each class exactly what the bitmaps and stacks say.
 *
 * Locking and its one condition: the check takes the scavenger's work
 * lock for the whole walk (the scavenger moves no span meanwhile) and each
 * layer's lock while it walks that layer, in the lock order. What no lock
 * covers, a thread's own cache and the spans it owns, the caller must keep
 * still: no other thread may be inside neap during the check (the fuzzer
 * and the stress tests call it at a barrier, or at the end).
 *
 * It allocates nothing: the tallies live in one static neap_check, which a
 * mutex of its own serialises.
 */
#include "check.h"

#if NEAP_TESTING

#include <pthread.h>
#include <string.h>

#include "neap.h"

const int neap__debug_level = NEAP_DEBUG;

static neap_mutex check_lock = NEAP_MUTEX_INIT(CHECK);
static neap_check check;
static char report[sizeof check.msg + 16];

bool neap__check_fail(neap_check *ck, const char *what, const void *where) {
  if (ck->failed) return false;
  ck->failed = true;
  static const char hex[] = "0123456789abcdef";
  size_t n = strlen(what);
  if (n > sizeof ck->msg - 24) n = sizeof ck->msg - 24;
  memcpy(ck->msg, what, n);
  ck->msg[n++] = ' ';
  ck->msg[n++] = '0';
  ck->msg[n++] = 'x';
  uintptr_t v = (uintptr_t)where;
  int shift = 60;
  while (shift > 0 && ((v >> shift) & 15) == 0) shift -= 4;
  for (; shift >= 0; shift -= 4) ck->msg[n++] = hex[(v >> shift) & 15];
  ck->msg[n] = '\0';
  return false;
}

/* Shell sort of the caches' addresses (libc's qsort may call malloc). */
static void sort_caches(neap_check *ck) {
  static const size_t gaps[] = {1750, 701, 301, 132, 57, 23, 10, 4, 1};
  for (size_t g = 0; g < sizeof gaps / sizeof gaps[0]; g++) {
    size_t gap = gaps[g];
    for (size_t i = gap; i < ck->ncaches; i++) {
      neap_cache *x = ck->caches[i];
      size_t j = i;
      for (; j >= gap && (uintptr_t)ck->caches[j - gap] > (uintptr_t)x; j -= gap) ck->caches[j] = ck->caches[j - gap];
      ck->caches[j] = x;
    }
  }
}

bool neap__check_cache_known(const neap_check *ck, const neap_cache *c) {
  if (ck->caches_overflow) return true;
  size_t lo = 0, hi = ck->ncaches;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if ((uintptr_t)ck->caches[mid] < (uintptr_t)c) lo = mid + 1;
    else hi = mid;
  }
  return lo < ck->ncaches && ck->caches[lo] == c;
}

/* The spans counted by the walk of the page map against those the caches
 * and centrals hold, and the records in use. */
static void check_across(neap_check *ck) {
  if (!ck->abandoned) {
    NEAP_CHECK(ck, ck->owned_spans == ck->cache_spans, "spans owned by caches and spans on their lists differ", NULL);
  }
  NEAP_CHECK(ck, ck->unowned_spans == ck->central_spans, "spans no cache owns and spans on central lists differ",
             NULL);
  if (!ck->abandoned)
    NEAP_CHECK(ck, ck->notified_spans == ck->pending_spans + ck->inbox_spans,
               "notified spans and spans on pending stacks and inboxes differ", NULL);
  /* In a child, records a parent's thread was making into spans or
   * deleting are in use and in no span of the page map. */
  uint64_t spans = ck->owned_spans + ck->unowned_spans + ck->large_spans + ck->dropped_spans + ck->gc_spans;
  uint64_t records = neap__span_pool_inuse();
  NEAP_CHECK(ck, ck->abandoned ? records >= spans : records == spans, "span records in use and live spans differ",
             NULL);
  if (!ck->abandoned && !ck->caches_overflow)
    NEAP_CHECK(ck, neap__cache_pool_inuse() == ck->ncaches, "cache records in use and registered caches differ",
               NULL);
}

/* The statistics against the walk: neap.h's invariants, and each class's
 * live objects exactly as the bitmaps and the free stacks say. */
static void check_stats(neap_check *ck) {
  static neap_stats_t s;
  neap__stats_snapshot(&s, false);
  uint64_t sum = s.heap_sys + s.span_sys + s.cache_sys + s.arena_meta_sys + s.pagealloc_sys + s.other_sys + s.gc_sys;
  NEAP_CHECK(ck, s.sys == sum, "statistics: sys is not the sum of the *_sys fields", NULL);
  NEAP_CHECK(ck, s.heap_sys == s.heap_inuse + s.heap_idle, "statistics: heap_sys != heap_inuse + heap_idle", NULL);
  NEAP_CHECK(ck, s.heap_idle >= s.heap_released, "statistics: heap_released > heap_idle", NULL);
  NEAP_CHECK(ck, s.heap_alloc <= s.heap_inuse, "statistics: heap_alloc > heap_inuse", NULL);
  NEAP_CHECK(ck, s.heap_objects == s.mallocs - s.frees, "statistics: heap_objects != mallocs - frees", NULL);
  NEAP_CHECK(ck, s.held == s.sys - s.heap_released, "statistics: held != sys - heap_released", NULL);
  NEAP_CHECK(ck, s.span_inuse <= s.span_sys && s.cache_inuse <= s.cache_sys,
             "statistics: metadata in use exceeds what is mapped", NULL);
  uint64_t objects = 0, bytes = 0;
  for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
    uint64_t held = ck->held[cls], stacked = ck->stacked[cls];
    if (!NEAP_CHECK(ck, stacked <= held, "free stacks hold more objects than their spans have in use",
                    (void *)(uintptr_t)neap__class_size[cls]))
      break;
    const neap_stats_class_t *c = &s.by_class[cls - 1];
    NEAP_CHECK(ck, c->mallocs - c->frees == held - stacked, "statistics: a class's live objects are wrong",
               (void *)(uintptr_t)neap__class_size[cls]);
    objects += held - stacked;
    bytes += (held - stacked) * neap__class_size[cls];
  }
  const neap_stats_class_t *large = &s.by_class[NEAP_NUM_CLASSES - 1];
  NEAP_CHECK(ck, large->mallocs - large->frees == ck->large_spans, "statistics: live large objects are wrong", NULL);
  NEAP_CHECK(ck, s.heap_objects == objects + ck->large_spans, "statistics: heap_objects is wrong", NULL);
  NEAP_CHECK(ck, s.heap_alloc == bytes + ck->large_bytes, "statistics: heap_alloc is wrong", NULL);
}

/* A span the page map holds (called by the heap's walk, under its lock):
 * live, its page info as its frontend writes it, its bitmaps; counted by
 * kind and owner. */
static void check_span(void *arg, neap_span *s) {
  neap_check *ck = arg;
  if (s == NULL) return; /* the walk's start */
  unsigned where = neap__span_where(s);
  if (where == NEAP_SPAN_DEAD && ck->abandoned) {
    /* a parent's thread was freeing it (claimed, pages not yet back) */
    ck->dropped_spans++;
    return;
  }
  if (neap__kind_collected(s->kind)) {
    /* The collector's (gcalloc.c checks its own lists): live, and with
     * no page info, so that every free of its objects is a slow one. */
    NEAP_CHECK(ck, where == (s->sizeclass ? NEAP_SPAN_COLLECTED : NEAP_SPAN_LARGE), "collected span is not live", s);
    neap__cache_check_info(ck, s);
    ck->gc_spans++;
    return;
  }
  if (!NEAP_CHECK(ck, s->sizeclass ? neap__where_small(where) : where == NEAP_SPAN_LARGE,
                  "span in the page map is not live", s))
    return;
  neap_cache *owner = NEAP_LOAD(&s->owner);
  if (s->sizeclass != 0 && ck->abandoned &&
      (where == NEAP_SPAN_TRANSIT || (owner != NULL && !neap__check_cache_known(ck, owner)))) {
    /* A span a parent's thread was moving, or one of the caches a forked
     * child abandoned: that thread may have been halfway through any
     * change to it (its page info included), so only its objects are
     * counted. */
    neap__span_check(ck, s, false);
    return;
  }
  neap__cache_check_info(ck, s);
  if (s->sizeclass == 0) {
    NEAP_CHECK(ck, owner == NULL && atomic_load(&s->rword) == 0 && s->elemsize == 0, "large span's fields are wrong",
               s);
    ck->large_spans++;
    ck->large_bytes += neap__span_bytes(s);
    return;
  }
  NEAP_CHECK(ck, owner == NULL || neap__check_cache_known(ck, owner), "span owned by a cache that is not registered",
             s);
  neap__span_check(ck, s, true);
  if (atomic_load(&s->rword) & NEAP_RW_NOTIFIED) ck->notified_spans++;
  NEAP_CHECK(ck, where != NEAP_SPAN_TRANSIT, "span in transit while the heap is still", s);
  NEAP_CHECK(ck, neap__span_owner_fits(s, where), "span's state and its owner differ", s);
  if (owner == NULL) {
    NEAP_CHECK(ck, neap__where_central(where), "span no cache owns is on no central list", s);
    ck->unowned_spans++;
  } else {
    NEAP_CHECK(ck, neap__where_owned(where), "span a cache owns is not on its lists", s);
    ck->owned_spans++;
  }
}

const char *neap__heap_check(void) {
  neap__lock(&check_lock);
  neap_check *ck = &check;
  memset(ck, 0, sizeof *ck);
  neap__scav_check_hold(true);
  neap__cache_check(ck);
  sort_caches(ck);
  neap__central_check(ck);
  neap__heap_check_pages(ck);
  if (!ck->failed) {
    neap_heap_stats hs;
    neap__heap_walk(&hs, check_span, ck);
  }
  neap__scav_check(ck);
  neap__meta_check(ck);
  check_across(ck);
  neap__scav_check_hold(false);
  check_stats(ck);
  const char *r = NULL;
  if (ck->failed) {
    memcpy(report, "heap check: ", 12);
    memcpy(report + 12, ck->msg, strlen(ck->msg) + 1);
    r = report;
  }
  neap__unlock(&check_lock);
  return r;
}

void neap__check_targets(neap_check_targets *t) {
  memset(t, 0, sizeof *t);
  neap__heap_check_targets(t);
  neap__scav_check_targets(t);
  neap__meta_check_targets(t);
}

#endif
