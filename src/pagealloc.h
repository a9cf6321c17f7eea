/* The page allocator (Go's pageAlloc): which neap pages of the dense page
 * index space are free, found by address-ordered first fit through a radix
 * tree of summaries. The design and its invariants are described at the top
 * of pagealloc.c. Not thread-safe: the heap holds its lock around every
 * call.
 */
#ifndef NEAP_PAGEALLOC_H
#define NEAP_PAGEALLOC_H

#include "internal.h"

/* Returned by the functions that answer with a page index. */
#define NEAP_PA_FAIL UINT64_MAX

/* One bit per "commit granule" of the allocator's fixed reservation: the
 * OS page, but never less than 4 KiB. The reservation is about 9.4 MiB, so
 * 2,410 granules at most; pagealloc.c checks this bound at compile time. */
#define NEAP_PA_COMMIT_WORDS 40

/* All fields are private to pagealloc.c. The zero value is a valid,
 * empty allocator: every query answers "nothing", alloc fails, and grow
 * initialises it on first use. */
typedef struct neap_pagealloc {
  unsigned char *region;        /* the fixed reservation; NULL before init */
  size_t region_size;           /* its size in bytes */
  unsigned granule_shift;       /* log2 of the commit granule (>= 12) */
  struct neap_pa_dirent *dir;   /* chunk bitmaps: 1,024 blocks of 1,024 chunks */
  uint64_t *sum[5];             /* summary levels, [0] = root (256 entries) */
  uint64_t *grown;              /* one bit per chunk: added by grow */
  uint64_t *dirty[3];           /* chunks holding free, unscavenged pages: 2^20,
                                   2^14 and 2^8 bits, each bit of a level saying
                                   that a word of the level below is non-zero */
  uint64_t hint;                /* no grown page below it is free */
  uint64_t end_chunk;           /* one past the highest grown chunk */
  uint64_t pages_grown, pages_free, pages_scav;
  uint64_t mapped;              /* bytes of its own bookkeeping committed */
  uint64_t committed[NEAP_PA_COMMIT_WORDS]; /* granules of region made ready */
} neap_pagealloc;

/* Reserve the summary levels and commit the always-used part (about 40 KiB).
 * 0 or an errno (ENOMEM). Not idempotent; neap__pa_grow calls it when the
 * allocator is still zero. */
int neap__pa_init(neap_pagealloc *pa);

/* Unmap every reservation and zero *pa (tests use it between cases). */
void neap__pa_destroy(neap_pagealloc *pa);

/* Add pages [base, base+npages), both multiples of NEAP_CHUNK_PAGES and not
 * grown before, as free AND scavenged (fresh from the OS, read as zero).
 * 0, or ENOMEM with the allocator unchanged (EINVAL for bad arguments in
 * builds without asserts). */
int neap__pa_grow(neap_pagealloc *pa, uint64_t base, uint64_t npages);

/* Allocate the lowest-indexed run of npages (>= 1) free pages: mark them in
 * use, clear their scavenged bits, store in *nscav (may be NULL) how many
 * of them were scavenged. Returns the first page index or NEAP_PA_FAIL. */
uint64_t neap__pa_alloc(neap_pagealloc *pa, uint64_t npages, uint64_t *nscav);

/* Allocate exactly [base, base+npages) if every page there is grown and
 * free; true on success (with *nscav as above), false with nothing
 * changed otherwise. */
bool neap__pa_alloc_at(neap_pagealloc *pa, uint64_t base, uint64_t npages, uint64_t *nscav);

/* Free [base, base+npages); every page must be in use (asserted). The
 * pages stay unscavenged: they are resident and dirty. */
void neap__pa_free(neap_pagealloc *pa, uint64_t base, uint64_t npages);

/* The scavenger's search: take the highest page T below `below` that is
 * free and not scavenged, and the run of such pages ending at T, cut to
 * its highest `maxpages` pages. Returns the run's base and sets *npages
 * (may be NULL), or NEAP_PA_FAIL (and *npages = 0). The run may cross
 * chunk boundaries. Cost: O(1) to find T's chunk (a bitmap of chunks with
 * such pages, with two summary levels), then one word per 64 pages of the
 * run; fully used or fully scavenged chunks are never looked at. */
uint64_t neap__pa_find_unscavenged(const neap_pagealloc *pa, uint64_t below, uint64_t maxpages,
                                   uint64_t *npages);

/* Mark [base, base+npages) scavenged; every page must be free (asserted).
 * Pages already scavenged stay so and are not counted twice. */
void neap__pa_mark_scavenged(neap_pagealloc *pa, uint64_t base, uint64_t npages);

/* How many pages of [base, base+npages) are free and scavenged (pages
 * past the grown range count as neither). O(npages / 64). */
uint64_t neap__pa_count_scavenged(const neap_pagealloc *pa, uint64_t base, uint64_t npages);

/* Whether the page is grown and free. */
bool neap__pa_is_free(const neap_pagealloc *pa, uint64_t page);
/* A page's state: never grown (a fence, or past the frontier), in use,
 * free, or free and scavenged. */
typedef enum { NEAP_PA_NOT_GROWN, NEAP_PA_INUSE, NEAP_PA_FREE, NEAP_PA_SCAVENGED } neap_pa_page;
neap_pa_page neap__pa_page_state(const neap_pagealloc *pa, uint64_t page);

/* Totals, kept exact. */
uint64_t neap__pa_pages_grown(const neap_pagealloc *pa);
uint64_t neap__pa_pages_free(const neap_pagealloc *pa);      /* free, scavenged or not */
uint64_t neap__pa_pages_scavenged(const neap_pagealloc *pa); /* free and scavenged */
uint64_t neap__pa_mapped_bytes(const neap_pagealloc *pa);    /* its own bookkeeping, committed */

/* Recompute every summary, the dirty-chunk bitmaps, the totals and the
 * hint's promise from the chunk bitmaps and compare: true if consistent.
 * O(heap). NEAP_DEBUG >= 3 runs it after every change. */
bool neap__pa_check(const neap_pagealloc *pa);

#endif
