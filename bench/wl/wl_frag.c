/* wl_frag.c: fragmentation after a mass free, single-threaded.
 *
 * Models a long-running program that built a big in-memory structure of
 * small objects (a cache, a parse tree, a database of records) and then
 * dropped most of it: the survivors are scattered over all the pages the
 * structure used, so what the allocator can give back depends on how it
 * places objects and what it does with partly used pages.
 * Allocates 1 GiB (times -s) requested bytes: half in 64-byte
 * objects, half in 1 KiB objects (16 small objects for every big one),
 * interleaved at random; each object gets a few words written.  Then frees
 * 90% of them (each object survives with probability 1/10, by a hash of its
 * index), in a scattered order (index i*P mod n, P a large prime), keeps the
 * survivors chained through their first word (the pointer array is freed),
 * idles for -i seconds (default 10), and only then frees the survivors.
 * -t is ignored. (About 10 s of work under every allocator on the 2-core
 * VM, where a first-touch page fault costs ~15 us; make bench-quick scales
 * it down.)
 *
 * Timed (work_s): the allocation and the 90% frees (and the freeing of the
 * pointer array), not the idle period nor the final frees.
 * Check: FNV of the object count, the survivor count and the data read back
 * from every object (allocator independent); each object's words are
 * compared with what was written before it is freed: a mismatch exits 2 with
 * "heap corruption".
 * Memory figures (KiB): live_kib (bytes of the survivors, from the sizes
 * requested), rss_0s_kib right after the 90% frees, rss_2s_kib 2 s after
 * them (at the end of the idle period if -i < 2), rss_idle_kib at the end of
 * the idle period (/proc/self/statm), rss_peak_kib (getrusage ru_maxrss).
 */
#define _GNU_SOURCE
#include "wl.h"

#include <sys/resource.h>

#define SMALL ((size_t)64)
#define BIG ((size_t)1024)
#define BASE_BYTES ((double)(1u << 30))
#define PRIME 2654435761ull

static void oom(size_t n) {
  fprintf(stderr, "wl_frag: out of memory (%zu bytes)\n", n);
  exit(1);
}

/* Object layout (words): [0] key (later: link to the next survivor),
   [1] index << 1 | big, [last] ~key. */
static inline uint64_t key_of(uint64_t seed, size_t i) {
  return wl_mix(seed, i) | 1;
}

static uint64_t verify(const uint64_t *o, uint64_t seed, size_t i, int survivor) {
  int big = (int)(o[1] & 1);
  size_t words = (big ? BIG : SMALL) / 8;
  uint64_t k = key_of(seed, i);
  if ((o[1] >> 1) != i || o[words - 1] != ~k || (!survivor && o[0] != k)) wl_corrupt("object words");
  return o[1] + o[words - 1];
}

static int survives(uint64_t seed, size_t i) {
  return wl_mix(seed ^ 0x5555, i) % 10 == 0;
}

static size_t gcd(size_t a, size_t b) {
  while (b) {
    size_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

int main(int argc, char **argv) {
  wl_args args = wl_parse(argc, argv);
  double bytes = BASE_BYTES * args.scale;
  /* half the bytes each: ns * 64 = nb * 1024 */
  size_t nb = (size_t)(bytes / 2 / BIG), ns = nb * (BIG / SMALL);
  if (nb < 1) nb = 1, ns = BIG / SMALL;
  size_t n = ns + nb;
  uint64_t seed = args.seed * 0x9e3779b97f4a7c15ull + 5, rng = seed;
  uint64_t h = WL_CHECK_INIT;

  double t0 = wl_now();
  uint64_t **obj = malloc(n * sizeof *obj);
  if (!obj) oom(n * sizeof *obj);
  size_t left_s = ns, left_b = nb;
  for (size_t i = 0; i < n; i++) {
    int big = wl_rand(&rng) % (left_s + left_b) < left_b; /* random interleave */
    if (big)
      left_b--;
    else
      left_s--;
    size_t sz = big ? BIG : SMALL;
    uint64_t *o = malloc(sz);
    if (!o) oom(sz);
    uint64_t k = key_of(seed, i);
    o[0] = k;
    o[1] = (uint64_t)i << 1 | (uint64_t)big;
    o[sz / 8 - 1] = ~k;
    obj[i] = o;
  }
  /* 90% freed, in scattered order; survivors chained through word 0. */
  size_t p = (size_t)(PRIME % n);
  while (gcd(p, n) != 1) p++;
  uint64_t *chain = NULL;
  size_t nsurv = 0, live = 0;
  for (size_t j = 0, i = 0; j < n; j++, i = (i + p) % n) {
    uint64_t *o = obj[i];
    if (survives(seed, i)) {
      h = wl_mix(h, verify(o, seed, i, 0));
      o[0] = (uint64_t)(uintptr_t)chain;
      chain = o;
      nsurv++;
      live += (o[1] & 1) ? BIG : SMALL;
    } else {
      h = wl_mix(h, verify(o, seed, i, 0));
      free(o);
    }
  }
  free(obj);
  double t1 = wl_now();

  long rss0 = wl_rss_kib(), rss2, rssi;
  wl_idle(&args, t1, &rss2, &rssi);

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  h = wl_mix(h, n);
  h = wl_mix(h, nsurv);
  uint64_t s = 0;
  size_t freed = 0;
  while (chain) {
    uint64_t *next = (uint64_t *)(uintptr_t)chain[0];
    s += verify(chain, seed, (size_t)(chain[1] >> 1), 1);
    free(chain);
    chain = next;
    freed++;
  }
  if (freed != nsurv) wl_corrupt("survivor chain");
  h = wl_mix(h, s);

  char extra[240];
  snprintf(extra, sizeof extra,
           "live_kib=%zu rss_0s_kib=%ld rss_2s_kib=%ld rss_idle_kib=%ld rss_peak_kib=%ld objects=%zu survivors=%zu",
           live / 1024, rss0, rss2, rssi, ru.ru_maxrss, n, nsurv);
  wl_report("frag", &args, t1 - t0, h, extra);
  return 0;
}
