/* The fuzz targets' shared interface (tests/fuzz/README.md has the
 * campaign). Each target defines LLVMFuzzerTestOneInput, so it links with
 * libFuzzer (clang -fsanitize=fuzzer), and fuzz_random, which the plain
 * driver (driver.c: gcc, ASan+UBSan and TSan builds) calls to feed it
 * random streams from a seed.
 */
#ifndef NEAP_FUZZ_H
#define NEAP_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What a random run asks for; the target fills in what it did. */
typedef struct fuzz_run {
  uint64_t seed;
  double seconds;     /* stop after this long ... */
  uint64_t max_ops;   /* ... or this many operations (0: no bound) */
  int threads;        /* threads sharing blocks (the API target) */
  uint64_t check_every; /* heap check every this many operations per thread (0: the target's default) */
  /* out */
  uint64_t ops, checks;
} fuzz_run;

/* Random streams from run->seed until the time or the operations run out.
 * Aborts with a one-line "fuzz: ..." message on any finding. */
void fuzz_random(fuzz_run *run);

/* A splitmix64 step: the random streams' generator. */
static inline uint64_t fuzz_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

#endif
