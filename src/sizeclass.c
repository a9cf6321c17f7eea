/* Size classes: the tables' one definition.
 *
 * The numbers live in sizeclass_table.h, printed by tools/mksizeclasses.c;
 * this file only gives them storage (const, so .rodata: nothing to
 * initialise, safe before neap is set up) and checks that the table was
 * generated for the geometry internal.h declares. Lookups are inline in
 * sizeclass.h.
 */
#include "sizeclass.h"

_Static_assert(NEAP_SIZECLASS_PAGE_SIZE == NEAP_PAGE_SIZE, "sizeclass_table.h was generated for another page size");
_Static_assert(NEAP_SIZECLASS_SMALL_MAX == NEAP_SMALL_MAX, "sizeclass_table.h was generated for another NEAP_SMALL_MAX");
_Static_assert(NEAP_NUM_CLASSES <= 256, "class numbers must fit the uint8_t lookup tables");
_Static_assert(NEAP_CLASS_MAX_OBJECTS <= 512, "a span's bitmap holds 512 objects");
_Static_assert(NEAP_SIZE_TO_CLASS16_LEN == NEAP_SIZE_TO_CLASS16_MAX / 16 + 1, "size_to_class16 covers 0..1024");
_Static_assert(NEAP_SIZE_TO_CLASS128_LEN == (NEAP_SMALL_MAX - NEAP_SIZE_TO_CLASS16_MAX) / 128 + 1,
               "size_to_class128 covers 1025..NEAP_SMALL_MAX");

const uint32_t neap__class_size[NEAP_NUM_CLASSES] = NEAP_CLASS_SIZE_INIT;
const uint8_t neap__class_pages[NEAP_NUM_CLASSES] = NEAP_CLASS_PAGES_INIT;
const uint16_t neap__class_objects[NEAP_NUM_CLASSES] = NEAP_CLASS_OBJECTS_INIT;
const uint32_t neap__class_divmul[NEAP_NUM_CLASSES] = NEAP_CLASS_DIVMUL_INIT;
#define CLASS_ITSELF(c) c
const uint8_t neap__size_to_class16[NEAP_SIZE_TO_CLASS16_LEN] = NEAP_SIZE_TO_CLASS16_MAP(CLASS_ITSELF);
const uint8_t neap__size_to_class128[NEAP_SIZE_TO_CLASS128_LEN] = NEAP_SIZE_TO_CLASS128_INIT;
