/*
 * Integration: sending on Messenger and Instagram - the real gateway and
 * meta-ingest on a real Postgres, Meta replaced by tests/fakes/fake_graph.
 * Each case checks the exact request the fake received (or that none
 * came), the stored row, and the API's answer: the window policy, retries
 * after throttling, 190 and re-authentication, resend, idempotency,
 * typing and the handover protocol.
 */
#include "it.h"
#include "it_fake.h"

#include <ashoon/json.h>
#include <ashoon/loop.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOKEN     "EAAGpagetokenFORtests0123456789"
#define IGTOKEN   "IGQVJigtokenFORtests0123456789"
#define IGSECRET  "igAPPsecretFORtests0123456789"
#define PAGE      "104857601234567"
#define IG        "17841405822304914"
#define PSID      "6523918847201937"
#define IGSID     "5523918847201938"
#define APP       "987654321012345"
#define APPSECRET "3f6a1c9e8b7d4f20a5c1e9d7b3f8a6c2"
#define MASTER    "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
#define INBOX     263902037430900.0 /* Meta's Page Inbox app id */

/* One case's world: the fake, the stack, a tenant with a channel and one
 * conversation. */
typedef struct world {
	it_fake  f;
	it_stack s;
	char     tenant[64], key[128];
	char     channel[64], conv[64];
} world;

/* --- fixtures ----------------------------------------------------------- */

static const char *q(world *w, const char *fmt, ...) ASH_PRINTF(2, 3);

/* First column of the first row of an admin query (static buffer). */
static const char *
q(world *w, const char *fmt, ...)
{
	char    sql[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	return it_pg_exec(w->s.dsn, sql);
}

/* Connects a channel through the API (the real connect path: the token is
 * checked with the fake and sealed by meta-ingest). */
static void
connect_channel(world *w, const char *body)
{
	it_resp r;

	it_call(&w->s, &r, "POST", "/api/v1/channels/meta", w->key, body);
	if (r.status != 201)
		ASH_T_FAILF("connect: %ld %s", r.status, r.body);
	snprintf(w->channel, sizeof(w->channel), "%s",
	    ash_json_str(cJSON_GetObjectItem(r.json, "channel"), "id"));
	it_resp_fini(&r);
}

/* A conversation with customer ext whose last message was `age` ago (a
 * Postgres interval; NULL: the customer never wrote). The profile counts
 * as fetched so no other Graph call interferes. */
static void
conversation(world *w, const char *ext, const char *age)
{
	char when[96];

	snprintf(when, sizeof(when), age ? "now() - interval '%s'" : "NULL",
	    age ? age : "");
	snprintf(w->conv, sizeof(w->conv), "%s",
	    q(w,
	        "WITH p AS (INSERT INTO meta_ingest.participants "
	        "(tenant_id, channel_id, external_id, profile_state) "
	        "VALUES ('%s', '%s', '%s', 'fetched') RETURNING id) "
	        "INSERT INTO meta_ingest.conversations (tenant_id, "
	        "channel_id, participant_id, last_customer_msg_at) "
	        "SELECT '%s', '%s', p.id, %s FROM p RETURNING id",
	        w->tenant, w->channel, ext, w->tenant, w->channel, when));
}

/* extra: more "K=V" for every service, separated by spaces, or NULL. */
static void
world_start(world *w, const char *tag, const char *extra)
{
	char kv[160];

	memset(w, 0, sizeof(*w));
	it_fake_start(&w->f, tag);
	it_stack_init(&w->s, tag);
	snprintf(kv, sizeof(kv), "META_GRAPH_URL=%s", w->f.base);
	it_stack_env(&w->s, kv);
	snprintf(kv, sizeof(kv), "META_IG_GRAPH_URL=%s", w->f.base);
	it_stack_env(&w->s, kv);
	it_stack_env(&w->s, "META_APP_ID=" APP);
	it_stack_env(&w->s, "META_APP_SECRET=" APPSECRET);
	it_stack_env(&w->s, "ASHOON_MASTER_KEY=" MASTER);
	it_stack_env(&w->s, "ASHOON_META_SENDER_POLL_MS=100");
	for (const char *e = extra; e != NULL && *e != '\0';) {
		size_t n = strcspn(e, " ");

		snprintf(kv, sizeof(kv), "%.*s", (int) n, e);
		it_stack_env(&w->s, kv);
		e += n + strspn(e + n, " ");
	}
	it_stack_start_all(&w->s);
	it_tenant_create(&w->s, "Shop", w->tenant, w->key);
}

/* The usual world: a Messenger Page and a customer who wrote `age` ago. */
static void
messenger_world(world *w, const char *tag, const char *age, const char *extra)
{
	world_start(w, tag, extra);
	it_fake_token(&w->f, TOKEN, "{\"id\":\"" PAGE "\",\"name\":\"Acme\"}");
	connect_channel(w,
	    "{\"kind\":\"messenger\",\"external_id\":\"" PAGE
	    "\",\"access_token\":\"" TOKEN "\"}");
	conversation(w, PSID, age);
}

static void
world_stop(world *w)
{
	it_proc *mi = w->s.procs[ASH_SVC_META_INGEST];

	/* No token in any log line of the service (if still running: a
	 * case that stopped it checks its own exit). */
	ASH_T_TRUE(mi == NULL || !it_proc_log_has(mi, TOKEN));
	ASH_T_TRUE(mi == NULL || !it_proc_log_has(mi, IGTOKEN));
	it_stack_fini(&w->s);
	it_fake_stop(&w->f);
}

/* --- calls -------------------------------------------------------------- */

/* POST /api/v1/conversations/{conv}/messages; returns the status. */
static long
send_msg(world *w, const char *key, const char *body, it_resp *r)
{
	char path[160];

	snprintf(
	    path, sizeof(path), "/api/v1/conversations/%s/messages", w->conv);
	it_call(&w->s, r, "POST", path, key, body);
	return r->status;
}

/* Sends body, expects 202, returns the new message id in id. */
static void
send_ok(world *w, const char *body, char id[64])
{
	it_resp r;

	if (send_msg(w, w->key, body, &r) != 202)
		ASH_T_FAILF("send: %ld %s", r.status, r.body);
	snprintf(id, 64, "%s",
	    ash_json_str(cJSON_GetObjectItem(r.json, "message"), "id"));
	it_resp_fini(&r);
}

/* Waits for the message's state (fails the case after ms). */
static void
wait_state(world *w, const char *id, const char *want, int ms)
{
	const char *got = "";

	for (int t = 0; t < ms; t += 50) {
		got = q(w,
		    "SELECT state FROM meta_ingest.messages WHERE id = "
		    "'%s'",
		    id);
		if (strcmp(got, want) == 0)
			return;
		usleep(50 * 1000);
	}
	ASH_T_FAILF("message %s: state %s, want %s", id, got, want);
}

/* One request straight to meta-ingest's bus for this world's tenant from
 * a principal of role (for ops without an HTTP route). Returns the reply
 * envelope. */
static cJSON *
bus_call_as(world *w, const char *role, const char *op, const char *body)
{
	nng_socket sock;
	char       url[64], env[1024], *buf = NULL;
	size_t     n;
	cJSON     *rep = NULL;

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d",
	    w->s.bus_port[ASH_SVC_META_INGEST]);
	snprintf(env, sizeof(env),
	    "{\"v\":1,\"op\":\"%s\",\"id\":\"r-it-send\",\"tenant\":\"%s\","
	    "\"principal\":{\"user\":\"u-1\",\"role\":\"%s\"},"
	    "\"deadline_ms\":%lld,\"body\":%s}",
	    op, w->tenant, role, (long long) ash_wall_ms() + 5000, body);
	ASH_T_EQ_INT(nng_req0_open(&sock), 0);
	nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 5000);
	ASH_T_EQ_INT(nng_dial(sock, url, NULL, 0), 0);
	ASH_T_EQ_INT(nng_send(sock, env, strlen(env), 0), 0);
	ASH_T_EQ_INT(nng_recv(sock, &buf, &n, NNG_FLAG_ALLOC), 0);
	ASH_T_OK(ash_json_parse(buf, n, &rep));
	nng_free(buf, n);
	nng_close(sock);
	return rep;
}

/* bus_call_as an agent. */
static cJSON *
bus_call(world *w, const char *op, const char *body)
{
	return bus_call_as(w, "agent", op, body);
}

/* The recorded calls ending with suffix; *n gets their count. */
static cJSON *
calls(world *w, const char *suffix, int *n)
{
	cJSON *c = it_fake_calls(&w->f, suffix);

	*n = cJSON_GetArraySize(c);
	return c;
}

/* The JSON body of recorded call i (parsed; caller frees). */
static cJSON *
call_body(const cJSON *calls, int i)
{
	const char *b = ash_json_str(cJSON_GetArrayItem(calls, i), "body");
	cJSON      *doc;

	ASH_T_NOT_NULL(b);
	ASH_T_OK(ash_json_parse(b, strlen(b), &doc));
	return doc;
}

/* Checks the exact Send API request of call i. */
static void
check_send(const cJSON *cs, int i, const char *id, const char *type,
    const char *tag, const char *text)
{
	const cJSON *c = cJSON_GetArrayItem(cs, i);
	cJSON       *b = call_body(cs, i);
	const cJSON *m = cJSON_GetObjectItem(b, "message");
	char         meta[80];

	ASH_T_EQ_STR(ash_json_str(c, "method"), "POST");
	ASH_T_EQ_STR(ash_json_str(c, "path"), "/v23.0/me/messages");
	ASH_T_CONTAINS(ash_json_str(c, "content_type"), "application/json");
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetObjectItem(b, "recipient"), "id"), PSID);
	ASH_T_EQ_STR(ash_json_str(b, "messaging_type"), type);
	if (tag == NULL)
		ASH_T_NULL(cJSON_GetObjectItem(b, "tag"));
	else
		ASH_T_EQ_STR(ash_json_str(b, "tag"), tag);
	ASH_T_EQ_STR(ash_json_str(m, "text"), text);
	snprintf(meta, sizeof(meta), "ashoon:%s", id);
	ASH_T_EQ_STR(ash_json_str(m, "metadata"), meta);
	cJSON_Delete(b);
}

/* Checks that the Page token went as ?access_token=, as Graph wants. */
static void
check_page_auth(const cJSON *cs, int i)
{
	const cJSON *c = cJSON_GetArrayItem(cs, i);

	ASH_T_EQ_STR(ash_json_str(c, "auth"), "query");
	ASH_T_EQ_STR(ash_json_str(c, "token"), TOKEN);
}

/* meta-ingest's /metrics contains line. */
static void
check_metric(world *w, const char *line)
{
	it_resp r;
	char    url[96];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics",
	    w->s.metrics_port[ASH_SVC_META_INGEST]);
	it_http(&r, "GET", url, NULL, NULL, 0);
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_CONTAINS(r.body, line);
	it_resp_fini(&r);
}

/* --- the window policy -------------------------------------------------- */

ASH_TEST(p1_ai_reply_is_marked_and_goes_within_24h_as_response)
{
	world        w;
	it_resp      r;
	cJSON       *cs;
	const cJSON *m;
	char         id[64];
	int          n;

	messenger_world(&w, "send_ai_24h", "1 hour", NULL);
	ASH_T_EQ_INT(send_msg(&w, w.key,
	                 "{\"text\":\"Your order left the warehouse.\","
	                 "\"author\":\"ai\"}",
	                 &r),
	    202);
	m = cJSON_GetObjectItem(r.json, "message");
	snprintf(id, sizeof(id), "%s", ash_json_str(m, "id"));
	/* Answered from the stored row: queued, marked as AI. */
	ASH_T_EQ_STR(ash_json_str(m, "state"), "queued");
	ASH_T_EQ_STR(ash_json_str(m, "author"), "ai");
	ASH_T_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(m, "ai_generated")));
	ASH_T_EQ_STR(ash_json_str(m, "messaging_type"), "RESPONSE");
	ASH_T_TRUE(cJSON_IsNull(cJSON_GetObjectItem(m, "tag")));
	it_resp_fini(&r);
	wait_state(&w, id, "sent", 15000);
	cs = calls(&w, "/messages", &n);
	ASH_T_EQ_INT(n, 1);
	check_send(
	    cs, 0, id, "RESPONSE", NULL, "Your order left the warehouse.");
	check_page_auth(cs, 0);
	cJSON_Delete(cs);
	/* Meta's message_id is our mid; the author is the API key. */
	ASH_T_CONTAINS(
	    q(&w, "SELECT mid FROM meta_ingest.messages WHERE id = '%s'", id),
	    "m_fake_");
	ASH_T_EQ_STR(
	    q(&w,
	        "SELECT author || '/' || ai_generated || '/' || "
	        "(author_ref LIKE 'key:%%') FROM meta_ingest.messages "
	        "WHERE id = '%s'",
	        id),
	    "ai/true/true");
	world_stop(&w);
}

ASH_TEST(human_reply_after_30h_goes_with_human_agent_tag)
{
	world  w;
	cJSON *cs;
	char   id[64];
	int    n;

	messenger_world(&w, "send_human_30h", "30 hours", NULL);
	send_ok(&w, "{\"text\":\"Hi, this is Sam following up.\"}", id);
	wait_state(&w, id, "sent", 15000);
	cs = calls(&w, "/messages", &n);
	ASH_T_EQ_INT(n, 1);
	check_send(cs, 0, id, "MESSAGE_TAG", "HUMAN_AGENT",
	    "Hi, this is Sam following up.");
	cJSON_Delete(cs);
	ASH_T_EQ_STR(q(&w,
	                 "SELECT author || '/' || ai_generated || '/' || tag "
	                 "FROM meta_ingest.messages WHERE id = '%s'",
	                 id),
	    "agent/false/HUMAN_AGENT");
	world_stop(&w);
}

/* A refused send: 409 naming the stored row, the row says why, and
 * nothing reaches Meta (the sender polls every 100 ms: a second is ten
 * chances to get it wrong). */
static void
check_refused(world *w, const char *body, const char *why)
{
	it_resp r;
	char    id[64];
	int     n;

	ASH_T_EQ_INT(send_msg(w, w->key, body, &r), 409);
	ASH_T_EQ_STR(it_resp_code(&r), "conflict");
	snprintf(id, sizeof(id), "%s",
	    q(w,
	        "SELECT id FROM meta_ingest.messages WHERE "
	        "conversation_id = '%s'",
	        w->conv));
	ASH_T_CONTAINS(r.body, "messaging window closed");
	ASH_T_CONTAINS(r.body, id);
	it_resp_fini(&r);
	ASH_T_EQ_STR(q(w,
	                 "SELECT state FROM meta_ingest.messages WHERE id = "
	                 "'%s'",
	                 id),
	    "refused");
	ASH_T_CONTAINS(q(w,
	                   "SELECT failure_reason FROM meta_ingest.messages "
	                   "WHERE id = '%s'",
	                   id),
	    why);
	usleep(1000 * 1000);
	cJSON_Delete(calls(w, "/messages", &n));
	ASH_T_EQ_INT(n, 0);
	ASH_T_EQ_STR(q(w,
	                 "SELECT state FROM meta_ingest.messages WHERE id = "
	                 "'%s'",
	                 id),
	    "refused");
}

ASH_TEST(ai_reply_after_30h_is_refused_and_stored)
{
	world  w;
	char   req[256];
	cJSON *rep;

	messenger_world(&w, "send_ai_30h", "30 hours", NULL);
	check_refused(&w,
	    "{\"text\":\"Automated follow-up\",\"author\":\"ai\"}",
	    "HUMAN_AGENT");
	check_metric(&w, "ashoon_meta_sends_total{result=\"refused\"} 1");
	/* A service (ai-router) that leaves the author out sends as the AI,
	 * not as a person: refused too. */
	snprintf(req, sizeof(req),
	    "{\"conversation_id\":\"%s\",\"text\":\"Automated\"}", w.conv);
	rep = bus_call_as(&w, "service", "conv.send", req);
	ASH_T_EQ_INT(cJSON_GetObjectItem(rep, "status")->valueint, 409);
	cJSON_Delete(rep);
	ASH_T_EQ_STR(q(&w,
	                 "SELECT string_agg(author || ' ' || state, ',') FROM "
	                 "meta_ingest.messages WHERE conversation_id = '%s'",
	                 w.conv),
	    "ai refused,ai refused");
	world_stop(&w);
}

ASH_TEST(human_reply_after_8_days_is_refused_and_stored)
{
	world w;

	messenger_world(&w, "send_human_8d", "8 days", NULL);
	check_refused(&w, "{\"text\":\"Are you still there?\"}", "7 days");
	world_stop(&w);
}

/* --- failures and retries ----------------------------------------------- */

/* Waits up to 10 s for the world's channel to have status want. */
static void
wait_channel_status(world *w, const char *want)
{
	const char *got = "";

	for (int t = 0; t < 100; t++) {
		got = q(w,
		    "SELECT status FROM meta_ingest.channels WHERE id = '%s'",
		    w->channel);
		if (strcmp(got, want) == 0)
			return;
		usleep(100 * 1000);
	}
	ASH_T_FAILF("channel status %s, want %s", got, want);
}

/* Waits up to 10 s for meta-ingest's /metrics to contain line. */
static void
wait_metric(world *w, const char *line)
{
	for (int t = 0; t < 100; t++) {
		it_resp r;
		char    url[96];
		bool    found;

		snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics",
		    w->s.metrics_port[ASH_SVC_META_INGEST]);
		it_http(&r, "GET", url, NULL, NULL, 0);
		found = r.body != NULL && strstr(r.body, line) != NULL;
		it_resp_fini(&r);
		if (found)
			return;
		usleep(100 * 1000);
	}
	check_metric(w, line); /* fails, showing what it is */
}

/* The fake answers the next send 400 with Graph error code/subcode (0:
 * none), after delay_ms. */
static void
fail_next_send(
    world *w, int code, int subcode, const char *message, int delay_ms)
{
	char script[512];

	snprintf(script, sizeof(script),
	    "{\"method\":\"POST\",\"path_suffix\":\"/messages\","
	    "\"status\":400,\"times\":1,\"delay_ms\":%d,\"body\":{"
	    "\"error\":{\"message\":\"%s\",\"type\":\"OAuthException\","
	    "\"code\":%d,\"error_subcode\":%d,\"fbtrace_id\":\"T%dx\"}}}",
	    delay_ms, message, code, subcode, code);
	it_fake_script(&w->f, script);
}

ASH_TEST(throttled_613_is_retried_then_sent)
{
	world  w;
	cJSON *cs;
	char   id[64];
	int    n;

	messenger_world(&w, "send_613", "1 hour", NULL);
	fail_next_send(
	    &w, 613, 0, "Calls to this api have exceeded the rate limit.", 0);
	send_ok(&w, "{\"text\":\"One moment please\"}", id);
	wait_state(&w, id, "sent", 20000);
	ASH_T_EQ_STR(
	    q(&w, "SELECT attempts FROM meta_ingest.messages WHERE id = '%s'",
	        id),
	    "2");
	cs = calls(&w, "/messages", &n);
	ASH_T_EQ_INT(n, 2);
	ASH_T_EQ_INT(
	    cJSON_GetObjectItem(cJSON_GetArrayItem(cs, 0), "status")->valueint,
	    400);
	check_send(cs, 1, id, "RESPONSE", NULL, "One moment please");
	cJSON_Delete(cs);
	/* The failure was logged with its trace id; the channel is usable
	 * again and the row carries no failure. */
	ASH_T_TRUE(it_proc_log_has(w.s.procs[ASH_SVC_META_INGEST], "T613x"));
	check_metric(&w, "ashoon_meta_sends_total{result=\"retry\"} 1");
	check_metric(&w, "ashoon_meta_sends_total{result=\"sent\"} 1");
	ASH_T_EQ_STR(q(&w,
	                 "SELECT coalesce(failure_reason, 'none') FROM "
	                 "meta_ingest.messages WHERE id = '%s'",
	                 id),
	    "none");
	wait_channel_status(&w, "ok");
	world_stop(&w);
}

/* Waits up to ms for at least want recorded calls ending with suffix. */
static void
wait_calls(world *w, const char *suffix, int want, int ms)
{
	int n = 0;

	for (int t = 0; t < ms; t += 50) {
		cJSON_Delete(calls(w, suffix, &n));
		if (n >= want)
			return;
		usleep(50 * 1000);
	}
	ASH_T_FAILF("%d calls to %s, want %d", n, suffix, want);
}

/* Makes the world's queued messages and channel due now (backoffs and
 * rate limits would make a case wait for seconds), until message id is
 * in state want (fails the case after ms). */
static void
hurry_until(world *w, const char *id, const char *want, int ms)
{
	const char *got = "";

	for (int t = 0; t < ms; t += 50) {
		q(w,
		    "UPDATE meta_ingest.messages SET next_attempt_at = now() "
		    "WHERE channel_id = '%s' AND state = 'queued' AND "
		    "next_attempt_at > now()",
		    w->channel);
		q(w,
		    "UPDATE meta_ingest.channels SET rate_limited_until = "
		    "NULL "
		    "WHERE id = '%s'",
		    w->channel);
		got = q(w,
		    "SELECT state FROM meta_ingest.messages WHERE id = '%s'",
		    id);
		if (strcmp(got, want) == 0)
			return;
		usleep(50 * 1000);
	}
	ASH_T_FAILF("message %s: state %s, want %s", id, got, want);
}

/* Throttled answers only ask us to wait: they do not use up the tries a
 * message has for real failures. */
ASH_TEST(throttled_tries_do_not_use_up_the_attempts)
{
	world  w;
	cJSON *cs;
	char   id[64];
	int    n;

	messenger_world(
	    &w, "send_throttles", "1 hour", "ASHOON_META_SEND_MAX_ATTEMPTS=2");
	it_fake_script(&w.f,
	    "{\"method\":\"POST\",\"path_suffix\":\"/messages\","
	    "\"status\":400,\"times\":3,\"body\":{\"error\":{"
	    "\"message\":\"Calls to this api have exceeded the rate limit.\","
	    "\"type\":\"OAuthException\",\"code\":613}}}");
	fail_next_send(&w, 1200, 0, "Temporary send message failure.", 0);
	send_ok(&w, "{\"text\":\"One moment please\"}", id);
	/* 3 throttled tries and 1 failure: 1 of the 2 tries used. */
	hurry_until(&w, id, "sent", 20000);
	ASH_T_EQ_STR(q(&w,
	                 "SELECT attempts || '/' || throttles FROM "
	                 "meta_ingest.messages WHERE id = '%s'",
	                 id),
	    "5/3");
	cs = calls(&w, "/messages", &n);
	ASH_T_EQ_INT(n, 5);
	check_send(cs, 4, id, "RESPONSE", NULL, "One moment please");
	cJSON_Delete(cs);
	world_stop(&w);
}

/* A message waits (here throttled) while the customer's window closes:
 * when it goes, the window is judged again. A person's reply goes with
 * HUMAN_AGENT; the AI's is failed with the reason, and never sent. */
ASH_TEST(a_queued_reply_is_judged_again_when_it_goes)
{
	world       w;
	cJSON      *cs;
	char        agent[64], ai[64];
	const char *got;
	int         n;

	messenger_world(&w, "send_rejudge", "23 hours", NULL);
	fail_next_send(
	    &w, 613, 0, "Calls to this api have exceeded the rate limit.", 0);
	send_ok(&w, "{\"text\":\"Let me check\"}", agent);
	send_ok(&w, "{\"text\":\"Here it is\",\"author\":\"ai\"}", ai);
	wait_calls(&w, "/messages", 1, 10000);
	wait_state(&w, agent, "queued", 5000);
	/* Both were queued inside the window, as RESPONSE. */
	ASH_T_EQ_STR(q(&w,
	                 "SELECT string_agg(messaging_type, ',') FROM "
	                 "meta_ingest.messages WHERE direction = 'out'"),
	    "RESPONSE,RESPONSE");
	q(&w,
	    "UPDATE meta_ingest.conversations SET last_customer_msg_at = "
	    "now() - interval '25 hours' WHERE id = '%s'",
	    w.conv);
	hurry_until(&w, agent, "sent", 20000);
	wait_state(&w, ai, "failed", 10000);
	cs = calls(&w, "/messages", &n);
	ASH_T_EQ_INT(n, 2);
	check_send(cs, 1, agent, "MESSAGE_TAG", "HUMAN_AGENT", "Let me check");
	cJSON_Delete(cs);
	ASH_T_EQ_STR(q(&w,
	                 "SELECT messaging_type || '/' || tag FROM "
	                 "meta_ingest.messages WHERE id = '%s'",
	                 agent),
	    "MESSAGE_TAG/HUMAN_AGENT");
	got = q(&w,
	    "SELECT failure_reason FROM meta_ingest.messages WHERE id = '%s'",
	    ai);
	ASH_T_CONTAINS(got, "closed while the message waited");
	ASH_T_CONTAINS(got, "HUMAN_AGENT");
	world_stop(&w);
}

/* A 500 leaves open whether Meta took the message. The retry waits long
 * enough for the echo of a message Meta did take to arrive first: the
 * echo marks it sent, and it is not sent twice. */
ASH_TEST(a_send_meta_may_have_taken_waits_for_its_echo)
{
	world   w;
	it_resp r;
	char    id[64], body[640];
	int     n;

	messenger_world(&w, "send_echo_wait", "1 hour", NULL);
	it_fake_script(&w.f,
	    "{\"method\":\"POST\",\"path_suffix\":\"/messages\","
	    "\"status\":500,\"times\":1,\"body\":{\"error\":{"
	    "\"message\":\"An unexpected error has occurred.\","
	    "\"type\":\"OAuthException\",\"code\":2,"
	    "\"fbtrace_id\":\"T2x\"}}}");
	send_ok(&w, "{\"text\":\"Your parcel is on its way\"}", id);
	wait_calls(&w, "/messages", 1, 10000);
	wait_state(&w, id, "queued", 5000);
	ASH_T_EQ_STR(q(&w,
	                 "SELECT next_attempt_at > now() + interval '10 "
	                 "seconds' FROM meta_ingest.messages WHERE id = '%s'",
	                 id),
	    "t");
	/* Meta had taken it: its echo comes. */
	snprintf(body, sizeof(body),
	    "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE
	    "\",\"time\":1,\"messaging\":[{\"sender\":{\"id\":\"" PAGE
	    "\"},\"recipient\":{\"id\":\"" PSID "\"},\"timestamp\":%lld,"
	    "\"message\":{\"mid\":\"m_taken\",\"is_echo\":true,"
	    "\"app_id\":" APP ",\"metadata\":\"ashoon:%s\","
	    "\"text\":\"Your parcel is on its way\"}}]}]}",
	    (long long) ash_wall_ms(), id);
	ASH_T_EQ_INT(
	    it_post_webhook(&w.s, body, strlen(body), APPSECRET, &r), 200);
	it_resp_fini(&r);
	ASH_T_EQ_STR(
	    q(&w,
	        "SELECT state || ' ' || mid FROM meta_ingest.messages "
	        "WHERE id = '%s'",
	        id),
	    "sent m_taken");
	/* Due or not, a sent message is not tried again. */
	q(&w,
	    "UPDATE meta_ingest.messages SET next_attempt_at = now() WHERE "
	    "id = '%s'",
	    id);
	usleep(600 * 1000);
	cJSON_Delete(calls(&w, "/messages", &n));
	ASH_T_EQ_INT(n, 1);
	world_stop(&w);
}

/* --- attachments' sizes -------------------------------------------------- */

/* The fake Graph server is the CDN of these tests, on 127.0.0.1. */
#define MEDIA_ENV \
	"ASHOON_META_MEDIA_ALLOW_PRIVATE=1 ASHOON_META_MEDIA_HOSTS=127.0.0.1"

/* The start of a messaging event from customer PSID to the Page, now:
 * its "message" object follows. */
#define FROM_PSID_NOW                                                     \
	"{\"sender\":{\"id\":\"" PSID "\"},\"recipient\":{\"id\":\"" PAGE \
	"\"},\"timestamp\":%lld,\"message\":"

/* Posts a signed Page webhook whose messaging events are `events` (a
 * comma-separated list); it must be stored (200). */
static void
post_page_events(world *w, const char *events)
{
	it_resp r;
	size_t  cap  = strlen(events) + 128;
	char   *body = ash_xmalloc(cap);

	snprintf(body, cap,
	    "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE
	    "\",\"time\":1,\"messaging\":[%s]}]}",
	    events);
	ASH_T_EQ_INT(
	    it_post_webhook(&w->s, body, strlen(body), APPSECRET, &r), 200);
	it_resp_fini(&r);
	free(body);
}

/* Posts customer PSID's message m_media with attachments at the fake's
 * /media/NAME for each of the names. */
static void
post_media_message(world *w, const char *const *names, int n)
{
	char ev[2048], *p = ev;

	p += snprintf(p, 256,
	    FROM_PSID_NOW "{\"mid\":\"m_media\",\"attachments\":[",
	    (long long) ash_wall_ms());
	for (int i = 0; i < n; i++)
		p += snprintf(p, 256,
		    "%s{\"type\":\"image\",\"payload\":{\"url\":\"%s/media/"
		    "%s\"}}",
		    i ? "," : "", w->f.base, names[i]);
	snprintf(p, 8, "]}}");
	post_page_events(w, ev);
}

/* Waits (making retries due at once) until m_media's sizes are all
 * read, then returns its attachments' sizes ("null": unknown for good,
 * "absent": never asked) and types, comma-separated. */
/* Whether message MID (a literal) is no longer due. */
#define NOT_DUE(mid)                                                        \
	"NOT EXISTS (SELECT 1 FROM meta_ingest.media_due d JOIN "           \
	"meta_ingest.messages m ON m.id = d.message_id WHERE m.mid = '" mid \
	"')"

static const char *
media_done(world *w)
{
	for (int t = 0; t < 300; t++) {
		q(w,
		    "UPDATE meta_ingest.media_due d SET next_at = now() "
		    "FROM meta_ingest.messages m WHERE m.id = d.message_id "
		    "AND m.mid = 'm_media' AND d.next_at > now() + "
		    "interval '2 seconds' AND d.tries > 0 AND "
		    "d.next_at < now() + interval '5 minutes'");
		if (strcmp(q(w, "SELECT " NOT_DUE("m_media")), "t") == 0)
			return q(w,
			    "SELECT string_agg(CASE WHEN a ? 'size' THEN "
			    "coalesce(a ->> 'size', 'null') ELSE 'absent' END "
			    "|| ' ' || coalesce(a ->> 'mime_type', '-'), ',' "
			    "ORDER BY n) FROM meta_ingest.messages, "
			    "jsonb_array_elements(attachments) WITH "
			    "ORDINALITY "
			    "AS x(a, n) WHERE mid = 'm_media'");
		usleep(50 * 1000);
	}
	ASH_T_FAILF("the sizes of m_media were never all read");
	return NULL;
}

/* Webhooks give an attachment's URL, not its size: meta-ingest asks each
 * URL with a HEAD and stores the size and type. An expired URL (404) is
 * unknown for good; a 503 is asked again; a redirect is followed. */
ASH_TEST(f6_attachment_sizes_are_read_with_a_head_of_their_urls)
{
	static const char *const names[] = {
	    "a.jpg", "gone.pdf", "slow.mp4", "lookaside", "odd.bin"};
	world  w;
	char   script[1800], big[1235];
	cJSON *cs;
	int    n;

	messenger_world(&w, "media_sizes", "1 hour", MEDIA_ENV);
	memset(big, 'x', 1234);
	big[1234] = '\0';
	snprintf(script, sizeof(script),
	    "{\"method\":\"HEAD\",\"path_suffix\":\"/media/a.jpg\","
	    "\"status\":200,\"headers\":{\"Content-Type\":\"image/jpeg\"},"
	    "\"body\":\"%s\"}",
	    big);
	it_fake_script(&w.f, script);
	it_fake_script(&w.f,
	    "{\"method\":\"HEAD\",\"path_suffix\":\"/media/gone.pdf\","
	    "\"status\":404,\"body\":\"URL signature expired\"}");
	it_fake_script(&w.f,
	    "{\"method\":\"HEAD\",\"path_suffix\":\"/media/slow.mp4\","
	    "\"status\":503,\"body\":\"busy\"}");
	it_fake_script(&w.f,
	    "{\"method\":\"HEAD\",\"path_suffix\":\"/media/slow.mp4\","
	    "\"status\":200,\"headers\":{\"Content-Type\":\"video/mp4\"},"
	    "\"body\":\"0123456789\"}");
	/* Instagram's lookaside URLs answer with a redirect to the CDN. */
	snprintf(script, sizeof(script),
	    "{\"method\":\"HEAD\",\"path_suffix\":\"/media/lookaside\","
	    "\"status\":302,\"headers\":{\"Location\":\"%s/media/cdn.png\"},"
	    "\"body\":\"moved\"}",
	    w.f.base);
	it_fake_script(&w.f, script);
	it_fake_script(&w.f,
	    "{\"method\":\"HEAD\",\"path_suffix\":\"/media/cdn.png\","
	    "\"status\":200,\"headers\":{\"Content-Type\":\"image/png\"},"
	    "\"body\":\"1234567\"}");
	/* A Content-Type that is no media type is left out, not the size. */
	it_fake_script(&w.f,
	    "{\"method\":\"HEAD\",\"path_suffix\":\"/media/odd.bin\","
	    "\"status\":200,\"headers\":{\"Content-Type\":\"image/"
	    "caf\u00e9\"},"
	    "\"body\":\"12\"}");
	post_media_message(&w, names, 5);
	ASH_T_EQ_STR(media_done(&w),
	    "1234 image/jpeg,null -,10 video/mp4,7 image/png,2 -");
	check_metric(&w, "ashoon_meta_media_total{result=\"read\"} 4");
	check_metric(&w, "ashoon_meta_media_total{result=\"unknown\"} 1");
	check_metric(&w, "ashoon_meta_media_total{result=\"retry\"} 1");
	cs = calls(&w, "/media/slow.mp4", &n);
	ASH_T_EQ_INT(n, 2);
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetArrayItem(cs, 1), "method"), "HEAD");
	cJSON_Delete(cs);
	cJSON_Delete(calls(&w, "/media/a.jpg", &n));
	ASH_T_EQ_INT(n, 1);
	cJSON_Delete(calls(&w, "/media/gone.pdf", &n));
	ASH_T_EQ_INT(n, 1);
	world_stop(&w);
}

/* A customer who unsends a message while its sizes are being read wins:
 * the answer that comes after does not bring the attachment back. */
ASH_TEST(f6_an_unsend_during_the_head_keeps_the_attachment_gone)
{
	static const char *const names[] = {"slowhead.jpg"};
	world                    w;
	char                     body[512];

	messenger_world(&w, "media_unsend", "1 hour", MEDIA_ENV);
	it_fake_script(&w.f,
	    "{\"method\":\"HEAD\",\"path_suffix\":\"/media/slowhead.jpg\","
	    "\"status\":200,\"delay_ms\":1500,\"body\":\"123\"}");
	post_media_message(&w, names, 1);
	for (int t = 0;
	     strcmp(q(&w,
	                "SELECT d.tries FROM meta_ingest.media_due d JOIN "
	                "meta_ingest.messages m ON m.id = d.message_id "
	                "WHERE m.mid = 'm_media'"),
	         "1") != 0;
	     t++) {
		if (t == 200)
			ASH_T_FAILF("m_media was never claimed");
		usleep(20 * 1000);
	}
	snprintf(body, sizeof(body),
	    FROM_PSID_NOW "{\"mid\":\"m_media\",\"is_deleted\":true}}",
	    (long long) ash_wall_ms());
	post_page_events(&w, body);
	for (int t = 0; strcmp(q(&w, "SELECT " NOT_DUE("m_media")), "t") != 0;
	     t++) {
		if (t == 500)
			ASH_T_FAILF("the HEAD of m_media never ended");
		usleep(20 * 1000);
	}
	ASH_T_EQ_STR(
	    q(&w,
	        "SELECT attachments::text || ' ' || (unsent_at IS NOT "
	        "NULL) FROM meta_ingest.messages WHERE mid = 'm_media'"),
	    "[] true");
	world_stop(&w);
}

/* A message claimed over and over (its answers could not be written:
 * here, claimed seven times already) is given up, not asked again at
 * every lease: its sizes stay unknown. A due row whose message is gone is
 * dropped. */
ASH_TEST(f6_attachment_sizes_are_given_up_after_seven_claims)
{
	world w;
	int   n;

	messenger_world(&w, "media_give_up", "1 hour", MEDIA_ENV);
	q(&w,
	    "INSERT INTO meta_ingest.messages (tenant_id, channel_id, "
	    "conversation_id, direction, kind, mid, author, sent_at, state, "
	    "attachments) SELECT tenant_id, channel_id, id, "
	    "'in', 'attachment', 'm_stuck', 'customer', now(), 'received', "
	    "'[{\"type\": \"image\", \"url\": \"%s/media/never.jpg\"}]' "
	    "FROM meta_ingest.conversations",
	    w.f.base);
	q(&w,
	    "INSERT INTO meta_ingest.media_due (message_id, tries) SELECT id, "
	    "7 FROM meta_ingest.messages WHERE mid = 'm_stuck'");
	/* and one whose message is gone (deleted since) */
	q(&w,
	    "INSERT INTO meta_ingest.media_due (message_id) VALUES "
	    "(gen_random_uuid())");
	for (int t = 0;
	     strcmp(q(&w, "SELECT count(*) FROM meta_ingest.media_due"),
	         "0") != 0;
	     t++) {
		if (t == 300)
			ASH_T_FAILF("the due rows were never dropped");
		usleep(20 * 1000);
	}
	ASH_T_EQ_STR(q(&w,
	                 "SELECT attachments -> 0 ? 'size' FROM "
	                 "meta_ingest.messages WHERE mid = 'm_stuck'"),
	    "f");
	cJSON_Delete(calls(&w, "/media/never.jpg", &n));
	ASH_T_EQ_INT(n, 0);
	world_stop(&w);
}

/* A busy Page's attachments are not held to one claim a second: when a
 * claim comes back full, the next is made as soon as it is done. 64
 * messages are four full claims, which one a tick would spread over three
 * seconds at least. */
ASH_TEST(f6_attachment_sizes_keep_up_with_a_busy_page)
{
	world   w;
	char   *body = ash_xmalloc(32768), *p = body;
	int64_t t0, first;
	int     done;

	messenger_world(&w, "media_busy", "1 hour", MEDIA_ENV);
	it_fake_script(&w.f,
	    "{\"method\":\"HEAD\",\"path_suffix\":\"/media/many.jpg\","
	    "\"status\":200,\"times\":64,\"body\":\"12345\"}");
	for (int i = 0; i < 64; i++)
		p += sprintf(p,
		    "%s" FROM_PSID_NOW
		    "{\"mid\":\"m_many_%d\",\"attachments\":["
		    "{\"type\":\"image\",\"payload\":{\"url\":\"%s/media/"
		    "many.jpg\"}}]}}",
		    i ? "," : "", (long long) ash_wall_ms(), i, w.f.base);
	post_page_events(&w, body);
	free(body);
	/* From the first claim's end (a tick), the other three claims go in
	 * a chain; a claim a tick would take three seconds more. */
	for (t0 = ash_now_ms(), first = 0;; usleep(20 * 1000)) {
		done = atoi(q(&w,
		    "SELECT count(*) FROM meta_ingest.messages m WHERE mid "
		    "LIKE "
		    "'m_many_%%' AND attachments -> 0 ->> 'size' = '5' AND "
		    "NOT EXISTS (SELECT 1 FROM meta_ingest.media_due d WHERE "
		    "d.message_id = m.id)"));
		if (done > 0 && first == 0)
			first = ash_now_ms();
		if (done == 64)
			break;
		if (ash_now_ms() - t0 > 15000)
			ASH_T_FAILF("only %d of the 64 sizes were read", done);
	}
	if (ash_now_ms() - first >= 2000)
		ASH_T_FAILF(
		    "the last 48 sizes took %lld ms after the first 16",
		    (long long) (ash_now_ms() - first));
	world_stop(&w);
}

/* In a world with env, an attachment at the fake's /media/name, which
 * would answer its HEAD, is never asked: its size is unknown. */
static void
media_never_asked(const char *tag, const char *env, const char *name)
{
	const char *const names[] = {name};
	world             w;
	char              script[256];
	int               n;

	messenger_world(&w, tag, "1 hour", env);
	snprintf(script, sizeof(script),
	    "{\"method\":\"HEAD\",\"path_suffix\":\"/media/%s\","
	    "\"status\":200,\"body\":\"secret\"}",
	    name);
	it_fake_script(&w.f, script);
	post_media_message(&w, names, 1);
	ASH_T_EQ_STR(media_done(&w), "null -");
	cJSON_Delete(calls(&w, "/media/", &n));
	ASH_T_EQ_INT(n, 0);
	check_metric(&w, "ashoon_meta_media_total{result=\"unknown\"} 1");
	world_stop(&w);
}

/* The URLs come from webhook bodies, which a tenant's own Instagram-login
 * app secret may sign: by default none may reach a private or loopback
 * address (the fake is on 127.0.0.1, here on the list of CDN domains). */
ASH_TEST(f6_attachment_urls_may_not_reach_private_addresses)
{
	media_never_asked("media_private", "ASHOON_META_MEDIA_HOSTS=127.0.0.1",
	    "internal.jpg");
}

/* Only Meta's CDNs are asked: a customer's link to another site (a shared
 * link is an attachment too) is never fetched, so no site learns our
 * address or gets requests from us on a customer's word. */
ASH_TEST(f6_attachment_urls_off_the_cdn_domains_are_never_fetched)
{
	media_never_asked("media_hosts",
	    "ASHOON_META_MEDIA_ALLOW_PRIVATE=1 "
	    "ASHOON_META_MEDIA_HOSTS=fbcdn.net,localhost",
	    "tracker.gif");
}

/* Throttled by error code with a usage header asking for 30 minutes:
 * the channel shows rate_limited, with its code, in the API and the
 * metric, and the message waits queued (not failed) for that long. */
ASH_TEST(throttled_with_a_long_wait_shows_the_channel_rate_limited)
{
	world        w;
	it_resp      r;
	const cJSON *ch;
	char         id[64];

	messenger_world(&w, "send_throttled", "1 hour", NULL);
	it_fake_script(&w.f,
	    "{\"method\":\"POST\",\"path_suffix\":\"/messages\","
	    "\"status\":400,\"times\":1,\"headers\":{"
	    "\"X-Business-Use-Case-Usage\":{\"" PAGE "\":[{\"type\":"
	    "\"messenger\",\"call_count\":100,\"total_cputime\":30,"
	    "\"total_time\":40,\"estimated_time_to_regain_access\":30}]}},"
	    "\"body\":{\"error\":{\"message\":\"Limit reached\",\"type\":"
	    "\"OAuthException\",\"code\":80006,\"fbtrace_id\":\"T8x\"}}}");
	send_ok(&w, "{\"text\":\"One moment please\"}", id);
	wait_channel_status(&w, "rate_limited");
	it_call(&w.s, &r, "GET", "/api/v1/channels/meta", w.key, NULL);
	ASH_T_EQ_INT(r.status, 200);
	ch = cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "channels"), 0);
	ASH_T_EQ_STR(ash_json_str(ch, "status"), "rate_limited");
	ASH_T_EQ_INT(cJSON_GetObjectItem(ch, "status_code")->valueint, 80006);
	it_resp_fini(&r);
	/* Queued for the 30 minutes Meta asked for, not failed. */
	ASH_T_EQ_STR(q(&w,
	                 "SELECT state || ' ' || (next_attempt_at > now() + "
	                 "interval '25 minutes') FROM meta_ingest.messages "
	                 "WHERE id = '%s'",
	                 id),
	    "queued true");
	/* The gauge is counted every few seconds. */
	wait_metric(&w, "ashoon_meta_channels{status=\"rate_limited\"} 1\n");
	world_stop(&w);
}

ASH_TEST(revoked_token_190_fails_at_once_and_marks_channel)
{
	world        w;
	it_resp      r;
	const cJSON *ch;
	char         id[64];
	int          n;

	messenger_world(&w, "send_190", "1 hour", NULL);
	it_fake_revoke(&w.f, TOKEN);
	send_ok(&w, "{\"text\":\"Hello?\"}", id);
	wait_state(&w, id, "failed", 15000);
	ASH_T_EQ_STR(q(&w,
	                 "SELECT failure_code || '/' || attempts FROM "
	                 "meta_ingest.messages WHERE id = '%s'",
	                 id),
	    "190/1");
	ASH_T_CONTAINS(q(&w,
	                   "SELECT failure_reason FROM meta_ingest.messages "
	                   "WHERE id = '%s'",
	                   id),
	    "Graph error 190");
	ASH_T_EQ_STR(q(&w,
	                 "SELECT status FROM meta_ingest.channels WHERE id = "
	                 "'%s'",
	                 w.channel),
	    "needs_reauth");
	/* The channel list shows it too. */
	it_call(&w.s, &r, "GET", "/api/v1/channels/meta", w.key, NULL);
	ASH_T_EQ_INT(r.status, 200);
	ch = cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "channels"), 0);
	ASH_T_EQ_STR(ash_json_str(ch, "status"), "needs_reauth");
	it_resp_fini(&r);
	/* Never retried. */
	usleep(500 * 1000);
	cJSON_Delete(calls(&w, "/messages", &n));
	ASH_T_EQ_INT(n, 1);
	world_stop(&w);
}

/* A 190 that answers a call made with a token since replaced (the
 * tenant reconnected the channel while the call was out) speaks for the
 * old token only: the reconnected channel stays ok and keeps sending. */
ASH_TEST(a_190_for_a_replaced_token_leaves_the_reconnected_channel_ok)
{
	world   w;
	it_resp r;
	char    id[64];

	messenger_world(&w, "send_190_late", "1 hour", NULL);
	fail_next_send(&w, 190, 0, "Error validating access token", 1500);
	send_ok(&w, "{\"text\":\"Hello?\"}", id);
	wait_state(&w, id, "sending", 5000);
	it_fake_token(&w.f, "EAAGnewtokenFORtests0123456789",
	    "{\"id\":\"" PAGE "\",\"name\":\"Acme\"}");
	it_call(&w.s, &r, "POST", "/api/v1/channels/meta", w.key,
	    "{\"kind\":\"messenger\",\"external_id\":\"" PAGE
	    "\",\"access_token\":\"EAAGnewtokenFORtests0123456789\"}");
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	wait_state(&w, id, "failed", 15000);
	usleep(300 * 1000); /* the status is stored after the message */
	ASH_T_EQ_STR(q(&w,
	                 "SELECT status FROM meta_ingest.channels WHERE id = "
	                 "'%s'",
	                 w.channel),
	    "ok");
	/* And it sends with the new token. */
	send_ok(&w, "{\"text\":\"Hello again\"}", id);
	wait_state(&w, id, "sent", 15000);
	ASH_T_TRUE(!it_proc_log_has(
	    w.s.procs[ASH_SVC_META_INGEST], "EAAGnewtokenFORtests0123456789"));
	world_stop(&w);
}

ASH_TEST(permanent_failure_then_resend_is_sent)
{
	world        w;
	it_resp      r;
	cJSON       *cs;
	const cJSON *m;
	char         id[64], path[128];
	int          n;

	messenger_world(&w, "send_resend", "2 hours", NULL);
	fail_next_send(
	    &w, 551, 1545041, "This person isn't available right now.", 0);
	send_ok(&w, "{\"text\":\"Your refund is done\"}", id);
	wait_state(&w, id, "failed", 15000);
	ASH_T_EQ_STR(q(&w,
	                 "SELECT failure_code || '/' || failure_subcode FROM "
	                 "meta_ingest.messages WHERE id = '%s'",
	                 id),
	    "551/1545041");
	/* Not retried on its own. */
	usleep(500 * 1000);
	cJSON_Delete(calls(&w, "/messages", &n));
	ASH_T_EQ_INT(n, 1);
	/* The fake is fixed (the script is used up): resend. */
	snprintf(path, sizeof(path), "/api/v1/messages/%s/resend", id);
	it_call(&w.s, &r, "POST", path, w.key, "{}");
	ASH_T_EQ_INT(r.status, 200);
	m = cJSON_GetObjectItem(r.json, "message");
	ASH_T_EQ_STR(ash_json_str(m, "id"), id);
	ASH_T_EQ_STR(ash_json_str(m, "state"), "queued");
	ASH_T_TRUE(cJSON_IsNull(cJSON_GetObjectItem(m, "failure_reason")));
	it_resp_fini(&r);
	wait_state(&w, id, "sent", 15000);
	cs = calls(&w, "/messages", &n);
	ASH_T_EQ_INT(n, 2);
	check_send(cs, 1, id, "RESPONSE", NULL, "Your refund is done");
	cJSON_Delete(cs);
	/* A sent message cannot be resent. */
	it_call(&w.s, &r, "POST", path, w.key, "{}");
	ASH_T_EQ_INT(r.status, 409);
	it_resp_fini(&r);
	world_stop(&w);
}

/* Meta refuses a RESPONSE our clock thought inside the window (its answer
 * wins: meta-send-api.md §5): the resend of a person's message goes with
 * HUMAN_AGENT, not as RESPONSE again. */
ASH_TEST(resend_after_meta_closed_the_window_uses_human_agent)
{
	world   w;
	it_resp r;
	cJSON  *cs;
	char    id[64], path[128];
	int     n;

	messenger_world(&w, "send_closed", "2 hours", NULL);
	fail_next_send(&w, 10, 2018278,
	    "This message is sent outside of allowed window.", 0);
	send_ok(&w, "{\"text\":\"About your order\"}", id);
	wait_state(&w, id, "failed", 15000);
	snprintf(path, sizeof(path), "/api/v1/messages/%s/resend", id);
	it_call(&w.s, &r, "POST", path, w.key, "{}");
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	wait_state(&w, id, "sent", 15000);
	cs = calls(&w, "/messages", &n);
	ASH_T_EQ_INT(n, 2);
	check_send(cs, 0, id, "RESPONSE", NULL, "About your order");
	check_send(
	    cs, 1, id, "MESSAGE_TAG", "HUMAN_AGENT", "About your order");
	cJSON_Delete(cs);
	world_stop(&w);
}

/* --- idempotency and tenancy -------------------------------------------- */

ASH_TEST(same_client_id_gives_one_row_and_one_send)
{
	world       w;
	it_resp     r;
	const char *body = "{\"text\":\"Once only\",\"client_id\":\"c-42\"}";
	char        id[64];
	int         n;

	messenger_world(&w, "send_client_id", "1 hour", NULL);
	send_ok(&w, body, id);
	ASH_T_EQ_INT(send_msg(&w, w.key, body, &r), 200);
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetObjectItem(r.json, "message"), "id"), id);
	it_resp_fini(&r);
	wait_state(&w, id, "sent", 15000);
	/* Again after it went: still the same message, now sent. */
	ASH_T_EQ_INT(send_msg(&w, w.key, body, &r), 200);
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetObjectItem(r.json, "message"), "id"), id);
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetObjectItem(r.json, "message"), "state"),
	    "sent");
	it_resp_fini(&r);
	ASH_T_EQ_STR(q(&w,
	                 "SELECT count(*) FROM meta_ingest.messages WHERE "
	                 "conversation_id = '%s'",
	                 w.conv),
	    "1");
	usleep(300 * 1000);
	cJSON_Delete(calls(&w, "/messages", &n));
	ASH_T_EQ_INT(n, 1);
	world_stop(&w);
}

ASH_TEST(another_tenant_cannot_send_resend_or_hand_over)
{
	world   w;
	it_resp r;
	char    t2[64], k2[128], id[64], path[160];
	int     n;

	messenger_world(&w, "send_tenancy", "1 hour", NULL);
	it_tenant_create(&w.s, "Other", t2, k2);
	ASH_T_EQ_INT(send_msg(&w, k2, "{\"text\":\"hi\"}", &r), 404);
	it_resp_fini(&r);
	snprintf(
	    path, sizeof(path), "/api/v1/conversations/%s/handover", w.conv);
	it_call(&w.s, &r, "POST", path, k2, "{\"action\":\"pass\"}");
	ASH_T_EQ_INT(r.status, 404);
	it_resp_fini(&r);
	send_ok(&w, "{\"text\":\"mine\"}", id);
	wait_state(&w, id, "sent", 15000);
	q(&w,
	    "UPDATE meta_ingest.messages SET state = 'failed' WHERE id = '%s'",
	    id);
	snprintf(path, sizeof(path), "/api/v1/messages/%s/resend", id);
	it_call(&w.s, &r, "POST", path, k2, "{}");
	ASH_T_EQ_INT(r.status, 404);
	it_resp_fini(&r);
	cJSON_Delete(calls(&w, "/messages", &n));
	ASH_T_EQ_INT(n, 1);
	ASH_T_EQ_STR(q(&w,
	                 "SELECT count(*) FROM meta_ingest.messages WHERE "
	                 "tenant_id = '%s'",
	                 t2),
	    "0");
	world_stop(&w);
}

/* --- Instagram Login ---------------------------------------------------- */

/* Connects IG as an Instagram-login channel (the fake knows IGTOKEN);
 * more: further members of the connect body, after a comma, or "". */
static void
instagram_login_channel(world *w, const char *more)
{
	char body[512];

	it_fake_token(&w->f, IGTOKEN,
	    "{\"id\":\"9990001\",\"user_id\":\"" IG
	    "\",\"username\":\"acme\"}");
	snprintf(body, sizeof(body),
	    "{\"kind\":\"instagram\",\"login\":\"instagram\",\"external_id\":"
	    "\"" IG "\",\"access_token\":\"" IGTOKEN "\"%s}",
	    more);
	connect_channel(w, body);
}

ASH_TEST(instagram_login_sends_with_bearer_and_byte_limit)
{
	world        w;
	it_resp      r;
	cJSON       *cs;
	const cJSON *c;
	char         body[1200], id[64];
	int          n;

	world_start(&w, "send_ig", NULL);
	instagram_login_channel(&w, "");
	conversation(&w, IGSID, "5 minutes");
	/* 1001 bytes: refused, not split, nothing stored. */
	snprintf(body, sizeof(body), "{\"text\":\"%01001d\"}", 0);
	ASH_T_EQ_INT(send_msg(&w, w.key, body, &r), 400);
	ASH_T_CONTAINS(r.body, "1001 bytes");
	it_resp_fini(&r);
	ASH_T_EQ_STR(q(&w, "SELECT count(*) FROM meta_ingest.messages"), "0");
	snprintf(body, sizeof(body), "{\"text\":\"%01000d\"}", 0);
	send_ok(&w, body, id);
	wait_state(&w, id, "sent", 15000);
	cs = calls(&w, "/messages", &n);
	ASH_T_EQ_INT(n, 1);
	c = cJSON_GetArrayItem(cs, 0);
	ASH_T_EQ_STR(ash_json_str(c, "path"), "/v23.0/me/messages");
	ASH_T_EQ_STR(ash_json_str(c, "auth"), "bearer");
	ASH_T_EQ_STR(ash_json_str(c, "token"), IGTOKEN);
	ASH_T_NULL(cJSON_GetObjectItem(
	    cJSON_GetObjectItem(c, "query"), "access_token"));
	cJSON_Delete(cs);
	world_stop(&w);
}

/* An Instagram webhook body: IGSID wrote "hi" to IG, message mid. */
static void
ig_text_body(char *buf, size_t n, const char *mid)
{
	snprintf(buf, n,
	    "{\"object\":\"instagram\",\"entry\":[{\"id\":\"" IG
	    "\",\"time\":1796000000000,\"messaging\":[{\"sender\":{\"id\":"
	    "\"" IGSID "\"},\"recipient\":{\"id\":\"" IG
	    "\"},\"timestamp\":1796000000000,\"message\":{\"mid\":"
	    "\"%s\",\"text\":\"hi\"}}]}]}",
	    mid);
}

/* An Instagram-login channel may bring its own app's secret, and Meta
 * signs that app's webhooks with it: a POST for the account signed with
 * the channel's secret is stored, one signed with another secret is
 * refused and leaves only its journal line. */
ASH_TEST(f6_instagram_login_webhooks_verify_with_the_channels_own_secret)
{
	world   w;
	it_resp r;
	char    body[512];

	ig_text_body(body, sizeof(body), "m_own_secret");
	world_start(&w, "wh_ig_secret", NULL);
	instagram_login_channel(&w, ",\"app_secret\":\"" IGSECRET "\"");
	ASH_T_EQ_INT(
	    it_post_webhook(&w.s, body, strlen(body), "not_it", &r), 403);
	it_resp_fini(&r);
	ASH_T_EQ_STR(q(&w, "SELECT count(*) FROM meta_ingest.messages"), "0");
	ASH_T_EQ_INT(
	    it_post_webhook(&w.s, body, strlen(body), IGSECRET, &r), 200);
	it_resp_fini(&r);
	ASH_T_EQ_STR(q(&w,
	                 "SELECT text FROM meta_ingest.messages WHERE mid = "
	                 "'m_own_secret'"),
	    "hi");
	ASH_T_EQ_STR(q(&w,
	                 "SELECT string_agg(signature || ' ' || outcome, ',' "
	                 "ORDER BY received_at, id) FROM meta_ingest.journal"),
	    "invalid rejected,valid stored");
	world_stop(&w);
}

#define OTHER_IG   "17841400000000999"
#define OTHER_PAGE "104857600000999"
#define OTHER_TEN  "00000000-0000-4000-8000-0000000000bb"

/* A channel's own app secret vouches for its own account only: whoever
 * connected the channel knows it, and must not get events stored for
 * another account, another tenant's above all. Entries of other accounts
 * are left out (counted, the body kept for the signer's tenant), and a
 * body that is not an Instagram one is refused. */
ASH_TEST(f6_a_channels_own_secret_vouches_for_its_own_account_only)
{
	world             w;
	it_resp           r;
	static const char mixed[] =
	    "{\"object\":\"instagram\",\"entry\":[{\"id\":\"" IG
	    "\",\"time\":1796000000000,\"messaging\":[{\"sender\":{\"id\":"
	    "\"" IGSID "\"},\"recipient\":{\"id\":\"" IG
	    "\"},\"timestamp\":1796000000000,\"message\":{\"mid\":"
	    "\"m_own\",\"text\":\"mine\"}}]},{\"id\":\"" OTHER_IG
	    "\",\"time\":1796000000000,\"messaging\":[{\"sender\":{\"id\":"
	    "\"5523918847209999\"},\"recipient\":{\"id\":\"" OTHER_IG
	    "\"},\"timestamp\":1796000000000,\"message\":{\"mid\":"
	    "\"m_forged\",\"text\":\"forged\"}}]}]}";
	static const char page[] =
	    "{\"object\":\"page\",\"entry\":[{\"id\":\"" IG
	    "\",\"x\":{\"object\":\"instagram\"}},{\"id\":\"" OTHER_PAGE
	    "\",\"time\":1796000000000,\"messaging\":[{\"sender\":{\"id\":"
	    "\"6523918847209999\"},\"recipient\":{\"id\":\"" OTHER_PAGE
	    "\"},\"timestamp\":1796000000000,\"message\":{\"mid\":"
	    "\"m_forged_page\",\"text\":\"forged\"}}]}]}";

	world_start(&w, "wh_ig_own_only", NULL);
	instagram_login_channel(&w, ",\"app_secret\":\"" IGSECRET "\"");
	q(&w,
	    "INSERT INTO meta_ingest.channels (tenant_id, kind, external_id, "
	    "name, token_sealed, key_version) VALUES ('" OTHER_TEN
	    "', 'instagram', '" OTHER_IG "', 'B', 'v1.x', 1), ('" OTHER_TEN
	    "', 'messenger', '" OTHER_PAGE "', 'B page', 'v1.x', 1) "
	    "RETURNING 1");
	ASH_T_EQ_INT(
	    it_post_webhook(&w.s, mixed, sizeof(mixed) - 1, IGSECRET, &r),
	    200);
	it_resp_fini(&r);
	ASH_T_EQ_STR(q(&w,
	                 "SELECT string_agg(mid || ' ' || text, ',') FROM "
	                 "meta_ingest.messages"),
	    "m_own mine");
	ASH_T_EQ_STR(q(&w,
	                 "SELECT entries || ' ' || events || ' ' || "
	                 "(kinds->>'unverified_entry') || ' ' || "
	                 "array_to_string(page_ids, ',') || ' ' || "
	                 "(raw IS NOT NULL) || ' ' || outcome FROM "
	                 "meta_ingest.journal"),
	    "1 1 1 " IG " true stored");
	ASH_T_EQ_STR(
	    q(&w,
	        "SELECT count(*) FROM meta_ingest.journal WHERE '" OTHER_TEN
	        "' = ANY (tenant_ids)"),
	    "0");
	/* A Page body with an Instagram object inside it. */
	ASH_T_EQ_INT(
	    it_post_webhook(&w.s, page, sizeof(page) - 1, IGSECRET, &r), 403);
	it_resp_fini(&r);
	ASH_T_EQ_STR(q(&w, "SELECT count(*) FROM meta_ingest.messages"), "1");
	ASH_T_EQ_STR(
	    q(&w,
	        "SELECT string_agg(signature || ' ' || outcome || ' ' "
	        "|| array_to_string(page_ids, ','), ',' ORDER BY id) "
	        "FROM meta_ingest.journal"),
	    "valid stored " IG ",invalid rejected " IG "," OTHER_PAGE);
	world_stop(&w);
}

/* When the channels' secrets cannot be read, a POST our app's secret did
 * not sign is not known to be forged: 503, so that Meta sends it again,
 * and not a rejection. */
ASH_TEST(f6_a_post_whose_channel_secrets_cannot_be_read_gets_503)
{
	world   w;
	it_resp r;
	char    body[512];

	ig_text_body(body, sizeof(body), "m_later");
	world_start(&w, "wh_ig_unreadable", NULL);
	instagram_login_channel(&w, ",\"app_secret\":\"" IGSECRET "\"");
	q(&w, "REVOKE SELECT ON meta_ingest.channels FROM ashoon_meta_ingest");
	ASH_T_EQ_INT(
	    it_post_webhook(&w.s, body, strlen(body), IGSECRET, &r), 503);
	it_resp_fini(&r);
	q(&w, "GRANT SELECT ON meta_ingest.channels TO ashoon_meta_ingest");
	ASH_T_EQ_STR(q(&w, "SELECT count(*) FROM meta_ingest.journal"), "0");
	ASH_T_EQ_INT(
	    it_post_webhook(&w.s, body, strlen(body), IGSECRET, &r), 200);
	it_resp_fini(&r);
	ASH_T_EQ_STR(q(&w,
	                 "SELECT text FROM meta_ingest.messages WHERE mid = "
	                 "'m_later'"),
	    "hi");
	world_stop(&w);
}

/* A person who opens a conversation marks the customer's messages seen
 * on Meta: mark_seen, sent alone. A service reading it (the AI) does not. */
ASH_TEST(mark_seen_when_an_agent_opens_the_conversation)
{
	world  w;
	cJSON *rep, *cs = NULL, *b;
	char   req[128];
	int    n = 0;

	messenger_world(&w, "send_seen", "1 hour", NULL);
	snprintf(req, sizeof(req), "{\"id\":\"%s\"}", w.conv);
	rep = bus_call(&w, "conv.get", req);
	ASH_T_EQ_INT(cJSON_GetObjectItem(rep, "status")->valueint, 200);
	cJSON_Delete(rep);
	for (int t = 0; t < 100 && n == 0; t++) {
		cJSON_Delete(cs);
		usleep(50 * 1000);
		cs = calls(&w, "/messages", &n);
	}
	ASH_T_EQ_INT(n, 1);
	check_page_auth(cs, 0);
	b = call_body(cs, 0);
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetObjectItem(b, "recipient"), "id"), PSID);
	ASH_T_EQ_STR(ash_json_str(b, "sender_action"), "mark_seen");
	ASH_T_EQ_INT(cJSON_GetArraySize(b), 2);
	cJSON_Delete(b);
	cJSON_Delete(cs);
	/* The same read by a service: no second call. */
	rep = bus_call_as(&w, "service", "conv.get", req);
	ASH_T_EQ_INT(cJSON_GetObjectItem(rep, "status")->valueint, 200);
	cJSON_Delete(rep);
	usleep(500 * 1000);
	cJSON_Delete(calls(&w, "/messages", &n));
	ASH_T_EQ_INT(n, 1);
	world_stop(&w);
}

/* --- typing and handover ------------------------------------------------ */

ASH_TEST(typing_sends_sender_action_alone)
{
	world  w;
	cJSON *rep, *cs, *b;
	char   req[160];
	int    n;

	messenger_world(&w, "send_typing", "1 hour", NULL);
	snprintf(req, sizeof(req), "{\"conversation_id\":\"%s\",\"on\":true}",
	    w.conv);
	rep = bus_call(&w, "conv.typing", req);
	ASH_T_EQ_INT(cJSON_GetObjectItem(rep, "status")->valueint, 200);
	ASH_T_TRUE(cJSON_IsTrue(
	    cJSON_GetObjectItem(cJSON_GetObjectItem(rep, "body"), "sent")));
	cJSON_Delete(rep);
	snprintf(req, sizeof(req), "{\"conversation_id\":\"%s\",\"on\":false}",
	    w.conv);
	cJSON_Delete(bus_call(&w, "conv.typing", req));
	cs = calls(&w, "/messages", &n);
	ASH_T_EQ_INT(n, 2);
	check_page_auth(cs, 0);
	/* Exactly recipient + sender_action, nothing else. */
	b = call_body(cs, 0);
	ASH_T_EQ_INT(cJSON_GetArraySize(b), 2);
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetObjectItem(b, "recipient"), "id"), PSID);
	ASH_T_EQ_STR(ash_json_str(b, "sender_action"), "typing_on");
	cJSON_Delete(b);
	b = call_body(cs, 1);
	ASH_T_EQ_STR(ash_json_str(b, "sender_action"), "typing_off");
	cJSON_Delete(b);
	cJSON_Delete(cs);
	/* Typing is no message. */
	ASH_T_EQ_STR(q(&w, "SELECT count(*) FROM meta_ingest.messages"), "0");
	world_stop(&w);
}

/* A 190 to a typing indicator marks the channel as a send's does: the
 * token it was made with is still the channel's. */
ASH_TEST(typing_with_a_revoked_token_marks_the_channel)
{
	world  w;
	cJSON *rep;
	char   req[160];

	messenger_world(&w, "send_typing_190", "1 hour", NULL);
	it_fake_revoke(&w.f, TOKEN);
	snprintf(req, sizeof(req), "{\"conversation_id\":\"%s\",\"on\":true}",
	    w.conv);
	rep = bus_call(&w, "conv.typing", req);
	ASH_T_TRUE(!cJSON_IsTrue(
	    cJSON_GetObjectItem(cJSON_GetObjectItem(rep, "body"), "sent")));
	cJSON_Delete(rep);
	wait_channel_status(&w, "needs_reauth");
	world_stop(&w);
}

/* POSTs a handover action; returns the thread_owner it answered. */
static void
handover(world *w, const char *body, const char *want_owner)
{
	it_resp r;
	char    path[160];

	snprintf(
	    path, sizeof(path), "/api/v1/conversations/%s/handover", w->conv);
	it_call(&w->s, &r, "POST", path, w->key, body);
	if (r.status != 200)
		ASH_T_FAILF("handover: %ld %s", r.status, r.body);
	ASH_T_EQ_STR(ash_json_str(cJSON_GetObjectItem(r.json, "conversation"),
	                 "thread_owner"),
	    want_owner);
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetObjectItem(r.json, "conversation"), "id"),
	    w->conv);
	it_resp_fini(&r);
	ASH_T_EQ_STR(q(w,
	                 "SELECT thread_owner FROM meta_ingest.conversations "
	                 "WHERE id = '%s'",
	                 w->conv),
	    want_owner);
}

ASH_TEST(handover_passes_thread_to_page_inbox_and_takes_it_back)
{
	world        w;
	cJSON       *cs, *b;
	const cJSON *app;
	int          n;

	messenger_world(&w, "send_handover", "1 hour", NULL);
	handover(
	    &w, "{\"action\":\"pass\",\"metadata\":\"agent asked\"}", "other");
	cs = calls(&w, "/pass_thread_control", &n);
	ASH_T_EQ_INT(n, 1);
	ASH_T_EQ_STR(ash_json_str(cJSON_GetArrayItem(cs, 0), "path"),
	    "/v23.0/me/pass_thread_control");
	check_page_auth(cs, 0);
	b   = call_body(cs, 0);
	app = cJSON_GetObjectItem(b, "target_app_id");
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetObjectItem(b, "recipient"), "id"), PSID);
	ASH_T_TRUE(cJSON_IsNumber(app) && app->valuedouble == INBOX);
	ASH_T_EQ_STR(ash_json_str(b, "metadata"), "agent asked");
	cJSON_Delete(b);
	cJSON_Delete(cs);
	/* And back: take. request only asks, the owner stays. */
	handover(&w, "{\"action\":\"take\"}", "us");
	cJSON_Delete(calls(&w, "/take_thread_control", &n));
	ASH_T_EQ_INT(n, 1);
	handover(&w, "{\"action\":\"request\"}", "us");
	cJSON_Delete(calls(&w, "/request_thread_control", &n));
	ASH_T_EQ_INT(n, 1);
	world_stop(&w);
}

/* --- shutdown and disconnection ----------------------------------------- */

ASH_TEST(sigterm_during_a_send_waits_until_it_is_recorded)
{
	world w;
	char  id[64];
	int   n = 0;

	messenger_world(&w, "send_drain", "1 hour", NULL);
	/* Meta answers after 1.5 s: SIGTERM arrives while it is in flight. */
	it_fake_script(&w.f,
	    "{\"method\":\"POST\",\"path_suffix\":\"/messages\","
	    "\"delay_ms\":1500,\"times\":1}");
	send_ok(&w, "{\"text\":\"Slow one\"}", id);
	for (int t = 0; t < 200 && n == 0; t++) {
		cJSON_Delete(calls(&w, "/messages", &n));
		usleep(25 * 1000);
	}
	ASH_T_EQ_INT(n, 1);
	ASH_T_TRUE(!it_proc_log_has(w.s.procs[ASH_SVC_META_INGEST], TOKEN));
	ASH_T_EQ_INT(it_stack_stop(&w.s, ASH_SVC_META_INGEST), 0);
	ASH_T_EQ_STR(
	    q(&w, "SELECT state FROM meta_ingest.messages WHERE id = '%s'",
	        id),
	    "sent");
	world_stop(&w);
}

/* Reads a whole log file (static buffer; the tail if it is long). */
static const char *
read_log(const char *path)
{
	static char buf[1 << 20];
	FILE       *f = fopen(path, "rb");
	size_t      n = 0;

	if (f != NULL) {
		if (fseek(f, 0, SEEK_END) == 0 &&
		    ftell(f) > (long) sizeof(buf) - 1)
			fseek(f, -(long) sizeof(buf) + 1, SEEK_END);
		else
			fseek(f, 0, SEEK_SET);
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	return buf;
}

ASH_TEST(grace_running_out_mid_send_exits_cleanly_and_keeps_the_row)
{
	world       w;
	const char *log;
	char        id[64];
	int         n = 0;

	messenger_world(
	    &w, "send_grace", "1 hour", "ASHOON_SHUTDOWN_GRACE_MS=300");
	it_fake_script(&w.f,
	    "{\"method\":\"POST\",\"path_suffix\":\"/messages\","
	    "\"delay_ms\":5000,\"times\":1}");
	send_ok(&w, "{\"text\":\"Very slow one\"}", id);
	for (int t = 0; t < 200 && n == 0; t++) {
		cJSON_Delete(calls(&w, "/messages", &n));
		usleep(25 * 1000);
	}
	ASH_T_EQ_INT(n, 1);
	/* Forced exit (1) once the grace is over, with the transfer and its
	 * job freed through their cancelled callbacks: no sanitizer report. */
	ASH_T_EQ_INT(it_stack_stop(&w.s, ASH_SVC_META_INGEST), 1);
	log = read_log(w.s.logs[ASH_SVC_META_INGEST]);
	ASH_T_TRUE(strstr(log, "SHUTDOWN-DEADLINE") != NULL);
	ASH_T_NOT_CONTAINS(log, "Sanitizer");
	ASH_T_NOT_CONTAINS(log, TOKEN);
	/* The row keeps its lease: another replica (or the restart) takes
	 * it when the lease runs out. */
	ASH_T_EQ_STR(q(&w,
	                 "SELECT state || '/' || (lease_until > now()) FROM "
	                 "meta_ingest.messages WHERE id = '%s'",
	                 id),
	    "sending/true");
	world_stop(&w);
}

ASH_TEST(disconnected_channel_refuses_new_and_fails_queued_messages)
{
	world   w;
	it_resp r;
	char    path[128], id[64];
	int     n;

	messenger_world(&w, "send_gone", "1 hour", NULL);
	snprintf(path, sizeof(path), "/api/v1/channels/meta/%s", w.channel);
	it_call(&w.s, &r, "DELETE", path, w.key, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	ASH_T_EQ_INT(
	    send_msg(&w, w.key, "{\"text\":\"still there?\"}", &r), 409);
	ASH_T_CONTAINS(r.body, "disconnected");
	it_resp_fini(&r);
	/* A row queued before the disconnect fails instead of waiting. */
	snprintf(id, sizeof(id), "%s",
	    q(&w,
	        "INSERT INTO meta_ingest.messages (tenant_id, channel_id, "
	        "conversation_id, direction, kind, text, author, sent_at, "
	        "state, messaging_type) VALUES ('%s', '%s', '%s', 'out', "
	        "'text', 'queued before', 'agent', now(), 'queued', "
	        "'RESPONSE') RETURNING id",
	        w.tenant, w.channel, w.conv));
	wait_state(&w, id, "failed", 15000);
	ASH_T_CONTAINS(q(&w,
	                   "SELECT failure_reason FROM meta_ingest.messages "
	                   "WHERE id = '%s'",
	                   id),
	    "disconnected");
	cJSON_Delete(calls(&w, "/messages", &n));
	ASH_T_EQ_INT(n, 0);
	world_stop(&w);
}

typedef struct bg_send {
	world    *w;
	it_resp   r;
	long      status;
	pthread_t t;
} bg_send;

static void *
bg_send_run(void *arg)
{
	bg_send *b = arg;

	b->status =
	    send_msg(b->w, b->w->key, "{\"text\":\"Too late\"}", &b->r);
	return NULL;
}

/* The conversation deleted while an agent's message to it is being
 * written: no foreign key checks a message's conversation since
 * 0011_thread_lock.sql; the insert share-locks the conversation instead,
 * so it waits for the delete and then has nothing to write into. The
 * agent is told there is no such conversation, and nothing is stored or
 * sent. */
ASH_TEST(p16_a_conversation_deleted_under_a_send_gets_no_message)
{
	world   w;
	bg_send b = {0};
	PGconn *del;
	int     n;
	char    sql[160];

	messenger_world(&w, "send_deleted", "1 hour", NULL);
	del = PQconnectdb(w.s.dsn);
	snprintf(sql, sizeof(sql),
	    "BEGIN; DELETE FROM meta_ingest.conversations WHERE id = '%s'",
	    w.conv);
	PQclear(PQexec(del, sql));
	b.w = &w;
	pthread_create(&b.t, NULL, bg_send_run, &b);
	it_pg_wait_lock(w.s.dsn, "ashoon_meta_ingest");
	PQclear(PQexec(del, "COMMIT"));
	PQfinish(del);
	pthread_join(b.t, NULL);
	ASH_T_EQ_INT(b.status, 404);
	ASH_T_TRUE(b.r.body != NULL &&
	    strstr(b.r.body, "no such conversation") != NULL);
	it_resp_fini(&b.r);
	ASH_T_EQ_STR(q(&w, "SELECT count(*) FROM meta_ingest.messages"), "0");
	usleep(300 * 1000);
	cJSON_Delete(calls(&w, "/messages", &n));
	ASH_T_EQ_INT(n, 0);
	world_stop(&w);
}

ASH_TEST_MAIN(
    ASH_TEST_ENTRY(p1_ai_reply_is_marked_and_goes_within_24h_as_response),
    ASH_TEST_ENTRY(human_reply_after_30h_goes_with_human_agent_tag),
    ASH_TEST_ENTRY(ai_reply_after_30h_is_refused_and_stored),
    ASH_TEST_ENTRY(human_reply_after_8_days_is_refused_and_stored),
    ASH_TEST_ENTRY(throttled_613_is_retried_then_sent),
    ASH_TEST_ENTRY(throttled_with_a_long_wait_shows_the_channel_rate_limited),
    ASH_TEST_ENTRY(throttled_tries_do_not_use_up_the_attempts),
    ASH_TEST_ENTRY(a_queued_reply_is_judged_again_when_it_goes),
    ASH_TEST_ENTRY(a_send_meta_may_have_taken_waits_for_its_echo),
    ASH_TEST_ENTRY(f6_attachment_sizes_are_read_with_a_head_of_their_urls),
    ASH_TEST_ENTRY(f6_an_unsend_during_the_head_keeps_the_attachment_gone),
    ASH_TEST_ENTRY(f6_attachment_sizes_are_given_up_after_seven_claims),
    ASH_TEST_ENTRY(f6_attachment_sizes_keep_up_with_a_busy_page),
    ASH_TEST_ENTRY(f6_attachment_urls_may_not_reach_private_addresses),
    ASH_TEST_ENTRY(f6_attachment_urls_off_the_cdn_domains_are_never_fetched),
    ASH_TEST_ENTRY(revoked_token_190_fails_at_once_and_marks_channel),
    ASH_TEST_ENTRY(
        a_190_for_a_replaced_token_leaves_the_reconnected_channel_ok),
    ASH_TEST_ENTRY(permanent_failure_then_resend_is_sent),
    ASH_TEST_ENTRY(resend_after_meta_closed_the_window_uses_human_agent),
    ASH_TEST_ENTRY(same_client_id_gives_one_row_and_one_send),
    ASH_TEST_ENTRY(another_tenant_cannot_send_resend_or_hand_over),
    ASH_TEST_ENTRY(instagram_login_sends_with_bearer_and_byte_limit),
    ASH_TEST_ENTRY(
        f6_instagram_login_webhooks_verify_with_the_channels_own_secret),
    ASH_TEST_ENTRY(f6_a_channels_own_secret_vouches_for_its_own_account_only),
    ASH_TEST_ENTRY(f6_a_post_whose_channel_secrets_cannot_be_read_gets_503),
    ASH_TEST_ENTRY(mark_seen_when_an_agent_opens_the_conversation),
    ASH_TEST_ENTRY(typing_sends_sender_action_alone),
    ASH_TEST_ENTRY(typing_with_a_revoked_token_marks_the_channel),
    ASH_TEST_ENTRY(handover_passes_thread_to_page_inbox_and_takes_it_back),
    ASH_TEST_ENTRY(sigterm_during_a_send_waits_until_it_is_recorded),
    ASH_TEST_ENTRY(grace_running_out_mid_send_exits_cleanly_and_keeps_the_row),
    ASH_TEST_ENTRY(disconnected_channel_refuses_new_and_fails_queued_messages),
    ASH_TEST_ENTRY(p16_a_conversation_deleted_under_a_send_gets_no_message))
