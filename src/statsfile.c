/* The stats file: live statistics for readers outside the process.
 *
 * A process can be asked about its memory only from the inside. So that
 * `neap stats PID`, `neap inspect PID` and `neap serve` can answer without
 * a debugger, a neap process publishes its statistics in the text form
 * (statsfmt.c) in NEAP_STATS_DIR/neap.PID (default /dev/shm/neap.PID),
 * refreshed by the scavenger thread at most once a second, and only when
 * something changed (an idle process rewrites nothing and wakes every 8 s
 * at most to look). A snapshot holds the heap lock while it walks the
 * spans (about 2 ms per GiB of small objects), so for a huge heap the
 * refresh slows down to keep that under 1% of the time (100 GiB: every
 * 20 s). The file is removed at exit.
 *
 * On by default: memory questions come up after the fact, in production,
 * when restarting the process with a flag would destroy the evidence. The
 * cost is one tmpfs file of about 4 KiB per process that has run the
 * scavenger (a heap over 8 MiB: small tools never publish), and one
 * snapshot a second while the process is active. NEAP_STATS_DIR=off
 * turns it off.
 *
 * Security model. The file holds counters only: no addresses (so it does
 * not weaken ASLR) and no program data. It is created with mode 0600, so
 * only the process's user (and root) can read it: the same people who can
 * already read /proc/PID/smaps, which says more. /dev/shm is writable by
 * everyone (sticky), so the writer never follows a symbolic link and never
 * opens an existing file: it creates a fresh temporary file (O_EXCL |
 * O_NOFOLLOW) and renames it over neap.PID, which the sticky bit forbids
 * when another user owns that name; a squatter can then stop neap from
 * publishing, nothing worse. Readers (the neap tool) check that the file
 * belongs to the process's user and that the pid and start time inside
 * match the live process, so neither a forged file nor one left by a
 * killed process is believed.
 *
 * A process killed by a signal cannot remove its file (nor, in the middle
 * of a write, its temporary file). So that such files do not pile up, a
 * process removes, when it first publishes, every neap.PID and
 * .neap.PID.tmp file in the directory that belongs to its user and whose
 * process no longer exists (one directory listing per process).
 *
 * fork: the child has another pid; its own scavenger publishes its own
 * file, and only the process that wrote a file removes it.
 *
 * Locking: only the scavenger thread publishes, holding a spin flag for
 * the whole of each tick (a snapshot and a small write: milliseconds), so
 * that the exit handler, which takes it too, neither races the state nor
 * removes the file while a write is under way (or lets one start after).
 * Nothing is allocated: paths and the text live in static buffers.
 *
 * Failures. A directory that is missing or not ours to write, or a name
 * another user squats, stops publishing for the process's life; a full or
 * failing file system only delays it (the next ticks try again, every
 * 8 s). A failed write never leaves its temporary file behind.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "stats.h"
#include "neap.h"
#include "options.h"
#include "os/os.h"
#include "statsfmt.h"

#define MAX_QUIET_MS 8000u
#define BUSY_RETRY_MS 100u

static struct {
  long pid;                /* the process that published, 0 if none */
  uint64_t starttime;      /* its start time, clock ticks since boot */
  char path[256], tmp[256];
  uint32_t last_ms;        /* when we last looked */
  uint32_t interval_ms;    /* 1000 after a change, up to MAX_QUIET_MS */
  uint32_t floor_ms;       /* 100 x the last snapshot's time, at least 1000 */
  bool failed;             /* gave up (no directory, squatted name) */
  neap_stats_t last;       /* what the file says now */
  char text[8192];
  size_t len;
} pub;

static atomic_flag busy = ATOMIC_FLAG_INIT;
static _Atomic bool exiting;

/* A tick holds the flag for a snapshot and a file write (milliseconds for
 * a big heap): waiters yield rather than spin. */
static void busy_lock(void) {
  neap__rank_take(NEAP_RANK_STATSFILE);
  while (atomic_flag_test_and_set_explicit(&busy, memory_order_acquire)) neap__os_yield();
}
static void busy_unlock(void) {
  atomic_flag_clear_explicit(&busy, memory_order_release);
  neap__rank_drop(NEAP_RANK_STATSFILE);
}

static void put(char *buf, size_t cap, size_t *n, const char *s) {
  size_t k = strlen(s);
  if (k > cap - 1 - *n) k = cap - 1 - *n;
  memcpy(buf + *n, s, k);
  *n += k;
  buf[*n] = '\0';
}

static void put_u(char *buf, size_t cap, size_t *n, uint64_t v) {
  char num[24];
  size_t i = sizeof num - 1;
  num[i] = '\0';
  do num[--i] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  put(buf, cap, n, num + i);
}

/* Field 22 of /proc/self/stat: the start time, which with the pid names
 * a process uniquely (pids are reused). The command name (field 2) may
 * hold spaces and parentheses, so count from the last ')'. */
static uint64_t read_starttime(void) {
  static char buf[1024];
  if (neap__os_read_file("/proc/self/stat", buf, sizeof buf) <= 0) return 0;
  const char *p = strrchr(buf, ')');
  if (p == NULL) return 0;
  for (int field = 2; field < 22 && p != NULL; field++) {
    p = strchr(p + 1, ' ');
  }
  if (p == NULL) return 0;
  uint64_t v = 0;
  for (p++; *p >= '0' && *p <= '9'; p++) v = v * 10 + (uint64_t)(*p - '0');
  return v;
}

static void append_text(void *arg, const char *buf, size_t len) {
  (void)arg;
  if (len > sizeof pub.text - 1 - pub.len) len = sizeof pub.text - 1 - pub.len;
  memcpy(pub.text + pub.len, buf, len);
  pub.len += len;
}

static bool enabled(void) {
  const char *dir = neap__opt.stats_dir;
  return dir != NULL && *dir != '\0' && strcmp(dir, "off") != 0;
}

/* Removes our user's files of processes that are gone: neap.PID, and
 * .neap.PID.tmp, which a process killed in the middle of a write leaves. */
static void remove_if_stale(void *arg, const char *name) {
  (void)arg;
  const char *p = name;
  if (strncmp(p, ".neap.", 6) == 0) p += 6;
  else if (strncmp(p, "neap.", 5) == 0) p += 5;
  else return;
  if (*p < '1' || *p > '9') return;
  long pid = 0;
  for (; *p >= '0' && *p <= '9' && pid < (1L << 31); p++) pid = pid * 10 + (*p - '0');
  if ((name[0] == '.' ? strcmp(p, ".tmp") : strcmp(p, "")) != 0) return;
  if (pid == pub.pid || neap__os_pid_alive(pid)) return;
  static char path[320];
  size_t n = 0;
  put(path, sizeof path, &n, neap__opt.stats_dir);
  put(path, sizeof path, &n, "/");
  put(path, sizeof path, &n, name);
  if (neap__os_file_is_mine(path)) neap__os_unlink(path);
}

/* Writes the file anew: 0, or the errno of the step that failed (the
 * temporary file is gone then). */
static int write_file(void) {
  for (int attempt = 0; attempt < 2; attempt++) {
    int fd = neap__os_create_excl(pub.tmp, 0600);
    if (fd == -EEXIST && attempt == 0) { /* a crashed writer's, or a squatter's */
      neap__os_unlink(pub.tmp);
      continue;
    }
    if (fd < 0) return -fd;
    int err = neap__os_write_all(fd, pub.text, pub.len);
    neap__os_close(fd);
    if (err == 0) err = neap__os_rename(pub.tmp, pub.path);
    if (err == 0) return 0;
    neap__os_unlink(pub.tmp);
    return err;
  }
  return EEXIST;
}

/* Whether a failure to publish will last: no directory, no permission, a
 * squatter's file. Others (a full or failing file system, no descriptor
 * left) may pass: the next ticks try again. */
static bool lasting(int err) {
  return err == EPERM || err == EACCES || err == ENOENT || err == ENOTDIR || err == EROFS || err == ELOOP ||
         err == EEXIST || err == ENAMETOOLONG;
}

static uint32_t tick_locked(uint32_t now_ms) {
  long pid = neap__os_getpid();
  if (pub.pid != pid) { /* first time, or a forked child */
    memset(&pub.last, 0, sizeof pub.last);
    pub.pid = pid;
    pub.starttime = read_starttime();
    pub.failed = false;
    pub.interval_ms = pub.floor_ms = 1000;
    pub.last_ms = now_ms - 1000;
    size_t n = 0;
    put(pub.path, sizeof pub.path, &n, neap__opt.stats_dir);
    put(pub.path, sizeof pub.path, &n, "/neap.");
    put_u(pub.path, sizeof pub.path, &n, (uint64_t)pid);
    n = 0;
    put(pub.tmp, sizeof pub.tmp, &n, neap__opt.stats_dir);
    put(pub.tmp, sizeof pub.tmp, &n, "/.neap.");
    put_u(pub.tmp, sizeof pub.tmp, &n, (uint64_t)pid);
    put(pub.tmp, sizeof pub.tmp, &n, ".tmp");
    neap__os_list_dir(neap__opt.stats_dir, remove_if_stale, NULL);
  }
  if (pub.failed) return UINT32_MAX;
  uint32_t since = now_ms - pub.last_ms;
  if (since < pub.interval_ms) return pub.interval_ms - since;

  /* Another thread reading the statistics holds their lock; one polling
   * them without pause would hold it nearly always, and waiting would
   * keep the scavenger from its work: try again soon. */
  neap_stats_t s;
  uint64_t t0 = neap__os_nanotime();
  if (!neap__stats_try_snapshot(&s)) return BUSY_RETRY_MS;
  pub.last_ms = now_ms;
  /* The snapshot holds the heap lock for its walk (about 2 ms per GiB of
   * small objects): at most 1% of the time goes to it. */
  uint64_t took_ms = (neap__os_nanotime() - t0) / 1000000u;
  pub.floor_ms = took_ms * 100 > 1000 ? (uint32_t)(took_ms * 100 < 60000 ? took_ms * 100 : 60000) : 1000;
  if (memcmp(&s, &pub.last, sizeof s) == 0) {
    pub.interval_ms = pub.interval_ms * 2 > MAX_QUIET_MS ? MAX_QUIET_MS : pub.interval_ms * 2;
    if (pub.interval_ms < pub.floor_ms) pub.interval_ms = pub.floor_ms;
    return pub.interval_ms;
  }
  pub.interval_ms = pub.floor_ms;
  pub.len = 0;
  pub.text[0] = '\0';
  put(pub.text, sizeof pub.text, &pub.len, "pid: ");
  put_u(pub.text, sizeof pub.text, &pub.len, (uint64_t)pid);
  put(pub.text, sizeof pub.text, &pub.len, "\nstarttime: ");
  put_u(pub.text, sizeof pub.text, &pub.len, pub.starttime);
  put(pub.text, sizeof pub.text, &pub.len, "\npublished_ms: ");
  put_u(pub.text, sizeof pub.text, &pub.len, neap__os_nanotime() / 1000000u);
  put(pub.text, sizeof pub.text, &pub.len, "\n");
  neap_stats_format_snapshot(&s, append_text, NULL, NEAP_STATS_TEXT);
  int err = write_file();
  if (err != 0) {
    if (lasting(err)) {
      pub.failed = true;
      return UINT32_MAX;
    }
    pub.interval_ms = MAX_QUIET_MS; /* pub.last is as it was: the next tick writes again */
    return pub.interval_ms;
  }
  pub.last = s;
  return pub.interval_ms;
}

uint32_t neap__statsfile_tick(uint32_t now_ms) {
  if (!enabled()) return UINT32_MAX;
  busy_lock(); /* the whole tick: the exit handler reads what it writes */
  uint32_t ms = atomic_load(&exiting) ? UINT32_MAX : tick_locked(now_ms);
  busy_unlock();
  return ms;
}

/* fork: the flag is taken first of all neap's locks (a tick takes the
 * statistics' locks inside it), so that a child never inherits it held by
 * a scavenger that does not exist there: its exit handler would spin
 * forever. */
void neap__statsfile_fork(neap_fork_phase phase) {
  if (phase == NEAP_FORK_PREPARE) busy_lock();
  else busy_unlock();
}

static void write_stderr(void *arg, const char *buf, size_t len) {
  (void)arg;
  neap__os_write_err(buf, len);
}

/* At exit: remove our file (not a parent's: see fork above) and, with
 * NEAPDEBUG=statsonexit=1, print the statistics. */
__attribute__((destructor)) static void statsfile_exit(void) {
  atomic_store(&exiting, true);
  busy_lock();
  if (pub.pid != 0 && pub.pid == neap__os_getpid() && !pub.failed && pub.last.version != 0)
    neap__os_unlink(pub.path);
  busy_unlock();
  if (neap__opt.statsonexit) neap_stats_print(write_stderr, NULL, NEAP_STATS_TEXT);
}
