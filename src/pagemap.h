/* The address indexes: the arena index (any address to its arena, or
 * none), the page map (a page to its span in one load, for the free path)
 * and the page info beside it. arena.c has the essay.
 */
#ifndef NEAP_PAGEMAP_H
#define NEAP_PAGEMAP_H

#include "span.h"

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
} neap_arena;

extern _Atomic(neap_arena **) neap__arena_l1[1u << NEAP_ARENA_L1_BITS];

/* Where arena.c asks for the heap first (it grows up from there): 4 TiB
 * from 32 TiB (arena.c says why there). */
#define NEAP_HEAP_WINDOW ((uintptr_t)0x200000000000ull)
#define NEAP_HEAP_WINDOW_SHIFT NEAP_MAX_HEAP_SHIFT

/* The arena holding address p, or NULL when p is not in neap's heap. Two
 * loads; safe for any p (stack, static, another allocator's memory). The
 * free path does not come here (the page map, below). */
NEAP_INLINE neap_arena *neap__arena_of(uintptr_t p) {
  uintptr_t ai = p >> NEAP_ARENA_SHIFT;
  if (NEAP_UNLIKELY(ai >> (NEAP_ARENA_L1_BITS + NEAP_ARENA_L2_BITS))) return NULL;
  neap_arena **l2 = NEAP_LOAD(&neap__arena_l1[ai >> NEAP_ARENA_L2_BITS]);
  if (NEAP_UNLIKELY(l2 == NULL)) return NULL;
  return __atomic_load_n(&l2[ai & ((1u << NEAP_ARENA_L2_BITS) - 1)], __ATOMIC_RELAXED);
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
 * slot with the page's index in its span into 2 bytes costs a
 * mask on that path and five operations more for the check; 4-byte entries
 * with the slot offset and the page's phase made gcc add an address
 * computation to the path. Both measure 3-5% slower in the mixed
 * microbenchmark at 1,000 slots.) At 6 bytes a page the info of a few
 * thousand pages stays in the L1 cache. The heap zeroes both when it maps
 * a span's pages, and the span's frontend writes them before it hands out
 * an object (cache.c); only a free of a pointer into a span that is being
 * replaced, which is misuse, can read one old and one new. */
#define NEAP_PINFO_STARTS (NEAP_PAGEMAP_PAGES * sizeof(uint16_t))
#define NEAP_PINFO_BYTES (NEAP_PAGEMAP_PAGES * (sizeof(uint16_t) + sizeof(uint32_t)))
NEAP_INLINE uint32_t neap__pinfo_start_of(uint64_t page_in_span, uintptr_t page_addr) {
  return (uint32_t)(page_in_span << NEAP_PAGE_SHIFT) - (uint32_t)page_addr;
}
/* The offset of p in its span, p in page number `page` of a small span. */
NEAP_INLINE uint32_t neap__pinfo_offset(uintptr_t page, uintptr_t p) {
  uintptr_t starts = NEAP_LOAD(&neap__pagemap.start_by_number);
  return NEAP_LOAD((_Atomic uint32_t *)(starts + page * sizeof(uint32_t))) + (uint32_t)p;
}

#endif
