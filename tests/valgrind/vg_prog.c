/* vg_prog MODE: a program for memcheck, through neap's native API (linked
 * with a NEAP_VALGRIND build of libneap.a) or, built with -DVG_LIBC,
 * through malloc and free (for a NEAP_VALGRIND libneap.so preloaded).
 *   clean   every kind of allocation, threads, frees: memcheck must find
 *           nothing (no error, nothing lost);
 *   uaf     reads a byte of a freed block: memcheck must report it, with
 *           the block's allocation and free;
 *   leak    drops the last pointer to a live block of 1000 bytes:
 *           memcheck must call it definitely lost.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef VG_LIBC
#define M(n) malloc(n)
#define C(n, s) calloc(n, s)
#define R(p, n) realloc(p, n)
#define F(p) free(p)
#define A(a, n) aligned_alloc(a, n)
#else
#include "neap.h"
#define M(n) neap_malloc(n)
#define C(n, s) neap_calloc(n, s)
#define R(p, n) neap_realloc(p, n)
#define F(p) neap_free(p)
#define A(a, n) neap_aligned_alloc(a, n)
#endif

static void *volatile sink; /* keeps the compiler from seeing through */

static void *worker(void *arg) {
  void *mine[500];
  for (int i = 0; i < 500; i++) {
    mine[i] = M((size_t)(16 + i * 7));
    memset(mine[i], i, (size_t)(16 + i * 7));
  }
  for (int i = 0; i < 500; i += 2) F(mine[i]);
  void **out = arg;
  for (int i = 1; i < 500; i += 2) out[i / 2] = mine[i]; /* freed by main: remote frees */
  return NULL;
}

static int clean(void) {
  static void *v[3000];
  long sum = 0;
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 3000; i++) {
      size_t n = (size_t)(i % 7 == 0 ? 40000 + i : 8 + (i * 13) % 2000);
      v[i] = i % 5 == 0 ? C(1, n) : i % 11 == 0 ? A(256, n) : M(n);
      memset(v[i], 1, n);
    }
    for (int i = 0; i < 3000; i += 3) {
      v[i] = R(v[i], (size_t)(100 + i * 5));
      sum += ((unsigned char *)v[i])[0]; /* kept by realloc */
    }
    for (int i = 0; i < 3000; i++) F(v[i]);
  }
  void *handed[250];
  pthread_t t;
  pthread_create(&t, NULL, worker, handed);
  pthread_join(t, NULL);
  for (int i = 0; i < 250; i++) F(handed[i]);
  return sum > 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "clean") == 0) return clean();
  if (strcmp(mode, "uaf") == 0) {
    unsigned char *p = M(100);
    memset(p, 7, 100);
    sink = p; /* the program's dangling pointer */
    F(p);
    printf("read after free: %d\n", ((unsigned char *)sink)[50]);
    return 0;
  }
  if (strcmp(mode, "leak") == 0) {
    void *p = M(1000);
    memset(p, 3, 1000);
    sink = p;
    sink = NULL; /* the last pointer to it is gone */
    return clean();
  }
  fprintf(stderr, "usage: %s clean|uaf|leak\n", argv[0]);
  return 2;
}
