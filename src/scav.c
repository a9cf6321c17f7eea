/* The scavenger: returns free memory to the OS, promptly and paced
 * (Go's bgscavenge, as a pthread), and enforces the memory limit.
 *
 * What it owns: its index of the pages (below), the passes that return
 * them, the background thread and its pacing, the memory limit's return
 * function, and the counts of what went back and why.
 *
 * The index (Go's scavengeIndex). For each page, when it was last freed
 * and whether it went back lazily (MADV_FREE) and was not taken since; for
 * each 4 MiB chunk, how many of its pages are in spans and when it last
 * stopped being dense; and the program's recent demand for pages. The heap
 * keeps it up to date through the observer this file registers
 * (neap__scav_register: pages taken, freed, returned), under the heap
 * lock, and calls a pass's pick under the heap lock too: the heap lock
 * guards the index, which only this file reads and writes.
 *
 * Policy. A free page goes back once it has stayed free for the release
 * delay (NEAP_RELEASE_DELAY, default 1 s). A pass walks the free pages not
 * yet returned from the highest page index down (the heap lends it one run
 * at a time: neap__heap_take_unreturned),
 * skips those younger than the delay and those in dense chunks (496 of
 * 512 pages in use now, or dense less than a delay ago: splitting a huge
 * page that is nearly all in use saves little and costs a TLB reach), and
 * returns the rest with MADV_DONTNEED (NEAPDEBUG=madvdontneed=0: MADV_FREE,
 * and the pages are counted as "returned but maybe resident" until
 * reused). So a program that frees and reallocates within the delay pays
 * no page faults (a fault costs ~14 us per 4 KiB page on the development
 * VM: re-faulting 256 MiB takes a second), while an idle program's RSS
 * falls to its live heap within about delay + one pass. Why 1 s: it is
 * ten times the period of the slowest request loops and batch phases we
 * measured (bench/: peak, churn, real programs showed no re-faults with
 * it), and it keeps "RSS back within 2 s" true with room for the pass.
 *
 * Retention. While the program is active (it took or gave pages less than
 * a delay ago, or its threads used a tenth of a core or more since the
 * scavenger last looked), the scavenger keeps as many free pages as its
 * recent demand says it will take back (the most pages in use over the
 * last 10 s, minus those in use now), and its other free pages wait four
 * delays instead of one. A program that works in phases (sqlite building
 * and querying) then reuses its pages instead of faulting them in again:
 * on the suite's sqlite run the plain 1 s delay cost 19,000 extra page
 * faults (75 MiB returned and faulted back, +7-14% time); with the rule,
 * none. Once the program has been idle for a delay, everything due goes
 * back: the rule never delays an idle process's return by more than a
 * quarter delay, its re-check period while the program is active.
 *
 * Idle holders. A thread cache keeps up to 128 KiB of empty spans per
 * class, 2 MiB in all, for its next refills (cache.c). Once per delay the
 * scavenger asks the heap's reclaimers for what idle holders keep
 * (NEAP_RECLAIM_IDLE: the caches that have not refilled since the round
 * before), so a thread that has gone quiet does not pin them.
 *
 * Pacing. Work is charged in CPU time (the thread's own clock) against a
 * token bucket filled at NEAP_SCAVENGER_CPU (default 1% of one core, as
 * Go) and holding at most 100 s of it (1 CPU-second at 1%): the long-run
 * average never exceeds the budget, and the burst after a big free is not
 * stretched over minutes. What a burst costs depends on how scattered the
 * free pages are: one madvise returns 256 MiB of whole blocks in ~10 ms on
 * the development VM, but 300 MiB of free pages scattered one by one among
 * live spans take 40,000 calls and ~500 ms (~13 us a call there). Passes work in
 * quanta of about 4 MiB (runs are taken until the quantum's bytes are
 * reached), checking the bucket between them. With nothing young to wait for, the thread sleeps on a
 * condition variable and the heap wakes it when pages are freed (a kick:
 * one relaxed load on the span-free path); an idle process with nothing to
 * return is woken only to refresh its stats file (statsfile.c: every 8 s
 * at most once nothing changes; never with NEAP_STATS_DIR=off). With
 * caches still keeping empty spans it wakes once per delay to trim the
 * idle ones.
 *
 * Memory limit (NEAP_MEMLIMIT, or NEAP_MEMLIMIT_FRACTION of the cgroup's
 * limit: memlimit.c). It bounds what neap holds from the OS: grown pages
 * not returned, plus metadata. An allocation that could take neap past it
 * first runs, synchronously, the heap's reclaimers (every cache's kept
 * spans and, at its next slow path, each thread's free stacks; the
 * centrals' empty spans) and then this file's return function
 * (neap__scav_limit_return), which returns free pages regardless of delay
 * and density down to 95% of the limit (heap.c has the rest). The
 * background thread pursues the same 95% goal with forced passes while
 * the process is over it.
 *
 * Lifecycle. The thread starts lazily, from the first allocation from the
 * page heap after the heap has grown past 8 MiB (a process that allocates
 * little never gets one), where no neap lock is held (pthread_create
 * allocates). If the thread cannot be made, the next such allocation a
 * second later tries again. In a forked child it does not exist: the
 * child's state is reset and its next such allocation starts a new one.
 * At exit it simply stops with the process: it holds no lock across a
 * syscall but the work mutex, and what it has taken out of the page
 * allocator is never user memory. NEAPDEBUG=scavenger=0: no thread;
 * memory goes back on neap_release, malloc_trim and the limit only.
 *
 * Locking: `work` serialises every pass (background, limit, neap_release)
 * and the fork handler takes it, so a child never inherits a run taken
 * out of the page allocator; `lock` (the condition variable's) is the
 * innermost lock (lock.h has the order). The index is guarded by the heap
 * lock (above).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "heap.h"
#include "memlimit.h"
#include "meta.h"
#include "pagealloc.h"
#include "gc.h"
#include "scav.h"
#include "stats.h"
#include "neap.h"
#include "options.h"
#include "os/os.h"

#define START_BYTES ((uint64_t)8 << 20) /* the heap size that starts the thread */
#define START_RETRY_MS 1000u /* after a failed start, the next try waits this long */
#define QUANTUM_BYTES ((size_t)NEAP_CHUNK_SIZE)
#define MIN_SLEEP_MS 10u
/* The pacer's bucket holds this much wall time's worth of budget: the
 * average over any such window is at most twice the budget, the long-run
 * average the budget itself. */
#define PACER_WINDOW_NS 100000000000ull /* 100 s: 1 CPU-second at 1% */
/* A busy program's pages wait this many delays (see Retention). */
#define BUSY_DELAY_FACTOR 4u
/* The retention rule's memory of demand (see background_step). */
#define DEMAND_WINDOW_MS 10000u

enum { ST_NONE, ST_STARTING, ST_RUNNING, ST_OFF };

static struct {
  neap_mutex work;        /* one pass at a time */
  neap_mutex lock;        /* guards kicked and the condition variable */
  pthread_cond_t cond;    /* CLOCK_MONOTONIC */
  bool cond_ready;
  bool kicked;
  _Atomic int state;
  _Atomic bool big;       /* the heap has grown past START_BYTES */
  _Atomic bool asleep;    /* waiting for a kick, with no timeout */
  neap__pacer pacer;      /* the thread's only */
  uint64_t cursor;        /* where the background pass continues */
  uint32_t last_trim_ms;
  uint32_t last_rotate_ms; /* the demand window's current half began */
  bool busy_seen;         /* program_busy has looked before, at ... */
  uint32_t busy_ms;       /* ... this time, when others' CPU time was ... */
  uint64_t busy_cpu;      /* ... this (ns) */
  bool start_failed;       /* the last try to start the thread failed ... */
  uint32_t start_failed_ms; /* ... at this time (state STARTING guards both) */
  /* Totals (relaxed atomics: read by statistics any time). */
  _Atomic uint64_t bg_bytes, eager_bytes, forced_bytes, cycles, cpu_ns;
  /* Since the last trace line. */
  uint64_t trace_bg, trace_eager;
} scav = {.work = NEAP_MUTEX_INIT(SCAV_WORK), .lock = NEAP_MUTEX_INIT(SCAV_WAKE), .cursor = UINT64_MAX};

#define ADD(field, v) atomic_fetch_add_explicit(&scav.field, (v), memory_order_relaxed)

static __thread bool is_scavenger __attribute__((tls_model("initial-exec")));

/* --- the index */

#define CHUNKS_PER_ARENA (NEAP_ARENA_PAGES / NEAP_CHUNK_PAGES)
/* A chunk with this many pages in use is dense (Go's scavChunkHiOccFrac,
 * 96.875%): returning its few free pages would split a huge page that is
 * nearly all in use, for little gain. */
#define DENSE_PAGES (NEAP_CHUNK_PAGES - NEAP_CHUNK_PAGES / 32)

typedef struct scav_arena {
  uint32_t freed_at[NEAP_ARENA_PAGES];          /* free pages: when freed (ms clock) */
  uint64_t lazy[NEAP_ARENA_PAGES / 64];         /* returned with MADV_FREE, not taken since */
  uint16_t chunk_inuse[CHUNKS_PER_ARENA];       /* pages in spans */
  uint32_t chunk_dense_end[CHUNKS_PER_ARENA];   /* when it last stopped being dense (0: never) */
} scav_arena;

static struct {
  scav_arena *arena[NEAP_MAX_ARENAS]; /* by the heap's arena number; 512 KiB of BSS, touched as used */
  uint64_t inuse;                     /* pages in spans */
  _Atomic uint64_t lazy;              /* pages returned lazily, not taken since */
  /* Demand (the retention rule): the most pages in use in the current and
   * the previous half of the demand window, and when the program last
   * took and freed pages. */
  uint64_t peak_cur, peak_prev;
  uint32_t last_taken_ms, last_freed_ms;
} idx;

/* Runs the statement for each arena's share of pages [first, first+n),
 * with `a` the arena's record, `i` the first page's number in it and `m`
 * the count: a run of pages may go on into the next arena. */
#define FOR_ARENA_SEGMENTS(first, n, a, i, m, ...)                                      \
  for (uint64_t pg_ = (first), end_ = (first) + (n); pg_ < end_;) {                     \
    scav_arena *a = idx.arena[pg_ / NEAP_ARENA_PAGES];                                  \
    uint64_t i = pg_ % NEAP_ARENA_PAGES;                                                \
    uint64_t m = end_ - pg_ < NEAP_ARENA_PAGES - i ? end_ - pg_ : NEAP_ARENA_PAGES - i; \
    __VA_ARGS__;                                                                        \
    pg_ += m;                                                                           \
  }

static int idx_arena_added(size_t k) {
  if (idx.arena[k] != NULL) return 0;
  idx.arena[k] = neap__meta_alloc(sizeof(scav_arena), NEAP_META_ARENA);
  return idx.arena[k] != NULL ? 0 : ENOMEM;
}

static uint64_t idx_taken(uint64_t first, uint64_t n) {
  uint64_t nlazy = 0;
  bool any_lazy = atomic_load_explicit(&idx.lazy, memory_order_relaxed) != 0;
  FOR_ARENA_SEGMENTS(first, n, a, i, m, {
    for (uint64_t k = i; k < i + m;) {
      uint64_t c = k / NEAP_CHUNK_PAGES, stop = (c + 1) * NEAP_CHUNK_PAGES;
      if (stop > i + m) stop = i + m;
      a->chunk_inuse[c] = (uint16_t)(a->chunk_inuse[c] + (stop - k));
      k = stop;
    }
    for (uint64_t k = i; any_lazy && k < i + m; k++) {
      if (neap__bits_get(a->lazy, k)) {
        neap__bits_clear(a->lazy, k);
        nlazy++;
      }
    }
  });
  atomic_fetch_sub_explicit(&idx.lazy, nlazy, memory_order_relaxed);
  idx.inuse += n;
  if (idx.inuse > idx.peak_cur) idx.peak_cur = idx.inuse;
  idx.last_taken_ms = neap__os_now_ms();
  return nlazy;
}

/* Stamps the pages for the release delay; a chunk that stops being dense
 * records when. */
static void idx_freed(uint64_t first, uint64_t n) {
  uint32_t now = neap__os_now_ms();
  /* The program's activity, for the retention rule: not the scavenger's
   * own giving back of idle caches' spans. */
  if (!is_scavenger) idx.last_freed_ms = now;
  FOR_ARENA_SEGMENTS(first, n, a, i, m, {
    for (uint64_t k = i; k < i + m; k++) a->freed_at[k] = now;
    for (uint64_t k = i; k < i + m;) {
      uint64_t c = k / NEAP_CHUNK_PAGES, stop = (c + 1) * NEAP_CHUNK_PAGES;
      if (stop > i + m) stop = i + m;
      unsigned before = a->chunk_inuse[c];
      a->chunk_inuse[c] = (uint16_t)(before - (stop - k));
      if (before >= DENSE_PAGES && a->chunk_inuse[c] < DENSE_PAGES) a->chunk_dense_end[c] = now ? now : 1u;
      k = stop;
    }
  });
  idx.inuse -= n;
}

static void idx_returned(uint64_t first, uint64_t n, bool lazy) {
  if (!lazy) return;
  FOR_ARENA_SEGMENTS(first, n, a, i, m, {
    for (uint64_t k = i; k < i + m; k++) neap__bits_set(a->lazy, k);
  });
  atomic_fetch_add_explicit(&idx.lazy, n, memory_order_relaxed);
}

/* The demand, read (and its window's halves moved on when `rotate`) under
 * the heap lock. */
typedef struct demand {
  bool rotate;
  uint64_t recent_peak, inuse;
  uint32_t last_taken_ms, last_freed_ms;
} demand;

static void read_demand(void *arg) {
  demand *d = arg;
  d->recent_peak = idx.peak_cur > idx.peak_prev ? idx.peak_cur : idx.peak_prev;
  d->inuse = idx.inuse;
  d->last_taken_ms = idx.last_taken_ms;
  d->last_freed_ms = idx.last_freed_ms;
  if (d->rotate) {
    idx.peak_prev = idx.peak_cur;
    idx.peak_cur = idx.inuse;
  }
}

/* --- a pass */

#define MIN_CUT_PAGES 8 /* 64 KiB, Go's scavenging quantum */

typedef struct scav_pass {
  uint32_t now_ms;     /* in: the clock (neap__os_now_ms) */
  uint32_t delay_ms;   /* in: the release delay */
  bool force;          /* in: ignore the delay and the density rule */
  bool dontneed;       /* in: MADV_DONTNEED, else MADV_FREE */
  size_t max_bytes;    /* in: stop once this much went back (0: no bound) */
  uint64_t keep_pages; /* in: leave at least this many free pages unreturned */
  uint64_t cursor;     /* in/out: continue below this page (UINT64_MAX: the top) */
  size_t returned;     /* out (added to): bytes returned */
  bool young;          /* out: a page was skipped as too young ... */
  uint32_t next_ms;    /* ... and the first of them is eligible this much later */
  bool dense;          /* out: a page was skipped in a chunk that is dense now */
  bool kept;           /* out: the pass ended at keep_pages with pages due */
  bool done;           /* out: the pass reached the bottom (cursor is reset) */
  uint64_t next_below; /* pick's: where the walk goes on */
} scav_pass;

/* Whether free page pg was freed less than a delay ago. */
static bool page_young(const scav_pass *sp, uint64_t pg) {
  if (sp->force) return false;
  scav_arena *a = idx.arena[pg / NEAP_ARENA_PAGES];
  return (uint32_t)(sp->now_ms - a->freed_at[pg % NEAP_ARENA_PAGES]) < sp->delay_ms;
}

/* Whether the scavenger may return free page pg now; if not, notes why in
 * the pass (a young page: when it will be old enough). */
static bool eligible(scav_pass *sp, uint64_t pg) {
  if (sp->force) return true;
  scav_arena *a = idx.arena[pg / NEAP_ARENA_PAGES];
  uint64_t i = pg % NEAP_ARENA_PAGES, c = i / NEAP_CHUNK_PAGES;
  uint32_t age = sp->now_ms - a->freed_at[i];
  if (age < sp->delay_ms) {
    uint32_t wait = sp->delay_ms - age;
    if (!sp->young || wait < sp->next_ms) sp->next_ms = wait;
    sp->young = true;
    return false;
  }
  if (a->chunk_inuse[c] >= DENSE_PAGES) {
    sp->dense = true;
    return false;
  }
  uint32_t end = a->chunk_dense_end[c];
  if (end != 0 && (uint32_t)(sp->now_ms - end) < sp->delay_ms) {
    uint32_t wait = sp->delay_ms - (uint32_t)(sp->now_ms - end);
    if (!sp->young || wait < sp->next_ms) sp->next_ms = wait;
    sp->young = true;
    return false;
  }
  return true;
}

/* What of a run of free pages not returned the pass takes now (called by
 * the heap, under its lock): the highest eligible part of the run. */
static void pick(void *ctx, neap_pick *p) {
  scav_pass *sp = ctx;
  uint64_t base = p->base, n = p->n;
  /* Skip the pages that may not go yet from the top, then take the
   * eligible ones below them. */
  uint64_t hi = base + n;
  while (hi > base && !eligible(sp, hi - 1)) hi--;
  uint64_t lo = hi;
  while (lo > base && eligible(sp, lo - 1)) lo--;
  sp->next_below = lo;
  if (sp->keep_pages != 0 && lo < hi) {
    /* Leave keep_pages free pages unreturned: the highest go first. */
    uint64_t may = p->dirty > sp->keep_pages ? p->dirty - sp->keep_pages : 0;
    if (may == 0) {
      sp->kept = true;
      lo = hi;
    } else if (hi - lo > may) {
      lo = hi - may;
    }
  }
  /* A small piece cut out of a longer free run by pages not due yet
   * waits for them: one madvise per 8 KiB costs more than the memory is
   * worth for a few hundred milliseconds (a program freeing at random
   * interleaves young and old pages finely). A run bounded by pages in
   * use goes back whatever its size. */
  bool cut = (hi < base + n && page_young(sp, hi)) || (lo > base && page_young(sp, lo - 1));
  if (cut && hi - lo < MIN_CUT_PAGES) lo = hi;
  p->lo = lo;
  p->hi = hi;
}

/* Returns, from sp->cursor down, the free pages the pass allows. */
static void pass(scav_pass *sp) {
  uint64_t below = sp->cursor;
  sp->done = false;
  for (;;) {
    if (sp->max_bytes != 0 && sp->returned >= sp->max_bytes) break;
    neap_free_run run;
    if (!neap__heap_take_unreturned(below, NEAP_CHUNK_PAGES, pick, sp, &run) || sp->kept) {
      sp->done = true;
      below = UINT64_MAX; /* the next pass starts from the top */
      break;
    }
    below = sp->next_below;
    if (run.n == 0) continue;
    size_t bytes = (size_t)run.n << NEAP_PAGE_SHIFT;
    bool lazy = false;
    bool ok = neap__os_return((void *)run.addr, bytes, sp->dontneed, &lazy) == 0;
    neap__heap_put_back(&run, ok, lazy);
    if (ok) sp->returned += bytes;
  }
  sp->cursor = below;
}

/* --- the pacer: a token bucket of CPU time */

/* Credit is kept in ns x 10000 so that every nanosecond of wall time earns
 * exactly rate_bp units: no rounding, however small the budget. */
void neap__pacer_init(neap__pacer *p, long cpu_bp, uint64_t now_ns) {
  p->rate_bp = cpu_bp > 0 ? (uint64_t)cpu_bp : 1;
  p->cap = (int64_t)(PACER_WINDOW_NS * p->rate_bp); /* PACER_WINDOW of budget */
  p->credit = p->cap;
  p->last_ns = now_ns;
}

void neap__pacer_refill(neap__pacer *p, uint64_t now_ns) {
  if (now_ns <= p->last_ns) return;
  uint64_t dt = now_ns - p->last_ns;
  p->last_ns = now_ns;
  if (dt > 1000000000000ull) dt = 1000000000000ull; /* 1000 s fills any bucket */
  int64_t c = p->credit + (int64_t)(dt * p->rate_bp);
  p->credit = c > p->cap ? p->cap : c;
}

void neap__pacer_charge(neap__pacer *p, uint64_t worked_ns) {
  if (worked_ns > 1000000000000ull) worked_ns = 1000000000000ull;
  p->credit -= (int64_t)(worked_ns * 10000u);
}

bool neap__pacer_may_work(const neap__pacer *p) { return p->credit > 0; }

int64_t neap__pacer_credit_ns(const neap__pacer *p) { return p->credit / 10000; }

uint64_t neap__pacer_wait_ns(const neap__pacer *p) {
  if (p->credit > 0) return 0;
  return (uint64_t)(-p->credit) / p->rate_bp + 1;
}

/* --- tracing */

static size_t fmt_u64(char *out, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do tmp[n++] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

/* "neap: scav X KiB work (bg), Y KiB work (eager), Z KiB now, U% util"
 * in Go's scavtrace format: X and Y since the previous line, Z what neap
 * holds from the OS now, U the share of it in spans in use. */
static void trace(const char *tail) {
  if (!neap__opt.scavtrace) return;
  neap_heap_stats hs;
  neap__heap_stats(&hs);
  uint64_t inuse = hs.pages_inuse << NEAP_PAGE_SHIFT;
  uint64_t util = hs.held ? inuse * 100 / hs.held : 0;
  char buf[200];
  size_t n = 0;
#define S(str) (memcpy(buf + n, str, sizeof str - 1), n += sizeof str - 1)
  S("neap: scav ");
  n += fmt_u64(buf + n, scav.trace_bg >> 10);
  S(" KiB work (bg), ");
  n += fmt_u64(buf + n, scav.trace_eager >> 10);
  S(" KiB work (eager), ");
  n += fmt_u64(buf + n, hs.held >> 10);
  S(" KiB now, ");
  n += fmt_u64(buf + n, util);
  S("% util");
#undef S
  size_t t = strlen(tail);
  memcpy(buf + n, tail, t);
  n += t;
  buf[n++] = '\n';
  neap__os_write_err(buf, n);
  scav.trace_bg = scav.trace_eager = 0;
}

/* --- passes */

static bool dontneed(void) { return neap__opt.madvdontneed != 0; }

/* The background goal under a memory limit: 95% of it (Go's). */
static size_t limit_goal(void) {
  size_t limit = neap__memlimit_bytes();
  return limit ? limit - limit / 20 : 0;
}

/* CPU time other threads spent in neap's statistics (neap_stats_read and
 * the like), which program_busy does not count. */
static _Atomic uint64_t stats_cpu_ns;

void neap__scav_note_stats_cpu(uint64_t ns) {
  if (!is_scavenger) atomic_fetch_add_explicit(&stats_cpu_ns, ns, memory_order_relaxed);
}

/* Whether the program's own threads used at least a tenth of a core since
 * the previous look: a program computing without touching the page heap
 * (a long query, a compiler's optimiser) is not idle, and will likely want
 * its pages again. neap's own statistics do not count: a thread that polls
 * neap_stats_read ten times a second, whose read of smaps_rollup walks the
 * page tables (some 12 ms for a 1 GiB heap), used 8-12% of a core in an
 * otherwise idle program and made the scavenger hold its free pages four
 * delays instead of one, at random (the demo's frag run). Tests (a fake
 * clock) drive activity through the heap alone. */
static bool program_busy(uint32_t now) {
  uint64_t mine = neap__os_thread_cputime() + atomic_load_explicit(&stats_cpu_ns, memory_order_relaxed);
  uint64_t all = neap__os_process_cputime(), other = all > mine ? all - mine : 0;
  uint64_t dwall = (uint64_t)(uint32_t)(now - scav.busy_ms) * 1000000u;
  uint64_t dcpu = other > scav.busy_cpu ? other - scav.busy_cpu : 0;
  bool first = !scav.busy_seen;
  scav.busy_seen = true;
  scav.busy_ms = now;
  scav.busy_cpu = other;
  return !first && dcpu * 10 >= dwall;
}

typedef struct step_result {
  bool young, dense, done;
  bool retained; /* due pages kept for an active program's recent demand */
  uint32_t next_ms;
  size_t returned;
  bool budget_out;
} step_result;

/* One background step: passes in quanta while the bucket has credit. */
static step_result background_step(uint32_t now) {
  step_result r = {.young = false};
  long delay = neap__opt.release_delay;
  /* The work lock is held one quantum at a time, so that a fork, or an
   * allocation doing the limit's work, never waits for a whole burst. */
  neap__lock(&scav.work);
  if (delay >= 0 && (uint32_t)(now - scav.last_trim_ms) >= (uint32_t)delay) {
    scav.last_trim_ms = now;
    neap__heap_reclaim(NEAP_RECLAIM_IDLE);
  }
  /* The retention rule (see Retention above): while the program is
   * active, its pages wait BUSY_DELAY_FACTOR delays, and as many free
   * pages as its recent demand says it may take back stay: the most pages
   * in use over the last DEMAND_WINDOW_MS, minus those in use now. */
  demand dm = {.rotate = (uint32_t)(now - scav.last_rotate_ms) >= DEMAND_WINDOW_MS / 2};
  if (dm.rotate) scav.last_rotate_ms = now;
  neap__heap_with_lock(read_demand, &dm);
  neap__unlock(&scav.work);
  uint32_t idle_taken = now - dm.last_taken_ms, idle_freed = now - dm.last_freed_ms;
  uint32_t idle = idle_taken < idle_freed ? idle_taken : idle_freed;
  bool busy = program_busy(now); /* sampled every step: its interval is the step's */
  bool active = delay >= 0 && (idle < (uint32_t)delay || busy);
  uint64_t retain = active && dm.recent_peak > dm.inuse ? dm.recent_peak - dm.inuse : 0;
  for (;;) {
    neap__pacer_refill(&scav.pacer, neap__os_nanotime());
    if (!neap__pacer_may_work(&scav.pacer)) {
      r.budget_out = true;
      break;
    }
    size_t goal = limit_goal();
    bool over = goal != 0 && neap__heap_held() > goal;
    if (delay < 0 && !over) {
      r.done = true;
      break;
    }
    neap__lock(&scav.work);
    scav_pass sp = {.now_ms = now,
                    .delay_ms = delay < 0 ? 0 : (uint32_t)delay * (active ? BUSY_DELAY_FACTOR : 1u),
                    .force = over,
                    .dontneed = dontneed(),
                    .max_bytes = QUANTUM_BYTES,
                    .keep_pages = over ? 0 : retain,
                    .cursor = scav.cursor};
    uint64_t t0 = neap__os_thread_cputime();
    pass(&sp);
    uint64_t worked = neap__os_thread_cputime() - t0;
    neap__pacer_charge(&scav.pacer, worked);
    ADD(cpu_ns, worked);
    scav.cursor = sp.cursor;
    r.returned += sp.returned;
    if (sp.young && (!r.young || sp.next_ms < r.next_ms)) r.next_ms = sp.next_ms;
    r.young |= sp.young;
    r.dense |= sp.dense;
    r.retained |= sp.kept || (active && sp.young); /* look again soon: it may go idle */
    if (over) {
      ADD(eager_bytes, sp.returned); /* the limit's work, done in the background */
      scav.trace_eager += sp.returned;
    } else {
      ADD(bg_bytes, sp.returned);
      scav.trace_bg += sp.returned;
    }
    bool stop = false;
    if (sp.done) {
      r.done = true;
      ADD(cycles, 1);
      if (scav.trace_bg || scav.trace_eager) trace("");
      stop = !over || sp.returned == 0;
    }
    neap__unlock(&scav.work);
    if (stop) break;
  }
  return r;
}

/* How long to sleep after a step (ms); UINT32_MAX: sleep until kicked. */
static uint32_t sleep_after(const step_result *r) {
  if (r->budget_out) {
    uint64_t ms = neap__pacer_wait_ns(&scav.pacer) / 1000000u + 1;
    return ms < MIN_SLEEP_MS ? MIN_SLEEP_MS : (uint32_t)ms;
  }
  if (!r->done) return 0; /* a quantum ended the step: go on */
  long delay = neap__opt.release_delay;
  uint32_t d = delay < 0 ? UINT32_MAX : (uint32_t)delay;
  uint32_t ms = UINT32_MAX;
  if (r->young) {
    /* Not sooner than an eighth of the delay: while a program frees
     * steadily the next page is always nearly due, and each pass reads
     * every free page's stamp. Pages go back within delay * 9/8. */
    uint32_t least = d / 8 > MIN_SLEEP_MS ? d / 8 : MIN_SLEEP_MS;
    ms = r->next_ms < least ? least : r->next_ms;
  }
  if (r->retained) { /* look again soon: the program may have gone idle */
    uint32_t q = d / 4 > MIN_SLEEP_MS ? d / 4 : MIN_SLEEP_MS;
    if (q < ms) ms = q;
  }
  if (ms != UINT32_MAX) return ms;
  if (r->dense) return d < 1000 ? 1000 : d; /* dense chunks change only as the program allocates */
  size_t goal = limit_goal();
  if (goal != 0 && neap__heap_held() > goal) return 1000; /* over the limit, nothing to return now */
  return UINT32_MAX;
}

/* --- the thread */

static void wait_ms(uint32_t ms) {
  neap__lock(&scav.lock);
  if (ms == UINT32_MAX) {
    while (!scav.kicked) pthread_cond_wait(&scav.cond, &scav.lock.m);
  } else if (!scav.kicked) {
    struct timespec ts;
    uint64_t t = neap__os_nanotime() + (uint64_t)ms * 1000000u;
    ts.tv_sec = (time_t)(t / 1000000000u);
    ts.tv_nsec = (long)(t % 1000000000u);
    pthread_cond_timedwait(&scav.cond, &scav.lock.m, &ts);
  }
  scav.kicked = false;
  neap__unlock(&scav.lock);
}

static void *scav_main(void *arg) {
  neap__tls_internal = true; /* the collector neither stops nor scans it */
  (void)arg;
  is_scavenger = true;
  for (;;) {
    step_result r = background_step(neap__os_now_ms());
    uint32_t ms = sleep_after(&r);
    if (ms == 0) continue;
    if (ms == UINT32_MAX) {
      /* Park. Set the flag, then look once more: a free that finds the
       * flag clear happened before this look and is seen by it. */
      atomic_store(&scav.asleep, true);
      neap_heap_stats hs;
      neap__heap_stats(&hs);
      bool idle_caches = neap__heap_reclaim(NEAP_RECLAIM_PENDING) != 0;
      if (hs.pages_free > hs.pages_scavenged || idle_caches) {
        atomic_store(&scav.asleep, false);
        long delay = neap__opt.release_delay;
        ms = delay < 0 ? UINT32_MAX : (uint32_t)(delay < (long)MIN_SLEEP_MS ? MIN_SLEEP_MS : delay);
        if (ms == UINT32_MAX) ms = 1000;
      }
    }
    /* The stats file: published outside the work lock (stats before
     * scavenger in the lock order: lock.h). */
    uint32_t pub_ms = neap__statsfile_tick(neap__os_now_ms());
    if (pub_ms < ms) ms = pub_ms;
    wait_ms(ms);
    atomic_store(&scav.asleep, false);
  }
  return NULL;
}

static void start(void) {
  int expect = ST_NONE;
  if (!atomic_compare_exchange_strong(&scav.state, &expect, ST_STARTING)) return;
  if (!neap__options_parsed()) { /* too early (the dynamic loader): later */
    atomic_store(&scav.state, ST_NONE);
    return;
  }
  if (!neap__opt.scavenger) {
    atomic_store(&scav.state, ST_OFF);
    return;
  }
  if (!scav.cond_ready) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&scav.cond, &ca);
    pthread_condattr_destroy(&ca);
    scav.cond_ready = true;
  }
  /* A process that cannot make a thread now (EAGAIN: RLIMIT_NPROC, the
   * kernel's thread table) tries again at its first allocation from the
   * page heap a second later; until then, and for good where it never can
   * (seccomp), its memory goes back on neap_release and the limit only. */
  uint32_t now = neap__os_now_ms();
  if (scav.start_failed && (uint32_t)(now - scav.start_failed_ms) < START_RETRY_MS) {
    atomic_store(&scav.state, ST_NONE);
    return;
  }
  neap__pacer_init(&scav.pacer, neap__opt.scavenger_cpu, neap__os_nanotime());
  /* pthread_create allocates (the new thread's TLS): no neap lock is held. */
  int err = neap__os_thread_start(scav_main, NULL, "neap-scavenger");
  scav.start_failed = err != 0;
  scav.start_failed_ms = now;
  atomic_store(&scav.state, err == 0 ? ST_RUNNING : ST_NONE);
}

/* --- what the heap tells the scavenger */

static void heap_grew(uint64_t bytes) {
  if (bytes > START_BYTES && !atomic_load_explicit(&scav.big, memory_order_relaxed))
    atomic_store_explicit(&scav.big, true, memory_order_relaxed);
}

/* Pages were freed: wakes a sleeping scavenger (one relaxed load when there
 * is nothing to do). Never starts the thread: frees may run under a
 * central's lock, and pthread_create allocates (it could need that very
 * lock). */
static void kick(void) {
  if (NEAP_LIKELY(atomic_load_explicit(&scav.state, memory_order_relaxed) == ST_RUNNING) &&
      atomic_load(&scav.asleep) && atomic_exchange(&scav.asleep, false)) {
    neap__lock(&scav.lock);
    scav.kicked = true;
    pthread_cond_signal(&scav.cond);
    neap__unlock(&scav.lock);
  }
}

/* After an allocation from the page heap, no neap lock held: starts the
 * thread once the heap has grown big enough (one relaxed load otherwise). */
static void after_alloc(void) {
  if (NEAP_UNLIKELY(atomic_load_explicit(&scav.state, memory_order_relaxed) == ST_NONE) &&
      atomic_load_explicit(&scav.big, memory_order_relaxed))
    start();
}

static const neap_heap_observer observer = {
    .arena_added = idx_arena_added,
    .grew = heap_grew,
    .taken = idx_taken,
    .freed = idx_freed,
    .returned = idx_returned,
    .after_alloc = after_alloc,
    .kick = kick,
};

void neap__scav_register(void) { neap__heap_set_observer(&observer); }

static bool scav_running(void) { return atomic_load(&scav.state) == ST_RUNNING; }

/* --- synchronous work */

void neap__scav_limit_return(size_t bytes, bool all) {
  neap__lock(&scav.work);
  scav_pass sp = {.force = true, .dontneed = dontneed(), .cursor = UINT64_MAX, .max_bytes = all ? 0 : bytes};
  uint64_t t0 = neap__os_thread_cputime();
  pass(&sp);
  ADD(cpu_ns, neap__os_thread_cputime() - t0);
  ADD(eager_bytes, sp.returned);
  scav.trace_eager += sp.returned;
  neap__unlock(&scav.work);
}

size_t neap_release(void) {
  neap__process_init();
  neap__lock(&scav.work);
  neap__heap_reclaim(NEAP_RECLAIM_RELEASE);
  scav_pass sp = {.force = true, .dontneed = dontneed(), .cursor = UINT64_MAX};
  uint64_t t0 = neap__os_thread_cputime();
  pass(&sp);
  ADD(cpu_ns, neap__os_thread_cputime() - t0);
  ADD(forced_bytes, sp.returned);
  if (neap__opt.scavtrace) {
    scav.trace_bg += sp.returned;
    trace(" (forced)");
  }
  neap__unlock(&scav.work);
  return sp.returned;
}

void neap__scav_totals(neap_scav_totals *out) {
  out->bg_bytes = atomic_load_explicit(&scav.bg_bytes, memory_order_relaxed);
  out->eager_bytes = atomic_load_explicit(&scav.eager_bytes, memory_order_relaxed);
  out->forced_bytes = atomic_load_explicit(&scav.forced_bytes, memory_order_relaxed);
  out->cycles = atomic_load_explicit(&scav.cycles, memory_order_relaxed);
  out->cpu_ns = atomic_load_explicit(&scav.cpu_ns, memory_order_relaxed);
  out->lazy_pages = atomic_load_explicit(&idx.lazy, memory_order_relaxed);
  out->running = scav_running();
}

#if NEAP_TESTING
/* One background step at `now` for tests (no thread needed): returns the
 * sleep it would choose (UINT32_MAX: until kicked) and the bytes it returned. */
uint32_t neap__scav_test_step(uint32_t now, size_t *returned) {
  if (scav.pacer.rate_bp == 0) neap__pacer_init(&scav.pacer, neap__opt.scavenger_cpu, neap__os_nanotime());
  step_result r = background_step(now);
  if (returned) *returned = r.returned;
  return r.done || r.budget_out ? sleep_after(&r) : 0;
}
#endif

void neap__scav_fork(neap_fork_phase phase) {
  if (phase == NEAP_FORK_PREPARE) {
    neap__lock(&scav.work);
    return;
  }
  if (phase == NEAP_FORK_CHILD) {
    /* No scavenger thread here: reset, and let the next allocation's
     * after_alloc start one. */
    neap__lock_fork(&scav.work, phase);
    neap__lock_init(&scav.lock);
    scav.cond_ready = false;
    scav.kicked = false;
    atomic_store(&scav.asleep, false);
    if (atomic_load(&scav.state) != ST_OFF) atomic_store(&scav.state, ST_NONE);
    return;
  }
  neap__lock_fork(&scav.work, phase);
}

#if NEAP_TESTING
#include "check.h"

void neap__scav_check_hold(bool hold) {
  if (hold) neap__lock(&scav.work);
  else neap__unlock(&scav.work);
}

typedef struct index_check {
  neap_check *ck;
  uint64_t lazy, inuse;
  uint32_t chunk_pages;
} index_check;

/* One page of the heap (called under the heap lock, in order): a lazy
 * bit only on a page returned, the chunks' counts of pages in spans. */
static void check_page(void *arg, uint64_t pg, int state, neap_span *s) {
  index_check *ic = arg;
  scav_arena *a = idx.arena[pg / NEAP_ARENA_PAGES];
  uint64_t i = pg % NEAP_ARENA_PAGES;
  if (!NEAP_CHECK(ic->ck, a != NULL, "scavenger's index has no record for an arena", (void *)(uintptr_t)pg)) return;
  if (neap__bits_get(a->lazy, i)) {
    ic->lazy++;
    NEAP_CHECK(ic->ck, state == NEAP_PA_SCAVENGED, "lazy bit on a page not returned to the OS", (void *)(uintptr_t)pg);
  }
  if (s != NULL) ic->chunk_pages++, ic->inuse++;
  if (i % NEAP_CHUNK_PAGES == NEAP_CHUNK_PAGES - 1) {
    NEAP_CHECK(ic->ck, a->chunk_inuse[i / NEAP_CHUNK_PAGES] == ic->chunk_pages, "chunk's count of pages in use is wrong",
               (void *)(uintptr_t)(pg - NEAP_CHUNK_PAGES + 1));
    ic->chunk_pages = 0;
  }
}

void neap__scav_check(neap_check *ck) {
  index_check ic = {.ck = ck};
  neap__heap_each_page(check_page, &ic);
  NEAP_CHECK(ck, ic.lazy == atomic_load(&idx.lazy), "scavenger's count of lazily returned pages is wrong", &idx.lazy);
  NEAP_CHECK(ck, ic.inuse == idx.inuse, "scavenger's count of pages in use is wrong", &idx.inuse);
  NEAP_CHECK(ck, idx.peak_cur >= idx.inuse, "scavenger's demand peak is below the pages in use", &idx.peak_cur);
}

void neap__scav_check_targets(neap_check_targets *t) {
  t->pages_lazy = (uint64_t *)&idx.lazy;
  t->scav_chunk_inuse = idx.arena[0] != NULL ? idx.arena[0]->chunk_inuse : NULL;
  t->scav_lazy = idx.arena[0] != NULL ? idx.arena[0]->lazy : NULL;
}
#endif
