/*
 * mi_common.c - small pieces several meta-ingest modules share: channel
 * secret AADs, channel status updates, the message JSON shape, and the
 * webhook signature check.
 */
#include "mi.h"

#include <ashoon/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
mi_channel_aad(const char *channel_id, const char *what, char *out, size_t cap)
{
	snprintf(out, cap, "meta-ingest/channel/%s/%s", channel_id, what);
}

static void
on_status_stored(void *arg, ash_err rv, const PGresult *res)
{
	if (rv != ASH_OK)
		ash_log_warn(NULL, "MI-STATUS",
		    "channel status not stored: %s", ash_strerror(rv));
}

void
mi_channel_set_status(mi_ctx *mi, const char *channel_id, mi_graph_class cls,
    int code, int subcode, int wait_s)
{
	static const char sql[] =
	    "UPDATE channels SET status = $2, status_code = $3::int, "
	    "status_subcode = $4::int, status_reason = $5, status_at = now(), "
	    "rate_limited_until = CASE WHEN $2 = 'rate_limited' "
	    "THEN now() + make_interval(secs => $6::int) END "
	    "WHERE id = $1";
	char        c[16], s[16], w[16];
	const char *status = "ok", *reason = "ok";

	if (cls == MI_GRAPH_REAUTH) {
		status = "needs_reauth";
		reason = "the access token was rejected (Graph error 190): "
		         "reconnect the channel";
	} else if (cls == MI_GRAPH_THROTTLED) {
		status = "rate_limited";
		reason = "Meta is throttling this channel";
	}
	snprintf(c, sizeof(c), "%d", code);
	snprintf(s, sizeof(s), "%d", subcode);
	snprintf(w, sizeof(w), "%d", wait_s > 0 ? wait_s : 60);
	const char *p[] = {channel_id, status, c, s, reason, w};
	if (ash_db_query(ash_svc_db(mi->svc), sql, 6, p, on_status_stored,
	        NULL) != ASH_OK)
		ash_log_warn(NULL, "MI-STATUS", "channel status not stored");
	if (cls == MI_GRAPH_REAUTH || cls == MI_GRAPH_THROTTLED)
		ash_log_warn(NULL, "MI-CHANNEL",
		    "channel %s is %s (code %d/%d)", channel_id, status, code,
		    subcode);
}

static void
add_str_or_null(cJSON *o, const char *k, const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		cJSON_AddNullToObject(o, k);
	else
		ash_json_add_str(o, k, PQgetvalue(r, row, col));
}

static void
add_ms_or_null(cJSON *o, const char *k, const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		cJSON_AddNullToObject(o, k);
	else
		cJSON_AddNumberToObject(
		    o, k, (double) strtoll(PQgetvalue(r, row, col), NULL, 10));
}

static void
add_bool(cJSON *o, const char *k, const PGresult *r, int row, int col)
{
	cJSON_AddBoolToObject(o, k, PQgetvalue(r, row, col)[0] == 't');
}

cJSON *
mi_message_json(const PGresult *r, int row)
{
	cJSON      *m = cJSON_CreateObject(), *att = NULL;
	const char *a = PQgetvalue(r, row, 5);

	add_str_or_null(m, "id", r, row, 0);
	add_str_or_null(m, "conversation_id", r, row, 1);
	add_str_or_null(m, "direction", r, row, 2);
	add_str_or_null(m, "kind", r, row, 3);
	add_str_or_null(m, "text", r, row, 4);
	if (ash_json_parse(a, strlen(a), &att) != ASH_OK)
		att = cJSON_CreateArray();
	cJSON_AddItemToObject(m, "attachments", att);
	add_str_or_null(m, "payload", r, row, 6);
	add_str_or_null(m, "mid", r, row, 7);
	add_str_or_null(m, "reply_to_mid", r, row, 8);
	add_str_or_null(m, "author", r, row, 9);
	/* P1: AI-generated messages are marked as such everywhere. */
	add_bool(m, "ai_generated", r, row, 10);
	add_bool(m, "is_echo", r, row, 11);
	add_ms_or_null(m, "sent_at", r, row, 12);
	add_str_or_null(m, "state", r, row, 13);
	add_ms_or_null(m, "delivered_at", r, row, 14);
	add_ms_or_null(m, "read_at", r, row, 15);
	add_ms_or_null(m, "failure_code", r, row, 16);
	add_str_or_null(m, "failure_reason", r, row, 17);
	add_ms_or_null(m, "edit_count", r, row, 18);
	add_bool(m, "unsent", r, row, 19);
	add_str_or_null(m, "messaging_type", r, row, 20);
	add_str_or_null(m, "tag", r, row, 21);
	return m;
}

ash_err
mi_signature_check(
    const char *header, const void *body, size_t len, const char *secret)
{
	uint8_t  mac[ASH_SHA256_LEN];
	uint8_t *got = NULL;
	size_t   n   = 0;
	bool     ok;

	if (header == NULL || strncmp(header, "sha256=", 7) != 0 ||
	    strlen(header + 7) != 2 * ASH_SHA256_LEN ||
	    ash_hex_decode(header + 7, 2 * ASH_SHA256_LEN, &got, &n) != ASH_OK)
		return ASH_EUNAUTH;
	ash_hmac_sha256(secret, strlen(secret), body, len, mac);
	ok = n == ASH_SHA256_LEN && ash_ct_equal(got, mac, sizeof(mac));
	free(got);
	return ok ? ASH_OK : ASH_EFORBIDDEN;
}
