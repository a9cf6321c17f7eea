/* The os layer on Linux: the only file in neap that makes system calls.
 *
 * It owns nothing; test builds add the fault injection and fake clock
 * that os.h describes. All
 * functions are thread-safe and may be called with any neap lock held:
 * none of them allocates, takes a lock, or calls back into neap. Errors are
 * returned as errno values; errno itself is saved and restored so that a
 * failed madvise deep inside free() never changes what the program sees.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "os/os.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#ifndef MADV_FREE
#define MADV_FREE 8
#endif

extern char **environ;

static size_t os_page_size;

#if NEAP_TESTING
static struct {
  _Atomic uint64_t calls[NEAP_OS_CALLS], injected[NEAP_OS_CALLS];
  _Atomic long fail_at[NEAP_OS_CALLS]; /* >0: the call that brings it to 1 fails */
} counters;

static const char *const call_names[NEAP_OS_CALLS] = {
    [NEAP_OS_RESERVE] = "reserve", [NEAP_OS_COMMIT] = "commit", [NEAP_OS_COMMIT_META] = "commit_meta",
    [NEAP_OS_RETURN] = "return",   [NEAP_OS_MAP] = "map",       [NEAP_OS_THREAD] = "thread",
    [NEAP_OS_READ] = "read",       [NEAP_OS_PUBLISH] = "publish"};

/* Counts a call of `kind`; true when the fault hook says it must fail. */
static bool injected_(neap_os_call kind) {
  atomic_fetch_add_explicit(&counters.calls[kind], 1, memory_order_relaxed);
  long n = atomic_load_explicit(&counters.fail_at[kind], memory_order_relaxed);
  while (NEAP_UNLIKELY(n > 0)) {
    if (atomic_compare_exchange_weak_explicit(&counters.fail_at[kind], &n, n - 1, memory_order_relaxed,
                                              memory_order_relaxed)) {
      if (n != 1) return false;
      atomic_fetch_add_explicit(&counters.injected[kind], 1, memory_order_relaxed);
      return true;
    }
  }
  return false;
}
#define injected(kind) injected_(kind)

static _Atomic(const neap_os_fake_time *) fake_time;
#define FAKE_TIME() atomic_load_explicit(&fake_time, memory_order_acquire)
#else
#define injected(kind) false
#define FAKE_TIME() ((const neap_os_fake_time *)NULL)
#endif

size_t neap__os_page_size(void) {
  size_t p = __atomic_load_n(&os_page_size, __ATOMIC_RELAXED);
  if (NEAP_UNLIKELY(p == 0)) {
    long v = sysconf(_SC_PAGESIZE);
    p = v > 0 ? (size_t)v : 4096;
    __atomic_store_n(&os_page_size, p, __ATOMIC_RELAXED);
  }
  return p;
}

static int reserve(void *hint, size_t size, int prot, void **out) {
  if (injected(NEAP_OS_RESERVE)) return ENOMEM;
  int saved = errno;
  void *p = mmap(hint, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  int err = (p == MAP_FAILED) ? errno : 0;
  errno = saved;
  if (err) return err == ENOMEM ? ENOMEM : err;
  *out = p;
  return 0;
}

int neap__os_reserve(void *hint, size_t size, void **out) { return reserve(hint, size, PROT_NONE, out); }

int neap__os_reserve_zero(size_t size, void **out) { return reserve(NULL, size, PROT_READ, out); }

/* mprotect rather than a fixed mmap: it keeps the reservation's VMA
 * flags, and neighbouring committed ranges merge into one VMA. */
static int commit(void *addr, size_t size) {
  int saved = errno;
  int r = mprotect(addr, size, PROT_READ | PROT_WRITE);
  errno = saved;
  return r ? ENOMEM : 0;
}

int neap__os_commit(void *addr, size_t size) { return injected(NEAP_OS_COMMIT) ? ENOMEM : commit(addr, size); }

int neap__os_commit_meta(void *addr, size_t size) {
  return injected(NEAP_OS_COMMIT_META) ? ENOMEM : commit(addr, size);
}

int neap__os_return(void *addr, size_t size, bool dontneed, bool *lazy) {
  if (lazy != NULL) *lazy = false;
  if (injected(NEAP_OS_RETURN)) return EAGAIN;
  int saved = errno;
  int r = -1;
  if (!dontneed) r = madvise(addr, size, MADV_FREE);
  if (lazy != NULL) *lazy = r == 0;
  if (r != 0) r = madvise(addr, size, MADV_DONTNEED);
  int err = r ? errno : 0;
  errno = saved;
  return err;
}

int neap__os_unmap(void *addr, size_t size) {
  int saved = errno;
  int r = munmap(addr, size);
  int err = r ? errno : 0;
  errno = saved;
  return err;
}

int neap__os_map(size_t size, void **out) {
  if (injected(NEAP_OS_MAP)) return ENOMEM;
  int saved = errno;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  int err = (p == MAP_FAILED) ? errno : 0;
  errno = saved;
  if (err) return ENOMEM;
  *out = p;
  return 0;
}

int neap__os_nohugepage(void *addr, size_t size) {
  int saved = errno;
  int r = madvise(addr, size, MADV_NOHUGEPAGE);
  int err = r ? errno : 0;
  errno = saved;
  return err;
}

uint64_t neap__os_walltime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t neap__os_nanotime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint32_t neap__os_now_ms(void) {
  if (FAKE_TIME() != NULL) return FAKE_TIME()->now_ms;
  return (uint32_t)(neap__os_nanotime() / 1000000u);
}

uint64_t neap__os_thread_cputime(void) {
  if (FAKE_TIME() != NULL) return FAKE_TIME()->thread_cpu_ns;
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t neap__os_process_cputime(void) {
  if (FAKE_TIME() != NULL) return FAKE_TIME()->process_cpu_ns;
  struct timespec ts;
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void neap__os_yield(void) { sched_yield(); }

/* The CPU clocks of the threads neap started (they never exit). */
#define OWN_CLOCKS 64
static _Atomic clockid_t own_clocks[OWN_CLOCKS] = {[0 ... OWN_CLOCKS - 1] = -1}; /* -1: not written yet */
static _Atomic unsigned nown_clocks;

uint64_t neap__os_own_cputime(void) {
  if (FAKE_TIME() != NULL) return 0; /* the fake process clock is all the program's */
  unsigned n = atomic_load_explicit(&nown_clocks, memory_order_acquire);
  if (n > OWN_CLOCKS) n = OWN_CLOCKS;
  uint64_t sum = 0;
  for (unsigned i = 0; i < n; i++) {
    struct timespec ts;
    /* A clock of the parent's threads, in a forked child, fails: 0. */
    clockid_t c = atomic_load_explicit(&own_clocks[i], memory_order_relaxed);
    if (c != -1 && clock_gettime(c, &ts) == 0) sum += (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  }
  return sum;
}

int neap__os_thread_start(void *(*fn)(void *), void *arg, const char *name) {
  if (injected(NEAP_OS_THREAD)) return EAGAIN;
  int saved = errno;
  pthread_attr_t attr;
  sigset_t all, old;
  pthread_t t;
  int err = pthread_attr_init(&attr);
  if (err != 0) return err;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 128u << 10); /* plenty for a loop with a few frames */
  /* The new thread inherits the creator's mask: block everything around
   * the create, so that no signal can reach it even before it starts. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  err = pthread_create(&t, &attr, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (err == 0 && name != NULL) pthread_setname_np(t, name);
  clockid_t cid;
  if (err == 0 && pthread_getcpuclockid(t, &cid) == 0) {
    unsigned i = atomic_fetch_add_explicit(&nown_clocks, 1, memory_order_relaxed);
    if (i < OWN_CLOCKS) atomic_store_explicit(&own_clocks[i], cid, memory_order_relaxed);
  }
  errno = saved;
  return err;
}

long neap__os_gettid(void) { return (long)syscall(SYS_gettid); }

int neap__os_tgkill(int tid, int sig) {
  int saved = errno;
  int r = (int)syscall(SYS_tgkill, (int)getpid(), tid, sig);
  int err = r == 0 ? 0 : errno;
  errno = saved;
  return err;
}

int neap__os_sigaction(int sig, void (*fn)(int, void *info, void *ucontext)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = (void (*)(int, siginfo_t *, void *))(void *)fn;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  int saved = errno;
  int err = sigaction(sig, &sa, NULL) == 0 ? 0 : errno;
  errno = saved;
  return err;
}

void neap__os_block_signal(int sig, bool block) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  int saved = errno;
  pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
  errno = saved;
}

void neap__os_futex_wait(_Atomic uint32_t *addr, uint32_t val, uint32_t timeout_ms) {
  int saved = errno;
  struct timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000L};
  syscall(SYS_futex, (void *)addr, FUTEX_WAIT_PRIVATE, val, timeout_ms ? &ts : NULL, NULL, 0);
  errno = saved;
}

void neap__os_futex_wake(_Atomic uint32_t *addr, bool all) {
  int saved = errno;
  syscall(SYS_futex, (void *)addr, FUTEX_WAKE_PRIVATE, all ? INT32_MAX : 1, NULL, NULL, 0);
  errno = saved;
}

static uintptr_t parse_hex(const char **p) {
  uintptr_t v = 0;
  for (;; (*p)++) {
    char c = **p;
    unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : 16u;
    if (d == 16) return v;
    v = v << 4 | d;
  }
}

bool neap__os_mapping_of(uintptr_t addr, uintptr_t *lo, uintptr_t *hi) {
  int saved = errno;
  int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC);
  bool found = false;
  if (fd < 0) goto out;
  char buf[4096];
  size_t have = 0;
  for (;;) {
    long n = (long)syscall(SYS_read, fd, buf + have, sizeof buf - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 && have == 0) break;
    have += n > 0 ? (size_t)n : 0;
    /* Whole lines from the start of buf: "lo-hi perms ..." */
    size_t used = 0;
    for (;;) {
      char *nl = memchr(buf + used, '\n', have - used);
      if (nl == NULL) break;
      const char *p = buf + used;
      uintptr_t a = parse_hex(&p);
      if (*p == '-') {
        p++;
        uintptr_t b = parse_hex(&p);
        if (addr >= a && addr < b && p[1] == 'r') {
          *lo = a;
          *hi = b;
          found = true;
        }
      }
      used = (size_t)(nl - buf) + 1;
      if (found) break;
    }
    if (found) break;
    if (used == 0 && have == sizeof buf) break; /* a line longer than the buffer: give up */
    memmove(buf, buf + used, have - used);
    have -= used;
    if (n <= 0) break;
  }
  syscall(SYS_close, fd);
out:
  errno = saved;
  return found;
}

unsigned neap__os_ncpu(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  int n = CPU_COUNT(&set);
  return n > 0 ? (unsigned)n : 1u;
}

uintptr_t neap__os_thread_pointer(void) {
#if defined(__x86_64__)
  uintptr_t tp;
  __asm__("mov %%fs:0, %0" : "=r"(tp));
  return tp;
#else
  return (uintptr_t)__builtin_thread_pointer();
#endif
}

/* glibc's own figure (GLIBC_PRIVATE, what the sanitizers read too). */
extern void _dl_get_tls_static_info(size_t *sizep, size_t *alignp) __attribute__((weak));

size_t neap__os_static_tls_size(void) {
  size_t size = 0, align = 0;
  if (_dl_get_tls_static_info != NULL) _dl_get_tls_static_info(&size, &align);
  return size;
}

bool neap__os_cpu_has_popcnt(void) {
#if defined(__x86_64__)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  return (c & bit_POPCNT) != 0;
#else
  return false;
#endif
}

int neap__os_open_read(const char *path) {
  if (injected(NEAP_OS_READ)) return -EIO;
  int saved = errno;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  int err = fd < 0 ? errno : 0;
  errno = saved;
  return fd < 0 ? -err : fd;
}

long neap__os_read(int fd, char *buf, size_t n) {
  if (injected(NEAP_OS_READ)) return -EIO;
  int saved = errno;
  ssize_t r;
  do r = read(fd, buf, n);
  while (r < 0 && errno == EINTR);
  long out = r < 0 ? -(long)errno : (long)r;
  errno = saved;
  return out;
}

void neap__os_close(int fd) {
  int saved = errno;
  close(fd);
  errno = saved;
}

const char *neap__os_getenv(const char *name) {
  char **env = environ;
  if (env == NULL || name == NULL) return NULL;
  size_t len = strlen(name);
  for (; *env != NULL; env++) {
    if (strncmp(*env, name, len) == 0 && (*env)[len] == '=') return *env + len + 1;
  }
  return NULL;
}

bool neap__os_env_ready(void) { return environ != NULL; }

long neap__os_read_file(const char *path, char *buf, size_t n) {
  buf[0] = '\0';
  int fd = neap__os_open_read(path);
  if (fd < 0) return fd;
  size_t got = 0;
  long r = 0;
  while (got < n - 1 && (r = neap__os_read(fd, buf + got, n - 1 - got)) > 0) got += (size_t)r;
  neap__os_close(fd);
  buf[got] = '\0';
  return r < 0 && got == 0 ? r : (long)got;
}

int neap__os_create_excl(const char *path, unsigned mode) {
  if (injected(NEAP_OS_PUBLISH)) return -ENOSPC;
  int saved = errno;
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
  int err = fd < 0 ? errno : 0;
  errno = saved;
  return fd < 0 ? -err : fd;
}

int neap__os_write_all(int fd, const char *buf, size_t n) {
  if (injected(NEAP_OS_PUBLISH)) return ENOSPC;
  int saved = errno, err = 0;
  while (n > 0) {
    ssize_t w = write(fd, buf, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    buf += w;
    n -= (size_t)w;
  }
  errno = saved;
  return err;
}

int neap__os_rename(const char *from, const char *to) {
  if (injected(NEAP_OS_PUBLISH)) return ENOSPC;
  int saved = errno;
  int err = rename(from, to) == 0 ? 0 : errno;
  errno = saved;
  return err;
}

void neap__os_unlink(const char *path) {
  int saved = errno;
  unlink(path);
  errno = saved;
}

long neap__os_getpid(void) { return (long)getpid(); }

int neap__os_list_dir(const char *dir, void (*fn)(void *arg, const char *name), void *arg) {
  static char buf[8192]; /* callers are serialised (the scavenger thread) */
  int saved = errno;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    errno = saved;
    return err;
  }
  long n;
  while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
    for (long off = 0; off < n;) {
      struct {
        uint64_t ino;
        int64_t off;
        unsigned short reclen;
        unsigned char type;
        char name[];
      } *d = (void *)(buf + off);
      if (strcmp(d->name, ".") != 0 && strcmp(d->name, "..") != 0) fn(arg, d->name);
      off += d->reclen;
    }
  }
  close(fd);
  errno = saved;
  return 0;
}

bool neap__os_file_is_mine(const char *path) {
  int saved = errno;
  struct stat st;
  bool mine = lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid();
  errno = saved;
  return mine;
}

bool neap__os_pid_alive(long pid) {
  int saved = errno;
  bool alive = kill((pid_t)pid, 0) == 0 || errno == EPERM;
  errno = saved;
  return alive;
}

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

void neap__os_name(void *addr, size_t size, const char *name) {
  static _Atomic int unsupported;
  if (atomic_load_explicit(&unsupported, memory_order_relaxed)) return;
  int saved = errno;
  if (prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)addr, (unsigned long)size, (unsigned long)name) != 0 &&
      errno == EINVAL)
    atomic_store_explicit(&unsupported, 1, memory_order_relaxed);
  errno = saved;
}

void neap__os_write_err(const char *s, size_t n) {
  int saved = errno;
  while (n > 0) {
    ssize_t w = write(2, s, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      break;
    }
    s += w;
    n -= (size_t)w;
  }
  errno = saved;
}

void neap__os_abort(void) {
  /* abort() flushes nothing and runs no atexit handlers; if SIGABRT is
   * caught and the handler returns, abort() still terminates. */
  abort();
}

#if NEAP_TESTING
void neap__os_fail_nth(neap_os_call kind, long n) {
  atomic_store_explicit(&counters.fail_at[kind], n > 0 ? n : 0, memory_order_relaxed);
}

const char *neap__os_call_name(neap_os_call kind) { return kind < NEAP_OS_CALLS ? call_names[kind] : "?"; }

void neap__os_counters(neap_os_counters *out) {
  for (int k = 0; k < NEAP_OS_CALLS; k++) {
    out->calls[k] = atomic_load_explicit(&counters.calls[k], memory_order_relaxed);
    out->injected[k] = atomic_load_explicit(&counters.injected[k], memory_order_relaxed);
  }
}

void neap__os_fake_time(const neap_os_fake_time *t) { atomic_store_explicit(&fake_time, t, memory_order_release); }
#endif
