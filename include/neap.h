/* neap: a memory manager for C and C++ built on the Go runtime's allocator.
 *
 * The native API below has C's semantics exactly, with neap_ in front:
 *   - every pointer returned is aligned to 16 bytes (max_align_t);
 *   - neap_malloc(0) returns a unique pointer that can be freed;
 *   - out of memory returns NULL with errno = ENOMEM, and neap keeps working;
 *   - neap_calloc whose n*size overflows returns NULL with errno = ENOMEM,
 *     and calloc'd memory is zero even when it is reused;
 *   - neap_realloc keeps the contents, stays in place when the new size fits
 *     the same block, and behaves as neap_malloc when p is NULL (whatever
 *     the size); for p != NULL and size 0 it frees the block and returns
 *     NULL without touching errno, as glibc
 *     does (C17 leaves the choice to the implementation, and programs
 *     written against glibc rely on this one);
 *   - neap_aligned_alloc and neap_posix_memalign accept any power-of-two
 *     alignment (tested up to 64 MiB); neap_posix_memalign returns EINVAL
 *     for an alignment that is not a power-of-two multiple of sizeof(void *).
 *
 * Misuse never corrupts the heap silently. neap_free(NULL) does nothing.
 * neap_free of a pointer inside neap's heap that is not the start of a
 * live object (a double free, an interior pointer) prints one line
 * "neap: <what> <pointer>" to stderr and aborts. These checks are on in
 * every build.
 *
 * Memory outside neap's heap (the stack, static data, another allocator's
 * blocks, the dynamic loader's early allocations, which a preloaded neap
 * meets legitimately) is left alone: neap_free ignores it,
 * neap_usable_size returns 0, neap_realloc returns NULL with errno EINVAL
 * and leaves the block as it was. NEAPDEBUG=warnforeign=1 prints one
 * warning the first time; warnforeign=2 treats it as misuse and aborts.
 */
#ifndef NEAP_H
#define NEAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define NEAP_API __attribute__((visibility("default")))
#define NEAP_MALLOC_ATTR __attribute__((malloc, warn_unused_result))
#define NEAP_ALLOC_SIZE(...) __attribute__((alloc_size(__VA_ARGS__)))
#else
#define NEAP_API
#define NEAP_MALLOC_ATTR
#define NEAP_ALLOC_SIZE(...)
#endif

#define NEAP_VERSION_MAJOR 0
#define NEAP_VERSION_MINOR 1
#define NEAP_VERSION_PATCH 0
#define NEAP_VERSION "0.1.0"

NEAP_API void *neap_malloc(size_t size) NEAP_MALLOC_ATTR NEAP_ALLOC_SIZE(1);
NEAP_API void *neap_calloc(size_t n, size_t size) NEAP_MALLOC_ATTR NEAP_ALLOC_SIZE(1, 2);
NEAP_API void *neap_realloc(void *p, size_t size) NEAP_ALLOC_SIZE(2);
NEAP_API void neap_free(void *p);
NEAP_API void *neap_aligned_alloc(size_t alignment, size_t size) NEAP_MALLOC_ATTR NEAP_ALLOC_SIZE(2);
NEAP_API int neap_posix_memalign(void **out, size_t alignment, size_t size);

/* The number of bytes the block at p can hold (>= the size asked for);
 * 0 for NULL and for memory outside neap's heap. Aborts like neap_free for
 * a pointer into neap's heap that is not a live object. */
NEAP_API size_t neap_usable_size(const void *p);

/* Sized free: size is what was asked for (by malloc, or by the realloc
 * that made the block). A size the block cannot hold, or for a block of
 * over 32 KiB one that is a page or more short of it, aborts like a bad
 * free: it catches C++ sized-delete mismatches. */
NEAP_API void neap_free_sized(void *p, size_t size);

/* C23's free_aligned_sized: as neap_free_sized, and the block must be
 * aligned to `alignment`. */
NEAP_API void neap_free_aligned_sized(void *p, size_t alignment, size_t size);

/* 1 if p points into memory neap manages (anywhere inside its arenas),
 * else 0. Never aborts; O(1). */
NEAP_API int neap_owns(const void *p);

/* Hands this thread's cache back to the shared heap now (threads do it
 * automatically when they exit). */
NEAP_API void neap_thread_flush(void);

/* Returns every free page neap holds to the OS now, whatever the release
 * delay, and takes back the empty spans thread caches keep (Go's
 * debug.FreeOSMemory). Returns the bytes that went back. The drop-in
 * library's malloc_trim calls it. */
NEAP_API size_t neap_release(void);

/* --- statistics
 * One list of fields makes the struct (and, later, its printers).
 * X(name, unit, help); every field is a uint64_t. */
#define NEAP_STATS_FIELDS(X)                                                                   \
  X(heap_alloc, bytes, "bytes in live objects")                                                \
  X(total_alloc, bytes, "bytes allocated, cumulative")                                         \
  X(mallocs, objects, "objects allocated, cumulative")                                         \
  X(frees, objects, "objects freed, cumulative")                                               \
  X(heap_objects, objects, "live objects: mallocs - frees")                                    \
  X(heap_sys, bytes, "heap memory obtained from the OS: heap_inuse + heap_idle")               \
  X(heap_inuse, bytes, "bytes in spans with live objects (or kept for them)")                  \
  X(heap_idle, bytes, "bytes in free pages, returned or not")                                  \
  X(heap_released, bytes, "free pages returned to the OS (or never touched)")                  \
  X(heap_released_resident, bytes,                                                             \
    "returned with MADV_FREE and not reused since: may still count in RSS until the kernel "   \
    "needs the memory (an upper bound)")                                                       \
  X(metadata_sys, bytes, "metadata mapped: spans, caches, arena index, page allocator")        \
  X(sys, bytes, "all memory neap mapped read-write: heap_sys + metadata_sys")                  \
  X(held, bytes, "what neap holds from the OS: sys - heap_released (what the limit bounds)")   \
  X(memlimit, bytes, "the memory limit on held (0: none)")                                     \
  X(memlimit_source, enum, "where the limit came from: 0 none, 1 NEAP_MEMLIMIT, 2 cgroup")     \
  X(memlimit_hard, bool, "1: allocations past the limit fail with ENOMEM")                     \
  X(scav_bg_bytes, bytes, "returned by the background scavenger after the release delay")      \
  X(scav_eager_bytes, bytes, "returned to stay under the memory limit")                        \
  X(scav_forced_bytes, bytes, "returned by neap_release or malloc_trim")                       \
  X(scav_cycles, count, "background scavenger passes completed")                               \
  X(scav_cpu_ns, nanoseconds, "CPU time spent returning memory")

#define NEAP_STATS_VERSION 1
typedef struct neap_stats {
  uint64_t version; /* NEAP_STATS_VERSION of the library that filled it */
#define NEAP__STATS_FIELD(name, unit, help) uint64_t name;
  NEAP_STATS_FIELDS(NEAP__STATS_FIELD)
#undef NEAP__STATS_FIELD
} neap_stats_t;

/* Fills the first `size` bytes of *s (pass sizeof(neap_stats_t); an
 * older, smaller struct gets its prefix). The invariants hold in every
 * snapshot: sys = heap_sys + metadata_sys; heap_sys = heap_inuse +
 * heap_idle; heap_idle >= heap_released; heap_objects = mallocs - frees.
 * Returns 0, or EINVAL for a NULL s or a size too small for `version`. */
NEAP_API int neap_stats_read(neap_stats_t *s, size_t size);

#ifdef __cplusplus
}
#endif

#endif
