/* Unit tests: err (codes, texts, HTTP statuses round-trip). */
#include <ash_test.h>
#include <ashoon/err.h>

ASH_TEST(codes_map_to_http_statuses)
{
	ASH_T_EQ_INT(ash_err_http_status(ASH_OK), 200);
	ASH_T_EQ_INT(ash_err_http_status(ASH_EINVAL), 400);
	ASH_T_EQ_INT(ash_err_http_status(ASH_EBADJSON), 400);
	ASH_T_EQ_INT(ash_err_http_status(ASH_EUNAUTH), 401);
	ASH_T_EQ_INT(ash_err_http_status(ASH_EFORBIDDEN), 403);
	ASH_T_EQ_INT(ash_err_http_status(ASH_ENOTFOUND), 404);
	ASH_T_EQ_INT(ash_err_http_status(ASH_ETOOBIG), 413);
	ASH_T_EQ_INT(ash_err_http_status(ASH_ERATELIMIT), 429);
	ASH_T_EQ_INT(ash_err_http_status(ASH_EUNAVAIL), 503);
	ASH_T_EQ_INT(ash_err_http_status(ASH_ETIMEDOUT), 504);
	ASH_T_EQ_INT(ash_err_http_status(ASH_EUPSTREAM), 502);
}

ASH_TEST(wire_codes_round_trip)
{
	/* Every error except the aliases of "internal" maps back to itself. */
	for (int e = ASH_EINVAL; e < ASH_ERR_COUNT; e++) {
		if (e == ASH_EINTERNAL)
			continue;
		ASH_T_EQ_INT(ash_err_from_code(ash_err_code((ash_err) e)), e);
	}
	ASH_T_EQ_INT(ash_err_from_code("no_such_code"), ASH_EINTERNAL);
	ASH_T_EQ_INT(ash_err_from_code(NULL), ASH_EINTERNAL);
	ASH_T_EQ_STR(ash_err_code(ASH_ENOTFOUND), "not_found");
	ASH_T_EQ_STR(ash_strerror(ASH_ETIMEDOUT), "timed out");
}

ASH_TEST(out_of_range_is_internal)
{
	ASH_T_EQ_STR(ash_err_code((ash_err) 9999), "internal");
	ASH_T_EQ_INT(ash_err_http_status((ash_err) -1), 500);
}

ASH_TEST(asprintf_formats)
{
	char *s = ash_xasprintf("%s-%d", "a", 42);
	ASH_T_EQ_STR(s, "a-42");
	free(s);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(codes_map_to_http_statuses),
    ASH_TEST_ENTRY(wire_codes_round_trip),
    ASH_TEST_ENTRY(out_of_range_is_internal), ASH_TEST_ENTRY(asprintf_formats))
