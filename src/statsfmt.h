/* The statistics printers (statsfmt.c), shared by the library and the
 * neap tool, which compiles statsfmt.c into itself to print what other
 * processes publish. */
#ifndef NEAP_STATSFMT_H
#define NEAP_STATSFMT_H

#include <stddef.h>

#include "neap.h"

/* Prints n snapshots. Prometheus: one HELP and TYPE per metric and a
 * sample per snapshot, labelled with labels[i] (a `key="value"` list
 * without braces, or NULL for none); text and JSON: the snapshots one
 * after the other (labels ignored). Never allocates. 0, or EINVAL. */
int neap__stats_emit(const neap_stats_t *const *snaps, const char *const *labels, size_t n,
                     neap_stats_format format, neap_write_fn *fn, void *arg);

/* Parses text output (one snapshot) back into *s; unknown keys are
 * ignored, so an older tool reads a newer library's file. Returns the
 * number of known keys found. */
int neap__stats_parse_text(const char *text, neap_stats_t *s);

#endif
