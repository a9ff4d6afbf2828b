/* quiet_class.h - the class whose spans the unit tests take and give. */
#ifndef QUIET_CLASS_H
#define QUIET_CLASS_H

#include "internal.h"

/*
 * A class the test harness itself never allocates from, so that its lists
 * start empty: the largest of at most 32 KiB whose span holds at least 8
 * blocks, and never the last class (the largest but one where that is it).  The largest classes of a spec (up to 256 KiB in the
 * default) may have spans of one or two blocks, where the tests of spans need
 * several in one; and 100 blocks of a class above 40 KiB reach the 4 MiB
 * that a free hands to the purger thread (HAK_PURGER_MIN_BYTES), where the
 * tests of decay wait for a poll.  Check's own allocations are far smaller.
 */
static inline unsigned quiet_class(void)
{
    unsigned cls = HAK_NUM_CLASSES - 2;
    while (cls > 0 && (hak_class_info[cls].blocks < 8 || hak_class_info[cls].size > 32768))
        cls--;
    return cls;
}

#endif /* QUIET_CLASS_H */
