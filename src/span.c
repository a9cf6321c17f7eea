/* Spans: runs of neap pages serving one size class or one large object.
 *
 * A span's metadata (struct neap_span, span.h) lives off-heap in pools
 * sized by its bitmaps, never in the pages it describes. A small span
 * tracks its objects with two bitmaps of one bit per object:
 *
 *   in use   set when an object is handed out, cleared when it is freed by
 *            the span's owner. Only the owner writes it: the thread cache
 *            holding the span, or its central list (under the central
 *            lock) while no cache holds it. Other threads read it, with
 *            relaxed atomic loads, to validate a free.
 *   remote   set, with an atomic OR, by a thread that frees an object of
 *            a span it does not own. The owner merges these bits into the
 *            in-use bitmap when it next needs free objects (merge_remote).
 *
 * An object is live iff its in-use bit is set and its remote bit is clear;
 * a free that finds otherwise is a double free or a stray pointer and
 * aborts. The two bitmaps interleave word by word (span.h), so the free
 * fast path finds both of an object's bits on one line.
 *
 * Bits past the last object (padding) are set in both bitmaps for the
 * span's whole life: in use, so that the scans for free objects (a window
 * load, the search for the next word with room) need no mask, which cost
 * a dozen instructions and an unpredictable branch per word looked at;
 * and remote, so that none of them is ever live. The bitmaps always reach
 * the index of the tail (the bytes after the last object, if any): a
 * pointer to the tail passes the free path's start-of-object test (its
 * offset is a multiple of the object size), then fails on its free mark
 * (cache.c writes it there) or, in a slow path, on the bound check (index
 * below nelems), which the fast path is spared. Counting live objects subtracts the
 * padding, and a merge of remote bits leaves it.
 *
 * Free objects. Every object free in its span holds, in its first two
 * words, a link (any value) and the free mark that covers it (cache.h),
 * from the moment its span is made (cache.c: prepare_span writes it in every
 * object and in the tail); objects on the threads' free stacks are linked through
 * those words (cache.c). A write after free that changes them is caught
 * when the object next leaves a stack, or by the heap checker.
 *
 * States. A span's state is one field, `where` (span.h), changed only
 * through neap__span_move (or neap__span_claim where threads race), which
 * debug builds check against this diagram:
 *
 *                a large object                  freed
 *   DEAD --------------------------> LARGE ---------------> DEAD
 *    |
 *    | a small span (init_small)
 *    v
 *   TRANSIT -----> CENTRAL_PARTIAL, CENTRAL_FULL     a central's: no owner,
 *    |  ^  \                    |                    CACHED clear
 *    |  |   +----> CURRENT, OWN_PARTIAL, OWN_FULL,   a cache's: its owner,
 *    |  |          OWN_EMPTY    |                    CACHED set
 *    |  |                       |
 *    |  +--- taken off a list --+
 *    v
 *   DEAD    empty, its pages back to the page heap (given back by its
 *           cache, or claimed off its central by a CAS of rword to
 *           NEAP_RW_DEAD)
 *
 * A small span is on one list at a time, and leaves it for TRANSIT
 * before it goes on another: whoever holds it then (the thread that took
 * it off, with the lock of the list it left) is the only one to move it.
 * The cache's states are the owner thread's to change, without a lock
 * (but OWN_EMPTY, which a trim also leaves, under the cache's empty lock);
 * the central's, under its lock. Ownership changes in TRANSIT only, under
 * the central's lock (central.c; a new span, which no other thread can
 * have heard of, without it): the owner and the remote-free word's
 * CACHED flag change together, and a span in a cache's state always has
 * both, in a central's neither (debug builds assert it on entry; the heap
 * checker, for every span). The remote-free word keeps its own protocol
 * (central.c), because other threads' frees must see CACHED and DEAD in
 * the same atomic word as their count.
 */
#include "meta.h"
#include "pagemap.h"
#include "span.h"

/* One pool per bitmap width: span structs of width w can be reused for any
 * class of the same width, and large spans take width 0. */
#define SPAN_POOL(w) {.size = sizeof(neap_span) + 2 * (w) * sizeof(uint64_t), .kind = NEAP_META_SPAN}
static neap_pool span_pools[NEAP_SPAN_MAX_WORDS + 1] = {
    SPAN_POOL(0), SPAN_POOL(1), SPAN_POOL(2), SPAN_POOL(3), SPAN_POOL(4),
    SPAN_POOL(5), SPAN_POOL(6), SPAN_POOL(7), SPAN_POOL(8)};
_Static_assert(NEAP_SPAN_MAX_WORDS == 8, "one SPAN_POOL per bitmap width");
/* Collected spans have a third bitmap, the marks (gc.h); a large one's
 * bitmaps are one word each. */
#define GC_SPAN_POOL(w) {.size = sizeof(neap_span) + 3 * (w) * sizeof(uint64_t), .kind = NEAP_META_SPAN}
static neap_pool gc_span_pools[NEAP_SPAN_MAX_WORDS + 1] = {
    GC_SPAN_POOL(0), GC_SPAN_POOL(1), GC_SPAN_POOL(2), GC_SPAN_POOL(3), GC_SPAN_POOL(4),
    GC_SPAN_POOL(5), GC_SPAN_POOL(6), GC_SPAN_POOL(7), GC_SPAN_POOL(8)};

/* Words per bitmap: the objects' bits, and the tail's when there is one. */
static unsigned words_for_class(unsigned cls) {
  if (cls == 0) return 0;
  unsigned n = neap__class_objects[cls];
  bool tail = (size_t)n * neap__class_size[cls] < (size_t)neap__class_pages[cls] * NEAP_PAGE_SIZE;
  unsigned w = (n + (tail ? 1u : 0u) + 63u) / 64u;
  neap_assert(w <= NEAP_SPAN_MAX_WORDS);
  return w;
}

neap_span *neap__span_new(unsigned sizeclass) {
  unsigned w = words_for_class(sizeclass);
  neap_span *s = neap__pool_alloc(&span_pools[w]);
  if (s != NULL) s->nwords = (uint8_t)w;
  return s;
}

neap_span *neap__span_new_collected(unsigned sizeclass) {
  unsigned w = sizeclass == 0 ? 1 : words_for_class(sizeclass);
  neap_span *s = neap__pool_alloc(&gc_span_pools[w]);
  if (s != NULL) {
    s->nwords = (uint8_t)w;
    s->kind = NEAP_KIND_GC_SCAN; /* until init says which */
  }
  return s;
}

void neap__span_delete(neap_span *s) {
  if (neap__span_where(s) != NEAP_SPAN_DEAD) neap__span_move(s, NEAP_SPAN_DEAD);
  neap__pool_free(neap__kind_collected(s->kind) ? &gc_span_pools[s->nwords] : &span_pools[s->nwords], s);
}

void neap__span_init_collected(neap_span *s, unsigned cls, unsigned kind) {
  neap_assert(neap__kind_collected(kind) && s->nwords == (cls == 0 ? 1 : words_for_class(cls)));
  s->kind = (uint8_t)kind;
  s->sizeclass = (uint8_t)cls;
  s->needzero = 1;
  s->next_word = 0;
  s->sweepgen = 0;
  NEAP_STORE(&s->owner, NULL);
  atomic_store_explicit(&s->rword, 0, memory_order_relaxed);
  if (cls == 0) {
    s->elemsize = 0; /* its size is its pages' */
    s->nelems = 1;
    s->divmul = 0;
  } else {
    s->elemsize = neap__class_size[cls];
    s->divmul = neap__class_divmul[cls];
    s->nelems = neap__class_objects[cls];
  }
  for (unsigned w = 0; w < s->nwords; w++) {
    uint64_t pad = ~neap__span_word_objects(s, w);
    NEAP_STORE(neap__span_inuse(s, w), cls == 0 ? ~0ull : pad);
    NEAP_STORE(neap__span_remote(s, w), pad);
    NEAP_STORE(&s->bits[2 * s->nwords + w], 0);
  }
  neap__span_move(s, cls == 0 ? NEAP_SPAN_LARGE : NEAP_SPAN_COLLECTED);
}

void neap__span_init_large(neap_span *s) {
  neap_assert(s->nwords == words_for_class(0));
  s->kind = NEAP_KIND_MALLOC;
  s->noscan = 0;
  s->sizeclass = 0;
  s->elemsize = 0;
  NEAP_STORE(&s->owner, NULL);
  atomic_store_explicit(&s->rword, 0, memory_order_relaxed);
  neap__span_move(s, NEAP_SPAN_LARGE);
}

void neap__span_init_small(neap_span *s, unsigned cls) {
  neap_assert(s->nwords == words_for_class(cls));
  s->kind = NEAP_KIND_MALLOC;
  s->elemsize = neap__class_size[cls];
  s->divmul = neap__class_divmul[cls];
  s->nelems = neap__class_objects[cls];
  s->sizeclass = (uint8_t)cls;
  s->needzero = 1;
  s->next_word = 0;
  NEAP_STORE(&s->owner, NULL);
  atomic_store_explicit(&s->rword, 0, memory_order_relaxed);
  neap__span_move(s, NEAP_SPAN_TRANSIT);
  for (unsigned w = 0; w < s->nwords; w++) {
    uint64_t pad = ~neap__span_word_objects(s, w);
    NEAP_STORE(neap__span_inuse(s, w), pad);
    NEAP_STORE(neap__span_remote(s, w), pad);
  }
}

/* Bits of the bitmaps' words that stand for no object. */
static unsigned padding_bits(const neap_span *s) { return s->nwords * 64u - s->nelems; }

unsigned neap__span_merge_remote_scan(neap_span *s) {
  unsigned merged = 0;
  for (unsigned w = 0; w < s->nwords; w++) {
    _Atomic uint64_t *inuse = neap__span_inuse(s, w), *remote = neap__span_remote(s, w);
    uint64_t pad = ~neap__span_word_objects(s, w);
    if (NEAP_LOAD(remote) == pad) continue;
    uint64_t x = atomic_exchange(remote, pad) & ~pad;
    uint64_t u = NEAP_LOAD(inuse);
    if (NEAP_UNLIKELY((u & x) != x)) {
      /* Freed remotely while already free: two frees raced. */
      unsigned i = w * 64u + neap__ctz(x & ~u);
      neap__fatal("double free", (void *)(s->base + (uintptr_t)i * s->elemsize));
    }
    NEAP_STORE(inuse, u & ~x);
    merged += (unsigned)neap__popcount(x);
  }
  if (merged != 0) atomic_fetch_sub(&s->rword, merged);
  return merged;
}

unsigned neap__span_live(const neap_span *s) {
  neap_span *m = (neap_span *)s; /* atomics need a non-const object */
  unsigned n = 0;
  for (unsigned w = 0; w < s->nwords; w++) n += (unsigned)neap__popcount(NEAP_LOAD(neap__span_inuse(m, w)));
  return n - padding_bits(s);
}

#if NEAP_TESTING
/* --- the heap checker's part (check.c) */
#include "check.h"

uint64_t neap__span_pool_inuse(void) {
  uint64_t n = 0;
  for (unsigned w = 0; w <= NEAP_SPAN_MAX_WORDS; w++) n += span_pools[w].inuse + gc_span_pools[w].inuse;
  return n;
}

/* A live small span: its geometry is its class's; padding bits are set in
 * both bitmaps; remote bits fall on objects in use; and if `whole` (no
 * thread of it can be caught halfway: check.c), rword's flags match the
 * owner, it counts the remote bits, and every free object (and the tail)
 * holds the span's free mark. Adds the objects the program holds to
 * ck->held. */
void neap__span_check(neap_check *ck, neap_span *s, bool whole) {
  unsigned cls = s->sizeclass;
  if (!NEAP_CHECK(ck, s->elemsize == neap__class_size[cls] && s->nelems == neap__class_objects[cls] &&
                          s->npages == neap__class_pages[cls] && s->divmul == neap__class_divmul[cls] &&
                          s->nwords == words_for_class(cls),
                  "span's geometry is not its class's", s))
    return;
  uint64_t v = atomic_load(&s->rword);
  NEAP_CHECK(ck, !(v & NEAP_RW_DEAD), "live span is marked dead", s);
  NEAP_CHECK(ck, !whole || ((v & NEAP_RW_CACHED) != 0) == (NEAP_LOAD(&s->owner) != NULL),
             "span's cached flag and owner differ", s);
  unsigned remote = 0;
  for (unsigned w = 0; w < s->nwords; w++) {
    uint64_t pad = ~neap__span_word_objects(s, w);
    uint64_t u = NEAP_LOAD(neap__span_inuse(s, w)), r = NEAP_LOAD(neap__span_remote(s, w));
    if (!NEAP_CHECK(ck, (u & pad) == pad && (r & pad) == pad, "span's padding bits are not set", s)) return;
    if (!NEAP_CHECK(ck, (r & ~u) == 0, "object freed remotely is not in use", (void *)(s->base + (uintptr_t)w * 64u *
                                                                                                  s->elemsize)))
      return;
    remote += (unsigned)neap__popcount(r & ~pad);
    ck->held[cls] += (unsigned)neap__popcount(u & ~r & ~pad);
  }
  if (!whole) return;
  NEAP_CHECK(ck, (v & NEAP_RW_COUNT_MASK) == remote, "span's remote-free count differs from its bitmap", s);
  for (unsigned i = 0; i < s->nelems; i++) {
    if (neap__span_held(s, i)) continue;
    const void *p = (const void *)(s->base + (uintptr_t)i * s->elemsize);
    if (!NEAP_CHECK(ck, neap__mark_key(p) == NEAP_MARK_KEY, "free object lost its mark (written after free?)", p))
      return;
  }
  if ((size_t)s->nelems * s->elemsize < neap__span_bytes(s)) {
    const void *tail = (const void *)(s->base + (uintptr_t)s->nelems * s->elemsize);
    NEAP_CHECK(ck, neap__mark_key(tail) == NEAP_MARK_KEY, "span's tail lost its mark (written past an object?)", tail);
  }
}
#endif
