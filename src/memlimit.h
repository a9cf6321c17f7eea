/* The memory limit: where it comes from (memlimit.c). */
#ifndef NEAP_MEMLIMIT_H
#define NEAP_MEMLIMIT_H

#include "internal.h"
#include "lock.h"

typedef enum {
  NEAP_LIMIT_NONE = 0,   /* no limit */
  NEAP_LIMIT_ENV = 1,    /* NEAP_MEMLIMIT */
  NEAP_LIMIT_CGROUP = 2, /* a share of the cgroup's memory.max / memory.high / limit_in_bytes */
} neap_limit_source;

/* Sets the limit from the options (once they are parsed; later calls do
 * nothing): NEAP_MEMLIMIT, else NEAP_MEMLIMIT_FRACTION of the cgroup's
 * limit, unless NEAP_MEMLIMIT=off. */
void neap__memlimit_configure(void);
void neap__memlimit_fork(neap_fork_phase phase);
size_t neap__memlimit_bytes(void); /* 0: none */
neap_limit_source neap__memlimit_source(void);
bool neap__memlimit_hard(void);

/* The memory limit of this process's cgroup, read under `root` ("" or
 * NULL: the real /): the smallest of memory.max and memory.high (v2) or
 * memory.limit_in_bytes (v1) over its cgroup directory and every parent
 * up to the hierarchy's mount point. 0 when there is none. Reads
 * root/proc/self/cgroup and root/proc/self/mountinfo; never allocates. */
uint64_t neap__cgroup_limit(const char *root);

#endif
