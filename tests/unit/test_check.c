/* test_check: the heap checker (src/check.c) passes on healthy heaps of
 * every shape and finds a planted corruption of each structure it covers.
 *
 * The healthy part builds heaps with every kind of span and list (current
 * spans with fresh objects, full and partial spans a cache owns, empty
 * spans it keeps, spans only a central holds because their thread has
 * exited, spans waiting on a pending stack, large and aligned objects,
 * objects on free stacks, pages returned to the OS) and checks after each
 * step.
 *
 * Each planted corruption runs in a forked child: it changes one word of
 * one structure (as a wild write or a bug would), runs the check and
 * prints its message; the parent wants the message to name what was
 * planted. A test per structure: the page allocator's summaries and its
 * scavenged and free bits, the lazy bits, chunk counts, page totals, the
 * page map and page info, the arena index, span states and geometry,
 * bitmaps (padding, remote bits), live counts, the remote-free word, the
 * central lists, pending stacks, the cache's own lists, free stacks
 * (marks, repeats), free objects' and the tail's marks, fresh objects,
 * the empty cache, the metadata and the statistics' sources.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cache.h"
#include "heap.h"
#include "internal.h"
#include "neap.h"
#include "pagealloc.h"
#include "sizeclass.h"
#include "../test.h"

#define KiB ((size_t)1 << 10)

#define check_ok test_heap_check

/* --- healthy heaps */

static void *keep[4096];
static size_t nkeep;

static void *thread_leaves_objects(void *arg) {
  /* Objects this thread leaves behind: its spans go to their centrals
   * when it exits, and some frees from the main thread then queue them. */
  size_t n = (size_t)(uintptr_t)arg;
  for (size_t i = 0; i < n; i++) keep[nkeep++] = neap_malloc(64 + (i % 3) * 200);
  return NULL;
}

static void run_thread(void *(*fn)(void *), size_t arg) {
  pthread_t t;
  pthread_create(&t, NULL, fn, (void *)(uintptr_t)arg);
  pthread_join(t, NULL);
}

static void test_healthy_heaps(void) {
  check_ok("empty heap");
  static void *v[20000];
  unsigned seed = 7;
  for (int round = 0; round < 8; round++) {
    for (size_t i = 0; i < 20000; i++) {
      size_t k = (size_t)rand_r(&seed) % 20000;
      if (v[k] != NULL) {
        neap_free(v[k]);
        v[k] = NULL;
        continue;
      }
      unsigned r = (unsigned)rand_r(&seed);
      size_t n = r % 16 == 0 ? r % 200000 : r % 700;
      if (r % 5 == 0) v[k] = neap_calloc(1, n);
      else if (r % 7 == 0) v[k] = neap_aligned_alloc((size_t)1 << (r % 14), n);
      else v[k] = neap_malloc(n);
      CHECK(v[k] != NULL);
      memset(v[k], 0x5a, n);
    }
    check_ok("random round");
  }
  run_thread(thread_leaves_objects, 600);
  check_ok("after a thread exited with live objects");
  for (size_t i = 0; i < nkeep; i += 2) neap_free(keep[i]); /* remote frees: pending stacks */
  check_ok("after remote frees into central spans");
  neap_release();
  check_ok("after neap_release");
  for (size_t i = 0; i < 20000; i++) neap_free(v[i]);
  check_ok("after freeing all");
  neap_thread_flush();
  check_ok("after neap_thread_flush");
  for (size_t i = 1; i < nkeep; i += 2) neap_free(keep[i]);
  nkeep = 0;
  neap_release();
  check_ok("everything freed and released");
}

/* --- planted corruptions */

/* The heap every plant starts from (made once, in the parent): objects of
 * a class whose spans have a tail, a fresh current span, spans of a thread
 * that exited (central lists), objects on this thread's free stack, a
 * large object. */
static void *small[512], *big, *orphans[256];

static void *make_orphans(void *arg) {
  (void)arg;
  for (size_t i = 0; i < 256; i++) orphans[i] = neap_malloc(96);
  return NULL;
}

static void build_heap(void) {
  for (size_t i = 0; i < 512; i++) small[i] = neap_malloc(48); /* 48 x 170 = 8160: a 32-byte tail */
  for (size_t i = 0; i < 512; i += 3) {
    neap_free(small[i]);
    small[i] = NULL;
  }
  big = neap_malloc(100 * KiB);
  run_thread(make_orphans, 0);
  CHECK(neap_malloc(2000) != NULL); /* a fresh span: objects never handed out */
  check_ok("the plants' heap");
}

static neap_span *span_of(const void *p) { return neap__span_of((uintptr_t)p); }
static neap_arena *arena_of(const void *p) { return neap__arena_of((uintptr_t)p); }
static size_t page_in_arena(const void *p) { return ((uintptr_t)p >> NEAP_PAGE_SHIFT) & (NEAP_ARENA_PAGES - 1); }
static neap_check_targets targets(void) {
  neap_check_targets t;
  neap__check_targets(&t);
  return t;
}
static void *first_live_small(void) {
  for (size_t i = 0; i < 512; i++)
    if (small[i] != NULL) return small[i];
  return NULL;
}
/* The current span of the class of `size` in this thread's cache. */
static neap_span *current_span(size_t size) { return neap__tls_cache->slot[neap__size_class(size)].span; }

typedef void plant_fn(void);

static void run_plant(void *arg) {
  ((plant_fn *)arg)();
  const char *m = neap__heap_check();
  fprintf(stderr, "%s\n", m ? m : "no finding");
}

static void expect_found(plant_fn *plant, const char *name, const char *needle) {
  char out[1024];
  int st = test_run_child(run_plant, (void *)plant, out, sizeof out);
  bool ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && strstr(out, needle) != NULL &&
            strncmp(out, "heap check: ", 12) == 0;
  if (!CHECK(ok)) fprintf(stderr, "  plant %s: want \"%s\", got \"%s\" (status %d)\n", name, needle, out, st);
}
#define PLANT(fn, needle) expect_found(fn, #fn, needle)

/* A plant made through an internal function that debug builds' own
 * assertions (NEAP_DEBUG >= 1) catch as it is made: there the assertion
 * must abort the child, elsewhere the check must find it. */
static void expect_asserted(plant_fn *plant, const char *name, const char *needle) {
  if (neap__debug_level < 1) {
    expect_found(plant, name, needle);
    return;
  }
  char out[1024];
  int st = test_run_child(run_plant, (void *)plant, out, sizeof out);
  bool ok = st != -1 && WIFSIGNALED(st) && strstr(out, "neap: assertion failed") != NULL;
  if (!CHECK(ok)) fprintf(stderr, "  plant %s: want an assertion, got \"%s\" (status %d)\n", name, out, st);
}

static void plant_pa_summary(void) {
  neap_span *s = span_of(big);
  targets().pa->sum[4][s->first_page / NEAP_CHUNK_PAGES] ^= 1;
}
static void plant_pa_scavenged(void) { neap__pa_mark_scavenged(targets().pa, span_of(big)->first_page, 1); }
static void plant_pa_free(void) { neap__pa_free(targets().pa, span_of(big)->first_page + 1, 1); }
/* The scavenger's index of the first arena, where big is. */
static void plant_lazy_bit(void) {
  size_t i = page_in_arena(big);
  CHECK_EQ(arena_of(big)->first_page, 0);
  targets().scav_lazy[i / 64] |= 1ull << (i % 64);
}
static void plant_lazy_count(void) { ++*targets().pages_lazy; }
static void plant_chunk_count(void) {
  CHECK_EQ(arena_of(big)->first_page, 0);
  targets().scav_chunk_inuse[page_in_arena(big) / NEAP_CHUNK_PAGES]--;
}
static void plant_pages_inuse(void) { ++*targets().pages_inuse; }
static void plant_pagemap_hole(void) { NEAP_STORE(&arena_of(big)->spans[page_in_arena(big) + 1], NULL); }
static void plant_pagemap_other(void) {
  NEAP_STORE(&arena_of(big)->spans[page_in_arena(big) + 2], span_of(first_live_small()));
}
static void plant_pinfo_slot(void) { NEAP_STORE(&arena_of(big)->info_slot[page_in_arena(big)], 3 * sizeof(neap_slot)); }
static void plant_pinfo_start(void) {
  void *p = first_live_small();
  NEAP_STORE(&arena_of(p)->info_start[page_in_arena(p)], NEAP_LOAD(&arena_of(p)->info_start[page_in_arena(p)]) + 16);
}
static void plant_arena_index(void) {
  uintptr_t ai = (uintptr_t)big >> NEAP_ARENA_SHIFT;
  neap_arena **l2 = NEAP_LOAD(&neap__arena_l1[ai >> NEAP_ARENA_L2_BITS]);
  __atomic_store_n(&l2[ai & ((1u << NEAP_ARENA_L2_BITS) - 1)], NULL, __ATOMIC_RELAXED);
}
static void plant_span_state(void) { atomic_store(&span_of(orphans[0])->where, NEAP_SPAN_DEAD); }
static void plant_large_state(void) { atomic_store(&span_of(big)->where, NEAP_SPAN_CENTRAL_FULL); }
static void plant_owned_state(void) { atomic_store(&span_of(orphans[0])->where, NEAP_SPAN_OWN_FULL); }
static void plant_geometry(void) { span_of(orphans[0])->nelems--; }
static void plant_padding(void) {
  neap_span *s = span_of(first_live_small());
  atomic_fetch_and(neap__span_remote(s, s->nwords - 1), ~(1ull << 63));
}
static void plant_remote_not_inuse(void) {
  neap_span *s = current_span(2000); /* its last objects are free */
  atomic_fetch_or(neap__span_remote(s, 0), 1ull << (s->nelems - 1));
}
static void plant_remote_count(void) { atomic_fetch_add(&current_span(2000)->rword, 1); }
static void plant_cached_flag(void) { atomic_fetch_and(&current_span(2000)->rword, ~NEAP_RW_CACHED); }
static void plant_notified(void) { atomic_fetch_or(&current_span(2000)->rword, NEAP_RW_NOTIFIED); }
static void plant_dead_flag(void) { atomic_fetch_or(&current_span(2000)->rword, NEAP_RW_DEAD); }
static void plant_live_count(void) { current_span(48)->countdown++; }
static void plant_inuse_bit(void) {
  neap_span *s = current_span(2000);
  atomic_fetch_or(neap__span_inuse(s, 0), 1ull << (s->nelems - 1)); /* in use, never handed out */
}
static void plant_current_list(void) { atomic_store(&current_span(48)->where, NEAP_SPAN_OWN_FULL); }
static void plant_central_link(void) {
  neap_span *s = span_of(orphans[0]);
  s->prev = s;
}
static void plant_central_list(void) {
  neap_span *s = span_of(orphans[0]);
  atomic_store(&s->where, neap__span_where(s) == NEAP_SPAN_CENTRAL_FULL ? NEAP_SPAN_CENTRAL_PARTIAL : NEAP_SPAN_CENTRAL_FULL);
}
static void plant_central_owner(void) { NEAP_STORE(&span_of(orphans[0])->owner, neap__tls_cache); }
static void plant_own_list(void) {
  /* Park the current span of 48-byte objects, then break the list's back link. */
  neap_cache *c = neap__tls_cache;
  unsigned cls = neap__size_class(48);
  for (size_t i = 0; i < 2000; i++) CHECK(neap_malloc(48) != NULL);
  neap_link *head = &c->own_full[cls];
  if (head->next != head) head->next->prev = head->next;
}
static void plant_own_count(void) {
  neap_cache *c = neap__tls_cache;
  c->nempty[neap__size_class(48)]++;
}
static void plant_stack_mark(void) {
  unsigned cls = neap__size_class(48);
  ((char *)NEAP_LOAD(&neap__tls_cache->slot[cls].top))[4] ^= 1; /* a write after free */
}
static void plant_stack_repeat(void) {
  neap_slot *slot = &neap__tls_cache->slot[neap__size_class(48)];
  void *p = NEAP_LOAD(&slot->top);
  neap__slot_push(slot, p, NEAP_LOAD(&slot->stack)); /* the same object again, past every check */
}
static void plant_stack_count(void) {
  neap_slot *slot = &neap__tls_cache->slot[neap__size_class(48)];
  NEAP_STORE(&slot->stack, NEAP_LOAD(&slot->stack) + (uint64_t)slot->cap + 1);
}
static void plant_free_mark(void) {
  /* A free object in a span: the spill of the stack put some back. */
  neap_thread_flush();
  for (size_t i = 0; i < 512; i++)
    if (small[i] != NULL) {
      neap_free(small[i]);
      neap_thread_flush();
      ((char *)small[i])[9] ^= 1; /* its mark: a write after free */
      return;
    }
}
static void plant_tail_mark(void) {
  neap_span *s = span_of(first_live_small());
  ((char *)(s->base + (uintptr_t)s->nelems * s->elemsize))[0] ^= 1; /* past the last object */
}
static void plant_fresh_write(void) {
  neap_span *s = current_span(2000);
  ((char *)s->base)[s->nelems * s->elemsize - 100] = 1; /* the last object, never handed out */
}
static void plant_empty_cache(void) { NEAP_STORE(&neap__empty_cache.slot[5].bits, 1); }
static void plant_meta(void) { *targets().meta_inuse += 64; }

static void test_planted_corruptions(void) {
  build_heap();
  PLANT(plant_pa_summary, "page allocator's summaries");
  expect_asserted(plant_pa_scavenged, "plant_pa_scavenged", "page allocator's summaries");
  PLANT(plant_pa_free, "page of a span is free in the page allocator");
  PLANT(plant_lazy_bit, "lazy bit on a page not returned");
  PLANT(plant_lazy_count, "scavenger's count of lazily returned pages");
  PLANT(plant_chunk_count, "chunk's count of pages in use");
  PLANT(plant_pages_inuse, "count of pages in spans");
  PLANT(plant_pagemap_hole, "page of a span maps to another");
  PLANT(plant_pagemap_other, "page of a span maps to another");
  PLANT(plant_pinfo_slot, "page info's class slot");
  PLANT(plant_pinfo_start, "page info's span offset");
  PLANT(plant_arena_index, "arena index does not find the arena");
  PLANT(plant_span_state, "not live");
  PLANT(plant_large_state, "not live");
  PLANT(plant_owned_state, "span on a central list is not the central's");
  PLANT(plant_geometry, "geometry");
  PLANT(plant_padding, "padding bits");
  PLANT(plant_remote_not_inuse, "freed remotely is not in use");
  PLANT(plant_remote_count, "remote-free count");
  PLANT(plant_cached_flag, "cached flag and owner differ");
  PLANT(plant_notified, "notified spans");
  PLANT(plant_dead_flag, "marked dead");
  PLANT(plant_live_count, "live count differs from its bitmap");
  PLANT(plant_inuse_bit, "window holds objects in use");
  PLANT(plant_current_list, "current span not owned as current");
  PLANT(plant_central_link, "central list links broken");
  PLANT(plant_central_list, "central list");
  PLANT(plant_central_owner, "span on a central list is not the central's");
  PLANT(plant_own_list, "own list links broken");
  PLANT(plant_own_count, "count of empty spans");
  PLANT(plant_stack_mark, "free stack lost its mark");
  PLANT(plant_stack_repeat, "twice on a free stack");
  PLANT(plant_stack_count, "more than its capacity");
  PLANT(plant_free_mark, "free object lost its mark");
  PLANT(plant_tail_mark, "tail lost its mark");
  PLANT(plant_fresh_write, "fresh span is not zero");
  PLANT(plant_empty_cache, "empty cache was written");
  PLANT(plant_meta, "metadata in use");
  check_ok("the parent's heap after all the plants");
}

/* Taking the checker's lock while holding the scavenger's work lock, which
 * ranks inside it (lock.h). Debug builds name the two ranks; release
 * builds find the same lock taken twice by one thread (the check takes the
 * work lock again) and say so, where a plain mutex would hang. */
static void take_out_of_order(void *arg) {
  (void)arg;
  neap__scav_check_hold(true);
  (void)neap__heap_check();
}

static void test_lock_order(void) {
  CHECK_ABORTS(take_out_of_order, NULL,
               neap__debug_level >= 1 ? "neap: lock order violated: taking CHECK while holding SCAV_WORK"
                                      : "neap: malloc or free called by a signal handler");
}

int main(void) {
  RUN(test_healthy_heaps);
  RUN(test_planted_corruptions);
  RUN(test_lock_order);
  return TEST_DONE();
}
