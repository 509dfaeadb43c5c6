/*
 * json_render.c - compact rendering of cJSON documents (ash_json_render).
 *
 * Byte for byte what cJSON_PrintUnformatted writes, but without its cost
 * for numbers: cJSON 1.7.15 prints every number with sprintf("%1.15g") and
 * reads it back with sscanf to check that it round-trips. On the webhook
 * path most numbers are small counts and millisecond times, and that pair
 * of calls was 18 % of meta-ingest's instructions (callgrind, under load).
 * An integral number below 1e15 in magnitude prints the same as a plain
 * integer ("%1.15g" has no exponent and no point for it), so those take an
 * integer conversion; every other number goes cJSON's way. Strings are
 * escaped exactly as cJSON escapes them (", \, and bytes below 0x20; the
 * rest, UTF-8 included, as they are). tests/unit/test_json.c compares the
 * two renderings over generated documents.
 *
 * Pure function on a caller-owned document: any thread. Out-of-memory, and
 * a document cJSON could not print either (a raw item without text, an
 * item of no type), abort.
 */
#include "json_impl.h"

#include <ashoon/json.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef ash__out out;

char *
ash__out_grow(out *o, size_t n)
{
	size_t cap = o->cap ? o->cap : 256;
	char  *p;

	while (cap < o->len + n)
		cap *= 2;
	p = cJSON_malloc(cap);
	ASH_ASSERT(p != NULL);
	if (o->len > 0)
		memcpy(p, o->p, o->len);
	cJSON_free(o->p);
	o->p   = p;
	o->cap = cap;
	return o->p + o->len;
}

size_t
ash__int_digits(char *buf, int64_t v)
{
	char     tmp[24];
	size_t   n = 0, k = 0;
	uint64_t u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;

	do
		tmp[n++] = (char) ('0' + u % 10);
	while ((u /= 10) != 0);
	if (v < 0)
		buf[k++] = '-';
	while (n > 0)
		buf[k++] = tmp[--n];
	return k;
}

static void
put_number(out *o, double d)
{
	char   buf[32];
	size_t n;
	double back = 0;

	if (isnan(d) || isinf(d)) {
		ash__out_put(o, "null", 4);
		return;
	}
	/* -0 is integral too, but "%1.15g" prints it as "-0". */
	if (d > -1e15 && d < 1e15 && d == (double) (int64_t) d &&
	    !(d == 0 && signbit(d))) {
		ash__out_put(o, buf, ash__int_digits(buf, (int64_t) d));
		return;
	}
	n = (size_t) snprintf(buf, sizeof(buf), "%1.15g", d);
	if (sscanf(buf, "%lg", &back) != 1 ||
	    fabs(back - d) > fmax(fabs(back), fabs(d)) * DBL_EPSILON)
		n = (size_t) snprintf(buf, sizeof(buf), "%1.17g", d);
	ASH_ASSERT(n < sizeof(buf));
	ash__out_put(o, buf, n);
}

/* Copies runs of plain bytes whole: base64 bodies and ids are nearly all
 * of the text rendered on the webhook path. Room is taken for the plain
 * case (the string and its quotes) and grown at each escape: reserving the
 * worst case (6 bytes a byte) made every envelope that carries a webhook
 * body allocate 16 KB to hold 2 KB. */
static void
put_string(out *o, const char *s)
{
	static const char    hex[]  = "0123456789abcdef";
	static const char    from[] = "\"\\\b\f\n\r\t", to[] = "\"\\bfnrt";
	const unsigned char *u      = (const unsigned char *) (s ? s : "");
	size_t               n      = strlen((const char *) u);
	char                 esc[6] = {'\\'};
	const char          *at;

	ash__out_room(o, n + 2);
	o->p[o->len++] = '"';
	for (;;) {
		const unsigned char *run = u;
		size_t               k   = 2;

		while (!ash__json_special[*u])
			u++;
		ash__out_put(o, (const char *) run, (size_t) (u - run));
		if (*u == '\0')
			break;
		/* cJSON's short escapes; the other control bytes as \u00XX. */
		at = memchr(from, *u, sizeof(from) - 1);
		if (at != NULL) {
			esc[1] = to[at - from];
		} else {
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[*u >> 4];
			esc[5] = hex[*u & 15];
			k      = 6;
		}
		ash__out_put(o, esc, k);
		u++;
	}
	ash__out_put(o, "\"", 1);
}

void
ash__json_put(out *o, const cJSON *it)
{
	switch (it->type & 0xFF) {
	case cJSON_NULL:
		ash__out_put(o, "null", 4);
		break;
	case cJSON_False:
		ash__out_put(o, "false", 5);
		break;
	case cJSON_True:
		ash__out_put(o, "true", 4);
		break;
	case cJSON_Number:
		put_number(o, it->valuedouble);
		break;
	case cJSON_String:
		put_string(o, it->valuestring);
		break;
	case cJSON_Raw:
		ASH_ASSERT(it->valuestring != NULL);
		ash__out_put(o, it->valuestring, strlen(it->valuestring));
		break;
	case cJSON_Array:
	case cJSON_Object: {
		bool obj = (it->type & 0xFF) == cJSON_Object;

		ash__out_put(o, obj ? "{" : "[", 1);
		for (const cJSON *c = it->child; c != NULL; c = c->next) {
			if (c != it->child)
				ash__out_put(o, ",", 1);
			if (obj) {
				put_string(o, c->string);
				ash__out_put(o, ":", 1);
			}
			ash__json_put(o, c);
		}
		ash__out_put(o, obj ? "}" : "]", 1);
		break;
	}
	default:
		ASH_ASSERT(!"cJSON item of no type");
	}
}

char *
ash_json_render(const cJSON *doc)
{
	out o = {0};

	if (doc == NULL)
		return NULL;
	ash__json_put(&o, doc);
	*ash__out_room(&o, 1) = '\0';
	return o.p;
}

/* --- ash_jw: the same bytes, written without a tree --- */

/* The comma before a member, and its key. */
static void
jw_member(ash_jw *w, const char *key)
{
	uint32_t bit;

	ASH_ASSERT(w->depth >= 1 && w->depth <= 32);
	bit = UINT32_C(1) << (w->depth - 1);
	ASH_ASSERT(key != NULL);
	if (w->more & bit)
		ash__out_put(&w->text, ",", 1);
	w->more |= bit;
	put_string(&w->text, key);
	ash__out_put(&w->text, ":", 1);
}

void
ash_jw_open(ash_jw *w, const char *key)
{
	if (w->depth > 0)
		jw_member(w, key);
	ASH_ASSERT(w->depth < 32);
	w->depth++;
	w->more &= ~(UINT32_C(1) << (w->depth - 1));
	ash__out_put(&w->text, "{", 1);
}

void
ash_jw_close(ash_jw *w)
{
	ASH_ASSERT(w->depth > 0);
	w->depth--;
	ash__out_put(&w->text, "}", 1);
}

void
ash_jw_str(ash_jw *w, const char *key, const char *v)
{
	ASH_ASSERT(v != NULL);
	jw_member(w, key);
	put_string(&w->text, v);
}

void
ash_jw_int(ash_jw *w, const char *key, int64_t v)
{
	jw_member(w, key);
	put_number(&w->text, (double) v);
}

void
ash_jw_item(ash_jw *w, const char *key, const cJSON *v)
{
	jw_member(w, key);
	if (v == NULL)
		ash__out_put(&w->text, "{}", 2);
	else
		ash__json_put(&w->text, v);
}

void
ash_jw_raw(ash_jw *w, const char *s, size_t n)
{
	ash__out_put(&w->text, s, n);
}

char *
ash_jw_done(ash_jw *w)
{
	char *p;

	ASH_ASSERT(w->depth == 0);
	*ash__out_room(&w->text, 1) = '\0';
	p                           = w->text.p;
	memset(w, 0, sizeof(*w));
	return p;
}
