/* Bit helpers: the one family every file uses, for 64-bit words and for
 * arrays of them.
 *
 * Four are written for x86-64 by hand, each for a figure:
 *   neap__bit,        bt and btr, which take the bit index mod 64 as they
 *   neap__bit_clear   are: in C the `i & 63` costs a copy and an and where
 *                     i also indexes the word (i >> 6), as on the spill
 *                     path's give back (callgrind, wl_xmalloc -t 1 -s 0.1:
 *                     0.8% more instructions in all);
 *   neap__lowest_bit  `rep bsf`: the index as a 64-bit value. gcc's
 *                     __builtin_ctzll returns an int, and the allocation
 *                     window's take (malloc's path once the free stack is
 *                     empty) then pays two instructions more: a zeroing xor
 *                     against tzcnt's false dependency and a sign extension.
 *   neap__popcount    POPCNT where the CPU has it (neap__process_init finds
 *                     out), else bit arithmetic: POPCNT is not in the
 *                     x86-64 baseline the library is built for, where
 *                     __builtin_popcountll is a call of some 17
 *                     instructions; a window load counts its free objects,
 *                     some 100,000 times a second per busy thread.
 * Everything else is plain C.
 */
#ifndef NEAP_BITS_H
#define NEAP_BITS_H

#include <stdatomic.h>

#include "internal.h"

/* Bit i of w, and w with bit i clear, for any i: only i mod 64 counts. */
NEAP_INLINE bool neap__bit(uint64_t w, unsigned i) {
#if defined(__x86_64__)
  bool r;
  __asm__("btq %2, %1" : "=@ccc"(r) : "r"(w), "r"((uint64_t)i));
  return r;
#else
  return (w >> (i & 63u)) & 1u;
#endif
}
NEAP_INLINE uint64_t neap__bit_clear(uint64_t w, unsigned i) {
#if defined(__x86_64__)
  __asm__("btrq %1, %0" : "+r"(w) : "r"((uint64_t)i) : "cc");
  return w;
#else
  return w & ~(1ull << (i & 63u));
#endif
}

/* The index of the lowest set bit of w (w != 0). */
NEAP_INLINE uint64_t neap__lowest_bit(uint64_t w) {
#if defined(__x86_64__)
  uint64_t i;
  __asm__("rep bsfq %1, %0" : "=r"(i) : "r"(w) : "cc"); /* tzcnt where the CPU has it, else bsf: the same for w != 0 */
  return i;
#else
  return (uint64_t)(unsigned)__builtin_ctzll(w);
#endif
}

/* Trailing and leading zero bits of w (w != 0), and the index of its
 * highest set bit. */
NEAP_INLINE unsigned neap__ctz(uint64_t w) { return (unsigned)__builtin_ctzll(w); }
NEAP_INLINE unsigned neap__clz(uint64_t w) { return (unsigned)__builtin_clzll(w); }
NEAP_INLINE unsigned neap__highest_bit(uint64_t w) { return 63u - neap__clz(w); }

/* Whether the CPU has POPCNT (set once by neap__process_init). */
extern _Atomic uint8_t neap__cpu_popcnt;

NEAP_INLINE unsigned neap__popcount(uint64_t x) {
#if defined(__x86_64__)
  if (NEAP_LIKELY(atomic_load_explicit(&neap__cpu_popcnt, memory_order_relaxed))) {
    uint64_t r;
    __asm__("popcntq %1, %0" : "=r"(r) : "r"(x) : "cc");
    return (unsigned)r;
  }
#endif
  x -= (x >> 1) & 0x5555555555555555ull;
  x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
  return (unsigned)((x * 0x0101010101010101ull) >> 56);
}

/* The k lowest bits (k <= 64). */
NEAP_INLINE uint64_t neap__low_bits(unsigned k) { return k >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << k) - 1; }

/* Bit i of an array of words. */
NEAP_INLINE bool neap__bits_get(const uint64_t *b, uint64_t i) { return (b[i >> 6] >> (i & 63)) & 1; }
NEAP_INLINE void neap__bits_set(uint64_t *b, uint64_t i) { b[i >> 6] |= (uint64_t)1 << (i & 63); }
NEAP_INLINE void neap__bits_clear(uint64_t *b, uint64_t i) { b[i >> 6] &= ~((uint64_t)1 << (i & 63)); }

#endif
