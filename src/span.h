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

enum {
  NEAP_SPAN_DEAD = 0, /* not describing any pages (in the pool, or freed) */
  NEAP_SPAN_SMALL,    /* objects of one size class */
  NEAP_SPAN_LARGE,    /* one large object */
};

/* span->list: where a span is. Owned by a cache: CURRENT (the slot's
 * span), OWN_PARTIAL (has free objects), OWN_FULL, OWN_EMPTY (kept for
 * refills). Owned by its central:
 * PARTIAL or FULL. NONE: in transit. */
enum {
  NEAP_LIST_NONE = 0,
  NEAP_LIST_PARTIAL,
  NEAP_LIST_FULL,
  NEAP_LIST_CURRENT,
  NEAP_LIST_OWN_PARTIAL, /* the cache's own lists: keep them last (cache.c: own_remove) */
  NEAP_LIST_OWN_FULL,
  NEAP_LIST_OWN_EMPTY,
};

/* span->rword: the remote-free word (see central.c for the protocol).
 * Low 32 bits: remote frees announced and not yet merged. */
#define NEAP_RW_COUNT_MASK 0xffffffffull
#define NEAP_RW_NOTIFIED (1ull << 32) /* on (or being pushed to) its central's pending stack */
#define NEAP_RW_CACHED (1ull << 33)   /* held by a thread cache */
#define NEAP_RW_DEAD (1ull << 34)     /* emptied and being given back to the page heap */

#define NEAP_SPAN_MAX_WORDS 8 /* 512 objects at most: see sizeclass.h */

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
  _Atomic uint8_t state;        /* NEAP_SPAN_* */
  uint8_t needzero;             /* some object may hold old data */
  uint8_t next_word;            /* owner's scan cursor over the bitmap */
  uint8_t list;                 /* NEAP_LIST_*: which list holds it */
  uint32_t relist_at;           /* see countdown */
  uint32_t npages;
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
   * a free in a span of up to 128 objects touches this line alone. In a heap of a few
   * thousand spans a random free misses the L1 cache on its span's line;
   * with these fields at the front and the bitmaps from offset 88 it
   * missed on two (cachegrind, the mixed microbenchmark: 2.11 misses per
   * free then, 1.38 now). The first line's rword takes the atomic adds of
   * other threads' frees, away from the fields the owner's frees write. */
  uintptr_t base;               /* address of the first page */
  _Atomic(neap_cache *) owner;  /* cache holding the span, else NULL */
  uint32_t divmul;              /* object index = (offset * divmul) >> 32 */
  /* The owner's count of allocated objects (a cache counts its whole
   * current window as allocated), kept as live - relist_at: a local free
   * that brings live down to relist_at takes the slow path (see cache.c),
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
   * bitmaps reach index nelems, the tail's, so that a free of the tail
   * finds its remote bit set (see span.c). */
  _Atomic uint64_t bits[];
} neap_span;
_Static_assert(offsetof(neap_span, base) == NEAP_CACHE_LINE, "the free path's fields open the second line");

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
void neap__span_delete(neap_span *s);
/* Sets up s for objects of class sizeclass: geometry, empty bitmaps, no
 * owner, its objects to be zeroed for calloc. Before the page heap gives
 * it pages (heap.h: its walkers may read it from then on). */
void neap__span_init_small(neap_span *s, unsigned sizeclass);
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
