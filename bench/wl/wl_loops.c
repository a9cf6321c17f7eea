/* wl_loops.c: the tight single-thread loops where an allocator's fast
 * paths are all there is.
 *
 * Three phases, each timed on its own (pairs_s, batch_s, pareto_s) and
 * together (work_s):
 *   pairs   malloc then free of one size, again and again, for each size
 *           of 16, 24, 32, 48, 64, 96, 128, 256, 512 and 1024 bytes
 *           (glibc's bench-malloc-simple, and every loop that needs a
 *           scratch buffer);
 *   batch   100 blocks of one size allocated, then all freed in the order
 *           allocated, for the same sizes (a parser's nodes, a request's
 *           temporaries: bench-malloc-simple's batch mode);
 *   pareto  a window of 64 live blocks, the oldest freed as each new one
 *           comes, sizes from a Pareto distribution (alpha 1.2) from 8 to
 *           1,024 bytes: most tiny, a few large, as strings and small
 *           objects in interpreters.
 * Each block is written (its first and last byte) and read back before
 * its free: check is a checksum of what was read, the same everywhere.
 * At -s 1: 20M pairs, 20M blocks in batches and 20M Pareto blocks.
 * Single-threaded: -t is ignored.
 */
#include "wl.h"

#include <math.h>

static const size_t sizes[] = {16, 24, 32, 48, 64, 96, 128, 256, 512, 1024};
#define NSIZES (sizeof sizes / sizeof sizes[0])
#define BATCH 100
#define WINDOW 64

static inline void touch(unsigned char *p, size_t n, unsigned char v) {
  p[0] = v;
  p[n - 1] = (unsigned char)(v ^ 0x5a);
}
static inline uint64_t readback(const unsigned char *p, size_t n, uint64_t h) {
  return (h ^ p[0] ^ ((uint64_t)p[n - 1] << 8)) * 0x100000001b3ull;
}

static uint64_t pairs(long per_size) {
  uint64_t h = WL_CHECK_INIT;
  for (size_t k = 0; k < NSIZES; k++) {
    size_t n = sizes[k];
    for (long i = 0; i < per_size; i++) {
      unsigned char *p = malloc(n);
      if (p == NULL) wl_fail("malloc returned NULL");
      touch(p, n, (unsigned char)i);
      h = readback(p, n, h);
      free(p);
    }
  }
  return h;
}

static uint64_t batches(long rounds_per_size) {
  uint64_t h = WL_CHECK_INIT;
  unsigned char *b[BATCH];
  for (size_t k = 0; k < NSIZES; k++) {
    size_t n = sizes[k];
    for (long r = 0; r < rounds_per_size; r++) {
      for (int i = 0; i < BATCH; i++) {
        b[i] = malloc(n);
        if (b[i] == NULL) wl_fail("malloc returned NULL");
        touch(b[i], n, (unsigned char)(r + i));
      }
      for (int i = 0; i < BATCH; i++) {
        h = readback(b[i], n, h);
        free(b[i]);
      }
    }
  }
  return h;
}

/* The Pareto sizes, drawn before the clock starts (pow() would cost more
 * than the allocator): alpha 1.2, at least 8, capped at 1024. */
#define NDRAWS 65536
static uint16_t draws[NDRAWS];
static void draw_sizes(uint64_t seed) {
  uint64_t rng = seed;
  for (unsigned i = 0; i < NDRAWS; i++) {
    double u = ((double)(wl_rand(&rng) >> 11) + 0.5) * 0x1.0p-53;
    double x = 8.0 * pow(u, -1.0 / 1.2);
    draws[i] = (uint16_t)(x > 1024.0 ? 1024 : x);
  }
}

static uint64_t pareto(long count) {
  uint64_t h = WL_CHECK_INIT;
  unsigned char *win[WINDOW] = {0};
  size_t len[WINDOW] = {0};
  for (long i = 0; i < count; i++) {
    unsigned k = (unsigned)(i % WINDOW);
    if (win[k] != NULL) {
      h = readback(win[k], len[k], h);
      free(win[k]);
    }
    size_t n = draws[i % NDRAWS];
    win[k] = malloc(n);
    if (win[k] == NULL) wl_fail("malloc returned NULL");
    len[k] = n;
    touch(win[k], n, (unsigned char)i);
  }
  for (unsigned k = 0; k < WINDOW; k++)
    if (win[k] != NULL) {
      h = readback(win[k], len[k], h);
      free(win[k]);
    }
  return h;
}

int main(int argc, char **argv) {
  wl_args a = wl_parse(argc, argv);
  a.threads = 1;
  long per_size = wl_n(&a, 20e6 / NSIZES), rounds = wl_n(&a, 20e6 / NSIZES / BATCH), count = wl_n(&a, 20e6);
  draw_sizes(wl_seed(a.seed));
  double t0 = wl_now();
  uint64_t c1 = pairs(per_size);
  double t1 = wl_now();
  uint64_t c2 = batches(rounds);
  double t2 = wl_now();
  uint64_t c3 = pareto(count);
  double t3 = wl_now();
  uint64_t check = wl_mix(wl_mix(wl_mix(WL_CHECK_INIT, c1), c2), c3);
  char extra[128];
  snprintf(extra, sizeof extra, "pairs_s=%.6f batch_s=%.6f pareto_s=%.6f", t1 - t0, t2 - t1, t3 - t2);
  wl_report("loops", &a, t3 - t0, check, extra);
  return 0;
}
