/*
 * pgrec.c - rows of JSON objects as the text of a Postgres array of
 * composite values (ashoon/pgrec.h).
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
 * array: at most four bytes for each of its bytes, and the two quotes. */
static void
put_field(ash__out *o, const char *s, size_t n)
{
	char *w = ash__out_room(o, 4 * n + 4), *start = w;

	*w++ = '\\';
	*w++ = '"';
	for (const char *end = s + n; s < end; s++) {
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
put_number(ash__out *o, double v)
{
	char buf[32];

	/* 2^63 exactly is out of int64's range; below it, integral doubles
	 * convert exactly. */
	if (v == floor(v) && fabs(v) < 9223372036854775808.0)
		put_field(o, buf, ash__int_digits(buf, (int64_t) v));
	else
		put_field(
		    o, buf, (size_t) snprintf(buf, sizeof(buf), "%.17g", v));
}

/* v into its field; json is scratch room for a value rendered as JSON. */
static void
put_value(ash__out *o, const cJSON *v, ash_pgrec_type type, ash__out *json)
{
	if (v == NULL || cJSON_IsNull(v))
		return; /* NULL: nothing between the commas */
	if (type == ASH_PGREC_PLAIN) {
		if (cJSON_IsString(v)) {
			put_field(o, v->valuestring, strlen(v->valuestring));
			return;
		}
		if (cJSON_IsNumber(v)) {
			put_number(o, v->valuedouble);
			return;
		}
		if (cJSON_IsBool(v)) {
			put_field(o, cJSON_IsTrue(v) ? "true" : "false",
			    cJSON_IsTrue(v) ? 4 : 5);
			return;
		}
	}
	json->len = 0;
	ash__json_put(json, v);
	put_field(o, json->p, json->len);
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
	ash__out     o = {0}, json = {0};
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
			put_value(&o, vals[i], cols[i].type, &json);
		}
		ash__out_put(&o, ")\"", 2);
	}
	ash__out_put(&o, "}", 1);
	*ash__out_room(&o, 1) = '\0';
	cJSON_free(json.p);
	return o.p;
}
