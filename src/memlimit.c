/* The memory limit's configuration: NEAP_MEMLIMIT, or the container's.
 *
 * What it owns: the limit in effect and where it came from, and the
 * reading of the cgroup tree. The limit itself is enforced by the heap
 * (heap.c: limit_admit) and the scavenger (scav.c).
 *
 * Containers. With no NEAP_MEMLIMIT, neap looks for the cgroup memory
 * limit the kernel will enforce on this process and takes
 * NEAP_MEMLIMIT_FRACTION of it (default 90%: the rest is for what neap
 * does not manage, the binary, stacks, the page cache the cgroup charges).
 * The cgroup is found as the kernel describes it, not by guessing paths:
 *   1. /proc/self/cgroup names the process's cgroup in each hierarchy:
 *      "0::/path" for cgroup v2, "N:memory,...:/path" for the v1 memory
 *      controller (a hybrid system may have both; the v1 memory line wins,
 *      as that is where the memory controller is).
 *   2. /proc/self/mountinfo gives the hierarchy's mount point and the
 *      cgroup mounted there (its "root" field): inside a container without
 *      a cgroup namespace, /sys/fs/cgroup shows the container's own cgroup
 *      as its root while /proc/self/cgroup still names the full path, so
 *      the root is cut off the path.
 *   3. From that directory up to the mount point, every level's limit
 *      applies (a parent's limit binds its children): the smallest of
 *      memory.max and memory.high (v2; "max" is none; memory.high is where
 *      the kernel starts throttling and reclaiming, so neap stays under
 *      it too) or memory.limit_in_bytes (v1; values near 2^63 are none).
 * NEAP_CGROUP_ROOT names a directory to read all of these under instead
 * of /, so that tests run against fake trees anywhere.
 *
 * Files that exist but cannot be read (a descriptor limit, an I/O error)
 * make the whole look fail: no limit, as with none, rather than a limit
 * read from part of the tree that may not be the one the kernel enforces.
 *
 * Everything is read with the os layer's open/read into static buffers:
 * this runs from the first thread cache's creation, and may not allocate.
 * Locking: configure runs once (an atomic flag), under a mutex that also
 * guards the static buffers.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "heap.h"
#include "memlimit.h"
#include "options.h"
#include "os/os.h"
#include "scav.h"

#define PATH_CAP 4096
#define V1_UNLIMITED ((uint64_t)1 << 62)

static neap_mutex cg_lock = NEAP_MUTEX_INIT(CGROUP);
static _Atomic int configured;
static size_t limit_bytes;
static neap_limit_source limit_source;

/* --- reading lines without stdio */

typedef struct reader {
  int fd;
  bool failed; /* a read failed: what was read is not the whole file */
  char buf[2048];
  size_t len, pos;
} reader;

/* The next line (without its newline, NUL-terminated, cut to cap-1 bytes)
 * or false at the end. */
static bool next_line(reader *r, char *line, size_t cap) {
  size_t n = 0;
  bool any = false;
  for (;;) {
    if (r->pos == r->len) {
      long got = neap__os_read(r->fd, r->buf, sizeof r->buf);
      if (got < 0) r->failed = true;
      if (got <= 0) break;
      r->len = (size_t)got;
      r->pos = 0;
    }
    any = true;
    char ch = r->buf[r->pos++];
    if (ch == '\n') break;
    if (n + 1 < cap) line[n++] = ch;
  }
  line[n] = 0;
  return any;
}

static bool join(char *out, size_t cap, const char *a, const char *b, const char *c) {
  size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
  if (la + lb + lc + 1 > cap) return false;
  memcpy(out, a, la);
  memcpy(out + la, b, lb);
  memcpy(out + la + lb, c, lc + 1);
  return true;
}

/* A decimal number or "max" from a cgroup file: the value, or 0 for none
 * (absent, "max", not a number). A file that exists but cannot be read
 * sets *failed. */
static uint64_t read_limit_file(const char *path, bool v1, bool *failed) {
  char buf[64];
  long got = neap__os_read_file(path, buf, sizeof buf);
  if (got < 0 && got != -ENOENT) *failed = true;
  if (got <= 0) return 0;
  uint64_t v = 0;
  size_t i = 0;
  if (buf[0] < '0' || buf[0] > '9') return 0; /* "max" */
  for (; buf[i] >= '0' && buf[i] <= '9'; i++) {
    if (v > UINT64_MAX / 10 - 9) return 0;
    v = v * 10 + (uint64_t)(buf[i] - '0');
  }
  if (v1 && v >= V1_UNLIMITED) return 0;
  return v;
}

/* In-place undo of mountinfo's octal escapes (\040 for a space). */
static void unescape(char *s) {
  char *w = s;
  for (char *r = s; *r; r++) {
    if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
      *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
      r += 3;
    } else {
      *w++ = *r;
    }
  }
  *w = 0;
}

/* Splits s at spaces into at most max fields; returns the count. */
static size_t split(char *s, char **f, size_t max) {
  size_t n = 0;
  while (*s && n < max) {
    while (*s == ' ') *s++ = 0;
    if (!*s) break;
    f[n++] = s;
    while (*s && *s != ' ') s++;
  }
  while (*s == ' ') *s++ = 0;
  return n;
}

static bool has_token(const char *list, const char *tok) {
  size_t n = strlen(tok);
  for (const char *p = list; p && *p;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && memcmp(p, tok, n) == 0) return true;
    p = e ? e + 1 : NULL;
  }
  return false;
}

/* Scratch for one look at the cgroup files: 40 KiB, mapped for the look
 * and unmapped after it, so that a process does not keep them resident
 * for a read it makes once. */
typedef struct {
  reader r;
  char line[PATH_CAP];
  char path[PATH_CAP];
  char cg_v1[PATH_CAP], cg_v2[PATH_CAP];     /* from /proc/self/cgroup */
  char mnt_v1[PATH_CAP], root_v1[PATH_CAP];  /* from mountinfo */
  char mnt_v2[PATH_CAP], root_v2[PATH_CAP];
  char dir[PATH_CAP];
} cg_scratch;
static cg_scratch *cg; /* cg_lock */

static bool read_self_cgroup(const char *root) {
  cg->cg_v1[0] = cg->cg_v2[0] = 0;
  if (!join(cg->path, sizeof cg->path, root, "/proc/self/cgroup", "")) return false;
  cg->r.fd = neap__os_open_read(cg->path);
  if (cg->r.fd < 0) return false;
  cg->r.len = cg->r.pos = 0;
  cg->r.failed = false;
  while (next_line(&cg->r, cg->line, sizeof cg->line)) {
    char *c1 = strchr(cg->line, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (c2 == NULL) continue;
    *c1 = *c2 = 0;
    const char *ctrls = c1 + 1, *path = c2 + 1;
    if (strcmp(cg->line, "0") == 0 && *ctrls == 0) join(cg->cg_v2, sizeof cg->cg_v2, path, "", "");
    else if (has_token(ctrls, "memory")) join(cg->cg_v1, sizeof cg->cg_v1, path, "", "");
  }
  neap__os_close(cg->r.fd);
  return !cg->r.failed && (cg->cg_v1[0] || cg->cg_v2[0]);
}

static void read_mounts(const char *root) {
  cg->mnt_v1[0] = cg->mnt_v2[0] = 0;
  if (!join(cg->path, sizeof cg->path, root, "/proc/self/mountinfo", "")) return;
  cg->r.fd = neap__os_open_read(cg->path);
  if (cg->r.fd < 0) return;
  cg->r.len = cg->r.pos = 0;
  cg->r.failed = false;
  while (next_line(&cg->r, cg->line, sizeof cg->line)) {
    char *f[32];
    size_t n = split(cg->line, f, 32), dash = 0;
    for (size_t i = 6; i < n; i++)
      if (strcmp(f[i], "-") == 0) {
        dash = i;
        break;
      }
    if (dash == 0 || n < dash + 4) continue;
    const char *fstype = f[dash + 1], *super = f[dash + 3];
    unescape(f[3]);
    unescape(f[4]);
    if (strcmp(fstype, "cgroup2") == 0 && !cg->mnt_v2[0]) {
      join(cg->mnt_v2, sizeof cg->mnt_v2, f[4], "", "");
      join(cg->root_v2, sizeof cg->root_v2, f[3], "", "");
    } else if (strcmp(fstype, "cgroup") == 0 && has_token(super, "memory") && !cg->mnt_v1[0]) {
      join(cg->mnt_v1, sizeof cg->mnt_v1, f[4], "", "");
      join(cg->root_v1, sizeof cg->root_v1, f[3], "", "");
    }
  }
  neap__os_close(cg->r.fd);
  if (cg->r.failed) cg->mnt_v1[0] = cg->mnt_v2[0] = 0; /* part of it unseen: trust none */
}

/* The smallest limit from dir up to the mount point mnt (dir starts with
 * mnt), every path read under root; 0 if there is none, or if a limit
 * file could not be read (a parent's unread limit may be the smallest). */
static uint64_t walk_up(const char *root, const char *mnt, bool v1) {
  static const char *const v2_files[] = {"/memory.max", "/memory.high"};
  static const char *const v1_files[] = {"/memory.limit_in_bytes"};
  const char *const *files = v1 ? v1_files : v2_files;
  size_t nfiles = v1 ? 1 : 2, lm = strlen(mnt);
  uint64_t best = 0;
  bool failed = false;
  for (;;) {
    for (size_t i = 0; i < nfiles; i++) {
      if (!join(cg->path, sizeof cg->path, root, cg->dir, files[i])) continue;
      uint64_t v = read_limit_file(cg->path, v1, &failed);
      if (v != 0 && (best == 0 || v < best)) best = v;
    }
    size_t l = strlen(cg->dir);
    if (l <= lm) break;
    while (l > lm && cg->dir[l - 1] != '/') l--; /* drop the last component */
    if (l > lm && l > 1) l--;                   /* and its slash */
    cg->dir[l] = 0;
  }
  return failed ? 0 : best;
}

/* The cgroup directory: the mount point plus the process's path with the
 * mount's root cut off the front (when the path lies under it). */
static bool cgroup_dir(const char *mnt, const char *mroot, const char *path) {
  size_t lr = strlen(mroot);
  const char *rel = path;
  if (strcmp(mroot, "/") != 0) {
    if (strncmp(path, mroot, lr) == 0 && (path[lr] == '/' || path[lr] == 0)) rel = path + lr;
    else rel = ""; /* not under the mount's root: the best we can see is the mount itself */
  }
  if (strcmp(rel, "/") == 0) rel = "";
  if (strcmp(mnt, "/") == 0 && rel[0] == '/') mnt = "";
  return join(cg->dir, sizeof cg->dir, mnt, rel, "");
}

uint64_t neap__cgroup_limit(const char *root) {
  if (root == NULL) root = "";
  uint64_t limit = 0;
  neap__lock(&cg_lock);
  void *mem;
  if (neap__os_map(sizeof *cg, &mem) != 0) {
    neap__unlock(&cg_lock);
    return 0;
  }
  cg = mem;
  if (read_self_cgroup(root)) {
    read_mounts(root);
    if (cg->cg_v1[0] && cg->mnt_v1[0] && cgroup_dir(cg->mnt_v1, cg->root_v1, cg->cg_v1))
      limit = walk_up(root, cg->mnt_v1, true);
    else if (cg->cg_v2[0] && cg->mnt_v2[0] && cgroup_dir(cg->mnt_v2, cg->root_v2, cg->cg_v2))
      limit = walk_up(root, cg->mnt_v2, false);
  }
  neap__os_unmap(cg, sizeof *cg);
  cg = NULL;
  neap__unlock(&cg_lock);
  return limit;
}

void neap__memlimit_fork(neap_fork_phase phase) { neap__lock_fork(&cg_lock, phase); }

void neap__memlimit_configure(void) {
  if (atomic_load_explicit(&configured, memory_order_acquire)) return;
  if (!neap__options_parsed()) return;
  neap__lock(&cg_lock);
  bool first = !atomic_load_explicit(&configured, memory_order_relaxed);
  atomic_store_explicit(&configured, 1, memory_order_release);
  neap__unlock(&cg_lock);
  if (!first) return;
  long opt = neap__opt.memlimit;
  size_t limit = 0;
  neap_limit_source src = NEAP_LIMIT_NONE;
  if (opt > 0) {
    limit = (size_t)opt;
    src = NEAP_LIMIT_ENV;
  } else if (opt == 0) {
    uint64_t c = neap__cgroup_limit(neap__opt.cgroup_root);
    if (c != 0) {
      limit = (size_t)((unsigned __int128)c * (uint64_t)neap__opt.memlimit_fraction / 10000u);
      src = NEAP_LIMIT_CGROUP;
    }
  }
  limit_bytes = limit;
  limit_source = src;
  if (limit != 0) neap__heap_set_limit(limit, neap__opt.memlimit_mode == 1, neap__scav_limit_return);
}

size_t neap__memlimit_bytes(void) { return limit_bytes; }
neap_limit_source neap__memlimit_source(void) { return limit_source; }
bool neap__memlimit_hard(void) { return neap__opt.memlimit_mode == 1; }
