/* Unit tests: json (whole-input parsing, depth cap, exact 64-bit ids). */
#include <ash_test.h>
#include <ashoon/json.h>

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static ash_err
parse_str(const char *s, cJSON **out)
{
	return ash_json_parse(s, strlen(s), out);
}

/* Parses s (which must be valid) into a document for the getter tests. */
static cJSON *
doc_of(const char *s)
{
	cJSON *doc = NULL;

	if (parse_str(s, &doc) != ASH_OK)
		abort();
	return doc;
}

ASH_TEST(trailing_garbage_rejected)
{
	const char *bad[] = {"{}x", "{} {}", "[1]]", "1 2", "\"a\"\"b\"", "",
	    "  ", "{", "{}\x01", "[\"a\x01\"]", "nul"};
	cJSON      *doc   = (cJSON *) &doc; /* must stay untouched */

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ASH_T_ERR(parse_str(bad[i], &doc), ASH_EBADJSON);
	ASH_T_TRUE(doc == (cJSON *) &doc);
}

ASH_TEST(surrounding_whitespace_ok)
{
	cJSON *doc = NULL;

	ASH_T_OK(parse_str(" \t\r\n{\"a\": [1, 2]} \n\t ", &doc));
	ASH_T_TRUE(cJSON_IsArray(cJSON_GetObjectItem(doc, "a")));
	cJSON_Delete(doc);
	ASH_T_OK(parse_str("42", &doc));
	ASH_T_TRUE(cJSON_IsNumber(doc));
	cJSON_Delete(doc);
}

ASH_TEST(parses_by_length_only)
{
	/* Exactly 7 heap bytes and no NUL: ASan flags any read past them. */
	char  *buf = malloc(7);
	cJSON *doc = NULL;

	memcpy(buf, "[1,2]xx", 7);
	ASH_T_OK(ash_json_parse(buf, 5, &doc));
	ASH_T_EQ_INT(cJSON_GetArraySize(doc), 2);
	cJSON_Delete(doc);
	ASH_T_ERR(ash_json_parse(buf, 7, &doc), ASH_EBADJSON);
	ASH_T_ERR(ash_json_parse(buf, 4, &doc), ASH_EBADJSON);
	free(buf);
	/* An embedded NUL must not end the input early. */
	ASH_T_ERR(ash_json_parse("{}\0x", 4, &doc), ASH_EBADJSON);
	ASH_T_ERR(ash_json_parse(NULL, 0, &doc), ASH_EBADJSON);
}

/* What Postgres text and jsonb would refuse never gets past the parser. */
ASH_TEST(strings_must_be_utf8_without_an_escaped_nul)
{
	static const char *const ok[] = {
	    "\"a\xc3\xa9z\"",                /* U+00E9 */
	    "\"\xe2\x82\xac\"",              /* U+20AC */
	    "\"\xed\x9f\xbf\"",              /* U+D7FF, below the surrogates */
	    "\"\xee\x80\x80\"",              /* U+E000, above them */
	    "\"\xf0\x9f\x98\x80\"",          /* U+1F600 */
	    "\"\xf4\x8f\xbf\xbf\"",          /* U+10FFFF */
	    "\"\\ud83d\\ude00 \\u00e9\"",    /* escapes are cJSON's to check */
	    "\"\\\\u0000\"",                 /* a backslash, then text */
	    "{\"\xc3\xa9\":[\"\xc3\xa9\"]}", /* keys too */
	};
	static const char *const bad[] = {
	    "\"\xc3\x28\"",         /* a lead byte without its continuation */
	    "\"\xc3\"",             /* cut at the closing quote */
	    "\"\x80\"",             /* a lone continuation byte */
	    "\"\xc0\xaf\"",         /* overlong '/' */
	    "\"\xe0\x80\xaf\"",     /* overlong, three bytes */
	    "\"\xf0\x80\x80\xaf\"", /* overlong, four bytes */
	    "\"\xed\xa0\x80\"",     /* U+D800 encoded: a surrogate */
	    "\"\xf4\x90\x80\x80\"", /* U+110000 */
	    "\"\xf5\x80\x80\x80\"", /* no such lead byte */
	    "\"\xff\"",
	    "\"a\\u0000b\"", /* cJSON would cut the string at it */
	    "{\"k\\u0000\":1}",
	};
	cJSON *doc = NULL;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ASH_T_OK(ash_json_parse(ok[i], strlen(ok[i]), &doc));
		cJSON_Delete(doc);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ASH_T_ERR(ash_json_parse(bad[i], strlen(bad[i]), &doc),
		    ASH_EBADJSON);
	/* A sequence cut by the end of the input is not read past it. */
	char *buf = malloc(4);
	memcpy(buf, "\"\xf0\x9f\x98", 4);
	ASH_T_ERR(ash_json_parse(buf, 4, &doc), ASH_EBADJSON);
	free(buf);
}

/* cJSON finds the first of two equal keys, Postgres's jsonb keeps the
 * last: such a document is refused, at any depth and in big objects too. */
ASH_TEST(a_key_given_twice_is_refused)
{
	cJSON *doc = NULL;
	char   big[4096];
	int    n = 0;

	ASH_T_ERR(ash_json_parse("{\"a\":1,\"a\":2}", 13, &doc), ASH_EBADJSON);
	ASH_T_ERR(
	    ash_json_parse("[{\"x\":{\"b\":1,\"c\":2,\"b\":3}}]", 28, &doc),
	    ASH_EBADJSON);
	/* Keys differing in case, and equal keys in sibling objects, are
	 * fine. */
	ASH_T_OK(ash_json_parse("{\"a\":1,\"A\":2}", 13, &doc));
	cJSON_Delete(doc);
	ASH_T_OK(ash_json_parse("[{\"a\":1},{\"a\":1}]", 17, &doc));
	cJSON_Delete(doc);
	/* Over 8 keys they are sorted; the twin is the first and the last. */
	n += snprintf(big + n, sizeof(big) - (size_t) n, "{\"k\":0");
	for (int i = 0; i < 300; i++)
		n += snprintf(
		    big + n, sizeof(big) - (size_t) n, ",\"k%d\":%d", i, i);
	snprintf(big + n, sizeof(big) - (size_t) n, "}");
	ASH_T_OK(ash_json_parse(big, strlen(big), &doc));
	ASH_T_EQ_INT(cJSON_GetArraySize(doc), 301);
	cJSON_Delete(doc);
	snprintf(big + n, sizeof(big) - (size_t) n, ",\"k\":1}");
	ASH_T_ERR(ash_json_parse(big, strlen(big), &doc), ASH_EBADJSON);
}

/* A number a double cannot hold would become infinite, rendered as null. */
ASH_TEST(a_number_beyond_a_doubles_range_is_refused)
{
	cJSON *doc = NULL;

	ASH_T_ERR(ash_json_parse("[1e309]", 7, &doc), ASH_EBADJSON);
	ASH_T_ERR(ash_json_parse("{\"a\":[-2e308]}", 14, &doc), ASH_EBADJSON);
	ASH_T_OK(ash_json_parse("[1.7e308,-1.7e308,1e-400]", 25, &doc));
	ASH_T_EQ_INT(cJSON_GetArraySize(doc), 3);
	cJSON_Delete(doc);
}

/* ash_json_parse_ids: an integer literal beyond 2^53 (which a double
 * rounds) becomes the string of its digits, where a value goes; every
 * other number, string and key is read as ash_json_parse reads it. */
ASH_TEST(ids_beyond_2_pow_53_are_read_as_their_digits)
{
	const char *in =
	    "{\"a\":9007199254740993,\"b\":[-12345678901234567890,"
	    "9007199254740992,12,1.5e300,90071992547409930.5,"
	    "9007199254740993e0],"
	    "\"c\":\"x 9007199254740993\",\"d\" : 99999999999999999999 }";
	cJSON *doc = NULL, *b;
	char   huge[400];

	ASH_T_OK(ash_json_parse_ids(in, strlen(in), &doc));
	ASH_T_EQ_STR(ash_json_str(doc, "a"), "9007199254740993");
	ASH_T_EQ_STR(ash_json_str(doc, "d"), "99999999999999999999");
	ASH_T_EQ_STR(ash_json_str(doc, "c"), "x 9007199254740993");
	b = cJSON_GetObjectItem(doc, "b");
	ASH_T_EQ_STR(
	    cJSON_GetArrayItem(b, 0)->valuestring, "-12345678901234567890");
	for (int i = 1; i < 6; i++)
		ASH_T_TRUE(cJSON_IsNumber(cJSON_GetArrayItem(b, i)));
	ASH_T_TRUE(
	    cJSON_GetArrayItem(b, 1)->valuedouble == 9007199254740992.0);
	cJSON_Delete(doc);
	/* ash_json_parse rounds it. */
	ASH_T_OK(ash_json_parse(in, strlen(in), &doc));
	ASH_T_TRUE(cJSON_IsNumber(cJSON_GetObjectItem(doc, "a")));
	cJSON_Delete(doc);
	/* A literal where a key goes stays a syntax error. */
	for (int i = 0; i < 2; i++) {
		const char *key = i ? "{\"k\":1,12345678901234567890:1}"
		                    : "{12345678901234567890:1}";

		ASH_T_ERR(
		    ash_json_parse_ids(key, strlen(key), &doc), ASH_EBADJSON);
	}
	/* Too long for a double at all: refused as a number, kept as digits.
	 */
	memset(huge, '7', sizeof(huge) - 3);
	huge[0]                = '[';
	huge[sizeof(huge) - 3] = ']';
	huge[sizeof(huge) - 2] = '\0';
	ASH_T_ERR(ash_json_parse(huge, strlen(huge), &doc), ASH_EBADJSON);
	ASH_T_OK(ash_json_parse_ids(huge, strlen(huge), &doc));
	ASH_T_EQ_INT((int) strlen(cJSON_GetArrayItem(doc, 0)->valuestring),
	    (int) sizeof(huge) - 4);
	cJSON_Delete(doc);
}

/* n nested arrays, optionally wrapping a string full of brackets. */
static char *
nested(int n, const char *inner)
{
	size_t len = strlen(inner);
	char  *s   = malloc(2 * (size_t) n + len + 1);

	memset(s, '[', (size_t) n);
	memcpy(s + n, inner, len);
	memset(s + n + len, ']', (size_t) n);
	s[2 * n + len] = '\0';
	return s;
}

ASH_TEST(depth_64_ok_65_too_big)
{
	char  *ok    = nested(64, "");
	char  *deep  = nested(65, "");
	char  *huge  = nested(5000, "");
	char  *quote = nested(2,
	     "\"[[[[[[[[[[[[[[[[[[[[\\\"[[[[[[[[[[[[[[[[[[[[[["
	      "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"");
	cJSON *doc   = NULL;

	ASH_T_OK(parse_str(ok, &doc));
	cJSON_Delete(doc);
	ASH_T_ERR(parse_str(deep, &doc), ASH_ETOOBIG);
	ASH_T_ERR(parse_str(huge, &doc), ASH_ETOOBIG);
	/* Brackets inside a string (even after \") are not nesting. */
	ASH_T_OK(parse_str(quote, &doc));
	cJSON_Delete(doc);
	free(ok), free(deep), free(huge), free(quote);

	/* Objects count the same as arrays. */
	char obj[64 * 6 + 64 + 8] = "";
	for (int i = 0; i < 64; i++)
		strcat(obj, "{\"a\":");
	strcat(obj, "1");
	for (int i = 0; i < 64; i++)
		strcat(obj, "}");
	ASH_T_OK(parse_str(obj, &doc));
	cJSON_Delete(doc);
	obj[strlen(obj) - 65] = '\0'; /* drop "1" and the closers */
	strcat(obj, "{}");
	for (int i = 0; i < 64; i++)
		strcat(obj, "}");
	ASH_T_ERR(parse_str(obj, &doc), ASH_ETOOBIG);
}

ASH_TEST(i64_from_string_exact)
{
	cJSON  *doc = doc_of("{\"a\":\"9007199254740993\",\"b\":\"-12\","
	                      "\"max\":\"9223372036854775807\","
	                      "\"min\":\"-9223372036854775808\"}");
	int64_t v   = 0;

	ASH_T_OK(ash_json_get_i64(doc, "a", &v));
	ASH_T_TRUE(v == INT64_C(9007199254740993));
	ASH_T_OK(ash_json_get_i64(doc, "b", &v));
	ASH_T_EQ_INT(v, -12);
	ASH_T_OK(ash_json_get_i64(doc, "max", &v));
	ASH_T_TRUE(v == INT64_MAX);
	ASH_T_OK(ash_json_get_i64(doc, "min", &v));
	ASH_T_TRUE(v == INT64_MIN);
	cJSON_Delete(doc);
}

ASH_TEST(i64_bad_strings_rejected)
{
	cJSON *doc =
	    doc_of("{\"o\":\"9223372036854775808\","
	           "\"u\":\"-9223372036854775809\","
	           "\"big\":\"99999999999999999999\",\"p\":\"+1\","
	           "\"s1\":\" 1\",\"s2\":\"1 \",\"e\":\"\",\"m\":\"-\","
	           "\"x\":\"0x10\",\"f\":\"1.0\",\"n\":null,"
	           "\"t\":true,\"arr\":[1]}");
	const char *keys[] = {"o", "u", "big", "p", "s1", "s2", "e", "m", "x",
	    "f", "n", "t", "arr"};
	int64_t     v      = 77;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		ASH_T_ERR(ash_json_get_i64(doc, keys[i], &v), ASH_EINVAL);
	ASH_T_ERR(ash_json_get_i64(doc, "missing", &v), ASH_ENOTFOUND);
	ASH_T_ERR(ash_json_get_i64(NULL, "o", &v), ASH_ENOTFOUND);
	ASH_T_EQ_INT(v, 77); /* out untouched on error */
	cJSON_Delete(doc);
}

ASH_TEST(i64_from_number_within_2_pow_53)
{
	cJSON *doc =
	    doc_of("{\"max\":9007199254740992,"
	           "\"min\":-9007199254740992,\"k\":1e3,"
	           "\"over\":9007199254740994,\"neg\":-9007199254740994,"
	           "\"frac\":1.5,\"huge\":1e300}");
	int64_t v = 0;

	ASH_T_OK(ash_json_get_i64(doc, "max", &v));
	ASH_T_TRUE(v == INT64_C(9007199254740992));
	ASH_T_OK(ash_json_get_i64(doc, "min", &v));
	ASH_T_TRUE(v == -INT64_C(9007199254740992));
	ASH_T_OK(ash_json_get_i64(doc, "k", &v));
	ASH_T_EQ_INT(v, 1000);
	ASH_T_ERR(ash_json_get_i64(doc, "over", &v), ASH_EINVAL);
	ASH_T_ERR(ash_json_get_i64(doc, "neg", &v), ASH_EINVAL);
	ASH_T_ERR(ash_json_get_i64(doc, "frac", &v), ASH_EINVAL);
	ASH_T_ERR(ash_json_get_i64(doc, "huge", &v), ASH_EINVAL);
	cJSON_Delete(doc);
}

ASH_TEST(int_range_checked)
{
	cJSON *doc =
	    doc_of("{\"max\":2147483647,\"over\":2147483648,"
	           "\"min\":\"-2147483648\",\"under\":\"-2147483649\","
	           "\"s\":\"x\"}");
	int v = 5;

	ASH_T_OK(ash_json_get_int(doc, "max", &v));
	ASH_T_EQ_INT(v, INT_MAX);
	ASH_T_OK(ash_json_get_int(doc, "min", &v));
	ASH_T_EQ_INT(v, INT_MIN);
	v = 5;
	ASH_T_ERR(ash_json_get_int(doc, "over", &v), ASH_EINVAL);
	ASH_T_ERR(ash_json_get_int(doc, "under", &v), ASH_EINVAL);
	ASH_T_ERR(ash_json_get_int(doc, "s", &v), ASH_EINVAL);
	ASH_T_ERR(ash_json_get_int(doc, "none", &v), ASH_ENOTFOUND);
	ASH_T_EQ_INT(v, 5);
	cJSON_Delete(doc);
}

ASH_TEST(bool_and_str_defaults)
{
	cJSON *doc = doc_of(
	    "{\"t\":true,\"f\":false,\"s\":\"true\",\"n\":1,\"str\":\"hi\"}");

	ASH_T_TRUE(ash_json_bool(doc, "t", false));
	ASH_T_TRUE(!ash_json_bool(doc, "f", true));
	ASH_T_TRUE(ash_json_bool(doc, "s", true));
	ASH_T_TRUE(!ash_json_bool(doc, "s", false));
	ASH_T_TRUE(!ash_json_bool(doc, "n", false));
	ASH_T_TRUE(ash_json_bool(doc, "missing", true));
	ASH_T_TRUE(ash_json_bool(NULL, "t", true));
	ASH_T_EQ_STR(ash_json_str(doc, "str"), "hi");
	ASH_T_NULL(ash_json_str(doc, "n"));
	ASH_T_NULL(ash_json_str(doc, "missing"));
	cJSON_Delete(doc);
}

ASH_TEST(add_i64_renders_as_string)
{
	cJSON  *obj = cJSON_CreateObject();
	char   *text;
	cJSON  *back = NULL;
	int64_t v    = 0;

	ash_json_add_i64(obj, "id", INT64_C(9007199254740993));
	ash_json_add_i64(obj, "min", INT64_MIN);
	ash_json_add_str(obj, "q", "a\"b");
	text = ash_json_render(obj);
	ASH_T_EQ_STR(text,
	    "{\"id\":\"9007199254740993\","
	    "\"min\":\"-9223372036854775808\",\"q\":\"a\\\"b\"}");
	ASH_T_OK(parse_str(text, &back));
	ASH_T_OK(ash_json_get_i64(back, "id", &v));
	ASH_T_TRUE(v == INT64_C(9007199254740993));
	ASH_T_OK(ash_json_get_i64(back, "min", &v));
	ASH_T_TRUE(v == INT64_MIN);
	ASH_T_NULL(ash_json_render(NULL));
	cJSON_free(text);
	cJSON_Delete(back);
	cJSON_Delete(obj);
}

/* A taken string is the member's own: rendered as any string, duplicated
 * as a copy, freed once with its object (ASan counts the frees). */
ASH_TEST(add_str_take_owns_the_string)
{
	cJSON *obj = cJSON_CreateObject(), *dup;
	char  *s   = ash_xstrdup("long \"body\"");
	char  *text;

	ash_json_add_str_take(obj, "raw", s);
	ASH_T_TRUE(cJSON_GetObjectItem(obj, "raw")->valuestring == s);
	ASH_T_TRUE(
	    (cJSON_GetObjectItem(obj, "raw")->type & cJSON_IsReference) == 0);
	text = ash_json_render(obj);
	ASH_T_EQ_STR(text, "{\"raw\":\"long \\\"body\\\"\"}");
	dup = cJSON_Duplicate(obj, true);
	ASH_T_TRUE(cJSON_GetObjectItem(dup, "raw")->valuestring != s);
	cJSON_free(text);
	cJSON_Delete(dup);
	cJSON_Delete(obj);
}

/* ash_json_render's own number printing (json_render.c) against the text
 * cJSON gives the same numbers, and its escapes. */
ASH_TEST(render_numbers_and_escapes_as_cjson_does)
{
	const double nums[] = {0, -0.0, 1, -1, 2147483647.0, 2147483648.0,
	    1732999999123.0, 999999999999999.0, -999999999999999.0, 1e15,
	    9007199254740993.0, 0.5, 0.1, 1e-7, NAN, INFINITY};
	cJSON       *arr    = cJSON_CreateArray();
	cJSON       *obj    = cJSON_CreateObject();
	char        *text;

	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		cJSON_AddItemToArray(arr, cJSON_CreateNumber(nums[i]));
	text = ash_json_render(arr);
	ASH_T_EQ_STR(text,
	    "[0,-0,1,-1,2147483647,2147483648,1732999999123,999999999999999,"
	    "-999999999999999,1e+15,9.00719925474099e+15,0.5,0.1,1e-07,null,"
	    "null]");
	cJSON_free(text);
	ash_json_add_str(
	    obj, "k\"\n", "a\"b\\c\n\t\b\f\r\x01\x1f\x7f\xc3\xa9");
	cJSON_AddItemToObject(obj, "raw", cJSON_CreateRaw("[1, 2]"));
	cJSON_AddItemToObject(obj, "e", cJSON_CreateObject());
	cJSON_AddItemToObject(obj, "a", cJSON_CreateArray());
	cJSON_AddItemToObject(obj, "n", cJSON_CreateNull());
	cJSON_AddItemToObject(obj, "t", cJSON_CreateTrue());
	text = ash_json_render(obj);
	ASH_T_EQ_STR(text,
	    "{\"k\\\"\\n\":\"a\\\"b\\\\c\\n\\t\\b\\f\\r\\u0001\\u001f\x7f"
	    "\xc3\xa9\",\"raw\":[1, 2],\"e\":{},\"a\":[],\"n\":null,"
	    "\"t\":true}");
	cJSON_free(text);
	cJSON_Delete(arr);
	cJSON_Delete(obj);
}

/* Deterministic generator of documents for the comparison below. */
static uint64_t rnd_state = 0x9E3779B97F4A7C15u;

static uint64_t
rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static double
rnd_number(void)
{
	static const double edge[] = {0, -0.0, 1e15, -1e15, 1e15 - 1, 1e15 + 1,
	    9007199254740992.0, 1.0 / 3, 5e-324, DBL_MAX, -DBL_MAX, NAN,
	    INFINITY, -INFINITY, 2147483648.0, -2147483649.0};
	uint64_t            bits;
	double              d;

	switch (rnd() % 4) {
	case 0:
		return edge[rnd() % (sizeof(edge) / sizeof(edge[0]))];
	case 1: /* integers of every magnitude up to 10^18, either sign */
		d = (double) (rnd() %
		    (uint64_t) pow(10, (double) (rnd() % 19)));
		return rnd() % 2 ? -d : d;
	case 2: /* times in milliseconds and seconds with fractions */
		return (double) (rnd() % 2000000000000u) /
		    (rnd() % 2 ? 1 : 1000);
	default: /* any bit pattern: subnormals, huge values, NaNs */
		bits = rnd();
		memcpy(&d, &bits, sizeof(d));
		return d;
	}
}

static char *
rnd_text(char *buf, size_t cap)
{
	size_t n = rnd() % (cap - 1);

	for (size_t i = 0; i < n; i++) {
		if (rnd() % 4 == 0)
			buf[i] = "\"\\\b\f\n\r\t\x01\x1f /"[rnd() % 11];
		else
			buf[i] = (char) (1 + rnd() % 255);
	}
	buf[n] = '\0';
	return buf;
}

static cJSON *
rnd_item(int depth)
{
	char   key[12], text[16];
	cJSON *c;
	int    n;

	switch (rnd() % (depth < 4 ? 9 : 7)) {
	case 0:
		return cJSON_CreateNull();
	case 1:
		return cJSON_CreateBool(rnd() % 2);
	case 2:
	case 3:
		return cJSON_CreateNumber(rnd_number());
	case 4:
	case 5:
		return cJSON_CreateString(rnd_text(text, sizeof(text)));
	case 6:
		return cJSON_CreateRaw("{\"raw\": [1,2]}");
	case 7:
		c = cJSON_CreateArray();
		for (n = (int) (rnd() % 5); n > 0; n--)
			cJSON_AddItemToArray(c, rnd_item(depth + 1));
		return c;
	default:
		c = cJSON_CreateObject();
		for (n = (int) (rnd() % 5); n > 0; n--)
			cJSON_AddItemToObject(c, rnd_text(key, sizeof(key)),
			    rnd_item(depth + 1));
		return c;
	}
}

/* A string is given room for its plain length only, and grows at each
 * escape: long strings that are mostly escapes (up to six bytes for one)
 * cross the buffer's growth inside the string, at every offset. */
ASH_TEST(render_grows_inside_long_escaped_strings)
{
	static const char mix[] = "\x01\"a\\\n\x1f";
	char              text[3001];

	for (size_t n = 0; n < sizeof(text); n += 7) {
		cJSON *doc = cJSON_CreateArray();
		char  *ours, *ref;

		for (size_t i = 0; i < n; i++)
			text[i] = mix[(i * 5 + n) % (sizeof(mix) - 1)];
		text[n] = '\0';
		cJSON_AddItemToArray(doc, cJSON_CreateString(text));
		cJSON_AddItemToArray(doc, cJSON_CreateString(text + n / 2));
		ours = ash_json_render(doc);
		ref  = cJSON_PrintUnformatted(doc);
		ASH_T_EQ_STR(ours, ref);
		cJSON_free(ours);
		cJSON_free(ref);
		cJSON_Delete(doc);
	}
}

/* Over 20,000 generated documents (every kind of item, nesting, numbers of
 * every magnitude and bit pattern, strings with every escape and byte),
 * ash_json_render writes exactly what cJSON_PrintUnformatted writes. */
ASH_TEST(render_matches_cjson_over_generated_documents)
{
	int numbers = 0;

	for (int i = 0; i < 20000; i++) {
		cJSON *doc  = rnd_item(rnd() % 2 ? 0 : 4);
		char  *ours = ash_json_render(doc);
		char  *ref  = cJSON_PrintUnformatted(doc);

		ASH_T_EQ_STR(ours, ref);
		numbers += cJSON_IsNumber(doc);
		cJSON_free(ours);
		cJSON_free(ref);
		cJSON_Delete(doc);
	}
	ASH_T_TRUE(numbers > 2000); /* the generator reached the numbers */
}

/* obj's members through the writer, each the way its kind is written. */
static void
jw_walk(ash_jw *w, const cJSON *obj)
{
	for (const cJSON *c = obj->child; c != NULL; c = c->next) {
		double d = c->valuedouble;

		if (cJSON_IsObject(c)) {
			ash_jw_open(w, c->string);
			jw_walk(w, c);
			ash_jw_close(w);
		} else if (cJSON_IsString(c)) {
			ash_jw_str(w, c->string, c->valuestring);
		} else if (cJSON_IsNumber(c) && fabs(d) < 9e18 &&
		    d == (double) (int64_t) d && !(d == 0 && signbit(d))) {
			ash_jw_int(w, c->string, (int64_t) d);
		} else {
			ash_jw_item(w, c->string, c);
		}
	}
}

/* Over 20,000 generated objects, the writer puts down exactly the bytes
 * ash_json_render (so cJSON) writes for the same tree, prefix and all. */
ASH_TEST(jw_writes_the_bytes_of_the_tree_over_generated_objects)
{
	int ints = 0, nested = 0;

	for (int i = 0; i < 20000; i++) {
		cJSON *doc = cJSON_CreateObject(), *it;
		ash_jw w   = {0};
		char  *ours, *ref, *want;

		for (int n = (int) (rnd() % 6); n > 0; n--) {
			it = rnd_item(rnd() % 2 ? 0 : 3);
			ints += cJSON_IsNumber(it) &&
			    it->valuedouble == floor(it->valuedouble);
			nested += cJSON_IsObject(it);
			cJSON_AddItemToObject(
			    doc, n % 2 ? "k" : "\"\x01é", it);
		}
		ash_jw_raw(&w, "topic ", 6);
		ash_jw_open(&w, NULL);
		jw_walk(&w, doc);
		ash_jw_close(&w);
		ours = ash_jw_done(&w);
		ref  = ash_json_render(doc);
		want = malloc(strlen(ref) + 7);
		sprintf(want, "topic %s", ref);
		ASH_T_EQ_STR(ours, want);
		ASH_T_TRUE(
		    w.text.p == NULL && w.depth == 0); /* w is empty again */
		free(want);
		cJSON_free(ours);
		cJSON_free(ref);
		cJSON_Delete(doc);
	}
	ASH_T_TRUE(ints > 2000 && nested > 2000);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(trailing_garbage_rejected),
    ASH_TEST_ENTRY(surrounding_whitespace_ok),
    ASH_TEST_ENTRY(parses_by_length_only),
    ASH_TEST_ENTRY(strings_must_be_utf8_without_an_escaped_nul),
    ASH_TEST_ENTRY(a_key_given_twice_is_refused),
    ASH_TEST_ENTRY(a_number_beyond_a_doubles_range_is_refused),
    ASH_TEST_ENTRY(ids_beyond_2_pow_53_are_read_as_their_digits),
    ASH_TEST_ENTRY(depth_64_ok_65_too_big),
    ASH_TEST_ENTRY(i64_from_string_exact),
    ASH_TEST_ENTRY(i64_bad_strings_rejected),
    ASH_TEST_ENTRY(i64_from_number_within_2_pow_53),
    ASH_TEST_ENTRY(int_range_checked), ASH_TEST_ENTRY(bool_and_str_defaults),
    ASH_TEST_ENTRY(add_i64_renders_as_string),
    ASH_TEST_ENTRY(add_str_take_owns_the_string),
    ASH_TEST_ENTRY(render_numbers_and_escapes_as_cjson_does),
    ASH_TEST_ENTRY(render_grows_inside_long_escaped_strings),
    ASH_TEST_ENTRY(render_matches_cjson_over_generated_documents),
    ASH_TEST_ENTRY(jw_writes_the_bytes_of_the_tree_over_generated_objects))
