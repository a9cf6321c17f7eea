/* A shared library whose static data holds a collected pointer (test_gc):
 * the collector must scan every loaded object's writable segments. The
 * variable is static, reached through functions, so that no copy
 * relocation moves it into the executable. */
void gc_lib_set(void *p);
void *gc_lib_get(void);

static void *root;
void gc_lib_set(void *p) { root = p; }
void *gc_lib_get(void) { return root; }
