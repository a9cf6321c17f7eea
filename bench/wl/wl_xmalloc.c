/* wl_xmalloc.c: producer/consumer, every block freed by another thread.
 *
 * Imitates xmalloc-test (Lever & Boreham's "malloc() performance in a
 * multithreaded Linux environment", USENIX 2000; in mimalloc-bench as
 * xmalloc-testN): some threads only allocate, others only free what they
 * receive, so every free is a remote free and the freeing thread never
 * allocates.
 *
 * -t N: N/2 pairs of threads; in each pair the producer mallocs blocks
 * (90% of sizes 16..512, 10% 513..4096 bytes), writes an 8-byte tag at the
 * start and a byte at the end, and hands them in batches of 256 pointers to
 * its consumer through a bounded FIFO of 16 batches (mutex + condition
 * variables; producer waits when it is full, so at most 16 x 256 blocks per
 * pair are in flight: memory stays bounded). The consumer checks each block
 * and frees it, in the order produced.
 * With -t 1, and for the odd thread out when N is odd, a single thread
 * alternates: it produces 16 batches of 256 blocks (a full queue), then
 * checks and frees them in the same (FIFO) order; no handoff.
 *
 * Scaling: weak, in malloc+free operations per thread. At -s 1 a producer
 * does 10.24M mallocs and its consumer 10.24M frees (40,000 batches); a lone
 * thread does 5.12M mallocs and 5.12M frees. So -t 2 does twice the total
 * operations of -t 1 and work_s is comparable across thread counts (though
 * remote frees cost more: -t 2 is slower than -t 1 under most allocators).
 *
 * Timed: from the start barrier until every thread has finished (all blocks
 * are freed by then). Untimed: creating the threads and queues. Also
 * reported: ops_per_s (mallocs + frees per second, all threads together).
 *
 * check: the consumer replays the producer's random stream (same seed), so it
 * knows each block's size and tag; it checksums the sizes and the tags read
 * back from the blocks. Each pair's (or lone thread's) checksum is combined in
 * order with the counts: independent of scheduling.
 */
#define _GNU_SOURCE
#include "wl.h"

#include <pthread.h>

#define BATCH 256
#define QSLOTS 16
#define BASE_BATCHES 40000.0 /* per producer: 10.24M blocks at -s 1 */

typedef struct {
  void *p[BATCH];
} batch_t;

typedef struct {
  char pad0[64];
  pthread_mutex_t mu;
  pthread_cond_t not_full, not_empty;
  unsigned long head, tail; /* batches published / consumed */
  uint64_t seed;
  long nbatches;
  int solo;
  uint64_t check;
  char pad1[64];
  batch_t ring[QSLOTS];
  char pad2[64];
} chan_t;

static pthread_barrier_t start_bar;

static inline uint32_t item_size(uint64_t r) {
  uint32_t x = (uint32_t)(r >> 32);
  return (r % 10 == 0) ? 513 + x % 3584 : 16 + x % 497;
}

static void produce(batch_t *b, uint64_t *rng) {
  for (int i = 0; i < BATCH; i++) {
    uint64_t r = wl_rand(rng);
    uint32_t size = item_size(r);
    unsigned char *p = malloc(size);
    if (!p) wl_fail("malloc returned NULL");
    memcpy(p, &r, sizeof r);
    p[size - 1] = (unsigned char)(r >> 8);
    b->p[i] = p;
  }
}

static void consume(batch_t *b, uint64_t *rng, uint64_t *acc) {
  uint64_t h = *acc;
  for (int i = 0; i < BATCH; i++) {
    uint64_t r = wl_rand(rng);
    uint32_t size = item_size(r);
    unsigned char *p = b->p[i];
    uint64_t t;
    memcpy(&t, p, sizeof t);
    if (t != r || p[size - 1] != (unsigned char)(r >> 8)) wl_fail("heap corruption");
    h = (h ^ size ^ (t << 16)) * 0x100000001b3ull;
    free(p);
  }
  *acc = h;
}

static void *producer(void *arg) {
  chan_t *c = arg;
  uint64_t rng = c->seed;
  pthread_barrier_wait(&start_bar);
  for (long n = 0; n < c->nbatches; n++) {
    pthread_mutex_lock(&c->mu);
    while (c->head - c->tail == QSLOTS) pthread_cond_wait(&c->not_full, &c->mu);
    unsigned long slot = c->head % QSLOTS;
    pthread_mutex_unlock(&c->mu);
    produce(&c->ring[slot], &rng); /* the slot is the producer's until published */
    pthread_mutex_lock(&c->mu);
    c->head++;
    pthread_cond_signal(&c->not_empty);
    pthread_mutex_unlock(&c->mu);
  }
  return NULL;
}

static void *consumer(void *arg) {
  chan_t *c = arg;
  uint64_t rng = c->seed, acc = WL_CHECK_INIT;
  pthread_barrier_wait(&start_bar);
  for (long n = 0; n < c->nbatches; n++) {
    pthread_mutex_lock(&c->mu);
    while (c->head == c->tail) pthread_cond_wait(&c->not_empty, &c->mu);
    unsigned long slot = c->tail % QSLOTS;
    pthread_mutex_unlock(&c->mu);
    consume(&c->ring[slot], &rng, &acc);
    pthread_mutex_lock(&c->mu);
    c->tail++;
    pthread_cond_signal(&c->not_full);
    pthread_mutex_unlock(&c->mu);
  }
  c->check = acc;
  return NULL;
}

/* -t 1, or the odd thread: fill the whole ring (up to QSLOTS batches), then
 * consume it, alternately; as a pair whose queue runs full. */
static void *alone(void *arg) {
  chan_t *c = arg;
  uint64_t prng = c->seed, crng = c->seed, acc = WL_CHECK_INIT;
  pthread_barrier_wait(&start_bar);
  for (long n = 0; n < c->nbatches; n += QSLOTS) {
    long k = c->nbatches - n < QSLOTS ? c->nbatches - n : QSLOTS;
    for (long i = 0; i < k; i++) produce(&c->ring[i], &prng);
    for (long i = 0; i < k; i++) consume(&c->ring[i], &crng, &acc);
  }
  c->check = acc;
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a = wl_parse(argc, argv);
  int pairs = a.threads / 2, solo = a.threads % 2, nch = pairs + solo;
  long nb = wl_n(&a, BASE_BATCHES);
  long nb_solo = nb / 2 > 0 ? nb / 2 : 1;

  chan_t *ch = calloc((size_t)nch, sizeof *ch);
  pthread_t *th = calloc((size_t)a.threads, sizeof *th);
  if (!ch || !th) wl_fail("malloc returned NULL");
  pthread_barrier_init(&start_bar, NULL, (unsigned)a.threads + 1);
  int t = 0;
  for (int i = 0; i < nch; i++) {
    chan_t *c = &ch[i];
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->not_full, NULL);
    pthread_cond_init(&c->not_empty, NULL);
    c->seed = wl_seed(a.seed * UINT64_C(0x9e3779b97f4a7c15) + (uint64_t)i);
    c->solo = i >= pairs;
    c->nbatches = c->solo ? nb_solo : nb;
    if (c->solo) {
      if (pthread_create(&th[t++], NULL, alone, c) != 0) wl_fail("pthread_create failed");
    } else {
      if (pthread_create(&th[t++], NULL, producer, c) != 0) wl_fail("pthread_create failed");
      if (pthread_create(&th[t++], NULL, consumer, c) != 0) wl_fail("pthread_create failed");
    }
  }

  double work = wl_time_threads(&start_bar, th, t);

  uint64_t check = WL_CHECK_INIT, ops = 0;
  for (int i = 0; i < nch; i++) {
    check = wl_mix(wl_mix(check, ch[i].check), (uint64_t)ch[i].nbatches * BATCH);
    ops += 2 * (uint64_t)ch[i].nbatches * BATCH;
    pthread_mutex_destroy(&ch[i].mu);
    pthread_cond_destroy(&ch[i].not_full);
    pthread_cond_destroy(&ch[i].not_empty);
  }
  pthread_barrier_destroy(&start_bar);
  free(ch);
  free(th);

  char extra[64];
  snprintf(extra, sizeof extra, "ops_per_s=%.0f", (double)ops / work);
  wl_report("xmalloc", &a, work, check, extra);
  return 0;
}
