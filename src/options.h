/* Run-time options: one table (NEAP_OPTIONS below) that the parser, the
 * option dump and the README all follow.
 *
 * Each option comes from `NEAPDEBUG=key=value,key=value` (the fine knobs,
 * as GODEBUG) or, for policy-level options, from an `NEAP_*` variable of
 * its own. Values: integers in decimal; booleans 1/0, true/false, yes/no,
 * on/off. A bad value or an unknown key prints one `neap: ...` warning and
 * keeps the default.
 *
 * Options are read by scanning `environ` directly (os layer), never with
 * getenv: the first malloc may come from the dynamic loader before libc
 * has run a single constructor. neap__options_init is cheap after its first
 * complete run; the library constructor calls it, and so does any path that
 * needs an option earlier. Before `environ` exists every option has its
 * default.
 */
#ifndef NEAP_OPTIONS_H
#define NEAP_OPTIONS_H

#include "internal.h"

/* X(name, kind, default, min, max, help). Kinds: BOOL, INT. */
#define NEAP_OPTIONS(X)                                                                           \
  X(warnforeign, INT, 0, 0, 2,                                                                    \
    "free, realloc or malloc_usable_size of memory outside neap's heap: 0 ignore, 1 warn once, " \
    "2 abort")                                                                                    \
  X(printopts, BOOL, 0, 0, 1, "print the effective options to stderr at start")

typedef struct neap_options {
#define NEAP__OPT_FIELD(name, kind, def, lo, hi, help) long name;
  NEAP_OPTIONS(NEAP__OPT_FIELD)
#undef NEAP__OPT_FIELD
} neap_options;

/* The options in effect (defaults until neap__options_init has run with an
 * environment). Read-only outside options.c. */
extern neap_options neap__opt;

/* Parse the environment once it exists; later calls do nothing. */
void neap__options_init(void);

#endif
