/* The collector: the object map, every kind of root, explicit frees and
 * realloc mixed with collection, misuse, and threads that build and drop
 * structures while others collect.
 *
 * "Alive" is read through the object map: an object the collector freed is
 * no longer an object (neap_gc_base says NULL) until something allocates
 * its slot again, so the tests hide the pointers they watch (xor a mask,
 * in noscan memory) and allocate nothing of that class between the
 * collection and the look. Conservative scanning may keep an unreachable
 * object alive by a stale word, so the tests of what dies count many
 * objects and allow a few.
 */
#include <pthread.h>
#include <sys/mman.h>

#include "gc.h"
#include "neap.h"
#include "neap_gc.h"
#include "test.h"

#define MASK ((uintptr_t)0x5a5a5a5a5a5a5a5aull)
static uintptr_t hide(const void *p) { return (uintptr_t)p ^ MASK; }
static void *unhide(uintptr_t h) { return (void *)(h ^ MASK); }
/* Out of line, so that the address shown exists only in its frame. */
static NEAP_NOINLINE bool alive(uintptr_t h) { return neap_gc_base(unhide(h)) == unhide(h); }

/* Writes over the stack below the caller, where dead frames left pointers. */
static NEAP_NOINLINE void scrub_stack(void) {
  volatile char buf[16384];
  memset((char *)buf, 0, sizeof buf);
}

/* ---- the object map: every byte of every class */

static void test_object_map(void) {
  for (unsigned kind = NEAP_KIND_GC_SCAN; kind <= NEAP_KIND_GC_NOSCAN; kind++) {
    for (unsigned cls = 1; cls < NEAP_NUM_CLASSES; cls++) {
      size_t size = neap__class_size[cls];
      unsigned n = neap__class_objects[cls];
      /* A span's worth, and then some: every object of at least one span. */
      void **objs = malloc((n + 1) * sizeof *objs);
      for (unsigned i = 0; i <= n; i++)
        objs[i] = kind == NEAP_KIND_GC_SCAN ? neap_gc_malloc(size) : neap_gc_malloc_noscan(size);
      neap_span *s = neap__span_of((uintptr_t)objs[0]);
      if (!CHECK(s != NULL && s->kind == kind && s->sizeclass == cls)) break;
      /* Free every third object of the first span explicitly. */
      for (unsigned i = 0; i <= n; i++)
        if (i % 3 == 1 && neap__span_of((uintptr_t)objs[i]) == s) neap_gc_free(objs[i]);
      unsigned bad = 0;
      for (uintptr_t off = 0; off < neap__span_bytes(s); off++) {
        uintptr_t p = s->base + off;
        unsigned i = (unsigned)(off / size);
        void *want = NULL;
        if (i < n && neap__span_held(s, i)) want = (void *)(s->base + i * size);
        void *got = neap_gc_base((void *)p);
        if (got != want && bad++ < 3)
          fprintf(stderr, "class %u kind %u offset %lu: base %p, want %p\n", cls, kind, (unsigned long)off, got,
                  want);
        if (want != NULL && neap_gc_size((void *)p) != size) bad++;
      }
      CHECK_EQ(bad, 0);
      /* Freed objects are free: the explicit frees took them. */
      unsigned freed = 0;
      for (unsigned i = 0; i <= n; i++)
        if (i % 3 == 1 && neap__span_of((uintptr_t)objs[i]) == s) freed += neap_gc_base(objs[i]) == NULL;
      CHECK(freed >= n / 3);
      free(objs);
    }
  }
  /* Not the collector's: malloc'd memory, the stack, NULL. */
  void *m = neap_malloc(64);
  int local;
  CHECK(neap_gc_base(m) == NULL && !neap_gc_is_heap_ptr(m));
  CHECK(neap_gc_base(&local) == NULL && neap_gc_base(NULL) == NULL && neap_gc_size(&local) == 0);
  neap_free(m);
  /* Large: every page of it is the object. */
  char *big = neap_gc_malloc(200000);
  CHECK(neap_gc_base(big + 199999) == big && neap_gc_base(big + 123456) == big && neap_gc_size(big) >= 200000);
  CHECK(neap_gc_is_heap_ptr(big));
  neap_gc_free(big);
  CHECK(neap_gc_base(big) == NULL);
}

/* ---- zeroing and kinds */

static void test_zero_and_realloc(void) {
  for (int round = 0; round < 3; round++) {
    for (size_t size = 8; size <= 70000; size = size * 3 / 2 + 8) {
      unsigned char *p = neap_gc_malloc(size);
      bool zero = true;
      for (size_t i = 0; i < size; i++) zero &= p[i] == 0;
      CHECK(zero);
      memset(p, 0xab, size);
      p = neap_gc_realloc(p, size * 2);
      CHECK(p[0] == 0xab && p[size - 1] == 0xab);
      CHECK(neap_gc_size(p) >= size * 2);
      char *q = neap_gc_malloc_noscan(size);
      q = neap_gc_realloc(q, size / 2 + 1);
      neap_span *s = neap__span_of((uintptr_t)q);
      CHECK(s != NULL && s->kind == NEAP_KIND_GC_NOSCAN);
    }
    neap_gc_collect();
  }
  CHECK(neap_gc_realloc(NULL, 100) != NULL);
}

/* ---- roots: each kind keeps an object alive; nothing keeps the rest */

static void *static_root;
static __thread void *tls_root;

static NEAP_NOINLINE uintptr_t make_watched(size_t size) { return hide(neap_gc_malloc(size)); }

/* Stores a new object at *where; the caller sees only its hidden address,
 * so no copy of it stays in the caller's registers or frame. */
static NEAP_NOINLINE uintptr_t put(void **where, size_t size) {
  void *p = neap_gc_malloc(size);
  *(void *volatile *)where = p;
  return hide(p);
}

static NEAP_NOINLINE void collect_twice(void) {
  scrub_stack();
  neap_gc_collect();
  neap_gc_collect();
}

/* Keeps p only in a register across a call that collects: alive after. */
static NEAP_NOINLINE bool held_in_register(void) {
  register void *p __asm__("rbx") = neap_gc_malloc(48);
  __asm__ volatile("" : "+r"(p));
  collect_twice();
  __asm__ volatile("" : "+r"(p));
  return neap_gc_base(p) == p;
}

static NEAP_NOINLINE uintptr_t make_chain(void) {
  void **head = neap_gc_malloc(32);
  *(void *volatile *)&static_root = head;
  void **p = head;
  for (int i = 0; i < 1000; i++) {
    p[0] = neap_gc_malloc(32);
    p = p[0];
  }
  return hide(p);
}

/* Keeps an interior pointer only: alive after. */
static NEAP_NOINLINE bool held_by_interior(void) {
  char *volatile inner = (char *)neap_gc_malloc(256) + 100;
  collect_twice();
  return neap_gc_base(inner) == inner - 100;
}

static void test_roots(void) {
  /* A static, TLS, a malloc'd struct, an added range (memory neap does
   * not know), and a chain of 1,000 objects reachable only through each
   * other. */
  void **box = neap_malloc(sizeof(void *) * 4);
  void **range = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uintptr_t t = put(&tls_root, 64);
  uintptr_t m = put(&box[2], 64);
  uintptr_t a = put(&range[3], 64);
  uintptr_t tail = make_chain();
  /* Unreachable: these die. */
  uintptr_t dead[200];
  for (int i = 0; i < 200; i++) dead[i] = make_watched(96);
  neap_gc_add_roots(range, range + 8);

  CHECK(held_in_register());
  CHECK(held_by_interior());
  collect_twice();
  CHECK(alive(t) && alive(m) && alive(a) && alive(tail));
  unsigned died = 0;
  for (int i = 0; i < 200; i++) died += !alive(dead[i]);
  CHECK(died >= 190);

  /* Dropping each root lets its object go. */
  neap_gc_remove_roots(range, range + 8);
  *(void *volatile *)&box[2] = NULL;
  *(void *volatile *)&tls_root = NULL;
  *(void *volatile *)&static_root = NULL;
  collect_twice();
  CHECK(!alive(a));
  CHECK(!alive(m));
  CHECK(!alive(t));
  CHECK(!alive(tail));
  neap_free(box);
  munmap(range, 4096);

  /* neap_malloc_noscan: a malloc'd block that is no root. */
  void **nos = neap_malloc_noscan(64);
  uintptr_t ns = put(&nos[0], 64);
  collect_twice();
  CHECK(!alive(ns));
  nos = neap_realloc(nos, 100000);
  CHECK(neap__span_of((uintptr_t)nos)->noscan);
  neap_free(nos);
}

/* A shared library's static (gc_lib.c). */
void gc_lib_set(void *p);
void *gc_lib_get(void);
static NEAP_NOINLINE uintptr_t set_lib_root(void) {
  void *p = neap_gc_malloc(80);
  gc_lib_set(p);
  return hide(p);
}
static NEAP_NOINLINE void clear_lib_root(void) { gc_lib_set(NULL); }
static void test_shared_library_static(void) {
  uintptr_t h = set_lib_root();
  collect_twice();
  CHECK(alive(h) && gc_lib_get() == unhide(h));
  clear_lib_root();
  collect_twice();
  CHECK(!alive(h));
}

/* ---- threads: a pointer held only by another thread's stack */

static _Atomic int phase;
static _Atomic uintptr_t handed;

static void *holder(void *arg) {
  (void)arg;
  void *p = neap_gc_malloc(128); /* the thread meets neap here */
  atomic_store(&handed, hide(p));
  atomic_store(&phase, 1);
  while (atomic_load(&phase) == 1) usleep(1000); /* blocked in a system call during the stop */
  CHECK(neap_gc_base(p) == p);
  __asm__ volatile("" ::"r"(p));
  return NULL;
}

static void test_other_thread_stack(void) {
  pthread_t t;
  atomic_store(&phase, 0);
  pthread_create(&t, NULL, holder, NULL);
  while (atomic_load(&phase) == 0) usleep(1000);
  collect_twice();
  CHECK(alive(atomic_load(&handed)));
  atomic_store(&phase, 2);
  pthread_join(t, NULL);
}

/* ---- stress: threads build lists, check them after collections, drop them */

typedef struct cell {
  struct cell *next;
  uint64_t value;
  char pad[40];
} cell;

static void *builder(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  for (int round = 0; round < 40; round++) {
    cell *head = NULL;
    uint64_t sum = 0;
    for (int i = 0; i < 20000; i++) {
      cell *c = neap_gc_malloc(sizeof *c + (size_t)(i % 7) * 16);
      c->value = (uint64_t)i * 31 + id;
      c->next = head;
      head = c;
      sum += c->value;
      if (i % 5000 == 0) {
        /* Large objects and noscan ones in the mix. */
        char *big = neap_gc_malloc_noscan(100000);
        big[99999] = 1;
      }
    }
    if (round % 10 == 0) neap_gc_collect();
    uint64_t check = 0;
    unsigned n = 0;
    for (cell *c = head; c != NULL; c = c->next) {
      check += c->value;
      n++;
    }
    CHECK_EQ(n, 20000);
    CHECK_EQ(check, sum);
  }
  return NULL;
}

static void test_threads_build_and_drop(void) {
  pthread_t t[4];
  neap_gc_stats before;
  neap_gc_stats_read(&before);
  for (unsigned i = 0; i < 4; i++) pthread_create(&t[i], NULL, builder, (void *)(uintptr_t)i);
  for (unsigned i = 0; i < 4; i++) pthread_join(t[i], NULL);
  neap_gc_stats after;
  neap_gc_stats_read(&after);
  CHECK(after.cycles > before.cycles + 4);
  /* The heap stayed near its live size: 4 threads x 20,000 cells live at most. */
  CHECK(after.heap_inuse < (uint64_t)64 << 20);
}

/* ---- thread churn and fork while collecting */

static void *short_lived(void *arg) {
  (void)arg;
  void **keep = neap_gc_malloc(64);
  for (int i = 0; i < 2000; i++) keep[i % 8] = neap_gc_malloc(48);
  return NULL;
}

static void *collector_loop(void *arg) {
  (void)arg;
  while (atomic_load(&phase) == 0) neap_gc_collect();
  return NULL;
}

static void test_churn_and_fork(void) {
  pthread_t c;
  atomic_store(&phase, 0);
  pthread_create(&c, NULL, collector_loop, NULL);
  for (int i = 0; i < 60; i++) {
    pthread_t t[3];
    for (int k = 0; k < 3; k++) pthread_create(&t[k], NULL, short_lived, NULL);
    if (i % 10 == 0) {
      fflush(stdout);
      pid_t pid = fork();
      if (pid == 0) {
        /* The child collects alone, and allocates through every path. */
        void **root = neap_gc_malloc(64);
        for (int k = 0; k < 10000; k++) root[k % 8] = neap_gc_malloc(40 + (size_t)k % 300);
        neap_gc_collect();
        _exit(neap_gc_base(root[1]) == root[1] ? 0 : 3);
      }
      int st = 0;
      waitpid(pid, &st, 0);
      CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    for (int k = 0; k < 3; k++) pthread_join(t[k], NULL);
  }
  atomic_store(&phase, 1);
  pthread_join(c, NULL);
}

/* ---- misuse */

static void do_free_collected(void *arg) {
  (void)arg;
  neap_free(neap_gc_malloc(32));
}
static void do_gc_free_malloced(void *arg) {
  (void)arg;
  neap_gc_free(neap_malloc(32));
}
static void do_gc_double_free(void *arg) {
  (void)arg;
  void *p = neap_gc_malloc(32);
  neap_gc_free(p);
  neap_gc_free(p);
}
static void do_gc_interior(void *arg) {
  (void)arg;
  neap_gc_free((char *)neap_gc_malloc(64) + 16);
}
static void do_realloc_collected(void *arg) {
  (void)arg;
  (void)!neap_realloc(neap_gc_malloc(32), 64);
}

static void test_misuse(void) {
  CHECK_ABORTS(do_free_collected, NULL, "neap: free of a collected object");
  CHECK_ABORTS(do_gc_free_malloced, NULL, "neap: neap_gc_free of a pointer that is not a collected object");
  CHECK_ABORTS(do_gc_double_free, NULL, "neap: neap_gc_free of a free object");
  CHECK_ABORTS(do_gc_interior, NULL, "neap: neap_gc_free of an interior pointer");
  CHECK_ABORTS(do_realloc_collected, NULL, "neap: realloc of a collected object");
}

/* ---- pacing: the goal follows GOGC */

static void test_percent(void) {
  int old = neap_gc_set_percent(50);
  CHECK_EQ(neap_gc_set_percent(-1), 50);
  neap_gc_stats s;
  neap_gc_stats_read(&s);
  CHECK_EQ(s.percent, -1);
  CHECK_EQ(s.next_gc, 0); /* off: no goal */
  neap_gc_set_percent(old);
  void **volatile keep = neap_gc_malloc(8 * 1024 * sizeof(void *));
  for (int i = 0; i < 8 * 1024; i++) keep[i] = neap_gc_malloc(1024); /* 8 MiB live */
  neap_gc_collect();
  neap_gc_stats_read(&s);
  unsigned kept = 0;
  for (int i = 0; i < 8 * 1024; i++) kept += neap_gc_base(keep[i]) == keep[i];
  CHECK_EQ(kept, 8 * 1024);
  CHECK(s.heap_live >= (uint64_t)8 << 20);
  /* goal = live + (live + roots) * 100%: a little over twice the live heap. */
  CHECK(s.next_gc >= 2 * s.heap_live && s.next_gc <= 2 * s.heap_live + 2 * s.root_bytes + ((uint64_t)1 << 20));
  CHECK(s.forced >= 1 && s.cycles >= s.forced);
  keep[0] = NULL;
}

int main(void) {
  RUN(test_object_map);
  RUN(test_zero_and_realloc);
  RUN(test_roots);
  RUN(test_shared_library_static);
  RUN(test_other_thread_stack);
  RUN(test_misuse);
  RUN(test_percent);
  RUN(test_threads_build_and_drop);
  RUN(test_churn_and_fork);
  return TEST_DONE();
}
