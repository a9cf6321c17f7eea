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
#include <stdatomic.h>
#include <string.h>

#include "options.h"
#include "os/os.h"

neap_options neap__opt = {
#define NEAP__OPT_DEFAULT(name, kind, def, lo, hi, help) .name = def,
    NEAP_OPTIONS(NEAP__OPT_DEFAULT)
#undef NEAP__OPT_DEFAULT
};

static _Atomic int parsed;

enum { KIND_BOOL, KIND_INT };

static const struct option_info {
  const char *name;
  int kind;
  long lo, hi;
  size_t offset;
  const char *help;
} table[] = {
#define NEAP__OPT_INFO(name, kind, def, lo, hi, help) \
  {#name, KIND_##kind, lo, hi, offsetof(neap_options, name), help},
    NEAP_OPTIONS(NEAP__OPT_INFO)
#undef NEAP__OPT_INFO
};

/* A one-line message built from pieces, written to fd 2 at once. */
typedef struct line {
  char buf[240];
  size_t n;
} line;

static void put(line *l, const char *s, size_t n) {
  if (n > sizeof l->buf - 1 - l->n) n = sizeof l->buf - 1 - l->n;
  memcpy(l->buf + l->n, s, n);
  l->n += n;
}

static void puts0(line *l, const char *s) { put(l, s, strlen(s)); }

static void send(line *l) {
  l->buf[l->n++] = '\n';
  neap__os_write_err(l->buf, l->n);
}

static void warn_key(const char *what, const char *key, size_t klen, const char *tail) {
  line l = {.n = 0};
  puts0(&l, what);
  put(&l, key, klen);
  puts0(&l, tail);
  send(&l);
}

static bool word_is(const char *s, size_t n, const char *w) { return strlen(w) == n && memcmp(s, w, n) == 0; }

/* Parses [s, s+n) for option o; false when the value is bad. */
static bool parse_value(const struct option_info *o, const char *s, size_t n, long *out) {
  if (o->kind == KIND_BOOL) {
    if (word_is(s, n, "1") || word_is(s, n, "true") || word_is(s, n, "yes") || word_is(s, n, "on")) *out = 1;
    else if (word_is(s, n, "0") || word_is(s, n, "false") || word_is(s, n, "no") || word_is(s, n, "off")) *out = 0;
    else return false;
    return true;
  }
  if (n == 0 || n > 18) return false;
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  if (v < o->lo || v > o->hi) return false;
  *out = v;
  return true;
}

static void set_from_neapdebug(const char *env) {
  const char *p = env;
  while (*p != '\0') {
    const char *end = strchr(p, ',');
    if (end == NULL) end = p + strlen(p);
    const char *eq = memchr(p, '=', (size_t)(end - p));
    size_t klen = (size_t)((eq ? eq : end) - p);
    if (klen > 0) {
      const struct option_info *o = NULL;
      for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (word_is(p, klen, table[i].name)) o = &table[i];
      long v;
      if (o == NULL) {
        warn_key("neap: NEAPDEBUG: unknown key '", p, klen, "', ignored");
      } else if (eq == NULL || !parse_value(o, eq + 1, (size_t)(end - eq - 1), &v)) {
        warn_key("neap: NEAPDEBUG: bad value for '", p, klen, "', default kept");
      } else {
        *(long *)(void *)((char *)&neap__opt + o->offset) = v;
      }
    }
    p = *end ? end + 1 : end;
  }
}

static void print_options(void) {
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    const struct option_info *o = &table[i];
    long v = *(const long *)(const void *)((const char *)&neap__opt + o->offset);
    char num[24];
    size_t n = sizeof num;
    unsigned long u = (unsigned long)(v < 0 ? -v : v);
    do num[--n] = (char)('0' + u % 10); while ((u /= 10) != 0);
    if (v < 0) num[--n] = '-';
    line l = {.n = 0};
    puts0(&l, "neap: option ");
    puts0(&l, o->name);
    puts0(&l, "=");
    put(&l, num + n, sizeof num - n);
    puts0(&l, "  (");
    puts0(&l, o->help);
    puts0(&l, ")");
    send(&l);
  }
}

void neap__options_init(void) {
  if (atomic_load_explicit(&parsed, memory_order_acquire)) return;
  if (!neap__os_env_ready()) return; /* too early: defaults for now */
  const char *env = neap__os_getenv("NEAPDEBUG");
  if (env != NULL) set_from_neapdebug(env);
  atomic_store_explicit(&parsed, 1, memory_order_release);
  if (neap__opt.printopts) print_options();
}
