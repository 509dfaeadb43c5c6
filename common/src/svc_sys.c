/*
 * svc_sys.c - what every service answers: sys.health, sys.info, sys.echo
 * over the bus, and /metrics + /healthz on its private HTTP listener.
 */
#include "svc_impl.h"

#include <ashoon/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct sys_call {
	ash_svc      *svc;
	ash_bus_call *call;
} sys_call;

static sys_call *
sys_call_new(ash_svc *svc, ash_bus_call *call)
{
	sys_call *sc = ash_xmalloc(sizeof(*sc));

	sc->svc  = svc;
	sc->call = call;
	return sc;
}

static void
sys_on_health_db(void *arg, ash_err rv, const PGresult *res)
{
	sys_call *sc = arg;
	cJSON    *b;

	if (rv != ASH_OK) {
		ash_bus_call_fail(
		    sc->call, ASH_EUNAVAIL, "database unavailable");
		free(sc);
		return;
	}
	b = cJSON_CreateObject();
	ash_json_add_str(b, "status", "ok");
	ash_json_add_str(b, "service", ash_svc_name(sc->svc));
	ash_json_add_str(b, "version", ASH_VERSION);
	ash_json_add_str(b, "db", "ok");
	cJSON_AddNumberToObject(
	    b, "inflight", ash_bus_server_inflight(ash_svc_bus(sc->svc)));
	ash_bus_call_reply(sc->call, 200, b);
	free(sc);
}

/* Healthy means: the bus answers and a query round-trips to Postgres. */
static void
sys_on_health(ash_bus_call *call, void *arg)
{
	sys_call *sc = sys_call_new(arg, call);

	if (ash_db_query(ash_svc_db(sc->svc), "SELECT 1", 0, NULL,
	        sys_on_health_db, sc) != ASH_OK)
		sys_on_health_db(sc, ASH_EUNAVAIL, NULL);
}

static void
sys_on_info_db(void *arg, ash_err rv, const PGresult *res)
{
	sys_call          *sc  = arg;
	const ash_request *req = ash_bus_call_req(sc->call);
	char               instance[300], host[256] = "?";
	cJSON             *b;

	if (rv != ASH_OK) {
		ash_bus_call_fail(sc->call, rv, NULL);
		free(sc);
		return;
	}
	gethostname(host, sizeof(host) - 1);
	snprintf(instance, sizeof(instance), "%s:%d", host, (int) getpid());
	b = cJSON_CreateObject();
	ash_json_add_str(b, "service", ash_svc_name(sc->svc));
	ash_json_add_str(b, "version", ASH_VERSION);
	ash_json_add_str(b, "instance", instance);
	ash_json_add_str(b, "db_user", PQgetvalue(res, 0, 0));
	ash_json_add_str(b, "schema", PQgetvalue(res, 0, 1));
	cJSON_AddNumberToObject(b, "migration", atoi(PQgetvalue(res, 0, 2)));
	if (req->tenant)
		ash_json_add_str(b, "tenant", req->tenant);
	ash_bus_call_reply(sc->call, 200, b);
	free(sc);
}

/* Reads the service's own schema, so a reply proves the whole path:
 * gateway -> bus -> service -> its schema, as its own role. */
static void
sys_on_info(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "SELECT current_user, current_schema(), "
	    "(SELECT coalesce(max(version), 0) FROM schema_migrations)";
	sys_call *sc = sys_call_new(arg, call);
	ash_err   rv = ash_db_query(
	      ash_svc_db(sc->svc), sql, 0, NULL, sys_on_info_db, sc);

	if (rv != ASH_OK)
		sys_on_info_db(sc, rv, NULL);
}

static void
sys_on_echo(ash_bus_call *call, void *arg)
{
	const ash_request *req = ash_bus_call_req(call);
	cJSON             *b   = cJSON_CreateObject();

	cJSON_AddItemToObject(b, "data",
	    cJSON_Duplicate(
	        cJSON_GetObjectItemCaseSensitive(req->body, "data"), true));
	if (req->tenant)
		ash_json_add_str(b, "tenant", req->tenant);
	ash_bus_call_reply(call, 200, b);
}

void
ash__svc_sys_register(ash_svc *svc)
{
	ash_bus_server_handle(svc->bus, ASH_OP_SYS_HEALTH, sys_on_health, svc);
	ash_bus_server_handle(svc->bus, ASH_OP_SYS_INFO, sys_on_info, svc);
	ash_bus_server_handle(svc->bus, ASH_OP_SYS_ECHO, sys_on_echo, svc);
}

static void
metrics_on_http(ash_http_req *req, void *arg)
{
	ash_svc    *svc  = arg;
	const char *path = ash_http_req_path(req);

	if (strcmp(path, "/metrics") == 0) {
		char *text = ash_metrics_render(svc->metrics);
		ash_http_reply(
		    req, 200, "text/plain; version=0.0.4", text, strlen(text));
		free(text);
	} else if (strcmp(path, "/healthz") == 0) {
		static const char ok[] = "{\"status\":\"ok\"}";
		ash_http_reply(
		    req, 200, "application/json", ok, sizeof(ok) - 1);
	} else {
		ash_http_reply_error(
		    req, 404, "not_found", "no such path", NULL);
	}
}

ash_err
ash__svc_metrics_open(ash_svc *svc)
{
	const ash_svc_cfg *cfg = ash_svc_config(svc);
	ash_http_opts      o = {cfg->metrics_addr, NULL, NULL, 1024, 8192, 10};
	ash_err            rv;

	if (*cfg->metrics_addr == '\0')
		return ASH_OK;
	rv = ash_http_server_open(
	    svc->loop, &o, metrics_on_http, svc, &svc->metrics_http);
	if (rv != ASH_OK) {
		ash_log_error(NULL, "METRICS-LISTEN", "cannot listen on %s",
		    cfg->metrics_addr);
		return rv;
	}
	svc->metrics_port = ash_http_server_port(svc->metrics_http);
	return ASH_OK;
}
