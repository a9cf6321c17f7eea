/* Off-heap metadata (meta.c): where span records, thread caches and arena
 * records live, never next to user data. */
#ifndef NEAP_META_H
#define NEAP_META_H

#include "internal.h"
#include "lock.h"

/* What metadata is for, for the statistics (span_sys, cache_sys...). */
typedef enum { NEAP_META_SPAN, NEAP_META_CACHE, NEAP_META_ARENA, NEAP_META_GC, NEAP_META_KINDS } neap_meta_kind;
typedef struct neap_pool {
  size_t size;         /* object size, a multiple of 16 */
  neap_meta_kind kind; /* what its memory counts as */
  void *free;          /* free list */
  size_t inuse;        /* objects handed out */
} neap_pool;
/* zeroed, 64-byte aligned, never freed; NULL on ENOMEM */
void *neap__meta_alloc(size_t size, neap_meta_kind kind);
void *neap__pool_alloc(neap_pool *p);     /* zeroed; NULL on ENOMEM */
void neap__pool_free(neap_pool *p, void *x);
typedef struct neap_meta_stats {
  size_t mapped, inuse;
  /* By kind: carved out of mappings (sys) and handed out now (inuse);
   * mapped - the sum of sys is slack not carved yet. */
  size_t sys[NEAP_META_KINDS], kind_inuse[NEAP_META_KINDS];
} neap_meta_stats;
void neap__meta_stats(neap_meta_stats *out);
/* Counts `size` bytes mapped outside the bump allocator (the page map's
 * committed tables) as metadata of `kind`, in use for good. */
void neap__meta_note_mapped(size_t size, neap_meta_kind kind);
size_t neap__meta_mapped(void); /* bytes mapped, without the lock (a relaxed read) */
void neap__meta_fork(neap_fork_phase phase);

#endif
