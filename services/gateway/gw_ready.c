/*
 * gw_ready.c - /readyz: is every service answering, with its database?
 *
 * One sys.health request per service, all in flight at once with the same
 * deadline; the report lists each service with its outcome and latency, so
 * an operator sees which one is down, not only that something is.
 */
#include "gw.h"

#include <ashoon/json.h>

#include <stdlib.h>
#include <string.h>

typedef struct ready {
	gw_ctx     *gw;
	gw_ready_cb done;
	void       *arg;
	int64_t     t0;
	int         pending;
	bool        all_ok;
	cJSON      *rows[ASH_SVC_COUNT];
	char        req_id[ASH_PROTO_ID_MAX + 1];
} ready;

typedef struct probe {
	ready *r;
	int    svc;
} probe;

static void
ready_row(ready *r, int svc, const char *status, const char *detail)
{
	cJSON *row = cJSON_CreateObject();

	ash_json_add_str(row, "name", ash_services[svc].name);
	ash_json_add_str(row, "status", status);
	cJSON_AddNumberToObject(row, "ms", (double) (ash_now_ms() - r->t0));
	if (detail != NULL)
		ash_json_add_str(row, "detail", detail);
	r->rows[svc] = row;
	if (strcmp(status, "ok") != 0)
		r->all_ok = false;
}

static void
ready_finish(ready *r)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON *arr;

	ash_json_add_str(doc, "status", r->all_ok ? "ok" : "degraded");
	arr = cJSON_AddArrayToObject(doc, "services");
	for (int i = 0; i < ASH_SVC_COUNT; i++)
		cJSON_AddItemToArray(arr, r->rows[i]);
	r->done(r->arg, r->all_ok ? 200 : 503, doc);
	free(r);
}

static void
on_health(void *arg, const ash_bus_result *res)
{
	probe *p = arg;
	ready *r = p->r;

	if (res->err == ASH_ETIMEDOUT)
		ready_row(r, p->svc, "timeout", "no answer within deadline");
	else if (res->err != ASH_OK)
		ready_row(r, p->svc, "unavailable", ash_strerror(res->err));
	else if (res->status >= 400)
		ready_row(r, p->svc, "unavailable", res->message);
	else
		ready_row(r, p->svc, "ok", NULL);
	free(p);
	if (--r->pending == 0)
		ready_finish(r);
}

static void
ready_probe(ready *r, int svc)
{
	ash_bus_client  *peer = ash_svc_peer(r->gw->svc, svc);
	probe           *p    = ash_xmalloc(sizeof(*p));
	ash_bus_req_opts o    = {.op = ASH_OP_SYS_HEALTH,
	       .id                   = r->req_id,
	       .deadline_ms = ash_wall_ms() + gw_config.ready_timeout_ms};
	ash_err          rv;

	p->r   = r;
	p->svc = svc;
	rv     = peer ? ash_bus_request(peer, &o, NULL, on_health, p)
	              : ASH_EUNAVAIL;
	if (rv != ASH_OK) {
		ready_row(r, svc, "unavailable", "not connected");
		free(p);
		r->pending--;
	}
}

void
gw_readyz(gw_ctx *gw, const char *req_id, gw_ready_cb done, void *arg)
{
	ready *r = ash_xcalloc(1, sizeof(*r));

	r->gw      = gw;
	r->done    = done;
	r->arg     = arg;
	r->t0      = ash_now_ms();
	r->all_ok  = true;
	r->pending = ASH_SVC_COUNT + 1; /* +1 until every probe is out */
	snprintf(r->req_id, sizeof(r->req_id), "%s", req_id);
	for (int i = 0; i < ASH_SVC_COUNT; i++)
		ready_probe(r, i);
	if (--r->pending == 0)
		ready_finish(r);
}
