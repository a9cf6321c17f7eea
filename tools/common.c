/* The neap tool's shared pieces: process ids, /proc, and reading the stats
 * files neap processes publish (src/statsfile.c has the writer and the
 * security model this reader completes: the file must belong to the
 * process's user, and name the live process by pid and start time). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "statsfmt.h"
#include "tool.h"

bool tool_parse_pid(const char *cmd, const char *arg, pid_t *pid) {
  char *end;
  errno = 0;
  long v = strtol(arg, &end, 10);
  if (errno != 0 || end == arg || *end != '\0' || v <= 0 || v > 0x3fffffff) {
    fprintf(stderr, "neap %s: '%s' is not a process id\n", cmd, arg);
    return false;
  }
  *pid = (pid_t)v;
  return true;
}

int tool_process_state(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  struct stat st;
  if (stat(path, &st) != 0) return ESRCH;
  snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
  return access(path, R_OK) == 0 ? 0 : EACCES;
}

/* The whole of a /proc file (NUL-terminated, malloc'd), or NULL with
 * errno set. */
static char *slurp(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (buf == NULL) break;
    if (n + 1 >= cap) {
      char *bigger = realloc(buf, cap *= 2);
      if (bigger == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = bigger;
    }
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      free(buf);
      buf = NULL;
      errno = e;
      break;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  int e = errno;
  close(fd);
  errno = e;
  if (buf != NULL) {
    buf[n] = '\0';
    if (len != NULL) *len = n;
  }
  return buf;
}

bool tool_is_neap(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
  char *maps = slurp(path, NULL);
  bool yes = maps != NULL && (strstr(maps, "/libneap.so") != NULL || strstr(maps, "[anon:neap-heap]") != NULL);
  free(maps);
  return yes;
}

/* Field 22 of /proc/PID/stat (counting after the ')' that closes the
 * command name, which may contain anything). */
static unsigned long long starttime_of(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  char *buf = slurp(path, NULL);
  if (buf == NULL) return 0;
  const char *p = strrchr(buf, ')');
  for (int field = 2; field < 22 && p != NULL; field++) p = strchr(p + 1, ' ');
  unsigned long long v = p != NULL ? strtoull(p + 1, NULL, 10) : 0;
  free(buf);
  return v;
}

/* The effective uid of process pid, or -1. */
static long uid_of(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  char *buf = slurp(path, NULL);
  if (buf == NULL) return -1;
  const char *p = strstr(buf, "\nUid:");
  long euid = -1;
  if (p != NULL) {
    unsigned long real, eff;
    if (sscanf(p + 5, "%lu %lu", &real, &eff) == 2) euid = (long)eff;
  }
  free(buf);
  return euid;
}

/* Where process pid publishes: NEAP_STATS_DIR from its environment when
 * we may read it, else the default. */
static void stats_dir_of(pid_t pid, char *dir, size_t n) {
  snprintf(dir, n, "/dev/shm");
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
  size_t len;
  char *env = slurp(path, &len);
  if (env == NULL) return;
  for (size_t i = 0; i < len; i += strlen(env + i) + 1)
    if (strncmp(env + i, "NEAP_STATS_DIR=", 15) == 0) snprintf(dir, n, "%s", env + i + 15);
  free(env);
}

int tool_read_stats(pid_t pid, neap_stats_t *s, char *why, size_t whylen) {
  int state = tool_process_state(pid);
  if (state == ESRCH) {
    snprintf(why, whylen, "no process %d", (int)pid);
    return -1;
  }
  char dir[4096], path[4200];
  stats_dir_of(pid, dir, sizeof dir);
  if (dir[0] == '\0' || strcmp(dir, "off") == 0) {
    snprintf(why, whylen, "process %d publishes no stats (NEAP_STATS_DIR=%s)", (int)pid, dir[0] ? dir : "\"\"");
    return -1;
  }
  snprintf(path, sizeof path, "%s/neap.%d", dir, (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    int e = errno;
    if (e == EACCES || e == EPERM)
      snprintf(why, whylen, "permission denied reading %s (run as the process's user or root)", path);
    else if (tool_is_neap(pid))
      snprintf(why, whylen,
               "process %d uses neap but has published no stats yet (%s is absent: its heap has stayed "
               "under 8 MiB, or NEAPDEBUG=scavenger=0)",
               (int)pid, path);
    else if (state == EACCES)
      snprintf(why, whylen, "process %d publishes no neap stats (and its maps are not ours to read)", (int)pid);
    else
      snprintf(why, whylen, "process %d is not a neap process", (int)pid);
    return -1;
  }
  struct stat st;
  long uid = uid_of(pid);
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uid >= 0 && (long)st.st_uid != uid)) {
    close(fd);
    snprintf(why, whylen, "%s is not the process's own file (wrong owner or type): not trusted", path);
    return -1;
  }
  char buf[16384];
  size_t n = 0;
  ssize_t r;
  while (n < sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)r;
  close(fd);
  buf[n] = '\0';
  const char *p = strstr(buf, "pid: "), *t = strstr(buf, "starttime: ");
  long fpid = p ? strtol(p + 5, NULL, 10) : -1;
  unsigned long long fstart = t ? strtoull(t + 11, NULL, 10) : 0;
  if (fpid != (long)pid || fstart != starttime_of(pid)) {
    snprintf(why, whylen, "%s is stale (left by an earlier process with the same pid)", path);
    return -1;
  }
  if (neap__stats_parse_text(buf, s) < 10 || s->version == 0) {
    snprintf(why, whylen, "%s is not a neap stats file", path);
    return -1;
  }
  return 0;
}

void tool_write_file(void *arg, const char *buf, size_t len) { fwrite(buf, 1, len, (FILE *)arg); }

const char *tool_human(char *buf, size_t n, unsigned long long bytes) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024 && u < 5) v /= 1024, u++;
  if (u == 0) snprintf(buf, n, "%llu B", bytes);
  else snprintf(buf, n, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}
