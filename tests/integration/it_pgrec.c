/*
 * Integration tests: what a real Postgres reads from ash_pgrec_array's
 * text (ashoon/pgrec.h) is what the rows held, field by field - values
 * full of both levels' delimiters, NULLs, empty strings, numbers and JSON.
 */
#include "it.h"

#include <ashoon/json.h>
#include <ashoon/pgrec.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ash_pgrec_col cols[] = {
    {"n", ASH_PGREC_PLAIN},
    {"s", ASH_PGREC_PLAIN},
    {"b", ASH_PGREC_PLAIN},
    {"j", ASH_PGREC_JSON},
};

/* Texts that stand for themselves in neither level unquoted. */
static const char *const texts[] = {
    "",
    " ",
    "NULL",
    "null",
    "\"",
    "\\",
    "\\\"",
    "\"\"",
    "a,b",
    "(x)",
    "{1,2}",
    " lead and trail ",
    "tab\there\nnew line\r",
    "back\\slash \"quoted\" (paren), {brace}",
    "\\\\\\\"\"\\",
    "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x8e\x89",
    "'single' $$dollar$$ ;",
};
#define NTEXTS ((int) (sizeof(texts) / sizeof(texts[0])))

/* Runs sql with one text parameter; the result, which must be TUPLES_OK. */
static PGresult *
query1(PGconn *c, const char *sql, const char *param)
{
	PGresult *r = PQexecParams(c, sql, 1, NULL, &param, NULL, NULL, 0);

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		ASH_T_FAILF("%s: %s", sql, PQresultErrorMessage(r));
	return r;
}

static PGconn *
connect_case(const char *tag)
{
	char    dsn[512];
	PGconn *c;

	it_db_create(tag, dsn, sizeof(dsn));
	it_pg_exec(dsn,
	    "CREATE TYPE r AS (n bigint, s text, b boolean, "
	    "j jsonb)");
	c = PQconnectdb(dsn);
	ASH_T_TRUE(PQstatus(c) == CONNECTION_OK);
	return c;
}

ASH_TEST(every_text_reads_back_as_it_was)
{
	PGconn   *c    = connect_case("pgrec_text");
	cJSON    *rows = cJSON_CreateArray();
	char     *arr;
	PGresult *r;

	for (int i = 0; i < NTEXTS; i++) {
		cJSON *o = cJSON_CreateObject();

		ash_json_add_i64(o, "n", i);
		ash_json_add_str(o, "s", texts[i]);
		/* The same text as a JSON string, and in an object's key. */
		cJSON_AddItemToObject(o, "j", cJSON_CreateObject());
		ash_json_add_str(
		    cJSON_GetObjectItem(o, "j"), texts[i], texts[i]);
		cJSON_AddItemToArray(rows, o);
	}
	arr = ash_pgrec_array(rows, cols, 4);
	r   = query1(c,
	      "SELECT x.n, x.s, x.j ->> x.s, x.b IS NULL FROM "
	        "unnest($1::r[]) WITH ORDINALITY AS x(n, s, b, j, o) "
	        "ORDER BY x.o",
	      arr);
	ASH_T_EQ_INT(PQntuples(r), NTEXTS);
	for (int i = 0; i < NTEXTS; i++) {
		char n[16];

		snprintf(n, sizeof(n), "%d", i);
		ASH_T_EQ_STR(PQgetvalue(r, i, 0), n);
		ASH_T_EQ_STR(PQgetvalue(r, i, 1), texts[i]);
		ASH_T_TRUE(!PQgetisnull(r, i, 1));
		ASH_T_EQ_STR(PQgetvalue(r, i, 2), texts[i]);
		ASH_T_EQ_STR(PQgetvalue(r, i, 3), "t");
	}
	PQclear(r);
	cJSON_free(arr);
	cJSON_Delete(rows);
	PQfinish(c);
}

/* A linear congruential generator: the same texts in every run. */
static unsigned
next(unsigned *seed)
{
	*seed = *seed * 1103515245 + 12345;
	return *seed >> 16;
}

/* Generated texts, from an alphabet of both levels' delimiters, white
 * space, control bytes and multi-byte UTF-8, each in a text field and as
 * a JSON string: Postgres reads every one back as it was. */
ASH_TEST(generated_texts_read_back_as_they_were)
{
	static const char *const alphabet[] = {"\"", "\\", ",", "(", ")", "{",
	    "}", " ", "\t", "\n", "\r", "\x01", "\x1f", "a", "Z", "0", "'",
	    "NULL", "\xc3\xa9", "\xe2\x9c\x93", "\xf0\x9f\x8e\x89"};
	enum { ROWS = 400, MAXLEN = 40 };
	const unsigned NLETTERS = sizeof(alphabet) / sizeof(alphabet[0]);
	PGconn        *c        = connect_case("pgrec_gen");
	cJSON         *rows     = cJSON_CreateArray();
	char          *arr, *want[ROWS];
	PGresult      *r;
	unsigned       seed = 12345;

	for (int i = 0; i < ROWS; i++) {
		char   buf[MAXLEN * 4 + 1] = ""; /* 4: the longest letter */
		int    len                 = (int) (next(&seed) % MAXLEN);
		cJSON *o                   = cJSON_CreateObject();

		for (int k = 0; k < len; k++)
			strcat(buf, alphabet[next(&seed) % NLETTERS]);
		want[i] = strdup(buf);
		ash_json_add_i64(o, "n", i);
		ash_json_add_str(o, "s", buf);
		cJSON_AddItemToObject(o, "j", cJSON_CreateString(buf));
		cJSON_AddItemToArray(rows, o);
	}
	arr = ash_pgrec_array(rows, cols, 4);
	r   = query1(c,
	      "SELECT x.s, x.j #>> '{}' FROM unnest($1::r[]) "
	        "WITH ORDINALITY AS x(n, s, b, j, o) ORDER BY x.o",
	      arr);
	ASH_T_EQ_INT(PQntuples(r), ROWS);
	for (int i = 0; i < ROWS; i++) {
		ASH_T_EQ_STR(PQgetvalue(r, i, 0), want[i]);
		ASH_T_EQ_STR(PQgetvalue(r, i, 1), want[i]);
	}
	PQclear(r);
	cJSON_free(arr);

	/* The same texts as one text[] (ash_pgrec_values), and a NULL. */
	cJSON *list = cJSON_CreateArray();
	cJSON *row;
	cJSON_ArrayForEach(row, rows)
	{
		cJSON_AddItemToArray(
		    list, cJSON_Duplicate(cJSON_GetObjectItem(row, "s"), 0));
	}
	cJSON_AddItemToArray(list, cJSON_CreateNull());
	arr = ash_pgrec_values(list);
	r   = query1(c,
	      "SELECT x.t, x.t IS NULL FROM unnest($1::text[]) "
	        "WITH ORDINALITY AS x(t, o) ORDER BY x.o",
	      arr);
	ASH_T_EQ_INT(PQntuples(r), ROWS + 1);
	for (int i = 0; i < ROWS; i++)
		ASH_T_EQ_STR(PQgetvalue(r, i, 0), want[i]);
	ASH_T_EQ_STR(PQgetvalue(r, ROWS, 1), "t");
	PQclear(r);
	cJSON_free(arr);
	cJSON_Delete(list);
	for (int i = 0; i < ROWS; i++)
		free(want[i]);
	cJSON_Delete(rows);
	PQfinish(c);
}

ASH_TEST(nulls_numbers_booleans_and_json_read_back)
{
	PGconn           *c = connect_case("pgrec_types");
	cJSON            *rows;
	char             *arr;
	PGresult         *r;
	static const char doc[] =
	    "[{\"n\": 1796000000000, \"b\": true, \"j\": [1, \"x\\\"y\", {}]},"
	    " {\"n\": -9007199254740991, \"b\": false, \"j\": \"(,)\"},"
	    " {\"s\": null, \"j\": null},"
	    " {\"n\": \"42\", \"s\": 7, \"b\": \"true\", \"j\": 2.5},"
	    " 3]";
	static const char *const want[][4] = {
	    {"1796000000000", "<null>", "t", "[1, \"x\\\"y\", {}]"},
	    {"-9007199254740991", "<null>", "f", "\"(,)\""},
	    {"<null>", "<null>", "<null>", "<null>"},
	    {"42", "7", "t", "2.5"},
	    {"<null>", "<null>", "<null>", "<null>"},
	};

	ASH_T_OK(ash_json_parse(doc, strlen(doc), &rows));
	arr = ash_pgrec_array(rows, cols, 4);
	r   = query1(c,
	      "SELECT x.n, x.s, x.b, x.j FROM unnest($1::r[]) "
	        "WITH ORDINALITY AS x(n, s, b, j, o) ORDER BY x.o",
	      arr);
	ASH_T_EQ_INT(PQntuples(r), 5);
	for (int i = 0; i < 5; i++)
		for (int k = 0; k < 4; k++)
			ASH_T_EQ_STR(PQgetisnull(r, i, k)
			        ? "<null>"
			        : PQgetvalue(r, i, k),
			    want[i][k]);
	PQclear(r);
	cJSON_free(arr);
	cJSON_Delete(rows);

	/* No rows is an empty array. */
	arr = ash_pgrec_array(NULL, cols, 4);
	r   = query1(c, "SELECT cardinality($1::r[])", arr);
	ASH_T_EQ_STR(PQgetvalue(r, 0, 0), "0");
	PQclear(r);
	cJSON_free(arr);
	PQfinish(c);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(every_text_reads_back_as_it_was),
    ASH_TEST_ENTRY(generated_texts_read_back_as_they_were),
    ASH_TEST_ENTRY(nulls_numbers_booleans_and_json_read_back))
