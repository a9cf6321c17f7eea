/* family: the whole malloc family as a drop-in replacement, tested twice:
 *   - built against glibc and run with LD_PRELOAD=build/libneap.so
 *     (test_preload_family), and
 *   - linked with build/libneap.a, no preload (test_link_static): the
 *     link-time override.
 * Either way, malloc and everything libc allocates internally must come
 * from neap's heap (neap_owns, found with dlsym when preloaded), and every
 * glibc extra must do what README.md says it does.
 */
#include <dlfcn.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"

#ifdef NEAP_LINKED
#include "neap.h"
#endif

static int (*owns)(const void *);

/* An allocation before main, from a constructor: neap must be ready for it
 * (preloaded, the dynamic loader has allocated through neap even earlier). */
static char *early;
__attribute__((constructor)) static void allocate_early(void) { early = strdup("made before main"); }

/* Hide a value from the optimiser (it would fold calls it knows fail). */
static size_t opaque(size_t v) {
  __asm__ volatile("" : "+r"(v));
  return v;
}

static void test_everything_is_neaps(void) {
  CHECK(early != NULL && owns(early) && strcmp(early, "made before main") == 0);
  free(early);
  char *p = malloc(10);
  if (p == NULL) abort();
  memset(p, 1, 10);
  CHECK(owns(p));
  char *s = strdup("libc allocates through neap too");
  CHECK(owns(s));
  char *line = NULL;
  size_t cap = 0;
  FILE *f = fopen("/proc/self/maps", "r");
  CHECK(f != NULL);
  CHECK(getline(&line, &cap, f) > 0);
  CHECK(owns(line));
  fclose(f);
  extern void *__libc_malloc(size_t);
  extern void __libc_free(void *);
  void *q = __libc_malloc(100); /* "the real malloc" is neap's as well */
  CHECK(owns(q));
  __libc_free(q);
  free(line);
  free(s);
  free(p);
}

static void test_basics(void) {
  free(NULL);
  char *p = realloc(NULL, 10);
  CHECK(p != NULL && owns(p));
  if (p == NULL) return;
  memcpy(p, "123456789", 10);
  p = realloc(p, 100000);
  CHECK(p != NULL && strcmp(p, "123456789") == 0);
  CHECK(realloc(p, 0) == NULL); /* frees, as glibc does */
  unsigned char *z = calloc(1000, 10);
  CHECK(z != NULL);
  size_t nonzero = 0;
  for (size_t i = 0; i < 10000; i++) nonzero += z[i] != 0;
  CHECK_EQ(nonzero, 0);
  CHECK(malloc_usable_size(z) >= 10000);
  free(z);
  CHECK_EQ(malloc_usable_size(NULL), 0);
  int on_stack = 0;
  CHECK_EQ(malloc_usable_size(&on_stack), 0); /* not ours: 0, no abort */
  errno = 0;
  CHECK(calloc(opaque(SIZE_MAX / 2), 4) == NULL);
  CHECK_ERRNO(ENOMEM);
}

static void test_reallocarray(void) {
  errno = 0;
  CHECK(reallocarray(NULL, opaque(SIZE_MAX / 4), 8) == NULL);
  CHECK_ERRNO(ENOMEM);
  int *a = reallocarray(NULL, 10, sizeof(int));
  CHECK(a != NULL);
  for (int i = 0; i < 10; i++) a[i] = i;
  a = reallocarray(a, 10000, sizeof(int));
  CHECK(a != NULL && a[9] == 9);
  free(a);
}

static void test_alignment(void) {
  for (size_t al = sizeof(void *); al <= ((size_t)1 << 22); al *= 2) {
    void *p = NULL;
    CHECK_EQ(posix_memalign(&p, al, 100), 0);
    CHECK(p != NULL && ((uintptr_t)p & (al - 1)) == 0 && owns(p));
    free(p);
    p = aligned_alloc(al, 3 * al);
    CHECK(p != NULL && ((uintptr_t)p & (al - 1)) == 0);
    free(p);
    p = memalign(al, 1);
    CHECK(p != NULL && ((uintptr_t)p & (al - 1)) == 0);
    free(p);
  }
  void *p = (void *)1;
  CHECK_EQ(posix_memalign(&p, 24, 10), EINVAL);
  CHECK(p == (void *)1);
  /* glibc 2.36 rounds an alignment that is not a power of two up. */
  p = memalign(opaque(48), 100);
  CHECK(p != NULL && ((uintptr_t)p & 63) == 0);
  free(p);
  p = aligned_alloc(opaque(3000), 10);
  CHECK(p != NULL && ((uintptr_t)p & 4095) == 0);
  free(p);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  p = valloc(10);
  CHECK(p != NULL && ((uintptr_t)p & (page - 1)) == 0);
  free(p);
  p = pvalloc(1);
  CHECK(p != NULL && ((uintptr_t)p & (page - 1)) == 0 && malloc_usable_size(p) >= page);
  free(p);
  errno = 0;
  CHECK(pvalloc(opaque(SIZE_MAX - 10)) == NULL);
  CHECK_ERRNO(ENOMEM);
  errno = 0;
  CHECK(memalign(opaque(SIZE_MAX / 2 + 2), 10) == NULL);
  CHECK(errno == EINVAL || errno == ENOMEM);
}

static void test_mallopt_mallinfo(void) {
  CHECK_EQ(mallopt(M_ARENA_MAX, 1), 1);
  CHECK_EQ(mallopt(M_MMAP_THRESHOLD, 1 << 20), 1);
  CHECK_EQ(mallopt(12345, 1), 0);
  struct mallinfo2 a = mallinfo2();
  void *big = malloc(3 << 20);
  CHECK(big != NULL);
  memset(big, 1, 3 << 20);
  struct mallinfo2 b = mallinfo2();
  CHECK(b.uordblks >= a.uordblks + (3 << 20));
  CHECK_EQ(b.hblks, a.hblks + 1);
  CHECK(b.hblkhd >= a.hblkhd + (3 << 20));
  CHECK(b.arena >= b.uordblks);
  CHECK_EQ(b.fordblks, b.arena - b.uordblks);
  free(big);
  struct mallinfo2 c = mallinfo2();
  CHECK_EQ(c.uordblks, a.uordblks);
  CHECK_EQ(c.hblks, a.hblks);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo old = mallinfo();
#pragma GCC diagnostic pop
  CHECK_EQ((size_t)old.uordblks, c.uordblks);
}

static void test_malloc_trim(void) {
  enum { N = 96 };
  void *blocks[N];
  for (int i = 0; i < N; i++) {
    blocks[i] = malloc(1 << 20);
    CHECK(blocks[i] != NULL);
    memset(blocks[i], 0x5a, 1 << 20);
  }
  size_t before = test_rss_bytes();
  for (int i = 0; i < N; i++) free(blocks[i]);
  CHECK(mallinfo2().keepcost >= (size_t)(N - 1) << 20);
  CHECK_EQ(malloc_trim(0), 1);
  size_t after = test_rss_bytes();
  CHECK(after + ((size_t)(N - 16) << 20) <= before);
  if (after + ((size_t)(N - 16) << 20) > before)
    fprintf(stderr, "  RSS %zu MiB before trim, %zu MiB after\n", before >> 20, after >> 20);
  CHECK_EQ(mallinfo2().keepcost, 0);
  CHECK_EQ(malloc_trim(0), 0); /* nothing left to give back */
  void *again = malloc(1 << 20); /* returned pages serve again, and read as zero */
  CHECK(again != NULL && ((unsigned char *)again)[12345] == 0);
  free(again);
}

int main(void) {
#ifdef NEAP_LINKED
  owns = neap_owns;
#else
  owns = (int (*)(const void *))dlsym(RTLD_DEFAULT, "neap_owns");
  if (owns == NULL) {
    fprintf(stderr, "family: neap_owns not found: run me with LD_PRELOAD=libneap.so\n");
    return 1;
  }
#endif
  RUN(test_everything_is_neaps);
  RUN(test_basics);
  RUN(test_reallocarray);
  RUN(test_alignment);
  RUN(test_mallopt_mallinfo);
  RUN(test_malloc_trim);
  return TEST_DONE();
}
