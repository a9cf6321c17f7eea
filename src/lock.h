/* neap's mutexes: one way to take, give and reset them around fork.
 *
 * Every neap mutex is error-checking (a glibc extension, the same cost as
 * a plain one on the paths that take it: only slow paths do). A thread that
 * takes a mutex it already holds is a thread re-entering neap from a signal
 * handler that interrupted it inside neap (malloc is not async-signal-safe):
 * it gets a one-line diagnostic and an abort instead of a deadlock.
 *
 * fork: the prepare handlers lock every mutex (init.c); in the parent they
 * are unlocked, in the child made anew (the child's thread has another
 * id, and an error-checking mutex is only unlocked by its owner).
 */
#ifndef NEAP_LOCK_H
#define NEAP_LOCK_H

#include <pthread.h>

#include "internal.h"

#define NEAP_MUTEX_INITIALIZER PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP

typedef enum { NEAP_FORK_PREPARE, NEAP_FORK_PARENT, NEAP_FORK_CHILD } neap_fork_phase;

/* The only failure an error-checking lock reports here is EDEADLK. */
__attribute__((noreturn)) NEAP_COLD void neap__lock_reentered(void);

NEAP_INLINE void neap__lock(pthread_mutex_t *m) {
  if (NEAP_UNLIKELY(pthread_mutex_lock(m) != 0)) neap__lock_reentered();
}
NEAP_INLINE void neap__unlock(pthread_mutex_t *m) { pthread_mutex_unlock(m); }
/* Takes m if no thread holds it (this one included); false otherwise. */
NEAP_INLINE bool neap__trylock(pthread_mutex_t *m) { return pthread_mutex_trylock(m) == 0; }
void neap__lock_init(pthread_mutex_t *m); /* a fresh, unlocked mutex */
/* What a layer's fork handler does with one of its mutexes. */
NEAP_INLINE void neap__lock_fork(pthread_mutex_t *m, neap_fork_phase phase) {
  if (phase == NEAP_FORK_PREPARE) neap__lock(m);
  else if (phase == NEAP_FORK_PARENT) neap__unlock(m);
  else neap__lock_init(m);
}

#endif
