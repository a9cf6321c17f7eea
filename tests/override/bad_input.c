/* bad_input MODE: one kind of misuse, for bad_input.sh to run under
 * LD_PRELOAD and judge by exit status and stderr.
 *   double    free the same block twice         -> abort, "neap: double free 0x..."
 *   interior  free a pointer into a block       -> abort, "neap: free of an interior pointer 0x..."
 *   foreign   free, realloc and malloc_usable_size of a stack address and a
 *             static one, then allocate on      -> follows NEAPDEBUG=warnforeign
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char a_static[64];

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  /* The optimiser must not see through the pointers. */
  char *volatile p = malloc(48);
  if (strcmp(argv[1], "double") == 0) {
    printf("%p\n", (void *)p);
    fflush(stdout);
    free(p);
    free(p);
  } else if (strcmp(argv[1], "interior") == 0) {
    printf("%p\n", (void *)(p + 16));
    fflush(stdout);
    char *volatile q = p + 16; /* hidden from -Wfree-nonheap-object: the misuse is the point */
    free(q);
  } else if (strcmp(argv[1], "foreign") == 0) {
    char on_stack[32];
    char *volatile s = on_stack, *volatile st = a_static;
    printf("%p\n", (void *)s);
    fflush(stdout);
    free(s);
    free(st);
    size_t u = malloc_usable_size(s);
    errno = 0;
    void *r = realloc(st, 100);
    int e = errno;
    free(p);
    p = malloc(1000);
    printf("survived usable=%zu realloc=%s errno=%s\n", u, r ? "ptr" : "NULL", e == EINVAL ? "EINVAL" : "other");
  }
  free(p);
  return 0;
}
