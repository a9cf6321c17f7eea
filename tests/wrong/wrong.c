/* wrong CASE: commits one heap misuse through the standard malloc API, so
 * that the same program shows what neap (LD_PRELOAD=libneap.so), glibc
 * and mimalloc do with it (compare.sh; README's misuse table).
 *
 * On stdout: first the pointer the misuse is about ("ptr 0x..."), then
 * what the program saw afterwards, one "saw: ..." line (for the misuses
 * an allocator may survive). run.sh checks neap's outcome for each case:
 * an abort with one line "neap: <what> <pointer>", or the documented
 * silent outcome, and in every case a heap that still works.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Calls through volatile pointers: the compiler cannot see the misuse. */
static void *(*volatile xmalloc)(size_t) = malloc;
static void (*volatile xfree)(void *) = free;
static void *(*volatile xrealloc)(void *, size_t) = realloc;
static size_t (*volatile xusable)(void *) = malloc_usable_size;
static void (*volatile xfree_sized)(void *, size_t);

static void say_ptr(const void *p) {
  printf("ptr %p\n", p);
  fflush(stdout);
}

__attribute__((format(printf, 1, 2))) static void saw(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("saw: ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
}

static int by_address(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return x < y ? -1 : x > y;
}

/* After a misuse the allocator survived: many blocks of one size, all
 * live at once: none handed out twice, all still holding their data. */
static void heap_still_works(size_t size) {
  enum { N = 4000 };
  static unsigned char *b[N], *sorted[N];
  int dup = 0, bad = 0;
  for (int i = 0; i < N; i++) {
    b[i] = xmalloc(size);
    memset(b[i], i & 0xff, size);
  }
  for (int i = 0; i < N; i++)
    for (size_t k = 0; k < size; k++)
      if (b[i][k] != (unsigned char)(i & 0xff)) bad++;
  memcpy(sorted, b, sizeof b);
  qsort(sorted, N, sizeof sorted[0], by_address);
  for (int i = 0; i + 1 < N; i++) dup += sorted[i] == sorted[i + 1];
  for (int i = 0; i < N; i++) xfree(b[i]);
  saw("heap works: %d blocks handed out twice, %d bytes changed", dup, bad);
}

static void double_free(size_t size) {
  void *keep = xmalloc(size), *p = xmalloc(size), *guard = xmalloc(size);
  say_ptr(p);
  xfree(p);
  xfree(p);
  heap_still_works(size);
  xfree(keep);
  xfree(guard);
}

static volatile unsigned long handler_runs;
static void on_alarm(int s) {
  (void)s;
  void *a = xmalloc(64), *b = xmalloc(64);
  memset(a, 0xa1, 64);
  memset(b, 0xb2, 64);
  xfree(a);
  xfree(b);
  handler_runs++;
}

static void *allocate_forever(void *arg) {
  (void)arg;
  void *keep[64] = {0};
  for (unsigned i = 0;; i++) {
    xfree(keep[i % 64]);
    keep[i % 64] = xmalloc(16 + (i * 37) % 4000);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s CASE\n", argv[0]);
    return 2;
  }
  const char *c = argv[1];
  xfree_sized = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized"); /* C23; glibc 2.36 has none */
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!strcmp(c, "double-free-small")) {
    double_free(32);
  } else if (!strcmp(c, "double-free-medium")) {
    double_free(20000);
  } else if (!strcmp(c, "double-free-large")) {
    double_free(200000);
  } else if (!strcmp(c, "double-free-aligned")) {
    void *p = aligned_alloc(4096, 100);
    say_ptr(p);
    xfree(p);
    xfree(p);
    heap_still_works(100);
  } else if (!strcmp(c, "double-free-after-reuse-of-others")) {
    /* p goes back to its span (10,000 other frees spill the stacks). */
    static void *o[10000];
    void *p = xmalloc(32);
    for (int i = 0; i < 10000; i++) o[i] = xmalloc(32);
    xfree(p);
    for (int i = 0; i < 10000; i++) xfree(o[i]);
    say_ptr(p);
    xfree(p);
    heap_still_works(32);
  } else if (!strcmp(c, "double-free-after-release")) {
    void *keep = xmalloc(20000), *p = xmalloc(20000);
    xfree(p);
    malloc_trim(0); /* neap_release in the drop-in library */
    say_ptr(p);
    xfree(p);
    heap_still_works(20000);
    xfree(keep);
  } else if (!strcmp(c, "double-free-after-reuse")) {
    /* The memory was handed out again before the second free: the second
     * free frees the new owner's block. No allocator can tell. */
    void *p = xmalloc(48);
    xfree(p);
    void *q = xmalloc(48);
    say_ptr(p);
    xfree(p);
    void *r = xmalloc(48);
    saw("the block that reused the memory %s freed by the second free", r == q ? "was" : "was not");
    (void)q;
  } else if (!strcmp(c, "interior-pointer")) {
    char *p = xmalloc(64);
    say_ptr(p + 16);
    xfree(p + 16);
    heap_still_works(64);
  } else if (!strcmp(c, "never-handed-out")) {
    /* An object of a span that was never allocated: far past p in p's span. */
    char *p = xmalloc(32);
    say_ptr(p + 32 * 100);
    xfree(p + 32 * 100);
    heap_still_works(32);
  } else if (!strcmp(c, "misaligned")) {
    char *p = xmalloc(32);
    say_ptr(p + 1);
    xfree(p + 1);
    heap_still_works(32);
  } else if (!strcmp(c, "foreign")) {
    static char data[256] __attribute__((aligned(64)));
    char stack[256] __attribute__((aligned(64)));
    char *m = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    say_ptr(data + 64);
    xfree(data + 64);
    xfree(stack + 64);
    xfree(m);
    saw("free of static, stack and mmap memory returned");
    heap_still_works(32);
  } else if (!strcmp(c, "realloc-freed")) {
    void *p = xmalloc(32);
    xfree(p);
    say_ptr(p);
    void *q = xrealloc(p, 100);
    saw("realloc returned %p", q);
  } else if (!strcmp(c, "usable-size-freed")) {
    void *p = xmalloc(32);
    xfree(p);
    say_ptr(p);
    size_t n = xusable(p);
    saw("usable size %zu", n);
  } else if (!strcmp(c, "free-sized-wrong")) {
    void *p = xmalloc(100);
    say_ptr(p);
    if (xfree_sized == NULL) {
      saw("no free_sized in this allocator");
      return 0;
    }
    xfree_sized(p, 5000);
    heap_still_works(100);
  } else if (!strcmp(c, "write-after-free-head")) {
    /* The first 16 bytes of a freed block, then the allocations that
     * reuse it. */
    void *a = xmalloc(32), *p = xmalloc(32);
    xfree(a);
    xfree(p);
    say_ptr(p);
    memset(p, 'A', 16);
    heap_still_works(32);
  } else if (!strcmp(c, "write-after-free-body")) {
    unsigned char *p = xmalloc(64);
    xfree(p);
    say_ptr(p);
    memset(p + 16, 'B', 16);
    unsigned char *q = xmalloc(64);
    saw("the next block %s the freed one, byte 16 is '%c'", q == p ? "is" : "is not", q[16]);
    heap_still_works(64);
  } else if (!strcmp(c, "overflow-into-live")) {
    unsigned char *p = xmalloc(24), *q = xmalloc(24);
    memset(q, 'q', 24);
    say_ptr(q);
    memset(p + 24, 'X', 32); /* 32 bytes past p's 24 */
    int changed = 0;
    for (int i = 0; i < 24; i++) changed += q[i] != 'q';
    saw("the neighbour's bytes changed: %d of 24", changed);
    xfree(p);
    xfree(q);
    heap_still_works(24);
  } else if (!strcmp(c, "overflow-into-free")) {
    unsigned char *p = xmalloc(24), *q = xmalloc(24);
    xfree(q); /* the neighbour is free, on the free list */
    say_ptr(q);
    memset(p + 24, 'X', 32);
    heap_still_works(24);
    xfree(p);
  } else if (!strcmp(c, "fork-child-frees")) {
    pthread_t t;
    pthread_create(&t, NULL, allocate_forever, NULL);
    int ok = 0;
    for (int round = 0; round < 100; round++) {
      void *pre[100];
      for (int i = 0; i < 100; i++) pre[i] = xmalloc(16 + (size_t)i * 50);
      pid_t pid = fork();
      if (pid == 0) {
        alarm(10);
        for (int i = 0; i < 100; i++) xfree(pre[i]);
        for (int i = 0; i < 1000; i++) {
          void *x = xmalloc(16 + (size_t)i * 7);
          memset(x, 1, 16 + (size_t)i * 7);
          xfree(x);
        }
        _exit(0);
      }
      int st;
      waitpid(pid, &st, 0);
      ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
      for (int i = 0; i < 100; i++) xfree(pre[i]);
    }
    saw("%d of 100 children freed their parent's blocks and exited normally", ok);
  } else if (!strcmp(c, "signal-handler-reentry")) {
    /* malloc and free in a handler that interrupts malloc and free. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 100}, {0, 100}};
    setitimer(ITIMER_REAL, &it, NULL);
    unsigned char *slot[16] = {0};
    unsigned long corrupt = 0;
    time_t end = time(NULL) + 3;
    for (unsigned long i = 0; time(NULL) < end; i++) {
      unsigned k = (unsigned)(i % 16);
      if (slot[k]) {
        for (int j = 0; j < 64; j++) corrupt += slot[k][j] != (unsigned char)(k + 1);
        xfree(slot[k]);
      }
      slot[k] = xmalloc(64);
      memset(slot[k], (int)k + 1, 64);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    saw("3 s with %lu handler runs, %lu bytes of live blocks changed", handler_runs, corrupt);
  } else {
    fprintf(stderr, "unknown case %s\n", c);
    return 2;
  }
  printf("end\n");
  return 0;
}
