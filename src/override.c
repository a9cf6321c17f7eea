/* The drop-in malloc: glibc's names for neap's functions.
 *
 * This file is malloc.c plus the names a C library user calls: it includes
 * malloc.c, so that malloc, free, calloc and realloc are aliases of the
 * neap_ functions (the same code at the same address, not a call through
 * a wrapper), and everything lands in one object file. One object matters
 * for the static library: a program linked with libneap.a pulls this
 * object in for its first malloc and so gets the whole family at once,
 * never neap's malloc beside glibc's memalign. libneap.so and libneap.a
 * are built from this file; the native-API-only objects (the sanitizer
 * and unit-test builds) from malloc.c alone.
 *
 * What the glibc extras do here (README.md documents the same):
 *   - memalign, valloc, pvalloc, aligned_alloc: as in glibc 2.36, an
 *     alignment that is not a power of two is rounded up to one;
 *   - malloc_usable_size: neap_usable_size (0 for memory neap does not
 *     own, following NEAPDEBUG=warnforeign);
 *   - malloc_trim(pad): gives emptied spans back to the page heap and
 *     returns every free page to the OS now; 1 if any memory went back. pad is
 *     ignored: neap keeps no top-of-heap slack to trim to;
 *   - mallinfo2/mallinfo: neap's own figures in glibc's fields (see
 *     fill_mallinfo); mallinfo clamps them to int, as it must;
 *   - mallopt: accepts glibc's parameters and changes nothing (neap's
 *     knobs are NEAP_* and NEAPDEBUG), returns 1; 0 for an unknown one.
 * glibc's __libc_* entry points are aliases too: some programs and
 * libraries call them to reach "the real malloc".
 */
#include "malloc.c"

#include <limits.h>
#include <malloc.h>
#include <stdlib.h>

/* copy(): the alias carries its target's attributes (malloc, alloc_size...);
 * gcc has it, clang does not. */
#if defined(__clang__)
#define NEAP_EXPORT_ALIAS(target) __attribute__((alias(#target), visibility("default"), used))
#else
#define NEAP_EXPORT_ALIAS(target) __attribute__((alias(#target), copy(target), visibility("default"), used))
#endif

void *malloc(size_t size) NEAP_EXPORT_ALIAS(neap_malloc);
void free(void *p) NEAP_EXPORT_ALIAS(neap_free);
void *calloc(size_t n, size_t size) NEAP_EXPORT_ALIAS(neap_calloc);
void *realloc(void *p, size_t size) NEAP_EXPORT_ALIAS(neap_realloc);
int posix_memalign(void **out, size_t alignment, size_t size) NEAP_EXPORT_ALIAS(neap_posix_memalign);
size_t malloc_usable_size(void *p) NEAP_EXPORT_ALIAS(neap_usable_size);
void *__libc_malloc(size_t size) NEAP_EXPORT_ALIAS(neap_malloc);
void __libc_free(void *p) NEAP_EXPORT_ALIAS(neap_free);
void *__libc_calloc(size_t n, size_t size) NEAP_EXPORT_ALIAS(neap_calloc);
void *__libc_realloc(void *p, size_t size) NEAP_EXPORT_ALIAS(neap_realloc);
/* C23's sized frees (glibc 2.36 has none yet): checked as neap.h says. */
void free_sized(void *p, size_t size) NEAP_EXPORT_ALIAS(neap_free_sized);
void free_aligned_sized(void *p, size_t alignment, size_t size) NEAP_EXPORT_ALIAS(neap_free_aligned_sized);

#define NEAP_EXPORT __attribute__((visibility("default")))

/* glibc's memalign: any alignment, rounded up to a power of two. */
static void *memalign_any(size_t alignment, size_t size) {
  if (alignment <= NEAP_ALIGN) return neap_malloc(size);
  if (alignment > NEAP_MAX_ALLOC) {
    errno = EINVAL;
    return NULL;
  }
  if (!neap__is_pow2(alignment)) alignment = (size_t)1 << (64 - neap__clz(alignment));
  return malloc_aligned(size, alignment, false);
}

NEAP_EXPORT void *memalign(size_t alignment, size_t size) { return memalign_any(alignment, size); }
NEAP_EXPORT void *aligned_alloc(size_t alignment, size_t size) { return memalign_any(alignment, size); }
NEAP_EXPORT void *valloc(size_t size) { return memalign_any(neap__os_page_size(), size); }

NEAP_EXPORT void *pvalloc(size_t size) {
  size_t page = neap__os_page_size();
  if (size > SIZE_MAX - page) {
    errno = ENOMEM;
    return NULL;
  }
  return memalign_any(page, size == 0 ? page : neap__align_up(size, page));
}

void *__libc_memalign(size_t alignment, size_t size) NEAP_EXPORT_ALIAS(memalign);
void *__libc_valloc(size_t size) NEAP_EXPORT_ALIAS(valloc);
void *__libc_pvalloc(size_t size) NEAP_EXPORT_ALIAS(pvalloc);

NEAP_EXPORT void *reallocarray(void *p, size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return neap_realloc(p, total);
}

NEAP_EXPORT int malloc_trim(size_t pad) {
  (void)pad;
  return neap_release() != 0;
}

/* glibc's fields with neap's figures. All of neap's memory is in its
 * arenas, so large objects count in arena as well as in hblks/hblkhd
 * (glibc keeps its mmapped blocks out of arena):
 *   arena     bytes of heap held from the OS (committed, not returned)
 *   uordblks  bytes in live objects, small and large
 *   fordblks  arena - uordblks: free bytes held, in spans and free pages
 *   keepcost  free pages not yet returned: what malloc_trim would return
 *   hblks, hblkhd  live large objects (over 32 KiB) and their bytes
 *   ordblks, smblks, usmblks, fsmblks  0 (no such structures in neap) */
static void fill_mallinfo(struct mallinfo2 *mi) {
  memset(mi, 0, sizeof *mi);
  neap_stats_t s;
  neap__stats_snapshot(&s, false);
  size_t held = (size_t)(s.heap_sys - s.heap_released);
  mi->arena = held;
  mi->uordblks = (size_t)s.heap_alloc;
  mi->fordblks = held - (size_t)s.heap_alloc; /* heap_alloc <= heap_inuse <= held */
  mi->keepcost = (size_t)(s.heap_idle - s.heap_released);
  uint64_t small = 0;
  for (uint64_t i = 0; i + 1 < s.nclasses; i++) small += s.by_class[i].size * (s.by_class[i].mallocs - s.by_class[i].frees);
  const neap_stats_class_t *large = &s.by_class[s.nclasses - 1];
  mi->hblks = (size_t)(large->mallocs - large->frees);
  mi->hblkhd = (size_t)(s.heap_alloc - small);
}

NEAP_EXPORT struct mallinfo2 mallinfo2(void) {
  struct mallinfo2 mi;
  fill_mallinfo(&mi);
  return mi;
}

static int clamp_int(size_t v) { return v > INT_MAX ? INT_MAX : (int)v; }

NEAP_EXPORT struct mallinfo mallinfo(void) {
  struct mallinfo2 m2;
  fill_mallinfo(&m2);
  struct mallinfo mi = {
      .arena = clamp_int(m2.arena),
      .uordblks = clamp_int(m2.uordblks),
      .fordblks = clamp_int(m2.fordblks),
      .keepcost = clamp_int(m2.keepcost),
      .hblks = clamp_int(m2.hblks),
      .hblkhd = clamp_int(m2.hblkhd),
  };
  return mi;
}

NEAP_EXPORT int mallopt(int param, int value) {
  (void)value;
  switch (param) {
  case M_MXFAST: case M_TRIM_THRESHOLD: case M_TOP_PAD: case M_MMAP_THRESHOLD: case M_MMAP_MAX:
  case M_CHECK_ACTION: case M_PERTURB: case M_ARENA_TEST: case M_ARENA_MAX:
    return 1;
  default:
    return 0;
  }
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* glibc deprecates it; programs still call it */
struct mallinfo __libc_mallinfo(void) NEAP_EXPORT_ALIAS(mallinfo);
#pragma GCC diagnostic pop
int __libc_mallopt(int param, int value) NEAP_EXPORT_ALIAS(mallopt);
