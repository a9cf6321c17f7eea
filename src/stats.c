/* Statistics: neap_stats_read, one snapshot of the heap that tells the
 * truth about every byte.
 *
 * What it owns: the published cumulative counts (below). Everything else
 * it gathers:
 *   - the page heap's figures and every span's live objects come from one
 *     hold of the heap lock (heap.c: neap__heap_walk), so heap_sys =
 *     heap_inuse + heap_idle, heap_idle >= heap_released and heap_alloc <=
 *     heap_inuse hold exactly: no span can enter or leave the heap while
 *     its objects are counted;
 *   - objects handed out, per class, from the caches (cache.c:
 *     neap__cache_counts), read after the walk without stopping anyone;
 *   - metadata by kind (meta.c), the page allocator's own mappings, the
 *     scavenger's counters, the limit, and the kernel's view of the whole
 *     process (/proc/self), read right after.
 *
 * The hot paths count nothing extra for this: allocation counts a window
 * of 64 objects at a time, frees count nothing at all, and live objects
 * are found in the spans' bitmaps. The price is that mallocs (per class)
 * and live come from two reads, moments apart, while other threads go on:
 * frees = mallocs - live can come out short, or even negative, and a
 * naive difference could go backwards, which Prometheus reads as a
 * counter reset. So the handed-out counts are read *before* the walk
 * (each is a value its cache really had: never ahead of the truth at the
 * walk), live is published exactly, and settle() lets frees (hence
 * mallocs = frees + live) only grow. Everything published then lags the
 * truth by at most what other threads did during the read, never runs
 * ahead of it, and is exact again as soon as they are quiet: the errors
 * do not accumulate.
 *
 * Locking: stats_lock serialises snapshots (the published counts are
 * shared); it is taken before the registry and heap locks, never inside
 * them.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "cache.h"
#include "gc.h"
#include "heap.h"
#include "meta.h"
#include "scav.h"
#include "stats.h"
#include "memlimit.h"
#include "neap.h"
#include "os/os.h"

_Static_assert(NEAP_NUM_CLASSES <= NEAP_STATS_MAX_CLASSES, "neap_stats_t.by_class is too small");

static neap_mutex stats_lock = NEAP_MUTEX_INIT(STATS);
/* Published so far, per class (0: large objects): objects, and for large
 * objects bytes (small classes' bytes are count x size). */
static uint64_t pub_mallocs[NEAP_NUM_CLASSES], pub_frees[NEAP_NUM_CLASSES];
static uint64_t pub_large_bytes, pub_large_bytes_freed;

/* Settles a cumulative pair against an exact live figure: frees (and with
 * it the total) never go down, and total - freed = live. raw_total <= the
 * truth, so each candidate for freed is <= the true frees: a short
 * reading is made good by the next one, never carried forward. */
static void settle(uint64_t raw_total, uint64_t live, uint64_t *total, uint64_t *freed) {
  uint64_t f = *freed;
  if (raw_total > live && raw_total - live > f) f = raw_total - live;
  if (*total > live && *total - live > f) f = *total - live;
  *freed = f;
  *total = f + live;
}

/* The value of a "Key:   123 kB" line in a /proc file, in bytes; 0 if
 * absent. */
static uint64_t proc_kb(const char *buf, const char *key) {
  size_t klen = strlen(key);
  for (const char *p = buf; p != NULL && *p != '\0';) {
    if (strncmp(p, key, klen) == 0 && p[klen] == ':') {
      p += klen + 1;
      while (*p == ' ' || *p == '\t') p++;
      uint64_t v = 0;
      while (*p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
      return v * 1024;
    }
    p = strchr(p, '\n');
    if (p != NULL) p++;
  }
  return 0;
}

/* The kernel's view: RSS and LazyFree from smaps_rollup (Linux 4.14+),
 * else RSS from statm; VSZ from statm. Static buffers under stats_lock:
 * nothing here allocates. */
static void read_kernel(neap_stats_t *s) {
  static char buf[4096];
  if (neap__os_read_file("/proc/self/smaps_rollup", buf, sizeof buf) > 0) {
    s->kernel_rss = proc_kb(buf, "Rss");
    s->kernel_lazyfree = proc_kb(buf, "LazyFree");
  }
  if (neap__os_read_file("/proc/self/statm", buf, sizeof buf) > 0) {
    uint64_t pages[2] = {0, 0};
    const char *p = buf;
    for (int i = 0; i < 2; i++) {
      while (*p == ' ') p++;
      while (*p >= '0' && *p <= '9') pages[i] = pages[i] * 10 + (uint64_t)(*p++ - '0');
    }
    s->kernel_vsz = pages[0] * neap__os_page_size();
    if (s->kernel_rss == 0) s->kernel_rss = pages[1] * neap__os_page_size();
  }
}

/* The snapshot, with stats_lock held. */
static void snapshot_locked(neap_stats_t *s, bool kernel);

/* What the heap walk gathers: live objects by class (large ones in class
 * 0) and the large ones' bytes, with the scavenger's count of pages
 * returned lazily, read at the same moment. */
typedef struct heap_census {
  neap_heap_stats pages;
  uint64_t live[NEAP_NUM_CLASSES];
  uint64_t large_live_bytes;
  uint64_t lazy_pages;
} heap_census;

static void census_span(void *ctx, neap_span *s) {
  heap_census *hc = ctx;
  if (s == NULL) {
    neap_scav_totals st;
    neap__scav_totals(&st);
    hc->lazy_pages = st.lazy_pages;
  } else if (neap__kind_collected(s->kind)) {
    return; /* the collector's (gc.c counts them) */
  } else if (s->sizeclass != 0) {
    uint64_t announced = atomic_load_explicit(&s->rword, memory_order_relaxed) & NEAP_RW_COUNT_MASK;
    uint64_t inuse = neap__span_live(s);
    /* Mid-merge, bits can be cleared before the count drops. */
    hc->live[s->sizeclass] += inuse > announced ? inuse - announced : 0;
  } else if (neap__span_where(s) == NEAP_SPAN_LARGE) { /* not one being freed */
    hc->live[0]++;
    hc->large_live_bytes += neap__span_bytes(s);
  }
}

void neap__stats_snapshot(neap_stats_t *s, bool kernel) {
  neap__lock(&stats_lock);
  snapshot_locked(s, kernel);
  neap__unlock(&stats_lock); /* hs and cc are shared */
}

bool neap__stats_try_snapshot(neap_stats_t *s) {
  if (!neap__trylock(&stats_lock)) return false;
  snapshot_locked(s, true);
  neap__unlock(&stats_lock);
  return true;
}

static void snapshot_locked(neap_stats_t *s, bool kernel) {
  memset(s, 0, sizeof *s);
  s->version = NEAP_STATS_VERSION;

  static heap_census hs; /* big (per-class arrays): static, under stats_lock */
  static neap_cache_counts cc;
  neap__cache_counts(&cc); /* before the walk: see settle */
  memset(&hs, 0, sizeof hs);
  neap__heap_walk(&hs.pages, census_span, &hs);
  neap_meta_stats ms;
  neap__meta_stats(&ms);
  if (kernel) read_kernel(s);

  /* Objects, by class, settled; then the sums. */
  s->nclasses = NEAP_NUM_CLASSES;
  for (unsigned cls = 0; cls < NEAP_NUM_CLASSES; cls++) {
    /* Objects on free stacks are in use to their spans, free to the program. */
    hs.live[cls] -= cc.stacked[cls] < hs.live[cls] ? cc.stacked[cls] : hs.live[cls];
    settle(cc.nmalloc[cls], hs.live[cls], &pub_mallocs[cls], &pub_frees[cls]);
    uint64_t size = cls == 0 ? 0 : neap__class_size[cls];
    /* Large objects last, as the header says; small ones in size order. */
    neap_stats_class_t *c = &s->by_class[cls == 0 ? NEAP_NUM_CLASSES - 1 : cls - 1];
    c->size = size;
    c->mallocs = pub_mallocs[cls];
    c->frees = pub_frees[cls];
    s->mallocs += pub_mallocs[cls];
    s->frees += pub_frees[cls];
    s->heap_objects += hs.live[cls];
    s->heap_alloc += hs.live[cls] * size;
    s->total_alloc += pub_mallocs[cls] * size;
  }
  settle(cc.large_bytes, hs.large_live_bytes, &pub_large_bytes, &pub_large_bytes_freed);
  s->heap_alloc += hs.large_live_bytes;
  s->total_alloc += pub_large_bytes;
  s->threads = cc.threads;

  const neap_heap_stats *hp = &hs.pages;
  s->heap_sys = hp->pages_grown << NEAP_PAGE_SHIFT;
  s->heap_inuse = hp->pages_inuse << NEAP_PAGE_SHIFT;
  s->heap_idle = s->heap_sys - s->heap_inuse;
  s->heap_released = hp->pages_scavenged << NEAP_PAGE_SHIFT;
  /* The scavenger's lazy bits say which pages went back with MADV_FREE and
   * were not reused; the kernel may have reclaimed some since. */
  s->heap_released_resident = hs.lazy_pages << NEAP_PAGE_SHIFT;
  if (kernel && s->heap_released_resident > s->kernel_lazyfree) s->heap_released_resident = s->kernel_lazyfree;

  s->span_inuse = ms.kind_inuse[NEAP_META_SPAN];
  s->span_sys = ms.sys[NEAP_META_SPAN];
  s->cache_inuse = ms.kind_inuse[NEAP_META_CACHE];
  s->cache_sys = ms.sys[NEAP_META_CACHE];
  s->arena_meta_sys = ms.sys[NEAP_META_ARENA];
  s->pagealloc_sys = hp->pa_mapped;
  s->other_sys = ms.mapped - (ms.sys[NEAP_META_SPAN] + ms.sys[NEAP_META_CACHE] + ms.sys[NEAP_META_ARENA] +
                              ms.sys[NEAP_META_GC]);
  neap__gc_stats_fill(s);
  s->gc_sys += ms.sys[NEAP_META_GC];
  s->sys = s->heap_sys + s->span_sys + s->cache_sys + s->arena_meta_sys + s->pagealloc_sys + s->other_sys + s->gc_sys;
  s->held = s->sys - s->heap_released;
  s->reserved = hp->bytes_reserved;

  s->memlimit = neap__memlimit_bytes();
  s->memlimit_source = (uint64_t)neap__memlimit_source();
  s->memlimit_hard = s->memlimit != 0 && neap__memlimit_hard();

  neap_scav_totals st;
  neap__scav_totals(&st);
  s->scav_bg_bytes = st.bg_bytes;
  s->scav_eager_bytes = st.eager_bytes;
  s->scav_forced_bytes = st.forced_bytes;
  s->scav_cycles = st.cycles;
  s->scav_cpu_ns = st.cpu_ns;
}

int neap_stats_read(neap_stats_t *out, size_t size) {
  if (out == NULL || size < sizeof out->version) return EINVAL;
  neap_stats_t s;
  uint64_t t0 = neap__os_thread_cputime();
  neap__stats_snapshot(&s, true);
  neap__scav_note_stats_cpu(neap__os_thread_cputime() - t0);
  memcpy(out, &s, size < sizeof s ? size : sizeof s);
  return 0;
}

int neap_stats_print(neap_write_fn *fn, void *arg, neap_stats_format format) {
  if (fn == NULL) return EINVAL;
  neap_stats_t s;
  neap_stats_read(&s, sizeof s);
  return neap_stats_format_snapshot(&s, fn, arg, format);
}

void neap__stats_fork(neap_fork_phase phase) {
  neap__lock_fork(&stats_lock, phase);
}
