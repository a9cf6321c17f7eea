/* The page heap (Go's mheap): spans from pages, pages from arenas.
 *
 * What it owns: the page allocator (pagealloc.c) over a dense page-index
 * space, the list of arenas in index order, the growth frontier, and the
 * arena index entries that map every page of a live span to its span.
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
 * Growth. The heap grows by whole 4 MiB chunks at the frontier: it commits
 * them (os layer) and adds them to the page allocator as free and
 * scavenged, i.e. fresh from the OS and known to read as zero. A commit
 * that fails leaves the heap as it was (the chunks committed before the
 * failure stay usable) and the allocation returns NULL with ENOMEM.
 * Before growing, the heap asks the central lists to give back spans
 * emptied by remote frees (neap__central_reclaim), so empty spans of one
 * size class serve any other before the heap takes more memory.
 *
 * Invariants: spans[] of a page is non-NULL iff the page belongs to a live
 * span, and then points to it; pages_inuse is the sum of live spans'
 * pages; the page allocator's in-use pages are pages_inuse plus never-grown
 * fence pages (none are grown, so none are counted).
 *
 * Locking: one mutex, the heap lock, around every page-allocator call and
 * every change to spans[] and the arenas. Lock order: central -> heap ->
 * meta. The heap lock is never held while calling into central.c.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "cache.h"
#include "central.h"
#include "heap.h"
#include "meta.h"
#include "pagemap.h"
#include "scav.h"
#include "os/os.h"
#include "pagealloc.h"

static struct {
  pthread_mutex_t lock;
  bool inited;
  neap_pagealloc pa;
  uint64_t grown;     /* pages [0, grown) of the index space are grown or fenced */
  uint64_t reserved;  /* pages [0, reserved) belong to reserved arenas */
  size_t narenas;
  uint64_t pages_inuse;
  uint64_t pages_lazy;  /* free pages returned with MADV_FREE, not reused since */
  uint64_t pages_limit; /* the memory limit in pages (0: none); see limit_admit_locked */
  uint64_t limit_quiet; /* soft limit out of reach: no new attempt below this many pages held */
  bool limit_hard;
  bool nothp;           /* NEAPDEBUG=disablethp: arenas get MADV_NOHUGEPAGE */
  /* Demand, for the scavenger (neap__heap_demand): when pages were last
   * taken or given (ms clock), and the most pages in use in the current
   * and the previous half of the demand window. */
  uint32_t last_alloc_ms, last_free_ms;
  uint64_t peak_cur, peak_prev;
  neap_arena *arenas[NEAP_MAX_ARENAS]; /* index order; 512 KiB of BSS, touched as used */
} heap = {.lock = NEAP_MUTEX_INITIALIZER};

/* A chunk with this many pages in use is dense (Go's scavChunkHiOccFrac,
 * 96.875%): returning its few free pages would split a huge page that is
 * nearly all in use, for little gain. */
#define DENSE_PAGES (NEAP_CHUNK_PAGES - NEAP_CHUNK_PAGES / 32)

static uintptr_t page_addr(uint64_t page) {
  neap_arena *a = heap.arenas[page / NEAP_ARENA_PAGES];
  return a->base + ((uintptr_t)(page % NEAP_ARENA_PAGES) << NEAP_PAGE_SHIFT);
}

static neap_arena *arena_of_page(uint64_t page) { return heap.arenas[page / NEAP_ARENA_PAGES]; }

/* Runs the statement for each arena's share of pages [first, first+n),
 * with `a` the arena, `i` the first index in it and `m` the count: a run
 * of pages may cross into the next arena. */
#define FOR_ARENA_SEGMENTS(first, n, a, i, m, ...)                               \
  for (uint64_t pg_ = (first), end_ = (first) + (n); pg_ < end_;) {              \
    neap_arena *a = arena_of_page(pg_);                                           \
    uint64_t i = pg_ % NEAP_ARENA_PAGES;                                          \
    uint64_t m = end_ - pg_ < NEAP_ARENA_PAGES - i ? end_ - pg_ : NEAP_ARENA_PAGES - i; \
    __VA_ARGS__;                                                                  \
    pg_ += m;                                                                     \
  }

/* Pages [first, first+n) were allocated: count them in their chunks and
 * clear their lazy bits. Returns how many of them were lazy (returned with
 * MADV_FREE: they may still hold old data). */
static uint64_t pages_taken_locked(uint64_t first, uint64_t n) {
  uint64_t nlazy = 0;
  FOR_ARENA_SEGMENTS(first, n, a, i, m, {
    for (uint64_t k = i; k < i + m;) {
      uint64_t c = k / NEAP_CHUNK_PAGES, stop = (c + 1) * NEAP_CHUNK_PAGES;
      if (stop > i + m) stop = i + m;
      a->chunk_inuse[c] = (uint16_t)(a->chunk_inuse[c] + (stop - k));
      k = stop;
    }
    if (heap.pages_lazy != 0) {
      for (uint64_t k = i; k < i + m; k++) {
        uint64_t bit = 1ull << (k & 63);
        if (a->lazy[k >> 6] & bit) {
          a->lazy[k >> 6] &= ~bit;
          nlazy++;
        }
      }
    }
  });
  heap.pages_lazy -= nlazy;
  return nlazy;
}

/* Pages [first, first+n) were freed at `now`: stamp them for the release
 * delay and uncount them; a chunk that stops being dense records when. */
static void pages_given_locked(uint64_t first, uint64_t n, uint32_t now) {
  /* The program's activity, for the retention rule: not the scavenger's
   * own giving back of idle caches' spans. */
  if (!neap__scav_is_self()) heap.last_free_ms = now;
  FOR_ARENA_SEGMENTS(first, n, a, i, m, {
    for (uint64_t k = i; k < i + m; k++) a->freed_at[k] = now;
    for (uint64_t k = i; k < i + m;) {
      uint64_t c = k / NEAP_CHUNK_PAGES, stop = (c + 1) * NEAP_CHUNK_PAGES;
      if (stop > i + m) stop = i + m;
      unsigned before = a->chunk_inuse[c];
      a->chunk_inuse[c] = (uint16_t)(before - (stop - k));
      if (before >= DENSE_PAGES && a->chunk_inuse[c] < DENSE_PAGES) a->chunk_dense_end[c] = now ? now : 1u;
      k = stop;
    }
  });
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
    if (neap__arena_register(a) != 0) return ENOMEM;
    if (i == 0 && !adjacent) heap.grown = a->first_page + (heap.narenas > 0 ? NEAP_CHUNK_PAGES : 0);
    heap.arenas[heap.narenas++] = a;
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
    neap__scav_heap_grew((uint64_t)neap__pa_pages_grown(&heap.pa) << NEAP_PAGE_SHIFT);
  }
  return err ? ENOMEM : 0;
}

/* The memory limit, before npages more pages may be taken. What neap
 * holds from the OS is every grown page not returned, plus its metadata;
 * the allocation adds at most npages to it (fewer when it reuses free
 * pages not yet returned). If that could pass the limit, the scavenger's
 * limit work runs first, without the heap lock: it empties the caches'
 * kept spans and returns free pages, aiming a little under the limit so
 * that the next allocations find room. Soft limit: the allocation goes on
 * whatever came of it, and if the limit stays out of reach (the live heap
 * is that big) no new attempt is made until 1/32 more is held, so a
 * program above its soft limit is not slowed on every span. Hard limit:
 * the allocation fails unless it fits (the limit work returned every free
 * page it could, so the test is exact but for other threads' frees in the
 * meantime). Returns false when the allocation must fail. */
static bool limit_admit_locked(uint64_t npages) {
  uint64_t held = held_pages_locked();
  if (held + npages <= heap.pages_limit) {
    heap.limit_quiet = 0;
    return true;
  }
  if (!heap.limit_hard && held + npages < heap.limit_quiet) return true;
  uint64_t target = heap.pages_limit - heap.pages_limit / 20; /* 95%, as Go's limit goal */
  uint64_t over = held + npages > target ? held + npages - target : 0;
  neap__unlock(&heap.lock);
  neap__scav_limit_work((size_t)over << NEAP_PAGE_SHIFT, heap.limit_hard);
  neap__lock(&heap.lock);
  held = held_pages_locked();
  if (held + npages <= heap.pages_limit) return true;
  if (heap.limit_hard) return false;
  heap.limit_quiet = held + npages + (heap.pages_limit / 32 > 1 ? heap.pages_limit / 32 : 1);
  return true;
}

/* Find npages free pages, reclaiming empty spans and then growing the heap
 * if needed. Called and returns with the heap lock held; drops it to
 * reclaim. *nlazy: how many of the pages were returned with MADV_FREE
 * (with *nscav: the pages read as zero iff nscav == npages and nlazy == 0). */
static uint64_t alloc_pages_locked(uint64_t npages, uint64_t *nscav, uint64_t *nlazy) {
  if (init_locked() != 0) return NEAP_PA_FAIL;
  if (NEAP_UNLIKELY(heap.pages_limit != 0) && !limit_admit_locked(npages)) return NEAP_PA_FAIL;
  uint64_t p = neap__pa_alloc(&heap.pa, npages, nscav);
  if (p == NEAP_PA_FAIL) {
    neap__unlock(&heap.lock);
    size_t freed = neap__central_reclaim();
    neap__lock(&heap.lock);
    if (freed != 0) p = neap__pa_alloc(&heap.pa, npages, nscav);
    if (p == NEAP_PA_FAIL) {
      if (grow_locked(npages) != 0) return NEAP_PA_FAIL;
      p = neap__pa_alloc(&heap.pa, npages, nscav);
      if (p == NEAP_PA_FAIL) return p;
    }
  }
  *nlazy = pages_taken_locked(p, npages);
  heap.last_alloc_ms = neap__os_now_ms();
  return p;
}

static void set_spans_locked(uint64_t first, uint64_t n, neap_span *s) {
  for (uint64_t pg = first; pg < first + n; pg++) {
    neap_arena *a = heap.arenas[pg / NEAP_ARENA_PAGES];
    NEAP_STORE(&a->spans[pg % NEAP_ARENA_PAGES], s);
    if (a->info_slot != NULL) {
      uint64_t i = pg % NEAP_ARENA_PAGES;
      NEAP_STORE(&a->info_slot[i], neap__pinfo_slot_of(s));
      NEAP_STORE(&a->info_start[i], neap__pinfo_start_of(s ? pg - s->first_page : 0, a->base + (i << NEAP_PAGE_SHIFT)));
    }
  }
}

neap_span *neap__heap_alloc_small_span(unsigned cls) {
  neap_span *s = neap__span_new(cls);
  if (s == NULL) return NULL;
  uint64_t npages = neap__class_pages[cls], nscav = 0, nlazy = 0;
  neap__lock(&heap.lock);
  uint64_t first = alloc_pages_locked(npages, &nscav, &nlazy);
  if (first == NEAP_PA_FAIL) {
    neap__unlock(&heap.lock);
    neap__span_delete(s);
    return NULL;
  }
  neap__span_init_small(s, cls, page_addr(first), first, nscav == npages && nlazy == 0);
  atomic_store_explicit(&s->state, NEAP_SPAN_SMALL, memory_order_relaxed);
  set_spans_locked(first, npages, s);
  heap.pages_inuse += npages;
  if (heap.pages_inuse > heap.peak_cur) heap.peak_cur = heap.pages_inuse;
  neap__unlock(&heap.lock);
  /* Every free object holds its free mark (cache.c), those never handed
   * out too, and so does the tail after the last object (at least 16 bytes
   * when there is one: sizes and spans are multiples of 16), which is
   * never handed out: a free of either fails the free fast path's check.
   * The stores touch the first OS page of each object a little before its
   * first use: most of a small span's pages are about to be used anyway. */
  NEAP_TRACK_QUIET_BEGIN();
  for (uintptr_t p = s->base, end = s->base + neap__span_bytes(s); p < end; p += s->elemsize)
    neap__mark_set((void *)p, 0, NEAP_MARK_KEY);
  NEAP_TRACK_QUIET_END();
  NEAP_TRACK_NOACCESS((void *)s->base, neap__span_bytes(s)); /* every object free */
  neap__scav_start_if_needed();
  return s;
}

neap_span *neap__heap_alloc_large(size_t size, size_t align, bool *zeroed) {
  if (size > NEAP_MAX_ALLOC || align > NEAP_MAX_ALLOC) return NULL;
  uint64_t npages = (size + NEAP_PAGE_SIZE - 1) >> NEAP_PAGE_SHIFT;
  if (npages == 0) npages = 1;
  uint64_t extra = align > NEAP_PAGE_SIZE ? (align >> NEAP_PAGE_SHIFT) - 1 : 0;
  neap_span *s = neap__span_new(0);
  if (s == NULL) return NULL;
  uint64_t nscav = 0, nlazy = 0;
  neap__lock(&heap.lock);
  uint64_t first = alloc_pages_locked(npages + extra, &nscav, &nlazy);
  if (first == NEAP_PA_FAIL) {
    neap__unlock(&heap.lock);
    neap__span_delete(s);
    return NULL;
  }
  bool fresh = nscav == npages + extra && nlazy == 0;
  if (extra != 0) {
    /* Keep the aligned part; give the head and tail back. Untouched pages
     * go back marked as still fresh. */
    uintptr_t base = page_addr(first);
    uint64_t head = (neap__align_up(base, align) - base) >> NEAP_PAGE_SHIFT, tail = extra - head;
    uint32_t now = neap__os_now_ms();
    if (head != 0) {
      pages_given_locked(first, head, now);
      neap__pa_free(&heap.pa, first, head);
      if (fresh) neap__pa_mark_scavenged(&heap.pa, first, head);
    }
    if (tail != 0) {
      pages_given_locked(first + head + npages, tail, now);
      neap__pa_free(&heap.pa, first + head + npages, tail);
      if (fresh) neap__pa_mark_scavenged(&heap.pa, first + head + npages, tail);
    }
    first += head;
  }
  s->base = page_addr(first);
  s->first_page = first;
  s->npages = (uint32_t)npages;
  s->sizeclass = 0;
  s->elemsize = 0;
  NEAP_STORE(&s->owner, NULL);
  atomic_store_explicit(&s->state, NEAP_SPAN_LARGE, memory_order_relaxed);
  set_spans_locked(first, npages, s);
  heap.pages_inuse += npages;
  if (heap.pages_inuse > heap.peak_cur) heap.peak_cur = heap.pages_inuse;
  neap__unlock(&heap.lock);
  neap__scav_start_if_needed();
  *zeroed = fresh;
  return s;
}

void neap__heap_free_span(neap_span *s) {
  uint32_t now = neap__os_now_ms();
  NEAP_TRACK_NOACCESS((void *)s->base, neap__span_bytes(s));
  neap__lock(&heap.lock);
  set_spans_locked(s->first_page, s->npages, NULL);
  pages_given_locked(s->first_page, s->npages, now);
  neap__pa_free(&heap.pa, s->first_page, s->npages);
  heap.pages_inuse -= s->npages;
  neap__unlock(&heap.lock);
  neap__span_delete(s);
  neap__scav_kick();
}

bool neap__heap_resize_large(neap_span *s, size_t npages) {
  bool ok = true;
  neap__lock(&heap.lock);
  if (npages < s->npages) {
    uint64_t cut = s->first_page + npages, n = s->npages - npages;
    set_spans_locked(cut, n, NULL);
    pages_given_locked(cut, n, neap__os_now_ms());
    neap__pa_free(&heap.pa, cut, n);
    heap.pages_inuse -= n;
    s->npages = (uint32_t)npages;
  } else if (npages > s->npages) {
    uint64_t at = s->first_page + s->npages, n = npages - s->npages;
    ok = npages <= UINT32_MAX && neap__pa_alloc_at(&heap.pa, at, n, NULL);
    if (ok) {
      pages_taken_locked(at, n);
      set_spans_locked(at, n, s);
      heap.pages_inuse += n;
      if (heap.pages_inuse > heap.peak_cur) heap.peak_cur = heap.pages_inuse;
      s->npages = (uint32_t)npages;
    }
  }
  neap__unlock(&heap.lock);
  return ok;
}

#define MIN_CUT_PAGES 8 /* 64 KiB, Go's scavenging quantum */

/* Whether free page pg was freed less than a delay ago. */
static bool page_young(const neap_scav_pass *sp, uint64_t pg) {
  if (sp->force) return false;
  return (uint32_t)(sp->now_ms - arena_of_page(pg)->freed_at[pg % NEAP_ARENA_PAGES]) < sp->delay_ms;
}

/* Whether the scavenger may return free page pg now; if not, notes why in
 * the pass (a young page: when it will be old enough). */
static bool eligible_locked(neap_scav_pass *sp, uint64_t pg) {
  if (sp->force) return true;
  neap_arena *a = arena_of_page(pg);
  uint64_t i = pg % NEAP_ARENA_PAGES, c = i / NEAP_CHUNK_PAGES;
  uint32_t age = sp->now_ms - a->freed_at[i];
  if (age < sp->delay_ms) {
    uint32_t wait = sp->delay_ms - age;
    if (!sp->young || wait < sp->next_ms) sp->next_ms = wait;
    sp->young = true;
    return false;
  }
  if (a->chunk_inuse[c] >= DENSE_PAGES) {
    sp->dense = true;
    return false;
  }
  uint32_t end = a->chunk_dense_end[c];
  if (end != 0 && (uint32_t)(sp->now_ms - end) < sp->delay_ms) {
    uint32_t wait = sp->delay_ms - (uint32_t)(sp->now_ms - end);
    if (!sp->young || wait < sp->next_ms) sp->next_ms = wait;
    sp->young = true;
    return false;
  }
  return true;
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

void neap__heap_scavenge(neap_scav_pass *sp) {
  uint64_t below = sp->cursor;
  sp->done = false;
  for (;;) {
    if (sp->max_bytes != 0 && sp->released >= sp->max_bytes) break;
    neap__lock(&heap.lock);
    uint64_t n = 0, base = NEAP_PA_FAIL;
    if (heap.inited) {
      if (below > heap.grown) below = heap.grown;
      base = neap__pa_find_unscavenged(&heap.pa, below, NEAP_CHUNK_PAGES, &n);
    }
    if (base == NEAP_PA_FAIL) {
      neap__unlock(&heap.lock);
      sp->done = true;
      below = UINT64_MAX; /* the next pass starts from the top */
      break;
    }
    /* The highest eligible part of the run: skip pages that may not go
     * yet from the top, then take the eligible ones below them. */
    uint64_t hi = base + n;
    while (hi > base && !eligible_locked(sp, hi - 1)) hi--;
    uint64_t lo = hi;
    while (lo > base && eligible_locked(sp, lo - 1)) lo--;
    uint64_t next_below = lo;
    if (sp->keep_pages != 0 && lo < hi) {
      /* Leave keep_pages free pages unreturned: the highest go first. */
      uint64_t dirty = neap__pa_pages_free(&heap.pa) - neap__pa_pages_scavenged(&heap.pa);
      uint64_t may = dirty > sp->keep_pages ? dirty - sp->keep_pages : 0;
      if (may == 0) {
        neap__unlock(&heap.lock);
        sp->kept = true;
        sp->done = true;
        below = UINT64_MAX;
        break;
      }
      if (hi - lo > may) lo = hi - may;
    }
    /* A small piece cut out of a longer free run by pages not due yet
     * waits for them: one madvise per 8 KiB costs more than the memory is
     * worth for a few hundred milliseconds (a program freeing at random
     * interleaves young and old pages finely). A run bounded by pages in
     * use goes back whatever its size. */
    bool cut = (hi < base + n && page_young(sp, hi)) || (lo > base && page_young(sp, lo - 1));
    if (cut && hi - lo < MIN_CUT_PAGES) lo = hi;
    align_to_os_pages(&lo, &hi);
    if (lo >= hi) {
      neap__unlock(&heap.lock);
      below = next_below > base ? next_below : base;
      continue;
    }
    /* Take the run out of the page allocator, so that nothing allocates
     * it while its pages go back, and return it without holding the lock.
     * A run never straddles arenas that are apart in memory (the fence),
     * so it is one address range. */
    bool taken = neap__pa_alloc_at(&heap.pa, lo, hi - lo, NULL);
    neap__unlock(&heap.lock);
    neap_assert(taken);
    (void)taken;
    size_t bytes = (size_t)(hi - lo) << NEAP_PAGE_SHIFT;
    bool lazy = false;
    bool ok = neap__os_return((void *)page_addr(lo), bytes, sp->dontneed, &lazy) == 0;
    neap__lock(&heap.lock);
    neap__pa_free(&heap.pa, lo, hi - lo);
    if (ok) {
      neap__pa_mark_scavenged(&heap.pa, lo, hi - lo);
      if (lazy) {
        FOR_ARENA_SEGMENTS(lo, hi - lo, a, i, m, {
          for (uint64_t k = i; k < i + m; k++) a->lazy[k >> 6] |= 1ull << (k & 63);
        });
        heap.pages_lazy += hi - lo;
      }
    }
    neap__unlock(&heap.lock);
    if (ok) sp->released += bytes;
    below = next_below;
  }
  sp->cursor = below;
}

void neap__heap_demand(neap_heap_demand *d, bool rotate) {
  neap__lock(&heap.lock);
  uint64_t peak = heap.peak_cur > heap.peak_prev ? heap.peak_cur : heap.peak_prev;
  d->recent_peak_pages = peak;
  d->inuse_pages = heap.pages_inuse;
  d->dirty_pages = heap.inited ? neap__pa_pages_free(&heap.pa) - neap__pa_pages_scavenged(&heap.pa) : 0;
  d->last_alloc_ms = heap.last_alloc_ms;
  d->last_free_ms = heap.last_free_ms;
  if (rotate) {
    heap.peak_prev = heap.peak_cur;
    heap.peak_cur = heap.pages_inuse;
  }
  neap__unlock(&heap.lock);
}

size_t neap__heap_release(bool dontneed) {
  neap_scav_pass sp = {.force = true, .dontneed = dontneed, .cursor = UINT64_MAX};
  neap__heap_scavenge(&sp);
  return sp.released;
}

void neap__heap_disable_thp(void) {
  neap__lock(&heap.lock);
  heap.nothp = true;
  for (size_t k = 0; k < heap.narenas; k++) neap__os_nohugepage((void *)heap.arenas[k]->base, NEAP_ARENA_SIZE);
  neap__unlock(&heap.lock);
}

void neap__heap_set_limit(size_t bytes, bool hard) {
  neap__lock(&heap.lock);
  heap.pages_limit = bytes >> NEAP_PAGE_SHIFT;
  if (bytes != 0 && heap.pages_limit == 0) heap.pages_limit = 1;
  heap.limit_hard = hard;
  heap.limit_quiet = 0;
  neap__unlock(&heap.lock);
}

size_t neap__heap_held(void) {
  neap__lock(&heap.lock);
  uint64_t held = held_pages_locked();
  neap__unlock(&heap.lock);
  return (size_t)held << NEAP_PAGE_SHIFT;
}

void neap__heap_fork(neap_fork_phase phase) {
  neap__lock_fork(&heap.lock, phase);
}

static void heap_stats_locked(neap_heap_stats *out) {
  out->pages_grown = heap.inited ? neap__pa_pages_grown(&heap.pa) : 0;
  out->pages_free = heap.inited ? neap__pa_pages_free(&heap.pa) : 0;
  out->pages_scavenged = heap.inited ? neap__pa_pages_scavenged(&heap.pa) : 0;
  out->pages_inuse = heap.pages_inuse;
  out->pages_lazy = heap.pages_lazy;
  out->pa_mapped = heap.inited ? neap__pa_mapped_bytes(&heap.pa) : 0;
  out->held = held_pages_locked() << NEAP_PAGE_SHIFT;
  out->arenas = heap.narenas;
  out->bytes_reserved = heap.narenas * NEAP_ARENA_SIZE;
}

void neap__heap_stats(neap_heap_stats *out) {
  neap__lock(&heap.lock);
  heap_stats_locked(out);
  neap__unlock(&heap.lock);
}

void neap__heap_snapshot(neap_heap_snapshot *out) {
  memset(out, 0, sizeof *out);
  neap__lock(&heap.lock);
  heap_stats_locked(&out->pages);
  for (size_t k = 0; k < heap.narenas; k++) {
    neap_arena *a = heap.arenas[k];
    uint64_t end = a->first_page + NEAP_ARENA_PAGES;
    if (end > heap.grown) end = heap.grown;
    for (uint64_t pg = a->first_page; pg < end; pg++) {
      neap_span *s = NEAP_LOAD(&a->spans[pg - a->first_page]);
      if (s == NULL || s->first_page != pg) continue;
      if (s->sizeclass != 0) {
        uint64_t announced = atomic_load_explicit(&s->rword, memory_order_relaxed) & NEAP_RW_COUNT_MASK;
        uint64_t inuse = neap__span_live(s);
        /* Mid-merge, bits can be cleared before the count drops. */
        out->live[s->sizeclass] += inuse > announced ? inuse - announced : 0;
      } else {
        out->live[0]++;
        out->large_live_bytes += neap__span_bytes(s);
      }
      pg += s->npages - 1;
    }
  }
  neap__unlock(&heap.lock);
}

#if NEAP_TESTING
/* --- the heap checker's part (check.c): every page of every arena, under
 * the heap lock. */
#include "check.h"

void neap__heap_check_targets(neap_check_targets *t) {
  t->pa = &heap.pa;
  t->pages_inuse = &heap.pages_inuse;
  t->pages_lazy = &heap.pages_lazy;
}

/* A span the page map holds, at its first page: live, where its pages
 * are, and (small spans) its bitmaps; counted by kind and owner. */
static void check_span(neap_check *ck, neap_span *s, uint64_t pg) {
  uint8_t state = atomic_load_explicit(&s->state, memory_order_relaxed);
  if (!NEAP_CHECK(ck, state == (s->sizeclass ? NEAP_SPAN_SMALL : NEAP_SPAN_LARGE), "span in the page map is not live",
                  s))
    return;
  if (!NEAP_CHECK(ck, s->npages != 0 && s->base == page_addr(pg) && pg + s->npages <= heap.grown &&
                          page_addr(pg + s->npages - 1) == s->base + ((uintptr_t)(s->npages - 1) << NEAP_PAGE_SHIFT),
                  "span's pages are not where the page map has them", s))
    return;
  neap_cache *owner = NEAP_LOAD(&s->owner);
  if (s->sizeclass == 0) {
    NEAP_CHECK(ck, owner == NULL && atomic_load(&s->rword) == 0 && s->elemsize == 0, "large span's fields are wrong",
               s);
    ck->large_spans++;
    ck->large_bytes += neap__span_bytes(s);
    return;
  }
  neap__span_check(ck, s);
  if (atomic_load(&s->rword) & NEAP_RW_NOTIFIED) ck->notified_spans++;
  if (owner == NULL) {
    NEAP_CHECK(ck, s->list == NEAP_LIST_PARTIAL || s->list == NEAP_LIST_FULL, "span no cache owns is on no central list",
               s);
    ck->unowned_spans++;
  } else if (neap__check_cache_known(ck, owner)) {
    NEAP_CHECK(ck, s->list >= NEAP_LIST_CURRENT, "span a cache owns is not on its lists", s);
    ck->owned_spans++;
  } else {
    NEAP_CHECK(ck, ck->abandoned, "span owned by a cache that is not registered", s);
  }
}

void neap__heap_check_pages(neap_check *ck) {
  neap__lock(&heap.lock);
  if (heap.inited)
    NEAP_CHECK(ck, neap__pa_check(&heap.pa), "page allocator's summaries, bitmaps or totals are wrong", &heap.pa);
  NEAP_CHECK(ck, heap.reserved == (uint64_t)heap.narenas * NEAP_ARENA_PAGES && heap.grown <= heap.reserved,
             "heap's arena counts are wrong", &heap);
  uint64_t span_pages = 0, lazy = 0, end = 0;
  neap_span *cur = NULL;
  for (size_t k = 0; k < heap.narenas && !ck->failed; k++) {
    neap_arena *a = heap.arenas[k];
    if (!NEAP_CHECK(ck, a->first_page == (uint64_t)k * NEAP_ARENA_PAGES && (a->base & (NEAP_ARENA_SIZE - 1)) == 0 &&
                            neap__arena_of(a->base) == a && neap__arena_of(a->base + NEAP_ARENA_SIZE - 1) == a,
                    "arena index does not find the arena", (void *)a->base))
      break;
    uintptr_t off;
    bool mapped = neap__pagemap_covers(a->base, &off);
    NEAP_CHECK(ck, mapped == (a->info_slot != NULL), "arena's page info and the page map's run differ", (void *)a->base);
    if (mapped)
      NEAP_CHECK(ck, a->spans == NEAP_LOAD(&neap__pagemap.map) + (off >> NEAP_PAGE_SHIFT),
                 "arena's span table is not its part of the page map", (void *)a->base);
    uint32_t chunk_pages = 0;
    for (uint64_t i = 0; i < NEAP_ARENA_PAGES && !ck->failed; i++) {
      uint64_t pg = a->first_page + i;
      uintptr_t addr = a->base + (i << NEAP_PAGE_SHIFT);
      neap_span *e = NEAP_LOAD(&a->spans[i]);
      neap_pa_page st = heap.inited ? neap__pa_page_state(&heap.pa, pg) : NEAP_PA_NOT_GROWN;
      if ((a->lazy[i >> 6] >> (i & 63)) & 1) {
        lazy++;
        NEAP_CHECK(ck, st == NEAP_PA_SCAVENGED, "lazy bit on a page not returned to the OS", (void *)addr);
      }
      if (cur != NULL && pg < end) {
        NEAP_CHECK(ck, e == cur, "page of a span maps to another", (void *)addr);
      } else if (e != NULL) {
        if (!NEAP_CHECK(ck, e->first_page == pg, "page maps to a span that does not cover it", (void *)addr)) break;
        cur = e;
        end = pg + e->npages;
        check_span(ck, e, pg);
      } else {
        cur = NULL;
      }
      if (e != NULL) {
        NEAP_CHECK(ck, st == NEAP_PA_INUSE, "page of a span is free in the page allocator", (void *)addr);
        span_pages++;
        chunk_pages++;
      } else {
        NEAP_CHECK(ck, st != NEAP_PA_INUSE, "page in use in the page allocator belongs to no span", (void *)addr);
      }
      if (a->info_slot != NULL) {
        NEAP_CHECK(ck, NEAP_LOAD(&a->info_slot[i]) == neap__pinfo_slot_of(e), "page info's class slot is wrong",
                   (void *)addr);
        if (e != NULL)
          NEAP_CHECK(ck, NEAP_LOAD(&a->info_start[i]) == neap__pinfo_start_of(pg - e->first_page, addr),
                     "page info's span offset is wrong", (void *)addr);
      }
      if (i % NEAP_CHUNK_PAGES == NEAP_CHUNK_PAGES - 1) {
        NEAP_CHECK(ck, a->chunk_inuse[i / NEAP_CHUNK_PAGES] == chunk_pages, "chunk's count of pages in use is wrong",
                   (void *)(addr - NEAP_CHUNK_SIZE + NEAP_PAGE_SIZE));
        chunk_pages = 0;
      }
    }
  }
  if (!ck->failed) {
    NEAP_CHECK(ck, cur == NULL || end <= heap.reserved, "span runs past the heap", cur);
    NEAP_CHECK(ck, span_pages == heap.pages_inuse, "heap's count of pages in spans is wrong", &heap.pages_inuse);
    NEAP_CHECK(ck, lazy == heap.pages_lazy, "heap's count of lazily returned pages is wrong", &heap.pages_lazy);
    NEAP_CHECK(ck, heap.peak_cur >= heap.pages_inuse, "heap's demand peak is below its pages in use", &heap.peak_cur);
    if (heap.inited)
      NEAP_CHECK(ck, neap__pa_pages_grown(&heap.pa) - neap__pa_pages_free(&heap.pa) == span_pages,
                 "page allocator's pages in use are not the spans' pages", &heap.pa);
  }
  neap__unlock(&heap.lock);
}
#endif
