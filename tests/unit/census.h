/* The tests' view of the page heap: its live small spans counted by state
 * and owner (from neap__heap_walk), and its pages in spans. Shared by the
 * cache's and the central's unit tests. */
#ifndef NEAP_TEST_CENSUS_H
#define NEAP_TEST_CENSUS_H

#include "heap.h"
#include "span.h"

typedef struct census {
  unsigned cls; /* 0: every small class */
  uint64_t spans, central, owned;
} census;

static void census_span(void *ctx, neap_span *s) {
  census *c = ctx;
  if (s == NULL || s->sizeclass == 0 || (c->cls != 0 && s->sizeclass != c->cls)) return;
  c->spans++;
  if (neap__where_central(neap__span_where(s))) c->central++;
  if (NEAP_LOAD(&s->owner) != NULL) c->owned++;
}

/* The live small spans (of class cls, or all for 0). */
__attribute__((unused)) static census census_of(unsigned cls) {
  census c = {.cls = cls};
  neap_heap_stats hs;
  neap__heap_walk(&hs, census_span, &c);
  return c;
}

__attribute__((unused)) static uint64_t pages_inuse(void) {
  neap_heap_stats hs;
  neap__heap_stats(&hs);
  return hs.pages_inuse;
}

#endif
