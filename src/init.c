/* Process lifecycle: what neap does when it is loaded and around fork.
 *
 * Loading. neap needs no initialisation before its first malloc, which may
 * come from the dynamic loader before any constructor has run: every layer
 * starts from zeroed static data and sets itself up on first use. What the
 * process needs once, neap__process_init does: hook the layers to the
 * page heap, read the options (again from the library constructor, if
 * `environ` did not exist yet) and register the fork handlers. The first thread cache's creation calls it
 * (after publishing the cache, so that an allocation inside
 * pthread_atfork finds it), and so does the constructor; the call from
 * cache.c also makes a static link pull this file in.
 *
 * fork. POSIX copies only the calling thread. A lock another thread held
 * at that moment would stay locked forever in the child, so the prepare
 * handler takes, in the lock order (lock.h), every neap lock a thread may
 * hold across a call: not the heap checker's (tests), not the caches'
 * empty spin locks (another thread's trim holds one only under the
 * registry lock, which is taken; an owner holds its own for a few list
 * operations, and the child abandons the other threads' caches), not the
 * scavenger's wake-up lock (made anew in the child), and not the
 * centrals', which their gate stops instead (central.c). The parent's
 * handler unlocks them and the child's makes them anew (lock.h: an
 * error-checking mutex is unlocked only by the thread that took it, and
 * the child's thread is another). While they are held no other thread is
 * inside a locked region, so the child's heap is consistent: only the
 * lock-free state of the parent's other threads (their caches and the
 * bits they were setting) may be caught halfway, and the child never
 * writes that state (cache.c abandons those caches). The cost is that
 * objects in spans those threads cached are not reused in the child.
 *
 * Handler order (POSIX): prepare handlers run in reverse order of
 * registration, parent and child handlers in order. Ours are registered
 * from the library constructor, early, so a handler registered later (a
 * library initialised after neap) runs while neap is unlocked and may
 * allocate; one registered before ours must not.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "cache.h"
#include "central.h"
#include "gc.h"
#include "heap.h"
#include "meta.h"
#include "scav.h"
#include "stats.h"
#include "memlimit.h"
#include "options.h"
#include "os/os.h"

static void fork_prepare(void) {
  neap__memlimit_fork(NEAP_FORK_PREPARE);
  neap__statsfile_fork(NEAP_FORK_PREPARE);
  neap__stats_fork(NEAP_FORK_PREPARE);
  neap__gc_fork(NEAP_FORK_PREPARE);
  neap__scav_fork(NEAP_FORK_PREPARE);
  neap__cache_fork(NEAP_FORK_PREPARE);
  neap__gc_roots_fork(NEAP_FORK_PREPARE);
  neap__gc_alloc_fork(NEAP_FORK_PREPARE);
  neap__central_fork(NEAP_FORK_PREPARE);
  neap__heap_fork(NEAP_FORK_PREPARE);
  neap__meta_fork(NEAP_FORK_PREPARE);
}

static void fork_after(neap_fork_phase phase) {
  neap__meta_fork(phase);
  neap__heap_fork(phase);
  neap__central_fork(phase);
  neap__gc_alloc_fork(phase);
  neap__gc_roots_fork(phase);
  neap__cache_fork(phase);
  neap__scav_fork(phase);
  neap__gc_fork(phase);
  neap__stats_fork(phase);
  neap__statsfile_fork(phase);
  neap__memlimit_fork(phase);
}

static void fork_parent(void) { fork_after(NEAP_FORK_PARENT); }
static void fork_child(void) { fork_after(NEAP_FORK_CHILD); }

_Atomic uint8_t neap__cpu_popcnt;

/* The page heap's hooks (heap.h): the frontends' reclaimers and the
 * scavenger's observer, before the first pages go. The observer last: the
 * heap takes its presence for all of them. */
static void hook_layers(void) {
  neap__heap_add_reclaimer(neap__cache_reclaim);
  neap__heap_add_reclaimer(neap__central_reclaim);
  neap__scav_register();
}

void neap__process_init(void) {
  static _Atomic int registered, configured;
  static pthread_once_t hooked = PTHREAD_ONCE_INIT;
  pthread_once(&hooked, hook_layers);
  if (!NEAP_LOAD(&neap__cpu_popcnt) && neap__os_cpu_has_popcnt()) NEAP_STORE(&neap__cpu_popcnt, 1);
  neap__options_init();
  if (neap__options_parsed() && !atomic_load_explicit(&configured, memory_order_relaxed) &&
      !atomic_exchange_explicit(&configured, 1, memory_order_acq_rel)) {
    neap__memlimit_configure();
    if (neap__opt.disablethp) neap__heap_disable_thp();
  }
  if (!atomic_load_explicit(&registered, memory_order_relaxed) &&
      !atomic_exchange_explicit(&registered, 1, memory_order_acq_rel))
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

__attribute__((constructor)) static void neap_init(void) { neap__process_init(); }

/* --- lock.h */

void neap__lock_init(neap_mutex *l) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
  pthread_mutex_init(&l->m, &a);
  pthread_mutexattr_destroy(&a);
}

#if NEAP_DEBUG >= 1
__thread uint32_t neap__ranks_held __attribute__((tls_model("initial-exec")));

void neap__rank_violated(unsigned rank, uint32_t held) {
#define NEAP__RANK_NAME(name) #name,
  static const char *const names[] = {NEAP_RANKS(NEAP__RANK_NAME)};
  unsigned top = neap__highest_bit(held);
  const char *parts[] = {"neap: lock order violated: taking ", names[rank], " while holding ", names[top],
                         " (a signal handler re-entered neap, or a bug in neap)\n"};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    size_t n = 0;
    while (parts[i][n] != '\0') n++;
    neap__os_write_err(parts[i], n);
  }
  neap__os_abort();
}
#endif

void neap__lock_reentered(void) {
  static const char msg[] = "neap: malloc or free called by a signal handler that interrupted this thread inside "
                            "neap (they are not async-signal-safe)\n";
  neap__os_write_err(msg, sizeof msg - 1);
  neap__os_abort();
}
