/* wl_realloc.c: large-block growth by realloc, single-threaded.
 *
 * Models programs that append to one buffer (reading a file or a socket into
 * memory, building a big string or array) with realloc in small steps.
 * Each round grows one buffer from 1 KiB to 64 MiB: each step adds a random
 * 4..64 KiB plus 1/16 of the current size (so about +40 KiB steps while the
 * buffer is small and x1.06 steps once it is large: ~80 reallocs a round),
 * and writes every word of the new tail, so every new page is touched.
 * Between steps it does what the rest of such a program would do: 1..4
 * small allocations (16..2048 bytes) into a ring of 64 live blocks (the
 * oldest freed), and one step of a medium buffer that also grows by realloc
 * (+256..4096 bytes, from 64 bytes to 1 MiB, then freed and started again),
 * so the big buffer seldom sits alone at the top of the heap.
 * An allocator that can grow a large block in place (or remap it) pays only
 * for the new pages; one that copies pays for ~16x the final size a round.
 * -s scales the number of rounds (base 4).  -t is ignored.
 *
 * Timed (work_s): all rounds.
 * Check: FNV of every size asked for and of the contents read back (all
 * allocator independent).  After every realloc the first, middle and last
 * old words of each buffer are compared with what was written, one word per
 * 4 KiB page of the big buffer before it is freed, and the first word of
 * every small block: a mismatch exits 2 with "heap corruption".
 * Extra keys: reallocs= (big-buffer reallocs), moved= (how many of them
 * returned a different address: allocator dependent, not in the check),
 * rss_peak_kib= (getrusage ru_maxrss).
 */
#define _GNU_SOURCE
#include "wl.h"

#include <sys/resource.h>

#define BIG_START (1u << 10)
#define BIG_MAX ((size_t)64 << 20)
#define MED_MAX ((size_t)1 << 20)
#define RING 64

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (!q) {
    fprintf(stderr, "wl_realloc: out of memory (%zu bytes)\n", n);
    exit(1);
  }
  return q;
}

/* Word i of a buffer with key k. */
static inline uint64_t pat(uint64_t k, size_t i) {
  return (k + i) * 0x9e3779b97f4a7c15ull;
}

/* Writes words [from, to) of p. */
static void fill(uint64_t *p, uint64_t k, size_t from, size_t to) {
  for (size_t i = from; i < to; i++) p[i] = pat(k, i);
}

/* Checks words 0, n/2, n-1 of p (n words). */
static uint64_t probe(const uint64_t *p, uint64_t k, size_t n, const char *what) {
  if (!n) return 0;
  size_t idx[3] = {0, n / 2, n - 1};
  uint64_t s = 0;
  for (int j = 0; j < 3; j++) {
    if (p[idx[j]] != pat(k, idx[j])) wl_corrupt(what);
    s += p[idx[j]];
  }
  return s;
}

int main(int argc, char **argv) {
  wl_args args = wl_parse(argc, argv);
  long rounds = wl_n(&args, 4);
  uint64_t rng = args.seed * 0x9e3779b97f4a7c15ull + 1;
  uint64_t h = WL_CHECK_INIT;
  unsigned long long nrealloc = 0, nmoved = 0;

  void *ring[RING] = {0};
  size_t ringsz[RING] = {0};
  unsigned ringpos = 0;
  uint64_t ringkey[RING] = {0};
  uint64_t *med = NULL;
  size_t medsz = 0; /* bytes, a multiple of 8 */
  uint64_t medkey = 0;

  double t0 = wl_now();
  for (long r = 0; r < rounds; r++) {
    uint64_t key = wl_rand(&rng);
    size_t sz = BIG_START;
    uint64_t *big = wl_xmalloc(sz);
    fill(big, key, 0, sz / 8);
    while (sz < BIG_MAX) {
      size_t step = 4096 + (size_t)(wl_rand(&rng) % (60 * 1024)) + sz / 16;
      size_t nsz = (sz + step) & ~(size_t)7;
      if (nsz > BIG_MAX) nsz = BIG_MAX;
      uintptr_t old = (uintptr_t)big;
      big = xrealloc(big, nsz);
      nrealloc++;
      nmoved += (uintptr_t)big != old;
      h = wl_mix(h, nsz);
      h = wl_mix(h, probe(big, key, sz / 8, "big buffer after realloc"));
      fill(big, key, sz / 8, nsz / 8);
      sz = nsz;

      /* small blocks */
      for (uint64_t k = 1 + wl_rand(&rng) % 4; k; k--) {
        unsigned s = ringpos++ % RING;
        if (ring[s]) {
          if (*(uint64_t *)ring[s] != ringkey[s] || ((unsigned char *)ring[s])[ringsz[s] - 1] != (unsigned char)ringkey[s])
            wl_corrupt("small block");
          free(ring[s]);
        }
        size_t n = 16 + (size_t)(wl_rand(&rng) % (2048 - 16 + 1));
        ring[s] = wl_xmalloc(n);
        ringsz[s] = n;
        ringkey[s] = wl_rand(&rng);
        *(uint64_t *)ring[s] = ringkey[s];
        ((unsigned char *)ring[s])[n - 1] = (unsigned char)ringkey[s];
        h = wl_mix(h, n);
      }

      /* medium buffer */
      if (medsz >= MED_MAX) {
        h = wl_mix(h, probe(med, medkey, medsz / 8, "medium buffer before free"));
        free(med);
        med = NULL;
        medsz = 0;
      }
      if (!med) medkey = wl_rand(&rng);
      size_t mnsz = medsz ? medsz + ((256 + (size_t)(wl_rand(&rng) % 3841)) & ~(size_t)7) : 64;
      med = xrealloc(med, mnsz);
      h = wl_mix(h, probe(med, medkey, medsz / 8, "medium buffer after realloc"));
      fill(med, medkey, medsz / 8, mnsz / 8);
      medsz = mnsz;
    }
    /* one word per page, then free */
    uint64_t s = 0;
    for (size_t i = 0; i < sz / 8; i += 512) {
      if (big[i] != pat(key, i)) wl_corrupt("big buffer before free");
      s += big[i];
    }
    h = wl_mix(h, s);
    free(big);
  }
  double t1 = wl_now();

  for (unsigned s = 0; s < RING; s++) {
    if (ring[s] && *(uint64_t *)ring[s] != ringkey[s]) wl_corrupt("small block");
    free(ring[s]);
  }
  if (med) h = wl_mix(h, probe(med, medkey, medsz / 8, "medium buffer before free"));
  free(med);

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  char extra[160];
  snprintf(extra, sizeof extra, "reallocs=%llu moved=%llu rss_peak_kib=%ld", nrealloc, nmoved,
           ru.ru_maxrss);
  wl_report("realloc", &args, t1 - t0, h, extra);
  return 0;
}
