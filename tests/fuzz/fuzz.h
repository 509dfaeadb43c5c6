/*
 * fuzz.h - what every driver of tests/fuzz/ shares: the libFuzzer entry
 * point each defines, how a broken invariant is reported (abort: ASan,
 * libFuzzer and fuzz_main.c all treat it as a failure), and inputs as the C
 * strings our header values and paths are.
 */
#ifndef ASH_FUZZ_H
#define ASH_FUZZ_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) ((c) ? (void) 0 : abort())

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* data[0..size) as a malloc'd C string, or NULL when it holds a NUL (the
 * HTTP server refuses one in a head, so such an input cannot reach code
 * that takes C strings). */
static inline char *
fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s;

	if (memchr(data, '\0', size) != NULL)
		return NULL;
	s = malloc(size + 1);
	CHECK(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

#endif
