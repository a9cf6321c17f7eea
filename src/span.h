/* Spans, the arena index and the per-thread cache: the types the fast
 * paths share. The essays live in span.c, arena.c, central.c and cache.c;
 * this header holds the structs and the few inline functions that malloc
 * and free run on every call.
 */
#ifndef NEAP_SPAN_H
#define NEAP_SPAN_H

#include <pthread.h>
#include <stdatomic.h>

#include "internal.h"
#include "sizeclass.h"
#include "track.h"

/* Relaxed atomics for words one thread writes and others may read: they
 * compile to plain loads and stores, and keep the C memory model (and
 * ThreadSanitizer) honest about the racy readers. */
#define NEAP_LOAD(p) atomic_load_explicit((p), memory_order_relaxed)
#define NEAP_STORE(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)

/* --- span */

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

/* Population count: the POPCNT instruction where the CPU has it (set by
 * neap__process_init), else bit arithmetic (POPCNT is not in the x86-64
 * baseline, where __builtin_popcountll becomes a library call). A window
 * load counts its free objects, some 100,000 times a second per thread in
 * a busy program: 3 instructions instead of 17. */
extern _Atomic uint8_t neap__cpu_popcnt;
NEAP_INLINE unsigned neap__popcount(uint64_t x) {
#if defined(__x86_64__)
  if (NEAP_LIKELY(NEAP_LOAD(&neap__cpu_popcnt))) {
    uint64_t r;
    __asm__("popcntq %1, %0" : "=r"(r) : "r"(x) : "cc");
    return (unsigned)r;
  }
#endif
  x -= (x >> 1) & 0x5555555555555555ull;
  x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
  return (unsigned)((x * 0x0101010101010101ull) >> 56);
}

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

/* Bit i of w, and w with bit i clear, for any i: only i mod 64 counts, as
 * in the bt/btr instructions these are on x86-64, which saves the masking
 * a C shift needs. */
NEAP_INLINE bool neap__bit(uint64_t w, unsigned i) {
#if defined(__x86_64__)
  bool r;
  __asm__("btq %2, %1" : "=@ccc"(r) : "r"(w), "r"((uint64_t)i));
  return r;
#else
  return (w >> (i & 63u)) & 1u;
#endif
}

NEAP_INLINE uint64_t neap__bit_clear(uint64_t w, unsigned i) {
#if defined(__x86_64__)
  __asm__("btrq %1, %0" : "+r"(w) : "r"((uint64_t)i) : "cc");
  return w;
#else
  return w & ~(1ull << (i & 63u));
#endif
}

/* The index of the lowest set bit of w (non-zero), as a 64-bit value: the
 * builtin returns an int, whose widening costs an instruction on the
 * allocation fast path. `rep bsf` is tzcnt where the CPU has it, bsf
 * (the same result for w != 0) where it does not. */
NEAP_INLINE uint64_t neap__lowest_bit(uint64_t w) {
#if defined(__x86_64__)
  uint64_t i;
  __asm__("rep bsfq %1, %0" : "=r"(i) : "r"(w) : "cc");
  return i;
#else
  return (uint64_t)(unsigned)__builtin_ctzll(w);
#endif
}

/* span.c */
neap_span *neap__span_new(unsigned sizeclass); /* from the metadata pools; NULL on ENOMEM */
void neap__span_delete(neap_span *s);
void neap__span_init_small(neap_span *s, unsigned sizeclass, uintptr_t base, uint64_t first_page, bool zeroed);
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

/* --- arena index (arena.c) */

#define NEAP_ARENA_L1_BITS 10
#define NEAP_ARENA_L2_BITS (NEAP_ADDR_BITS - NEAP_ARENA_SHIFT - NEAP_ARENA_L1_BITS) /* 12 */

typedef struct neap_arena {
  /* page -> span of a live span, else NULL: NEAP_ARENA_PAGES entries, in
   * the page map when the arena is in its run (see below), else in a
   * table of the arena's own. */
  _Atomic(neap_span *) *spans;
  /* In the page map's run: the page info of its pages (see the end of
   * this file), else NULL. */
  _Atomic uint16_t *info_slot;
  _Atomic uint32_t *info_start;
  uintptr_t base;       /* 64 MiB-aligned */
  uint64_t first_page;  /* page index of base */
  /* The page heap's bookkeeping for the scavenger (heap.c, under the heap
   * lock). */
  uint32_t freed_at[NEAP_ARENA_PAGES];  /* free pages: when freed (ms clock) */
  uint64_t lazy[NEAP_ARENA_PAGES / 64]; /* returned with MADV_FREE, not reused since */
  uint16_t chunk_inuse[NEAP_ARENA_PAGES / NEAP_CHUNK_PAGES];     /* pages in use per chunk */
  uint32_t chunk_dense_end[NEAP_ARENA_PAGES / NEAP_CHUNK_PAGES]; /* when it last stopped being
                                                                    dense (ms clock; 0: never) */
} neap_arena;

extern _Atomic(neap_arena **) neap__arena_l1[1u << NEAP_ARENA_L1_BITS];

/* The window: arena.c asks for the heap at NEAP_HEAP_WINDOW first and grows
 * up from there, so nearly every arena lies in these 4 TiB, and a flat
 * table (512 KiB of BSS, touched only where arenas are) maps them with one
 * load. The two-level index above covers every arena, in the window or not;
 * lookups outside the window go there. */
#define NEAP_HEAP_WINDOW ((uintptr_t)0x200000000000ull)
#define NEAP_HEAP_WINDOW_SHIFT NEAP_MAX_HEAP_SHIFT
extern _Atomic(neap_arena *) neap__arena_window[(size_t)1 << (NEAP_HEAP_WINDOW_SHIFT - NEAP_ARENA_SHIFT)];

NEAP_INLINE neap_arena *neap__arena_of_indexed(uintptr_t p) {
  uintptr_t ai = p >> NEAP_ARENA_SHIFT;
  if (NEAP_UNLIKELY(ai >> (NEAP_ARENA_L1_BITS + NEAP_ARENA_L2_BITS))) return NULL;
  neap_arena **l2 = NEAP_LOAD(&neap__arena_l1[ai >> NEAP_ARENA_L2_BITS]);
  if (NEAP_UNLIKELY(l2 == NULL)) return NULL;
  return __atomic_load_n(&l2[ai & ((1u << NEAP_ARENA_L2_BITS) - 1)], __ATOMIC_RELAXED);
}

/* The arena holding address p, or NULL when p is not in neap's heap.
 * O(1): one load in the window, two outside it. Safe for any p (stack,
 * static, another allocator's memory). */
NEAP_INLINE neap_arena *neap__arena_of(uintptr_t p) {
  uintptr_t i = (p >> NEAP_ARENA_SHIFT) - (NEAP_HEAP_WINDOW >> NEAP_ARENA_SHIFT);
  if (NEAP_LIKELY(i < ((uintptr_t)1 << (NEAP_HEAP_WINDOW_SHIFT - NEAP_ARENA_SHIFT))))
    return NEAP_LOAD(&neap__arena_window[i]);
  return neap__arena_of_indexed(p);
}

/* The page map: one flat table of span pointers for a run of adjacent
 * arenas, the run's first page first, so that the free path goes from
 * a pointer to its span with one range check and one load, instead of an
 * arena lookup and then the arena's table: two dependent loads (the second
 * missed the L1 cache on 0.44 of the frees of the mixed microbenchmark).
 * The heap grows up from NEAP_HEAP_WINDOW one adjacent arena after another,
 * so nearly every arena is in the run; the rest keep tables of their own
 * and are found through the arena index (arena.c has the details). Pages
 * in the run with no live span map to NULL, like every page outside it;
 * `size` only grows, and is stored last (release), after the entries it
 * covers exist. */
#define NEAP_PAGEMAP_SHIFT 36 /* the run covers up to 64 GiB: a 64 MiB reservation */
#define NEAP_PAGEMAP_PAGES ((uint64_t)1 << (NEAP_PAGEMAP_SHIFT - NEAP_PAGE_SHIFT))
typedef struct neap_pagemap {
  _Atomic uint64_t size;                   /* bytes the run covers; 0: none yet */
  _Atomic uintptr_t base;                  /* address of the run's first page */
  _Atomic(_Atomic(neap_span *) *) map;     /* its entry */
  _Atomic(_Atomic uint16_t *) info;        /* and its info (6 bytes a page: see the end of this file) */
  /* For the free fast path: the first page's number (address >> page
   * shift), and the info's two tables' addresses less that many entries,
   * so that a page's number indexes them. */
  _Atomic uintptr_t first;
  _Atomic uintptr_t slot_by_number, start_by_number;
} neap_pagemap;
extern neap_pagemap neap__pagemap;

/* Whether p is within the run's reach, the NEAP_PAGEMAP_SHIFT bytes from
 * its base, whose page info is all readable (zero, class 0's, for pages
 * no arena of the run holds); *page is its page's number (p >> page
 * shift), which indexes the page info (below). The free fast path's test:
 * one load, no bound to load. The page info's load waits only for the
 * shift, not for a subtraction too: the push waits for that load, and
 * each cycle on that path is worth about 1% of the mixed microbenchmark
 * at 1,000 slots. Before the run starts, its first page is
 * NEAP_PAGEMAP_NOWHERE's, which reaches no user address. */
#define NEAP_PAGEMAP_NOWHERE ((uintptr_t)1 << 63)
NEAP_INLINE bool neap__pagemap_reach(uintptr_t p, uintptr_t *page) {
  *page = p >> NEAP_PAGE_SHIFT;
  return NEAP_LIKELY(*page - atomic_load_explicit(&neap__pagemap.first, memory_order_acquire) < NEAP_PAGEMAP_PAGES);
}

/* Whether p is in the page map's run; *off is its offset there if so.
 * size is read first: base and map are valid once it is not 0. */
NEAP_INLINE bool neap__pagemap_covers(uintptr_t p, uintptr_t *off) {
  uint64_t size = atomic_load_explicit(&neap__pagemap.size, memory_order_acquire);
  *off = p - NEAP_LOAD(&neap__pagemap.base);
  return NEAP_LIKELY(*off < size);
}
NEAP_INLINE neap_span *neap__pagemap_get(uintptr_t off) {
  return NEAP_LOAD(&NEAP_LOAD(&neap__pagemap.map)[off >> NEAP_PAGE_SHIFT]);
}

/* The span covering p if p is in the page map's run; NULL for a page
 * with no live span and for every p outside the run, where only
 * neap__span_of can tell. The free path's lookup: a NULL goes to its slow
 * path, which looks again with neap__span_of. */
NEAP_INLINE neap_span *neap__span_of_mapped(uintptr_t p) {
  uintptr_t off;
  return neap__pagemap_covers(p, &off) ? neap__pagemap_get(off) : NULL;
}

/* The live span covering p, or NULL. Every page of a live span maps to it;
 * pages of freed spans map to NULL. Safe for any p (stack, static, another
 * allocator's memory). */
NEAP_INLINE neap_span *neap__span_of(uintptr_t p) {
  uintptr_t off;
  if (neap__pagemap_covers(p, &off)) return neap__pagemap_get(off);
  neap_arena *a = neap__arena_of(p);
  if (NEAP_UNLIKELY(a == NULL)) return NULL;
  return NEAP_LOAD(&a->spans[(p >> NEAP_PAGE_SHIFT) & (NEAP_ARENA_PAGES - 1)]);
}

int neap__arena_register(neap_arena *a); /* caller holds the heap lock; 0 or ENOMEM */
/* Reserve n bytes (a multiple of the arena size) exactly at `want`;
 * 0 or ENOMEM (nothing reserved then). */
int neap__arena_reserve_at(uintptr_t want, size_t n);
/* Reserve n bytes arena-aligned where the hints (or the kernel) allow. */
int neap__arena_reserve(size_t n, uintptr_t *out);

/* --- per-thread cache (cache.c) */

/* Free stack capacities (cache.c: "The free stack"). A class's stack
 * starts at NEAP_STACK_START objects or NEAP_STACK_START_BYTES, whichever
 * is fewer (at least one), and may grow, while it overflows with its
 * objects being reused, to NEAP_STACK_MAX objects or NEAP_STACK_MAX_BYTES.
 * What a thread's stacks grow by, all classes together, is its share of
 * NEAP_STACK_TOTAL among the threads, but no more than NEAP_STACK_GROW_MAX
 * and at least NEAP_STACK_GROW_MIN. */
#define NEAP_STACK_START 32u
#define NEAP_STACK_START_BYTES (32u << 10)
#define NEAP_STACK_MAX 4096u
#define NEAP_STACK_MAX_BYTES (512u << 10)
#define NEAP_STACK_TOTAL ((size_t)32 << 20)
#define NEAP_STACK_GROW_MAX ((size_t)4 << 20)
#define NEAP_STACK_GROW_MIN ((size_t)256 << 10)

/* An object's words as neap reads and writes them: the program may have
 * stored anything there, through any type. */
typedef uint64_t neap_word __attribute__((may_alias));
typedef uint16_t neap_half __attribute__((may_alias));

/* One per size class: a stack of objects this thread freed, the cached
 * span and a window of 64 of its objects. `bits` has a 1 for every object
 * of the window that is free; the window is the bitmap word `inuse`
 * points to. The first line holds all that the fast paths read. */
typedef struct neap_slot {
  /* The free stack (cache.c has the essay): a list through the objects
   * themselves, newest first, `top` its head; each object's first word
   * links to the next, and its second holds its free mark (below) under
   * `marker`. `stack` packs n, the objects on it (low 16 bits), with the
   * count of objects ever popped (above), so that a pop updates both with
   * one store. cap is 0 in the empty cache and for class 0, so that the
   * free fast path needs no other test; divmul is the class's
   * (sizeclass.h), on this line for the free fast path's check. */
  _Atomic uint64_t stack;    /* written by this thread only (relaxed) */
  _Atomic(neap_word *) top;  /* written by this thread only */
  uint64_t marker;           /* NEAP_MARK_KEY | this slot's address */
  uint16_t cap;              /* 16 bits, as n: one compare on the free fast path */
  uint16_t unused;
  uint32_t divmul;
  _Atomic uint64_t bits;     /* written by this thread only (relaxed) */
  uintptr_t base;            /* address of the window's object 0 */
  _Atomic uint64_t *inuse;   /* the span's in-use word for the window */
  uint32_t size;             /* the class's object size (set once) */
  uint32_t overflows;        /* of the stack, since the last rebalance (cache.c) */
  /* Slow paths only. */
  neap_span *span;
  /* Objects of this class this thread allocated, counted a window at a
   * time: the untaken rest of the current window (bits) is included, and
   * statistics subtract it. Frees are not counted on any fast path: the
   * statistics derive them from the spans' in-use bitmaps. */
  _Atomic uint64_t nmalloc;
  /* A sequence count, odd while a window is being loaded or dropped, so
   * that the statistics read nmalloc and bits as a consistent pair
   * (cache.c: slot_handed_out). */
  _Atomic uint32_t seq;
  uint32_t cap_start, cap_max; /* the class's stack capacities (above) */
  uint64_t pops_seen;        /* pops at the last overflow (cache.c) */
} __attribute__((aligned(64))) neap_slot;
_Static_assert(sizeof(neap_slot) == 128 && offsetof(neap_slot, span) == 64,
               "the fast paths' fields fill one line");

/* The free mark. Every free object's first two words hold (next, mark):
 * next links the free stack holding it (0 or anything in its span), and
 *   mark = address ^ next ^ key,
 * where key is NEAP_MARK_KEY | (address of the slot whose stack holds it)
 * on a stack, and NEAP_MARK_KEY alone in its span (cache.c). The mark
 * covers the link, so a pop that finds the mark whole may follow it; it
 * names the stack, so an object on another thread's stack is no object
 * of this one's; and a key's top bits make it a non-canonical address, so
 * that no value a program stores by chance (pointers, small numbers,
 * zero) makes an object look free. Handing an object out zeroes its
 * mark: what is left, address ^ next, has the top bits of an address. */
#define NEAP_MARK_TAG 0xa5c3u
#define NEAP_MARK_KEY ((uint64_t)NEAP_MARK_TAG << 48)
/* The key object p's first two words hold (a free object's stack's, or
 * NEAP_MARK_KEY; anything else for a live one). */
NEAP_INLINE uint64_t neap__mark_key(const void *p) {
  const neap_word *w = p;
  return w[1] ^ w[0];
}
/* Whether a key is one a free object may hold. */
NEAP_INLINE bool neap__mark_tagged(uint64_t key) { return key >> 48 == NEAP_MARK_TAG; }
/* The free fast path's test, one 2-byte compare: addresses and links are
 * below 2^47, so a free object's mark has the key's top bits; a live
 * object has them there once in 65,536 by chance, and the slow path then
 * looks at the whole mark. */
NEAP_INLINE bool neap__maybe_free(const void *p) { return ((const neap_half *)p)[7] == NEAP_MARK_TAG; }
/* The slot (an address) a tagged key names; 0 for NEAP_MARK_KEY. */
NEAP_INLINE uintptr_t neap__mark_holder(uint64_t key) { return (uintptr_t)(key & ((1ull << 48) - 1)); }
NEAP_INLINE void neap__mark_set(void *p, uint64_t next, uint64_t key) {
  neap_word *w = p;
  w[0] = next;
  w[1] = next ^ key;
}

/* Hands out the lowest free object of a slot's window: b is the window's
 * bits (non-zero). The whole of the allocation fast path, shared by
 * malloc.c and cache.c. */
NEAP_INLINE void *neap__slot_take(neap_slot *slot, uint64_t b) {
  uint64_t i = neap__lowest_bit(b);
  NEAP_STORE(&slot->bits, b & (b - 1));
  NEAP_STORE(slot->inuse, NEAP_LOAD(slot->inuse) | (1ull << i));
  neap_word *p = (neap_word *)(slot->base + i * slot->size);
  NEAP_TRACK_ALLOC(p, slot->size, 0);
  p[1] = 0; /* its free mark */
  return p;
}

/* A slot's `stack` word: objects on the stack, and popped ever. */
#define NEAP_STACK_N_BITS 16
_Static_assert(NEAP_STACK_MAX < (1u << NEAP_STACK_N_BITS) && NEAP_STACK_N_BITS == 16,
               "n fits its bits, which the free fast path compares with cap as 16-bit numbers");
#define NEAP_STACK_POP (((uint64_t)1 << NEAP_STACK_N_BITS) - 1) /* n - 1, pops + 1 */
NEAP_INLINE uint32_t neap__stack_n(uint64_t w) { return (uint32_t)(w & ((1u << NEAP_STACK_N_BITS) - 1)); }
NEAP_INLINE uint64_t neap__stack_pops(uint64_t w) { return w >> NEAP_STACK_N_BITS; }

/* An object leaving a free stack no longer holds its free mark: the
 * program wrote it after freeing it, or freed it twice (cache.c). */
NEAP_COLD __attribute__((noreturn)) void neap__stack_mark_lost(void *p);

/* Where every free stack ends: the link of its oldest object, and the top
 * of an empty one. It holds no mark, so a pop that reaches it (a stack
 * torn by a signal handler that re-entered malloc or free in the middle
 * of a push or pop: its count and its top disagree) aborts on the mark
 * check instead of following a null link. */
extern const neap_word neap__stack_end[2];

/* Pushes object p (checked free-able) on a slot's free stack, whose stack
 * word is w (n below cap). */
NEAP_INLINE void neap__slot_push(neap_slot *slot, void *p, uint64_t w) {
  neap_word *top = NEAP_LOAD(&slot->top);
  NEAP_TRACK_FREE(p);
  NEAP_TRACK_QUIET_BEGIN();
  neap__mark_set(p, (uintptr_t)top, slot->marker);
  NEAP_TRACK_QUIET_END();
  NEAP_STORE(&slot->top, (neap_word *)p);
  NEAP_STORE(&slot->stack, w + 1);
}

/* Pops the newest object of a slot's free stack: w is its stack word,
 * with n > 0 objects. The mark is checked before its link is followed. */
NEAP_INLINE void *neap__slot_pop(neap_slot *slot, uint64_t w) {
  neap_word *p = NEAP_LOAD(&slot->top);
  NEAP_TRACK_QUIET_BEGIN();
  uint64_t next = p[0];
  uint64_t key = neap__mark_key(p);
  NEAP_TRACK_QUIET_END();
  if (NEAP_UNLIKELY(key != slot->marker)) neap__stack_mark_lost(p);
  NEAP_STORE(&slot->top, (neap_word *)next);
  NEAP_STORE(&slot->stack, w + NEAP_STACK_POP);
  NEAP_TRACK_ALLOC(p, slot->size, 0);
  p[1] = 0; /* its free mark */
  return p;
}

struct neap_cache {
  neap_slot slot[NEAP_NUM_CLASSES];
  /* The other spans this cache owns, per class: with free objects, and
   * full. Only this thread touches them. */
  neap_link own_partial[NEAP_NUM_CLASSES];
  neap_link own_full[NEAP_NUM_CLASSES];
  /* Empty spans kept for the next refills (cache.c: refile). The only
   * owned lists another thread may touch (neap__cache_trim), so they,
   * nempty and empty_pages are guarded by empty_lock, a spin lock held for
   * a few instructions: the owner takes it only on slow paths. */
  neap_link own_empty[NEAP_NUM_CLASSES];
  uint8_t nempty[NEAP_NUM_CLASSES];
  uint32_t empty_pages;      /* in all the own_empty lists */
  atomic_flag empty_lock;
  _Atomic uint64_t refills;  /* slow refills so far (the owner writes) */
  uint64_t trim_seen;        /* refills at the last trim (trimmers, under the registry lock) */
  /* Owned spans that other threads freed into while they were parked:
   * pushed by a central's drain (under its lock), popped by this thread. */
  _Atomic(neap_span *) inbox;
  /* What the free stacks' capacities have grown by, in bytes: the sum of
   * (cap - cap_start) * size over the classes (cache.c). */
  size_t stack_grown;
  uint32_t overflows;        /* of all stacks, since the last rebalance */
  uint32_t rebalances;       /* of the stack capacities, so far */
  uint32_t stack_epoch;      /* the last neap__cache_stack_trim this thread obeyed */
  /* Large objects made, and their bytes (growth in place included): the
   * page heap's span walk counts the live ones (stats.c). */
  _Atomic uint64_t large_nmalloc, large_bytes_alloc;
  neap_cache *reg_next, *reg_prev;            /* registry of live caches */
};

/* --- page info
 *
 * Beside the page map's span pointers, two tables that the free fast path
 * reads instead of the span, whose line misses the L1 cache on most frees
 * of a program that frees at random (0.72 misses per free in the mixed
 * microbenchmark). For each page of the run:
 *   slot   (2 bytes) the byte offset of its span's class's slot in a
 *          cache; 0, class 0's slot, whose stack holds nothing, for pages
 *          of large spans and pages with no span;
 *   start  (4 bytes) minus its span's address, modulo 2^32, so that a
 *          pointer's offset in its span is one 32-bit add.
 * The tables lie in one reservation, the starts NEAP_PINFO_STARTS bytes
 * after the slots, so that one base serves both loads, and they are apart
 * because the push waits for the slot's address: with a table of its own
 * the slot offset needs no masking, one add after its load. (Packing the
 * slot with the page's index in its span into 2 bytes, as before, cost a
 * mask on that path and five operations more for the check; 4-byte entries
 * with the slot offset and the page's phase made gcc add an address
 * computation to the path. Both measured 3-5% slower in the mixed
 * microbenchmark at 1,000 slots.) At 6 bytes a page the info of a few
 * thousand pages stays in the L1 cache. The two are written apart, under
 * the heap lock; only a free of a pointer into a span that is being
 * replaced, which is misuse, can read one old and one new. */
#define NEAP_PINFO_STARTS (NEAP_PAGEMAP_PAGES * sizeof(uint16_t))
#define NEAP_PINFO_BYTES (NEAP_PAGEMAP_PAGES * (sizeof(uint16_t) + sizeof(uint32_t)))
_Static_assert(offsetof(neap_cache, slot) == 0 && NEAP_NUM_CLASSES * sizeof(neap_slot) <= 0x10000,
               "page info's slot offsets");
/* The page info of the page_in_span'th page of span s (NULL: none) at
 * address page_addr. */
NEAP_INLINE uint16_t neap__pinfo_slot_of(const neap_span *s) {
  return s != NULL && s->sizeclass != 0 ? (uint16_t)(s->sizeclass * sizeof(neap_slot)) : 0;
}
NEAP_INLINE uint32_t neap__pinfo_start_of(uint64_t page_in_span, uintptr_t page_addr) {
  return (uint32_t)(page_in_span << NEAP_PAGE_SHIFT) - (uint32_t)page_addr;
}
/* The slot, in cache c, of the class of page number `page` (in reach:
 * neap__pagemap_reach). */
NEAP_INLINE neap_slot *neap__pinfo_slot(neap_cache *c, uintptr_t page) {
  uintptr_t slots = NEAP_LOAD(&neap__pagemap.slot_by_number);
  return (neap_slot *)(void *)((char *)c + NEAP_LOAD((_Atomic uint16_t *)(slots + page * sizeof(uint16_t))));
}
/* The offset of p in its span, p in page number `page` of a small span. */
NEAP_INLINE uint32_t neap__pinfo_offset(uintptr_t page, uintptr_t p) {
  uintptr_t starts = NEAP_LOAD(&neap__pagemap.start_by_number);
  return NEAP_LOAD((_Atomic uint32_t *)(starts + page * sizeof(uint32_t))) + (uint32_t)p;
}

#endif
