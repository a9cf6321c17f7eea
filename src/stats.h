/* The statistics' internals (stats.c, statsfile.c). The public side is
 * neap_stats_read in neap.h. */
#ifndef NEAP_STATS_H
#define NEAP_STATS_H

#include "lock.h"

/* The whole snapshot without the kernel's view (stats.c): for mallinfo
 * and the tests, which must not do I/O. */
struct neap_stats;
void neap__stats_snapshot(struct neap_stats *s, bool kernel);
/* The same (with the kernel's view) if no other thread is taking one now;
 * false otherwise. The scavenger's stats file uses it: a thread that
 * reads the statistics without pause would otherwise starve it. */
bool neap__stats_try_snapshot(struct neap_stats *s);
void neap__stats_fork(neap_fork_phase phase);
/* statsfile.c: publish the stats file if it is due (the scavenger thread
 * calls it after each step); returns the ms until it next wants to run,
 * UINT32_MAX for never. */
uint32_t neap__statsfile_tick(uint32_t now_ms);
void neap__statsfile_fork(neap_fork_phase phase);

#endif
