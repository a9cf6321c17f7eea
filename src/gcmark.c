/* The mark: from the roots (gcroots.c's job table) to every reachable
 * collected object, by N markers in parallel, with the world stopped.
 *
 * What it owns: the markers (threads started once, asleep between
 * cycles), their work stacks and the shared list of work blocks.
 *
 * The work is ranges of words to scan: a root range, or a scanned
 * object. Scanning a word looks it up in the object map (gcalloc.c: the
 * page map, then the span's class division and its bitmaps): a word that
 * falls inside an existing collected object marks it, and an object of
 * the scan kind marked for the first time is pushed to be scanned. No
 * recursion: each marker has a local stack of ranges; when it is full,
 * half of it goes to the shared list as a block, so a stack never
 * overflows and nothing is ever rescanned; memory for blocks is mapped as
 * needed and kept (the stacks' high-water mark). A range longer than 64
 * KiB is scanned a piece at a time, the rest pushed back, so that other
 * markers can take a large object's parts.
 *
 * Prefetching. A scan's time is the memory's: the objects of a large
 * heap are rarely in the cache, and neither are the spans' records whose
 * bitmaps a candidate word is checked against. So each marker keeps two
 * small queues and fetches ahead of itself: a range taken from the stack
 * waits in a FIFO of AHEAD ranges, its first line prefetched, before it
 * is scanned; and a word that points into the heap waits in a ring of
 * CANDIDATES words, its span's first three lines prefetched, before it is
 * marked. (binary-trees 20: the mark's CPU time fell from 19.9 s to 7.2 s;
 * a tree of 4M objects laid out at random marks in 118 ms instead of 172
 * with the ring, as laid out by its allocation, in 70 ms.)
 *
 * Balance. A marker whose stack runs dry takes a block from the shared
 * list; when the list is empty too it raises `hungry`, and the markers
 * that have work give half of it to the list at their next check (every
 * 256 ranges). The mark ends when every marker is idle and the list is
 * empty. First, the markers take root jobs off the table with one atomic
 * increment each.
 *
 * How many. N comes from the heap's size (one marker per 16 MiB of
 * collected heap, at most the CPUs this process may use), so that a small
 * heap or a single CPU pays nothing for parallelism: with one marker the
 * collector's own thread marks alone, with no atomic on the mark bits and
 * no thread woken. NEAP_GC_MARKERS overrides.
 *
 * Sanitizers: scanning reads every word of stacks (their redzones, other
 * threads' frames) and of objects as they are: the scanning functions
 * are exempt from ASan and TSan, and nothing else is.
 *
 * Locking: the shared list's lock (a spin lock: held for a few
 * instructions, by markers only, with the world stopped, so it is not
 * one of lock.h's ranks).
 */
#include <string.h>

#include "gc.h"
#include "options.h"
#include "os/os.h"

#define LOCAL_CAP 4096u         /* ranges in a marker's own stack */
#define BLOCK_ITEMS 1024u       /* ranges a block moves */
#define SPLIT_BYTES ((uintptr_t)64 << 10)
#define MAX_MARKERS 64u
#define BALANCE_EVERY 256u
#define AHEAD 16u      /* ranges between their prefetch and their scan */
#define CANDIDATES 8u  /* words between their span's prefetch and their mark */

/* A conservative scan reads words nobody wrote (a stack's dead slots, an
 * object's padding, ASan's red zones on a stack) and words other threads
 * wrote before they stopped. The sanitizers are told about the load of
 * each word alone: peek is their one unchecked access, out of line in
 * their builds (an inlined helper's scope poisoning would outlive a frame
 * the sanitizer does not clean up), and a plain load in every other. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
static NEAP_NOINLINE __attribute__((no_sanitize("address", "thread", "undefined"))) uintptr_t peek(const uintptr_t *p) {
  return *(const volatile uintptr_t *)p;
}
#else
NEAP_INLINE uintptr_t peek(const uintptr_t *p) { return *p; }
#endif

typedef struct block {
  struct block *next;
  uint32_t n;
  neap_gc_range item[BLOCK_ITEMS];
} block;

/* A word found to point into the heap, and its span, waiting for the
 * span's lines to arrive (see `consider`). */
typedef struct candidate {
  uintptr_t v;
  neap_span *s;
} candidate;

typedef struct marker {
  neap_gc_range *stack; /* LOCAL_CAP ranges, mapped once */
  uint32_t n;
  uint32_t cand_head, cand_n; /* the ring `cand` */
  candidate cand[CANDIDATES];
  uint32_t since_balance;
  bool atomic_marks;
  uint64_t marked_bytes, marked_objects, scanned_bytes, malloc_bytes;
  uint64_t cpu_ns;
  uint32_t go_seen; /* the round its thread was made in (gcmark's `go`) */
} __attribute__((aligned(NEAP_CACHE_LINE))) marker;

static marker markers[MAX_MARKERS];
static atomic_flag list_lock = ATOMIC_FLAG_INIT;
static block *full_list, *free_blocks;
static _Atomic uint32_t full_count;
static _Atomic uint32_t hungry, idle;
static _Atomic size_t next_job;
static unsigned active_markers;
static _Atomic uint64_t mark_sys; /* bytes mapped for stacks and blocks */

/* Marker threads: asleep on `go` between cycles. */
static _Atomic uint32_t go, finished;
static unsigned threads_started;

static void list_acquire(void) {
  while (atomic_flag_test_and_set_explicit(&list_lock, memory_order_acquire)) NEAP_SPIN_PAUSE();
}
static void list_release(void) { atomic_flag_clear_explicit(&list_lock, memory_order_release); }

/* A block for the shared list; NULL when no memory can be had (the
 * caller then scans on with what it has: nothing is dropped). */
static block *block_get(void) {
  list_acquire();
  block *b = free_blocks;
  if (b != NULL) free_blocks = b->next;
  list_release();
  if (b != NULL) return b;
  size_t chunk = (size_t)1 << 20, per = chunk / sizeof(block);
  void *mem;
  if (neap__os_map(chunk, &mem) != 0) return NULL;
  atomic_fetch_add_explicit(&mark_sys, chunk, memory_order_relaxed);
  block *first = mem;
  list_acquire();
  for (size_t i = 1; i < per; i++) {
    first[i].next = free_blocks;
    free_blocks = &first[i];
  }
  list_release();
  return first;
}

/* Moves the older half of m's stack to the shared list. */
static bool give_half(marker *m) {
  if (m->n < 2) return false;
  block *b = block_get();
  if (b == NULL) return false;
  uint32_t k = m->n / 2;
  if (k > BLOCK_ITEMS) k = BLOCK_ITEMS;
  memcpy(b->item, m->stack, k * sizeof(neap_gc_range));
  memmove(m->stack, m->stack + k, (m->n - k) * sizeof(neap_gc_range));
  m->n -= k;
  b->n = k;
  list_acquire();
  b->next = full_list;
  full_list = b;
  atomic_fetch_add_explicit(&full_count, 1, memory_order_release);
  list_release();
  return true;
}

static bool take_block(marker *m) {
  if (atomic_load_explicit(&full_count, memory_order_acquire) == 0) return false;
  list_acquire();
  block *b = full_list;
  if (b != NULL) {
    full_list = b->next;
    atomic_fetch_sub_explicit(&full_count, 1, memory_order_relaxed);
  }
  list_release();
  if (b == NULL) return false;
  memcpy(m->stack + m->n, b->item, b->n * sizeof(neap_gc_range));
  m->n += b->n;
  list_acquire();
  b->next = free_blocks;
  free_blocks = b;
  list_release();
  return true;
}

static void scan(marker *m, uintptr_t lo, uintptr_t hi);
static __thread unsigned scan_depth;

static void push(marker *m, uintptr_t lo, uintptr_t hi) {
  if (NEAP_UNLIKELY(m->n == LOCAL_CAP) && !give_half(m)) {
    /* No memory for a block (the OS refused 1 MiB): scan the newest
     * range now to make room, a bounded number of levels deep. */
    if (++scan_depth > 32) neap__fatal("gc: out of memory for the mark stack", NULL);
    neap_gc_range r = m->stack[--m->n];
    scan(m, r.lo, r.hi);
    scan_depth--;
  }
  m->stack[m->n++] = (neap_gc_range){lo, hi};
}

/* Marks the object word v points into, if any (s: v's span); pushes it
 * when it is to be scanned and newly marked. */
NEAP_INLINE void mark_word(marker *m, uintptr_t v, neap_span *s) {
  if (!neap__kind_collected(s->kind)) return;
  unsigned i = 0;
  uintptr_t base;
  size_t size;
  if (s->sizeclass != 0) {
    if (NEAP_UNLIKELY(neap__span_where(s) != NEAP_SPAN_COLLECTED)) return;
    uintptr_t off = v - s->base;
    i = (unsigned)((off * s->divmul) >> 32);
    if (i >= s->nelems) return;
    uint64_t bit = 1ull << (i & 63);
    unsigned w = i >> 6;
    if (!(NEAP_LOAD(neap__span_inuse(s, w)) & ~NEAP_LOAD(neap__span_remote(s, w)) & bit)) return;
    _Atomic uint64_t *mw = neap__gc_markword(s, w);
    uint64_t old = NEAP_LOAD(mw);
    if (old & bit) return;
    if (m->atomic_marks) {
      if (atomic_fetch_or_explicit(mw, bit, memory_order_relaxed) & bit) return;
    } else {
      NEAP_STORE(mw, old | bit);
    }
    size = s->elemsize;
    base = s->base + (uintptr_t)i * size;
  } else {
    if (NEAP_UNLIKELY(neap__span_where(s) != NEAP_SPAN_LARGE)) return;
    _Atomic uint64_t *mw = neap__gc_markword(s, 0);
    uint64_t old = NEAP_LOAD(mw);
    if (old & 1u) return;
    if (m->atomic_marks) {
      if (atomic_fetch_or_explicit(mw, 1u, memory_order_relaxed) & 1u) return;
    } else {
      NEAP_STORE(mw, old | 1u);
    }
    base = s->base;
    size = neap__span_bytes(s);
  }
  m->marked_bytes += size;
  m->marked_objects++;
  if (s->kind == NEAP_KIND_GC_SCAN) push(m, base, base + size);
}

/* A word that points into the heap: its span's record is looked up and
 * its first lines (the class, the bitmaps) fetched now, and the word is
 * marked CANDIDATES words later, when they have arrived. */
NEAP_INLINE void consider(marker *m, uintptr_t v) {
  neap_span *s = neap__span_of(v);
  if (s == NULL) return;
  __builtin_prefetch(s);
  __builtin_prefetch((const char *)s + NEAP_CACHE_LINE);
  __builtin_prefetch((const char *)s + 2 * NEAP_CACHE_LINE);
  candidate c = {v, s};
  if (m->cand_n == CANDIDATES) {
    candidate old = m->cand[m->cand_head];
    m->cand[m->cand_head] = c;
    m->cand_head = (m->cand_head + 1) % CANDIDATES;
    mark_word(m, old.v, old.s);
  } else {
    m->cand[(m->cand_head + m->cand_n++) % CANDIDATES] = c;
  }
}

/* Marks the words still waiting (they may push more work). */
static void flush_candidates(marker *m) {
  while (m->cand_n != 0) {
    candidate c = m->cand[m->cand_head];
    m->cand_head = (m->cand_head + 1) % CANDIDATES;
    m->cand_n--;
    mark_word(m, c.v, c.s);
  }
}

/* The bounds of the heap's addresses (any collected object is inside),
 * a cheap first test for the words scanned. */
static uintptr_t heap_lo, heap_span; /* left out of the roots (gc.h) */
#if NEAP_TESTING
__attribute__((visibility("default"))) uintptr_t neap__gc_watch, neap__gc_watch_size, neap__gc_watch_from;
#endif

static void scan(marker *m, uintptr_t lo, uintptr_t hi) {
  m->scanned_bytes += hi - lo;
  const uintptr_t *p = (const uintptr_t *)lo, *end = (const uintptr_t *)hi;
  uintptr_t hlo = heap_lo, hspan = heap_span;
  for (; p < end; p++) {
    uintptr_t v = peek(p);
#if NEAP_TESTING
    if (NEAP_UNLIKELY(neap__gc_watch != 0) && v - ~neap__gc_watch < neap__gc_watch_size) neap__gc_watch_from = (uintptr_t)p;
#endif
    if (v - hlo < hspan) consider(m, v);
  }
}


/* The live objects of the malloc'd spans in [lo, hi) (an arena's pages):
 * each span is scanned from its first page. */
static void scan_malloc_pages(marker *m, uintptr_t lo, uintptr_t hi) {
  for (uintptr_t p = lo; p < hi;) {
    neap_span *s = neap__span_of(p);
    if (s == NULL || s->kind != NEAP_KIND_MALLOC || s->base != p) {
      p += NEAP_PAGE_SIZE;
      continue;
    }
    unsigned where = neap__span_where(s);
    size_t bytes = neap__span_bytes(s);
    if (s->sizeclass == 0) {
      if (where == NEAP_SPAN_LARGE && !s->noscan) {
        m->malloc_bytes += bytes;
        push(m, s->base, s->base + bytes);
      }
    } else if (neap__where_small(where)) {
      for (unsigned w = 0; w < s->nwords; w++) {
        uint64_t live = NEAP_LOAD(neap__span_inuse(s, w)) & ~NEAP_LOAD(neap__span_remote(s, w)) &
                        neap__span_word_objects(s, w);
        while (live != 0) {
          unsigned i = w * 64u + (unsigned)neap__lowest_bit(live);
          live &= live - 1;
          uintptr_t o = s->base + (uintptr_t)i * s->elemsize;
          m->malloc_bytes += s->elemsize;
          scan(m, o, o + s->elemsize);
        }
      }
    }
    p = s->base + bytes;
  }
}

static void do_job(marker *m, const neap_gc_job *j) {
  if (j->kind == NEAP_GC_JOB_MALLOC_PAGES) scan_malloc_pages(m, j->lo, j->hi);
  else push(m, j->lo, j->hi);
}

/* Drains m's stack (and the root jobs, and the shared list) until the
 * mark is over. */
static void drain(marker *m) {
  neap_gc_range ahead[AHEAD];
  unsigned head = 0, queued = 0;
  for (;;) {
    while (m->n != 0 || queued != 0 || m->cand_n != 0) {
      if (m->n == 0 && queued == 0) {
        flush_candidates(m);
        continue;
      }
      if (m->n != 0 && queued < AHEAD) {
        neap_gc_range r = m->stack[--m->n];
        if (r.hi - r.lo > SPLIT_BYTES) {
          m->stack[m->n++] = (neap_gc_range){r.lo + SPLIT_BYTES, r.hi};
          r.hi = r.lo + SPLIT_BYTES;
        }
        __builtin_prefetch((const void *)r.lo);
        ahead[(head + queued++) % AHEAD] = r;
        continue;
      }
      neap_gc_range r = ahead[head];
      head = (head + 1) % AHEAD;
      queued--;
      scan(m, r.lo, r.hi);
      if (active_markers > 1 && ++m->since_balance >= BALANCE_EVERY) {
        m->since_balance = 0;
        if (atomic_load_explicit(&hungry, memory_order_relaxed) && m->n > 4 && give_half(m))
          atomic_store_explicit(&hungry, 0, memory_order_relaxed);
      }
    }
    size_t j = atomic_fetch_add_explicit(&next_job, 1, memory_order_relaxed);
    if (j < neap__gc_njobs) {
      do_job(m, &neap__gc_jobs[j]);
      continue;
    }
    if (take_block(m)) continue;
    if (active_markers == 1) return;
    /* Idle: wait for work, or for everyone to be idle. */
    atomic_fetch_add_explicit(&idle, 1, memory_order_acq_rel);
    for (;;) {
      atomic_store_explicit(&hungry, 1, memory_order_relaxed);
      if (atomic_load_explicit(&full_count, memory_order_acquire) != 0) {
        atomic_fetch_sub_explicit(&idle, 1, memory_order_acq_rel);
        if (take_block(m)) break;
        atomic_fetch_add_explicit(&idle, 1, memory_order_acq_rel);
        continue;
      }
      if (atomic_load_explicit(&idle, memory_order_acquire) == active_markers) return;
      NEAP_SPIN_PAUSE();
    }
  }
}

static bool marker_init(marker *m) {
  if (m->stack != NULL) return true;
  void *mem;
  if (neap__os_map(LOCAL_CAP * sizeof(neap_gc_range), &mem) != 0) return false;
  atomic_fetch_add_explicit(&mark_sys, LOCAL_CAP * sizeof(neap_gc_range), memory_order_relaxed);
  m->stack = mem;
  return true;
}

static void mark_as(marker *m) {
  uint64_t t0 = neap__os_thread_cputime();
  m->n = 0;
  m->cand_n = m->cand_head = 0;
  m->since_balance = 0;
  m->atomic_marks = active_markers > 1;
  m->marked_bytes = m->marked_objects = m->scanned_bytes = m->malloc_bytes = 0;
  drain(m);
  m->cpu_ns = neap__os_thread_cputime() - t0;
}

static void *marker_main(void *arg) {
  neap__tls_internal = true;
  unsigned id = (unsigned)(uintptr_t)arg;
  /* The rounds before this thread was made are not its to answer. */
  uint32_t seen = markers[id].go_seen;
  for (;;) {
    uint32_t g;
    while ((g = atomic_load_explicit(&go, memory_order_acquire)) == seen) neap__os_futex_wait(&go, seen, 0);
    seen = g;
    if (id < active_markers) mark_as(&markers[id]);
    atomic_fetch_add_explicit(&finished, 1, memory_order_acq_rel);
    neap__os_futex_wake(&finished, true);
  }
  return NULL;
}

unsigned neap__gc_markers_for(uint64_t heap_bytes) {
  unsigned ncpu = neap__os_ncpu();
  if (neap__opt.gc_markers > 0) {
    unsigned n = (unsigned)neap__opt.gc_markers;
    return n > MAX_MARKERS ? MAX_MARKERS : n;
  }
  uint64_t n = 1 + heap_bytes / ((uint64_t)16 << 20);
  if (n > ncpu) n = ncpu;
  if (n > 32) n = 32;
  return (unsigned)n;
}

/* Before the stop: the marker threads and stacks a mark with n markers
 * needs (thread creation allocates; the world must be running). Returns
 * how many markers can run. */
unsigned neap__gc_markers_ready(unsigned n) {
  if (n > MAX_MARKERS) n = MAX_MARKERS;
  for (unsigned i = 0; i < n; i++)
    if (!marker_init(&markers[i])) return i == 0 ? 1 : i;
  while (threads_started + 1 < n) {
    unsigned id = threads_started + 1;
    markers[id].go_seen = atomic_load_explicit(&go, memory_order_relaxed);
    if (neap__os_thread_start(marker_main, (void *)(uintptr_t)id, "neap-marker") != 0) break;
    threads_started++;
  }
  return threads_started + 1 < n ? threads_started + 1 : n;
}

void neap__gc_mark(unsigned n, neap_gc_markstats *out) {
  memset(out, 0, sizeof *out);
  /* The heap's address range: every arena is inside it. */
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (size_t k = 0;; k++) {
    neap_arena *a = neap__heap_arena(k);
    if (a == NULL) break;
    if (a->base < lo) lo = a->base;
    if (a->base + NEAP_ARENA_SIZE > hi) hi = a->base + NEAP_ARENA_SIZE;
  }
  static bool not_root;
  if (!not_root) {
    /* heap_lo is an arena's start; the markers' rings keep the last
     * cycle's words: neither is a root. */
    neap__gc_not_root(&heap_lo, sizeof heap_lo);
    neap__gc_not_root(markers, sizeof markers);
    not_root = true;
  }
  heap_lo = lo;
  heap_span = hi > lo ? hi - lo : 0;
  active_markers = n == 0 ? 1 : n;
  atomic_store_explicit(&next_job, 0, memory_order_relaxed);
  atomic_store_explicit(&idle, 0, memory_order_relaxed);
  atomic_store_explicit(&hungry, 0, memory_order_relaxed);
  atomic_store_explicit(&finished, 0, memory_order_relaxed);
  if (active_markers > 1) {
    atomic_fetch_add_explicit(&go, 1, memory_order_release);
    neap__os_futex_wake(&go, true);
  }
  mark_as(&markers[0]);
  if (active_markers > 1) {
    /* Every marker thread answers each go, the idle ones too. */
    uint32_t f;
    while ((f = atomic_load_explicit(&finished, memory_order_acquire)) < threads_started)
      neap__os_futex_wait(&finished, f, 0);
  }
  for (unsigned i = 0; i < active_markers; i++) {
    out->marked_bytes += markers[i].marked_bytes;
    out->marked_objects += markers[i].marked_objects;
    out->scanned_bytes += markers[i].scanned_bytes;
    out->malloc_bytes += markers[i].malloc_bytes;
    out->cpu_ns += markers[i].cpu_ns;
  }
  out->markers = active_markers;
  out->cpu_self_ns = markers[0].cpu_ns;
}

uint64_t neap__gc_mark_sys(void) { return atomic_load_explicit(&mark_sys, memory_order_relaxed); }

void neap__gc_mark_fork_child(void) {
  /* The markers are the parent's threads: the child starts its own. */
  threads_started = 0;
  atomic_flag_clear(&list_lock);
}
