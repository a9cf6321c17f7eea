/* fuzz_text: the parsers of text neap reads from outside, and the
 * printers whose output other programs read.
 *
 * The first byte of an input picks the target; the rest is the text.
 *   0  NEAPDEBUG (options.c): every option ends within its range or at its
 *      default, whatever the text;
 *   1  the NEAP_* variables (options.c): the text's lines are their
 *      values, in the table's order; the same property;
 *   2  a stats file's text (statsfmt.c, as `neap stats` reads other
 *      processes' files): parsing is stable (the text printed from what
 *      was parsed parses back to exactly the same), and the three printers
 *      write well-formed output: printable lines, balanced JSON, a
 *      Prometheus sample line after each HELP and TYPE;
 *   3  the cgroup files (memlimit.c, which reads /proc/self/cgroup,
 *      /proc/self/mountinfo and the limit files of the cgroup tree): the
 *      text's three parts become those files of a fake tree (with limit
 *      files at the usual places), and the limit found is 0 or one of the
 *      values written there.
 * Random runs (driver.c) build texts from the words these formats use.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"
#include "memlimit.h"
#include "neap.h"
#include "options.h"
#include "statsfmt.h"

__attribute__((noreturn)) static void fail(const char *what, const char *text) {
  fprintf(stderr, "fuzz: %s (input \"%.200s\")\n", what, text);
  abort();
}

/* --- 0, 1: options */

/* Every option in its range, or at its default (PATH: anything). */
static void check_options(const neap_options *o, const char *text) {
#define CHECK_OPT(name, kind, def, lo, hi, help)                                              \
  if (o->name != (long)(def) && (o->name < (long)(lo) || o->name > (long)(hi)))             \
    fail("option " #name " out of its range", text);
  NEAP_OPTIONS(CHECK_OPT)
#undef CHECK_OPT
#define CHECK_ENV(name, var, kind, def, lo, hi, help) CHECK_ENV_##kind(name, def, lo, hi)
#define CHECK_ENV_PATH(name, def, lo, hi)
#define CHECK_ENV_NUM(name, def, lo, hi)                                                      \
  if (o->name != (long)(def) && (o->name < (long)(lo) || o->name > (long)(hi)))             \
    fail("variable for " #name " out of its range", text);
#define CHECK_ENV_SIZE CHECK_ENV_NUM
#define CHECK_ENV_DURATION CHECK_ENV_NUM
#define CHECK_ENV_PERCENT CHECK_ENV_NUM
#define CHECK_ENV_MODE CHECK_ENV_NUM
#define CHECK_ENV_INT CHECK_ENV_NUM
#define CHECK_ENV_BOOL CHECK_ENV_NUM
#define CHECK_ENV_GOGC CHECK_ENV_NUM
  NEAP_ENV_OPTIONS(CHECK_ENV)
}

static const char *var_values[32];
static const char *const var_names[] = {
#define VAR_NAME(name, var, kind, def, lo, hi, help) #var,
    NEAP_ENV_OPTIONS(VAR_NAME)
#undef VAR_NAME
};
#define NVARS (sizeof var_names / sizeof var_names[0])

static const char *getvar(const char *name) {
  for (size_t i = 0; i < NVARS; i++)
    if (strcmp(name, var_names[i]) == 0) return var_values[i];
  return NULL;
}

static void fuzz_options(char *text, bool variables) {
  neap_options o = neap__opt_defaults;
  if (!variables) {
    neap__options_parse(&o, text, NULL, false);
  } else {
    memset(var_values, 0, sizeof var_values);
    char *p = text;
    for (size_t i = 0; i < NVARS && p != NULL; i++) {
      var_values[i] = p;
      p = strchr(p, '\n');
      if (p != NULL) *p++ = '\0';
    }
    neap__options_parse(&o, NULL, getvar, false);
  }
  check_options(&o, text);
}

/* --- 2: the stats text and the printers */

typedef struct sink {
  char buf[1 << 16];
  size_t n;
} sink;

static void to_sink(void *arg, const char *b, size_t len) {
  sink *s = arg;
  if (len > sizeof s->buf - 1 - s->n) fail("printer output too long", "");
  memcpy(s->buf + s->n, b, len);
  s->n += len;
  s->buf[s->n] = '\0';
}

static void check_printable(const sink *s, const char *what) {
  if (s->n == 0 || s->buf[s->n - 1] != '\n') fail(what, "output does not end with a newline");
  for (size_t i = 0; i < s->n; i++) {
    unsigned char c = (unsigned char)s->buf[i];
    if (c != '\n' && (c < 0x20 || c > 0x7e)) fail(what, "output has a byte that is not printable");
  }
}

static void fuzz_stats(const char *text) {
  static neap_stats_t a, b;
  static sink out;
  neap__stats_parse_text(text, &a);
  for (int f = NEAP_STATS_TEXT; f <= NEAP_STATS_PROMETHEUS; f++) {
    out.n = 0;
    if (neap_stats_format_snapshot(&a, to_sink, &out, (neap_stats_format)f) != 0) fail("a printer failed", text);
    check_printable(&out, text);
    if (f == NEAP_STATS_TEXT) {
      neap__stats_parse_text(out.buf, &b);
      if (memcmp(&a, &b, sizeof a) != 0) fail("stats text does not parse back to what it was printed from", text);
    } else if (f == NEAP_STATS_JSON) {
      int depth = 0;
      for (size_t i = 0; i < out.n; i++) {
        depth += out.buf[i] == '{' || out.buf[i] == '[';
        depth -= out.buf[i] == '}' || out.buf[i] == ']';
        if (depth < 0) fail("JSON closes more than it opens", text);
      }
      if (depth != 0 || out.buf[0] != '{') fail("JSON is not one balanced object", text);
    } else {
      /* Each line: a HELP or TYPE comment, or "neap_<name>[{...}] <number>". */
      for (const char *l = out.buf; *l; l = strchr(l, '\n') + 1) {
        if (strncmp(l, "# HELP neap_", 12) == 0 || strncmp(l, "# TYPE neap_", 12) == 0) continue;
        const char *sp = strchr(l, ' ');
        if (strncmp(l, "neap_", 5) != 0 || sp == NULL || sp[1] < '0' || sp[1] > '9')
          fail("Prometheus line is not a sample", text);
      }
    }
  }
  if (a.nclasses > NEAP_STATS_MAX_CLASSES) fail("parser filled more classes than there are", text);
}

/* --- 3: cgroup files */

static char root[64];

static void write_file(const char *rel, const char *text, size_t n) {
  char path[256];
  snprintf(path, sizeof path, "%s%s", root, rel);
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    perror(path);
    abort();
  }
  fwrite(text, 1, n, f);
  fclose(f);
}

static const char *const limit_dirs[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/a", "/sys/fs/cgroup/a/b",
                                         "/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/a"};
#define NDIRS (sizeof limit_dirs / sizeof limit_dirs[0])

static void make_tree(void) {
  if (root[0] != '\0') return;
  snprintf(root, sizeof root, "/dev/shm/neap-fuzz-cg.%d", (int)getpid());
  char path[256];
  static const char *const dirs[] = {"", "/proc", "/proc/self", "/sys", "/sys/fs"};
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    snprintf(path, sizeof path, "%s%s", root, dirs[i]);
    mkdir(path, 0700);
  }
  for (size_t i = 0; i < NDIRS; i++) {
    snprintf(path, sizeof path, "%s%s", root, limit_dirs[i]);
    mkdir(path, 0700);
  }
}

static void remove_tree(void) {
  if (root[0] == '\0') return;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", root);
  if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", root);
}

/* Splits the text at its first two NULs (or '|'): /proc/self/cgroup,
 * mountinfo, and the values of the limit files. */
static void fuzz_cgroup(const char *text, size_t n) {
  make_tree();
  const char *part[3] = {text, "", ""};
  size_t len[3] = {n, 0, 0};
  for (int k = 0; k < 2; k++) {
    const char *sep = memchr(part[k], '|', len[k]);
    if (sep == NULL) break;
    part[k + 1] = sep + 1;
    len[k + 1] = len[k] - (size_t)(sep + 1 - part[k]);
    len[k] = (size_t)(sep - part[k]);
  }
  write_file("/proc/self/cgroup", part[0], len[0]);
  write_file("/proc/self/mountinfo", part[1], len[1]);
  /* The limit files: each directory gets one of the values (split at
   * spaces), as memory.max, memory.high and memory.limit_in_bytes. */
  uint64_t written[NDIRS];
  char values[512];
  size_t vn = len[2] < sizeof values - 1 ? len[2] : sizeof values - 1;
  memcpy(values, part[2], vn);
  values[vn] = '\0';
  char *save = NULL, *tok = strtok_r(values, " ", &save);
  for (size_t i = 0; i < NDIRS; i++) {
    const char *v = tok ? tok : "max";
    written[i] = strtoull(v, NULL, 10);
    char rel[128];
    static const char *const files[] = {"memory.max", "memory.high", "memory.limit_in_bytes"};
    for (size_t f = 0; f < 3; f++) {
      snprintf(rel, sizeof rel, "%s/%s", limit_dirs[i], files[f]);
      write_file(rel, v, strlen(v));
    }
    if (tok) tok = strtok_r(NULL, " ", &save);
  }
  uint64_t limit = neap__cgroup_limit(root);
  bool known = limit == 0;
  for (size_t i = 0; i < NDIRS; i++) known |= limit == written[i];
  if (!known) fail("cgroup limit is none of the values in the tree", text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  static char text[1 << 16];
  size_t n = size - 1 < sizeof text - 1 ? size - 1 : sizeof text - 1;
  memcpy(text, data + 1, n);
  text[n] = '\0';
  switch (data[0] % 4) {
  case 0: fuzz_options(text, false); break;
  case 1: fuzz_options(text, true); break;
  case 2: fuzz_stats(text); break;
  default: fuzz_cgroup(text, n); break;
  }
  return 0;
}

/* --- random texts from the formats' words */

static const char *const words[][24] = {
    {"warnforeign", "printopts", "madvdontneed", "disablethp", "scavtrace", "scavenger", "statsonexit", "=", "=",
     ",", ",", "0", "1", "2", "on", "off", "true", "no", "99999999999999999999", "-1", "", "x", "==", ",,"},
    {"512MiB", "1.5GiB", "2TiB", "off", "1s", "500ms", "2m", "0.5", "90%", "100.00%", "hard", "soft", "\n", "\n",
     "0", "-5", "1e9", "9223372036854775807", "4503599627370497", "KiB", "ms", "%", ".", "/tmp"},
    {"version: ", "heap_alloc: ", "sys: ", "mallocs: ", "class ", "class large: mallocs ", ": mallocs ", " frees ",
     "\n", "\n", "0", "1", "18446744073709551615", "18446744073709551616", "16", "32768", ":", " ", "threads: ",
     "nclasses: ", "kernel_rss:", "x: 5", "class 8", "999"},
    {"0::/", "0::/a/b", "4:memory:/a", "5:cpu,memory:/", "|", "|", "\n", "\n", " ", " - ", "cgroup2", "cgroup",
     "rw,memory", "/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/a", "\\040", "max", "1000", "4611686018427387904",
     "33 29 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw", "0:26 /a /sys/fs/cgroup", "12345678", "..\n"},
};

void fuzz_random(fuzz_run *run) {
  uint64_t rng = run->seed;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double t0 = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
  static uint8_t buf[4096];
  for (run->ops = 0;; run->ops++) {
    if (run->max_ops != 0 && run->ops >= run->max_ops) break;
    if ((run->ops & 63) == 0) {
      clock_gettime(CLOCK_MONOTONIC, &ts);
      if ((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 - t0 >= run->seconds) break;
    }
    uint64_t r = fuzz_next(&rng);
    unsigned target = (unsigned)(r % 4), nwords = (unsigned)((r >> 8) % 40);
    size_t n = 0;
    buf[n++] = (uint8_t)target;
    for (unsigned k = 0; k < nwords; k++) {
      uint64_t x = fuzz_next(&rng);
      if (x % 16 == 0) { /* a random byte now and then */
        buf[n++] = (uint8_t)(x >> 8);
      } else {
        const char *w = words[target][(x >> 8) % 24];
        size_t l = strlen(w);
        if (n + l >= sizeof buf) break;
        memcpy(buf + n, w, l);
        n += l;
      }
    }
    LLVMFuzzerTestOneInput(buf, n);
  }
  remove_tree();
}
