/*
 * mi_send.c - conv.send and conv.resend: the outbound row first.
 *
 * conv.send writes the outbound row ('queued', or 'refused' with its
 * reason when the window policy says no) and only then answers; the
 * sender (mi_sender.c) delivers it. The queuing statement also NOTIFYs
 * mi_outbox, so every replica's sender wakes at commit. A client_id makes
 * a retried request return the row it already made. conv.resend puts a
 * failed message back in the queue, after the same policy check.
 */
#include "mi.h"

#include <ashoon/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GONE_MSG \
	"the conversation's channel is disconnected: reconnect it to send"

/* --- conv.send ---------------------------------------------------------- */

/* One conv.send / conv.resend in progress. Strings borrow from the call's
 * request, which lives until the call is answered. */
typedef struct scall {
	mi_ctx       *mi;
	ash_bus_call *call;
	const char   *tenant, *conv, *text, *client_id;
	const char   *reply_to, *message_id;
	char         *att_json; /* [{"type","url"}] */
	mi_author     author;
	char          state[16]; /* resend: the state it had */
	mi_policy     pol;
} scall;

static void
scall_free(scall *c)
{
	free(c->att_json);
	free(c);
}

/* Replies with the stored message, or the refusal naming it. The
 * strings c borrows from the request die with the reply: announce first,
 * then reply, then wake the sender. */
static void
scall_answer(scall *c, const PGresult *r, int status)
{
	mi_ctx     *mi     = c->mi;
	const char *id     = PQgetvalue(r, 0, 0);
	const char *state  = PQgetvalue(r, 0, 13);
	bool        queued = strcmp(state, "queued") == 0;
	char        msg[600];

	if (strcmp(state, "refused") == 0) {
		snprintf(msg, sizeof(msg),
		    "messaging window closed: %s (message %s was stored as "
		    "refused)",
		    PQgetvalue(r, 0, 17), id);
		ash_bus_call_fail(c->call, ASH_ECONFLICT, msg);
		return;
	}
	if (queued)
		mi_publish_state(
		    mi, c->tenant, PQgetvalue(r, 0, 1), id, state);
	cJSON *b = cJSON_CreateObject();
	cJSON_AddItemToObject(b, "message", mi_message_json(r, 0));
	ash_bus_call_reply(c->call, status, b);
	if (queued)
		mi_sender_kick(mi);
}

static void
on_existing(void *arg, ash_err rv, const PGresult *res)
{
	scall *c = arg;

	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK)
		ash_bus_call_fail(c->call, rv,
		    rv == ASH_ENOTFOUND ? "no such conversation" : NULL);
	else
		scall_answer(c, res, 200);
	scall_free(c);
}

/* The client_id was used before: answer with that message as it is. */
static void
send_existing(scall *c)
{
	static const char sql[] =
	    "SELECT " MI_MESSAGE_COLUMNS " FROM messages m "
	    "WHERE m.conversation_id = $1 AND m.client_id = $2 "
	    "AND m.tenant_id = $3";
	const char *p[] = {c->conv, c->client_id, c->tenant};

	if (ash_db_query(ash_svc_db(c->mi->svc), sql, 3, p, on_existing, c) !=
	    ASH_OK)
		on_existing(c, ASH_EUNAVAIL, NULL);
}

static void
on_inserted(void *arg, ash_err rv, const PGresult *res)
{
	scall *c = arg;

	if (rv == ASH_OK && PQntuples(res) == 0 && c->client_id != NULL) {
		send_existing(c); /* ON CONFLICT: the key was used before */
		return;
	}
	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK) {
		ash_bus_call_fail(c->call, rv,
		    rv == ASH_ENOTFOUND ? "no such conversation" : NULL);
	} else {
		if (!c->pol.allowed)
			mi_sender_count_refused(c->mi);
		scall_answer(c, res, 202);
	}
	scall_free(c);
}

/* Writes the outbound row (and, when queued, the NOTIFY that wakes every
 * replica's sender at commit) in one statement. The conversation's row is
 * share-locked, so that a delete of it waits for this insert or leaves it
 * nothing to insert into (no foreign key checks it: 0011_thread_lock.sql).
 */
static void
send_insert(scall *c)
{
	static const char sql[] =
	    "WITH ins AS (INSERT INTO messages (tenant_id, channel_id, "
	    "conversation_id, direction, kind, text, attachments, "
	    "reply_to_mid, author, author_ref, ai_generated, sent_at, state, "
	    "messaging_type, tag, client_id, failure_reason) "
	    "SELECT v.tenant_id, v.channel_id, v.id, 'out', $3, $4, "
	    "$5::jsonb, $6, $7::text, $8, $7::text = 'ai', now(), $9, "
	    "$10, $11, $12, $13 "
	    "FROM conversations v WHERE v.id = $1 AND v.tenant_id = $2 "
	    "FOR KEY SHARE OF v "
	    "ON CONFLICT (conversation_id, client_id) WHERE client_id IS NOT "
	    "NULL "
	    "DO NOTHING "
	    "RETURNING *), "
	    "wake AS (SELECT pg_notify('" MI_OUTBOX_CHANNEL "', '') FROM ins "
	    "WHERE ins.state = 'queued') "
	    "SELECT " MI_MESSAGE_COLUMNS ", (SELECT count(*) FROM wake) "
	    "FROM ins m";
	const ash_request *req = ash_bus_call_req(c->call);
	const char *p[] = {c->conv, c->tenant, c->text ? "text" : "attachment",
	    c->text, c->att_json ? c->att_json : "[]", c->reply_to,
	    c->author == MI_AUTHOR_AI ? "ai" : "agent", req->user,
	    c->pol.allowed ? "queued" : "refused", c->pol.messaging_type,
	    c->pol.tag, c->client_id, c->pol.refusal};

	if (ash_db_query(ash_svc_db(c->mi->svc), sql, 13, p, on_inserted, c) !=
	    ASH_OK)
		on_inserted(c, ASH_EUNAVAIL, NULL);
}

/* The conversation's channel kind and window: check the text, decide. */
static void
on_send_context(void *arg, ash_err rv, const PGresult *res)
{
	scall *c = arg;
	char   why[256];

	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK) {
		ash_bus_call_fail(c->call, rv,
		    rv == ASH_ENOTFOUND ? "no such conversation" : NULL);
		scall_free(c);
		return;
	}
	if (PQgetvalue(res, 0, 3)[0] == 't') {
		ash_bus_call_fail(c->call, ASH_ECONFLICT, GONE_MSG);
		scall_free(c);
		return;
	}
	if (c->text != NULL &&
	    mi_send_text_check(
	        PQgetvalue(res, 0, 0), c->text, why, sizeof(why)) != ASH_OK) {
		ash_bus_call_fail(c->call, ASH_EINVAL, why);
		scall_free(c);
		return;
	}
	c->pol = mi_policy_decide(
	    c->author, mi_col_ms(res, 0, 2), mi_col_ms(res, 0, 1));
	send_insert(c);
}

/* Checks the optional attachment {type, url}; builds the stored JSON. */
static bool
attachment_ok(scall *c, const cJSON *att, const char **why)
{
	static const char *const types[] = {"image", "video", "audio", "file"};
	const char              *type    = ash_json_str(att, "type");
	const char              *url     = ash_json_str(att, "url");
	bool                     ok      = false;

	for (size_t i = 0; type && i < sizeof(types) / sizeof(types[0]); i++)
		ok = ok || strcmp(type, types[i]) == 0;
	*why = "attachment.type must be image, video, audio or file";
	if (!ok)
		return false;
	*why = "attachment.url must be an http(s) URL of at most 2000 bytes";
	if (url == NULL || strlen(url) > 2000 ||
	    (strncmp(url, "https://", 8) != 0 &&
	        strncmp(url, "http://", 7) != 0))
		return false;
	cJSON *arr = cJSON_CreateArray(), *o = cJSON_CreateObject();
	ash_json_add_str(o, "type", type);
	ash_json_add_str(o, "url", url);
	cJSON_AddItemToArray(arr, o);
	c->att_json = ash_json_render(arr);
	cJSON_Delete(arr);
	return true;
}

/* Reads and checks conv.send's body into c; NULL or the reason. */
static const char *
send_parse(scall *c, const cJSON *b)
{
	const cJSON *att = cJSON_GetObjectItemCaseSensitive(b, "attachment");
	const char  *author = ash_json_str(b, "author");
	const char  *why    = NULL;

	c->conv      = ash_json_str(b, "conversation_id");
	c->text      = ash_json_str(b, "text");
	c->client_id = ash_json_str(b, "client_id");
	c->reply_to  = ash_json_str(b, "reply_to");
	if (author != NULL && strcmp(author, "ai") != 0 &&
	    strcmp(author, "agent") != 0)
		return "author must be \"agent\" or \"ai\"";
	/* Without an author a person sends, unless the caller is a service
	 * (ai-router): automation never gets the human agent's tag. */
	if (author == NULL) {
		const char *role = ash_bus_call_req(c->call)->role;
		author           = role != NULL && strcmp(role, "service") == 0
		              ? "ai"
		              : "agent";
	}
	c->author = strcmp(author, "ai") == 0 ? MI_AUTHOR_AI : MI_AUTHOR_AGENT;
	if ((c->text != NULL) == (att != NULL))
		return "exactly one of text and attachment is required";
	if (att != NULL && !attachment_ok(c, att, &why))
		return why;
	if (c->client_id != NULL &&
	    (*c->client_id == '\0' || strlen(c->client_id) > 128))
		return "client_id must be 1-128 bytes";
	if (c->reply_to != NULL &&
	    (*c->reply_to == '\0' || strlen(c->reply_to) > 256))
		return "reply_to must be a message mid (1-256 bytes)";
	return NULL;
}

static scall *
scall_new(mi_ctx *mi, ash_bus_call *call, const char *tenant)
{
	scall *c  = ash_xcalloc(1, sizeof(*c));
	c->mi     = mi;
	c->call   = call;
	c->tenant = tenant;
	return c;
}

static void
on_conv_send(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "SELECT c.kind, "
	    "(extract(epoch from v.last_customer_msg_at) * 1000)::bigint, "
	    "(extract(epoch from now()) * 1000)::bigint, "
	    "c.disconnected_at IS NOT NULL "
	    "FROM conversations v JOIN channels c ON c.id = v.channel_id "
	    "WHERE v.id = $1 AND v.tenant_id = $2";
	const char *tenant = mi_call_tenant(call), *why;
	scall      *c;

	if (tenant == NULL)
		return;
	c = scall_new(arg, call, tenant);
	if ((why = send_parse(c, ash_bus_call_req(call)->body)) != NULL) {
		ash_bus_call_fail(call, ASH_EINVAL, why);
		scall_free(c);
		return;
	}
	const char *p[] = {c->conv, tenant};
	if (ash_db_query(ash_svc_db(c->mi->svc), sql, 2, p, on_send_context,
	        c) != ASH_OK)
		on_send_context(c, ASH_EUNAVAIL, NULL);
}

/* --- conv.resend -------------------------------------------------------- */

static void
on_requeued(void *arg, ash_err rv, const PGresult *res)
{
	scall *c = arg;

	if (rv == ASH_OK && PQntuples(res) == 0)
		ash_bus_call_fail(c->call, ASH_ECONFLICT,
		    "the message changed meanwhile; read it again");
	else if (rv != ASH_OK)
		ash_bus_call_fail(c->call, rv, NULL);
	else
		scall_answer(c, res, 200);
	scall_free(c);
}

/* Queues the message again: fresh attempts, no failure, the policy's new
 * type/tag, and sent_at = now (it is sent now; older read receipts must
 * not cover it). Only if it is still in the state we judged. */
static void
resend_requeue(scall *c)
{
	static const char sql[] =
	    "WITH up AS (UPDATE messages SET state = 'queued', attempts = 0, "
	    "throttles = 0, next_attempt_at = NULL, lease_until = NULL, "
	    "failure_code = NULL, failure_subcode = NULL, "
	    "failure_reason = NULL, sent_at = now(), "
	    "messaging_type = $4, tag = $5 "
	    "WHERE id = $1 AND tenant_id = $2 AND state = $3 RETURNING *), "
	    "wake AS (SELECT pg_notify('" MI_OUTBOX_CHANNEL "', '') FROM up) "
	    "SELECT " MI_MESSAGE_COLUMNS ", (SELECT count(*) FROM wake) "
	    "FROM up m";
	const char *p[] = {c->message_id, c->tenant, c->state,
	    c->pol.messaging_type, c->pol.tag};

	if (ash_db_query(ash_svc_db(c->mi->svc), sql, 5, p, on_requeued, c) !=
	    ASH_OK)
		on_requeued(c, ASH_EUNAVAIL, NULL);
}

/* Which messages may be resent, or why not (NULL: fine). */
static const char *
resend_refusal(const PGresult *r)
{
	const char *direction = PQgetvalue(r, 0, 0);
	const char *author    = PQgetvalue(r, 0, 1);
	const char *state     = PQgetvalue(r, 0, 2);

	if (PQgetvalue(r, 0, 5)[0] == 't')
		return GONE_MSG;
	if (strcmp(direction, "out") != 0 ||
	    (strcmp(author, "agent") != 0 && strcmp(author, "ai") != 0))
		return "only messages sent through ashoon can be resent";
	if (strcmp(state, "failed") != 0 && strcmp(state, "refused") != 0)
		return "only failed or refused messages can be resent";
	return NULL;
}

static void
on_resend_context(void *arg, ash_err rv, const PGresult *res)
{
	scall      *c = arg;
	const char *why;
	char        msg[512];

	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK) {
		ash_bus_call_fail(c->call, rv,
		    rv == ASH_ENOTFOUND ? "no such message" : NULL);
		scall_free(c);
		return;
	}
	why = resend_refusal(res);
	snprintf(c->state, sizeof(c->state), "%s", PQgetvalue(res, 0, 2));
	c->author = strcmp(PQgetvalue(res, 0, 1), "ai") == 0 ? MI_AUTHOR_AI
	                                                     : MI_AUTHOR_AGENT;
	/* Refused by Meta as outside the window: not RESPONSE again. (Its
	 * code and subcode decide that; the HTTP status does not matter.) */
	if (strcmp(c->state, "failed") == 0 &&
	    mi_graph_classify(400, atoi(PQgetvalue(res, 0, 6)),
	        atoi(PQgetvalue(res, 0, 7))) == MI_GRAPH_WINDOW)
		c->pol = mi_policy_after_window(
		    c->author, mi_col_ms(res, 0, 4), mi_col_ms(res, 0, 3));
	else
		c->pol = mi_policy_decide(
		    c->author, mi_col_ms(res, 0, 4), mi_col_ms(res, 0, 3));
	if (why == NULL && !c->pol.allowed) {
		snprintf(msg, sizeof(msg), "messaging window closed: %s",
		    c->pol.refusal);
		why = msg;
	}
	if (why != NULL) {
		ash_bus_call_fail(c->call, ASH_ECONFLICT, why);
		scall_free(c);
		return;
	}
	resend_requeue(c);
}

static void
on_conv_resend(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "SELECT m.direction, m.author, m.state, "
	    "(extract(epoch from v.last_customer_msg_at) * 1000)::bigint, "
	    "(extract(epoch from now()) * 1000)::bigint, "
	    "c.disconnected_at IS NOT NULL, "
	    "coalesce(m.failure_code, 0), coalesce(m.failure_subcode, 0) "
	    "FROM messages m JOIN conversations v ON v.id = m.conversation_id "
	    "JOIN channels c ON c.id = m.channel_id "
	    "WHERE m.id = $1 AND m.tenant_id = $2";
	const char *tenant = mi_call_tenant(call);
	scall      *c;

	if (tenant == NULL)
		return;
	c = scall_new(arg, call, tenant);
	c->message_id =
	    ash_json_str(ash_bus_call_req(call)->body, "message_id");
	const char *p[] = {c->message_id, tenant};
	if (ash_db_query(ash_svc_db(c->mi->svc), sql, 2, p, on_resend_context,
	        c) != ASH_OK)
		on_resend_context(c, ASH_EUNAVAIL, NULL);
}

void
mi_send_register(mi_ctx *mi)
{
	ash_bus_server *bus = ash_svc_bus(mi->svc);

	ash_bus_server_handle(bus, ASH_OP_CONV_SEND, on_conv_send, mi);
	ash_bus_server_handle(bus, ASH_OP_CONV_RESEND, on_conv_resend, mi);
}
