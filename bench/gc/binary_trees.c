/* binary-trees (the benchmarks game): at each depth d from 4 to DEPTH in
 * steps of 2, 2^(DEPTH-d+4) trees of depth d are built, walked and
 * dropped, while one tree of depth DEPTH lives throughout; a tree of depth
 * DEPTH+1 is built and dropped first ("stretch"). Many short-lived 24-byte
 * nodes: the allocation rate is what it measures. The check is the sum of
 * the node counts. */
#include "gcb.h"

typedef struct node {
  struct node *left, *right;
  long item;
} node;

static node *make(int depth) {
  node *n = GCB_ALLOC(sizeof *n);
  n->item = depth;
  if (depth > 0) {
    n->left = make(depth - 1);
    n->right = make(depth - 1);
  } else {
    n->left = n->right = NULL;
  }
  return n;
}

static uint64_t count(const node *n) { return n->left ? 1 + count(n->left) + count(n->right) : 1; }

static void drop(node *n) {
  if (n->left) {
    drop(n->left);
    drop(n->right);
  }
  GCB_FREE(n);
}

static uint64_t run(int max_depth) {
  uint64_t check = 0;
  node *stretch = make(max_depth + 1);
  check += count(stretch);
  drop(stretch);
  node *long_lived = make(max_depth);
  for (int d = 4; d <= max_depth; d += 2) {
    long iterations = 1L << (max_depth - d + 4);
    for (long i = 0; i < iterations; i++) {
      node *t = make(d);
      check += count(t);
      drop(t);
    }
  }
  check += count(long_lived);
  drop(long_lived);
  return check;
}

int main(int argc, char **argv) { return gcb_main("binary-trees", run, argc, argv, 20); }
