/* The central lists (central.c): one per size class, the spans no thread
 * cache holds, and the remote-free protocol. central.c has the essay. */
#ifndef NEAP_CENTRAL_H
#define NEAP_CENTRAL_H

#include "heap.h"
#include "lock.h"
#include "span.h"

/* A span of class cls with a free object for cache c, which owns it from
 * now on: one of the central's partial spans, or a new one from the page
 * heap (*fresh: its objects were never handed out, and its page info and
 * free marks are not written yet). NULL with ENOMEM. */
neap_span *neap__central_take(unsigned cls, neap_cache *c, bool *fresh);
/* Takes s back from the cache that owned it: onto its central's lists,
 * or, if empty, back to the page heap. */
void neap__central_give_back(neap_span *s);
void neap__central_notify(neap_span *s);
void neap__central_drain(unsigned cls); /* forwards or settles notified spans */
/* The centrals' reclaimer (heap.h): gives every span that other threads'
 * frees emptied back to the page heap; the pages freed. Takes central
 * locks. */
size_t neap__central_reclaim(neap_reclaim why);
void neap__central_fork(neap_fork_phase phase);

#endif
