/*
 * gw_tenants.c - the gateway's own ops: tenants and their API keys.
 *
 * They are served on the gateway's bus like any other op (the admin routes
 * reach them through the same forwarding path), and only for the admin
 * principal the gateway puts in the envelope after checking the token.
 */
#include "gw.h"

#include <ashoon/json.h>

#include <stdlib.h>
#include <string.h>

typedef struct tcall {
	ash_bus_call *call;
	char         *key; /* the new API key, shown once */
	char          name[256];
} tcall;

static bool
is_admin(ash_bus_call *call)
{
	const ash_request *req = ash_bus_call_req(call);

	if (req->role != NULL && strcmp(req->role, "admin") == 0)
		return true;
	ash_bus_call_fail(call, ASH_EFORBIDDEN, "admin only");
	return false;
}

static tcall *
tcall_new(ash_bus_call *call)
{
	tcall *t = ash_xcalloc(1, sizeof(*t));
	t->call  = call;
	return t;
}

static void
tcall_free(tcall *t)
{
	free(t->key);
	free(t);
}

/* A name is 1-200 bytes of printable text (UTF-8 allowed). */
static bool
name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 200)
		return false;
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static void
on_tenant_created(void *arg, ash_err rv, const PGresult *res)
{
	tcall *t = arg;
	cJSON *b;

	if (rv != ASH_OK) {
		ash_bus_call_fail(t->call, rv, NULL);
		tcall_free(t);
		return;
	}
	b = cJSON_CreateObject();
	ash_json_add_str(b, "id", PQgetvalue(res, 0, 0));
	ash_json_add_str(b, "name", t->name);
	ash_json_add_str(b, "api_key", t->key);
	ash_log_info(ash_bus_call_log(t->call), "TENANT-CREATED",
	    "tenant %s created", PQgetvalue(res, 0, 0));
	ash_bus_call_reply(t->call, 201, b);
	tcall_free(t);
}

static void
on_tenant_create(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "WITH t AS (INSERT INTO tenants(name) VALUES ($1) RETURNING id) "
	    "INSERT INTO api_keys(tenant_id, prefix, hash) "
	    "SELECT id, $2, $3 FROM t RETURNING tenant_id";
	gw_ctx     *gw   = arg;
	const char *name = ash_json_str(ash_bus_call_req(call)->body, "name");
	char        prefix[16], hash[65];
	tcall      *t;

	if (!is_admin(call))
		return;
	if (!name_ok(name)) {
		ash_bus_call_fail(
		    call, ASH_EINVAL, "name must be 1-200 printable bytes");
		return;
	}
	t = tcall_new(call);
	snprintf(t->name, sizeof(t->name), "%s", name);
	gw_apikey_make(&t->key, prefix, hash);
	const char *params[] = {name, prefix, hash};
	ash_err     rv       = ash_db_query(
	              ash_svc_db(gw->svc), sql, 3, params, on_tenant_created, t);
	if (rv != ASH_OK)
		on_tenant_created(t, rv, NULL);
}

static void
on_tenant_rows(void *arg, ash_err rv, const PGresult *res)
{
	ash_bus_call *call = arg;
	cJSON        *b, *arr;

	if (rv != ASH_OK) {
		ash_bus_call_fail(call, rv, NULL);
		return;
	}
	b   = cJSON_CreateObject();
	arr = cJSON_AddArrayToObject(b, "tenants");
	for (int i = 0; i < PQntuples(res); i++) {
		cJSON *t = cJSON_CreateObject();
		ash_json_add_str(t, "id", PQgetvalue(res, i, 0));
		ash_json_add_str(t, "name", PQgetvalue(res, i, 1));
		ash_json_add_str(t, "created_at", PQgetvalue(res, i, 2));
		cJSON_AddNumberToObject(
		    t, "active_keys", atoi(PQgetvalue(res, i, 3)));
		cJSON_AddItemToArray(arr, t);
	}
	ash_bus_call_reply(call, 200, b);
}

static void
on_tenant_list(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "SELECT t.id, t.name, "
	    "to_char(t.created_at AT TIME ZONE 'UTC', "
	    "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
	    "(SELECT count(*) FROM api_keys k WHERE k.tenant_id = t.id "
	    "AND k.revoked_at IS NULL) "
	    "FROM tenants t WHERE t.deleted_at IS NULL ORDER BY t.created_at";
	gw_ctx *gw = arg;

	if (!is_admin(call))
		return;
	if (ash_db_query(ash_svc_db(gw->svc), sql, 0, NULL, on_tenant_rows,
	        call) != ASH_OK)
		on_tenant_rows(call, ASH_EUNAVAIL, NULL);
}

static void
on_key_created(void *arg, ash_err rv, const PGresult *res)
{
	tcall *t = arg;
	cJSON *b;

	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK) {
		ash_bus_call_fail(t->call, rv,
		    rv == ASH_ENOTFOUND ? "no such tenant" : NULL);
		tcall_free(t);
		return;
	}
	b = cJSON_CreateObject();
	ash_json_add_str(b, "id", PQgetvalue(res, 0, 0));
	ash_json_add_str(b, "api_key", t->key);
	ash_bus_call_reply(t->call, 201, b);
	tcall_free(t);
}

static void
on_apikey_create(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "INSERT INTO api_keys(tenant_id, prefix, hash) "
	    "SELECT id, $2, $3 FROM tenants "
	    "WHERE id = $1 AND deleted_at IS NULL RETURNING id";
	gw_ctx *gw = arg;
	char    prefix[16], hash[65];
	tcall  *t;

	if (!is_admin(call))
		return;
	t = tcall_new(call);
	gw_apikey_make(&t->key, prefix, hash);
	const char *params[] = {
	    ash_json_str(ash_bus_call_req(call)->body, "tenant_id"), prefix,
	    hash};
	ash_err rv = ash_db_query(
	    ash_svc_db(gw->svc), sql, 3, params, on_key_created, t);
	if (rv != ASH_OK)
		on_key_created(t, rv, NULL);
}

static void
on_key_revoked(void *arg, ash_err rv, const PGresult *res)
{
	ash_bus_call *call = arg;
	cJSON        *b;

	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK) {
		ash_bus_call_fail(
		    call, rv, rv == ASH_ENOTFOUND ? "no such key" : NULL);
		return;
	}
	b = cJSON_CreateObject();
	cJSON_AddBoolToObject(b, "revoked", true);
	ash_bus_call_reply(call, 200, b);
}

static void
on_apikey_revoke(ash_bus_call *call, void *arg)
{
	/* Idempotent: revoking twice keeps the first revocation time. */
	static const char sql[] =
	    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) "
	    "WHERE id = $1 RETURNING id";
	gw_ctx     *gw       = arg;
	const char *params[] = {
	    ash_json_str(ash_bus_call_req(call)->body, "id")};

	if (!is_admin(call))
		return;
	if (ash_db_query(ash_svc_db(gw->svc), sql, 1, params, on_key_revoked,
	        call) != ASH_OK)
		on_key_revoked(call, ASH_EUNAVAIL, NULL);
}

void
gw_tenants_register(gw_ctx *gw)
{
	ash_bus_server *bus = ash_svc_bus(gw->svc);

	ash_bus_server_handle(bus, ASH_OP_TENANT_CREATE, on_tenant_create, gw);
	ash_bus_server_handle(bus, ASH_OP_TENANT_LIST, on_tenant_list, gw);
	ash_bus_server_handle(bus, ASH_OP_APIKEY_CREATE, on_apikey_create, gw);
	ash_bus_server_handle(bus, ASH_OP_APIKEY_REVOKE, on_apikey_revoke, gw);
}
