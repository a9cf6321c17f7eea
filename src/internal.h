/* Declarations shared between neap's layers. Nothing here is public.
 *
 * Glossary: the Go runtime's vocabulary in C, one word per meaning, for the
 * names and comments of src/.
 *
 * Memory, largest first:
 *   arena      64 MiB of address space reserved at once, 64 MiB-aligned;
 *              the arena index maps any address to its arena or to none.
 *   chunk      4 MiB = 512 neap pages: one bitmap of the page allocator,
 *              the unit the heap commits, the scavenger's unit of density.
 *   neap page  8 KiB; the unit of the page allocator and of span sizes.
 *   OS page    the kernel's page, normally 4 KiB; the unit of madvise.
 *   page index a page's number in the heap's dense index space: arena k
 *              (in order of reservation) holds indexes [k*8192, (k+1)*8192).
 *   page map   from any neap page of the heap to its span (pagemap.h), with
 *              the page info beside it that the free fast path reads.
 *   span       a run of neap pages holding objects of one size class, or
 *              one large object; its record lives off-heap (span.h), its
 *              state is span->where (the diagram is in span.c).
 *   object     what malloc hands out: small (up to 32 KiB, in a span of its
 *              size class) or large (a span of its own).
 *   size class one of ~68 object sizes (sizeclass.h).
 *
 * Structures, frontend first:
 *   cache      one thread's (Go's mcache): a slot per class, its own lists
 *              of spans (partial, full, empty), its inbox (cache.c).
 *   slot       a cache's state for one class: the current span, the
 *              window, the free stack.
 *   window     the free objects of one 64-object word of the current span,
 *              as a bit mask the fast path takes from.
 *   free stack a slot's LIFO of freed objects, linked through their memory.
 *   free mark  the two words a free object holds: its link, and the link
 *              xor a key (cache.h).
 *   central    one per class (mcentral): the spans no cache owns, on a
 *              partial and a full list, and its pending stack (central.c).
 *   pending stack, inbox
 *              lock-free stacks of spans other threads freed objects into:
 *              a central's, and the owning cache's.
 *   page heap  the backend (mheap): pages for spans of any kind (heap.c),
 *              placed by the page allocator (pagealloc.c).
 *   reclaimer  a frontend's function that gives back the spans it holds
 *              empty, or counts them (heap.h: run when the heap is short or
 *              over its limit, in the scavenger's rounds, for neap_release).
 *   scavenger  the thread and the passes that return free pages (scav.c),
 *              with its index: per-page clocks, lazy bits, chunk densities.
 *
 * Verbs:
 *   allocate, free  objects, by the program; an object is freed into its
 *              span (its in-use bit cleared by the owner, or its remote bit
 *              set by another thread).
 *   take       get a thing from where it is kept: an object from a window
 *              or a free stack, a span off a list, memory from the layer
 *              below (a cache takes a span from its central, a central
 *              pages from the page heap).
 *   give back  memory goes down one layer: objects from a free stack into
 *              their spans, a span from a cache to its central, a span's
 *              pages to the page heap.
 *   spill      a free stack gives back its older objects (or all of them).
 *   park       the current span leaves its slot for an own list.
 *   refile     an owned span moves between its cache's lists as its live
 *              count crosses refile_at.
 *   drain      empty a pending stack or an inbox, handling each span.
 *   trim       a cache gives back what it keeps for later: its kept empty
 *              spans (idle, limit, release) and every object on its free
 *              stacks (limit, release).
 *   flush      a cache gives back everything (thread exit, neap_thread_flush).
 *   retire     a flushed cache's counts join the process's totals and its
 *              record is freed.
 *   abandon    a forked child stops using the parent's other threads' caches.
 *   reclaim    run the reclaimers (the page heap, the scavenger, the limit).
 *   return     free pages go back to the OS (madvise); a page returned, or
 *              fresh from the OS, and not reused since is scavenged (the
 *              page allocator's bit). The scavenger borrows the runs it
 *              returns from the page heap, which lends them.
 *   release    only in public names and what mirrors them, after Go's
 *              HeapReleased: return now (neap_release, and the reclaim
 *              reason RELEASE), bytes returned (heap_released), the delay
 *              before returning (NEAP_RELEASE_DELAY, the release delay).
 * Locks are locked and unlocked; the scavenger thread sleeps and wakes.
 *
 * Internal names shared between files start with neap__; everything else
 * is static. Build-time debug levels (NEAP_DEBUG, default 0):
 *   neap_assert            level >= 1: cheap invariants
 *   neap_assert_internal   level >= 2: invariants of one data structure
 *   neap_assert_expensive  level >= 3: whole-structure checks (slow)
 * The checks that protect the heap from misuse (free of a pointer that is
 * not a live object) are not asserts: they run in every build.
 *
 * NEAP_TESTING (on in debug builds and in the libraries the tests link,
 * off in libneap.so and libneap.a) compiles in what only tests call: the
 * heap checker (check.c: a walk of every structure that verifies every
 * invariant the layers' essays state), the os layer's fault injection and
 * fake clock, the scavenger's single step, and the hooks below.
 */
#ifndef NEAP_INTERNAL_H
#define NEAP_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef NEAP_DEBUG
#define NEAP_DEBUG 0
#endif

#define NEAP_LIKELY(x) __builtin_expect(!!(x), 1)
#define NEAP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define NEAP_NOINLINE __attribute__((noinline))
#define NEAP_COLD __attribute__((cold, noinline))
#define NEAP_INLINE static inline __attribute__((always_inline))
#define NEAP_CACHE_LINE 64

/* The checks on free (is this the start of a live object?) are on in
 * every build. NEAP_FREE_CHECKS=0 removes them from the free fast path
 * only, to measure what they cost; never ship it: there, a free of
 * anything but a live object (a double free, an interior pointer, the
 * tail after a span's last object) corrupts the heap. */
#ifndef NEAP_FREE_CHECKS
#define NEAP_FREE_CHECKS 1
#endif

/* --- geometry (the Go runtime's values, malloc.go) */
#define NEAP_PAGE_SHIFT 13 /* 8 KiB neap pages */
#define NEAP_PAGE_SIZE ((size_t)1 << NEAP_PAGE_SHIFT)
#define NEAP_CHUNK_PAGES 512 /* 4 MiB chunks: one 512-bit bitmap each */
#define NEAP_CHUNK_SIZE (NEAP_CHUNK_PAGES * NEAP_PAGE_SIZE)
#define NEAP_ARENA_SHIFT 26 /* 64 MiB arenas */
#define NEAP_ARENA_SIZE ((size_t)1 << NEAP_ARENA_SHIFT)
#define NEAP_ARENA_PAGES (NEAP_ARENA_SIZE / NEAP_PAGE_SIZE) /* 8192 */
#define NEAP_ADDR_BITS 48 /* user addresses on x86-64 and arm64 (4-level) */
/* The dense page-index space covers at most 4 TiB of heap: 2^29 pages,
 * 2^20 chunks, 65536 arenas. The page allocator's summary levels are sized
 * for it (about 9 MiB of address space, committed on demand). */
#define NEAP_MAX_HEAP_SHIFT 42
#define NEAP_MAX_PAGES ((uint64_t)1 << (NEAP_MAX_HEAP_SHIFT - NEAP_PAGE_SHIFT))
#define NEAP_MAX_ARENAS ((size_t)1 << (NEAP_MAX_HEAP_SHIFT - NEAP_ARENA_SHIFT))
/* No single object can be larger than the heap can ever be. */
#define NEAP_MAX_ALLOC ((size_t)1 << NEAP_MAX_HEAP_SHIFT)

#define NEAP_ALIGN 16 /* every object is aligned like max_align_t */
#define NEAP_SMALL_MAX 32768 /* larger objects get spans of their own */

/* --- failure */

/* Prints "neap: <msg> <ptr>" on one line and aborts. Used for heap misuse
 * (double free, foreign or interior pointer) and for failed asserts. */
__attribute__((noreturn)) NEAP_COLD void neap__fatal(const char *msg, const void *ptr);
__attribute__((noreturn)) NEAP_COLD void neap__assert_fail(const char *expr, const char *file, int line);

#define NEAP__ASSERT(e) ((e) ? (void)0 : neap__assert_fail(#e, __FILE__, __LINE__))
#if NEAP_DEBUG >= 1
#define neap_assert(e) NEAP__ASSERT(e)
#else
#define neap_assert(e) ((void)0)
#endif
#if NEAP_DEBUG >= 2
#define neap_assert_internal(e) NEAP__ASSERT(e)
#else
#define neap_assert_internal(e) ((void)0)
#endif
#if NEAP_DEBUG >= 3
#define neap_assert_expensive(e) NEAP__ASSERT(e)
#define NEAP_EXPENSIVE_CHECKS 1
#else
#define neap_assert_expensive(e) ((void)0)
#define NEAP_EXPENSIVE_CHECKS 0
#endif
#ifndef NEAP_TESTING
#define NEAP_TESTING (NEAP_DEBUG >= 1)
#endif

/* A spin-wait hint to the CPU. */
#if defined(__x86_64__) || defined(__i386__)
#define NEAP_SPIN_PAUSE() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define NEAP_SPIN_PAUSE() __asm__ __volatile__("yield")
#else
#define NEAP_SPIN_PAUSE() ((void)0)
#endif

/* Relaxed atomics for words one thread writes and others may read: they
 * compile to plain loads and stores, and keep the C memory model (and
 * ThreadSanitizer) honest about the racy readers. */
#define NEAP_LOAD(p) atomic_load_explicit((p), memory_order_relaxed)
#define NEAP_STORE(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)

/* init.c: what the process needs once (options, the limit, fork
 * handlers); idempotent, cheap after the first call. */
void neap__process_init(void);

/* --- small helpers */
NEAP_INLINE uintptr_t neap__align_up(uintptr_t x, uintptr_t a) { return (x + a - 1) & ~(a - 1); }
NEAP_INLINE bool neap__is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* --- test hooks (NEAP_TESTING builds only) */
/* Exact live bytes and objects in the whole heap, small and large, merged
 * from every thread's counters (other threads may be running). */
size_t neap__heap_live_bytes(void);
size_t neap__heap_live_objects(void);
/* The start of the live object containing p, or NULL when p is not inside
 * a live neap object. */
void *neap__object_start(const void *p);
/* Walks the whole heap and verifies every invariant the layers state
 * (check.c): NULL when all hold, else a one-line description of the first
 * violation ("heap check: <what> <address>"). The caller makes sure no
 * other thread is inside neap meanwhile (the scavenger may be: the check
 * holds its work lock). Allocates nothing. */
const char *neap__heap_check(void);

#endif
