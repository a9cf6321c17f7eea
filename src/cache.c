/* Per-thread caches (Go's mcache, per thread instead of per P).
 *
 * Each thread has one neap_cache, reached through an initial-exec TLS
 * pointer (one %fs-relative load; initial-exec also keeps a dlopen'd or
 * preloaded libneap from needing dynamic TLS, which would allocate). A
 * thread without a cache points at neap__empty_cache, so the fast paths
 * never test for NULL.
 *
 * What a cache owns. Unlike Go's mcache, which holds one span per class,
 * a cache owns every span it takes (from its central list or the page
 * heap) until the span empties or the thread exits, as mimalloc's thread
 * heaps own their pages: a C program frees explicitly and at random, and
 * if only the current span were the thread's own, nearly every free would
 * have to take the atomic remote path. Per size class a cache has:
 *   - the current span and a window of 64 of its objects: `bits` has a 1
 *     for each free object of the window. Allocation takes the lowest set
 *     bit and sets the object's in-use bit (malloc.c inlines this): no
 *     lock, no atomic read-modify-write. An empty window reloads from the
 *     same bitmap word first (objects freed since: likely still in the
 *     CPU's cache), then from the next word with a free object;
 *   - own_partial: owned spans with room, a FIFO queue taken from the
 *     front when the current span is used up, so each span waits as long
 *     as it can and brings as many objects as it can when its turn comes
 *     (a switch of span costs a few hundred instructions);
 *   - own_full: owned spans parked full. A local free that leaves a
 *     quarter of one free moves it to own_partial (a free into a span
 *     tests one decrement: a span keeps live - refile_at, `countdown`);
 *     taking a span back for one or two objects would cost more than they
 *     are worth. The current span is parked too when it is used up with
 *     less than a quarter free and another span has room, or with none
 *     free.
 *   - own_empty: owned spans that emptied, kept for the next refills, up
 *     to 128 KiB per class and 2 MiB in all, but always the first of a
 *     class (see keep_empty).
 * Any other owned span that empties goes back to its central at once, and
 * from there to the page heap.
 *
 * The free stack. A free takes no span's lock, and nearly always touches
 * no span at all: it pushes the object on its class's stack in the
 * freeing thread's cache, and malloc pops the newest first, as tcmalloc's
 * thread caches do. The object comes back while the CPU's cache still
 * holds it, and its span's line, which a program freeing at random misses
 * in the L1 cache on most frees, is read only when the stack spills (the
 * free path finds the class in the page info: cache.h). A stack is a list
 * through the objects themselves (tcmalloc's and glibc's are too): the
 * first word of each links to the next, so a stack costs its slot one
 * line whatever its length, and its objects' lines, which the push writes
 * anyway, are all it touches. The oldest object links to neap__stack_end,
 * where an empty stack's top points too (cache.h). To its span, an object
 * on a stack is still in use; the objects may be any thread's (a free by
 * a thread that does not own the span stacks the object there all the
 * same, and that thread's next malloc of the class reuses it).
 *
 * How big a stack grows. A class's stack starts at 32 objects (fewer for
 * objects over 1 KiB: 32 KiB). When a free finds it full, what happened
 * since the last time decides (stack_overflow):
 *   - objects were popped: the stack is a pool the class draws on, too
 *     small for the swings between its frees and mallocs. It doubles, up
 *     to its class's most and the thread's budget (cache.h); at either, it
 *     gives back its older half. Each spill costs the span lines of what
 *     it gives back and, later, a window's fresh objects in their place:
 *     at 32 objects the mixed microbenchmark spilled 7 objects in 100
 *     and ran 12% behind tcmalloc; grown, its stacks take some 9,000
 *     places (2 MiB), spill next to nothing, and it runs level
 *     (bench/results/2026-11-23-micro.md). When the budget is reached
 *     (checked every 32 overflows), a rebalance takes back half of what
 *     the classes that have not overflowed since the last one grew.
 *   - none was: a run of frees (a program freeing what it built). The
 *     stack keeps what the class's malloc runs have lately taken off it
 *     (`demand`: the most popped between two overflows, halved at each
 *     overflow of a run of frees), at most half its capacity, and gives
 *     back the rest; it halves, down to its start, when that is under a
 *     quarter. A program that allocates a batch and frees it, again and
 *     again, thus keeps its batch: its stack grows to hold it within a few
 *     rounds (100 blocks of one size: 4 rounds, then no spill; giving
 *     back everything at each such overflow spilled every round and ran
 *     2x tcmalloc). A program freeing a structure for good keeps less at
 *     each overflow, and little at the end: keeping such a run would pin a
 *     span for every object kept (freed at random, they sit in as many
 *     spans), which is the memory a thread that goes quiet after the run
 *     would keep from the OS (48 MiB after the peak scenario of
 *     test_return with stacks that grew on any overflow).
 * What a thread's stacks hold is thus bounded by its budget, at most 4
 * MiB beyond the starting 32s, held until the thread next spills, exits
 * or flushes; no other thread can take it (the stacks are the owner's
 * alone, without locks), but neap_release and the memory limit raise a
 * trim that every thread obeys at its next slow path
 * (stack_trim_all).
 *
 * Checking frees without the span. Every free object holds, in its first
 * two words, its link and its free mark (cache.h): the link xor a key,
 * the key naming the slot whose stack holds it, or only the tag for an
 * object free in its span (written for every object when its span is
 * made: prepare_span). Handing an object out zeroes the mark. The free fast
 * path tests the mark's top 16 bits, which every key has and no address
 * or link does: a 2-byte compare. A free that finds them goes to the slow
 * path, which reads the whole mark: free in its span (the bitmap
 * agrees) or on a stack is a double free; anything else is the program's
 * data, freed as usual (neap__cache_stacked walks this thread's stack to
 * make sure; another thread's it cannot walk, its links changing under
 * it, and trusts the mark: a live object whose 16 bytes a program set to
 * exactly that is taken for a double free). Interior pointers fail the
 * size class's division. An object leaving a stack, popped
 * or spilled, must hold its stack's mark, link included, before the link
 * is followed: otherwise the program wrote it after freeing it, or freed
 * it twice with a write in between (the second push made it its own
 * link's successor, and the first copy fails when reached), and neap
 * aborts ("double free or write after free"). So does an object that two
 * threads freed at once: the second push's mark names the other stack.
 * What escapes: a double free whose first free had already gone back to
 * its span (a spill) when the program wrote over the mark's tag; the
 * second free then finds no tag and stacks it, and the bitmaps, which
 * would have caught it, are not read on the fast path.
 *
 * Frees by other threads (central.c has the protocol) set bits in the
 * span's remote bitmap. The first such free into a span since its owner
 * last looked notifies the span's central, whose next drain forwards the
 * span to its owner's inbox, which the owner drains when it needs room;
 * the current span also merges them when it runs dry. Shared with other
 * threads: the inbox, and the kept empty spans, which a trim may take
 * (under the cache's empty lock); the other lists and the spans' in-use
 * bitmaps are this thread's alone. The price: objects other
 * threads free into the spans of a thread that has gone quiet (blocked,
 * never allocating again) wait in its inbox until it next allocates or
 * exits, as with mimalloc's thread heaps; no one else may write those
 * bitmaps without the owner's cooperation.
 *
 * Statistics never touch the fast paths: each slot counts the objects it
 * handed out a window at a time, and live objects are read from the spans
 * themselves (stats.c). A thread's cache is flushed and retired when the
 * thread exits (a pthread key destructor), flushed only on
 * neap_thread_flush(). Locking: the registry mutex guards the list of
 * caches and the totals of caches that have gone; each cache's empty lock
 * (a spin lock) its kept empty spans, which trims by other threads take.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "cache.h"
#include "central.h"
#include "gc.h"
#include "heap.h"
#include "meta.h"
#include "stats.h"
#include "neap.h"
#include "os/os.h"

neap_cache neap__empty_cache;
__thread neap_cache *neap__tls_cache __attribute__((tls_model("initial-exec"))) = &neap__empty_cache;
__thread neap_cache *neap__tls_registered __attribute__((tls_model("initial-exec")));

static neap_mutex reg_lock = NEAP_MUTEX_INIT(REGISTRY);
static neap_cache *registry;
static neap_pool cache_pool = {.size = sizeof(neap_cache), .kind = NEAP_META_CACHE};
static pthread_key_t cache_key;
static _Atomic uint32_t live_caches; /* in the registry */
static _Atomic uint32_t stack_epoch; /* see stack_trim_all */
static _Atomic int key_state; /* 0 none, 1 creating, 2 ready */
static bool abandoned; /* a forked child left the parent's other caches (reg_lock) */
/* What caches that have gone allocated (their frees need no record: the
 * spans tell how much of it is still live). */
static uint64_t retired_nmalloc[NEAP_NUM_CLASSES];
static uint64_t retired_large_nmalloc, retired_large_bytes_alloc;

static void cache_destroy(void *arg);
/* Set once this thread's cache has been destroyed at exit: a later
 * allocation (another key's destructor) must not make a cache nothing
 * would destroy. */
static __thread bool tls_exiting __attribute__((tls_model("initial-exec")));

static void ensure_key(void) {
  if (atomic_load_explicit(&key_state, memory_order_acquire) == 2) return;
  neap__lock(&reg_lock);
  if (atomic_load_explicit(&key_state, memory_order_relaxed) == 0) {
    /* glibc's pthread_key_create does not allocate. */
    if (pthread_key_create(&cache_key, cache_destroy) == 0)
      atomic_store_explicit(&key_state, 2, memory_order_release);
  }
  neap__unlock(&reg_lock);
}

/* A class's free stack capacity at `objects` objects or `bytes` bytes,
 * whichever is fewer, but at least one; none for class 0 (large objects). */
static uint32_t stack_cap(unsigned cls, uint32_t objects, uint32_t bytes) {
  if (cls == 0) return 0;
  uint32_t cap = bytes / neap__class_size[cls];
  return cap == 0 ? 1 : cap > objects ? objects : cap;
}

static neap_cache *cache_new(void) {
  neap_cache *c = neap__pool_alloc(&cache_pool);
  if (c == NULL) return NULL;
  c->trim_seen = UINT64_MAX; /* a trim first notes the refill count, never takes at once */
  for (unsigned cls = 0; cls < NEAP_NUM_CLASSES; cls++) {
    neap_slot *slot = &c->slot[cls];
    slot->size = neap__class_size[cls];
    slot->cap_start = stack_cap(cls, NEAP_STACK_START, NEAP_STACK_START_BYTES);
    slot->cap_max = stack_cap(cls, NEAP_STACK_MAX, NEAP_STACK_MAX_BYTES);
    if (slot->cap_max < slot->cap_start) slot->cap_max = slot->cap_start;
    slot->cap = (uint16_t)slot->cap_start;
    slot->marker = NEAP_MARK_KEY | (uintptr_t)slot;
    NEAP_STORE(&slot->top, (neap_word *)neap__stack_end);
    slot->divmul = neap__class_divmul[cls];
    neap_link *heads[] = {&c->own_partial[cls], &c->own_full[cls], &c->own_empty[cls]};
    for (unsigned i = 0; i < 3; i++) heads[i]->next = heads[i]->prev = heads[i];
  }
  c->gct.tid = (int)neap__os_gettid();
  c->gct.internal = neap__tls_internal;
  neap__lock(&reg_lock);
  c->reg_next = registry;
  if (registry) registry->reg_prev = c;
  registry = c;
  neap__tls_registered = c;
  atomic_fetch_add_explicit(&live_caches, 1, memory_order_relaxed);
  c->stack_epoch = atomic_load_explicit(&stack_epoch, memory_order_relaxed);
  neap__unlock(&reg_lock);
  return c;
}

static void cache_retire(neap_cache *c);

void *neap__cache_alloc_exiting(unsigned cls, bool zero) {
  neap_cache *c = cache_new();
  if (c == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = neap__cache_refill(c, &c->slot[cls]);
  if (p != NULL && zero && c->slot[cls].span->needzero) memset(p, 0, neap__class_size[cls]);
  neap__cache_flush(c);
  cache_retire(c);
  return p;
}

bool neap__cache_exiting(void) { return tls_exiting; }

neap_cache *neap__cache_get_slow(void) {
  neap_cache *c = neap__cache_mine();
  if (c != NULL) return c;
  if (tls_exiting) return NULL;
  c = cache_new();
  if (c == NULL) return NULL;
  /* Publish before pthread_setspecific: with many keys in use glibc may
   * allocate there, and that malloc must find this cache, not recurse. */
  neap__tls_cache = c;
  neap__process_init();
  ensure_key();
  if (atomic_load_explicit(&key_state, memory_order_acquire) == 2) pthread_setspecific(cache_key, c);
  return c;
}

/* --- the spans a cache owns (this thread only) */

/* The own lists are circular with a head in the cache, so that taking a
 * span out and putting one in take a few stores and no branch: a span
 * switch does both twice, every few dozen allocations when objects die at
 * random. */
static neap_span *span_of_link(neap_link *l) { return (neap_span *)(void *)((char *)l - offsetof(neap_span, own)); }
static bool list_empty(const neap_link *head) { return head->next == head; }
static neap_span *list_first(neap_link *head) { return list_empty(head) ? NULL : span_of_link(head->next); }

static void link_remove(neap_link *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
}

static void link_after(neap_link *at, neap_link *l) {
  l->prev = at;
  l->next = at->next;
  at->next->prev = l;
  at->next = l;
}

static neap_link *own_list(neap_cache *c, unsigned cls, unsigned which) {
  switch (which) {
  case NEAP_SPAN_OWN_PARTIAL: return &c->own_partial[cls];
  case NEAP_SPAN_OWN_EMPTY: return &c->own_empty[cls];
  default: return &c->own_full[cls];
  }
}

/* Takes s, which c owns, off its own list or its slot: TRANSIT. */
static void own_remove(neap_cache *c, neap_span *s) {
  unsigned where = neap__span_where(s);
  if (where == NEAP_SPAN_OWN_EMPTY) {
    c->nempty[s->sizeclass]--;
    c->empty_pages -= s->npages;
  }
  if (neap__where_own_list(where)) link_remove(&s->own);
  neap__span_move(s, NEAP_SPAN_TRANSIT);
}

/* A full span goes back on the partial list only once a quarter of it is
 * free (at least one object): taking a span for one or two objects costs
 * more than the objects are worth, and spans with a little room fill up
 * anyway as their neighbours' objects die. Every other span takes the slow
 * path only when it empties. */
static uint32_t refile_room(const neap_span *s) {
  uint32_t room = s->nelems / 4u;
  return room ? room : 1u;
}

static uint32_t refile_threshold(const neap_span *s, unsigned which) {
  return which == NEAP_SPAN_OWN_FULL ? (uint32_t)s->nelems - refile_room(s) : 0;
}

/* A span's live count (see neap_span.countdown). */
static uint32_t live_of(const neap_span *s) { return (uint32_t)s->countdown + s->refile_at; }
static void set_live(neap_span *s, uint32_t live) { s->countdown = (int32_t)(live - s->refile_at); }
static void add_live(neap_span *s, int32_t k) { s->countdown += k; }
static void set_refile_at(neap_span *s, uint32_t at) {
  s->countdown += (int32_t)(s->refile_at - at);
  s->refile_at = at;
}

/* Puts s (TRANSIT) on own list `which`: partial spans at the back,
 * since refills take the front, so a span waits as long as it can,
 * gathering frees, and gives more objects when its turn comes. */
static void own_push(neap_cache *c, neap_span *s, unsigned which) {
  neap__span_move(s, which);
  if (which == NEAP_SPAN_OWN_EMPTY) {
    c->nempty[s->sizeclass]++;
    c->empty_pages += s->npages;
  }
  set_refile_at(s, refile_threshold(s, which));
  neap_link *head = own_list(c, s->sizeclass, which);
  link_after(which == NEAP_SPAN_OWN_PARTIAL ? head->prev : head, &s->own);
}

/* Whether this thread holds a cache's empty lock (it never holds two): a
 * signal handler that re-enters neap must not spin on it forever. */
static __thread bool tls_holds_empty __attribute__((tls_model("initial-exec")));

static void empty_lock(neap_cache *c) {
  if (NEAP_UNLIKELY(tls_holds_empty)) neap__lock_reentered();
  neap__rank_take(NEAP_RANK_CACHE_EMPTY);
  while (atomic_flag_test_and_set_explicit(&c->empty_lock, memory_order_acquire)) NEAP_SPIN_PAUSE();
  tls_holds_empty = true;
}

static void empty_unlock(neap_cache *c) {
  tls_holds_empty = false;
  atomic_flag_clear_explicit(&c->empty_lock, memory_order_release);
  neap__rank_drop(NEAP_RANK_CACHE_EMPTY);
}

/* Gives an owned span back to its central (and from there, if it is
 * empty, to the page heap). */
static void give_back(neap_cache *c, neap_span *s) {
  own_remove(c, s);
  neap__central_give_back(s);
}

/* How many empty spans of a class a cache keeps for its next refills:
 * 128 KiB worth, and 2 MiB in all per cache, but always the first one of
 * a class whatever the total (so 2 MiB plus one span per class at most:
 * about 4 MiB if every class kept one). Without them a
 * class with few live objects spread over a few spans gives a span back
 * and takes a new one, under the central's and the heap's locks, every
 * few frees (larson: 4x slower); and a program that allocates in bursts
 * and frees them all (xmalloc with one thread: 4096 blocks, 2 MiB, over
 * and over) sends every span of a burst through the page heap and back
 * (with 32 KiB per class and no total it ran 16% slower; a 1 MiB total
 * keeps half the gain). The cost is bounded like a tcmalloc thread cache
 * (4 MiB by default): at most about 4 MiB per thread, given back when the
 * thread exits or flushes, or by the scavenger once the thread has not
 * refilled for a release delay (trim). */
#define KEEP_EMPTY_BYTES (128u << 10)
#define KEEP_EMPTY_TOTAL ((size_t)2 << 20)
static unsigned keep_empty(unsigned cls) {
  unsigned n = (unsigned)(KEEP_EMPTY_BYTES / ((size_t)neap__class_pages[cls] << NEAP_PAGE_SHIFT));
  return n ? n : 1u;
}

/* Files an owned, not current span by its count of live objects: moves
 * it from full to partial when it has room; when it empties, keeps it on
 * the empty list (see keep_empty) or gives it back. */
static void refile(neap_cache *c, neap_span *s) {
  if (live_of(s) == 0) {
    if (neap__span_where(s) == NEAP_SPAN_OWN_EMPTY) return;
    own_remove(c, s);
    empty_lock(c);
    unsigned n = c->nempty[s->sizeclass];
    bool keep = n < keep_empty(s->sizeclass) &&
                (n == 0 || (size_t)(c->empty_pages + s->npages) << NEAP_PAGE_SHIFT <= KEEP_EMPTY_TOTAL);
    if (keep) own_push(c, s, NEAP_SPAN_OWN_EMPTY);
    empty_unlock(c);
    if (!keep) neap__central_give_back(s);
  } else if (neap__span_where(s) == NEAP_SPAN_OWN_FULL && s->countdown <= 0) {
    own_remove(c, s);
    own_push(c, s, NEAP_SPAN_OWN_PARTIAL);
  }
}

/* --- frees: the free stack, and giving objects back to their spans */

/* Object p of span s, owned by c, goes back to s: its in-use bit is
 * cleared (no lock, no atomic read-modify-write: only this thread writes
 * it). It must be in use and not freed by another thread as well. */
static void span_free_local(neap_cache *c, neap_span *s, void *p) {
  uint64_t prod = ((uintptr_t)p - s->base) * s->divmul;
  unsigned idx = (unsigned)(prod >> 32);
  _Atomic uint64_t *word = neap__span_inuse(s, idx >> 6);
  uint64_t u = NEAP_LOAD(word);
  if (NEAP_UNLIKELY(!neap__bit(u, idx) || neap__bit(NEAP_LOAD(&word[1]), idx))) neap__fatal("double free", p);
  NEAP_STORE(word, neap__bit_clear(u, idx));
  /* A live count down to refile_at: a full span got room, or one
   * emptied. The current span stays, even empty: it is about to be reused. */
  if (NEAP_UNLIKELY(--s->countdown == 0) && neap__span_where(s) != NEAP_SPAN_CURRENT) refile(c, s);
}

const neap_word neap__stack_end[2];

void neap__stack_mark_lost(void *p) {
  if (p == neap__stack_end) neap__lock_reentered(); /* the count and the top disagree: see cache.h */
  neap__fatal("double free or write after free", p);
}

/* Frees object p into its span s (cleared in the in-use bitmap if c owns
 * s, else set in the remote one). */
static void free_to_span(neap_cache *c, neap_span *s, void *p) {
  if (NEAP_LOAD(&s->owner) == c) span_free_local(c, s, p);
  else neap__cache_free_remote(s, (uintptr_t)p);
}

/* Takes object p off the slot's free stack and frees it into its span;
 * gives the next object on the stack. p must still hold the stack's
 * mark, which checks the link before it is followed; it leaves with its
 * span's mark. The link is read first: once p is back, its span's owner
 * may hand it out. */
static neap_word *unstack(neap_cache *c, neap_slot *slot, neap_word *p) {
  NEAP_TRACK_QUIET_BEGIN();
  uint64_t next = p[0];
  if (NEAP_UNLIKELY(neap__mark_key(p) != slot->marker)) neap__stack_mark_lost(p);
  neap__mark_set(p, next, NEAP_MARK_KEY);
  NEAP_TRACK_QUIET_END();
  neap_span *s = neap__span_of((uintptr_t)p);
  neap_assert(s != NULL && s->sizeclass != 0);
  free_to_span(c, s, p);
  return (neap_word *)next;
}

/* Spills a slot's stack: frees all but the newest `keep` objects into
 * their spans. The newest are the likeliest to be in the CPU's cache, and the
 * walk down to the cut reads only them; the object at the cut is marked
 * again for its new link. */
static void stack_spill(neap_cache *c, neap_slot *slot, uint32_t keep) {
  uint64_t w = NEAP_LOAD(&slot->stack);
  uint32_t n = neap__stack_n(w);
  if (keep >= n) return;
  neap_word *p = NEAP_LOAD(&slot->top), *last = NULL;
  NEAP_TRACK_QUIET_BEGIN();
  for (uint32_t i = 0; i < keep; i++) {
    if (NEAP_UNLIKELY(neap__mark_key(p) != slot->marker)) neap__stack_mark_lost(p);
    last = p;
    p = (neap_word *)p[0];
  }
  if (last != NULL) neap__mark_set(last, (uintptr_t)neap__stack_end, slot->marker);
  else NEAP_STORE(&slot->top, (neap_word *)neap__stack_end);
  NEAP_TRACK_QUIET_END();
  for (uint32_t i = keep; i < n; i++) p = unstack(c, slot, p);
  NEAP_STORE(&slot->stack, w - (n - keep));
}

/* What a slot's stack capacity has grown by, in bytes. */
static size_t stack_growth(const neap_slot *slot) { return (size_t)(slot->cap - slot->cap_start) * slot->size; }

/* Half a slot's stack capacity, but not below its start. */
static uint32_t stack_halved(const neap_slot *slot) {
  uint32_t cap = slot->cap / 2u;
  return cap < slot->cap_start ? slot->cap_start : cap;
}

/* Sets a slot's stack capacity; the oldest objects beyond it go back. */
static void stack_set_cap(neap_cache *c, neap_slot *slot, uint32_t cap) {
  c->stack_grown -= stack_growth(slot);
  slot->cap = (uint16_t)cap;
  c->stack_grown += stack_growth(slot);
  stack_spill(c, slot, cap);
}

/* How far this thread's stacks may grow (cache.h): a share of the total. */
static size_t stack_budget(void) {
  uint32_t n = atomic_load_explicit(&live_caches, memory_order_relaxed);
  size_t b = NEAP_STACK_TOTAL / (n ? n : 1u);
  return b > NEAP_STACK_GROW_MAX ? NEAP_STACK_GROW_MAX : b < NEAP_STACK_GROW_MIN ? NEAP_STACK_GROW_MIN : b;
}

/* A rebalance waits for this many overflows since the last, so that a
 * thread whose classes are all busy does not rebalance at every one. */
#define REBALANCE_OVERFLOWS 32u

/* The stacks have grown to the budget: each class whose stack has not
 * overflowed since the last rebalance gives back half of what it grew
 * (and the oldest objects beyond its new capacity), so that a thread that
 * moves on from one set of sizes to another frees the budget for the new
 * ones; and while the stacks are still over the budget (more threads
 * share it now), every class gives back half. */
static void stack_rebalance(neap_cache *c, size_t budget) {
  for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
    neap_slot *slot = &c->slot[cls];
    if (slot->overflows == 0 && slot->cap > slot->cap_start) stack_set_cap(c, slot, stack_halved(slot));
    slot->overflows = 0;
  }
  while (c->stack_grown > budget) {
    for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
      neap_slot *slot = &c->slot[cls];
      if (slot->cap > slot->cap_start) stack_set_cap(c, slot, stack_halved(slot));
    }
  }
  c->overflows = 0;
  c->rebalances++;
}

/* Gives back every object on c's stacks, which start over at their
 * starting capacities. */
static void stack_trim(neap_cache *c) {
  for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
    neap_slot *slot = &c->slot[cls];
    stack_spill(c, slot, 0);
    slot->cap = (uint16_t)slot->cap_start;
    slot->overflows = 0;
  }
  c->stack_grown = 0;
  c->overflows = 0;
}

/* Obeys a stack_trim_all this thread has not seen (its slow paths
 * look). */
static void stack_epoch_check(neap_cache *c) {
  uint32_t e = atomic_load_explicit(&stack_epoch, memory_order_relaxed);
  if (NEAP_UNLIKELY(c->stack_epoch != e)) {
    c->stack_epoch = e;
    stack_trim(c);
  }
}

/* Asks every thread to give back all the objects on its free stacks at
 * its next slow path (a refill, a full stack); this one at once if `now`
 * (neap_release: not the memory limit's work, which runs inside an
 * allocation, with this thread's cache in the middle of a refill). */
static void stack_trim_all(bool now) {
  atomic_fetch_add_explicit(&stack_epoch, 1, memory_order_relaxed);
  neap_cache *c = neap__cache_mine();
  if (now && c != NULL) stack_epoch_check(c);
}

/* A free found the slot's stack full. If objects were popped since the
 * last overflow, the stack is a pool the class reuses, too small for its
 * swings: it doubles (as tcmalloc's thread caches grow their lists), up
 * to its class's most and the thread's budget, or, at either, gives back
 * its older half. If none was, this is a run of frees: the stack keeps
 * the newest of what the class's malloc runs take (demand, halved at
 * each such overflow, so that a run freeing a structure for good keeps
 * less and less), at most half its capacity, and gives back the rest, so
 * that the spans the rest would pin empty and go back. */
static void stack_overflow(neap_cache *c, neap_slot *slot) {
  stack_epoch_check(c);
  uint64_t w = NEAP_LOAD(&slot->stack);
  if (neap__stack_n(w) < slot->cap) return; /* trimmed */
  uint64_t popped = neap__stack_pops(w) - slot->pops_seen;
  slot->pops_seen = neap__stack_pops(w);
  if (popped == 0) {
    uint32_t keep = slot->demand < slot->cap / 2 ? slot->demand : slot->cap / 2;
    slot->demand /= 2;
    if (keep < slot->cap / 4) stack_set_cap(c, slot, stack_halved(slot));
    stack_spill(c, slot, keep);
    return;
  }
  if (popped > slot->demand) slot->demand = popped > slot->cap_max ? slot->cap_max : (uint32_t)popped;
  slot->overflows++;
  c->overflows++;
  if (slot->cap < slot->cap_max) {
    uint32_t cap = slot->cap * 2 < slot->cap_max ? slot->cap * 2 : slot->cap_max;
    size_t more = (size_t)(cap - slot->cap) * slot->size, budget = stack_budget();
    if (c->stack_grown + more > budget && c->overflows >= REBALANCE_OVERFLOWS) stack_rebalance(c, budget);
    if (c->stack_grown + more <= budget) {
      stack_set_cap(c, slot, cap);
      return;
    }
  }
  stack_spill(c, slot, slot->cap / 2);
}

void neap__cache_free_small(neap_cache *c, neap_span *s, void *p) {
  neap_slot *slot = &c->slot[s->sizeclass];
  if (slot->cap == 0) { /* the empty cache: no stack, and no span of its own */
    NEAP_TRACK_FREE(p);
    NEAP_TRACK_QUIET_BEGIN();
    neap__mark_set(p, 0, NEAP_MARK_KEY);
    NEAP_TRACK_QUIET_END();
    free_to_span(c, s, p);
    return;
  }
  if (neap__stack_n(NEAP_LOAD(&slot->stack)) >= slot->cap) stack_overflow(c, slot);
  neap__slot_push(slot, p, NEAP_LOAD(&slot->stack));
}

bool neap__cache_stacked(const void *p, unsigned cls) {
  uint64_t key = neap__mark_key(p);
  uintptr_t holder = neap__mark_holder(key);
  if (!neap__mark_tagged(key) || holder == 0) return false;
  bool found = false;
  neap_cache *mine = neap__cache_mine();
  neap__lock(&reg_lock);
  for (neap_cache *c = registry; c != NULL; c = c->reg_next) {
    neap_slot *slot = &c->slot[cls];
    if ((uintptr_t)slot != holder) continue;
    if (c == mine) {
      /* This thread's own stack: look, checking each link before it is
       * followed. */
      neap_word *q = NEAP_LOAD(&slot->top);
      NEAP_TRACK_QUIET_BEGIN();
      for (uint32_t i = neap__stack_n(NEAP_LOAD(&slot->stack)); i > 0 && !found; i--) {
        if (NEAP_UNLIKELY(neap__mark_key(q) != slot->marker)) {
          neap__unlock(&reg_lock);
          neap__stack_mark_lost(q);
        }
        found = q == p;
        q = (neap_word *)q[0];
      }
      NEAP_TRACK_QUIET_END();
    } else {
      /* Another's: its links may change under the walk, so the mark,
       * which names this very stack, has to do. */
      found = true;
    }
    break;
  }
  neap__unlock(&reg_lock);
  return found;
}

void neap__cache_inbox_push(neap_cache *owner, neap_span *s) {
  neap_span *head = atomic_load_explicit(&owner->inbox, memory_order_relaxed);
  do {
    s->pending_next = head;
  } while (!atomic_compare_exchange_weak_explicit(&owner->inbox, &head, s, memory_order_release,
                                                  memory_order_relaxed));
}

/* Take in the frees other threads made into spans this cache owns. */
static void drain_inbox(neap_cache *c) {
  neap_span *s = atomic_exchange_explicit(&c->inbox, NULL, memory_order_acquire);
  while (s != NULL) {
    neap_span *next = s->pending_next;
    if (NEAP_LOAD(&s->owner) != c) {
      /* Forwarded while we were giving it back: it is not ours any more
       * (only this thread makes a span ours). Its NOTIFIED is still set;
       * push it on the central's pending stack, which knows the owner. */
      neap__central_notify(s);
      s = next;
      continue;
    }
    /* Clear NOTIFIED before merging: a free that lands after the merge
     * notifies again. */
    atomic_fetch_and(&s->rword, ~NEAP_RW_NOTIFIED);
    add_live(s, -(int32_t)neap__span_merge_remote(s));
    if (atomic_load(&s->rword) & NEAP_RW_COUNT_MASK) {
      /* A free announced before we cleared NOTIFIED (so it will not
       * notify) had not set its bit when we merged: look again later. */
      if (!(atomic_fetch_or(&s->rword, NEAP_RW_NOTIFIED) & NEAP_RW_NOTIFIED)) neap__central_notify(s);
    }
    if (neap__span_where(s) != NEAP_SPAN_CURRENT) refile(c, s);
    s = next;
  }
}

static void load_window(neap_slot *slot, neap_span *s, unsigned w) {
  s->next_word = (uint8_t)w;
  slot->inuse = neap__span_inuse(s, w);
  uint64_t bits = neap__span_free_bits(s, w);
  slot->base = s->base + (uintptr_t)w * 64u * s->elemsize;
  /* The whole window counts as allocated until it is dropped; the
   * sequence count lets the statistics read the pair consistently (the
   * fences cost nothing on x86, and this runs once per 64 objects). */
  unsigned k = neap__popcount(bits);
  add_live(s, (int32_t)k);
  uint32_t q = NEAP_LOAD(&slot->seq);
  NEAP_STORE(&slot->seq, q + 1);
  /* Release stores keep the odd count ahead of the data (plain moves on
   * x86; no fences: ThreadSanitizer does not model them). */
  atomic_store_explicit(&slot->nmalloc, NEAP_LOAD(&slot->nmalloc) + k, memory_order_release);
  atomic_store_explicit(&slot->bits, bits, memory_order_release);
  atomic_store_explicit(&slot->seq, q + 2, memory_order_release);
}

/* Drop the untaken rest of the current window. */
static void drop_window(neap_slot *slot) {
  unsigned k = neap__popcount(NEAP_LOAD(&slot->bits));
  add_live(slot->span, -(int32_t)k);
  uint32_t q = NEAP_LOAD(&slot->seq);
  NEAP_STORE(&slot->seq, q + 1);
  atomic_store_explicit(&slot->bits, 0, memory_order_release); /* see load_window */
  atomic_store_explicit(&slot->nmalloc, NEAP_LOAD(&slot->nmalloc) - k, memory_order_release);
  atomic_store_explicit(&slot->seq, q + 2, memory_order_release);
}

/* Make s the slot's current span (it has a free object). */
static void make_current(neap_slot *slot, neap_span *s) {
  neap__span_move(s, NEAP_SPAN_CURRENT);
  set_refile_at(s, 0);
  slot->span = s;
  unsigned w = neap__span_next_free_word(s, 0);
  neap_assert(w < s->nwords);
  load_window(slot, s, w);
}

/* Hand out the lowest free object of the slot's (non-empty) window. */
NEAP_INLINE void *take(neap_slot *slot) { return neap__slot_take(slot, NEAP_LOAD(&slot->bits)); }

static NEAP_NOINLINE void *refill_slow(neap_cache *c, neap_slot *slot);

/* Load word w of the slot's current span as its window and take from it. */
static NEAP_NOINLINE void *reload(neap_slot *slot, neap_span *s, unsigned w) {
  load_window(slot, s, w);
  return take(slot);
}

/* The window is empty. Mostly the next word of the same span has room,
 * or none is left and the span must change: both are tail calls, so that
 * this part saves no registers (half its calls go on to refill_slow). */
void *neap__cache_refill(neap_cache *c, neap_slot *slot) {
  neap_span *s = slot->span;
  if (NEAP_LIKELY(s != NULL)) {
    /* Objects of the window freed since it was loaded come first: they
     * are the likeliest to be in the CPU's cache, and a class with few
     * live objects (and so spans of one word) lives on them. */
    unsigned w = s->next_word;
    if (neap__span_free_bits(s, w) != 0) s->needzero = 1; /* they have been used */
    else w = neap__span_next_free_word(s, w + 1u);
    if (w < s->nwords) return reload(slot, s, w);
  }
  return refill_slow(c, slot);
}

/* A span new from the page heap, before its first object goes out. Its
 * pages' info names its class's slot and each page's place in the span
 * (pagemap.h: the free fast path reads them instead of the span). Every
 * object holds its free mark (cache.h), and so does the tail after the
 * last object (at least 16 bytes when there is one: sizes and spans are
 * multiples of 16), which is never handed out: a free of either fails the
 * free fast path's test. The stores touch the first OS page of each object
 * a little before its first use: most of a small span's pages are about to
 * be used anyway. */
static void prepare_span(neap_span *s) {
  uint16_t slot = neap__pinfo_slot_of(s);
  for (uint64_t i = 0; i < s->npages; i++) {
    uintptr_t addr = s->base + (i << NEAP_PAGE_SHIFT);
    neap_arena *a = neap__arena_of(addr);
    if (a->info_slot == NULL) continue; /* outside the page map's run: no page info */
    uint64_t k = (addr - a->base) >> NEAP_PAGE_SHIFT;
    NEAP_STORE(&a->info_start[k], neap__pinfo_start_of(i, addr));
    NEAP_STORE(&a->info_slot[k], slot);
  }
  NEAP_TRACK_QUIET_BEGIN();
  for (uintptr_t p = s->base, end = s->base + neap__span_bytes(s); p < end; p += s->elemsize)
    neap__mark_set((void *)p, 0, NEAP_MARK_KEY);
  NEAP_TRACK_QUIET_END();
  NEAP_TRACK_NOACCESS((void *)s->base, neap__span_bytes(s)); /* every object free */
}

static NEAP_NOINLINE void *refill_slow(neap_cache *c, neap_slot *slot) {
  unsigned cls = (unsigned)(slot - c->slot);
  stack_epoch_check(c);
  neap_link *partial = &c->own_partial[cls];
  /* Spans other threads freed into first: they may give the current span
   * room, or the partial list a span. */
  if (atomic_load_explicit(&c->inbox, memory_order_relaxed) != NULL) drain_inbox(c);
  neap_span *s = slot->span;
  if (s != NULL) {
    /* End of the span: start over if a quarter of it is free by now (as a
     * parked span must be to come back), or if this is the only owned
     * span with room. Otherwise a pass for the few objects freed since the
     * last would end again soon. */
    add_live(s, -(int32_t)neap__span_merge_remote(s));
    s->needzero = 1; /* objects on a second pass may have been used */
    if (s->nelems - live_of(s) >= refile_room(s) || list_empty(partial)) {
      unsigned w = neap__span_next_free_word(s, 0);
      if (w < s->nwords) {
        load_window(slot, s, w);
        return take(slot);
      }
    }
    /* Full: park it until a free makes room. */
    slot->span = NULL;
    own_remove(c, s);
    own_push(c, s, NEAP_SPAN_OWN_FULL);
  }
  if (list_empty(partial)) {
    neap__central_drain(cls); /* may forward spans we own to the inbox */
    if (atomic_load_explicit(&c->inbox, memory_order_relaxed) != NULL) drain_inbox(c);
  }
  NEAP_STORE(&c->refills, NEAP_LOAD(&c->refills) + 1);
  s = list_first(partial);
  if (s != NULL) {
    own_remove(c, s);
  } else {
    empty_lock(c); /* a trim may be taking the kept spans */
    s = list_first(&c->own_empty[cls]);
    if (s != NULL) own_remove(c, s);
    empty_unlock(c);
  }
  if (s != NULL) {
    add_live(s, -(int32_t)neap__span_merge_remote(s));
  } else {
    bool fresh;
    s = neap__central_take(cls, c, &fresh);
    if (s == NULL) {
      errno = ENOMEM;
      return NULL;
    }
    if (fresh) prepare_span(s);
    set_live(s, neap__span_live(s));
  }
  make_current(slot, s);
  return take(slot);
}

void neap__cache_free_remote(neap_span *s, uintptr_t p) {
  uintptr_t off = p - s->base;
  unsigned idx = (unsigned)((off * s->divmul) >> 32);
  unsigned w = idx >> 6;
  uint64_t bit = 1ull << (idx & 63);
  if (NEAP_UNLIKELY(!(NEAP_LOAD(neap__span_inuse(s, w)) & bit))) neap__fatal("double free", (void *)p);
  uint64_t old = atomic_fetch_add(&s->rword, 1);
  if (NEAP_UNLIKELY(old & NEAP_RW_DEAD)) neap__fatal("double free", (void *)p);
  bool push = false;
  /* Owned or not, someone must hear of it: a cache looks at its parked
   * spans only when told. One push per span until the owner has looked. */
  if (!(old & NEAP_RW_NOTIFIED))
    push = !(atomic_fetch_or(&s->rword, NEAP_RW_NOTIFIED) & NEAP_RW_NOTIFIED);
  if (NEAP_UNLIKELY(atomic_fetch_or(neap__span_remote(s, w), bit) & bit)) neap__fatal("double free", (void *)p);
  if (push) neap__central_notify(s);
}

/* Takes every kept empty span out of c (under its empty lock, which is
 * never held across a call) and gives them back. */
static size_t trim_one(neap_cache *c) {
  neap_span *taken = NULL;
  empty_lock(c);
  for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
    while (!list_empty(&c->own_empty[cls])) {
      neap_span *s = list_first(&c->own_empty[cls]);
      own_remove(c, s);
      s->next = taken;
      taken = s;
    }
  }
  empty_unlock(c);
  size_t pages = 0;
  while (taken != NULL) {
    neap_span *s = taken;
    taken = s->next;
    s->next = NULL;
    pages += s->npages;
    neap__central_give_back(s); /* empty: straight to the page heap */
  }
  return pages;
}

/* Gives back the empty spans caches keep for their next refills
 * (keep_empty): from every cache when `all`, else only from caches that
 * have not refilled since the previous trim (of any reason). Returns pages
 * freed. */
static size_t trim(bool all) {
  size_t pages = 0;
  neap__lock(&reg_lock);
  for (neap_cache *c = registry; c != NULL; c = c->reg_next) {
    uint64_t r = NEAP_LOAD(&c->refills);
    if (all || r == c->trim_seen) pages += trim_one(c);
    c->trim_seen = r;
  }
  neap__unlock(&reg_lock);
  return pages;
}

/* The pages of the empty spans caches keep. */
static size_t kept_pages(void) {
  size_t pages = 0;
  neap__lock(&reg_lock);
  for (neap_cache *c = registry; c != NULL; c = c->reg_next) {
    empty_lock(c);
    pages += c->empty_pages;
    empty_unlock(c);
  }
  neap__unlock(&reg_lock);
  return pages;
}

size_t neap__cache_reclaim(neap_reclaim why) {
  switch (why) {
  case NEAP_RECLAIM_SHORT:
    return 0; /* kept spans are their caches' next refills; the scavenger's rounds and the limit bound them */
  case NEAP_RECLAIM_IDLE:
    return trim(false);
  case NEAP_RECLAIM_LIMIT:
    stack_trim_all(false);
    return trim(true);
  case NEAP_RECLAIM_RELEASE:
    stack_trim_all(true);
    return trim(true);
  case NEAP_RECLAIM_PENDING:
    return kept_pages();
  }
  return 0;
}

void neap__cache_flush(neap_cache *c) {
  stack_trim(c);
  for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
    neap_slot *slot = &c->slot[cls];
    neap_span *s = slot->span;
    if (s != NULL) {
      drop_window(slot);
      slot->span = NULL;
      slot->inuse = NULL;
      give_back(c, s);
    }
    while (!list_empty(&c->own_partial[cls])) give_back(c, list_first(&c->own_partial[cls]));
    while (!list_empty(&c->own_full[cls])) give_back(c, list_first(&c->own_full[cls]));
  }
  trim_one(c);
  /* Spans forwarded to us before we gave them back are their centrals'
   * now, still NOTIFIED: push them on their centrals' pending stacks. */
  neap_span *s = atomic_exchange_explicit(&c->inbox, NULL, memory_order_acquire);
  while (s != NULL) {
    neap_span *next = s->pending_next;
    neap__central_notify(s);
    s = next;
  }
}

static void cache_destroy(void *arg) {
  neap_cache *c = arg;
  if (c->gc != NULL) neap__gc_cache_flush(c, true);
  neap__cache_flush(c);
  neap__tls_cache = &neap__empty_cache;
  tls_exiting = true;
  cache_retire(c);
}

/* Folds c's totals into the retired ones (the untaken rest of a window
 * does not count: none is left in a flushed cache) and takes c out of the
 * registry. Caller holds reg_lock. */
static void unregister_locked(neap_cache *c) {
  for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++)
    retired_nmalloc[cls] += NEAP_LOAD(&c->slot[cls].nmalloc) - neap__popcount(NEAP_LOAD(&c->slot[cls].bits)) +
                            neap__stack_pops(NEAP_LOAD(&c->slot[cls].stack));
  retired_large_nmalloc += NEAP_LOAD(&c->large_nmalloc);
  retired_large_bytes_alloc += NEAP_LOAD(&c->large_bytes_alloc);
  atomic_fetch_sub_explicit(&live_caches, 1, memory_order_relaxed);
  if (c->reg_prev) c->reg_prev->reg_next = c->reg_next;
  else registry = c->reg_next;
  if (c->reg_next) c->reg_next->reg_prev = c->reg_prev;
  c->reg_next = c->reg_prev = NULL;
  if (neap__tls_registered == c) neap__tls_registered = NULL;
}

/* Folds a flushed cache's totals into the retired ones and frees it. */
static void cache_retire(neap_cache *c) {
  neap__lock(&reg_lock);
  unregister_locked(c);
  neap__unlock(&reg_lock);
  neap__pool_free(&cache_pool, c);
}

void neap_thread_flush(void) {
  neap_cache *c = neap__cache_mine();
  if (c == NULL) return;
  if (c->gc != NULL) neap__gc_cache_flush(c, false);
  neap__cache_flush(c);
}

void neap__cache_count_large(uint64_t objects, uint64_t bytes) {
  neap_cache *c = neap__cache_mine();
  if (c == NULL && (c = neap__cache_get_slow()) == NULL) {
    /* No cache (exiting, or out of memory): with the retired caches'. */
    neap__lock(&reg_lock);
    retired_large_nmalloc += objects;
    retired_large_bytes_alloc += bytes;
    neap__unlock(&reg_lock);
    return;
  }
  NEAP_STORE(&c->large_nmalloc, NEAP_LOAD(&c->large_nmalloc) + objects);
  NEAP_STORE(&c->large_bytes_alloc, NEAP_LOAD(&c->large_bytes_alloc) + bytes);
}

/* A slot's objects handed out: nmalloc minus the untaken rest of the
 * window, read as a pair under the slot's sequence count (a seqlock whose
 * writer is the owner's window load or drop). Allocations the owner makes
 * meanwhile only clear bits, so the figure is one the owner had at some
 * moment during the read: it never runs ahead of the truth, which
 * stats.c relies on. */
static uint64_t slot_handed_out(neap_slot *slot) {
  uint64_t n = 0, b = 0;
  for (int tries = 0; tries < 1000; tries++) {
    /* Acquire loads of the data keep the second read of the count after
     * them, and one that sees a store made after the odd count sees the
     * count moved on. */
    uint32_t q1 = atomic_load_explicit(&slot->seq, memory_order_acquire);
    n = atomic_load_explicit(&slot->nmalloc, memory_order_acquire);
    b = atomic_load_explicit(&slot->bits, memory_order_acquire);
    uint32_t q2 = NEAP_LOAD(&slot->seq);
    if (q1 == q2 && (q1 & 1) == 0) break;
  }
  uint64_t free_in_window = (uint64_t)neap__popcount(b);
  return n > free_in_window ? n - free_in_window : 0;
}

void neap__cache_counts(neap_cache_counts *out) {
  memset(out, 0, sizeof *out);
  neap__lock(&reg_lock);
  for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) out->nmalloc[cls] = retired_nmalloc[cls];
  out->nmalloc[0] = retired_large_nmalloc;
  out->large_bytes = retired_large_bytes_alloc;
  for (neap_cache *c = registry; c != NULL; c = c->reg_next) {
    for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
      neap_slot *slot = &c->slot[cls];
      uint64_t w = NEAP_LOAD(&slot->stack);
      out->nmalloc[cls] += slot_handed_out(slot) + neap__stack_pops(w);
      out->stacked[cls] += neap__stack_n(w);
    }
    out->nmalloc[0] += NEAP_LOAD(&c->large_nmalloc);
    out->large_bytes += NEAP_LOAD(&c->large_bytes_alloc);
    out->threads++;
  }
  neap__unlock(&reg_lock);
}

void neap__cache_registry_lock(void) { neap__lock(&reg_lock); }
void neap__cache_registry_unlock(void) { neap__unlock(&reg_lock); }
neap_cache *neap__cache_registry_first(void) { return registry; }

void neap__cache_fork(neap_fork_phase phase) {
  if (phase == NEAP_FORK_PREPARE) {
    neap__lock(&reg_lock);
    return;
  }
  if (phase == NEAP_FORK_CHILD) {
    /* The other threads' caches are abandoned (cache.h): out of the
     * registry, so that nothing (a trim) walks them again; what they
     * allocated joins the retired totals. Their memory is not reused. */
    neap_cache *mine = neap__cache_mine(), *next;
    for (neap_cache *c = registry; c != NULL; c = next) {
      next = c->reg_next;
      if (c != mine) {
        if (c->gc != NULL) neap__gc_cache_flush(c, false); /* its collected spans go back to their centrals */
        unregister_locked(c);
        abandoned = true;
      }
    }
  }
  neap__lock_fork(&reg_lock, phase);
}

#if NEAP_TESTING
/* --- the heap checker's part (check.c): every registered cache, under the
 * registry lock, with its owner thread kept still by the caller. */
#include "check.h"

uint64_t neap__cache_pool_inuse(void) { return cache_pool.inuse; }

/* Whether s is a live span of class cls (its base maps back to it). */
static bool live_small_span(neap_span *s, unsigned cls) {
  return s != NULL && neap__where_small(neap__span_where(s)) &&
         s->sizeclass == cls && neap__span_of(s->base) == s;
}

/* Whether object p of a fresh span reads as the span made it: its mark
 * (link 0) and zeros (calloc will not clear it). */
static bool pristine(const neap_word *p, uint32_t size) {
  if (p[0] != 0 || p[1] != NEAP_MARK_KEY) return false;
  const unsigned char *b = (const unsigned char *)p;
  for (uint32_t i = 16; i < size; i++)
    if (b[i] != 0) return false;
  return true;
}

/* The slot's current span and window. */
static void check_current(neap_check *ck, neap_cache *c, neap_slot *slot, unsigned cls) {
  neap_span *s = slot->span;
  uint64_t bits = NEAP_LOAD(&slot->bits);
  if (s == NULL) {
    NEAP_CHECK(ck, bits == 0, "cache slot without a span has a window", slot);
    return;
  }
  if (!NEAP_CHECK(ck, live_small_span(s, cls), "cache slot's span is not a live span of its class", s)) return;
  ck->cache_spans++;
  NEAP_CHECK(ck, NEAP_LOAD(&s->owner) == c && neap__span_where(s) == NEAP_SPAN_CURRENT,
             "current span not owned as current", s);
  NEAP_CHECK(ck, s->next_word < s->nwords && slot->inuse == neap__span_inuse(s, s->next_word) &&
                     slot->base == s->base + (uintptr_t)s->next_word * 64u * s->elemsize,
             "cache window is not its span's word", s);
  if (s->next_word >= s->nwords) return;
  NEAP_CHECK(ck, (bits & NEAP_LOAD(neap__span_inuse(s, s->next_word))) == 0, "cache window holds objects in use", s);
  NEAP_CHECK(ck, s->refile_at == 0 && live_of(s) == neap__span_live(s) + neap__popcount(bits),
             "current span's live count differs from its bitmap", s);
  NEAP_CHECK(ck, (NEAP_LOAD(&slot->seq) & 1) == 0, "cache slot's sequence count is odd", slot);
  if (s->needzero) return;
  /* Not yet used: the window's objects and the free ones past it. */
  for (unsigned i = 0; i < s->nelems; i++) {
    unsigned w = i >> 6;
    bool fresh = w == s->next_word ? neap__bit(bits, i) : w > s->next_word && !neap__span_held(s, i) &&
                                                              !neap__bit(NEAP_LOAD(neap__span_remote(s, w)), i);
    if (fresh && !pristine((const neap_word *)(s->base + (uintptr_t)i * s->elemsize), s->elemsize)) {
      neap__check_fail(ck, "object of a fresh span is not zero (written while free?)",
                       (void *)(s->base + (uintptr_t)i * s->elemsize));
      return;
    }
  }
}

/* The slot's free stack: n objects, each holding the stack's mark, each
 * the start of an object its span has in use, and none twice (a repeat
 * makes the list periodic from there on, so the last object would appear
 * earlier: a second walk looks for it). */
static void check_stack(neap_check *ck, neap_slot *slot, unsigned cls) {
  uint64_t w = NEAP_LOAD(&slot->stack);
  uint32_t n = neap__stack_n(w);
  if (!NEAP_CHECK(ck, n <= slot->cap, "free stack holds more than its capacity", slot)) return;
  neap_word *p = NEAP_LOAD(&slot->top), *last = NULL;
  for (uint32_t i = 0; i < n; i++) {
    if (!NEAP_CHECK(ck, p != NULL && neap__mark_key(p) == slot->marker,
                    "object on a free stack lost its mark (written after free?)", p))
      return;
    neap_span *s = neap__span_of((uintptr_t)p);
    if (!NEAP_CHECK(ck, live_small_span(s, cls), "object on a free stack is not in a span of its class", p)) return;
    uintptr_t off = (uintptr_t)p - s->base;
    unsigned idx = (unsigned)((off * s->divmul) >> 32);
    if (!NEAP_CHECK(ck, (uintptr_t)idx * s->elemsize == off && idx < s->nelems,
                    "object on a free stack is not an object's start", p))
      return;
    if (!NEAP_CHECK(ck, neap__span_held(s, idx), "object on a free stack is free in its span", p)) return;
    last = p;
    p = (neap_word *)p[0];
  }
  neap_word *end = p;
  ck->stacked[cls] += n;
  p = NEAP_LOAD(&slot->top);
  for (uint32_t i = 0; i + 1 < n; i++, p = (neap_word *)p[0])
    if (!NEAP_CHECK(ck, p != last, "object twice on a free stack", p)) return;
  NEAP_CHECK(ck, end == neap__stack_end, "free stack does not end where stacks end", slot);
}

/* One own list: links both ways, each span owned by c, of class cls, on
 * this list, its live count as its bitmap says. Returns its length, and
 * its pages in *pages. */
static uint32_t check_own_list(neap_check *ck, neap_cache *c, neap_link *head, unsigned cls, unsigned which,
                               uint32_t *pages) {
  uint64_t limit = neap__span_pool_inuse();
  uint32_t count = 0;
  *pages = 0;
  for (neap_link *l = head->next; l != head; l = l->next) {
    if (!NEAP_CHECK(ck, l->next->prev == l && l->prev->next == l, "cache's own list links broken", l)) break;
    neap_span *s = span_of_link(l);
    if (!NEAP_CHECK(ck, live_small_span(s, cls), "cache's own list holds a span that is not live", s)) break;
    if (!NEAP_CHECK(ck, ++count <= limit, "cache's own list is a cycle", s)) break;
    *pages += s->npages;
    ck->cache_spans++;
    NEAP_CHECK(ck, NEAP_LOAD(&s->owner) == c && neap__span_where(s) == which,
               "span on a cache's own list not owned there", s);
    uint32_t live = live_of(s);
    NEAP_CHECK(ck, live == neap__span_live(s) && s->refile_at == refile_threshold(s, which),
               "owned span's live count differs from its bitmap", s);
    if (which == NEAP_SPAN_OWN_EMPTY) NEAP_CHECK(ck, live == 0, "span on a cache's empty list has objects", s);
    if (which == NEAP_SPAN_OWN_PARTIAL) NEAP_CHECK(ck, live != 0, "span on a cache's partial list is empty", s);
    if (which == NEAP_SPAN_OWN_FULL) NEAP_CHECK(ck, s->countdown > 0, "span on a cache's full list has room", s);
  }
  return count;
}

/* A chain of spans through pending_next (an inbox, a pending stack): each
 * notified, at most as many as there are spans. Returns how many. */
uint64_t neap__check_pending_chain(neap_check *ck, neap_span *s, const char *what) {
  uint64_t n = 0, limit = neap__span_pool_inuse();
  for (; s != NULL; s = s->pending_next) {
    if (!NEAP_CHECK(ck, ++n <= limit, what, s)) break;
    if (!NEAP_CHECK(ck, neap__where_small(neap__span_where(s)) && (atomic_load(&s->rword) & NEAP_RW_NOTIFIED),
                    what, s))
      break;
  }
  return n;
}

static void check_one(neap_check *ck, neap_cache *c) {
  size_t grown = 0;
  uint32_t empty_pages = 0;
  for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
    neap_slot *slot = &c->slot[cls];
    if (!NEAP_CHECK(ck, slot->marker == (NEAP_MARK_KEY | (uintptr_t)slot) && slot->size == neap__class_size[cls] &&
                            slot->divmul == neap__class_divmul[cls] && slot->cap_start <= slot->cap &&
                            slot->cap <= slot->cap_max,
                    "cache slot's constants are wrong", slot))
      return;
    grown += stack_growth(slot);
    check_current(ck, c, slot, cls);
    check_stack(ck, slot, cls);
    uint32_t pages;
    check_own_list(ck, c, &c->own_partial[cls], cls, NEAP_SPAN_OWN_PARTIAL, &pages);
    check_own_list(ck, c, &c->own_full[cls], cls, NEAP_SPAN_OWN_FULL, &pages);
    uint32_t n = check_own_list(ck, c, &c->own_empty[cls], cls, NEAP_SPAN_OWN_EMPTY, &pages);
    NEAP_CHECK(ck, n == c->nempty[cls], "cache's count of empty spans is wrong", c);
    empty_pages += pages;
  }
  NEAP_CHECK(ck, grown == c->stack_grown, "cache's stack growth total is wrong", c);
  NEAP_CHECK(ck, empty_pages == c->empty_pages, "cache's count of empty pages is wrong", c);
  ck->inbox_spans += neap__check_pending_chain(ck, atomic_load(&c->inbox), "cache's inbox is broken");
}

void neap__cache_check_info(neap_check *ck, neap_span *s) {
  uint16_t slot = neap__pinfo_slot_of(s);
  for (uint64_t i = 0; i < s->npages; i++) {
    uintptr_t addr = s->base + (i << NEAP_PAGE_SHIFT);
    neap_arena *a = neap__arena_of(addr);
    if (a == NULL || a->info_slot == NULL) continue;
    uint64_t k = (addr - a->base) >> NEAP_PAGE_SHIFT;
    NEAP_CHECK(ck, NEAP_LOAD(&a->info_slot[k]) == slot, "page info's class slot is wrong", (void *)addr);
    NEAP_CHECK(ck, NEAP_LOAD(&a->info_start[k]) == (slot ? neap__pinfo_start_of(i, addr) : 0),
               "page info's span offset is wrong", (void *)addr);
  }
}

void neap__cache_check(neap_check *ck) {
  /* The empty cache stays empty: the fast paths only ever read it. */
  static const neap_slot zero_slot;
  for (unsigned cls = 0; cls < NEAP_NUM_CLASSES; cls++)
    NEAP_CHECK(ck, memcmp(&neap__empty_cache.slot[cls], &zero_slot, sizeof zero_slot) == 0,
               "the empty cache was written", &neap__empty_cache.slot[cls]);
  neap__lock(&reg_lock);
  ck->abandoned = abandoned;
  for (neap_cache *c = registry; c != NULL; c = c->reg_next) {
    if (!NEAP_CHECK(ck, c->reg_next == NULL || c->reg_next->reg_prev == c, "cache registry links broken", c)) break;
    if (ck->ncaches < NEAP_CHECK_MAX_CACHES) ck->caches[ck->ncaches++] = c;
    else ck->caches_overflow = true;
    check_one(ck, c);
  }
  if (!ck->caches_overflow)
    NEAP_CHECK(ck, atomic_load_explicit(&live_caches, memory_order_relaxed) == ck->ncaches,
               "cache registry count is wrong", registry);
  neap__unlock(&reg_lock);
}
#endif
