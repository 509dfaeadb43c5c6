/*
 * mi_conv.c - the conversation ops every channel answers (conv.*), so the
 * inbox can merge channels, and the reply jobs ai-router claims.
 *
 * Every query is filtered by the tenant of the request envelope; a
 * conversation of another tenant is "not found", never "forbidden" (its
 * existence is not revealed). Lists use keyset pagination: the cursor is
 * the position of the last row returned, so pages stay stable while new
 * messages arrive.
 */
#include "mi.h"

#include <ashoon/ids.h>
#include <ashoon/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONV_COLUMNS                                                      \
	"v.id, c.id, c.kind, c.name, p.id, p.external_id, p.name, "       \
	"p.username, p.profile_pic, v.status, v.thread_owner, "           \
	"(extract(epoch from v.last_message_at) * 1000)::bigint, "        \
	"(extract(epoch from v.last_customer_msg_at) * 1000)::bigint, "   \
	"(extract(epoch from coalesce(v.last_message_at, v.created_at)) " \
	"* 1000000)::bigint, "                                            \
	"(SELECT m.text FROM messages m WHERE m.conversation_id = v.id "  \
	"ORDER BY m.sent_at DESC, m.id DESC LIMIT 1), p.limited_data_use"
#define CONV_FROM                                                       \
	" FROM conversations v JOIN channels c ON c.id = v.channel_id " \
	"JOIN participants p ON p.id = v.participant_id "

typedef struct conv_call {
	mi_ctx       *mi;
	ash_bus_call *call;
	int           limit;
} conv_call;

static conv_call *
cc_new(mi_ctx *mi, ash_bus_call *call)
{
	conv_call *cc = ash_xcalloc(1, sizeof(*cc));

	cc->mi   = mi;
	cc->call = call;
	return cc;
}

static void
put_str(cJSON *o, const char *k, const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		cJSON_AddNullToObject(o, k);
	else
		ash_json_add_str(o, k, PQgetvalue(r, row, col));
}

static void
put_ms(cJSON *o, const char *k, const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		cJSON_AddNullToObject(o, k);
	else
		cJSON_AddNumberToObject(
		    o, k, (double) strtoll(PQgetvalue(r, row, col), NULL, 10));
}

/* One conversation row (CONV_COLUMNS) as the inbox sees it. */
static cJSON *
conv_json(const PGresult *r, int i)
{
	cJSON *v  = cJSON_CreateObject();
	cJSON *ch = cJSON_AddObjectToObject(v, "channel");
	cJSON *pa = cJSON_AddObjectToObject(v, "participant");

	put_str(v, "id", r, i, 0);
	put_str(ch, "id", r, i, 1);
	put_str(ch, "kind", r, i, 2);
	put_str(ch, "name", r, i, 3);
	put_str(pa, "id", r, i, 4);
	put_str(pa, "external_id", r, i, 5);
	put_str(pa, "name", r, i, 6);
	put_str(pa, "username", r, i, 7);
	put_str(pa, "profile_pic", r, i, 8);
	cJSON_AddBoolToObject(
	    pa, "limited_data_use", strcmp(PQgetvalue(r, i, 15), "t") == 0);
	put_str(v, "status", r, i, 9);
	put_str(v, "thread_owner", r, i, 10);
	put_ms(v, "last_message_at", r, i, 11);
	put_ms(v, "last_customer_msg_at", r, i, 12);
	put_str(v, "preview", r, i, 14);
	return v;
}

/* Cursors are "<ms>,<uuid>" in base64url: opaque to clients. */
static char *
cursor_make(const char *ms, const char *id)
{
	char buf[96];

	snprintf(buf, sizeof(buf), "%s,%s", ms, id);
	return ash_b64url_encode(buf, strlen(buf));
}

static bool
cursor_read(const char *cur, char ms[24], char id[ASH_UUID_LEN])
{
	uint8_t *raw = NULL;
	size_t   n   = 0;
	char    *comma;
	bool     ok = false;

	if (cur == NULL ||
	    ash_b64url_decode(cur, strlen(cur), &raw, &n) != ASH_OK)
		return false;
	comma = strchr((char *) raw, ',');
	if (comma != NULL && comma - (char *) raw < 20 &&
	    ash_id_uuid_valid(comma + 1)) {
		snprintf(ms, 24, "%.*s", (int) (comma - (char *) raw),
		    (char *) raw);
		snprintf(id, ASH_UUID_LEN, "%s", comma + 1);
		ok = strspn(ms, "0123456789") == strlen(ms) && *ms;
	}
	free(raw);
	return ok;
}

static int
limit_of(const cJSON *body, int def, int max)
{
	int n = def;

	if (ash_json_get_int(body, "limit", &n) != ASH_OK || n < 1)
		return def;
	return n > max ? max : n;
}

/* --- conv.list --- */

/* A page of rows as {"<key>": [...], "next_cursor"}: the cursor (made from
 * the sort-key column key_col and the id in column 0) only when the page is
 * full. Ends the call and frees cc. */
static void
reply_page(conv_call *cc, ash_err rv, const PGresult *res, const char *key,
    cJSON *(*row_json)(const PGresult *, int), int key_col)
{
	cJSON *b, *arr;
	int    n;

	if (rv != ASH_OK) {
		ash_bus_call_fail(cc->call, rv, NULL);
		free(cc);
		return;
	}
	b   = cJSON_CreateObject();
	arr = cJSON_AddArrayToObject(b, key);
	n   = PQntuples(res);
	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(arr, row_json(res, i));
	if (n == cc->limit) {
		char *cur = cursor_make(PQgetvalue(res, n - 1, key_col),
		    PQgetvalue(res, n - 1, 0));
		ash_json_add_str(b, "next_cursor", cur);
		free(cur);
	}
	ash_bus_call_reply(cc->call, 200, b);
	free(cc);
}

static void
on_list_rows(void *arg, ash_err rv, const PGresult *res)
{
	reply_page(arg, rv, res, "conversations", conv_json, 13);
}

/* Newest activity first. The index on (tenant_id, activity_minute) gives
 * the minutes in order; only the rows of the minutes a page reaches are
 * sorted by their exact time (migrations/0007_inbox_order.sql). */
static void
on_conv_list(ash_bus_call *call, void *arg)
{
	static const char          sql[] =
	    "SELECT " CONV_COLUMNS CONV_FROM
	    "WHERE v.tenant_id = $1::uuid AND ($2::text IS NULL OR "
	    "v.status = $2) AND v.activity_minute <= $3::bigint / 60000000 "
	    "AND ((extract(epoch from coalesce(v.last_message_at, "
	    "v.created_at)) * 1000000)::bigint, v.id) < ($3::bigint, "
	    "$4::uuid) "
	    "ORDER BY v.activity_minute DESC, coalesce(v.last_message_at, "
	    "v.created_at) DESC, v.id DESC "
	    "LIMIT $5::int";
	const ash_request *req    = ash_bus_call_req(call);
	conv_call         *cc     = cc_new(arg, call);
	char               ms[24] = "9223372036854775807",
	     id[ASH_UUID_LEN]     = "ffffffff-ffff-ffff-ffff-ffffffffffff",
	     lim[16];
	const char *cur = ash_json_str(req->body, "cursor");

	if (cur != NULL && !cursor_read(cur, ms, id)) {
		free(cc);
		ash_bus_call_fail(call, ASH_EINVAL, "invalid cursor");
		return;
	}
	cc->limit = limit_of(req->body, 50, 200);
	snprintf(lim, sizeof(lim), "%d", cc->limit);
	const char *p[] = {
	    req->tenant, ash_json_str(req->body, "status"), ms, id, lim};
	if (ash_db_query(ash_svc_db(cc->mi->svc), sql, 5, p, on_list_rows,
	        cc) != ASH_OK)
		on_list_rows(cc, ASH_EUNAVAIL, NULL);
}

/* --- conv.get / conv.update --- */

static void
on_one_conv(void *arg, ash_err rv, const PGresult *res)
{
	conv_call *cc = arg;
	cJSON     *b;

	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK) {
		ash_bus_call_fail(cc->call, rv,
		    rv == ASH_ENOTFOUND ? "no such conversation" : NULL);
		free(cc);
		return;
	}
	b = cJSON_CreateObject();
	cJSON_AddItemToObject(b, "conversation", conv_json(res, 0));
	ash_bus_call_reply(cc->call, 200, b);
	free(cc);
}

static void
on_conv_get(ash_bus_call *call, void *arg)
{
	static const char          sql[] =
	    "SELECT " CONV_COLUMNS CONV_FROM
	    "WHERE v.id = $1::uuid AND v.tenant_id = $2::uuid";
	const ash_request *req = ash_bus_call_req(call);
	conv_call         *cc  = cc_new(arg, call);
	const char        *id  = ash_json_str(req->body, "id");
	const char        *p[] = {id, req->tenant};

	/* A person opened it (not a service reading it): tell Meta the
	 * customer's messages were seen. */
	if (req->role == NULL || strcmp(req->role, "service") != 0)
		mi_thread_mark_seen(cc->mi, req->tenant, id);
	if (ash_db_query(
	        ash_svc_db(cc->mi->svc), sql, 2, p, on_one_conv, cc) != ASH_OK)
		on_one_conv(cc, ASH_EUNAVAIL, NULL);
}

/* Status and the person's Limited Data Use flag in one statement. The
 * participant row comes from the CTE's RETURNING: the outer SELECT would
 * otherwise read it as it was before the statement. */
static void
on_conv_update(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "WITH u AS (UPDATE conversations SET status = coalesce($3, "
	    "status), updated_at = now() WHERE id = $1::uuid AND tenant_id = "
	    "$2::uuid RETURNING *), "
	    "pu AS (UPDATE participants SET limited_data_use = "
	    "coalesce($4::boolean, limited_data_use) "
	    "WHERE id = (SELECT participant_id FROM u) RETURNING *) "
	    "SELECT " CONV_COLUMNS
	    " FROM u v JOIN channels c ON c.id = v.channel_id "
	    "JOIN pu p ON p.id = v.participant_id";
	const ash_request *req = ash_bus_call_req(call);
	const char        *st  = ash_json_str(req->body, "status");
	const cJSON       *ldu =
	    cJSON_GetObjectItemCaseSensitive(req->body, "limited_data_use");
	conv_call *cc;

	/* null, as clients send a field they leave unchanged, is not false:
	 * it must not lift a person's Limited Data Use flag. */
	if (cJSON_IsNull(ldu))
		ldu = NULL;
	if (ldu != NULL && !cJSON_IsBool(ldu)) {
		ash_bus_call_fail(call, ASH_EINVAL,
		    "limited_data_use must be true or false");
		return;
	}
	if (st == NULL && ldu == NULL) {
		ash_bus_call_fail(
		    call, ASH_EINVAL, "give status, limited_data_use or both");
		return;
	}
	if (st != NULL && strcmp(st, "open") != 0 &&
	    strcmp(st, "pending") != 0 && strcmp(st, "closed") != 0) {
		ash_bus_call_fail(call, ASH_EINVAL,
		    "status must be open, pending or closed");
		return;
	}
	cc              = cc_new(arg, call);
	const char *p[] = {ash_json_str(req->body, "id"), req->tenant, st,
	    ldu == NULL             ? NULL
	        : cJSON_IsTrue(ldu) ? "true"
	                            : "false"};
	if (ash_db_query(
	        ash_svc_db(cc->mi->svc), sql, 4, p, on_one_conv, cc) != ASH_OK)
		on_one_conv(cc, ASH_EUNAVAIL, NULL);
}

/* --- conv.messages --- */

static void
on_message_rows(void *arg, ash_err rv, const PGresult *res)
{
	reply_page(arg, rv, res, "messages", mi_message_json, 22);
}

/* Newest first; the cursor walks back in time. A conversation of another
 * tenant simply has no messages here. */
static void
on_conv_messages(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "SELECT " MI_MESSAGE_COLUMNS ", "
	    "(extract(epoch from m.sent_at) * 1000000)::bigint "
	    "FROM messages m "
	    "WHERE m.conversation_id = $1::uuid AND m.tenant_id = $2::uuid "
	    "AND ((extract(epoch from m.sent_at) * 1000000)::bigint, m.id) < "
	    "($3::bigint, $4::uuid) ORDER BY m.sent_at DESC, m.id DESC "
	    "LIMIT $5::int";
	const ash_request *req    = ash_bus_call_req(call);
	conv_call         *cc     = cc_new(arg, call);
	char               ms[24] = "9223372036854775807",
	     id[ASH_UUID_LEN]     = "ffffffff-ffff-ffff-ffff-ffffffffffff",
	     lim[16];
	const char *cur = ash_json_str(req->body, "cursor");

	if (cur != NULL && !cursor_read(cur, ms, id)) {
		free(cc);
		ash_bus_call_fail(call, ASH_EINVAL, "invalid cursor");
		return;
	}
	cc->limit = limit_of(req->body, 50, 500);
	snprintf(lim, sizeof(lim), "%d", cc->limit);
	const char *p[] = {
	    ash_json_str(req->body, "id"), req->tenant, ms, id, lim};
	if (ash_db_query(ash_svc_db(cc->mi->svc), sql, 5, p, on_message_rows,
	        cc) != ASH_OK)
		on_message_rows(cc, ASH_EUNAVAIL, NULL);
}

/* --- conv.delete (P16) --- */

static void
on_deleted(void *arg, ash_err rv, const PGresult *res)
{
	conv_call *cc = arg;
	cJSON     *b;

	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK) {
		ash_bus_call_fail(cc->call, rv,
		    rv == ASH_ENOTFOUND ? "no such conversation" : NULL);
		free(cc);
		return;
	}
	ash_log_info(ash_bus_call_log(cc->call), "MI-DELETED",
	    "conversation %s deleted", PQgetvalue(res, 0, 0));
	b = cJSON_CreateObject();
	cJSON_AddBoolToObject(b, "deleted", true);
	ash_bus_call_reply(cc->call, 200, b);
	free(cc);
}

/* Deletes the conversation, every message, reaction and reply job of it,
 * and the person's profile (one conversation per person per channel):
 * nothing of it is left in this schema. The person's reactions go too,
 * also those to messages that were never stored, their edits waiting for
 * a message (0015_early_edits.sql), and the webhook bodies
 * the journal kept that name them (the rows stay, without the body:
 * migrations/0013_journal_kept_bodies.sql). One statement, so all or
 * nothing. */
static void
on_conv_delete(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "WITH v AS (SELECT v.id, v.channel_id, v.participant_id, "
	    "p.external_id FROM conversations v JOIN participants p ON p.id = "
	    "v.participant_id "
	    "WHERE v.id = $1::uuid AND v.tenant_id = $2::uuid FOR UPDATE OF "
	    "v), "
	    "r AS (DELETE FROM reactions x USING v "
	    "WHERE x.channel_id = v.channel_id AND (x.participant = "
	    "v.external_id OR x.mid IN (SELECT m.mid FROM messages m WHERE "
	    "m.conversation_id = v.id))), "
	    "ee AS (DELETE FROM early_edits x USING v "
	    "WHERE x.channel_id = v.channel_id AND x.participant = "
	    "v.external_id), "
	    "j AS (UPDATE journal x SET raw = NULL FROM v "
	    "WHERE x.raw IS NOT NULL AND position(convert_to('\"' || "
	    "v.external_id || '\"', 'UTF8') IN x.raw) > 0), "
	    "p AS (DELETE FROM participants x USING v "
	    "WHERE x.id = v.participant_id) "
	    "DELETE FROM conversations x USING v WHERE x.id = v.id "
	    "RETURNING x.id";
	const ash_request *req = ash_bus_call_req(call);
	conv_call         *cc  = cc_new(arg, call);
	const char        *p[] = {ash_json_str(req->body, "id"), req->tenant};

	if (ash_db_query(ash_svc_db(cc->mi->svc), sql, 2, p, on_deleted, cc) !=
	    ASH_OK)
		on_deleted(cc, ASH_EUNAVAIL, NULL);
}

/* --- reply jobs (ai-router) --- */

static bool
is_service(ash_bus_call *call)
{
	const ash_request *req = ash_bus_call_req(call);

	if (req->role != NULL && strcmp(req->role, "service") == 0)
		return true;
	ash_bus_call_fail(call, ASH_EFORBIDDEN, "for services only");
	return false;
}

static void
on_jobs_claimed(void *arg, ash_err rv, const PGresult *res)
{
	ash_bus_call *call = arg;
	cJSON        *b, *arr;

	if (rv != ASH_OK) {
		ash_bus_call_fail(call, rv, NULL);
		return;
	}
	b   = cJSON_CreateObject();
	arr = cJSON_AddArrayToObject(b, "jobs");
	for (int i = 0; i < PQntuples(res); i++) {
		cJSON *j = cJSON_CreateObject();
		/* A job is keyed by its message (migration 0008). */
		put_str(j, "id", res, i, 0);
		put_str(j, "message_id", res, i, 0);
		put_str(j, "tenant_id", res, i, 1);
		put_str(j, "conversation_id", res, i, 2);
		cJSON_AddNumberToObject(
		    j, "attempts", atoi(PQgetvalue(res, i, 3)));
		/* The claimer may reply (service delivery) but must keep a
		 * flagged person's data out of anything else (P29). */
		cJSON_AddBoolToObject(j, "limited_data_use",
		    strcmp(PQgetvalue(res, i, 4), "t") == 0);
		cJSON_AddItemToArray(arr, j);
	}
	ash_bus_call_reply(call, 200, b);
}

/* Leases up to `limit` due jobs across tenants (each job names its
 * tenant). An expired lease - the claimer died - makes a job due again. */
static void
on_jobs_claim(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "UPDATE reply_jobs SET state = 'claimed', attempts = attempts + "
	    "1, "
	    "lease_until = now() + make_interval(secs => $2::int / 1000.0) "
	    "WHERE message_id IN (SELECT message_id FROM reply_jobs "
	    "WHERE state = 'pending' "
	    "OR (state = 'claimed' AND lease_until < now()) "
	    "ORDER BY created_at LIMIT $1::int FOR UPDATE SKIP LOCKED) "
	    "RETURNING message_id, tenant_id, conversation_id, attempts, "
	    "(SELECT p.limited_data_use FROM conversations v JOIN "
	    "participants p ON p.id = v.participant_id "
	    "WHERE v.id = reply_jobs.conversation_id)";
	mi_ctx      *mi    = arg;
	const cJSON *b     = ash_bus_call_req(call)->body;
	int          lease = 60000;
	char         lim[16], ls[16];

	if (!is_service(call))
		return;
	if (ash_json_get_int(b, "lease_ms", &lease) != ASH_OK ||
	    lease < 1000 || lease > 3600000)
		lease = 60000;
	snprintf(lim, sizeof(lim), "%d", limit_of(b, 10, 100));
	snprintf(ls, sizeof(ls), "%d", lease);
	const char *p[] = {lim, ls};
	if (ash_db_query(ash_svc_db(mi->svc), sql, 2, p, on_jobs_claimed,
	        call) != ASH_OK)
		on_jobs_claimed(call, ASH_EUNAVAIL, NULL);
}

static void
on_job_completed(void *arg, ash_err rv, const PGresult *res)
{
	ash_bus_call *call = arg;
	cJSON        *b;

	if (rv != ASH_OK) {
		ash_bus_call_fail(call, rv, NULL);
		return;
	}
	b = cJSON_CreateObject();
	cJSON_AddBoolToObject(b, "completed", PQntuples(res) == 1);
	ash_bus_call_reply(call, 200, b);
}

static void
on_jobs_complete(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "UPDATE reply_jobs SET state = $2, lease_until = NULL "
	    "WHERE message_id = $1::uuid AND state = 'claimed' "
	    "RETURNING message_id";
	mi_ctx      *mi = arg;
	const cJSON *b  = ash_bus_call_req(call)->body;
	const char  *o  = ash_json_str(b, "outcome");

	if (!is_service(call))
		return;
	if (strcmp(o, "done") != 0 && strcmp(o, "cancelled") != 0) {
		ash_bus_call_fail(
		    call, ASH_EINVAL, "outcome must be done or cancelled");
		return;
	}
	const char *p[] = {ash_json_str(b, "id"), o};
	if (ash_db_query(ash_svc_db(mi->svc), sql, 2, p, on_job_completed,
	        call) != ASH_OK)
		on_job_completed(call, ASH_EUNAVAIL, NULL);
}

void
mi_conv_register(mi_ctx *mi)
{
	ash_bus_server *bus = ash_svc_bus(mi->svc);

	ash_bus_server_handle(bus, ASH_OP_CONV_LIST, on_conv_list, mi);
	ash_bus_server_handle(bus, ASH_OP_CONV_GET, on_conv_get, mi);
	ash_bus_server_handle(bus, ASH_OP_CONV_UPDATE, on_conv_update, mi);
	ash_bus_server_handle(bus, ASH_OP_CONV_MESSAGES, on_conv_messages, mi);
	ash_bus_server_handle(bus, ASH_OP_CONV_DELETE, on_conv_delete, mi);
	ash_bus_server_handle(bus, ASH_OP_CONV_JOBS_CLAIM, on_jobs_claim, mi);
	ash_bus_server_handle(
	    bus, ASH_OP_CONV_JOBS_COMPLETE, on_jobs_complete, mi);
}
