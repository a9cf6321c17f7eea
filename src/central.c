/* Central lists (Go's mcentral): one per size class, each with its own
 * lock, holding the spans of that class that no thread cache holds.
 *
 *   partial   spans with at least one free object; caches take from here
 *   full      spans with no free object
 *   pending   a lock-free stack of spans that received remote frees while
 *             in this central (pushed by the freeing thread, drained under
 *             the lock by the next thread that needs a span of this class,
 *             or by the reclaimer: before the heap grows, for the limit,
 *             for neap_release)
 *
 * A central's lock is contended only by two threads that refill the same
 * size class at the same moment; fresh spans and emptied ones go through
 * the heap lock.
 *
 * The remote-free protocol. A thread freeing an object of a span it does
 * not own (span->owner != its cache) touches only two atomic words:
 *   1. rword += 1 (announce). If NOTIFIED was not set, nobody has been
 *      told about this span yet: the freer sets NOTIFIED and, if it was
 *      the one to set it, will push the span on its central's `pending`.
 *   2. remote bitmap |= bit (a second free of the same object finds the
 *      bit set and aborts).
 *   3. the push, if step 1 said so. After this the freer never touches
 *      the span again.
 * Whoever owns the span merges remote bits into the in-use bitmap and
 * subtracts what it merged from rword's count, so count = frees announced
 * but not merged. The owner is a thread cache while CACHED is set (it owns
 * every span it allocates from until it gives the span back: one that
 * empties beyond what it keeps, a trim, a flush), otherwise the central
 * (under its lock). Notifications always go to the central of the span's
 * class, a target that never changes; a drain forwards spans that a cache
 * owns to that cache's inbox, under the central lock, which every change
 * of ownership but a new span's also takes.
 *
 * A span is given back to the page heap only by a CAS of rword from
 * exactly {count 0, no flags} (or {count 0, NOTIFIED} by the drainer that
 * popped it) to DEAD, with no live object. A freer that has announced
 * keeps count > 0 until its bit is merged, so no span is freed under an
 * in-flight free; a freer arriving after DEAD is a double free.
 *
 * Each span is on the pending stack at most once: NOTIFIED goes with the
 * span (the freer that sets it, a drainer that re-queues a span with a
 * free in flight, a cache handing back a forwarded span it no longer
 * owns); whoever holds it pushes, and only a drainer, after popping,
 * clears it.
 * Locking: one lock per central, never two at once (lock.h has the
 * order); the gate below for fork.
 */
#include "cache.h"
#include "central.h"
#include "heap.h"

typedef struct neap_central {
  neap_mutex lock;
  bool frozen; /* a fork is under way: see central_lock */
  neap_span *partial, *full; /* heads */
  _Atomic(neap_span *) pending;
} __attribute__((aligned(NEAP_CACHE_LINE))) neap_central;

static neap_central centrals[NEAP_NUM_CLASSES] = {
    [0 ... NEAP_NUM_CLASSES - 1] = {.lock = NEAP_MUTEX_INIT(CENTRAL)}};

/* fork. No thread may be inside a central's lock when the process forks,
 * but holding all 68 across it would be more mutexes than
 * ThreadSanitizer lets one thread hold (64). The forking thread takes the
 * gate instead, and freezes the centrals one at a time: it sets `frozen`
 * under each lock and unlocks it. A thread that then takes a
 * frozen central's lock lets it go and waits at the gate until the fork is
 * over; so from the last freeze on, no thread is inside a central, and the
 * child makes the centrals' mutexes anew (one may be held for the moment
 * of that test). */
static neap_mutex gate = NEAP_MUTEX_INIT(CENTRAL_GATE);

static void central_lock(neap_central *c) { neap__lock_gated(&c->lock, &c->frozen, &gate); }

/* The head of the list for state `where` (CENTRAL_PARTIAL or _FULL). */
static neap_span **list_head(neap_central *c, unsigned where) {
  return where == NEAP_SPAN_CENTRAL_PARTIAL ? &c->partial : &c->full;
}

/* Takes s off its central list, if it is on one: TRANSIT. */
static void list_remove(neap_central *c, neap_span *s) {
  unsigned where = neap__span_where(s);
  if (!neap__where_central(where)) return;
  if (s->prev) s->prev->next = s->next;
  else *list_head(c, where) = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
  neap__span_move(s, NEAP_SPAN_TRANSIT);
}

static void list_push(neap_central *c, neap_span *s, unsigned where) {
  neap_span **head = list_head(c, where);
  neap__span_move(s, where);
  s->prev = NULL;
  s->next = *head;
  if (s->next) s->next->prev = s;
  *head = s;
}

static void push_pending(neap_central *c, neap_span *s) {
  neap_span *head = atomic_load_explicit(&c->pending, memory_order_relaxed);
  do {
    s->pending_next = head;
  } while (!atomic_compare_exchange_weak_explicit(&c->pending, &head, s, memory_order_release,
                                                  memory_order_relaxed));
}

void neap__central_notify(neap_span *s) { push_pending(&centrals[s->sizeclass], s); }

/* Put a span given back with at least one live object on the list that
 * matches it. */
static void place_locked(neap_central *c, neap_span *s) {
  unsigned which = neap__span_next_free_word(s, 0) < s->nwords ? NEAP_SPAN_CENTRAL_PARTIAL : NEAP_SPAN_CENTRAL_FULL;
  if (neap__span_where(s) != which) {
    list_remove(c, s);
    list_push(c, s, which);
  }
}

/* Frees s to the page heap if it is empty and nobody can be touching it:
 * rword must be exactly `expect` (count 0). Returns pages freed, or 0. */
static size_t try_free_locked(neap_central *c, neap_span *s, uint64_t expect) {
  if (neap__span_live(s) != 0) return 0;
  if (!atomic_compare_exchange_strong(&s->rword, &expect, NEAP_RW_DEAD)) return 0;
  list_remove(c, s);
  size_t n = s->npages;
  neap__heap_free_pages(s);
  neap__span_delete(s);
  return n;
}

static size_t drain_locked(neap_central *c) {
  neap_span *s = atomic_exchange_explicit(&c->pending, NULL, memory_order_acquire);
  neap_span *retry = NULL;
  size_t freed = 0;
  while (s != NULL) {
    neap_span *next = s->pending_next;
    uint64_t v = atomic_load(&s->rword);
    if (v & NEAP_RW_CACHED) {
      /* A cache owns it: only that thread may touch its in-use bitmap.
       * Forward it; the owner cannot change while we hold this lock, and
       * NOTIFIED stays set until the owner has looked. */
      neap__cache_inbox_push(NEAP_LOAD(&s->owner), s);
    } else {
      neap__span_merge_remote(s);
      for (;;) {
        v = atomic_load(&s->rword);
        if (v & NEAP_RW_COUNT_MASK) { /* a free is in flight: look again later */
          s->pending_next = retry;
          retry = s;
          break;
        }
        size_t n = try_free_locked(c, s, NEAP_RW_NOTIFIED);
        if (n != 0) {
          freed += n;
          break;
        }
        if (neap__span_live(s) == 0) continue; /* rword moved: re-read */
        if (atomic_compare_exchange_strong(&s->rword, &v, v & ~NEAP_RW_NOTIFIED)) {
          place_locked(c, s);
          break;
        }
      }
    }
    s = next;
  }
  while (retry != NULL) {
    neap_span *next = retry->pending_next;
    push_pending(c, retry);
    retry = next;
  }
  return freed;
}

/* A new span of class cls from the page heap; NULL (ENOMEM) if none. */
static neap_span *new_span(unsigned cls, bool *fresh) {
  neap_span *s = neap__span_new(cls);
  bool zeroed;
  if (s == NULL) return NULL;
  neap__span_init_small(s, cls);
  if (neap__heap_alloc_pages(s, neap__class_pages[cls], 0, &zeroed) != 0) {
    neap__span_delete(s);
    return NULL;
  }
  s->needzero = !zeroed;
  *fresh = true;
  return s;
}

neap_span *neap__central_take(unsigned cls, neap_cache *cache, bool *fresh) {
  neap_central *c = &centrals[cls];
  neap_span *s = NULL;
  *fresh = false;
  central_lock(c);
  if (atomic_load_explicit(&c->pending, memory_order_relaxed) != NULL) drain_locked(c);
  s = c->partial;
  if (s != NULL) {
    list_remove(c, s);
    /* CACHED must be set under the lock: from here on a drain leaves the
     * span's bitmaps to us. */
    atomic_fetch_or(&s->rword, NEAP_RW_CACHED);
    NEAP_STORE(&s->owner, cache);
  }
  neap__unlock(&c->lock);
  if (s == NULL) {
    s = new_span(cls, fresh);
    if (s == NULL) return NULL;
    atomic_fetch_or(&s->rword, NEAP_RW_CACHED);
    NEAP_STORE(&s->owner, cache);
  }
  neap__span_merge_remote(s);
  return s;
}

void neap__central_give_back(neap_span *s) {
  neap_central *c = &centrals[s->sizeclass];
  neap__span_merge_remote(s);
  s->needzero = 1; /* its free objects may have been used */
  central_lock(c);
  NEAP_STORE(&s->owner, NULL);
  /* Clearing CACHED and then reading the remote bits pairs with a freer's
   * announce-then-check (both sequentially consistent): either the freer
   * sees CACHED clear and notifies, or we see its announce below. */
  atomic_fetch_and(&s->rword, ~NEAP_RW_CACHED);
  neap__span_merge_remote(s);
  uint64_t v = atomic_load(&s->rword);
  if (v == 0 && try_free_locked(c, s, 0) != 0) {
    neap__unlock(&c->lock);
    return;
  }
  place_locked(c, s);
  if ((v & NEAP_RW_COUNT_MASK) != 0) {
    /* A freer announced while we held the span and will not notify: make
     * sure a drain looks at the span once its bit lands. */
    uint64_t old = atomic_fetch_or(&s->rword, NEAP_RW_NOTIFIED);
    if (!(old & NEAP_RW_NOTIFIED)) push_pending(c, s);
  }
  neap__unlock(&c->lock);
}

void neap__central_drain(unsigned cls) {
  neap_central *c = &centrals[cls];
  if (atomic_load_explicit(&c->pending, memory_order_relaxed) == NULL) return;
  central_lock(c);
  drain_locked(c);
  neap__unlock(&c->lock);
}

size_t neap__central_reclaim(neap_reclaim why) {
  if (why == NEAP_RECLAIM_IDLE || why == NEAP_RECLAIM_PENDING) return 0; /* nothing waits idle here */
  size_t freed = 0;
  for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
    neap_central *c = &centrals[cls];
    if (atomic_load_explicit(&c->pending, memory_order_relaxed) == NULL) continue;
    central_lock(c);
    freed += drain_locked(c);
    neap__unlock(&c->lock);
  }
  return freed;
}

void neap__central_fork(neap_fork_phase phase) {
  if (phase == NEAP_FORK_PREPARE) neap__lock(&gate);
  for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++)
    neap__lock_fork_frozen(&centrals[cls].lock, &centrals[cls].frozen, phase);
  if (phase != NEAP_FORK_PREPARE) neap__lock_fork(&gate, phase);
}

#if NEAP_TESTING
/* --- the heap checker's part (check.c): each central's lists and pending
 * stack, under its lock. */
#include "check.h"

static void check_list(neap_check *ck, neap_central *c, unsigned cls, unsigned which) {
  uint64_t limit = neap__span_pool_inuse(), n = 0;
  neap_span *prev = NULL;
  for (neap_span *s = *list_head(c, which); s != NULL; prev = s, s = s->next) {
    if (!NEAP_CHECK(ck, ++n <= limit, "central list is a cycle", s)) return;
    if (!NEAP_CHECK(ck, s->prev == prev, "central list links broken", s)) return;
    if (!NEAP_CHECK(ck, neap__where_small(neap__span_where(s)) && s->sizeclass == cls && neap__span_of(s->base) == s,
                    "central list holds a span that is not live", s))
      return;
    ck->central_spans++;
    uint64_t v = atomic_load(&s->rword);
    NEAP_CHECK(ck,
               neap__span_where(s) == which && NEAP_LOAD(&s->owner) == NULL &&
                   !(v & (NEAP_RW_CACHED | NEAP_RW_DEAD)),
               "span on a central list is not the central's", s);
    bool room = neap__span_next_free_word(s, 0) < s->nwords;
    NEAP_CHECK(ck, room == (which == NEAP_SPAN_CENTRAL_PARTIAL), "span on the wrong central list for its room", s);
    /* An empty span, or one with frees not merged, waits for a drain. */
    if (neap__span_live(s) == 0 || (v & NEAP_RW_COUNT_MASK) != 0)
      NEAP_CHECK(ck, (v & NEAP_RW_NOTIFIED) != 0, "central span needing a drain is not queued", s);
  }
}

void neap__central_check(neap_check *ck) {
  for (unsigned cls = 1; cls < NEAP_NUM_CLASSES && !ck->failed; cls++) {
    neap_central *c = &centrals[cls];
    central_lock(c);
    check_list(ck, c, cls, NEAP_SPAN_CENTRAL_PARTIAL);
    check_list(ck, c, cls, NEAP_SPAN_CENTRAL_FULL);
    neap_span *p = atomic_load_explicit(&c->pending, memory_order_acquire);
    ck->pending_spans += neap__check_pending_chain(ck, p, "central's pending stack is broken");
    for (; p != NULL && !ck->failed; p = p->pending_next)
      NEAP_CHECK(ck, p->sizeclass == cls, "span on another class's pending stack", p);
    neap__unlock(&c->lock);
  }
}
#endif
