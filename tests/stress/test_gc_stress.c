/* The collector under fire: four threads build and drop linked structures
 * while a fifth collects in a loop and the pacer starts cycles of its own.
 *
 * Each builder makes lists of cells of mixed classes. Every cell holds a
 * noscan buffer (sometimes a large one) filled with a pattern from the
 * cell's number; some buffers are grown with neap_gc_realloc, some freed
 * with neap_gc_free and replaced. Every new object must be an object at
 * once (neap_gc_base of it is itself): a thread stopped anywhere in the
 * allocation path, or between the path and its caller, still holds it.
 * Whenever a cycle has ended since the last look, the builder walks its
 * whole list: every cell and buffer still an object, every number and
 * pattern intact. Lost objects show up as a base that is not the object,
 * or as a pattern overwritten by the object that took the slot.
 *
 * NEAP_STRESS_SCALE scales the rounds (as test_stress's).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "neap_gc.h"
#include "test.h"

enum { BUILDERS = 4, CELLS = 12000 };

typedef struct cell {
  struct cell *next;
  unsigned char *data; /* noscan */
  uint32_t size;       /* of data */
  uint32_t n;          /* the cell's number in its list */
  uint64_t tag;        /* builder, round, n */
} cell;

static unsigned rounds = 8;
static _Atomic int stop;
static _Atomic uint64_t lost, corrupt, walks, allocated;

static uint64_t tag_of(unsigned id, unsigned round, uint32_t n) {
  return ((uint64_t)id << 56) | ((uint64_t)round << 32) | n;
}
static unsigned char pattern(uint64_t tag, uint32_t i) { return (unsigned char)(tag * 31u + i * 7u + (tag >> 32)); }

static void fill(unsigned char *d, uint32_t size, uint64_t tag) {
  for (uint32_t i = 0; i < size; i++) d[i] = pattern(tag, i);
}
static bool intact(const unsigned char *d, uint32_t size, uint64_t tag) {
  for (uint32_t i = 0; i < size; i += 13)
    if (d[i] != pattern(tag, i)) return false;
  return size == 0 || d[size - 1] == pattern(tag, size - 1);
}

/* A fresh object must be one at once. */
static void fresh(const void *p) {
  if (p == NULL || neap_gc_base(p) != p) atomic_fetch_add(&lost, 1);
}

static uint32_t buffer_size(uint64_t *x) {
  *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
  uint32_t r = (uint32_t)(*x >> 40);
  if (r % 509 == 0) return 40000 + r % 30000; /* a large object now and then */
  return 8 + r % 600;
}

/* Walks the list from head: every cell and buffer an object, intact. */
static void walk(const cell *head, unsigned id, unsigned round, uint32_t count) {
  uint32_t n = count;
  for (const cell *c = head; c != NULL; c = c->next) {
    n--;
    uint64_t tag = tag_of(id, round, n);
    if (neap_gc_base(c) != c || neap_gc_base(c->data) != c->data) atomic_fetch_add(&lost, 1);
    if (c->n != n || c->tag != tag || !intact(c->data, c->size, tag)) {
      if (atomic_fetch_add(&corrupt, 1) == 0)
        fprintf(stderr, "builder %u round %u: cell %u at %p (of %zu bytes) reads n %u, tag %s; its buffer %p of %u "
                "bytes (an object of %zu) %s\n", id, round, n, (const void *)c, neap_gc_size(c), c->n,
                c->tag == tag ? "right" : "wrong", (void *)c->data, c->size, neap_gc_size(c->data),
                intact(c->data, c->size, tag) ? "intact" : "overwritten");
      return;
    }
  }
  if (n != 0) atomic_fetch_add(&corrupt, 1);
  atomic_fetch_add(&walks, 1);
}

static void *builder(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  uint64_t x = 0x9e3779b97f4a7c15ull * (id + 1);
  neap_gc_stats st;
  for (unsigned round = 0; round < rounds; round++) {
    cell *head = NULL;
    neap_gc_stats_read(&st);
    uint64_t seen = st.cycles;
    for (uint32_t n = 0; n < CELLS; n++) {
      uint64_t tag = tag_of(id, round, n);
      cell *c = neap_gc_malloc(sizeof *c + (n % 5) * 24); /* four classes of cell */
      fresh(c);
      uint32_t size = buffer_size(&x);
      unsigned char *d = neap_gc_malloc_noscan(size);
      fresh(d);
      fill(d, size, tag);
      if (n % 7 == 3) { /* grown in place or moved */
        uint32_t more = size + 1 + size / 2;
        d = neap_gc_realloc(d, more);
        fresh(d);
        fill(d, more, tag);
        size = more;
      } else if (n % 11 == 5) { /* freed early and replaced */
        neap_gc_free(d);
        size = 16 + n % 200;
        d = neap_gc_malloc_noscan(size);
        fresh(d);
        fill(d, size, tag);
      }
      c->data = d;
      c->size = size;
      c->n = n;
      c->tag = tag;
      c->next = head;
      head = c;
      atomic_fetch_add_explicit(&allocated, 1, memory_order_relaxed);
      if (n % 256 == 255) {
        neap_gc_stats_read(&st);
        if (st.cycles != seen) { /* a cycle ended: everything built so far is whole */
          seen = st.cycles;
          walk(head, id, round, n + 1);
        }
      }
    }
    walk(head, id, round, CELLS);
    /* Dropped: the next round's cells reuse its memory. */
  }
  return NULL;
}

static void *collector(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) neap_gc_collect();
  return NULL;
}

static void test_build_and_drop_under_collection(void) {
  neap_gc_stats before, after;
  neap_gc_stats_read(&before);
  pthread_t b[BUILDERS], c;
  atomic_store(&stop, 0);
  pthread_create(&c, NULL, collector, NULL);
  for (unsigned i = 0; i < BUILDERS; i++) pthread_create(&b[i], NULL, builder, (void *)(uintptr_t)i);
  for (unsigned i = 0; i < BUILDERS; i++) pthread_join(b[i], NULL);
  atomic_store(&stop, 1);
  pthread_join(c, NULL);
  neap_gc_stats_read(&after);
  printf("  %llu objects, %llu cycles, %llu list walks after a cycle\n", (unsigned long long)atomic_load(&allocated),
         (unsigned long long)(after.cycles - before.cycles), (unsigned long long)atomic_load(&walks));
  CHECK_EQ(atomic_load(&lost), 0);
  CHECK_EQ(atomic_load(&corrupt), 0);
  CHECK(after.cycles > before.cycles + rounds);
  CHECK(atomic_load(&walks) > (uint64_t)BUILDERS * rounds); /* walks after cycles, not only at round ends */
  /* Dropped structures went: at most the four lists in flight, their
   * buffers and the fragmentation of a busy heap remain. */
  neap_gc_collect();
  neap_gc_collect();
  neap_gc_stats_read(&after);
  CHECK(after.heap_live < (uint64_t)16 << 20);
}

int main(void) {
  const char *s = getenv("NEAP_STRESS_SCALE");
  if (s != NULL && atof(s) > 0) rounds = (unsigned)(rounds * atof(s)) + 1;
  RUN(test_build_and_drop_under_collection);
  return TEST_DONE();
}
