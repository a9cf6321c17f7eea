/* Statistics printers: text, JSON and the Prometheus text format, all
 * generated from the one field list in neap.h (NEAP_STATS_FIELDS), and
 * the parser that reads the text form back (the neap tool reads the stats
 * files processes publish with it).
 *
 * Nothing here allocates or calls stdio: the printers run inside malloc's
 * library, at exit and from the scavenger thread. Output goes through a
 * small buffer to the caller's write function.
 *
 * Prometheus names follow its conventions: neap_ + the field name + the
 * base unit (_bytes, _seconds) + _total for counters, e.g.
 * neap_heap_alloc_bytes, neap_mallocs_total, neap_scav_cpu_seconds_total.
 * Nanosecond fields are printed in seconds.
 */
#include "statsfmt.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

typedef struct field_info {
  const char *name, *unit, *type, *help;
  size_t offset;
} field_info;

static const field_info fields[] = {
#define NEAP__FIELD_INFO(name, unit, type, help) {#name, #unit, #type, help, offsetof(neap_stats_t, name)},
    NEAP_STATS_FIELDS(NEAP__FIELD_INFO)
    NEAP_STATS_GC_FIELDS(NEAP__FIELD_INFO)
#undef NEAP__FIELD_INFO
};
#define NFIELDS (sizeof fields / sizeof fields[0])

static uint64_t field_value(const neap_stats_t *s, const field_info *f) {
  uint64_t v;
  memcpy(&v, (const char *)s + f->offset, sizeof v);
  return v;
}

/* --- output buffer */
typedef struct out {
  neap_write_fn *fn;
  void *arg;
  size_t n;
  char buf[1024];
} out;

static void flush(out *o) {
  if (o->n > 0) o->fn(o->arg, o->buf, o->n);
  o->n = 0;
}

static void put(out *o, const char *s, size_t n) {
  while (n > 0) {
    if (o->n == sizeof o->buf) flush(o);
    size_t k = sizeof o->buf - o->n < n ? sizeof o->buf - o->n : n;
    memcpy(o->buf + o->n, s, k);
    o->n += k, s += k, n -= k;
  }
}

static void puts0(out *o, const char *s) { put(o, s, strlen(s)); }

static void putu(out *o, uint64_t v) {
  char num[24];
  size_t n = sizeof num;
  do num[--n] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  put(o, num + n, sizeof num - n);
}

/* Nanoseconds as decimal seconds, e.g. 1.500000000. */
static void put_seconds(out *o, uint64_t ns) {
  putu(o, ns / 1000000000u);
  char frac[10];
  frac[0] = '.';
  uint64_t r = ns % 1000000000u;
  for (int i = 9; i >= 1; i--, r /= 10) frac[i] = (char)('0' + r % 10);
  put(o, frac, sizeof frac);
}

/* --- text: "key: value" */
static void emit_text(out *o, const neap_stats_t *s) {
  puts0(o, "version: ");
  putu(o, s->version);
  puts0(o, "\n");
  for (size_t i = 0; i < NFIELDS; i++) {
    puts0(o, fields[i].name);
    puts0(o, ": ");
    putu(o, field_value(s, &fields[i]));
    puts0(o, "\n");
  }
  for (uint64_t c = 0; c < s->nclasses && c < NEAP_STATS_MAX_CLASSES; c++) {
    const neap_stats_class_t *k = &s->by_class[c];
    puts0(o, "class ");
    if (k->size == 0) puts0(o, "large");
    else putu(o, k->size);
    puts0(o, ": mallocs ");
    putu(o, k->mallocs);
    puts0(o, " frees ");
    putu(o, k->frees);
    puts0(o, "\n");
  }
}

/* --- JSON: one object; by_class an array of {size, mallocs, frees} */
static void emit_json(out *o, const neap_stats_t *s) {
  puts0(o, "{\n  \"version\": ");
  putu(o, s->version);
  for (size_t i = 0; i < NFIELDS; i++) {
    puts0(o, ",\n  \"");
    puts0(o, fields[i].name);
    puts0(o, "\": ");
    putu(o, field_value(s, &fields[i]));
  }
  puts0(o, ",\n  \"by_class\": [");
  for (uint64_t c = 0; c < s->nclasses && c < NEAP_STATS_MAX_CLASSES; c++) {
    const neap_stats_class_t *k = &s->by_class[c];
    puts0(o, c == 0 ? "\n    {\"size\": " : ",\n    {\"size\": ");
    putu(o, k->size);
    puts0(o, ", \"mallocs\": ");
    putu(o, k->mallocs);
    puts0(o, ", \"frees\": ");
    putu(o, k->frees);
    puts0(o, "}");
  }
  puts0(o, "\n  ]\n}\n");
}

/* --- Prometheus text exposition format 0.0.4 */
static void prom_name(out *o, const field_info *f) {
  puts0(o, "neap_");
  size_t n = strlen(f->name);
  bool ns = strcmp(f->unit, "ns") == 0;
  if (ns && n > 3 && strcmp(f->name + n - 3, "_ns") == 0) n -= 3; /* scav_cpu_ns -> scav_cpu_seconds */
  put(o, f->name, n);
  bool has_unit = n > 6 && strcmp(f->name + n - 6, "_bytes") == 0; /* scav_bg_bytes */
  if (strcmp(f->unit, "bytes") == 0 && !has_unit) puts0(o, "_bytes");
  if (ns) puts0(o, "_seconds");
  if (strcmp(f->type, "counter") == 0) puts0(o, "_total");
}

/* HELP text: backslashes and newlines escaped (none today, but the
 * format requires it of any text). */
static void put_help(out *o, const char *h) {
  for (; *h != '\0'; h++) {
    if (*h == '\\') puts0(o, "\\\\");
    else if (*h == '\n') puts0(o, "\\n");
    else put(o, h, 1);
  }
}

static void prom_header(out *o, const char *name_done, const char *help, const char *type) {
  puts0(o, "# HELP ");
  puts0(o, name_done);
  puts0(o, " ");
  put_help(o, help);
  puts0(o, "\n# TYPE ");
  puts0(o, name_done);
  puts0(o, " ");
  puts0(o, type);
  puts0(o, "\n");
}

static void emit_prom(out *o, const neap_stats_t *const *snaps, const char *const *labels, size_t n) {
  for (size_t i = 0; i < NFIELDS; i++) {
    const field_info *f = &fields[i];
    /* The metric name, built once into a small buffer. */
    out nb = {.fn = NULL};
    prom_name(&nb, f);
    nb.buf[nb.n] = '\0';
    prom_header(o, nb.buf, f->help, f->type);
    for (size_t j = 0; j < n; j++) {
      puts0(o, nb.buf);
      if (labels != NULL && labels[j] != NULL) {
        puts0(o, "{");
        puts0(o, labels[j]);
        puts0(o, "}");
      }
      puts0(o, " ");
      if (strcmp(f->unit, "ns") == 0) put_seconds(o, field_value(snaps[j], f));
      else putu(o, field_value(snaps[j], f));
      puts0(o, "\n");
    }
  }
  static const char *const per_class[2][2] = {
      {"neap_class_mallocs_total", "objects allocated in each size class, cumulative (size=\"large\": over 32 KiB)"},
      {"neap_class_frees_total", "objects freed in each size class, cumulative (size=\"large\": over 32 KiB)"}};
  for (int which = 0; which < 2; which++) {
    prom_header(o, per_class[which][0], per_class[which][1], "counter");
    for (size_t j = 0; j < n; j++) {
      const neap_stats_t *s = snaps[j];
      for (uint64_t c = 0; c < s->nclasses && c < NEAP_STATS_MAX_CLASSES; c++) {
        const neap_stats_class_t *k = &s->by_class[c];
        puts0(o, per_class[which][0]);
        puts0(o, "{");
        if (labels != NULL && labels[j] != NULL) {
          puts0(o, labels[j]);
          puts0(o, ",");
        }
        puts0(o, "size=\"");
        if (k->size == 0) puts0(o, "large");
        else putu(o, k->size);
        puts0(o, "\"} ");
        putu(o, which == 0 ? k->mallocs : k->frees);
        puts0(o, "\n");
      }
    }
  }
}

int neap__stats_emit(const neap_stats_t *const *snaps, const char *const *labels, size_t n,
                     neap_stats_format format, neap_write_fn *fn, void *arg) {
  if (fn == NULL || (snaps == NULL && n > 0)) return EINVAL;
  if (format != NEAP_STATS_TEXT && format != NEAP_STATS_JSON && format != NEAP_STATS_PROMETHEUS) return EINVAL;
  out o = {.fn = fn, .arg = arg};
  if (format == NEAP_STATS_PROMETHEUS) emit_prom(&o, snaps, labels, n);
  for (size_t j = 0; format != NEAP_STATS_PROMETHEUS && j < n; j++) {
    if (format == NEAP_STATS_TEXT) emit_text(&o, snaps[j]);
    else emit_json(&o, snaps[j]);
  }
  flush(&o);
  return 0;
}

int neap_stats_format_snapshot(const neap_stats_t *s, neap_write_fn *fn, void *arg, neap_stats_format format) {
  if (s == NULL) return EINVAL;
  return neap__stats_emit(&s, NULL, 1, format, fn, arg);
}

/* --- reading the text form back */

static const char *parse_u64(const char *p, uint64_t *v) {
  while (*p == ' ') p++;
  if (*p < '0' || *p > '9') return NULL;
  uint64_t x = 0;
  while (*p >= '0' && *p <= '9') x = x * 10 + (uint64_t)(*p++ - '0');
  *v = x;
  return p;
}

static bool starts(const char *p, const char *word, const char **rest) {
  size_t n = strlen(word);
  if (strncmp(p, word, n) != 0) return false;
  *rest = p + n;
  return true;
}

int neap__stats_parse_text(const char *text, neap_stats_t *s) {
  memset(s, 0, sizeof *s);
  int found = 0;
  for (const char *line = text; line != NULL && *line != '\0';) {
    const char *end = strchr(line, '\n');
    const char *colon = strchr(line, ':');
    const char *rest;
    uint64_t v, m, f;
    if (colon != NULL && (end == NULL || colon < end)) {
      size_t klen = (size_t)(colon - line);
      if (starts(line, "class ", &rest)) {
        /* "class 16: mallocs N frees M" / "class large: ..." */
        uint64_t size = 0;
        if (!starts(rest, "large", &rest) && (rest = parse_u64(rest, &size)) == NULL) goto next;
        rest = colon + 1;
        if (!starts(rest, " mallocs", &rest) || (rest = parse_u64(rest, &m)) == NULL) goto next;
        if (!starts(rest, " frees", &rest) || parse_u64(rest, &f) == NULL) goto next;
        if (s->nclasses < NEAP_STATS_MAX_CLASSES) {
          s->by_class[s->nclasses++] = (neap_stats_class_t){.size = size, .mallocs = m, .frees = f};
          found++;
        }
      } else if (parse_u64(colon + 1, &v) != NULL) {
        if (klen == 7 && strncmp(line, "version", 7) == 0) {
          s->version = v;
          found++;
        }
        for (size_t i = 0; i < NFIELDS; i++)
          if (strlen(fields[i].name) == klen && strncmp(fields[i].name, line, klen) == 0) {
            memcpy((char *)s + fields[i].offset, &v, sizeof v);
            found++;
          }
      }
    }
  next:
    line = end != NULL ? end + 1 : NULL;
  }
  return found;
}
