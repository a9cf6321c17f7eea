/* make demo: neap's heap at work, layer by layer.
 *
 * It allocates through the native API and prints, after each step, what
 * the page heap holds: pages grown from the OS, in use by spans, free, and
 * free-and-untouched (scavenged). The scavenger issue turns this into the
 * real demo (RSS over time against glibc).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "heap.h"
#include "neap.h"

static void show(const char *what) {
  neap_heap_stats s;
  neap__heap_stats(&s);
  printf("  %-44s grown %7.1f MiB  in use %7.1f MiB  free %7.1f MiB (untouched %7.1f MiB)  live %8.1f KiB\n", what,
         (double)s.pages_grown * NEAP_PAGE_SIZE / 1048576.0, (double)s.pages_inuse * NEAP_PAGE_SIZE / 1048576.0,
         (double)s.pages_free * NEAP_PAGE_SIZE / 1048576.0,
         (double)s.pages_scavenged * NEAP_PAGE_SIZE / 1048576.0, (double)neap__heap_live_bytes() / 1024.0);
}

static void describe(const char *label, void *p) {
  neap_span *s = neap__span_of((uintptr_t)p);
  if (s == NULL) return;
  if (s->sizeclass)
    printf("  %-10s %p  class %2u (%5u B objects, %u per %u-page span), span at %#lx\n", label, p, s->sizeclass,
           s->elemsize, s->nelems, s->npages, (unsigned long)s->base);
  else
    printf("  %-10s %p  large: a span of its own, %u pages (%zu KiB)\n", label, p, s->npages,
           neap__span_bytes(s) / 1024);
}

enum { N = 400000 };
static void *objs[N];

static void *consumer(void *arg) {
  (void)arg;
  for (int i = 0; i < N; i += 2) neap_free(objs[i]); /* frees from another thread */
  return NULL;
}

int main(void) {
  printf("neap %s: the Go runtime's allocator design, in C\n\n", NEAP_VERSION);
  printf("Layers: os -> arenas (64 MiB, reserved) -> page allocator (8 KiB pages, 4 MiB chunks,\n"
         "radix summaries) -> spans -> %d size classes -> central lists -> per-thread caches\n\n",
         NEAP_NUM_CLASSES - 1);

  printf("1. A few allocations and where they land:\n");
  void *a = neap_malloc(24), *b = neap_malloc(24), *c = neap_malloc(1000), *d = neap_malloc(100000);
  void *e = neap_aligned_alloc(4096, 5000);
  describe("24 B", a);
  describe("24 B", b);
  describe("1000 B", c);
  describe("100000 B", d);
  describe("4 KiB-al.", e);
  printf("  (same class, same span, neighbours: %s)\n\n", (char *)b - (char *)a == 32 ? "yes" : "no");
  show("after them");
  neap_free(a), neap_free(b), neap_free(c), neap_free(d), neap_free(e);

  printf("\n2. The page heap grows for %d objects of 256 B (%.0f MiB) and shrinks when they go:\n", N,
         N * 256.0 / 1048576.0);
  show("before");
  for (int i = 0; i < N; i++) objs[i] = neap_malloc(256);
  show("allocated");
  pthread_t t;
  pthread_create(&t, NULL, consumer, NULL);
  for (int i = 1; i < N; i += 2) neap_free(objs[i]);
  pthread_join(t, NULL);
  show("all freed (half by another thread)");
  neap_thread_flush();
  neap__central_reclaim();
  show("spans handed back to the page heap");

  printf("\n3. Those pages now serve another size class without growing the heap:\n");
  for (int i = 0; i < N / 8; i++) objs[i] = neap_malloc(1500);
  show("50000 objects of 1500 B");
  for (int i = 0; i < N / 8; i++) neap_free(objs[i]);
  neap_thread_flush();

  printf("\n4. Large objects take spans straight from the page heap and give them back on free:\n");
  void *big = neap_malloc(48u << 20);
  memset(big, 1, 48u << 20);
  show("one 48 MiB object, touched");
  big = neap_realloc(big, 96u << 20);
  show("realloc'd to 96 MiB");
  neap_free(big);
  show("freed");
  printf("\nFree pages stay committed for reuse; the scavenger (next) returns them to the OS.\n");
  return neap__heap_live_bytes() == 0 ? 0 : 1;
}
