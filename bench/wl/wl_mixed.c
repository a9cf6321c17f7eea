/* wl_mixed.c: single-threaded mixed small sizes with random lifetimes.
 *
 * Models the steady state of an ordinary program's small-object heap, in the
 * spirit of the "random replacement" loops of the classic allocator
 * benchmarks (the single-thread core of larson, mimalloc-bench's
 * alloc-test): a table of 50,000 live blocks; each step frees the block of a
 * random slot and allocates a new one there. Sizes are 8..1024 bytes, skewed
 * to small: 44% 8-32, 31% 33-128, 19% 129-512, 6% 513-1024. The lifetime of
 * a block is therefore geometric (mean 50,000 steps) and the heap is a
 * random mix of size classes, so freed blocks are scattered over many pages.
 *
 * Every block is touched: a tag byte at its first and last byte, checked
 * before it is freed ("heap corruption" on stderr and exit 2 on mismatch).
 *
 * Timed: the replacement steps only (20M at -s 1). Untimed: filling the
 * table first, freeing everything at the end. -t is ignored (always one
 * thread; the result line says threads=1).
 *
 * check: FNV over the sizes and tags of every block freed in the timed part,
 * the number of steps and the bytes allocated; it depends only on -s and -r.
 */
#define _GNU_SOURCE
#include "wl.h"

#define SLOTS 50000u
#define BASE_STEPS 20e6

typedef struct {
  unsigned char *p;
  uint32_t size;
  uint32_t tag;
} slot_t;

static uint32_t pick_size(uint64_t r) {
  uint32_t c = (uint32_t)(r % 100);
  uint32_t x = (uint32_t)(r >> 32);
  if (c < 44) return 8 + x % 25;     /* 8..32 */
  if (c < 75) return 33 + x % 96;    /* 33..128 */
  if (c < 94) return 129 + x % 384;  /* 129..512 */
  return 513 + x % 512;              /* 513..1024 */
}

static inline void fill(slot_t *s, uint64_t *rng, uint64_t *bytes) {
  uint64_t r = wl_rand(rng);
  uint32_t size = pick_size(r);
  unsigned char *p = malloc(size);
  if (!p) wl_fail("malloc returned NULL");
  uint32_t tag = (uint32_t)(r >> 16) & 0xff;
  p[0] = (unsigned char)tag;
  p[size - 1] = (unsigned char)(tag ^ 0xa5);
  s->p = p;
  s->size = size;
  s->tag = tag;
  *bytes += size;
}

static inline void verify(const slot_t *s) {
  if (s->p[0] != (unsigned char)s->tag || s->p[s->size - 1] != (unsigned char)(s->tag ^ 0xa5))
    wl_fail("heap corruption");
}

int main(int argc, char **argv) {
  wl_args a = wl_parse(argc, argv);
  a.threads = 1;
  long steps = wl_n(&a, BASE_STEPS);
  uint64_t rng = wl_seed(a.seed);
  uint64_t bytes = 0, acc = WL_CHECK_INIT;

  slot_t *tab = calloc(SLOTS, sizeof *tab);
  if (!tab) wl_fail("malloc returned NULL");
  for (uint32_t i = 0; i < SLOTS; i++) fill(&tab[i], &rng, &bytes);

  double t0 = wl_now();
  for (long n = 0; n < steps; n++) {
    uint64_t r = wl_rand(&rng);
    slot_t *s = &tab[(uint32_t)(((r >> 32) * SLOTS) >> 32)];
    verify(s);
    acc = (acc ^ s->size ^ ((uint64_t)s->tag << 16)) * 0x100000001b3ull;
    free(s->p);
    fill(s, &rng, &bytes);
  }
  double work = wl_now() - t0;

  for (uint32_t i = 0; i < SLOTS; i++) {
    verify(&tab[i]);
    free(tab[i].p);
  }
  free(tab);

  uint64_t check = wl_mix(wl_mix(wl_mix(WL_CHECK_INIT, acc), (uint64_t)steps), bytes);
  char extra[64];
  snprintf(extra, sizeof extra, "ops_per_s=%.0f", (double)steps / work);
  wl_report("mixed", &a, work, check, extra);
  return 0;
}
