/* wl_bigblocks.c: big blocks allocated, touched and freed, single-threaded.
 *
 * Models programs that take big temporary buffers again and again (image or
 * column buffers, decompression windows, per-request arenas): each step
 * frees the block in one of 4 slots (if any) and puts there a new block of
 * 256 KiB..16 MiB (size log-uniform, not page aligned), writing one word in
 * every 4 KiB page of it (and its last word); one step in 8 also frees
 * another slot, so 1..4 blocks are live.  What an allocator does with a
 * freed big block decides the cost: give it back to the kernel and the next
 * block page-faults on every page again, keep it (or reuse it) and the
 * touches are nearly free.  -s scales the number of steps (base 800).
 * -t is ignored.
 *
 * Timed (work_s): all steps (slots left over are freed after the timing).
 * Check: FNV of every size and of every word read back (allocator
 * independent).  Every touched word is compared with what was written
 * before the block is freed: a mismatch exits 2 with "heap corruption".
 * Extra keys: minflt= (minor page faults during the timed part, getrusage),
 * rss_peak_kib= (getrusage ru_maxrss); both allocator dependent.
 */
#define _GNU_SOURCE
#include "wl.h"

#include <sys/resource.h>

#define SLOTS 4
#define MIN_SZ ((size_t)256 << 10)
#define PAGE_WORDS 512 /* 4 KiB */

static inline uint64_t pat(uint64_t k, size_t i) {
  return (k ^ i) * 0x9e3779b97f4a7c15ull + i;
}

typedef struct slot {
  uint64_t *p;
  size_t words;
  uint64_t key;
} slot;

static uint64_t release(slot *s) {
  uint64_t sum = 0;
  if (!s->p) return 0;
  for (size_t i = 0; i < s->words; i += PAGE_WORDS) {
    if (s->p[i] != pat(s->key, i)) wl_corrupt("page word");
    sum += s->p[i];
  }
  if (s->p[s->words - 1] != pat(s->key, s->words - 1)) wl_corrupt("last word");
  sum += s->p[s->words - 1];
  free(s->p);
  s->p = NULL;
  return sum;
}

/* 256 KiB * 2^(6u), u uniform in [0, 1): 256 KiB .. 16 MiB, log-uniform. */
static size_t pick_size(uint64_t *rng) {
  uint64_t r = wl_rand(rng);
  unsigned octave = (unsigned)(r % 6);
  double frac = (double)((r >> 8) & 0xffff) / 65536.0; /* within the octave */
  size_t base = MIN_SZ << octave;
  size_t sz = base + (size_t)((double)base * frac);
  return sz + (size_t)((r >> 24) % 4096) * 8; /* off page boundaries */
}

int main(int argc, char **argv) {
  wl_args args = wl_parse(argc, argv);
  long steps = wl_n(&args, 800);
  uint64_t rng = args.seed * 0x9e3779b97f4a7c15ull + 7;
  uint64_t h = WL_CHECK_INIT;
  slot slots[SLOTS] = {{0}};

  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  double t0 = wl_now();
  for (long i = 0; i < steps; i++) {
    slot *s = &slots[wl_rand(&rng) % SLOTS];
    h = wl_mix(h, release(s));
    size_t sz = pick_size(&rng);
    s->p = malloc(sz);
    if (!s->p) {
      fprintf(stderr, "wl_bigblocks: out of memory (%zu bytes)\n", sz);
      return 1;
    }
    s->words = sz / 8;
    s->key = wl_rand(&rng);
    for (size_t j = 0; j < s->words; j += PAGE_WORDS) s->p[j] = pat(s->key, j);
    s->p[s->words - 1] = pat(s->key, s->words - 1);
    h = wl_mix(h, sz);
    if (wl_rand(&rng) % 8 == 0) h = wl_mix(h, release(&slots[wl_rand(&rng) % SLOTS]));
  }
  double t1 = wl_now();
  getrusage(RUSAGE_SELF, &ru1);
  for (int k = 0; k < SLOTS; k++) h = wl_mix(h, release(&slots[k]));

  char extra[160];
  snprintf(extra, sizeof extra, "minflt=%ld rss_peak_kib=%ld", ru1.ru_minflt - ru0.ru_minflt,
           ru1.ru_maxrss);
  wl_report("bigblocks", &args, t1 - t0, h, extra);
  return 0;
}
