/* The page heap (Go's mheap): the backend that gives runs of pages to
 * spans of every kind, as snmalloc's backend serves its frontends and Go's
 * mheap.allocSpan serves every span class.
 *
 * What it owns: the page allocator (pagealloc.c) over a dense page-index
 * space, the arenas in index order, the growth frontier, the page map's
 * entries (every page of a span maps to its span; pagemap.h) and the
 * memory limit's accounts. What it does not know: what a span holds. A
 * frontend makes a span record (span.c), asks for pages for it
 * (neap__heap_alloc_pages) and writes its own page info on them (a small
 * span's class slot and offsets: cache.c); the heap maps the pages to the
 * record, zeroes their page info, and takes them back when the frontend
 * is done (neap__heap_free_pages). A large object is a span of one object;
 * a collected one will be a span of another kind, with nothing to change
 * here.
 *
 * The index space. Arena k, in order of reservation, holds page indexes
 * [k*8192, (k+1)*8192). When arenas are reserved back to back (the normal
 * case: arena.c's hints), index order is address order and "lowest index
 * first fit" is Go's address-ordered first fit. When the kernel puts a new
 * arena elsewhere, its first chunk is never added to the page allocator:
 * those never-grown pages count as in use, so no run of pages can straddle
 * two arenas that are not adjacent in memory. Fence cost: 4 MiB of address
 * space, no memory.
 *
 * Running short. When no free run fits, the heap first asks its
 * reclaimers (hooks the frontends register: the central lists give back
 * the spans other threads' frees emptied) and then grows by whole 4 MiB
 * chunks at the frontier: it commits them (os layer) and adds them to the
 * page allocator as free and scavenged, i.e. fresh from the OS and known
 * to read as zero. A commit that fails stops the growth there: the chunks
 * committed before it are added, and the allocation fails with ENOMEM.
 *
 * The memory limit bounds what neap holds from the OS: grown pages not
 * returned, plus metadata. An allocation that could pass it first runs the
 * reclaimers and the scavenger's return function, without the heap lock,
 * aiming at 95% of the limit (Go's goal) so that the next allocations
 * find room. Soft limit: the allocation goes on whatever came of it, and
 * while the limit stays out of reach (the live heap is that big) no new
 * attempt is made until 1/32 more is held, so that a program above its
 * soft limit is not slowed on every span. Hard limit: the allocation fails
 * unless it fits, a test made again under the heap lock as it takes the
 * pages.
 *
 * The scavenger keeps its own index of the pages (scav.c): the heap tells
 * it which pages were taken, freed and returned through the observer it
 * registers, and lends it runs of free pages to return.
 *
 * Invariants: the page map's entry of a page is a span iff the page belongs
 * to that span; pages_inuse is the sum of the spans' pages; the page
 * allocator's grown pages in use are pages_inuse plus the run the
 * scavenger has borrowed while it returns it (fence pages are never grown).
 *
 * Locking: one mutex, the heap lock, around every page-allocator call and
 * every change to the page map and the arenas; the observer's calls
 * (but after_alloc and kick) run under it. Hooks that may take other locks
 * (reclaimers, the return function) run without it.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "heap.h"
#include "meta.h"
#include "os/os.h"
#include "pagealloc.h"
#include "pagemap.h"
#include "track.h"

/* The heap lock, apart from the state it guards: an initialised mutex
 * would put that state's 512 KiB in the library's file-backed data, where
 * the kernel maps a read fault's neighbours too (fault-around: up to
 * 64 KiB of resident pages per fault); zero-initialised, it is anonymous
 * BSS, resident page by page as written. */
static neap_mutex heap_lock = NEAP_MUTEX_INIT(HEAP);

static struct {
  bool inited;
  neap_pagealloc pa;
  uint64_t grown;       /* pages [0, grown) of the index space are grown or fenced */
  uint64_t reserved;    /* pages [0, reserved) belong to reserved arenas */
  size_t narenas;
  uint64_t pages_inuse; /* in spans */
  _Atomic uint64_t pages_limit; /* the memory limit in pages (0: none): see limit_admit */
  uint64_t limit_quiet; /* soft limit out of reach: no new attempt below this many pages held */
  bool limit_hard;
  void (*limit_return)(size_t bytes, bool all);
  bool nothp;           /* NEAPDEBUG=disablethp: arenas get MADV_NOHUGEPAGE */
  neap_reclaimer *reclaimers[NEAP_MAX_RECLAIMERS];
  _Atomic unsigned nreclaimers;
  _Atomic(const neap_heap_observer *) observer; /* set once, before the first pages go */
  neap_arena *arenas[NEAP_MAX_ARENAS]; /* index order; 512 KiB of BSS, touched as used */
} heap;

/* The observer until init.c registers the scavenger's: nothing to tell. */
static int no_arena(size_t k) { return (void)k, 0; }
static void no_grew(uint64_t bytes) { (void)bytes; }
static uint64_t no_taken(uint64_t first, uint64_t n) { return (void)first, (void)n, 0; }
static void no_freed(uint64_t first, uint64_t n) { (void)first, (void)n; }
static void no_returned(uint64_t first, uint64_t n, bool lazy) { (void)first, (void)n, (void)lazy; }
static void no_event(void) {}
static const neap_heap_observer no_observer = {no_arena, no_grew, no_taken, no_freed, no_returned, no_event, no_event};

static const neap_heap_observer *observer(void) {
  const neap_heap_observer *o = atomic_load_explicit(&heap.observer, memory_order_acquire);
  return o != NULL ? o : &no_observer;
}

static uintptr_t page_addr(uint64_t page) {
  neap_arena *a = heap.arenas[page / NEAP_ARENA_PAGES];
  return a->base + ((uintptr_t)(page % NEAP_ARENA_PAGES) << NEAP_PAGE_SHIFT);
}

static uint64_t held_pages_locked(void) {
  uint64_t heap_pages = heap.inited ? neap__pa_pages_grown(&heap.pa) - neap__pa_pages_scavenged(&heap.pa) : 0;
  uint64_t meta = neap__meta_mapped() + (heap.inited ? neap__pa_mapped_bytes(&heap.pa) : 0);
  return heap_pages + ((meta + NEAP_PAGE_SIZE - 1) >> NEAP_PAGE_SHIFT);
}

static int init_locked(void) {
  if (heap.inited) return 0;
  int err = neap__pa_init(&heap.pa);
  if (err == 0) heap.inited = true;
  return err;
}

neap_arena *neap__heap_arena(size_t k) {
  return k < __atomic_load_n(&heap.narenas, __ATOMIC_ACQUIRE) ? heap.arenas[k] : NULL;
}

/* --- growth */

/* Reserve and register arenas so that `npages` more pages fit after the
 * frontier. */
static int reserve_locked(uint64_t npages) {
  uint64_t end = heap.grown + npages;
  if (end <= heap.reserved) return 0;
  size_t k = (size_t)((end - heap.reserved + NEAP_ARENA_PAGES - 1) / NEAP_ARENA_PAGES);
  uintptr_t base = 0;
  bool adjacent = false;
  if (heap.narenas > 0) {
    uintptr_t want = heap.arenas[heap.narenas - 1]->base + NEAP_ARENA_SIZE;
    adjacent = neap__arena_reserve_at(want, k * NEAP_ARENA_SIZE) == 0;
    if (adjacent) base = want;
  }
  if (!adjacent) {
    /* A fresh region: it must hold the whole request plus the fence. */
    uint64_t need = npages + (heap.narenas > 0 ? NEAP_CHUNK_PAGES : 0);
    k = (size_t)((need + NEAP_ARENA_PAGES - 1) / NEAP_ARENA_PAGES);
    if (neap__arena_reserve(k * NEAP_ARENA_SIZE, &base) != 0) return ENOMEM;
  }
  if (heap.narenas + k > NEAP_MAX_ARENAS) {
    neap__os_unmap((void *)base, k * NEAP_ARENA_SIZE);
    return ENOMEM;
  }
  if (heap.nothp) neap__os_nohugepage((void *)base, k * NEAP_ARENA_SIZE);
  for (size_t i = 0; i < k; i++) {
    neap_arena *a = neap__meta_alloc(sizeof(neap_arena), NEAP_META_ARENA);
    if (a == NULL) return ENOMEM; /* arenas registered so far stay valid */
    a->base = base + i * NEAP_ARENA_SIZE;
    a->first_page = (uint64_t)heap.narenas * NEAP_ARENA_PAGES;
    if (neap__arena_register(a) != 0 || observer()->arena_added(heap.narenas) != 0) return ENOMEM;
    if (i == 0 && !adjacent) heap.grown = a->first_page + (heap.narenas > 0 ? NEAP_CHUNK_PAGES : 0);
    heap.arenas[heap.narenas] = a;
    __atomic_store_n(&heap.narenas, heap.narenas + 1, __ATOMIC_RELEASE); /* neap__heap_arena reads it unlocked */
    heap.reserved += NEAP_ARENA_PAGES;
  }
  return 0;
}

/* Grow the page allocator by at least npages at the frontier. */
static int grow_locked(uint64_t npages) {
  uint64_t n = neap__align_up(npages, NEAP_CHUNK_PAGES);
  if (reserve_locked(n) != 0) return ENOMEM;
  if (heap.grown + n > heap.reserved) return ENOMEM; /* partial reservation */
  /* Commit address-contiguous runs of chunks with one call each. */
  uint64_t start = heap.grown, done = heap.grown;
  int err = 0;
  while (done < start + n) {
    uint64_t run = done;
    uintptr_t addr = page_addr(run);
    uint64_t stop = done + NEAP_CHUNK_PAGES;
    while (stop < start + n && page_addr(stop) == addr + ((stop - run) << NEAP_PAGE_SHIFT))
      stop += NEAP_CHUNK_PAGES;
    err = neap__os_commit((void *)addr, (size_t)(stop - run) << NEAP_PAGE_SHIFT);
    if (err != 0) break;
    NEAP_TRACK_NOACCESS((void *)addr, (size_t)(stop - run) << NEAP_PAGE_SHIFT); /* no span yet */
    done = stop;
  }
  if (done > start) {
    if (neap__pa_grow(&heap.pa, start, done - start) != 0) return ENOMEM;
    heap.grown = done;
    observer()->grew((uint64_t)neap__pa_pages_grown(&heap.pa) << NEAP_PAGE_SHIFT);
  }
  return err ? ENOMEM : 0;
}

/* --- the memory limit */

void neap__heap_set_limit(size_t bytes, bool hard, void (*return_fn)(size_t bytes, bool all)) {
  neap__lock(&heap_lock);
  uint64_t pages = bytes >> NEAP_PAGE_SHIFT;
  NEAP_STORE(&heap.pages_limit, bytes != 0 && pages == 0 ? 1 : pages);
  heap.limit_hard = hard;
  heap.limit_quiet = 0;
  heap.limit_return = return_fn;
  neap__unlock(&heap_lock);
}

size_t neap__heap_held(void) {
  neap__lock(&heap_lock);
  uint64_t held = held_pages_locked();
  neap__unlock(&heap_lock);
  return (size_t)held << NEAP_PAGE_SHIFT;
}

/* Before npages more pages may be taken under a limit (the essay says
 * what follows). The allocation adds at most npages to what neap holds
 * (fewer when it reuses free pages not returned). Returns false when the
 * allocation must fail (hard limit). */
static bool limit_admit(uint64_t npages) {
  neap__lock(&heap_lock);
  uint64_t limit = NEAP_LOAD(&heap.pages_limit), held = held_pages_locked(), quiet = heap.limit_quiet;
  bool hard = heap.limit_hard;
  void (*return_fn)(size_t, bool) = heap.limit_return;
  if (held + npages <= limit) heap.limit_quiet = 0;
  neap__unlock(&heap_lock);
  if (held + npages <= limit || (!hard && held + npages < quiet)) return true;
  uint64_t target = limit - limit / 20; /* 95% */
  uint64_t over = held + npages > target ? held + npages - target : 0;
  neap__heap_reclaim(NEAP_RECLAIM_LIMIT);
  if (return_fn != NULL) return_fn((size_t)over << NEAP_PAGE_SHIFT, hard);
  neap__lock(&heap_lock);
  held = held_pages_locked();
  bool fits = held + npages <= limit;
  if (!fits && !hard) heap.limit_quiet = held + npages + (limit / 32 > 1 ? limit / 32 : 1);
  neap__unlock(&heap_lock);
  return fits || !hard;
}

/* --- pages for spans */

/* Maps pages [first, first+n) to s (NULL: to nothing), their page info
 * zero: the frontend that owns s writes its own. */
static void map_pages_locked(uint64_t first, uint64_t n, neap_span *s) {
  for (uint64_t pg = first; pg < first + n; pg++) {
    neap_arena *a = heap.arenas[pg / NEAP_ARENA_PAGES];
    uint64_t i = pg % NEAP_ARENA_PAGES;
    NEAP_STORE(&a->spans[i], s);
    if (a->info_slot != NULL) {
      NEAP_STORE(&a->info_slot[i], 0);
      NEAP_STORE(&a->info_start[i], 0);
    }
  }
}

/* Pages [first, first+n), taken out of the page allocator, are in use;
 * how many of them were returned lazily. The caller maps them. */
static uint64_t taken_locked(uint64_t first, uint64_t n) {
  heap.pages_inuse += n;
  return observer()->taken(first, n);
}

/* Pages [first, first+n) in use, mapped to no span, are free again. */
static void untaken_locked(uint64_t first, uint64_t n) {
  observer()->freed(first, n);
  neap__pa_free(&heap.pa, first, n);
  heap.pages_inuse -= n;
}

/* Pages [first, first+n) of a span come back free. */
static void freed_locked(uint64_t first, uint64_t n) {
  map_pages_locked(first, n, NULL);
  untaken_locked(first, n);
}

/* The first page of npages free ones, taken out of the page allocator, or
 * NEAP_PA_FAIL; grows the heap when `grow`. *nscav: how many of them were
 * returned (or fresh). */
static uint64_t find_pages_locked(uint64_t npages, bool grow, uint64_t *nscav) {
  if (init_locked() != 0) return NEAP_PA_FAIL;
  uint64_t limit = NEAP_LOAD(&heap.pages_limit);
  if (heap.limit_hard && limit != 0 && held_pages_locked() + npages > limit)
    return NEAP_PA_FAIL; /* another thread took the room since the admission */
  uint64_t p = neap__pa_alloc(&heap.pa, npages, nscav);
  if (p == NEAP_PA_FAIL && grow && grow_locked(npages) == 0) p = neap__pa_alloc(&heap.pa, npages, nscav);
  return p;
}

int neap__heap_alloc_pages(neap_span *s, uint64_t npages, size_t align, bool *zeroed) {
  if (npages == 0 || npages > NEAP_MAX_PAGES || align > NEAP_MAX_ALLOC) return ENOMEM;
  /* The process's first pages: its hooks first (init.c registers them,
   * once; a thread that comes in meanwhile waits for them). */
  if (NEAP_UNLIKELY(atomic_load_explicit(&heap.observer, memory_order_acquire) == NULL)) neap__process_init();
  uint64_t extra = align > NEAP_PAGE_SIZE ? (align >> NEAP_PAGE_SHIFT) - 1 : 0;
  if (NEAP_UNLIKELY(NEAP_LOAD(&heap.pages_limit) != 0) && !limit_admit(npages + extra)) return ENOMEM;
  uint64_t first, nscav = 0;
  /* From the free pages; failing that, after the reclaimers, growing. */
  for (int attempt = 0;; attempt++) {
    if (attempt == 1) neap__heap_reclaim(NEAP_RECLAIM_SHORT);
    neap__lock(&heap_lock);
    first = find_pages_locked(npages + extra, attempt == 1, &nscav);
    if (first != NEAP_PA_FAIL) break; /* with the lock held */
    neap__unlock(&heap_lock);
    if (attempt == 1) return ENOMEM;
  }
  bool fresh = taken_locked(first, npages + extra) == 0 && nscav == npages + extra;
  if (extra != 0) {
    /* Keep the aligned part; give the head and tail back, untouched pages
     * marked as still fresh. */
    uintptr_t base = page_addr(first);
    uint64_t head = (neap__align_up(base, align) - base) >> NEAP_PAGE_SHIFT, tail = extra - head;
    if (head != 0) {
      untaken_locked(first, head);
      if (fresh) neap__pa_mark_scavenged(&heap.pa, first, head);
    }
    if (tail != 0) {
      untaken_locked(first + head + npages, tail);
      if (fresh) neap__pa_mark_scavenged(&heap.pa, first + head + npages, tail);
    }
    first += head;
  }
  s->base = page_addr(first);
  s->first_page = first;
  s->npages = (uint32_t)npages;
  map_pages_locked(first, npages, s);
  neap__unlock(&heap_lock);
  observer()->after_alloc();
  *zeroed = fresh;
  return 0;
}

void neap__heap_free_pages(neap_span *s) {
  NEAP_TRACK_NOACCESS((void *)s->base, neap__span_bytes(s));
  neap__lock(&heap_lock);
  freed_locked(s->first_page, s->npages);
  neap__unlock(&heap_lock);
  observer()->kick();
}

bool neap__heap_resize_pages(neap_span *s, uint64_t npages) {
  bool ok = npages != 0 && npages <= UINT32_MAX;
  neap__lock(&heap_lock);
  if (ok && npages < s->npages) {
    freed_locked(s->first_page + npages, s->npages - npages);
    s->npages = (uint32_t)npages;
  } else if (ok && npages > s->npages) {
    uint64_t at = s->first_page + s->npages, n = npages - s->npages;
    ok = neap__pa_alloc_at(&heap.pa, at, n, NULL);
    if (ok) {
      taken_locked(at, n);
      map_pages_locked(at, n, s);
      s->npages = (uint32_t)npages;
    }
  }
  neap__unlock(&heap_lock);
  return ok;
}

/* --- hooks */

void neap__heap_add_reclaimer(neap_reclaimer *fn) {
  neap__lock(&heap_lock);
  unsigned n = atomic_load_explicit(&heap.nreclaimers, memory_order_relaxed);
  if (n < NEAP_MAX_RECLAIMERS) {
    heap.reclaimers[n] = fn;
    atomic_store_explicit(&heap.nreclaimers, n + 1, memory_order_release);
  }
  neap__unlock(&heap_lock);
}

size_t neap__heap_reclaim(neap_reclaim why) {
  size_t pages = 0;
  unsigned n = atomic_load_explicit(&heap.nreclaimers, memory_order_acquire);
  for (unsigned i = 0; i < n; i++) pages += heap.reclaimers[i](why);
  return pages;
}

void neap__heap_set_observer(const neap_heap_observer *o) {
  neap__lock(&heap_lock);
  atomic_store_explicit(&heap.observer, o, memory_order_release);
  neap__unlock(&heap_lock);
}

void neap__heap_with_lock(void (*fn)(void *ctx), void *ctx) {
  neap__lock(&heap_lock);
  fn(ctx);
  neap__unlock(&heap_lock);
}

/* --- the scavenger's access */

uint64_t neap__heap_top(void) {
  neap__lock(&heap_lock);
  uint64_t top = heap.grown;
  neap__unlock(&heap_lock);
  return top;
}

/* Shrinks [*lo, *hi) to whole OS pages (a no-op where they are no bigger
 * than neap pages). */
static void align_to_os_pages(uint64_t *lo, uint64_t *hi) {
  size_t osp = neap__os_page_size();
  if (osp <= NEAP_PAGE_SIZE) return;
  uint64_t per = osp / NEAP_PAGE_SIZE;
  uintptr_t a = page_addr(*lo);
  uint64_t skip = (neap__align_up(a, osp) - a) >> NEAP_PAGE_SHIFT;
  uint64_t l = *lo + skip, h = *hi;
  if (l >= h) {
    *lo = *hi;
    return;
  }
  h = l + (h - l) / per * per;
  *lo = l;
  *hi = h;
}

bool neap__heap_take_unreturned(uint64_t below, uint64_t max, neap_pick_fn *pick, void *ctx, neap_free_run *run) {
  run->n = 0;
  neap__lock(&heap_lock);
  uint64_t n = 0, base = NEAP_PA_FAIL;
  if (heap.inited) base = neap__pa_find_unscavenged(&heap.pa, below < heap.grown ? below : heap.grown, max, &n);
  if (base == NEAP_PA_FAIL) {
    neap__unlock(&heap_lock);
    return false;
  }
  neap_pick p = {.base = base, .n = n, .dirty = neap__pa_pages_free(&heap.pa) - neap__pa_pages_scavenged(&heap.pa)};
  pick(ctx, &p);
  if (p.lo < p.hi) align_to_os_pages(&p.lo, &p.hi);
  if (p.lo < p.hi) {
    /* A run never straddles arenas that are apart in memory (the fence),
     * so it is one address range. */
    bool taken = neap__pa_alloc_at(&heap.pa, p.lo, p.hi - p.lo, NULL);
    neap_assert(taken);
    (void)taken;
    *run = (neap_free_run){.first = p.lo, .n = p.hi - p.lo, .addr = page_addr(p.lo)};
  }
  neap__unlock(&heap_lock);
  return true;
}

void neap__heap_put_back(const neap_free_run *run, bool returned, bool lazy) {
  neap__lock(&heap_lock);
  neap__pa_free(&heap.pa, run->first, run->n);
  if (returned) {
    neap__pa_mark_scavenged(&heap.pa, run->first, run->n);
    observer()->returned(run->first, run->n, lazy);
  }
  neap__unlock(&heap_lock);
}

/* --- looking */

void neap__heap_disable_thp(void) {
  neap__lock(&heap_lock);
  heap.nothp = true;
  for (size_t k = 0; k < heap.narenas; k++) neap__os_nohugepage((void *)heap.arenas[k]->base, NEAP_ARENA_SIZE);
  neap__unlock(&heap_lock);
}

void neap__heap_fork(neap_fork_phase phase) { neap__lock_fork(&heap_lock, phase); }

static void stats_locked(neap_heap_stats *out) {
  out->pages_grown = heap.inited ? neap__pa_pages_grown(&heap.pa) : 0;
  out->pages_free = heap.inited ? neap__pa_pages_free(&heap.pa) : 0;
  out->pages_scavenged = heap.inited ? neap__pa_pages_scavenged(&heap.pa) : 0;
  out->pages_inuse = heap.pages_inuse;
  out->pa_mapped = heap.inited ? neap__pa_mapped_bytes(&heap.pa) : 0;
  out->held = held_pages_locked() << NEAP_PAGE_SHIFT;
  out->arenas = heap.narenas;
  out->bytes_reserved = heap.narenas * NEAP_ARENA_SIZE;
}

void neap__heap_stats(neap_heap_stats *out) {
  neap__lock(&heap_lock);
  stats_locked(out);
  neap__unlock(&heap_lock);
}

void neap__heap_walk(neap_heap_stats *out, void (*fn)(void *ctx, neap_span *s), void *ctx) {
  neap__lock(&heap_lock);
  stats_locked(out);
  fn(ctx, NULL);
  for (size_t k = 0; k < heap.narenas; k++) {
    neap_arena *a = heap.arenas[k];
    uint64_t end = a->first_page + NEAP_ARENA_PAGES;
    if (end > heap.grown) end = heap.grown;
    for (uint64_t pg = a->first_page; pg < end; pg++) {
      neap_span *s = NEAP_LOAD(&a->spans[pg - a->first_page]);
      if (s == NULL || s->first_page != pg) continue;
      fn(ctx, s);
      pg += s->npages - 1;
    }
  }
  neap__unlock(&heap_lock);
}

#if NEAP_TESTING
/* --- the heap checker's part (check.c): every page of every arena, under
 * the heap lock. */
#include "check.h"

void neap__heap_check_targets(neap_check_targets *t) {
  t->pa = &heap.pa;
  t->pages_inuse = &heap.pages_inuse;
}

void neap__heap_each_page(void (*fn)(void *ctx, uint64_t pg, int state, neap_span *s), void *ctx) {
  neap__lock(&heap_lock);
  for (size_t k = 0; k < heap.narenas; k++)
    for (uint64_t i = 0; i < NEAP_ARENA_PAGES; i++) {
      uint64_t pg = heap.arenas[k]->first_page + i;
      fn(ctx, pg, heap.inited ? (int)neap__pa_page_state(&heap.pa, pg) : NEAP_PA_NOT_GROWN,
         NEAP_LOAD(&heap.arenas[k]->spans[i]));
    }
  neap__unlock(&heap_lock);
}

void neap__heap_check_pages(neap_check *ck) {
  neap__lock(&heap_lock);
  if (heap.inited)
    NEAP_CHECK(ck, neap__pa_check(&heap.pa), "page allocator's summaries, bitmaps or totals are wrong", &heap.pa);
  NEAP_CHECK(ck, heap.reserved == (uint64_t)heap.narenas * NEAP_ARENA_PAGES && heap.grown <= heap.reserved,
             "heap's arena counts are wrong", &heap);
  uint64_t span_pages = 0, end = 0;
  neap_span *cur = NULL;
  for (size_t k = 0; k < heap.narenas && !ck->failed; k++) {
    neap_arena *a = heap.arenas[k];
    if (!NEAP_CHECK(ck, a->first_page == (uint64_t)k * NEAP_ARENA_PAGES && (a->base & (NEAP_ARENA_SIZE - 1)) == 0 &&
                            neap__arena_of(a->base) == a && neap__arena_of(a->base + NEAP_ARENA_SIZE - 1) == a,
                    "arena index does not find the arena", (void *)a->base))
      break;
    uintptr_t off;
    bool mapped = neap__pagemap_covers(a->base, &off);
    NEAP_CHECK(ck, mapped == (a->info_slot != NULL), "arena's page info and the page map's run differ",
               (void *)a->base);
    if (mapped)
      NEAP_CHECK(ck, a->spans == NEAP_LOAD(&neap__pagemap.map) + (off >> NEAP_PAGE_SHIFT),
                 "arena's span table is not its part of the page map", (void *)a->base);
    for (uint64_t i = 0; i < NEAP_ARENA_PAGES && !ck->failed; i++) {
      uint64_t pg = a->first_page + i;
      uintptr_t addr = a->base + (i << NEAP_PAGE_SHIFT);
      neap_span *e = NEAP_LOAD(&a->spans[i]);
      neap_pa_page st = heap.inited ? neap__pa_page_state(&heap.pa, pg) : NEAP_PA_NOT_GROWN;
      if (cur != NULL && pg < end) {
        NEAP_CHECK(ck, e == cur, "page of a span maps to another", (void *)addr);
      } else if (e != NULL) {
        if (!NEAP_CHECK(ck, e->first_page == pg, "page maps to a span that does not cover it", (void *)addr)) break;
        cur = e;
        end = pg + e->npages;
        NEAP_CHECK(ck, e->npages != 0 && e->base == addr && end <= heap.grown &&
                           page_addr(end - 1) == e->base + ((uintptr_t)(e->npages - 1) << NEAP_PAGE_SHIFT),
                   "span's pages are not where the page map has them", e);
      } else {
        cur = NULL;
      }
      if (e != NULL) {
        NEAP_CHECK(ck, st == NEAP_PA_INUSE, "page of a span is free in the page allocator", (void *)addr);
        span_pages++;
      } else {
        NEAP_CHECK(ck, st != NEAP_PA_INUSE, "page in use in the page allocator belongs to no span", (void *)addr);
        if (a->info_slot != NULL)
          NEAP_CHECK(ck, NEAP_LOAD(&a->info_slot[i]) == 0, "page info of a page in no span is not zero",
                     (void *)addr);
      }
    }
  }
  if (!ck->failed) {
    NEAP_CHECK(ck, cur == NULL || end <= heap.reserved, "span runs past the heap", cur);
    NEAP_CHECK(ck, span_pages == heap.pages_inuse, "heap's count of pages in spans is wrong", &heap.pages_inuse);
    if (heap.inited)
      NEAP_CHECK(ck, neap__pa_pages_grown(&heap.pa) - neap__pa_pages_free(&heap.pa) == span_pages,
                 "page allocator's pages in use are not the spans' pages", &heap.pa);
  }
  neap__unlock(&heap_lock);
}
#endif
