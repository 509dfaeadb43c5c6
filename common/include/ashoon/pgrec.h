/*
 * ashoon/pgrec.h - rows of JSON objects as one Postgres parameter: the text
 * form of an array of composite values (or of plain values).
 *
 * A hot statement that takes many rows (ingest_batch()) can take them as
 * $1::some_type[] instead of one jsonb document: Postgres then reads them
 * with array_in and record_in, one pass and each field's own input
 * function, where jsonb costs a parse into a tree, a sort of every object's
 * keys, and a lookup per column per row (jsonb_to_recordset). For the
 * webhook batches that took 0.3 ms instead of 0.85 per call of 75 events
 * (docs/PERFORMANCE.md).
 *
 * The form (PostgreSQL's array_in and record_in): {"(f1,f2,...)",...}.
 * Every field that is not NULL is quoted, and so is every element, so no
 * value needs the rules for unquoted ones; inside quotes '"' and '\' are
 * escaped with '\', once for the record and again for the array. A NULL
 * field is nothing between its commas. The text is UTF-8 like its input
 * (cJSON strings parsed by ash_json_parse are, and hold no NUL).
 *
 * Pure function: any thread. Out of memory aborts.
 */
#ifndef ASHOON_PGREC_H
#define ASHOON_PGREC_H

#include <cjson/cJSON.h>

/* How a member is written into its field. */
typedef enum ash_pgrec_type {
	ASH_PGREC_PLAIN, /* the value itself: a string's content, a number as
	                  * an integer when integral (else "%.17g"), true or
	                  * false, an object or array as its JSON text - for
	                  * text, integer, boolean... columns, whose input
	                  * function then takes it or refuses it */
	ASH_PGREC_JSON,  /* the value as JSON (a string quoted): json, jsonb */
} ash_pgrec_type;

/* One field of the composite type, in its order: the member it comes
 * from and how it is written. */
typedef struct ash_pgrec_col {
	const char    *member;
	ash_pgrec_type type;
} ash_pgrec_col;

#define ASH_PGREC_MAX_COLS 64

/* The array of rows (a cJSON array of objects; NULL or empty: "{}") with
 * ncols (1..ASH_PGREC_MAX_COLS) fields each, taken from the members cols
 * names (matched case sensitively; of two members of one name, the
 * first). A member missing or null is a NULL field; so is every field of
 * a row that is not an object. Returns a string to free with cJSON_free. */
char *ash_pgrec_array(const cJSON *rows, const ash_pgrec_col *cols, int ncols);

/* The array of values (a cJSON array; NULL or empty: "{}") for a
 * parameter cast to a one-dimensional array of a plain type (text[],
 * bigint[]...): each value written as an ASH_PGREC_PLAIN field is, quoted
 * once, for the array alone; null is NULL. Returns a string to free with
 * cJSON_free. */
char *ash_pgrec_values(const cJSON *values);

#endif
