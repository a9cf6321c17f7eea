/* Run-time options: one table (NEAP_OPTIONS below) that the parser, the
 * option dump and the README all follow.
 *
 * Each option comes from `NEAPDEBUG=key=value,key=value` (the fine knobs,
 * as GODEBUG) or, for policy-level options, from an `NEAP_*` variable of
 * its own. Values: integers in decimal; booleans 1/0, true/false, yes/no,
 * on/off. A bad value or an unknown key prints one `neap: ...` warning and
 * keeps the default.
 *
 * Options are read by scanning `environ` directly (os layer), never with
 * getenv: the first malloc may come from the dynamic loader before libc
 * has run a single constructor. neap__options_init is cheap after its first
 * complete run; the library constructor calls it, and so does any path that
 * needs an option earlier. Before `environ` exists every option has its
 * default.
 */
#ifndef NEAP_OPTIONS_H
#define NEAP_OPTIONS_H

#include "internal.h"

/* NEAPDEBUG keys. X(name, kind, default, min, max, help). Kinds: BOOL, INT. */
#define NEAP_OPTIONS(X)                                                                           \
  X(warnforeign, INT, 0, 0, 2,                                                                    \
    "free, realloc or malloc_usable_size of memory outside neap's heap: 0 ignore, 1 warn once, " \
    "2 abort")                                                                                    \
  X(printopts, BOOL, 0, 0, 1, "print the effective options to stderr at start")                   \
  X(madvdontneed, BOOL, 1, 0, 1,                                                                  \
    "return pages with MADV_DONTNEED (RSS drops at once); 0: MADV_FREE (cheaper to reuse, but "   \
    "the pages count in RSS until the kernel needs them)")                                        \
  X(disablethp, BOOL, 0, 0, 1, "mark the heap MADV_NOHUGEPAGE (no transparent huge pages)")       \
  X(scavtrace, BOOL, 0, 0, 1, "one line per scavenger cycle on stderr")                           \
  X(scavenger, BOOL, 1, 0, 1,                                                                     \
    "run the background scavenger thread; 0: free pages go back only on neap_release, "           \
    "malloc_trim or the memory limit")                                                            \
  X(statsonexit, BOOL, 0, 0, 1, "print the statistics (text form) to stderr at exit")                \
  X(gctrace, BOOL, 0, 0, 1, "one line per collection on stderr, in Go's gctrace format")

/* Options with a variable of their own.
 * X(name, VARIABLE, kind, default, min, max, help). Kinds:
 *   SIZE      bytes: a number with an optional B, KiB, MiB, GiB or TiB
 *             (Go's GOMEMLIMIT syntax); "off" is -1
 *   DURATION  milliseconds: a number with ms, s or m (a bare number is
 *             milliseconds); "off" is -1
 *   PERCENT   hundredths of a percent: "1%", "0.5", "90%"
 *   MODE      soft (0) or hard (1), or die (2) where the maximum allows it
 *   GOGC      a number, or "off" (-1)
 *   PATH      a string, used as it is */
#define NEAP_ENV_OPTIONS(X)                                                                       \
  X(release_delay, NEAP_RELEASE_DELAY, DURATION, 1000, -1, 86400000,                              \
    "how long a page stays free before the scavenger returns it to the OS (off: never)")          \
  X(scavenger_cpu, NEAP_SCAVENGER_CPU, PERCENT, 100, 1, 10000,                                    \
    "the scavenger's CPU budget, in percent of one core (averaged; bursts of 100 s worth)")        \
  X(memlimit, NEAP_MEMLIMIT, SIZE, 0, -1, (long)1 << 52,                                          \
    "soft limit on the memory neap holds from the OS (0: from the cgroup; off: none)")           \
  X(memlimit_mode, NEAP_MEMLIMIT_MODE, MODE, 0, 0, 1,                                             \
    "soft: return memory, then grow anyway; hard: fail the allocation with ENOMEM")               \
  X(memlimit_fraction, NEAP_MEMLIMIT_FRACTION, PERCENT, 9000, 1, 10000,                           \
    "the share of the cgroup's memory limit used when NEAP_MEMLIMIT is not set")                  \
  X(cgroup_root, NEAP_CGROUP_ROOT, PATH, 0, 0, 0,                                                 \
    "read /proc/self/{cgroup,mountinfo} and the cgroup files under this directory (tests)")      \
  X(stats_dir, NEAP_STATS_DIR, PATH, NEAP_STATS_DIR_DEFAULT, 0, 0,                                 \
    "where the scavenger publishes neap.PID, the live statistics for `neap stats` (off: nowhere)") \
  X(gc_percent, NEAP_GC, GOGC, 100, -1, 1000000,                                                  \
    "the collector's GOGC: heap growth between collections, in percent of the live heap (off: "  \
    "collect only for the memory limit)")                                                         \
  X(gc_markers, NEAP_GC_MARKERS, INT, 0, 0, 64, "threads that mark (0: from the heap's size)")     \
  X(gc_scan_malloc, NEAP_GC_SCAN_MALLOC, BOOL, 1, 0, 1,                                            \
    "scan live malloc'd objects for pointers to collected ones")                                  \
  X(gc_force_period, NEAP_GC_FORCE_PERIOD, DURATION, 120000, -1, 86400000,                         \
    "collect at least this often while there is a collected heap (off: never)")                  \
  X(gc_idle, NEAP_GC_IDLE, DURATION, 1000, -1, 86400000,                                           \
    "collect once the program has been quiet this long with a heap well above its live size "    \
    "(off: never)")                                                                               \
  X(gc_limit_mode, NEAP_GC_LIMIT_MODE, MODE, 0, 0, 2,                                             \
    "when collections cannot keep the heap under the memory limit: soft (let it grow) or die "   \
    "(a fatal error)")                                                                            \
  X(gc_signal, NEAP_GC_SIGNALS, INT, 0, 0, 64, "the signal that stops threads for a collection (0: SIGPWR)") \
  X(gc_threads, NEAP_GC_THREADS, PATH, 0, 0, 0,                                                    \
    "which threads a collection stops: all (every thread neap knows) or registered")

#define NEAP_STATS_DIR_DEFAULT "/dev/shm"

#define NEAP__OPT_TYPE_BOOL long
#define NEAP__OPT_TYPE_INT long
#define NEAP__OPT_TYPE_SIZE long
#define NEAP__OPT_TYPE_DURATION long
#define NEAP__OPT_TYPE_PERCENT long
#define NEAP__OPT_TYPE_MODE long
#define NEAP__OPT_TYPE_GOGC long
#define NEAP__OPT_TYPE_PATH const char *

typedef struct neap_options {
#define NEAP__OPT_FIELD(name, kind, def, lo, hi, help) long name;
  NEAP_OPTIONS(NEAP__OPT_FIELD)
#undef NEAP__OPT_FIELD
#define NEAP__ENV_FIELD(name, var, kind, def, lo, hi, help) NEAP__OPT_TYPE_##kind name;
  NEAP_ENV_OPTIONS(NEAP__ENV_FIELD)
#undef NEAP__ENV_FIELD
} neap_options;

/* The options in effect (defaults until neap__options_init has run with an
 * environment). Read-only outside options.c. */
extern neap_options neap__opt;

/* Parse the environment once it exists; later calls do nothing. */
void neap__options_init(void);
/* The parser itself: NEAPDEBUG's text (NULL: none) and the variables that
 * getvar finds (NULL: none) into *opt, over what it holds; a bad value or
 * an unknown key leaves the field and, when `warn`, prints one line.
 * neap__options_init calls it on neap__opt; the tests and the fuzzer on
 * a copy of the defaults. */
void neap__options_parse(neap_options *opt, const char *neapdebug, const char *(*getvar)(const char *), bool warn);
extern const neap_options neap__opt_defaults;
/* Whether the environment has been parsed (before that, defaults). */
bool neap__options_parsed(void);

#endif
