/*
 * mutate.c - seeded random edits of a text. See mutate.h.
 */
#include "mutate.h"

#include <stdlib.h>
#include <string.h>

size_t gw_test_mutate(char *buf, size_t n, size_t cap, const char *ins, unsigned kinds,
		      unsigned max_edits, unsigned *seed)
{
	size_t nins = strlen(ins);
	unsigned edits = 1 + (unsigned)rand_r(seed) % max_edits;
	for (unsigned e = 0; e < edits && n > 0 && n < cap; e++) {
		size_t at = (size_t)rand_r(seed) % n;
		switch ((unsigned)rand_r(seed) % kinds) {
		case 0: /* replace */
			buf[at] = ins[(size_t)rand_r(seed) % nins];
			break;
		case 1: /* delete */
			memmove(buf + at, buf + at + 1, n - at - 1);
			n--;
			break;
		case 2: /* insert */
			memmove(buf + at + 1, buf + at, n - at);
			buf[at] = ins[(size_t)rand_r(seed) % nins];
			n++;
			break;
		default: /* cut */
			n = at;
			break;
		}
	}
	return n;
}
