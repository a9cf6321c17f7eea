/* test_cache: the per-thread cache (src/cache.c, src/cache.h) on its own,
 * against what cache.c's essay and cache.h promise.
 *
 * Each test runs in a thread of its own, so that it starts from a new,
 * empty cache, and drives it through the public API (neap_malloc,
 * neap_calloc, neap_free, neap_thread_flush, neap_release,
 * neap_stats_read) or the reclaimer (neap__cache_reclaim) as the page heap
 * and the scavenger would call it; it reads the cache's own state (slots,
 * free stacks, own lists, kept empty spans, spans' states through
 * neap__span_where) to assert what the layer did. What they cover:
 *   - objects of a fresh span read as zero, so calloc's skipped memset is
 *     right, and once objects were used calloc clears them;
 *   - the free stack: LIFO, its objects in use to their spans, a run of
 *     frees past its capacity spilled back, growth while it is reused up
 *     to its class's most, halving after a run of frees, the trim;
 *   - spans: a parked full span refiled at a quarter free, the current
 *     span started over at a quarter free or parked for the partial
 *     span that waited longest, an empty span kept up to the bounds
 *     (keep_empty) and given back beyond them;
 *   - the reclaimer: IDLE takes kept spans only from a cache that has not
 *     refilled since the round before, LIMIT and RELEASE take them all and
 *     trim the free stacks (RELEASE at once), PENDING counts them, SHORT
 *     takes nothing;
 *   - neap_thread_flush gives every span back, each to the list its room
 *     says, and the cache goes on working;
 *   - other threads' frees land in the owner's spans and come back to it
 *     (merged by the current span, forwarded to the inbox for parked
 *     ones) and are handed out again; a thread with a cache stacks and
 *     reuses another's object;
 *   - per-class statistics count mallocs and frees exactly;
 *   - the free stack's checks abort on a write after free and a double
 *     free.
 * The heap checker runs at the end of each test (in its thread, the only
 * one inside neap) and after it (every span must then be gone).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "cache.h"
#include "central.h"
#include "check.h"
#include "heap.h"
#include "internal.h"
#include "neap.h"
#include "sizeclass.h"
#include "span.h"
#include "../test.h"
#include "census.h"

/* The documented bounds on kept empty spans (cache.c: keep_empty). */
#define KEEP_BYTES ((size_t)128 << 10)
#define KEEP_TOTAL ((size_t)2 << 20)

/* --- looking at the cache and the heap */

static neap_cache *mine(void) { return neap__cache_mine(); }
static neap_span *span_of(const void *p) { return neap__span_of((uintptr_t)p); }
static unsigned where(const neap_span *s) { return neap__span_where(s); }
static unsigned cls_of(size_t size) { return neap__size_class(size); }
static neap_slot *slot_of(size_t size) { return &mine()->slot[cls_of(size)]; }
static uint32_t stack_n(const neap_slot *slot) { return neap__stack_n(NEAP_LOAD(&((neap_slot *)slot)->stack)); }
static uint64_t rword(neap_span *s) { return atomic_load(&s->rword); }
static void *obj(neap_span *s, unsigned i) { return (void *)(s->base + (uintptr_t)i * s->elemsize); }

static bool on_stack(neap_slot *slot, const void *p) {
  const neap_word *q = NEAP_LOAD(&slot->top);
  for (uint32_t i = stack_n(slot); i > 0; i--, q = (const neap_word *)q[0])
    if (q == p) return true;
  return false;
}

static bool list_has(neap_link *head, neap_span *s) {
  for (neap_link *l = head->next; l != head; l = l->next)
    if (l == &s->own) return true;
  return false;
}

static bool all_zero(const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != 0) return false;
  return true;
}

/* The starting capacity of a class's free stack (cache.h). */
static uint32_t cap_start(unsigned cls) {
  uint32_t cap = NEAP_STACK_START_BYTES / neap__class_size[cls];
  return cap == 0 ? 1 : cap > NEAP_STACK_START ? NEAP_STACK_START : cap;
}

/* How many empty spans of a class a cache keeps (cache.c: keep_empty). */
static unsigned keep_of(unsigned cls) {
  size_t n = KEEP_BYTES / ((size_t)neap__class_pages[cls] << NEAP_PAGE_SHIFT);
  return n ? (unsigned)n : 1u;
}


/* --- each test in a thread of its own */

typedef void test_body(void);
static void *trampoline(void *arg) {
  ((test_body *)arg)();
  return NULL;
}
static void in_thread(test_body *fn) {
  pthread_t t;
  pthread_create(&t, NULL, trampoline, (void *)fn);
  pthread_join(t, NULL);
}

/* After a test's thread has exited and the centrals have drained the
 * frees it left queued (neap_release), no small span may be left: the
 * exit flushed the cache, and every object was freed. */
static void settled(const char *name) {
  neap_release();
  census c = census_of(0);
  if (!CHECK_EQ(c.spans, 0)) fprintf(stderr, "  after %s: %ju small spans left\n", name, (uintmax_t)c.spans);
  test_heap_check(name);
}

#define THREAD_TEST(name)    \
  static void name(void) {   \
    in_thread(name##_body);  \
    settled(#name);          \
  }

/* --- fresh objects */

static void test_fresh_objects_zero_body(void) {
  enum { N = 40, SIZE = 64 }; /* 128 objects a span: windows of 64 */
  unsigned cls = cls_of(SIZE);
  void *p[N];
  for (unsigned i = 0; i < N; i++) {
    p[i] = neap_calloc(1, SIZE);
    CHECK(p[i] != NULL && all_zero(p[i], SIZE));
  }
  neap_span *s = span_of(p[0]);
  neap_slot *slot = &mine()->slot[cls];
  CHECK_PTR_EQ(slot->span, s);
  /* The first span of the process, on pages fresh from the OS: its first
   * pass needs no clearing, and calloc does none. */
  CHECK_EQ(s->needzero, 0);
  for (unsigned i = 0; i < N; i++) CHECK_PTR_EQ(p[i], obj(s, i)); /* lowest free first */
  test_heap_check("fresh span, in use");
  for (unsigned i = 0; i < N; i++) memset(p[i], 0xab, SIZE);
  /* A run of frees past the stack's capacity: the first 32 go back to the
   * span, the 33rd waits on the stack. */
  for (unsigned i = 0; i <= 32; i++) neap_free(p[i]);
  CHECK_EQ(stack_n(slot), 1);
  CHECK_PTR_EQ(NEAP_LOAD(&slot->top), p[32]);
  for (unsigned i = 0; i < 32; i++) CHECK(!neap__span_held(s, i));
  /* The stack's object was used: cleared. */
  void *q = neap_calloc(1, SIZE);
  CHECK_PTR_EQ(q, p[32]);
  CHECK(all_zero(q, SIZE));
  /* The rest of the window: never used, not cleared, zero all the same. */
  CHECK_EQ(s->needzero, 0);
  for (unsigned i = N; i < 64; i++) {
    q = neap_calloc(1, SIZE);
    CHECK_PTR_EQ(q, obj(s, i));
    CHECK(all_zero(q, SIZE));
  }
  /* The window reloads from the same word, whose freed objects were used:
   * the span needs clearing from now on, and calloc clears them. */
  for (unsigned i = 0; i < 32; i++) {
    q = neap_calloc(1, SIZE);
    CHECK_PTR_EQ(q, p[i]);
    CHECK(all_zero(q, SIZE));
  }
  CHECK_EQ(s->needzero, 1);
  test_heap_check("fresh span, reused");
  for (unsigned i = 0; i < 64; i++) neap_free(obj(s, i));
}
THREAD_TEST(test_fresh_objects_zero)

/* --- the free stack */

static void test_stack_lifo_body(void) {
  void *a = neap_malloc(48), *b = neap_malloc(48), *c = neap_malloc(48);
  neap_slot *slot = slot_of(48);
  CHECK_EQ(stack_n(slot), 0);
  CHECK_PTR_EQ(NEAP_LOAD(&slot->top), neap__stack_end);
  neap_free(a);
  neap_free(b);
  neap_free(c);
  CHECK_EQ(stack_n(slot), 3);
  CHECK_PTR_EQ(NEAP_LOAD(&slot->top), c);
  /* To its span a stacked object is in use; it holds its stack's mark. */
  void *objs[3] = {a, b, c};
  for (unsigned i = 0; i < 3; i++) {
    neap_span *s = span_of(objs[i]);
    unsigned idx = (unsigned)(((uintptr_t)objs[i] - s->base) / s->elemsize);
    CHECK(neap__span_held(s, idx));
    CHECK_EQ(neap__mark_key(objs[i]), slot->marker);
  }
  test_heap_check("three objects stacked");
  /* Newest first. */
  CHECK_PTR_EQ(neap_malloc(48), c);
  CHECK_PTR_EQ(neap_malloc(48), b);
  CHECK_PTR_EQ(neap_malloc(48), a);
  CHECK_EQ(stack_n(slot), 0);
  CHECK_PTR_EQ(NEAP_LOAD(&slot->top), neap__stack_end);
  CHECK_EQ(neap__stack_pops(NEAP_LOAD(&slot->stack)), 3);
  neap_free(a);
  neap_free(b);
  neap_free(c);
}
THREAD_TEST(test_stack_lifo)

static void test_stack_spills_body(void) {
  enum { N = 40 };
  void *p[N];
  for (unsigned i = 0; i < N; i++) p[i] = neap_malloc(64);
  neap_slot *slot = slot_of(64);
  neap_span *s = span_of(p[0]);
  CHECK_EQ(slot->cap, cap_start(cls_of(64)));
  CHECK_EQ(slot->cap, 32);
  for (unsigned i = 0; i < 32; i++) neap_free(p[i]);
  CHECK_EQ(stack_n(slot), 32);
  for (unsigned i = 0; i < 32; i++) CHECK(neap__span_held(s, i));
  /* Full, and nothing was popped since: a run of frees. Everything on the
   * stack goes back to its span (holding the span's mark), the capacity
   * stays at its start, and the new object waits alone. */
  neap_free(p[32]);
  CHECK_EQ(stack_n(slot), 1);
  CHECK_PTR_EQ(NEAP_LOAD(&slot->top), p[32]);
  CHECK_EQ(slot->cap, 32);
  for (unsigned i = 0; i < 32; i++) {
    CHECK(!neap__span_held(s, i));
    CHECK_EQ(neap__mark_key(p[i]), NEAP_MARK_KEY);
  }
  CHECK_EQ(neap__span_live(s), N - 32);
  test_heap_check("after a spill");
  for (unsigned i = 33; i < N; i++) neap_free(p[i]);
}
THREAD_TEST(test_stack_spills)

static void *many[8192];

static void test_stack_grows_and_trims_body(void) {
  enum { N = 6400 };
  const size_t size = 16;
  for (unsigned i = 0; i < N; i++) many[i] = neap_malloc(size);
  neap_cache *c = mine();
  neap_slot *slot = slot_of(size);
  uint32_t start = slot->cap, most = slot->cap_max;
  CHECK_EQ(start, cap_start(cls_of(size)));
  CHECK_EQ(most, NEAP_STACK_MAX); /* 4096 16-byte objects are within NEAP_STACK_MAX_BYTES */
  CHECK_EQ(c->stack_grown, 0);
  unsigned next = 0;
  /* Reused between overflows: the stack doubles up to its class's most,
   * keeping all it holds. */
  while (slot->cap < most && next < N) {
    while (stack_n(slot) < slot->cap) neap_free(many[next++]);
    void *q = neap_malloc(size);
    CHECK_PTR_EQ(q, many[next - 1]);
    neap_free(q);
    uint32_t old = slot->cap;
    neap_free(many[next++]);
    CHECK_EQ(slot->cap, old * 2 < most ? old * 2 : most);
    CHECK_EQ(stack_n(slot), old + 1);
    CHECK_EQ(c->stack_grown, (size_t)(slot->cap - start) * size);
  }
  CHECK_EQ(slot->cap, most);
  /* At its most, a reused stack gives back its older half. */
  while (stack_n(slot) < slot->cap) neap_free(many[next++]);
  neap_free(neap_malloc(size));
  neap_free(many[next++]);
  CHECK_EQ(slot->cap, most);
  CHECK_EQ(stack_n(slot), most / 2 + 1);
  CHECK(!on_stack(slot, many[0]) && on_stack(slot, many[next - 1]));
  test_heap_check("a grown stack");
  /* A run of frees: it keeps what the malloc runs took off it (one object
   * at a time here), halves (that is under a quarter), and gives back the
   * rest. */
  CHECK_EQ(slot->demand, 1);
  while (stack_n(slot) < slot->cap) neap_free(many[next++]);
  neap_free(many[next++]);
  CHECK_EQ(slot->cap, most / 2);
  CHECK_EQ(stack_n(slot), 2);
  CHECK_EQ(slot->demand, 0);
  CHECK_EQ(c->stack_grown, (size_t)(most / 2 - start) * size);
  CHECK(next <= N);
  /* neap_release trims this thread's stacks now: empty, at their start. */
  for (unsigned i = 0; i < 100; i++) neap_free(many[next++]);
  CHECK(stack_n(slot) > 1);
  neap_release();
  CHECK_EQ(stack_n(slot), 0);
  CHECK_EQ(slot->cap, start);
  CHECK_EQ(c->stack_grown, 0);
  CHECK_PTR_EQ(NEAP_LOAD(&slot->top), neap__stack_end);
  test_heap_check("after the trim");
  while (next < N) neap_free(many[next++]);
}
THREAD_TEST(test_stack_grows_and_trims)

/* A program that allocates a batch and frees it, again and again, keeps
 * its batch on the stack within a few rounds (no spill after), and a run
 * of frees of a structure freed for good leaves the stack at its start
 * with little on it. */
static void test_stack_keeps_batches_body(void) {
  enum { BATCH = 100, ROUNDS = 8 };
  const size_t size = 64;
  neap_slot *slot = NULL;
  void *b[BATCH];
  unsigned spilled_rounds = 0;
  for (unsigned r = 0; r < ROUNDS; r++) {
    for (unsigned i = 0; i < BATCH; i++) b[i] = neap_malloc(size);
    slot = slot_of(size); /* the thread's cache exists now */
    uint64_t pops = neap__stack_pops(NEAP_LOAD(&slot->stack));
    unsigned before = stack_n(slot);
    for (unsigned i = 0; i < BATCH; i++) neap_free(b[i]);
    bool spilled = stack_n(slot) != before + BATCH;
    if (r >= 5) CHECK(!spilled);
    spilled_rounds += spilled;
    CHECK_EQ(neap__stack_pops(NEAP_LOAD(&slot->stack)), pops);
  }
  CHECK(spilled_rounds <= 5);
  CHECK(slot->cap >= BATCH);
  CHECK(slot->demand > 0 && slot->demand <= BATCH);
  test_heap_check("a batch kept");
  /* From the stack, the next batch is the same objects, newest first. */
  for (unsigned i = 0; i < BATCH; i++) CHECK_PTR_EQ(neap_malloc(size), b[BATCH - 1 - i]);
  for (unsigned i = 0; i < BATCH; i++) neap_free(b[i]);

  /* A structure freed for good: 3,000 objects, then all freed. */
  enum { N = 3000 };
  for (unsigned i = 0; i < N; i++) many[i] = neap_malloc(size);
  for (unsigned i = 0; i < N; i++) neap_free(many[i]);
  CHECK_EQ(slot->cap, slot->cap_start);
  CHECK(stack_n(slot) <= slot->cap_start);
  test_heap_check("after a run of frees");
}
THREAD_TEST(test_stack_keeps_batches)

/* --- spans: refiling, the current span, kept empty spans */

static void test_refile_at_a_quarter_body(void) {
  const size_t size = 64; /* 128 objects a span: a quarter is 32 */
  enum { PER = 128 };
  for (unsigned i = 0; i < 3 * PER; i++) many[i] = neap_malloc(size);
  neap_cache *c = mine();
  unsigned cls = cls_of(size);
  neap_slot *slot = &c->slot[cls];
  neap_span *s1 = span_of(many[0]), *s2 = span_of(many[PER]), *s3 = span_of(many[2 * PER]);
  CHECK(s1 != s2 && s2 != s3 && s1 != s3);
  CHECK_EQ(s1->nelems, PER);
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_FULL);
  CHECK_EQ(where(s2), NEAP_SPAN_OWN_FULL);
  CHECK_EQ(where(s3), NEAP_SPAN_CURRENT);
  CHECK_PTR_EQ(slot->span, s3);
  CHECK(list_has(&c->own_full[cls], s1) && list_has(&c->own_full[cls], s2));
  /* Fillers: objects of the current span, which never moves, freed to
   * push the objects before them off the stack (it holds at most 32). */
  unsigned filler = 2 * PER;
  /* 31 objects back in s1: less than a quarter, it stays parked. */
  for (unsigned i = 0; i < 31; i++) neap_free(many[i]);
  neap_free(many[filler++]);
  neap_free(many[filler++]); /* overflow: the 32 before it go back */
  CHECK_EQ(stack_n(slot), 1);
  CHECK_EQ(neap__span_live(s1), PER - 31);
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_FULL);
  /* The 32nd: a quarter free, refiled as partial. */
  neap_free(many[31]);
  for (unsigned i = 0; i < 31; i++) neap_free(many[filler++]);
  CHECK_EQ(stack_n(slot), 1);
  CHECK_EQ(neap__span_live(s1), PER - 32);
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_PARTIAL);
  CHECK(list_has(&c->own_partial[cls], s1) && !list_has(&c->own_full[cls], s1));
  CHECK_EQ(where(s2), NEAP_SPAN_OWN_FULL);
  test_heap_check("a span refiled as partial");
  /* Emptied: kept for the next refills (the first of its class). */
  for (unsigned i = 32; i < PER; i++) neap_free(many[i]);
  for (unsigned i = 0; i < 32; i++) neap_free(many[filler++]);
  CHECK_EQ(neap__span_live(s1), 0);
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_EMPTY);
  CHECK(list_has(&c->own_empty[cls], s1) && !list_has(&c->own_partial[cls], s1));
  CHECK_EQ(c->nempty[cls], 1);
  CHECK_EQ(c->empty_pages, s1->npages);
  CHECK_PTR_EQ(NEAP_LOAD(&s1->owner), c);
  test_heap_check("a span kept empty");
  for (unsigned i = PER; i < 2 * PER; i++) neap_free(many[i]);
  for (unsigned i = filler; i < 3 * PER; i++) neap_free(many[i]);
}
THREAD_TEST(test_refile_at_a_quarter)

static void test_current_span_wraps_body(void) {
  const size_t size = 64; /* 128 objects a span: a quarter is 32 */
  enum { PER = 128 };
  unsigned cls = cls_of(size);
  for (unsigned i = 0; i < PER; i++) many[i] = neap_malloc(size);
  neap_cache *c = mine();
  neap_slot *slot = &c->slot[cls];
  neap_span *s1 = span_of(many[0]);
  CHECK_PTR_EQ(span_of(many[PER - 1]), s1);
  CHECK_PTR_EQ(slot->span, s1);
  CHECK_EQ(NEAP_LOAD(&slot->bits), 0);
  /* A quarter of the current span back in it, no other span with room:
   * it starts over at its first free object. */
  for (unsigned i = 0; i <= 32; i++) neap_free(many[i]); /* 0..31 spill back, 32 waits on the stack */
  CHECK_EQ(neap__span_live(s1), PER - 32);
  CHECK_PTR_EQ(neap_malloc(size), many[32]);
  CHECK_PTR_EQ(neap_malloc(size), many[0]);
  CHECK_PTR_EQ(slot->span, s1);
  CHECK_EQ(where(s1), NEAP_SPAN_CURRENT);
  CHECK_EQ(s1->needzero, 1); /* a second pass: its objects were used */
  for (unsigned i = 1; i < 32; i++) CHECK_PTR_EQ(neap_malloc(size), many[i]);
  /* Used up with nothing free and no span with room: parked full, and a
   * new span becomes current. */
  void *q = neap_malloc(size);
  neap_span *s2 = span_of(q);
  CHECK(s2 != s1);
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_FULL);
  CHECK(list_has(&c->own_full[cls], s1));
  CHECK_PTR_EQ(slot->span, s2);
  test_heap_check("after the wrap");
  neap_free(q);
  for (unsigned i = 0; i < PER; i++) neap_free(many[i]);
}
THREAD_TEST(test_current_span_wraps)

static void test_current_span_parks_body(void) {
  const size_t size = 64;
  enum { PER = 128 };
  unsigned cls = cls_of(size);
  for (unsigned i = 0; i < 2 * PER; i++) many[i] = neap_malloc(size);
  neap_cache *c = mine();
  neap_slot *slot = &c->slot[cls];
  neap_span *s1 = span_of(many[0]), *s2 = span_of(many[PER]);
  CHECK(s1 != s2);
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_FULL);
  CHECK_PTR_EQ(slot->span, s2);
  /* s1 gets 32 back (partial); s2, the current one, 10 (less than a
   * quarter). Nothing is popped in between: each overflow spills all. */
  for (unsigned i = 0; i < 32; i++) neap_free(many[i]);
  neap_free(many[PER]); /* overflow: s1's 32 go back */
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_PARTIAL);
  for (unsigned i = 1; i < 10; i++) neap_free(many[PER + i]);
  for (unsigned i = 32; i < 54; i++) neap_free(many[i]);
  neap_free(many[54]); /* overflow: s2's 10 and s1's 22 go back */
  CHECK_EQ(stack_n(slot), 1);
  CHECK_EQ(neap__span_live(s2), PER - 10);
  CHECK_EQ(neap__span_live(s1), PER - 54);
  CHECK_EQ(where(s2), NEAP_SPAN_CURRENT);
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_PARTIAL);
  CHECK_PTR_EQ(neap_malloc(size), many[54]); /* the stack first */
  /* s2 used up with less than a quarter free while s1 has room: s2 is
   * parked, and s1 becomes current from its first free object. */
  CHECK_PTR_EQ(neap_malloc(size), many[0]);
  CHECK_EQ(where(s2), NEAP_SPAN_OWN_FULL);
  CHECK_EQ(where(s1), NEAP_SPAN_CURRENT);
  CHECK_PTR_EQ(slot->span, s1);
  CHECK(!list_has(&c->own_partial[cls], s1) && list_has(&c->own_full[cls], s2));
  test_heap_check("after the switch");
  /* Live now: s1's 0 and 54..127, s2's 10..127. */
  neap_free(many[0]);
  for (unsigned i = 54; i < PER; i++) neap_free(many[i]);
  for (unsigned i = PER + 10; i < 2 * PER; i++) neap_free(many[i]);
}
THREAD_TEST(test_current_span_parks)

static void test_current_span_wraps_at_a_quarter_body(void) {
  const size_t size = 64;
  enum { PER = 128 };
  unsigned cls = cls_of(size);
  for (unsigned i = 0; i < 2 * PER; i++) many[i] = neap_malloc(size);
  neap_cache *c = mine();
  neap_slot *slot = &c->slot[cls];
  neap_span *s1 = span_of(many[0]), *s2 = span_of(many[PER]);
  /* s1 partial with 32 free; s2, the current one, exactly a quarter free. */
  for (unsigned i = 0; i < 32; i++) neap_free(many[i]);
  neap_free(many[PER]); /* overflow: s1's 32 go back */
  for (unsigned i = 1; i < 32; i++) neap_free(many[PER + i]);
  neap_free(many[32]); /* overflow: s2's 32 go back */
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_PARTIAL);
  CHECK_EQ(neap__span_live(s2), PER - 32);
  CHECK_PTR_EQ(neap_malloc(size), many[32]); /* the stack first */
  /* A quarter free is enough to start over, another span's room or not. */
  CHECK_PTR_EQ(neap_malloc(size), many[PER]);
  CHECK_PTR_EQ(slot->span, s2);
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_PARTIAL);
  for (unsigned i = 1; i < 32; i++) CHECK_PTR_EQ(neap_malloc(size), many[PER + i]);
  test_heap_check("after the wrap at a quarter");
  for (unsigned i = 32; i < 2 * PER; i++) neap_free(many[i]);
}
THREAD_TEST(test_current_span_wraps_at_a_quarter)

static void test_partial_spans_in_order_body(void) {
  const size_t size = 64;
  enum { PER = 128 };
  unsigned cls = cls_of(size);
  for (unsigned i = 0; i < 3 * PER; i++) many[i] = neap_malloc(size);
  neap_cache *c = mine();
  neap_slot *slot = &c->slot[cls];
  neap_span *s1 = span_of(many[0]), *s2 = span_of(many[PER]), *s3 = span_of(many[2 * PER]);
  /* s1 refiled as partial, then s2. */
  for (unsigned i = 0; i < 32; i++) neap_free(many[i]);
  for (unsigned i = 0; i < 32; i++) neap_free(many[PER + i]); /* the first overflows: s1's 32 go back */
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_PARTIAL);
  CHECK_EQ(where(s2), NEAP_SPAN_OWN_FULL);
  neap_free(many[2 * PER]); /* overflow: s2's 32 go back */
  CHECK_EQ(where(s2), NEAP_SPAN_OWN_PARTIAL);
  CHECK_PTR_EQ(neap_malloc(size), many[2 * PER]);
  /* s3 used up, with one object free: parked. The partial list is a
   * queue: s1, which waited longest, comes first. */
  CHECK_PTR_EQ(neap_malloc(size), many[0]);
  CHECK_PTR_EQ(slot->span, s1);
  CHECK_EQ(where(s3), NEAP_SPAN_OWN_FULL);
  CHECK_EQ(where(s2), NEAP_SPAN_OWN_PARTIAL);
  for (unsigned i = 1; i < 32; i++) CHECK_PTR_EQ(neap_malloc(size), many[i]);
  CHECK_PTR_EQ(neap_malloc(size), many[PER]);
  CHECK_PTR_EQ(slot->span, s2);
  test_heap_check("after the partial spans");
  for (unsigned i = 0; i < 32; i++) neap_free(many[i]);
  for (unsigned i = 32; i < 3 * PER; i++)
    if (i < PER + 1 || i >= PER + 32) neap_free(many[i]);
}
THREAD_TEST(test_partial_spans_in_order)

/* Objects and spans for keep_empty's tests. */
#define EMPTY_OBJS 16384
#define EMPTY_SPANS 64
static void *eobjs[EMPTY_OBJS];
static void *leftover[EMPTY_OBJS];
static size_t nleftover;

static void free_leftovers(void) {
  while (nleftover > 0) neap_free(leftover[--nleftover]);
}

/* Empties k spans of class cls in this thread's cache: makes k + 1 fresh
 * spans full, frees every object of the first k (the last is the current
 * span, which a free never moves), and checks what the cache did with the
 * spans that emptied (those none of whose objects waits on the free
 * stack) against keep_empty's rule: a span is kept while its class keeps
 * fewer than keep_of(cls), and, but for the first of its class, only
 * while the cache's kept pages stay within 2 MiB; the others go back to
 * the page heap. *kept_pages is the rule's count of the pages the cache
 * keeps, which the cache's must match. The current span's objects are
 * left to the caller (leftover). Returns how many spans emptied. */
static unsigned empty_spans(unsigned cls, unsigned k, uint32_t *kept_pages) {
  size_t size = neap__class_size[cls];
  unsigned per = neap__class_objects[cls], pages = neap__class_pages[cls];
  size_t n = (size_t)(k + 1) * per;
  if (!CHECK(n <= EMPTY_OBJS && k + 1 <= EMPTY_SPANS && nleftover + per <= EMPTY_OBJS)) return 0;
  CHECK_EQ(census_of(cls).spans, 0); /* every span will be this test's alone */
  for (size_t i = 0; i < n; i++) eobjs[i] = neap_malloc(size);
  neap_cache *c = mine();
  neap_slot *slot = &c->slot[cls];
  CHECK_EQ(slot->cap, cap_start(cls));
  CHECK_EQ(c->nempty[cls], 0);
  neap_span *spans[EMPTY_SPANS];
  uintptr_t bases[EMPTY_SPANS];
  for (unsigned j = 0; j <= k; j++) {
    spans[j] = span_of(eobjs[(size_t)j * per]);
    bases[j] = spans[j]->base;
    for (unsigned i = 0; i < per; i++)
      if (span_of(eobjs[(size_t)j * per + i]) != spans[j]) CHECK_FAIL("a fresh span's objects are not consecutive");
  }
  CHECK_PTR_EQ(slot->span, spans[k]);
  for (size_t i = 0; i < (size_t)k * per; i++) neap_free(eobjs[i]);
  bool emptied[EMPTY_SPANS];
  unsigned nemptied = 0;
  for (unsigned j = 0; j < k; j++) {
    emptied[j] = true;
    for (unsigned i = 0; i < per; i++)
      if (on_stack(slot, eobjs[(size_t)j * per + i])) emptied[j] = false;
    nemptied += emptied[j];
  }
  unsigned keep = keep_of(cls), kept = 0;
  for (unsigned e = 0; e < nemptied; e++) {
    if (kept < keep && (kept == 0 || ((size_t)*kept_pages + pages) << NEAP_PAGE_SHIFT <= KEEP_TOTAL)) {
      kept++;
      *kept_pages += pages;
    }
  }
  CHECK_EQ(c->nempty[cls], kept);
  CHECK_EQ(c->empty_pages, *kept_pages);
  unsigned listed = 0, gone = 0;
  for (unsigned j = 0; j < k; j++) {
    if (!emptied[j]) continue;
    neap_span *now = span_of((void *)bases[j]);
    if (now == spans[j] && where(now) == NEAP_SPAN_OWN_EMPTY && NEAP_LOAD(&now->owner) == c &&
        list_has(&c->own_empty[cls], now))
      listed++;
    else if (now == NULL)
      gone++;
  }
  CHECK_EQ(listed, kept);
  CHECK_EQ(gone, nemptied - kept);
  for (size_t i = (size_t)k * per; i < n; i++) leftover[nleftover++] = eobjs[i];
  return nemptied;
}

/* Spans to empty in class cls so that at least m of them empty whatever
 * the free stack holds at the end (at most its last cap_start objects). */
static unsigned at_least(unsigned cls, unsigned m) {
  unsigned per = neap__class_objects[cls];
  return m + (cap_start(cls) + per - 1) / per;
}

/* So that more than keep_of(cls) of them empty. */
static unsigned past_keep(unsigned cls) { return at_least(cls, keep_of(cls) + 1); }

static void test_keep_empty_per_class_body(void) {
  /* 16 one-page spans of 64-byte objects; 4 of 32 KiB objects. */
  uint32_t pages = 0;
  unsigned cls = cls_of(64);
  CHECK_EQ(keep_of(cls), 16);
  CHECK(empty_spans(cls, past_keep(cls), &pages) > 16);
  CHECK_EQ(mine()->nempty[cls], 16);
  cls = cls_of(32768);
  CHECK_EQ(keep_of(cls), 4);
  CHECK(empty_spans(cls, past_keep(cls), &pages) > 4);
  CHECK_EQ(mine()->nempty[cls], 4);
  CHECK_EQ(neap__cache_reclaim(NEAP_RECLAIM_PENDING), pages);
  test_heap_check("kept empty spans, per class");
  free_leftovers();
}
THREAD_TEST(test_keep_empty_per_class)

static void test_keep_empty_total_body(void) {
  /* From the largest spans down, each class past its keep: the kept pages
   * reach 2 MiB, and from there on each class keeps its first span only.
   * That is keep_empty's rule ("but always one"); note that it lets a
   * cache keep more than the 2 MiB its essay gives as the most (here some
   * 3 MiB: every class's first span on top of the 2 MiB). */
  uint32_t pages = 0;
  bool capped = false;
  for (unsigned cls = NEAP_NUM_CLASSES - 1; cls >= cls_of(1792); cls--) {
    uint32_t before = pages;
    CHECK(empty_spans(cls, past_keep(cls), &pages) > keep_of(cls));
    if (((size_t)before << NEAP_PAGE_SHIFT) >= KEEP_TOTAL) {
      CHECK_EQ(mine()->nempty[cls], 1); /* the first, and no more */
      capped |= keep_of(cls) > 1;
    } else if (((size_t)pages << NEAP_PAGE_SHIFT) <= KEEP_TOTAL - KEEP_BYTES) {
      CHECK_EQ(mine()->nempty[cls], keep_of(cls)); /* far from the total: its class's bound */
    }
  }
  CHECK(capped); /* the 2 MiB bound was what limited some class */
  CHECK_EQ(mine()->empty_pages, pages);
  CHECK_EQ(neap__cache_reclaim(NEAP_RECLAIM_PENDING), pages);
  CHECK_EQ(neap__cache_reclaim(NEAP_RECLAIM_SHORT), 0); /* kept spans are the next refills */
  CHECK_EQ(mine()->empty_pages, pages);
  test_heap_check("kept empty spans, 2 MiB");
  free_leftovers();
}
THREAD_TEST(test_keep_empty_total)

/* A refill: an object of a size whose class this thread has no span of
 * yet takes the slow path. Freed with the leftovers. */
static void refill_in(size_t size) { leftover[nleftover++] = neap_malloc(size); }

static void test_idle_reclaim_body(void) {
  uint32_t pages = 0;
  CHECK(empty_spans(cls_of(1024), at_least(cls_of(1024), 4), &pages) >= 4);
  CHECK(empty_spans(cls_of(4096), at_least(cls_of(4096), 3), &pages) >= 3);
  neap_cache *c = mine();
  CHECK_EQ(c->nempty[cls_of(4096)], 2);
  CHECK_EQ(c->empty_pages, pages);
  uint64_t in0 = pages_inuse();
  /* The first round only notes the refills. */
  CHECK_EQ(neap__cache_reclaim(NEAP_RECLAIM_IDLE), 0);
  CHECK_EQ(c->empty_pages, pages);
  /* A refill between two rounds: not idle, nothing taken. */
  refill_in(3000);
  uint64_t in1 = pages_inuse();
  CHECK(in1 > in0);
  CHECK_EQ(neap__cache_reclaim(NEAP_RECLAIM_IDLE), 0);
  CHECK_EQ(c->empty_pages, pages);
  /* No refill since the round before: every kept span goes back. */
  CHECK_EQ(neap__cache_reclaim(NEAP_RECLAIM_IDLE), pages);
  CHECK_EQ(c->empty_pages, 0);
  for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
    CHECK(c->nempty[cls] == 0 && c->own_empty[cls].next == &c->own_empty[cls]);
  }
  CHECK_EQ(pages_inuse(), in1 - pages);
  CHECK_EQ(neap__cache_reclaim(NEAP_RECLAIM_PENDING), 0);
  CHECK_EQ(neap__cache_reclaim(NEAP_RECLAIM_IDLE), 0);
  test_heap_check("after the idle rounds");
  /* Kept again after refills: the next round notes them, the one after takes. */
  pages = 0;
  CHECK(empty_spans(cls_of(2048), at_least(cls_of(2048), 2), &pages) >= 2);
  CHECK(pages > 0);
  CHECK_EQ(neap__cache_reclaim(NEAP_RECLAIM_IDLE), 0);
  CHECK_EQ(neap__cache_reclaim(NEAP_RECLAIM_IDLE), pages);
  free_leftovers();
}
THREAD_TEST(test_idle_reclaim)

static void test_limit_and_release_body(void) {
  /* Kept spans in one class, and a parked full span's objects on
   * another's stack. */
  uint32_t pages = 0;
  unsigned kcls = cls_of(1024);
  CHECK(empty_spans(kcls, at_least(kcls, 4), &pages) >= 4);
  neap_cache *c = mine();
  const size_t size = 256; /* 32 objects a span, a stack of 32 */
  void *p[64];
  for (unsigned i = 0; i < 64; i++) p[i] = neap_malloc(size);
  neap_span *s1 = span_of(p[0]), *s2 = span_of(p[32]);
  neap_slot *slot = slot_of(size);
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_FULL);
  CHECK_PTR_EQ(slot->span, s2);
  for (unsigned i = 0; i < 32; i++) neap_free(p[i]);
  CHECK_EQ(stack_n(slot), 32);

  /* LIMIT: every kept span now, refills or not; the stacks at this
   * thread's next slow path. */
  CHECK_EQ(neap__cache_reclaim(NEAP_RECLAIM_IDLE), 0); /* a first IDLE round only notes the refills */
  CHECK_EQ(neap__cache_reclaim(NEAP_RECLAIM_LIMIT), pages);
  CHECK_EQ(c->empty_pages, 0);
  CHECK_EQ(c->nempty[kcls], 0);
  CHECK_EQ(stack_n(slot), 32);
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_FULL);
  refill_in(3000); /* a slow path: the trim is obeyed */
  for (unsigned k = 1; k < NEAP_NUM_CLASSES; k++) {
    if (stack_n(&c->slot[k]) != 0 || c->slot[k].cap != c->slot[k].cap_start)
      CHECK_FAIL("a free stack not trimmed at the slow path after LIMIT");
  }
  CHECK_EQ(c->stack_grown, 0);
  /* s1, emptied by the trim, is kept (its class's first), as are the
   * spans the trim of kcls's stack emptied. */
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_EMPTY);
  CHECK_EQ(c->nempty[cls_of(size)], 1);
  test_heap_check("after LIMIT");

  /* RELEASE: this thread's stacks at once, before the kept spans are
   * taken, so that a span the trim empties goes back too. */
  for (unsigned i = 0; i < 32; i++) p[i] = neap_malloc(size); /* s2 parked, s1 current again */
  CHECK_PTR_EQ(span_of(p[0]), s1);
  CHECK_EQ(where(s2), NEAP_SPAN_OWN_FULL);
  for (unsigned i = 32; i < 64; i++) neap_free(p[i]); /* all of s2, on the stack */
  CHECK_EQ(stack_n(slot), 32);
  CHECK(on_stack(slot, p[32]));
  CHECK_EQ(where(s2), NEAP_SPAN_OWN_FULL);
  pages = c->empty_pages;
  unsigned kcls2 = cls_of(2048);
  CHECK(empty_spans(kcls2, at_least(kcls2, 2), &pages) >= 2);
  uintptr_t base2 = s2->base;
  uint32_t s2_pages = s2->npages;
  uint64_t in0 = pages_inuse();
  /* What it gives back is every page that leaves: all of it was kept. */
  size_t got = neap__cache_reclaim(NEAP_RECLAIM_RELEASE);
  CHECK_EQ(got, in0 - pages_inuse());
  CHECK(got >= pages + s2_pages);
  CHECK(span_of((void *)base2) == NULL);
  CHECK_EQ(c->empty_pages, 0);
  for (unsigned k = 1; k < NEAP_NUM_CLASSES; k++) CHECK(c->nempty[k] == 0 && stack_n(&c->slot[k]) == 0);
  test_heap_check("after RELEASE");

  /* neap_release does the same. */
  pages = 0;
  unsigned kcls3 = cls_of(4096);
  CHECK(empty_spans(kcls3, at_least(kcls3, 2), &pages) >= 2);
  void *q[10];
  for (unsigned i = 0; i < 10; i++) q[i] = neap_malloc(size);
  for (unsigned i = 0; i < 10; i++) neap_free(q[i]);
  CHECK_EQ(stack_n(slot), 10);
  CHECK(c->empty_pages > 0);
  neap_release();
  CHECK_EQ(stack_n(slot), 0);
  CHECK_EQ(c->empty_pages, 0);
  for (unsigned i = 0; i < 32; i++) neap_free(p[i]);
  free_leftovers();
}
THREAD_TEST(test_limit_and_release)

/* --- neap_thread_flush */

static void test_thread_flush_body(void) {
  const size_t size = 256;
  unsigned cls = cls_of(size);
  void *p[80];
  for (unsigned i = 0; i < 80; i++) p[i] = neap_malloc(size);
  neap_cache *c = mine();
  neap_span *s1 = span_of(p[0]), *s2 = span_of(p[32]), *s3 = span_of(p[64]);
  for (unsigned i = 0; i < 10; i++) neap_free(p[i]); /* on the stack */
  uint32_t pages = 0;
  unsigned bcls = cls_of(4096);
  CHECK(empty_spans(bcls, at_least(bcls, 2), &pages) >= 2);
  neap_span *bcur = c->slot[bcls].span;
  CHECK(pages > 0 && bcur != NULL);

  neap_thread_flush();
  /* Nothing left in the cache. */
  for (unsigned k = 1; k < NEAP_NUM_CLASSES; k++) {
    neap_slot *slot = &c->slot[k];
    if (slot->span != NULL || NEAP_LOAD(&slot->bits) != 0 || stack_n(slot) != 0 || slot->cap != slot->cap_start)
      CHECK_FAIL("a slot holds something after the flush");
    if (c->own_partial[k].next != &c->own_partial[k] || c->own_full[k].next != &c->own_full[k] ||
        c->own_empty[k].next != &c->own_empty[k] || c->nempty[k] != 0)
      CHECK_FAIL("an own list holds something after the flush");
  }
  CHECK_EQ(c->empty_pages, 0);
  CHECK_EQ(c->stack_grown, 0);
  CHECK(atomic_load(&c->inbox) == NULL);
  CHECK_PTR_EQ(neap__tls_cache, c); /* the cache itself stays */
  /* Its spans are their centrals', on the list their room says. */
  CHECK_EQ(where(s1), NEAP_SPAN_CENTRAL_PARTIAL); /* the stack's 10 went back first */
  CHECK_EQ(neap__span_live(s1), 22);
  CHECK_EQ(where(s2), NEAP_SPAN_CENTRAL_FULL);
  CHECK_EQ(where(s3), NEAP_SPAN_CENTRAL_PARTIAL); /* the current one, 16 handed out */
  CHECK_EQ(neap__span_live(s3), 16);
  CHECK_EQ(where(bcur), NEAP_SPAN_CENTRAL_FULL);
  neap_span *all[] = {s1, s2, s3, bcur};
  for (unsigned i = 0; i < 4; i++) CHECK(NEAP_LOAD(&all[i]->owner) == NULL && rword(all[i]) == 0);
  census cs = census_of(0);
  CHECK_EQ(cs.owned, 0);
  CHECK_EQ(cs.spans, 4);
  CHECK_EQ(pages_inuse(), (uint64_t)s1->npages + s2->npages + s3->npages + bcur->npages);
  test_heap_check("after neap_thread_flush");

  /* The cache goes on: a span with room comes back before a fresh one. */
  p[0] = neap_malloc(size);
  neap_span *back = span_of(p[0]);
  CHECK(back == s1 || back == s3);
  CHECK_PTR_EQ(NEAP_LOAD(&back->owner), c);
  CHECK_EQ(where(back), NEAP_SPAN_CURRENT);
  CHECK_EQ(census_of(cls).spans, 3);
  /* Frees into spans it gave up are remote frees now. */
  for (unsigned i = 10; i < 80; i++)
    if (p[i] != p[0]) neap_free(p[i]);
  neap_free(p[0]);
  free_leftovers();
  neap_thread_flush();
  CHECK(rword(s2) & NEAP_RW_NOTIFIED);
  test_heap_check("after the second flush");
}
THREAD_TEST(test_thread_flush)

/* --- other threads' frees */

static void *home[128];
static size_t size_home = 256;

static void *free_without_cache(void *arg) {
  (void)arg;
  for (unsigned i = 0; i < 32; i++) neap_free(home[i]);      /* all of s1 */
  for (unsigned i = 64 + 5; i < 64 + 15; i++) neap_free(home[i]); /* 10 of s3 */
  CHECK(neap__cache_mine() == NULL); /* freeing made no cache */
  return NULL;
}

static void *free_and_reuse(void *arg) {
  (void)arg;
  void *x = neap_malloc(16); /* a cache of its own */
  neap_slot *slot = slot_of(size_home);
  neap_free(home[32]);
  CHECK_EQ(stack_n(slot), 1);
  CHECK_PTR_EQ(neap_malloc(size_home), home[32]); /* stacked here, reused here */
  neap_free(home[32]);
  neap_free(x);
  return NULL; /* the exit gives it back to its span: a remote free */
}

static void run(void *(*fn)(void *)) {
  pthread_t t;
  pthread_create(&t, NULL, fn, NULL);
  pthread_join(t, NULL);
}

static void test_remote_frees_come_home_body(void) {
  for (unsigned i = 0; i < 96; i++) home[i] = neap_malloc(size_home);
  neap_cache *c = mine();
  unsigned cls = cls_of(size_home);
  neap_slot *slot = &c->slot[cls];
  neap_span *s1 = span_of(home[0]), *s2 = span_of(home[32]), *s3 = span_of(home[64]);
  CHECK_EQ(s1->nelems, 32);
  CHECK(where(s1) == NEAP_SPAN_OWN_FULL && where(s2) == NEAP_SPAN_OWN_FULL && where(s3) == NEAP_SPAN_CURRENT);

  /* A thread without a cache frees into our spans: remote bits, counted,
   * each span notified once. */
  run(free_without_cache);
  CHECK_EQ(rword(s1), NEAP_RW_CACHED | NEAP_RW_NOTIFIED | 32);
  CHECK_EQ(rword(s3), NEAP_RW_CACHED | NEAP_RW_NOTIFIED | 10);
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_FULL);
  CHECK(!neap__span_held(s1, 0) && !neap__span_held(s3, 5));
  test_heap_check("remote frees waiting");

  /* The current span merges its own when it runs dry, and hands them out. */
  for (unsigned i = 5; i < 15; i++) CHECK_PTR_EQ(neap_malloc(size_home), home[64 + i]);
  CHECK_EQ(rword(s3) & NEAP_RW_COUNT_MASK, 0);
  CHECK_PTR_EQ(slot->span, s3);
  /* Used up again: parked; the central's pending stack forwards s1 (and s3)
   * to our inbox; s1's 32 merged, it is empty and becomes current. */
  CHECK_PTR_EQ(neap_malloc(size_home), home[0]);
  CHECK_PTR_EQ(slot->span, s1);
  CHECK_EQ(where(s1), NEAP_SPAN_CURRENT);
  CHECK_EQ(rword(s1), NEAP_RW_CACHED);
  CHECK_EQ(rword(s3), NEAP_RW_CACHED);
  CHECK_EQ(where(s3), NEAP_SPAN_OWN_FULL);
  CHECK(atomic_load(&c->inbox) == NULL);
  for (unsigned i = 1; i < 32; i++) CHECK_PTR_EQ(neap_malloc(size_home), home[i]);
  test_heap_check("remote frees reused");

  /* A thread with a cache stacks our object and reuses it itself; when
   * it exits the object goes back to our span, remotely. */
  run(free_and_reuse);
  CHECK_EQ(rword(s2), NEAP_RW_CACHED | NEAP_RW_NOTIFIED | 1);
  CHECK_EQ(where(s2), NEAP_SPAN_OWN_FULL);
  /* s1 used up: the forwarded s2 has one object free, too little to take
   * it back from the full list: a fresh span comes. */
  void *q = neap_malloc(size_home);
  neap_span *s4 = span_of(q);
  CHECK(s4 != s1 && s4 != s2 && s4 != s3);
  CHECK_EQ(where(s1), NEAP_SPAN_OWN_FULL);
  CHECK_EQ(rword(s2), NEAP_RW_CACHED);
  CHECK_EQ(neap__span_live(s2), 31);
  CHECK_EQ(where(s2), NEAP_SPAN_OWN_FULL);
  test_heap_check("a span forwarded with little room");
  for (unsigned i = 0; i < 96; i++)
    if (i != 32) neap_free(home[i]);
  neap_free(q);
}
THREAD_TEST(test_remote_frees_come_home)

/* --- statistics */

static const neap_stats_class_t *by_class(const neap_stats_t *s, unsigned cls) { return &s->by_class[cls - 1]; }

static neap_stats_t stats0, stats1;

static uint64_t mallocs_of(const neap_stats_t *s, unsigned cls) { return by_class(s, cls)->mallocs; }
static uint64_t frees_of(const neap_stats_t *s, unsigned cls) { return by_class(s, cls)->frees; }

static void test_stats_exact_body(void) {
  const size_t size = 320;
  unsigned cls = cls_of(size);
  static neap_stats_t s, t;
  void *p[100];
  neap_stats_read(&stats0, sizeof stats0);
  CHECK_EQ(by_class(&stats0, cls)->size, neap__class_size[cls]);
  for (unsigned i = 0; i < 100; i++) p[i] = neap_malloc(size);
  for (unsigned i = 0; i < 40; i++) neap_free(p[i]); /* a spill, and 8 on the stack */
  neap_stats_read(&s, sizeof s);
  CHECK_EQ(mallocs_of(&s, cls) - mallocs_of(&stats0, cls), 100);
  CHECK_EQ(frees_of(&s, cls) - frees_of(&stats0, cls), 40);
  CHECK_EQ(s.heap_objects - stats0.heap_objects, 60);
  CHECK_EQ(s.threads, 1);
  for (unsigned i = 0; i < 30; i++) p[i] = neap_malloc(size); /* the stack's 8, then the spans' */
  neap_stats_read(&s, sizeof s);
  CHECK_EQ(mallocs_of(&s, cls) - mallocs_of(&stats0, cls), 130);
  CHECK_EQ(frees_of(&s, cls) - frees_of(&stats0, cls), 40);
  CHECK_EQ(s.heap_objects - stats0.heap_objects, 90);
  for (unsigned i = 0; i < 30; i++) neap_free(p[i]);
  for (unsigned i = 40; i < 100; i++) neap_free(p[i]);
  /* Reuse through the stack between two reads: 20 out, back, out from
   * the stack, back. */
  neap_stats_read(&s, sizeof s);
  for (unsigned round = 0; round < 2; round++) {
    for (unsigned i = 0; i < 20; i++) p[i] = neap_malloc(size);
    for (unsigned i = 0; i < 20; i++) neap_free(p[i]);
  }
  neap_stats_read(&t, sizeof t);
  CHECK_EQ(mallocs_of(&t, cls) - mallocs_of(&s, cls), 40);
  CHECK_EQ(frees_of(&t, cls) - frees_of(&s, cls), 40);
  neap_stats_read(&stats1, sizeof stats1);
  CHECK_EQ(mallocs_of(&stats1, cls) - mallocs_of(&stats0, cls), 170);
  CHECK_EQ(frees_of(&stats1, cls) - frees_of(&stats0, cls), 170);
  CHECK_EQ(stats1.heap_objects, stats0.heap_objects);
}

static void ten_more_body(void) {
  void *p[10];
  for (unsigned i = 0; i < 10; i++) p[i] = neap_malloc(320);
  for (unsigned i = 0; i < 10; i++) neap_free(p[i]);
}

static void test_stats_exact(void) {
  in_thread(test_stats_exact_body);
  /* The thread's cache retired: its counts stay, exactly. */
  static neap_stats_t s;
  neap_stats_read(&s, sizeof s);
  unsigned cls = cls_of(320);
  CHECK_EQ(mallocs_of(&s, cls), mallocs_of(&stats1, cls));
  CHECK_EQ(frees_of(&s, cls), frees_of(&stats1, cls));
  CHECK_EQ(s.threads, 0);
  /* And what the next thread does adds to them, exactly. */
  in_thread(ten_more_body);
  neap_stats_read(&s, sizeof s);
  CHECK_EQ(mallocs_of(&s, cls) - mallocs_of(&stats1, cls), 10);
  CHECK_EQ(frees_of(&s, cls) - frees_of(&stats1, cls), 10);
  settled("test_stats_exact");
}

/* --- the free stack's checks */

static void write_after_free(void *arg) {
  (void)arg;
  char *p = neap_malloc(48);
  neap_free(p);
  p[9] ^= 1; /* its free mark */
  neap_free(neap_malloc(48));
}

static void double_free(void *arg) {
  (void)arg;
  void *p = neap_malloc(48);
  neap_free(neap_malloc(48));
  neap_free(p);
  neap_free(p); /* under another object on the stack */
}

static void test_stack_checks(void) {
  CHECK_ABORTS(write_after_free, NULL, "neap: double free or write after free");
  CHECK_ABORTS(double_free, NULL, "neap: double free");
}

int main(int argc, char **argv) {
  (void)argc;
  /* No scavenger thread (its idle rounds reclaim kept spans) and no
   * limit: nothing but the tests moves a span. */
  static const char *const env[] = {"NEAPDEBUG=scavenger=0", "NEAP_MEMLIMIT=off", "NEAP_STATS_DIR=off", NULL};
  test_reexec_with(argv, env);
  RUN(test_fresh_objects_zero); /* first: it needs pages fresh from the OS */
  RUN(test_stack_lifo);
  RUN(test_stack_spills);
  RUN(test_stack_grows_and_trims);
  RUN(test_stack_keeps_batches);
  RUN(test_refile_at_a_quarter);
  RUN(test_current_span_wraps);
  RUN(test_current_span_parks);
  RUN(test_current_span_wraps_at_a_quarter);
  RUN(test_partial_spans_in_order);
  RUN(test_keep_empty_per_class);
  RUN(test_keep_empty_total);
  RUN(test_idle_reclaim);
  RUN(test_limit_and_release);
  RUN(test_thread_flush);
  RUN(test_remote_frees_come_home);
  RUN(test_stats_exact);
  RUN(test_stack_checks);
  return TEST_DONE();
}
