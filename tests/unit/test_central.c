/* test_central: the central lists (src/central.c) on their own, against
 * the contract central.h and central.c's essay state.
 *
 * The tests play every other part themselves, so that what fails is the
 * central: a cache record that is never registered (`fake`) takes spans
 * with neap__central_take, hands objects out by setting their in-use bits
 * and gives spans back, as a cache would; "other threads" free objects by
 * the remote-free protocol exactly as the essay spells it (announce, bit,
 * push), one step at a time where a test needs a free in flight. What
 * they assert:
 *   - take: a span owned by the taker (owner, CACHED, TRANSIT), one of the
 *     central's partial spans before a fresh one from the page heap, never
 *     a full one; the pending stack is drained first;
 *   - give back: onto the partial or the full list by room (owner and
 *     CACHED gone, needzero set), an empty span straight back to the page
 *     heap (pages in use drop, its record freed, its pages unmapped);
 *   - remote frees: a drain merges them into a span no cache owns and
 *     refiles it by room, or gives it back once it is empty (SHORT, LIMIT
 *     and RELEASE reclaims drain; IDLE and PENDING do not); a span a cache
 *     owns is forwarded to that cache's inbox with its bitmaps untouched;
 *     no span is freed while a free is announced but not landed, and a
 *     span given back while one is in flight is queued for a drain;
 *   - all of it with four threads freeing while the owner drains and
 *     gives spans back (ThreadSanitizer's part).
 * Each state is read through neap__span_where. The heap checker, which
 * knows only registered caches, runs whenever the fake cache owns nothing.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "cache.h"
#include "central.h"
#include "check.h"
#include "heap.h"
#include "internal.h"
#include "neap.h"
#include "pagemap.h"
#include "sizeclass.h"
#include "span.h"
#include "../test.h"
#include "census.h"

/* The cache the tests play: never registered, never used by neap's own
 * paths; the central writes its address as spans' owner and pushes on its
 * inbox. */
static neap_cache fake;

/* --- looking at the heap */


static uint64_t rword(neap_span *s) { return atomic_load(&s->rword); }
static unsigned where(neap_span *s) { return neap__span_where(s); }
static void *obj(neap_span *s, unsigned i) { return (void *)(s->base + (uintptr_t)i * s->elemsize); }

/* --- the cache's part */

/* What a cache does with a fresh span before its first object goes out
 * (cache.c: prepare_span): the page info of its pages names its class's
 * slot and each page's offset, and every object and the tail hold the
 * span's free mark. */
static void prepare(neap_span *s) {
  uint16_t slot = neap__pinfo_slot_of(s);
  for (uint64_t i = 0; i < s->npages; i++) {
    uintptr_t addr = s->base + (i << NEAP_PAGE_SHIFT);
    neap_arena *a = neap__arena_of(addr);
    if (a->info_slot == NULL) continue;
    uint64_t k = (addr - a->base) >> NEAP_PAGE_SHIFT;
    NEAP_STORE(&a->info_start[k], neap__pinfo_start_of(i, addr));
    NEAP_STORE(&a->info_slot[k], slot);
  }
  for (uintptr_t p = s->base, end = s->base + neap__span_bytes(s); p < end; p += s->elemsize)
    neap__mark_set((void *)p, 0, NEAP_MARK_KEY);
}

/* The owner hands object i out: in use, its mark gone. */
static void hand_out(neap_span *s, unsigned i) {
  _Atomic uint64_t *w = neap__span_inuse(s, i / 64);
  uint64_t bit = 1ull << (i % 64);
  CHECK(!(NEAP_LOAD(w) & bit));
  NEAP_STORE(w, NEAP_LOAD(w) | bit);
  ((neap_word *)obj(s, i))[1] = 0;
}

static void hand_out_range(neap_span *s, unsigned from, unsigned to) {
  for (unsigned i = from; i < to; i++) hand_out(s, i);
}

/* The owner frees object i into its span: its mark back, its bit clear. */
static void free_local(neap_span *s, unsigned i) {
  _Atomic uint64_t *w = neap__span_inuse(s, i / 64);
  neap__mark_set(obj(s, i), 0, NEAP_MARK_KEY);
  NEAP_STORE(w, NEAP_LOAD(w) & ~(1ull << (i % 64)));
}

/* A fresh span of class cls taken by the fake cache, prepared. */
static neap_span *take_fresh(unsigned cls) {
  bool fresh = false;
  neap_span *s = neap__central_take(cls, &fake, &fresh);
  CHECK(s != NULL && fresh);
  if (s != NULL) prepare(s);
  return s;
}

/* The owner's look at its inbox (cache.c: drain_inbox): spans still its
 * own have NOTIFIED cleared and their remote frees merged (and are queued
 * again if a free is still in flight); spans it gave back meanwhile get
 * their notification handed back to the central. */
static void fake_drain_inbox(void) {
  neap_span *s = atomic_exchange_explicit(&fake.inbox, NULL, memory_order_acquire);
  while (s != NULL) {
    neap_span *next = s->pending_next;
    if (NEAP_LOAD(&s->owner) != &fake) {
      neap__central_notify(s);
    } else {
      atomic_fetch_and(&s->rword, ~NEAP_RW_NOTIFIED);
      neap__span_merge_remote(s);
      if ((atomic_load(&s->rword) & NEAP_RW_COUNT_MASK) &&
          !(atomic_fetch_or(&s->rword, NEAP_RW_NOTIFIED) & NEAP_RW_NOTIFIED))
        neap__central_notify(s);
    }
    s = next;
  }
}

/* --- another thread's part: the remote-free protocol (central.c) */

/* Step 1, announce: count + 1, and NOTIFIED if nobody has been told yet;
 * true when this freer set it and so must push. */
static bool announce(neap_span *s) {
  uint64_t old = atomic_fetch_add(&s->rword, 1);
  if (old & NEAP_RW_DEAD) CHECK_FAIL("a remote free found its span dead");
  if (old & NEAP_RW_NOTIFIED) return false;
  return !(atomic_fetch_or(&s->rword, NEAP_RW_NOTIFIED) & NEAP_RW_NOTIFIED);
}

/* Step 2: the object holds its span's free mark, and its remote bit is set. */
static void land(neap_span *s, unsigned i) {
  uint64_t bit = 1ull << (i % 64);
  neap__mark_set(obj(s, i), 0, NEAP_MARK_KEY);
  if (atomic_fetch_or(neap__span_remote(s, i / 64), bit) & bit) CHECK_FAIL("remote bit set twice");
}

/* All three steps; the third, the push, only by the freer that notified. */
static void remote_free(neap_span *s, unsigned i) {
  bool push = announce(s);
  land(s, i);
  if (push) neap__central_notify(s);
}

/* --- tests */

static void test_take_fresh_give_back_empty(void) {
  unsigned cls = neap__size_class(2048);
  CHECK_EQ(census_of(cls).spans, 0);
  uint64_t in0 = pages_inuse(), records0 = neap__span_pool_inuse();
  bool fresh = false;
  neap_span *s = neap__central_take(cls, &fake, &fresh);
  CHECK(s != NULL);
  if (s == NULL) return;
  /* A new span from the page heap, the taker's from now on. */
  CHECK(fresh);
  CHECK_EQ(s->sizeclass, cls);
  CHECK_EQ(s->npages, neap__class_pages[cls]);
  CHECK_EQ(s->nelems, neap__class_objects[cls]);
  CHECK_EQ(s->elemsize, neap__class_size[cls]);
  CHECK_PTR_EQ(NEAP_LOAD(&s->owner), &fake);
  CHECK_EQ(rword(s), NEAP_RW_CACHED);
  CHECK_EQ(where(s), NEAP_SPAN_TRANSIT);
  CHECK_EQ(neap__span_live(s), 0);
  CHECK_PTR_EQ(neap__span_of(s->base), s);
  CHECK_PTR_EQ(neap__span_of(s->base + neap__span_bytes(s) - 1), s);
  CHECK_EQ(pages_inuse(), in0 + s->npages);
  CHECK_EQ(neap__span_pool_inuse(), records0 + 1);
  census c = census_of(cls);
  CHECK(c.spans == 1 && c.owned == 1 && c.central == 0);

  /* Given back empty: straight to the page heap, nothing kept. */
  uintptr_t base = s->base;
  neap__central_give_back(s);
  CHECK_EQ(pages_inuse(), in0);
  CHECK_EQ(neap__span_pool_inuse(), records0);
  CHECK(neap__span_of(base) == NULL);
  CHECK_EQ(where(s), NEAP_SPAN_DEAD); /* the record is back in its pool; its state stays */
  CHECK_EQ(census_of(cls).spans, 0);

  /* So the next take is fresh again. */
  s = neap__central_take(cls, &fake, &fresh);
  CHECK(s != NULL && fresh);
  if (s != NULL) neap__central_give_back(s);
  CHECK_EQ(pages_inuse(), in0);
  test_heap_check("after a fresh span went back empty");
}

static void test_give_back_files_by_room(void) {
  unsigned cls = neap__size_class(256);
  uint64_t in0 = pages_inuse();
  neap_span *s = take_fresh(cls);
  if (s == NULL) return;
  unsigned n = s->nelems;
  hand_out_range(s, 0, 10);
  s->needzero = 0; /* as if its objects were fresh: the give-back must say they are not */

  /* Room: the partial list, no owner, CACHED clear, its objects suspect. */
  neap__central_give_back(s);
  CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_PARTIAL);
  CHECK(NEAP_LOAD(&s->owner) == NULL);
  CHECK_EQ(rword(s), 0);
  CHECK_EQ(s->needzero, 1);
  CHECK_EQ(neap__span_live(s), 10);
  census c = census_of(cls);
  CHECK(c.spans == 1 && c.central == 1 && c.owned == 0);
  test_heap_check("a span on a central's partial list");

  /* A span with room is taken again before a fresh one, as it is. */
  bool fresh = true;
  neap_span *t = neap__central_take(cls, &fake, &fresh);
  CHECK_PTR_EQ(t, s);
  CHECK(!fresh);
  CHECK_EQ(where(s), NEAP_SPAN_TRANSIT);
  CHECK_PTR_EQ(NEAP_LOAD(&s->owner), &fake);
  CHECK_EQ(rword(s), NEAP_RW_CACHED);
  CHECK_EQ(neap__span_live(s), 10);
  CHECK_EQ(pages_inuse(), in0 + s->npages);

  /* No room: the full list. */
  hand_out_range(s, 10, n);
  neap__central_give_back(s);
  CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_FULL);
  CHECK(NEAP_LOAD(&s->owner) == NULL);
  CHECK_EQ(rword(s), 0);
  test_heap_check("a span on a central's full list");

  /* A full span is never handed out: the next take is fresh. */
  t = neap__central_take(cls, &fake, &fresh);
  CHECK(t != NULL && t != s && fresh);
  CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_FULL);
  if (t != NULL) neap__central_give_back(t);
  CHECK_EQ(pages_inuse(), in0 + s->npages);

  /* A remote free into it: notified, still full until a drain merges it,
   * which moves it to the partial list. */
  remote_free(s, 3);
  CHECK_EQ(rword(s), NEAP_RW_NOTIFIED | 1);
  CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_FULL);
  CHECK(!neap__span_held(s, 3));
  test_heap_check("a full central span waiting on its pending stack");
  neap__central_drain(cls);
  CHECK_EQ(rword(s), 0);
  CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_PARTIAL);
  CHECK_EQ(neap__span_live(s), n - 1);
  CHECK(!(NEAP_LOAD(neap__span_inuse(s, 0)) & (1ull << 3)));
  CHECK_EQ(NEAP_LOAD(neap__span_remote(s, 0)) & (1ull << 3), 0);
  test_heap_check("after the drain");

  /* Taken again, with the merged object free in it. */
  t = neap__central_take(cls, &fake, &fresh);
  CHECK_PTR_EQ(t, s);
  CHECK(!fresh);
  CHECK_EQ(neap__span_next_free_word(s, 0), 0);
  CHECK_EQ(neap__span_free_bits(s, 0), 1ull << 3);
  /* The owner frees everything and gives it back: to the page heap. */
  for (unsigned i = 0; i < n; i++)
    if (i != 3) free_local(s, i);
  neap__central_give_back(s);
  CHECK_EQ(pages_inuse(), in0);
  CHECK_EQ(census_of(cls).spans, 0);
  test_heap_check("everything given back");
}

static void test_take_drains_pending_first(void) {
  unsigned cls = neap__size_class(1024);
  uint64_t in0 = pages_inuse();
  neap_span *s = take_fresh(cls);
  if (s == NULL) return;
  unsigned n = s->nelems;
  hand_out_range(s, 0, n);
  neap__central_give_back(s);
  CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_FULL);

  /* Two remote frees: one notification, two announces. */
  remote_free(s, 5);
  remote_free(s, 6);
  CHECK_EQ(rword(s), NEAP_RW_NOTIFIED | 2);
  CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_FULL);
  /* The take drains the pending stack before it looks at the partial list,
   * so the room the frees made is found before a fresh span is made. */
  bool fresh = true;
  neap_span *t = neap__central_take(cls, &fake, &fresh);
  CHECK_PTR_EQ(t, s);
  CHECK(!fresh);
  CHECK_EQ(rword(s), NEAP_RW_CACHED);
  CHECK_EQ(where(s), NEAP_SPAN_TRANSIT);
  CHECK_EQ(neap__span_live(s), n - 2);
  CHECK_EQ(pages_inuse(), in0 + s->npages);
  for (unsigned i = 0; i < n; i++)
    if (i != 5 && i != 6) free_local(s, i);
  neap__central_give_back(s);
  CHECK_EQ(pages_inuse(), in0);
  test_heap_check("after the pending span was taken");
}

static void test_drain_and_reclaim_reasons(void) {
  unsigned cls = neap__size_class(512);
  uint64_t in0 = pages_inuse();
  /* Nothing waits idle in a central: IDLE and PENDING count nothing. */
  static const neap_reclaim drains[] = {NEAP_RECLAIM_SHORT, NEAP_RECLAIM_LIMIT, NEAP_RECLAIM_RELEASE};
  for (unsigned k = 0; k < 3; k++) {
    neap_span *s = take_fresh(cls);
    if (s == NULL) return;
    hand_out_range(s, 0, 3);
    neap__central_give_back(s);
    CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_PARTIAL);
    uint64_t records = neap__span_pool_inuse();
    uintptr_t base = s->base;
    uint32_t npages = s->npages;
    /* Its last objects freed by another thread: empty once merged, and
     * the span waits on the pending stack for a drain. */
    for (unsigned i = 0; i < 3; i++) remote_free(s, i);
    CHECK_EQ(rword(s), NEAP_RW_NOTIFIED | 3);
    test_heap_check("an emptied span on the pending stack");
    CHECK_EQ(neap__central_reclaim(NEAP_RECLAIM_IDLE), 0);
    CHECK_EQ(neap__central_reclaim(NEAP_RECLAIM_PENDING), 0);
    CHECK_PTR_EQ(neap__span_of(base), s);
    CHECK_EQ(rword(s), NEAP_RW_NOTIFIED | 3);
    CHECK_EQ(pages_inuse(), in0 + npages);
    /* A draining reclaim gives it back and says how many pages. */
    CHECK_EQ(neap__central_reclaim(drains[k]), npages);
    CHECK(neap__span_of(base) == NULL);
    CHECK_EQ(neap__span_pool_inuse(), records - 1);
    CHECK_EQ(pages_inuse(), in0);
    CHECK_EQ(neap__central_reclaim(drains[k]), 0); /* nothing left */
  }
  /* neap__central_drain does the same for one class. */
  neap_span *s = take_fresh(cls);
  if (s == NULL) return;
  hand_out_range(s, 0, 2);
  neap__central_give_back(s);
  remote_free(s, 0);
  neap__central_drain(cls);
  CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_PARTIAL);
  CHECK_EQ(rword(s), 0);
  CHECK_EQ(neap__span_live(s), 1);
  remote_free(s, 1);
  neap__central_drain(cls);
  CHECK_EQ(pages_inuse(), in0);
  CHECK_EQ(census_of(cls).spans, 0);
  test_heap_check("after the drains");
}

static void test_owned_span_forwarded(void) {
  unsigned cls = neap__size_class(128);
  uint64_t in0 = pages_inuse();
  neap_span *s = take_fresh(cls);
  if (s == NULL) return;
  hand_out_range(s, 0, 10);

  /* A remote free into a span a cache owns notifies the central all the
   * same; the drain leaves its bitmaps to the owner and forwards it. */
  remote_free(s, 2);
  CHECK_EQ(rword(s), NEAP_RW_CACHED | NEAP_RW_NOTIFIED | 1);
  neap__central_drain(cls);
  CHECK_PTR_EQ(atomic_load(&fake.inbox), s);
  CHECK(s->pending_next == NULL);
  CHECK_EQ(rword(s), NEAP_RW_CACHED | NEAP_RW_NOTIFIED | 1);
  CHECK(NEAP_LOAD(neap__span_inuse(s, 0)) & (1ull << 2));
  CHECK(NEAP_LOAD(neap__span_remote(s, 0)) & (1ull << 2));
  CHECK_EQ(where(s), NEAP_SPAN_TRANSIT);
  CHECK_PTR_EQ(NEAP_LOAD(&s->owner), &fake);
  /* The owner merges it. */
  fake_drain_inbox();
  CHECK(atomic_load(&fake.inbox) == NULL);
  CHECK_EQ(rword(s), NEAP_RW_CACHED);
  CHECK_EQ(neap__span_live(s), 9);

  /* Forwarded, then given back before the owner looked: the central has
   * it, notified, and the owner hands the notification back. */
  remote_free(s, 4);
  neap__central_drain(cls);
  CHECK_PTR_EQ(atomic_load(&fake.inbox), s);
  neap__central_give_back(s); /* merges what landed: the count is 0, NOTIFIED stays */
  CHECK_EQ(rword(s), NEAP_RW_NOTIFIED);
  CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_PARTIAL);
  CHECK_EQ(neap__span_live(s), 8);
  fake_drain_inbox();
  CHECK(atomic_load(&fake.inbox) == NULL);
  test_heap_check("a given-back span notified again");
  neap__central_drain(cls);
  CHECK_EQ(rword(s), 0);
  CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_PARTIAL);

  /* Emptied the same way: given back with NOTIFIED set it must wait for
   * the drain (only the drainer that popped it may free it), which then
   * gives it back to the page heap. */
  bool fresh = true;
  CHECK_PTR_EQ(neap__central_take(cls, &fake, &fresh), s);
  for (unsigned i = 0; i < 10; i++)
    if (i != 2 && i != 4 && i != 9) free_local(s, i);
  remote_free(s, 9);
  neap__central_drain(cls);
  CHECK_PTR_EQ(atomic_load(&fake.inbox), s);
  uintptr_t base = s->base;
  neap__central_give_back(s);
  CHECK_PTR_EQ(neap__span_of(base), s);
  CHECK_EQ(rword(s), NEAP_RW_NOTIFIED);
  CHECK_EQ(neap__span_live(s), 0);
  CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_PARTIAL);
  fake_drain_inbox();
  test_heap_check("an empty central span waiting for its drain");
  neap__central_drain(cls);
  CHECK(neap__span_of(base) == NULL);
  CHECK_EQ(pages_inuse(), in0);
  test_heap_check("after the forwarded spans");
}

static void test_inflight_free_keeps_span(void) {
  unsigned cls = neap__size_class(96);
  uint64_t in0 = pages_inuse();
  neap_span *s = take_fresh(cls);
  if (s == NULL) return;
  hand_out_range(s, 0, 2);
  neap__central_give_back(s);
  uintptr_t base = s->base;

  /* G frees object 1 and notifies; F announces object 0 (told already:
   * no push) and has not set its bit when the drain comes. */
  remote_free(s, 1);
  CHECK(!announce(s));
  CHECK_EQ(rword(s), NEAP_RW_NOTIFIED | 2);
  neap__central_drain(cls);
  /* Object 1 merged; the span, whose last object is being freed, is not
   * given back under the free, and stays queued for the next drain. */
  CHECK_PTR_EQ(neap__span_of(base), s);
  CHECK_EQ(rword(s), NEAP_RW_NOTIFIED | 1);
  CHECK_EQ(neap__span_live(s), 1);
  CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_PARTIAL);
  neap__central_drain(cls); /* still in flight: the same again */
  CHECK_PTR_EQ(neap__span_of(base), s);
  CHECK_EQ(rword(s), NEAP_RW_NOTIFIED | 1);
  /* F lands its bit; it does not push. The span is still queued. */
  land(s, 0);
  test_heap_check("a span re-queued by a drain");
  neap__central_drain(cls);
  CHECK(neap__span_of(base) == NULL);
  CHECK_EQ(pages_inuse(), in0);
  test_heap_check("after the in-flight free landed");
}

static void test_give_back_with_announce_in_flight(void) {
  unsigned cls = neap__size_class(80);
  uint64_t in0 = pages_inuse();
  neap_span *s = take_fresh(cls);
  if (s == NULL) return;
  hand_out_range(s, 0, 2);
  uintptr_t base = s->base;

  /* F has counted its free of object 0 but not yet looked at NOTIFIED
   * when the owner gives the span back. Either F sees CACHED clear and
   * notifies or the giver sees F's count: here the giver must queue it. */
  atomic_fetch_add(&s->rword, 1);
  neap__central_give_back(s);
  CHECK_EQ(rword(s), NEAP_RW_NOTIFIED | 1);
  CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_PARTIAL);
  /* F goes on: NOTIFIED is set, so F does not push; it lands its bit. */
  CHECK(atomic_fetch_or(&s->rword, NEAP_RW_NOTIFIED) & NEAP_RW_NOTIFIED);
  land(s, 0);
  /* The checker finds the span on the pending stack (a notified span on
   * no stack is an error it reports). */
  test_heap_check("a span queued by its giver");
  neap__central_drain(cls);
  CHECK_PTR_EQ(neap__span_of(base), s);
  CHECK_EQ(rword(s), 0);
  CHECK_EQ(neap__span_live(s), 1);
  CHECK_EQ(where(s), NEAP_SPAN_CENTRAL_PARTIAL);
  remote_free(s, 1);
  neap__central_drain(cls);
  CHECK(neap__span_of(base) == NULL);
  CHECK_EQ(pages_inuse(), in0);
  test_heap_check("after the giver's queueing");
}

/* --- concurrency: four threads free every object of spans that the main
 * thread, as their owner, gives back one by one while it drains. */

#define FREERS 4
#define CSPANS 16

static neap_span *cspans[CSPANS];
static _Atomic unsigned freers_done;
static _Atomic uint64_t frees_done;

static void *freer(void *arg) {
  unsigned me = (unsigned)(uintptr_t)arg;
  for (unsigned k = 0; k < CSPANS; k++) {
    neap_span *s = cspans[(k + me * 5) % CSPANS];
    unsigned n = s->nelems; /* after its last free a freer must not touch the span: it may be gone */
    for (unsigned i = me; i < n; i += FREERS) {
      remote_free(s, i);
      atomic_fetch_add(&frees_done, 1);
    }
  }
  atomic_fetch_add(&freers_done, 1);
  return NULL;
}

static void test_concurrent_remote_frees(void) {
  unsigned cls = neap__size_class(128);
  uint64_t in0 = pages_inuse(), records0 = neap__span_pool_inuse();
  uintptr_t bases[CSPANS];
  uint64_t total = 0;
  for (unsigned k = 0; k < CSPANS; k++) {
    cspans[k] = take_fresh(cls);
    if (cspans[k] == NULL) return;
    hand_out_range(cspans[k], 0, cspans[k]->nelems);
    bases[k] = cspans[k]->base;
    total += cspans[k]->nelems;
  }
  /* Half go to the central before the frees start, the rest while they run. */
  unsigned given = 0;
  for (; given < CSPANS / 2; given++) neap__central_give_back(cspans[given]);
  pthread_t t[FREERS];
  for (unsigned i = 0; i < FREERS; i++) pthread_create(&t[i], NULL, freer, (void *)(uintptr_t)i);
  while (atomic_load(&freers_done) < FREERS) {
    fake_drain_inbox();
    neap__central_drain(cls);
    uint64_t f = atomic_load(&frees_done);
    if (given < CSPANS && f >= (given - CSPANS / 2 + 1) * (total / (CSPANS / 2 + 1))) {
      neap__central_give_back(cspans[given++]);
    }
    sched_yield();
  }
  for (unsigned i = 0; i < FREERS; i++) pthread_join(t[i], NULL);
  CHECK_EQ(atomic_load(&frees_done), total);
  while (given < CSPANS) neap__central_give_back(cspans[given++]);
  fake_drain_inbox();
  neap__central_drain(cls);
  /* Every object was freed and every span given back: all gone. */
  CHECK(atomic_load(&fake.inbox) == NULL);
  for (unsigned k = 0; k < CSPANS; k++)
    if (neap__span_of(bases[k]) != NULL) CHECK_FAIL("a span every object of which was freed is still live");
  CHECK_EQ(census_of(cls).spans, 0);
  CHECK_EQ(pages_inuse(), in0);
  CHECK_EQ(neap__span_pool_inuse(), records0);
  test_heap_check("after the concurrent frees");
}

int main(int argc, char **argv) {
  (void)argc;
  /* No scavenger thread (its idle rounds reclaim) and no limit: nothing
   * but the tests moves a span. */
  static const char *const env[] = {"NEAPDEBUG=scavenger=0", "NEAP_MEMLIMIT=off", "NEAP_STATS_DIR=off", NULL};
  test_reexec_with(argv, env);
  /* Grow the heap once, well past what the tests use, so that no take
   * runs short and reclaims (a SHORT reclaim drains pending stacks). */
  neap_free(neap_malloc((size_t)32 << 20));
  neap_thread_flush();
  test_heap_check("start");
  RUN(test_take_fresh_give_back_empty);
  RUN(test_give_back_files_by_room);
  RUN(test_take_drains_pending_first);
  RUN(test_drain_and_reclaim_reasons);
  RUN(test_owned_span_forwarded);
  RUN(test_inflight_free_keeps_span);
  RUN(test_give_back_with_announce_in_flight);
  RUN(test_concurrent_remote_frees);
  return TEST_DONE();
}
