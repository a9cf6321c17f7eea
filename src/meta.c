/* Off-heap metadata: where spans, thread caches and arena records live.
 *
 * neap never puts its bookkeeping next to user data, so a buffer overrun
 * in the program cannot reach a span's bitmaps, and metadata pages can be
 * counted apart from the heap. Two allocators, both from the Go runtime:
 *   - a persistent bump allocator (persistentalloc): carves zeroed blocks
 *     out of 1 MiB mappings and never frees them;
 *   - fixed-size pools (fixalloc): a free list per object size, refilled
 *     from the bump allocator; freed objects are reused, never unmapped.
 *
 * Invariants: every block is 64-byte aligned (no false sharing between
 * two caches or two spans' hot words) and zeroed when handed out.
 * Accounting follows Go's XSys/XInuse pairs: bytes carved out of a
 * mapping count as that kind's sys forever (pools never give memory
 * back), bytes handed out now as its inuse, and the uncarved tail of the
 * current mapping as slack (other_sys in the statistics).
 *
 * Locking: one mutex, a leaf lock: taken with any other neap lock held,
 * and nothing is called while holding it except the os layer.
 */
#include <pthread.h>
#include <string.h>

#include "meta.h"
#include "track.h"
#include "os/os.h"

#define META_BLOCK ((size_t)1 << 20)

static neap_mutex meta_lock = NEAP_MUTEX_INIT(META);
static uintptr_t bump_next, bump_end;
static size_t meta_mapped, meta_inuse;
static size_t kind_sys[NEAP_META_KINDS], kind_inuse[NEAP_META_KINDS];

/* Counts size bytes of kind as mapped for good and in use now. */
static void count_locked(size_t size, neap_meta_kind kind) {
  meta_inuse += size;
  kind_sys[kind] += size;
  kind_inuse[kind] += size;
}

static void *bump_locked(size_t size, neap_meta_kind kind) {
  size = neap__align_up(size, NEAP_CACHE_LINE);
  if (bump_end - bump_next < size) {
    size_t want = size > META_BLOCK ? neap__align_up(size, neap__os_page_size()) : META_BLOCK;
    void *p;
    if (neap__os_map(want, &p) != 0) return NULL;
    neap__os_name(p, want, "neap-meta");
    NEAP_TRACK_NOT_ROOT(p, want); /* its pointers to objects keep nothing alive */
    __atomic_store_n(&meta_mapped, meta_mapped + want, __ATOMIC_RELAXED); /* read unlocked: neap__meta_mapped */
    if (size > META_BLOCK / 2) { /* a big one-off: keep the current block */
      count_locked(want, kind);
      return p;
    }
    bump_next = (uintptr_t)p;
    bump_end = bump_next + want;
  }
  void *r = (void *)bump_next;
  bump_next += size;
  count_locked(size, kind);
  return r;
}

void *neap__meta_alloc(size_t size, neap_meta_kind kind) {
  neap__lock(&meta_lock);
  void *p = bump_locked(size, kind);
  neap__unlock(&meta_lock);
  return p; /* fresh mappings are zero */
}

void *neap__pool_alloc(neap_pool *pool) {
  neap__lock(&meta_lock);
  void *p = pool->free;
  if (p != NULL) {
    pool->free = *(void **)p;
    meta_inuse += neap__align_up(pool->size, NEAP_CACHE_LINE);
    kind_inuse[pool->kind] += neap__align_up(pool->size, NEAP_CACHE_LINE);
  } else {
    p = bump_locked(pool->size, pool->kind);
  }
  if (p != NULL) pool->inuse++;
  neap__unlock(&meta_lock);
  if (p != NULL) memset(p, 0, pool->size);
  return p;
}

void neap__pool_free(neap_pool *pool, void *x) {
  neap__lock(&meta_lock);
  *(void **)x = pool->free;
  pool->free = x;
  pool->inuse--;
  meta_inuse -= neap__align_up(pool->size, NEAP_CACHE_LINE);
  kind_inuse[pool->kind] -= neap__align_up(pool->size, NEAP_CACHE_LINE);
  neap__unlock(&meta_lock);
}

void neap__meta_note_mapped(size_t size, neap_meta_kind kind) {
  neap__lock(&meta_lock);
  __atomic_store_n(&meta_mapped, meta_mapped + size, __ATOMIC_RELAXED);
  count_locked(size, kind);
  neap__unlock(&meta_lock);
}

void neap__meta_stats(neap_meta_stats *out) {
  neap__lock(&meta_lock);
  out->mapped = meta_mapped;
  out->inuse = meta_inuse;
  for (int k = 0; k < NEAP_META_KINDS; k++) out->sys[k] = kind_sys[k], out->kind_inuse[k] = kind_inuse[k];
  neap__unlock(&meta_lock);
}

size_t neap__meta_mapped(void) { return __atomic_load_n(&meta_mapped, __ATOMIC_RELAXED); }

void neap__meta_fork(neap_fork_phase phase) {
  neap__lock_fork(&meta_lock, phase);
}

#if NEAP_TESTING
/* --- the heap checker's part (check.c): the accounts, under the lock. */
#include "check.h"

void neap__meta_check_targets(neap_check_targets *t) { t->meta_inuse = &meta_inuse; }

void neap__meta_check(neap_check *ck) {
  neap__lock(&meta_lock);
  size_t inuse = 0, sys = 0;
  for (int k = 0; k < NEAP_META_KINDS; k++) {
    NEAP_CHECK(ck, kind_inuse[k] <= kind_sys[k], "metadata in use exceeds what its kind was given", &kind_inuse[k]);
    inuse += kind_inuse[k];
    sys += kind_sys[k];
  }
  NEAP_CHECK(ck, inuse == meta_inuse, "metadata in use is not the sum of its kinds", &meta_inuse);
  NEAP_CHECK(ck, sys <= meta_mapped && bump_next <= bump_end, "metadata carved exceeds what is mapped", &meta_mapped);
  neap__unlock(&meta_lock);
}
#endif
