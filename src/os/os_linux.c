/* The os layer on Linux: the only file in neap that makes system calls.
 *
 * It owns nothing but a few counters and the fault-injection hook. All
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
static _Atomic long fail_commit_countdown; /* >0: fail when it reaches 1 */
static struct {
  _Atomic uint64_t reserves, commits, returns, unmaps, maps, injected;
} counters;

#define COUNT(c) atomic_fetch_add_explicit(&counters.c, 1, memory_order_relaxed)

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
  int saved = errno;
  void *p = mmap(hint, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  int err = (p == MAP_FAILED) ? errno : 0;
  errno = saved;
  if (err) return err == ENOMEM ? ENOMEM : err;
  COUNT(reserves);
  *out = p;
  return 0;
}

int neap__os_reserve(void *hint, size_t size, void **out) { return reserve(hint, size, PROT_NONE, out); }

int neap__os_reserve_zero(size_t size, void **out) { return reserve(NULL, size, PROT_READ, out); }

int neap__os_commit(void *addr, size_t size) {
  long n = atomic_load_explicit(&fail_commit_countdown, memory_order_relaxed);
  while (n > 0) {
    if (atomic_compare_exchange_weak(&fail_commit_countdown, &n, n - 1)) {
      if (n == 1) {
        COUNT(injected);
        return ENOMEM;
      }
      break;
    }
  }
  return neap__os_commit_meta(addr, size);
}

int neap__os_commit_meta(void *addr, size_t size) {
  int saved = errno;
  /* mprotect rather than a fixed mmap: it keeps the reservation's VMA
   * flags, and neighbouring committed ranges merge into one VMA. */
  int r = mprotect(addr, size, PROT_READ | PROT_WRITE);
  int err = r ? errno : 0;
  errno = saved;
  if (err) return ENOMEM;
  COUNT(commits);
  return 0;
}

int neap__os_return(void *addr, size_t size, bool dontneed, bool *lazy) {
  int saved = errno;
  int r = -1;
  if (!dontneed) r = madvise(addr, size, MADV_FREE);
  if (lazy != NULL) *lazy = r == 0;
  if (r != 0) r = madvise(addr, size, MADV_DONTNEED);
  int err = r ? errno : 0;
  errno = saved;
  if (!err) COUNT(returns);
  return err;
}

int neap__os_unmap(void *addr, size_t size) {
  int saved = errno;
  int r = munmap(addr, size);
  int err = r ? errno : 0;
  errno = saved;
  if (!err) COUNT(unmaps);
  return err;
}

int neap__os_map(size_t size, void **out) {
  int saved = errno;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  int err = (p == MAP_FAILED) ? errno : 0;
  errno = saved;
  if (err) return ENOMEM;
  COUNT(maps);
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

uint64_t neap__os_nanotime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t neap__os_thread_cputime(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t neap__os_process_cputime(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void neap__os_yield(void) { sched_yield(); }

int neap__os_thread_start(void *(*fn)(void *), void *arg, const char *name) {
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
  errno = saved;
  return err;
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
  int saved = errno;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  int err = fd < 0 ? errno : 0;
  errno = saved;
  return fd < 0 ? -err : fd;
}

long neap__os_read(int fd, char *buf, size_t n) {
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
  int saved = errno;
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
  int err = fd < 0 ? errno : 0;
  errno = saved;
  return fd < 0 ? -err : fd;
}

int neap__os_write_all(int fd, const char *buf, size_t n) {
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

void neap__os_fail_commit_nth(long n) {
  atomic_store_explicit(&fail_commit_countdown, n > 0 ? n : 0, memory_order_relaxed);
}

void neap__os_counters(neap_os_counters *out) {
  out->reserves = atomic_load_explicit(&counters.reserves, memory_order_relaxed);
  out->commits = atomic_load_explicit(&counters.commits, memory_order_relaxed);
  out->returns = atomic_load_explicit(&counters.returns, memory_order_relaxed);
  out->unmaps = atomic_load_explicit(&counters.unmaps, memory_order_relaxed);
  out->maps = atomic_load_explicit(&counters.maps, memory_order_relaxed);
  out->commit_failures_injected = atomic_load_explicit(&counters.injected, memory_order_relaxed);
}
