/*
 * mi_channels.c - connecting Facebook Pages and Instagram accounts:
 * channel.meta.connect, .list, .disconnect and meta.keys.rotate.
 *
 * connect   check the fields -> one Graph call made with the token
 *           (mi_connect_probe) proves it works and belongs to external_id
 *           -> find the account's row: live for any tenant, else this
 *           tenant's disconnected one -> seal the token (and app secret)
 *           with the current master key under the row id's AAD -> INSERT
 *           (201) or UPDATE (200: a reconnect renews token and metadata,
 *           puts the status back to ok and revives a disconnected row so
 *           its conversations stay with it). Live for another tenant: 409.
 *           The id is made here (not by Postgres) because the AAD names it.
 * list      the tenant's live channels; a rate limit that ran out shows as
 *           ok (mi_profile.c writes that back).
 * disconnect  disconnected_at = now(), sealed secrets erased.
 * rotate    admin only: channels holding a value sealed with an older key,
 *           in batches: open, reseal with the current key, UPDATE guarded
 *           by the old sealed values, so a concurrent reconnect wins.
 *
 * Everything runs on the loop (async libpq, mi_graph_call on curl multi).
 * Secrets: a plaintext token lives only in its request's memory and is
 * wiped before that is freed; it is never logged or replied, and errors
 * never quote it (nor Meta's message text, which could).
 * Failures: Graph errors become 400/403/502/504 (mi_connect_error); the
 * live (kind, external_id) index turns a race into 409 after one second
 * look, in case it was this tenant racing itself.
 */
#include "mi.h"

#include <ashoon/ids.h>
#include <ashoon/json.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_MAX      4096
#define APP_SECRET_MAX 256
#define ROTATE_BATCH   50
#define STR_(x)        #x
#define STR(x)         STR_(x)
#define ROTATE_MIN_MS  1000 /* stop rotating with less time left */

/* A rate limit that has run out is 'ok' (mi_profile.c stores it back). */
#define EXPIRED "(status = 'rate_limited' AND rate_limited_until <= now())"
/* The columns chan_json reads, in its order. */
#define CHAN_COLUMNS                                                         \
	"id, kind, login, external_id, name, username, category, "           \
	"follower_count, account_type, "                                     \
	"CASE WHEN " EXPIRED " THEN 'ok' ELSE status END AS status, "        \
	"CASE WHEN " EXPIRED " THEN NULL ELSE status_code END AS code, "     \
	"CASE WHEN " EXPIRED " THEN NULL ELSE status_reason END AS reason, " \
	"key_version, to_char(created_at AT TIME ZONE 'UTC', "               \
	"'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created"

#define CONFLICT_MSG "this account is connected to another business"

/* --- pure helpers (mi.h) --- */

static bool
all_digits(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char) s[i]))
			return false;
	return true;
}

/* Meta tokens are URL-safe ASCII; anything else is refused before it can
 * reach a query string or a header. */
static bool
token_ok(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char) s[i]) && !strchr("-._~|", s[i]))
			return false;
	return true;
}

static bool
printable_ok(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] == 0x7f)
			return false;
	return true;
}

ash_err
mi_connect_check(const char *kind, const char *login_in,
    const char *external_id, const char *token, const char *app_secret,
    const char **login, const char **why)
{
	const char *l = login_in ? login_in : "facebook";

	if (kind == NULL ||
	    (strcmp(kind, "messenger") != 0 && strcmp(kind, "instagram") != 0))
		*why = "kind must be \"messenger\" or \"instagram\"";
	else if (strcmp(l, "facebook") != 0 && strcmp(l, "instagram") != 0)
		*why = "login must be \"facebook\" or \"instagram\"";
	else if (strcmp(kind, "messenger") == 0 && l[0] == 'i')
		*why = "a Messenger channel connects with Facebook Login";
	else if (!all_digits(external_id, 32))
		*why = "external_id must be the Page or Instagram account id "
		       "(1-32 digits)";
	else if (!token_ok(token, TOKEN_MAX))
		*why = "access_token must be 1-4096 URL-safe characters";
	else if (app_secret != NULL &&
	    !printable_ok(app_secret, APP_SECRET_MAX))
		*why = "app_secret must be 1-256 printable characters";
	else {
		*login = l[0] == 'i' ? "instagram" : "facebook";
		return ASH_OK;
	}
	return ASH_EINVAL;
}

void
mi_connect_probe(const char *kind, const char *login, const char *external_id,
    const char **path, const char **query)
{
	if (strcmp(kind, "messenger") == 0) {
		*path  = "me"; /* a Page token's "me" is the Page */
		*query = "fields=id,name,category,followers_count";
	} else if (strcmp(login, "instagram") == 0) {
		*path  = "me";
		*query = "fields=id,user_id,username,name,followers_count,"
		         "account_type";
	} else {
		/* A Page token's "me" is the Page, not its IG account: ask
		 * for the account, which the token can read only if the
		 * account is linked to its Page. */
		*path  = external_id;
		*query = "fields=id,username,name,followers_count";
	}
}

ash_err
mi_connect_error(const mi_graph_result *res, char *msg, size_t cap)
{
	if (res->err == ASH_ETIMEDOUT) {
		snprintf(msg, cap, "Meta did not answer in time");
		return ASH_ETIMEDOUT;
	}
	if (res->err != ASH_OK) {
		snprintf(msg, cap, "Meta could not be reached");
		return ASH_EUPSTREAM;
	}
	switch (res->cls) {
	case MI_GRAPH_OK:
		return ASH_OK;
	case MI_GRAPH_REAUTH:
		snprintf(
		    msg, cap, "the access token was rejected by Meta (190)");
		return ASH_EINVAL;
	case MI_GRAPH_RETRY:
	case MI_GRAPH_THROTTLED:
		snprintf(msg, cap,
		    "Meta could not check the token now (code %d); try again "
		    "later",
		    res->code);
		return ASH_EUPSTREAM;
	default:
		break;
	}
	/* 10 and 200-299: the token works but lacks a permission. */
	if (res->code == 10 || (res->code >= 200 && res->code <= 299)) {
		snprintf(msg, cap,
		    "the token lacks a permission Meta requires (code %d)",
		    res->code);
		return ASH_EFORBIDDEN;
	}
	snprintf(msg, cap,
	    "Meta refused the token for this account (code %d): check the id, "
	    "kind and login",
	    res->code);
	return ASH_EINVAL;
}

bool
mi_connect_same_account(
    const char *login, const cJSON *body, const char *external_id)
{
	const char *uid = ash_json_str(body, "user_id");
	const char *id  = ash_json_str(body, "id");

	/* Instagram Login's /me has the app-scoped "id" and the professional
	 * account's "user_id" (the one webhooks carry). */
	if (strcmp(login, "instagram") == 0 && uid != NULL &&
	    strcmp(uid, external_id) == 0)
		return true;
	return id != NULL && strcmp(id, external_id) == 0;
}

/* --- shared plumbing --- */

static void
secret_free(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Seals plaintext as channel id's `what` with the current key. */
static ash_err
seal(mi_ctx *mi, const char *id, const char *what, const char *plain,
    char **out)
{
	char aad[128];

	mi_channel_aad(id, what, aad, sizeof(aad));
	return ash_crypto_seal(mi->keys, aad, plain, strlen(plain), out);
}

/* The envelope's tenant, or NULL after failing the call. */
static const char *
call_tenant(ash_bus_call *call)
{
	const char *t = ash_bus_call_req(call)->tenant;

	if (t != NULL && ash_id_uuid_valid(t))
		return t;
	ash_bus_call_fail(call, ASH_EUNAUTH, "this operation needs a tenant");
	return NULL;
}

static cJSON *
chan_json(const PGresult *r, int row)
{
	static const struct {
		const char *key;
		bool        num;
	} cols[] = {{"id", false}, {"kind", false}, {"login", false},
	    {"external_id", false}, {"name", false}, {"username", false},
	    {"category", false}, {"follower_count", true},
	    {"account_type", false}, {"status", false}, {"status_code", true},
	    {"status_reason", false}, {"key_version", true},
	    {"created_at", false}};
	cJSON *o = cJSON_CreateObject();

	for (int i = 0; i < (int) (sizeof(cols) / sizeof(cols[0])); i++) {
		const char *v = PQgetvalue(r, row, i);
		if (PQgetisnull(r, row, i))
			cJSON_AddNullToObject(o, cols[i].key);
		else if (cols[i].num)
			cJSON_AddNumberToObject(
			    o, cols[i].key, (double) strtoll(v, NULL, 10));
		else
			ash_json_add_str(o, cols[i].key, v);
	}
	return o;
}

/* --- channel.meta.connect --- */

typedef struct conn_req {
	mi_ctx       *mi;
	ash_bus_call *call;
	char          tenant[ASH_UUID_LEN];
	char          id[ASH_UUID_LEN]; /* the row: found, or new */
	char          kind[16];
	const char   *login; /* static: "facebook" | "instagram" */
	char          external_id[40];
	char         *token;      /* plaintext: wiped by conn_free */
	char         *app_secret; /* plaintext or NULL: wiped too */
	cJSON        *meta;       /* the probe's answer (no secrets) */
	bool          update;     /* the row exists: reconnect */
	bool          second;     /* the second look after a race */
} conn_req;

static void conn_lookup(conn_req *c);
static void conn_subscribe(conn_req *c);

static void
conn_free(conn_req *c)
{
	secret_free(c->token);
	secret_free(c->app_secret);
	cJSON_Delete(c->meta);
	free(c);
}

static void
conn_fail(conn_req *c, ash_err rv, const char *msg)
{
	ash_bus_call_fail(c->call, rv, msg);
	conn_free(c);
}

static ash_db_pool *
conn_db(conn_req *c)
{
	return ash_svc_db(c->mi->svc);
}

static void
on_stored(void *arg, ash_err rv, const PGresult *res)
{
	conn_req *c = arg;
	bool      raced =
	    rv == ASH_ECONFLICT || (rv == ASH_OK && PQntuples(res) == 0);
	cJSON *b;

	if (raced && !c->second) {
		c->second = true;
		conn_lookup(c);
		return;
	}
	if (raced) {
		conn_fail(c, ASH_ECONFLICT, CONFLICT_MSG);
		return;
	}
	if (rv != ASH_OK) {
		conn_fail(c, rv, NULL);
		return;
	}
	ash_log_info(ash_bus_call_log(c->call), "MI-CONNECTED",
	    "%s channel %s (account %s, %s login) %s", c->kind, c->id,
	    c->external_id, c->login, c->update ? "reconnected" : "connected");
	b = cJSON_CreateObject();
	cJSON_AddItemToObject(b, "channel", chan_json(res, 0));
	ash_bus_call_reply(c->call, c->update ? 200 : 201, b);
	conn_free(c);
}

/* Parameters of both statements: $1 id, $2 tenant, $3 kind, $4 external_id,
 * $5 login, $6 name, $7 username, $8 category, $9 follower_count,
 * $10 account_type, $11 token_sealed, $12 app_secret_sealed, $13 key. */
static const char insert_sql[] =
    "INSERT INTO channels (id, tenant_id, kind, external_id, login, name, "
    "username, category, follower_count, account_type, token_sealed, "
    "app_secret_sealed, key_version) VALUES ($1::uuid, $2::uuid, $3, $4, "
    "$5, $6, $7, $8, $9::bigint, $10, $11, $12, $13::int) "
    "RETURNING " CHAN_COLUMNS;

/* A reconnect also makes the channel's pending profiles due again (a 190
 * left them waiting for a new token). An app secret not given again is
 * kept. */
static const char update_sql[] =
    "WITH ch AS (UPDATE channels SET login = $5, name = $6, username = $7, "
    "category = $8, follower_count = $9::bigint, account_type = $10, "
    "token_sealed = $11, app_secret_sealed = COALESCE($12, "
    "app_secret_sealed), key_version = $13::int, status = 'ok', "
    "status_code = NULL, status_subcode = NULL, status_reason = NULL, "
    "status_at = now(), rate_limited_until = NULL, disconnected_at = NULL "
    "WHERE id = $1::uuid AND tenant_id = $2::uuid AND kind = $3 AND "
    "external_id = $4 RETURNING " CHAN_COLUMNS "), "
    "px AS (UPDATE participants SET profile_next_at = NULL "
    "WHERE channel_id IN (SELECT id FROM ch) AND profile_state = 'pending') "
    "SELECT * FROM ch";

/* followers_count as decimal text into buf, or NULL when absent. */
static const char *
follower_count(const cJSON *meta, char *buf, size_t cap)
{
	int64_t n;

	if (ash_json_get_i64(meta, "followers_count", &n) != ASH_OK || n < 0)
		return NULL;
	snprintf(buf, cap, "%lld", (long long) n);
	return buf;
}

static void
conn_store(conn_req *c)
{
	char   *tok = NULL, *sec = NULL, ver[16], fc[24];
	ash_err rv;

	if ((rv = seal(c->mi, c->id, "token", c->token, &tok)) != ASH_OK ||
	    (c->app_secret != NULL &&
	        (rv = seal(c->mi, c->id, "app_secret", c->app_secret, &sec)) !=
	            ASH_OK)) {
		free(tok);
		conn_fail(c, rv, NULL);
		return;
	}
	snprintf(ver, sizeof(ver), "%d", ash_keyring_current(c->mi->keys));
	const char *p[] = {c->id, c->tenant, c->kind, c->external_id, c->login,
	    ash_json_str(c->meta, "name"), ash_json_str(c->meta, "username"),
	    ash_json_str(c->meta, "category"),
	    follower_count(c->meta, fc, sizeof(fc)),
	    ash_json_str(c->meta, "account_type"), tok, sec, ver};
	rv = ash_db_query(conn_db(c), c->update ? update_sql : insert_sql, 13,
	    p, on_stored, c);
	free(tok);
	free(sec);
	if (rv != ASH_OK)
		conn_fail(c, rv, NULL);
}

static void
on_looked_up(void *arg, ash_err rv, const PGresult *res)
{
	conn_req *c = arg;

	if (rv != ASH_OK) {
		conn_fail(c, rv, NULL);
		return;
	}
	c->update = PQntuples(res) == 1;
	if (c->update && PQgetvalue(res, 0, 1)[0] != 't') {
		ash_log_info(ash_bus_call_log(c->call), "MI-CONNECT-CONFLICT",
		    "%s account %s is live for another tenant", c->kind,
		    c->external_id);
		conn_fail(c, ASH_ECONFLICT, CONFLICT_MSG);
		return;
	}
	if (c->update)
		snprintf(c->id, sizeof(c->id), "%s", PQgetvalue(res, 0, 0));
	else
		ash_id_uuid4(c->id);
	conn_store(c);
}

/* The account's row: live (for any tenant) first, else this tenant's most
 * recent disconnected one. */
static void
conn_lookup(conn_req *c)
{
	static const char sql[] =
	    "SELECT id, tenant_id = $1::uuid FROM channels "
	    "WHERE kind = $2 AND external_id = $3 "
	    "AND (disconnected_at IS NULL OR tenant_id = $1::uuid) "
	    "ORDER BY disconnected_at IS NULL DESC, created_at DESC LIMIT 1";
	const char *p[] = {c->tenant, c->kind, c->external_id};

	if (ash_db_query(conn_db(c), sql, 3, p, on_looked_up, c) != ASH_OK)
		conn_fail(c, ASH_EUNAVAIL, NULL);
}

/* The messaging webhook fields we store (meta-webhooks.md §3.4). */
#define MESSENGER_FIELDS                                             \
	"messages,messaging_postbacks,message_echoes,message_reads," \
	"message_deliveries,message_reactions,messaging_referrals,"  \
	"messaging_handovers,standby"
#define INSTAGRAM_FIELDS                                                 \
	"messages,messaging_postbacks,messaging_seen,message_reactions," \
	"messaging_referral,messaging_handover,standby,message_edit"

static void
on_subscribed(void *arg, const mi_graph_result *res)
{
	conn_req *c = arg;

	if (res->err != ASH_OK || res->cls != MI_GRAPH_OK) {
		ash_log_info(ash_bus_call_log(c->call), "MI-SUBSCRIBE-REFUSED",
		    "%s account %s: HTTP %ld, code %d/%d", c->kind,
		    c->external_id, res->status, res->code, res->subcode);
		conn_fail(c, ASH_EUPSTREAM,
		    "Meta refused to subscribe the account to this app's "
		    "webhooks (without it no message would arrive)");
		return;
	}
	conn_lookup(c);
}

/* Webhooks flow only once the app is subscribed to the account: for a
 * Page, POST /{page-id}/subscribed_apps with its token; for Instagram
 * Login, POST /me/subscribed_apps on graph.instagram.com. An Instagram
 * account reached through Facebook Login rides on its Page's
 * subscription, which is the Page's own connection to make. */
static void
conn_subscribe(conn_req *c)
{
	char        path[96];
	const char *fields = strcmp(c->kind, "messenger") == 0
	    ? "subscribed_fields=" MESSENGER_FIELDS
	    : "subscribed_fields=" INSTAGRAM_FIELDS;
	ash_err     rv;

	if (strcmp(c->kind, "instagram") == 0 &&
	    strcmp(c->login, "facebook") == 0) {
		conn_lookup(c);
		return;
	}
	snprintf(path, sizeof(path), "%s/subscribed_apps",
	    strcmp(c->kind, "messenger") == 0 ? c->external_id : "me");
	rv = mi_graph_call(c->mi, c->login, c->token, "POST", path, fields,
	    NULL, on_subscribed, c);
	if (rv != ASH_OK)
		conn_fail(c, rv, NULL);
}

static void
on_probed(void *arg, const mi_graph_result *res)
{
	conn_req *c = arg;
	char      msg[160];
	ash_err   rv;

	if ((rv = mi_connect_error(res, msg, sizeof(msg))) != ASH_OK) {
		/* Codes only: Meta's message text could quote the token. */
		ash_log_info(ash_bus_call_log(c->call), "MI-CONNECT-REFUSED",
		    "%s account %s: %s, HTTP %ld, code %d/%d, fbtrace %s",
		    c->kind, c->external_id, ash_strerror(res->err),
		    res->status, res->code, res->subcode,
		    res->fbtrace_id ? res->fbtrace_id : "-");
		conn_fail(c, rv, msg);
		return;
	}
	if (!mi_connect_same_account(c->login, res->body, c->external_id)) {
		conn_fail(
		    c, ASH_EINVAL, "the token belongs to another account");
		return;
	}
	c->meta = cJSON_Duplicate(res->body, true);
	conn_subscribe(c);
}

static void
conn_probe(conn_req *c)
{
	const char *path, *query;
	ash_err     rv;

	mi_connect_probe(c->kind, c->login, c->external_id, &path, &query);
	rv = mi_graph_call(
	    c->mi, c->login, c->token, "GET", path, query, NULL, on_probed, c);
	if (rv != ASH_OK)
		conn_fail(c, rv == ASH_ECLOSED ? rv : ASH_EUNAVAIL,
		    "the Graph API cannot be called now");
}

static void
on_connect(ash_bus_call *call, void *arg)
{
	const cJSON *b   = ash_bus_call_req(call)->body;
	const char  *tok = ash_json_str(b, "access_token");
	const char  *sec = ash_json_str(b, "app_secret");
	const char  *tenant, *login = NULL, *why = NULL;
	conn_req    *c;

	if ((tenant = call_tenant(call)) == NULL)
		return;
	if (mi_connect_check(ash_json_str(b, "kind"), ash_json_str(b, "login"),
	        ash_json_str(b, "external_id"), tok, sec, &login,
	        &why) != ASH_OK) {
		ash_bus_call_fail(call, ASH_EINVAL, why);
		return;
	}
	c        = ash_xcalloc(1, sizeof(*c));
	c->mi    = arg;
	c->call  = call;
	c->login = login;
	snprintf(c->tenant, sizeof(c->tenant), "%s", tenant);
	snprintf(c->kind, sizeof(c->kind), "%s", ash_json_str(b, "kind"));
	snprintf(c->external_id, sizeof(c->external_id), "%s",
	    ash_json_str(b, "external_id"));
	c->token      = ash_xstrdup(tok);
	c->app_secret = sec ? ash_xstrdup(sec) : NULL;
	conn_probe(c);
}

/* --- channel.meta.list / channel.meta.disconnect --- */

static void
on_listed(void *arg, ash_err rv, const PGresult *res)
{
	ash_bus_call *call = arg;
	cJSON        *b, *arr;

	if (rv != ASH_OK) {
		ash_bus_call_fail(call, rv, NULL);
		return;
	}
	b   = cJSON_CreateObject();
	arr = cJSON_AddArrayToObject(b, "channels");
	for (int i = 0; i < PQntuples(res); i++)
		cJSON_AddItemToArray(arr, chan_json(res, i));
	ash_bus_call_reply(call, 200, b);
}

static void
on_list(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "SELECT " CHAN_COLUMNS " FROM channels WHERE tenant_id = $1::uuid "
	    "AND disconnected_at IS NULL ORDER BY created_at, id";
	mi_ctx     *mi = arg;
	const char *tenant;

	if ((tenant = call_tenant(call)) == NULL)
		return;
	if (ash_db_query(ash_svc_db(mi->svc), sql, 1, &tenant, on_listed,
	        call) != ASH_OK)
		ash_bus_call_fail(call, ASH_EUNAVAIL, NULL);
}

static void
on_disconnected(void *arg, ash_err rv, const PGresult *res)
{
	ash_bus_call *call = arg;
	cJSON        *b;

	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK) {
		ash_bus_call_fail(
		    call, rv, rv == ASH_ENOTFOUND ? "no such channel" : NULL);
		return;
	}
	ash_log_info(ash_bus_call_log(call), "MI-DISCONNECTED",
	    "channel %s disconnected, its secrets erased",
	    PQgetvalue(res, 0, 0));
	b = cJSON_CreateObject();
	cJSON_AddBoolToObject(b, "disconnected", true);
	ash_bus_call_reply(call, 200, b);
}

/* token_sealed is NOT NULL, so '' stands for "erased". */
static void
on_disconnect(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "UPDATE channels SET disconnected_at = now(), token_sealed = '', "
	    "app_secret_sealed = NULL WHERE id = $1::uuid AND "
	    "tenant_id = $2::uuid AND disconnected_at IS NULL RETURNING id";
	mi_ctx     *mi = arg;
	const char *tenant;

	if ((tenant = call_tenant(call)) == NULL)
		return;
	const char *p[] = {
	    ash_json_str(ash_bus_call_req(call)->body, "id"), tenant};
	if (ash_db_query(ash_svc_db(mi->svc), sql, 2, p, on_disconnected,
	        call) != ASH_OK)
		ash_bus_call_fail(call, ASH_EUNAVAIL, NULL);
}

/* --- meta.keys.rotate --- */

typedef struct rot_req {
	mi_ctx       *mi;
	ash_bus_call *call;
	int           cur;                 /* the key version sealing now */
	char          like[16];            /* "v<cur>.%" */
	char          after[ASH_UUID_LEN]; /* keyset cursor */
	bool          more;                /* the last batch was full */
	long          rotated;             /* channels rewritten */
	long          failed; /* channels whose secrets did not open */
} rot_req;

static void rot_next(rot_req *r);

static void
rot_reply(rot_req *r, bool complete)
{
	cJSON *b = cJSON_CreateObject();

	cJSON_AddNumberToObject(b, "key_version", r->cur);
	cJSON_AddNumberToObject(b, "rotated", (double) r->rotated);
	cJSON_AddNumberToObject(b, "failed", (double) r->failed);
	cJSON_AddBoolToObject(b, "complete", complete);
	ash_log_info(ash_bus_call_log(r->call), "MI-ROTATE",
	    "key version %d: %ld channel(s) resealed, %ld failed%s", r->cur,
	    r->rotated, r->failed, complete ? "" : ", stopped early");
	ash_bus_call_reply(r->call, 200, b);
	free(r);
}

/* *out = sealed with the current key: a copy if it already is, else opened
 * with its own version and sealed again. */
static ash_err
reseal(rot_req *r, const char *id, const char *what, const char *sealed,
    char **out)
{
	char     aad[128];
	uint8_t *pt = NULL;
	size_t   n  = 0;
	ash_err  rv;

	if (ash_crypto_sealed_version(sealed) == r->cur) {
		*out = ash_xstrdup(sealed);
		return ASH_OK;
	}
	mi_channel_aad(id, what, aad, sizeof(aad));
	if ((rv = ash_crypto_unseal(r->mi->keys, aad, sealed, &pt, &n)) !=
	    ASH_OK)
		return rv;
	rv = ash_crypto_seal(r->mi->keys, aad, pt, n, out);
	explicit_bzero(pt, n);
	free(pt);
	return rv;
}

/* One row's update record, or NULL (counted and logged) if a secret of
 * it does not open. */
static cJSON *
rot_row(rot_req *r, const PGresult *res, int i)
{
	const char *id  = PQgetvalue(res, i, 0);
	const char *tok = PQgetvalue(res, i, 1);
	const char *sec =
	    PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2);
	char  *nt = NULL, *ns = NULL;
	cJSON *o;

	if (reseal(r, id, "token", tok, &nt) != ASH_OK ||
	    (sec != NULL && *sec != '\0' &&
	        reseal(r, id, "app_secret", sec, &ns) != ASH_OK)) {
		ash_log_error(ash_bus_call_log(r->call), "MI-ROTATE-FAILED",
		    "channel %s: a sealed secret does not open (is its key "
		    "version still in ASHOON_MASTER_KEY?)",
		    id);
		r->failed++;
		free(nt);
		return NULL;
	}
	o = cJSON_CreateObject();
	ash_json_add_str(o, "id", id);
	ash_json_add_str(o, "nt", nt);
	ash_json_add_str(o, "ot", tok);
	if (sec != NULL) {
		ash_json_add_str(o, "na", ns ? ns : sec);
		ash_json_add_str(o, "oa", sec);
	}
	free(nt);
	free(ns);
	return o;
}

static void
on_rot_updated(void *arg, ash_err rv, const PGresult *res)
{
	rot_req *r = arg;

	if (rv != ASH_OK) {
		ash_bus_call_fail(r->call, rv, NULL);
		free(r);
		return;
	}
	r->rotated += PQntuples(res);
	rot_next(r);
}

/* The guard: a row whose sealed values changed since they were read (a
 * reconnect) is left alone. */
static void
rot_update(rot_req *r, cJSON *recs)
{
	static const char sql[] =
	    "UPDATE channels c SET token_sealed = x.nt, "
	    "app_secret_sealed = x.na, key_version = $2::int "
	    "FROM jsonb_to_recordset($1::jsonb) "
	    "AS x(id uuid, nt text, na text, ot text, oa text) "
	    "WHERE c.id = x.id AND c.token_sealed = x.ot "
	    "AND c.app_secret_sealed IS NOT DISTINCT FROM x.oa RETURNING c.id";
	char    ver[16], *json = ash_json_render(recs);
	ash_err rv;

	snprintf(ver, sizeof(ver), "%d", r->cur);
	const char *p[] = {json, ver};
	rv =
	    ash_db_query(ash_svc_db(r->mi->svc), sql, 2, p, on_rot_updated, r);
	cJSON_free(json);
	if (rv != ASH_OK)
		on_rot_updated(r, rv, NULL);
}

static void
on_rot_rows(void *arg, ash_err rv, const PGresult *res)
{
	rot_req *r = arg;
	cJSON   *recs;
	int      n;

	if (rv != ASH_OK) {
		ash_bus_call_fail(r->call, rv, NULL);
		free(r);
		return;
	}
	n       = PQntuples(res);
	r->more = n == ROTATE_BATCH;
	if (n > 0)
		snprintf(r->after, sizeof(r->after), "%s",
		    PQgetvalue(res, n - 1, 0));
	recs = cJSON_CreateArray();
	for (int i = 0; i < n; i++) {
		cJSON *o = rot_row(r, res, i);
		if (o != NULL)
			cJSON_AddItemToArray(recs, o);
	}
	if (cJSON_GetArraySize(recs) > 0)
		rot_update(r, recs);
	else
		rot_next(r);
	cJSON_Delete(recs);
}

/* The next batch after r->after of live secrets not all sealed with the
 * current key (disconnected channels hold '' and are skipped). */
static void
rot_next(rot_req *r)
{
	static const char sql[] =
	    "SELECT id, token_sealed, app_secret_sealed FROM channels "
	    "WHERE id > $1::uuid AND token_sealed <> '' AND "
	    "(token_sealed NOT LIKE $2 OR key_version <> $3::int OR "
	    "(app_secret_sealed <> '' AND app_secret_sealed NOT LIKE $2)) "
	    "ORDER BY id LIMIT " STR(ROTATE_BATCH);
	char cur[16];

	if (!r->more || ash_bus_call_remaining_ms(r->call) < ROTATE_MIN_MS) {
		rot_reply(r, !r->more);
		return;
	}
	snprintf(cur, sizeof(cur), "%d", r->cur);
	const char *p[] = {r->after, r->like, cur};
	if (ash_db_query(ash_svc_db(r->mi->svc), sql, 3, p, on_rot_rows, r) !=
	    ASH_OK)
		on_rot_rows(r, ASH_EUNAVAIL, NULL);
}

static void
on_rotate(ash_bus_call *call, void *arg)
{
	const ash_request *req = ash_bus_call_req(call);
	mi_ctx            *mi  = arg;
	rot_req           *r;

	if (req->role == NULL || strcmp(req->role, "admin") != 0) {
		ash_bus_call_fail(call, ASH_EFORBIDDEN, "admin only");
		return;
	}
	r       = ash_xcalloc(1, sizeof(*r));
	r->mi   = mi;
	r->call = call;
	r->cur  = ash_keyring_current(mi->keys);
	r->more = true;
	snprintf(r->like, sizeof(r->like), "v%d.%%", r->cur);
	snprintf(r->after, sizeof(r->after), "%s",
	    "00000000-0000-0000-0000-000000000000");
	rot_next(r);
}

/* --- registration --- */

void
mi_channels_register(mi_ctx *mi)
{
	ash_bus_server *bus = ash_svc_bus(mi->svc);

	ash_bus_server_handle(
	    bus, ASH_OP_CHANNEL_META_CONNECT, on_connect, mi);
	ash_bus_server_handle(bus, ASH_OP_CHANNEL_META_LIST, on_list, mi);
	ash_bus_server_handle(
	    bus, ASH_OP_CHANNEL_META_DISCONNECT, on_disconnect, mi);
	ash_bus_server_handle(bus, ASH_OP_META_KEYS_ROTATE, on_rotate, mi);
}
