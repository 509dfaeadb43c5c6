/*
 * json.c - cJSON with its traps closed (TOOLCHAIN §4).
 *
 * Parsing: cJSON accepts trailing garbage unless asked to require a NUL
 * right after the value, and it needs that NUL inside the length it is
 * given. Our input is a (buf, len) slice that may not be NUL-terminated and
 * whose byte after len we may not read, so the slice is always copied. A
 * pre-scan before cJSON runs rejects nesting deeper than JSON_DEPTH_MAX
 * (cJSON recurses per level and would allow 1000), embedded NUL bytes (cJSON
 * would stop there and accept) and raw control bytes (cJSON lets them into
 * strings and treats every byte <= 0x20 as whitespace).
 *
 * Numbers: cJSON holds doubles, so 64-bit ids travel as decimal strings and
 * numbers are accepted as ids only while exact (|v| <= 2^53).
 *
 * Pure functions on caller-owned documents: any thread. Out-of-memory
 * aborts, like ash_xmalloc.
 */
#include "json_impl.h"

#include <ashoon/json.h>

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_DEPTH_MAX 64
#define JSON_EXACT_MAX 9007199254740992.0 /* 2^53 */

#define SPECIAL4(n) [n] = 1, [n + 1] = 1, [n + 2] = 1, [n + 3] = 1
const unsigned char ash__json_special[256] = {SPECIAL4(0), SPECIAL4(4),
    SPECIAL4(8), SPECIAL4(12), SPECIAL4(16), SPECIAL4(20), SPECIAL4(24),
    SPECIAL4(28), ['"'] = 1, ['\\'] = 1};

static bool
json_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Walks the bytes as cJSON will, tracking only strings and brackets. The
 * count is exact up to the first syntax error, and cJSON stops there too,
 * so it never recurses deeper than this allows. */
static ash_err
json_prescan(const char *buf, size_t len)
{
	int  depth  = 0;
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		char ch;

		/* Inside a string, plain bytes (most of a webhook body's
		 * base64) are skipped through the table. */
		if (in_str) {
			while (i < len &&
			    !ash__json_special[(unsigned char) buf[i]])
				i++;
			if (i == len)
				break;
		}
		ch = buf[i];
		if (ch == '\0')
			return ASH_EBADJSON;
		if (in_str) {
			if ((unsigned char) ch < 0x20)
				return ASH_EBADJSON; /* must be escaped */
			if (ch == '\\')
				i++; /* skips the escaped byte, even a quote */
			else if (ch == '"')
				in_str = false;
		} else if (ch == '"') {
			in_str = true;
		} else if (ch == '[' || ch == '{') {
			if (++depth > JSON_DEPTH_MAX)
				return ASH_ETOOBIG;
		} else if (ch == ']' || ch == '}') {
			if (--depth < 0)
				return ASH_EBADJSON;
		} else if ((unsigned char) ch < 0x20 && !json_space(ch)) {
			return ASH_EBADJSON;
		}
	}
	return ASH_OK;
}

ash_err
ash_json_parse(const char *buf, size_t len, cJSON **out)
{
	ash_err rv;
	char   *copy;
	cJSON  *doc;

	if ((rv = json_prescan(buf, len)) != ASH_OK)
		return rv;
	copy = ash_xmalloc(len + 1);
	if (len > 0)
		memcpy(copy, buf, len);
	copy[len] = '\0';
	/* len + 1: cJSON checks for the terminating NUL inside the length. */
	doc = cJSON_ParseWithLengthOpts(copy, len + 1, NULL, 1);
	free(copy);
	if (doc == NULL)
		return ASH_EBADJSON;
	*out = doc;
	return ASH_OK;
}

const char *
ash_json_str(const cJSON *obj, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* "-12": optional '-', digits only, no '+', no spaces, no overflow. */
static ash_err
i64_from_str(const char *s, int64_t *out)
{
	bool     neg   = (*s == '-');
	uint64_t limit = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
	uint64_t mag   = 0;

	if (neg)
		s++;
	if (*s == '\0')
		return ASH_EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return ASH_EINVAL;
		unsigned d = (unsigned) (*s - '0');
		if (mag > (limit - d) / 10)
			return ASH_EINVAL;
		mag = mag * 10 + d;
	}
	/* -(2^63) has no positive twin in int64_t; build it from 0. */
	*out = neg ? (int64_t) (0 - mag) : (int64_t) mag;
	return ASH_OK;
}

/* Only integral values that a double holds exactly. The range test comes
 * first (and fails for NaN) so the cast below is defined. */
static ash_err
i64_from_num(double v, int64_t *out)
{
	int64_t i;

	if (!(v >= -JSON_EXACT_MAX && v <= JSON_EXACT_MAX))
		return ASH_EINVAL;
	i = (int64_t) v;
	if ((double) i != v)
		return ASH_EINVAL;
	*out = i;
	return ASH_OK;
}

ash_err
ash_json_get_i64(const cJSON *obj, const char *key, int64_t *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (it == NULL)
		return ASH_ENOTFOUND;
	if (cJSON_IsString(it))
		return i64_from_str(it->valuestring, out);
	if (cJSON_IsNumber(it))
		return i64_from_num(it->valuedouble, out);
	return ASH_EINVAL;
}

ash_err
ash_json_get_int(const cJSON *obj, const char *key, int *out)
{
	int64_t v;
	ash_err rv;

	if ((rv = ash_json_get_i64(obj, key, &v)) != ASH_OK)
		return rv;
	if (v < INT_MIN || v > INT_MAX)
		return ASH_EINVAL;
	*out = (int) v;
	return ASH_OK;
}

bool
ash_json_bool(const cJSON *obj, const char *key, bool def)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsBool(it) ? cJSON_IsTrue(it) : def;
}

void
ash_json_add_i64(cJSON *obj, const char *key, int64_t v)
{
	char num[24]; /* "-9223372036854775808" is 20 bytes */

	snprintf(num, sizeof(num), "%" PRId64, v);
	ash_json_add_str(obj, key, num);
}

void
ash_json_add_str(cJSON *obj, const char *key, const char *s)
{
	cJSON *it;

	ASH_ASSERT(obj != NULL && key != NULL && s != NULL);
	it = cJSON_AddStringToObject(obj, key, s);
	/* With the arguments checked, NULL can only mean malloc failed. */
	ASH_ASSERT(it != NULL);
}

void
ash_json_add_str_take(cJSON *obj, const char *key, char *s)
{
	cJSON *it;

	ASH_ASSERT(obj != NULL && key != NULL && s != NULL);
	/* A reference item without its reference flag owns its string:
	 * cJSON_Delete frees it with cJSON's deallocator, which is free (no
	 * hooks are installed anywhere). */
	it = cJSON_CreateStringReference(s);
	ASH_ASSERT(it != NULL);
	it->type &= ~cJSON_IsReference;
	cJSON_AddItemToObject(obj, key, it);
}
