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

#include "heap.h"
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
  neap_arena *arenas[NEAP_MAX_ARENAS]; /* index order; 512 KiB of BSS, touched as used */
} heap = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uintptr_t page_addr(uint64_t page) {
  neap_arena *a = heap.arenas[page / NEAP_ARENA_PAGES];
  return a->base + ((uintptr_t)(page % NEAP_ARENA_PAGES) << NEAP_PAGE_SHIFT);
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
  for (size_t i = 0; i < k; i++) {
    neap_arena *a = neap__meta_alloc(sizeof(neap_arena));
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
    done = stop;
  }
  if (done > start) {
    if (neap__pa_grow(&heap.pa, start, done - start) != 0) return ENOMEM;
    heap.grown = done;
  }
  return err ? ENOMEM : 0;
}

/* Find npages free pages, reclaiming empty spans and then growing the heap
 * if needed. Called and returns with the heap lock held; drops it to
 * reclaim. */
static uint64_t alloc_pages_locked(uint64_t npages, uint64_t *nscav) {
  if (init_locked() != 0) return NEAP_PA_FAIL;
  uint64_t p = neap__pa_alloc(&heap.pa, npages, nscav);
  if (p != NEAP_PA_FAIL) return p;
  pthread_mutex_unlock(&heap.lock);
  size_t freed = neap__central_reclaim();
  pthread_mutex_lock(&heap.lock);
  if (freed != 0) {
    p = neap__pa_alloc(&heap.pa, npages, nscav);
    if (p != NEAP_PA_FAIL) return p;
  }
  if (grow_locked(npages) != 0) return NEAP_PA_FAIL;
  return neap__pa_alloc(&heap.pa, npages, nscav);
}

static void set_spans_locked(uint64_t first, uint64_t n, neap_span *s) {
  for (uint64_t pg = first; pg < first + n; pg++)
    NEAP_STORE(&heap.arenas[pg / NEAP_ARENA_PAGES]->spans[pg % NEAP_ARENA_PAGES], s);
}

neap_span *neap__heap_alloc_small_span(unsigned cls) {
  neap_span *s = neap__span_new(cls);
  if (s == NULL) return NULL;
  uint64_t npages = neap__class_pages[cls], nscav = 0;
  pthread_mutex_lock(&heap.lock);
  uint64_t first = alloc_pages_locked(npages, &nscav);
  if (first == NEAP_PA_FAIL) {
    pthread_mutex_unlock(&heap.lock);
    neap__span_delete(s);
    return NULL;
  }
  neap__span_init_small(s, cls, page_addr(first), first, nscav == npages);
  atomic_store_explicit(&s->state, NEAP_SPAN_SMALL, memory_order_relaxed);
  set_spans_locked(first, npages, s);
  heap.pages_inuse += npages;
  pthread_mutex_unlock(&heap.lock);
  return s;
}

neap_span *neap__heap_alloc_large(size_t size, size_t align, bool *zeroed) {
  if (size > NEAP_MAX_ALLOC || align > NEAP_MAX_ALLOC) return NULL;
  uint64_t npages = (size + NEAP_PAGE_SIZE - 1) >> NEAP_PAGE_SHIFT;
  if (npages == 0) npages = 1;
  uint64_t extra = align > NEAP_PAGE_SIZE ? (align >> NEAP_PAGE_SHIFT) - 1 : 0;
  neap_span *s = neap__span_new(0);
  if (s == NULL) return NULL;
  uint64_t nscav = 0;
  pthread_mutex_lock(&heap.lock);
  uint64_t first = alloc_pages_locked(npages + extra, &nscav);
  if (first == NEAP_PA_FAIL) {
    pthread_mutex_unlock(&heap.lock);
    neap__span_delete(s);
    return NULL;
  }
  bool fresh = nscav == npages + extra;
  if (extra != 0) {
    /* Keep the aligned part; give the head and tail back. Untouched pages
     * go back marked as still fresh. */
    uintptr_t base = page_addr(first);
    uint64_t head = (neap__align_up(base, align) - base) >> NEAP_PAGE_SHIFT, tail = extra - head;
    if (head != 0) {
      neap__pa_free(&heap.pa, first, head);
      if (fresh) neap__pa_mark_scavenged(&heap.pa, first, head);
    }
    if (tail != 0) {
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
  pthread_mutex_unlock(&heap.lock);
  *zeroed = fresh;
  return s;
}

void neap__heap_free_span(neap_span *s) {
  pthread_mutex_lock(&heap.lock);
  set_spans_locked(s->first_page, s->npages, NULL);
  neap__pa_free(&heap.pa, s->first_page, s->npages);
  heap.pages_inuse -= s->npages;
  pthread_mutex_unlock(&heap.lock);
  neap__span_delete(s);
}

bool neap__heap_resize_large(neap_span *s, size_t npages) {
  bool ok = true;
  pthread_mutex_lock(&heap.lock);
  if (npages < s->npages) {
    uint64_t cut = s->first_page + npages, n = s->npages - npages;
    set_spans_locked(cut, n, NULL);
    neap__pa_free(&heap.pa, cut, n);
    heap.pages_inuse -= n;
    s->npages = (uint32_t)npages;
  } else if (npages > s->npages) {
    uint64_t at = s->first_page + s->npages, n = npages - s->npages;
    ok = npages <= UINT32_MAX && neap__pa_alloc_at(&heap.pa, at, n, NULL);
    if (ok) {
      set_spans_locked(at, n, s);
      heap.pages_inuse += n;
      s->npages = (uint32_t)npages;
    }
  }
  pthread_mutex_unlock(&heap.lock);
  return ok;
}

size_t neap__heap_release(void) {
  size_t bytes = 0;
  uint64_t below = UINT64_MAX;
  for (;;) {
    /* Take the run out of the page allocator, so that nothing allocates it
     * while its pages go back, and return it without holding the lock. */
    pthread_mutex_lock(&heap.lock);
    uint64_t n = 0, base = NEAP_PA_FAIL;
    if (heap.inited) {
      if (below > heap.grown) below = heap.grown;
      base = neap__pa_find_unscavenged(&heap.pa, below, NEAP_CHUNK_PAGES, &n);
    }
    if (base != NEAP_PA_FAIL && !neap__pa_alloc_at(&heap.pa, base, n, NULL)) base = NEAP_PA_FAIL;
    pthread_mutex_unlock(&heap.lock);
    if (base == NEAP_PA_FAIL) break;
    /* A run never straddles arenas that are apart in memory (the fence),
     * so it is one address range. */
    bool ok = neap__os_return((void *)page_addr(base), (size_t)n << NEAP_PAGE_SHIFT, true) == 0;
    pthread_mutex_lock(&heap.lock);
    neap__pa_free(&heap.pa, base, n);
    if (ok) neap__pa_mark_scavenged(&heap.pa, base, n);
    pthread_mutex_unlock(&heap.lock);
    if (ok) bytes += (size_t)n << NEAP_PAGE_SHIFT;
    below = base;
  }
  return bytes;
}

void neap__heap_fork(neap_fork_phase phase) {
  if (phase == NEAP_FORK_PREPARE) pthread_mutex_lock(&heap.lock);
  else pthread_mutex_unlock(&heap.lock);
}

void neap__heap_small_live(uint64_t live[NEAP_NUM_CLASSES]) {
  pthread_mutex_lock(&heap.lock);
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
        live[s->sizeclass] += inuse > announced ? inuse - announced : 0;
      }
      pg += s->npages - 1;
    }
  }
  pthread_mutex_unlock(&heap.lock);
}

void neap__heap_stats(neap_heap_stats *out) {
  pthread_mutex_lock(&heap.lock);
  out->pages_grown = heap.inited ? neap__pa_pages_grown(&heap.pa) : 0;
  out->pages_free = heap.inited ? neap__pa_pages_free(&heap.pa) : 0;
  out->pages_scavenged = heap.inited ? neap__pa_pages_scavenged(&heap.pa) : 0;
  out->pages_inuse = heap.pages_inuse;
  out->arenas = heap.narenas;
  out->bytes_reserved = heap.narenas * NEAP_ARENA_SIZE;
  pthread_mutex_unlock(&heap.lock);
}
