/* wl_bignum.c: many tiny short-lived objects, single-threaded.
 *
 * Models cfrac / espresso style programs (the classic allocator benchmarks):
 * big-number arithmetic where every number is a linked list of digits, one
 * malloc'd 16-byte node {next, digit in base 10^4, tag} per digit, least
 * significant first.  Every operation builds a new list and the caller drops
 * the operands it no longer needs, so nearly every allocation is a 16-byte
 * node that lives for microseconds; long division also mallocs a small digit
 * array per call.  There is no free list of our own: every node is malloc'd
 * and freed.  Three phases:
 *   1. Fibonacci numbers F(1..n), Cassini's identity checked now and then
 *      (big schoolbook multiplications: lists of ~1000 nodes);
 *   2. factorials 1!..m! (one long list rebuilt at every step);
 *   3. cfrac's inner loop: the continued-fraction expansion of sqrt(N) for a
 *      40-digit N, with the convergent numerators A(k) mod N and the identity
 *      A(k-1)^2 = (-1)^k d(k) (mod N) checked at every step (small numbers,
 *      long division by binary search: huge numbers of 1..20-node lists).
 * -s scales phase 3 linearly and the n of phases 1-2 by sqrt(s) (their cost
 * is quadratic), so the work is about proportional to -s.  -t is ignored.
 *
 * Timed (work_s): the three phases, setup of N included (negligible).
 * Check: FNV of the digits of F(n), m!, every partial quotient a(k) and
 * d(k) of phase 3, and the number of nodes allocated (all allocator
 * independent).  Every node carries a tag (digit ^ constant) checked when
 * it is freed, and the arithmetic identities above are checked: a mismatch
 * exits 2 with "heap corruption".
 * Extra keys: nodes= (node mallocs), rss_peak_kib= (getrusage ru_maxrss).
 */
#define _GNU_SOURCE
#include "wl.h"

#include <sys/resource.h>

#define BASE 10000u
#define TAG 0x6e656170u

typedef struct node {
  struct node *next;
  uint32_t d, tag;
} node;

static uint64_t g_nodes;

static node *nd(uint32_t d, node *next) {
  node *n = wl_xmalloc(sizeof *n);
  n->next = next;
  n->d = d;
  n->tag = d ^ TAG;
  g_nodes++;
  return n;
}

/* Numbers: NULL is zero; no zero node at the most significant end. */
static void nfree(node *a) {
  while (a) {
    node *n = a->next;
    if (a->d >= BASE || a->tag != (a->d ^ TAG)) wl_corrupt("node tag");
    free(a);
    a = n;
  }
}

static size_t nlen(const node *a) {
  size_t n = 0;
  for (; a; a = a->next) n++;
  return n;
}

static node *ncopy(const node *a) {
  node *r = NULL, **t = &r;
  for (; a; a = a->next) {
    *t = nd(a->d, NULL);
    t = &(*t)->next;
  }
  return r;
}

static node *nsmall(uint64_t v) {
  node *r = NULL, **t = &r;
  while (v) {
    *t = nd((uint32_t)(v % BASE), NULL);
    t = &(*t)->next;
    v /= BASE;
  }
  return r;
}

static int ncmp(const node *a, const node *b) {
  int res = 0;
  while (a && b) {
    if (a->d != b->d) res = a->d > b->d ? 1 : -1;
    a = a->next;
    b = b->next;
  }
  if (a) return 1;
  if (b) return -1;
  return res;
}

static node *nadd(const node *a, const node *b) {
  node *r = NULL, **t = &r;
  uint32_t c = 0;
  while (a || b || c) {
    uint32_t s = c;
    if (a) s += a->d, a = a->next;
    if (b) s += b->d, b = b->next;
    c = s >= BASE;
    *t = nd(c ? s - BASE : s, NULL);
    t = &(*t)->next;
  }
  return r;
}

/* Drops most significant zero nodes. */
static node *nnorm(node *r) {
  node **cut = &r;
  for (node **p = &r; *p; p = &(*p)->next)
    if ((*p)->d) cut = &(*p)->next;
  nfree(*cut);
  *cut = NULL;
  return r;
}

/* a - b, a >= b. */
static node *nsub(const node *a, const node *b) {
  node *r = NULL, **t = &r;
  uint32_t borrow = 0;
  while (a) {
    uint32_t x = a->d, y = borrow + (b ? b->d : 0);
    borrow = x < y;
    *t = nd(borrow ? x + BASE - y : x - y, NULL);
    t = &(*t)->next;
    a = a->next;
    if (b) b = b->next;
  }
  if (b || borrow) wl_corrupt("subtraction underflow");
  return nnorm(r);
}

static node *nmul_small(const node *a, uint32_t k) {
  if (!k) return NULL;
  node *r = NULL, **t = &r;
  uint64_t c = 0;
  while (a || c) {
    uint64_t s = c;
    if (a) s += (uint64_t)a->d * k, a = a->next;
    *t = nd((uint32_t)(s % BASE), NULL);
    t = &(*t)->next;
    c = s / BASE;
  }
  return r;
}

/* Schoolbook: one shifted partial product and one new sum per digit of b. */
static node *nmul(const node *a, const node *b) {
  node *r = NULL;
  for (size_t i = 0; b; b = b->next, i++) {
    node *p = nmul_small(a, b->d);
    if (!p) continue;
    for (size_t j = 0; j < i; j++) p = nd(0, p);
    node *s = nadd(r, p);
    nfree(r);
    nfree(p);
    r = s;
  }
  return r;
}

/* Long division, b != 0: quotient digits found by binary search, each try a
   temporary product list. */
static node *ndivmod(const node *a, const node *b, node **rem) {
  if (!b) wl_corrupt("division by zero");
  size_t n = nlen(a);
  uint32_t *dig = wl_xmalloc((n ? n : 1) * sizeof *dig);
  size_t i = n;
  for (const node *p = a; p; p = p->next) dig[--i] = p->d;
  node *q = NULL, *r = NULL;
  for (i = 0; i < n; i++) {
    if (r || dig[i]) r = nd(dig[i], r);
    uint32_t qd = 0;
    if (ncmp(r, b) >= 0) {
      uint32_t lo = 1, hi = BASE - 1;
      while (lo < hi) {
        uint32_t mid = (lo + hi + 1) / 2;
        node *t = nmul_small(b, mid);
        int c = ncmp(t, r);
        nfree(t);
        if (c <= 0)
          lo = mid;
        else
          hi = mid - 1;
      }
      qd = lo;
      node *t = nmul_small(b, qd);
      node *r2 = nsub(r, t);
      nfree(t);
      nfree(r);
      r = r2;
    }
    if (q || qd) q = nd(qd, q);
  }
  free(dig);
  if (ncmp(r, b) >= 0) wl_corrupt("remainder too large");
  if (rem)
    *rem = r;
  else
    nfree(r);
  return q;
}

static node *nmod(const node *a, const node *m) {
  node *r;
  nfree(ndivmod(a, m, &r));
  return r;
}

static uint64_t nmix(uint64_t h, const node *a) {
  size_t n = 0;
  for (; a; a = a->next, n++) h = wl_mix(h, a->d);
  return wl_mix(h, n);
}

/* floor(sqrt(n)), Newton from above. */
static node *nisqrt(const node *n) {
  if (!n) return NULL;
  node *x = nd(1, NULL);
  for (size_t k = (nlen(n) + 1) / 2; k; k--) x = nd(0, x); /* BASE^ceil(len/2) > sqrt(n) */
  node *two = nsmall(2);
  for (;;) {
    node *q = ndivmod(n, x, NULL);
    node *s = nadd(x, q);
    node *y = ndivmod(s, two, NULL);
    nfree(q);
    nfree(s);
    if (ncmp(y, x) >= 0) {
      nfree(y);
      break;
    }
    nfree(x);
    x = y;
  }
  nfree(two);
  return x;
}

static uint64_t phase_fib(long n) {
  node *a = NULL, *b = nsmall(1); /* F(0), F(1) */
  uint64_t h = WL_CHECK_INIT;
  node *one = nsmall(1);
  for (long k = 2; k <= n; k++) {
    node *c = nadd(a, b); /* F(k) */
    if (k % 2000 == 0) {  /* Cassini: F(k-2) F(k) - F(k-1)^2 = (-1)^(k-1) */
      node *l = nmul(a, c), *r = nmul(b, b);
      node *d = (k % 2) ? nsub(l, r) : nsub(r, l);
      if (ncmp(d, one) != 0) wl_corrupt("Cassini identity");
      nfree(l);
      nfree(r);
      nfree(d);
    }
    nfree(a);
    a = b;
    b = c;
  }
  h = nmix(h, b);
  nfree(a);
  nfree(b);
  nfree(one);
  return h;
}

static uint64_t phase_fact(long m) {
  node *f = nsmall(1);
  uint64_t h = WL_CHECK_INIT;
  for (long k = 2; k <= m; k++) {
    node *g = nmul_small(f, (uint32_t)k);
    nfree(f);
    f = g;
    if (k % 500 == 0) h = wl_mix(h, nlen(f));
  }
  h = nmix(h, f);
  nfree(f);
  return h;
}

static uint64_t phase_cfrac(long steps, uint64_t seed) {
  uint64_t h = WL_CHECK_INIT;
  /* N: 40 decimal digits from the seed, not a perfect square. */
  node *N = NULL;
  uint64_t rs = seed * 0x9e3779b97f4a7c15ull + 12345;
  for (int i = 0; i < 10; i++) { /* most significant digit first */
    uint32_t v = (uint32_t)(wl_rand(&rs) % BASE);
    if (i == 0 && v < 1000) v += 1000;
    N = nd(v, N);
  }
  node *a0 = nisqrt(N);
  {
    node *sq = nmul(a0, a0);
    if (ncmp(sq, N) == 0) { /* perfect square: use N + 1 */
      node *one = nsmall(1), *n1 = nadd(N, one);
      nfree(one);
      nfree(N);
      N = n1;
    }
    nfree(sq);
  }
  node *m = NULL, *d = nsmall(1), *a = ncopy(a0);
  node *Aprev = nsmall(1), *A = nmod(a0, N); /* A(-1), A(0) */
  for (long k = 1; k <= steps; k++) {
    node *t = nmul(d, a);
    node *m2 = nsub(t, m); /* m(k) = d a - m */
    nfree(t);
    nfree(m);
    m = m2;
    t = nmul(m, m);
    node *u = nsub(N, t); /* d(k) = (N - m^2) / d(k-1), exact */
    nfree(t);
    node *r;
    node *d2 = ndivmod(u, d, &r);
    nfree(u);
    if (r) wl_corrupt("inexact division");
    nfree(d);
    d = d2;
    /* A(k-1)^2 mod N must be d(k) (k even) or N - d(k) (k odd). */
    t = nmul(A, A);
    node *s = nmod(t, N);
    nfree(t);
    node *want = (k % 2) ? nsub(N, d) : ncopy(d);
    if (ncmp(s, want) != 0) wl_corrupt("continued fraction identity");
    nfree(s);
    nfree(want);
    t = nadd(a0, m);
    node *a2 = ndivmod(t, d, NULL); /* a(k) = (a0 + m) / d */
    nfree(t);
    nfree(a);
    a = a2;
    t = nmul(a, A);
    s = nadd(t, Aprev);
    nfree(t);
    node *A2 = nmod(s, N); /* A(k) = a A(k-1) + A(k-2) mod N */
    nfree(s);
    nfree(Aprev);
    Aprev = A;
    A = A2;
    h = nmix(nmix(h, a), d);
  }
  h = nmix(h, A);
  nfree(N);
  nfree(a0);
  nfree(m);
  nfree(d);
  nfree(a);
  nfree(Aprev);
  nfree(A);
  return h;
}

/* sqrt without libm (the build links no -lm). */
static double dsqrt(double x) {
  double r = x > 1 ? x : 1;
  for (int i = 0; i < 100; i++) r = 0.5 * (r + x / r);
  return r;
}

int main(int argc, char **argv) {
  wl_args args = wl_parse(argc, argv);
  double rs = dsqrt(args.scale);
  long fib_n = (long)(14000 * rs), fact_m = (long)(5000 * rs), cf_steps = wl_n(&args, 20000);
  if (fib_n < 10) fib_n = 10;
  if (fact_m < 10) fact_m = 10;

  double t0 = wl_now();
  uint64_t h = WL_CHECK_INIT;
  h = wl_mix(h, phase_fib(fib_n));
  h = wl_mix(h, phase_fact(fact_m));
  h = wl_mix(h, phase_cfrac(cf_steps, args.seed));
  double t1 = wl_now();
  h = wl_mix(h, g_nodes);

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  char extra[160];
  snprintf(extra, sizeof extra, "nodes=%llu rss_peak_kib=%ld", (unsigned long long)g_nodes,
           ru.ru_maxrss);
  wl_report("bignum", &args, t1 - t0, h, extra);
  return 0;
}
