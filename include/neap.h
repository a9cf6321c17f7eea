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
 * Every call leaves errno alone when it succeeds.
 *
 * Misuse does not corrupt the heap silently. neap_free(NULL) does
 * nothing. neap_free, neap_realloc or neap_usable_size of a pointer
 * inside neap's heap that is not the start of a live object (a double
 * free, an interior pointer, an object never handed out) prints one line
 * "neap: <what> <pointer>" to stderr and aborts; so does a write into the
 * first 16 bytes of a small object after its free, found when the object
 * is next reused or given back to its span, and a call of malloc or free
 * from a signal handler that interrupted this thread inside neap (they are
 * not async-signal-safe). These checks are on in every build; README's
 * "Misuse" has the whole table. One rarer case escapes them: a double
 * free of a small object whose bytes 14-15 the program wrote between the
 * two frees, after the first free's object had gone back to its span. And
 * a live object whose first 16 bytes the program set to exactly the free
 * mark another thread's stack would give it is taken for a double free.
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
 * debug.FreeOSMemory). The objects this thread's free stacks hold go back
 * to their spans first; other threads give back theirs at their next slow
 * path (a thread that never allocates again keeps them until it exits).
 * Returns the bytes that went back. The drop-in library's malloc_trim
 * calls it. */
NEAP_API size_t neap_release(void);

/* --- statistics
 * One list of fields makes the struct and its three printers (text, JSON,
 * Prometheus). X(name, unit, type, help); every field is a uint64_t.
 *   unit: bytes, objects, count, ns (printed in seconds for Prometheus),
 *         enum or bool (plain numbers);
 *   type: gauge, or counter (cumulative, never decreases between
 *         snapshots of one process).
 * The *_sys fields partition sys: everything neap mapped read-write
 * (gc_sys, below, included). */
#define NEAP_STATS_FIELDS(X)                                                                   \
  X(heap_alloc, bytes, gauge, "bytes in live objects (large objects: whole pages)")            \
  X(total_alloc, bytes, counter, "bytes allocated, cumulative")                                \
  X(mallocs, objects, counter, "objects allocated, cumulative")                                \
  X(frees, objects, counter, "objects freed, cumulative")                                      \
  X(heap_objects, objects, gauge, "live objects: mallocs - frees")                             \
  X(heap_sys, bytes, gauge, "heap pages mapped read-write: heap_inuse + heap_idle")            \
  X(heap_inuse, bytes, gauge, "bytes in spans that hold objects (live or free slots)")         \
  X(heap_idle, bytes, gauge, "bytes in free pages, returned to the OS or not")                 \
  X(heap_released, bytes, gauge, "free pages returned to the OS (or never touched)")           \
  X(heap_released_resident, bytes, gauge,                                                      \
    "returned with MADV_FREE, not yet reclaimed by the kernel: still in RSS (at most "         \
    "the kernel's LazyFree)")                                                                  \
  X(span_inuse, bytes, gauge, "span records in use")                                           \
  X(span_sys, bytes, gauge, "memory mapped for span records")                                  \
  X(cache_inuse, bytes, gauge, "thread caches in use")                                         \
  X(cache_sys, bytes, gauge, "memory mapped for thread caches")                                \
  X(arena_meta_sys, bytes, gauge, "arena records and the arena index (page-to-span tables)")   \
  X(pagealloc_sys, bytes, gauge, "the page allocator's bitmaps and summaries")                 \
  X(other_sys, bytes, gauge, "metadata mapped and not yet carved out")                         \
  X(sys, bytes, gauge, "all memory neap mapped read-write: the sum of the *_sys fields (gc_sys too)") \
  X(held, bytes, gauge, "what neap holds from the OS: sys - heap_released (the limit's measure)") \
  X(reserved, bytes, gauge, "address space reserved for arenas (VSZ, not memory)")             \
  X(memlimit, bytes, gauge, "the memory limit on held (0: none)")                              \
  X(memlimit_source, enum, gauge, "where the limit came from: 0 none, 1 NEAP_MEMLIMIT, 2 cgroup") \
  X(memlimit_hard, bool, gauge, "1: allocations past the limit fail with ENOMEM")              \
  X(scav_bg_bytes, bytes, counter, "returned by the background scavenger after the delay")     \
  X(scav_eager_bytes, bytes, counter, "returned to stay under the memory limit")               \
  X(scav_forced_bytes, bytes, counter, "returned by neap_release or malloc_trim")              \
  X(scav_cycles, count, counter, "background scavenger passes completed")                      \
  X(scav_cpu_ns, ns, counter, "CPU time spent returning memory")                               \
  X(kernel_rss, bytes, gauge, "the kernel's resident set size of the process (all of it)")     \
  X(kernel_lazyfree, bytes, gauge, "the kernel's LazyFree: MADV_FREE'd, still resident")       \
  X(kernel_vsz, bytes, gauge, "the kernel's virtual size of the process (address space)")      \
  X(threads, count, gauge, "threads with a neap cache")

/* Objects per size class (Go's MemStats.BySize): entry i describes the
 * class of `size` bytes; nclasses entries are used. Large objects (over
 * 32 KiB) have their own pair of counts in the last used entry, with
 * size 0. Counts are cumulative. */
#define NEAP_STATS_MAX_CLASSES 80
typedef struct neap_stats_class {
  uint64_t size, mallocs, frees;
} neap_stats_class_t;

/* The collector's fields (neap_gc.h), with Go's MemStats names in the
 * help where Go has them; after by_class, so that a caller built for
 * version 2 still finds everything it knows where it was. All zero in a
 * process that never allocated a collected object. */
#define NEAP_STATS_GC_FIELDS(X)                                                                \
  X(gc_cycles, count, counter, "collections completed (Go: NumGC)")                            \
  X(gc_forced, count, counter, "collections by neap_gc_collect or the forced period (Go: NumForcedGC)") \
  X(gc_idle, count, counter, "collections because the program went quiet")                     \
  X(gc_heap_live, bytes, gauge, "collected bytes the last collection found live")              \
  X(gc_heap_alloc, bytes, gauge, "collected bytes now: live plus allocated since the last collection") \
  X(gc_heap_inuse, bytes, gauge, "bytes in collected spans (part of heap_inuse)")              \
  X(gc_next, bytes, gauge, "the heap goal: a collection starts when gc_heap_alloc reaches it (Go: NextGC)") \
  X(gc_last_unix_ns, ns, gauge, "when the last collection ended, Unix time (Go: LastGC)")      \
  X(gc_pause_total_ns, ns, counter, "time the world was stopped (Go: PauseTotalNs)")           \
  X(gc_pause_last_ns, ns, gauge, "the last collection's pause")                                \
  X(gc_pause_max_ns, ns, gauge, "the longest pause so far")                                    \
  X(gc_cpu_ns, ns, counter, "CPU time spent collecting, all threads")                          \
  X(gc_cpu_fraction_ppm, count, gauge,                                                         \
    "collection CPU time in millionths of the process's since it started (Go: GCCPUFraction)") \
  X(gc_root_bytes, bytes, gauge, "roots the last collection scanned: all kinds")               \
  X(gc_stack_bytes, bytes, gauge, "of those, stacks, registers and TLS")                       \
  X(gc_global_bytes, bytes, gauge, "of those, static data of the program and its libraries")   \
  X(gc_malloc_bytes, bytes, gauge, "of those, live malloc'd objects")                          \
  X(gc_markers, count, gauge, "threads that marked in the last collection")                    \
  X(gc_percent, count, gauge, "GOGC: the heap grows by this percentage between collections")  \
  X(gc_enabled, count, gauge, "1, or 0 when collection for growth is off (NEAP_GC=off)")      \
  X(gc_sys, bytes, gauge, "the collector's metadata: mark stacks, root tables")

#define NEAP_STATS_VERSION 3
typedef struct neap_stats {
  uint64_t version; /* NEAP_STATS_VERSION of the library that filled it */
#define NEAP__STATS_FIELD(name, unit, type, help) uint64_t name;
  NEAP_STATS_FIELDS(NEAP__STATS_FIELD)
  uint64_t nclasses;
  neap_stats_class_t by_class[NEAP_STATS_MAX_CLASSES];
  NEAP_STATS_GC_FIELDS(NEAP__STATS_FIELD) /* version 3 */
#undef NEAP__STATS_FIELD
} neap_stats_t;

/* Fills the first `size` bytes of *s (pass sizeof(neap_stats_t); an
 * older, smaller struct gets its prefix). Returns 0, or EINVAL for a NULL
 * s or a size too small for `version`.
 *
 * These hold exactly in every snapshot, whatever other threads do:
 *   sys = heap_sys + span_sys + cache_sys + arena_meta_sys + pagealloc_sys
 *         + other_sys + gc_sys;
 *   heap_sys = heap_inuse + heap_idle;   heap_idle >= heap_released;
 *   heap_objects = mallocs - frees;      heap_alloc <= heap_inuse;
 *   each class's and the cumulative counters never decrease.
 * The live figures (heap_alloc, heap_objects) are exact at the moment the
 * heap lock was held; the cumulative counters may lag that moment by what
 * other threads did while the snapshot was taken, never run ahead of it,
 * and are exact whenever the other threads are quiet. Reading walks the span table under the heap lock (about
 * 2 ms per GiB of 64-byte objects) and reads /proc/self for the
 * kernel_* fields; it stops no thread beyond that. */
NEAP_API int neap_stats_read(neap_stats_t *s, size_t size);

typedef enum neap_stats_format {
  NEAP_STATS_TEXT = 0,       /* "key: value" lines, per-class lines last */
  NEAP_STATS_JSON = 1,       /* one JSON object */
  NEAP_STATS_PROMETHEUS = 2, /* the Prometheus text exposition format */
} neap_stats_format;

/* Receives the printers' output, in pieces. */
typedef void neap_write_fn(void *arg, const char *buf, size_t len);

/* Reads a snapshot and prints it with fn(arg, ...). Never allocates.
 * Returns 0, or EINVAL for a NULL fn or an unknown format. */
NEAP_API int neap_stats_print(neap_write_fn *fn, void *arg, neap_stats_format format);

/* Prints a snapshot read earlier (or read back from a file). */
NEAP_API int neap_stats_format_snapshot(const neap_stats_t *s, neap_write_fn *fn, void *arg,
                                        neap_stats_format format);

#ifdef __cplusplus
}
#endif

#endif
