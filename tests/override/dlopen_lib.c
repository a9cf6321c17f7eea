/* A library that allocates in its constructor and frees in its
 * destructor: dlopen_ctor loads it under LD_PRELOAD. */
#include <stdlib.h>
#include <string.h>

static char *greeting;
static void *blocks[64];

__attribute__((constructor)) static void lib_init(void) {
  greeting = strdup("allocated in a constructor");
  for (int i = 0; i < 64; i++) blocks[i] = malloc((size_t)(i + 1) * 1000);
}

__attribute__((destructor)) static void lib_fini(void) {
  for (int i = 0; i < 64; i++) free(blocks[i]);
  free(greeting);
}

const char *lib_greeting(void) { return greeting; }
void *lib_block(int i) { return blocks[i]; }
/* A block the caller frees. */
char *lib_copy(void) { return strdup(greeting); }
