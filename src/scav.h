/* The scavenger (scav.c): returning free memory to the OS, paced, and the
 * memory limit's work. scav.c has the essay. */
#ifndef NEAP_SCAV_H
#define NEAP_SCAV_H

#include "internal.h"
#include "lock.h"

/* Registers the scavenger with the heap as its observer (init.c, once):
 * from then on the heap tells it which pages are taken, freed and returned,
 * and it keeps its index and starts its thread from there. */
void neap__scav_register(void);
/* The memory limit's return function (heap.h: neap__heap_set_limit):
 * returns free pages to the OS now, at least `bytes`, all it can when
 * `all`, whatever the delay and the density rule. */
void neap__scav_limit_return(size_t bytes, bool all);
void neap__scav_fork(neap_fork_phase phase);
/* CPU time (ns) a thread other than the scavenger spent on neap's own
 * statistics: not the program's work (see program_busy in scav.c). */
void neap__scav_note_stats_cpu(uint64_t ns);
/* What the scavenger did, for statistics. */
typedef struct neap_scav_totals {
  uint64_t bg_bytes;     /* returned by the background thread after the delay */
  uint64_t eager_bytes;  /* returned for the memory limit */
  uint64_t forced_bytes; /* returned by neap_release / malloc_trim */
  uint64_t cycles;       /* background passes completed */
  uint64_t cpu_ns;       /* CPU time spent returning memory, all kinds */
  uint64_t lazy_pages;   /* free pages returned with MADV_FREE and not taken since */
  bool running;          /* the background thread exists */
} neap_scav_totals;
void neap__scav_totals(neap_scav_totals *out);
/* The pacer: a token bucket of CPU time, filled at rate_bp hundredths of
 * a percent of wall time, holding at most 100 s of that. */
typedef struct neap__pacer {
  uint64_t rate_bp;
  int64_t credit, cap; /* ns x 10000 */
  uint64_t last_ns;
} neap__pacer;
void neap__pacer_init(neap__pacer *p, long cpu_bp, uint64_t now_ns);
void neap__pacer_refill(neap__pacer *p, uint64_t now_ns);
void neap__pacer_charge(neap__pacer *p, uint64_t worked_ns);
bool neap__pacer_may_work(const neap__pacer *p);
int64_t neap__pacer_credit_ns(const neap__pacer *p);
uint64_t neap__pacer_wait_ns(const neap__pacer *p); /* until credit is positive again */
#if NEAP_TESTING
/* One background step at `now` (os.h's fake clock), as the thread would
 * take it: returns the sleep it would choose (UINT32_MAX: until kicked) and the
 * bytes it returned. */
uint32_t neap__scav_test_step(uint32_t now, size_t *returned);
#endif

#endif
