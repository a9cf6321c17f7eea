/* The page allocator (Go's pageAlloc): which neap pages are free.
 *
 * What it owns. The state of every page of the dense page-index space
 * [0, 2^29): in use or free, and for free pages whether their memory is
 * "scavenged" (returned to the OS, or fresh from it, so it reads as
 * zero). It knows nothing of addresses: heap.c maps indexes to memory, and
 * nothing here ever touches heap memory.
 *
 * Data. The index space is cut into 2^20 chunks of 512 pages (4 MiB).
 *   chunk bitmaps  per chunk, 512 "used" bits (1 = in use) and 512
 *                  "scavenged" bits: 128 bytes. Reached through a
 *                  directory of 1,024 blocks of 1,024 chunks; a block (128
 *                  KiB of address space, 4 GiB of heap) is reserved when a
 *                  chunk in it is first grown.
 *   summaries      a radix tree, 5 levels of fan-out 8 over the chunks,
 *                  each level a flat array of 64-bit summaries: the leaf
 *                  level has one entry per chunk (2^20 entries), then 2^17,
 *                  2^14, 2^11, and the root 2^8 entries of 2^21 pages each.
 *                  A summary says, for the pages under its entry, how many
 *                  at the low end are free (start), the longest free run
 *                  (max) and how many at the high end are free (end). A
 *                  parent is a merge of its 8 children; its 8 children are
 *                  one 64-byte cache line.
 *   grown          one bit per chunk: added by neap__pa_grow.
 *   dirty          one bit per chunk that holds free, unscavenged pages,
 *                  with two levels above it (a bit per non-zero word) so
 *                  the scavenger finds the highest such chunk in O(1).
 *
 * Encoding. start, max and end are 21-bit fields (bits 0, 21, 42). The
 * only value that does not fit is 2^21: a root entry whose 2^21 pages are
 * all free. As in Go, that one summary is the single bit 63. (A root entry
 * covering a gap, or partly used, fits: all three fields are < 2^21.)
 *
 * Invariants.
 *   - A page that is not in a grown chunk counts as in use: its chunk's
 *     summary is 0 and no run can cross it. Its bitmap is never read.
 *   - Every summary equals the merge of its children; a leaf summary equals
 *     what its chunk's used bits say. neap__pa_check recomputes all of it.
 *   - A scavenged bit is set only on a free page. A chunk's dirty bit is
 *     set iff some page of it is free and not scavenged.
 *   - hint: no grown page with a lower index is free (Go's searchAddr).
 *     It moves up past what alloc proves full and down to any freed page.
 *   - pages_grown, pages_free and pages_scav are exact.
 *
 * Finding N free pages (address-ordered first fit). The fast path reads
 * the leaf summary of the hint's chunk: if its max is >= N the first fit is
 * in that chunk, found with a few word operations on its bitmap. Otherwise
 * the walk starts at the root entries at or after the hint (at most 256)
 * and goes down one level at a time, looking at 8 entries per level: a run
 * may be the previous entries' free end plus this entry's free start
 * (chained across as many fully free entries as it takes, which is how
 * runs longer than a chunk are found), or lie inside the first entry whose
 * max is >= N, which is where the walk descends. Cost: at most 256 + 4*8
 * summaries and one chunk bitmap, whatever the heap's size. After a change
 * the leaf summaries of the touched chunks are recomputed and their
 * parents merged upward while anything changes.
 *
 * Memory. One reservation of 9.4 MiB at init (summaries 9.1 MiB, grown
 * and dirty bits 256 KiB, directory 16 KiB), of which 40 KiB (directory,
 * top dirty levels, two top summary levels) is committed at once; plus one
 * reservation of 128 KiB per 4 GiB block of chunk bitmaps. Beyond that,
 * only the granules (OS pages, at least 4 KiB) that grown chunks need are
 * committed, recorded in bitmaps: per GiB of heap, 32 KiB of chunk bitmaps
 * and about 2.3 KiB of summaries and bits (0.003%), rounded up to whole
 * granules. Every byte comes from the os layer: there is no malloc below
 * us. Nothing is decommitted before neap__pa_destroy. A commit that fails
 * in grow happens before any state changes, so grow fails cleanly.
 *
 * Locking. None: the heap holds its lock around every call. Reads that may
 * fall on uncommitted memory check the commit bitmap first.
 *
 * Callers. heap.c (grow, alloc, alloc_at, free, the totals), the scavenger
 * (find_unscavenged, mark_scavenged), calloc's zeroing decision
 * (count_scavenged), tests (check).
 */
#include "pagealloc.h"

#include "bits.h"

#include <errno.h>
#include <string.h>

#include "os/os.h"

/* --- geometry */
#define PA_CHUNK_SHIFT 9 /* log2(NEAP_CHUNK_PAGES) */
#define PA_CHUNK_MASK ((uint64_t)NEAP_CHUNK_PAGES - 1)
#define PA_CHUNKS (NEAP_MAX_PAGES >> PA_CHUNK_SHIFT) /* 2^20 */
#define PA_WORDS (NEAP_CHUNK_PAGES / 64)            /* 8 words per chunk bitmap */
#define PA_LEVELS 5
#define PA_LEAF (PA_LEVELS - 1)
#define PA_LEVEL_BITS 3 /* fan-out 8: one cache line of children */
#define PA_FANOUT (1u << PA_LEVEL_BITS)
/* log2 of the pages under one entry of level l: 21 at the root, 9 at the leaf */
#define PA_LEVEL_SHIFT(l) (PA_CHUNK_SHIFT + PA_LEVEL_BITS * (PA_LEAF - (l)))
#define PA_LEVEL_ENTRIES(l) (PA_CHUNKS >> (PA_LEVEL_BITS * (PA_LEAF - (l))))
#define PA_BLOCK_SHIFT 10 /* chunks per directory block: 1,024 (4 GiB of heap) */
#define PA_BLOCK_CHUNKS ((uint64_t)1 << PA_BLOCK_SHIFT)
#define PA_DIR_ENTRIES (PA_CHUNKS >> PA_BLOCK_SHIFT)
#define PA_MIN_GRANULE_SHIFT 12 /* commit in units of at least 4 KiB */

_Static_assert(NEAP_CHUNK_PAGES == 1 << PA_CHUNK_SHIFT, "chunk geometry");
_Static_assert(PA_LEVEL_SHIFT(0) == 21 && PA_LEVEL_ENTRIES(0) == 256, "root geometry");

typedef struct pa_chunk {
  uint64_t used[PA_WORDS]; /* 1 = in use */
  uint64_t scav[PA_WORDS]; /* 1 = free and scavenged */
} pa_chunk;

struct neap_pa_dirent {
  pa_chunk *block;  /* PA_BLOCK_CHUNKS chunks, reserved on first use */
  uint64_t ready;   /* bit g: granule g of the block is committed */
};
typedef struct neap_pa_dirent pa_dirent;

#define PA_BLOCK_BYTES (PA_BLOCK_CHUNKS * sizeof(pa_chunk)) /* 128 KiB */
_Static_assert(PA_BLOCK_BYTES >> PA_MIN_GRANULE_SHIFT <= 64, "a block's granules fit one word");

/* The fixed reservation. The part before OFF_LAZY is committed at init;
 * the rest granule by granule as chunks are grown. Every array starts on a
 * 64-byte boundary, so each block of 8 summaries is one cache line, and the
 * lazy ones on a 4 KiB boundary, so an aligned group of 64 leaf summaries
 * never straddles two granules. */
#define OFF_DIR 0
#define OFF_DIRTY1 (OFF_DIR + PA_DIR_ENTRIES * sizeof(pa_dirent))
#define OFF_DIRTY2 (OFF_DIRTY1 + (PA_CHUNKS >> 12) * 8)
#define OFF_SUM0 (OFF_DIRTY2 + 64)
#define OFF_SUM1 (OFF_SUM0 + PA_LEVEL_ENTRIES(0) * 8)
#define OFF_LAZY (((OFF_SUM1 + PA_LEVEL_ENTRIES(1) * 8) + 4095) & ~(size_t)4095)
#define OFF_SUM2 OFF_LAZY
#define OFF_SUM3 (OFF_SUM2 + PA_LEVEL_ENTRIES(2) * 8)
#define OFF_SUM4 (OFF_SUM3 + PA_LEVEL_ENTRIES(3) * 8)
#define OFF_GROWN (OFF_SUM4 + PA_LEVEL_ENTRIES(4) * 8)
#define OFF_DIRTY0 (OFF_GROWN + PA_CHUNKS / 8)
#define OFF_END (OFF_DIRTY0 + PA_CHUNKS / 8)

_Static_assert(OFF_SUM0 % 64 == 0 && OFF_SUM1 % 64 == 0, "alignment");
_Static_assert(OFF_SUM2 % 4096 == 0 && OFF_SUM3 % 4096 == 0 && OFF_SUM4 % 4096 == 0 &&
                   OFF_GROWN % 4096 == 0 && OFF_DIRTY0 % 4096 == 0,
               "lazily committed arrays start on a 4 KiB boundary");
_Static_assert((OFF_END >> PA_MIN_GRANULE_SHIFT) + 1 <= NEAP_PA_COMMIT_WORDS * 64,
               "NEAP_PA_COMMIT_WORDS too small for the reservation");

static const size_t off_sum[PA_LEVELS] = {OFF_SUM0, OFF_SUM1, OFF_SUM2, OFF_SUM3, OFF_SUM4};

/* --- summaries */
#define SUM_BITS 21
#define SUM_FIELD (((uint64_t)1 << SUM_BITS) - 1)
#define SUM_ROOT_FREE ((uint64_t)1 << 63) /* start = max = end = 2^21 */

NEAP_INLINE uint64_t sum_pack(uint64_t start, uint64_t max, uint64_t end) {
  if (max == (uint64_t)1 << SUM_BITS) {
    neap_assert_internal(start == max && end == max);
    return SUM_ROOT_FREE;
  }
  neap_assert_internal(start <= max && end <= max && max <= SUM_FIELD);
  return start | max << SUM_BITS | end << (2 * SUM_BITS);
}
NEAP_INLINE uint64_t sum_start(uint64_t s) {
  return (s & SUM_ROOT_FREE) ? (uint64_t)1 << SUM_BITS : s & SUM_FIELD;
}
NEAP_INLINE uint64_t sum_max(uint64_t s) {
  return (s & SUM_ROOT_FREE) ? (uint64_t)1 << SUM_BITS : (s >> SUM_BITS) & SUM_FIELD;
}
NEAP_INLINE uint64_t sum_end(uint64_t s) {
  return (s & SUM_ROOT_FREE) ? (uint64_t)1 << SUM_BITS : (s >> (2 * SUM_BITS)) & SUM_FIELD;
}
#define SUM_CHUNK_FREE (NEAP_CHUNK_PAGES | (uint64_t)NEAP_CHUNK_PAGES << SUM_BITS | \
                        (uint64_t)NEAP_CHUNK_PAGES << (2 * SUM_BITS))

/* Bits of word w of a chunk bitmap that fall in pages [lo, hi) of the
 * chunk; w must overlap the range. */
NEAP_INLINE uint64_t word_mask(unsigned w, unsigned lo, unsigned hi) {
  unsigned a = w * 64;
  uint64_t m = ~(uint64_t)0;
  if (lo > a) m &= ~neap__low_bits(lo - a);
  if (hi < a + 64) m &= neap__low_bits(hi - a);
  return m;
}

/* Length of the longest run of ones in f, by binary lifting: e[j] marks
 * where 2^j ones start, and the answer is built one bit at a time from the
 * top, keeping `at` = where runs of the length found so far start. */
static unsigned longest_ones(uint64_t f) {
  if (f == ~(uint64_t)0) return 64;
  uint64_t e[6];
  e[0] = f;
  for (unsigned j = 1; j < 6; j++) e[j] = e[j - 1] & (e[j - 1] >> (1u << (j - 1)));
  uint64_t at = ~(uint64_t)0;
  unsigned len = 0;
  for (unsigned j = 6; j-- > 0;) {
    uint64_t t = at & (e[j] >> len);
    if (t != 0) {
      at = t;
      len += 1u << j;
    }
  }
  return len;
}

/* Bits i of f such that bits [i, i+n) are all ones (1 <= n <= 64), runs
 * not crossing the word's top. Doubling: after each step f marks starts of
 * runs of `have` ones. */
NEAP_INLINE uint64_t runs_of(uint64_t f, unsigned n) {
  unsigned have = 1;
  while (have < n && f != 0) {
    unsigned s = have < n - have ? have : n - have;
    f &= f >> s;
    have += s;
  }
  return f;
}

/* The leaf summary of a chunk whose used bits are `used`. */
static uint64_t summarize(const uint64_t *used) {
  unsigned start = 0, end = 0, w;
  uint64_t all = ~(uint64_t)0;
  for (w = 0; w < PA_WORDS; w++) all &= used[w];
  if (all == ~(uint64_t)0) return 0;
  for (w = 0; w < PA_WORDS && used[w] == 0; w++) start += 64;
  if (w == PA_WORDS) return SUM_CHUNK_FREE;
  start += neap__ctz(used[w]);
  for (w = PA_WORDS; used[w - 1] == 0; w--) end += 64;
  end += neap__clz(used[w - 1]);
  unsigned best = start > end ? start : end, run = 0;
  for (w = 0; w < PA_WORDS; w++) {
    uint64_t x = used[w];
    if (x == 0) {
      run += 64;
      continue;
    }
    run += neap__ctz(x);
    if (run > best) best = run;
    /* Runs strictly between the lowest and highest used page of the word;
     * look only if that gap could beat the best so far. */
    unsigned lo = neap__ctz(x), hi = neap__highest_bit(x);
    if (hi - lo > best + 1 && ~x != 0) {
      unsigned m = longest_ones(~x & neap__low_bits(hi) & ~neap__low_bits(lo + 1));
      if (m > best) best = m;
    }
    run = neap__clz(x);
  }
  return sum_pack(start, best, end);
}

/* Merge 8 children, each covering `cover` pages, into their parent. A
 * child is never a root entry, so its fields are plain (no bit 63). */
static uint64_t merge(const uint64_t *child, uint64_t cover) {
  uint64_t start = 0, max = 0, end = 0;
  bool prefix_free = true;
#pragma GCC unroll 8
  for (unsigned i = 0; i < PA_FANOUT; i++) {
    uint64_t s = child[i];
    neap_assert_internal((s & SUM_ROOT_FREE) == 0);
    uint64_t st = s & SUM_FIELD, mx = (s >> SUM_BITS) & SUM_FIELD, en = (s >> (2 * SUM_BITS)) & SUM_FIELD;
    if (prefix_free) {
      start += st;
      prefix_free = st == cover;
    }
    if (end + st > max) max = end + st;
    if (mx > max) max = mx;
    end = st == cover ? end + cover : en;
  }
  return sum_pack(start, max, end);
}

#define PA_NOT_FOUND 0xffffu

/* First fit of n free pages inside one chunk, among pages >= from (pages
 * below count as used). Sets *first_free to the lowest free page >= from.
 * Returns the page within the chunk, or PA_NOT_FOUND. A run ending in this
 * chunk may start words earlier: `carry` counts the free pages just below
 * the word being looked at. */
static unsigned chunk_find(const uint64_t *used, uint64_t n, unsigned from, unsigned *first_free) {
  unsigned w = from >> 6;
  uint64_t x = used[w] | neap__low_bits(from & 63);
  if (n == 1) {
    for (;;) {
      if (~x != 0) return *first_free = w * 64 + neap__ctz(~x);
      if (++w == PA_WORDS) return PA_NOT_FOUND;
      x = used[w];
    }
  }
  unsigned ff = PA_NOT_FOUND;
  uint64_t carry = 0;
  for (;;) {
    if (ff == PA_NOT_FOUND && ~x != 0) ff = w * 64 + neap__ctz(~x);
    uint64_t low_free = x == 0 ? 64 : neap__ctz(x);
    if (carry + low_free >= n) {
      *first_free = ff;
      return w * 64 - (unsigned)carry;
    }
    if (x == 0) {
      carry += 64;
    } else {
      if (n <= 64) {
        uint64_t g = runs_of(~x, (unsigned)n);
        if (g != 0) {
          *first_free = ff;
          return w * 64 + neap__ctz(g);
        }
      }
      carry = neap__clz(x);
    }
    if (++w == PA_WORDS) return PA_NOT_FOUND;
    x = used[w];
  }
}

/* --- commit bookkeeping */

NEAP_INLINE bool region_ready(const neap_pagealloc *pa, size_t off) {
  return neap__bits_get(pa->committed, off >> pa->granule_shift);
}

/* Commit granules [g0, g1] of `base` that `ready` does not list yet, in
 * runs. On failure the granules committed so far stay committed and
 * recorded: that is invisible to callers. */
static int commit_granules(unsigned char *base, uint64_t *ready, uint64_t g0, uint64_t g1,
                           unsigned shift, uint64_t *mapped) {
  uint64_t g = g0;
  while (g <= g1) {
    if (neap__bits_get(ready, g)) {
      g++;
      continue;
    }
    uint64_t e = g;
    while (e < g1 && !neap__bits_get(ready, e + 1)) e++;
    int err = neap__os_commit(base + (g << shift), (size_t)(e - g + 1) << shift);
    if (err != 0) return ENOMEM;
    *mapped += (e - g + 1) << shift;
    for (; g <= e; g++) neap__bits_set(ready, g);
  }
  return 0;
}

static int region_commit(neap_pagealloc *pa, size_t off, size_t len) {
  return commit_granules(pa->region, pa->committed, off >> pa->granule_shift,
                         (off + len - 1) >> pa->granule_shift, pa->granule_shift, &pa->mapped);
}

static size_t block_bytes(const neap_pagealloc *pa) {
  size_t g = (size_t)1 << pa->granule_shift;
  return PA_BLOCK_BYTES > g ? PA_BLOCK_BYTES : g;
}

/* Reserve and commit the bitmaps of chunks [c0, c1). */
static int chunks_commit(neap_pagealloc *pa, uint64_t c0, uint64_t c1) {
  for (uint64_t b = c0 >> PA_BLOCK_SHIFT; b <= (c1 - 1) >> PA_BLOCK_SHIFT; b++) {
    pa_dirent *d = &pa->dir[b];
    if (d->block == NULL) {
      void *p;
      if (neap__os_reserve(NULL, block_bytes(pa), &p) != 0) return ENOMEM;
      neap__os_name(p, block_bytes(pa), "neap-meta");
      d->block = p;
    }
    uint64_t first = b << PA_BLOCK_SHIFT;
    uint64_t lo = (c0 > first ? c0 : first) - first;
    uint64_t hi = (c1 < first + PA_BLOCK_CHUNKS ? c1 : first + PA_BLOCK_CHUNKS) - first;
    size_t off0 = lo * sizeof(pa_chunk), off1 = hi * sizeof(pa_chunk);
    int err = commit_granules((unsigned char *)d->block, &d->ready, off0 >> pa->granule_shift,
                              (off1 - 1) >> pa->granule_shift, pa->granule_shift, &pa->mapped);
    if (err != 0) return err;
  }
  return 0;
}

/* --- per-chunk state */

NEAP_INLINE pa_chunk *chunk_of(const neap_pagealloc *pa, uint64_t c) {
  return &pa->dir[c >> PA_BLOCK_SHIFT].block[c & (PA_BLOCK_CHUNKS - 1)];
}

static bool chunk_grown(const neap_pagealloc *pa, uint64_t c) {
  return c < pa->end_chunk && region_ready(pa, OFF_GROWN + (c >> 6) * 8) && neap__bits_get(pa->grown, c);
}

/* The dirty bits: dirty[1] says which words of dirty[0] are non-zero, and
 * dirty[2] which words of dirty[1]; so a word of dirty[0] is read only when
 * it is non-zero, and then it is committed. */
static bool dirty_get(const neap_pagealloc *pa, uint64_t c) {
  uint64_t w0 = c >> 6;
  return neap__bits_get(pa->dirty[1], w0) && neap__bits_get(pa->dirty[0], c);
}

static void dirty_set(neap_pagealloc *pa, uint64_t c, bool on) {
  uint64_t i = c;
  for (unsigned l = 0; l < 3; l++) {
    uint64_t *w = &pa->dirty[l][i >> 6], old = *w, bit = (uint64_t)1 << (i & 63);
    uint64_t now = on ? old | bit : old & ~bit;
    *w = now;
    if ((old == 0) == (now == 0)) return; /* the level above does not change */
    i >>= 6;
  }
}

static void dirty_update(neap_pagealloc *pa, uint64_t c, const pa_chunk *ch) {
  uint64_t d = 0;
  for (unsigned w = 0; w < PA_WORDS; w++) d |= ~ch->used[w] & ~ch->scav[w];
  dirty_set(pa, c, d != 0);
}

/* The highest dirty chunk below c, or NEAP_PA_FAIL: at most one word at
 * each level, plus up to 4 words at the top. */
static uint64_t dirty_prev(const neap_pagealloc *pa, uint64_t c) {
  const uint64_t *d0 = pa->dirty[0], *d1 = pa->dirty[1], *d2 = pa->dirty[2];
  uint64_t w0 = c >> 6, w1 = w0 >> 6, w2 = w1 >> 6, x;
  if (neap__bits_get(d1, w0)) {
    x = d0[w0] & neap__low_bits(c & 63);
    if (x != 0) return (w0 << 6) + neap__highest_bit(x);
  }
  x = d1[w1] & neap__low_bits(w0 & 63);
  if (x == 0) {
    x = d2[w2] & neap__low_bits(w1 & 63);
    while (x == 0) {
      if (w2 == 0) return NEAP_PA_FAIL;
      x = d2[--w2];
    }
    w1 = (w2 << 6) + neap__highest_bit(x);
    x = d1[w1];
  }
  w0 = (w1 << 6) + neap__highest_bit(x);
  return (w0 << 6) + neap__highest_bit(d0[w0]);
}

/* Merge upward from leaf entries [lo, hi] while anything changes. */
static void propagate(neap_pagealloc *pa, uint64_t lo, uint64_t hi) {
  for (unsigned l = PA_LEAF; l-- > 0;) {
    lo >>= PA_LEVEL_BITS;
    hi >>= PA_LEVEL_BITS;
    const uint64_t *child = pa->sum[l + 1];
    uint64_t cover = (uint64_t)1 << PA_LEVEL_SHIFT(l + 1);
    bool changed = false;
    for (uint64_t k = lo; k <= hi; k++) {
      uint64_t v = merge(child + k * PA_FANOUT, cover);
      if (v != pa->sum[l][k]) {
        pa->sum[l][k] = v;
        changed = true;
      }
    }
    if (!changed) return;
  }
}

/* Whether [base, base+n) is non-empty and below end_chunk (no overflow). */
NEAP_INLINE bool range_in_grown_span(const neap_pagealloc *pa, uint64_t base, uint64_t n) {
  uint64_t end = pa->end_chunk << PA_CHUNK_SHIFT;
  return n >= 1 && base < end && n <= end - base;
}

/* Page range [base, base+n) as chunk-local bounds, chunk by chunk. */
#define FOR_EACH_CHUNK(base, n, c, lo, hi)                                                    \
  for (uint64_t c = (base) >> PA_CHUNK_SHIFT, c##_last = ((base) + (n)-1) >> PA_CHUNK_SHIFT; \
       c <= c##_last; c++)                                                                     \
    for (unsigned lo = c == (base) >> PA_CHUNK_SHIFT ? (unsigned)((base)&PA_CHUNK_MASK) : 0,  \
                  hi = c == c##_last ? (unsigned)(((base) + (n)-1) & PA_CHUNK_MASK) + 1       \
                                     : NEAP_CHUNK_PAGES,                                       \
                  lo##_once = 1;                                                               \
         lo##_once; lo##_once = 0)

/* Mark [base, base+n) in use; returns how many were scavenged. */
static uint64_t alloc_range(neap_pagealloc *pa, uint64_t base, uint64_t n) {
  uint64_t scav = 0;
  bool changed = false;
  FOR_EACH_CHUNK(base, n, c, lo, hi) {
    pa_chunk *ch = chunk_of(pa, c);
    for (unsigned w = lo >> 6; w <= (hi - 1) >> 6; w++) {
      uint64_t m = word_mask(w, lo, hi);
      neap_assert_internal((ch->used[w] & m) == 0);
      if ((ch->scav[w] & m) != 0) { /* popcount may be a call without -mpopcnt */
        scav += neap__popcount(ch->scav[w] & m);
        ch->scav[w] &= ~m;
      }
      ch->used[w] |= m;
    }
    uint64_t s = lo == 0 && hi == NEAP_CHUNK_PAGES ? 0 : summarize(ch->used);
    if (s != pa->sum[PA_LEAF][c]) {
      pa->sum[PA_LEAF][c] = s;
      changed = true;
    }
    dirty_update(pa, c, ch);
  }
  pa->pages_free -= n;
  pa->pages_scav -= scav;
  if (changed) propagate(pa, base >> PA_CHUNK_SHIFT, (base + n - 1) >> PA_CHUNK_SHIFT);
  return scav;
}

/* Whether every page of [base, base+n) is grown and free. O(n/64). */
static bool range_free(const neap_pagealloc *pa, uint64_t base, uint64_t n) {
  FOR_EACH_CHUNK(base, n, c, lo, hi) {
    if (!chunk_grown(pa, c)) return false;
    const pa_chunk *ch = chunk_of(pa, c);
    for (unsigned w = lo >> 6; w <= (hi - 1) >> 6; w++)
      if ((ch->used[w] & word_mask(w, lo, hi)) != 0) return false;
  }
  return true;
}

/* The lowest-indexed run of n free pages, by a walk down the summaries
 * (see the essay). Sets *first_free to a page such that no page in
 * [hint, *first_free) is free: the first non-empty entry at each level
 * bounds it, exactly while the walk descends through those entries. */
static uint64_t pa_find(const neap_pagealloc *pa, uint64_t n, uint64_t *first_free) {
  const uint64_t hint = pa->hint;
  uint64_t ff = NEAP_PA_FAIL, lo = 0;
  uint64_t hi = (pa->end_chunk + (PA_CHUNKS / PA_LEVEL_ENTRIES(0)) - 1) >> (PA_LEVEL_BITS * PA_LEAF);
  bool refine = true;
  for (unsigned l = 0;; l++) {
    const unsigned shift = PA_LEVEL_SHIFT(l);
    const uint64_t cover = (uint64_t)1 << shift, *sum = pa->sum[l];
    uint64_t k = hint >> shift > lo ? hint >> shift : lo;
    uint64_t size = 0, base = 0, first = NEAP_PA_FAIL;
    for (; k < hi; k++) {
      uint64_t s = sum[k];
      if (s == 0) {
        size = 0;
        continue;
      }
      if (first == NEAP_PA_FAIL) {
        first = k;
        if (refine) ff = k << shift > hint ? k << shift : hint;
      }
      uint64_t st = sum_start(s);
      if (size + st >= n) { /* the run ends in this entry */
        if (size == 0) base = k << shift;
        *first_free = ff;
        return base;
      }
      if (sum_max(s) >= n) break; /* the first fit is inside this entry */
      if (st == cover) {
        if (size == 0) base = k << shift;
        size += cover;
      } else {
        size = sum_end(s);
        base = ((k + 1) << shift) - size;
      }
    }
    if (k == hi) {
      if (l == 0) return NEAP_PA_FAIL;
      neap__fatal("pagealloc: summary promises pages its children lack", NULL);
    }
    refine = refine && k == first;
    if (l == PA_LEAF) {
      uint64_t from = k == hint >> PA_CHUNK_SHIFT ? hint & PA_CHUNK_MASK : 0;
      unsigned ffi, i = chunk_find(chunk_of(pa, k)->used, n, (unsigned)from, &ffi);
      if (i == PA_NOT_FOUND) neap__fatal("pagealloc: leaf summary disagrees with its bitmap", NULL);
      if (refine) ff = (k << PA_CHUNK_SHIFT) + ffi;
      *first_free = ff;
      return (k << PA_CHUNK_SHIFT) + i;
    }
    lo = k << PA_LEVEL_BITS;
    hi = lo + PA_FANOUT;
  }
}

/* --- the interface */

int neap__pa_init(neap_pagealloc *pa) {
  size_t ps = neap__os_page_size();
  if (!neap__is_pow2(ps)) return EINVAL;
  unsigned shift = PA_MIN_GRANULE_SHIFT;
  while (((size_t)1 << shift) < ps) shift++;
  size_t size = neap__align_up(OFF_END, (uintptr_t)1 << shift);
  void *p;
  if (neap__os_reserve(NULL, size, &p) != 0) return ENOMEM;
  neap__os_name(p, size, "neap-meta");
  memset(pa, 0, sizeof *pa);
  pa->region = p;
  pa->region_size = size;
  pa->granule_shift = shift;
  if (region_commit(pa, 0, OFF_LAZY) != 0) {
    neap__os_unmap(p, size);
    memset(pa, 0, sizeof *pa);
    return ENOMEM;
  }
  pa->dir = (pa_dirent *)(void *)(pa->region + OFF_DIR);
  for (unsigned l = 0; l < PA_LEVELS; l++) pa->sum[l] = (uint64_t *)(void *)(pa->region + off_sum[l]);
  pa->grown = (uint64_t *)(void *)(pa->region + OFF_GROWN);
  pa->dirty[0] = (uint64_t *)(void *)(pa->region + OFF_DIRTY0);
  pa->dirty[1] = (uint64_t *)(void *)(pa->region + OFF_DIRTY1);
  pa->dirty[2] = (uint64_t *)(void *)(pa->region + OFF_DIRTY2);
  return 0;
}

void neap__pa_destroy(neap_pagealloc *pa) {
  if (pa->region != NULL) {
    for (uint64_t b = 0; b < PA_DIR_ENTRIES; b++)
      if (pa->dir[b].block != NULL) neap__os_unmap(pa->dir[b].block, block_bytes(pa));
    neap__os_unmap(pa->region, pa->region_size);
  }
  memset(pa, 0, sizeof *pa);
}

int neap__pa_grow(neap_pagealloc *pa, uint64_t base, uint64_t npages) {
  bool args_ok = npages != 0 && (base & PA_CHUNK_MASK) == 0 && (npages & PA_CHUNK_MASK) == 0 &&
                 base < NEAP_MAX_PAGES && npages <= NEAP_MAX_PAGES - base;
  neap_assert(args_ok);
  if (!args_ok) return EINVAL;
  if (pa->region == NULL) {
    int err = neap__pa_init(pa);
    if (err != 0) return err;
  }
  uint64_t c0 = base >> PA_CHUNK_SHIFT, c1 = c0 + (npages >> PA_CHUNK_SHIFT);
  for (uint64_t c = c0; c < c1 && c < pa->end_chunk; c++) {
    neap_assert(!chunk_grown(pa, c));
    if (chunk_grown(pa, c)) return EINVAL;
  }

  /* First make every byte the new chunks need ready; only then change
   * anything, so that a failed commit leaves the allocator as it was. */
  for (unsigned l = 0; l < PA_LEVELS; l++) {
    unsigned down = PA_LEVEL_BITS * (PA_LEAF - l);
    uint64_t k0 = c0 >> down, k1 = (c1 - 1) >> down;
    if (region_commit(pa, off_sum[l] + k0 * 8, (k1 - k0 + 1) * 8) != 0) return ENOMEM;
  }
  size_t wbytes = (((c1 - 1) >> 6) - (c0 >> 6) + 1) * 8;
  if (region_commit(pa, OFF_GROWN + (c0 >> 6) * 8, wbytes) != 0) return ENOMEM;
  if (region_commit(pa, OFF_DIRTY0 + (c0 >> 6) * 8, wbytes) != 0) return ENOMEM;
  if (chunks_commit(pa, c0, c1) != 0) return ENOMEM;

  for (uint64_t c = c0; c < c1; c++) {
    pa_chunk *ch = chunk_of(pa, c);
    for (unsigned w = 0; w < PA_WORDS; w++) {
      ch->used[w] = 0;
      ch->scav[w] = ~(uint64_t)0;
    }
    neap__bits_set(pa->grown, c);
    pa->sum[PA_LEAF][c] = SUM_CHUNK_FREE;
  }
  propagate(pa, c0, c1 - 1);
  pa->pages_grown += npages;
  pa->pages_free += npages;
  pa->pages_scav += npages;
  if (c1 > pa->end_chunk) pa->end_chunk = c1;
  if (base < pa->hint) pa->hint = base;
  neap_assert_expensive(neap__pa_check(pa));
  return 0;
}

uint64_t neap__pa_alloc(neap_pagealloc *pa, uint64_t npages, uint64_t *nscav) {
  if (nscav != NULL) *nscav = 0;
  neap_assert(npages >= 1);
  if (NEAP_UNLIKELY(npages == 0 || npages > pa->pages_free)) return NEAP_PA_FAIL;
  const uint64_t h = pa->hint, c = h >> PA_CHUNK_SHIFT;
  uint64_t at, ff;
  if (npages <= NEAP_CHUNK_PAGES - (h & PA_CHUNK_MASK) && c < pa->end_chunk &&
      region_ready(pa, OFF_SUM4 + c * 8) && sum_max(pa->sum[PA_LEAF][c]) >= npages) {
    /* Fast path: nothing below the hint is free, so the first fit is in
     * the hint's chunk, at or after the hint. */
    unsigned ffi, i = chunk_find(chunk_of(pa, c)->used, npages, (unsigned)(h & PA_CHUNK_MASK), &ffi);
    neap_assert_internal(i != PA_NOT_FOUND);
    at = (c << PA_CHUNK_SHIFT) + i;
    ff = (c << PA_CHUNK_SHIFT) + ffi;
  } else {
    at = pa_find(pa, npages, &ff);
    if (at == NEAP_PA_FAIL) return NEAP_PA_FAIL;
  }
  uint64_t scav = alloc_range(pa, at, npages);
  /* ff is the lowest free page at or above the hint; if the run started
   * there, everything up to its end is now in use. */
  pa->hint = ff == at ? at + npages : ff;
  if (nscav != NULL) *nscav = scav;
  neap_assert_expensive(neap__pa_check(pa));
  return at;
}

bool neap__pa_alloc_at(neap_pagealloc *pa, uint64_t base, uint64_t npages, uint64_t *nscav) {
  if (nscav != NULL) *nscav = 0;
  neap_assert(npages >= 1);
  if (!range_in_grown_span(pa, base, npages) || !range_free(pa, base, npages)) return false;
  uint64_t scav = alloc_range(pa, base, npages);
  if (base <= pa->hint && pa->hint < base + npages) pa->hint = base + npages;
  if (nscav != NULL) *nscav = scav;
  neap_assert_expensive(neap__pa_check(pa));
  return true;
}

void neap__pa_free(neap_pagealloc *pa, uint64_t base, uint64_t npages) {
  neap_assert(range_in_grown_span(pa, base, npages));
  if (npages == 0) return;
  bool changed = false;
  FOR_EACH_CHUNK(base, npages, c, lo, hi) {
    neap_assert_internal(chunk_grown(pa, c));
    pa_chunk *ch = chunk_of(pa, c);
    for (unsigned w = lo >> 6; w <= (hi - 1) >> 6; w++) {
      uint64_t m = word_mask(w, lo, hi);
      neap_assert((ch->used[w] & m) == m);
      neap_assert_internal((ch->scav[w] & m) == 0);
      ch->used[w] &= ~m;
    }
    uint64_t s = lo == 0 && hi == NEAP_CHUNK_PAGES ? SUM_CHUNK_FREE : summarize(ch->used);
    if (s != pa->sum[PA_LEAF][c]) {
      pa->sum[PA_LEAF][c] = s;
      changed = true;
    }
    dirty_set(pa, c, true);
  }
  pa->pages_free += npages;
  if (changed) propagate(pa, base >> PA_CHUNK_SHIFT, (base + npages - 1) >> PA_CHUNK_SHIFT);
  if (base < pa->hint) pa->hint = base;
  neap_assert_expensive(neap__pa_check(pa));
}

/* Highest page below `lim` (1..512) of a chunk that is free and not
 * scavenged, or PA_NOT_FOUND. */
static unsigned chunk_dirty_top(const pa_chunk *ch, unsigned lim) {
  for (unsigned w = ((lim - 1) >> 6) + 1; w-- > 0;) {
    uint64_t d = ~ch->used[w] & ~ch->scav[w] & neap__low_bits(lim - w * 64);
    if (d != 0) return w * 64 + neap__highest_bit(d);
  }
  return PA_NOT_FOUND;
}

/* Cost: finding the chunk is O(1) (the dirty bits, at most a few words per
 * level); inside a chunk at most 8 words; extending the run costs one word
 * per 64 pages of it. Fully used and fully scavenged chunks are never
 * looked at. */
uint64_t neap__pa_find_unscavenged(const neap_pagealloc *pa, uint64_t below, uint64_t maxpages,
                                   uint64_t *npages) {
  uint64_t dummy;
  if (npages == NULL) npages = &dummy;
  *npages = 0;
  uint64_t end = pa->end_chunk << PA_CHUNK_SHIFT;
  if (below > end) below = end;
  if (below == 0 || maxpages == 0 || pa->pages_free == pa->pages_scav) return NEAP_PA_FAIL;
  uint64_t c = (below - 1) >> PA_CHUNK_SHIFT;
  unsigned top = PA_NOT_FOUND;
  if (dirty_get(pa, c)) top = chunk_dirty_top(chunk_of(pa, c), (unsigned)(below - (c << PA_CHUNK_SHIFT)));
  if (top == PA_NOT_FOUND) {
    c = dirty_prev(pa, c);
    if (c == NEAP_PA_FAIL) return NEAP_PA_FAIL;
    top = chunk_dirty_top(chunk_of(pa, c), NEAP_CHUNK_PAGES);
    neap_assert_internal(top != PA_NOT_FOUND);
  }
  /* Extend the run downward from `top`, word by word, chunk by chunk. */
  uint64_t last = (c << PA_CHUNK_SHIFT) + top, len = 0;
  unsigned i = top;
  for (;;) {
    const pa_chunk *ch = chunk_of(pa, c);
    unsigned w = i >> 6, b = i & 63;
    uint64_t notd = (ch->used[w] | ch->scav[w]) << (63 - b); /* not dirty; bit b at the top */
    uint64_t k = notd == 0 ? b + 1 : neap__clz(notd);
    if (k > maxpages - len) k = maxpages - len;
    len += k;
    if (k < b + 1 || len == maxpages) break;
    if (w > 0) {
      i = w * 64 - 1;
    } else {
      if (c == 0 || !dirty_get(pa, c - 1)) break;
      c--;
      i = NEAP_CHUNK_PAGES - 1;
    }
  }
  *npages = len;
  return last + 1 - len;
}

void neap__pa_mark_scavenged(neap_pagealloc *pa, uint64_t base, uint64_t npages) {
  neap_assert(range_in_grown_span(pa, base, npages));
  if (npages == 0) return;
  uint64_t added = 0;
  FOR_EACH_CHUNK(base, npages, c, lo, hi) {
    neap_assert_internal(chunk_grown(pa, c));
    pa_chunk *ch = chunk_of(pa, c);
    for (unsigned w = lo >> 6; w <= (hi - 1) >> 6; w++) {
      uint64_t m = word_mask(w, lo, hi);
      neap_assert((ch->used[w] & m) == 0);
      added += neap__popcount(m & ~ch->scav[w]);
      ch->scav[w] |= m;
    }
    dirty_update(pa, c, ch);
  }
  pa->pages_scav += added;
  neap_assert_expensive(neap__pa_check(pa));
}

uint64_t neap__pa_count_scavenged(const neap_pagealloc *pa, uint64_t base, uint64_t npages) {
  uint64_t end = pa->end_chunk << PA_CHUNK_SHIFT, n = 0;
  if (npages == 0 || base >= end) return 0;
  if (npages > end - base) npages = end - base;
  FOR_EACH_CHUNK(base, npages, c, lo, hi) {
    if (!chunk_grown(pa, c)) continue;
    const pa_chunk *ch = chunk_of(pa, c);
    for (unsigned w = lo >> 6; w <= (hi - 1) >> 6; w++)
      n += neap__popcount(ch->scav[w] & ~ch->used[w] & word_mask(w, lo, hi));
  }
  return n;
}

bool neap__pa_is_free(const neap_pagealloc *pa, uint64_t page) {
  uint64_t c = page >> PA_CHUNK_SHIFT;
  return chunk_grown(pa, c) && !neap__bits_get(chunk_of(pa, c)->used, page & PA_CHUNK_MASK);
}

neap_pa_page neap__pa_page_state(const neap_pagealloc *pa, uint64_t page) {
  uint64_t c = page >> PA_CHUNK_SHIFT;
  if (page >= NEAP_MAX_PAGES || !chunk_grown(pa, c)) return NEAP_PA_NOT_GROWN;
  const pa_chunk *ch = chunk_of(pa, c);
  if (neap__bits_get(ch->used, page & PA_CHUNK_MASK)) return NEAP_PA_INUSE;
  return neap__bits_get(ch->scav, page & PA_CHUNK_MASK) ? NEAP_PA_SCAVENGED : NEAP_PA_FREE;
}

uint64_t neap__pa_pages_grown(const neap_pagealloc *pa) { return pa->pages_grown; }
uint64_t neap__pa_pages_free(const neap_pagealloc *pa) { return pa->pages_free; }
uint64_t neap__pa_pages_scavenged(const neap_pagealloc *pa) { return pa->pages_scav; }
uint64_t neap__pa_mapped_bytes(const neap_pagealloc *pa) { return pa->mapped; }

/* --- the whole-structure check */

/* A summary as stored, or 0 where its granule was never committed (no
 * grown chunk under it). */
static uint64_t sum_read(const neap_pagealloc *pa, unsigned l, uint64_t k) {
  return region_ready(pa, off_sum[l] + k * 8) ? pa->sum[l][k] : 0;
}

/* Whether every committed word of the region in [off, end) is zero,
 * skipping granules never committed. */
static bool region_zero(const neap_pagealloc *pa, size_t off, size_t end) {
  uint64_t any = 0;
  const unsigned shift = pa->granule_shift;
  while (off < end) {
    uint64_t g = off >> shift, bits = pa->committed[g >> 6] >> (g & 63);
    if (bits == 0) { /* skip to the next word of the commit bitmap */
      off = (size_t)((g | 63) + 1) << shift;
      continue;
    }
    g += neap__ctz(bits);
    size_t from = (size_t)g << shift;
    if (from > off) off = from;
    if (off >= end) break;
    size_t next = (size_t)(g + 1) << shift;
    if (next > end) next = end;
    const uint64_t *p = (const uint64_t *)(const void *)(pa->region + off);
    size_t n = (next - off) / 8, i = 0;
    for (; i + 4 <= n; i += 4) any |= p[i] | p[i + 1] | p[i + 2] | p[i + 3];
    for (; i < n; i++) any |= p[i];
    off = next;
  }
  return any == 0;
}

/* The first page >= p of a chunk whose used bit is `used_bit`, or 512. */
static unsigned next_page(const uint64_t *used, unsigned p, bool used_bit) {
  while (p < NEAP_CHUNK_PAGES) {
    uint64_t x = used_bit ? used[p >> 6] : ~used[p >> 6];
    x >>= p & 63;
    if (x != 0) return p + neap__ctz(x);
    p = (p | 63) + 1;
  }
  return NEAP_CHUNK_PAGES;
}

/* A leaf summary computed another way than summarize(), so that the check
 * does not share its mistakes: walk the free runs one by one. */
static uint64_t summarize_by_runs(const uint64_t *used) {
  unsigned start = 0, max = 0, end = 0, p = 0;
  for (;;) {
    unsigned s = next_page(used, p, false);
    if (s == NEAP_CHUNK_PAGES) break;
    unsigned e = next_page(used, s, true);
    if (s == 0) start = e;
    if (e == NEAP_CHUNK_PAGES) end = e - s;
    if (e - s > max) max = e - s;
    p = e;
  }
  return sum_pack(start, max, end);
}

/* One grown chunk: its bitmaps against its leaf summary, its dirty bit and
 * the hint; adds its pages to the totals. */
static bool check_chunk(const neap_pagealloc *pa, uint64_t c, uint64_t *nfree, uint64_t *scav) {
  const pa_dirent *d = &pa->dir[c >> PA_BLOCK_SHIFT];
  size_t off = (c & (PA_BLOCK_CHUNKS - 1)) * sizeof(pa_chunk);
  if (d->block == NULL || !((d->ready >> (off >> pa->granule_shift)) & 1)) return false;
  const pa_chunk *ch = chunk_of(pa, c);
  uint64_t dirty = 0, bad = 0;
  for (unsigned w = 0; w < PA_WORDS; w++) {
    bad |= ch->scav[w] & ch->used[w];
    dirty |= ~ch->used[w] & ~ch->scav[w];
    if (ch->used[w] != ~(uint64_t)0) *nfree += neap__popcount(~ch->used[w]);
    if (ch->scav[w] != 0) *scav += neap__popcount(ch->scav[w]);
    uint64_t page = (c << PA_CHUNK_SHIFT) + w * 64; /* nothing free below the hint */
    if (page < pa->hint)
      bad |= ~ch->used[w] & (pa->hint - page >= 64 ? ~(uint64_t)0 : neap__low_bits((unsigned)(pa->hint - page)));
  }
  return bad == 0 && pa->sum[PA_LEAF][c] == summarize_by_runs(ch->used) && dirty_get(pa, c) == (dirty != 0);
}

/* Every chunk below end_chunk, 64 at a time: grown ones in full, the
 * others must have a zero leaf summary and no dirty bit. */
static bool check_chunks(const neap_pagealloc *pa, uint64_t *grown, uint64_t *nfree, uint64_t *scav) {
  bool ok = true;
  for (uint64_t w = 0; w < (pa->end_chunk + 63) >> 6; w++) {
    uint64_t g = region_ready(pa, OFF_GROWN + w * 8) ? pa->grown[w] : 0;
    uint64_t d = neap__bits_get(pa->dirty[1], w) ? pa->dirty[0][w] : 0;
    ok &= (d & ~g) == 0;
    if (region_ready(pa, OFF_SUM4 + w * 64 * 8)) { /* 64 leaves share a granule */
      const uint64_t *leaf = pa->sum[PA_LEAF] + w * 64;
      uint64_t any = 0;
      if (g == 0)
        for (unsigned i = 0; i < 64; i += 4) any |= leaf[i] | leaf[i + 1] | leaf[i + 2] | leaf[i + 3];
      else
        for (uint64_t m = ~g; m != 0; m &= m - 1) any |= leaf[neap__ctz(m)];
      ok &= any == 0;
    } else {
      ok &= g == 0;
    }
    for (; g != 0; g &= g - 1) {
      ok &= check_chunk(pa, w * 64 + neap__ctz(g), nfree, scav);
      *grown += NEAP_CHUNK_PAGES;
    }
  }
  return ok;
}

bool neap__pa_check(const neap_pagealloc *pa) {
  if (pa->region == NULL)
    return pa->end_chunk == 0 && pa->pages_grown == 0 && pa->pages_free == 0 && pa->pages_scav == 0;
  uint64_t grown = 0, nfree = 0, scav = 0;
  bool ok = check_chunks(pa, &grown, &nfree, &scav);
  ok &= grown == pa->pages_grown && nfree == pa->pages_free && scav == pa->pages_scav;
  ok &= pa->end_chunk == 0 || chunk_grown(pa, pa->end_chunk - 1);

  /* No grown bit at or beyond end_chunk. */
  uint64_t gw = pa->end_chunk >> 6;
  if ((pa->end_chunk & 63) != 0) {
    ok &= (pa->grown[gw] & ~neap__low_bits((unsigned)(pa->end_chunk & 63))) == 0;
    gw++;
  }
  ok &= region_zero(pa, OFF_GROWN + gw * 8, OFF_GROWN + PA_CHUNKS / 8);

  /* Every summary above the leaves is the merge of its children, and is
   * zero past the grown range; leaf summaries past it are zero too. */
  static const uint64_t none[PA_FANOUT];
  for (unsigned l = 0; l < PA_LEVELS; l++) {
    unsigned down = PA_LEVEL_BITS * (PA_LEAF - l);
    uint64_t n = (pa->end_chunk + ((uint64_t)1 << down) - 1) >> down;
    if (l < PA_LEAF) {
      uint64_t cover = (uint64_t)1 << PA_LEVEL_SHIFT(l + 1);
      for (uint64_t k = 0; k < n; k++) {
        /* 8 children are one cache line, inside one granule */
        const uint64_t *child =
            region_ready(pa, off_sum[l + 1] + k * 64) ? pa->sum[l + 1] + k * PA_FANOUT : none;
        uint64_t any = 0;
        for (unsigned i = 0; i < PA_FANOUT; i++) any |= child[i];
        ok &= sum_read(pa, l, k) == (any == 0 ? 0 : merge(child, cover));
      }
    }
    ok &= region_zero(pa, off_sum[l] + n * 8, off_sum[l] + PA_LEVEL_ENTRIES(l) * 8);
  }

  /* The levels of the dirty bits agree with each other. */
  uint64_t nw0 = (pa->end_chunk + 63) >> 6;
  for (uint64_t w0 = 0; w0 < PA_CHUNKS / 64; w0++) {
    bool nonzero = w0 < nw0 && region_ready(pa, OFF_DIRTY0 + w0 * 8) && pa->dirty[0][w0] != 0;
    if (w0 >= nw0 && (w0 & 63) == 0 && pa->dirty[1][w0 >> 6] == 0) {
      w0 += 63; /* a whole word of dirty[1] is clear */
      continue;
    }
    ok &= neap__bits_get(pa->dirty[1], w0) == nonzero;
  }
  for (uint64_t w1 = 0; w1 < PA_CHUNKS / 64 / 64; w1++)
    ok &= neap__bits_get(pa->dirty[2], w1) == (pa->dirty[1][w1] != 0);
  return ok;
}
