/* Run-time options: the parser for the table in options.h.
 *
 * Owns neap__opt. It is written only by neap__options_init, which runs
 * before any thread but the first can exist in practice (the library
 * constructor calls it), and then only once: a flag set after the parse
 * makes every later call return at once. A call that finds no environment
 * yet (the dynamic loader's first malloc) leaves the defaults and does not
 * set the flag, so the constructor parses for real. Warnings go straight to
 * file descriptor 2: no stdio, no allocation.
 */
#include <limits.h>
#include <stdatomic.h>
#include <string.h>

#include "options.h"
#include "os/os.h"

#define NEAP__OPT_DEFAULT(name, kind, def, lo, hi, help) .name = def,
#define NEAP__ENV_DEFAULT(name, var, kind, def, lo, hi, help) .name = def,
#define DEFAULTS {NEAP_OPTIONS(NEAP__OPT_DEFAULT) NEAP_ENV_OPTIONS(NEAP__ENV_DEFAULT)}
const neap_options neap__opt_defaults = DEFAULTS;
neap_options neap__opt = DEFAULTS;
#undef DEFAULTS
#undef NEAP__OPT_DEFAULT
#undef NEAP__ENV_DEFAULT

static _Atomic int parsed;

enum { KIND_BOOL, KIND_INT, KIND_SIZE, KIND_DURATION, KIND_PERCENT, KIND_MODE, KIND_PATH, KIND_GOGC };

static const struct option_info {
  const char *name; /* NEAPDEBUG key, or the variable */
  bool env;         /* a variable of its own */
  int kind;
  long lo, hi;
  size_t offset;
  const char *help;
} table[] = {
#define NEAP__OPT_INFO(name, kind, def, lo, hi, help) \
  {#name, false, KIND_##kind, lo, hi, offsetof(neap_options, name), help},
    NEAP_OPTIONS(NEAP__OPT_INFO)
#undef NEAP__OPT_INFO
#define NEAP__ENV_INFO(name, var, kind, def, lo, hi, help) \
  {#var, true, KIND_##kind, lo, hi, offsetof(neap_options, name), help},
    NEAP_ENV_OPTIONS(NEAP__ENV_INFO)
#undef NEAP__ENV_INFO
};

#define NOPTIONS (sizeof table / sizeof table[0])

/* A one-line message built from pieces, written to fd 2 at once. */
typedef struct line {
  char buf[320];
  size_t n;
} line;

static void put(line *l, const char *s, size_t n) {
  if (n > sizeof l->buf - 1 - l->n) n = sizeof l->buf - 1 - l->n;
  memcpy(l->buf + l->n, s, n);
  l->n += n;
}

static void puts0(line *l, const char *s) { put(l, s, strlen(s)); }

static void putnum(line *l, long v) {
  char num[24];
  size_t n = sizeof num;
  unsigned long u = v < 0 ? 0ul - (unsigned long)v : (unsigned long)v;
  do num[--n] = (char)('0' + u % 10);
  while ((u /= 10) != 0);
  if (v < 0) num[--n] = '-';
  put(l, num + n, sizeof num - n);
}

static void send(line *l) {
  l->buf[l->n++] = '\n';
  neap__os_write_err(l->buf, l->n);
}

static void warn_key(bool warn, const char *what, const char *key, size_t klen, const char *tail) {
  if (!warn) return;
  line l = {.n = 0};
  puts0(&l, what);
  put(&l, key, klen);
  puts0(&l, tail);
  send(&l);
}

static bool word_is(const char *s, size_t n, const char *w) { return strlen(w) == n && memcmp(s, w, n) == 0; }

/* A decimal number with an optional fraction at the start of [s, s+n):
 * *mant / *scale is its value. Returns the length parsed (0: none). */
static size_t parse_decimal(const char *s, size_t n, uint64_t *mant, uint64_t *scale) {
  size_t i = 0, digits = 0;
  uint64_t m = 0, sc = 1;
  bool dot = false;
  for (; i < n; i++) {
    if (s[i] == '.' && !dot) {
      dot = true;
      continue;
    }
    if (s[i] < '0' || s[i] > '9') break;
    if (++digits > 18) return 0;
    m = m * 10 + (uint64_t)(s[i] - '0');
    if (dot) sc *= 10;
  }
  if (digits == 0) return 0;
  *mant = m;
  *scale = sc;
  return i;
}

/* mant / scale * unit, when it fits in a long. */
static bool scaled(uint64_t mant, uint64_t scale, uint64_t unit, long *out) {
  unsigned __int128 v = (unsigned __int128)mant * unit / scale;
  if (v > (unsigned __int128)LONG_MAX) return false;
  *out = (long)v;
  return true;
}

/* Parses [s, s+n) for option o; false when the value is bad. */
static bool parse_value(const struct option_info *o, const char *s, size_t n, long *out) {
  uint64_t mant = 0, scale = 1;
  size_t k;
  long v = 0;
  switch (o->kind) {
  case KIND_BOOL:
    if (word_is(s, n, "1") || word_is(s, n, "true") || word_is(s, n, "yes") || word_is(s, n, "on")) *out = 1;
    else if (word_is(s, n, "0") || word_is(s, n, "false") || word_is(s, n, "no") || word_is(s, n, "off")) *out = 0;
    else return false;
    return true;
  case KIND_MODE:
    if (word_is(s, n, "soft")) *out = 0;
    else if (word_is(s, n, "hard") && o->hi == 1) *out = 1;
    else if (word_is(s, n, "die") && o->hi >= 2) *out = 2;
    else return false;
    return true;
  case KIND_GOGC:
    if (word_is(s, n, "off")) {
      *out = -1;
      return true;
    }
    k = parse_decimal(s, n, &mant, &scale);
    if (k != n || scale != 1 || !scaled(mant, 1, 1, &v)) return false;
    break;
  case KIND_INT:
    k = parse_decimal(s, n, &mant, &scale);
    if (k != n || scale != 1 || !scaled(mant, 1, 1, &v)) return false;
    break;
  case KIND_SIZE: {
    if (o->lo < 0 && word_is(s, n, "off")) {
      *out = -1;
      return true;
    }
    static const struct { const char *suffix; uint64_t unit; } units[] = {
        {"", 1}, {"B", 1}, {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40}};
    k = parse_decimal(s, n, &mant, &scale);
    if (k == 0) return false;
    size_t u = 0;
    while (u < sizeof units / sizeof units[0] && !word_is(s + k, n - k, units[u].suffix)) u++;
    if (u == sizeof units / sizeof units[0] || !scaled(mant, scale, units[u].unit, &v)) return false;
    break;
  }
  case KIND_DURATION: {
    if (o->lo < 0 && word_is(s, n, "off")) {
      *out = -1;
      return true;
    }
    k = parse_decimal(s, n, &mant, &scale);
    if (k == 0) return false;
    uint64_t unit;
    if (word_is(s + k, n - k, "") || word_is(s + k, n - k, "ms")) unit = 1;
    else if (word_is(s + k, n - k, "s")) unit = 1000;
    else if (word_is(s + k, n - k, "m")) unit = 60000;
    else return false;
    if (!scaled(mant, scale, unit, &v)) return false;
    break;
  }
  case KIND_PERCENT:
    k = parse_decimal(s, n, &mant, &scale);
    if (k == 0 || !(word_is(s + k, n - k, "") || word_is(s + k, n - k, "%"))) return false;
    if (!scaled(mant, scale, 100, &v)) return false;
    break;
  default:
    return false;
  }
  if (v < o->lo || v > o->hi) return false;
  *out = v;
  return true;
}

static void set_from_neapdebug(neap_options *opt, const char *env, bool warn) {
  const char *p = env;
  while (*p != '\0') {
    const char *end = strchr(p, ',');
    if (end == NULL) end = p + strlen(p);
    const char *eq = memchr(p, '=', (size_t)(end - p));
    size_t klen = (size_t)((eq ? eq : end) - p);
    if (klen > 0) {
      const struct option_info *o = NULL;
      for (size_t i = 0; i < NOPTIONS; i++)
        if (!table[i].env && word_is(p, klen, table[i].name)) o = &table[i];
      long v;
      if (o == NULL) {
        warn_key(warn, "neap: NEAPDEBUG: unknown key '", p, klen, "', ignored");
      } else if (eq == NULL || !parse_value(o, eq + 1, (size_t)(end - eq - 1), &v)) {
        warn_key(warn, "neap: NEAPDEBUG: bad value for '", p, klen, "', default kept");
      } else {
        *(long *)(void *)((char *)opt + o->offset) = v;
      }
    }
    p = *end ? end + 1 : end;
  }
}

static void set_from_variables(neap_options *opt, const char *(*getvar)(const char *), bool warn) {
  for (size_t i = 0; i < NOPTIONS; i++) {
    const struct option_info *o = &table[i];
    if (!o->env) continue;
    const char *val = getvar(o->name);
    if (val == NULL) continue;
    void *field = (char *)opt + o->offset;
    if (o->kind == KIND_PATH) {
      *(const char **)field = *val ? val : NULL;
      continue;
    }
    long v;
    if (parse_value(o, val, strlen(val), &v)) {
      *(long *)field = v;
    } else if (warn) {
      line l = {.n = 0};
      puts0(&l, "neap: ");
      puts0(&l, o->name);
      puts0(&l, ": bad value '");
      put(&l, val, strlen(val) > 64 ? 64 : strlen(val));
      puts0(&l, "', default kept");
      send(&l);
    }
  }
}

void neap__options_parse(neap_options *opt, const char *neapdebug, const char *(*getvar)(const char *), bool warn) {
  if (neapdebug != NULL) set_from_neapdebug(opt, neapdebug, warn);
  if (getvar != NULL) set_from_variables(opt, getvar, warn);
}

static void print_options(const neap_options *opt) {
  for (size_t i = 0; i < NOPTIONS; i++) {
    const struct option_info *o = &table[i];
    const void *field = (const char *)opt + o->offset;
    line l = {.n = 0};
    puts0(&l, "neap: option ");
    puts0(&l, o->name);
    puts0(&l, "=");
    if (o->kind == KIND_PATH) {
      const char *v = *(const char *const *)field;
      puts0(&l, v ? v : "");
    } else {
      long v = *(const long *)field;
      if (v < 0 && (o->kind == KIND_SIZE || o->kind == KIND_DURATION || o->kind == KIND_GOGC)) {
        puts0(&l, "off");
      } else if (o->kind == KIND_MODE) {
        puts0(&l, v == 0 ? "soft" : o->hi >= 2 ? "die" : "hard");
      } else if (o->kind == KIND_PERCENT) {
        putnum(&l, v / 100);
        puts0(&l, ".");
        putnum(&l, v % 100 / 10);
        putnum(&l, v % 10);
        puts0(&l, "%");
      } else {
        putnum(&l, v);
        if (o->kind == KIND_DURATION) puts0(&l, "ms");
        if (o->kind == KIND_SIZE) puts0(&l, "B");
      }
    }
    puts0(&l, "  (");
    puts0(&l, o->help);
    puts0(&l, ")");
    send(&l);
  }
}

bool neap__options_parsed(void) { return atomic_load_explicit(&parsed, memory_order_acquire) != 0; }

void neap__options_init(void) {
  if (atomic_load_explicit(&parsed, memory_order_acquire)) return;
  if (!neap__os_env_ready()) return; /* too early: defaults for now */
  neap__options_parse(&neap__opt, neap__os_getenv("NEAPDEBUG"), neap__os_getenv, true);
  atomic_store_explicit(&parsed, 1, memory_order_release);
  if (neap__opt.printopts) print_options(&neap__opt);
}
