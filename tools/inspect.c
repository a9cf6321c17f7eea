/* neap inspect PID: a process's memory explained in plain words.
 *
 * Any process, whatever manages its memory (Go, Java, glibc's malloc,
 * neap): the figures come from what the kernel publishes under /proc/PID,
 * plus neap's own when the process runs neap. People reach for this when a
 * number looks wrong (a VSZ of 10 GiB, an RSS that does not fall after a
 * free), and most of the time the number is right but means something else
 * than they thought: address space reserved with no access, memory freed
 * with MADV_FREE that the kernel has not taken back yet, free memory an
 * allocator keeps for reuse. The findings say which, and what to do.
 *
 * Three phases, each with its own struct:
 *   parse    /proc/PID/status and smaps, each thread's stack pointer, the
 *            environment, the runtime, neap's stats (proc_t: as read);
 *   analyse  sums by kind of memory, thread stacks, glibc's arenas, the
 *            largest mappings, neap's share of RSS (report_t), then the
 *            findings, ranked by the resident memory each one explains;
 *   print    the kernel's figures, neap's, the largest mappings, the
 *            findings.
 *
 * Nothing stops the process: status, smaps and the stack pointers are read
 * moments apart, close enough to explain memory, not to balance to the
 * byte.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/* How many of the largest mappings to list, by size and by RSS. */
#define NTOP 8
#define MAX_FINDINGS 16

/* glibc's non-main malloc arenas live in heaps of HEAP_MAX_SIZE, which is
 * 2 * DEFAULT_MMAP_THRESHOLD_MAX = 64 MiB on 64-bit, aligned to their size
 * (malloc/arena.c). */
#define GLIBC_HEAP_MAX (64 * MiB)

/* A figure as a short human string, in a buffer (a compound literal) that
 * lives to the end of the enclosing block, so one printf can take many. */
#define H(bytes) tool_human((char[32]){0}, 32, (bytes))

static const char usage[] =
    "usage: neap inspect PID\n"
    "\n"
    "Explains the memory of process PID, whatever manages it (Go, Java,\n"
    "glibc's malloc, neap), from /proc/PID: address space and what is\n"
    "reserved with no access, resident memory (anonymous, file-backed,\n"
    "shared), swap, LazyFree, the heap, thread stacks and the largest\n"
    "mappings; for a neap process, neap's own figures beside the kernel's.\n"
    "Then what stands out, in words, with what to do about it.\n"
    "\n"
    "Reading another user's process needs root (or that user).\n"
    "\n"
    "exit status: 0; 1 if the process does not exist or cannot be read;\n"
    "2 for a usage error.\n";

/* ---- parse: /proc/PID as read ------------------------------------------ */

typedef struct mapping {
  uint64_t start, end;              /* [start, end) */
  char perms[5];                    /* "rw-p", "---p", "r-xs"... */
  char *name;                       /* pathname, [heap], [stack], [anon:NAME]; "" if none */
  uint64_t rss, pss, lazyfree, thp; /* bytes, from smaps */
  const char *role;                 /* what analysis recognised it as, or NULL */
  size_t parts;                     /* in a merged region: the mappings it joins */
} mapping_t;

typedef enum runtime { RT_UNKNOWN, RT_GLIBC, RT_NEAP, RT_GO, RT_JAVA } runtime_t;
static const char *const runtime_names[] = {"unknown", "glibc", "neap", "Go", "Java"};

typedef struct proc {
  pid_t pid;
  char name[64];
  uint64_t vsz, rss, rss_anon, rss_file, rss_shmem, swap; /* status, bytes */
  size_t threads;
  mapping_t *maps; /* smaps, in address order */
  size_t nmaps;
  uint64_t *sps; /* stack pointers of the threads blocked in the kernel */
  size_t nsps, sp_unknown;
  bool go_madvfree, neap_madvfree; /* GODEBUG / NEAPDEBUG madvdontneed=0 */
  runtime_t runtime;
  bool neap; /* neap is the malloc, whatever the runtime */
  bool have_stats;
  neap_stats_t stats;
  char stats_why[200];
} proc_t;

static FILE *open_proc(pid_t pid, const char *file) {
  char path[128];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
  return fopen(path, "re");
}

/* status: "Key:\tvalue[ kB]" lines. */
static int parse_status(proc_t *p) {
  FILE *f = open_proc(p->pid, "status");
  if (f == NULL) return errno;
  struct {
    const char *key;
    uint64_t *to;
  } kb[] = {{"VmSize", &p->vsz},       {"VmRSS", &p->rss},          {"RssAnon", &p->rss_anon},
            {"RssFile", &p->rss_file}, {"RssShmem", &p->rss_shmem}, {"VmSwap", &p->swap}};
  char line[256], key[32];
  unsigned long long v;
  while (fgets(line, sizeof line, f) != NULL) {
    if (sscanf(line, "Name: %63[^\n]", p->name) == 1) continue;
    if (sscanf(line, "%31[^:]: %llu", key, &v) != 2) continue;
    if (strcmp(key, "Threads") == 0) p->threads = (size_t)v;
    for (size_t i = 0; i < sizeof kb / sizeof kb[0]; i++)
      if (strcmp(key, kb[i].key) == 0) *kb[i].to = v * 1024;
  }
  fclose(f);
  return 0;
}

/* smaps: a header line per mapping ("start-end perms offset dev inode
 * name"), then "Key: N kB" lines about it. */
static int parse_smaps(proc_t *p) {
  FILE *f = open_proc(p->pid, "smaps");
  if (f == NULL) return errno;
  char *line = NULL, key[32];
  size_t len = 0, cap = 0;
  unsigned long long v;
  mapping_t *m = NULL;
  int err = 0;
  while (getline(&line, &len, f) > 0) {
    uint64_t start, end;
    char perms[5];
    int at = -1;
    if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %*x %*x:%*x %*u %n", &start, &end, perms, &at) == 3) {
      if (p->nmaps == cap) {
        cap = cap ? 2 * cap : 256;
        mapping_t *more = realloc(p->maps, cap * sizeof *more);
        if (more == NULL) {
          err = ENOMEM;
          break;
        }
        p->maps = more;
      }
      m = &p->maps[p->nmaps];
      *m = (mapping_t){.start = start, .end = end};
      memcpy(m->perms, perms, sizeof m->perms);
      char *name = at >= 0 ? line + at : "";
      name[strcspn(name, "\n")] = '\0';
      if ((m->name = strdup(name)) == NULL) {
        err = ENOMEM;
        break;
      }
      p->nmaps++;
    } else if (m != NULL && sscanf(line, "%31[^:]: %llu kB", key, &v) == 2) {
      uint64_t bytes = v * 1024;
      if (strcmp(key, "Rss") == 0)
        m->rss = bytes;
      else if (strcmp(key, "Pss") == 0)
        m->pss = bytes;
      else if (strcmp(key, "LazyFree") == 0)
        m->lazyfree = bytes;
      else if (strcmp(key, "AnonHugePages") == 0)
        m->thp = bytes;
    }
  }
  if (err == 0 && ferror(f)) err = errno ? errno : EIO;
  free(line);
  fclose(f);
  return err;
}

/* Each thread's stack pointer. /proc/PID/task/TID/syscall holds "NR args...
 * sp pc" for a thread blocked in a system call ("-1 sp pc" when blocked
 * otherwise): the stack pointer is the second-to-last field. A running
 * thread shows "running" and its stack stays unknown; so does one we may
 * not read (the file asks for ptrace access). */
static void parse_threads(proc_t *p) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/task", (int)p->pid);
  DIR *d = opendir(path);
  if (d == NULL) return;
  size_t seen = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    seen++;
    snprintf(path, sizeof path, "task/%.16s/syscall", e->d_name);
    FILE *f = open_proc(p->pid, path);
    char *tok[10], *save = NULL;
    size_t n = 0;
    if (f != NULL && fgets(buf, sizeof buf, f) != NULL)
      for (char *t = strtok_r(buf, " \n", &save); t != NULL && n < 10; t = strtok_r(NULL, " \n", &save))
        tok[n++] = t;
    if (f != NULL) fclose(f);
    if (n < 3) {
      p->sp_unknown++;
      continue;
    }
    if (p->nsps == cap) {
      cap = cap ? 2 * cap : 64;
      uint64_t *more = realloc(p->sps, cap * sizeof *more);
      if (more == NULL) break;
      p->sps = more;
    }
    p->sps[p->nsps++] = strtoull(tok[n - 2], NULL, 16);
  }
  closedir(d);
  if (p->threads == 0) p->threads = seen;
}

/* Whether the environment the process started with asks its runtime to
 * return memory with MADV_FREE: the findings then name the variable. */
static void parse_environ(proc_t *p) {
  FILE *f = open_proc(p->pid, "environ");
  if (f == NULL) return;
  char *var = NULL;
  size_t len = 0;
  while (getdelim(&var, &len, '\0', f) > 0) {
    bool free0 = strstr(var, "madvdontneed=0") != NULL;
    if (strncmp(var, "GODEBUG=", 8) == 0) p->go_madvfree = free0;
    if (strncmp(var, "NEAPDEBUG=", 10) == 0) p->neap_madvfree = free0;
  }
  free(var);
  fclose(f);
}

/* Whether the executable is a Go program: Go's linker writes the build
 * information, "\xff Go buildinf:", near the start of a writable segment
 * (the first one of a static binary, 31 KiB into it with cgo's external
 * linker, the second of a PIE). The go command's own reader
 * (debug/buildinfo) looks there when sections are stripped, and so do we,
 * always: segments survive any strip, and it costs a read of 64 KiB or two.
 * It finds Go programs built with cgo too, which map libc like any other. */
static bool exe_is_go(pid_t pid) {
  static const char magic[] = "\xff Go buildinf:";
  enum { SEARCH = 64 << 10 };
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  char *buf = malloc(SEARCH);
  bool go = false;
  Elf64_Ehdr eh;
  if (fd >= 0 && buf != NULL && pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh &&
      memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_ident[EI_CLASS] == ELFCLASS64 &&
      eh.e_phentsize == sizeof(Elf64_Phdr)) {
    for (unsigned i = 0; i < eh.e_phnum && !go; i++) {
      Elf64_Phdr ph;
      if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + i * sizeof ph)) != (ssize_t)sizeof ph) break;
      if (ph.p_type != PT_LOAD || (ph.p_flags & (PF_W | PF_X)) != PF_W) continue;
      ssize_t n = pread(fd, buf, ph.p_filesz < SEARCH ? (size_t)ph.p_filesz : SEARCH, (off_t)ph.p_offset);
      go = n > 0 && memmem(buf, (size_t)n, magic, sizeof magic - 1) != NULL;
    }
  }
  free(buf);
  if (fd >= 0) close(fd);
  return go;
}

static bool name_ends(const mapping_t *m, const char *suffix) {
  size_t n = strlen(m->name), k = strlen(suffix);
  return n >= k && strcmp(m->name + n - k, suffix) == 0;
}

static void detect_runtime(proc_t *p) {
  bool go = exe_is_go(p->pid), java = false, glibc = false;
  for (size_t i = 0; i < p->nmaps; i++) {
    const mapping_t *m = &p->maps[i];
    java |= name_ends(m, "/libjvm.so");
    glibc |= name_ends(m, "/libc.so.6");
    /* Go's first heap arena hint on 64-bit is 0x00c000000000, the next
     * ones 0x01c000000000, 0x02c0...: this also finds a Go runtime
     * loaded from a shared library (-buildmode=c-shared). */
    go |= m->name[0] == '\0' && (m->start & ((1ULL << 40) - 1)) == 0xc000000000ULL;
  }
  p->neap = tool_is_neap(p->pid);
  p->runtime = go ? RT_GO : java ? RT_JAVA : p->neap ? RT_NEAP : glibc ? RT_GLIBC : RT_UNKNOWN;
}

/* Reads everything; returns 0 or an errno value with *what naming the file
 * that failed. */
static int parse(proc_t *p, const char **what) {
  int err;
  *what = "status";
  if ((err = parse_status(p)) != 0) return err;
  *what = "smaps";
  if ((err = parse_smaps(p)) != 0) return err;
  parse_threads(p);
  parse_environ(p);
  detect_runtime(p);
  if (p->neap) p->have_stats = tool_read_stats(p->pid, &p->stats, p->stats_why, sizeof p->stats_why) == 0;
  return 0;
}

static void proc_free(proc_t *p) {
  for (size_t i = 0; i < p->nmaps; i++) free(p->maps[i].name);
  free(p->maps);
  free(p->sps);
}

/* ---- analyse ------------------------------------------------------------- */

typedef struct finding {
  uint64_t weight; /* the resident bytes it explains: the ranking */
  char text[640];
} finding_t;

typedef struct report {
  uint64_t reserved, lazyfree, thp, pss; /* ---p mappings' size; smaps sums */
  size_t nreserved;
  uint64_t jheap_start, jheap_size, jheap_committed, jheap_rss; /* Java's heap */
  const mapping_t *heap;                                        /* [heap], or NULL */
  size_t nstacks, sp_elsewhere;                                 /* stacks found; sps in other memory */
  uint64_t stack_size, stack_rss;
  size_t narenas; /* glibc malloc arena heaps */
  uint64_t arena_size, arena_rss;
  bool neap_named;                 /* neap's mappings are named in smaps */
  uint64_t neap_rss, outside_neap; /* RSS of neap's mappings and the rest */
  mapping_t *regions;              /* the maps, adjacent alike ones merged */
  size_t nregions;
  const mapping_t *by_size[NTOP], *by_rss[NTOP];
  size_t nby_size, nby_rss;
  finding_t findings[MAX_FINDINGS];
  size_t nfindings;
} report_t;

static bool is_anon(const mapping_t *m) { return m->name[0] == '\0' || strncmp(m->name, "[anon:", 6) == 0; }
static bool no_access(const mapping_t *m) { return strncmp(m->perms, "---", 3) == 0; }
/* a - b, or 0: figures read moments apart need not balance. */
static uint64_t minus(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

/* The mapping holding addr, or NULL (maps are sorted and disjoint). */
static mapping_t *mapping_at(const proc_t *p, uint64_t addr) {
  size_t lo = 0, hi = p->nmaps;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (addr < p->maps[mid].start)
      hi = mid;
    else if (addr >= p->maps[mid].end)
      lo = mid + 1;
    else
      return &p->maps[mid];
  }
  return NULL;
}

/* Whether map i, holding a thread's stack pointer, is that thread's own
 * stack: an anonymous read-write mapping with a no-access guard right
 * below it, as glibc, musl and the JVM lay out threads' stacks. A pointer
 * anywhere else is on a stack carved out of other memory (a Go program
 * without cgo runs its threads' system stacks inside its heap), and
 * calling that whole mapping a stack would be wrong. */
static bool own_stack(const proc_t *p, size_t i) {
  const mapping_t *m = &p->maps[i];
  if (strcmp(m->name, "[stack]") == 0) return true;
  return is_anon(m) && m->perms[0] == 'r' && m->perms[1] == 'w' && i > 0 && p->maps[i - 1].end == m->start &&
         no_access(&p->maps[i - 1]);
}

static void find_stacks(const proc_t *p, report_t *r) {
  for (size_t i = 0; i < p->nsps; i++) {
    mapping_t *m = mapping_at(p, p->sps[i]);
    if (m == NULL || !own_stack(p, (size_t)(m - p->maps)))
      r->sp_elsewhere++;
    else
      m->role = "thread stack";
  }
  for (size_t i = 0; i < p->nmaps; i++) {
    mapping_t *m = &p->maps[i];
    if (strcmp(m->name, "[stack]") == 0) m->role = "main thread's stack";
    if (m->role == NULL) continue;
    r->nstacks++;
    r->stack_size += m->end - m->start;
    r->stack_rss += m->rss;
  }
}

/* glibc's arena heaps: a 64 MiB-aligned anonymous read-write mapping,
 * alone 64 MiB or followed by the no-access rest of the 64 MiB. Go's and
 * neap's arenas look the same, so only for a glibc process. */
static void find_glibc_arenas(const proc_t *p, report_t *r) {
  for (size_t i = 0; i < p->nmaps; i++) {
    mapping_t *m = &p->maps[i];
    uint64_t size = m->end - m->start;
    if (!is_anon(m) || strncmp(m->perms, "rw", 2) != 0 || m->start % GLIBC_HEAP_MAX != 0 || m->role != NULL)
      continue;
    const mapping_t *tail = i + 1 < p->nmaps ? &p->maps[i + 1] : NULL;
    if (size != GLIBC_HEAP_MAX) {
      if (tail == NULL || tail->start != m->end || !no_access(tail) || !is_anon(tail) ||
          size + (tail->end - tail->start) != GLIBC_HEAP_MAX)
        continue;
    }
    m->role = "glibc malloc arena";
    r->narenas++;
    r->arena_size += GLIBC_HEAP_MAX;
    r->arena_rss += m->rss;
  }
}

static int by_size_desc(const void *a, const void *b) {
  const mapping_t *x = *(const mapping_t *const *)a, *y = *(const mapping_t *const *)b;
  uint64_t sx = x->end - x->start, sy = y->end - y->start;
  return (sx < sy) - (sx > sy);
}

static int by_rss_desc(const void *a, const void *b) {
  const mapping_t *x = *(const mapping_t *const *)a, *y = *(const mapping_t *const *)b;
  return (x->rss < y->rss) - (x->rss > y->rss);
}

/* Adjacent mappings with the same perms, name and role as one region (its
 * size and RSS): the kernel splits a region wherever parts of it get
 * different madvise flags (Go's heap shows as hundreds of 2 MiB mappings),
 * which tells a reader nothing. */
static void merge_regions(const proc_t *p, report_t *r) {
  if ((r->regions = malloc((p->nmaps + 1) * sizeof *r->regions)) == NULL) return;
  for (size_t i = 0; i < p->nmaps; i++) {
    const mapping_t *m = &p->maps[i];
    mapping_t *last = r->nregions > 0 ? &r->regions[r->nregions - 1] : NULL;
    if (last != NULL && last->end == m->start && strcmp(last->perms, m->perms) == 0 &&
        strcmp(last->name, m->name) == 0 && last->role == m->role) {
      last->end = m->end;
      last->rss += m->rss;
      last->parts++;
    } else {
      r->regions[r->nregions] = *m;
      r->regions[r->nregions++].parts = 1;
    }
  }
}

static size_t top(const report_t *r, const mapping_t **out, int (*cmp)(const void *, const void *),
                  bool rss) {
  const mapping_t **all = malloc((r->nregions + 1) * sizeof *all);
  if (all == NULL) return 0;
  for (size_t i = 0; i < r->nregions; i++) all[i] = &r->regions[i];
  qsort(all, r->nregions, sizeof *all, cmp);
  size_t n = 0;
  for (; n < NTOP && n < r->nregions && (!rss || all[n]->rss > 0); n++) out[n] = all[n];
  free(all);
  return n;
}

/* The JVM reserves the Java heap as one range up to -Xmx and commits it
 * from the bottom as the heap grows: a read-write part, the no-access rest
 * above it. The largest such anonymous range is most likely the heap (the
 * next, the 1 GiB compressed class space). */
static void find_java_heap(report_t *r) {
  for (size_t i = 0; i < r->nregions; i++) {
    const mapping_t *m = &r->regions[i], *below = i > 0 ? &r->regions[i - 1] : NULL;
    if (!is_anon(m) || !no_access(m)) continue;
    uint64_t start = m->start, committed = 0, rss = 0;
    if (below != NULL && below->end == m->start && is_anon(below) && strncmp(below->perms, "rw", 2) == 0) {
      start = below->start;
      committed = below->end - below->start;
      rss = below->rss;
    }
    if (m->end - start <= r->jheap_size) continue;
    r->jheap_start = start;
    r->jheap_size = m->end - start;
    r->jheap_committed = committed;
    r->jheap_rss = rss;
  }
}

static void analyse(const proc_t *p, report_t *r) {
  for (size_t i = 0; i < p->nmaps; i++) {
    const mapping_t *m = &p->maps[i];
    r->lazyfree += m->lazyfree;
    r->thp += m->thp;
    r->pss += m->pss;
    if (strcmp(m->name, "[heap]") == 0) r->heap = m;
    if (strncmp(m->name, "[anon:neap-", 11) == 0) {
      r->neap_named = true;
      r->neap_rss += m->rss;
    }
    if (!no_access(m)) continue;
    r->nreserved++;
    r->reserved += m->end - m->start;
  }
  find_stacks(p, r);
  if (p->runtime == RT_GLIBC) find_glibc_arenas(p, r);
  /* Without named mappings, what neap holds and has not seen reclaimed is
   * the best guess at its resident memory (untouched pages aside). */
  if (p->have_stats && !r->neap_named) r->neap_rss = p->stats.held + p->stats.heap_released_resident;
  r->outside_neap = minus(p->rss, r->neap_rss);
  merge_regions(p, r);
  if (p->runtime == RT_JAVA) find_java_heap(r);
  r->nby_size = top(r, r->by_size, by_size_desc, false);
  r->nby_rss = top(r, r->by_rss, by_rss_desc, true);
}

/* Adds a finding after those of equal or greater weight. */
static void __attribute__((format(printf, 3, 4))) add(report_t *r, uint64_t weight, const char *fmt, ...) {
  if (r->nfindings == MAX_FINDINGS) return;
  size_t at = 0;
  while (at < r->nfindings && r->findings[at].weight >= weight) at++;
  memmove(&r->findings[at + 1], &r->findings[at], (r->nfindings++ - at) * sizeof r->findings[0]);
  finding_t *f = &r->findings[at];
  f->weight = weight;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->text, sizeof f->text, fmt, ap);
  va_end(ap);
}

/* Whether part is worth a finding: at least floor bytes, or a tenth of
 * the whole and 1 MiB. */
static bool notable(uint64_t part, uint64_t whole, uint64_t floor) {
  return part >= floor || (part >= MiB && part * 10 >= whole);
}

static void lazyfree_finding(const proc_t *p, report_t *r) {
  static const char what[] =
      "%s of RSS is LazyFree: memory freed with MADV_FREE, which the kernel reclaims only under memory "
      "pressure; it counts in RSS (and in a container's memory usage) until then. %s";
  const char *remedy;
  if (p->runtime == RT_GO)
    remedy = p->go_madvfree
                 ? "Its environment sets GODEBUG=madvdontneed=0: run with GODEBUG=madvdontneed=1 "
                   "(the default since Go 1.16 unless overridden)."
                 : "Run with GODEBUG=madvdontneed=1 (the default since Go 1.16 unless overridden).";
  else if (p->neap)
    remedy = p->neap_madvfree
                 ? "Its environment sets NEAPDEBUG=madvdontneed=0: unset it (neap returns with "
                   "MADV_DONTNEED by default)."
                 : "neap returns with MADV_DONTNEED unless NEAPDEBUG=madvdontneed=0 is set; unset it.";
  else
    remedy =
        "The allocator (or the program) frees with MADV_FREE: check its MADV_FREE setting "
        "(jemalloc: MALLOC_CONF=muzzy_decay_ms:0).";
  add(r, r->lazyfree, what, H(r->lazyfree), remedy);
}

/* The findings, most resident memory explained first; those about
 * address space alone (weight 0) after them, in the order added. */
static void find_what_stands_out(const proc_t *p, report_t *r) {
  if (notable(r->lazyfree, p->rss, 16 * MiB)) lazyfree_finding(p, r);
  if (p->swap >= MiB)
    add(r, p->swap,
        "%s is swapped out: memory the process owns beyond its RSS (RSS + swap = %s); touching it again "
        "waits for the disk. If that hurts, the machine or the container needs more memory.",
        H(p->swap), H(p->rss + p->swap));
  if (p->have_stats) {
    const neap_stats_t *s = &p->stats;
    uint64_t kept = minus(s->heap_idle, s->heap_released), slack = minus(s->heap_inuse, s->heap_alloc);
    if (notable(kept, p->rss, 16 * MiB))
      add(r, kept,
          "%s free in neap's heap, kept for reuse; it goes back to the OS after NEAP_RELEASE_DELAY "
          "(1 s by default) once the program is idle, or at once on malloc_trim(0) or neap_release().",
          H(kept));
    if (slack >= 16 * MiB && slack * 4 >= s->heap_inuse)
      add(r, slack,
          "%s of neap's spans are free slots of partly used spans (%s in spans, %s live): memory freed "
          "in a scattered way; allocations of the same sizes reuse it.",
          H(slack), H(s->heap_inuse), H(s->heap_alloc));
    if (s->memlimit != 0 && s->held * 10 >= s->memlimit * 9)
      add(r, s->held, "neap holds %s of its %s limit (from %s): past it, neap returns memory first%s.",
          H(s->held), H(s->memlimit), s->memlimit_source == 2 ? "the cgroup" : "NEAP_MEMLIMIT",
          s->memlimit_hard ? ", then fails allocations with ENOMEM" : ", then grows anyway");
  }
  if ((p->neap && r->neap_named) || p->have_stats) {
    if (r->outside_neap >= 64 * MiB && r->outside_neap * 2 >= p->rss)
      add(r, r->outside_neap,
          "%s of RSS is outside neap's heap: code, libraries, stacks and memory mapped directly or by "
          "another allocator; the largest mappings below say where.",
          H(r->outside_neap));
  }
  if (r->narenas >= 2 && (r->arena_rss >= 64 * MiB || r->narenas >= 8))
    add(r, r->arena_rss,
        "%zu glibc malloc arenas (64 MiB heaps) hold %s resident: glibc gives threads that contend "
        "arenas of their own, up to 8 per core, and free memory in one serves only the threads using "
        "it. Set MALLOC_ARENA_MAX=2 to cap them; malloc_trim(0) returns their free pages.",
        r->narenas, H(r->arena_rss));
  if (p->runtime == RT_GLIBC && r->heap != NULL && notable(r->heap->rss, 4 * p->rss, 64 * MiB))
    add(r, r->heap->rss,
        "[heap], glibc's main arena grown with brk, holds %s resident. If the program freed much of "
        "it, glibc shrinks it only from the top: a live block high up keeps the free memory below it; "
        "malloc_trim(0) returns those free pages.",
        H(r->heap->rss));
  if (p->threads >= 64 || r->stack_rss >= 32 * MiB)
    add(r, r->stack_rss,
        "%zu threads; %zu stacks found: %s of address space, %s resident. A stack costs only the pages "
        "it touched; many threads usually mean a pool to bound.",
        p->threads, r->nstacks, H(r->stack_size), H(r->stack_rss));
  if (r->reserved * 2 > p->vsz && p->vsz > GiB) {
    const char *why = p->runtime == RT_GO     ? " Go reserves address space for its heap ahead of use."
                      : p->runtime == RT_JAVA ? " The JVM reserves the Java heap and class space ahead."
                      : p->neap               ? " neap reserves its 64 MiB arenas ahead of use."
                      : r->narenas > 0        ? " glibc's malloc arenas reserve 64 MiB each."
                                              : "";
    add(r, 0,
        "%s of the %s VSZ is reserved address space with no access: it costs no memory. Look at "
        "RSS (%s).%s",
        H(r->reserved), H(p->vsz), H(p->rss), why);
  }
  if (r->jheap_size >= 256 * MiB)
    add(r, r->jheap_rss,
        "The Java heap is most likely the range at %012" PRIx64
        ": %s reserved (-Xmx), %s committed, %s "
        "resident; the JVM grows it and seldom gives it back. For the rest of RSS: "
        "-XX:NativeMemoryTracking=summary, then jcmd %d VM.native_memory summary.",
        r->jheap_start, H(r->jheap_size), H(r->jheap_committed), H(r->jheap_rss), (int)p->pid);
}

/* ---- print --------------------------------------------------------------- */

/* A table row: label, figure, note. depth indents the label. */
static void __attribute__((format(printf, 4, 5)))
row(int depth, const char *label, uint64_t bytes, const char *note, ...) {
  char text[256] = "";
  va_list ap;
  va_start(ap, note);
  vsnprintf(text, sizeof text, note, ap);
  va_end(ap);
  printf("  %*s%-*s %11s%s%s\n", 2 * depth, "", 30 - 2 * depth, label, H(bytes), text[0] ? "  " : "", text);
}

static void print_kernel(const proc_t *p, const report_t *r) {
  printf("\nThe kernel's figures (/proc/%d)\n", (int)p->pid);
  row(0, "address space (VSZ)", p->vsz, "%zu mappings", p->nmaps);
  row(1, "reserved, no access", r->reserved, "%zu mappings ---p: no memory behind them", r->nreserved);
  row(0, "resident (RSS)", p->rss, "%s", "");
  row(1, "anonymous", p->rss_anon, "%s", "");
  row(2, "LazyFree", r->lazyfree, "%s", "freed with MADV_FREE, not reclaimed yet");
  row(2, "in huge pages (THP)", r->thp, "%s", "");
  row(1, "file-backed", p->rss_file, "%s", "code, libraries, mapped files");
  row(1, "shared memory", p->rss_shmem, "%s", "");
  row(0, "proportional (PSS)", r->pss, "%s", "RSS with shared pages split among their users");
  row(0, "swapped out", p->swap, "%s", "not in RSS");
  if (r->heap != NULL)
    row(0, "[heap] (brk)", r->heap->rss, "resident, of %s", H(r->heap->end - r->heap->start));
  char more[128] = "";
  if (r->sp_elsewhere > 0)
    snprintf(more, sizeof more, "; %zu on stacks inside other memory", r->sp_elsewhere);
  if (p->sp_unknown > 0)
    snprintf(more + strlen(more), sizeof more - strlen(more), "; %zu running (stack unknown)", p->sp_unknown);
  row(0, "thread stacks", r->stack_rss, "threads: %zu, stacks found: %zu (%s reserved)%s", p->threads,
      r->nstacks, H(r->stack_size), more);
}

static void print_neap(const proc_t *p, const report_t *r) {
  if (!p->neap) return;
  if (!p->have_stats) {
    printf("\nneap's figures: not available (%s)\n", p->stats_why);
    return;
  }
  const neap_stats_t *s = &p->stats;
  printf("\nneap's figures (its stats)\n");
  row(0, "live objects (heap_alloc)", s->heap_alloc, "%" PRIu64 " objects", s->heap_objects);
  row(0, "in spans (heap_inuse)", s->heap_inuse, "%s of it free slots",
      H(minus(s->heap_inuse, s->heap_alloc)));
  row(0, "free and kept", minus(s->heap_idle, s->heap_released), "%s", "free pages kept for reuse");
  row(0, "returned (heap_released)", s->heap_released, "%s of it still resident (MADV_FREE)",
      H(s->heap_released_resident));
  row(0, "metadata (sys - heap_sys)", minus(s->sys, s->heap_sys), "%s", "");
  const char *source = s->memlimit_source == 2 ? ", from the cgroup" : ", from NEAP_MEMLIMIT";
  row(0, "held from the OS (held)", s->held, "limit: %s%s", s->memlimit ? H(s->memlimit) : "none",
      s->memlimit ? source : "");
  row(0, "address space reserved", s->reserved, "%s", "");
  if (r->neap_named)
    row(0, "resident in neap's mappings", r->neap_rss, "%s", "the kernel's, [anon:neap-*]");
  else
    row(0, "resident in neap (estimate)", r->neap_rss, "%s", "held + heap_released_resident");
  row(0, "RSS outside neap", r->outside_neap, "%s", "the kernel's RSS minus neap's");
}

static void print_top(const char *title, const mapping_t *const *m, size_t n) {
  if (n == 0) return;
  printf("\n%s\n  %-25s %-4s %11s %11s  %s\n", title, "address", "perm", "size", "resident", "name");
  for (size_t i = 0; i < n; i++) {
    char what[64] = "";
    const char *role = m[i]->role;
    if (m[i]->parts > 1)
      snprintf(what, sizeof what, " (%s%s%zu mappings)", role ? role : "", role ? ", " : "", m[i]->parts);
    else if (role != NULL)
      snprintf(what, sizeof what, " (%s)", role);
    printf("  %012" PRIx64 "-%012" PRIx64 " %-4s %11s %11s  %s%s\n", m[i]->start, m[i]->end, m[i]->perms,
           H(m[i]->end - m[i]->start), H(m[i]->rss), m[i]->name[0] != '\0' ? m[i]->name : "[anonymous]",
           what);
  }
}

/* A finding as a bullet, its words wrapped at 80 columns. */
static void print_finding(const char *text) {
  const char *lead = "  - ";
  while (*text != '\0') {
    size_t n = strlen(text), cut = n;
    if (n > 76) {
      cut = 76;
      while (cut > 0 && text[cut] != ' ') cut--;
      if (cut == 0) cut = 76;
    }
    printf("%s%.*s\n", lead, (int)cut, text);
    text += cut;
    while (*text == ' ') text++;
    lead = "    ";
  }
}

static void print_report(const proc_t *p, const report_t *r) {
  char rt[64];
  if (p->neap && p->runtime != RT_NEAP)
    snprintf(rt, sizeof rt, "%s (malloc: neap)", runtime_names[p->runtime]);
  else
    snprintf(rt, sizeof rt, "%s", runtime_names[p->runtime]);
  printf("pid %d (%s), runtime: %s, threads: %zu\n", (int)p->pid, p->name, rt, p->threads);
  if (p->nmaps == 0) {
    printf("no memory of its own: a kernel thread, or a process that has exited\n");
    return;
  }
  print_kernel(p, r);
  print_neap(p, r);
  print_top("Largest mappings by size", r->by_size, r->nby_size);
  print_top("Largest mappings by resident memory", r->by_rss, r->nby_rss);
  printf("\nWhat stands out:%s\n", r->nfindings == 0 ? " nothing unusual." : "");
  for (size_t i = 0; i < r->nfindings; i++) print_finding(r->findings[i].text);
}

int cmd_inspect(int argc, char **argv) {
  const char *arg = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      fputs(usage, stdout);
      return 0;
    }
    if (argv[i][0] == '-' && !(argv[i][1] >= '0' && argv[i][1] <= '9')) {
      fprintf(stderr, "neap inspect: unknown option '%s' (see neap inspect --help)\n", argv[i]);
      return 2;
    }
    if (arg != NULL) {
      fprintf(stderr, "neap inspect: one process id at a time (see neap inspect --help)\n");
      return 2;
    }
    arg = argv[i];
  }
  if (arg == NULL) {
    fprintf(stderr, "neap inspect: no process id given (see neap inspect --help)\n");
    return 2;
  }
  pid_t pid;
  if (!tool_parse_pid("inspect", arg, &pid)) return 2;

  proc_t *p = calloc(1, sizeof *p);
  report_t *r = calloc(1, sizeof *r);
  if (p == NULL || r == NULL) {
    fprintf(stderr, "neap inspect: out of memory\n");
    free(p);
    free(r);
    return 1;
  }
  p->pid = pid;
  const char *what = "status";
  int err = tool_process_state(pid) == ESRCH ? ESRCH : parse(p, &what);
  if (err == ESRCH || err == ENOENT)
    fprintf(stderr, "neap inspect: no process %d\n", (int)pid);
  else if (err == EACCES || err == EPERM)
    fprintf(stderr,
            "neap inspect: permission denied reading /proc/%d/%s (run as the process's user or root)\n",
            (int)pid, what);
  else if (err != 0)
    fprintf(stderr, "neap inspect: cannot read /proc/%d/%s: %s\n", (int)pid, what, strerror(err));
  else {
    analyse(p, r);
    find_what_stands_out(p, r);
    print_report(p, r);
  }
  proc_free(p);
  free(p);
  free(r->regions);
  free(r);
  return err == 0 ? 0 : 1;
}
