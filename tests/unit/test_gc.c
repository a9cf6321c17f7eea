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

/* Objects freed explicitly and taken again from the same span (the
 * owner merges the frees when its window runs dry) come back zeroed, a
 * fresh span's too. In a thread of its own: its windows start empty. */
static void *reuse_after_free(void *arg) {
  (void)arg;
  enum { N = 200 };
  static unsigned char *objs[N];
  unsigned dirty = 0;
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < N; i++) {
      objs[i] = neap_gc_malloc(3000);
      for (size_t k = 0; k < 3000; k += 8) dirty += objs[i][k] != 0;
      memset(objs[i], 0xcd, 3000);
    }
    for (int i = 0; i < N; i++) neap_gc_free(objs[i]);
  }
  return (void *)(uintptr_t)dirty;
}

static void test_zeroed_after_explicit_free(void) {
  pthread_t t;
  void *dirty;
  pthread_create(&t, NULL, reuse_after_free, NULL);
  pthread_join(t, &dirty);
  CHECK_EQ((uintptr_t)dirty, 0);
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
/* (The library's pointer is looked at in a frame of its own: an -O0 build
 * keeps it in the caller's frame otherwise, where it is a root.) */
static NEAP_NOINLINE bool lib_root_is(uintptr_t h) { return gc_lib_get() == unhide(h); }
static void test_shared_library_static(void) {
  uintptr_t h = set_lib_root();
  collect_twice();
  CHECK(alive(h) && lib_root_is(h));
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

/* A pointer only in a vector register of a thread spinning in user code
 * (compilers pack pointer pairs into xmm registers to store them). Not
 * under ThreadSanitizer, which holds a signal back until the thread calls
 * into its runtime: a thread spinning in an asm never answers a stop. */
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
#define TEST_VECTOR_ROOT 1
static _Atomic int xmm_phase;
static void *xmm_holder(void *arg) {
  uintptr_t h = *(uintptr_t *)arg, out;
  neap_gc_register_thread(); /* (it allocates nothing itself) */
  /* The pointer is made inside the asm, kept in xmm5 alone while the
   * thread spins (no call, no system call), and read back at the end. */
  __asm__ volatile("xor %[mask], %[h]\n\t"
                   "movq %[h], %%xmm5\n\t"
                   "xor %[h], %[h]\n\t"
                   "movl $1, %[phase]\n\t"
                   "1: pause\n\t"
                   "cmpl $2, %[phase]\n\t"
                   "jne 1b\n\t"
                   "movq %%xmm5, %[out]"
                   : [out] "=r"(out), [h] "+r"(h), [phase] "+m"(xmm_phase)
                   : [mask] "r"(MASK)
                   : "xmm5", "memory", "cc");
  return (void *)out;
}
static NEAP_NOINLINE uintptr_t new_hidden(size_t n) { return hide(neap_gc_malloc(n)); }

static void test_vector_register_root(void) {
  static uintptr_t h;
  h = new_hidden(96);
  atomic_store(&xmm_phase, 0);
  pthread_t t;
  pthread_create(&t, NULL, xmm_holder, &h);
  while (atomic_load(&xmm_phase) != 1) usleep(1000);
  collect_twice();
  CHECK(alive(h));
  atomic_store(&xmm_phase, 2);
  void *out;
  pthread_join(t, &out);
  CHECK(out == unhide(h));
}
#endif

/* ---- pacing on fake clocks */

#define MIB ((uint64_t)1 << 20)

static void test_pacing_goal(void) {
  /* Go's goal: live + (live + roots) x GOGC/100. */
  CHECK_EQ(neap__gc_goal(100 * MIB, 10 * MIB, 100, 0, 0, false), 100 * MIB + 110 * MIB);
  CHECK_EQ(neap__gc_goal(100 * MIB, 0, 50, 0, 0, false), 150 * MIB);
  CHECK_EQ(neap__gc_goal(100 * MIB, 0, 0, 0, 0, false), 100 * MIB); /* GOGC=0: collect continuously */
  /* The floor: 4 MiB x GOGC/100. */
  CHECK_EQ(neap__gc_goal(0, 0, 100, 0, 0, false), 4 * MIB);
  CHECK_EQ(neap__gc_goal(MIB / 2, 0, 200, 0, 0, false), 8 * MIB);
  /* Off: never for growth. */
  CHECK_EQ(neap__gc_goal(100 * MIB, 0, -1, 0, 0, false), UINT64_MAX);
  /* A limit lowers the goal to what it leaves beside the rest of the
   * heap, less 1/16 for fragmentation, and holds with GOGC off. */
  uint64_t room = 256 * MIB - 56 * MIB;
  CHECK_EQ(neap__gc_goal(100 * MIB, 0, 100, 256 * MIB, 56 * MIB, false), room - room / 16);
  CHECK_EQ(neap__gc_goal(100 * MIB, 0, -1, 256 * MIB, 56 * MIB, false), room - room / 16);
  /* A generous limit changes nothing. */
  CHECK_EQ(neap__gc_goal(100 * MIB, 0, 100, 4096 * MIB, 0, false), 200 * MIB);
  /* A live heap at the limit: the goal stays 1 MiB above it (a cycle per
   * MiB allocated, the death spiral the limiter stops). */
  CHECK_EQ(neap__gc_goal(300 * MIB, 0, 100, 256 * MIB, 0, false), 301 * MIB);
  /* With the limiter on, the limit no longer lowers the goal. */
  CHECK_EQ(neap__gc_goal(300 * MIB, 0, 100, 256 * MIB, 0, true), 600 * MIB);
}

static void test_pacing_limiter(void) {
  const uint64_t ms = 1000000;
  /* Collection at 40% of the CPU, cycle after cycle: never capped. */
  int64_t b = 0;
  bool capped = false;
  for (int i = 0; i < 10000; i++) capped |= neap__gc_bucket(&b, 40 * ms, 60 * ms, 2);
  CHECK(!capped);
  CHECK_EQ(b, 0);
  /* At 60%: the bucket fills by 20 ms a cycle, full at 2 s (2 CPUs): the
   * 100th cycle caps it, not the 99th. */
  b = 0;
  unsigned first = 0;
  for (unsigned i = 1; i <= 200 && first == 0; i++)
    if (neap__gc_bucket(&b, 60 * ms, 40 * ms, 2)) first = i;
  CHECK_EQ(first, 100);
  /* It stays capped while collection dominates, and lets go as soon as
   * the program's own work drains it. */
  CHECK(neap__gc_bucket(&b, 60 * ms, 40 * ms, 2));
  CHECK(!neap__gc_bucket(&b, 10 * ms, 90 * ms, 2));
}

/* One look of the background clock at `now` (ms), with `cpu` ms of
 * process CPU so far and `alloc` bytes counted since the last cycle. */
static unsigned look(neap_gc_clock *c, uint64_t now_ms, uint64_t cpu_ms, uint64_t alloc, uint64_t spans,
                     uint64_t last_gc_ms, long force_ms, long idle_ms) {
  neap_gc_look l = {.now = now_ms * 1000000, .proc = cpu_ms * 1000000, .allocated = alloc, .live = 8 * MIB,
                    .span_bytes = spans, .last_gc = last_gc_ms * 1000000, .force_ms = force_ms,
                    .idle_ms = idle_ms, .enabled = true};
  return neap__gc_clock_step(c, &l);
}

static void test_pacing_clock(void) {
  /* Forced after 2 minutes without a collection, counted from the last
   * one; a busy program (a CPU's worth) that never reaches its goal. */
  neap_gc_clock c = {0};
  unsigned forced_at = 0;
  uint64_t cpu = 0, alloc = 0;
  for (uint64_t t = 1000; t <= 200000 && !forced_at; t += 250) {
    cpu += 250, alloc += 4096;
    if (look(&c, t, cpu, alloc, 64 * MIB, 1000, 120000, 1000) == NEAP_GC_CLOCK_PERIODIC) forced_at = (unsigned)t;
  }
  CHECK(forced_at >= 121000 && forced_at <= 121250);
  /* Off: never. */
  c = (neap_gc_clock){0};
  bool any = false;
  for (uint64_t t = 1000; t <= 400000; t += 250) any |= look(&c, t, t, t, 64 * MIB, 1000, 0, 0) != NEAP_GC_CLOCK_NONE;
  CHECK(!any);
  /* Looks closer than the step count for nothing. */
  c = (neap_gc_clock){0};
  look(&c, 1000, 0, 0, 64 * MIB, 0, 120000, 1000);
  for (uint64_t t = 1001; t < 1200; t++) any |= look(&c, t, 0, 0, 64 * MIB, 0, 120000, 1);
  CHECK(!any);

  /* Idle: busy for 10 s, then quiet. The collection comes once the quiet
   * spell has lasted NEAP_GC_IDLE (1 s), once per spell. */
  c = (neap_gc_clock){0};
  cpu = 0, alloc = 0;
  unsigned idle_at = 0, idles = 0;
  for (uint64_t t = 0; t <= 20000; t += 200) {
    if (t < 10000) cpu += 150, alloc += 65536; /* 75% of a CPU, allocating */
    if (look(&c, t, cpu, alloc, 64 * MIB, 0, 120000, 1000) == NEAP_GC_CLOCK_IDLE) {
      idles++;
      if (!idle_at) idle_at = (unsigned)t;
    }
  }
  CHECK_EQ(idles, 1);
  CHECK(idle_at >= 11000 && idle_at <= 11400);
  /* The program wakes, allocates, sleeps again: a new spell, a new one. */
  for (uint64_t t = 20200; t <= 30000; t += 200) {
    if (t < 22000) cpu += 150, alloc += 65536;
    if (look(&c, t, cpu, alloc, 64 * MIB, 0, 120000, 1000) == NEAP_GC_CLOCK_IDLE) idles++;
  }
  CHECK_EQ(idles, 2);
  /* A program that uses CPU without allocating collected memory is not
   * idle; nor one that allocates without much CPU. */
  c = (neap_gc_clock){0};
  idles = 0;
  cpu = 0, alloc = 0;
  for (uint64_t t = 0; t <= 10000; t += 200) {
    cpu += 100;
    if (look(&c, t, cpu, alloc, 64 * MIB, 0, 120000, 1000) == NEAP_GC_CLOCK_IDLE) idles++;
  }
  for (uint64_t t = 10200; t <= 20000; t += 200) {
    alloc += 4096;
    if (look(&c, t, cpu, alloc, 64 * MIB, 0, 120000, 1000) == NEAP_GC_CLOCK_IDLE) idles++;
  }
  CHECK_EQ(idles, 0);
  /* A heap under 4 MiB is not worth it. */
  c = (neap_gc_clock){0};
  for (uint64_t t = 0; t <= 10000; t += 200)
    if (look(&c, t, 0, 0, 3 * MIB, 0, 120000, 1000) == NEAP_GC_CLOCK_IDLE) idles++;
  CHECK_EQ(idles, 0);
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
  RUN(test_zeroed_after_explicit_free);
  RUN(test_roots);
  RUN(test_shared_library_static);
  RUN(test_other_thread_stack);
#ifdef TEST_VECTOR_ROOT
  RUN(test_vector_register_root);
#endif
  RUN(test_misuse);
  RUN(test_percent);
  RUN(test_pacing_goal);
  RUN(test_pacing_limiter);
  RUN(test_pacing_clock);
  RUN(test_churn_and_fork);
  return TEST_DONE();
}
