/* Arenas: the heap's address space, and the index from any address to it.
 *
 * The heap lives in 64 MiB arenas, reserved (PROT_NONE, no memory) ahead
 * of need and committed 4 MiB chunk by chunk as the page heap grows. Each
 * arena is 64 MiB-aligned, so an address's arena number is simply
 * addr >> 26, and a two-level index maps that number to the arena's
 * off-heap record (struct neap_arena), which maps each 8 KiB page to the
 * span that holds it:
 *
 *   addr >> 26 = [ l1: 10 bits | l2: 12 bits ]   (48-bit user addresses)
 *   neap__arena_l1[l1] -> l2 block of 4096 arena pointers (32 KiB, made on
 *   first use) -> neap_arena -> spans[(addr >> 13) % 8192]
 *
 * The page map. The free path does not go through the arena at all: the
 * span tables of a run of adjacent arenas are one flat array (pagemap.h,
 * neap_pagemap), so a pointer's span is one range check and one load;
 * beside it, the run's page info (6 bytes a page in two tables: pagemap.h)
 * gives the free fast path a small object's slot and offset in its span.
 * The run starts at the first arena registered and grows by each arena
 * reserved right after it, which is how the heap grows; it can cover 64
 * GiB: a 64 MiB reservation (no access, no memory) for the span pointers
 * and 48 MiB for the page info (readable zeros, no memory), made with the
 * first arena, of which 64 KiB and 48 KiB per arena are committed as the
 * arena is registered and count as arena metadata. An arena that does not
 * extend the run (its neighbour's address was taken, or the run is full)
 * gets a table of its own from the metadata allocator, and lookups of its
 * pages go through the arena index: a few instructions more, nothing
 * else.
 *
 * Any pointer at all can be looked up: a stack, static, or foreign-heap
 * address finds a NULL at one of the two levels and is "not ours", in
 * O(1). The L1 table is 8 KiB of BSS.
 *
 * Where the heap goes. Go asks for 0x00c0<<32 first (a recognisable,
 * mostly-zero prefix that helps conservative scanners). That range belongs
 * to Go if the process also holds a Go runtime (cgo, a plugin), and it is
 * inside AddressSanitizer's shadow gap [0x00008fff7000, 0x02008fff7000).
 * neap asks for 0x200000000000 (32 TiB) first and grows upward from there:
 * it is in ASan's high memory, far below where the kernel puts mmaps,
 * shared libraries and stacks (just under 0x7fffffffffff), above PIE
 * executables and brk (0x55..-0x56..), clear of ASan's allocator
 * (0x600000000000) and MSan's application ranges, and 768 GiB below Go's
 * hint for the same terabyte (0x20c000000000). Each hint is a wish: if the
 * kernel puts the reservation elsewhere (something already lives there,
 * or ThreadSanitizer, which ignores hints outside its application ranges),
 * neap moves its next hint up by 1 TiB; after 16 refusals it takes what
 * the kernel offers, over-reserving by 64 MiB to align it. Nothing relies
 * on the heap being contiguous: the page allocator fences non-adjacent
 * arenas (heap.c).
 *
 * Locking: the heap lock covers reservation and registration. Lookups take
 * no lock: index entries are written once (NULL -> value), the page map's
 * size only grows and is stored (a release store) after the tables it adds exist,
 * and a pointer being freed was handed out after its arena was registered.
 */
#include <errno.h>

#include "meta.h"
#include "track.h"
#include "gc.h"
#include "pagemap.h"
#include "os/os.h"

#define HINT_FIRST NEAP_HEAP_WINDOW
#define HINT_STEP ((uintptr_t)1 << 40)
#define HINT_TRIES 16

_Atomic(neap_arena **) neap__arena_l1[1u << NEAP_ARENA_L1_BITS];

static uintptr_t next_hint = HINT_FIRST; /* heap lock */
static unsigned hint_failures;

int neap__arena_reserve_at(uintptr_t want, size_t n) {
  void *p;
  if (neap__os_reserve((void *)want, n, &p) != 0) return ENOMEM;
  if ((uintptr_t)p == want) {
    neap__os_name(p, n, "neap-heap");
    return 0;
  }
  neap__os_unmap(p, n);
  return ENOMEM;
}

int neap__arena_reserve(size_t n, uintptr_t *out) {
  void *p;
  while (hint_failures < HINT_TRIES) {
    uintptr_t hint = next_hint;
    if (neap__os_reserve((void *)hint, n, &p) != 0) return ENOMEM;
    if ((uintptr_t)p == hint) {
      next_hint = hint + n;
      neap__os_name(p, n, "neap-heap");
      *out = hint;
      return 0;
    }
    neap__os_unmap(p, n);
    hint_failures++;
    next_hint = neap__align_up(hint + HINT_STEP, HINT_STEP);
  }
  /* Take whatever the kernel gives, aligned by over-reserving. */
  if (neap__os_reserve(NULL, n + NEAP_ARENA_SIZE, &p) != 0) return ENOMEM;
  uintptr_t raw = (uintptr_t)p, aligned = neap__align_up(raw, NEAP_ARENA_SIZE);
  if (aligned > raw) neap__os_unmap(p, aligned - raw);
  uintptr_t end = raw + n + NEAP_ARENA_SIZE;
  if (end > aligned + n) neap__os_unmap((void *)(aligned + n), end - (aligned + n));
  neap__os_name((void *)aligned, n, "neap-heap");
  *out = aligned;
  return 0;
}

/* --- the page map (pagemap.h) */

/* Written under the heap lock. The base is nowhere until the run starts,
 * so that the free fast path's reach (pagemap.h) takes no pointer in. */
neap_pagemap neap__pagemap = {.base = NEAP_PAGEMAP_NOWHERE, .first = NEAP_PAGEMAP_NOWHERE >> NEAP_PAGE_SHIFT};
static bool map_failed;

/* Reserves n bytes for one of the page map's tables (named): no access,
 * or readable as zeros (the page info, which the free fast path reads
 * anywhere in the run's reach). */
static void *reserve_table(size_t n, bool readable) {
  void *p;
  if ((readable ? neap__os_reserve_zero(n, &p) : neap__os_reserve(NULL, n, &p)) != 0) return NULL;
  neap__os_name(p, n, "neap-meta");
  return p;
}

/* The tables for a's pages in the page map, committed, if a extends the
 * run (the run's first arena starts it): spans in a->spans, page info in
 * a->info_slot and a->info_start. false if it does not, or if the map
 * cannot be had, and a keeps a span table of its own. */
static bool pagemap_extend(neap_arena *a) {
  const size_t table = NEAP_ARENA_PAGES * sizeof(neap_span *), itable = NEAP_ARENA_PAGES * sizeof(uint16_t);
  _Atomic(neap_span *) *map = NEAP_LOAD(&neap__pagemap.map);
  _Atomic uint16_t *info = NEAP_LOAD(&neap__pagemap.info);
  a->info_slot = NULL;
  a->info_start = NULL;
  if (map == NULL) {
    if (map_failed || (map = reserve_table(NEAP_PAGEMAP_PAGES * sizeof(neap_span *), false)) == NULL ||
        (info = reserve_table(NEAP_PINFO_BYTES, true)) == NULL) {
      if (map != NULL) neap__os_unmap(map, NEAP_PAGEMAP_PAGES * sizeof(neap_span *));
      map_failed = true;
      return false;
    }
    NEAP_STORE(&neap__pagemap.map, map);
    NEAP_STORE(&neap__pagemap.info, info);
  }
  uint64_t n = NEAP_LOAD(&neap__pagemap.size) >> NEAP_PAGE_SHIFT; /* pages in the run */
  if (n != 0 && (a->base != NEAP_LOAD(&neap__pagemap.base) + (n << NEAP_PAGE_SHIFT) || n >= NEAP_PAGEMAP_PAGES))
    return false;
  if (neap__os_commit_meta(map + n, table) != 0) return false;
  neap__meta_note_mapped(table, NEAP_META_ARENA);
  _Atomic uint32_t *start = (_Atomic uint32_t *)(void *)((char *)info + NEAP_PINFO_STARTS) + n;
  if (neap__os_commit_meta(info + n, itable) != 0 || neap__os_commit_meta(start, 2 * itable) != 0)
    return false; /* what was committed stays so, unused */
  neap__meta_note_mapped(3 * itable, NEAP_META_ARENA);
  /* The first page's number last (a release store): the fast path's reach reads
   * the info once it sees it, before the size says that any page is
   * mapped. */
  if (n == 0) {
    uintptr_t first = a->base >> NEAP_PAGE_SHIFT;
    NEAP_STORE(&neap__pagemap.slot_by_number, (uintptr_t)info - first * sizeof(uint16_t));
    NEAP_STORE(&neap__pagemap.start_by_number, (uintptr_t)info + NEAP_PINFO_STARTS - first * sizeof(uint32_t));
    atomic_store_explicit(&neap__pagemap.base, a->base, memory_order_release);
    atomic_store_explicit(&neap__pagemap.first, first, memory_order_release);
  }
  a->spans = map + n;
  a->info_slot = info + n;
  a->info_start = start;
  return true;
}

int neap__arena_register(neap_arena *a) {
  uintptr_t ai = a->base >> NEAP_ARENA_SHIFT;
  static bool tracked;
  if (!tracked) { /* heap addresses, not pointers that keep objects alive (track.h, gc.h) */
    NEAP_TRACK_NOT_ROOT(&neap__pagemap, sizeof neap__pagemap);
    NEAP_TRACK_NOT_ROOT(&next_hint, sizeof next_hint);
    neap__gc_not_root(&neap__pagemap, sizeof neap__pagemap);
    neap__gc_not_root(&next_hint, sizeof next_hint);
    tracked = true;
  }
  if (ai >> (NEAP_ARENA_L1_BITS + NEAP_ARENA_L2_BITS)) return ENOMEM; /* beyond 48 bits */
  bool mapped = pagemap_extend(a);
  if (!mapped && (a->spans = neap__meta_alloc(NEAP_ARENA_PAGES * sizeof(neap_span *), NEAP_META_ARENA)) == NULL)
    return ENOMEM;
  _Atomic(neap_arena **) *slot = &neap__arena_l1[ai >> NEAP_ARENA_L2_BITS];
  neap_arena **l2 = NEAP_LOAD(slot);
  if (l2 == NULL) {
    l2 = neap__meta_alloc(sizeof(neap_arena *) << NEAP_ARENA_L2_BITS, NEAP_META_ARENA);
    if (l2 == NULL) return ENOMEM;
    atomic_store_explicit(slot, l2, memory_order_release);
  }
  __atomic_store_n(&l2[ai & ((1u << NEAP_ARENA_L2_BITS) - 1)], a, __ATOMIC_RELEASE);
  if (mapped) /* last: the run covers a once its table exists */
    atomic_store_explicit(&neap__pagemap.size, NEAP_LOAD(&neap__pagemap.size) + NEAP_ARENA_SIZE,
                          memory_order_release);
  return 0;
}
