/* neap's locks: their order, and one way to lock, unlock and reset them
 * around fork.
 *
 * The lock order is the list of ranks below, outermost first: a thread
 * takes a lock only while every lock it holds has a lower rank, and never
 * holds two of one rank. Debug builds (NEAP_DEBUG >= 1) check it on every
 * acquisition, the spin locks' included, against a per-thread mask of the
 * ranks held (Go's lockrank.go does the same for the Go runtime), and
 * abort with both names on a violation; release builds carry the rank and
 * check nothing.
 *
 * Every neap mutex is error-checking (a glibc extension, the same cost as
 * a plain one on the paths that take it: only slow paths do). A thread that
 * takes a mutex it already holds is a thread re-entering neap from a signal
 * handler that interrupted it inside neap (malloc is not async-signal-safe):
 * it gets a one-line diagnostic and an abort instead of a deadlock.
 *
 * fork: the prepare handlers take the locks in rank order (init.c says
 * which and why not the others); in the parent they are unlocked, in the
 * child made anew (the child's thread
 * has another id, and an error-checking mutex is only unlocked by its
 * owner). The centrals' many locks are not held across fork: a gate
 * stops them instead (central.c).
 */
#ifndef NEAP_LOCK_H
#define NEAP_LOCK_H

#include <pthread.h>

#include "internal.h"

/* The ranks, outermost first, and who holds what inside what. */
#define NEAP_RANKS(X)                                                                        \
  X(CGROUP)       /* memlimit.c: reading the cgroup tree, nothing else held */            \
  X(CHECK)        /* check.c: the heap checker (tests), around every layer's lock */      \
  X(STATSFILE)    /* statsfile.c: the publisher's spin flag, around a snapshot */         \
  X(STATS)        /* stats.c: one snapshot at a time, around the walks */                 \
  X(GC_CYCLE)     /* gc.c: one collection at a time, around everything it takes */       \
  X(SCAV_WORK)    /* scav.c: one pass at a time, around the reclaimers */                 \
  X(REGISTRY)     /* cache.c: the caches' registry, around a trim or a stop */            \
  X(GC_ROOTS)     /* gcroots.c: the added root ranges */                                  \
  X(GC_LARGE)     /* gcalloc.c: the list of large collected objects */                    \
  X(GC_GATE)      /* gcalloc.c: the collected centrals' fork gate */                      \
  X(GC_CENTRAL)   /* gcalloc.c: one collected central's lists; never two at once */      \
  X(CACHE_EMPTY)  /* cache.c: one cache's kept empty spans (a spin lock) */               \
  X(CENTRAL_GATE) /* central.c: the centrals' fork gate */                                \
  X(CENTRAL)      /* central.c: one size class's lists; never two at once */              \
  X(HEAP)         /* heap.c: the page heap */                                             \
  X(META)         /* meta.c: the metadata pools */                                        \
  X(SCAV_WAKE)    /* scav.c: the scavenger's wake-up (a free may kick it under CENTRAL) */
#define NEAP__RANK_ENUM(name) NEAP_RANK_##name,
typedef enum neap_rank { NEAP_RANKS(NEAP__RANK_ENUM) NEAP_RANK_COUNT } neap_rank;
_Static_assert(NEAP_RANK_COUNT <= 32, "the held ranks fit a 32-bit mask");

typedef struct neap_mutex {
  pthread_mutex_t m;
  uint8_t rank; /* neap_rank */
} neap_mutex;
#define NEAP_MUTEX_INIT(rank_) {.m = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP, .rank = NEAP_RANK_##rank_}

typedef enum { NEAP_FORK_PREPARE, NEAP_FORK_PARENT, NEAP_FORK_CHILD } neap_fork_phase;

/* The only failure an error-checking lock reports here is EDEADLK. */
__attribute__((noreturn)) NEAP_COLD void neap__lock_reentered(void);

#if NEAP_DEBUG >= 1
/* The ranks this thread holds, one bit each (init.c). */
extern __thread uint32_t neap__ranks_held __attribute__((tls_model("initial-exec")));
__attribute__((noreturn)) NEAP_COLD void neap__rank_violated(unsigned rank, uint32_t held);
NEAP_INLINE void neap__rank_take(unsigned rank) {
  if (NEAP_UNLIKELY(neap__ranks_held >> rank)) neap__rank_violated(rank, neap__ranks_held);
  neap__ranks_held |= 1u << rank;
}
NEAP_INLINE void neap__rank_drop(unsigned rank) { neap__ranks_held &= ~(1u << rank); }
#else
NEAP_INLINE void neap__rank_take(unsigned rank) { (void)rank; }
NEAP_INLINE void neap__rank_drop(unsigned rank) { (void)rank; }
#endif

#if defined(__SANITIZE_THREAD__)
#include <errno.h>
#include <time.h>
/* ThreadSanitizer holds a signal back while its thread waits inside
 * pthread_mutex_lock, and delivers it as the thread leaves one of its
 * interceptors. The collector's stop (gcroots.c) signals threads that may
 * wait for a lock the collector holds (the registry's, the cycle's), and
 * waits for their answer: in that build a wait is a series of 1 ms waits,
 * each a chance for the signal to come in. */
NEAP_INLINE int neap__lock_wait(pthread_mutex_t *m) {
  for (;;) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    int e = pthread_mutex_timedlock(m, &ts);
    if (e != ETIMEDOUT) return e;
  }
}
#else
NEAP_INLINE int neap__lock_wait(pthread_mutex_t *m) { return pthread_mutex_lock(m); }
#endif

NEAP_INLINE void neap__lock(neap_mutex *l) {
  neap__rank_take(l->rank);
  if (NEAP_UNLIKELY(neap__lock_wait(&l->m) != 0)) neap__lock_reentered();
}
NEAP_INLINE void neap__unlock(neap_mutex *l) {
  pthread_mutex_unlock(&l->m);
  neap__rank_drop(l->rank);
}
/* Takes l if no thread holds it (this one included); false otherwise. A
 * try never waits, so it may break the order; it counts as held after. */
NEAP_INLINE bool neap__trylock(neap_mutex *l) {
  if (pthread_mutex_trylock(&l->m) != 0) return false;
#if NEAP_DEBUG >= 1
  neap__ranks_held |= 1u << l->rank;
#endif
  return true;
}
void neap__lock_init(neap_mutex *l); /* a fresh, unlocked mutex of the same rank */
/* Locks l, one of many that a fork freezes one at a time instead of
 * holding them all (central.c has the scheme): while *frozen, lets l go
 * and waits at the gate, which the forking thread holds, until the fork
 * is over. */
NEAP_INLINE void neap__lock_gated(neap_mutex *l, const bool *frozen, neap_mutex *gate) {
  for (;;) {
    neap__lock(l);
    if (NEAP_LIKELY(!*frozen)) return;
    neap__unlock(l);
    neap__lock(gate);
    neap__unlock(gate);
  }
}
/* What a layer's fork handler does with one of its mutexes. */
NEAP_INLINE void neap__lock_fork(neap_mutex *l, neap_fork_phase phase) {
  if (phase == NEAP_FORK_PREPARE) {
    neap__lock(l);
  } else if (phase == NEAP_FORK_PARENT) {
    neap__unlock(l);
  } else {
#if defined(__SANITIZE_THREAD__)
    /* ThreadSanitizer learns that the lock is free from an unlock (which
     * glibc refuses with EPERM: the child's thread has another id). */
    pthread_mutex_unlock(&l->m);
#endif
    neap__lock_init(l);
    neap__rank_drop(l->rank);
  }
}

/* The fork handler's part for one lock of that scheme (the caller holds
 * the gate from PREPARE to the end): frozen under the lock before the
 * fork, thawed after it in the parent, made anew in the child (where its
 * holder may have been testing `frozen` at the fork). */
NEAP_INLINE void neap__lock_fork_frozen(neap_mutex *l, bool *frozen, neap_fork_phase phase) {
  if (phase == NEAP_FORK_CHILD) {
    neap__lock_init(l);
    *frozen = false;
    return;
  }
  neap__lock(l);
  *frozen = phase == NEAP_FORK_PREPARE;
  neap__unlock(l);
}

#endif
