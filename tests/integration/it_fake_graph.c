/*
 * Integration: the fake Graph API itself (tests/fakes/fake_graph), so tests
 * of meta-ingest can trust what it answers and records. Each case starts
 * its own fake and stops it, asserting a clean exit (ASan: no leaks).
 */
#include "it_fake.h"

#include <ashoon/json.h>
#include <ashoon/loop.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PAGE_TOK "EAAG-page-token-1001"
#define PAGE_ACCT                                                            \
	"{\"id\":\"1001\",\"name\":\"Acme Bakery\",\"category\":\"Bakery\"," \
	"\"followers_count\":120,\"fan_count\":118,"                         \
	"\"access_token\":\"" PAGE_TOK "\"}"
#define IG_TOK "IGAA-ig-token-1784"
#define IG_ACCT                                                            \
	"{\"id\":\"1784\",\"name\":\"Acme\",\"username\":\"acme.bakery\"," \
	"\"followers_count\":5400,\"account_type\":\"BUSINESS\"}"
#define SEND_OK                                                             \
	"{\"recipient\":{\"id\":\"6523\"},\"messaging_type\":\"RESPONSE\"," \
	"\"message\":{\"text\":\"Hello\",\"metadata\":\"ai-reply:c1\"}}"
#define MSGS_Q "/v23.0/me/messages?access_token=" PAGE_TOK

/* error.<key> of a Graph error body as an int; -1 when absent. */
static int
err_int(const it_resp *r, const char *key)
{
	int v;

	if (ash_json_get_int(
	        cJSON_GetObjectItemCaseSensitive(r->json, "error"), key, &v) !=
	    ASH_OK)
		return -1;
	return v;
}

/* obj.key as an int; -1 when absent or not an integer. */
static long long
num(const cJSON *obj, const char *key)
{
	int64_t v;

	return ash_json_get_i64(obj, key, &v) == ASH_OK ? v : -1;
}

/* True if s (may be NULL) starts with prefix. */
static bool
has_prefix(const char *s, const char *prefix)
{
	return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

static const char *
err_str(const it_resp *r, const char *key)
{
	return ash_json_str(
	    cJSON_GetObjectItemCaseSensitive(r->json, "error"), key);
}

/* POSTs body to /me/messages with the page token: 0 on 200, else the
 * Graph error code (asserting HTTP 400 and type OAuthException). */
static int
send_code(it_fake *f, const char *body)
{
	it_resp r;
	int     code = 0;

	it_fake_call(f, &r, "POST", MSGS_Q, NULL, body);
	if (r.status != 200) {
		ASH_T_EQ_INT(r.status, 400);
		ASH_T_EQ_STR(err_str(&r, "type"), "OAuthException");
		code = err_int(&r, "code");
	} else
		ASH_T_CONTAINS(ash_json_str(r.json, "message_id"), "m_fake_");
	it_resp_fini(&r);
	return code;
}

static void
start_with_page(it_fake *f, const char *tag)
{
	it_fake_start(f, tag);
	it_fake_token(f, PAGE_TOK, PAGE_ACCT);
}

ASH_TEST(me_returns_requested_fields_only)
{
	it_fake f;
	it_resp r;

	start_with_page(&f, "fake_me");
	it_fake_call(&f, &r, "GET",
	    "/v23.0/me?fields=name,followers_count,nonexistent"
	    "&access_token=" PAGE_TOK,
	    NULL, NULL);
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_CONTAINS(it_resp_header(&r, "Content-Type"), "application/json");
	ASH_T_EQ_INT(cJSON_GetArraySize(r.json), 3);
	ASH_T_EQ_STR(ash_json_str(r.json, "id"), "1001");
	ASH_T_EQ_STR(ash_json_str(r.json, "name"), "Acme Bakery");
	ASH_T_EQ_INT(num(r.json, "followers_count"), 120);
	it_resp_fini(&r);
	/* No fields: Graph's default id,name. */
	it_fake_call(
	    &f, &r, "GET", "/v23.0/me?access_token=" PAGE_TOK, NULL, NULL);
	ASH_T_EQ_INT(cJSON_GetArraySize(r.json), 2);
	ASH_T_EQ_STR(ash_json_str(r.json, "name"), "Acme Bakery");
	it_resp_fini(&r);
	/* Subfields and modifiers do not confuse the list. */
	it_fake_call(&f, &r, "GET",
	    "/v23.0/me?fields=picture%7Burl,width%7D,fan_count,name.locale(en)"
	    "&access_token=" PAGE_TOK,
	    NULL, NULL);
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_EQ_INT(cJSON_GetArraySize(r.json), 3);
	ASH_T_NOT_NULL(cJSON_GetObjectItem(r.json, "fan_count"));
	ASH_T_NULL(cJSON_GetObjectItem(r.json, "width"));
	it_resp_fini(&r);
	it_fake_stop(&f);
}

ASH_TEST(unknown_token_gets_190_exact_body)
{
	it_fake f;
	it_resp r;

	start_with_page(&f, "fake_190");
	it_fake_call(&f, &r, "GET", "/v23.0/me?access_token=nope", NULL, NULL);
	ASH_T_EQ_INT(r.status, 400);
	ASH_T_EQ_INT(cJSON_GetArraySize(r.json), 1);
	ASH_T_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "error")),
	    4); /* no error_subcode for an unknown token */
	ASH_T_EQ_STR(err_str(&r, "message"), "Invalid OAuth access token.");
	ASH_T_EQ_STR(err_str(&r, "type"), "OAuthException");
	ASH_T_EQ_INT(err_int(&r, "code"), 190);
	ASH_T_EQ_INT(err_int(&r, "error_subcode"), -1);
	ASH_T_TRUE(has_prefix(err_str(&r, "fbtrace_id"), "fake"));
	it_resp_fini(&r);
	/* A token registered as expired carries its subcode. */
	it_fake_token_ex(&f, "expired-tok", PAGE_ACCT, true, 463);
	it_fake_call(
	    &f, &r, "GET", "/v23.0/me?access_token=expired-tok", NULL, NULL);
	ASH_T_EQ_INT(err_int(&r, "code"), 190);
	ASH_T_EQ_INT(err_int(&r, "error_subcode"), 463);
	it_resp_fini(&r);
	/* No token at all: Graph's 2500. */
	it_fake_call(&f, &r, "POST", "/v23.0/me/messages", NULL, SEND_OK);
	ASH_T_EQ_INT(r.status, 400);
	ASH_T_EQ_INT(err_int(&r, "code"), 2500);
	it_resp_fini(&r);
	it_fake_stop(&f);
}

ASH_TEST(messages_success_shape_and_recorded_call)
{
	it_fake f;
	it_resp r;
	char    mid[64];
	cJSON  *calls;

	start_with_page(&f, "fake_send");
	it_fake_call(&f, &r, "POST", MSGS_Q, NULL, SEND_OK);
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_EQ_INT(cJSON_GetArraySize(r.json), 2);
	ASH_T_EQ_STR(ash_json_str(r.json, "recipient_id"), "6523");
	ASH_T_TRUE(has_prefix(ash_json_str(r.json, "message_id"), "m_fake_"));
	snprintf(mid, sizeof(mid), "%s", ash_json_str(r.json, "message_id"));
	it_resp_fini(&r);
	it_fake_call(&f, &r, "POST", MSGS_Q, NULL, SEND_OK);
	ASH_T_TRUE(strcmp(ash_json_str(r.json, "message_id"), mid) != 0);
	it_resp_fini(&r);
	/* A sender action answers recipient_id only. */
	it_fake_call(&f, &r, "POST", MSGS_Q, NULL,
	    "{\"recipient\":{\"id\":\"6523\"},\"sender_action\":\"typing_"
	    "on\"}");
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_EQ_INT(cJSON_GetArraySize(r.json), 1);
	ASH_T_EQ_STR(ash_json_str(r.json, "recipient_id"), "6523");
	it_resp_fini(&r);
	/* /{page-id}/messages works for the token's own page only. */
	it_fake_call(&f, &r, "POST",
	    "/v23.0/1001/messages?access_token=" PAGE_TOK, NULL, SEND_OK);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	it_fake_call(&f, &r, "POST",
	    "/v23.0/999/messages?access_token=" PAGE_TOK, NULL, SEND_OK);
	ASH_T_EQ_INT(r.status, 400);
	ASH_T_EQ_INT(err_int(&r, "code"), 100);
	ASH_T_EQ_INT(err_int(&r, "error_subcode"), 33);
	it_resp_fini(&r);

	calls = it_fake_calls(&f, "/messages");
	ASH_T_EQ_INT(cJSON_GetArraySize(calls), 5);
	const cJSON *c = cJSON_GetArrayItem(calls, 0);
	ASH_T_EQ_STR(ash_json_str(c, "method"), "POST");
	ASH_T_EQ_STR(ash_json_str(c, "path"), "/v23.0/me/messages");
	ASH_T_EQ_STR(ash_json_str(c, "version"), "v23.0");
	ASH_T_EQ_STR(ash_json_str(c, "token"), PAGE_TOK);
	ASH_T_EQ_STR(ash_json_str(c, "auth"), "query");
	ASH_T_EQ_STR(ash_json_str(c, "content_type"), "application/json");
	ASH_T_EQ_STR(ash_json_str(c, "body"), SEND_OK);
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetObjectItem(c, "query"), "access_token"),
	    PAGE_TOK);
	ASH_T_EQ_INT(num(c, "status"), 200);
	ASH_T_TRUE(num(c, "time_ms") > 1000000000000LL);
	ASH_T_EQ_INT(num(cJSON_GetArrayItem(calls, 4), "status"), 400);
	cJSON_Delete(calls);
	/* Without a version prefix: answered, recorded version "". */
	it_fake_call(&f, &r, "GET", "/me?access_token=" PAGE_TOK, NULL, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	calls = it_fake_calls(&f, "/me");
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetArrayItem(calls, 0), "version"), "");
	cJSON_Delete(calls);
	it_fake_stop(&f);
}

ASH_TEST(messages_invalid_bodies_get_code_100)
{
	it_fake f;
	char    body[9000];
	size_t  n;

	start_with_page(&f, "fake_invalid");
	ASH_T_EQ_INT(send_code(&f,
	                 "{\"recipient\":{\"id\":\"6523\"},"
	                 "\"message\":{\"text\":\"Hi\"}}"),
	    100); /* messaging_type missing */
	ASH_T_EQ_INT(send_code(&f,
	                 "{\"messaging_type\":\"RESPONSE\","
	                 "\"message\":{\"text\":\"Hi\"}}"),
	    100); /* recipient missing */
	ASH_T_EQ_INT(send_code(&f,
	                 "{\"recipient\":{\"id\":\"6523\"},\"messaging_type\":"
	                 "\"RESPONSE\",\"message\":{\"text\":\"Hi\","
	                 "\"attachment\":{\"type\":\"image\"}}}"),
	    100); /* text and attachment */
	ASH_T_EQ_INT(send_code(&f,
	                 "{\"recipient\":{\"id\":\"6523\"},\"messaging_type\":"
	                 "\"RESPONSE\",\"message\":{}}"),
	    100); /* neither */
	ASH_T_EQ_INT(send_code(&f,
	                 "{\"recipient\":{\"id\":\"6523\"},\"sender_action\":"
	                 "\"typing_on\",\"message\":{\"text\":\"Hi\"}}"),
	    100); /* sender_action not alone */
	ASH_T_EQ_INT(send_code(&f, "{\"recipient\":"), 100); /* not JSON */
	ASH_T_EQ_INT(
	    send_code(&f,
	        "{\"recipient\":{\"id\":\"6523\"},\"messaging_type\":"
	        "\"RESPONSE\",\"message\":{\"attachment\":{\"type\":"
	        "\"image\",\"payload\":{\"url\":\"https://x/a.png\"}}}}"),
	    0);
	/* 2000 characters pass even as 4000 bytes; 2001 do not. */
	n = (size_t) snprintf(body, sizeof(body),
	    "{\"recipient\":{\"id\":\"6523\"},\"messaging_type\":\"RESPONSE\","
	    "\"message\":{\"text\":\"");
	for (int i = 0; i < 2000; i++, n += 2)
		memcpy(body + n, "\xc3\xa9", 2);
	snprintf(body + n, sizeof(body) - n, "\"}}");
	ASH_T_EQ_INT(send_code(&f, body), 0);
	snprintf(body + n, sizeof(body) - n, "x\"}}");
	ASH_T_EQ_INT(send_code(&f, body), 100);
	it_fake_stop(&f);
}

ASH_TEST(message_tag_needs_tag_and_only_then)
{
	it_fake f;

	start_with_page(&f, "fake_tag");
	ASH_T_EQ_INT(send_code(&f,
	                 "{\"recipient\":{\"id\":\"6523\"},\"messaging_type\":"
	                 "\"MESSAGE_TAG\",\"message\":{\"text\":\"Hi\"}}"),
	    100);
	ASH_T_EQ_INT(send_code(&f,
	                 "{\"recipient\":{\"id\":\"6523\"},\"messaging_type\":"
	                 "\"MESSAGE_TAG\",\"tag\":\"HUMAN_AGENT\","
	                 "\"message\":{\"text\":\"Hi\"}}"),
	    0);
	ASH_T_EQ_INT(send_code(&f,
	                 "{\"recipient\":{\"id\":\"6523\"},\"messaging_type\":"
	                 "\"RESPONSE\",\"tag\":\"HUMAN_AGENT\","
	                 "\"message\":{\"text\":\"Hi\"}}"),
	    100);
	ASH_T_EQ_INT(send_code(&f,
	                 "{\"recipient\":{\"id\":\"6523\"},\"messaging_type\":"
	                 "\"MESSAGE_TAG\",\"tag\":\"BOGUS\","
	                 "\"message\":{\"text\":\"Hi\"}}"),
	    100);
	it_fake_stop(&f);
}

ASH_TEST(scripted_613_with_usage_header_then_success)
{
	it_fake f;
	it_resp r;
	cJSON  *usage, *calls;

	start_with_page(&f, "fake_613");
	it_fake_script(&f,
	    "{\"method\":\"POST\",\"path_suffix\":\"/"
	    "messages\",\"status\":400,"
	    "\"body\":{\"error\":{\"message\":\"(#613) Calls to this api have "
	    "exceeded the rate limit.\",\"type\":\"OAuthException\","
	    "\"code\":613,\"fbtrace_id\":\"AbC\"}},"
	    "\"headers\":{\"X-Business-Use-Case-Usage\":{\"1001\":[{\"type\":"
	    "\"messenger\",\"call_count\":100,\"total_cputime\":20,"
	    "\"total_time\":20,\"estimated_time_to_regain_access\":5}]},"
	    "\"Retry-After\":\"300\"}}");
	/* A GET does not match the POST script. */
	it_fake_call(
	    &f, &r, "GET", "/v23.0/me?access_token=" PAGE_TOK, NULL, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	it_fake_call(&f, &r, "POST", MSGS_Q, NULL, SEND_OK);
	ASH_T_EQ_INT(r.status, 400);
	ASH_T_EQ_INT(err_int(&r, "code"), 613);
	ASH_T_EQ_STR(err_str(&r, "fbtrace_id"), "AbC");
	ASH_T_EQ_STR(it_resp_header(&r, "Retry-After"), "300");
	const char *h = it_resp_header(&r, "X-Business-Use-Case-Usage");
	ASH_T_NOT_NULL(h);
	ASH_T_OK(ash_json_parse(h, strlen(h), &usage));
	ASH_T_EQ_INT(
	    num(cJSON_GetArrayItem(cJSON_GetObjectItem(usage, "1001"), 0),
	        "estimated_time_to_regain_access"),
	    5);
	cJSON_Delete(usage);
	it_resp_fini(&r);
	ASH_T_EQ_INT(send_code(&f, SEND_OK), 0); /* consumed: normal again */
	/* FIFO order, times, and a raw (non-JSON) body. */
	it_fake_script(&f,
	    "{\"path_suffix\":\"/messages\",\"status\":502,\"times\":2,"
	    "\"body\":\"<html>Bad Gateway</html>\"}");
	it_fake_script(&f,
	    "{\"path_suffix\":\"/"
	    "messages\",\"status\":500,\"body\":{\"error\":"
	    "{\"message\":\"Temporary send message failure.\","
	    "\"type\":\"OAuthException\",\"code\":1200}}}");
	for (int i = 0; i < 2; i++) {
		it_fake_call(&f, &r, "POST", MSGS_Q, NULL, SEND_OK);
		ASH_T_EQ_INT(r.status, 502);
		ASH_T_EQ_STR(r.body, "<html>Bad Gateway</html>");
		it_resp_fini(&r);
	}
	it_fake_call(&f, &r, "POST", MSGS_Q, NULL, SEND_OK);
	ASH_T_EQ_INT(r.status, 500);
	ASH_T_EQ_INT(err_int(&r, "code"), 1200);
	it_resp_fini(&r);
	ASH_T_EQ_INT(send_code(&f, SEND_OK), 0);
	calls = it_fake_calls(&f, "/messages");
	ASH_T_EQ_INT(cJSON_GetArraySize(calls), 6);
	ASH_T_EQ_INT(num(cJSON_GetArrayItem(calls, 0), "status"), 400);
	cJSON_Delete(calls);
	it_fake_stop(&f);
}

ASH_TEST(delay_holds_the_answer)
{
	it_fake f;
	it_resp r;
	int64_t t0;

	start_with_page(&f, "fake_delay");
	/* No status: the normal answer, late. */
	it_fake_script(&f, "{\"path_suffix\":\"/messages\",\"delay_ms\":800}");
	t0 = ash_now_ms();
	it_fake_call(&f, &r, "POST", MSGS_Q, NULL, SEND_OK);
	ASH_T_TRUE(ash_now_ms() - t0 >= 790);
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_CONTAINS(ash_json_str(r.json, "message_id"), "m_fake_");
	it_resp_fini(&r);
	/* A canned answer, late; the next call is prompt again. */
	it_fake_script(&f,
	    "{\"path_suffix\":\"/messages\",\"status\":503,\"delay_ms\":800,"
	    "\"body\":{\"error\":{\"message\":\"x\",\"code\":2}}}");
	t0 = ash_now_ms();
	it_fake_call(&f, &r, "POST", MSGS_Q, NULL, SEND_OK);
	ASH_T_TRUE(ash_now_ms() - t0 >= 790);
	ASH_T_EQ_INT(r.status, 503);
	it_resp_fini(&r);
	t0 = ash_now_ms();
	ASH_T_EQ_INT(send_code(&f, SEND_OK), 0);
	ASH_T_TRUE(ash_now_ms() - t0 < 790);
	it_fake_stop(&f);
}

ASH_TEST(client_timeout_during_delay_leaves_fake_healthy)
{
	it_fake  f;
	char     url[128];
	CURL    *e = curl_easy_init();
	CURLcode cc;

	start_with_page(&f, "fake_timeout");
	it_fake_script(
	    &f, "{\"path_suffix\":\"/messages\",\"delay_ms\":3000}");
	snprintf(url, sizeof(url), "%s" MSGS_Q, f.base);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, SEND_OK);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 300L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	cc = curl_easy_perform(e);
	curl_easy_cleanup(e);
	ASH_T_EQ_INT(cc, CURLE_OPERATION_TIMEDOUT);
	/* The parked reply does not hold anything up; stopping with its
	 * timer still armed is clean. */
	ASH_T_EQ_INT(send_code(&f, SEND_OK), 0);
	it_fake_stop(&f);
}

/* A raw connection that sends a request and never reads the answer. */
static int
open_raw_request(const it_fake *f, const char *request)
{
	struct sockaddr_in a  = {.sin_family = AF_INET};
	int                fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port        = htons((uint16_t) f->port);
	ASH_T_TRUE(connect(fd, (struct sockaddr *) &a, sizeof(a)) == 0);
	ASH_T_EQ_INT(write(fd, request, strlen(request)), strlen(request));
	return fd;
}

ASH_TEST(stop_with_reply_parked_is_clean)
{
	it_fake f;
	char    req[512];
	cJSON  *calls = NULL;
	int     fd;

	start_with_page(&f, "fake_parked");
	it_fake_script(
	    &f, "{\"path_suffix\":\"/messages\",\"delay_ms\":30000}");
	snprintf(req, sizeof(req),
	    "POST " MSGS_Q " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
	    strlen(SEND_OK), SEND_OK);
	fd = open_raw_request(&f, req);
	for (int i = 0; i < 200; i++) { /* wait until it is parked */
		cJSON_Delete(calls);
		calls = it_fake_calls(&f, "/messages");
		if (cJSON_GetArraySize(calls) == 1)
			break;
		usleep(10000);
	}
	ASH_T_EQ_INT(cJSON_GetArraySize(calls), 1);
	cJSON_Delete(calls);
	it_fake_stop(&f); /* exit 0: the live parked request was freed */
	close(fd);
}

ASH_TEST(revoke_gives_190)
{
	it_fake f;
	it_resp r;

	start_with_page(&f, "fake_revoke");
	ASH_T_EQ_INT(send_code(&f, SEND_OK), 0);
	it_fake_revoke(&f, PAGE_TOK);
	ASH_T_EQ_INT(send_code(&f, SEND_OK), 190);
	it_fake_call(
	    &f, &r, "GET", "/v23.0/me?access_token=" PAGE_TOK, NULL, NULL);
	ASH_T_EQ_INT(r.status, 400);
	ASH_T_EQ_INT(err_int(&r, "code"), 190);
	ASH_T_EQ_STR(err_str(&r, "message"), "Invalid OAuth access token.");
	it_resp_fini(&r);
	/* Reconnecting (registering it again) makes it valid. */
	it_fake_token(&f, PAGE_TOK, PAGE_ACCT);
	ASH_T_EQ_INT(send_code(&f, SEND_OK), 0);
	it_fake_stop(&f);
}

ASH_TEST(profile_lookup_and_unavailable_profile)
{
	it_fake f;
	it_resp r;

	start_with_page(&f, "fake_profile");
	it_fake_object(&f, "6523",
	    "{\"first_name\":\"Peter\",\"last_name\":\"Chang\","
	    "\"profile_pic\":\"https://lookaside.example/p.jpg\","
	    "\"locale\":\"en_US\"}");
	it_fake_object(&f, "17841",
	    "{\"name\":\"Peter Chang\",\"username\":\"peter_chang_live\","
	    "\"follower_count\":1234,\"is_user_follow_business\":false}");
	it_fake_unavailable(&f, "7777");
	it_fake_call(&f, &r, "GET",
	    "/v23.0/6523?fields=first_name,last_name,profile_pic"
	    "&access_token=" PAGE_TOK,
	    NULL, NULL);
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_EQ_INT(cJSON_GetArraySize(r.json), 4);
	ASH_T_EQ_STR(ash_json_str(r.json, "id"), "6523");
	ASH_T_EQ_STR(ash_json_str(r.json, "last_name"), "Chang");
	it_resp_fini(&r);
	it_fake_call(&f, &r, "GET",
	    "/v23.0/17841?fields=username,is_user_follow_business"
	    "&access_token=" PAGE_TOK,
	    NULL, NULL);
	ASH_T_EQ_STR(ash_json_str(r.json, "username"), "peter_chang_live");
	ASH_T_TRUE(cJSON_IsFalse(
	    cJSON_GetObjectItem(r.json, "is_user_follow_business")));
	it_resp_fini(&r);
	it_fake_call(
	    &f, &r, "GET", "/v23.0/7777?access_token=" PAGE_TOK, NULL, NULL);
	ASH_T_EQ_INT(r.status, 400);
	ASH_T_EQ_INT(err_int(&r, "code"), 2018218);
	it_resp_fini(&r);
	it_fake_call(
	    &f, &r, "GET", "/v23.0/8888?access_token=" PAGE_TOK, NULL, NULL);
	ASH_T_EQ_INT(r.status, 400);
	ASH_T_EQ_INT(err_int(&r, "code"), 100);
	ASH_T_EQ_INT(err_int(&r, "error_subcode"), 33);
	ASH_T_EQ_STR(err_str(&r, "type"), "GraphMethodException");
	ASH_T_CONTAINS(err_str(&r, "message"), "Unsupported get request");
	it_resp_fini(&r);
	/* The token is checked before the lookup. */
	it_fake_call(
	    &f, &r, "GET", "/v23.0/6523?access_token=bad", NULL, NULL);
	ASH_T_EQ_INT(err_int(&r, "code"), 190);
	it_resp_fini(&r);
	/* A token's account is a node too: GET /{page-id}?fields=access_token
	 */
	it_fake_call(&f, &r, "GET",
	    "/v23.0/1001?fields=access_token&access_token=" PAGE_TOK, NULL,
	    NULL);
	ASH_T_EQ_STR(ash_json_str(r.json, "access_token"), PAGE_TOK);
	it_resp_fini(&r);
	it_fake_stop(&f);
}

ASH_TEST(bearer_auth_works_like_access_token)
{
	it_fake f;
	it_resp r;
	cJSON  *calls;

	it_fake_start(&f, "fake_bearer");
	it_fake_token(&f, IG_TOK, IG_ACCT);
	it_fake_call(&f, &r, "GET", "/v23.0/me?fields=username,account_type",
	    IG_TOK, NULL);
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_EQ_STR(ash_json_str(r.json, "username"), "acme.bakery");
	ASH_T_EQ_STR(ash_json_str(r.json, "account_type"), "BUSINESS");
	it_resp_fini(&r);
	it_fake_call(&f, &r, "POST", "/v23.0/1784/messages", IG_TOK, SEND_OK);
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_CONTAINS(ash_json_str(r.json, "message_id"), "m_fake_");
	it_resp_fini(&r);
	it_fake_call(&f, &r, "POST", "/v23.0/me/messages", "nope", SEND_OK);
	ASH_T_EQ_INT(r.status, 400);
	ASH_T_EQ_INT(err_int(&r, "code"), 190);
	it_resp_fini(&r);
	calls = it_fake_calls(&f, "/1784/messages");
	ASH_T_EQ_INT(cJSON_GetArraySize(calls), 1);
	const cJSON *c = cJSON_GetArrayItem(calls, 0);
	ASH_T_EQ_STR(ash_json_str(c, "token"), IG_TOK);
	ASH_T_EQ_STR(ash_json_str(c, "auth"), "bearer");
	ASH_T_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(c, "query")), 0);
	cJSON_Delete(calls);
	it_fake_stop(&f);
}

ASH_TEST(thread_control_and_subscribed_apps)
{
	it_fake     f;
	it_resp     r;
	cJSON      *calls;
	const char *edges[] = {"/v23.0/me/pass_thread_control",
	    "/v23.0/me/take_thread_control",
	    "/v23.0/1001/request_thread_control"};
	char        path[256];

	start_with_page(&f, "fake_thread");
	for (int i = 0; i < 3; i++) {
		snprintf(
		    path, sizeof(path), "%s?access_token=" PAGE_TOK, edges[i]);
		it_fake_call(&f, &r, "POST", path, NULL,
		    "{\"recipient\":{\"id\":\"6523\"},"
		    "\"target_app_id\":\"263902037430900\"}");
		ASH_T_EQ_INT(r.status, 200);
		ASH_T_TRUE(
		    cJSON_IsTrue(cJSON_GetObjectItem(r.json, "success")));
		it_resp_fini(&r);
	}
	it_fake_call(&f, &r, "POST",
	    "/v23.0/me/pass_thread_control?access_token=" PAGE_TOK, NULL,
	    "{}");
	ASH_T_EQ_INT(err_int(&r, "code"), 100);
	it_resp_fini(&r);
	it_fake_call(&f, &r, "POST",
	    "/v23.0/1001/subscribed_apps?subscribed_fields=messages,"
	    "message_echoes&access_token=" PAGE_TOK,
	    NULL, NULL);
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "success")));
	it_resp_fini(&r);
	calls = it_fake_calls(&f, "/subscribed_apps");
	ASH_T_EQ_STR(ash_json_str(cJSON_GetObjectItem(
	                              cJSON_GetArrayItem(calls, 0), "query"),
	                 "subscribed_fields"),
	    "messages,message_echoes");
	cJSON_Delete(calls);
	it_fake_stop(&f);
}

ASH_TEST(calls_filter_and_reset)
{
	it_fake f;
	it_resp r;
	cJSON  *calls;

	start_with_page(&f, "fake_calls");
	it_fake_call(
	    &f, &r, "GET", "/v23.0/me?access_token=" PAGE_TOK, NULL, NULL);
	it_resp_fini(&r);
	ASH_T_EQ_INT(send_code(&f, SEND_OK), 0);
	it_fake_call(&f, &r, "POST",
	    "/v23.0/1001/subscribed_apps?access_token=" PAGE_TOK, NULL, NULL);
	it_resp_fini(&r);
	/* Control calls are not recorded. */
	calls = it_fake_calls(&f, NULL);
	ASH_T_EQ_INT(cJSON_GetArraySize(calls), 3);
	cJSON_Delete(calls);
	calls = it_fake_calls(&f, "/messages");
	ASH_T_EQ_INT(cJSON_GetArraySize(calls), 1);
	ASH_T_EQ_STR(ash_json_str(cJSON_GetArrayItem(calls, 0), "path"),
	    "/v23.0/me/messages");
	cJSON_Delete(calls);
	calls = it_fake_calls(&f, "/me");
	ASH_T_EQ_INT(cJSON_GetArraySize(calls), 1);
	cJSON_Delete(calls);
	calls = it_fake_calls(&f, "/nothing");
	ASH_T_EQ_INT(cJSON_GetArraySize(calls), 0);
	cJSON_Delete(calls);
	/* Reset forgets calls and tokens. */
	it_fake_reset(&f);
	calls = it_fake_calls(&f, NULL);
	ASH_T_EQ_INT(cJSON_GetArraySize(calls), 0);
	cJSON_Delete(calls);
	ASH_T_EQ_INT(send_code(&f, SEND_OK), 190);
	it_fake_stop(&f);
}

ASH_TEST(control_api_rejects_bad_input)
{
	it_fake f;
	it_resp r;
	struct {
		const char *path, *body;
		long        status;
	} cases[] = {
	    {"/_fake/tokens", "{}", 400},
	    {"/_fake/tokens", "{\"token\":\"t\",\"account\":[]}", 400},
	    {"/_fake/objects", "{\"id\":\"1\"}", 400},
	    {"/_fake/script", "{\"status\":\"abc\"}", 400},
	    {"/_fake/script", "{\"status\":700}", 400},
	    {"/_fake/script", "{\"times\":0}", 400},
	    {"/_fake/revoke", "{\"token\":\"never-registered\"}", 400},
	    {"/_fake/script", "{not json", 400},
	    {"/_fake/nope", "{}", 404},
	};

	it_fake_start(&f, "fake_control");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		it_fake_call(
		    &f, &r, "POST", cases[i].path, NULL, cases[i].body);
		if (r.status != cases[i].status)
			ASH_T_FAILF("%s %s: %ld", cases[i].path, cases[i].body,
			    r.status);
		ASH_T_NOT_NULL(cJSON_GetObjectItem(r.json, "error"));
		it_resp_fini(&r);
	}
	it_fake_stop(&f);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(me_returns_requested_fields_only),
    ASH_TEST_ENTRY(unknown_token_gets_190_exact_body),
    ASH_TEST_ENTRY(messages_success_shape_and_recorded_call),
    ASH_TEST_ENTRY(messages_invalid_bodies_get_code_100),
    ASH_TEST_ENTRY(message_tag_needs_tag_and_only_then),
    ASH_TEST_ENTRY(scripted_613_with_usage_header_then_success),
    ASH_TEST_ENTRY(delay_holds_the_answer),
    ASH_TEST_ENTRY(client_timeout_during_delay_leaves_fake_healthy),
    ASH_TEST_ENTRY(stop_with_reply_parked_is_clean),
    ASH_TEST_ENTRY(revoke_gives_190),
    ASH_TEST_ENTRY(profile_lookup_and_unavailable_profile),
    ASH_TEST_ENTRY(bearer_auth_works_like_access_token),
    ASH_TEST_ENTRY(thread_control_and_subscribed_apps),
    ASH_TEST_ENTRY(calls_filter_and_reset),
    ASH_TEST_ENTRY(control_api_rejects_bad_input))
