/* fork_threads: fork while other threads allocate, under LD_PRELOAD.
 *
 * Four threads allocate, free and hand blocks to each other without pause
 * while the main thread forks 300 times. Every child must be able to
 * allocate and free (its own blocks, blocks the parent made before the
 * fork, blocks the other threads had cached), fork again itself, and exit;
 * one child in three execs /bin/true instead, as shells and make do. A
 * deadlock (a neap lock held across fork) shows as a child killed by the
 * alarm; a corrupt heap as a child that aborts or fails its checks.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"

#define THREADS 4
#define FORKS 100
#define SLOTS 4096

static int (*owns)(const void *);
static _Atomic int stop;
/* NEAP_TEST_ANY_MALLOC=1 runs the test under another malloc, to compare. */
static int anyowns(const void *p) { return p != NULL; }
/* Blocks handed between threads: any thread may free what another made. */
static _Atomic(unsigned char *) shared[SLOTS];

static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static size_t pick_size(uint64_t r) {
  switch (r % 16) {
  case 0: return 40000 + r % 100000; /* large */
  case 1: case 2: return 1024 + r % 16000;
  default: return 1 + r % 512;
  }
}

/* Every block carries its size in its first and last words, and a byte
 * pattern between: a block that a broken heap hands out twice, or
 * overwrites, fails the check when it is freed. */
static void fill(unsigned char *p, size_t n) {
  for (size_t i = sizeof n; i < n - sizeof n; i += 61) p[i] = (unsigned char)((uintptr_t)p >> 4 ^ i);
  memcpy(p, &n, sizeof n);
  memcpy(p + n - sizeof n, &n, sizeof n);
}

static int intact(const unsigned char *p) {
  size_t n, tail;
  memcpy(&n, p, sizeof n);
  if (n < 2 * sizeof n || n > 200000) return 0;
  memcpy(&tail, p + n - sizeof n, sizeof tail);
  for (size_t i = sizeof n; i < n - sizeof n; i += 61)
    if (p[i] != (unsigned char)((uintptr_t)p >> 4 ^ i)) return 0;
  return tail == n;
}

static unsigned char *make(uint64_t *seed) {
  size_t n = pick_size(rnd(seed));
  if (n < 2 * sizeof n) n = 2 * sizeof n;
  unsigned char *p = malloc(n);
  if (p == NULL) abort();
  fill(p, n);
  return p;
}

static void *worker(void *arg) {
  uint64_t seed = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
  unsigned char *own[256] = {0};
  while (!atomic_load(&stop)) {
    uint64_t r = rnd(&seed);
    unsigned i = (unsigned)(r >> 8) % 256;
    if (own[i]) {
      if (!intact(own[i])) abort();
      free(own[i]);
    }
    own[i] = make(&seed);
    if (r % 4 == 0) { /* hand one over: the other threads free it */
      unsigned char *old = atomic_exchange(&shared[(r >> 20) % SLOTS], make(&seed));
      if (old) {
        if (!intact(old)) abort();
        free(old);
      }
    }
  }
  for (unsigned i = 0; i < 256; i++) free(own[i]);
  return NULL;
}

/* What a child does: allocate and free a lot, including the parent's
 * blocks, and check them. */
static void child_work(unsigned char **mine, size_t nmine, int depth) {
  uint64_t seed = (uint64_t)getpid() * 7919u + (uint64_t)depth;
  for (size_t i = 0; i < nmine; i++) {
    if (!intact(mine[i]) || !owns(mine[i])) _exit(10);
    free(mine[i]);
  }
  for (unsigned k = 0; k < SLOTS; k += 7) { /* blocks other threads made */
    unsigned char *p = atomic_exchange(&shared[k], NULL);
    if (p) {
      if (!intact(p)) _exit(11);
      free(p);
    }
  }
  unsigned char *local[512] = {0};
  for (int round = 0; round < 1000; round++) {
    unsigned i = (unsigned)rnd(&seed) % 512;
    if (local[i]) {
      if (!intact(local[i])) _exit(12);
      free(local[i]);
    }
    local[i] = make(&seed);
    if (!owns(local[i])) _exit(13);
  }
  char *s = realloc(strdup("grow me"), 100000);
  if (s == NULL || strcmp(s, "grow me") != 0) _exit(14);
  free(s);
  for (unsigned i = 0; i < 512; i++) free(local[i]);
}

int main(void) {
  owns = (int (*)(const void *))dlsym(RTLD_DEFAULT, "neap_owns");
  if (owns == NULL && getenv("NEAP_TEST_ANY_MALLOC")) owns = anyowns; /* to compare */
  if (owns == NULL) {
    fprintf(stderr, "fork_threads: neap_owns not found: run me with LD_PRELOAD=libneap.so\n");
    return 1;
  }
  pthread_t t[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(i + 1));
  uint64_t seed = 42;
  int bad = 0, execs = 0, grandchildren = 0;
  for (int f = 0; f < FORKS; f++) {
    unsigned char *mine[16];
    for (int i = 0; i < 16; i++) mine[i] = make(&seed);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      bad++;
      break;
    }
    if (pid == 0) {
      alarm(30);
      if (f % 3 == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(20);
      }
      child_work(mine, 16, 1);
      pid_t g = fork(); /* the child forks too, with no other thread */
      if (g == 0) {
        child_work(NULL, 0, 2);
        _exit(0);
      }
      int gs = 0;
      if (g < 0 || waitpid(g, &gs, 0) != g || !WIFEXITED(gs) || WEXITSTATUS(gs) != 0) _exit(15);
      exit(0); /* atexit handlers and stdio flush run, allocating */
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      bad++;
      if (WIFSIGNALED(st)) fprintf(stderr, "fork %d: child died of signal %d\n", f, WTERMSIG(st));
      else fprintf(stderr, "fork %d: child exited with %d\n", f, WEXITSTATUS(st));
    } else if (f % 3 == 0) {
      execs++;
    } else {
      grandchildren++;
    }
    for (int i = 0; i < 16; i++) free(mine[i]);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  for (unsigned k = 0; k < SLOTS; k++) free(atomic_exchange(&shared[k], NULL));
  CHECK_EQ(bad, 0);
  CHECK_EQ(execs + grandchildren, FORKS);
  printf("forks %d (exec %d, allocate and fork again %d)\n", FORKS, execs, grandchildren);
  return TEST_DONE();
}
