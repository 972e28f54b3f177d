/*
 * mutate.h - seeded random edits of a text, for the tests that hold a
 * hand-written reader to jansson on inputs nobody thought of.
 */
#ifndef GW_TEST_MUTATE_H
#define GW_TEST_MUTATE_H

#include <stddef.h>

/*
 * Applies 1..max_edits edits to buf[0..n) in place and returns the new
 * length (never past cap). An edit, at a random offset, replaces or
 * deletes a byte, inserts one (from ins), or - when kinds is 4 - cuts
 * the text there. The same seed gives the same edits.
 */
size_t gw_test_mutate(char *buf, size_t n, size_t cap, const char *ins, unsigned kinds,
		      unsigned max_edits, unsigned *seed);

#endif
