/* Memory tracking for Valgrind's memcheck: empty unless neap is built with
 * NEAP_VALGRIND=ON (cmake -DNEAP_VALGRIND=ON).
 *
 * With it, memcheck knows neap's blocks as it knows glibc's: each object
 * handed out is a block (VALGRIND_MALLOCLIKE_BLOCK, its usable size: a
 * program may use all of it), each object freed stops being one
 * (FREELIKE_BLOCK), so a read of freed memory is reported with the
 * stacks of its allocation and its free, and blocks lost at exit are
 * reported as leaks. Free memory in the heap (pages in no span, objects
 * free in their spans) is no-access. neap's own reads and writes of free
 * objects (a free object's first 16 bytes hold its link and free mark)
 * are done with this thread's error reports off (NEAP_TRACK_QUIET), which
 * leaves the object's state alone. neap's metadata (span and cache
 * records: they point at objects) is taken out of the leak checker's
 * roots, so that only the program's pointers keep a block reachable.
 *
 * Costs nothing when off. When on, each request is about 16 instructions
 * natively (a few hundred nanoseconds under Valgrind): a build for
 * debugging with memcheck, not for production.
 */
#ifndef NEAP_TRACK_H
#define NEAP_TRACK_H

#ifndef NEAP_VALGRIND
#define NEAP_VALGRIND 0
#endif

#if NEAP_VALGRIND
#include <valgrind/memcheck.h>
#define NEAP_TRACK_ALLOC(p, size, zeroed) VALGRIND_MALLOCLIKE_BLOCK((p), (size), 0, (zeroed))
#define NEAP_TRACK_FREE(p) VALGRIND_FREELIKE_BLOCK((p), 0)
#define NEAP_TRACK_RESIZE(p, old, now) VALGRIND_RESIZEINPLACE_BLOCK((p), (old), (now), 0)
#define NEAP_TRACK_NOACCESS(p, size) VALGRIND_MAKE_MEM_NOACCESS((p), (size))
#define NEAP_TRACK_QUIET_BEGIN() VALGRIND_DISABLE_ERROR_REPORTING
#define NEAP_TRACK_QUIET_END() VALGRIND_ENABLE_ERROR_REPORTING
#define NEAP_TRACK_NOT_ROOT(p, size) VALGRIND_DISABLE_ADDR_ERROR_REPORTING_IN_RANGE((p), (size))
#else
#define NEAP_TRACK_ALLOC(p, size, zeroed) ((void)0)
#define NEAP_TRACK_FREE(p) ((void)0)
#define NEAP_TRACK_RESIZE(p, old, now) ((void)0)
#define NEAP_TRACK_NOACCESS(p, size) ((void)0)
#define NEAP_TRACK_QUIET_BEGIN() ((void)0)
#define NEAP_TRACK_QUIET_END() ((void)0)
#define NEAP_TRACK_NOT_ROOT(p, size) ((void)0)
#endif

#endif
