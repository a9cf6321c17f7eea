/* The arena index and page heap, seen from outside:
 *   - every pointer neap returns maps to its span and its object start,
 *     from the start and from every interior byte we probe;
 *   - stack, static, literal, glibc-malloc'd and wild pointers map to none;
 *   - the page info gives every byte of a small span its class's slot and
 *     its offset in the span;
 *   - a freed object maps to none;
 *   - spans emptied (by their own thread or by others) go back to the page
 *     heap, so their pages serve other size classes without growth;
 *   - a large object's pages go back when it is freed;
 *   - the bitmaps' padding (bits past the last object) stays set in both
 *     bitmaps through allocation, remote frees and merges;
 *   - the page map: the heap's first arena starts its run; an arena that
 *     cannot extend the run (the address after it is taken) keeps a table
 *     of its own, and its objects are found, freed and reported the same,
 *     small objects freed by their owning thread go back to their spans
 *     as local frees.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cache.h"
#include "central.h"
#include "heap.h"
#include "neap.h"
#include "test.h"

static int static_var;

static void test_every_pointer_maps_to_its_object(void) {
  enum { N = 4000 };
  static void *ptrs[N];
  static size_t sizes[N];
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < N; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t sz = (i % 50 == 0) ? (size_t)(x % (3u << 20)) : (size_t)(x % 40000);
    sizes[i] = sz;
    ptrs[i] = (i % 7 == 0) ? neap_aligned_alloc((size_t)1 << (x % 16), sz) : neap_malloc(sz);
    CHECK(ptrs[i] != NULL);
  }
  for (int i = 0; i < N; i++) {
    uintptr_t p = (uintptr_t)ptrs[i];
    size_t usable = neap_usable_size(ptrs[i]);
    CHECK(usable >= sizes[i]);
    neap_span *s = neap__span_of(p);
    CHECK(s != NULL);
    if (s == NULL) continue;
    CHECK(p >= s->base && p < s->base + neap__span_bytes(s));
    neap_arena *a = neap__arena_of(p);
    CHECK(a != NULL && a->base == (p & ~(uintptr_t)(NEAP_ARENA_SIZE - 1)));
    size_t probes[] = {0, 1, usable / 2, usable - 1};
    for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
      CHECK_PTR_EQ(neap__object_start((void *)(p + probes[k])), (void *)p);
      CHECK(neap_owns((void *)(p + probes[k])));
    }
  }
  for (int i = 0; i < N; i++) {
    void *p = ptrs[i];
    neap_free(p);
    CHECK_PTR_EQ(neap__object_start(p), NULL);
  }
}

static void test_foreign_pointers_map_to_none(void) {
  int local = 0;
  void *g = malloc(100); /* glibc: this test does not override malloc */
  void *big = malloc(10 << 20);
  const void *foreign[] = {&local, &static_var, "literal", g, big, (void *)test_foreign_pointers_map_to_none,
                           NULL, (void *)(uintptr_t)1, (void *)~(uintptr_t)0, (void *)((uintptr_t)1 << 60),
                           (void *)((uintptr_t)1 << 47)};
  for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
    CHECK(!neap_owns(foreign[i]));
    CHECK_PTR_EQ(neap__span_of((uintptr_t)foreign[i]), NULL);
    CHECK_PTR_EQ(neap__object_start(foreign[i]), NULL);
  }
  free(g);
  free(big);
}

static void test_arenas_are_aligned_and_placed(void) {
  void *p = neap_malloc(100);
  uintptr_t a = (uintptr_t)p;
  neap_heap_stats st;
  neap__heap_stats(&st);
  CHECK(st.arenas >= 1);
  CHECK_EQ(st.bytes_reserved % NEAP_ARENA_SIZE, 0);
  /* Under sanitizers the kernel may place the heap elsewhere; say where. */
  fprintf(stderr, "heap starts near %#lx (hint 0x200000000000)\n", (unsigned long)(a & ~(uintptr_t)(NEAP_ARENA_SIZE - 1)));
  neap_free(p);
}

enum { NSMALL = 200000 };
static void *small_objs[NSMALL];

static void *free_odd_half(void *arg) {
  (void)arg;
  for (int i = 1; i < NSMALL; i += 2) neap_free(small_objs[i]);
  return NULL;
}

static void test_empty_spans_serve_other_classes(void) {
  neap_heap_stats before, full, after, end;
  neap__heap_stats(&before);
  /* 200k x 320 B ~ 64 MiB in one class; half freed here, half by another
   * thread (remote frees into spans this thread holds or has handed back). */
  for (int i = 0; i < NSMALL; i++) {
    small_objs[i] = neap_malloc(320);
    CHECK(small_objs[i] != NULL);
  }
  neap__heap_stats(&full);
  CHECK(full.pages_inuse >= before.pages_inuse + (NSMALL * 320u) / NEAP_PAGE_SIZE);
  pthread_t t;
  pthread_create(&t, NULL, free_odd_half, NULL);
  for (int i = 0; i < NSMALL; i += 2) neap_free(small_objs[i]);
  pthread_join(t, NULL);
  neap_thread_flush();
  /* The same amount of memory in another class must not grow the heap. */
  for (int i = 0; i < NSMALL / 4; i++) {
    small_objs[i] = neap_malloc(1280);
    CHECK(small_objs[i] != NULL);
  }
  neap__heap_stats(&after);
  CHECK(after.pages_grown <= full.pages_grown);
  if (after.pages_grown > full.pages_grown)
    fprintf(stderr, "heap grew from %lu to %lu pages\n", (unsigned long)full.pages_grown,
            (unsigned long)after.pages_grown);
  for (int i = 0; i < NSMALL / 4; i++) neap_free(small_objs[i]);
  neap_thread_flush();
  neap__central_reclaim(NEAP_RECLAIM_SHORT);
  neap__heap_stats(&end);
  CHECK_EQ(end.pages_inuse, 0); /* every span went back: nothing is live, no cache holds one */
}

static void test_large_free_returns_pages_at_once(void) {
  neap_heap_stats a, b, c;
  neap__heap_stats(&a);
  void *p = neap_malloc(10 << 20);
  CHECK(p != NULL);
  neap__heap_stats(&b);
  CHECK_EQ(b.pages_inuse - a.pages_inuse, (10u << 20) / NEAP_PAGE_SIZE);
  neap_free(p);
  neap__heap_stats(&c);
  CHECK_EQ(c.pages_inuse, a.pages_inuse);
  CHECK_EQ(c.pages_free - a.pages_free, c.pages_grown - a.pages_grown);
}

/* A pointer into the tail a span leaves after its last object, even one
 * that falls on an object boundary, is not an object: freeing it must
 * abort, not free a padding slot that would later be handed out past the
 * span's end. */
/* The page info the free fast path reads instead of the span (span.h):
 * for every byte of a span of every small class, the class's slot and
 * the byte's offset in the span, exact, so the fast path's object-start
 * test holds at object starts and only there; the pages of a large span
 * name class 0's slot, whose stack holds nothing. */
static void test_page_info_of_every_byte(void) {
  neap_cache *c = neap__tls_cache;
  CHECK(c != NULL);
  void *large = neap_malloc(NEAP_SMALL_MAX + NEAP_PAGE_SIZE);
  for (unsigned cls = 1; cls < NEAP_NUM_CLASSES && c != NULL; cls++) {
    void *p = neap_malloc(neap__class_size[cls]);
    neap_span *s = neap__span_of((uintptr_t)p);
    CHECK(s != NULL && s->sizeclass == cls);
    if (s == NULL) continue;
    uint32_t size = neap__class_size[cls], divmul = c->slot[cls].divmul;
    CHECK_EQ(divmul, neap__class_divmul[cls]);
    size_t bad_slot = 0, bad_offset = 0, bad_start = 0;
    for (uintptr_t off = 0; off < neap__span_bytes(s); off++) {
      uintptr_t page;
      if (!neap__pagemap_reach(s->base + off, &page)) {
        bad_slot++;
        continue;
      }
      bad_slot += neap__pinfo_slot(c, page) != &c->slot[cls];
      uint32_t got = neap__pinfo_offset(page, s->base + off);
      bad_offset += got != off;
      bad_start += (got * divmul < divmul) != (off % size == 0);
    }
    if (!CHECK_EQ(bad_slot + bad_offset + bad_start, 0))
      fprintf(stderr, "  class %u: %zu bytes with the wrong slot, %zu the wrong offset, %zu the wrong start\n",
              cls, bad_slot, bad_offset, bad_start);
    neap_free(p);
  }
  uintptr_t page;
  for (uintptr_t off = 0; off < NEAP_SMALL_MAX + NEAP_PAGE_SIZE; off += NEAP_PAGE_SIZE / 2) {
    CHECK(neap__pagemap_reach((uintptr_t)large + off, &page));
    CHECK_PTR_EQ(neap__pinfo_slot(c, page), &c->slot[0]);
  }
  neap_free(large);
}

static void free_tail_pointer(void *arg) {
  (void)arg;
  void *keep = neap_malloc(48); /* class 48: 170 objects in one 8 KiB page, 32 bytes of tail */
  neap_span *s = neap__span_of((uintptr_t)keep);
  neap_free((void *)(s->base + (uintptr_t)s->nelems * s->elemsize));
}

static void test_tail_pointer_aborts(void) {
  void *p = neap_malloc(48);
  neap_span *s = neap__span_of((uintptr_t)p);
  CHECK(s != NULL && s->elemsize == 48 && (uintptr_t)s->nelems * 48 < neap__span_bytes(s));
  CHECK_PTR_EQ(neap__object_start((void *)(s->base + (uintptr_t)s->nelems * s->elemsize)), NULL);
  CHECK_ABORTS(free_tail_pointer, NULL, "neap: free of an interior pointer");
  neap_free(p);
}

/* The bits past a span's last object are set in both bitmaps for the
 * span's whole life (span.c): no scan may take them for free objects, no
 * count for live ones, and a merge of other threads' frees must leave
 * them. Class 48: 170 objects and a tail, in 3 bitmap words. */
static void *free_on_other_thread(void *p) {
  neap_free(p);
  return NULL;
}

static void check_padding(neap_span *s) {
  for (unsigned i = s->nelems; i < s->nwords * 64u; i++) {
    CHECK(NEAP_LOAD(neap__span_inuse(s, i >> 6)) >> (i & 63) & 1);
    CHECK(NEAP_LOAD(neap__span_remote(s, i >> 6)) >> (i & 63) & 1);
    CHECK(!neap__span_held(s, i));
  }
}

static void test_bitmap_padding(void) {
  void *first = neap_malloc(48);
  neap_span *s = neap__span_of((uintptr_t)first);
  CHECK(s != NULL);
  if (s == NULL) return;
  CHECK(s->nelems == 170 && s->nwords == 3);
  check_padding(s);
  /* Fill the span: every object but ours was free, so live counts only
   * what we hold, and the next word with room is none. */
  void *objs[170];
  unsigned n = 0;
  objs[n++] = first;
  while (n < 170) {
    void *p = neap_malloc(48);
    if (neap__span_of((uintptr_t)p) != s) {
      neap_free(p);
      break;
    }
    CHECK((uintptr_t)p < s->base + (uintptr_t)s->nelems * s->elemsize); /* never the tail */
    objs[n++] = p;
  }
  unsigned held = 0;
  for (unsigned i = 0; i < s->nelems; i++) held += neap__span_held(s, i);
  CHECK_EQ(neap__span_live(s), held);
  CHECK(held >= n);
  /* A free by another thread sets a remote bit; the owner's merge takes
   * exactly that one and keeps the padding. */
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, free_on_other_thread, objs[n - 1]), 0);
  pthread_join(t, NULL);
  CHECK_EQ(atomic_load(&s->rword) & NEAP_RW_COUNT_MASK, 1);
  unsigned merged = neap__span_merge_remote(s);
  CHECK_EQ(merged, 1);
  s->countdown -= (int32_t)merged; /* as the cache does with what it merges (cache.c: add_live) */
  check_padding(s);
  CHECK_EQ(neap__span_live(s), held - 1);
  for (unsigned i = 0; i + 1 < n; i++) neap_free(objs[i]);
}

/* A thread's last pthread key destructors may allocate after neap's own
 * destructor gave its cache back (glibc runs up to four rounds). Those
 * allocations must not leave a cache behind that nothing destroys: after
 * the thread is gone and the last object freed, no span may be left. */
static pthread_key_t late_key;
static void *late_block;

/* glibc runs PTHREAD_DESTRUCTOR_ITERATIONS (4) rounds. ThreadSanitizer
 * finishes its own view of the thread before the last one, and any mutex
 * taken there crashes inside TSan itself; under it we stop at round 3,
 * which takes neap down the same path (its cache is gone since round 1). */
#if defined(__SANITIZE_THREAD__)
#define LATE_ROUNDS 3
#else
#define LATE_ROUNDS 4
#endif

static void late_destructor(void *v) {
  long round = (long)(intptr_t)v;
  neap_free(late_block);
  late_block = neap_malloc(200);
  if (late_block != NULL) memset(late_block, 7, 200);
  if (round < LATE_ROUNDS) pthread_setspecific(late_key, (void *)(intptr_t)(round + 1));
}

static void *late_thread(void *arg) {
  (void)arg;
  neap_free(neap_malloc(10)); /* neap's key is made before the test's */
  pthread_setspecific(late_key, (void *)1);
  return NULL;
}

static void test_allocations_after_thread_exit(void) {
  pthread_key_create(&late_key, late_destructor);
  pthread_t t;
  pthread_create(&t, NULL, late_thread, NULL);
  pthread_join(t, NULL);
  CHECK(late_block != NULL);
  neap_free(late_block);
  neap_thread_flush();
  neap__central_reclaim(NEAP_RECLAIM_SHORT);
  neap_heap_stats st;
  neap__heap_stats(&st);
  CHECK_EQ(st.pages_inuse, 0);
  CHECK_EQ(neap__heap_live_bytes(), 0);
  pthread_key_delete(late_key);
}

/* A block of size 0 with an alignment above a page is one page: freeing it
 * with its size (0) must be accepted. */
static void test_sized_free_of_zero_size_blocks(void) {
  void *p = neap_aligned_alloc(16384, 0);
  CHECK(p != NULL && ((uintptr_t)p & 16383) == 0);
  neap_free_aligned_sized(p, 16384, 0);
  void *q = NULL;
  CHECK_EQ(neap_posix_memalign(&q, 65536, 0), 0);
  neap_free_sized(q, 0);
  neap_free_sized(neap_malloc(0), 0);
}

static bool off_the_run(const void *p) {
  return (uintptr_t)p - NEAP_LOAD(&neap__pagemap.base) >= NEAP_LOAD(&neap__pagemap.size);
}

/* x, a 1000-byte object off the run in this thread's current span: its
 * free goes on the thread's free stack (x is free to the program at once,
 * still in use to its span); once the stack spills it, it goes back as a
 * local free (the in-use bit clears; nothing goes through the remote
 * bitmap), and the object comes back before the span's end. What it
 * allocates goes to out[*n], which has room for max. */
static void check_local_free_off_the_run(void *x, void **out, size_t *n, size_t max) {
  neap_span *s = neap__span_of((uintptr_t)x);
  CHECK(s != NULL);
  if (s == NULL) return;
  CHECK(s->elemsize >= 1000 && neap__span_of_mapped((uintptr_t)x) == NULL);
  CHECK(NEAP_LOAD(&s->owner) == neap__tls_cache);
  unsigned idx = (unsigned)(((uintptr_t)x - s->base) / s->elemsize);
  CHECK(neap__span_held(s, idx));
  /* Objects to free after x, enough to push it off the stack: it grows
   * to its most, and the next free gives back its older half. */
  unsigned cap = neap__tls_cache->slot[s->sizeclass].cap_max;
  void **later = neap_malloc(cap * sizeof *later);
  CHECK(later != NULL);
  if (later == NULL) return;
  for (unsigned i = 0; i < cap; i++) {
    later[i] = neap_malloc(1000);
    CHECK(later[i] != NULL && later[i] != x);
  }
  memset(x, 0x5a, 1000);
  neap_free(x);
  CHECK(neap__object_start(x) == NULL); /* freed: on the stack */
  CHECK(neap__span_held(s, idx));
  for (unsigned i = 0; i < cap; i++) neap_free(later[i]);
  CHECK(!neap__span_held(s, idx)); /* spilled, as a local free */
  CHECK((NEAP_LOAD(neap__span_remote(s, idx >> 6)) >> (idx & 63) & 1) == 0);
  CHECK_EQ(atomic_load(&s->rword) & NEAP_RW_COUNT_MASK, 0);
  bool reused = false;
  for (unsigned i = 0; i <= s->nelems + cap && !reused && *n < max; i++) {
    void *y = neap_malloc(1000);
    CHECK(y != NULL);
    if (y == NULL) break;
    reused = y == x;
    out[(*n)++] = y;
  }
  CHECK(reused);
  neap_free(later);
}

/* With the run full, small spans come from arenas off it, and their
 * owner's frees must stay local (2fb71b7 sent them down the remote path).
 * The run is filled with 1 MiB blocks, then its last free pages with
 * 1000-byte objects, until both land off the run. */
static void small_objects_off_the_run(void) {
  enum { MAX_BLOCKS = 4096, MAX_SMALL = 1 << 16 };
  static void *blocks[MAX_BLOCKS], *small[MAX_SMALL];
  size_t nb = 0, ns = 0;
  while (nb < MAX_BLOCKS && (nb == 0 || !off_the_run(blocks[nb - 1]))) {
    blocks[nb] = neap_malloc((size_t)1 << 20);
    CHECK(blocks[nb] != NULL);
    if (blocks[nb++] == NULL) break;
  }
  while (ns + 64 < MAX_SMALL && (ns == 0 || !off_the_run(small[ns - 1]))) {
    small[ns] = neap_malloc(1000);
    CHECK(small[ns] != NULL);
    if (small[ns++] == NULL) break;
  }
  CHECK(ns > 0 && off_the_run(small[ns - 1]));
  if (ns > 0 && off_the_run(small[ns - 1])) {
    ns--;
    check_local_free_off_the_run(small[ns], small, &ns, MAX_SMALL);
  }
  for (size_t i = 0; i < ns; i++) neap_free(small[i]);
  for (size_t i = 0; i < nb; i++) neap_free(blocks[i]);
}

static void test_arena_off_the_page_map(void) {
  void *p = neap_malloc(100);
  CHECK_PTR_EQ(neap__span_of_mapped((uintptr_t)p), neap__span_of((uintptr_t)p));
  CHECK(neap__span_of((uintptr_t)p) != NULL);
  /* Take the address space right after the run, so the next arena cannot
   * extend it. */
  uintptr_t end = NEAP_LOAD(&neap__pagemap.base) + NEAP_LOAD(&neap__pagemap.size);
  size_t wall = (size_t)1 << 30;
  void *w = mmap((void *)end, wall, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (w != (void *)end) {
    fprintf(stderr, "could not take %#lx (got %p): skipped\n", (unsigned long)end, w);
    if (w != MAP_FAILED) munmap(w, wall);
    neap_free(p);
    return;
  }
  size_t big = (size_t)600 << 20; /* more than the arenas so far have left */
  unsigned char *q = neap_malloc(big);
  CHECK(q != NULL);
  if (q != NULL) {
    uintptr_t a = (uintptr_t)q;
    CHECK(a - NEAP_LOAD(&neap__pagemap.base) >= NEAP_LOAD(&neap__pagemap.size)); /* off the run */
    CHECK_PTR_EQ(neap__span_of_mapped(a), NULL);
    neap_span *s = neap__span_of(a + big - 1);
    CHECK(s != NULL && s->base == a);
    CHECK(neap_owns(q));
    CHECK_PTR_EQ(neap__object_start(q + big / 2), q);
    CHECK(neap_usable_size(q) >= big);
    q[0] = 1;
    q[big - 1] = 2;
    small_objects_off_the_run();
    neap_free(q); /* through the slow path's lookup */
    CHECK_PTR_EQ(neap__span_of(a), NULL);
  }
  munmap(w, wall);
  neap_free(p);
}

int main(void) {
  RUN(test_every_pointer_maps_to_its_object);
  RUN(test_foreign_pointers_map_to_none);
  RUN(test_arenas_are_aligned_and_placed);
  RUN(test_empty_spans_serve_other_classes);
  RUN(test_large_free_returns_pages_at_once);
  RUN(test_page_info_of_every_byte);
  RUN(test_tail_pointer_aborts);
  RUN(test_bitmap_padding);
  RUN(test_allocations_after_thread_exit);
  RUN(test_sized_free_of_zero_size_blocks);
  RUN(test_arena_off_the_page_map);
  CHECK_EQ(neap__heap_live_bytes(), 0);
  return TEST_DONE();
}
