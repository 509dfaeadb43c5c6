/*
 * pgrec.c - rows of JSON objects as the text of a Postgres array of
 * composite values, and JSON arrays as plain arrays (ashoon/pgrec.h).
 *
 * A field's bytes pass two quotings: the record's ("..." around the field,
 * '"' and '\' escaped) and then the array's around the whole record (the
 * same rules, applied to the record's text). Written in one pass: the
 * record's quote is \" at the array level, and an escaped '"' or '\' in
 * the value becomes \\\" or \\\\. The text grows in json_render.c's buffer,
 * and a JSON field is rendered by it.
 */
#include "json_impl.h"

#include <ashoon/err.h>
#include <ashoon/pgrec.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* A field's value (n bytes), quoted for the record and again for the
 * array (twice), or for the array alone: at most four bytes for each of
 * its bytes, and the two quotes. */
static void
put_quoted(ash__out *o, const char *s, size_t n, bool twice)
{
	char *w = ash__out_room(o, 4 * n + 4), *start = w;

	if (twice)
		*w++ = '\\';
	*w++ = '"';
	for (const char *end = s + n; s < end; s++) {
		if (*s == '"' || *s == '\\') {
			memcpy(w, "\\\\\\", twice ? 3 : 1);
			w += twice ? 3 : 1;
		}
		*w++ = *s;
	}
	if (twice)
		*w++ = '\\';
	*w++ = '"';
	o->len += (size_t) (w - start);
}

/* The text of v (not NULL, not null) as type writes it: a string's
 * content, a number as an integer when it is one, true or false, or JSON
 * rendered into scratch. */
static const char *
value_text(const cJSON *v, ash_pgrec_type type, ash__out *scratch, size_t *n)
{
	scratch->len = 0;
	if (type == ASH_PGREC_PLAIN) {
		if (cJSON_IsString(v)) {
			*n = strlen(v->valuestring);
			return v->valuestring;
		}
		if (cJSON_IsBool(v)) {
			*n = cJSON_IsTrue(v) ? 4 : 5;
			return cJSON_IsTrue(v) ? "true" : "false";
		}
		if (cJSON_IsNumber(v)) {
			double d   = v->valuedouble;
			char  *buf = ash__out_room(scratch, 32);

			/* Not ash__json_put's form, which writes 1e+15 for an
			 * integral 10^15: a bigint column refuses that. 2^63
			 * exactly is out of int64's range; below it, integral
			 * doubles convert exactly. */
			if (d == floor(d) && fabs(d) < 9223372036854775808.0)
				*n = ash__int_digits(buf, (int64_t) d);
			else
				*n = (size_t) snprintf(buf, 32, "%.17g", d);
			return buf;
		}
	}
	ash__json_put(scratch, v);
	*n = scratch->len;
	return scratch->p;
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
ash_pgrec_values(const cJSON *values)
{
	ash__out     o = {0}, scratch = {0};
	const cJSON *v;
	bool         first = true;

	ash__out_put(&o, "{", 1);
	cJSON_ArrayForEach(v, values)
	{
		size_t      n;
		const char *t;

		if (!first)
			ash__out_put(&o, ",", 1);
		first = false;
		if (cJSON_IsNull(v)) {
			ash__out_put(&o, "NULL", 4);
			continue;
		}
		t = value_text(v, ASH_PGREC_PLAIN, &scratch, &n);
		put_quoted(&o, t, n, false);
	}
	ash__out_put(&o, "}", 1);
	*ash__out_room(&o, 1) = '\0';
	cJSON_free(scratch.p);
	return o.p;
}

char *
ash_pgrec_array(const cJSON *rows, const ash_pgrec_col *cols, int ncols)
{
	ash__out     o = {0}, scratch = {0};
	const cJSON *row, *vals[ASH_PGREC_MAX_COLS];
	bool         first = true;

	ASH_ASSERT(ncols >= 1 && ncols <= ASH_PGREC_MAX_COLS);
	ash__out_put(&o, "{", 1);
	cJSON_ArrayForEach(row, rows)
	{
		ash__out_put(&o, first ? "\"(" : ",\"(", first ? 2 : 3);
		first = false;
		row_values(row, cols, ncols, vals);
		for (int i = 0; i < ncols; i++) {
			if (i > 0)
				ash__out_put(&o, ",", 1);
			if (vals[i] != NULL && !cJSON_IsNull(vals[i])) {
				size_t      n;
				const char *t = value_text(
				    vals[i], cols[i].type, &scratch, &n);

				put_quoted(&o, t, n, true);
			}
		}
		ash__out_put(&o, ")\"", 2);
	}
	ash__out_put(&o, "}", 1);
	*ash__out_room(&o, 1) = '\0';
	cJSON_free(scratch.p);
	return o.p;
}
