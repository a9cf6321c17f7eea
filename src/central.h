/* The central lists (central.c): one per size class, the spans no thread
 * cache holds, and the remote-free protocol. central.c has the essay. */
#ifndef NEAP_CENTRAL_H
#define NEAP_CENTRAL_H

#include "lock.h"
#include "span.h"

neap_span *neap__central_cache_span(unsigned cls, neap_cache *c);
void neap__central_uncache_span(neap_span *s);
void neap__central_notify(neap_span *s);
void neap__central_drain(unsigned cls); /* forwards or settles notified spans */
/* Gives every empty span that central lists hold back to the page heap;
 * returns the number of pages freed. Takes central locks: call it with no
 * heap lock held. */
size_t neap__central_reclaim(void);
void neap__central_fork(neap_fork_phase phase);

#endif
