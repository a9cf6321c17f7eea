/* dlopen_ctor: libraries that allocate while they load.
 *   dlopen_ctor preload LIB   (run with LD_PRELOAD=libneap.so) dlopen LIB,
 *       whose constructor allocates; its blocks must be neap's; a block it
 *       makes is freed here, and dlclose runs its destructor's frees.
 *   dlopen_ctor neap LIBNEAP  (no preload) dlopen libneap.so itself into a
 *       running program: its initial-exec TLS must fit (no "cannot allocate
 *       memory in static TLS block"), its native API must work, and
 *       dlclose must not pull it from under threads that used it.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"

static void *must_sym(void *h, const char *name) {
  void *f = dlsym(h, name);
  if (f == NULL) fprintf(stderr, "dlsym %s: %s\n", name, dlerror());
  return f;
}

static void preloaded(const char *lib) {
  int (*owns)(const void *) = (int (*)(const void *))must_sym(RTLD_DEFAULT, "neap_owns");
  CHECK(owns != NULL);
  if (owns == NULL) return;
  for (int round = 0; round < 20; round++) {
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    CHECK(h != NULL);
    if (h == NULL) {
      fprintf(stderr, "dlopen %s: %s\n", lib, dlerror());
      return;
    }
    const char *(*greeting)(void) = (const char *(*)(void))must_sym(h, "lib_greeting");
    void *(*block)(int) = (void *(*)(int))must_sym(h, "lib_block");
    char *(*copy)(void) = (char *(*)(void))must_sym(h, "lib_copy");
    CHECK(greeting && block && copy);
    if (!(greeting && block && copy)) return;
    CHECK(strcmp(greeting(), "allocated in a constructor") == 0);
    CHECK(owns(greeting()));
    CHECK(owns(block(0)) && owns(block(63)));
    char *c = copy();
    CHECK(owns(c));
    free(c);
    CHECK_EQ(dlclose(h), 0);
  }
}

static void *(*late_malloc)(size_t);
static void (*late_free)(void *);

static void *thread_body(void *arg) {
  (void)arg;
  void *p = late_malloc(100); /* gives this thread a neap cache, destroyed at its exit */
  late_free(p);
  return late_malloc(200);
}

static void loaded_late(const char *libneap) {
  void *h = dlopen(libneap, RTLD_NOW | RTLD_LOCAL);
  CHECK(h != NULL);
  if (h == NULL) {
    fprintf(stderr, "dlopen %s: %s\n", libneap, dlerror());
    return;
  }
  void *(*nmalloc)(size_t) = (void *(*)(size_t))must_sym(h, "neap_malloc");
  void (*nfree)(void *) = (void (*)(void *))must_sym(h, "neap_free");
  int (*owns)(const void *) = (int (*)(const void *))must_sym(h, "neap_owns");
  CHECK(nmalloc && nfree && owns);
  if (!(nmalloc && nfree && owns)) return;
  void *p[1000];
  for (int i = 0; i < 1000; i++) {
    p[i] = nmalloc((size_t)i * 37 + 1);
    CHECK(p[i] != NULL && owns(p[i]));
  }
  for (int i = 0; i < 1000; i++) nfree(p[i]);
  /* Threads with caches, then dlclose: libneap stays (it is NODELETE), so
   * a later thread exit still finds its key destructor. */
  late_malloc = nmalloc;
  late_free = nfree;
  pthread_t t;
  void *r = NULL;
  CHECK(pthread_create(&t, NULL, thread_body, NULL) == 0 && pthread_join(t, &r) == 0 && owns(r));
  CHECK_EQ(dlclose(h), 0);
  CHECK(pthread_create(&t, NULL, thread_body, NULL) == 0 && pthread_join(t, NULL) == 0);
  nfree(r);
  void *g = malloc(100); /* the process's malloc is still glibc's */
  CHECK(!owns(g));
  free(g);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: dlopen_ctor preload LIB | neap LIBNEAP\n");
    return 2;
  }
  if (strcmp(argv[1], "preload") == 0) preloaded(argv[2]);
  else loaded_late(argv[2]);
  return TEST_DONE();
}
