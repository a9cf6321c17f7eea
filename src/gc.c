/* The collector: when it runs, what one cycle does, and what it tells.
 *
 * neap's collector is the Go runtime's, for C: a mark-sweep, non-moving,
 * conservative collector that shares the page heap, the scavenger and the
 * memory limit with malloc (gcalloc.c has the spans and the sweep,
 * gcroots.c the roots and the stop, gcmark.c the markers).
 *
 * A cycle (collect):
 *   1. finish the last cycle's sweep (most of it the background sweeper
 *      and the allocating threads did);
 *   2. start the markers the heap's size calls for (with the world
 *      running: thread creation allocates);
 *   3. stop the world (gcroots.c), mark from the roots with N markers
 *      (gcmark.c), sweep every thread's current spans in place and open
 *      the next sweep generation; restart the world. This is the pause;
 *   4. free the unmarked large objects, set the next goal, wake the
 *      background sweeper, print the trace line.
 *
 * Pacing, Go's (go-runtime.md §4): after a cycle that found `live` bytes
 * marked and scanned `roots` bytes of roots, the goal is
 *     live + (live + roots) * GOGC / 100,   at least 4 MiB * GOGC / 100,
 * and a collection starts when the bytes allocated since the cycle bring
 * the heap to the goal. Allocation counts lock-free: each thread adds the
 * bytes of the windows it loads to its own count, and to the shared one
 * (one atomic add) per 64 KiB; the trigger's test is one compare there.
 * The memory limit (NEAP_MEMLIMIT, or the cgroup's; shared with malloc)
 * lowers the goal to what fits under it beside everything else neap
 * holds, with GOGC off too. So that a limit the live heap does not fit in
 * cannot make the program collect without end (Go's death spiral), a
 * limiter keeps collection under half of the CPU time: a leaky bucket
 * fills with collection time and drains with the program's, and while it
 * is full the limit's goal is ignored (or, with NEAP_GC_LIMIT_MODE=die,
 * the program ends with a clear message). A collection is forced after
 * two minutes without one (NEAP_GC_FORCE_PERIOD), and, beyond Go, once
 * each time the program goes quiet (less than 5% of a CPU and no
 * collected allocation for NEAP_GC_IDLE, 1 s) with 4 MiB or more of
 * collected heap: the last collection ran while it was busy, and what it
 * found live may have died since. Go keeps such a heap until its forced
 * collection, minutes later (the seed's 531 MiB). A busy program never
 * pays for it; one that is quiet stays collected until it allocates
 * again.
 *
 * The background thread (neap-gc) sweeps after each cycle, and looks at
 * the clock four times a second for the forced and idle collections.
 *
 * Locking: GC_CYCLE, one collection at a time, outermost of everything a
 * cycle takes (lock.h). The counts are atomics.
 */
#include <errno.h>
#include <string.h>

#include "gc.h"
#include "heap.h"
#include "memlimit.h"
#include "neap.h"
#include "neap_gc.h"
#include "options.h"
#include "os/os.h"

typedef enum { WHY_TRIGGER, WHY_FORCED, WHY_IDLE, WHY_PERIODIC } why_t;

static neap_mutex cycle_lock = NEAP_MUTEX_INIT(GC_CYCLE);

/* Pacing state: written under cycle_lock, read anywhere. */
static _Atomic int64_t percent = INT64_MIN; /* GOGC; INT64_MIN: not read from the options yet */
static _Atomic uint64_t allocated;          /* bytes since the last cycle */
static _Atomic uint64_t heap_live;          /* marked by the last cycle */
static _Atomic uint64_t goal = (uint64_t)4 << 20;
static _Atomic bool used;                   /* a collected object was ever allocated */
static _Atomic uint32_t sweep_yield;

/* Statistics (under cycle_lock; read racily by neap_gc_stats_read). */
static struct {
  uint64_t cycles, forced, idle, periodic;
  uint64_t last_gc_ns, first_gc_ns;
  uint64_t pause_total_ns, pause_max_ns, pause_ns[16];
  uint64_t cpu_ns;
  neap_gc_rootstats roots;
  uint32_t markers;
  int64_t bucket_ns; /* the CPU limiter's bucket */
  bool limited;
} st;
static uint64_t start_ns; /* for the trace's @ (under cycle_lock) */
static _Atomic uint64_t last_gc_end; /* st.last_gc_ns, for the background thread's clock */

/* The background thread's wake-up. */
static _Atomic uint32_t bg_kick;
static _Atomic bool bg_started;

static void bg_start(void);

static int64_t gogc(void) {
  int64_t p = atomic_load_explicit(&percent, memory_order_relaxed);
  if (NEAP_UNLIKELY(p == INT64_MIN)) {
    neap__options_init();
    int64_t want = neap__opt.gc_percent;
    int64_t expect = INT64_MIN;
    atomic_compare_exchange_strong(&percent, &expect, want);
    p = atomic_load_explicit(&percent, memory_order_relaxed);
  }
  return p;
}

bool neap__gc_scan_malloc(void) { return neap__opt.gc_scan_malloc != 0; }
bool neap__gc_cycle_trylock(void) {
  if (atomic_load_explicit(&sweep_yield, memory_order_relaxed)) return false; /* a collection is coming */
  return neap__trylock(&cycle_lock);
}
void neap__gc_cycle_unlock(void) { neap__unlock(&cycle_lock); }

uint64_t neap__gc_goal(uint64_t live, uint64_t roots, int64_t gogc_pct, uint64_t limit, uint64_t other,
                       bool limited) {
  uint64_t g = UINT64_MAX;
  if (gogc_pct >= 0) {
    unsigned __int128 w = (unsigned __int128)live + (unsigned __int128)(live + roots) * (uint64_t)gogc_pct / 100;
    g = w > UINT64_MAX ? UINT64_MAX : (uint64_t)w;
    uint64_t floor = (uint64_t)((unsigned __int128)((uint64_t)4 << 20) * (uint64_t)gogc_pct / 100);
    if (g < floor) g = floor;
  }
  if (limit != 0 && !limited) {
    uint64_t room = limit > other ? limit - other : 0;
    /* Headroom for the fragmentation of spans in use: the heap's bytes in
     * spans run ahead of live objects. */
    room -= room / 16;
    if (room < live + ((uint64_t)1 << 20)) room = live + ((uint64_t)1 << 20);
    if (room < g) g = room;
  }
  return g;
}

/* The goal after a cycle that marked `live` bytes with `roots` bytes of
 * roots, from this process's settings and heap. */
static uint64_t compute_goal(uint64_t live, uint64_t roots) {
  size_t limit = neap__memlimit_bytes();
  uint64_t other = 0;
  if (limit != 0) {
    neap_gc_heap h;
    neap__gc_heap(&h);
    uint64_t held = neap__heap_held();
    other = held > h.span_bytes ? held - h.span_bytes : 0;
  }
  return neap__gc_goal(live, roots, gogc(), limit, other, st.limited);
}

/* Whether the heap has reached the goal. */
static bool over_goal(void) {
  uint64_t a = atomic_load_explicit(&allocated, memory_order_relaxed);
  uint64_t l = atomic_load_explicit(&heap_live, memory_order_relaxed);
  return l + a >= atomic_load_explicit(&goal, memory_order_relaxed);
}

/* --- one cycle */

typedef struct cycle {
  unsigned markers;
  neap_gc_markstats ms;
  uint64_t pause_ns;
} cycle;

static void stopped(void *arg) {
  cycle *c = arg;
  uint64_t t0 = neap__os_nanotime();
  neap__gc_mark(c->markers, &c->ms);
  neap__gc_roots_now.malloc_bytes = c->ms.malloc_bytes;
  neap__gc_sweep_cached_stw();
  c->pause_ns = neap__os_nanotime() - t0; /* the stop's own cost is added by the caller */
}

static void trace(why_t why, uint64_t n, uint64_t at_ns, uint64_t pct_cpu, uint64_t sweep_ns, uint64_t pause_ns,
                  uint64_t after_ns, uint64_t sweep_cpu, uint64_t mark_cpu, uint64_t after_cpu, uint64_t before,
                  uint64_t live, uint64_t g, const neap_gc_rootstats *rs, unsigned markers) {
  char line[320];
  size_t k = 0;
#define PUT(s) \
  do { \
    const char *s_ = (s); \
    while (*s_ && k < sizeof line - 2) line[k++] = *s_++; \
  } while (0)
  char num[32];
#define NUM(v) \
  do { \
    uint64_t v_ = (v); \
    int d_ = 0; \
    do { num[d_++] = (char)('0' + v_ % 10); v_ /= 10; } while (v_); \
    while (d_ && k < sizeof line - 2) line[k++] = num[--d_]; \
  } while (0)
#define MS(ns) \
  do { \
    uint64_t us_ = (ns) / 1000; \
    NUM(us_ / 1000); \
    PUT("."); \
    uint64_t f_ = us_ % 1000; \
    line[k++] = (char)('0' + f_ / 100); \
    line[k++] = (char)('0' + f_ / 10 % 10); \
    line[k++] = (char)('0' + f_ % 10); \
  } while (0)
  PUT("gc ");
  NUM(n);
  PUT(" @");
  NUM(at_ns / 1000000000u);
  PUT(".");
  uint64_t ms = at_ns / 1000000u % 1000u;
  line[k++] = (char)('0' + ms / 100);
  line[k++] = (char)('0' + ms / 10 % 10);
  line[k++] = (char)('0' + ms % 10);
  PUT("s ");
  NUM(pct_cpu);
  PUT("%: ");
  MS(sweep_ns);
  PUT("+");
  MS(pause_ns);
  PUT("+");
  MS(after_ns);
  PUT(" ms clock, ");
  MS(sweep_cpu);
  PUT("+0/");
  MS(mark_cpu);
  PUT("/0+");
  MS(after_cpu);
  PUT(" ms cpu, ");
  NUM(before >> 20);
  PUT("->");
  NUM(before >> 20);
  PUT("->");
  NUM(live >> 20);
  PUT(" MB, ");
  NUM(g == UINT64_MAX ? 0 : g >> 20);
  PUT(" MB goal, ");
  NUM((rs->stack_bytes + rs->tls_bytes) >> 20);
  PUT(" MB stacks, ");
  NUM(rs->global_bytes >> 20);
  PUT(" MB globals, ");
  NUM(markers);
  PUT(" P");
  if (why == WHY_FORCED) PUT(" (forced)");
  else if (why == WHY_IDLE) PUT(" (idle)");
  else if (why == WHY_PERIODIC) PUT(" (forced)");
  line[k++] = '\n';
  neap__os_write_err(line, k);
#undef PUT
#undef NUM
#undef MS
}

bool neap__gc_bucket(int64_t *bucket, uint64_t gc_ns, uint64_t other_ns, unsigned ncpu) {
  int64_t cap = (int64_t)ncpu * 1000000000ll;
  int64_t b = *bucket + (int64_t)gc_ns - (int64_t)other_ns;
  if (b < 0) b = 0;
  if (b > cap) b = cap;
  *bucket = b;
  return b >= cap;
}

/* The limiter after a cycle that took gc_ns of CPU: the process's other
 * CPU time since the last cycle drains the bucket. */
static void limiter(uint64_t gc_ns) {
  static uint64_t last_process;
  uint64_t proc = neap__os_process_cputime();
  uint64_t other = proc > last_process + gc_ns ? proc - last_process - gc_ns : 0;
  last_process = proc;
  st.limited = neap__gc_bucket(&st.bucket_ns, gc_ns, other, neap__os_ncpu());
}

static void collect_now(why_t why);

/* Where the collecting thread's own stack starts to count as roots: the
 * frame of the call into the collector, with the caller's callee-saved
 * registers saved in it. The collector's own frames below hold stale
 * addresses of the last cycle's work (the mark's, the sweep's): scanning
 * them would keep objects alive that died. */
__thread uintptr_t neap__gc_entry_sp __attribute__((tls_model("initial-exec")));

static NEAP_NOINLINE void collect(why_t why) {
  __builtin_unwind_init(); /* every callee-saved register into this frame, below the anchor's caller part */
  volatile uintptr_t anchor = 0;
  uintptr_t outer = neap__gc_entry_sp;
  if (outer == 0) neap__gc_entry_sp = (uintptr_t)&anchor;
  collect_now(why);
  neap__gc_entry_sp = outer;
  __asm__ volatile("" ::"r"(&anchor) : "memory");
}

static void collect_now(why_t why) {
  if (neap__tls_internal && why == WHY_TRIGGER) return; /* neap's own threads never allocate collected objects */
  atomic_store_explicit(&sweep_yield, 1, memory_order_relaxed);
  neap__lock(&cycle_lock);
  if (why == WHY_TRIGGER && !over_goal()) {
    neap__unlock(&cycle_lock);
    atomic_store_explicit(&sweep_yield, 0, memory_order_relaxed);
    return;
  }
  uint64_t t0 = neap__os_nanotime(), c0 = neap__os_thread_cputime();
  if (start_ns == 0) start_ns = t0;
  neap__gc_sweep_all(false);
  uint64_t before = atomic_load_explicit(&heap_live, memory_order_relaxed) +
                    atomic_load_explicit(&allocated, memory_order_relaxed);
  neap_gc_heap h;
  neap__gc_heap(&h);
  cycle c = {.markers = neap__gc_markers_ready(neap__gc_markers_for(h.span_bytes))};
  uint64_t t1 = neap__os_nanotime(), c1 = neap__os_thread_cputime();
  neap__gc_stop_the_world(stopped, &c);
  uint64_t t2 = neap__os_nanotime(), c2 = neap__os_thread_cputime();
  neap__gc_sweep_large();
  uint64_t live = c.ms.marked_bytes;
  const neap_gc_rootstats *rs = &neap__gc_roots_now;
  uint64_t roots = rs->stack_bytes + rs->global_bytes + rs->tls_bytes + rs->malloc_bytes + rs->added_bytes;
  atomic_store_explicit(&heap_live, live, memory_order_relaxed);
  atomic_store_explicit(&allocated, 0, memory_order_relaxed);
  uint64_t t3 = neap__os_nanotime(), c3 = neap__os_thread_cputime();
  uint64_t mark_cpu = c.ms.cpu_ns; /* every marker's, this thread's included */
  uint64_t gc_cpu = (c3 - c0) + (mark_cpu - c.ms.cpu_self_ns);
  limiter(gc_cpu);
  uint64_t g = compute_goal(live, roots);
  if (st.limited && neap__opt.gc_limit_mode == 2 && neap__memlimit_bytes() != 0 && g != UINT64_MAX &&
      live > neap__memlimit_bytes())
    neap__fatal("gc: the live heap does not fit under the memory limit (NEAP_GC_LIMIT_MODE=die); live bytes",
                (void *)(uintptr_t)live);
  atomic_store_explicit(&goal, g, memory_order_relaxed);

  uint64_t n = ++st.cycles;
  if (why == WHY_FORCED) st.forced++;
  else if (why == WHY_IDLE) st.idle++;
  else if (why == WHY_PERIODIC) st.periodic++;
  uint64_t pause = t2 - t1;
  st.pause_ns[(n - 1) % 16] = pause;
  st.pause_total_ns += pause;
  if (pause > st.pause_max_ns) st.pause_max_ns = pause;
  st.cpu_ns += gc_cpu;
  if (st.first_gc_ns == 0) st.first_gc_ns = t0;
  st.last_gc_ns = t3;
  atomic_store_explicit(&last_gc_end, t3, memory_order_relaxed);
  st.roots = *rs;
  st.markers = c.markers;
  if (neap__opt.gctrace) {
    /* Go's figure: of the process's CPU time since it started. */
    uint64_t proc = neap__os_process_cputime();
    uint64_t pct = proc ? st.cpu_ns * 100 / proc : 0;
    trace(why, n, t0 - start_ns, pct, t1 - t0, pause, t3 - t2, c1 - c0, mark_cpu, c3 - c2, before, live, g, rs,
          c.markers);
  }
  neap__unlock(&cycle_lock);
  atomic_store_explicit(&sweep_yield, 0, memory_order_relaxed);
  bg_start();
  atomic_fetch_add_explicit(&bg_kick, 1, memory_order_release);
  neap__os_futex_wake(&bg_kick, false);
}

/* --- what allocation calls */

void neap__gc_note_alloc(uint64_t bytes) {
  if (NEAP_UNLIKELY(!atomic_load_explicit(&used, memory_order_acquire))) {
    /* The first goal, once (the pacing state is the cycle lock's). */
    neap__lock(&cycle_lock);
    if (!atomic_load_explicit(&used, memory_order_relaxed)) {
      gogc();
      atomic_store_explicit(&goal, compute_goal(0, 0), memory_order_relaxed);
      atomic_store_explicit(&used, true, memory_order_release);
    }
    neap__unlock(&cycle_lock);
    bg_start();
  }
  uint64_t a = atomic_fetch_add_explicit(&allocated, bytes, memory_order_relaxed) + bytes;
  if (NEAP_UNLIKELY(atomic_load_explicit(&heap_live, memory_order_relaxed) + a >=
                    atomic_load_explicit(&goal, memory_order_relaxed)))
    collect(WHY_TRIGGER);
}

void neap__gc_note_alloc_quiet(uint64_t bytes) {
  atomic_fetch_add_explicit(&allocated, bytes, memory_order_relaxed);
}

void neap__gc_note_free(uint64_t bytes) {
  /* Off the count since the cycle if it is there, else off the live
   * figure (an object from before it). */
  uint64_t a = atomic_load_explicit(&allocated, memory_order_relaxed);
  while (a >= bytes) {
    if (atomic_compare_exchange_weak_explicit(&allocated, &a, a - bytes, memory_order_relaxed, memory_order_relaxed))
      return;
  }
  uint64_t l = atomic_load_explicit(&heap_live, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(&heap_live, &l, l > bytes ? l - bytes : 0, memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

/* --- the background thread */

unsigned neap__gc_clock_step(neap_gc_clock *c, const neap_gc_look *l) {
  if (c->last_t == 0) { /* the first look: where the clocks start */
    c->last_t = c->start = l->now;
    c->last_proc = l->proc;
    c->last_alloc = l->allocated;
    return NEAP_GC_CLOCK_NONE;
  }
  uint64_t dt = l->now - c->last_t, dcpu = l->proc > c->last_proc ? l->proc - c->last_proc : 0;
  if (dt < NEAP_GC_CLOCK_STEP_NS) return NEAP_GC_CLOCK_NONE;
  c->last_t = l->now;
  c->last_proc = l->proc;
  uint64_t last = l->last_gc ? l->last_gc : c->start;
  if (l->enabled && l->force_ms > 0 && l->now - last >= (uint64_t)l->force_ms * 1000000ull &&
      (l->allocated != 0 || l->live != 0))
    return NEAP_GC_CLOCK_PERIODIC;
  /* Quiet: under 5% of one CPU, no collected allocation since the last
   * look. */
  bool quiet = dcpu * 20 < dt && l->allocated == c->last_alloc;
  c->last_alloc = l->allocated;
  if (!quiet) {
    c->quiet_since = 0;
    if (l->allocated != 0) c->idle_done = false; /* it allocated since: the next quiet spell may collect */
    return NEAP_GC_CLOCK_NONE;
  }
  if (c->quiet_since == 0) c->quiet_since = l->now;
  /* Once per quiet spell: the last collection ran while the program was
   * busy, so what it found live may have died since (the seed's buffer);
   * a heap under 4 MiB is not worth it. */
  if (l->enabled && l->idle_ms > 0 && l->now - c->quiet_since >= (uint64_t)l->idle_ms * 1000000ull &&
      !c->idle_done && l->span_bytes >= ((uint64_t)4 << 20)) {
    c->idle_done = true;
    return NEAP_GC_CLOCK_IDLE;
  }
  return NEAP_GC_CLOCK_NONE;
}

/* The program's CPU time: the process's less neap's own threads' (the
 * scavenger returning the pages a collection freed, the markers), which
 * must not make a quiet program look busy. */
static uint64_t program_cputime(void) {
  uint64_t own = neap__os_own_cputime(), all = neap__os_process_cputime();
  return all > own ? all - own : 0;
}

static void *bg_main(void *arg) {
  (void)arg;
  neap__tls_internal = true;
  uint32_t seen = 0;
  neap_gc_clock clock = {0};
  for (;;) {
    uint32_t k = atomic_load_explicit(&bg_kick, memory_order_acquire);
    if (k == seen) neap__os_futex_wait(&bg_kick, k, 250);
    k = atomic_load_explicit(&bg_kick, memory_order_acquire);
    if (k != seen) {
      seen = k;
      neap__gc_sweep_all(true);
    }
    neap_gc_heap h;
    neap__gc_heap(&h);
    neap_gc_look look = {
        .now = neap__os_nanotime(),
        .proc = program_cputime(),
        .allocated = atomic_load_explicit(&allocated, memory_order_relaxed),
        .live = atomic_load_explicit(&heap_live, memory_order_relaxed),
        .span_bytes = h.span_bytes,
        .last_gc = atomic_load_explicit(&last_gc_end, memory_order_relaxed),
        .force_ms = neap__opt.gc_force_period,
        .idle_ms = neap__opt.gc_idle,
        .enabled = gogc() >= 0,
    };
    unsigned why = neap__gc_clock_step(&clock, &look);
    if (why == NEAP_GC_CLOCK_PERIODIC) collect(WHY_PERIODIC);
    else if (why == NEAP_GC_CLOCK_IDLE) {
      collect(WHY_IDLE);
      clock.last_alloc = atomic_load_explicit(&allocated, memory_order_relaxed);
    }
  }
  return NULL;
}

static void bg_start(void) {
  if (atomic_load_explicit(&bg_started, memory_order_acquire)) return;
  if (atomic_exchange_explicit(&bg_started, true, memory_order_acq_rel)) return;
  if (neap__os_thread_start(bg_main, NULL, "neap-gc") != 0) atomic_store(&bg_started, false);
}

/* --- the public calls */

void neap_gc_collect(void) {
  neap__gc_thread_known();
  collect(WHY_FORCED);
}

int neap_gc_set_percent(int pct) {
  int64_t old = gogc();
  atomic_store_explicit(&percent, pct < 0 ? -1 : pct, memory_order_relaxed);
  neap__lock(&cycle_lock);
  atomic_store_explicit(&goal,
                        compute_goal(atomic_load_explicit(&heap_live, memory_order_relaxed),
                                     st.roots.stack_bytes + st.roots.global_bytes + st.roots.tls_bytes +
                                         st.roots.malloc_bytes + st.roots.added_bytes),
                        memory_order_relaxed);
  neap__unlock(&cycle_lock);
  return old < 0 ? -1 : (int)old;
}

void neap_gc_stats_read(neap_gc_stats *out) {
  memset(out, 0, sizeof *out);
  neap__lock(&cycle_lock);
  out->cycles = st.cycles;
  out->forced = st.forced;
  out->idle = st.idle;
  out->heap_live = atomic_load_explicit(&heap_live, memory_order_relaxed);
  out->heap_alloc = out->heap_live + atomic_load_explicit(&allocated, memory_order_relaxed);
  uint64_t g = atomic_load_explicit(&goal, memory_order_relaxed);
  out->next_gc = g == UINT64_MAX ? 0 : g;
  neap_gc_heap h;
  neap__gc_heap(&h);
  out->heap_inuse = h.span_bytes;
  out->last_gc_ns = st.last_gc_ns;
  out->pause_total_ns = st.pause_total_ns;
  out->pause_max_ns = st.pause_max_ns;
  memcpy(out->pause_ns, st.pause_ns, sizeof out->pause_ns);
  out->stack_bytes = st.roots.stack_bytes + st.roots.tls_bytes;
  out->global_bytes = st.roots.global_bytes;
  out->tls_bytes = st.roots.tls_bytes;
  out->malloc_bytes = st.roots.malloc_bytes;
  out->root_bytes = st.roots.stack_bytes + st.roots.global_bytes + st.roots.tls_bytes + st.roots.malloc_bytes +
                    st.roots.added_bytes;
  out->cpu_ns = st.cpu_ns;
  uint64_t proc = st.first_gc_ns ? neap__os_process_cputime() : 0;
  out->cpu_fraction = proc ? (double)st.cpu_ns / (double)proc : 0.0;
  out->markers = st.markers;
  out->threads_stopped = st.roots.threads_stopped;
  int64_t p = gogc();
  out->percent = p < 0 ? -1 : (int32_t)p;
  neap__unlock(&cycle_lock);
}

void neap__gc_stats_fill(neap_stats_t *s) {
  if (!atomic_load_explicit(&used, memory_order_relaxed)) return; /* all zero (neap.h) */
  neap_gc_stats g;
  neap_gc_stats_read(&g);
  s->gc_cycles = g.cycles;
  s->gc_forced = g.forced;
  s->gc_idle = g.idle;
  s->gc_heap_live = g.heap_live;
  s->gc_heap_alloc = g.heap_alloc;
  s->gc_heap_inuse = g.heap_inuse;
  s->gc_next = g.next_gc;
  s->gc_last_unix_ns = g.last_gc_ns != 0 ? neap__os_walltime_ns() - (neap__os_nanotime() - g.last_gc_ns) : 0;
  s->gc_pause_total_ns = g.pause_total_ns;
  s->gc_pause_last_ns = g.cycles ? g.pause_ns[(g.cycles - 1) % 16] : 0;
  s->gc_pause_max_ns = g.pause_max_ns;
  s->gc_cpu_ns = g.cpu_ns;
  s->gc_cpu_fraction_ppm = (uint64_t)(g.cpu_fraction * 1e6);
  s->gc_root_bytes = g.root_bytes;
  s->gc_stack_bytes = g.stack_bytes;
  s->gc_global_bytes = g.global_bytes;
  s->gc_malloc_bytes = g.malloc_bytes;
  s->gc_markers = g.markers;
  s->gc_percent = g.percent < 0 ? 0 : (uint64_t)g.percent;
  s->gc_enabled = g.percent >= 0;
  s->gc_sys = neap__gc_mark_sys();
}

void neap__gc_fork(neap_fork_phase phase) {
  neap__lock_fork(&cycle_lock, phase);
  if (phase == NEAP_FORK_CHILD) {
    /* The parent's background thread and markers are not the child's. */
    atomic_store(&bg_started, false);
    neap__gc_mark_fork_child();
  }
}
