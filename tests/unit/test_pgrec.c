/* Unit tests: pgrec (rows as the text of a Postgres array of composites).
 * What Postgres reads back from these is checked against a real server in
 * tests/integration/it_db.c. */
#include <ash_test.h>
#include <ashoon/json.h>
#include <ashoon/pgrec.h>

#include <stdlib.h>

static const ash_pgrec_col cols[] = {
    {"n", ASH_PGREC_PLAIN},
    {"s", ASH_PGREC_PLAIN},
    {"j", ASH_PGREC_JSON},
};

/* The array text of the rows of doc (a JSON array). */
static char *
rows_text(const char *doc)
{
	cJSON *rows = NULL;
	char  *out;

	ASH_T_OK(ash_json_parse(doc, strlen(doc), &rows));
	out = ash_pgrec_array(rows, cols, 3);
	cJSON_Delete(rows);
	return out;
}

static void
expect(const char *doc, const char *want)
{
	char *got = rows_text(doc);

	ASH_T_EQ_STR(got, want);
	cJSON_free(got);
}

ASH_TEST(no_rows_is_an_empty_array)
{
	expect("[]", "{}");
	char *out = ash_pgrec_array(NULL, cols, 3);
	ASH_T_EQ_STR(out, "{}");
	cJSON_free(out);
}

ASH_TEST(every_field_and_element_is_quoted)
{
	expect("[{\"n\": 1, \"s\": \"a b\", \"j\": [1, \"x\"]},"
	       " {\"n\": -2, \"s\": \"\", \"j\": \"t\"}]",
	    "{\"(\\\"1\\\",\\\"a b\\\",\\\"[1,\\\\\\\"x\\\\\\\"]\\\")\","
	    "\"(\\\"-2\\\",\\\"\\\",\\\"\\\\\\\"t\\\\\\\"\\\")\"}");
}

ASH_TEST(missing_and_null_members_are_null_fields)
{
	expect("[{\"s\": null}, {}, 7]", "{\"(,,)\",\"(,,)\",\"(,,)\"}");
}

ASH_TEST(quotes_and_backslashes_are_escaped_twice)
{
	/* s = a"b\c : record level a\"b\\c, array level a\\\"b\\\\c */
	expect("[{\"s\": \"a\\\"b\\\\c\"}]",
	    "{\"(,\\\"a\\\\\\\"b\\\\\\\\c\\\",)\"}");
	/* The delimiters of both levels stand inside the quotes as they are.
	 */
	expect(
	    "[{\"s\": \"(,){}\\t\\n é\"}]", "{\"(,\\\"(,){}\t\n é\\\",)\"}");
}

ASH_TEST(numbers_are_integers_when_integral)
{
	expect("[{\"n\": 1796000000000}]", "{\"(\\\"1796000000000\\\",,)\"}");
	/* Where ash_json_render would write 1e+15, which bigint refuses. */
	expect("[{\"n\": 1000000000000000}]",
	    "{\"(\\\"1000000000000000\\\",,)\"}");
	expect("[{\"n\": 1.5}]", "{\"(\\\"1.5\\\",,)\"}");
	expect(
	    "[{\"n\": 1e300}]", "{\"(\\\"1.0000000000000001e+300\\\",,)\"}");
}

ASH_TEST(plain_columns_take_other_json_types_as_their_text)
{
	expect("[{\"n\": \"12\", \"s\": true}, {\"s\": {\"k\": 1}}]",
	    "{\"(\\\"12\\\",\\\"true\\\",)\","
	    "\"(,\\\"{\\\\\\\"k\\\\\\\":1}\\\",)\"}");
}

ASH_TEST(values_are_quoted_once)
{
	cJSON            *v = NULL;
	char             *out;
	static const char doc[] =
	    "[\"17841405822304914\", \"a\\\"b\\\\c\", \"\", null, 12, "
	    "\"NULL\"]";

	ASH_T_OK(ash_json_parse(doc, strlen(doc), &v));
	out = ash_pgrec_values(v);
	ASH_T_EQ_STR(out,
	    "{\"17841405822304914\",\"a\\\"b\\\\c\",\"\",NULL,\"12\","
	    "\"NULL\"}");
	cJSON_free(out);
	cJSON_Delete(v);
	out = ash_pgrec_values(NULL);
	ASH_T_EQ_STR(out, "{}");
	cJSON_free(out);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(no_rows_is_an_empty_array),
    ASH_TEST_ENTRY(every_field_and_element_is_quoted),
    ASH_TEST_ENTRY(missing_and_null_members_are_null_fields),
    ASH_TEST_ENTRY(quotes_and_backslashes_are_escaped_twice),
    ASH_TEST_ENTRY(numbers_are_integers_when_integral),
    ASH_TEST_ENTRY(plain_columns_take_other_json_types_as_their_text),
    ASH_TEST_ENTRY(values_are_quoted_once))
