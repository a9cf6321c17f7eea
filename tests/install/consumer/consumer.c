/* A program built against the installed neap. */
#include <neap.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  char *p = neap_malloc(100);
  if (p == NULL || !neap_owns(p)) return 1;
  strcpy(p, "hello from an installed neap");
  if (neap_usable_size(p) < 100) return 1;
  printf("%s (%s)\n", p, NEAP_VERSION);
  neap_free(p);
  return 0;
}
