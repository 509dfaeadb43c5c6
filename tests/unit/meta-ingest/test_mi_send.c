/*
 * Unit tests: the pure parts of sending - the messaging-window policy,
 * Graph error classification, usage headers, backoff, outcomes, failure
 * reasons, text limits and the Send API body (meta-send-api.md §2, §4-§6).
 */
#include "mi.h"

#include <ash_test.h>
#include <ashoon/json.h>

#include <stdlib.h>
#include <string.h>

#define NOW    ((int64_t) 1750000000000) /* any fixed instant, in ms */
#define MINUTE ((int64_t) 60 * 1000)
#define HOUR   (60 * MINUTE)
#define DAY    (24 * HOUR)

/* --- the window policy --------------------------------------------------- */

/* One row of the table: who writes, how long after the customer's last
 * message (-1: never wrote), and the expected type/tag (NULL type: the
 * send is refused). */
typedef struct pcase {
	mi_author   author;
	int64_t     age_ms;
	const char *type;
	const char *tag;
} pcase;

static void
check_case(const pcase *c)
{
	int64_t   last = c->age_ms < 0 ? 0 : NOW - c->age_ms;
	mi_policy p    = mi_policy_decide(c->author, NOW, last);
	char      what[96];

	snprintf(what, sizeof(what), "%s at %lld ms",
	    c->author == MI_AUTHOR_AI ? "ai" : "agent", (long long) c->age_ms);
	if (c->type == NULL) {
		if (p.allowed)
			ASH_T_FAILF(
			    "%s: allowed as %s", what, p.messaging_type);
		ASH_T_NOT_NULL(p.refusal);
		ASH_T_NULL(p.messaging_type);
		ASH_T_NULL(p.tag);
		return;
	}
	if (!p.allowed)
		ASH_T_FAILF("%s: refused: %s", what, p.refusal);
	ASH_T_EQ_STR(p.messaging_type, c->type);
	if (c->tag == NULL)
		ASH_T_NULL(p.tag);
	else
		ASH_T_EQ_STR(p.tag, c->tag);
}

ASH_TEST(policy_window_table_ai_and_human)
{
	/* The 24 h edge is judged at 23h50m (documented margin in
	 * mi_send.c); the 7-day edge is exact. */
	const int64_t edge  = DAY - 10 * MINUTE;
	const pcase   tab[] = {
	      {MI_AUTHOR_AI, 0, "RESPONSE", NULL},
	      {MI_AUTHOR_AGENT, 0, "RESPONSE", NULL},
	      {MI_AUTHOR_AI, HOUR, "RESPONSE", NULL},
	      {MI_AUTHOR_AGENT, HOUR, "RESPONSE", NULL},
	      {MI_AUTHOR_AI, edge - 1, "RESPONSE", NULL},
	      {MI_AUTHOR_AGENT, edge - 1, "RESPONSE", NULL},
	      {MI_AUTHOR_AI, edge, NULL, NULL},
	      {MI_AUTHOR_AGENT, edge, "MESSAGE_TAG", "HUMAN_AGENT"},
	      {MI_AUTHOR_AI, DAY, NULL, NULL},
	      {MI_AUTHOR_AGENT, DAY, "MESSAGE_TAG", "HUMAN_AGENT"},
	      {MI_AUTHOR_AI, 30 * HOUR, NULL, NULL},
	      {MI_AUTHOR_AGENT, 30 * HOUR, "MESSAGE_TAG", "HUMAN_AGENT"},
	      {MI_AUTHOR_AI, 6 * DAY, NULL, NULL},
	      {MI_AUTHOR_AGENT, 6 * DAY, "MESSAGE_TAG", "HUMAN_AGENT"},
	      {MI_AUTHOR_AGENT, 7 * DAY - 1, "MESSAGE_TAG", "HUMAN_AGENT"},
	      {MI_AUTHOR_AI, 7 * DAY, NULL, NULL},
	      {MI_AUTHOR_AGENT, 7 * DAY, NULL, NULL},
	      {MI_AUTHOR_AI, 8 * DAY, NULL, NULL},
	      {MI_AUTHOR_AGENT, 8 * DAY, NULL, NULL},
	      {MI_AUTHOR_AI, -1, NULL, NULL},
	      {MI_AUTHOR_AGENT, -1, NULL, NULL},
        };

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		check_case(&tab[i]);
}

/* After Meta refused a send as outside the window, its answer wins over
 * our clock: a person's resend goes with HUMAN_AGENT even when the
 * customer's last message looks recent here, the AI's is refused, and
 * the 7-day limit still holds. */
ASH_TEST(policy_after_meta_closed_the_window)
{
	static const struct {
		mi_author   author;
		int64_t     age_ms;
		const char *tag; /* NULL: refused */
	} tab[] = {
	    {MI_AUTHOR_AGENT, HOUR, "HUMAN_AGENT"},
	    {MI_AUTHOR_AGENT, 30 * HOUR, "HUMAN_AGENT"},
	    {MI_AUTHOR_AGENT, 7 * DAY, NULL},
	    {MI_AUTHOR_AI, HOUR, NULL},
	    {MI_AUTHOR_AI, 30 * HOUR, NULL},
	};

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		mi_policy p = mi_policy_after_window(
		    tab[i].author, NOW, NOW - tab[i].age_ms);
		if (tab[i].tag == NULL) {
			ASH_T_TRUE(!p.allowed);
			ASH_T_NOT_NULL(p.refusal);
			continue;
		}
		ASH_T_TRUE(p.allowed);
		ASH_T_EQ_STR(p.messaging_type, "MESSAGE_TAG");
		ASH_T_EQ_STR(p.tag, tab[i].tag);
	}
	ASH_T_CONTAINS(
	    mi_policy_after_window(MI_AUTHOR_AI, NOW, NOW - HOUR).refusal,
	    "Meta answered");
	ASH_T_TRUE(!mi_policy_after_window(MI_AUTHOR_AGENT, NOW, 0).allowed);
}

/* A queued message about to go, judged again: the window may have closed
 * while it waited; a tag Meta made us use is kept. */
ASH_TEST(policy_at_send_judges_the_window_again)
{
	static const struct {
		mi_author   author;
		int64_t     age_ms; /* of the customer's last message, now */
		const char *queued; /* type it was queued with */
		const char *type;   /* NULL: refused */
		const char *tag;
	} tab[] = {
	    {MI_AUTHOR_AI, HOUR, "RESPONSE", "RESPONSE", NULL},
	    {MI_AUTHOR_AGENT, HOUR, "RESPONSE", "RESPONSE", NULL},
	    /* Queued inside 24 h, about to go after. */
	    {MI_AUTHOR_AI, 25 * HOUR, "RESPONSE", NULL, NULL},
	    {MI_AUTHOR_AGENT, 25 * HOUR, "RESPONSE", "MESSAGE_TAG",
	        "HUMAN_AGENT"},
	    {MI_AUTHOR_AGENT, 8 * DAY, "RESPONSE", NULL, NULL},
	    {MI_AUTHOR_AGENT, 8 * DAY, "MESSAGE_TAG", NULL, NULL},
	    /* Queued with the tag after Meta closed the window: kept,
	     * though our clock says the window is open. */
	    {MI_AUTHOR_AGENT, HOUR, "MESSAGE_TAG", "MESSAGE_TAG",
	        "HUMAN_AGENT"},
	    {MI_AUTHOR_AGENT, 2 * DAY, "MESSAGE_TAG", "MESSAGE_TAG",
	        "HUMAN_AGENT"},
	};

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		mi_policy p = mi_policy_at_send(
		    tab[i].author, NOW, NOW - tab[i].age_ms, tab[i].queued);
		if (tab[i].type == NULL) {
			ASH_T_TRUE(!p.allowed);
			ASH_T_CONTAINS(p.refusal, "while the message waited");
			continue;
		}
		ASH_T_TRUE(p.allowed);
		ASH_T_EQ_STR(p.messaging_type, tab[i].type);
		if (tab[i].tag == NULL)
			ASH_T_NULL(p.tag);
		else
			ASH_T_EQ_STR(p.tag, tab[i].tag);
	}
	ASH_T_CONTAINS(
	    mi_policy_at_send(MI_AUTHOR_AI, NOW, NOW - 25 * HOUR, "RESPONSE")
	        .refusal,
	    "HUMAN_AGENT");
	ASH_T_CONTAINS(mi_policy_at_send(
	                   MI_AUTHOR_AGENT, NOW, NOW - 8 * DAY, "MESSAGE_TAG")
	                   .refusal,
	    "7 days");
}

ASH_TEST(policy_ai_is_never_tagged_human_agent)
{
	/* Whatever the age, an AI reply never carries HUMAN_AGENT. */
	for (int64_t age = 0; age <= 9 * DAY; age += 17 * MINUTE) {
		mi_policy p = mi_policy_decide(MI_AUTHOR_AI, NOW, NOW - age);
		ASH_T_TRUE(p.tag == NULL);
		ASH_T_TRUE(
		    !p.allowed || strcmp(p.messaging_type, "RESPONSE") == 0);
	}
}

ASH_TEST(policy_refusals_say_why)
{
	ASH_T_CONTAINS(
	    mi_policy_decide(MI_AUTHOR_AI, NOW, NOW - 30 * HOUR).refusal,
	    "24 hours");
	ASH_T_CONTAINS(
	    mi_policy_decide(MI_AUTHOR_AI, NOW, NOW - 30 * HOUR).refusal,
	    "HUMAN_AGENT");
	ASH_T_CONTAINS(
	    mi_policy_decide(MI_AUTHOR_AGENT, NOW, NOW - 8 * DAY).refusal,
	    "7 days");
	ASH_T_CONTAINS(mi_policy_decide(MI_AUTHOR_AGENT, NOW, 0).refusal,
	    "never written");
	/* A customer clock slightly ahead of ours: just wrote. */
	ASH_T_EQ_STR(
	    mi_policy_decide(MI_AUTHOR_AI, NOW, NOW + 5000).messaging_type,
	    "RESPONSE");
}

/* --- classification ------------------------------------------------------ */

ASH_TEST(classify_every_code_of_the_spec_table)
{
	const struct {
		long           status;
		int            code, subcode;
		mi_graph_class want;
	} tab[] = {
	    {400, 190, 0, MI_GRAPH_REAUTH},
	    {400, 190, 463, MI_GRAPH_REAUTH},
	    {400, 190, 460, MI_GRAPH_REAUTH},
	    {400, 4, 0, MI_GRAPH_THROTTLED},
	    {400, 4, 2018022, MI_GRAPH_THROTTLED},
	    {400, 17, 0, MI_GRAPH_THROTTLED},
	    {400, 32, 0, MI_GRAPH_THROTTLED},
	    {400, 613, 0, MI_GRAPH_THROTTLED},
	    {400, 80006, 0, MI_GRAPH_THROTTLED},
	    {400, 10, 2018065, MI_GRAPH_WINDOW},
	    {400, 10, 2018278, MI_GRAPH_WINDOW},
	    {400, 10, 2534022, MI_GRAPH_WINDOW},
	    {400, 10, 0, MI_GRAPH_PERMANENT},
	    {400, 10, 2018108, MI_GRAPH_PERMANENT},
	    {400, 551, 0, MI_GRAPH_PERMANENT},
	    {400, 551, 1545041, MI_GRAPH_PERMANENT},
	    {400, 100, 0, MI_GRAPH_PERMANENT},
	    {400, 100, 2018001, MI_GRAPH_PERMANENT},
	    {400, 100, 33, MI_GRAPH_PERMANENT},
	    {400, 200, 0, MI_GRAPH_PERMANENT},
	    {400, 230, 0, MI_GRAPH_PERMANENT},
	    {400, 368, 0, MI_GRAPH_PERMANENT},
	    {400, 2022, 0, MI_GRAPH_PERMANENT},
	    {400, 2018218, 0, MI_GRAPH_PERMANENT},
	    {500, 2, 0, MI_GRAPH_RETRY},
	    {400, 2, 0, MI_GRAPH_RETRY},
	    {500, 1, 0, MI_GRAPH_RETRY},
	    {400, 1200, 0, MI_GRAPH_RETRY},
	    /* The code decides, not the status. */
	    {500, 190, 0, MI_GRAPH_REAUTH},
	    {500, 100, 0, MI_GRAPH_PERMANENT},
	    {429, 613, 0, MI_GRAPH_THROTTLED},
	    /* Unknown codes: a server fault may pass, a client error not. */
	    {500, 12345, 0, MI_GRAPH_RETRY},
	    {400, 12345, 0, MI_GRAPH_PERMANENT},
	    /* No Graph error body: the status decides. */
	    {200, 0, 0, MI_GRAPH_OK},
	    {429, 0, 0, MI_GRAPH_THROTTLED},
	    {500, 0, 0, MI_GRAPH_RETRY},
	    {502, 0, 0, MI_GRAPH_RETRY},
	    {503, 0, 0, MI_GRAPH_RETRY},
	    {0, 0, 0, MI_GRAPH_RETRY},
	    {400, 0, 0, MI_GRAPH_PERMANENT},
	    {404, 0, 0, MI_GRAPH_PERMANENT},
	};

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		mi_graph_class got = mi_graph_classify(
		    tab[i].status, tab[i].code, tab[i].subcode);
		if (got != tab[i].want)
			ASH_T_FAILF("HTTP %ld code %d/%d: class %d, want %d",
			    tab[i].status, tab[i].code, tab[i].subcode, got,
			    tab[i].want);
		ASH_T_EQ_INT(got, tab[i].want);
	}
}

/* --- usage headers ------------------------------------------------------- */

ASH_TEST(usage_buc_estimate_minutes_become_seconds)
{
	ASH_T_EQ_INT(mi_graph_usage_wait_s(
	                 "{\"104857601234567\":[{\"type\":\"messenger\","
	                 "\"call_count\":95,\"total_cputime\":20,"
	                 "\"total_time\":20,"
	                 "\"estimated_time_to_regain_access\":5}]}",
	                 NULL),
	    300);
	/* The largest estimate over every object and entry wins. */
	ASH_T_EQ_INT(mi_graph_usage_wait_s(
	                 "{\"1\":[{\"estimated_time_to_regain_access\":2},"
	                 "{\"estimated_time_to_regain_access\":7}],"
	                 "\"2\":[{\"estimated_time_to_regain_access\":3}]}",
	                 NULL),
	    420);
	/* An absurd estimate is capped at a day. */
	ASH_T_EQ_INT(
	    mi_graph_usage_wait_s(
	        "{\"1\":[{\"estimated_time_to_regain_access\":1e9}]}", NULL),
	    86400);
}

ASH_TEST(usage_percentages_at_100_wait_a_minute)
{
	ASH_T_EQ_INT(mi_graph_usage_wait_s(
	                 "{\"1\":[{\"call_count\":100,\"total_cputime\":3,"
	                 "\"total_time\":3,"
	                 "\"estimated_time_to_regain_access\":0}]}",
	                 NULL),
	    60);
	ASH_T_EQ_INT(
	    mi_graph_usage_wait_s(
	        "{\"1\":[{\"call_count\":12,\"total_time\":104}]}", NULL),
	    60);
	/* 99 % (and the 80 % "slow down" zone) does not stop us. */
	ASH_T_EQ_INT(
	    mi_graph_usage_wait_s(
	        "{\"1\":[{\"call_count\":99,\"total_cputime\":80}]}", NULL),
	    0);
	ASH_T_EQ_INT(mi_graph_usage_wait_s(NULL,
	                 "{\"call_count\":28,\"total_time\":25,"
	                 "\"total_cputime\":25}"),
	    0);
	ASH_T_EQ_INT(mi_graph_usage_wait_s(NULL,
	                 "{\"call_count\":100,\"total_time\":25,"
	                 "\"total_cputime\":25}"),
	    60);
	/* An estimate above a minute is kept whole. */
	ASH_T_EQ_INT(
	    mi_graph_usage_wait_s("{\"1\":[{\"call_count\":100,"
	                          "\"estimated_time_to_regain_access\":3}]}",
	        "{\"call_count\":100}"),
	    180);
}

ASH_TEST(usage_malformed_or_absent_headers_mean_no_wait)
{
	ASH_T_EQ_INT(mi_graph_usage_wait_s(NULL, NULL), 0);
	ASH_T_EQ_INT(mi_graph_usage_wait_s("", ""), 0);
	ASH_T_EQ_INT(mi_graph_usage_wait_s("{not json", "[1,2"), 0);
	ASH_T_EQ_INT(
	    mi_graph_usage_wait_s(
	        "{\"1\":[{\"estimated_time_to_regain_access\":5}]} x", NULL),
	    0);
	ASH_T_EQ_INT(mi_graph_usage_wait_s("[]", "42"), 0);
	ASH_T_EQ_INT(mi_graph_usage_wait_s("{\"1\":{\"call_count\":100}}",
	                 "{\"call_count\":\"100\"}"),
	    0);
	ASH_T_EQ_INT(
	    mi_graph_usage_wait_s(
	        "{\"1\":[{\"estimated_time_to_regain_access\":-4}]}", NULL),
	    0);
	/* One bad header does not hide the other. */
	ASH_T_EQ_INT(
	    mi_graph_usage_wait_s("{bad", "{\"total_time\":100}"), 60);
}

/* --- backoff and outcomes ------------------------------------------------ */

ASH_TEST(backoff_doubles_with_jitter_and_cap)
{
	/* rnd % 501: 0 -> x0.75, 250 -> x1.00, 500 -> x1.25. */
	ASH_T_EQ_INT(mi_send_backoff_ms(1, 0, 250), 1000);
	ASH_T_EQ_INT(mi_send_backoff_ms(2, 0, 250), 2000);
	ASH_T_EQ_INT(mi_send_backoff_ms(3, 0, 250), 4000);
	ASH_T_EQ_INT(mi_send_backoff_ms(6, 0, 250), 32000);
	ASH_T_EQ_INT(mi_send_backoff_ms(1, 0, 0), 750);
	ASH_T_EQ_INT(mi_send_backoff_ms(1, 0, 500), 1250);
	ASH_T_EQ_INT(mi_send_backoff_ms(1, 0, 501), 750);
	ASH_T_EQ_INT(mi_send_backoff_ms(3, 0, 0), 3000);
	/* Capped at 5 minutes, jitter included; huge attempts are fine. */
	ASH_T_EQ_INT(mi_send_backoff_ms(9, 0, 250), 256000);
	ASH_T_EQ_INT(mi_send_backoff_ms(10, 0, 250), 300000);
	ASH_T_EQ_INT(mi_send_backoff_ms(10, 0, 500), 300000);
	ASH_T_EQ_INT(mi_send_backoff_ms(1000000, 0, 0), 225000);
	/* Never shorter than Meta's own estimate. */
	ASH_T_EQ_INT(mi_send_backoff_ms(1, 300, 250), 300000);
	ASH_T_EQ_INT(mi_send_backoff_ms(1, 900, 250), 900000);
	ASH_T_EQ_INT(mi_send_backoff_ms(6, 1, 250), 32000);
	ASH_T_EQ_INT(mi_send_backoff_ms(0, 0, 250), 1000);
}

ASH_TEST(outcome_retries_transient_fails_permanent)
{
	ASH_T_EQ_INT(mi_send_outcome_of(MI_GRAPH_OK, 6, 6), MI_SEND_SENT);
	ASH_T_EQ_INT(mi_send_outcome_of(MI_GRAPH_RETRY, 1, 6), MI_SEND_RETRY);
	ASH_T_EQ_INT(mi_send_outcome_of(MI_GRAPH_RETRY, 5, 6), MI_SEND_RETRY);
	ASH_T_EQ_INT(mi_send_outcome_of(MI_GRAPH_RETRY, 6, 6), MI_SEND_FAILED);
	ASH_T_EQ_INT(mi_send_outcome_of(MI_GRAPH_RETRY, 1, 1), MI_SEND_FAILED);
	/* Throttling only asks us to wait. */
	ASH_T_EQ_INT(
	    mi_send_outcome_of(MI_GRAPH_THROTTLED, 1, 6), MI_SEND_RETRY);
	ASH_T_EQ_INT(
	    mi_send_outcome_of(MI_GRAPH_THROTTLED, 60, 6), MI_SEND_RETRY);
	ASH_T_EQ_INT(
	    mi_send_outcome_of(MI_GRAPH_REAUTH, 1, 6), MI_SEND_FAILED);
	ASH_T_EQ_INT(
	    mi_send_outcome_of(MI_GRAPH_WINDOW, 1, 6), MI_SEND_FAILED);
	ASH_T_EQ_INT(
	    mi_send_outcome_of(MI_GRAPH_PERMANENT, 1, 6), MI_SEND_FAILED);
}

/* Which failed sends may have reached Meta (the retry waits for an echo). */
ASH_TEST(maybe_taken_only_when_the_request_may_have_arrived)
{
	static const struct {
		ash_err        err;
		long           status;
		mi_graph_class cls;
		int            code;
		bool           want;
	} tab[] = {
	    {ASH_ETIMEDOUT, 0, MI_GRAPH_RETRY, 0, true},
	    {ASH_EUPSTREAM, 0, MI_GRAPH_RETRY, 0, true},
	    {ASH_ETOOBIG, 0, MI_GRAPH_RETRY, 0, true},
	    {ASH_OK, 500, MI_GRAPH_RETRY, 2, true},
	    {ASH_OK, 503, MI_GRAPH_RETRY, 0, true},
	    /* Never left, or Meta said it failed. */
	    {ASH_EUNAVAIL, 0, MI_GRAPH_RETRY, 0, false},
	    {ASH_ECRYPTO, 0, MI_GRAPH_RETRY, 0, false},
	    {ASH_EINVAL, 0, MI_GRAPH_RETRY, 0, false},
	    {ASH_OK, 500, MI_GRAPH_RETRY, 1200, false},
	    {ASH_OK, 400, MI_GRAPH_RETRY, 2, false},
	    {ASH_OK, 429, MI_GRAPH_THROTTLED, 0, false},
	    {ASH_OK, 500, MI_GRAPH_THROTTLED, 613, false},
	    {ASH_OK, 400, MI_GRAPH_PERMANENT, 100, false},
	    {ASH_OK, 200, MI_GRAPH_OK, 0, false},
	};

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		mi_graph_result r = {tab[i].err, tab[i].status, tab[i].cls,
		    tab[i].code, 0, NULL, NULL, 0, NULL};
		ASH_T_EQ_INT((int) (mi_send_maybe_taken(&r) ? 10 + i : i),
		    (int) (tab[i].want ? 10 + i : i)); /* names the case */
	}
}

ASH_TEST(failure_reasons_name_the_code)
{
	mi_graph_result r = {ASH_OK, 400, MI_GRAPH_REAUTH, 190, 463,
	    "Error validating access token: Session has expired", "AbC", 0,
	    NULL};
	char            out[400];

	mi_send_failure_reason(&r, out, sizeof(out));
	ASH_T_CONTAINS(out, "Graph error 190, subcode 463");
	ASH_T_CONTAINS(out, "reconnect the channel");
	r = (mi_graph_result) {ASH_OK, 400, MI_GRAPH_WINDOW, 10, 2018278,
	    "(#10) This message is sent outside of allowed window.", NULL, 0,
	    NULL};
	mi_send_failure_reason(&r, out, sizeof(out));
	ASH_T_CONTAINS(out, "messaging window");
	ASH_T_CONTAINS(out, "Graph error 10, subcode 2018278");
	r.code    = 551;
	r.subcode = 0;
	mi_send_failure_reason(&r, out, sizeof(out));
	ASH_T_CONTAINS(out, "isn't available");
	ASH_T_CONTAINS(out, "Graph error 551");
	/* An unknown code: never Meta's words (they can quote what we sent,
	 * a malformed token say), but the trace id to ask Meta about. */
	r = (mi_graph_result) {ASH_OK, 400, MI_GRAPH_PERMANENT, 4242, 7,
	    "Malformed access token EAAGsecret", "Fq9x", 0, NULL};
	mi_send_failure_reason(&r, out, sizeof(out));
	ASH_T_EQ_STR(
	    out, "unexpected Graph error 4242, subcode 7 (fbtrace_id Fq9x)");
	ASH_T_NOT_CONTAINS(out, "EAAG");
	r = (mi_graph_result) {
	    ASH_OK, 503, MI_GRAPH_RETRY, 0, 0, NULL, NULL, 0, NULL};
	mi_send_failure_reason(&r, out, sizeof(out));
	ASH_T_CONTAINS(out, "HTTP 503");
	r.err = ASH_ETIMEDOUT;
	mi_send_failure_reason(&r, out, sizeof(out));
	ASH_T_CONTAINS(out, "timed out");
}

/* --- text limits and the body -------------------------------------------- */

static char *
repeat(const char *unit, int n)
{
	size_t u = strlen(unit);
	char  *s = ash_xmalloc(u * n + 1);

	for (int i = 0; i < n; i++)
		memcpy(s + i * u, unit, u);
	s[u * n] = '\0';
	return s;
}

ASH_TEST(text_limits_characters_for_messenger_bytes_for_instagram)
{
	char  why[256];
	char *e2000 = repeat("\xc3\xa9", 2000); /* 2000 chars, 4000 bytes */
	char *e2001 = repeat("\xc3\xa9", 2001);
	char *a1000 = repeat("a", 1000), *a1001 = repeat("a", 1001);
	char *e500 = repeat("\xc3\xa9", 500), *e501 = repeat("\xc3\xa9", 501);

	ASH_T_OK(mi_send_text_check("messenger", e2000, why, sizeof(why)));
	ASH_T_ERR(mi_send_text_check("messenger", e2001, why, sizeof(why)),
	    ASH_EINVAL);
	ASH_T_CONTAINS(why, "2001 characters");
	ASH_T_CONTAINS(why, "2000");
	ASH_T_OK(mi_send_text_check("instagram", a1000, why, sizeof(why)));
	ASH_T_ERR(mi_send_text_check("instagram", a1001, why, sizeof(why)),
	    ASH_EINVAL);
	ASH_T_CONTAINS(why, "1001 bytes");
	ASH_T_OK(mi_send_text_check("instagram", e500, why, sizeof(why)));
	ASH_T_ERR(mi_send_text_check("instagram", e501, why, sizeof(why)),
	    ASH_EINVAL);
	ASH_T_CONTAINS(why, "1002 bytes");
	ASH_T_ERR(
	    mi_send_text_check("messenger", "", why, sizeof(why)), ASH_EINVAL);
	free(e2000);
	free(e2001);
	free(a1000);
	free(a1001);
	free(e500);
	free(e501);
}

static void
check_body(const mi_outbound *o, const char *want)
{
	cJSON *b = mi_send_body(o);
	char  *s = ash_json_render(b);

	ASH_T_EQ_STR(s, want);
	cJSON_free(s);
	cJSON_Delete(b);
}

ASH_TEST(send_body_shapes)
{
	mi_outbound o = {"0b4f6f0e-4d1c-4b59-9d7f-2f4f3c1f6e01",
	    "6523918847201937", "RESPONSE", NULL, "Hello", NULL, NULL, NULL};

	check_body(&o,
	    "{\"recipient\":{\"id\":\"6523918847201937\"},"
	    "\"messaging_type\":\"RESPONSE\",\"message\":{\"text\":\"Hello\","
	    "\"metadata\":\"ashoon:0b4f6f0e-4d1c-4b59-9d7f-2f4f3c1f6e01\"}}");
	o.messaging_type = "MESSAGE_TAG";
	o.tag            = "HUMAN_AGENT";
	o.reply_to_mid   = "m_abc";
	check_body(&o,
	    "{\"recipient\":{\"id\":\"6523918847201937\"},"
	    "\"messaging_type\":\"MESSAGE_TAG\",\"tag\":\"HUMAN_AGENT\","
	    "\"message\":{\"text\":\"Hello\","
	    "\"metadata\":\"ashoon:0b4f6f0e-4d1c-4b59-9d7f-2f4f3c1f6e01\"},"
	    "\"reply_to\":{\"mid\":\"m_abc\"}}");
	o = (mi_outbound) {"0b4f6f0e-4d1c-4b59-9d7f-2f4f3c1f6e01", "42",
	    "RESPONSE", NULL, NULL, "image", "https://cdn.example.com/r.png",
	    NULL};
	check_body(&o,
	    "{\"recipient\":{\"id\":\"42\"},\"messaging_type\":\"RESPONSE\","
	    "\"message\":{\"attachment\":{\"type\":\"image\",\"payload\":{"
	    "\"url\":\"https://cdn.example.com/r.png\",\"is_reusable\":true}},"
	    "\"metadata\":\"ashoon:0b4f6f0e-4d1c-4b59-9d7f-2f4f3c1f6e01\"}}");
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(policy_window_table_ai_and_human),
    ASH_TEST_ENTRY(policy_after_meta_closed_the_window),
    ASH_TEST_ENTRY(policy_at_send_judges_the_window_again),
    ASH_TEST_ENTRY(policy_ai_is_never_tagged_human_agent),
    ASH_TEST_ENTRY(policy_refusals_say_why),
    ASH_TEST_ENTRY(classify_every_code_of_the_spec_table),
    ASH_TEST_ENTRY(usage_buc_estimate_minutes_become_seconds),
    ASH_TEST_ENTRY(usage_percentages_at_100_wait_a_minute),
    ASH_TEST_ENTRY(usage_malformed_or_absent_headers_mean_no_wait),
    ASH_TEST_ENTRY(backoff_doubles_with_jitter_and_cap),
    ASH_TEST_ENTRY(outcome_retries_transient_fails_permanent),
    ASH_TEST_ENTRY(maybe_taken_only_when_the_request_may_have_arrived),
    ASH_TEST_ENTRY(failure_reasons_name_the_code),
    ASH_TEST_ENTRY(text_limits_characters_for_messenger_bytes_for_instagram),
    ASH_TEST_ENTRY(send_body_shapes))
