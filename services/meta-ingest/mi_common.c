/*
 * mi_common.c - small pieces several meta-ingest modules share: channel
 * secret AADs, channel status updates, the message JSON shape, the
 * webhook signature check and the helpers of the sending modules.
 */
#include "mi.h"

#include <ashoon/json.h>

#include <openssl/crypto.h>

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
mi_channel_set_status(mi_ctx *mi, const char *channel_id, const char *sealed,
    mi_graph_class cls, int code, int subcode, int wait_s)
{
	static const char sql[] =
	    "UPDATE channels SET status = $2, status_code = $3::int, "
	    "status_subcode = $4::int, status_reason = $5, status_at = now(), "
	    "rate_limited_until = CASE WHEN $2 = 'rate_limited' "
	    "THEN now() + make_interval(secs => $6::int) END "
	    "WHERE id = $1 AND token_sealed = $7";
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
	const char *p[] = {channel_id, status, c, s, reason, w, sealed};
	if (ash_db_query(ash_svc_db(mi->svc), sql, 7, p, on_status_stored,
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

/* The header against the body's MAC: by key, or by secret when key is NULL. */
static ash_err
signature_check(const char *header, const void *body, size_t len,
    const char *secret, ash_hmac_key *key)
{
	uint8_t  mac[ASH_SHA256_LEN];
	uint8_t *got = NULL;
	size_t   n   = 0;
	bool     ok;

	if (header == NULL || strncmp(header, "sha256=", 7) != 0 ||
	    strlen(header + 7) != 2 * ASH_SHA256_LEN ||
	    ash_hex_decode(header + 7, 2 * ASH_SHA256_LEN, &got, &n) != ASH_OK)
		return ASH_EUNAUTH;
	if (key != NULL)
		ash_hmac_key_mac(key, body, len, mac);
	else
		ash_hmac_sha256(secret, strlen(secret), body, len, mac);
	ok = n == ASH_SHA256_LEN && ash_ct_equal(got, mac, sizeof(mac));
	free(got);
	return ok ? ASH_OK : ASH_EFORBIDDEN;
}

ash_err
mi_signature_check(
    const char *header, const void *body, size_t len, const char *secret)
{
	return signature_check(header, body, len, secret, NULL);
}

ash_err
mi_signature_check_key(
    const char *header, const void *body, size_t len, ash_hmac_key *key)
{
	return signature_check(header, body, len, NULL, key);
}

/* --- helpers shared by the sending modules --- */

void
mi_free_wiped(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

/* A copy of a column, NULL for SQL NULL. */
char *
mi_col_dup(const PGresult *r, int row, int c)
{
	return PQgetisnull(r, row, c) ? NULL
	                              : ash_xstrdup(PQgetvalue(r, row, c));
}

/* A bigint column (ms), 0 for SQL NULL. */
int64_t
mi_col_ms(const PGresult *r, int row, int c)
{
	return PQgetisnull(r, row, c)
	    ? 0
	    : strtoll(PQgetvalue(r, row, c), NULL, 10);
}

/* The channel's token in clear (free with mi_free_wiped), or NULL if it
 * cannot be unsealed with our keys (logged, without the value). */
char *
mi_token_unseal(mi_ctx *mi, const char *channel_id, const char *sealed)
{
	char     aad[128];
	uint8_t *pt = NULL;
	size_t   n;

	mi_channel_aad(channel_id, "token", aad, sizeof(aad));
	if (sealed == NULL ||
	    ash_crypto_unseal(mi->keys, aad, sealed, &pt, &n) != ASH_OK) {
		ash_log_error(NULL, "MI-TOKEN",
		    "channel %s: the token cannot be unsealed with the "
		    "configured master keys",
		    channel_id);
		return NULL;
	}
	return (char *) pt;
}

void
mi_publish_state(mi_ctx *mi, const char *tenant, const char *conv,
    const char *msg, const char *state)
{
	cJSON *b = cJSON_CreateObject();

	ash_json_add_str(b, "conversation_id", conv);
	ash_json_add_str(b, "message_id", msg);
	ash_json_add_str(b, "state", state);
	ash_svc_publish(mi->svc, ASH_TOPIC_CONV_MESSAGE_UPDATED, tenant, b);
	cJSON_Delete(b);
}

/* The tenant of a call, or fails it: tenant data needs one. */
const char *
mi_call_tenant(ash_bus_call *call)
{
	const char *t = ash_bus_call_req(call)->tenant;

	if (t == NULL)
		ash_bus_call_fail(
		    call, ASH_EFORBIDDEN, "a tenant is required");
	return t;
}
