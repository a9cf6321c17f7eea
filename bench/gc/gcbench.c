/* GCBench (Ellis, Kovac, Boehm), in its C form: a stretch tree of depth
 * DEPTH+1 built and dropped; a long-lived tree of depth DEPTH-2 and an
 * array of 500,000 doubles kept throughout; then at each depth d from 4
 * to DEPTH in steps of 2, temporary trees built top-down (filled in after
 * allocation) and bottom-up, as many as make twice the stretch tree's
 * nodes. Nodes are 24 bytes (two links, two ints); the array is
 * pointer-free. The check sums the nodes built and the array's sample. */
#include "gcb.h"

typedef struct node {
  struct node *left, *right;
  int i, j;
} node;

static node *new_node(node *l, node *r) {
  node *n = GCB_ALLOC(sizeof *n);
  n->left = l;
  n->right = r;
  return n;
}

static long tree_size(int depth) { return (1L << (depth + 1)) - 1; }
static long num_iters(int depth, int stretch) { return 2 * tree_size(stretch) / tree_size(depth); }

/* Top-down: the node exists before its children. */
static void populate(int depth, node *n) {
  if (depth <= 0) return;
  n->left = new_node(NULL, NULL);
  n->right = new_node(NULL, NULL);
  populate(depth - 1, n->left);
  populate(depth - 1, n->right);
}

/* Bottom-up: the children exist before the node. */
static node *make_tree(int depth) {
  if (depth <= 0) return new_node(NULL, NULL);
  return new_node(make_tree(depth - 1), make_tree(depth - 1));
}

static void drop(node *n) {
  if (n == NULL) return;
  drop(n->left);
  drop(n->right);
  GCB_FREE(n);
}

static uint64_t run(int max_depth) {
  int stretch = max_depth + 1, long_lived_depth = max_depth - 2;
  uint64_t check = 0;
  node *t = make_tree(stretch);
  check += (uint64_t)tree_size(stretch);
  drop(t);
  node *long_lived = new_node(NULL, NULL);
  populate(long_lived_depth, long_lived);
  enum { ARRAY = 500000 };
  double *array = GCB_ALLOC_ATOMIC(ARRAY * sizeof(double));
  for (int i = 0; i < ARRAY / 2; i++) array[i] = 1.0 / (i + 1);
  for (int i = ARRAY / 2; i < ARRAY; i++) array[i] = 0;
  for (int d = 4; d <= max_depth; d += 2) {
    long iters = num_iters(d, stretch);
    for (long i = 0; i < iters; i++) {
      node *temp = new_node(NULL, NULL);
      populate(d, temp);
      drop(temp);
      temp = make_tree(d);
      drop(temp);
    }
    check += (uint64_t)(2 * iters * tree_size(d));
  }
  if (long_lived == NULL || array[1000] != 1.0 / 1001) check = 0;
  check += (uint64_t)(array[999] * 1e6);
  drop(long_lived);
  GCB_FREE(array);
  return check;
}

int main(int argc, char **argv) { return gcb_main("gcbench", run, argc, argv, 20); }
