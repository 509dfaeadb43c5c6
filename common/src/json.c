/*
 * json.c - cJSON with its traps closed (TOOLCHAIN §4).
 *
 * Parsing: cJSON accepts trailing garbage unless asked to require a NUL
 * right after the value, and it needs that NUL inside the length it is
 * given. Our input is a (buf, len) slice that may not be NUL-terminated and
 * whose byte after len we may not read, so the slice is always copied. A
 * pre-scan before cJSON runs rejects nesting deeper than JSON_DEPTH_MAX
 * (cJSON recurses per level and would allow 1000), embedded NUL bytes (cJSON
 * would stop there and accept), raw control bytes (cJSON lets them into
 * strings and treats every byte <= 0x20 as whitespace), strings that are
 * not UTF-8 (RFC 8259 §8.1; cJSON copies any byte) and the escape \u0000
 * (cJSON would cut the string there); what passes can go into Postgres
 * text and jsonb, which refuse both. After cJSON, an object with a key
 * twice and a number beyond a double's range are refused too
 * (json_tree_ok).
 *
 * Numbers: cJSON holds doubles, so 64-bit ids travel as decimal strings and
 * numbers are accepted as ids only while exact (|v| <= 2^53). For bodies
 * that send ids as numbers anyway (Meta's app ids), ash_json_parse_ids
 * has the pre-scan note every integer literal beyond 2^53 and quotes it
 * in the copy, so that cJSON reads its digits as a string.
 *
 * Pure functions on caller-owned documents: any thread. Out-of-memory
 * aborts, like ash_xmalloc.
 */
#include "json_impl.h"

#include <ashoon/json.h>

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_DEPTH_MAX        64
#define JSON_EXACT_MAX        9007199254740992.0 /* 2^53 */
#define JSON_EXACT_MAX_DIGITS "9007199254740992" /* the same, as written */

#define SPECIAL4(n) [n] = 1, [n + 1] = 1, [n + 2] = 1, [n + 3] = 1
const unsigned char ash__json_special[256] = {SPECIAL4(0), SPECIAL4(4),
    SPECIAL4(8), SPECIAL4(12), SPECIAL4(16), SPECIAL4(20), SPECIAL4(24),
    SPECIAL4(28), ['"'] = 1, ['\\'] = 1};

static bool
json_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* The length of the UTF-8 sequence at p[0..n) (RFC 3629: shortest form,
 * no surrogates, at most U+10FFFF), 0 if there is none. */
static size_t
utf8_len(const unsigned char *p, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t        len;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0; /* overlong */
	else if (p[0] == 0xed)
		hi = 0x9f; /* surrogates */
	else if (p[0] == 0xf0)
		lo = 0x90; /* overlong */
	else if (p[0] == 0xf4)
		hi = 0x8f; /* over U+10FFFF */
	if (len > n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

bool
ash_json_text_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t               n = strlen(s), k;

	for (size_t i = 0; i < n; i++) {
		if (p[i] < 0x80)
			continue;
		if ((k = utf8_len(p + i, n - i)) == 0)
			return false;
		i += k - 1;
	}
	return true;
}

/* Checks the string byte at buf[i] that the table stopped at; *i moves
 * to the last byte it covers. Sets *in_str false at the closing quote. */
static ash_err
json_prescan_str(const char *buf, size_t len, size_t *i, bool *in_str)
{
	unsigned char ch = (unsigned char) buf[*i];
	size_t        n;

	if (ch >= 0x80) {
		if ((n = utf8_len(
		         (const unsigned char *) buf + *i, len - *i)) == 0)
			return ASH_EBADJSON;
		*i += n - 1;
	} else if (ch < 0x20) {
		return ASH_EBADJSON; /* must be escaped; NUL included */
	} else if (ch == '\\') {
		if (len - *i >= 6 && memcmp(buf + *i + 1, "u0000", 5) == 0)
			return ASH_EBADJSON;
		(*i)++; /* skips the escaped byte, even a quote */
	} else if (ch == '"') {
		*in_str = false;
	}
	return ASH_OK;
}

/* The integer literals a double cannot hold exactly: [start, end) pairs
 * of byte offsets, in order. */
typedef struct big_ints {
	size_t *at;
	int     n, cap;
} big_ints;

static bool
json_num_byte(char ch)
{
	return (ch >= '0' && ch <= '9') || ch == '-' || ch == '+' ||
	    ch == '.' || ch == 'e' || ch == 'E';
}

/* Reads the number token at buf[i] (outside strings, at '-' or a digit)
 * and returns the offset after it; notes it in big (unless NULL) when it
 * is an integer, written as JSON writes one (no leading zero), beyond 2^53
 * in magnitude. A token that is not a JSON number is left for cJSON to
 * refuse. */
static size_t
json_number_scan(const char *buf, size_t len, size_t i, big_ints *big)
{
	size_t start = i, digits, end;
	bool   integer;

	if (buf[i] == '-')
		i++;
	digits = i;
	while (i < len && buf[i] >= '0' && buf[i] <= '9')
		i++;
	integer = i > digits && buf[digits] != '0';
	digits  = i - digits;
	end     = i;
	while (end < len && json_num_byte(buf[end]))
		end++;
	if (big == NULL || !integer || end != i)
		return end;
	/* 2^53 itself is exact; every longer or larger literal is quoted
	 * (same length: the digits compare as the numbers do). */
	if (digits > sizeof(JSON_EXACT_MAX_DIGITS) - 1 ||
	    (digits == sizeof(JSON_EXACT_MAX_DIGITS) - 1 &&
	        memcmp(buf + i - digits, JSON_EXACT_MAX_DIGITS, digits) > 0)) {
		if (big->n + 2 > big->cap) {
			big->cap = big->cap ? 2 * big->cap : 8;
			big->at  = ash_xrealloc(
			     big->at, (size_t) big->cap * sizeof(*big->at));
		}
		big->at[big->n++] = start;
		big->at[big->n++] = i;
	}
	return i;
}

/* Walks the bytes as cJSON will, tracking only strings and brackets (and,
 * for big != NULL, number tokens where a value goes: a literal where a key
 * should be stays a syntax error). The count is exact up to the first
 * syntax error, and cJSON stops there too, so it never recurses deeper
 * than this allows. */
static ash_err
json_prescan(const char *buf, size_t len, big_ints *big)
{
	int  depth  = 0;
	bool in_str = false;
	char open[JSON_DEPTH_MAX]; /* the brackets open */
	char last = 0; /* the last byte outside strings and space */

	for (size_t i = 0; i < len; i++) {
		unsigned char ch;

		/* Inside a string, plain ASCII bytes (most of a webhook body's
		 * base64) are skipped through the table. */
		if (in_str) {
			while (i < len && (unsigned char) buf[i] < 0x80 &&
			    !ash__json_special[(unsigned char) buf[i]])
				i++;
			if (i == len)
				break;
			if (json_prescan_str(buf, len, &i, &in_str) != ASH_OK)
				return ASH_EBADJSON;
			continue;
		}
		ch = (unsigned char) buf[i];
		if (ch == '\0') {
			return ASH_EBADJSON;
		} else if (ch == '"') {
			in_str = true;
		} else if (ch == '[' || ch == '{') {
			if (depth == JSON_DEPTH_MAX)
				return ASH_ETOOBIG;
			open[depth++] = (char) ch;
		} else if (ch == ']' || ch == '}') {
			if (--depth < 0)
				return ASH_EBADJSON;
		} else if (ch < 0x20 && !json_space((char) ch)) {
			return ASH_EBADJSON;
		} else if (big != NULL &&
		    (ch == '-' || (ch >= '0' && ch <= '9'))) {
			bool value = last == 0 || last == ':' || last == '[' ||
			    (last == ',' && depth > 0 &&
			        open[depth - 1] == '[');

			i = json_number_scan(buf, len, i, value ? big : NULL) -
			    1;
		}
		if (!json_space((char) ch))
			last = (char) ch;
	}
	return ASH_OK;
}

static int
key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* True when no object has a key twice (small objects compare pairwise,
 * larger ones sort their keys: n log n, not n squared, for a body of many
 * keys) and every number is finite. */
static bool
json_tree_ok(const cJSON *it)
{
	const cJSON *c;
	const char **keys;
	size_t       n = 0, k = 0;
	bool         ok = true;

	if (cJSON_IsNumber(it) && !isfinite(it->valuedouble))
		return false;
	for (c = it->child; c != NULL; c = c->next, n++)
		if (!json_tree_ok(c))
			return false;
	if (!cJSON_IsObject(it) || n < 2)
		return true;
	if (n <= 8) {
		for (c = it->child; c != NULL; c = c->next)
			for (const cJSON *d = c->next; d != NULL; d = d->next)
				if (c->string[0] == d->string[0] &&
				    strcmp(c->string, d->string) == 0)
					return false;
		return true;
	}
	keys = ash_xmalloc(n * sizeof(*keys));
	for (c = it->child; c != NULL; c = c->next)
		keys[k++] = c->string;
	qsort(keys, n, sizeof(*keys), key_cmp);
	for (k = 1; k < n && ok; k++)
		ok = strcmp(keys[k - 1], keys[k]) != 0;
	free(keys);
	return ok;
}

/* The NUL-terminated copy cJSON reads: buf, with the literals in big
 * quoted. Sets *n to its length. */
static char *
json_copy(const char *buf, size_t len, const big_ints *big, size_t *n)
{
	char  *copy = ash_xmalloc(len + (size_t) big->n + 1);
	size_t from = 0, to = 0;

	for (int k = 0; k <= big->n; k += 2) {
		size_t stop = k < big->n ? big->at[k + 1] : len;
		size_t run  = (k < big->n ? big->at[k] : len) - from;

		if (run > 0)
			memcpy(copy + to, buf + from, run);
		to += run;
		if (k < big->n) {
			copy[to++] = '"';
			memcpy(copy + to, buf + big->at[k], stop - big->at[k]);
			to += stop - big->at[k];
			copy[to++] = '"';
		}
		from = stop;
	}
	copy[to] = '\0';
	*n       = to;
	return copy;
}

static ash_err
json_parse(const char *buf, size_t len, bool ids, cJSON **out)
{
	big_ints big = {NULL, 0, 0};
	ash_err  rv;
	char    *copy;
	size_t   n;
	cJSON   *doc;

	if ((rv = json_prescan(buf, len, ids ? &big : NULL)) != ASH_OK) {
		free(big.at);
		return rv;
	}
	copy = json_copy(buf, len, &big, &n);
	free(big.at);
	/* n + 1: cJSON checks for the terminating NUL inside the length. */
	doc = cJSON_ParseWithLengthOpts(copy, n + 1, NULL, 1);
	free(copy);
	if (doc == NULL)
		return ASH_EBADJSON;
	/* cJSON keeps both and finds the first, Postgres's jsonb keeps the
	 * last: a key given twice could pass our checks with one value and
	 * be stored with the other. A number beyond a double's range would
	 * be infinite, and written back as null. */
	if (!json_tree_ok(doc)) {
		cJSON_Delete(doc);
		return ASH_EBADJSON;
	}
	*out = doc;
	return ASH_OK;
}

ash_err
ash_json_parse(const char *buf, size_t len, cJSON **out)
{
	return json_parse(buf, len, false, out);
}

ash_err
ash_json_parse_ids(const char *buf, size_t len, cJSON **out)
{
	return json_parse(buf, len, true, out);
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
