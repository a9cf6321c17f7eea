/* wl_cache_scratch.c: Hoard's cache-scratch (passive false sharing).
 *
 * Imitates "cache-scratch" from the Hoard benchmarks (Berger et al., Hoard: A
 * Scalable Memory Allocator for Multithreaded Applications, ASPLOS 2000).
 * The main thread mallocs N small objects (8 bytes each, one per thread, -t
 * N; allocated back to back they likely share a cache line) and writes a tag
 * in each; thread i receives object i, checks it and frees it, then
 * repeatedly mallocs an 8-byte object, writes each of its bytes many times
 * (1000 volatile read-modify-writes per byte), checks it and frees it. An
 * allocator that lets a thread reuse the object it freed (which came from
 * the main thread's line) makes the threads write to one cache line
 * (passive false sharing); one that returns a remote free to its owner, or
 * gives each thread its own pages, does not.
 *
 * Scaling: weak. Each thread does 200,000 iterations at -s 1, so work_s is
 * comparable across thread counts and should stay flat as threads are added
 * (up to the number of cores).
 *
 * Timed: from the start barrier (the objects are already allocated and handed
 * out) until every thread is done, including the free of the handed object.
 *
 * check: the handed objects' tags and the final bytes of every object (start
 * value from thread and iteration), checked against the arithmetic
 * expectation ("heap corruption" and exit 2 on mismatch); per-thread
 * checksums combined in thread order. -r is not used (nothing is random).
 */
#define WL_SCRATCH 1
#include "wl_cache_thrash.c"
