/* The os layer: neap's only door to the kernel.
 *
 * Everything above this header is portable C that never calls mmap,
 * munmap, madvise, mprotect, clock_gettime or getenv itself. Keeping every
 * system call here gives us one place to inject faults (tests make the Nth
 * commit fail), one place to count what we asked the kernel for, and one
 * place to port.
 *
 * Contract for every memory call: addresses and sizes are multiples of the
 * OS page size (neap__os_page_size(), normally 4 KiB), size > 0, and the
 * function returns 0 or a positive errno value; it never sets errno as a
 * side effect visible to the caller of malloc (the caller decides what the
 * user sees).
 *
 * Memory states follow the Go runtime: None -> Reserved (PROT_NONE address
 * space, costs no memory) -> Ready (read-write, faulted in on first touch)
 * and back: "return" keeps the range Ready but hands its physical pages to
 * the kernel (madvise), "unmap" removes the range entirely.
 */
#ifndef NEAP_OS_H
#define NEAP_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* The OS page size, read once (sysconf is not async-signal-safe, but it
 * does not allocate). */
size_t neap__os_page_size(void);

/* Reserve `size` bytes of address space with no access. `hint` is a wish,
 * not a demand: the kernel may place the reservation elsewhere, and *out
 * says where it went. Returns 0 or ENOMEM. */
int neap__os_reserve(void *hint, size_t size, void **out);
/* The same, anywhere, readable: every page reads as zero (the kernel's
 * zero page, no memory) until neap__os_commit_meta makes it writable. */
int neap__os_reserve_zero(size_t size, void **out);

/* Make a reserved range readable and writable. Fresh pages read as zero.
 * For the heap's pages and the page allocator's bookkeeping. */
int neap__os_commit(void *addr, size_t size);
/* The same for the page map's tables (a kind of its own for the fault
 * hook, below). */
int neap__os_commit_meta(void *addr, size_t size);

/* Hand the physical pages of a Ready range back to the kernel; the range
 * stays readable and writable. dontneed=true uses MADV_DONTNEED (RSS drops
 * at once, the pages read as zero afterwards); false uses MADV_FREE (the
 * kernel reclaims lazily; until then the old contents may still be there),
 * falling back to MADV_DONTNEED where MADV_FREE is unsupported. *lazy
 * (may be NULL) says whether MADV_FREE was what worked. */
int neap__os_return(void *addr, size_t size, bool dontneed, bool *lazy);

/* Unmap a range (reserved or ready) entirely. */
int neap__os_unmap(void *addr, size_t size);

/* Reserve and commit in one call, anywhere: for off-heap metadata. */
int neap__os_map(size_t size, void **out);

/* Ask the kernel not to back a range with transparent huge pages. */
int neap__os_nohugepage(void *addr, size_t size);

/* Wall-clock time (CLOCK_REALTIME) in nanoseconds since the Unix epoch. */
uint64_t neap__os_walltime_ns(void);
/* Monotonic time in nanoseconds. */
uint64_t neap__os_nanotime(void);
/* The clock neap's policies run on (the release delay, pacing, demand):
 * monotonic milliseconds, wrapping every 49 days (compare differences). */
uint32_t neap__os_now_ms(void);
/* CPU time the calling thread has used, in nanoseconds. */
uint64_t neap__os_thread_cputime(void);
/* CPU time all threads of the process have used, in nanoseconds. */
uint64_t neap__os_process_cputime(void);
/* Give the CPU to another thread (sched_yield): for waits on a thread that
 * may hold a flag for milliseconds. */
void neap__os_yield(void);
/* Does the CPU have a population-count instruction (x86-64: POPCNT, not
 * in the baseline the library is built for)? */
bool neap__os_cpu_has_popcnt(void);

/* Start a detached background thread running fn(arg) with every signal
 * blocked (signals meant for the program never land on it), a small stack
 * and the given name (at most 15 characters). 0 or an errno value. */
int neap__os_thread_start(void *(*fn)(void *), void *arg, const char *name);
/* CPU time the threads neap__os_thread_start made have used (neap's own:
 * the scavenger, the collector's), in nanoseconds; the first 64 of them,
 * those of a forked child's parent not counted. */
uint64_t neap__os_own_cputime(void);

/* --- threads and signals, for the collector's stop (gcroots.c) */

/* The kernel's id of the calling thread. */
long neap__os_gettid(void);
/* Send signal sig to thread tid of this process: 0 or an errno value
 * (ESRCH: it has exited). */
int neap__os_tgkill(int tid, int sig);
/* Install fn as sig's handler (SA_SIGINFO | SA_RESTART, every other signal
 * left as it was while it runs): 0 or an errno value. */
int neap__os_sigaction(int sig, void (*fn)(int, void *info, void *ucontext));
/* Blocks (or unblocks) sig in the calling thread. Async-signal-safe. */
void neap__os_block_signal(int sig, bool block);
/* Futex wait while *addr == val (at most timeout_ms; 0: no timeout), and
 * wake (all waiters, or one). Async-signal-safe. */
void neap__os_futex_wait(_Atomic uint32_t *addr, uint32_t val, uint32_t timeout_ms);
void neap__os_futex_wake(_Atomic uint32_t *addr, bool all);
/* The mapping (from /proc/self/maps) holding address addr: its bounds, and
 * whether it is readable. Reads with raw system calls into a buffer on the
 * stack: async-signal-safe, allocates nothing. false if none holds it. */
bool neap__os_mapping_of(uintptr_t addr, uintptr_t *lo, uintptr_t *hi);
/* CPUs this process may run on. */
unsigned neap__os_ncpu(void);
/* The calling thread's thread pointer (x86-64: %fs's base), where its TCB
 * is and below which its static TLS lies. */
uintptr_t neap__os_thread_pointer(void);
/* The static TLS of every thread, in bytes (glibc's, when it says). */
size_t neap__os_static_tls_size(void);

/* Reading small files (/proc, cgroup files) without stdio, which
 * allocates: open read-only (a file descriptor, or -errno), read (bytes,
 * 0 at the end, or -errno; retries EINTR), close. */
int neap__os_open_read(const char *path);
long neap__os_read(int fd, char *buf, size_t n);
void neap__os_close(int fd);
/* The whole of a small file into buf (at most n - 1 bytes), NUL-terminated:
 * the bytes read, or -errno (buf is then ""). */
long neap__os_read_file(const char *path, char *buf, size_t n);

/* The value of an environment variable, found by scanning `environ`
 * directly: the first malloc can run before libc is ready for getenv, and
 * getenv may itself take locks. Returns NULL when absent. */
const char *neap__os_getenv(const char *name);
/* Whether the environment exists yet (it does not while the dynamic loader
 * makes its first allocations). */
bool neap__os_env_ready(void);

/* Publishing a small file (the stats file, src/statsfile.c): create a new
 * file that must not exist yet, never following a symbolic link, with the
 * given mode (a descriptor, or -errno); write all of buf (0 or an errno);
 * rename over the target (0 or an errno; fails with EPERM over another
 * user's file in a sticky directory such as /dev/shm); unlink. */
int neap__os_create_excl(const char *path, unsigned mode);
int neap__os_write_all(int fd, const char *buf, size_t n);
int neap__os_rename(const char *from, const char *to);
void neap__os_unlink(const char *path);
/* Calls fn(arg, name) for each entry of a directory (static buffer, no
 * allocation; "." and ".." skipped). 0 or an errno value. */
int neap__os_list_dir(const char *dir, void (*fn)(void *arg, const char *name), void *arg);
/* Whether path (not followed if a link) is a regular file owned by this
 * process's effective user. */
bool neap__os_file_is_mine(const char *path);
/* Whether a process with this id exists (one we may not signal counts). */
bool neap__os_pid_alive(long pid);
/* The process id (not cached: a forked child has its own). */
long neap__os_getpid(void);

/* Name an anonymous mapping ("[anon:NAME]" in /proc/PID/maps and smaps),
 * so that the neap tool and people can tell neap's memory apart. Needs
 * Linux 5.17 with CONFIG_ANON_VMA_NAME; elsewhere it does nothing. */
void neap__os_name(void *addr, size_t size, const char *name);

/* Write raw bytes to standard error, bypassing stdio (which allocates). */
void neap__os_write_err(const char *s, size_t n);

/* Kill the process with SIGABRT, without running atexit handlers. */
__attribute__((noreturn)) void neap__os_abort(void);

#if NEAP_TESTING
/* Fault injection (test builds): every call that can fail belongs to one
 * kind, and a test can make the Nth future call of a kind fail, as
 * SQLite's fault loops do, to prove that each failure has a clean outcome
 * (an allocation returns NULL with ENOMEM; neap keeps working). A failed
 * call does nothing and returns the error the kernel gives for that kind
 * when it is out of resources. */
typedef enum neap_os_call {
  NEAP_OS_RESERVE,     /* neap__os_reserve, neap__os_reserve_zero: ENOMEM */
  NEAP_OS_COMMIT,      /* neap__os_commit (heap growth, page allocator): ENOMEM */
  NEAP_OS_COMMIT_META, /* neap__os_commit_meta (the page map's tables): ENOMEM */
  NEAP_OS_RETURN,      /* neap__os_return (the scavenger's madvise): EAGAIN */
  NEAP_OS_MAP,         /* neap__os_map (metadata, scratch): ENOMEM */
  NEAP_OS_THREAD,      /* neap__os_thread_start (the scavenger): EAGAIN */
  NEAP_OS_READ,        /* neap__os_open_read, neap__os_read (/proc, cgroup files): EIO */
  NEAP_OS_PUBLISH,     /* neap__os_create_excl, write_all, rename (stats file): ENOSPC */
  NEAP_OS_CALLS
} neap_os_call;
/* Make the Nth future call of `kind` fail (1 = the next one); 0 disarms. */
void neap__os_fail_nth(neap_os_call kind, long n);
/* The kind's name ("reserve", "commit", ...), for test reports. */
const char *neap__os_call_name(neap_os_call kind);
/* Calls made of each kind (failed or not), and failures injected. */
typedef struct neap_os_counters {
  uint64_t calls[NEAP_OS_CALLS];
  uint64_t injected[NEAP_OS_CALLS];
} neap_os_counters;
void neap__os_counters(neap_os_counters *out);

#endif

/* A fake clock (test builds): while set, neap__os_now_ms and the CPU
 * times read it (the test moves it), so that the scavenger's policies,
 * which run on them, can be driven step by step. */
typedef struct neap_os_fake_time {
  uint32_t now_ms;
  uint64_t process_cpu_ns, thread_cpu_ns;
} neap_os_fake_time;
#if NEAP_TESTING
void neap__os_fake_time(const neap_os_fake_time *t); /* NULL: the real clock again */
#endif

#endif
