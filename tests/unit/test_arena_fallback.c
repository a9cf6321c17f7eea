/* When the kernel refuses every hint, neap still works.
 *
 * Before neap's first allocation this test occupies all sixteen addresses
 * arena.c asks for (0x200000000000 + i TiB), so every arena must come from
 * the kernel's own placement: over-reserved, trimmed to 64 MiB alignment,
 * outside the flat window, found through the two-level index and the page
 * map (whose run starts at the first arena, wherever it is). Then it
 * runs objects of every kind through the heap, including a large object
 * that needs several arenas at once.
 */
#include <sys/mman.h>

#include "cache.h"
#include "heap.h"
#include "neap.h"
#include "test.h"

#define HINT_BASE ((uintptr_t)0x200000000000ull)
#define TIB ((uintptr_t)1 << 40)

static void *blocks[16];

static void occupy_hints(void) {
  for (int i = 0; i < 16; i++) {
    void *want = (void *)(HINT_BASE + (uintptr_t)i * TIB);
    void *p = mmap(want, NEAP_ARENA_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    blocks[i] = p;
    if (p != want) fprintf(stderr, "could not occupy %p (got %p): the kernel placed it elsewhere\n", want, p);
  }
}

static int in_blocked(uintptr_t p) {
  for (int i = 0; i < 16; i++)
    if (p >= (uintptr_t)blocks[i] && p < (uintptr_t)blocks[i] + NEAP_ARENA_SIZE) return 1;
  return 0;
}

static void test_heap_lives_elsewhere(void) {
  enum { N = 20000 };
  static void *ptrs[N];
  for (int i = 0; i < N; i++) {
    size_t sz = (size_t)(i % 97) * 37 + (i % 1000 == 0 ? 300000u : 0u);
    ptrs[i] = neap_malloc(sz);
    CHECK(ptrs[i] != NULL);
    if (ptrs[i] == NULL) continue;
    uintptr_t a = (uintptr_t)ptrs[i];
    CHECK(!in_blocked(a));
    CHECK(a - NEAP_HEAP_WINDOW >= ((uintptr_t)1 << NEAP_HEAP_WINDOW_SHIFT)); /* outside the window */
    CHECK(neap_owns(ptrs[i]));
    CHECK_PTR_EQ(neap__object_start((char *)ptrs[i] + sz / 2), ptrs[i]);
    memset(ptrs[i], (int)(i & 0xff), sz);
  }
  for (int i = 0; i < N; i++) {
    size_t sz = (size_t)(i % 97) * 37 + (i % 1000 == 0 ? 300000u : 0u);
    unsigned char *p = ptrs[i];
    if (p && sz) CHECK(p[0] == (unsigned char)(i & 0xff) && p[sz - 1] == (unsigned char)(i & 0xff));
    neap_free(p);
  }
  for (int i = 0; i < 16; i++) CHECK(!neap_owns(blocks[i]));
}

static void test_multi_arena_object(void) {
  size_t big = (size_t)200 << 20; /* needs four arenas reserved at once */
  unsigned char *p = neap_malloc(big);
  CHECK(p != NULL);
  if (p == NULL) return;
  p[0] = 1;
  p[big / 2] = 2;
  p[big - 1] = 3;
  CHECK(neap_usable_size(p) >= big);
  CHECK_PTR_EQ(neap__object_start(p + big - 1), p);
  p = neap_realloc(p, big + ((size_t)70 << 20));
  CHECK(p != NULL && p[0] == 1 && p[big / 2] == 2 && p[big - 1] == 3);
  neap_free(p);
  neap_thread_flush(); /* the cache's empty current spans go back too */
  neap_heap_stats st;
  neap__heap_stats(&st);
  CHECK(st.arenas >= 4);
  CHECK_EQ(st.pages_inuse, 0);
}

int main(void) {
  occupy_hints(); /* before neap's first allocation */
  RUN(test_heap_lives_elsewhere);
  RUN(test_multi_arena_object);
  CHECK_EQ(neap__heap_live_bytes(), 0);
  return TEST_DONE();
}
