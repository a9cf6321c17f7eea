/* Collected allocation: the collector's spans, the threads' windows on
 * them, their central lists, the sweep, and the object map.
 *
 * What it owns. Collected objects live in spans of their own kinds,
 * NEAP_KIND_GC_SCAN (scanned for pointers) and NEAP_KIND_GC_NOSCAN, from
 * the same page heap as malloc's; a span never holds both malloc'd and
 * collected objects, and its kind is fixed for its life. A collected
 * span's pages have no page info (class 0's slot), so every neap_free of
 * a collected object takes the free slow path, which finds the kind and
 * calls it misuse. A small collected span is in state COLLECTED its whole
 * life, a large collected object LARGE as a malloc'd one (span.c); which
 * list it is on is this file's business alone.
 *
 * Allocation. Each thread has, per kind and class, a slot (gc.h): the
 * current span and a window of 64 of its objects. Taking one is the
 * malloc fast path without the free stack: the lowest bit of the window,
 * its in-use bit set, the object zeroed for the scan kind. No lock, no
 * atomic read-modify-write. A window load adds its bytes to the thread's
 * unflushed count, which goes to the cycle's count (gc.c) 64 KiB at a
 * time: the one place the trigger is tested, lock-free. When the span is
 * used up, it goes to its central's full list and the slot takes a span
 * from the central: one with room, else it sweeps unswept ones until one
 * has room, else a new one from the page heap. Large objects (over 32 KiB)
 * are spans of their own, on one list for the sweep.
 *
 * The bitmaps. An object exists iff its in-use bit is set and its remote
 * bit clear (the remote bitmap holds explicit frees, neap_gc_free, by any
 * thread, with an atomic OR: merged by the sweep, or by the owner when its
 * window runs dry). The mark bitmap (the third) is written only by the
 * markers, with the world stopped, and read and cleared by the sweep.
 * That makes the object map exact (neap__gc_object): a word is a pointer
 * to an object only if it falls inside an existing one; a free slot, a
 * span's tail, a malloc'd object never are. There is no extra byte per
 * object, so a pointer one past the end of an object is a pointer into
 * the next one (or into nothing): it keeps the next object alive, not its
 * own, as with Go's and Boehm's collectors without padding.
 *
 * Sweeping, Go's way. neap__gc_sweepgen counts cycles; a span whose
 * sweepgen differs holds the marks of the last cycle and must be swept
 * before anything allocates from it. At the end of each mark, with the
 * world stopped, every thread's current span is swept in place (a few
 * words each), and the generation moves on. A central learns of the new
 * generation the next time it is locked and moves its partial and full
 * spans to its unswept list. Unswept spans are swept by a cache that
 * needs a span (the lazy sweep) and by the background sweeper (gc.c),
 * and whatever is left by the collector before it marks again: so no span
 * ever holds two cycles' marks. A span swept empty goes back to the page
 * heap at once, where the scavenger returns its pages one release delay
 * later; large objects are swept by the collector right after the world
 * restarts.
 *
 * The stop. The world is stopped by signals (gcroots.c) at any
 * instruction but inside a no-stop section: everything that takes a span
 * off a list and puts it in a slot or back (the refill, the sweep, a
 * flush). A stop that arrives inside one waits until it ends (the handler
 * notes it; the section's end answers it). So a stopped thread never
 * holds a central's lock, never has a span half swept, and every span is
 * on a list or in a slot: the collector sees all of them. A no-stop
 * section takes no lock but a central's, which the collector never holds
 * while it waits for threads to stop, so it always ends. Pages from the
 * page heap and span records are got outside any no-stop section: a
 * stopped thread may hold those layers' locks.
 *
 * Locking: a central lock per kind and class (GC_CENTRAL, one at a time),
 * the large list's lock (GC_LARGE), and the gate for fork (GC_GATE), as
 * central.c's: the forking thread freezes the centrals one at a time.
 */
#include <errno.h>
#include <string.h>

#include "gc.h"
#include "heap.h"
#include "meta.h"
#include "neap.h"
#include "neap_gc.h"
#include "os/os.h"

neap_gc_cache neap__gc_empty;
__thread neap_gc_cache *neap__tls_gc __attribute__((tls_model("initial-exec"))) = &neap__gc_empty;
_Atomic uint32_t neap__gc_sweepgen = 1;

#define UNFLUSHED_MAX (64u << 10) /* bytes a thread counts before it tells the cycle */

/* --- no-stop sections (gcroots.c answers a stop at their end) */
__thread uint32_t neap__tls_gc_nostop __attribute__((tls_model("initial-exec")));
__thread volatile uint32_t neap__tls_gc_pending __attribute__((tls_model("initial-exec")));
void neap__gc_stop_deferred(void);

NEAP_INLINE void nostop_begin(void) {
  neap__tls_gc_nostop++;
  atomic_signal_fence(memory_order_seq_cst);
}
NEAP_INLINE void nostop_end(void) {
  atomic_signal_fence(memory_order_seq_cst);
  uint32_t n = --neap__tls_gc_nostop;
  /* The count is down before the flag is read: a stop whose handler
   * finds it up sets the flag in time to be seen here. */
  atomic_signal_fence(memory_order_seq_cst);
  if (n == 0 && NEAP_UNLIKELY(neap__tls_gc_pending)) neap__gc_stop_deferred();
}

/* --- centrals */

typedef struct gc_central {
  neap_mutex lock;
  bool frozen;        /* a fork is under way */
  uint16_t gen;       /* the sweep generation its lists are filed by */
  neap_span *partial; /* swept, with a free object */
  neap_span *full;    /* swept, none free */
  neap_span *unswept; /* the last cycle's marks still in them */
} __attribute__((aligned(NEAP_CACHE_LINE))) gc_central;

static gc_central centrals[NEAP_GC_KINDS][NEAP_NUM_CLASSES] = {
    [0 ... NEAP_GC_KINDS - 1] = {[0 ... NEAP_NUM_CLASSES - 1] = {.lock = NEAP_MUTEX_INIT(GC_CENTRAL), .gen = 1}}};
static neap_mutex gate = NEAP_MUTEX_INIT(GC_GATE);

static neap_mutex large_lock = NEAP_MUTEX_INIT(GC_LARGE);
static neap_pool gc_cache_pool = {.size = sizeof(neap_gc_cache), .kind = NEAP_META_CACHE};
static neap_span *large_list;

/* Pages in collected spans (for the statistics and pacing). */
static _Atomic uint64_t span_bytes, large_bytes;

static uint16_t current_gen(void) { return (uint16_t)atomic_load_explicit(&neap__gc_sweepgen, memory_order_acquire); }

static void list_push(neap_span **head, neap_span *s) {
  s->prev = NULL;
  s->next = *head;
  if (*head) (*head)->prev = s;
  *head = s;
}
static void list_remove(neap_span **head, neap_span *s) {
  if (s->prev) s->prev->next = s->next;
  else *head = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
}
static void list_splice(neap_span **to, neap_span *from) {
  while (from != NULL) {
    neap_span *next = from->next;
    list_push(to, from);
    from = next;
  }
}

/* Locks c, and files its lists by the current generation: a new cycle
 * makes every span it holds unswept. */
static void central_lock(gc_central *c) {
  neap__lock_gated(&c->lock, &c->frozen, &gate);
  uint16_t gen = current_gen();
  if (c->gen != gen) {
    list_splice(&c->unswept, c->partial);
    list_splice(&c->unswept, c->full);
    c->partial = c->full = NULL;
    c->gen = gen;
  }
}

static gc_central *central_of(const neap_span *s) { return &centrals[s->kind - 1][s->sizeclass]; }

/* Files span s (swept or not) on its central; caller holds the lock. */
static void central_file(gc_central *c, neap_span *s, bool has_free) {
  neap_assert(NEAP_LOAD(&s->owner) == NULL || s->sweepgen == c->gen); /* a slot's span is always swept */
  NEAP_STORE(&s->owner, NULL);
  if (s->sweepgen != c->gen) list_push(&c->unswept, s);
  else list_push(has_free ? &c->partial : &c->full, s);
}

/* --- the sweep of one span */

typedef enum { SWEPT_EMPTY, SWEPT_PARTIAL, SWEPT_FULL } swept;

/* Applies the marks: objects not marked are freed (their in-use bits
 * cleared), explicit frees merged, marks cleared. sweep_bits is for a
 * span taken off a list; sweep_marks itself also serves the sweep in
 * place of the slots' spans with the world stopped. The caller holds s
 * (no other thread allocates from it). */
static swept sweep_marks(neap_span *s);
static swept sweep_bits(neap_span *s) {
  neap_assert(s->next == NULL && s->prev == NULL && NEAP_LOAD(&s->owner) == NULL);
  return sweep_marks(s);
}
static swept sweep_marks(neap_span *s) {
  unsigned live = 0, padding = 0;
  for (unsigned w = 0; w < s->nwords; w++) {
    uint64_t pad = ~neap__span_word_objects(s, w);
    _Atomic uint64_t *mark = neap__gc_markword(s, w);
    uint64_t r = atomic_exchange_explicit(neap__span_remote(s, w), pad, memory_order_acq_rel) & ~pad;
    uint64_t u = NEAP_LOAD(neap__span_inuse(s, w));
    uint64_t nu = (u & NEAP_LOAD(mark) & ~r) | pad;
    NEAP_STORE(neap__span_inuse(s, w), nu);
    NEAP_STORE(mark, 0);
    live += (unsigned)neap__popcount(nu);
    padding += (unsigned)neap__popcount(pad);
  }
  live -= padding;
  s->sweepgen = current_gen();
  s->needzero = 1;
  return live == 0 ? SWEPT_EMPTY : live == s->nelems ? SWEPT_FULL : SWEPT_PARTIAL;
}

static void span_free(neap_span *s) {
  atomic_fetch_sub_explicit(&span_bytes, neap__span_bytes(s), memory_order_relaxed);
  neap__heap_free_pages(s);
  neap__span_delete(s);
}

/* A new span of kind and class from the page heap (outside any no-stop
 * section: it may wait for the heap's lock). */
static neap_span *span_fresh(unsigned kind, unsigned cls) {
  neap_span *s = neap__span_new_collected(cls);
  if (s == NULL) return NULL;
  neap__span_init_collected(s, cls, kind);
  s->sweepgen = current_gen();
  bool zeroed = false;
  if (neap__heap_alloc_pages(s, neap__class_pages[cls], 0, &zeroed) != 0) {
    neap__span_delete(s);
    return NULL;
  }
  s->needzero = !zeroed;
  atomic_fetch_add_explicit(&span_bytes, neap__span_bytes(s), memory_order_relaxed);
  return s;
}

/* A swept span of c's with a free object, or NULL: its partial list
 * first, then the unswept ones, swept here (those that come out full go
 * to the full list). Inside a no-stop section, with c unlocked. */
static neap_span *central_take(gc_central *c) {
  central_lock(c);
  neap_span *s = c->partial;
  if (s != NULL) {
    list_remove(&c->partial, s);
    neap__unlock(&c->lock);
    return s;
  }
  while ((s = c->unswept) != NULL) {
    list_remove(&c->unswept, s);
    neap__unlock(&c->lock);
    swept r = sweep_bits(s);
    if (r != SWEPT_FULL) return s;
    central_lock(c);
    central_file(c, s, false);
  }
  neap__unlock(&c->lock);
  return NULL;
}

/* --- the slot */

/* Takes the lowest object of the slot's window (b, its bits, not 0). The
 * object's address is made, and held in a register by the empty asm,
 * before its in-use bit is set: a stop between the two, or one deferred
 * to the end of the caller's no-stop section, must find the address on
 * the thread (a root), or the sweep in place frees an object the thread
 * is about to return. Without the asm the compiler may set the bit first
 * and compute the address from the window's base after the stop. */
NEAP_INLINE void *window_take(neap_gc_slot *slot, uint64_t b) {
  unsigned i = (unsigned)neap__lowest_bit(b);
  slot->bits = b & (b - 1);
  void *p = (void *)(slot->base + (uintptr_t)i * slot->size);
  __asm__ volatile("" : "+r"(p)::"memory");
  NEAP_STORE(slot->inuse, NEAP_LOAD(slot->inuse) | (1ull << i));
  return p;
}

/* Loads word w of the slot's span into its window; counts its bytes. */
static void window_load(neap_gc_cache *g, neap_gc_slot *slot, unsigned w) {
  neap_span *s = slot->span;
  uint64_t b = ~NEAP_LOAD(neap__span_inuse(s, w));
  slot->bits = b;
  slot->word = (uint8_t)w;
  slot->inuse = neap__span_inuse(s, w);
  slot->base = s->base + (uintptr_t)w * 64u * slot->size;
  g->unflushed += (uint64_t)neap__popcount(b) * slot->size;
}

/* Merges explicit frees into the owner's current span (its bitmaps are
 * the owner's while it is in a slot). */
static unsigned merge_frees(neap_span *s) {
  unsigned n = 0;
  for (unsigned w = 0; w < s->nwords; w++) {
    uint64_t pad = ~neap__span_word_objects(s, w);
    if (NEAP_LOAD(neap__span_remote(s, w)) == pad) continue;
    uint64_t r = atomic_exchange_explicit(neap__span_remote(s, w), pad, memory_order_acq_rel) & ~pad;
    NEAP_STORE(neap__span_inuse(s, w), NEAP_LOAD(neap__span_inuse(s, w)) & ~r);
    n += (unsigned)neap__popcount(r);
  }
  if (n != 0) s->needzero = 1; /* the freed objects hold their old bytes */
  return n;
}

/* The next word of the slot's span with a free object, from `from`. */
static unsigned next_free_word(neap_span *s, unsigned from) {
  for (unsigned w = from; w < s->nwords; w++)
    if (~NEAP_LOAD(neap__span_inuse(s, w)) != 0) return w;
  return s->nwords;
}

/* Installs span s (swept, with room) in the slot and loads its first
 * window with room. In a no-stop section. */
static void slot_install(neap_gc_cache *g, neap_gc_slot *slot, neap_span *s) {
  neap_assert(NEAP_LOAD(&s->owner) == NULL && s->next == NULL && s->prev == NULL);
  NEAP_STORE(&s->owner, neap__tls_registered); /* (a mark for the checks: not malloc's owner) */
  slot->span = s;
  slot->zero = s->kind == NEAP_KIND_GC_SCAN && s->needzero;
  window_load(g, slot, next_free_word(s, 0));
}

/* Refills an empty window: the rest of the span, then its explicit frees,
 * then another span. false when a fresh span is needed (and the slot has
 * none). In a no-stop section. */
static bool slot_refill(neap_gc_cache *g, neap_gc_slot *slot, unsigned kind, unsigned cls) {
  neap_span *s = slot->span;
  if (s != NULL) {
    unsigned w = next_free_word(s, slot->word + 1u);
    if (w == s->nwords && merge_frees(s) != 0) {
      slot->zero = s->kind == NEAP_KIND_GC_SCAN;
      w = next_free_word(s, 0);
    }
    if (w < s->nwords) {
      window_load(g, slot, w);
      return true;
    }
    /* Used up: to the full list (or unswept, if a cycle came since). */
    slot->span = NULL;
    slot->bits = 0;
    gc_central *c = central_of(s);
    central_lock(c);
    central_file(c, s, false);
    neap__unlock(&c->lock);
  }
  s = central_take(&centrals[kind - 1][cls]);
  if (s == NULL) return false;
  slot_install(g, slot, s);
  return true;
}

/* This thread's collected cache, made on first use. */
static neap_gc_cache *gc_cache_get(void) {
  neap_gc_cache *g = neap__tls_gc;
  if (NEAP_LIKELY(g != &neap__gc_empty)) return g;
  neap_cache *c = neap__cache_mine();
  if (c == NULL && (c = neap__cache_get_slow()) == NULL) return NULL;
  if (c->gc == NULL) {
    g = neap__pool_alloc(&gc_cache_pool);
    if (g == NULL) return NULL;
    for (unsigned k = 0; k < NEAP_GC_KINDS; k++)
      for (unsigned cls = 0; cls < NEAP_NUM_CLASSES; cls++) g->slot[k][cls].size = neap__class_size[cls];
    c->gc = g;
  }
  /* A thread that allocates collected objects is one every stop must
   * catch (NEAP_GC_THREADS=registered stops only those). */
  c->gct.explicit_reg = 1;
  c->gct.unregistered = 0;
  neap__tls_gc = c->gc;
  return c->gc;
}

static void flush_count(neap_gc_cache *g) {
  uint64_t n = g->unflushed;
  if (n >= UNFLUSHED_MAX) {
    g->unflushed = 0;
    neap__gc_note_alloc(n);
  }
}

static void *alloc_large(unsigned kind, size_t size);

/* The slow path returns with every call-clobbered register but the result
 * zeroed: what its work left there (the addresses of spans and objects it
 * looked at) would otherwise sit in the caller's dead registers, where a
 * stop that finds the thread in a system call (a sleep, with the
 * registers its caller no longer uses) would take them for roots: the
 * seed's dropped 256 MiB buffer stayed alive that way. */
#if defined(__x86_64__) && __GNUC__ >= 11 && !defined(__clang__)
#define NEAP_ZERO_REGS __attribute__((zero_call_used_regs("all-gpr")))
#else
#define NEAP_ZERO_REGS
#endif

NEAP_ZERO_REGS void *neap__gc_alloc_slow(unsigned kind, unsigned cls, size_t size) {
  if (cls == 0) return alloc_large(kind, size);
  neap_gc_cache *g = gc_cache_get();
  if (g == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  neap_gc_slot *slot = &g->slot[kind - 1][cls];
  void *p = NULL;
  for (;;) {
    nostop_begin();
    bool ok = slot->bits != 0 || slot_refill(g, slot, kind, cls);
    if (ok) p = window_take(slot, slot->bits);
    nostop_end(); /* (a stop deferred to here finds p in this frame) */
    if (ok) break;
    /* A fresh span, made outside the section (the page heap's lock). */
    neap_span *s = span_fresh(kind, cls);
    if (s == NULL) {
      errno = ENOMEM;
      return NULL;
    }
    nostop_begin();
    s->sweepgen = current_gen(); /* nothing in it to mark: swept by any cycle */
    if (slot->span == NULL) {
      slot_install(g, slot, s);
    } else { /* (cannot happen: the slot's owner is here) */
      gc_central *c = central_of(s);
      central_lock(c);
      central_file(c, s, true);
      neap__unlock(&c->lock);
    }
    nostop_end();
  }
  if (kind == NEAP_KIND_GC_SCAN && slot->zero) memset(p, 0, slot->size);
  flush_count(g);
  return p;
}

/* --- large objects */

static void *alloc_large(unsigned kind, size_t size) {
  if (size > NEAP_MAX_ALLOC) {
    errno = ENOMEM;
    return NULL;
  }
  uint64_t npages = size == 0 ? 1 : (size + NEAP_PAGE_SIZE - 1) >> NEAP_PAGE_SHIFT;
  neap_span *s = neap__span_new_collected(0);
  if (s == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  neap__span_init_collected(s, 0, kind);
  bool zeroed = false;
  if (neap__heap_alloc_pages(s, npages, 0, &zeroed) != 0) {
    neap__span_delete(s);
    errno = ENOMEM;
    return NULL;
  }
  if (kind == NEAP_KIND_GC_SCAN && !zeroed) memset((void *)s->base, 0, neap__span_bytes(s));
  uint64_t bytes = neap__span_bytes(s);
  atomic_fetch_add_explicit(&span_bytes, bytes, memory_order_relaxed);
  atomic_fetch_add_explicit(&large_bytes, bytes, memory_order_relaxed);
  neap__lock(&large_lock);
  /* Swept by the cycle it is linked in. A stop that came between its
   * pages and this line may have marked it through a stale word; the mark
   * goes, or the next mark would take it for one of its own and never
   * scan the object. */
  NEAP_STORE(neap__gc_markword(s, 0), 0);
  s->sweepgen = current_gen();
  list_push(&large_list, s);
  neap__unlock(&large_lock);
  /* The address is made before the count, which may collect on this very
   * thread: then it must be in this frame (a root), not made from the
   * span record after the collection freed the object. */
  void *p = (void *)s->base;
  __asm__ volatile("" : "+r"(p)::"memory");
  neap__gc_note_alloc(bytes);
  return p;
}

static void large_free(neap_span *s) {
  uint64_t bytes = neap__span_bytes(s);
  atomic_fetch_sub_explicit(&large_bytes, bytes, memory_order_relaxed);
  span_free(s);
}

size_t neap__gc_sweep_large(void) {
  size_t freed = 0;
  uint16_t gen = current_gen();
  neap__lock(&large_lock);
  neap_span *dead = NULL;
  for (neap_span *s = large_list, *next; s != NULL; s = next) {
    next = s->next;
    /* Every mark goes, so that the next mark starts clean (a mark left on
     * an object would stop the next one from scanning it); but one linked
     * since the stop is the program's new object, not unreachable. */
    _Atomic uint64_t *m = neap__gc_markword(s, 0);
    bool marked = (NEAP_LOAD(m) & 1u) != 0;
    NEAP_STORE(m, 0);
    if (s->sweepgen == gen || marked) {
      s->sweepgen = gen;
      continue;
    }
    if (!neap__span_claim(s, NEAP_SPAN_LARGE, NEAP_SPAN_DEAD)) continue; /* freed explicitly meanwhile */
    list_remove(&large_list, s);
    s->next = dead;
    dead = s;
  }
  neap__unlock(&large_lock);
  while (dead != NULL) {
    neap_span *next = dead->next;
    freed += neap__span_bytes(dead);
    large_free(dead);
    dead = next;
  }
  return freed;
}


/* --- sweeping */

size_t neap__gc_sweep_all(bool background) {
  size_t n = 0;
  for (unsigned k = 0; k < NEAP_GC_KINDS; k++) {
    for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
      gc_central *c = &centrals[k][cls];
      for (;;) {
        /* The background sweeper is one of neap's threads, which no stop
         * waits for: it sweeps a span at a time holding the cycle's lock,
         * so that no mark runs while it holds a span half swept. */
        if (background && !neap__gc_cycle_trylock()) return n;
        nostop_begin();
        central_lock(c);
        neap_span *s = c->unswept;
        if (s == NULL) {
          neap__unlock(&c->lock);
          nostop_end();
          if (background) neap__gc_cycle_unlock();
          break;
        }
        list_remove(&c->unswept, s);
        neap__unlock(&c->lock);
        swept r = sweep_bits(s);
        n++;
        if (r != SWEPT_EMPTY) {
          central_lock(c);
          central_file(c, s, r == SWEPT_PARTIAL);
          neap__unlock(&c->lock);
          nostop_end();
        } else {
          /* Off every list and every slot: its pages go back (outside
           * the section: the heap's lock). */
          nostop_end();
          span_free(s);
        }
        if (background) neap__gc_cycle_unlock();
      }
    }
  }
  return n;
}

/* With the world stopped: each cache's current spans, in place. A thread
 * stopped in its fast path between reading its in-use word and writing it
 * back may write back the word as it was before this sweep: the objects
 * this sweep freed there stay in use, unreachable, until the next cycle
 * frees them (they are never handed out twice: the window never holds
 * an object that is in use). */
void neap__gc_sweep_cached_stw(void) {
  uint16_t next = (uint16_t)(current_gen() + 1u);
  atomic_store_explicit(&neap__gc_sweepgen, next, memory_order_release);
  for (neap_cache *c = neap__cache_registry_first(); c != NULL; c = c->reg_next) {
    neap_gc_cache *g = c->gc;
    if (g == NULL) continue;
    for (unsigned k = 0; k < NEAP_GC_KINDS; k++)
      for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
        neap_gc_slot *slot = &g->slot[k][cls];
        if (slot->span == NULL) continue;
        sweep_marks(slot->span); /* sets sweepgen to `next` */
        slot->zero = k + 1 == NEAP_KIND_GC_SCAN;
      }
  }
}

void neap__gc_cache_flush(neap_cache *c, bool release) {
  neap_gc_cache *g = c->gc;
  if (g == NULL) return;
  nostop_begin();
  for (unsigned k = 0; k < NEAP_GC_KINDS; k++)
    for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
      neap_gc_slot *slot = &g->slot[k][cls];
      neap_span *s = slot->span;
      if (s == NULL) continue;
      slot->span = NULL;
      slot->bits = 0;
      merge_frees(s);
      gc_central *cen = central_of(s);
      central_lock(cen);
      central_file(cen, s, next_free_word(s, 0) < s->nwords);
      neap__unlock(&cen->lock);
    }
  uint64_t n = g->unflushed;
  g->unflushed = 0;
  if (release) {
    c->gc = NULL;
    if (neap__tls_gc == g) neap__tls_gc = &neap__gc_empty;
  }
  nostop_end();
  if (release) neap__pool_free(&gc_cache_pool, g); /* outside the section: the pools' lock */
  if (n != 0) neap__gc_note_alloc_quiet(n);
}

#if NEAP_TESTING
const char *neap__gc_check_lists(void) {
  static neap_span *seen[1 << 16];
  size_t n = 0;
  for (unsigned k = 0; k < NEAP_GC_KINDS; k++)
    for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
      gc_central *c = &centrals[k][cls];
      neap_span *lists[3] = {c->partial, c->full, c->unswept};
      for (unsigned l = 0; l < 3; l++)
        for (neap_span *s = lists[l], *prev = NULL; s != NULL; prev = s, s = s->next) {
          if (s->prev != prev) return "gc list: broken back link";
          if (NEAP_LOAD(&s->owner) != NULL) return "gc list: a listed span has an owner";
          if (s->sizeclass != cls || s->kind != k + 1) return "gc list: span of another class";
          for (size_t i = 0; i < n; i++)
            if (seen[i] == s) return "gc list: span listed twice";
          if (n < sizeof seen / sizeof seen[0]) seen[n++] = s;
        }
    }
  for (neap_cache *c = neap__cache_registry_first(); c != NULL; c = c->reg_next) {
    if (c->gc == NULL) continue;
    for (unsigned k = 0; k < NEAP_GC_KINDS; k++)
      for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
        neap_span *s = c->gc->slot[k][cls].span;
        if (s == NULL) continue;
        for (size_t i = 0; i < n; i++)
          if (seen[i] == s) return "gc list: a slot's span is listed";
        if (s->sweepgen != current_gen()) return "gc list: a slot's span is not swept";
      }
  }
  return NULL;
}
#endif

/* --- the object map */

void *neap__gc_object(uintptr_t p, neap_span **sp, unsigned *idx) {
  neap_span *s = neap__span_of(p);
  if (s == NULL || !neap__kind_collected(s->kind)) return NULL;
  unsigned where = neap__span_where(s);
  if (s->sizeclass == 0) {
    if (where != NEAP_SPAN_LARGE) return NULL;
    *sp = s;
    *idx = 0;
    return (void *)s->base;
  }
  if (where != NEAP_SPAN_COLLECTED) return NULL;
  uintptr_t off = p - s->base;
  unsigned i = (unsigned)((off * s->divmul) >> 32);
  if (i >= s->nelems || !neap__span_held(s, i)) return NULL;
  *sp = s;
  *idx = i;
  return (void *)(s->base + (uintptr_t)i * s->elemsize);
}

void neap__gc_heap(neap_gc_heap *out) {
  out->span_bytes = atomic_load_explicit(&span_bytes, memory_order_relaxed);
  out->large_bytes = atomic_load_explicit(&large_bytes, memory_order_relaxed);
}


void neap__gc_alloc_fork(neap_fork_phase phase) {
  if (phase == NEAP_FORK_PREPARE) {
    neap__lock(&large_lock);
    neap__lock(&gate);
  }
  /* The centrals are frozen one at a time, not held across the fork
   * (central.c has the scheme). */
  for (unsigned k = 0; k < NEAP_GC_KINDS; k++)
    for (unsigned cls = 0; cls < NEAP_NUM_CLASSES; cls++)
      neap__lock_fork_frozen(&centrals[k][cls].lock, &centrals[k][cls].frozen, phase);
  if (phase != NEAP_FORK_PREPARE) {
    neap__lock_fork(&gate, phase);
    neap__lock_fork(&large_lock, phase);
  }
}

/* --- the public calls */

/* Class of a collected request: 0 for a large one. */
NEAP_INLINE unsigned gc_class(size_t n) { return n <= NEAP_SMALL_MAX ? neap__size_class(n) : 0; }

NEAP_INLINE void *gc_alloc(unsigned kind, size_t n) {
  unsigned cls = gc_class(n);
  neap_gc_slot *slot = &neap__tls_gc->slot[kind - 1][cls];
  uint64_t b = slot->bits; /* class 0's is always empty */
  if (NEAP_LIKELY(b != 0)) {
    void *p = window_take(slot, b);
    if (kind == NEAP_KIND_GC_SCAN && slot->zero) memset(p, 0, slot->size);
    return p;
  }
  return neap__gc_alloc_slow(kind, cls, n);
}

void *neap_gc_malloc(size_t n) { return gc_alloc(NEAP_KIND_GC_SCAN, n); }
void *neap_gc_malloc_noscan(size_t n) { return gc_alloc(NEAP_KIND_GC_NOSCAN, n); }

/* The collected object starting at p, or a one-line diagnostic and abort
 * in the words of `call`. */
typedef struct gc_misuse {
  const char *foreign, *not_live, *interior;
} gc_misuse;
static const gc_misuse by_free = {"neap_gc_free of a pointer that is not a collected object",
                                  "neap_gc_free of a free object", "neap_gc_free of an interior pointer"};
static const gc_misuse by_realloc = {"neap_gc_realloc of a pointer that is not a collected object",
                                     "neap_gc_realloc of a free object", "neap_gc_realloc of an interior pointer"};

static neap_span *checked_object(const void *ptr, const gc_misuse *say, unsigned *idx) {
  uintptr_t p = (uintptr_t)ptr;
  neap_span *s = neap__span_of(p);
  if (s == NULL || !neap__kind_collected(s->kind)) neap__fatal(say->foreign, ptr);
  neap_span *os;
  void *base = neap__gc_object(p, &os, idx);
  if (base == NULL) neap__fatal(say->not_live, ptr);
  if (base != ptr) neap__fatal(say->interior, ptr);
  return s;
}

void neap_gc_free(void *p) {
  if (p == NULL) return;
  unsigned i;
  neap_span *s = checked_object(p, &by_free, &i);
  if (s->sizeclass == 0) {
    neap__lock(&large_lock);
    bool mine = neap__span_claim(s, NEAP_SPAN_LARGE, NEAP_SPAN_DEAD);
    if (mine) list_remove(&large_list, s);
    neap__unlock(&large_lock);
    if (!mine) neap__fatal("neap_gc_free of a free object", p);
    neap__gc_note_free(neap__span_bytes(s));
    large_free(s);
    return;
  }
  uint64_t bit = 1ull << (i & 63);
  uint64_t old = atomic_fetch_or_explicit(neap__span_remote(s, i >> 6), bit, memory_order_acq_rel);
  if (old & bit) neap__fatal("neap_gc_free of a free object", p);
  neap__gc_note_free(s->elemsize);
}

void *neap_gc_realloc(void *p, size_t n) {
  if (p == NULL) return neap_gc_malloc(n);
  unsigned i;
  neap_span *s = checked_object(p, &by_realloc, &i);
  size_t have = neap__gc_objsize(s);
  unsigned kind = s->kind;
  if (n <= have && (n > have / 2 || gc_class(n) == s->sizeclass)) return p;
  void *q = kind == NEAP_KIND_GC_SCAN ? neap_gc_malloc(n) : neap_gc_malloc_noscan(n);
  if (q == NULL) return NULL;
  memcpy(q, p, n < have ? n : have);
  neap_gc_free(p);
  return q;
}

void *neap_gc_base(const void *p) {
  neap_span *s;
  unsigned i;
  return neap__gc_object((uintptr_t)p, &s, &i);
}

size_t neap_gc_size(const void *p) {
  neap_span *s;
  unsigned i;
  return neap__gc_object((uintptr_t)p, &s, &i) != NULL ? neap__gc_objsize(s) : 0;
}

int neap_gc_is_heap_ptr(const void *p) {
  neap_span *s = neap__span_of((uintptr_t)p);
  return s != NULL && neap__kind_collected(s->kind);
}
