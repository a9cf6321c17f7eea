/* The per-thread cache: its slots, free stacks and free marks, the types
 * and inline functions the fast paths share (malloc.c inlines them), and
 * cache.c's interface. cache.c has the essay.
 */
#ifndef NEAP_CACHE_H
#define NEAP_CACHE_H

#include "heap.h"
#include "lock.h"
#include "pagemap.h"
#include "track.h"

/* Free stack capacities (cache.c: "The free stack"). A class's stack
 * starts at NEAP_STACK_START objects or NEAP_STACK_START_BYTES, whichever
 * is fewer (at least one), and may grow, while it overflows with its
 * objects being reused, to NEAP_STACK_MAX objects or NEAP_STACK_MAX_BYTES.
 * What a thread's stacks grow by, all classes together, is its share of
 * NEAP_STACK_TOTAL among the threads, but no more than NEAP_STACK_GROW_MAX
 * and at least NEAP_STACK_GROW_MIN. */
#define NEAP_STACK_START 32u
#define NEAP_STACK_START_BYTES (32u << 10)
#define NEAP_STACK_MAX 4096u
#define NEAP_STACK_MAX_BYTES (512u << 10)
#define NEAP_STACK_TOTAL ((size_t)32 << 20)
#define NEAP_STACK_GROW_MAX ((size_t)4 << 20)
#define NEAP_STACK_GROW_MIN ((size_t)256 << 10)

/* An object's words as neap reads and writes them: the program may have
 * stored anything there, through any type. */
typedef uint64_t neap_word __attribute__((may_alias));
typedef uint16_t neap_half __attribute__((may_alias));

/* One per size class: a stack of objects this thread freed, the cached
 * span and a window of 64 of its objects. `bits` has a 1 for every object
 * of the window that is free; the window is the bitmap word `inuse`
 * points to. The first line holds all that the fast paths read. */
typedef struct neap_slot {
  /* The free stack (cache.c has the essay): a list through the objects
   * themselves, newest first, `top` its head; each object's first word
   * links to the next, and its second holds its free mark (below) under
   * `marker`. `stack` packs n, the objects on it (low 16 bits), with the
   * count of objects ever popped (above), so that a pop updates both with
   * one store. cap is 0 in the empty cache and for class 0, so that the
   * free fast path needs no other test; divmul is the class's
   * (sizeclass.h), on this line for the free fast path's check. */
  _Atomic uint64_t stack;    /* written by this thread only (relaxed) */
  _Atomic(neap_word *) top;  /* written by this thread only */
  uint64_t marker;           /* NEAP_MARK_KEY | this slot's address */
  uint16_t cap;              /* 16 bits, as n: one compare on the free fast path */
  uint16_t unused;
  uint32_t divmul;
  _Atomic uint64_t bits;     /* written by this thread only (relaxed) */
  uintptr_t base;            /* address of the window's object 0 */
  _Atomic uint64_t *inuse;   /* the span's in-use word for the window */
  uint32_t size;             /* the class's object size (set once) */
  uint32_t overflows;        /* of the stack, since the last rebalance (cache.c) */
  /* Slow paths only. */
  neap_span *span;
  /* Objects of this class this thread allocated, counted a window at a
   * time: the untaken rest of the current window (bits) is included, and
   * statistics subtract it. Frees are not counted on any fast path: the
   * statistics derive them from the spans' in-use bitmaps. */
  _Atomic uint64_t nmalloc;
  /* A sequence count, odd while a window is being loaded or dropped, so
   * that the statistics read nmalloc and bits as a consistent pair
   * (cache.c: slot_handed_out). */
  _Atomic uint32_t seq;
  uint32_t cap_start, cap_max; /* the class's stack capacities (above) */
  uint32_t demand;           /* the most a malloc run took off the stack lately (cache.c) */
  uint64_t pops_seen;        /* pops at the last overflow (cache.c) */
} __attribute__((aligned(64))) neap_slot;
_Static_assert(sizeof(neap_slot) == 128 && offsetof(neap_slot, span) == 64,
               "the fast paths' fields fill one line");

/* The free mark. Every free object's first two words hold (next, mark):
 * next links the free stack holding it (0 or anything in its span), and
 *   mark = next ^ key,
 * where key is NEAP_MARK_KEY | (address of the slot whose stack holds it)
 * on a stack, and NEAP_MARK_KEY alone in its span (cache.c). The mark
 * covers the link, so a pop that finds the mark whole may follow it; it
 * names the stack, so an object on another thread's stack is no object
 * of this one's; and a key's top bits make it a non-canonical address, so
 * that no value a program stores by chance (pointers, small numbers,
 * zero) makes an object look free. Handing an object out zeroes its
 * mark: what is left, next, has the top bits of an address. */
#define NEAP_MARK_TAG 0xa5c3u
#define NEAP_MARK_KEY ((uint64_t)NEAP_MARK_TAG << 48)
/* The key object p's first two words hold (a free object's stack's, or
 * NEAP_MARK_KEY; anything else for a live one). */
NEAP_INLINE uint64_t neap__mark_key(const void *p) {
  const neap_word *w = p;
  return w[1] ^ w[0];
}
/* Whether a key is one a free object may hold. */
NEAP_INLINE bool neap__mark_tagged(uint64_t key) { return key >> 48 == NEAP_MARK_TAG; }
/* The free fast path's test, one 2-byte compare: addresses and links are
 * below 2^47, so a free object's mark has the key's top bits; a live
 * object has them there once in 65,536 by chance, and the slow path then
 * looks at the whole mark. */
NEAP_INLINE bool neap__maybe_free(const void *p) { return ((const neap_half *)p)[7] == NEAP_MARK_TAG; }
/* The slot (an address) a tagged key names; 0 for NEAP_MARK_KEY. */
NEAP_INLINE uintptr_t neap__mark_holder(uint64_t key) { return (uintptr_t)(key & ((1ull << 48) - 1)); }
NEAP_INLINE void neap__mark_set(void *p, uint64_t next, uint64_t key) {
  neap_word *w = p;
  w[0] = next;
  w[1] = next ^ key;
}

/* Hands out the lowest free object of a slot's window: b is the window's
 * bits (non-zero). The whole of the allocation fast path, shared by
 * malloc.c and cache.c. */
NEAP_INLINE void *neap__slot_take(neap_slot *slot, uint64_t b) {
  uint64_t i = neap__lowest_bit(b);
  NEAP_STORE(&slot->bits, b & (b - 1));
  NEAP_STORE(slot->inuse, NEAP_LOAD(slot->inuse) | (1ull << i));
  neap_word *p = (neap_word *)(slot->base + i * slot->size);
  NEAP_TRACK_ALLOC(p, slot->size, 0);
  p[1] = 0; /* its free mark */
  return p;
}

/* A slot's `stack` word: objects on the stack, and popped ever. */
#define NEAP_STACK_N_BITS 16
_Static_assert(NEAP_STACK_MAX < (1u << NEAP_STACK_N_BITS) && NEAP_STACK_N_BITS == 16,
               "n fits its bits, which the free fast path compares with cap as 16-bit numbers");
#define NEAP_STACK_POP (((uint64_t)1 << NEAP_STACK_N_BITS) - 1) /* n - 1, pops + 1 */
NEAP_INLINE uint32_t neap__stack_n(uint64_t w) { return (uint32_t)(w & ((1u << NEAP_STACK_N_BITS) - 1)); }
NEAP_INLINE uint64_t neap__stack_pops(uint64_t w) { return w >> NEAP_STACK_N_BITS; }

/* An object leaving a free stack no longer holds its free mark: the
 * program wrote it after freeing it, or freed it twice (cache.c). */
NEAP_COLD __attribute__((noreturn)) void neap__stack_mark_lost(void *p);

/* Where every free stack ends: the link of its oldest object, and the top
 * of an empty one. It holds no mark, so a pop that reaches it (a stack
 * torn by a signal handler that re-entered malloc or free in the middle
 * of a push or pop: its count and its top disagree) aborts on the mark
 * check instead of following a null link. */
extern const neap_word neap__stack_end[2];

/* Pushes object p (checked free-able) on a slot's free stack, whose stack
 * word is w (n below cap). */
NEAP_INLINE void neap__slot_push(neap_slot *slot, void *p, uint64_t w) {
  neap_word *top = NEAP_LOAD(&slot->top);
  NEAP_TRACK_FREE(p);
  NEAP_TRACK_QUIET_BEGIN();
  neap__mark_set(p, (uintptr_t)top, slot->marker);
  NEAP_TRACK_QUIET_END();
  NEAP_STORE(&slot->top, (neap_word *)p);
  NEAP_STORE(&slot->stack, w + 1);
}

/* Pops the newest object of a slot's free stack: w is its stack word,
 * with n > 0 objects. The mark is checked before its link is followed. */
NEAP_INLINE void *neap__slot_pop(neap_slot *slot, uint64_t w) {
  neap_word *p = NEAP_LOAD(&slot->top);
  NEAP_TRACK_QUIET_BEGIN();
  uint64_t next = p[0];
  uint64_t key = neap__mark_key(p);
  NEAP_TRACK_QUIET_END();
  if (NEAP_UNLIKELY(key != slot->marker)) neap__stack_mark_lost(p);
  NEAP_STORE(&slot->top, (neap_word *)next);
  NEAP_STORE(&slot->stack, w + NEAP_STACK_POP);
  NEAP_TRACK_ALLOC(p, slot->size, 0);
  p[1] = 0; /* its free mark */
  return p;
}

/* The collector's record of a thread (gcroots.c): found in every cache, so
 * that every thread neap knows is stopped and scanned. Written by the
 * thread itself (at its cache's creation and at each stop), read by the
 * collector while the thread is stopped. */
/* x86-64's registers from a ucontext: the 23 general ones, then the 16
 * vector registers' low 128 bits (2 words each) and, where the kernel
 * saved them, their AVX high 128 bits. Compilers pack pairs of pointers
 * into vector registers to store them together. */
#define NEAP_GC_NGREGS 23
#define NEAP_GC_NREGS (NEAP_GC_NGREGS + 16 * 4)
typedef struct neap_gc_thread {
  int tid;                   /* the kernel's thread id */
  uint8_t internal;          /* one of neap's own threads: never stopped */
  /* Written by the thread, read by a collector during its stops. */
  _Atomic uint8_t unregistered; /* neap_gc_unregister_thread: not stopped, not scanned */
  _Atomic uint8_t explicit_reg; /* neap_gc_register_thread (NEAP_GC_THREADS=registered stops only these) */
  uintptr_t stack_lo, stack_hi; /* the mapping its stack is in (found at its first stop) */
  uintptr_t tls_lo, tls_hi;  /* its static TLS, when not inside that mapping */
  uintptr_t sp;              /* the lowest live stack address at the stop */
  uintptr_t altsp_lo, altsp_hi; /* where the stop's handler ran, when on an alternate signal stack */
  uint64_t regs[NEAP_GC_NREGS];
  _Atomic uint32_t acked;    /* the last stop it answered */
} neap_gc_thread;

struct neap_gc_cache;

struct neap_cache {
  neap_slot slot[NEAP_NUM_CLASSES];
  /* The other spans this cache owns, per class: with free objects, and
   * full. Only this thread touches them. */
  neap_link own_partial[NEAP_NUM_CLASSES];
  neap_link own_full[NEAP_NUM_CLASSES];
  /* Empty spans kept for the next refills (cache.c: refile). The only
   * owned lists another thread may touch (a reclaim's trim), so they,
   * nempty and empty_pages are guarded by empty_lock, a spin lock held for
   * a few instructions: the owner takes it only on slow paths. */
  neap_link own_empty[NEAP_NUM_CLASSES];
  uint8_t nempty[NEAP_NUM_CLASSES];
  uint32_t empty_pages;      /* in all the own_empty lists */
  atomic_flag empty_lock;
  _Atomic uint64_t refills;  /* slow refills so far (the owner writes) */
  uint64_t trim_seen;        /* refills at the last trim (trimmers, under the registry lock) */
  /* Owned spans that other threads freed into while they were parked:
   * pushed by a central's drain (under its lock), popped by this thread. */
  _Atomic(neap_span *) inbox;
  /* What the free stacks' capacities have grown by, in bytes: the sum of
   * (cap - cap_start) * size over the classes (cache.c). */
  size_t stack_grown;
  uint32_t overflows;        /* of all stacks, since the last rebalance */
  uint32_t rebalances;       /* of the stack capacities, so far */
  uint32_t stack_epoch;      /* the last stack_trim_all this thread obeyed */
  /* Large objects made, and their bytes (growth in place included): the
   * page heap's span walk counts the live ones (stats.c). */
  _Atomic uint64_t large_nmalloc, large_bytes_alloc;
  neap_cache *reg_next, *reg_prev;            /* registry of live caches */
  struct neap_gc_cache *gc;  /* collected allocation (gc.h), made on first use */
  neap_gc_thread gct;
};

/* --- the page info's slot offsets (pagemap.h), which the cache gives meaning */
_Static_assert(offsetof(neap_cache, slot) == 0 && NEAP_NUM_CLASSES * sizeof(neap_slot) <= 0x10000,
               "page info's slot offsets");
/* The page info's slot offset for span s's pages (NULL: none). */
NEAP_INLINE uint16_t neap__pinfo_slot_of(const neap_span *s) {
  return s != NULL && s->sizeclass != 0 && s->kind == NEAP_KIND_MALLOC ? (uint16_t)(s->sizeclass * sizeof(neap_slot))
                                                                        : 0;
}
/* The slot, in cache c, of the class of page number `page` (in reach:
 * neap__pagemap_reach). */
NEAP_INLINE neap_slot *neap__pinfo_slot(neap_cache *c, uintptr_t page) {
  uintptr_t slots = NEAP_LOAD(&neap__pagemap.slot_by_number);
  return (neap_slot *)(void *)((char *)c + NEAP_LOAD((_Atomic uint16_t *)(slots + page * sizeof(uint16_t))));
}

/* --- cache.c */

/* This thread's cache. Never NULL: a thread without a cache of its own
 * points at neap__empty_cache, whose windows are all empty and which owns
 * no span, so the fast paths need no NULL test and fall to the slow path. */
extern __thread neap_cache *neap__tls_cache __attribute__((tls_model("initial-exec")));
extern neap_cache neap__empty_cache;
/* This thread's cache while it is in the registry: the collector's stop
 * (gcroots.c) finds the thread's record through it, also while an exiting
 * thread's cache pointer already says it has none. */
extern __thread neap_cache *neap__tls_registered __attribute__((tls_model("initial-exec")));
/* This thread's own cache, or NULL while it has none. */
NEAP_INLINE neap_cache *neap__cache_mine(void) {
  neap_cache *c = neap__tls_cache;
  return c == &neap__empty_cache ? NULL : c;
}
neap_cache *neap__cache_get_slow(void);   /* creates this thread's cache; NULL on ENOMEM or when exiting */
/* For a thread whose cache was destroyed at exit (its last pthread key
 * destructors may still allocate): one object through a cache that is
 * made, used, flushed and retired at once. */
bool neap__cache_exiting(void);
void *neap__cache_alloc_exiting(unsigned cls, bool zero);
/* Counts large objects in this thread's cache as they are made (objects
 * 1, the span's bytes) and as they grow in place (objects 0, the bytes
 * added); the statistics find the live ones in the heap's walk, so frees
 * count nothing. */
void neap__cache_count_large(uint64_t objects, uint64_t bytes);
void *neap__cache_refill(neap_cache *c, neap_slot *slot); /* next object of the slot's class, or NULL with ENOMEM */
void neap__cache_flush(neap_cache *c);    /* gives every span back */
/* In the child, the caches of the parent's other threads are abandoned:
 * such a thread may have been halfway through changing its cache when
 * fork copied it, so nothing may walk those caches again. Their spans stay
 * theirs (the child's frees into them take the remote path and are not
 * reused), and their counts stay in the statistics. */
void neap__cache_fork(neap_fork_phase phase);
void neap__cache_free_remote(neap_span *s, uintptr_t p);
/* The caches' reclaimer (heap.h): SHORT gives nothing; IDLE, the empty
 * spans kept by caches that have not refilled since the previous trim;
 * LIMIT and RELEASE, every kept span, and every thread's free stacks at
 * its next slow path (RELEASE: this thread's now); PENDING counts the
 * kept pages. Takes the registry lock; call with no neap lock held but
 * SCAV_WORK (lock.h). */
size_t neap__cache_reclaim(neap_reclaim why);
void neap__cache_inbox_push(neap_cache *owner, neap_span *s);
/* The free of small object p of span s, checked (malloc.c: checked_span),
 * that the fast path did not take: onto c's free stack, or straight back
 * to its span when the thread has no cache. */
void neap__cache_free_small(neap_cache *c, neap_span *s, void *p);
/* Whether p, a small object of class cls that holds its free mark, is in
 * some thread's free stack (a double free if so). Takes the registry lock;
 * exact when no other thread is freeing p or handing it out meanwhile. */
bool neap__cache_stacked(const void *p, unsigned cls);
/* Objects handed out so far, summed over every cache (live and retired),
 * from windows and free stacks alike: nmalloc[0] counts large objects, large_bytes their bytes (whole
 * pages). Read without stopping the owners: a count may run ahead of the
 * truth by a window being loaded or dropped as it is read, never behind
 * (stats.c relies on that). */
typedef struct neap_cache_counts {
  uint64_t nmalloc[NEAP_NUM_CLASSES];
  uint64_t stacked[NEAP_NUM_CLASSES]; /* objects in free stacks: in use by the spans, free to the program */
  uint64_t large_bytes;
  uint64_t threads; /* caches registered now */
} neap_cache_counts;
void neap__cache_counts(neap_cache_counts *out);
/* The registry, for the collector: lock it, and walk it while locked. */
void neap__cache_registry_lock(void);
void neap__cache_registry_unlock(void);
neap_cache *neap__cache_registry_first(void);

#endif
