/* Unit tests: the pure parts of meta-ingest's channels (mi_channels.c,
 * mi_profile.c): connect's field checks, the validating Graph call, how
 * Graph errors reach the caller, and what a profile lookup's result means.
 */
#include "mi.h"

#include <ash_test.h>
#include <ashoon/json.h>

#include <stdlib.h>
#include <string.h>

#define TOKEN "EAAGtestTOKENsecret123"

static ash_err
check(const char *kind, const char *login, const char *id, const char *tok,
    const char *sec, const char **out_login, const char **why)
{
	*why = NULL;
	return mi_connect_check(kind, login, id, tok, sec, out_login, why);
}

ASH_TEST(connect_check_accepts_and_defaults_the_login)
{
	const char *login = NULL, *why;

	ASH_T_OK(check(
	    "messenger", NULL, "104857601234567", TOKEN, NULL, &login, &why));
	ASH_T_EQ_STR(login, "facebook");
	ASH_T_OK(check("instagram", "instagram", "17841400000000001", TOKEN,
	    "0123456789abcdef", &login, &why));
	ASH_T_EQ_STR(login, "instagram");
	ASH_T_OK(check(
	    "instagram", "facebook", "1", "a-b.c_d~e|f", NULL, &login, &why));
	ASH_T_EQ_STR(login, "facebook");
}

ASH_TEST(p10_connect_check_refuses_without_quoting_secrets)
{
	static const struct {
		const char *kind, *login, *id, *tok, *sec;
	} bad[] = {
	    {"whatsapp", NULL, "1", TOKEN, NULL},
	    {NULL, NULL, "1", TOKEN, NULL},
	    {"messenger", "instagram", "1", TOKEN, NULL}, /* IG login */
	    {"messenger", "twitter", "1", TOKEN, NULL},
	    {"messenger", NULL, "12a", TOKEN, NULL},
	    {"messenger", NULL, "", TOKEN, NULL},
	    {"messenger", NULL, "123456789012345678901234567890123", TOKEN,
	        NULL},
	    {"messenger", NULL, "1", "", NULL},
	    {"messenger", NULL, "1", NULL, NULL},
	    {"messenger", NULL, "1", TOKEN " x", NULL},
	    {"messenger", NULL, "1", TOKEN "&access_token=other", NULL},
	    {"messenger", NULL, "1", TOKEN "\n", NULL},
	    {"messenger", NULL, "1", TOKEN, ""},
	    {"messenger", NULL, "1", TOKEN, "two words"},
	};
	const char *login = "unchanged", *why;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ASH_T_ERR(check(bad[i].kind, bad[i].login, bad[i].id,
		              bad[i].tok, bad[i].sec, &login, &why),
		    ASH_EINVAL);
		ASH_T_NOT_NULL(why);
		ASH_T_NOT_CONTAINS(why, TOKEN);
	}
	ASH_T_EQ_STR(login, "unchanged"); /* written only on success */
	char *big = malloc(4098);
	memset(big, 'A', 4097);
	big[4097] = '\0';
	ASH_T_ERR(check("messenger", NULL, "1", big, NULL, &login, &why),
	    ASH_EINVAL);
	big[4096] = '\0'; /* 4096: the largest accepted */
	ASH_T_OK(check("messenger", NULL, "1", big, NULL, &login, &why));
	free(big);
}

ASH_TEST(connect_probe_asks_the_account_the_token_belongs_to)
{
	const char *path, *query;

	mi_connect_probe("messenger", "facebook", "1048", &path, &query);
	ASH_T_EQ_STR(path, "me");
	ASH_T_EQ_STR(query, "fields=id,name,category,followers_count");
	mi_connect_probe("instagram", "instagram", "1784", &path, &query);
	ASH_T_EQ_STR(path, "me");
	ASH_T_CONTAINS(query, "user_id");
	ASH_T_CONTAINS(query, "account_type");
	/* A Page token's /me is the Page: ask for the IG account itself. */
	mi_connect_probe("instagram", "facebook", "1784", &path, &query);
	ASH_T_EQ_STR(path, "1784");
	ASH_T_EQ_STR(query, "fields=id,username,name,followers_count");
}

static mi_graph_result
graph(ash_err err, long status, mi_graph_class cls, int code, int subcode)
{
	mi_graph_result r = {err, status, cls, code, subcode,
	    "Invalid OAuth access token " TOKEN, "fbtrace1", 0, NULL};
	return r;
}

ASH_TEST(p10_connect_errors_map_to_http_and_never_quote_meta)
{
	static const struct {
		mi_graph_result res;
		ash_err         want;
		const char     *says;
	} cases[] = {
	    {{ASH_OK, 200, MI_GRAPH_OK, 0, 0, NULL, NULL, 0, NULL}, ASH_OK,
	        ""},
	    {{ASH_OK, 400, MI_GRAPH_REAUTH, 190, 460, NULL, NULL, 0, NULL},
	        ASH_EINVAL, "rejected by Meta (190)"},
	    {{ASH_OK, 400, MI_GRAPH_PERMANENT, 10, 0, NULL, NULL, 0, NULL},
	        ASH_EFORBIDDEN, "permission"},
	    {{ASH_OK, 400, MI_GRAPH_PERMANENT, 230, 0, NULL, NULL, 0, NULL},
	        ASH_EFORBIDDEN, "(code 230)"},
	    {{ASH_OK, 400, MI_GRAPH_PERMANENT, 100, 33, NULL, NULL, 0, NULL},
	        ASH_EINVAL, "(code 100)"},
	    {{ASH_OK, 500, MI_GRAPH_RETRY, 2, 0, NULL, NULL, 0, NULL},
	        ASH_EUPSTREAM, "try again"},
	    {{ASH_OK, 400, MI_GRAPH_THROTTLED, 613, 0, NULL, NULL, 0, NULL},
	        ASH_EUPSTREAM, "try again"},
	    {{ASH_ETIMEDOUT, 0, MI_GRAPH_RETRY, 0, 0, NULL, NULL, 0, NULL},
	        ASH_ETIMEDOUT, "in time"},
	    {{ASH_EUNAVAIL, 0, MI_GRAPH_RETRY, 0, 0, NULL, NULL, 0, NULL},
	        ASH_EUPSTREAM, "reached"},
	};
	char msg[160];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mi_graph_result r = cases[i].res;
		r.message         = "Invalid OAuth access token " TOKEN;
		msg[0]            = '\0';
		ASH_T_ERR(
		    mi_connect_error(&r, msg, sizeof(msg)), cases[i].want);
		ASH_T_CONTAINS(msg, cases[i].says);
		ASH_T_NOT_CONTAINS(msg, TOKEN);
		ASH_T_NOT_CONTAINS(msg, "OAuth");
	}
	/* The HTTP statuses the gateway will answer with. */
	mi_graph_result r = graph(ASH_OK, 400, MI_GRAPH_REAUTH, 190, 0);
	ASH_T_EQ_INT(ash_err_http_status(mi_connect_error(&r, msg, 160)), 400);
	r = graph(ASH_OK, 400, MI_GRAPH_PERMANENT, 200, 0);
	ASH_T_EQ_INT(ash_err_http_status(mi_connect_error(&r, msg, 160)), 403);
	r = graph(ASH_EUPSTREAM, 0, MI_GRAPH_RETRY, 0, 0);
	ASH_T_EQ_INT(ash_err_http_status(mi_connect_error(&r, msg, 160)), 502);
}

static bool
same(const char *login, const char *json, const char *id)
{
	cJSON *doc = NULL;
	bool   ok;

	ASH_T_OK(ash_json_parse(json, strlen(json), &doc));
	ok = mi_connect_same_account(login, doc, id);
	cJSON_Delete(doc);
	return ok;
}

ASH_TEST(connect_token_must_belong_to_the_account)
{
	ASH_T_TRUE(
	    same("facebook", "{\"id\":\"1048\",\"name\":\"A\"}", "1048"));
	ASH_T_TRUE(!same("facebook", "{\"id\":\"9999\"}", "1048"));
	ASH_T_TRUE(!same("facebook", "{\"id\":1048}", "1048")); /* strings */
	ASH_T_TRUE(!same("facebook", "{\"name\":\"A\"}", "1048"));
	ASH_T_TRUE(!same("facebook", "{\"id\":\"10480\"}", "1048"));
	/* Instagram Login: user_id is the professional account. */
	ASH_T_TRUE(
	    same("instagram", "{\"id\":\"77\",\"user_id\":\"1784\"}", "1784"));
	ASH_T_TRUE(same("instagram", "{\"id\":\"1784\"}", "1784"));
	ASH_T_TRUE(
	    !same("instagram", "{\"id\":\"77\",\"user_id\":\"78\"}", "1784"));
	/* user_id counts only for Instagram Login. */
	ASH_T_TRUE(
	    !same("facebook", "{\"id\":\"77\",\"user_id\":\"1784\"}", "1784"));
	ASH_T_TRUE(!mi_connect_same_account("facebook", NULL, "1784"));
}

ASH_TEST(profile_outcome_follows_error_codes)
{
	cJSON          *body = cJSON_CreateObject();
	mi_graph_result r;

	r = graph(ASH_OK, 200, MI_GRAPH_OK, 0, 0);
	ASH_T_EQ_INT(
	    mi_profile_outcome_of(&r, 0), MI_PROFILE_RETRY); /* no body */
	r.body = body;
	ASH_T_EQ_INT(mi_profile_outcome_of(&r, 0), MI_PROFILE_FETCHED);
	r = graph(ASH_OK, 400, MI_GRAPH_PERMANENT, 2018218, 0);
	ASH_T_EQ_INT(mi_profile_outcome_of(&r, 0), MI_PROFILE_UNAVAILABLE);
	r = graph(ASH_OK, 400, MI_GRAPH_RETRY, 100, 2018218); /* as subcode */
	ASH_T_EQ_INT(mi_profile_outcome_of(&r, 0), MI_PROFILE_UNAVAILABLE);
	r = graph(ASH_OK, 400, MI_GRAPH_PERMANENT, 230, 0); /* no consent */
	ASH_T_EQ_INT(mi_profile_outcome_of(&r, 0), MI_PROFILE_UNAVAILABLE);
	r = graph(ASH_OK, 400, MI_GRAPH_PERMANENT, 100, 33);
	ASH_T_EQ_INT(mi_profile_outcome_of(&r, 0), MI_PROFILE_UNAVAILABLE);
	r = graph(ASH_OK, 400, MI_GRAPH_REAUTH, 190, 0);
	ASH_T_EQ_INT(mi_profile_outcome_of(&r, 0), MI_PROFILE_REAUTH);
	r = graph(ASH_OK, 400, MI_GRAPH_THROTTLED, 613, 0);
	ASH_T_EQ_INT(mi_profile_outcome_of(&r, 0), MI_PROFILE_THROTTLED);
	r = graph(ASH_OK, 500, MI_GRAPH_RETRY, 2, 0);
	ASH_T_EQ_INT(mi_profile_outcome_of(&r, 0), MI_PROFILE_RETRY);
	ASH_T_EQ_INT(mi_profile_outcome_of(&r, MI_PROFILE_MAX_ATTEMPTS - 2),
	    MI_PROFILE_RETRY);
	ASH_T_EQ_INT(mi_profile_outcome_of(&r, MI_PROFILE_MAX_ATTEMPTS - 1),
	    MI_PROFILE_FAILED);
	r = graph(ASH_ETIMEDOUT, 0, MI_GRAPH_RETRY, 0, 0);
	ASH_T_EQ_INT(mi_profile_outcome_of(&r, 1), MI_PROFILE_RETRY);
	ASH_T_EQ_INT(mi_profile_outcome_of(&r, MI_PROFILE_MAX_ATTEMPTS - 1),
	    MI_PROFILE_FAILED);
	cJSON_Delete(body);
}

ASH_TEST(profile_name_joins_first_and_last)
{
	char *s;

	ASH_T_EQ_STR(s = mi_profile_name_new("Peter", "Chang"), "Peter Chang");
	free(s);
	ASH_T_EQ_STR(s = mi_profile_name_new("Peter", NULL), "Peter");
	free(s);
	ASH_T_EQ_STR(s = mi_profile_name_new("", "Chang"), "Chang");
	free(s);
	ASH_T_NULL(mi_profile_name_new(NULL, ""));
	ASH_T_NULL(mi_profile_name_new(NULL, NULL));
}

ASH_TEST(channel_aad_names_the_row_and_the_secret)
{
	char a[96], b[96];

	mi_channel_aad(
	    "0b7f5c1e-0000-4000-8000-000000000001", "token", a, sizeof(a));
	mi_channel_aad("0b7f5c1e-0000-4000-8000-000000000001", "app_secret", b,
	    sizeof(b));
	ASH_T_EQ_STR(a,
	    "meta-ingest/channel/0b7f5c1e-0000-4000-8000-000000000001/token");
	ASH_T_TRUE(strcmp(a, b) != 0);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(connect_check_accepts_and_defaults_the_login),
    ASH_TEST_ENTRY(p10_connect_check_refuses_without_quoting_secrets),
    ASH_TEST_ENTRY(connect_probe_asks_the_account_the_token_belongs_to),
    ASH_TEST_ENTRY(p10_connect_errors_map_to_http_and_never_quote_meta),
    ASH_TEST_ENTRY(connect_token_must_belong_to_the_account),
    ASH_TEST_ENTRY(profile_outcome_follows_error_codes),
    ASH_TEST_ENTRY(profile_name_joins_first_and_last),
    ASH_TEST_ENTRY(channel_aad_names_the_row_and_the_secret))
