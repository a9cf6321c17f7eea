/* fuzz_api: a differential fuzzer of neap's native API.
 *
 * A byte stream (libFuzzer's input, or driver.c's random stream) decodes
 * into operations on a table of slots: neap_malloc, neap_calloc
 * (overflowing products too), neap_realloc (grow, shrink, same size, to 0,
 * of NULL), neap_aligned_alloc and neap_posix_memalign (every power of two
 * up to 1 MiB, and invalid alignments), neap_free, neap_free_sized,
 * neap_free_aligned_sized, neap_usable_size, neap_release,
 * neap_thread_flush, bursts of one size allocated and freed in a row, and
 * blocks handed to another thread, which frees them there (or allocates
 * blocks for this one). Impossible requests (sizes past what any heap can
 * hold, bad alignments) go in among the good ones.
 *
 * A shadow model checks every answer:
 *   - each live block's requested size, alignment and contents: a pattern
 *     derived from its slot and a generation number, written in full when
 *     the block is made and verified before every free, realloc and hand
 *     over, and on touches;
 *   - calloc'd bytes are zero; usable size >= the size asked, and stable;
 *   - no two live blocks' usable ranges overlap (checked for every new
 *     block against the table, and over all threads' blocks, sorted, at
 *     every heap check);
 *   - realloc keeps the prefix, and a failed one leaves the block intact;
 *   - errno: ENOMEM or EINVAL exactly where neap.h says, and untouched by
 *     every call that succeeds (and by free), as posix_memalign's result;
 *   - neap__heap_check finds nothing wrong every N operations and at the
 *     end of every input.
 * Any finding prints one line "fuzz: <what> ..." and aborts, which
 * libFuzzer records as a crash with its input.
 *
 * Threads. The single-threaded engine (libFuzzer, and the driver with one
 * thread) hands blocks to a helper thread, synchronously, so runs stay
 * deterministic. The driver's multi-threaded mode runs one engine per
 * thread (4 by default) with a mailbox each: a block handed over goes to
 * another thread's mailbox, which frees it or adopts it into its table
 * (and may realloc it there); all threads meet at a barrier every N
 * operations, where one checks the heap and every block while the others
 * wait. This is the mode ThreadSanitizer runs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"
#include "internal.h"
#include "neap.h"

#define SLOTS 256         /* per table (single-threaded) */
#define MT_SLOTS 64       /* per thread (multi-threaded) */
#define MAX_THREADS 16
#define MAILBOX 64
#define LIVE_CAP ((size_t)64 << 20) /* live bytes per table: allocations past it are skipped */
#define SENTINEL 1234567  /* an errno no call sets */
#define ALIGN_MAX_LOG 20  /* alignments up to 1 MiB */
#define DEFAULT_CHECK_EVERY 20000

typedef struct block {
  unsigned char *p;
  size_t size, usable, align;
  uint64_t seed;
} block;

/* Where operations come from: an input, or a random stream. */
typedef struct source {
  const uint8_t *data;
  size_t len, pos;
  bool random;
  uint64_t rng, bits;
  unsigned nbits;
} source;

typedef struct engine {
  int id;
  block *slot;
  unsigned nslots;
  size_t live;
  uint64_t gen, ops, checks, check_every, next_check;
  source src;
} engine;

static atomic_int nthreads = 1; /* engines running (1: with the helper) */

/* --- findings */

__attribute__((noreturn)) static void fail(const engine *e, const char *what, const void *p, size_t n) {
  fprintf(stderr, "fuzz: %s (thread %d, operation %llu, block %p, size %zu)\n", what, e->id,
          (unsigned long long)e->ops, p, n);
  abort();
}

/* --- bytes */

static bool more(const source *s) { return s->random || s->pos < s->len; }

static uint8_t byte(source *s) {
  if (!s->random) return s->pos < s->len ? s->data[s->pos++] : 0;
  if (s->nbits == 0) {
    s->bits = fuzz_next(&s->rng);
    s->nbits = 64;
  }
  uint8_t b = (uint8_t)s->bits;
  s->bits >>= 8;
  s->nbits -= 8;
  return b;
}

/* Sizes: mostly small, some around the 32 KiB line where small objects
 * end, some large, and special values: 0, class edges, and requests no
 * heap can hold. */
static const size_t special_sizes[] = {
    0, 1, 8, 15, 16, 17, 24, 1023, 1024, 1025, 8192, 32767, 32768, 32769, 65536, (size_t)1 << 20,
    ((size_t)4 << 20) + 1, (size_t)8 << 20, NEAP_MAX_ALLOC + 1, SIZE_MAX, SIZE_MAX - 15, PTRDIFF_MAX,
    (size_t)1 << 63, NEAP_MAX_ALLOC * 2};
#define NSPECIAL (sizeof special_sizes / sizeof special_sizes[0])

static size_t read_size(source *s) {
  uint8_t b = byte(s);
  switch (b & 31) {
  case 16: case 17: case 18: case 19: case 20: case 21: return byte(s) | (size_t)(byte(s) & 3) << 8;
  case 22: case 23: case 24: case 25: case 26: return byte(s) | (size_t)(byte(s) & 0x7f) << 8;
  case 27: case 28: return 24576 + (byte(s) | (size_t)(byte(s) & 0x3f) << 8);
  case 29: /* large: up to 128 KiB, and one in eight up to 1 MiB */
    return byte(s) | (size_t)byte(s) << 8 | (size_t)(byte(s) & (b & 0xe0 ? 1 : 0x0f)) << 16;
  case 30: return special_sizes[byte(s) % NSPECIAL];
  case 31: return byte(s) & 63;
  default: return byte(s);
  }
}

static bool impossible(size_t n) { return n > NEAP_MAX_ALLOC; }

/* --- contents */

#define PAT_MUL 0x9e3779b97f4a7c15ull
static inline uint8_t pat_byte(uint64_t seed, size_t i) {
  return (uint8_t)((seed ^ ((uint64_t)(i >> 3) * PAT_MUL)) >> ((i & 7) * 8));
}

/* Bytes [from, to) of a block get its pattern (word by word where aligned). */
static void fill_range(unsigned char *p, size_t from, size_t to, uint64_t seed) {
  size_t i = from;
  for (; i < to && (i & 7); i++) p[i] = pat_byte(seed, i);
  for (; i + 8 <= to; i += 8) {
    uint64_t w = seed ^ ((uint64_t)(i >> 3) * PAT_MUL);
    memcpy(p + i, &w, 8);
  }
  for (; i < to; i++) p[i] = pat_byte(seed, i);
}

/* The first byte of [from, to) that is not the pattern, or `to`. */
static size_t first_bad_range(const unsigned char *p, size_t from, size_t to, uint64_t seed) {
  size_t i = from;
  for (; i < to && (i & 7); i++)
    if (p[i] != pat_byte(seed, i)) return i;
  for (; i + 8 <= to; i += 8) {
    uint64_t w, want = seed ^ ((uint64_t)(i >> 3) * PAT_MUL);
    memcpy(&w, p + i, 8);
    if (w != want) break;
  }
  for (; i < to; i++)
    if (p[i] != pat_byte(seed, i)) return i;
  return to;
}

/* What of a block of n bytes holds its pattern: all of a block up to
 * WHOLE bytes; of a larger one, the first and last EDGE bytes and SAMPLE
 * bytes of every page between (neap writes in a block only at its start,
 * where a free object's mark goes, and whole pages when it zeroes or
 * copies: a sample of each page finds those, and a large block costs a
 * fortieth of its size to fill and check). Region k of the block, false
 * past the last. */
#define WHOLE 8192
#define EDGE 4096
#define SAMPLE 96
static bool region(size_t n, size_t k, size_t *off, size_t *len) {
  if (n <= WHOLE) {
    *off = 0;
    *len = n;
    return k == 0;
  }
  size_t mid = (n - 2 * EDGE + EDGE - 1) / EDGE; /* pages between the edges */
  if (k == 0) *off = 0, *len = EDGE;
  else if (k <= mid) *off = k * EDGE, *len = SAMPLE;
  else if (k == mid + 1) *off = n - EDGE, *len = EDGE;
  else return false;
  if (*off + *len > n) *len = n - *off;
  return true;
}

/* The pattern into the block's regions that lie in [from, to). */
static void fill(unsigned char *p, size_t n, size_t from, size_t to, uint64_t seed) {
  size_t off, len;
  for (size_t k = 0; region(n, k, &off, &len); k++) {
    size_t a = off > from ? off : from, b = off + len < to ? off + len : to;
    if (a < b) fill_range(p, a, b, seed);
  }
}

/* The first byte of the regions in [0, upto) that is not the pattern, or
 * upto. */
static size_t first_bad(const unsigned char *p, size_t n, size_t upto, uint64_t seed) {
  size_t off, len;
  for (size_t k = 0; region(n, k, &off, &len); k++) {
    size_t b = off + len < upto ? off + len : upto;
    if (off < b) {
      size_t bad = first_bad_range(p, off, b, seed);
      if (bad != b) return bad;
    }
  }
  return upto;
}

static bool all_zero(const unsigned char *p, size_t n) {
  size_t i = 0;
  uint64_t any = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    any |= w;
  }
  for (; i < n; i++) any |= p[i];
  return any == 0;
}

static void verify(const engine *e, const block *b, const char *when) {
  size_t bad = first_bad(b->p, b->size, b->size, b->seed);
  if (bad != b->size) {
    char what[128];
    snprintf(what, sizeof what, "block's contents changed at byte %zu (seen %s)", bad, when);
    fail(e, what, b->p, b->size);
  }
}

/* --- the table */

static void check_errno_kept(const engine *e, const char *call, const void *p) {
  if (errno != SENTINEL) {
    char what[96];
    snprintf(what, sizeof what, "%s succeeded but changed errno to %d", call, errno);
    fail(e, what, p, 0);
  }
}

static void check_disjoint(const engine *e, const unsigned char *p, size_t usable, unsigned except) {
  for (unsigned i = 0; i < e->nslots; i++) {
    const block *b = &e->slot[i];
    if (i == except || b->p == NULL) continue;
    if (p < b->p + b->usable && b->p < p + usable) fail(e, "two live blocks overlap", p, usable);
  }
}

/* A new block in slot i (empty): checked, and filled with its pattern. */
static void adopt(engine *e, unsigned i, void *p, size_t size, size_t align, bool zero, const char *call) {
  if (((uintptr_t)p & ((align < NEAP_ALIGN ? NEAP_ALIGN : align) - 1)) != 0) fail(e, "block is misaligned", p, align);
  check_errno_kept(e, call, p);
  size_t usable = neap_usable_size(p);
  if (usable < size) fail(e, "usable size is below the size asked for", p, size);
  if (zero) { /* all of it up to 64 KiB; the pattern's regions beyond */
    size_t off, len;
    if (!all_zero(p, size < 65536 ? size : 65536)) fail(e, "calloc'd block is not zero", p, size);
    for (size_t k = 0; size > 65536 && region(size, k, &off, &len); k++)
      if (!all_zero((unsigned char *)p + off, len)) fail(e, "calloc'd block is not zero", (unsigned char *)p + off, size);
  }
  check_disjoint(e, p, usable, i);
  block *b = &e->slot[i];
  *b = (block){.p = p, .size = size, .usable = usable, .align = align,
               .seed = (++e->gen * PAT_MUL) ^ ((uint64_t)e->id << 56) ^ i};
  fill(b->p, size, 0, size, b->seed);
  e->live += size;
}

/* An allocation's NULL: right only for an impossible request, with ENOMEM. */
static void refused(engine *e, size_t size, const char *call) {
  if (!impossible(size)) fail(e, "allocation failed with room to spare", NULL, size);
  if (errno != ENOMEM) {
    char what[96];
    snprintf(what, sizeof what, "%s of an impossible size failed with errno %d, not ENOMEM", call, errno);
    fail(e, what, NULL, size);
  }
}

/* Whether a request fits under the table's live cap (impossible ones go
 * through: they must fail). */
static bool room_for(const engine *e, size_t size) { return impossible(size) || e->live + size <= LIVE_CAP; }

/* --- the helper thread (single-threaded engine): frees, allocates and
 * exits on request, one request at a time, the caller waiting. */

enum { H_NONE, H_FREE, H_ALLOC, H_FLUSH, H_EXIT };
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int req;
  void *p;
  size_t n;
  bool running;
  pthread_t t;
} helper = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *helper_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&helper.mu);
  for (;;) {
    while (helper.req == H_NONE) pthread_cond_wait(&helper.cv, &helper.mu);
    int req = helper.req;
    if (req == H_FREE) neap_free(helper.p);
    else if (req == H_ALLOC) helper.p = neap_malloc(helper.n);
    else if (req == H_FLUSH) neap_thread_flush();
    helper.req = H_NONE;
    pthread_cond_broadcast(&helper.cv);
    if (req == H_EXIT) break;
  }
  pthread_mutex_unlock(&helper.mu);
  return NULL; /* the thread's cache goes back as it exits */
}

static void *helper_call(int req, void *p, size_t n) {
  if (!helper.running) {
    if (req == H_EXIT) return NULL;
    if (pthread_create(&helper.t, NULL, helper_main, NULL) != 0) abort();
    helper.running = true;
  }
  pthread_mutex_lock(&helper.mu);
  helper.req = req;
  helper.p = p;
  helper.n = n;
  pthread_cond_broadcast(&helper.cv);
  while (helper.req != H_NONE) pthread_cond_wait(&helper.cv, &helper.mu);
  void *r = helper.p;
  pthread_mutex_unlock(&helper.mu);
  if (req == H_EXIT) {
    pthread_join(helper.t, NULL);
    helper.running = false;
  }
  return r;
}

/* --- the multi-threaded engines' mailboxes and barrier */

typedef struct mailbox {
  pthread_mutex_t mu;
  block b[MAILBOX];
  unsigned n;
} mailbox;
static mailbox mailboxes[MAX_THREADS];
static engine *engines[MAX_THREADS];

/* --- freeing */

enum { FREE_PLAIN, FREE_SIZED, FREE_ALIGNED_SIZED, FREE_REMOTE };

/* Hands a block to another thread: the helper frees it there (single), or
 * it goes to another engine's mailbox (multi). */
static void hand_over(engine *e, block b, unsigned to) {
  int n = atomic_load(&nthreads);
  if (n == 1) {
    errno = SENTINEL;
    helper_call(H_FREE, b.p, 0);
    return;
  }
  unsigned t = to % (unsigned)n;
  mailbox *m = &mailboxes[t];
  if (t != (unsigned)e->id) {
    pthread_mutex_lock(&m->mu);
    if (m->n < MAILBOX) {
      m->b[m->n++] = b;
      pthread_mutex_unlock(&m->mu);
      return;
    }
    pthread_mutex_unlock(&m->mu);
  }
  neap_free(b.p);
}

static void free_slot(engine *e, unsigned i, int how, unsigned arg) {
  block *b = &e->slot[i];
  if (b->p == NULL) return;
  verify(e, b, "before its free");
  block gone = *b;
  b->p = NULL;
  e->live -= gone.size;
  errno = SENTINEL;
  switch (how) {
  case FREE_SIZED: neap_free_sized(gone.p, gone.size); break;
  case FREE_ALIGNED_SIZED: neap_free_aligned_sized(gone.p, gone.align, gone.size); break;
  case FREE_REMOTE: hand_over(e, gone, arg); break;
  default: neap_free(gone.p); break;
  }
  check_errno_kept(e, "free", gone.p);
  e->ops++;
}

/* Blocks other threads handed to this one: freed here, or (when `keep`)
 * adopted into an empty slot (kept, touched and maybe realloc'd later). */
static void drain_mailbox(engine *e, bool keep) {
  mailbox *m = &mailboxes[e->id];
  block got[MAILBOX];
  pthread_mutex_lock(&m->mu);
  unsigned n = m->n;
  memcpy(got, m->b, n * sizeof got[0]);
  m->n = 0;
  pthread_mutex_unlock(&m->mu);
  for (unsigned k = 0; k < n; k++) {
    block *b = &got[k];
    verify(e, b, "by the thread it was handed to");
    unsigned i = (unsigned)(b->seed % e->nslots);
    if (keep && (b->seed >> 8) & 1 && e->slot[i].p == NULL && room_for(e, b->size)) {
      check_disjoint(e, b->p, b->usable, i);
      e->slot[i] = *b;
      e->live += b->size;
    } else {
      errno = SENTINEL;
      neap_free(b->p);
      check_errno_kept(e, "free", b->p);
      e->ops++;
    }
  }
}

/* --- the whole picture: every live block of every table, sorted, with
 * no overlap; and the heap checker. Called with the other threads still. */

static block all_blocks[MAX_THREADS * (SLOTS + MAILBOX)];

static int by_address(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)((const block *)a)->p, y = (uintptr_t)((const block *)b)->p;
  return x < y ? -1 : x > y;
}

static void check_everything(engine *e) {
  size_t n = 0;
  int threads = atomic_load(&nthreads);
  for (int t = 0; t < threads; t++) {
    engine *x = threads == 1 ? e : engines[t];
    for (unsigned i = 0; i < x->nslots; i++)
      if (x->slot[i].p != NULL) all_blocks[n++] = x->slot[i];
    if (threads > 1)
      for (unsigned k = 0; k < mailboxes[t].n; k++) all_blocks[n++] = mailboxes[t].b[k];
  }
  qsort(all_blocks, n, sizeof all_blocks[0], by_address);
  for (size_t k = 0; k + 1 < n; k++)
    if (all_blocks[k].p + all_blocks[k].usable > all_blocks[k + 1].p)
      fail(e, "two live blocks overlap (thread tables)", all_blocks[k + 1].p, all_blocks[k].usable);
  const char *m = neap__heap_check();
  if (m != NULL) fail(e, m, NULL, 0);
  e->checks++;
}

/* --- operations */

static unsigned read_slot(engine *e) { return byte(&e->src) % e->nslots; }

static size_t read_align(source *s) { return (size_t)1 << (byte(s) % (ALIGN_MAX_LOG + 1)); }

static const size_t bad_aligns[] = {0, 3, 6, 12, 24, 48, 100, 4097, (size_t)3 << 20, SIZE_MAX, (size_t)1 << 63,
                                    NEAP_MAX_ALLOC * 2};
#define NBAD_ALIGNS (sizeof bad_aligns / sizeof bad_aligns[0])

static void op_malloc(engine *e) {
  unsigned i = read_slot(e);
  size_t size = read_size(&e->src);
  free_slot(e, i, FREE_PLAIN, 0);
  if (!room_for(e, size)) return;
  errno = SENTINEL;
  void *p = neap_malloc(size);
  e->ops++;
  if (p == NULL) refused(e, size, "malloc");
  else adopt(e, i, p, size, NEAP_ALIGN, false, "malloc");
}

static void op_calloc(engine *e) {
  unsigned i = read_slot(e);
  uint8_t k = byte(&e->src);
  size_t n = k < 250 ? k % 64 : special_sizes[NSPECIAL - 1 - k % 6];
  size_t size = read_size(&e->src), total;
  bool overflow = __builtin_mul_overflow(n, size, &total);
  free_slot(e, i, FREE_PLAIN, 0);
  if (!overflow && !room_for(e, total)) return;
  errno = SENTINEL;
  void *p = neap_calloc(n, size);
  e->ops++;
  if (overflow) {
    if (p != NULL || errno != ENOMEM) fail(e, "calloc whose product overflows did not fail with ENOMEM", p, size);
    return;
  }
  if (p == NULL) refused(e, total, "calloc");
  else adopt(e, i, p, total, NEAP_ALIGN, true, "calloc");
}

static void op_realloc(engine *e) {
  unsigned i = read_slot(e);
  uint8_t how = byte(&e->src);
  size_t size = read_size(&e->src);
  block *b = &e->slot[i];
  if (how % 8 == 0 && b->p != NULL) size = b->size; /* the same size */
  if (how % 8 == 1) size = 0;
  if (b->p == NULL) { /* realloc(NULL, n) is malloc(n) */
    if (!room_for(e, size)) return;
    errno = SENTINEL;
    void *p = neap_realloc(NULL, size);
    e->ops++;
    if (p == NULL) refused(e, size, "realloc of NULL");
    else adopt(e, i, p, size, NEAP_ALIGN, false, "realloc of NULL");
    return;
  }
  verify(e, b, "before its realloc");
  if (size > b->size && !room_for(e, size - b->size)) return;
  errno = SENTINEL;
  void *p = neap_realloc(b->p, size);
  e->ops++;
  if (size == 0) { /* frees, returns NULL, errno untouched */
    if (p != NULL) fail(e, "realloc to 0 did not return NULL", p, 0);
    check_errno_kept(e, "realloc to 0", b->p);
    e->live -= b->size;
    b->p = NULL;
    return;
  }
  if (p == NULL) {
    refused(e, size, "realloc");
    verify(e, b, "after a failed realloc");
    if (neap_usable_size(b->p) != b->usable) fail(e, "failed realloc changed the block's usable size", b->p, size);
    return;
  }
  check_errno_kept(e, "realloc", p);
  if (((uintptr_t)p & (NEAP_ALIGN - 1)) != 0) fail(e, "realloc'd block is misaligned", p, size);
  size_t keep = size < b->size ? size : b->size;
  size_t bad = first_bad(p, b->size, keep, b->seed); /* the old block's regions, as far as they were kept */
  if (bad != keep) fail(e, "realloc lost the block's contents", p, bad);
  size_t usable = neap_usable_size(p);
  if (usable < size) fail(e, "usable size after realloc is below the size asked for", p, size);
  check_disjoint(e, p, usable, i);
  fill(p, size, 0, size, b->seed); /* the new size's regions: where both have one, the same bytes */
  e->live = e->live - b->size + size;
  b->p = p;
  b->size = size;
  b->usable = usable;
  if (((uintptr_t)p & (b->align - 1)) != 0) b->align = NEAP_ALIGN; /* realloc keeps 16 only */
}

static void op_aligned(engine *e, bool posix) {
  unsigned i = read_slot(e);
  uint8_t k = byte(&e->src);
  size_t align = k < 240 ? read_align(&e->src) : bad_aligns[k % NBAD_ALIGNS];
  size_t size = read_size(&e->src);
  free_slot(e, i, FREE_PLAIN, 0);
  if (!room_for(e, size)) return;
  bool valid = align != 0 && (align & (align - 1)) == 0 && (!posix || align >= sizeof(void *));
  errno = SENTINEL;
  void *p = (void *)(uintptr_t)0x1;
  if (posix) {
    int r = neap_posix_memalign(&p, align, size);
    e->ops++;
    check_errno_kept(e, "posix_memalign (errno)", NULL);
    if (!valid) {
      if (r != EINVAL || p != (void *)(uintptr_t)0x1) fail(e, "posix_memalign of a bad alignment did not give EINVAL", p, align);
      return;
    }
    if (impossible(size) || align > NEAP_MAX_ALLOC) {
      if (r != ENOMEM || p != (void *)(uintptr_t)0x1) fail(e, "impossible posix_memalign did not give ENOMEM", p, size);
      return;
    }
    if (r != 0) fail(e, "posix_memalign failed with room to spare", NULL, size);
    adopt(e, i, p, size, align, false, "posix_memalign");
    return;
  }
  p = neap_aligned_alloc(align, size);
  e->ops++;
  if (!valid) {
    if (p != NULL || errno != EINVAL) fail(e, "aligned_alloc of a bad alignment did not fail with EINVAL", p, align);
    return;
  }
  if (impossible(size) || align > NEAP_MAX_ALLOC) {
    if (p != NULL || errno != ENOMEM) fail(e, "impossible aligned_alloc did not fail with ENOMEM", p, size);
    return;
  }
  if (p == NULL) fail(e, "aligned_alloc failed with room to spare", NULL, size);
  adopt(e, i, p, size, align, false, "aligned_alloc");
}

static void op_touch(engine *e) {
  block *b = &e->slot[read_slot(e)];
  if (b->p == NULL) return;
  verify(e, b, "on a touch");
  errno = SENTINEL;
  size_t u = neap_usable_size(b->p);
  e->ops++;
  check_errno_kept(e, "usable_size", b->p);
  if (u != b->usable) fail(e, "usable size changed", b->p, u);
}

/* Allocate a run of one size into consecutive slots, and maybe free it
 * again at once, newest first or oldest first: the tight loops. */
static void op_burst(engine *e) {
  unsigned first = read_slot(e), n = 1 + byte(&e->src) % 64;
  uint8_t how = byte(&e->src);
  size_t size = read_size(&e->src);
  if (impossible(size) || size > (1u << 20)) size &= 0xffff;
  for (unsigned k = 0; k < n; k++) {
    unsigned i = (first + k) % e->nslots;
    free_slot(e, i, FREE_PLAIN, 0);
    if (!room_for(e, size)) break;
    errno = SENTINEL;
    void *p = neap_malloc(size);
    e->ops++;
    if (p == NULL) fail(e, "allocation failed with room to spare", NULL, size);
    adopt(e, i, p, size, NEAP_ALIGN, false, "malloc");
  }
  if (how % 3 == 0)
    for (unsigned k = n; k-- > 0;) free_slot(e, (first + k) % e->nslots, FREE_PLAIN, 0);
  else if (how % 3 == 1)
    for (unsigned k = 0; k < n; k++) free_slot(e, (first + k) % e->nslots, (how >> 2) & 1 ? FREE_SIZED : FREE_PLAIN, 0);
}

static void op_free_range(engine *e) {
  unsigned first = read_slot(e), n = byte(&e->src);
  for (unsigned k = 0; k < n; k++) free_slot(e, (first + k) % e->nslots, FREE_PLAIN, 0);
}

/* Requests that must fail, and the NULL cases. */
static void op_errors(engine *e) {
  uint8_t k = byte(&e->src);
  size_t huge = special_sizes[NSPECIAL - 1 - byte(&e->src) % 6];
  void *p;
  errno = SENTINEL;
  switch (k % 8) {
  case 0:
    p = neap_malloc(huge);
    if (p != NULL || errno != ENOMEM) fail(e, "impossible malloc did not fail with ENOMEM", p, huge);
    break;
  case 1:
    p = neap_calloc(huge, 2 + k);
    if (p != NULL || errno != ENOMEM) fail(e, "calloc of an impossible size did not fail with ENOMEM", p, huge);
    break;
  case 2:
    p = neap_aligned_alloc(bad_aligns[k % NBAD_ALIGNS], 64);
    if (bad_aligns[k % NBAD_ALIGNS] > NEAP_MAX_ALLOC && (bad_aligns[k % NBAD_ALIGNS] & (bad_aligns[k % NBAD_ALIGNS] - 1)) == 0) {
      if (p != NULL || errno != ENOMEM) fail(e, "aligned_alloc of an impossible alignment did not give ENOMEM", p, 0);
    } else if (p != NULL || errno != EINVAL) {
      fail(e, "aligned_alloc of a bad alignment did not fail with EINVAL", p, 0);
    }
    break;
  case 3: {
    void *out = &p;
    int r = neap_posix_memalign(&out, (size_t)(k % 8), 64); /* 0..7: all below sizeof(void *) */
    if (r != EINVAL || out != &p) fail(e, "posix_memalign below sizeof(void *) did not give EINVAL", out, 0);
    check_errno_kept(e, "posix_memalign", NULL);
    break;
  }
  case 4: {
    void *out = &p;
    int r = neap_posix_memalign(&out, 64, huge);
    if (r != ENOMEM || out != &p) fail(e, "impossible posix_memalign did not give ENOMEM", out, huge);
    check_errno_kept(e, "posix_memalign", NULL);
    break;
  }
  case 5: {
    block *b = &e->slot[read_slot(e)];
    if (b->p == NULL) break;
    p = neap_realloc(b->p, huge);
    if (p != NULL || errno != ENOMEM) fail(e, "impossible realloc did not fail with ENOMEM", p, huge);
    verify(e, b, "after an impossible realloc");
    break;
  }
  case 6:
    p = neap_aligned_alloc((size_t)1 << (k % 21), huge);
    if (p != NULL || errno != ENOMEM) fail(e, "impossible aligned_alloc did not fail with ENOMEM", p, huge);
    break;
  default:
    neap_free(NULL);
    neap_free_sized(NULL, 100);
    neap_free_aligned_sized(NULL, 64, 100);
    if (neap_usable_size(NULL) != 0) fail(e, "usable size of NULL is not 0", NULL, 0);
    check_errno_kept(e, "a call with NULL", NULL);
    break;
  }
  e->ops++;
}

static void op_remote(engine *e, bool alloc) {
  unsigned i = read_slot(e);
  uint8_t to = byte(&e->src);
  if (!alloc || atomic_load(&nthreads) > 1) {
    free_slot(e, i, FREE_REMOTE, to);
    return;
  }
  /* The helper allocates; this thread keeps the block (its later free is
   * a remote free into the helper's span). */
  size_t size = read_size(&e->src);
  if (impossible(size)) size &= 0xfff;
  free_slot(e, i, FREE_PLAIN, 0);
  if (!room_for(e, size)) return;
  errno = SENTINEL;
  void *p = helper_call(H_ALLOC, NULL, size);
  e->ops++;
  if (p == NULL) fail(e, "allocation on the helper thread failed", NULL, size);
  adopt(e, i, p, size, NEAP_ALIGN, false, "malloc on the helper thread");
}

/* One operation, chosen by a byte: mostly mallocs and frees, as programs
 * make them; the rarer calls less often by their cost (a hand-over is two
 * context switches; neap_release walks the whole heap). */
static void op_step(engine *e) {
  uint8_t op = byte(&e->src);
  bool single = atomic_load(&nthreads) == 1;
  switch (op % 64) {
  case 0 ... 16: op_malloc(e); break;
  case 17 ... 20: op_calloc(e); break;
  case 21 ... 26: op_realloc(e); break;
  case 27 ... 28: op_aligned(e, false); break;
  case 29: op_aligned(e, true); break;
  case 30 ... 46: free_slot(e, read_slot(e), FREE_PLAIN, 0); break;
  case 47 ... 48: free_slot(e, read_slot(e), FREE_SIZED, 0); break;
  case 49: free_slot(e, read_slot(e), FREE_ALIGNED_SIZED, 0); break;
  case 50 ... 52: op_touch(e); break;
  case 53: op_remote(e, false); break;
  case 54: op_remote(e, true); break;
  case 55: op_burst(e); break;
  case 56: op_free_range(e); break;
  case 57 ... 58: op_errors(e); break;
  case 59:
    neap_thread_flush();
    e->ops++;
    break;
  case 60:
    if (single) helper_call(byte(&e->src) & 1 ? H_EXIT : H_FLUSH, NULL, 0);
    else neap_thread_flush();
    e->ops++;
    break;
  case 61:
    if (byte(&e->src) < 8) { /* rare: it returns every free page */
      errno = SENTINEL;
      neap_release();
      check_errno_kept(e, "neap_release", NULL);
      e->ops++;
    }
    break;
  case 62: op_remote(e, false); break;
  default: /* in an input: a heap check (random runs check every N operations) */
    if (!e->src.random && byte(&e->src) < 64) check_everything(e);
    break;
  }
}

static void free_all(engine *e) {
  for (unsigned i = 0; i < e->nslots; i++) free_slot(e, i, FREE_PLAIN, 0);
}

/* --- libFuzzer: one input, one run of the single-threaded engine, which
 * frees everything at the end and checks the heap. */

static block table[SLOTS];

/* Operations over all inputs, said at exit (libFuzzer's own statistics
 * count inputs). */
static uint64_t input_ops, inputs;
__attribute__((destructor)) static void say_ops(void) {
  if (inputs != 0) fprintf(stderr, "fuzz_api: %llu inputs, %llu operations\n", (unsigned long long)inputs,
                           (unsigned long long)input_ops);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static engine e;
  e.slot = table;
  e.nslots = SLOTS;
  e.src = (source){.data = data, .len = size};
  e.check_every = DEFAULT_CHECK_EVERY;
  uint64_t start = e.ops;
  while (more(&e.src)) op_step(&e);
  free_all(&e);
  helper_call(H_FLUSH, NULL, 0);
  if (e.ops != start) check_everything(&e);
  inputs++;
  input_ops += e.ops - start;
  return 0;
}

/* --- the driver's random runs */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool out_of_budget(const fuzz_run *run, double t0, uint64_t ops) {
  return (run->max_ops != 0 && ops >= run->max_ops) || now_s() - t0 >= run->seconds;
}

static void run_single(fuzz_run *run) {
  static engine e;
  e = (engine){.slot = table, .nslots = SLOTS};
  memset(table, 0, sizeof table);
  e.src = (source){.random = true, .rng = run->seed};
  e.check_every = run->check_every ? run->check_every : DEFAULT_CHECK_EVERY;
  e.next_check = e.check_every;
  double t0 = now_s();
  while (!out_of_budget(run, t0, e.ops)) {
    for (int k = 0; k < 256; k++) op_step(&e);
    if (e.ops >= e.next_check) {
      check_everything(&e);
      e.next_check = e.ops + e.check_every;
    }
  }
  free_all(&e);
  helper_call(H_EXIT, NULL, 0);
  check_everything(&e);
  run->ops = e.ops;
  run->checks = e.checks;
}

static pthread_barrier_t barrier;
static atomic_bool stop;
static fuzz_run *mt_run;
static double mt_t0;

static void *mt_main(void *arg) {
  engine *e = arg;
  for (;;) {
    while (e->ops < e->next_check) {
      op_step(e);
      drain_mailbox(e, true);
    }
    e->next_check = e->ops + e->check_every;
    /* All meet; one checks everything while the others wait. */
    pthread_barrier_wait(&barrier);
    if (e->id == 0) {
      check_everything(e);
      uint64_t total = 0;
      for (int t = 0; t < atomic_load(&nthreads); t++) total += engines[t]->ops;
      atomic_store(&stop, out_of_budget(mt_run, mt_t0, total));
    }
    pthread_barrier_wait(&barrier);
    if (atomic_load(&stop)) break;
  }
  drain_mailbox(e, false);
  free_all(e);
  pthread_barrier_wait(&barrier); /* no hand-overs since the last: the mailboxes are empty */
  drain_mailbox(e, false);
  neap_thread_flush();
  return NULL;
}

static void run_threads(fuzz_run *run) {
  int n = run->threads > MAX_THREADS ? MAX_THREADS : run->threads;
  static block tables[MAX_THREADS][MT_SLOTS];
  static engine es[MAX_THREADS];
  pthread_t t[MAX_THREADS];
  atomic_store(&nthreads, n);
  mt_run = run;
  mt_t0 = now_s();
  pthread_barrier_init(&barrier, NULL, (unsigned)n);
  for (int i = 0; i < n; i++) {
    pthread_mutex_init(&mailboxes[i].mu, NULL);
    es[i] = (engine){.id = i, .slot = tables[i], .nslots = MT_SLOTS};
    es[i].src = (source){.random = true, .rng = run->seed ^ ((uint64_t)i << 40)};
    es[i].check_every = run->check_every ? run->check_every : DEFAULT_CHECK_EVERY / 4;
    es[i].next_check = es[i].check_every;
    engines[i] = &es[i];
  }
  for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, mt_main, &es[i]);
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&barrier);
  check_everything(&es[0]);
  run->ops = run->checks = 0;
  for (int i = 0; i < n; i++) run->ops += es[i].ops, run->checks += es[i].checks;
  atomic_store(&nthreads, 1);
}

void fuzz_random(fuzz_run *run) {
  if (run->threads <= 1) run_single(run);
  else run_threads(run);
}
