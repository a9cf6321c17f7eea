/* micro.c: the first allocator microbenchmark for neap.
 *
 * One source, compiled twice by bench/run-micro.sh:
 *   - with -DNEAP_NATIVE it calls neap_malloc/neap_free and links
 *     libneap.a (the "neap" row of the table);
 *   - without it, it calls plain malloc/free, which is glibc, or whatever
 *     allocator LD_PRELOAD puts in front (mimalloc, jemalloc, tcmalloc and,
 *     once neap overrides malloc, neap itself).
 *
 * Workloads (argv):
 *   mixed     one thread. A table of SLOTS pointers is filled first
 *             (untimed); then each timed step picks a random slot, frees
 *             the block there and allocates a new one of a random size.
 *             One op = one free + one malloc. Lifetimes are geometric
 *             (each step hits a given slot with probability 1/SLOTS).
 *   prodcons  two threads. The main thread allocates OPS blocks and pushes
 *             them through a lock-free single-producer single-consumer ring
 *             (a fixed array of RING_CAP = 8192 slots, that many blocks
 *             in flight at most) to a consumer thread that frees every
 *             one of them, so every free is a remote (cross-thread)
 *             free. One op = one malloc on the producer + one free on
 *             the consumer.
 *
 * Sizes run from 8 to 1024 bytes, skewed toward small (see pick_size).
 * Every block gets a tag in its first byte and the tag's complement in its
 * last byte, checked just before it is freed: the allocator's memory is
 * really touched, the stores cannot be optimised away, and an allocator
 * that hands out overlapping blocks is caught (exit 2).
 *
 * Output, one line on stdout:
 *   workload=<name> ops=<n> seconds=<wall> ns_per_op=<x> maxrss_kib=<k>
 *   cpu_per_wall=<c>
 * seconds is CLOCK_MONOTONIC around the timed loop only (no setup, no
 * teardown, no thread creation); maxrss_kib is getrusage's ru_maxrss for
 * the whole process (peak resident set, KiB). cpu_per_wall is the
 * process's user+system CPU time over the same loop divided by seconds:
 * about 1 for mixed, and for prodcons about 2 when producer and consumer
 * really ran side by side on two CPUs, nearer 1 when they had to share one
 * (a busy machine), which changes what prodcons measures.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifdef NEAP_NATIVE
#include "neap.h"
#define bench_malloc(n) neap_malloc(n)
#define bench_free(p) neap_free(p)
#define BENCH_ALLOCATOR "neap-native"
#else
#define bench_malloc(n) malloc(n)
#define bench_free(p) free(p)
#define BENCH_ALLOCATOR "libc-or-preload"
#endif

/* Defaults: about 0.5-1 s each under glibc 2.36 on a 2-core x86-64 box.
 * run-micro.sh's -n overrides OPS for every workload. */
#define MIXED_DEFAULT_OPS 20000000ULL
#define PRODCONS_DEFAULT_OPS 2000000ULL
#define MIXED_DEFAULT_SLOTS 50000UL

/* Power of two so the index is a mask; up to 8192 blocks in flight (up
 * to RING_BATCH-1 fewer while the consumer's progress is unpublished). */
#define RING_CAP 8192u
#define CACHE_LINE 64
/* Busy-wait this many times before yielding the CPU, so a consumer and
 * producer pinned to one CPU (or an oversubscribed box) still progress. */
#define SPINS_BEFORE_YIELD 256
/* Each side publishes its index every RING_BATCH items rather than every
 * item (as FastForward / B-Queue do), so the ring's bookkeeping costs a
 * cache-line transfer per batch, not per block, and what is measured is
 * the allocator's cross-thread free, not the queue. */
#define RING_BATCH 32u
_Static_assert((RING_CAP & (RING_CAP - 1)) == 0, "RING_CAP must be a power of two");
_Static_assert(RING_CAP % RING_BATCH == 0, "RING_CAP must be a multiple of RING_BATCH");

static uint64_t seed = 0x6e656170u; /* "neap" */

/* ---- PRNG: splitmix64 (Steele, Lea, Flood 2014); one multiply-xorshift
 * chain per call, good enough for workload shaping and far cheaper than
 * rand(). */
static inline uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ---- Size distribution. The top 4 bits of r choose a band (16 equal
 * buckets), the next 28 bits a size uniformly inside it:
 *   7/16 (44%)    8..32    small structs, list nodes, short strings
 *   5/16 (31%)   33..128
 *   3/16 (19%)  129..512
 *   1/16  (6%)  513..1024
 * Mean size about 142 bytes. Only bits 32..63 of r are used, leaving the
 * low 32 bits to the caller. */
struct band {
    uint32_t base;
    uint32_t span;
};
static const struct band size_bands[16] = {
    {8, 25},    {8, 25},    {8, 25},    {8, 25},    {8, 25},  {8, 25},
    {8, 25},    {33, 96},   {33, 96},   {33, 96},   {33, 96}, {33, 96},
    {129, 384}, {129, 384}, {129, 384}, {513, 512},
};

static inline size_t pick_size(uint64_t r)
{
    const struct band *b = &size_bands[r >> 60];
    uint64_t u = (r >> 32) & 0x0fffffffu; /* 28 bits */
    return (size_t)(b->base + (uint32_t)((u * b->span) >> 28));
}

static inline unsigned char tag_of(uint64_t k)
{
    return (unsigned char)((k ^ (k >> 8) ^ (k >> 16)) | 1u);
}

static inline void stamp(unsigned char *p, size_t size, unsigned char tag)
{
    p[0] = tag;
    p[size - 1] = (unsigned char)~tag;
}

static void die_corrupt(const char *workload, const void *p, size_t size)
{
    fprintf(stderr, "micro: %s: block %p (size %zu) lost its tag: heap corruption\n",
            workload, p, size);
    exit(2);
}

static void die_oom(size_t size)
{
    fprintf(stderr, "micro: malloc(%zu) returned NULL\n", size);
    exit(1);
}

static inline void check(const char *workload, const unsigned char *p, size_t size,
                         unsigned char tag)
{
    if (p[0] != tag || p[size - 1] != (unsigned char)~tag)
        die_corrupt(workload, p, size);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* User + system CPU time of the whole process, all threads. */
static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* What a timed loop took: wall and CPU seconds. */
struct timing {
    double wall;
    double cpu;
};

/* ---- mixed ---------------------------------------------------------- */


/* Allocates slot i anew and stamps the block. */
static inline __attribute__((always_inline)) void place(unsigned char **ptr, uint16_t *len, size_t i, size_t size)
{
    unsigned char *p = bench_malloc(size);
    if (p == NULL)
        die_oom(size);
    stamp(p, size, tag_of(i + size));
    ptr[i] = p;
    len[i] = (uint16_t)size;
}

static struct timing run_mixed(uint64_t ops, size_t slots)
{
    /* The table itself comes from libc in both builds: it is setup, not
     * part of what is measured. */
    unsigned char **ptr = calloc(slots, sizeof *ptr);
    uint16_t *len = calloc(slots, sizeof *len);
    if (ptr == NULL || len == NULL)
        die_oom(slots * sizeof *ptr);

    uint64_t rng = seed;
    for (size_t i = 0; i < slots; i++)
        place(ptr, len, i, pick_size(splitmix64(&rng)));

    double c0 = cpu_seconds();
    double t0 = now_seconds();
    for (uint64_t step = 0; step < ops; step++) {
        uint64_t r = splitmix64(&rng);
        /* Lemire's multiply-shift maps 32 random bits onto [0, slots). */
        size_t i = (size_t)(((r & 0xffffffffu) * (uint64_t)slots) >> 32);
        unsigned char *old = ptr[i];
        if (old != NULL) {
            check("mixed", old, len[i], tag_of(i + len[i]));
            bench_free(old);
        }
        place(ptr, len, i, pick_size(r));
    }
    double t1 = now_seconds();
    double c1 = cpu_seconds();

    for (size_t i = 0; i < slots; i++)
        bench_free(ptr[i]);
    free(ptr);
    free(len);
    return (struct timing){t1 - t0, c1 - c0};
}

/* ---- prodcons ------------------------------------------------------- */

/* Lamport's single-producer single-consumer ring. head is written only by
 * the consumer, tail only by the producer, each published every RING_BATCH
 * items (and tail once more at the end). Each side keeps a private copy of
 * the other's index and rereads the shared one only when the ring looks
 * full (producer) or empty (consumer). Release on publish, acquire on
 * observe: the tag bytes the producer wrote are visible to the consumer,
 * and the consumer's reads of a slot happen before the producer reuses it.
 * RING_CAP is a multiple of RING_BATCH, so neither side can wait on an
 * index the other has advanced but not yet published. */
struct ring {
    _Alignas(CACHE_LINE) _Atomic uint64_t head; /* next slot to pop */
    _Alignas(CACHE_LINE) _Atomic uint64_t tail; /* next slot to push */
    _Alignas(CACHE_LINE) void *slot[RING_CAP];
};

static struct ring ring;

struct consumer_arg {
    uint64_t ops;
};

static void *consumer(void *argp)
{
    const struct consumer_arg *arg = argp;
    /* The consumer replays the producer's random stream to know each
     * block's size and tag without carrying them through the ring. */
    uint64_t rng = seed;
    uint64_t head = 0, tail_seen = 0;
    for (uint64_t k = 0; k < arg->ops; k++) {
        int spins = 0;
        while (head == tail_seen) {
            tail_seen = atomic_load_explicit(&ring.tail, memory_order_acquire);
            if (head != tail_seen)
                break;
            if (++spins >= SPINS_BEFORE_YIELD) {
                spins = 0;
                sched_yield();
            }
        }
        unsigned char *p = ring.slot[head & (RING_CAP - 1)];
        head++;
        if (head % RING_BATCH == 0)
            atomic_store_explicit(&ring.head, head, memory_order_release);
        size_t size = pick_size(splitmix64(&rng));
        check("prodcons", p, size, tag_of(k));
        bench_free(p);
    }
    return NULL;
}

static struct timing run_prodcons(uint64_t ops)
{
    struct consumer_arg arg = {ops};
    pthread_t thread;
    atomic_store(&ring.head, 0);
    atomic_store(&ring.tail, 0);

    /* Creating the thread is setup: the consumer just waits on the empty
     * ring until the timed loop starts pushing. */
    int err = pthread_create(&thread, NULL, consumer, &arg);
    if (err != 0) {
        fprintf(stderr, "micro: pthread_create: %s\n", strerror(err));
        exit(1);
    }

    uint64_t rng = seed;
    uint64_t tail = 0, head_seen = 0;
    double c0 = cpu_seconds();
    double t0 = now_seconds();
    for (uint64_t k = 0; k < ops; k++) {
        size_t size = pick_size(splitmix64(&rng));
        unsigned char *p = bench_malloc(size);
        if (p == NULL)
            die_oom(size);
        stamp(p, size, tag_of(k));
        int spins = 0;
        while (tail - head_seen >= RING_CAP) {
            head_seen = atomic_load_explicit(&ring.head, memory_order_acquire);
            if (tail - head_seen < RING_CAP)
                break;
            if (++spins >= SPINS_BEFORE_YIELD) {
                spins = 0;
                sched_yield();
            }
        }
        ring.slot[tail & (RING_CAP - 1)] = p;
        tail++;
        if (tail % RING_BATCH == 0 || tail == ops)
            atomic_store_explicit(&ring.tail, tail, memory_order_release);
    }
    pthread_join(thread, NULL);
    double t1 = now_seconds();
    double c1 = cpu_seconds();
    return (struct timing){t1 - t0, c1 - c0};
}

/* ---- main ----------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: micro [-n OPS] [-s SLOTS] [-S SEED] mixed|prodcons\n"
            "  -n OPS    timed operations (mixed: %llu, prodcons: %llu)\n"
            "  -s SLOTS  mixed: live-block table size (default %lu)\n"
            "  -S SEED   PRNG seed (default 0x%llx)\n"
            "  built for: %s\n",
            MIXED_DEFAULT_OPS, PRODCONS_DEFAULT_OPS, MIXED_DEFAULT_SLOTS,
            (unsigned long long)seed, BENCH_ALLOCATOR);
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (*s == '\0' || *s == '-' || *end != '\0')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t ops = 0, slots = MIXED_DEFAULT_SLOTS;
    int c;
    while ((c = getopt(argc, argv, "n:s:S:h")) != -1) {
        switch (c) {
        case 'n':
            if (parse_u64(optarg, &ops) != 0 || ops == 0)
                goto bad;
            break;
        case 's':
            if (parse_u64(optarg, &slots) != 0 || slots == 0 || slots > UINT32_MAX)
                goto bad;
            break;
        case 'S':
            if (parse_u64(optarg, &seed) != 0)
                goto bad;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            goto bad;
        }
    }
    if (optind + 1 != argc)
        goto bad;

    const char *workload = argv[optind];
    struct timing t;
    if (strcmp(workload, "mixed") == 0) {
        if (ops == 0)
            ops = MIXED_DEFAULT_OPS;
        t = run_mixed(ops, (size_t)slots);
    } else if (strcmp(workload, "prodcons") == 0) {
        if (ops == 0)
            ops = PRODCONS_DEFAULT_OPS;
        t = run_prodcons(ops);
    } else {
        goto bad;
    }

    struct rusage ru;
    long maxrss = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
    printf("workload=%s ops=%llu seconds=%.6f ns_per_op=%.2f maxrss_kib=%ld cpu_per_wall=%.2f\n",
           workload, (unsigned long long)ops, t.wall, t.wall * 1e9 / (double)ops, maxrss,
           t.wall > 0 ? t.cpu / t.wall : 0.0);
    return 0;

bad:
    usage(stderr);
    return 64; /* EX_USAGE */
}
