/* Spans: runs of neap pages serving one size class (many objects) or one
 * large object. The struct and the few inline functions malloc and free
 * run on every call; span.c has the essay.
 */
#ifndef NEAP_SPAN_H
#define NEAP_SPAN_H

#include <stdatomic.h>

#include "bits.h"
#include "internal.h"
#include "sizeclass.h"

/* Where a span is (span->where): its one state. span.c has the diagram;
 * neap__span_move makes every change. The order groups them: the
 * predicates below rely on it. */
enum {
  NEAP_SPAN_DEAD = 0,        /* a record with no pages: in its pool, being made or given back */
  NEAP_SPAN_LARGE,           /* one large object (malloc'd, or collected: kind) */
  NEAP_SPAN_COLLECTED,       /* objects of one size class for the collector (gcalloc.c has its lists) */
  /* Small spans (objects of one size class) from here on. */
  NEAP_SPAN_TRANSIT,         /* on no list: being made, or moved by the thread that took it off one */
  NEAP_SPAN_CENTRAL_PARTIAL, /* its central's: a free object, no owner */
  NEAP_SPAN_CENTRAL_FULL,    /* its central's: no free object, no owner */
  NEAP_SPAN_CURRENT,         /* a cache's: its slot's current span */
  NEAP_SPAN_OWN_PARTIAL,     /* a cache's own lists: room, */
  NEAP_SPAN_OWN_FULL,        /* parked full, */
  NEAP_SPAN_OWN_EMPTY,       /* empty, kept for refills */
};

/* span->rword: the remote-free word (see central.c for the protocol).
 * Low 32 bits: remote frees announced and not yet merged. */
#define NEAP_RW_COUNT_MASK 0xffffffffull
#define NEAP_RW_NOTIFIED (1ull << 32) /* on (or being pushed to) its central's pending stack or its owner's inbox */
#define NEAP_RW_CACHED (1ull << 33)   /* held by a thread cache */
#define NEAP_RW_DEAD (1ull << 34)     /* emptied and being given back to the page heap */

#define NEAP_SPAN_MAX_WORDS 8 /* 512 objects at most: see sizeclass.h */

/* What a span's objects are (span->kind), which the free and collector
 * paths check: malloc'd objects, and the collector's, scanned for
 * pointers or not (gc.h). A span holds one kind for its whole life. */
enum { NEAP_KIND_MALLOC = 0, NEAP_KIND_GC_SCAN, NEAP_KIND_GC_NOSCAN, NEAP_KIND_COUNT };
NEAP_INLINE bool neap__kind_collected(unsigned kind) { return kind != NEAP_KIND_MALLOC; }

typedef struct neap_cache neap_cache;

/* A link of a circular, doubly linked list with a head of the same type:
 * the thread cache's own lists (cache.c), where taking a span out or
 * putting one in is a few stores and no branch. */
typedef struct neap_link {
  struct neap_link *next, *prev;
} neap_link;

typedef struct neap_span {
  /* First line: what the slow paths use. */
  uint32_t elemsize;            /* object size; large: 0 */
  uint16_t nelems;              /* objects in the span (small) */
  uint8_t sizeclass;            /* 0 for large spans */
  uint8_t nwords;               /* bitmap words per bitmap (small) */
  _Atomic uint8_t where;        /* NEAP_SPAN_*: its state (read by other threads' free checks) */
  uint8_t needzero;             /* some object may hold old data */
  uint8_t next_word;            /* owner's scan cursor over the bitmap */
  uint8_t kind;                 /* NEAP_KIND_*: malloc'd or collected objects */
  uint32_t refile_at;           /* see countdown */
  uint32_t npages;
  uint16_t sweepgen;            /* collected spans: the cycle whose marks it was last swept by (gcalloc.c) */
  uint8_t noscan;               /* a large malloc'd object the collector never scans (neap_malloc_noscan) */
  uint8_t unused;
  uint64_t first_page;          /* page index in the page allocator */
  _Atomic uint64_t rword;       /* remote-free count and flags */
  union {
    struct { /* central lists (central.c): NULL-terminated */
      struct neap_span *next, *prev;
    };
    neap_link own; /* the owning cache's lists (cache.c) */
  };
  struct neap_span *pending_next;            /* pending stack or owner's inbox */
  /* Second line: everything a free into the span reads (a spill of the
   * free stack, cache.c: the fast path itself reads no span), then the
   * bitmaps, whose first two pairs of words share the line, so that such
   * a free in a span of up to 128 objects touches this line alone. In a
   * heap of a few thousand spans a random free misses the L1 cache on its
   * span's line; with these fields at the front and the bitmaps from
   * offset 88 it would miss on two (cachegrind, the mixed
   * microbenchmark: 1.38 misses per free against 2.11). The first line's
   * rword takes the atomic adds of other threads' frees, away from the
   * fields the owner's frees write. */
  uintptr_t base;               /* address of the first page */
  _Atomic(neap_cache *) owner;  /* cache holding the span, else NULL */
  uint32_t divmul;              /* object index = (offset * divmul) >> 32 */
  /* The owner's count of allocated objects (a cache counts its whole
   * current window as allocated), kept as live - refile_at: a local free
   * that brings live down to refile_at takes the slow path (see cache.c),
   * and the fast path tests that with one decrement. */
  int32_t countdown;
  /* Two bitmaps of nwords words each, 1 bit per object, interleaved so
   * that the word a free tests and the word it must find clear share a
   * line: bits[2w] is word w of
   *   in use   written only by the span's owner (its cache, or its central
   *            under the lock)
   * and bits[2w+1] word w of
   *   remote   freed by another thread, not yet merged.
   * Bits of indexes past the last object are set in both, for good; the
   * bitmaps reach index nelems, the tail's, set as padding (see span.c).
   * A collected span has a third bitmap after those 2 * nwords words: the
   * collector's marks (gc.h); a large collected object's span has one
   * word of each, for its one object. */
  _Atomic uint64_t bits[];
} neap_span;
_Static_assert(offsetof(neap_span, base) == NEAP_CACHE_LINE, "the free path's fields open the second line");

/* --- the state machine (span.c: the diagram) */

NEAP_INLINE unsigned neap__span_where(const neap_span *s) {
  return atomic_load_explicit(&((neap_span *)s)->where, memory_order_relaxed);
}
NEAP_INLINE bool neap__where_small(unsigned w) { return w >= NEAP_SPAN_TRANSIT; }
NEAP_INLINE bool neap__where_central(unsigned w) {
  return w == NEAP_SPAN_CENTRAL_PARTIAL || w == NEAP_SPAN_CENTRAL_FULL;
}
NEAP_INLINE bool neap__where_owned(unsigned w) { return w >= NEAP_SPAN_CURRENT; } /* a cache's */
NEAP_INLINE bool neap__where_own_list(unsigned w) { return w >= NEAP_SPAN_OWN_PARTIAL; }

/* Whether a span may go from `from` to `to`: a small span leaves a list
 * for TRANSIT and enters one from there; records with pages end DEAD. */
NEAP_INLINE bool neap__span_move_ok(unsigned from, unsigned to) {
  switch (from) {
  case NEAP_SPAN_DEAD: return to == NEAP_SPAN_LARGE || to == NEAP_SPAN_TRANSIT || to == NEAP_SPAN_COLLECTED;
  case NEAP_SPAN_LARGE:
  case NEAP_SPAN_COLLECTED: return to == NEAP_SPAN_DEAD;
  case NEAP_SPAN_TRANSIT: return to != NEAP_SPAN_TRANSIT && to != NEAP_SPAN_LARGE;
  default: return to == NEAP_SPAN_TRANSIT;
  }
}

/* What a state says of the owner (debug builds assert it on entry): a
 * cache's states have an owner and the remote-free word's CACHED flag, a
 * central's have neither. */
NEAP_INLINE bool neap__span_owner_fits(const neap_span *s, unsigned where) {
  bool owned = NEAP_LOAD(&((neap_span *)s)->owner) != NULL;
  bool cached = (atomic_load_explicit(&((neap_span *)s)->rword, memory_order_relaxed) & NEAP_RW_CACHED) != 0;
  if (neap__where_owned(where)) return owned && cached;
  if (neap__where_central(where)) return !owned && !cached;
  return true;
}

/* The one way a span changes state, by the thread that holds it (its
 * owner, or the lock of the list it is on): asserted against the diagram
 * in debug builds. */
NEAP_INLINE void neap__span_move(neap_span *s, unsigned to) {
  neap_assert(neap__span_move_ok(neap__span_where(s), to) && neap__span_owner_fits(s, to));
  atomic_store_explicit(&s->where, (uint8_t)to, memory_order_relaxed);
}

/* The same when other threads may race for it (a large object's free
 * against a double free): true for the one thread that moved it. */
NEAP_INLINE bool neap__span_claim(neap_span *s, unsigned from, unsigned to) {
  neap_assert(neap__span_move_ok(from, to));
  uint8_t expect = (uint8_t)from;
  return atomic_compare_exchange_strong(&s->where, &expect, (uint8_t)to);
}

/* --- objects and bitmaps */

NEAP_INLINE _Atomic uint64_t *neap__span_inuse(neap_span *s, unsigned w) { return &s->bits[2 * w]; }
NEAP_INLINE _Atomic uint64_t *neap__span_remote(neap_span *s, unsigned w) { return &s->bits[2 * w + 1]; }
NEAP_INLINE size_t neap__span_bytes(const neap_span *s) { return (size_t)s->npages << NEAP_PAGE_SHIFT; }

/* The bits of word w that stand for objects: all 64 but in the last words
 * (slow paths only: the bits past the last object are set in both bitmaps,
 * so the scans for free objects need no mask; see span.c). */
NEAP_INLINE uint64_t neap__span_word_objects(const neap_span *s, unsigned w) {
  unsigned first = w * 64u;
  if (s->nelems >= first + 64u) return ~0ull;
  if (s->nelems <= first) return 0;
  return ~0ull >> (64u - (s->nelems - first));
}

/* The free objects of word w (caller owns the span): the bits past the
 * last object are always set, so nothing needs masking off. */
NEAP_INLINE uint64_t neap__span_free_bits(neap_span *s, unsigned w) { return ~NEAP_LOAD(neap__span_inuse(s, w)); }

/* Is object idx (< nelems) held by the program: in use, and not freed by
 * another thread? Exact for the owner; for any other thread a racy read,
 * as every check of a free racing with another free must be. */
NEAP_INLINE bool neap__span_held(neap_span *s, unsigned idx) {
  uint64_t bit = 1ull << (idx & 63);
  unsigned w = idx >> 6;
  return (NEAP_LOAD(neap__span_inuse(s, w)) & ~NEAP_LOAD(neap__span_remote(s, w)) & bit) != 0;
}

neap_span *neap__span_new(unsigned sizeclass); /* from the metadata pools; NULL on ENOMEM */
/* A record for collected objects of class sizeclass (0: one large
 * object), with room for the mark bitmap; NULL on ENOMEM. */
neap_span *neap__span_new_collected(unsigned sizeclass);
void neap__span_delete(neap_span *s);
/* Sets up s for objects of class sizeclass: geometry, empty bitmaps, no
 * owner, its objects to be zeroed for calloc. Before the page heap gives
 * it pages (heap.h: its walkers may read it from then on). */
void neap__span_init_small(neap_span *s, unsigned sizeclass);
void neap__span_init_large(neap_span *s); /* a large object's record (from neap__span_new(0)), in state LARGE */
/* A collected span's record (from neap__span_new_collected): class
 * sizeclass's geometry, or one large object for class 0 (its pages are
 * the heap's to set); every
 * object free (large: the one object in use), no mark; in state
 * COLLECTED, or LARGE for class 0. */
void neap__span_init_collected(neap_span *s, unsigned sizeclass, unsigned kind);
/* Moves remote frees into the in-use bitmap (caller owns the span);
 * returns how many objects it merged. Aborts on a detected double free.
 * Nothing announced, nothing to merge: one load, inline, instead of a
 * call and a scan (as at nearly every span switch). A free whose bit
 * lands after the check is merged next time. */
unsigned neap__span_merge_remote_scan(neap_span *s);
NEAP_INLINE unsigned neap__span_merge_remote(neap_span *s) {
  if ((atomic_load_explicit(&s->rword, memory_order_acquire) & NEAP_RW_COUNT_MASK) == 0) return 0;
  return neap__span_merge_remote_scan(s);
}
unsigned neap__span_live(const neap_span *s); /* objects in use */
/* Index of the first bitmap word at or after `from` with a free object,
 * or nwords if none. */
NEAP_INLINE unsigned neap__span_next_free_word(neap_span *s, unsigned from) {
  unsigned w = from;
  while (w < s->nwords && neap__span_free_bits(s, w) == 0) w++;
  return w;
}

#endif
