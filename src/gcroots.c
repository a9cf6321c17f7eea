/* The collector's roots, and the stop of the world that makes them still.
 *
 * What it owns: the stop protocol, each thread's stack and TLS bounds (in
 * its cache's record, gc.h's neap_gc_thread), the table of added root
 * ranges, and the job table the markers start from.
 *
 * Which threads. Every thread with a cache in the registry (cache.c):
 * any thread that allocated through neap, malloc included, or called a
 * neap_gc_ function. So a collected pointer handed to a worker thread
 * through a queue is on a stack that is scanned: the worker met neap when
 * it made its cache. Not stopped: neap's own threads (the scavenger, the
 * collector's), threads that called neap_gc_unregister_thread, and with
 * NEAP_GC_THREADS=registered every thread that did not call
 * neap_gc_register_thread.
 *
 * The stop. The collector takes the registry lock (no thread can come or
 * go), sends each thread the stop signal (NEAP_GC_SIGNALS, default
 * SIGPWR) with tgkill, and waits on a futex until each has answered. The
 * handler saves the thread's registers (general and vector: compilers
 * move pointer pairs through xmm registers) and lowest stack address in its
 * record, answers, and waits on another futex until the collector lets
 * the world go. A thread inside a no-stop section (gcalloc.c) notes the
 * stop and answers it when the section ends. A thread blocked in a system
 * call runs the handler, and the call is restarted or fails with EINTR as
 * signal(7) says for SA_RESTART handlers (neap_gc.h). The handler keeps
 * errno as it found it.
 *
 * Stacks and TLS. At its first stop a thread finds the mapping its stack
 * pointer is in (/proc/self/maps, read with raw system calls: nothing
 * here may allocate or take a lock a stopped thread could hold): its top
 * is the stack's top. glibc puts a thread's static TLS and its TCB (which
 * holds pthread_setspecific's first values) at the top of its stack's
 * mapping, so those are scanned with the stack; the main thread's lie
 * elsewhere (the loader allocated them), and are found from the thread
 * pointer and glibc's static TLS size. A handler that runs on an
 * alternate signal stack scans that stack's used part too, and the
 * thread's stack from the interrupted stack pointer.
 *
 * Static data. The writable segments of every loaded object, less their
 * RELRO part, from dl_iterate_phdr: the whole stop runs inside one of its
 * callbacks, so the loader's list (its lock held) cannot change under
 * the collector (no dlopen or dlclose meanwhile; a thread inside dlopen
 * that is stopped holds only the loader's other lock).
 *
 * Malloc'd objects. Every live object of every malloc span (small
 * objects in use and not freed remotely, large objects whole but those
 * from neap_malloc_noscan), found by walking the arenas' page maps with
 * the world stopped; NEAP_GC_SCAN_MALLOC=0 skips them. Objects waiting on
 * a free stack are in use to their spans and scanned too (conservative:
 * they may keep garbage alive for a cycle).
 *
 * Locking: GC_ROOTS for the added ranges; the registry lock across a
 * stop. Memory for the tables comes from the metadata pools before the
 * world stops (the pools' lock may be held by a stopped thread).
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <signal.h>
#include <string.h>
#include <ucontext.h>

#include "gc.h"
#include "heap.h"
#include "meta.h"
#include "neap_gc.h"
#include "options.h"
#include "os/os.h"

__thread bool neap__tls_internal __attribute__((tls_model("initial-exec")));
extern __thread uint32_t neap__tls_gc_nostop __attribute__((tls_model("initial-exec")));
extern __thread volatile uint32_t neap__tls_gc_pending __attribute__((tls_model("initial-exec")));
void neap__gc_stop_deferred(void);

neap_gc_job *neap__gc_jobs;
size_t neap__gc_njobs;
neap_gc_rootstats neap__gc_roots_now;
static size_t jobs_cap;

static neap_mutex roots_lock = NEAP_MUTEX_INIT(GC_ROOTS);
static neap_gc_range *added;
static size_t nadded, added_cap;

/* The stop's state: the epoch of the stop in progress (odd while the
 * world is stopped), answers so far, and the word stopped threads wait on. */
static _Atomic uint32_t stop_epoch, answers, resume;
static _Atomic int stop_sig;
static _Atomic bool handler_installed;

#define JOB_BYTES ((uintptr_t)1 << 20) /* roots are cut into jobs of at most this */
#define MALLOC_JOB_PAGES 512u          /* a job per 4 MiB of an arena's pages */

int neap__gc_stop_signal(void) {
  int sig = atomic_load_explicit(&stop_sig, memory_order_relaxed);
  return sig != 0 ? sig : SIGPWR;
}

/* --- a stopped thread */

/* Finds, once, where this thread's stack and static TLS are. */
static void find_bounds(neap_gc_thread *t, uintptr_t sp) {
  uintptr_t lo, hi;
  if (!neap__os_mapping_of(sp, &lo, &hi)) return;
  t->stack_lo = lo;
  t->stack_hi = hi;
  uintptr_t tp = neap__os_thread_pointer();
  if (tp >= lo && tp < hi) return; /* TLS and TCB inside the stack's mapping: scanned with it */
  uintptr_t tlo, thi;
  if (!neap__os_mapping_of(tp, &tlo, &thi)) return;
  size_t size = neap__os_static_tls_size();
  if (size == 0) size = 4096;
  uintptr_t a = tp - size > tlo && tp - size < tp ? tp - size : tlo;
  uintptr_t b = tp + 2560 < thi ? tp + 2560 : thi; /* the TCB: struct pthread and its first specific values */
  t->tls_lo = a & ~(uintptr_t)7;
  t->tls_hi = b;
}

#if defined(__x86_64__)
/* The vector registers of the interrupted state (the words after the
 * general ones in t->regs; zero where not saved). The signal frame's FP
 * area is the XSAVE layout: the legacy 512 bytes (xmm0-15 at 160), the
 * header, then the AVX state's high halves at 576 when the kernel says
 * (the software bytes at 464) that it saved them. AVX-512's upper state
 * sits at offsets only CPUID tells, and is not read: code that keeps
 * pointers in zmm16-31 alone is not supported. */
static void save_vector_regs(neap_gc_thread *t, const ucontext_t *uc) {
  uint64_t *v = &t->regs[NEAP_GC_NGREGS];
  memset(v, 0, 16 * 4 * sizeof *v);
  const unsigned char *fp = (const unsigned char *)uc->uc_mcontext.fpregs;
  if (fp == NULL) return;
  memcpy(v, fp + 160, 16 * 16);
  /* struct _fpx_sw_bytes: magic1, extended_size, xfeatures, xstate_size;
   * then the XSAVE header's xstate_bv (which parts hold state, not their
   * initial zeros) at 512. */
  uint32_t magic, size;
  uint64_t features, saved;
  memcpy(&magic, fp + 464, 4);
  memcpy(&features, fp + 464 + 8, 8);
  memcpy(&size, fp + 464 + 16, 4);
  if (magic != 0x46505853u /* FP_XSTATE_MAGIC1 */ || !(features & 4u) || size < 576 + 256) return;
  memcpy(&saved, fp + 512, 8);
  if (saved & 4u) memcpy(v + 32, fp + 576, 16 * 16);
}
#endif

/* Records where the thread is (ucontext: the interrupted state, or NULL
 * for a stop answered at the end of a no-stop section), answers the stop
 * and waits for the world to go on. */
static NEAP_NOINLINE void park(neap_cache *c, void *ucontext) {
  /* Every callee-saved register into this frame, where the caller's live
   * values in them are (a stop answered at the end of a no-stop section
   * has no ucontext): the scan starts at a local, below them. */
  __builtin_unwind_init();
  volatile uintptr_t anchor = 0;
  neap_gc_thread *t = &c->gct;
  uintptr_t sp = (uintptr_t)&anchor;
  if (t->stack_hi == 0) find_bounds(t, sp);
  t->altsp_lo = t->altsp_hi = 0;
  t->sp = sp;
  if (ucontext == NULL) memset(t->regs, 0, sizeof t->regs);
#if defined(__x86_64__)
  if (ucontext != NULL) {
    /* The interrupted state: its registers (copied, so that they are
     * scanned wherever the handler runs), and its stack from the
     * interrupted stack pointer, less the 128-byte red zone that a leaf
     * function may be using, unless it was in a system call (the
     * instruction before its rip is `syscall`), where the red zone holds
     * only what earlier, deeper calls left there. Not the handler's own
     * frames nor the signal frame: stale words, and copies of the
     * registers. */
    const ucontext_t *uc = ucontext;
    for (unsigned i = 0; i < NEAP_GC_NGREGS; i++) t->regs[i] = (uint64_t)uc->uc_mcontext.gregs[i];
    save_vector_regs(t, uc);
    uintptr_t rsp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    uintptr_t rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    uint16_t before;
    memcpy(&before, (const void *)(rip - 2), sizeof before);
    uintptr_t from = before == 0x050f ? rsp : rsp - 128;
    if (sp >= t->stack_hi || t->stack_hi - sp >= ((uintptr_t)1 << 30)) {
      /* On an alternate signal stack: its used part too. */
      uintptr_t lo, hi;
      if (neap__os_mapping_of(sp, &lo, &hi)) {
        t->altsp_lo = sp;
        t->altsp_hi = hi;
      }
    }
    if (from < t->stack_hi && t->stack_hi - from < ((uintptr_t)1 << 30)) t->sp = from;
  }
#else
  (void)ucontext;
#endif
  uint32_t e = atomic_load_explicit(&stop_epoch, memory_order_acquire);
  if (!(e & 1u)) return; /* no stop in progress (it ended while this thread was on its way here) */
  atomic_store_explicit(&t->acked, e, memory_order_release);
  atomic_fetch_add_explicit(&answers, 1, memory_order_acq_rel);
  neap__os_futex_wake(&answers, false);
  /* Until the world restarts from this stop or a later one (a thread
   * slow to wake may see the next stop's epoch already). */
  uint32_t r;
  while ((int32_t)((r = atomic_load_explicit(&resume, memory_order_acquire)) - e) < 0)
    neap__os_futex_wait(&resume, r, 0);
}

static void stop_handler(int sig, void *info, void *ucontext) {
  (void)sig, (void)info;
  int saved = errno;
  neap_cache *c = neap__tls_registered;
  uint32_t e = atomic_load_explicit(&stop_epoch, memory_order_acquire);
  if (c != NULL && (e & 1u) && atomic_load_explicit(&c->gct.acked, memory_order_relaxed) != e) {
    if (neap__tls_gc_nostop != 0) neap__tls_gc_pending = 1;
    else park(c, ucontext);
  }
  errno = saved;
}

void neap__gc_stop_deferred(void) {
  /* With the stop signal blocked, as in the handler: a stop that begins
   * while this thread waits here is answered once this one is over. */
  int sig = neap__gc_stop_signal();
  neap__os_block_signal(sig, true);
  neap__tls_gc_pending = 0;
  neap_cache *c = neap__tls_registered;
  if (c != NULL) park(c, NULL);
  neap__os_block_signal(sig, false);
}

static void install_handler(void) {
  if (atomic_load_explicit(&handler_installed, memory_order_acquire)) return;
  neap__options_init();
  int sig = neap__opt.gc_signal > 0 ? (int)neap__opt.gc_signal : SIGPWR;
  atomic_store_explicit(&stop_sig, sig, memory_order_relaxed);
  if (neap__os_sigaction(sig, stop_handler) != 0) neap__fatal("gc: cannot install the stop signal's handler, signal", (void *)(uintptr_t)sig);
  atomic_store_explicit(&handler_installed, true, memory_order_release);
}

/* --- the job table */

static bool jobs_reserve(size_t n) {
  if (n <= jobs_cap) return true;
  size_t cap = jobs_cap ? jobs_cap : 256;
  while (cap < n) cap *= 2;
  /* The old table stays in the pool's slack: tables only grow. */
  neap_gc_job *t = neap__meta_alloc(cap * sizeof *t, NEAP_META_GC);
  if (t == NULL) return false;
  neap__gc_jobs = t;
  jobs_cap = cap;
  return true;
}

static void add_job(uintptr_t lo, uintptr_t hi, unsigned kind, uint64_t *count) {
  lo = (lo + 7) & ~(uintptr_t)7;
  if (hi <= lo) return;
  if (count != NULL) *count += hi - lo;
  while (lo < hi) {
    uintptr_t end = kind == NEAP_GC_JOB_RANGE && hi - lo > JOB_BYTES ? lo + JOB_BYTES : hi;
    if (neap__gc_njobs == jobs_cap) neap__fatal("gc: root table overflow, jobs", (void *)(uintptr_t)jobs_cap);
    neap__gc_jobs[neap__gc_njobs++] = (neap_gc_job){lo, end, (uint8_t)kind};
    lo = end;
  }
}

/* --- static data */

#define MAX_NOT_ROOTS 8
static neap_gc_range not_roots[MAX_NOT_ROOTS];
static _Atomic unsigned nnot_roots;

void neap__gc_not_root(const void *p, size_t n) {
  unsigned i = atomic_fetch_add_explicit(&nnot_roots, 1, memory_order_relaxed);
  if (i >= MAX_NOT_ROOTS) neap__fatal("gc: too many statics left out of the roots", p);
  not_roots[i] = (neap_gc_range){(uintptr_t)p, (uintptr_t)p + n};
}

/* Adds [lo, hi) as static roots, less the ranges left out. */
static void add_static(uintptr_t lo, uintptr_t hi, unsigned from) {
  unsigned n = atomic_load_explicit(&nnot_roots, memory_order_relaxed);
  if (n > MAX_NOT_ROOTS) n = MAX_NOT_ROOTS;
  for (unsigned i = from; i < n; i++) {
    const neap_gc_range *x = &not_roots[i];
    if (x->hi <= lo || x->lo >= hi) continue;
    if (x->lo > lo) add_static(lo, x->lo, i + 1);
    if (x->hi < hi) add_static(x->hi, hi, i + 1);
    return;
  }
  add_job(lo, hi, NEAP_GC_JOB_RANGE, &neap__gc_roots_now.global_bytes);
}

#define MAX_SEGMENTS 8192
static neap_gc_range segments[MAX_SEGMENTS];
static size_t nsegments;
static bool segments_overflow;

static int gather_segments(struct dl_phdr_info *info, size_t size, void *ctx) {
  (void)size, (void)ctx;
  uintptr_t rlo = 0, rhi = 0;
  for (unsigned i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_GNU_RELRO) {
      rlo = info->dlpi_addr + ph->p_vaddr;
      rhi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz) & ~(uintptr_t)4095;
    }
  }
  for (unsigned i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W)) continue;
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
    if (rhi > rlo && rlo <= lo && rhi > lo) lo = rhi; /* read-only after relocation: no heap pointer */
    if (hi <= lo) continue;
    if (nsegments == MAX_SEGMENTS) {
      segments_overflow = true;
      continue;
    }
    segments[nsegments++] = (neap_gc_range){lo, hi};
  }
  return 0;
}

/* --- the stop */

typedef struct stop_ctx {
  void (*fn)(void *);
  void *ctx;
  bool done;
} stop_ctx;

/* NEAP_GC_THREADS=registered: only threads that registered are stopped. */
static bool only_registered(void) {
  const char *v = neap__opt.gc_threads;
  return v != NULL && strcmp(v, "registered") == 0;
}

static bool stoppable(const neap_cache *c, const neap_cache *me) {
  if (c == me || c->gct.internal || c->gct.unregistered || c->gct.tid == 0) return false;
  if (only_registered() && !c->gct.explicit_reg) return false;
  return true;
}

static void add_thread_roots(neap_cache *c) {
  neap_gc_thread *t = &c->gct;
  neap_gc_rootstats *rs = &neap__gc_roots_now;
  uintptr_t sp = t->sp, hi = t->stack_hi;
  /* The main thread's stack mapping grows down past the bounds found at
   * its first stop: only the top is fixed. */
  if (hi != 0 && sp < hi && hi - sp < ((uintptr_t)1 << 30)) add_job(sp, hi, NEAP_GC_JOB_RANGE, &rs->stack_bytes);
  if (t->altsp_hi > t->altsp_lo) add_job(t->altsp_lo, t->altsp_hi, NEAP_GC_JOB_RANGE, &rs->stack_bytes);
  add_job((uintptr_t)&t->regs[0], (uintptr_t)&t->regs[NEAP_GC_NREGS], NEAP_GC_JOB_RANGE, &rs->stack_bytes);
  if (t->tls_hi > t->tls_lo) add_job(t->tls_lo, t->tls_hi, NEAP_GC_JOB_RANGE, &rs->tls_bytes);
}

/* This thread's own roots: its stack from where it called the collector
 * (gc.c: collect, whose frame holds the caller's registers) up, its TLS. */
extern __thread uintptr_t neap__gc_entry_sp __attribute__((tls_model("initial-exec")));
static NEAP_NOINLINE void add_own_roots(neap_cache *me) {
  __builtin_unwind_init();
  if (me == NULL) return;
  neap_gc_thread *t = &me->gct;
  volatile uintptr_t anchor = 0;
  uintptr_t sp = neap__gc_entry_sp ? neap__gc_entry_sp & ~(uintptr_t)7 : (uintptr_t)&anchor;
  if (t->stack_hi == 0) find_bounds(t, sp);
  t->sp = sp;
  t->altsp_lo = t->altsp_hi = 0;
  memset(t->regs, 0, sizeof t->regs);
  add_thread_roots(me);
}

static void add_malloc_jobs(void) {
  if (!neap__gc_scan_malloc()) return;
  for (size_t k = 0;; k++) {
    neap_arena *a = neap__heap_arena(k);
    if (a == NULL) break;
    for (uintptr_t off = 0; off < NEAP_ARENA_SIZE; off += (uintptr_t)MALLOC_JOB_PAGES << NEAP_PAGE_SHIFT)
      add_job(a->base + off, a->base + off + ((uintptr_t)MALLOC_JOB_PAGES << NEAP_PAGE_SHIFT),
              NEAP_GC_JOB_MALLOC_PAGES, NULL);
  }
}

static size_t count_arenas(void) {
  size_t k = 0;
  while (neap__heap_arena(k) != NULL) k++;
  return k;
}

/* Inside dl_iterate_phdr's callback (the loader's list held still): the
 * segments, the stop, fn, the restart. */
static int stop_inside(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)info, (void)size;
  stop_ctx *sc = arg;
  if (sc->done) return 1;
  sc->done = true;
  nsegments = 0;
  segments_overflow = false;
  dl_iterate_phdr(gather_segments, NULL); /* the loader's lock is recursive */
  if (segments_overflow) {
    static const char msg[] = "neap: gc: more than 8192 writable segments; the rest are not scanned\n";
    neap__os_write_err(msg, sizeof msg - 1);
  }

  /* Size the job table while nothing is stopped. */
  size_t threads = 0;
  neap_cache *me = neap__tls_registered;
  for (neap_cache *c = neap__cache_registry_first(); c != NULL; c = c->reg_next) threads++;
  size_t need = threads * 4 + 8 + (nadded + 1) * 2 + nsegments * MAX_NOT_ROOTS + count_arenas() * (NEAP_ARENA_PAGES / MALLOC_JOB_PAGES) + 64;
  for (size_t i = 0; i < nsegments; i++) need += (segments[i].hi - segments[i].lo) / JOB_BYTES + 1;
  for (size_t i = 0; i < nadded; i++) need += (added[i].hi - added[i].lo) / JOB_BYTES + 1;
  if (!jobs_reserve(need + 64)) neap__fatal("gc: out of memory for the root table", NULL);

  /* Stop. */
  uint32_t e = atomic_load_explicit(&stop_epoch, memory_order_relaxed) + 1u; /* odd */
  atomic_store_explicit(&answers, 0, memory_order_relaxed);
  atomic_store_explicit(&stop_epoch, e, memory_order_release);
  int sig = neap__gc_stop_signal();
  uint32_t sent = 0;
  for (neap_cache *c = neap__cache_registry_first(); c != NULL; c = c->reg_next) {
    if (!stoppable(c, me)) continue;
    if (neap__os_tgkill(c->gct.tid, sig) == 0) sent++;
    else c->gct.tid = 0; /* gone without a destructor (cannot happen with glibc): never signalled again */
  }
  /* Every thread signalled has answered this stop: its own record says so
   * (the count only wakes this thread up; a thread answers each stop
   * once, but a count could be fooled by one that parks on its way out of
   * a no-stop section just as a stop ends). */
  uint64_t t0 = neap__os_nanotime();
  bool warned = false;
  for (neap_cache *c = neap__cache_registry_first(); c != NULL;) {
    if (!stoppable(c, me) || c->gct.tid == 0 || atomic_load_explicit(&c->gct.acked, memory_order_acquire) == e) {
      c = c->reg_next;
      continue;
    }
    uint32_t n = atomic_load_explicit(&answers, memory_order_acquire);
    if (atomic_load_explicit(&c->gct.acked, memory_order_acquire) == e) continue;
    neap__os_futex_wait(&answers, n, 10);
    if (!warned && neap__os_nanotime() - t0 > 10000000000ull) {
      warned = true;
      static const char msg[] = "neap: gc: a thread has not answered the stop signal for 10 s (is it blocked?)\n";
      neap__os_write_err(msg, sizeof msg - 1);
    }
  }

  /* The roots, now that everything is still. */
  neap__gc_njobs = 0;
  memset(&neap__gc_roots_now, 0, sizeof neap__gc_roots_now);
  neap__gc_roots_now.threads_stopped = sent;
  add_own_roots(me);
  for (neap_cache *c = neap__cache_registry_first(); c != NULL; c = c->reg_next)
    if (stoppable(c, me) && c->gct.tid != 0) add_thread_roots(c);
  for (size_t i = 0; i < nsegments; i++) add_static(segments[i].lo, segments[i].hi, 0);
  for (size_t i = 0; i < nadded; i++)
    add_job(added[i].lo, added[i].hi, NEAP_GC_JOB_RANGE, &neap__gc_roots_now.added_bytes);
  add_malloc_jobs();

  sc->fn(sc->ctx);

  /* Restart. */
  atomic_store_explicit(&stop_epoch, e + 1u, memory_order_release);
  atomic_store_explicit(&resume, e, memory_order_release);
  neap__os_futex_wake(&resume, true);
  return 1;
}

void neap__gc_stop_the_world(void (*fn)(void *ctx), void *ctx) {
  install_handler();
  neap__cache_registry_lock();
  neap__lock(&roots_lock);
  stop_ctx sc = {fn, ctx, false};
  dl_iterate_phdr(stop_inside, &sc);
  if (!sc.done) { /* no object at all (cannot happen): stop anyway, without static data */
    static struct dl_phdr_info none;
    stop_inside(&none, sizeof none, &sc);
  }
  neap__unlock(&roots_lock);
  neap__cache_registry_unlock();
}

/* --- registration and added roots */

void neap__gc_thread_known(void) {
  install_handler();
  neap_cache *c = neap__cache_mine();
  if (c == NULL) c = neap__cache_get_slow();
  if (c == NULL) return;
  c->gct.unregistered = 0;
  c->gct.explicit_reg = 1;
}

void neap_gc_register_thread(void) { neap__gc_thread_known(); }

void neap_gc_unregister_thread(void) {
  neap_cache *c = neap__cache_mine();
  if (c == NULL) return;
  neap__gc_cache_flush(c, false);
  c->gct.unregistered = 1;
  c->gct.explicit_reg = 0;
}

void neap_gc_add_roots(void *lo, void *hi) {
  if ((uintptr_t)hi <= (uintptr_t)lo) return;
  neap__lock(&roots_lock);
  if (nadded == added_cap) {
    size_t cap = added_cap ? added_cap * 2 : 64;
    neap_gc_range *t = neap__meta_alloc(cap * sizeof *t, NEAP_META_GC);
    if (t == NULL) {
      neap__unlock(&roots_lock);
      neap__fatal("gc: out of memory for an added root range", lo);
    }
    if (nadded) memcpy(t, added, nadded * sizeof *t);
    added = t;
    added_cap = cap;
  }
  added[nadded++] = (neap_gc_range){(uintptr_t)lo, (uintptr_t)hi};
  neap__unlock(&roots_lock);
}

void neap_gc_remove_roots(void *lo, void *hi) {
  neap__lock(&roots_lock);
  for (size_t i = 0; i < nadded;) {
    /* Every added range inside [lo, hi) goes (Boehm's GC_remove_roots). */
    if (added[i].lo >= (uintptr_t)lo && added[i].hi <= (uintptr_t)hi) added[i] = added[--nadded];
    else i++;
  }
  neap__unlock(&roots_lock);
}

void neap__gc_roots_fork(neap_fork_phase phase) {
  neap__lock_fork(&roots_lock, phase);
  if (phase == NEAP_FORK_CHILD) {
    /* The child's one thread has its own id; the parent's stack bounds
     * still hold (the address space is a copy). */
    neap_cache *c = neap__cache_mine();
    if (c != NULL) c->gct.tid = (int)neap__os_gettid();
  }
}
