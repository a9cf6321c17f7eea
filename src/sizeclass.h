/* Size classes: the fixed set of object sizes small requests round up to.
 *
 * Every request of at most NEAP_SMALL_MAX (32 KiB) bytes is served from a
 * span of its size class: a run of neap pages cut into equal objects. The
 * classes come from tools/mksizeclasses.c, which prints sizeclass_table.h
 * (the table, with its waste figures, is in that file's opening comment).
 *
 * Numbering: class 0 means "large" (a span of its own, no class); the small
 * classes are 1 .. NEAP_NUM_CLASSES-1, in increasing size, so every table
 * below has NEAP_NUM_CLASSES entries and entry 0 is all zeros.
 *
 * What the rest of neap may rely on (tests/unit/test_sizeclass.c checks it):
 *   - sizes are multiples of NEAP_ALIGN (16), from 16 to NEAP_SMALL_MAX;
 *   - every power of two from 16 to NEAP_SMALL_MAX is a class size, so an
 *     object of a power-of-two class is aligned to its size;
 *   - rounding up wastes at most 1/8 wherever classes are more than 16
 *     bytes apart;
 *   - a span is 1 .. NEAP_CLASS_MAX_PAGES pages, holds at most
 *     NEAP_CLASS_MAX_OBJECTS (512) objects, and leaves a tail of at most 1/8;
 *   - objects = pages * NEAP_PAGE_SIZE / size, exactly;
 *   - (off * divmul) >> 32 == off / size for every byte offset in a span.
 *
 * The tables are const (in .rodata) and need no initialisation, so they
 * may be used before anything else in neap is ready.
 */
#ifndef NEAP_SIZECLASS_H
#define NEAP_SIZECLASS_H

#include "internal.h"
#include "sizeclass_table.h" /* NEAP_NUM_CLASSES and the table's data */

extern const uint32_t neap__class_size[NEAP_NUM_CLASSES];    /* bytes per object */
extern const uint8_t neap__class_pages[NEAP_NUM_CLASSES];    /* neap pages per span */
extern const uint16_t neap__class_objects[NEAP_NUM_CLASSES]; /* objects per span */
extern const uint32_t neap__class_divmul[NEAP_NUM_CLASSES];  /* index = (offset * divmul) >> 32 */
/* For size <= NEAP_SIZE_TO_CLASS16_MAX (1024): the class, indexed by (size + 15) >> 4. */
extern const uint8_t neap__size_to_class16[NEAP_SIZE_TO_CLASS16_LEN];
/* For 1024 < size <= NEAP_SMALL_MAX: the class, indexed by (size - 1024 + 127) >> 7. */
extern const uint8_t neap__size_to_class128[NEAP_SIZE_TO_CLASS128_LEN];

/* The smallest class whose objects hold size bytes; size 0 gets the 16-byte
 * class. size must be at most NEAP_SMALL_MAX (larger requests are large
 * objects and have no class). Two loads and a branch, as in Go's mallocgc. */
NEAP_INLINE unsigned neap__size_class(size_t size)
{
  neap_assert(size <= NEAP_SMALL_MAX);
  if (NEAP_LIKELY(size <= NEAP_SIZE_TO_CLASS16_MAX))
    return neap__size_to_class16[(size + 15) >> 4];
  return neap__size_to_class128[(size - NEAP_SIZE_TO_CLASS16_MAX + 127) >> 7];
}

/* The index of the object holding byte offset off of a span of class cls
 * (off < pages * NEAP_PAGE_SIZE): off / size without a division. */
NEAP_INLINE unsigned neap__class_object_index(unsigned cls, size_t off)
{
  neap_assert_internal(cls > 0 && cls < NEAP_NUM_CLASSES);
  neap_assert_internal(off < (size_t)neap__class_pages[cls] * NEAP_PAGE_SIZE);
  return (unsigned)(((uint64_t)off * neap__class_divmul[cls]) >> 32);
}

#endif
