/*
 * Integration: Meta webhooks through the gateway into meta-ingest and its
 * schema - signatures over raw bytes, every event kind, idempotent and
 * durable ingest, receipts in any order, the journal, the inbox ops.
 */
#include "it.h"

#include <ashoon/crypto.h>
#include <ashoon/db.h>
#include <ashoon/json.h>
#include <ashoon/loop.h>

#include <arpa/inet.h>
#include <glob.h>
#include <limits.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SECRET "3f6a1c9e8b7d4f20a5c1e9d7b3f8a6c2"
#define VERIFY "meatyhamhock"
#define PAGE   "104857601234567"
#define PAGE2  "110923847561203"
#define IG     "17841405822304914"
/* Our app id, beyond 2^53: Meta sends app ids as JSON numbers, and ours
 * must keep every digit for our echoes and the threads passed to us to be
 * known as ours (ash_json_parse_ids). */
#define APP "9007199254740993"

/* --- fixtures --- */

/* A file of the source tree, whole and NUL-terminated. */
static char *
source_file(const char *rel, size_t *len)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/%s", getenv("ASH_SOURCE_DIR"), rel);
	return it_read_file(path, len);
}

static char *
vector(const char *name, size_t *len)
{
	char rel[256];

	snprintf(rel, sizeof(rel), "tests/data/meta/%s", name);
	return source_file(rel, len);
}

static long
post_vector(it_stack *s, const char *name)
{
	size_t  len;
	char   *body = vector(name, &len);
	it_resp r;
	long    st = it_post_webhook(s, body, len, SECRET, &r);

	it_resp_fini(&r);
	free(body);
	return st;
}

/* A connected channel row for tenant (the connect API has its own tests;
 * ingest only needs the mapping page -> tenant). */
static void
channel(it_stack *s, const char *tenant, const char *kind, const char *ext)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
	    "INSERT INTO meta_ingest.channels (tenant_id, kind, external_id, "
	    "token_sealed, key_version) VALUES ('%s', '%s', '%s', 'v1.x', 1)",
	    tenant, kind, ext);
	it_pg_exec(s->dsn, sql);
}

static const char *
q(it_stack *s, const char *sql)
{
	return it_pg_exec(s->dsn, sql);
}

/* env: one more NAME=value for every service, or NULL. */
static void
start_env(it_stack *s, const char *tag, char tenant[64], char key[128],
    const char *const *env)
{
	it_stack_init(s, tag);
	for (int i = 0; env != NULL && env[i] != NULL; i++)
		it_stack_env(s, env[i]);
	it_stack_env(s, "META_APP_SECRET=" SECRET);
	it_stack_env(s, "META_VERIFY_TOKEN=" VERIFY);
	it_stack_env(s, "META_APP_ID=" APP);
	it_stack_env(s,
	    "ASHOON_MASTER_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
	it_stack_start_all(s);
	it_tenant_create(s, "Shop", tenant, key);
}

static void
start(it_stack *s, const char *tag, char tenant[64], char key[128])
{
	start_env(s, tag, tenant, key, NULL);
}

/* --- handshake and signatures --- */

ASH_TEST(f6_verification_handshake_echoes_the_challenge)
{
	it_stack s;
	it_resp  r;
	char     t[64], k[128];

	start(&s, "mi_verify", t, k);
	it_call(&s, &r, "GET",
	    "/webhooks/meta?hub.mode=subscribe&hub.challenge=1158201444&"
	    "hub.verify_token=" VERIFY,
	    NULL, NULL);
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_EQ_STR(r.body, "1158201444"); /* byte for byte, no quotes */
	ASH_T_CONTAINS(it_resp_header(&r, "Content-Type"), "text/plain");
	it_resp_fini(&r);
	it_call(&s, &r, "GET",
	    "/webhooks/meta?hub.mode=subscribe&hub.challenge=1&"
	    "hub.verify_token=wrong",
	    NULL, NULL);
	ASH_T_EQ_INT(r.status, 403);
	it_resp_fini(&r);
	it_call(&s, &r, "GET",
	    "/webhooks/meta?hub.mode=unsubscribe&hub.challenge=1&"
	    "hub.verify_token=" VERIFY,
	    NULL, NULL);
	ASH_T_EQ_INT(r.status, 403);
	it_resp_fini(&r);
	/* One route, its codes counted apart (the gateway keeps a route's
	 * metric handles for the last code it answered). */
	it_call(&s, &r, "GET", "/metrics", NULL, NULL);
	ASH_T_CONTAINS(r.body,
	    "ashoon_http_requests_total{route=\"/webhooks/meta\","
	    "code=\"200\"} 1\n");
	ASH_T_CONTAINS(r.body,
	    "ashoon_http_requests_total{route=\"/webhooks/meta\","
	    "code=\"403\"} 2\n");
	it_resp_fini(&r);
	it_stack_fini(&s);
}

/* meta-ingest's metrics, from its private listener (it_resp_fini r). */
static void
mi_metrics_get(it_stack *s, it_resp *r)
{
	char url[64];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics",
	    s->metrics_port[ASH_SVC_META_INGEST]);
	it_http(r, "GET", url, NULL, NULL, 0);
}

/* meta-ingest's metrics have line. */
static void
mi_metrics_have(it_stack *s, const char *line)
{
	it_resp r;

	mi_metrics_get(s, &r);
	ASH_T_CONTAINS(r.body, line);
	it_resp_fini(&r);
}

/* meta-ingest's metrics count n webhook POSTs answered with outcome. */
static void
hits_counted(it_stack *s, const char *outcome, int n)
{
	char line[128];

	snprintf(line, sizeof(line),
	    "ashoon_meta_webhook_hits_total{outcome=\"%s\"} %d\n", outcome, n);
	mi_metrics_have(s, line);
}

ASH_TEST(f6_signature_missing_wrong_or_other_secret_stores_only_a_journal_line)
{
	it_stack s;
	it_resp  r;
	char     t[64], k[128];
	size_t   len;
	char    *body = vector("meta-messenger-text.json", &len);

	start(&s, "mi_sig", t, k);
	channel(&s, t, "messenger", PAGE);
	ASH_T_EQ_INT(it_post_webhook(&s, body, len, NULL, &r), 401);
	ASH_T_EQ_STR(it_resp_code(&r), "unauthenticated");
	it_resp_fini(&r);
	ASH_T_EQ_INT(it_post_webhook(&s, body, len, "wrong_secret", &r), 403);
	it_resp_fini(&r);
	/* Correct signature over different bytes. */
	body[len - 3] = body[len - 3] == '}' ? ']' : '}';
	char        sig[80], hdr[120], url[128];
	const char *h[] = {hdr, NULL};
	it_webhook_signature(body, len, SECRET, sig);
	body[len - 3] = body[len - 3] == ']' ? '}' : ']';
	snprintf(hdr, sizeof(hdr), "X-Hub-Signature-256: %s", sig);
	snprintf(url, sizeof(url), "%s/webhooks/meta", s.base);
	it_http(&r, "POST", url, h, body, len);
	ASH_T_EQ_INT(r.status, 403);
	it_resp_fini(&r);
	/* A header that is not even UTF-8 is refused and journaled too. */
	snprintf(hdr, sizeof(hdr), "X-Hub-Signature-256: sha256=\xff\xfe");
	it_http(&r, "POST", url, h, body, len);
	ASH_T_EQ_INT(r.status, 401);
	it_resp_fini(&r);
	/* Nothing stored... */
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.messages"), "0");
	ASH_T_EQ_STR(
	    q(&s, "SELECT count(*) FROM meta_ingest.participants"), "0");
	/* ...but every hit has its journal line. A rejected POST is answered
	 * at once and its line committed in the background (two commits may
	 * run at once, so the order of their ids is not the arrival order). */
	ASH_T_EQ_INT(post_vector(&s, "meta-messenger-read.json"), 200);
	for (int i = 0; i < 100; i++) {
		if (strcmp(q(&s, "SELECT count(*) FROM meta_ingest.journal"),
		        "5") == 0)
			break;
		usleep(20000);
	}
	ASH_T_EQ_STR(
	    q(&s,
	        "SELECT string_agg(signature || '/' || outcome, ',' "
	        "ORDER BY signature, outcome) FROM meta_ingest.journal"),
	    "invalid/rejected,invalid/rejected,invalid/rejected,"
	    "missing/rejected,valid/stored");
	/* Each POST counted once, by its outcome. */
	hits_counted(&s, "rejected", 4);
	hits_counted(&s, "stored", 1);
	free(body);
	it_stack_fini(&s);
}

/* --- every kind --- */

ASH_TEST(f6_every_vector_is_stored_with_its_kind)
{
	it_stack    s;
	char        t[64], k[128];
	const char *files[] = {"meta-messenger-text.json",
	    "meta-messenger-image.json", "meta-messenger-echo.json",
	    "meta-messenger-read.json", "meta-messenger-batch.json",
	    "meta-messenger-unicode.json", "meta-instagram-text.json",
	    "meta-instagram-story-reply.json", "meta-instagram-reaction.json"};

	start(&s, "mi_kinds", t, k);
	channel(&s, t, "messenger", PAGE);
	channel(&s, t, "messenger", PAGE2);
	channel(&s, t, "instagram", IG);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		ASH_T_EQ_INT(post_vector(&s, files[i]), 200);
	/* text, image, echo (a human in Meta's inbox: no app of ours),
	 * postback, quick reply, unicode, IG text, IG story reply. */
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.messages"), "8");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT attachments->0->>'type' FROM "
	                 "meta_ingest.messages WHERE kind = 'attachment'"),
	    "image");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT author || '/' || direction || '/' || state "
	                 "FROM meta_ingest.messages WHERE is_echo"),
	    "app/out/read"); /* our app id, but not a message we sent */
	ASH_T_EQ_STR(q(&s,
	                 "SELECT payload FROM meta_ingest.messages "
	                 "WHERE kind = 'postback'"),
	    "HANDOFF_HUMAN");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT text FROM meta_ingest.messages WHERE "
	                 "payload = 'CONFIRM_ORDER_4521'"),
	    "Yes please");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT text FROM meta_ingest.messages WHERE text "
	                 "LIKE 'Caf%'"),
	    "Caf\xc3\xa9 \xc3\xa4\xc3\xb6\xc3\xa5 \xe2\x80\x94 merci "
	    "\xf0\x9f\x91\x8b");
	ASH_T_EQ_STR(
	    q(&s,
	        "SELECT reply_to_story->>'id' FROM "
	        "meta_ingest.messages WHERE reply_to_story IS NOT NULL"),
	    "18045512345678901");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT reaction || ' ' || emoji FROM "
	                 "meta_ingest.reactions"),
	    "love \xe2\x9d\xa4\xef\xb8\x8f");
	/* Customer messages each got a reply job; echoes did not. */
	ASH_T_EQ_STR(
	    q(&s, "SELECT count(*) FROM meta_ingest.reply_jobs"), "7");
	/* ...and each was announced once. */
	mi_metrics_have(&s,
	    "ashoon_events_published_total{topic="
	    "\"conv.message.in\",ok=\"true\"} 7\n");
	/* Each POST's time to its commit observed once. */
	mi_metrics_have(&s, "ashoon_meta_webhook_commit_seconds_count 9\n");
	/* Message ids are UUIDv7: version 7, variant 10, and the time of
	 * their insert in the first 48 bits
	 * (migrations/0006_ingest_overlap.sql, routines/uuid_v7.sql); a job
	 * is keyed by its message (0008). */
	ASH_T_EQ_STR(q(&s,
	                 "SELECT bool_and(substr(m.id::text, 15, 1) = '7' AND "
	                 "substr(m.id::text, 20, 1) IN ('8', '9', 'a', 'b') "
	                 "AND "
	                 "abs(('x' || lpad(replace(left(m.id::text, 13), "
	                 "'-', ''), 16, '0'))::bit(64)::bigint - "
	                 "extract(epoch FROM m.created_at) * 1000) < 1000) "
	                 "FROM meta_ingest.messages m JOIN "
	                 "meta_ingest.reply_jobs j ON j.message_id = m.id"),
	    "t");
	it_stack_fini(&s);
}

/* The batch reaches Postgres as arrays of rows (0012, common/src/pgrec.c):
 * text full of both levels' delimiters - quotes, backslashes, commas,
 * parentheses, braces, white space at either end, an empty payload -
 * is stored exactly as Meta sent it, in text, payload and JSON fields. */
ASH_TEST(f6_text_full_of_delimiters_is_stored_exactly)
{
	it_stack          s;
	char              t[64], k[128];
	it_resp           r;
	static const char body[] =
	    "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE "\","
	    "\"time\":1796000000000,\"messaging\":[{\"sender\":{\"id\":"
	    "\"7100\"},\"recipient\":{\"id\":\"" PAGE "\"},\"timestamp\":"
	    "1796000000000,\"message\":{\"mid\":\"m_de\\\\l\\\"im\","
	    "\"text\":\" {\\\"a\\\\\\\\b\\\"}, (c,d)\\t\\nNULL \","
	    "\"quick_reply\":{\"payload\":\"\"}}},{\"sender\":{\"id\":"
	    "\"7100\"},\"recipient\":{\"id\":\"" PAGE "\"},\"timestamp\":"
	    "1796000000001,\"message\":{\"mid\":\"m_att\",\"attachments\":"
	    "[{\"type\":\"file\",\"payload\":{\"url\":"
	    "\"https://x.example/a,b(\\\"c\\\")\\\\d\"}}]}}]}]}";

	start(&s, "mi_delims", t, k);
	channel(&s, t, "messenger", PAGE);
	ASH_T_EQ_INT(
	    it_post_webhook(&s, body, sizeof(body) - 1, SECRET, &r), 200);
	it_resp_fini(&r);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT '[' || text || ']' FROM meta_ingest.messages "
	                 "WHERE mid = 'm_de\\l\"im'"),
	    "[ {\"a\\\\b\"}, (c,d)\t\nNULL ]");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT payload = '' FROM meta_ingest.messages "
	                 "WHERE mid = 'm_de\\l\"im'"),
	    "t");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT attachments->0->>'url' FROM "
	                 "meta_ingest.messages WHERE mid = 'm_att'"),
	    "https://x.example/a,b(\"c\")\\d");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT new_messages || ' ' || outcome FROM "
	                 "meta_ingest.journal"),
	    "2 stored");
	it_stack_fini(&s);
}

/* --- idempotence and order --- */

typedef struct poster {
	it_stack   *s;
	const char *body;
	size_t      len;
	long        status;
	pthread_t   t;
} poster;

static void *
poster_run(void *arg)
{
	poster *p = arg;
	it_resp r;

	p->status = it_post_webhook(p->s, p->body, p->len, SECRET, &r);
	it_resp_fini(&r);
	return NULL;
}

ASH_TEST(f6_redelivered_and_concurrent_duplicates_are_stored_once)
{
	it_stack s;
	char     t[64], k[128];
	size_t   len;
	char    *body = vector("meta-messenger-text.json", &len);
	poster   p[12];

	start(&s, "mi_dupes", t, k);
	channel(&s, t, "messenger", PAGE);
	/* Twelve copies at once: they share commits (group commit) and
	 * still store one message, one participant, one conversation. */
	for (int i = 0; i < 12; i++) {
		p[i] = (poster) {&s, body, len, 0, 0};
		pthread_create(&p[i].t, NULL, poster_run, &p[i]);
	}
	for (int i = 0; i < 12; i++) {
		pthread_join(p[i].t, NULL);
		ASH_T_EQ_INT(p[i].status, 200);
	}
	ASH_T_EQ_INT(post_vector(&s, "meta-messenger-text.json"), 200);
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.messages"), "1");
	ASH_T_EQ_STR(
	    q(&s, "SELECT count(*) FROM meta_ingest.conversations"), "1");
	ASH_T_EQ_STR(
	    q(&s, "SELECT count(*) FROM meta_ingest.reply_jobs"), "1");
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.journal"), "13");
	ASH_T_EQ_STR(
	    q(&s, "SELECT sum(new_messages) FROM meta_ingest.journal"), "1");
	free(body);
	it_stack_fini(&s);
}

#define ENV(items)                                                         \
	"{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE "\",\"time\":1," \
	"\"messaging\":[" items "]}]}"
#define FROM_C "\"sender\":{\"id\":\"42\"},\"recipient\":{\"id\":\"" PAGE "\"}"
#define TO_C   "\"sender\":{\"id\":\"" PAGE "\"},\"recipient\":{\"id\":\"42\"}"

static long
post_json(it_stack *s, const char *json)
{
	it_resp r;
	long    st = it_post_webhook(s, json, strlen(json), SECRET, &r);

	it_resp_fini(&r);
	return st;
}

/* post_json of a body made from fmt (printf). */
static long
post_jsonf(it_stack *s, const char *fmt, ...)
{
	char    body[4096];
	va_list ap;

	va_start(ap, fmt);
	ASH_T_TRUE(
	    vsnprintf(body, sizeof(body), fmt, ap) < (int) sizeof(body));
	va_end(ap);
	return post_json(s, body);
}

/* A Messenger channel and customer 42's thread, opened by "hi" at 1 s. */
static void
thread_of_42(it_stack *s, const char *tag)
{
	char t[64], k[128];

	start(s, tag, t, k);
	channel(s, t, "messenger", PAGE);
	ASH_T_EQ_INT(
	    post_json(s,
	        ENV("{" FROM_C ",\"timestamp\":1000,"
	            "\"message\":{\"mid\":\"in1\",\"text\":\"hi\"}}")),
	    200);
}

ASH_TEST(f6_receipts_in_any_order_only_move_forward)
{
	it_stack s;

	thread_of_42(&s, "mi_order");
	/* The read receipt overtakes the echo of the message it covers. */
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{" FROM_C ",\"timestamp\":5000,"
	                     "\"read\":{\"watermark\":3000}}")),
	    200);
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{" TO_C ",\"timestamp\":2000,"
	                     "\"message\":{\"mid\":\"out1\",\"is_echo\":true,"
	                     "\"text\":\"hello\"}}")),
	    200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT state FROM meta_ingest.messages "
	                 "WHERE mid = 'out1'"),
	    "read");
	/* A late delivery receipt does not take it back to delivered, and
	 * an older read watermark does not lower the stored one. */
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" FROM_C ",\"timestamp\":4000,"
	            "\"delivery\":{\"mids\":[\"out1\"],\"watermark\":2500}}")),
	    200);
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{" FROM_C ",\"timestamp\":4500,"
	                     "\"read\":{\"watermark\":1500}}")),
	    200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT state FROM meta_ingest.messages "
	                 "WHERE mid = 'out1'"),
	    "read");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT (extract(epoch from read_watermark) * 1000)"
	                 "::bigint FROM meta_ingest.conversations"),
	    "3000");
	/* An echo sent after the watermark stays 'sent'. */
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{" TO_C ",\"timestamp\":6000,"
	                     "\"message\":{\"mid\":\"out2\",\"is_echo\":true,"
	                     "\"text\":\"again\"}}")),
	    200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT state FROM meta_ingest.messages "
	                 "WHERE mid = 'out2'"),
	    "sent");
	/* A read that names the message seen (Instagram's form) reads up to
	 * that message's time, not to the receipt's: out3 is read, out4,
	 * sent after it, is not. */
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" TO_C ",\"timestamp\":7000,\"message\":{\"mid\":"
	            "\"out3\",\"is_echo\":true,\"text\":\"three\"}},"
	            "{" TO_C ",\"timestamp\":8000,\"message\":{\"mid\":"
	            "\"out4\",\"is_echo\":true,\"text\":\"four\"}}")),
	    200);
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{" FROM_C ",\"timestamp\":9000,"
	                     "\"read\":{\"mid\":\"out3\"}}")),
	    200);
	ASH_T_EQ_STR(
	    q(&s,
	        "SELECT string_agg(mid || ' ' || state, ', ' ORDER BY "
	        "mid) FROM meta_ingest.messages WHERE mid IN ('out2', "
	        "'out3', 'out4')"),
	    "out2 read, out3 read, out4 sent");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT (extract(epoch from read_watermark) * 1000)"
	                 "::bigint FROM meta_ingest.conversations"),
	    "7000");
	it_stack_fini(&s);
}

/* The echo of our own send, arriving before the sender records the send,
 * dates the message from the send: a read receipt the customer gave while
 * it still waited to go out does not cover it. */
ASH_TEST(f6_our_echo_dates_the_message_from_its_send)
{
	it_stack s;
	char     id[40], item[512];

	thread_of_42(&s, "mi_echo_date");
	/* Queued at 2 s (the sender holds it: leased), read up to 3 s. */
	snprintf(id, sizeof(id), "%s",
	    q(&s,
	        "INSERT INTO meta_ingest.messages (tenant_id, channel_id, "
	        "conversation_id, direction, kind, text, author, sent_at, "
	        "state, lease_until) SELECT tenant_id, channel_id, id, 'out', "
	        "'text', 'late', 'agent', to_timestamp(2), 'sending', now() + "
	        "interval '1 hour' FROM meta_ingest.conversations RETURNING "
	        "id"));
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{" FROM_C ",\"timestamp\":5000,"
	                     "\"read\":{\"watermark\":3000}}")),
	    200);
	/* It went out at 6.5 s. */
	snprintf(item, sizeof(item),
	    "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE
	    "\",\"time\":1,\"messaging\":[{" TO_C ",\"timestamp\":6500,"
	    "\"message\":{\"mid\":\"ours1\",\"is_echo\":true,\"app_id\":" APP
	    ",\"metadata\":\"ashoon:%s\",\"text\":\"late\"}}]}]}",
	    id);
	ASH_T_EQ_INT(post_json(&s, item), 200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT mid || ' ' || state || ' ' || (extract(epoch "
	                 "from sent_at) * 1000)::bigint FROM "
	                 "meta_ingest.messages WHERE direction = 'out'"),
	    "ours1 sent 6500");
	/* Our own reply leaves the customer's reply job alone. */
	ASH_T_EQ_STR(
	    q(&s, "SELECT state FROM meta_ingest.reply_jobs"), "pending");
	it_stack_fini(&s);
}

/* A person replying from Meta's inbox (an echo of no app of ours:
 * meta-webhooks.md §6.3) has answered what the customer wrote before: the
 * reply jobs of those messages are cancelled; a later message gets one. */
ASH_TEST(f6_a_reply_from_metas_inbox_cancels_the_jobs_it_answers)
{
	it_stack s;

	thread_of_42(&s, "mi_inbox_reply");
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" TO_C ",\"timestamp\":2000,"
	            "\"message\":{\"mid\":\"human1\",\"is_echo\":true,"
	            "\"text\":\"I'll check for you\"}}")),
	    200);
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" FROM_C ",\"timestamp\":3000,"
	            "\"message\":{\"mid\":\"in2\",\"text\":\"thanks\"}}")),
	    200);
	ASH_T_EQ_STR(
	    q(&s,
	        "SELECT string_agg(m.mid || ' ' || j.state, ',' ORDER "
	        "BY m.mid) FROM meta_ingest.reply_jobs j JOIN "
	        "meta_ingest.messages m ON m.id = j.message_id"),
	    "in1 cancelled,in2 pending");
	it_stack_fini(&s);
}

/* Handover events decide the thread's owner in the order of their times,
 * not of their arrival: a standby message Meta delivers again after a
 * pass_thread_control gave the thread back to us does not take it away,
 * and the customer's next message still gets a reply job. */
/* A thread passed to us and the customer's next message, in one POST:
 * the message gets its reply job. One of ours followed by the other
 * app taking the thread, in one POST: that message gets one too, a
 * standby one after does not. */
ASH_TEST(f6_a_pass_to_us_and_the_next_message_in_one_post_get_a_reply_job)
{
	it_stack s;
	char     t[64], k[128];

#define JOBS                                                              \
	"SELECT string_agg(m.mid, ',' ORDER BY m.mid) FROM "              \
	"meta_ingest.reply_jobs j JOIN meta_ingest.messages m ON m.id = " \
	"j.message_id"

	start(&s, "mi_pass_msg", t, k);
	channel(&s, t, "messenger", PAGE);
	ASH_T_EQ_INT(
	    post_json(&s,
	        "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE
	        "\",\"time\":1,\"standby\":[{" FROM_C ",\"timestamp\":3000,"
	        "\"message\":{\"mid\":\"sb1\",\"text\":\"to the other "
	        "app\"}}]}]}"),
	    200);
	ASH_T_EQ_STR(q(&s, JOBS), "");
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" FROM_C ",\"timestamp\":4000,"
	            "\"pass_thread_control\":{\"new_owner_app_id\":" APP
	            ",\"metadata\":\"yours\"}},{" FROM_C
	            ",\"timestamp\":4500,\"message\":{\"mid\":\"m45\","
	            "\"text\":\"hello?\"}}")),
	    200);
	ASH_T_EQ_STR(q(&s, JOBS), "m45");
	ASH_T_EQ_INT(
	    post_json(&s,
	        "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE
	        "\",\"time\":1,\"messaging\":[{" FROM_C
	        ",\"timestamp\":5000,\"message\":{\"mid\":\"m50\","
	        "\"text\":\"still there?\"}},{" FROM_C
	        ",\"timestamp\":6000,\"take_thread_control\":{"
	        "\"previous_owner_app_id\":" APP ",\"metadata\":\"mine\"}}],"
	        "\"standby\":[{" FROM_C ",\"timestamp\":6500,\"message\":{"
	        "\"mid\":\"sb65\",\"text\":\"to the other app\"}}]}]}"),
	    200);
	ASH_T_EQ_STR(q(&s, JOBS), "m45,m50");
	ASH_T_EQ_STR(
	    q(&s, "SELECT thread_owner FROM meta_ingest.conversations"),
	    "other");
#undef JOBS
	it_stack_fini(&s);
}

ASH_TEST(f6_thread_owner_follows_the_newest_handover_event)
{
	it_stack s;
	char     t[64], k[128];

#define STANDBY(ts, mid)                                                   \
	"{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE "\",\"time\":1," \
	"\"standby\":[{" FROM_C ",\"timestamp\":" ts ",\"message\":{"      \
	"\"mid\":\"" mid "\",\"text\":\"to the other app\"}}]}]}"
#define OWNER "SELECT thread_owner FROM meta_ingest.conversations"

	start(&s, "mi_owner", t, k);
	channel(&s, t, "messenger", PAGE);
	ASH_T_EQ_INT(post_json(&s, STANDBY("3000", "sb1")), 200);
	ASH_T_EQ_STR(q(&s, OWNER), "other");
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" FROM_C ",\"timestamp\":4000,"
	            "\"pass_thread_control\":{\"new_owner_app_id\":" APP
	            ",\"metadata\":\"back to you\"}}")),
	    200);
	ASH_T_EQ_STR(q(&s, OWNER), "us");
	/* An older standby event, delivered again late. */
	ASH_T_EQ_INT(post_json(&s, STANDBY("3500", "sb0")), 200);
	ASH_T_EQ_STR(q(&s, OWNER), "us");
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" FROM_C ",\"timestamp\":5000,"
	            "\"message\":{\"mid\":\"m5\",\"text\":\"anyone?\"}}")),
	    200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT count(*) FROM meta_ingest.reply_jobs j JOIN "
	                 "meta_ingest.messages m ON m.id = j.message_id "
	                 "WHERE m.mid = 'm5'"),
	    "1");
	/* A newer one does. */
	ASH_T_EQ_INT(post_json(&s, STANDBY("6000", "sb2")), 200);
	ASH_T_EQ_STR(q(&s, OWNER), "other");
#undef STANDBY
#undef OWNER
	it_stack_fini(&s);
}

ASH_TEST(f6_edit_unsend_reaction_and_unreact_in_any_order)
{
	it_stack s;
	char     t[64], k[128], want[64];
	int64_t  at;

	start(&s, "mi_edits", t, k);
	channel(&s, t, "messenger", PAGE);
	/* The unsend arrives before the message it removes. */
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" FROM_C ",\"timestamp\":2000,"
	            "\"message\":{\"mid\":\"gone\",\"is_deleted\":true}}")),
	    200);
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" FROM_C ",\"timestamp\":1000,"
	            "\"message\":{\"mid\":\"gone\",\"text\":\"secret\"}}")),
	    200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT coalesce(text, '(erased)') || ' ' || "
	                 "(unsent_at IS NOT NULL) FROM meta_ingest.messages "
	                 "WHERE mid = 'gone'"),
	    "(erased) true");
	/* Unsent after it was stored: its reply job is cancelled too. */
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" FROM_C ",\"timestamp\":2100,"
	            "\"message\":{\"mid\":\"oops\",\"text\":\"typo\"}}")),
	    200);
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" FROM_C ",\"timestamp\":2200,"
	            "\"message\":{\"mid\":\"oops\",\"is_deleted\":true}}")),
	    200);
	ASH_T_EQ_STR(
	    q(&s,
	        "SELECT coalesce(m.text, '(erased)') || ' ' || j.state "
	        "FROM meta_ingest.messages m JOIN "
	        "meta_ingest.reply_jobs j ON j.message_id = m.id "
	        "WHERE m.mid = 'oops'"),
	    "(erased) cancelled");
	/* Edits: the highest edit count wins. */
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{" FROM_C ",\"timestamp\":3000,"
	                     "\"message\":{\"mid\":\"e\",\"text\":\"v0\"}}")),
	    200);
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{" FROM_C ",\"timestamp\":3200,"
	                     "\"message_edit\":{\"mid\":\"e\",\"text\":\"v2\","
	                     "\"num_edit\":2}}")),
	    200);
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{" FROM_C ",\"timestamp\":3100,"
	                     "\"message_edit\":{\"mid\":\"e\",\"text\":\"v1\","
	                     "\"num_edit\":1}}")),
	    200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT text || ' ' || edit_count FROM "
	                 "meta_ingest.messages WHERE mid = 'e'"),
	    "v2 2");
	/* Edits before their message (its POST sent again later): the
	 * highest waits for it and is applied when it is stored. They are
	 * recent: the purge (2 s after start, then hourly) drops waiting
	 * edits older than two days, and under load it can run between
	 * these POSTs. */
	at = ash_wall_ms() - 60000;
	ASH_T_EQ_INT(post_jsonf(&s,
	                 ENV("{" FROM_C ",\"timestamp\":%lld,"
	                     "\"message_edit\":{\"mid\":\"late\",\"text\":"
	                     "\"w2\",\"num_edit\":2}},"
	                     "{" FROM_C ",\"timestamp\":%lld,"
	                     "\"message_edit\":{\"mid\":\"late\",\"text\":"
	                     "\"w1\",\"num_edit\":1}}"),
	                 (long long) at + 3300, (long long) at + 3250),
	    200);
	ASH_T_EQ_INT(post_jsonf(&s,
	                 ENV("{" FROM_C ",\"timestamp\":%lld,"
	                     "\"message_edit\":{\"mid\":\"late\",\"text\":"
	                     "\"w1\",\"num_edit\":1}}"),
	                 (long long) at + 3240),
	    200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT count(*) FROM meta_ingest.messages WHERE "
	                 "mid = 'late'"),
	    "0");
	ASH_T_EQ_INT(post_jsonf(&s,
	                 ENV("{" FROM_C ",\"timestamp\":%lld,"
	                     "\"message\":{\"mid\":\"late\",\"text\":"
	                     "\"w0\"}}"),
	                 (long long) at + 3230),
	    200);
	snprintf(want, sizeof(want), "w2 2 %lld", (long long) at + 3300);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT text || ' ' || edit_count || ' ' || "
	                 "(extract(epoch from edited_at) * 1000)::bigint FROM "
	                 "meta_ingest.messages WHERE mid = 'late'"),
	    want);
	ASH_T_EQ_STR(
	    q(&s, "SELECT count(*) FROM meta_ingest.early_edits"), "0");
	/* React, then a late older unreact: the reaction stays. */
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" FROM_C ",\"timestamp\":4000,"
	            "\"reaction\":{\"mid\":\"e\",\"action\":\"react\","
	            "\"reaction\":\"like\",\"emoji\":\"x\"}}")),
	    200);
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" FROM_C ",\"timestamp\":3500,"
	            "\"reaction\":{\"mid\":\"e\",\"action\":\"unreact\"}}")),
	    200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT coalesce(reaction, '-') FROM "
	                 "meta_ingest.reactions"),
	    "like");
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" FROM_C ",\"timestamp\":4100,"
	            "\"reaction\":{\"mid\":\"e\",\"action\":\"unreact\"}}")),
	    200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT coalesce(reaction, '-') FROM "
	                 "meta_ingest.reactions"),
	    "-");
	it_stack_fini(&s);
}

/* --- bodies we cannot fully use --- */

ASH_TEST(f6_signed_unparseable_body_is_kept_raw_and_acknowledged)
{
	it_stack    s;
	char        t[64], k[128];
	const char *junk = "{\"object\":\"page\",\"entry\":[{\"id\":";

	start(&s, "mi_junk", t, k);
	channel(&s, t, "messenger", PAGE);
	/* 200: a 5xx would only bring 36 hours of the same bytes. */
	ASH_T_EQ_INT(post_json(&s, junk), 200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT outcome || ' ' || convert_from(raw, 'UTF8') "
	                 "FROM meta_ingest.journal"),
	    "unparseable {\"object\":\"page\",\"entry\":[{\"id\":");
	/* JSON must be UTF-8 (RFC 8259 §8.1), and Postgres refuses anything
	 * else: bytes that are not, or an escaped NUL, make a body that does
	 * not parse, kept raw, not a failure Meta would retry for 36 hours. */
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{" FROM_C ",\"timestamp\":1,\"message\":{"
	                     "\"mid\":\"u8\",\"text\":\"\xc3\x28\"}}")),
	    200);
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{" FROM_C ",\"timestamp\":1,\"message\":{"
	                     "\"mid\":\"nul\",\"text\":\"a\\u0000b\"}}")),
	    200);
	ASH_T_EQ_STR(
	    q(&s,
	        "SELECT string_agg(outcome || ' ' || "
	        "(position('\\xc328'::bytea in raw) > 0)::text || ' ' "
	        "|| (position('u0000' in encode(raw, 'escape')) > 0)"
	        "::text, ',' ORDER BY id) FROM meta_ingest.journal"),
	    "unparseable false false,unparseable true false,"
	    "unparseable false true");
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.messages"), "0");
	/* An event kind we do not know: acknowledged, counted, kept raw. */
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{" FROM_C ",\"timestamp\":1,"
	                     "\"optin\":{\"ref\":\"x\"}}")),
	    200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT outcome || ' ' || (kinds->>'unknown') || ' ' "
	                 "|| (raw IS NOT NULL) FROM meta_ingest.journal "
	                 "ORDER BY id DESC LIMIT 1"),
	    "stored 1 true");
	/* A page nobody connected: acknowledged, nothing stored. */
	ASH_T_EQ_INT(post_vector(&s, "meta-instagram-text.json"), 200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT outcome FROM meta_ingest.journal "
	                 "ORDER BY id DESC LIMIT 1"),
	    "unknown_channel");
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.messages"), "0");
	/* Each answered with its own outcome. */
	hits_counted(&s, "unparseable", 3);
	hits_counted(&s, "stored", 1);
	hits_counted(&s, "unknown_channel", 1);
	it_stack_fini(&s);
}

typedef struct corpus_post {
	it_stack *s;
	int       bad;
	char      failed[512]; /* the first few that were not 200 */
} corpus_post;

/* One corpus input: the signature line the driver reads is dropped, the
 * body is signed as Meta would sign it. */
static void
corpus_post_one(const char *file, const char *data, size_t len, void *arg)
{
	corpus_post *c    = arg;
	const char  *nl   = memchr(data, '\n', len);
	const char  *body = nl ? nl + 1 : data + len;
	size_t       n    = strlen(c->failed);
	it_resp      r;

	if (it_post_webhook(
	        c->s, body, len - (size_t) (body - data), SECRET, &r) != 200 &&
	    c->bad++ < 8)
		snprintf(c->failed + n, sizeof(c->failed) - n, " %s:%ld", file,
		    r.status);
	it_resp_fini(&r);
}

/* Every body of the webhook fuzz corpus (tests/fuzz/corpus/webhook: a
 * signature line, then the body), signed as Meta would and posted
 * through the gateway to channels on the vectors' pages. Whatever the
 * fuzzer made of the events, Postgres must take them: a body it refuses
 * would be kept raw as unstorable, and its message lost to the inbox. */
ASH_TEST(f6_every_fuzzed_signed_body_is_acknowledged_and_journaled)
{
	it_stack    s;
	char        t[64], k[128];
	corpus_post c = {.s = &s};
	int         n;

	start(&s, "mi_corpus", t, k);
	channel(&s, t, "messenger", PAGE);
	channel(&s, t, "messenger", PAGE2);
	channel(&s, t, "instagram", IG);
	n = it_corpus_each("webhook", corpus_post_one, &c);
	if (c.bad > 0)
		ASH_T_FAILF(
		    "%d of %d bodies not acknowledged:%s", c.bad, n, c.failed);
	ASH_T_TRUE(n > 100);
	/* Each has its journal line, and Postgres took every one. */
	ASH_T_EQ_INT(
	    atoi(q(&s, "SELECT count(*) FROM meta_ingest.journal")), n);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT count(*) FROM meta_ingest.journal WHERE "
	                 "outcome IN ('unstorable', 'failed')"),
	    "0");
	it_stack_fini(&s);
}

typedef struct jpost {
	it_stack   *s;
	const char *json;
	long        status;
	pthread_t   t;
} jpost;

static void *
jpost_run(void *arg)
{
	jpost *p = arg;

	p->status = post_json(p->s, p->json);
	return NULL;
}

/* A message with a timestamp Postgres cannot represent. */
#define POISON                                                 \
	ENV("{" FROM_C ",\"timestamp\":\"99999999999999999\"," \
	    "\"message\":{\"mid\":\"bad\",\"text\":\"x\"}}")

ASH_TEST(f6_a_poison_post_is_kept_raw_alone_and_others_in_its_batch_stored)
{
	it_stack    s;
	char        t[64], k[128];
	const char *poison = POISON;
	char        good[16][320];
	jpost       p[17];

	start(&s, "mi_poison", t, k);
	channel(&s, t, "messenger", PAGE);
	/* A timestamp Postgres cannot represent makes its batch fail; the
	 * batch is retried hit by hit so only the poison fails. It would fail
	 * on every retry, so it is acknowledged and kept raw, "unstorable". */
	p[0] = (jpost) {&s, poison, 0, 0};
	for (int i = 0; i < 16; i++) {
		snprintf(good[i], sizeof(good[i]),
		    ENV("{" FROM_C ",\"timestamp\":%d,\"message\":{\"mid\":"
		        "\"g%d\",\"text\":\"ok\"}}"),
		    1000 + i, i);
		p[i + 1] = (jpost) {&s, good[i], 0, 0};
	}
	for (int i = 0; i < 17; i++)
		pthread_create(&p[i].t, NULL, jpost_run, &p[i]);
	for (int i = 0; i < 17; i++)
		pthread_join(p[i].t, NULL);
	for (int i = 0; i < 17; i++)
		ASH_T_EQ_INT(p[i].status, 200);
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.messages"), "16");
	/* The poison is journaled with its bytes, to look at later. */
	ASH_T_EQ_STR(
	    q(&s,
	        "SELECT count(*) FROM meta_ingest.journal WHERE "
	        "outcome = 'unstorable' AND position("
	        "'99999999999999999' in convert_from(raw, 'UTF8')) > 0"),
	    "1");
	/* So is an id too long for its index (its random bytes do not
	 * compress). */
	uint8_t rnd[3000];
	char   *hex, *big;
	ash_random_bytes(rnd, sizeof(rnd));
	hex = ash_hex_encode(rnd, sizeof(rnd));
	big = ash_xasprintf(ENV("{" FROM_C ",\"timestamp\":1,\"message\":{"
	                        "\"mid\":\"%s\",\"text\":\"x\"}}"),
	    hex);
	ASH_T_EQ_INT(post_json(&s, big), 200);
	free(big);
	free(hex);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT count(*) FROM meta_ingest.journal WHERE "
	                 "outcome = 'unstorable'"),
	    "2");
	hits_counted(&s, "unstorable", 2);
	hits_counted(&s, "stored", 16);
	it_stack_fini(&s);
}

/* An unstorable POST is acknowledged only once its bytes are committed:
 * while its journal line cannot be written (a trigger refuses it here),
 * it gets 503 and nothing is counted delivered; sent again once the line
 * can be written, it gets 200 and its line. */
ASH_TEST(f6_an_unstorable_post_is_acknowledged_only_with_its_journal_line)
{
	it_stack    s;
	char        t[64], k[128];
	const char *poison = POISON;

	start(&s, "mi_unstorable", t, k);
	channel(&s, t, "messenger", PAGE);
	it_pg_exec(s.dsn,
	    "CREATE FUNCTION meta_ingest.refuse() RETURNS trigger LANGUAGE "
	    "plpgsql AS $$BEGIN RAISE EXCEPTION 'refused'; END$$; "
	    "CREATE TRIGGER refuse BEFORE INSERT ON meta_ingest.journal FOR "
	    "EACH ROW WHEN (NEW.outcome = 'unstorable') EXECUTE FUNCTION "
	    "meta_ingest.refuse()");
	ASH_T_EQ_INT(post_json(&s, poison), 503);
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.journal"), "0");
	hits_counted(&s, "unavailable", 1);
	it_pg_exec(s.dsn, "DROP TRIGGER refuse ON meta_ingest.journal");
	ASH_T_EQ_INT(post_json(&s, poison), 200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT outcome || ' ' || (raw IS NOT NULL) FROM "
	                 "meta_ingest.journal"),
	    "unstorable true");
	hits_counted(&s, "unstorable", 1);
	it_stack_fini(&s);
}

/* --- the journal, per tenant --- */

ASH_TEST(f6_journal_answers_did_meta_call_per_tenant)
{
	it_stack s;
	it_resp  r;
	char     t[64], k[128], t2[64], k2[128];
	size_t   len;
	char    *body = vector("meta-messenger-text.json", &len);

	start(&s, "mi_journal", t, k);
	it_tenant_create(&s, "Other", t2, k2);
	channel(&s, t, "messenger", PAGE);
	channel(&s, t2, "instagram", IG);
	ASH_T_EQ_INT(post_vector(&s, "meta-messenger-text.json"), 200);
	ASH_T_EQ_INT(it_post_webhook(&s, body, len, "forged", &r), 403);
	it_resp_fini(&r);
	ASH_T_EQ_INT(post_vector(&s, "meta-instagram-text.json"), 200);
	/* A rejected POST is answered at once; its journal line goes with
	 * the next commit, which may still be running. */
	for (int i = 0; i < 100; i++) {
		it_call(
		    &s, &r, "GET", "/api/v1/channels/meta/journal", k, NULL);
		if (i == 99 ||
		    cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "hits")) >=
		        2)
			break;
		it_resp_fini(&r);
		usleep(20000);
	}
	ASH_T_EQ_INT(r.status, 200);
	const cJSON *hits = cJSON_GetObjectItem(r.json, "hits");
	/* Newest first: the forged POST naming our page (unverified), then
	 * the stored one; never the other tenant's. */
	ASH_T_EQ_INT(cJSON_GetArraySize(hits), 2);
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetArrayItem(hits, 0), "signature"), "invalid");
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetArrayItem(hits, 1), "outcome"), "stored");
	int n = 0;
	ASH_T_OK(
	    ash_json_get_int(cJSON_GetArrayItem(hits, 1), "new_messages", &n));
	ASH_T_EQ_INT(n, 1);
	ASH_T_NOT_CONTAINS(r.body, IG);
	it_resp_fini(&r);
	it_call(
	    &s, &r, "GET", "/api/v1/channels/meta/journal?limit=1", k2, NULL);
	ASH_T_EQ_INT(
	    cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "hits")), 1);
	ASH_T_NOT_CONTAINS(r.body, PAGE);
	it_resp_fini(&r);
	free(body);
	it_stack_fini(&s);
}

/* Waits up to 15 s for sql to give want (statistics views lag by up
 * to 10 s). */
static void
q_wait(it_stack *s, const char *sql, const char *want)
{
	for (int i = 0; i < 750 && strcmp(q(s, sql), want) != 0; i++)
		usleep(20000);
	ASH_T_EQ_STR(q(s, sql), want);
}

/* Reads a paged list: GET path (with its query string) as key, visit on
 * every item of the array named list, then the next page with
 * "&<param>=<the page's next_key>" until a page has none. Returns the
 * pages read, at most max_pages. */
static int
page_all(it_stack *s, const char *key, const char *path, const char *list,
    const char *next_key, const char *param, int max_pages,
    void (*visit)(const cJSON *item, void *arg), void *arg)
{
	char    url[512];
	it_resp r;
	int     pages = 0;

	snprintf(url, sizeof(url), "%s", path);
	for (;;) {
		const cJSON *item;
		const char  *next;

		ASH_T_TRUE(++pages <= max_pages);
		it_call(s, &r, "GET", url, key, NULL);
		ASH_T_EQ_INT(r.status, 200);
		cJSON_ArrayForEach(item, cJSON_GetObjectItem(r.json, list))
		    visit(item, arg);
		if ((next = ash_json_str(r.json, next_key)) == NULL)
			break;
		snprintf(url, sizeof(url), "%s&%s=%s", path, param, next);
		it_resp_fini(&r);
	}
	it_resp_fini(&r);
	return pages;
}

/* A visitor for page_all: counts the items. */
static void
count_item(const cJSON *item, void *arg)
{
	(void) item;
	(*(int *) arg)++;
}

/* A visitor for page_all: one string field of every item, joined. */
typedef struct joined {
	const char *field;
	const char *sep;
	char        buf[512];
} joined;

static void
join_field(const cJSON *item, void *arg)
{
	joined *j = arg;
	size_t  n = strlen(j->buf);

	ASH_T_TRUE(n + strlen(j->sep) + strlen(ash_json_str(item, j->field)) <
	    sizeof(j->buf));
	snprintf(j->buf + n, sizeof(j->buf) - n, "%s%s", n ? j->sep : "",
	    ash_json_str(item, j->field));
}

/* Makes the journal's oldest n hits older than ASHOON_META_JOURNAL_DAYS
 * (90), restarts meta-ingest (it purges soon after a start) and waits
 * until `left` hits are left. */
static void
age_out_and_purge(it_stack *s, int n, const char *left)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	    "UPDATE meta_ingest.journal SET received_at = now() - interval "
	    "'91 days' WHERE id IN (SELECT id FROM meta_ingest.journal ORDER "
	    "BY id LIMIT %d)",
	    n);
	q(s, sql);
	ASH_T_EQ_INT(it_stack_stop(s, ASH_SVC_META_INGEST), 0);
	it_stack_start(s, ASH_SVC_META_INGEST);
	q_wait(s, "SELECT count(*) FROM meta_ingest.journal", left);
}

/* An edit and its message stored by two calls side by side can miss each
 * other (neither sees the other's uncommitted row), leaving the edit
 * waiting beside its message. The hourly sweep (soon after a start too)
 * applies it. */
ASH_TEST(f6_an_edit_that_missed_its_message_is_applied_by_the_sweep)
{
	it_stack s;

	thread_of_42(&s, "mi_edit_sweep");
	/* What the race leaves (the other arrival orders are tested in
	 * f6_edit_unsend_reaction_and_unreact_in_any_order). */
	q(&s,
	    "INSERT INTO meta_ingest.early_edits (channel_id, mid, "
	    "participant, text, edited_at, num_edit) SELECT channel_id, "
	    "'in1', '42', 'second', to_timestamp(2), 1 FROM "
	    "meta_ingest.messages WHERE mid = 'in1'");
	ASH_T_EQ_INT(it_stack_stop(&s, ASH_SVC_META_INGEST), 0);
	it_stack_start(&s, ASH_SVC_META_INGEST);
	q_wait(&s,
	    "SELECT text || ' ' || edit_count || ' ' || (extract(epoch "
	    "from edited_at) * 1000)::bigint FROM meta_ingest.messages "
	    "WHERE mid = 'in1'",
	    "second 1 2000");
	ASH_T_EQ_STR(
	    q(&s, "SELECT count(*) FROM meta_ingest.early_edits"), "0");
	it_stack_fini(&s);
}

/* The value lists of the hot tables are domains (migration 0017), not
 * CHECKs: a value outside them is still refused by the database, in
 * every column that had one. */
ASH_TEST(f6_the_database_still_refuses_values_outside_the_lists)
{
	static const char *const bad[] = {
	    "UPDATE meta_ingest.messages SET direction = 'sideways'",
	    "UPDATE meta_ingest.messages SET author = 'robot'",
	    "UPDATE meta_ingest.messages SET state = 'lost'",
	    "UPDATE meta_ingest.conversations SET status = 'gone'",
	    "UPDATE meta_ingest.conversations SET thread_owner = 'nobody'",
	    "UPDATE meta_ingest.journal SET signature = 'forged'",
	    "UPDATE meta_ingest.reply_jobs SET state = 'lost'",
	};
	it_stack s;

	thread_of_42(&s, "mi_domains");
	ASH_T_EQ_STR(
	    q(&s, "SELECT count(*) FROM meta_ingest.reply_jobs"), "1");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ASH_T_EQ_STR(it_pg_try(s.dsn, bad[i]), "23514");
	/* A value in the list is taken. */
	ASH_T_EQ_STR(it_pg_try(s.dsn,
	                 "UPDATE meta_ingest.conversations SET status = "
	                 "'closed' RETURNING status"),
	    "closed");
	it_stack_fini(&s);
}

/* Spans of the journal's listing that no longer list any hit. */
#define SPANS_WITHOUT_HITS                                                   \
	"SELECT count(*) FROM meta_ingest.journal_spans s WHERE NOT EXISTS " \
	"(SELECT 1 FROM meta_ingest.journal j WHERE j.id BETWEEN "           \
	"s.first_id AND s.last_id AND s.tenant_id = ANY (j.tenant_ids))"

ASH_TEST(f6_journal_pages_back_and_is_purged_with_its_listing_after_its_days)
{
	it_stack s;
	it_resp  r;
	char     t[64], k[128], want[256];
	size_t   len;
	char    *body = vector("meta-messenger-text.json", &len);

	start(&s, "mi_jpurge", t, k);
	channel(&s, t, "messenger", PAGE);
	for (int i = 0; i < 3; i++)
		ASH_T_EQ_INT(post_vector(&s, "meta-messenger-text.json"), 200);
	/* Unverified hits name the page: listed for the tenant that has it,
	 * and still after it is disconnected. */
	ASH_T_EQ_INT(it_post_webhook(&s, body, len, "forged", &r), 403);
	it_resp_fini(&r);
	q_wait(&s, "SELECT count(*) FROM meta_ingest.journal", "4");
	q(&s, "UPDATE meta_ingest.channels SET disconnected_at = now()");
	ASH_T_EQ_INT(it_post_webhook(&s, body, len, NULL, &r), 401);
	it_resp_fini(&r);
	q_wait(&s, "SELECT count(*) FROM meta_ingest.journal", "5");

	/* Two pages of two and one of one, newest first, each hit once. */
	snprintf(want, sizeof(want), "%s",
	    q(&s,
	        "SELECT string_agg(id::text, ',' ORDER BY id DESC) "
	        "FROM meta_ingest.journal"));
	joined all = {.field = "id", .sep = ","};
	ASH_T_EQ_INT(page_all(&s, k, "/api/v1/channels/meta/journal?limit=2",
	                 "hits", "next", "before", 3, join_field, &all),
	    3);
	ASH_T_EQ_STR(all.buf, want);

	/* Rows past ASHOON_META_JOURNAL_DAYS (90) go, with their listing
	 * rows, at the purge soon after a start; younger ones stay. */
	age_out_and_purge(&s, 3, "2");
	ASH_T_EQ_STR(q(&s, SPANS_WITHOUT_HITS), "0");
	ASH_T_EQ_STR(
	    q(&s, "SELECT count(*) FROM meta_ingest.journal_spans"), "2");
	joined left = {.field = "id", .sep = ","};
	ASH_T_EQ_INT(page_all(&s, k, "/api/v1/channels/meta/journal?limit=50",
	                 "hits", "next", "before", 1, join_field, &left),
	    1);
	ASH_T_EQ_STR(left.buf,
	    q(&s,
	        "SELECT string_agg(id::text, ',' ORDER BY id "
	        "DESC) FROM meta_ingest.journal"));
	free(body);
	it_stack_fini(&s);
}

/* One hit of a batch for ingest_batch(): signed or not, naming pages. */
#define HIT(n, sig, obj, pages, outcome)                               \
	"{\"n\": " #n                                                  \
	", \"received_ms\": 1796000000000, \"signature\": \"" sig      \
	"\", \"object\": \"" obj "\", \"page_ids\": [" pages "], "     \
	"\"entries\": 1, \"events\": 1, \"kinds\": {}, \"bytes\": 1, " \
	"\"outcome\": \"" outcome "\"}"
#define MSG_MID(n, obj, page, customer, mid)                             \
	"{\"hit\": " #n ", \"object\": \"" obj "\", \"page\": \"" page   \
	"\", \"customer\": \"" customer "\", \"ts_ms\": 1796000000000, " \
	"\"type\": \"message\", \"mid\": \"" mid "\", \"kind\": "        \
	"\"text\", \"text\": \"hi\", \"attachments\": []}"
#define MSG(n, obj, page, customer) MSG_MID(n, obj, page, customer, "span" #n)

/* The ids of tenant's listed hits, newest first, as the API pages them
 * (limit 1: one page per hit, then an empty one), checked against the
 * journal's rows. */
static void
journal_lists(it_stack *s, const char *key, const char *tenant, int hits)
{
	char   sql[256];
	joined got = {.field = "id", .sep = ","};

	ASH_T_EQ_INT(page_all(s, key, "/api/v1/channels/meta/journal?limit=1",
	                 "hits", "next", "before", hits + 1, join_field, &got),
	    hits + 1);
	snprintf(sql, sizeof(sql),
	    "SELECT coalesce(string_agg(id::text, ',' ORDER BY id DESC), '') "
	    "FROM meta_ingest.journal WHERE '%s' = ANY (tenant_ids)",
	    tenant);
	ASH_T_EQ_STR(got.buf, q(s, sql));
}

/* A batch takes its hits' ids as one block, and lists them for each of
 * their tenants with one span (migrations/0009_journal_spans.sql); the
 * purge keeps a span while a hit it lists is left. */
ASH_TEST(f6_journal_lists_a_batch_through_one_span_per_tenant)
{
	it_stack s;
	char     t[64], k[128], t2[64], k2[128], sql[256];

	start(&s, "mi_jspans", t, k);
	it_tenant_create(&s, "Other", t2, k2);
	channel(&s, t, "messenger", PAGE);
	channel(&s, t2, "instagram", IG);
	/* Ours, the other tenant's, a forged one naming both pages, ours. */
	ASH_T_EQ_STR(
	    q(&s,
	        "SET search_path = meta_ingest; SELECT "
	        "ingest_batch('{\"app_id\": \"\", \"hits\": [" HIT(
	            0, "valid", "page", "\"" PAGE "\"", "stored") ", " HIT(1,
	            "valid", "instagram", "\"" IG "\"", "stored") ", " HIT(2,
	            "invalid", "page", "\"" PAGE "\", \"" IG "\"",
	            "rejected") ", " HIT(3, "valid", "page", "\"" PAGE "\"",
	            "stored") "], \"events\": [" MSG(0, "page", PAGE,
	            "61") ", " MSG(1, "instagram", IG, "62") ", " MSG(3,
	            "page", PAGE, "61") "]}') IS NOT NULL"),
	    "t");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT max(id) - min(id) || ',' || count(*) "
	                 "FROM meta_ingest.journal"),
	    "3,4");
	snprintf(sql, sizeof(sql),
	    "SELECT string_agg(last_id - first_id || '', ',' ORDER BY "
	    "tenant_id = '%s') FROM meta_ingest.journal_spans",
	    t);
	ASH_T_EQ_STR(q(&s, sql), "1,3"); /* theirs: 1-2; ours: 0-3 */
	journal_lists(&s, k, t, 3);
	journal_lists(&s, k2, t2, 2);

	/* The first three hits age out: our span keeps the last hit, theirs
	 * has none left and goes. */
	age_out_and_purge(&s, 3, "1");
	ASH_T_EQ_STR(q(&s, SPANS_WITHOUT_HITS), "0");
	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM meta_ingest.journal_spans WHERE tenant_id = "
	    "'%s'",
	    t);
	ASH_T_EQ_STR(q(&s, sql), "1");
	journal_lists(&s, k, t, 1);
	journal_lists(&s, k2, t2, 0);

	/* More hits than a block holds take a second block: 1,030 unsigned
	 * hits naming our page make two spans beside the one left. */
	ASH_T_EQ_STR(
	    q(&s,
	        "SET search_path = meta_ingest; SELECT ingest_batch("
	        "jsonb_build_object('app_id', '', 'events', '[]'::jsonb, "
	        "'hits', (SELECT jsonb_agg(jsonb_build_object('n', i, "
	        "'received_ms', 1796000000000, 'signature', 'missing', "
	        "'object', 'page', 'page_ids', jsonb_build_array('" PAGE
	        "'), 'entries', 1, 'events', 0, 'kinds', '{}'::jsonb, "
	        "'bytes', 1, 'outcome', 'rejected')) FROM "
	        "generate_series(0, 1029) i))) IS NOT NULL"),
	    "t");
	snprintf(sql, sizeof(sql),
	    "SELECT string_agg(last_id - first_id + 1 || '', ',' ORDER BY "
	    "first_id) FROM meta_ingest.journal_spans WHERE tenant_id = '%s'",
	    t);
	ASH_T_EQ_STR(q(&s, sql), "4,1024,6");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT count(DISTINCT id) || ',' || count(*) FROM "
	                 "meta_ingest.journal"),
	    "1031,1031");
	int listed = 0;
	ASH_T_EQ_INT(page_all(&s, k, "/api/v1/channels/meta/journal?limit=500",
	                 "hits", "next", "before", 3, count_item, &listed),
	    3);
	ASH_T_EQ_INT(listed, 1031);
	it_stack_fini(&s);
}

/* Hits of one batch that name the same page are each listed by their own
 * object and signature (ingest_batch() works a set of pages out once for
 * the hits that name it alike): a signed Messenger hit for the tenant
 * whose Page it is, a signed Instagram one for nobody (the page is not
 * connected as an Instagram account), an unsigned one for every tenant
 * that has had the page, a disconnected channel's included; a signed
 * hit naming another page for that page's tenant. */
ASH_TEST(f6_journal_lists_each_hit_of_a_page_by_its_object_and_signature)
{
	it_stack s;
	char     t[64], k[128], t2[64], k2[128], sql[512];

	start(&s, "mi_jsets", t, k);
	it_tenant_create(&s, "Other", t2, k2);
	channel(&s, t2, "messenger", PAGE);
	q(&s, "UPDATE meta_ingest.channels SET disconnected_at = now()");
	channel(&s, t, "messenger", PAGE);
	channel(&s, t2, "messenger", "104857600000002");
	ASH_T_EQ_STR(
	    q(&s,
	        "SET search_path = meta_ingest; SELECT "
	        "ingest_batch('{\"app_id\": \"\", \"hits\": [" HIT(
	            0, "valid", "page", "\"" PAGE "\"", "stored") ", " HIT(1,
	            "valid", "instagram", "\"" PAGE "\"", "stored") ", " HIT(2,
	            "invalid", "page", "\"" PAGE "\"", "rejected") ", " HIT(3,
	            "valid", "page", "\"" PAGE "\"", "stored") ", " HIT(4,
	            "valid", "page", "\"104857600000002\"",
	            "stored") "], \"events\": [" MSG(0, "page", PAGE,
	            "61") ", " MSG(3, "page", PAGE, "61") "]}') "
	                                                  "IS NOT NULL"),
	    "t");
	snprintf(sql, sizeof(sql),
	    "SELECT string_agg(outcome || ':' || coalesce((SELECT "
	    "string_agg(CASE x WHEN '%s' THEN 'us' WHEN '%s' THEN 'other' "
	    "END, '+' ORDER BY x = '%s' DESC) FROM unnest(tenant_ids) x), "
	    "''), ',' ORDER BY id) FROM meta_ingest.journal",
	    t, t2, t);
	ASH_T_EQ_STR(q(&s, sql),
	    "stored:us,unknown_channel:,rejected:us+other,stored:us,"
	    "stored:other");
	journal_lists(&s, k, t, 3);
	journal_lists(&s, k2, t2, 2);
	it_stack_fini(&s);
}

/* An unsend of mid from customer 61, for hit n. */
#define UNSEND(n, mid)                                                   \
	"{\"hit\": " #n ", \"object\": \"page\", \"page\": \"" PAGE      \
	"\", \"customer\": \"61\", \"ts_ms\": 1796000000100, \"type\": " \
	"\"unsend\", \"mid\": \"" mid "\"}"

/* A message and its unsend in one batch, in either order: only the
 * tombstone is kept (no content, no reply job, not announced), counted
 * as new in the first hit that carried the mid, and a redelivery of the
 * message in the same batch changes nothing; nor does a message that
 * comes twice in one batch, stored once. */
ASH_TEST(f6_a_message_and_its_unsend_in_one_batch_keep_no_content)
{
	it_stack s;
	char     t[64], k[128];

	start(&s, "mi_unsend1", t, k);
	channel(&s, t, "messenger", PAGE);
	ASH_T_EQ_STR(
	    q(&s,
	        "SET search_path = meta_ingest; SELECT (r->>'hits') || ' ' || "
	        "(r->>'people') || ' ' || array_length(string_to_array("
	        "r->>'announce', E'\\n'), 1) FROM (SELECT "
	        "ingest_batch('{\"app_id\": \"\", \"hits\": [" HIT(
	            0, "valid", "page", "\"" PAGE "\"", "stored") ", " HIT(1,
	            "valid", "page", "\"" PAGE "\"",
	            "stored") ", " HIT(2, "valid", "page", "\"" PAGE "\"",
	            "stored") ", " HIT(3, "valid", "page", "\"" PAGE "\"",
	            "stored") ", " HIT(4, "valid", "page", "\"" PAGE "\"",
	            "stored") ", " HIT(5, "valid", "page", "\"" PAGE "\"",
	            "stored") ", " HIT(6, "valid", "page", "\"" PAGE "\"",
	            "stored") "], \"events\": [" MSG_MID(0, "page", PAGE, "61",
	            "first") ", " UNSEND(1, "first") ", " UNSEND(2,
	            "later") ", " MSG_MID(3, "page", PAGE, "61",
	            "later") ", " MSG_MID(4, "page", PAGE, "61",
	            "first") ", " MSG_MID(5, "page", PAGE, "61",
	            "twice") ", " MSG_MID(6, "page", PAGE, "61",
	            "twice") "]}')::jsonb AS r) x"),
	    "[] 1 1");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT string_agg(mid || ':' || kind || ':' || "
	                 "coalesce(text, '-') || ':' || (unsent_at IS NOT "
	                 "NULL), ',' ORDER BY mid) FROM meta_ingest.messages"),
	    "first:text:-:true,later:text:-:true,twice:text:hi:false");
	ASH_T_EQ_STR(
	    q(&s,
	        "SELECT string_agg(m.mid, ',') FROM "
	        "meta_ingest.reply_jobs j JOIN meta_ingest.messages m "
	        "ON m.id = j.message_id"),
	    "twice");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT string_agg(new_messages::text, ',' ORDER BY "
	                 "id) FROM meta_ingest.journal"),
	    "1,0,1,0,0,1,0");
	it_stack_fini(&s);
}

/* Appends dir's *.sql files (sorted by name) to m from m[n], as versions
 * up to upto, or as routines (version 0) when upto is 0; returns the new
 * count. m has room for 32. */
static int
migration_files(const char *dir, int upto, ash_db_migration m[32], int n)
{
	char   pat[1024], rel[256];
	glob_t g;

	snprintf(
	    pat, sizeof(pat), "%s/%s/*.sql", getenv("ASH_SOURCE_DIR"), dir);
	ASH_T_EQ_INT(glob(pat, 0, NULL, &g), 0); /* sorted by name */
	for (size_t i = 0; i < g.gl_pathc; i++) {
		const char *base = strrchr(g.gl_pathv[i], '/') + 1;
		size_t      len;

		if (upto > 0 && atoi(base) > upto)
			break;
		ASH_T_TRUE(n < 31);
		snprintf(rel, sizeof(rel), "%s/%s", dir, base);
		m[n].version = upto > 0 ? atoi(base) : 0;
		m[n].name    = ash_xstrdup(base);
		m[n].sql     = source_file(rel, &len);
		n++;
	}
	globfree(&g);
	m[n] = (ash_db_migration) {0, NULL, NULL};
	return n;
}

/* meta-ingest's migrations up to version upto, read from the source tree
 * (as the service embeds them), and its routines too when upto is
 * INT_MAX; m has room for 32. */
static void
migrations_upto(int upto, ash_db_migration m[32])
{
	int n = migration_files("services/meta-ingest/migrations", upto, m, 0);

	if (upto == INT_MAX)
		migration_files(
		    "services/meta-ingest/migrations/routines", 0, m, n);
}

static void
migrations_free(ash_db_migration *m)
{
	for (; m->name != NULL; m++) {
		free((char *) m->name);
		free((char *) m->sql);
	}
}

/* A page of two of a tenant's hits before id `before`, as meta.journal.list
 * reads it (tenant: the last digit of its uuid). */
#define JOURNAL_PAGE(tenant, before)                                      \
	"SET search_path = meta_ingest; SELECT string_agg(id::text, ',' " \
	"ORDER BY id DESC) FROM journal_page("                            \
	"'00000000-0000-0000-0000-00000000000" tenant "', " before ", 2)"

/* Hits stored before 0009 (one journal_by_tenant row per hit and tenant)
 * keep their listing as spans of one, and hits stored after it get their
 * ids from blocks above them. Then the schema goes on to this release
 * (0010 and the ingest_batch routine) and ingest still works on it. */
ASH_TEST(f6_upgrades_from_0008_keep_older_hits_listed_and_ingest_working)
{
	ash_db_migration m[32];
	char             dsn[512];
	int              v = 0;

	it_db_create("mi_upgrade", dsn, sizeof(dsn));
	it_pg_exec(dsn, "CREATE SCHEMA meta_ingest");
	migrations_upto(8, m);
	ASH_T_OK(ash_db_migrate(dsn, "meta_ingest", m, &v));
	ASH_T_EQ_INT(v, 8);
	migrations_free(m);
	it_pg_exec(dsn,
	    "SET search_path = meta_ingest; INSERT INTO channels (tenant_id, "
	    "kind, external_id, token_sealed, key_version) VALUES "
	    "('00000000-0000-0000-0000-00000000000a', 'messenger', '" PAGE
	    "', 'v1.x', 1), ('00000000-0000-0000-0000-00000000000b', "
	    "'instagram', '" IG "', 'v1.x', 1)");
	/* Two batches: ours and a forged hit naming both pages; ours. */
	ASH_T_EQ_STR(
	    it_pg_exec(dsn,
	        "SET search_path = meta_ingest; SELECT "
	        "ingest_batch('{\"app_id\": \"\", \"hits\": [" HIT(
	            0, "valid", "page", "\"" PAGE "\"", "stored") ", " HIT(1,
	            "invalid", "page", "\"" PAGE "\", \"" IG "\"",
	            "rejected") "], \"events\": [" MSG(0, "page", PAGE,
	            "61") "]}') IS NOT NULL"),
	    "t");
	ASH_T_EQ_STR(
	    it_pg_exec(dsn,
	        "SET search_path = meta_ingest; SELECT "
	        "ingest_batch('{\"app_id\": \"\", \"hits\": [" HIT(0, "valid",
	            "page", "\"" PAGE "\"", "stored") "], \"events\": [" MSG(2,
	            "page", PAGE, "61") "]}') IS NOT NULL"),
	    "t");
	ASH_T_EQ_STR(it_pg_exec(dsn,
	                 "SELECT count(*) FROM meta_ingest.journal_by_tenant"),
	    "4");

	migrations_upto(9, m);
	ASH_T_OK(ash_db_migrate(dsn, "meta_ingest", m, &v));
	ASH_T_EQ_INT(v, 9);
	migrations_free(m);
	ASH_T_EQ_STR(
	    it_pg_exec(dsn,
	        "SELECT string_agg(right(tenant_id::text, 1) || ':' || "
	        "first_id || '-' || last_id, ',' ORDER BY tenant_id, "
	        "first_id) FROM meta_ingest.journal_spans"),
	    "a:1-1,a:2-2,a:3-3,b:2-2");
	/* A batch after it: its two hits take the next block. */
	ASH_T_EQ_STR(
	    it_pg_exec(dsn,
	        "SET search_path = meta_ingest; SELECT "
	        "ingest_batch('{\"app_id\": \"\", \"hits\": [" HIT(
	            0, "valid", "page", "\"" PAGE "\"", "stored") ", " HIT(1,
	            "valid", "page", "\"" PAGE "\"",
	            "stored") "], \"events\": [" MSG(0, "page", PAGE,
	            "62") ", " MSG(1, "page", PAGE, "62") "]}') IS NOT NULL"),
	    "t");
	ASH_T_EQ_STR(it_pg_exec(dsn,
	                 "SELECT string_agg(id::text, ',' ORDER BY id) FROM "
	                 "meta_ingest.journal"),
	    "1,2,3,1027,1028");
	ASH_T_EQ_STR(it_pg_exec(dsn,
	                 "SELECT first_id || '-' || last_id FROM "
	                 "meta_ingest.journal_spans WHERE first_id > 3"),
	    "1027-1028");
	/* The listing pages through old and new hits alike, newest first. */
	ASH_T_EQ_STR(it_pg_exec(dsn, JOURNAL_PAGE("a", "9223372036854775807")),
	    "1028,1027");
	ASH_T_EQ_STR(it_pg_exec(dsn, JOURNAL_PAGE("a", "1027")), "3,2");
	ASH_T_EQ_STR(it_pg_exec(dsn, JOURNAL_PAGE("a", "2")), "1");
	ASH_T_EQ_STR(
	    it_pg_exec(dsn, JOURNAL_PAGE("b", "9223372036854775807")), "2");

	/* And on to this release: 0010 drops the function, the routine
	 * makes the new one; a batch of a known and a new customer, the
	 * second message also carried by a later hit. */
	migrations_upto(INT_MAX, m);
	ASH_T_OK(ash_db_migrate(dsn, "meta_ingest", m, &v));
	migrations_free(m);
	ASH_T_EQ_STR(it_pg_exec(dsn,
	                 "SELECT name FROM meta_ingest."
	                 "schema_routines"),
	    "ingest_batch.sql");
	ASH_T_EQ_STR(
	    it_pg_exec(dsn,
	        "SET search_path = meta_ingest; SELECT ingest_batch('{"
	        "\"app_id\": \"\", \"hits\": [" HIT(0, "valid", "page",
	            "\"" PAGE "\"", "stored") ", " HIT(1, "valid", "page",
	            "\"" PAGE "\"", "stored") "], \"events\": [" MSG_MID(0,
	            "page", PAGE, "61", "up1") ", " MSG_MID(0, "page", PAGE,
	            "63", "up2") ", " MSG_MID(1, "page", PAGE, "63",
	            "up2") "]}') ->> 'people'"),
	    "1");
	ASH_T_EQ_STR(it_pg_exec(dsn,
	                 "SELECT string_agg(new_messages::text, ',' ORDER BY "
	                 "id) FROM meta_ingest.journal WHERE id > 1028"),
	    "2,0");
	ASH_T_EQ_STR(it_pg_exec(dsn,
	                 "SELECT count(DISTINCT conversation_id) || ',' || "
	                 "count(*) FROM meta_ingest.messages"),
	    "3,5");
	/* A person kept without a thread (its thread deleted alone) gets a
	 * new one, beside a known customer in the same batch. */
	it_pg_exec(dsn,
	    "DELETE FROM meta_ingest.conversations v USING "
	    "meta_ingest.participants p WHERE p.id = v.participant_id AND "
	    "p.external_id = '63'");
	ASH_T_EQ_STR(
	    it_pg_exec(dsn,
	        "SET search_path = meta_ingest; SELECT ingest_batch('{"
	        "\"app_id\": \"\", \"hits\": [" HIT(0, "valid", "page",
	            "\"" PAGE "\"", "stored") "], \"events\": [" MSG_MID(0,
	            "page", PAGE, "61", "up3") ", " MSG_MID(0, "page", PAGE,
	            "63", "up4") "]}') ->> 'people'"),
	    "0");
	ASH_T_EQ_STR(
	    it_pg_exec(dsn,
	        "SELECT string_agg(p.external_id, ',' ORDER BY "
	        "m.mid) FROM meta_ingest.messages m JOIN "
	        "meta_ingest.conversations v ON v.id = "
	        "m.conversation_id JOIN meta_ingest.participants p ON "
	        "p.id = v.participant_id WHERE m.mid IN ('up3', "
	        "'up4')"),
	    "61,63");
}

/* --- the inbox ops --- */

static void
seed_conversations(it_stack *s, int n)
{
	char json[512];

	for (int i = 0; i < n; i++) {
		snprintf(json, sizeof(json),
		    ENV("{\"sender\":{\"id\":\"%d\"},\"recipient\":{\"id\":"
		        "\"" PAGE
		        "\"},\"timestamp\":%d,\"message\":{\"mid\":\"m%d\","
		        "\"text\":\"hello %d\"}}"),
		    1000 + i, 10000 + i, i, i);
		ASH_T_EQ_INT(post_json(s, json), 200);
	}
}

/* page_all visitor: the ids seen, at most 7. */
typedef struct seen_ids {
	char id[7][40];
	int  n;
} seen_ids;

static void
see_id(const cJSON *item, void *arg)
{
	seen_ids *v = arg;

	ASH_T_TRUE(v->n < 7);
	snprintf(v->id[v->n++], 40, "%s", ash_json_str(item, "id"));
}

ASH_TEST(conv_list_pages_through_every_conversation_once)
{
	it_stack s;
	it_resp  r;
	char     t[64], k[128], path[256];
	seen_ids seen = {0};

	start(&s, "mi_list", t, k);
	channel(&s, t, "messenger", PAGE);
	seed_conversations(&s, 7);
	page_all(&s, k, "/api/v1/conversations?limit=3", "conversations",
	    "next_cursor", "cursor", 5, see_id, &seen);
	ASH_T_EQ_INT(seen.n, 7);
	for (int i = 0; i < 7; i++)
		for (int j = i + 1; j < 7; j++)
			ASH_T_TRUE(strcmp(seen.id[i], seen.id[j]) != 0);
	/* Newest first: the last seeded conversation leads. */
	snprintf(path, sizeof(path), "/api/v1/conversations/%s/messages",
	    seen.id[0]);
	it_call(&s, &r, "GET", path, k, NULL);
	ASH_T_EQ_STR(
	    ash_json_str(
	        cJSON_GetArrayItem(cJSON_GetObjectItem(r.json, "messages"), 0),
	        "text"),
	    "hello 6");
	it_resp_fini(&r);
	it_call(&s, &r, "GET", "/api/v1/conversations?cursor=bogus", k, NULL);
	ASH_T_EQ_INT(r.status, 400);
	it_resp_fini(&r);
	it_stack_fini(&s);
}

/* page_all visitor: each conversation strictly after the one before,
 * newest activity first, ties by id descending, so none twice. */
typedef struct in_order {
	double prev_ms;
	char   prev_id[40];
	int    n;
} in_order;

static void
see_in_order(const cJSON *item, void *arg)
{
	in_order *v = arg;
	double ms = cJSON_GetObjectItem(item, "last_message_at")->valuedouble;
	const char *id = ash_json_str(item, "id");

	ASH_T_TRUE(ms < v->prev_ms ||
	    (ms == v->prev_ms && strcmp(id, v->prev_id) < 0));
	v->prev_ms = ms;
	snprintf(v->prev_id, sizeof(v->prev_id), "%s", id);
	v->n++;
}

/* A big inbox, read through its index: every page is in (activity, id)
 * order across minutes and equal times, and the index is what reads it
 * (migrations/0007_inbox_order.sql; without it each page sorted all of
 * the tenant's conversations). */
ASH_TEST(conv_list_reads_a_big_inbox_in_activity_order_through_its_index)
{
	it_stack s;
	char     t[64], k[128], scans[32];
	in_order order = {.prev_ms = 1e300};

	start(&s, "mi_inbox", t, k);
	channel(&s, t, "messenger", PAGE);
	/* 3,000 threads over about 6 hours, two at each time. */
	q(&s,
	    "INSERT INTO meta_ingest.participants (tenant_id, channel_id, "
	    "external_id) SELECT tenant_id, id, (7000000000000000 + g)::text "
	    "FROM meta_ingest.channels, generate_series(1, 3000) g");
	q(&s,
	    "INSERT INTO meta_ingest.conversations (tenant_id, channel_id, "
	    "participant_id, last_message_at) SELECT tenant_id, channel_id, "
	    "id, timestamptz '2026-11-01 12:00:00+00' - (external_id::bigint "
	    "/ 2 % 1500) * interval '15 seconds' FROM "
	    "meta_ingest.participants");
	q(&s, "ANALYZE meta_ingest.conversations");
	snprintf(scans, sizeof(scans), "%s",
	    q(&s,
	        "SELECT idx_scan FROM pg_stat_user_indexes WHERE "
	        "indexrelname = 'conversations_inbox'"));
	ASH_T_TRUE(
	    page_all(&s, k, "/api/v1/conversations?limit=200", "conversations",
	        "next_cursor", "cursor", 16, see_in_order, &order) >= 15);
	ASH_T_EQ_INT(order.n, 3000);
	/* Statistics reach the view when the backend reports them. */
	char sql[160];
	snprintf(sql, sizeof(sql),
	    "SELECT idx_scan >= %s + 15 FROM pg_stat_user_indexes WHERE "
	    "indexrelname = 'conversations_inbox'",
	    scans);
	q_wait(&s, sql, "t");
	it_stack_fini(&s);
}

ASH_TEST(conv_messages_page_back_in_time_through_every_message_once)
{
	it_stack s;
	it_resp  r;
	char     t[64], k[128], path[256], json[512], id[40];

	start(&s, "mi_msgpage", t, k);
	channel(&s, t, "messenger", PAGE);
	for (int i = 0; i < 5; i++) {
		snprintf(json, sizeof(json),
		    ENV("{" FROM_C ",\"timestamp\":%d,\"message\":{\"mid\":"
		        "\"pm%d\",\"text\":\"t%d\"}}"),
		    1000 + i, i, i);
		ASH_T_EQ_INT(post_json(&s, json), 200);
	}
	it_call(&s, &r, "GET", "/api/v1/conversations", k, NULL);
	snprintf(id, sizeof(id), "%s",
	    ash_json_str(cJSON_GetArrayItem(
	                     cJSON_GetObjectItem(r.json, "conversations"), 0),
	        "id"));
	it_resp_fini(&r);
	snprintf(path, sizeof(path),
	    "/api/v1/conversations/%s/messages?limit=2", id);
	joined got = {.field = "text", .sep = ""};
	int pages  = page_all(&s, k, path, "messages", "next_cursor", "cursor",
	     5, join_field, &got);
	/* Newest first, each once, over three pages (the last not full). */
	ASH_T_EQ_STR(got.buf, "t4t3t2t1t0");
	ASH_T_EQ_INT(pages, 3);
	it_stack_fini(&s);
}

ASH_TEST(p23_another_tenant_sees_nothing_of_a_conversation)
{
	it_stack s;
	it_resp  r;
	char     t[64], k[128], t2[64], k2[128], path[160], id[40];

	start(&s, "mi_iso", t, k);
	it_tenant_create(&s, "Other", t2, k2);
	channel(&s, t, "messenger", PAGE);
	seed_conversations(&s, 1);
	snprintf(id, sizeof(id), "%s",
	    q(&s, "SELECT id FROM meta_ingest.conversations"));
	it_call(&s, &r, "GET", "/api/v1/conversations", k2, NULL);
	ASH_T_EQ_INT(
	    cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "conversations")),
	    0);
	it_resp_fini(&r);
	snprintf(path, sizeof(path), "/api/v1/conversations/%s", id);
	it_call(&s, &r, "GET", path, k2, NULL);
	ASH_T_EQ_INT(r.status, 404);
	it_resp_fini(&r);
	it_call(&s, &r, "PATCH", path, k2, "{\"status\":\"closed\"}");
	ASH_T_EQ_INT(r.status, 404);
	it_resp_fini(&r);
	it_call(&s, &r, "DELETE", path, k2, NULL);
	ASH_T_EQ_INT(r.status, 404);
	it_resp_fini(&r);
	snprintf(path, sizeof(path), "/api/v1/conversations/%s/messages", id);
	it_call(&s, &r, "GET", path, k2, NULL);
	ASH_T_EQ_INT(
	    cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "messages")), 0);
	it_resp_fini(&r);
	/* The owner can close it. */
	snprintf(path, sizeof(path), "/api/v1/conversations/%s", id);
	it_call(&s, &r, "PATCH", path, k, "{\"status\":\"closed\"}");
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_EQ_STR(ash_json_str(cJSON_GetObjectItem(r.json, "conversation"),
	                 "status"),
	    "closed");
	it_resp_fini(&r);
	it_call(&s, &r, "PATCH", path, k, "{\"status\":\"archived\"}");
	ASH_T_EQ_INT(r.status, 400);
	it_resp_fini(&r);
	it_stack_fini(&s);
}

ASH_TEST(p16_deleting_a_conversation_removes_all_of_it)
{
	it_stack s;
	it_resp  r;
	char     t[64], k[128], path[160];

	start(&s, "mi_delete", t, k);
	channel(&s, t, "messenger", PAGE);
	seed_conversations(&s, 2);
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{\"sender\":{\"id\":\"1000\"},"
	                     "\"recipient\":{\"id\":\"" PAGE "\"},"
	                     "\"timestamp\":20000,\"reaction\":{\"mid\":"
	                     "\"m0\",\"action\":\"react\",\"reaction\":"
	                     "\"love\"}}")),
	    200);
	/* A reaction to a message never stored, and bodies the journal keeps
	 * (an event of a kind we do not know), one from each person. */
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{\"sender\":{\"id\":\"1000\"},"
	                     "\"recipient\":{\"id\":\"" PAGE "\"},"
	                     "\"timestamp\":20001,\"reaction\":{\"mid\":"
	                     "\"m_never\",\"action\":\"react\","
	                     "\"reaction\":\"wow\"}}")),
	    200);
	for (int i = 0; i < 2; i++) {
		char item[256];
		snprintf(item, sizeof(item),
		    "{\"sender\":{\"id\":\"100%d\"},\"recipient\":{\"id\":"
		    "\"" PAGE "\"},\"timestamp\":20002,\"game_play\":{"
		    "\"game_id\":\"g%d\"}}",
		    i, i);
		char body[512];
		snprintf(body, sizeof(body),
		    "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE
		    "\",\"time\":20002,\"messaging\":[%s]}]}",
		    item);
		ASH_T_EQ_INT(post_json(&s, body), 200);
	}
	ASH_T_EQ_STR(q(&s,
	                 "SELECT count(*) FROM meta_ingest.journal WHERE raw "
	                 "IS NOT NULL"),
	    "2");
	/* And an edit still waiting for its message (recent: the purge drops
	 * waiting edits older than two days). */
	ASH_T_EQ_INT(post_jsonf(&s,
	                 ENV("{\"sender\":{\"id\":\"1000\"},"
	                     "\"recipient\":{\"id\":\"" PAGE "\"},"
	                     "\"timestamp\":%lld,\"message_edit\":{\"mid\":"
	                     "\"m_never\",\"text\":\"mine\",\"num_edit\":1}}"),
	                 (long long) ash_wall_ms()),
	    200);
	ASH_T_EQ_STR(
	    q(&s, "SELECT count(*) FROM meta_ingest.early_edits"), "1");
	snprintf(path, sizeof(path), "/api/v1/conversations/%s",
	    q(&s,
	        "SELECT v.id FROM meta_ingest.conversations v JOIN "
	        "meta_ingest.participants p ON p.id = v.participant_id "
	        "WHERE p.external_id = '1000'"));
	it_call(&s, &r, "DELETE", path, k, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	/* Nothing of it is left: messages, reaction, reply job, person. */
	ASH_T_EQ_STR(q(&s,
	                 "SELECT count(*) FROM meta_ingest.messages WHERE "
	                 "mid = 'm0'"),
	    "0");
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.reactions"), "0");
	ASH_T_EQ_STR(
	    q(&s, "SELECT count(*) FROM meta_ingest.early_edits"), "0");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT count(*) FROM meta_ingest.participants "
	                 "WHERE external_id = '1000'"),
	    "0");
	ASH_T_EQ_STR(
	    q(&s, "SELECT count(*) FROM meta_ingest.reply_jobs"), "1");
	/* The journal keeps its rows, but no body that names the person. */
	ASH_T_EQ_STR(q(&s,
	                 "SELECT string_agg((convert_from(raw, 'UTF8') LIKE "
	                 "'%\"1001\"%')::text, ',') FROM meta_ingest.journal "
	                 "WHERE raw IS NOT NULL"),
	    "true");
	/* The other conversation is untouched. */
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.messages"), "1");
	it_call(&s, &r, "DELETE", path, k, NULL);
	ASH_T_EQ_INT(r.status, 404);
	it_resp_fini(&r);
	/* The same customer writes again: a new person and thread. */
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{\"sender\":{\"id\":\"1000\"},"
	                     "\"recipient\":{\"id\":\"" PAGE "\"},"
	                     "\"timestamp\":30000,\"message\":{\"mid\":"
	                     "\"again\",\"text\":\"hi again\"}}")),
	    200);
	ASH_T_EQ_STR(
	    q(&s,
	        "SELECT count(*) FROM meta_ingest.messages m JOIN "
	        "meta_ingest.conversations v ON v.id = "
	        "m.conversation_id JOIN meta_ingest.participants p ON "
	        "p.id = v.participant_id WHERE p.external_id = '1000'"),
	    "1");
	ASH_T_EQ_STR(
	    q(&s, "SELECT count(*) FROM meta_ingest.reply_jobs"), "2");
	/* A message deleted by someone else (an operator, another search
	 * path) still takes its reply job along (migration 0008). */
	q(&s, "DELETE FROM meta_ingest.messages");
	ASH_T_EQ_STR(
	    q(&s, "SELECT count(*) FROM meta_ingest.reply_jobs"), "0");
	it_stack_fini(&s);
}

/* One request straight to meta-ingest's bus, as ai-router will send it. */
static cJSON *
bus_call(it_stack *s, const char *op, const char *role, const char *body)
{
	nng_socket sock;
	char       url[64], env[8192], *buf = NULL;
	size_t     n;
	cJSON     *rep = NULL;

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d",
	    s->bus_port[ASH_SVC_META_INGEST]);
	snprintf(env, sizeof(env),
	    "{\"v\":1,\"op\":\"%s\",\"id\":\"r-it\",\"principal\":{\"role\":"
	    "\"%s\"},\"deadline_ms\":%lld,\"body\":%s}",
	    op, role, (long long) ash_wall_ms() + 5000, body);
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

/* The gateway sends a webhook's body as the request's attachment (bus.h);
 * a gateway from before sent it in base64 as "raw", and meta-ingest still
 * takes that, so the two can be upgraded one after the other. */
ASH_TEST(f6_a_body_in_base64_from_an_older_gateway_is_stored_alike)
{
	it_stack s;
	char     t[64], k[128], sig[80], body[4096], want[96];
	size_t   len;
	char    *raw = vector("meta-messenger-text.json", &len);
	char    *b64 = ash_b64_encode(raw, len);
	cJSON   *rep;

	start(&s, "mi_b64", t, k);
	channel(&s, t, "messenger", PAGE);
	it_webhook_signature(raw, len, SECRET, sig);
	snprintf(body, sizeof(body),
	    "{\"raw\":\"%s\",\"signature\":\"%s\",\"received_ms\":%lld}", b64,
	    sig, (long long) ash_wall_ms());
	rep = bus_call(&s, "meta.webhook.ingest", "api", body);
	ASH_T_EQ_INT(
	    (int) cJSON_GetObjectItem(rep, "status")->valuedouble, 200);
	ASH_T_EQ_STR(ash_json_str(cJSON_GetObjectItem(rep, "body"), "outcome"),
	    "stored");
	cJSON_Delete(rep);
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.messages"), "1");
	/* The same bytes through the gateway: a redelivery, stored once. */
	ASH_T_EQ_INT(post_vector(&s, "meta-messenger-text.json"), 200);
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.messages"), "1");
	/* The gateway sent them as an attachment, not in base64. */
	mi_metrics_have(
	    &s, "ashoon_meta_webhook_bodies_total{form=\"attachment\"} 1\n");
	mi_metrics_have(
	    &s, "ashoon_meta_webhook_bodies_total{form=\"base64\"} 1\n");
	/* Both journaled alike, with the body's own length. */
	snprintf(
	    want, sizeof(want), "valid/stored/%zu,valid/stored/%zu", len, len);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT string_agg(signature || '/' || outcome || "
	                 "'/' || bytes, ',' ORDER BY id) FROM "
	                 "meta_ingest.journal"),
	    want);
	/* Neither an attachment nor "raw": refused, nothing journaled. */
	snprintf(body, sizeof(body),
	    "{\"signature\":\"%s\",\"received_ms\":1}", sig);
	rep = bus_call(&s, "meta.webhook.ingest", "api", body);
	ASH_T_EQ_INT(
	    (int) cJSON_GetObjectItem(rep, "status")->valuedouble, 400);
	ASH_T_CONTAINS(
	    ash_json_str(cJSON_GetObjectItem(rep, "error"), "message"),
	    "body is missing");
	cJSON_Delete(rep);
	free(b64);
	free(raw);
	it_stack_fini(&s);
}

ASH_TEST(f2_reply_jobs_are_claimed_once_and_completed)
{
	it_stack s;
	char     t[64], k[128], body[128];
	cJSON   *rep, *again;

	start(&s, "mi_jobs", t, k);
	channel(&s, t, "messenger", PAGE);
	seed_conversations(&s, 3);
	rep = bus_call(&s, "conv.jobs.claim", "api", "{}");
	ASH_T_CONTAINS(ash_json_str(cJSON_GetObjectItem(rep, "error"), "code"),
	    "forbidden"); /* only services claim jobs */
	cJSON_Delete(rep);
	rep = bus_call(&s, "conv.jobs.claim", "service", "{\"limit\":2}");
	const cJSON *jobs =
	    cJSON_GetObjectItem(cJSON_GetObjectItem(rep, "body"), "jobs");
	ASH_T_EQ_INT(cJSON_GetArraySize(jobs), 2);
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetArrayItem(jobs, 0), "tenant_id"), t);
	/* A job's id is its message's (migrations/0008). */
	char sql[160];
	ASH_T_EQ_STR(ash_json_str(cJSON_GetArrayItem(jobs, 0), "id"),
	    ash_json_str(cJSON_GetArrayItem(jobs, 0), "message_id"));
	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM meta_ingest.messages WHERE id = '%s' "
	    "AND direction = 'in'",
	    ash_json_str(cJSON_GetArrayItem(jobs, 0), "message_id"));
	ASH_T_EQ_STR(q(&s, sql), "1");
	/* Leased jobs are not handed out twice. */
	again = bus_call(&s, "conv.jobs.claim", "service", "{\"limit\":10}");
	ASH_T_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(
	                 cJSON_GetObjectItem(again, "body"), "jobs")),
	    1);
	cJSON_Delete(again);
	snprintf(body, sizeof(body), "{\"id\":\"%s\",\"outcome\":\"done\"}",
	    ash_json_str(cJSON_GetArrayItem(jobs, 0), "id"));
	again = bus_call(&s, "conv.jobs.complete", "service", body);
	ASH_T_TRUE(ash_json_bool(
	    cJSON_GetObjectItem(again, "body"), "completed", false));
	cJSON_Delete(again);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT string_agg(state, ',' ORDER BY state) FROM "
	                 "meta_ingest.reply_jobs"),
	    "claimed,claimed,done");
	cJSON_Delete(rep);
	it_stack_fini(&s);
}

/* The Limited Data Use flag a conversation reply shows for its person
 * (dflt when it shows none). */
static bool
flag_shown(const it_resp *r, bool dflt)
{
	const cJSON *pa = cJSON_GetObjectItem(
	    cJSON_GetObjectItem(r->json, "conversation"), "participant");

	return ash_json_bool(pa, "limited_data_use", dflt);
}

/* P29: the business flags a person Limited Data Use; every read of their
 * conversation and every reply job says so, a status change keeps it, and
 * only the owning tenant can set it. */
ASH_TEST(p29_limited_data_use_flag_is_kept_shown_and_handed_to_claimers)
{
	it_stack     s;
	it_resp      r;
	char         t[64], k[128], t2[64], k2[128], path[160], id[40];
	cJSON       *rep;
	const cJSON *jobs;

	start(&s, "mi_ldu", t, k);
	it_tenant_create(&s, "Other", t2, k2);
	channel(&s, t, "messenger", PAGE);
	seed_conversations(&s, 2);
	snprintf(id, sizeof(id), "%s",
	    q(&s,
	        "SELECT v.id FROM meta_ingest.conversations v JOIN "
	        "meta_ingest.participants p ON p.id = v.participant_id "
	        "WHERE p.external_id = '1000'"));
	snprintf(path, sizeof(path), "/api/v1/conversations/%s", id);
	it_call(&s, &r, "PATCH", path, k, "{}");
	ASH_T_EQ_INT(r.status, 400);
	it_resp_fini(&r);
	it_call(&s, &r, "PATCH", path, k, "{\"limited_data_use\":\"yes\"}");
	ASH_T_EQ_INT(r.status, 400);
	it_resp_fini(&r);
	it_call(&s, &r, "PATCH", path, k2, "{\"limited_data_use\":true}");
	ASH_T_EQ_INT(r.status, 404);
	it_resp_fini(&r);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT count(*) FROM meta_ingest.participants "
	                 "WHERE limited_data_use"),
	    "0");
	it_call(&s, &r, "PATCH", path, k, "{\"limited_data_use\":true}");
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_TRUE(flag_shown(&r, false));
	it_resp_fini(&r);
	/* A status change leaves the flag alone. */
	it_call(&s, &r, "PATCH", path, k, "{\"status\":\"pending\"}");
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_EQ_STR(ash_json_str(cJSON_GetObjectItem(r.json, "conversation"),
	                 "status"),
	    "pending");
	ASH_T_TRUE(flag_shown(&r, false));
	it_resp_fini(&r);
	it_call(&s, &r, "GET", path, k, NULL);
	ASH_T_TRUE(flag_shown(&r, false));
	it_resp_fini(&r);
	/* Nor does null (a field sent unchanged), or the key in other case. */
	it_call(&s, &r, "PATCH", path, k,
	    "{\"status\":\"closed\",\"limited_data_use\":null}");
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_TRUE(flag_shown(&r, false));
	it_resp_fini(&r);
	it_call(&s, &r, "PATCH", path, k,
	    "{\"status\":\"pending\",\"Limited_Data_Use\":false}");
	it_resp_fini(&r);
	ASH_T_EQ_STR(
	    q(&s,
	        "SELECT limited_data_use FROM meta_ingest.participants "
	        "WHERE external_id = '1000'"),
	    "t");
	/* Only that person: the other conversation is not flagged. */
	ASH_T_EQ_STR(q(&s,
	                 "SELECT string_agg(external_id || '=' || "
	                 "limited_data_use, ',' ORDER BY external_id) FROM "
	                 "meta_ingest.participants"),
	    "1000=true,1001=false");
	rep  = bus_call(&s, "conv.jobs.claim", "service", "{\"limit\":10}");
	jobs = cJSON_GetObjectItem(cJSON_GetObjectItem(rep, "body"), "jobs");
	ASH_T_EQ_INT(cJSON_GetArraySize(jobs), 2);
	for (int i = 0; i < 2; i++) {
		const cJSON *j = cJSON_GetArrayItem(jobs, i);
		ASH_T_EQ_INT(ash_json_bool(j, "limited_data_use", false),
		    strcmp(ash_json_str(j, "conversation_id"), id) == 0);
	}
	cJSON_Delete(rep);
	/* And it can be lifted. */
	it_call(&s, &r, "PATCH", path, k, "{\"limited_data_use\":false}");
	ASH_T_TRUE(!flag_shown(&r, true));
	it_resp_fini(&r);
	it_stack_fini(&s);
}

ASH_TEST(f2_new_inbound_message_is_announced_after_commit)
{
	it_stack   s;
	char       t[64], k[128], url[64], *buf = NULL;
	size_t     n;
	nng_socket sub;

	start(&s, "mi_event", t, k);
	channel(&s, t, "messenger", PAGE);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d",
	    s.events_port[ASH_SVC_META_INGEST]);
	ASH_T_EQ_INT(nng_sub0_open(&sub), 0);
	nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "conv.message.in ", 16);
	nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 5000);
	ASH_T_EQ_INT(nng_dial(sub, url, NULL, 0), 0);
	usleep(200000); /* pub/sub drops what is sent before we connect */
	/* Stored, not announced: an echo of what a human sent from Meta's
	 * inbox, and the tombstone of an unsend that overtook its message. */
	ASH_T_EQ_INT(post_vector(&s, "meta-messenger-echo.json"), 200);
	ASH_T_EQ_INT(
	    post_json(&s,
	        ENV("{" FROM_C ",\"timestamp\":2000,"
	            "\"message\":{\"mid\":\"gone\",\"is_deleted\":true}}")),
	    200);
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.messages"), "2");
	ASH_T_EQ_INT(post_vector(&s, "meta-messenger-text.json"), 200);
	ASH_T_EQ_INT(nng_recv(sub, &buf, &n, NNG_FLAG_ALLOC), 0);
	char *text = ash_xstrndup(buf, n);
	nng_free(buf, n);
	ASH_T_CONTAINS(text, t);
	ASH_T_CONTAINS(text, "\"channel\":\"messenger\"");
	/* The first announced message is the customer's, already
	 * committed. */
	char        sql[256];
	const char *id = strstr(text, "\"message_id\":\"");
	ASH_T_NOT_NULL(id);
	snprintf(sql, sizeof(sql),
	    "SELECT left(mid, 10) FROM meta_ingest.messages WHERE id = "
	    "'%.36s'",
	    id + 14);
	ASH_T_EQ_STR(q(&s, sql), "m_J8s2kQ9v");
	/* ...in its conversation, with its kind. */
	const char *conv = strstr(text, "\"conversation_id\":\"");
	ASH_T_NOT_NULL(conv);
	snprintf(sql, sizeof(sql),
	    "SELECT kind FROM meta_ingest.messages WHERE id = '%.36s' AND "
	    "conversation_id = '%.36s'",
	    id + 14, conv + 19);
	ASH_T_EQ_STR(q(&s, sql), "text");
	ASH_T_CONTAINS(text, "\"kind\":\"text\"");
	free(text);
	nng_close(sub);
	it_stack_fini(&s);
}

/* --- durability: Postgres goes away mid-POST --- */

static void
pg_script(const char *cmd, const char *dir, int port, char *out, size_t cap)
{
	char  line[512];
	FILE *p;

	/* Durable (synchronous_commit on): a crash must keep what was
	 * acknowledged. */
	snprintf(line, sizeof(line),
	    "PG_DURABLE=1 %s/scripts/pg %s %s %d 2>&1",
	    getenv("ASH_SOURCE_DIR"), cmd, dir, port);
	p = popen(line, "r");
	ASH_T_NOT_NULL(p);
	if (out != NULL) {
		out[0] = '\0';
		if (fgets(out, (int) cap, p) != NULL)
			out[strcspn(out, "\n")] = '\0';
	} else {
		while (fgets(line, sizeof(line), p) != NULL)
			;
	}
	ASH_T_EQ_INT(pclose(p), 0);
}

typedef struct bg_post {
	it_stack *s;
	long      status;
	pthread_t t;
} bg_post;

static void *
bg_post_run(void *arg)
{
	bg_post *b = arg;

	b->status = post_vector(b->s, "meta-messenger-image.json");
	return NULL;
}

typedef struct bg_json {
	it_stack    *s;
	const char  *json;
	_Atomic long status; /* 0 until answered */
	pthread_t    t;
} bg_json;

static void *
bg_json_run(void *arg)
{
	bg_json *b = arg;

	b->status = post_json(b->s, b->json);
	return NULL;
}

#define FROM_43 \
	"\"sender\":{\"id\":\"43\"},\"recipient\":{\"id\":\"" PAGE "\"}"

#define POST_A2                                                    \
	ENV("{" FROM_C ",\"timestamp\":2000,\"message\":{\"mid\":" \
	    "\"a2\",\"text\":\"a again\"}}")

/* Customers 42 and 43 each with a thread (their messages a1 and b1), then
 * 42's thread row held by a transaction of its own: returned (COMMIT and
 * PQfinish it). */
static PGconn *
threads_of_42_and_43_locked(it_stack *s, const char *t)
{
	PGconn *lock;

	channel(s, t, "messenger", PAGE);
	ASH_T_EQ_INT(post_json(s,
	                 ENV("{" FROM_C ",\"timestamp\":1000,"
	                     "\"message\":{\"mid\":\"a1\","
	                     "\"text\":\"a\"}}")),
	    200);
	ASH_T_EQ_INT(post_json(s,
	                 ENV("{" FROM_43 ",\"timestamp\":1000,"
	                     "\"message\":{\"mid\":\"b1\","
	                     "\"text\":\"b\"}}")),
	    200);
	lock = PQconnectdb(s->dsn);
	PQclear(PQexec(lock,
	    "BEGIN; SELECT 1 FROM meta_ingest.conversations v "
	    "JOIN meta_ingest.participants p ON p.id = v.participant_id "
	    "WHERE p.external_id = '42' FOR UPDATE OF v"));
	return lock;
}

/* threads_of_42_and_43_locked, and a POST for 42 started in the background
 * (in a): its commit waits for the row. */
static PGconn *
stuck_commit(it_stack *s, const char *t, bg_json *a)
{
	PGconn *lock = threads_of_42_and_43_locked(s, t);

	a->s    = s;
	a->json = POST_A2;
	pthread_create(&a->t, NULL, bg_json_run, a);
	it_pg_wait_lock(s->dsn, "ashoon_meta_ingest");
	return lock;
}

/* Lets the stuck commit go: the background POSTs (b may be NULL) are then
 * answered 200, and both customers' four messages are stored once. */
static void
unstick(it_stack *s, PGconn *lock, bg_json *a, bg_json *b)
{
	PQclear(PQexec(lock, "COMMIT"));
	PQfinish(lock);
	pthread_join(a->t, NULL);
	ASH_T_EQ_INT(a->status, 200);
	if (b != NULL) {
		pthread_join(b->t, NULL);
		ASH_T_EQ_INT(b->status, 200);
	}
	ASH_T_EQ_STR(q(s,
	                 "SELECT string_agg(mid, ',' ORDER BY mid) "
	                 "FROM meta_ingest.messages"),
	    "a1,a2,b1,b2");
}

#define POST_B2                                                     \
	ENV("{" FROM_43 ",\"timestamp\":2000,\"message\":{\"mid\":" \
	    "\"b2\",\"text\":\"b again\"}}")

/* 42's commit stuck (stuck_commit) in a stack started with env: 43's POST
 * is committed beside it, and answered first. */
static void
b2_goes_beside_the_stuck_commit(const char *tag, const char *const *env)
{
	it_stack s;
	char     t[64], k[128];
	bg_json  a = {0};
	PGconn  *lock;

	start_env(&s, tag, t, k, env);
	lock = stuck_commit(&s, t, &a);
	ASH_T_EQ_INT(post_json(&s, POST_B2), 200);
	long before = a.status;
	unstick(&s, lock, &a, NULL);
	ASH_T_EQ_INT(before, 0);
	it_stack_fini(&s);
}

/* More than one commit in flight (ASHOON_META_BATCH_INFLIGHT): a batch
 * stuck on one conversation's row does not hold back the POSTs of another
 * conversation, when few wait (ASHOON_META_BATCH_OVERLAP), even in the same
 * lane (one lane here): they go beside it once it has run
 * ASHOON_META_BATCH_STAGGER_MS. */
ASH_TEST(f6_a_stuck_commit_does_not_hold_back_another_conversation)
{
	b2_goes_beside_the_stuck_commit("mi_inflight",
	    (const char *const[]) {"ASHOON_META_BATCH_LANES=1", NULL});
}

/* meta-ingest's gauge of POSTs waiting for their commit reads n (waits up
 * to 5 s for it). */
static void
waiting_reaches(it_stack *s, int n)
{
	char line[64];

	snprintf(line, sizeof(line), "ashoon_meta_webhook_waiting %d\n", n);
	for (int i = 0; i < 500; i++) {
		it_resp r;
		bool    seen;

		mi_metrics_get(s, &r);
		seen = r.body != NULL && strstr(r.body, line) != NULL;
		it_resp_fini(&r);
		if (seen)
			return;
		usleep(10000);
	}
	ASH_T_FAILF("meta-ingest never had %d POST(s) waiting", n);
}

/* 43's POST b2 started in the background (in b), once meta-ingest has it
 * queued, and 300 ms later (beside a commit, it would take a few ms). */
static void
b2_queued(it_stack *s, bg_json *b)
{
	b->s    = s;
	b->json = POST_B2;
	pthread_create(&b->t, NULL, bg_json_run, b);
	waiting_reaches(s, 1);
	usleep(300000);
}

/* 42's commit stuck (stuck_commit) in a stack started with env: 43's POST
 * then waits (it is queued, and unanswered 300 ms later), and is committed
 * once 42's is. */
static void
b2_waits_for_the_stuck_commit(const char *tag, const char *const *env)
{
	it_stack s;
	char     t[64], k[128];
	bg_json  a = {0}, b = {0};
	PGconn  *lock;

	start_env(&s, tag, t, k, env);
	lock = stuck_commit(&s, t, &a);
	b2_queued(&s, &b);
	long before = b.status;
	unstick(&s, lock, &a, &b);
	ASH_T_EQ_INT(before, 0);
	waiting_reaches(&s, 0);
	it_stack_fini(&s);
}

/* As many POSTs waiting in a lane as ASHOON_META_BATCH_OVERLAP: no commit
 * starts beside the lane's running one; they wait for it and go together
 * (with the default, a long queue at full load makes one big commit
 * instead of two halves contending for the same thread rows). One lane
 * here: customers 42 and 43 would be in two. */
ASH_TEST(f6_a_long_queue_waits_for_the_running_commit)
{
	b2_waits_for_the_stuck_commit("mi_overlap",
	    (const char *const[]) {"ASHOON_META_BATCH_OVERLAP=1",
	        "ASHOON_META_BATCH_LANES=1", NULL});
}

/* Lanes (ASHOON_META_BATCH_LANES=2, the default) by conversation:
 * customers 42 and 43 are in two, so 43's POST is committed beside 42's
 * stuck one although a lane's queue waits for a call holding its hits
 * (ASHOON_META_BATCH_OVERLAP=1; with one lane it waits: above). */
ASH_TEST(f6_a_conversation_s_lane_does_not_hold_back_another_lane)
{
	b2_goes_beside_the_stuck_commit("mi_lanes",
	    (const char *const[]) {"ASHOON_META_BATCH_OVERLAP=1", NULL});
}

/* One call at a time in all lanes (ASHOON_META_BATCH_INFLIGHT=1): 43's
 * POST, in the other lane, waits for 42's stuck commit, and is committed
 * when it returns - with nothing else arriving to start it. */
ASH_TEST(f6_a_lane_waiting_for_the_connection_goes_when_another_returns)
{
	b2_waits_for_the_stuck_commit("mi_lanes1",
	    (const char *const[]) {"ASHOON_META_BATCH_INFLIGHT=1", NULL});
}

/* A commit starts beside a running one only once that one has run
 * ASHOON_META_BATCH_STAGGER_MS (here 1 s): 43's POST, in the other lane,
 * waits (unanswered 300 ms later), then is committed beside 42's stuck
 * commit once that has run 1 s, before it returns. */
ASH_TEST(f6_a_commit_starts_beside_another_only_once_that_has_run_the_stagger)
{
	it_stack s;
	char     t[64], k[128];
	bg_json  a = {0}, b = {0};
	PGconn  *lock;

	start_env(&s, "mi_stagger", t, k,
	    (const char *const[]) {"ASHOON_META_BATCH_STAGGER_MS=1000", NULL});
	lock = stuck_commit(&s, t, &a);
	b2_queued(&s, &b);
	ASH_T_EQ_INT(b.status, 0);
	for (int i = 0; i < 500 && b.status == 0; i++)
		usleep(10000);
	ASH_T_EQ_INT(b.status, 200);
	ASH_T_EQ_INT(a.status, 0);
	unstick(&s, lock, &a, &b);
	it_stack_fini(&s);
}

/* A connection to the gateway, made before its request is written. */
static int
gw_connect(it_stack *s)
{
	struct sockaddr_in a  = {.sin_family = AF_INET};
	int                fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_port        = htons((uint16_t) s->http_port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASH_T_TRUE(fd >= 0);
	ASH_T_EQ_INT(connect(fd, (struct sockaddr *) &a, sizeof(a)), 0);
	return fd;
}

/* Writes a signed webhook POST of json on fd. */
static void
gw_write_webhook(int fd, const char *json)
{
	char    req[2048], sig[80];
	int     n;
	ssize_t w;

	it_webhook_signature(json, strlen(json), SECRET, sig);
	n = snprintf(req, sizeof(req),
	    "POST /webhooks/meta HTTP/1.1\r\nHost: it\r\n"
	    "Content-Type: application/json\r\nX-Hub-Signature-256: %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
	    sig, strlen(json), json);
	ASH_T_TRUE(n > 0 && n < (int) sizeof(req));
	w = write(fd, req, (size_t) n);
	ASH_T_EQ_INT(w, n);
}

/* The status of the answer on fd (read up to 10 s), then closes fd. */
static long
gw_read_status(int fd)
{
	char           buf[256];
	size_t         got = 0;
	long           st  = 0;
	struct timeval tv  = {10, 0};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (got < 12) {
		ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t) r;
	}
	buf[got] = '\0';
	if (got >= 12 && strncmp(buf, "HTTP/1.1 ", 9) == 0)
		st = strtol(buf + 9, NULL, 10);
	close(fd);
	return st;
}

/* Writes json on fa and json2 on fb while the gateway is stopped, so that
 * it reads both in one loop turn and sends them to meta-ingest in one bus
 * frame (fa and fb were connected, and accepted, before). */
static void
gw_write_two(it_stack *s, int fa, const char *json, int fb, const char *json2)
{
	usleep(200000); /* the connections accepted */
	it_proc_signal(s->procs[ASH_SVC_GATEWAY], SIGSTOP);
	gw_write_webhook(fa, json);
	gw_write_webhook(fb, json2);
	it_proc_signal(s->procs[ASH_SVC_GATEWAY], SIGCONT);
}

/* The lanes with no commit running go together, in one call: 42's POST and
 * 43's, which are in two lanes, read by the gateway in one loop turn (it
 * is stopped while both are written) and so coming in one bus frame, are
 * committed in one call - their journal rows numbered one after the other
 * (a call numbers its hits from a block of 1024 ids of its own). */
ASH_TEST(f6_lanes_without_a_running_commit_go_in_one_call)
{
	it_stack s;
	char     t[64], k[128];
	PGconn  *lock;
	int      fa, fb;

	start(&s, "mi_merge", t, k);
	lock = threads_of_42_and_43_locked(&s, t);
	PQclear(PQexec(lock, "COMMIT"));
	PQfinish(lock);
	fa = gw_connect(&s);
	fb = gw_connect(&s);
	gw_write_two(&s, fa, POST_A2, fb, POST_B2);
	ASH_T_EQ_INT(gw_read_status(fa), 200);
	ASH_T_EQ_INT(gw_read_status(fb), 200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT string_agg(mid, ',' ORDER BY mid) "
	                 "FROM meta_ingest.messages"),
	    "a1,a2,b1,b2");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT max(id) - min(id) FROM (SELECT id FROM "
	                 "meta_ingest.journal ORDER BY id DESC LIMIT 2) x"),
	    "1");
	it_stack_fini(&s);
}

/* A commit stuck with the POSTs of both lanes (they came together): after
 * the stagger each lane gets a call of its own beside it (three at once,
 * ASHOON_META_BATCH_INFLIGHT's default), so 43's next POST is committed
 * although 42's next one, in the first of them, is stuck too. (Its answer
 * waits for the bus frame it came in, which 42's shares.) */
ASH_TEST(f6_a_stuck_commit_of_both_lanes_holds_back_neither_lane_s_next)
{
	it_stack s;
	char     t[64], k[128];
	PGconn  *lock;
	int      fa, fb, fc, fd;
	bool     stored = false;

	start(&s, "mi_stuck2", t, k);
	lock = threads_of_42_and_43_locked(&s, t);
	fa   = gw_connect(&s);
	fb   = gw_connect(&s);
	gw_write_two(&s, fa, POST_A2, fb, POST_B2);
	it_pg_wait_lock(s.dsn, "ashoon_meta_ingest");
	fc = gw_connect(&s);
	fd = gw_connect(&s);
	gw_write_two(&s, fc,
	    ENV("{" FROM_C ",\"timestamp\":3000,\"message\":{\"mid\":"
	        "\"a3\",\"text\":\"a once more\"}}"),
	    fd,
	    ENV("{" FROM_43 ",\"timestamp\":3000,\"message\":{\"mid\":"
	        "\"b3\",\"text\":\"b once more\"}}"));
	/* Well within the 5 s after which the stuck commit is cancelled. */
	for (int i = 0; i < 200 && !stored; i++) {
		stored =
		    strcmp(q(&s,
		               "SELECT count(*) FROM meta_ingest.messages "
		               "WHERE mid = 'b3'"),
		        "1") == 0;
		if (!stored)
			usleep(10000);
	}
	ASH_T_TRUE(stored);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT string_agg(mid, ',' ORDER BY mid) "
	                 "FROM meta_ingest.messages"),
	    "a1,b1,b3");
	PQclear(PQexec(lock, "COMMIT"));
	PQfinish(lock);
	ASH_T_EQ_INT(gw_read_status(fa), 200);
	ASH_T_EQ_INT(gw_read_status(fb), 200);
	ASH_T_EQ_INT(gw_read_status(fc), 200);
	ASH_T_EQ_INT(gw_read_status(fd), 200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT string_agg(mid, ',' ORDER BY mid) "
	                 "FROM meta_ingest.messages"),
	    "a1,a2,a3,b1,b2,b3");
	it_stack_fini(&s);
}

/* Acknowledged only after commit: a batch whose commit itself fails (here
 * a deferred check, as a constraint checked at commit would), after its
 * statements succeeded, has stored nothing, and its POST is not answered
 * 200: it is tried again alone and, failing again, answered 500 and
 * journaled with its body. */
ASH_TEST(f6_a_batch_failing_at_commit_stores_nothing)
{
	it_stack s;
	char     t[64], k[128];

	start(&s, "mi_commitfail", t, k);
	channel(&s, t, "messenger", PAGE);
	/* A deferred trigger: it runs when the transaction commits. */
	q(&s,
	    "CREATE FUNCTION meta_ingest.at_commit() RETURNS trigger "
	    "LANGUAGE plpgsql AS $$ BEGIN IF NEW.mid = 'a2' THEN RAISE "
	    "EXCEPTION 'refused at commit'; END IF; RETURN NULL; END $$; "
	    "CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON "
	    "meta_ingest.messages DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
	    "EXECUTE FUNCTION meta_ingest.at_commit()");
	ASH_T_EQ_INT(post_json(&s, POST_A2), 500);
	ASH_T_EQ_INT(post_json(&s, POST_B2), 200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT string_agg(mid, ',' ORDER BY mid) "
	                 "FROM meta_ingest.messages"),
	    "b2");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT count(*) FROM meta_ingest.journal WHERE "
	                 "outcome = 'failed' AND position('a again' in "
	                 "convert_from(raw, 'UTF8')) > 0"),
	    "1");
	it_stack_fini(&s);
}

/* A conversation deleted while a batch for it is being stored (no foreign
 * key checks a message's conversation since 0011_thread_lock.sql; the
 * batch share-locks its threads instead): the batch waits for the delete,
 * then fails, and its POST is answered 500. Nothing is written into the
 * deleted thread, and Meta's redelivery is stored once, in a new one. */
ASH_TEST(p16_a_conversation_deleted_under_a_batch_gets_none_of_it)
{
	it_stack s;
	char     t[64], k[128];
	bg_json  a = {0};
	PGconn  *del;

	start(&s, "mi_delrace", t, k);
	channel(&s, t, "messenger", PAGE);
	ASH_T_EQ_INT(post_json(&s,
	                 ENV("{" FROM_C ",\"timestamp\":1000,"
	                     "\"message\":{\"mid\":\"a1\","
	                     "\"text\":\"a\"}}")),
	    200);
	/* The person's delete, cascading to the conversation and its
	 * messages, held open. */
	del = PQconnectdb(s.dsn);
	PQclear(PQexec(del,
	    "BEGIN; DELETE FROM meta_ingest.participants "
	    "WHERE external_id = '42'"));
	a.s    = &s;
	a.json = POST_A2;
	pthread_create(&a.t, NULL, bg_json_run, &a);
	it_pg_wait_lock(s.dsn, "ashoon_meta_ingest");
	PQclear(PQexec(del, "COMMIT"));
	PQfinish(del);
	pthread_join(a.t, NULL);
	ASH_T_EQ_INT(a.status, 500);
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.messages"), "0");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT outcome FROM meta_ingest.journal "
	                 "ORDER BY id DESC LIMIT 1"),
	    "failed");
	ASH_T_EQ_INT(post_json(&s, POST_A2), 200);
	ASH_T_EQ_STR(q(&s,
	                 "SELECT string_agg(m.mid, ',') FROM "
	                 "meta_ingest.messages m JOIN "
	                 "meta_ingest.conversations v ON v.id = "
	                 "m.conversation_id JOIN meta_ingest.participants p "
	                 "ON p.id = v.participant_id WHERE p.external_id = "
	                 "'42'"),
	    "a2");
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.messages"), "1");
	it_stack_fini(&s);
}

/* SQL that runs setup, then ingest_batch() on one text message from
 * customer with mid (true once it returns). */
static void
batch_sql(char *out, size_t cap, const char *setup, const char *customer,
    const char *mid)
{
	snprintf(out, cap,
	    "%s SELECT ingest_batch('{\"app_id\": \"\", \"hits\": [{\"n\": "
	    "0, \"received_ms\": 1796000000000, \"signature\": \"valid\", "
	    "\"object\": \"page\", \"page_ids\": [\"" PAGE "\"], "
	    "\"entries\": 1, \"events\": 1, \"kinds\": {\"message\": 1}, "
	    "\"bytes\": 1, \"outcome\": \"stored\"}], \"events\": "
	    "[{\"hit\": 0, \"object\": \"page\", \"page\": \"" PAGE "\", "
	    "\"customer\": \"%s\", \"ts_ms\": 1796000000000, \"type\": "
	    "\"message\", \"mid\": \"%s\", \"kind\": \"text\", "
	    "\"text\": \"hi\", \"attachments\": []}]}') IS NOT NULL",
	    setup, customer, mid);
}

/* Two batches for one thread in flight: the second does its work (the
 * message rows) and waits for the first only at the thread rows' lock,
 * at its end (migrations/0006_ingest_overlap.sql, 1.). Before, it waited
 * at its second statement, an INSERT ... ON CONFLICT on the thread row the
 * first had updated, so the two ran one after the other. */
ASH_TEST(f6_a_second_batch_for_a_thread_waits_only_at_the_thread_lock)
{
	it_stack    s;
	char        t[64], k[128], sql[1200];
	const char *ctx;

	start(&s, "mi_overlap", t, k);
	channel(&s, t, "messenger", PAGE);
	batch_sql(
	    sql, sizeof(sql), "SET search_path = meta_ingest;", "77", "ov1");
	ASH_T_EQ_STR(q(&s, sql), "t"); /* the person and the thread */

	PGconn *first = PQconnectdb(s.dsn), *second = PQconnectdb(s.dsn);
	ASH_T_EQ_INT(PQstatus(first), CONNECTION_OK);
	ASH_T_EQ_INT(PQstatus(second), CONNECTION_OK);
	batch_sql(sql, sizeof(sql),
	    "BEGIN; SET LOCAL search_path = meta_ingest;", "77", "ov2");
	PGresult *r1 = PQexec(first, sql); /* in flight: not committed */
	ASH_T_EQ_INT(PQresultStatus(r1), PGRES_TUPLES_OK);
	batch_sql(sql, sizeof(sql),
	    "SET search_path = meta_ingest; SET lock_timeout = '500ms';", "77",
	    "ov3");
	PGresult *r2 = PQexec(second, sql);
	ASH_T_EQ_INT(PQresultStatus(r2), PGRES_FATAL_ERROR);
	ASH_T_EQ_STR(PQresultErrorField(r2, PG_DIAG_SQLSTATE), "55P03");
	ctx = PQresultErrorField(r2, PG_DIAG_CONTEXT);
	ASH_T_CONTAINS(ctx, "FOR NO KEY UPDATE");
	ASH_T_NOT_CONTAINS(ctx, "INSERT INTO");
	PQclear(r1);
	PQclear(r2);
	PQclear(PQexec(first, "ROLLBACK"));
	PQfinish(first);
	PQfinish(second);
	it_stack_fini(&s);
}

ASH_TEST(f6_postgres_down_mid_post_gives_5xx_and_redelivery_is_stored_once)
{
	it_stack s;
	char     t[64], k[128], dir[64], dsn[256], sql[128];
	int      port = it_free_port();
	bg_post  b;

	/* A cluster of our own: stopping the shared one would break the
	 * tests running beside this one. */
	snprintf(dir, sizeof(dir), "/tmp/ash-it-pgdown-%d", (int) getpid());
	pg_script("start", dir, port, dsn, sizeof(dsn));
	setenv("ASH_IT_PG", dsn, 1);
	start(&s, "mi_pgdown", t, k);
	channel(&s, t, "messenger", PAGE);
	ASH_T_EQ_INT(post_vector(&s, "meta-messenger-text.json"), 200);
	/* Hold the messages table so the next commit is in flight... */
	PGconn *lock = PQconnectdb(s.dsn);
	PQclear(PQexec(lock,
	    "BEGIN; LOCK TABLE meta_ingest.messages IN "
	    "ACCESS EXCLUSIVE MODE"));
	b = (bg_post) {&s, 0, 0};
	pthread_create(&b.t, NULL, bg_post_run, &b);
	it_pg_wait_lock(dsn, "ashoon_meta_ingest");
	/* ...and take Postgres away under it, as a crash does. A fast
	 * shutdown would not do: it ends the lock's holder first, and the
	 * waiting commit sometimes went through before its own end came
	 * (the POST then got its 200). */
	pg_script("crash", dir, port, NULL, 0);
	PQfinish(lock);
	pthread_join(b.t, NULL);
	if (b.status < 500 || b.status > 599)
		ASH_T_FAILF(
		    "the POST under the lock got %ld, not a 5xx", b.status);
	ASH_T_TRUE(post_vector(&s, "meta-messenger-image.json") >= 500);
	pg_script("up", dir, port, NULL, 0);
	/* Meta redelivers until it gets a 200: the pool reconnects with
	 * backoff, so the first tries may still be 503. */
	long st = 0;
	for (int i = 0; i < 100 && st != 200; i++) {
		st = post_vector(&s, "meta-messenger-image.json");
		if (st != 200)
			usleep(100000);
	}
	ASH_T_EQ_INT(st, 200);
	ASH_T_EQ_INT(post_vector(&s, "meta-messenger-image.json"), 200);
	/* Stored once, and nothing half-stored from the failed attempts. */
	ASH_T_EQ_STR(q(&s, "SELECT count(*) FROM meta_ingest.messages"), "2");
	ASH_T_EQ_STR(q(&s,
	                 "SELECT count(*) FROM meta_ingest.messages WHERE "
	                 "kind = 'attachment'"),
	    "1");
	ASH_T_EQ_STR(
	    q(&s, "SELECT count(*) FROM meta_ingest.reply_jobs"), "2");
	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM meta_ingest.journal "
	    "WHERE outcome = 'stored'");
	ASH_T_EQ_STR(q(&s, sql), "3");
	it_stack_fini(&s);
	it_cleanup();
	pg_script("stop", dir, port, NULL, 0);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(f6_verification_handshake_echoes_the_challenge),
    ASH_TEST_ENTRY(
        f6_signature_missing_wrong_or_other_secret_stores_only_a_journal_line),
    ASH_TEST_ENTRY(f6_every_vector_is_stored_with_its_kind),
    ASH_TEST_ENTRY(f6_text_full_of_delimiters_is_stored_exactly),
    ASH_TEST_ENTRY(f6_redelivered_and_concurrent_duplicates_are_stored_once),
    ASH_TEST_ENTRY(f6_receipts_in_any_order_only_move_forward),
    ASH_TEST_ENTRY(f6_our_echo_dates_the_message_from_its_send),
    ASH_TEST_ENTRY(f6_thread_owner_follows_the_newest_handover_event),
    ASH_TEST_ENTRY(
        f6_a_pass_to_us_and_the_next_message_in_one_post_get_a_reply_job),
    ASH_TEST_ENTRY(f6_an_edit_that_missed_its_message_is_applied_by_the_sweep),
    ASH_TEST_ENTRY(f6_the_database_still_refuses_values_outside_the_lists),
    ASH_TEST_ENTRY(f6_a_reply_from_metas_inbox_cancels_the_jobs_it_answers),
    ASH_TEST_ENTRY(f6_edit_unsend_reaction_and_unreact_in_any_order),
    ASH_TEST_ENTRY(f6_signed_unparseable_body_is_kept_raw_and_acknowledged),
    ASH_TEST_ENTRY(
        f6_a_poison_post_is_kept_raw_alone_and_others_in_its_batch_stored),
    ASH_TEST_ENTRY(
        f6_an_unstorable_post_is_acknowledged_only_with_its_journal_line),
    ASH_TEST_ENTRY(f6_every_fuzzed_signed_body_is_acknowledged_and_journaled),
    ASH_TEST_ENTRY(f6_journal_answers_did_meta_call_per_tenant),
    ASH_TEST_ENTRY(
        f6_journal_pages_back_and_is_purged_with_its_listing_after_its_days),
    ASH_TEST_ENTRY(f6_journal_lists_a_batch_through_one_span_per_tenant),
    ASH_TEST_ENTRY(f6_a_message_and_its_unsend_in_one_batch_keep_no_content),
    ASH_TEST_ENTRY(
        f6_journal_lists_each_hit_of_a_page_by_its_object_and_signature),
    ASH_TEST_ENTRY(
        f6_upgrades_from_0008_keep_older_hits_listed_and_ingest_working),
    ASH_TEST_ENTRY(conv_list_pages_through_every_conversation_once),
    ASH_TEST_ENTRY(
        conv_list_reads_a_big_inbox_in_activity_order_through_its_index),
    ASH_TEST_ENTRY(conv_messages_page_back_in_time_through_every_message_once),
    ASH_TEST_ENTRY(p23_another_tenant_sees_nothing_of_a_conversation),
    ASH_TEST_ENTRY(p16_deleting_a_conversation_removes_all_of_it),
    ASH_TEST_ENTRY(f6_a_body_in_base64_from_an_older_gateway_is_stored_alike),
    ASH_TEST_ENTRY(f2_reply_jobs_are_claimed_once_and_completed),
    ASH_TEST_ENTRY(
        p29_limited_data_use_flag_is_kept_shown_and_handed_to_claimers),
    ASH_TEST_ENTRY(f2_new_inbound_message_is_announced_after_commit),
    ASH_TEST_ENTRY(f6_a_stuck_commit_does_not_hold_back_another_conversation),
    ASH_TEST_ENTRY(f6_a_long_queue_waits_for_the_running_commit),
    ASH_TEST_ENTRY(f6_a_conversation_s_lane_does_not_hold_back_another_lane),
    ASH_TEST_ENTRY(
        f6_a_lane_waiting_for_the_connection_goes_when_another_returns),
    ASH_TEST_ENTRY(
        f6_a_commit_starts_beside_another_only_once_that_has_run_the_stagger),
    ASH_TEST_ENTRY(f6_lanes_without_a_running_commit_go_in_one_call),
    ASH_TEST_ENTRY(
        f6_a_stuck_commit_of_both_lanes_holds_back_neither_lane_s_next),
    ASH_TEST_ENTRY(f6_a_batch_failing_at_commit_stores_nothing),
    ASH_TEST_ENTRY(p16_a_conversation_deleted_under_a_batch_gets_none_of_it),
    ASH_TEST_ENTRY(
        f6_a_second_batch_for_a_thread_waits_only_at_the_thread_lock),
    ASH_TEST_ENTRY(
        f6_postgres_down_mid_post_gives_5xx_and_redelivery_is_stored_once))
