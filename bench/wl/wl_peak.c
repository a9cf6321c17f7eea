/* wl_peak.c: peak and return, single-threaded.
 *
 * Models a program with a burst of memory use followed by a quiet period (a
 * server after a big request, a compiler between two files): does the
 * allocator give the memory back, and how soon?  Ten rounds; each
 * allocates 256 MiB (times -s) and touches it, then frees everything in
 * random order.  Half the bytes are small blocks (16..1024 bytes, uniform),
 * half large blocks (64 KiB..4 MiB, log-uniform); the two kinds are
 * interleaved (a large block whenever the large bytes fall behind the small
 * bytes, about one per 2000 small blocks), so the small blocks' pages are
 * shared and fragmented while the large ones come and go whole.  Small
 * blocks get their first word and last byte written (that touches every
 * page, they are dense), large blocks one word per 4 KiB page.  The pointer
 * array (grown by realloc) is freed at the end of each round too, so after
 * the last round the program holds nothing; then it idles for -i seconds
 * (default 10) doing nothing, so that a runner sampling RSS from outside
 * sees the return over time.  -t is ignored; -s scales the bytes a round,
 * not the number of rounds.
 *
 * Timed (work_s): the ten rounds (allocation, touching, shuffle, frees).
 * Check: FNV of every size and every word read back (allocator
 * independent); the written word and byte of every block are compared
 * before it is freed: a mismatch exits 2 with "heap corruption".
 * Memory figures (KiB, /proc/self/statm): rss_0s_kib right after the last
 * free, rss_2s_kib 2 s after it (at the end of the idle period if -i < 2),
 * rss_idle_kib at the end of the idle period, rss_peak_kib (getrusage
 * ru_maxrss), live_kib what the program still holds then (0).
 */
#define _GNU_SOURCE
#include "wl.h"

#include <sys/resource.h>

#define ROUNDS 10
#define BASE_BYTES ((double)(256u << 20))

static void oom(size_t n) {
  fprintf(stderr, "wl_peak: out of memory (%zu bytes)\n", n);
  exit(1);
}

typedef struct blk {
  unsigned char *p;
  size_t size;
  uint64_t key;
} blk;

static size_t small_size(uint64_t *rng) {
  return 16 + (size_t)(wl_rand(rng) % (1024 - 16 + 1));
}

/* 64 KiB * 2^(6u): 64 KiB .. 4 MiB, log-uniform, not page aligned. */
static size_t large_size(uint64_t *rng) {
  uint64_t r = wl_rand(rng);
  size_t base = (size_t)65536 << (r % 6);
  return base + (size_t)((double)base * (double)((r >> 8) & 0xffff) / 65536.0) + (size_t)((r >> 24) % 512) * 8;
}

static void touch(blk *b) {
  uint64_t k = b->key;
  if (b->size < 65536) {
    memcpy(b->p, &k, 8);
  } else {
    for (size_t off = 0; off + 8 < b->size; off += 4096) {
      uint64_t v = k + off;
      memcpy(b->p + off, &v, 8);
    }
  }
  b->p[b->size - 1] = (unsigned char)(k >> 8);
}

static uint64_t check_free(blk *b) {
  uint64_t k = b->key, sum = 0, v;
  if (b->size < 65536) {
    memcpy(&v, b->p, 8);
    if (v != k) wl_corrupt("small block word");
    sum = v;
  } else {
    for (size_t off = 0; off + 8 < b->size; off += 4096) {
      memcpy(&v, b->p + off, 8);
      if (v != k + off) wl_corrupt("large block page word");
      sum += v;
    }
  }
  if (b->p[b->size - 1] != (unsigned char)(k >> 8)) wl_corrupt("last byte");
  sum += b->p[b->size - 1];
  free(b->p);
  b->p = NULL;
  return sum;
}

int main(int argc, char **argv) {
  wl_args args = wl_parse(argc, argv);
  size_t target = (size_t)(BASE_BYTES * args.scale);
  if (target < (1u << 20)) target = 1u << 20;
  size_t half = target / 2;
  uint64_t rng = args.seed * 0x9e3779b97f4a7c15ull + 3;
  uint64_t h = WL_CHECK_INIT;
  long long live = 0;

  double t0 = wl_now();
  for (int r = 0; r < ROUNDS; r++) {
    blk *v = NULL;
    size_t n = 0, cap = 0, small = 0, large = 0;
    while (small < half || large < half) {
      int big = large < half && (large < small || small >= half);
      size_t sz = big ? large_size(&rng) : small_size(&rng);
      if (n == cap) {
        cap = cap ? cap * 2 : 4096;
        blk *nv = realloc(v, cap * sizeof *v);
        if (!nv) oom(cap * sizeof *v);
        v = nv;
      }
      blk *b = &v[n++];
      b->p = malloc(sz);
      if (!b->p) oom(sz);
      b->size = sz;
      b->key = wl_rand(&rng);
      touch(b);
      live += (long long)sz;
      if (big)
        large += sz;
      else
        small += sz;
      h = wl_mix(h, sz);
    }
    h = wl_mix(h, n);
    for (size_t i = n; i > 1; i--) { /* Fisher-Yates: free in random order */
      size_t j = (size_t)(wl_rand(&rng) % i);
      blk t = v[i - 1];
      v[i - 1] = v[j];
      v[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
      live -= (long long)v[i].size;
      h = wl_mix(h, check_free(&v[i]));
    }
    free(v);
  }
  double t1 = wl_now();
  long rss0 = wl_rss_kib(), rss2, rssi;
  wl_idle(&args, t1, &rss2, &rssi);

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  char extra[200];
  snprintf(extra, sizeof extra, "live_kib=%lld rss_0s_kib=%ld rss_2s_kib=%ld rss_idle_kib=%ld rss_peak_kib=%ld",
           live / 1024, rss0, rss2, rssi, ru.ru_maxrss);
  wl_report("peak", &args, t1 - t0, h, extra);
  return 0;
}
