/*
 * mi_journal.c - the webhook journal: listed per tenant (so a business can
 * see whether, when and how Meta called), and purged after journal_days.
 *
 * A tenant sees the hits whose stored events were its own, and rejected
 * hits that named one of its pages (their content is not trusted, so they
 * carry signature "invalid"/"missing" and no event details beyond counts).
 * ingest_batch() decides that when it stores a hit (tenant_ids), and
 * lists each batch's hits for each of their tenants as one span of ids in
 * journal_spans (migrations/0009_journal_spans.sql): a page of a tenant's
 * hits is read from its newest spans by key, however rare its hits are.
 */
#include "mi.h"

#include <ashoon/json.h>

#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PURGE_BATCH "10000"

static void
add_ms(cJSON *o, const char *k, const PGresult *r, int row, int col)
{
	cJSON_AddNumberToObject(
	    o, k, (double) strtoll(PQgetvalue(r, row, col), NULL, 10));
}

static cJSON *
hit_json(const PGresult *r, int i)
{
	cJSON      *h = cJSON_CreateObject(), *v = NULL;
	const char *txt;

	ash_json_add_str(h, "id", PQgetvalue(r, i, 0));
	add_ms(h, "received_at", r, i, 1);
	add_ms(h, "latency_ms", r, i, 2);
	ash_json_add_str(h, "signature", PQgetvalue(r, i, 3));
	if (!PQgetisnull(r, i, 4))
		ash_json_add_str(h, "object", PQgetvalue(r, i, 4));
	for (int c = 5; c <= 6; c++) {
		txt = PQgetvalue(r, i, c);
		if (ash_json_parse(txt, strlen(txt), &v) == ASH_OK)
			cJSON_AddItemToObject(
			    h, c == 5 ? "page_ids" : "kinds", v);
	}
	add_ms(h, "entries", r, i, 7);
	add_ms(h, "events", r, i, 8);
	add_ms(h, "new_messages", r, i, 9);
	ash_json_add_str(h, "outcome", PQgetvalue(r, i, 10));
	add_ms(h, "bytes", r, i, 11);
	return h;
}

static void
on_journal_rows(void *arg, ash_err rv, const PGresult *res)
{
	ash_bus_call *call = arg;
	cJSON        *b, *arr;
	int           n;

	if (rv != ASH_OK) {
		ash_bus_call_fail(call, rv, NULL);
		return;
	}
	b   = cJSON_CreateObject();
	arr = cJSON_AddArrayToObject(b, "hits");
	n   = PQntuples(res);
	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(arr, hit_json(res, i));
	if (n > 0 && n == atoi(PQgetvalue(res, 0, 12)))
		ash_json_add_str(b, "next", PQgetvalue(res, n - 1, 0));
	ash_bus_call_reply(call, 200, b);
}

static void
on_journal_list(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "SELECT j.id, (extract(epoch from j.received_at) * 1000)::bigint, "
	    "(extract(epoch from j.stored_at - j.received_at) * "
	    "1000)::bigint, "
	    "j.signature, j.object, to_jsonb(j.page_ids)::text, "
	    "j.kinds::text, "
	    "j.entries, j.events, j.new_messages, j.outcome, j.bytes, $3::int "
	    "FROM journal_page($1::uuid, $2::bigint, $3::int) j "
	    "ORDER BY j.id DESC";
	mi_ctx            *mi     = arg;
	const ash_request *req    = ash_bus_call_req(call);
	const char        *before = ash_json_str(req->body, "before");
	int                limit  = 50;
	char               lim[16];

	if (req->tenant == NULL) {
		ash_bus_call_fail(
		    call, ASH_EFORBIDDEN, "a tenant is required");
		return;
	}
	if (ash_json_get_int(req->body, "limit", &limit) != ASH_OK ||
	    limit < 1 || limit > 500)
		limit = 50;
	snprintf(lim, sizeof(lim), "%d", limit);
	const char *p[] = {
	    req->tenant, before ? before : "9223372036854775807", lim};
	if (ash_db_query(ash_svc_db(mi->svc), sql, 3, p, on_journal_rows,
	        call) != ASH_OK)
		on_journal_rows(call, ASH_EUNAVAIL, NULL);
}

/* --- purge --- */

static void purge_step(mi_ctx *mi);

static void
on_purged(void *arg, ash_err rv, const PGresult *res)
{
	mi_ctx *mi = arg;
	long    n  = rv == ASH_OK ? atol(PQgetvalue(res, 0, 0)) : 0;

	if (rv != ASH_OK) {
		ash_log_warn(
		    NULL, "MI-PURGE", "journal purge: %s", ash_strerror(rv));
		return;
	}
	if (n > 0)
		ash_log_info(NULL, "MI-PURGE", "deleted %ld journal rows", n);
	/* Small batches keep each transaction short; go on while full. */
	if (n == atol(PURGE_BATCH) && !mi->draining)
		purge_step(mi);
}

static void
purge_step(mi_ctx *mi)
{
	/* Ids grow as hits are stored, so the oldest hits are the first
	 * ids: each step deletes those of the first PURGE_BATCH that are
	 * old enough, and the next step runs only if all of them were. A
	 * span goes when no hit it lists is left: its tenant is one of the
	 * deleted hits', it starts at or before the last of them, and no
	 * other hit in its range lists the tenant (the statement still sees
	 * the rows it deletes, hence NOT IN d). */
	static const char sql[] =
	    "WITH d AS (DELETE FROM journal WHERE id IN (SELECT id FROM "
	    "journal ORDER BY id LIMIT " PURGE_BATCH ") AND received_at < "
	    "now() - make_interval(days => $1::int) "
	    "RETURNING id, tenant_ids), "
	    "u AS (SELECT DISTINCT t.tenant_id FROM d, "
	    "unnest(d.tenant_ids) AS t(tenant_id)), "
	    "l AS (DELETE FROM journal_spans s USING u "
	    "WHERE s.tenant_id = u.tenant_id "
	    "AND s.first_id <= (SELECT max(id) FROM d) "
	    "AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.id BETWEEN "
	    "s.first_id AND s.last_id AND s.tenant_id = ANY (j.tenant_ids) "
	    "AND j.id NOT IN (SELECT id FROM d))), "
	    /* Edits whose message came in a call that ran beside the
	     * edit's (neither saw the other's uncommitted row): applied
	     * now, as ingest_batch() would have. */
	    "a AS (DELETE FROM early_edits x USING messages m "
	    "WHERE m.channel_id = x.channel_id AND m.mid = x.mid "
	    "RETURNING x.channel_id, x.mid, x.text, x.edited_at, x.num_edit), "
	    "au AS (UPDATE messages m SET text = a.text, edited_at = "
	    "a.edited_at, edit_count = a.num_edit FROM a "
	    "WHERE m.channel_id = a.channel_id AND m.mid = a.mid "
	    "AND m.edit_count < a.num_edit AND m.unsent_at IS NULL), "
	    /* Edits whose message never came (0015_early_edits.sql). */
	    "e AS (DELETE FROM early_edits x WHERE edited_at < now() - "
	    "interval '2 days' AND NOT EXISTS (SELECT 1 FROM messages m "
	    "WHERE m.channel_id = x.channel_id AND m.mid = x.mid)) "
	    "SELECT count(*) FROM d";
	char days[16];

	snprintf(days, sizeof(days), "%d", mi_config.journal_days);
	const char *p[] = {days};
	if (ash_db_query(ash_svc_db(mi->svc), sql, 1, p, on_purged, mi) !=
	    ASH_OK)
		ash_log_debug(NULL, "MI-PURGE", "database busy; next hour");
}

static void
on_purge_timer(evutil_socket_t fd, short what, void *arg)
{
	mi_ctx        *mi   = arg;
	struct timeval hour = {3600, 0};

	if (mi->draining)
		return;
	purge_step(mi);
	evtimer_add(mi->purge_timer, &hour);
}

void
mi_journal_register(mi_ctx *mi)
{
	struct timeval soon = {2, 0};

	ash_bus_server_handle(ash_svc_bus(mi->svc), ASH_OP_META_JOURNAL_LIST,
	    on_journal_list, mi);
	mi->purge_timer = evtimer_new(
	    ash_loop_base(ash_svc_loop(mi->svc)), on_purge_timer, mi);
	evtimer_add(mi->purge_timer, &soon);
}

void
mi_journal_fini(mi_ctx *mi)
{
	if (mi->purge_timer != NULL)
		event_free(mi->purge_timer);
	mi->purge_timer = NULL;
}
