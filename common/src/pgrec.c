/*
 * pgrec.c - rows of JSON objects as the text of a Postgres array of
 * composite values (ashoon/pgrec.h).
 *
 * A field's bytes pass two quotings: the record's ("..." around the field,
 * '"' and '\' escaped) and then the array's around the whole record (the
 * same rules, applied to the record's text). Written in one pass: the
 * record's quote is \" at the array level, and an escaped '"' or '\' in
 * the value becomes \\\" or \\\\.
 */
#include <ashoon/err.h>
#include <ashoon/json.h>
#include <ashoon/pgrec.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct out {
	char  *p;
	size_t len, cap;
} out;

/* Room for n more bytes (and the final NUL). */
static char *
room(out *o, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		while (o->len + n + 1 > o->cap)
			o->cap = o->cap ? o->cap * 2 : 4096;
		o->p = realloc(o->p, o->cap);
		ASH_ASSERT(o->p != NULL);
	}
	return o->p + o->len;
}

static void
put(out *o, const char *s, size_t n)
{
	memcpy(room(o, n), s, n);
	o->len += n;
}

/* A field's value, quoted for the record and again for the array: at
 * most four bytes for each of its bytes, and the two quotes. */
static void
put_field(out *o, const char *s)
{
	size_t n = strlen(s);
	char  *w = room(o, 4 * n + 4), *start = w;

	*w++ = '\\';
	*w++ = '"';
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\') {
			memcpy(w, "\\\\\\", 3);
			w += 3;
		}
		*w++ = *s;
	}
	*w++ = '\\';
	*w++ = '"';
	o->len += (size_t) (w - start);
}

/* The value of a plain field: a number as an integer when it is one. */
static void
put_number(out *o, double v)
{
	char     buf[32], *p = buf + sizeof(buf);
	uint64_t u;

	/* 2^63 exactly is out of int64's range; below it, integral doubles
	 * convert exactly. */
	if (v != floor(v) || fabs(v) >= 9223372036854775808.0) {
		snprintf(buf, sizeof(buf), "%.17g", v);
		put_field(o, buf);
		return;
	}
	*--p = '\0';
	u    = v < 0 ? (uint64_t) 0 - (uint64_t) (int64_t) v : (uint64_t) v;
	do
		*--p = (char) ('0' + u % 10);
	while ((u /= 10) != 0);
	if (v < 0)
		*--p = '-';
	put_field(o, p);
}

static void
put_value(out *o, const cJSON *v, ash_pgrec_type type)
{
	char *json;

	if (v == NULL || cJSON_IsNull(v))
		return; /* NULL: nothing between the commas */
	if (type == ASH_PGREC_PLAIN) {
		if (cJSON_IsString(v)) {
			put_field(o, v->valuestring);
			return;
		}
		if (cJSON_IsNumber(v)) {
			put_number(o, v->valuedouble);
			return;
		}
		if (cJSON_IsBool(v)) {
			put_field(o, cJSON_IsTrue(v) ? "true" : "false");
			return;
		}
	}
	json = ash_json_render(v);
	put_field(o, json);
	cJSON_free(json);
}

/* The row's members for the columns, found in one walk over its members
 * (a lookup per column scanned every member for each, and most columns of
 * an event are missing: 24 lookups of 12 members). The first of a name
 * wins, as for cJSON_GetObjectItem. */
static void
row_values(
    const cJSON *row, const ash_pgrec_col *cols, int ncols, const cJSON **vals)
{
	memset(vals, 0, (size_t) ncols * sizeof(*vals));
	if (!cJSON_IsObject(row))
		return;
	for (const cJSON *m = row->child; m != NULL; m = m->next)
		for (int i = 0; i < ncols; i++)
			if (vals[i] == NULL &&
			    m->string[0] == cols[i].member[0] &&
			    strcmp(m->string, cols[i].member) == 0) {
				vals[i] = m;
				break;
			}
}

char *
ash_pgrec_array(const cJSON *rows, const ash_pgrec_col *cols, int ncols)
{
	out          o = {0};
	const cJSON *row, *vals[ASH_PGREC_MAX_COLS];
	bool         first = true;

	ASH_ASSERT(ncols >= 1 && ncols <= ASH_PGREC_MAX_COLS);
	put(&o, "{", 1);
	cJSON_ArrayForEach(row, rows)
	{
		put(&o, first ? "\"(" : ",\"(", first ? 2 : 3);
		first = false;
		row_values(row, cols, ncols, vals);
		for (int i = 0; i < ncols; i++) {
			if (i > 0)
				put(&o, ",", 1);
			put_value(&o, vals[i], cols[i].type);
		}
		put(&o, ")\"", 2);
	}
	put(&o, "}", 1);
	o.p[o.len] = '\0';
	return o.p;
}
