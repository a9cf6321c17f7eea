/* The pause a collection costs per thread that only exists: N threads
 * that met neap (one malloc and free each) and then block, never touching
 * collected memory, while the main thread collects a small heap again and
 * again. With NEAP_GC_THREADS=all (the default) every one of them is
 * stopped and its stack scanned; with =registered none is.
 *
 *   idle_threads [threads [collections]]    (defaults 1000, 50)
 *
 * Prints one line: threads, the mode, threads stopped per collection, and
 * the mean and largest pause.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "neap.h"
#include "neap_gc.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done, ready;

static void *idle(void *arg) {
  (void)arg;
  neap_free(neap_malloc(16)); /* meets neap: a cache, so a thread every stop must catch by default */
  pthread_mutex_lock(&mu);
  ready++;
  pthread_cond_broadcast(&cv);
  while (!done) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return NULL;
}

typedef struct node {
  struct node *next;
  char pad[56];
} node;

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000, cycles = argc > 2 ? atoi(argv[2]) : 50;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 << 10);
  pthread_t *t = neap_malloc((size_t)n * sizeof *t);
  for (int i = 0; i < n; i++)
    if (pthread_create(&t[i], &attr, idle, NULL) != 0) {
      fprintf(stderr, "idle_threads: only %d threads\n", i);
      n = i;
      break;
    }
  pthread_mutex_lock(&mu);
  while (ready < n) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);

  /* A small live heap: 4 MiB of list. */
  static node *volatile head;
  for (int i = 0; i < 65536; i++) {
    node *x = neap_gc_malloc(sizeof *x);
    x->next = head;
    head = x;
  }
  neap_gc_collect();
  neap_gc_stats a, b;
  neap_gc_stats_read(&a);
  uint64_t max = 0;
  for (int i = 0; i < cycles; i++) {
    neap_gc_collect();
    neap_gc_stats_read(&b);
    uint64_t p = b.pause_ns[(b.cycles + 15) % 16];
    if (p > max) max = p;
  }
  neap_gc_stats_read(&b);
  const char *mode = getenv("NEAP_GC_THREADS");
  printf("idle threads %d, NEAP_GC_THREADS=%s: %llu threads stopped per collection, pause mean %.3f ms, max %.3f ms\n",
         n, mode ? mode : "all", (unsigned long long)b.threads_stopped,
         (double)(b.pause_total_ns - a.pause_total_ns) / (double)(b.cycles - a.cycles) / 1e6, (double)max / 1e6);

  pthread_mutex_lock(&mu);
  done = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  return 0;
}
