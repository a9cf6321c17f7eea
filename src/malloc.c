/* neap's allocator: overview, and the public native API.
 *
 * Glossary: see internal.h (OS page 4 KiB, neap page 8 KiB, chunk 4 MiB,
 * arena 64 MiB, span, size class, page index).
 *
 * Allocation, from the top of the cache hierarchy down:
 *   1. Sizes up to 32 KiB round up to one of 68 size classes
 *      (sizeclass.h). The thread's cache (cache.c) has per class a stack
 *      of objects it freed: pop the newest. Else it has a current span and
 *      a 64-object window of it: take the lowest free bit, mark the object
 *      in use, return base + i*size. No lock, no atomic read-modify-write.
 *      This is all most calls do.
 *   2. Window empty: reload it from the same bitmap word if objects were
 *      freed there since, else move to the next word with a free object;
 *      at the span's end merge other threads' frees and wrap if a quarter
 *      of the span is free.
 *   3. Span full: park it, and make current one of the spans this thread
 *      owns that has room (frees by this thread or, via the inbox, by
 *      others made it); failing that, take one from the size class's
 *      central list (central.c), under that class's lock.
 *   4. No partial span: take a fresh span from the page heap (heap.c),
 *      under the heap lock: the page allocator (pagealloc.c) finds the
 *      lowest run of free pages through its radix tree of summaries.
 *   5. No free pages: reclaim spans that remote frees emptied, then grow
 *      the heap by whole 4 MiB chunks committed in reserved 64 MiB arenas
 *      (arena.c, os/).
 *   Larger objects skip 1-3: each gets a span of its own from step 4.
 *
 * Free, back up:
 *   1. The page info of the pointer's page (loads of 2 and 4 bytes:
 *      cache.h) gives its class's slot and its offset in its span; the page map
 *      (or the arena index off the page map's run) its span, or "not
 *      ours". The pointer must be the start
 *      of a live object of a live span, or neap prints one line and aborts
 *      (checked in every build; cache.c: the free mark).
 *   2. A small object goes on the freeing thread's free stack for its
 *      class, whichever thread's span it is in; the next malloc of the
 *      class pops it. No lock, no atomic, no span touched. Allocation
 *      step 1 tries the stack before the window.
 *   3. A full stack grows, if its class is being reused, or spills its
 *      objects back to their spans (cache.c says which, and how many): into a span
 *      this thread's cache owns (a thread owns every span it allocated
 *      from until the span empties or the thread exits), clear the
 *      object's in-use bit; a full span that gets room is refiled on the
 *      cache's own partial list; an owned span that empties is kept for
 *      the next refills (a bounded few) or given back to its central.
 *   4. Into any other span, set its bit in the span's remote bitmap (two
 *      atomic operations, no lock); the span's owner merges it later, and
 *      a span that sits in a central list is queued for its central.
 *   5. A span found empty by its central goes back to the page heap at
 *      once, so its pages can serve any size class; a large object's
 *      pages go back on free.
 *
 * Zeroing: memory fresh from the OS reads as zero. A span made of such
 * pages starts with needzero = 0 and keeps it while its first pass hands
 * out objects never used before; calloc skips memset for those, and for
 * large objects whose pages all came fresh from the OS.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "cache.h"
#include "heap.h"
#include "stats.h"
#include "neap.h"
#include "neap_gc.h"
#include "options.h"
#include "os/os.h"

/* --- failure reporting */

static size_t fmt_hex(char *out, uintptr_t v) {
  char tmp[2 + 2 * sizeof(uintptr_t)];
  size_t n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  out[0] = '0';
  out[1] = 'x';
  for (size_t i = 0; i < n; i++) out[2 + i] = tmp[n - 1 - i];
  return n + 2;
}

/* "neap: <msg> <ptr>\n" in one write. */
static void report(const char *msg, const void *ptr) {
  char line[256];
  size_t n = 0, m = strlen(msg);
  if (m > 200) m = 200;
  memcpy(line, "neap: ", 6);
  n = 6;
  memcpy(line + n, msg, m);
  n += m;
  line[n++] = ' ';
  n += fmt_hex(line + n, (uintptr_t)ptr);
  line[n++] = '\n';
  neap__os_write_err(line, n);
}

void neap__fatal(const char *msg, const void *ptr) {
  report(msg, ptr);
  neap__os_abort();
}

void neap__assert_fail(const char *expr, const char *file, int line) {
  (void)line;
  char buf[256];
  size_t n = 0;
  const char *parts[] = {"neap: assertion failed: ", expr, " at ", file, "\n"};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    size_t m = strlen(parts[i]);
    if (m > sizeof buf - n - 1) m = sizeof buf - n - 1;
    memcpy(buf + n, parts[i], m);
    n += m;
  }
  neap__os_write_err(buf, n);
  neap__os_abort();
}

/* --- allocation */

/* The smallest class whose objects are all aligned to `align` (a power of
 * two, 16 < align <= NEAP_PAGE_SIZE): spans start on 8 KiB boundaries, so a
 * class size that is a multiple of align will do; every power of two up
 * to 32 KiB is a class, so one always exists. */
static unsigned class_for_align(size_t size, size_t align) {
  unsigned cls = neap__size_class(size < align ? align : size);
  while (neap__class_size[cls] % align != 0) cls++;
  return cls;
}

static NEAP_NOINLINE void *alloc_small_slow(unsigned cls, bool zero) {
  neap_cache *c = neap__cache_mine();
  if (c == NULL && (c = neap__cache_get_slow()) == NULL) {
    if (neap__cache_exiting()) return neap__cache_alloc_exiting(cls, zero);
    goto oom;
  }
  neap_slot *slot = &c->slot[cls];
  void *p;
  uint64_t w = NEAP_LOAD(&slot->stack);
  if (neap__stack_n(w) != 0) {
    p = neap__slot_pop(slot, w);
    if (zero) memset(p, 0, neap__class_size[cls]);
    return p;
  }
  uint64_t b = NEAP_LOAD(&slot->bits);
  if (b != 0) {
    p = neap__slot_take(slot, b);
  } else {
    p = neap__cache_refill(c, slot);
    if (p == NULL) return NULL; /* errno is ENOMEM */
  }
  if (zero && slot->span->needzero) memset(p, 0, neap__class_size[cls]);
  return p;
oom:
  errno = ENOMEM;
  return NULL;
}

/* A large object is a span of one object, as many pages as it needs. */
static NEAP_NOINLINE void *alloc_large(size_t size, size_t align, bool zero) {
  bool zeroed = false;
  neap_span *s = size <= NEAP_MAX_ALLOC ? neap__span_new(0) : NULL;
  uint64_t npages = size == 0 ? 1 : (size + NEAP_PAGE_SIZE - 1) >> NEAP_PAGE_SHIFT;
  if (s != NULL) neap__span_init_large(s);
  if (s == NULL || neap__heap_alloc_pages(s, npages, align, &zeroed) != 0) {
    if (s != NULL) neap__span_delete(s);
    errno = ENOMEM;
    return NULL;
  }
  neap__cache_count_large(1, neap__span_bytes(s));
  NEAP_TRACK_ALLOC((void *)s->base, neap__span_bytes(s), zero && zeroed);
  if (zero && !zeroed) memset((void *)s->base, 0, size);
  return (void *)s->base;
}

/* A large span of its own whatever the size (whole pages), flagged so
 * that the collector's scan of malloc'd objects skips it. */
void *neap_malloc_noscan(size_t size) {
  void *p = alloc_large(size, 0, false);
  if (p != NULL) neap__span_of((uintptr_t)p)->noscan = 1;
  return p;
}

/* For aligned_alloc and posix_memalign: any size, any power-of-two alignment. */
static void *malloc_aligned(size_t size, size_t align, bool zero) {
  if (align <= NEAP_ALIGN) {
    if (size <= NEAP_SMALL_MAX) return alloc_small_slow(neap__size_class(size), zero);
  } else if (align <= NEAP_PAGE_SIZE && size <= NEAP_SMALL_MAX) {
    return alloc_small_slow(class_for_align(size, align), zero);
  }
  return alloc_large(size, align, zero);
}

/* For each size up to 1 KiB, indexed by (size + 15) >> 4 as the class
 * table is: the byte offset of its class's slot in a cache, so that the
 * fast path goes from size to slot with one load. */
#define SLOT_OFFSET(cls) (uint16_t)(offsetof(neap_cache, slot) + (cls) * sizeof(neap_slot))
static const uint16_t size_to_slot16[NEAP_SIZE_TO_CLASS16_LEN] = NEAP_SIZE_TO_CLASS16_MAP(SLOT_OFFSET);
_Static_assert(offsetof(neap_cache, slot) + NEAP_NUM_CLASSES * sizeof(neap_slot) <= UINT16_MAX,
               "slot offsets fit size_to_slot16");

/* The allocation path once the slot is known: pop the newest object of
 * its free stack, else take from its window, or refill it (a tail call;
 * the empty cache's stacks and windows are always empty, so a thread
 * without a cache lands in alloc_small_slow). */
NEAP_INLINE void *slot_alloc(neap_cache *c, neap_slot *slot) {
  uint64_t w = NEAP_LOAD(&slot->stack);
  if (NEAP_LIKELY(neap__stack_n(w) != 0)) return neap__slot_pop(slot, w);
  uint64_t b = NEAP_LOAD(&slot->bits);
  if (NEAP_LIKELY(b != 0)) return neap__slot_take(slot, b);
  if (NEAP_LIKELY(c != &neap__empty_cache)) return neap__cache_refill(c, slot);
  return alloc_small_slow((unsigned)(slot - neap__empty_cache.slot), false);
}

/* Sizes above 1 KiB: the same path with the coarser class table. */
static NEAP_NOINLINE void *malloc_medium(size_t size) {
  if (NEAP_LIKELY(size <= NEAP_SMALL_MAX)) {
    neap_cache *c = neap__tls_cache;
    return slot_alloc(c, &c->slot[neap__size_class(size)]);
  }
  return alloc_large(size, 0, false);
}

void *neap_malloc(size_t size) {
  if (NEAP_LIKELY(size <= NEAP_SIZE_TO_CLASS16_MAX)) {
    neap_cache *c = neap__tls_cache;
    return slot_alloc(c, (neap_slot *)(void *)((char *)c + size_to_slot16[(size + 15) >> 4]));
  }
  return malloc_medium(size);
}

void *neap_calloc(size_t n, size_t size) {
  size_t total;
  if (NEAP_UNLIKELY(__builtin_mul_overflow(n, size, &total))) {
    errno = ENOMEM;
    return NULL;
  }
  if (NEAP_LIKELY(total <= NEAP_SMALL_MAX)) return alloc_small_slow(neap__size_class(total), true);
  return alloc_large(total, 0, true);
}

void *neap_aligned_alloc(size_t alignment, size_t size) {
  if (NEAP_UNLIKELY(!neap__is_pow2(alignment))) {
    errno = EINVAL;
    return NULL;
  }
  return malloc_aligned(size, alignment, false);
}

int neap_posix_memalign(void **out, size_t alignment, size_t size) {
  if (alignment < sizeof(void *) || !neap__is_pow2(alignment)) return EINVAL;
  int saved = errno;
  void *p = malloc_aligned(size, alignment, false);
  errno = saved;
  if (p == NULL) return ENOMEM;
  *out = p;
  return 0;
}

/* --- free */

/* Memory outside every neap arena. The drop-in library meets it
 * legitimately: the dynamic loader allocates with its own minimal malloc
 * before neap takes over and may free those blocks through ours later. So
 * the policy (NEAPDEBUG=warnforeign) is to leave such memory alone: 0
 * ignores it silently, 1 warns once, 2 treats it as misuse and aborts.
 * Pointers inside neap's arenas are never foreign: anything wrong there is
 * misuse and aborts. */
static void foreign(const char *what, const void *ptr) {
  static _Atomic int warned;
  neap__options_init();
  if (neap__opt.warnforeign >= 2) neap__fatal(what, ptr);
  if (neap__opt.warnforeign == 1 && !atomic_exchange_explicit(&warned, 1, memory_order_relaxed)) {
    report(what, ptr);
    static const char more[] = "neap: (ignored; further foreign pointers are ignored silently)\n";
    neap__os_write_err(more, sizeof more - 1);
  }
}

/* Whether object p of class cls, in use to its span, waits on a free
 * stack: freed all the same (its mark alone could be the program's data). */
static bool stacked_free(const void *p, unsigned cls) {
  return NEAP_UNLIKELY(neap__mark_tagged(neap__mark_key(p))) && neap__cache_stacked(p, cls);
}

/* What a misuse message says, by the call that made it. */
typedef struct misuse_words {
  const char *foreign;     /* memory outside neap's heap (the foreign-pointer policy) */
  const char *interior;    /* inside a live object, not at its start */
  const char *not_live;    /* an object that is not allocated */
  const char *not_any;     /* in neap's heap, where no span is */
  const char *collected;   /* in the collector's heap (neap_gc.h) */
} misuse_words;
static const misuse_words by_free = {"free of a pointer neap does not own", "free of an interior pointer",
                                     "double free", "double free or invalid pointer",
                                     "free of a collected object (neap_gc_free frees those)"};
static const misuse_words by_realloc = {"realloc of a pointer neap does not own", "realloc of an interior pointer",
                                        "realloc of a pointer that is not allocated",
                                        "realloc of a pointer that is not allocated",
                                        "realloc of a collected object (neap_gc_realloc resizes those)"};
static const misuse_words by_usable = {"usable size of a pointer neap does not own",
                                       "usable size of an interior pointer",
                                       "usable size of a pointer that is not allocated",
                                       "usable size of a pointer that is not allocated",
                                       "usable size of a collected object (neap_gc_size tells it)"};

/* The live span whose object starts at p; NULL (after the foreign-pointer
 * policy) for memory outside neap's heap; aborts with a one-line message
 * for anything else, in the words of the call that made it. */
static neap_span *checked_span(const void *ptr, const misuse_words *say) {
  uintptr_t p = (uintptr_t)ptr;
  neap_span *s = neap__span_of(p);
  if (NEAP_UNLIKELY(s == NULL)) {
    if (neap__arena_of(p) == NULL) {
      foreign(say->foreign, ptr);
      return NULL;
    }
    neap__fatal(say->not_any, ptr);
  }
  if (NEAP_UNLIKELY(s->kind != NEAP_KIND_MALLOC)) neap__fatal(say->collected, ptr);
  uintptr_t off = p - s->base;
  if (s->sizeclass == 0) {
    if (NEAP_UNLIKELY(off != 0)) neap__fatal(say->interior, ptr);
    if (NEAP_UNLIKELY(neap__span_where(s) != NEAP_SPAN_LARGE))
      neap__fatal(say->not_live, ptr);
    return s;
  }
  unsigned idx = (unsigned)((off * s->divmul) >> 32);
  if (NEAP_UNLIKELY((uintptr_t)idx * s->elemsize != off || idx >= s->nelems)) neap__fatal(say->interior, ptr);
  if (NEAP_UNLIKELY(!neap__span_held(s, idx))) neap__fatal(say->not_live, ptr);
  if (stacked_free(ptr, s->sizeclass)) neap__fatal(say->not_live, ptr);
  return s;
}

static void free_large(neap_span *s, void *p) {
  if (!neap__span_claim(s, NEAP_SPAN_LARGE, NEAP_SPAN_DEAD)) neap__fatal("double free", p);
  NEAP_TRACK_FREE(p);
  neap__heap_free_pages(s);
  neap__span_delete(s);
}

/* Everything the fast path does not take: NULL, large objects, a full
 * free stack, a thread without a cache, arenas off the page map's run,
 * and every kind of misuse. */
static NEAP_NOINLINE void free_slow(void *p) {
  if (p == NULL) return;
  neap_span *s = checked_span(p, &by_free);
  if (s == NULL) return;
  if (s->sizeclass == 0) free_large(s, p);
  else neap__cache_free_small(neap__tls_cache, s, p);
}

/* The fast paths' test of p, in page number `page` of a span of the
 * slot's class: an object's start (the low half of the product is below
 * divmul exactly at object starts: test_sizeclass checks every offset)
 * without its free mark's tag (cache.h). Never true for class 0's slot,
 * whose divmul is 0 (large spans, pages with no span, the empty cache). */
NEAP_INLINE bool live_start(const neap_slot *slot, uintptr_t page, const void *p) {
  uint32_t divmul = slot->divmul;
  return neap__pinfo_offset(page, (uintptr_t)p) * divmul < divmul && !neap__maybe_free(p);
}

/* The free fast path reads the page's info (pagemap.h, cache.h), which gives the
 * class's slot and the offset in the span, and the object's first 16
 * bytes; it pushes the object on the thread's free stack for its class,
 * and never touches the span. Checked in every build (NEAP_FREE_CHECKS):
 * live_start, an object's start without its mark's tag (the span's tail
 * always has it: cache.c). Anything else, and a full stack, goes to
 * free_slow, which says exactly what was wrong. */
void neap_free(void *p) {
  uintptr_t page;
  if (NEAP_LIKELY(neap__pagemap_reach((uintptr_t)p, &page))) {
    neap_slot *slot = neap__pinfo_slot(neap__tls_cache, page); /* large, or no span: class 0's */
    uint64_t w = NEAP_LOAD(&slot->stack);
    if (NEAP_LIKELY((uint16_t)w < slot->cap)) { /* n; the empty cache's caps are 0 */
#if NEAP_FREE_CHECKS
      if (NEAP_UNLIKELY(!live_start(slot, page, p))) {
        free_slow(p);
        return;
      }
#endif
      neap__slot_push(slot, p, w);
      return;
    }
  }
  free_slow(p);
}

static NEAP_NOINLINE size_t usable_slow(const void *p) {
  if (p == NULL) return 0;
  neap_span *s = checked_span(p, &by_usable);
  if (s == NULL) return 0;
  return s->sizeclass ? s->elemsize : neap__span_bytes(s);
}

/* Programs call it on every allocation and free (redis does), so a live
 * small object's size comes with the free fast path's test (live_start):
 * from the page info and the calling thread's slot for the class (its
 * size and divmul, the same in every cache), without touching the span.
 * Anything else (large objects, collected ones, memory outside the heap,
 * misuse) goes to the full check. */
size_t neap_usable_size(const void *p) {
  uintptr_t page;
  if (NEAP_LIKELY(neap__pagemap_reach((uintptr_t)p, &page))) {
    const neap_slot *slot = neap__pinfo_slot(neap__tls_cache, page);
    if (NEAP_LIKELY(live_start(slot, page, p))) return slot->size;
  }
  return usable_slow(p);
}

/* A sized free must name a size the block could hold as it is now:
 * at most its usable size, and for a large block more than one page less
 * (a large block is always exactly the pages its size needs; realloc keeps
 * it so). A small block cannot tell a smaller size from one realloc shrank
 * in place, so only the upper bound is checked there. */
static bool check_size(const void *p, size_t size) {
  neap_span *s = checked_span(p, &by_free);
  if (s == NULL) return false;
  size_t usable = s->sizeclass ? s->elemsize : neap__span_bytes(s);
  if (size == 0) size = 1; /* a zero-size block still has its first page */
  bool ok = size <= usable && (s->sizeclass != 0 || usable - size < NEAP_PAGE_SIZE);
  if (NEAP_UNLIKELY(!ok)) neap__fatal("free with the wrong size", p);
  return true;
}

void neap_free_sized(void *p, size_t size) {
  if (p == NULL || !check_size(p, size)) return;
  neap_free(p);
}

void neap_free_aligned_sized(void *p, size_t alignment, size_t size) {
  if (p == NULL) return;
  if (!neap__is_pow2(alignment)) neap__fatal("free with an alignment that is not a power of two", p);
  if (!check_size(p, size)) return;
  if (((uintptr_t)p & (alignment - 1)) != 0) neap__fatal("free with the wrong alignment", p);
  neap_free(p);
}

/* --- realloc */

void *neap_realloc(void *p, size_t size) {
  if (p == NULL) return neap_malloc(size);
  if (size == 0) {
    neap_free(p);
    return NULL;
  }
  neap_span *s = checked_span(p, &by_realloc);
  if (s == NULL) { /* its size is unknown: fail, leaving it untouched */
    errno = EINVAL;
    return NULL;
  }
  if (NEAP_UNLIKELY(size > NEAP_MAX_ALLOC)) { /* before any page arithmetic can wrap */
    errno = ENOMEM;
    return NULL;
  }
  size_t usable;
  if (s->sizeclass != 0) {
    usable = s->elemsize;
    /* In place when it fits and is not much smaller than the block. */
    if (size <= usable && (size > usable / 2 || neap__size_class(size) == s->sizeclass)) return p;
  } else {
    usable = neap__span_bytes(s);
    if (size > NEAP_SMALL_MAX || s->noscan) {
      /* Large stays large: shrink in place, or grow into the free
       * pages that follow it when there are any. */
      size_t npages = (size + NEAP_PAGE_SIZE - 1) >> NEAP_PAGE_SHIFT;
      if (npages == s->npages) return p;
      if (npages <= UINT32_MAX && neap__heap_resize_pages(s, npages)) {
        if (neap__span_bytes(s) > usable) neap__cache_count_large(0, neap__span_bytes(s) - usable);
        NEAP_TRACK_RESIZE(p, usable, neap__span_bytes(s));
        return p;
      }
    }
  }
  void *q = s->sizeclass == 0 && s->noscan ? neap_malloc_noscan(size) : neap_malloc(size);
  if (q == NULL) return NULL; /* errno is ENOMEM; p is untouched */
  memcpy(q, p, size < usable ? size : usable);
  neap_free(p);
  return q;
}

/* --- introspection */

int neap_owns(const void *p) { return neap__arena_of((uintptr_t)p) != NULL; }

#if NEAP_TESTING
void *neap__object_start(const void *ptr) {
  uintptr_t p = (uintptr_t)ptr;
  neap_span *s = neap__span_of(p);
  if (s == NULL) return NULL;
  if (s->sizeclass == 0)
    return neap__span_where(s) == NEAP_SPAN_LARGE ? (void *)s->base : NULL;
  uintptr_t off = p - s->base;
  unsigned idx = (unsigned)((off * s->divmul) >> 32);
  if (idx >= s->nelems) return NULL;
  if (!neap__span_held(s, idx)) return NULL;
  void *start = (void *)(s->base + (uintptr_t)idx * s->elemsize);
  if (stacked_free(start, s->sizeclass)) return NULL;
  return start;
}

size_t neap__heap_live_bytes(void) {
  neap_stats_t s;
  neap__stats_snapshot(&s, false);
  return (size_t)s.heap_alloc;
}

size_t neap__heap_live_objects(void) {
  neap_stats_t s;
  neap__stats_snapshot(&s, false);
  return (size_t)s.heap_objects;
}
#endif
