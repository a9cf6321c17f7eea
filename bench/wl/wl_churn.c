/* wl_churn.c: thread churn, many short-lived threads that allocate a little.
 *
 * Models thread-per-task servers and thread pools that grow and shrink:
 * threads are created and ended all the time, each doing a few allocations,
 * so an allocator's per-thread setup and teardown (thread caches, arenas,
 * heaps, what happens to blocks still cached when a thread ends) is paid
 * again and again, and memory crosses threads.  The main thread starts
 * batches of -t threads and joins them in order; each thread
 *   - mallocs 48 small blocks (sizes 16, 24, 48, 64, 128, 256, 512 at
 *     random) and one medium block (8..64 KiB), writes them,
 *   - frees the medium block and 47 small ones (in a shuffled order),
 *   - puts its result in a last small block (one of the 48, kept) and
 *     returns it: the main thread checks it and frees it (a cross-thread
 *     free of a block whose owner has already ended).
 * 20000 threads in all (times -s), whatever -t is.
 *
 * Timed (work_s): all the batches (creation, work, joins, the frees by the
 * main thread).
 * Check: FNV over the threads in index order of the checksum each computed
 * from the data it wrote and read back, and of the returned block's size
 * (allocator independent).  Each thread checks its blocks before freeing
 * them and the main thread checks each returned block: a mismatch exits 2
 * with "heap corruption".
 * Extra keys: threads_total= (threads run), rss_peak_kib= (ru_maxrss).
 */
#define _GNU_SOURCE
#include "wl.h"

#include <pthread.h>
#include <sys/resource.h>

#define NSMALL 48

static uint64_t g_seed;
static const size_t small_sizes[] = {16, 24, 48, 64, 128, 256, 512};

typedef struct result {
  uint64_t idx, sum, size, key;
} result;

static void put(unsigned char *p, size_t n, uint64_t k) {
  memcpy(p, &k, 8);
  p[n - 1] = (unsigned char)(k >> 16);
}

static uint64_t get(const unsigned char *p, size_t n, uint64_t k) {
  uint64_t v;
  memcpy(&v, p, 8);
  if (v != k || p[n - 1] != (unsigned char)(k >> 16)) wl_corrupt("block words");
  return v + p[n - 1];
}

static void put_word(unsigned char *p, uint64_t k) { memcpy(p, &k, 8); }

static uint64_t get_word(const unsigned char *p, uint64_t k) {
  uint64_t v;
  memcpy(&v, p, 8);
  if (v != k) wl_corrupt("medium block word");
  return v;
}

static void *worker(void *arg) {
  uint64_t idx = (uint64_t)(uintptr_t)arg;
  uint64_t rng = wl_mix(g_seed, idx) | 1;
  unsigned char *p[NSMALL];
  size_t sz[NSMALL];
  uint64_t key[NSMALL];
  uint64_t sum = 0;
  for (int i = 0; i < NSMALL; i++) {
    sz[i] = small_sizes[wl_rand(&rng) % (sizeof small_sizes / sizeof *small_sizes)];
    key[i] = wl_rand(&rng);
    p[i] = wl_xmalloc(sz[i]);
    put(p[i], sz[i], key[i]);
  }
  size_t msz = 8192 + (size_t)(wl_rand(&rng) % (56 * 1024 + 1));
  uint64_t mkey = wl_rand(&rng);
  unsigned char *m = wl_xmalloc(msz);
  for (size_t off = 4096; off + 8 < msz; off += 4096) put_word(m + off, mkey + off);
  put(m, msz, mkey);
  for (size_t off = 4096; off + 8 < msz; off += 4096) sum += get_word(m + off, mkey + off);
  sum += get(m, msz, mkey);
  free(m);
  /* shuffle, keep the first block big enough for the result */
  for (int i = NSMALL - 1; i > 0; i--) {
    int j = (int)(wl_rand(&rng) % (uint64_t)(i + 1));
    unsigned char *tp = p[i];
    p[i] = p[j];
    p[j] = tp;
    size_t ts = sz[i];
    sz[i] = sz[j];
    sz[j] = ts;
    uint64_t tk = key[i];
    key[i] = key[j];
    key[j] = tk;
  }
  int keep = -1;
  for (int i = 0; i < NSMALL; i++) {
    sum += get(p[i], sz[i], key[i]) * (uint64_t)(i + 1);
    if (keep < 0 && sz[i] >= sizeof(result)) {
      keep = i;
      continue;
    }
    free(p[i]);
  }
  result *r;
  if (keep < 0) { /* no block of 32+ bytes drawn: malloc one */
    r = wl_xmalloc(sizeof *r);
    r->size = sizeof *r;
  } else {
    r = (result *)(void *)p[keep];
    r->size = sz[keep];
  }
  r->idx = idx;
  r->sum = sum;
  r->key = wl_mix(sum, idx);
  return r;
}

int main(int argc, char **argv) {
  wl_args args = wl_parse(argc, argv);
  long total = wl_n(&args, 20000);
  g_seed = args.seed * 0x9e3779b97f4a7c15ull + 11;
  uint64_t h = WL_CHECK_INIT;
  pthread_t *tid = wl_xmalloc((size_t)args.threads * sizeof *tid);

  double t0 = wl_now();
  long started = 0;
  while (started < total) {
    long batch = total - started < args.threads ? total - started : args.threads;
    for (long i = 0; i < batch; i++) {
      int e = pthread_create(&tid[i], NULL, worker, (void *)(uintptr_t)(started + i));
      if (e) {
        fprintf(stderr, "wl_churn: pthread_create: %s\n", strerror(e));
        return 1;
      }
    }
    for (long i = 0; i < batch; i++) {
      void *ret;
      pthread_join(tid[i], &ret);
      result *r = ret;
      if (r->idx != (uint64_t)(started + i) || r->key != wl_mix(r->sum, r->idx)) wl_corrupt("result block");
      h = wl_mix(wl_mix(h, r->sum), r->size);
      free(r);
    }
    started += batch;
  }
  double t1 = wl_now();
  free(tid);

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  char extra[120];
  snprintf(extra, sizeof extra, "threads_total=%ld rss_peak_kib=%ld", started, ru.ru_maxrss);
  wl_report("churn", &args, t1 - t0, h, extra);
  return 0;
}
