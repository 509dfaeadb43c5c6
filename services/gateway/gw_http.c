/*
 * gw_http.c - one HTTP request from arrival to reply.
 *
 * A gw_call lives from arrival until its reply is sent (or the client has
 * gone and the backend has answered). It holds the loop, so a SIGTERM
 * drain waits for it. If the client disconnects first, the HTTP request
 * is released at once and the call only waits for its backend answer to
 * finish cleanly; nothing touches the departed request.
 */
#include "gw.h"

#include <ashoon/crypto.h>
#include <ashoon/ids.h>
#include <ashoon/json.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gw_call {
	gw_ctx       *gw;
	ash_http_req *req; /* NULL once the client is gone */
	gw_match      m;
	const char   *route; /* pattern, for logs and metrics */
	char          req_id[ASH_PROTO_ID_MAX + 1];
	char          ip[64];
	char          tenant[ASH_UUID_LEN];
	char          user[40];
	int           to; /* target service */
	cJSON        *body;
	int64_t       t0;    /* monotonic ms at arrival */
	int64_t       wall0; /* wall-clock ms at arrival */
	int           status;
} gw_call;

/* --- finishing ---------------------------------------------------------- */

/* "203.0.113.0/24" or "2001:db8:1::/48": enough for operations, not a
 * personal identifier in the logs. */
static void
ip_prefix(const char *ip, char *out, size_t cap)
{
	unsigned char a[16];

	if (inet_pton(AF_INET, ip, a) == 1) {
		snprintf(out, cap, "%u.%u.%u.0/24", a[0], a[1], a[2]);
	} else if (inet_pton(AF_INET6, ip, a) == 1) {
		memset(a + 6, 0, 10);
		char s[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, a, s, sizeof(s));
		snprintf(out, cap, "%s/48", s);
	} else {
		snprintf(out, cap, "?");
	}
}

/* The request counted by route and status. The metrics' handles are kept
 * per route, for the last status it answered, in a small direct-mapped
 * cache: looking them up at every request (labels rendered, two searches
 * by name) was about 2,500 instructions of a webhook POST's 100,000 here.
 * A route is one of the route table's static strings, so its pointer
 * names it. */
static void
call_count(gw_call *c, int64_t ms)
{
	ash_metrics   *reg = ash_svc_metrics(c->gw->svc);
	gw_count_slot *k =
	    &c->gw->counts[((uintptr_t) c->route >> 3) % GW_COUNT_SLOTS];
	char labels[160], st[8];

	if (k->route != c->route || k->status != c->status) {
		snprintf(st, sizeof(st), "%d", c->status);
		ash_metrics_labels(labels, sizeof(labels), "route", c->route,
		    "code", st, NULL);
		k->answered =
		    ash_metrics_counter(reg, "ashoon_http_requests_total",
		        "HTTP requests answered by the gateway", labels);
		ash_metrics_labels(
		    labels, sizeof(labels), "route", c->route, NULL);
		k->seconds = ash_metrics_histogram(reg,
		    "ashoon_http_request_seconds",
		    "HTTP request latency at the gateway", labels, NULL, 0);
		k->route   = c->route;
		k->status  = c->status;
	}
	ash_counter_add(k->answered, 1);
	ash_histogram_observe(k->seconds, (double) ms / 1000.0);
}

static void
call_finish(gw_call *c)
{
	int64_t ms = ash_now_ms() - c->t0;

	/* The access line, and the client's prefix in it, are formatted only
	 * when written: at warn, every request paid for an inet_pton and an
	 * snprintf. */
	if (ash_log_enabled(ASH_LOG_INFO)) {
		char          net[64];
		ash_log_ctx   ctx = {c->req_id, *c->tenant ? c->tenant : NULL};
		ash_log_field f[] = {
		    ASH_LF_STR("route", c->route),
		    ASH_LF_INT("status", c->status),
		    ASH_LF_INT("ms", ms),
		    ASH_LF_STR("client", net),
		};

		ip_prefix(c->ip, net, sizeof(net));
		ash_log_emitf(ASH_LOG_INFO, &ctx, "ACCESS", f,
		    sizeof(f) / sizeof(f[0]), "%s %s",
		    c->m.route ? c->m.route->method : "-", c->route);
	}
	call_count(c, ms);
	cJSON_Delete(c->body);
	ash_loop_rele(ash_svc_loop(c->gw->svc));
	free(c);
}

static void
reply_raw(
    gw_call *c, int status, const char *type, const char *body, size_t len)
{
	c->status = status;
	if (c->req != NULL)
		ash_http_reply(c->req, status, type, body, len);
	call_finish(c);
}

static void
reply_json(gw_call *c, int status, const cJSON *doc)
{
	char *s = ash_json_render(doc);

	reply_raw(c, status, "application/json", s, strlen(s));
	cJSON_free(s);
}

static void
reply_error(gw_call *c, int status, const char *code, const char *msg)
{
	c->status = status;
	if (c->req != NULL)
		ash_http_reply_error(c->req, status, code, msg, c->req_id);
	call_finish(c);
}

static void
fail(gw_call *c, ash_err e, const char *msg)
{
	reply_error(c, ash_err_http_status(e), ash_err_code(e),
	    msg ? msg : ash_strerror(e));
}

/* --- forwarding --------------------------------------------------------- */

static void
on_backend(void *arg, const ash_bus_result *r)
{
	gw_call    *c   = arg;
	const char *svc = ash_services[c->to].name;
	char        msg[160];

	switch (r->err) {
	case ASH_OK:
		break;
	case ASH_ETIMEDOUT:
		snprintf(msg, sizeof(msg), "%s did not answer in time", svc);
		fail(c, ASH_ETIMEDOUT, msg);
		return;
	case ASH_EUPSTREAM:
		snprintf(msg, sizeof(msg), "%s sent a malformed reply", svc);
		fail(c, ASH_EUPSTREAM, msg);
		return;
	default:
		snprintf(msg, sizeof(msg), "%s is unavailable", svc);
		fail(c, ASH_EUNAVAIL, msg);
		return;
	}
	if (r->status >= 400) {
		reply_error(
		    c, r->status, r->code, r->message ? r->message : "");
	} else if (c->m.route->shape == GW_TEXT_OUT) {
		const char *t = ash_json_str(r->body, "challenge");
		reply_raw(
		    c, r->status, "text/plain", t ? t : "", t ? strlen(t) : 0);
	} else {
		reply_json(c, r->status, r->body);
	}
}

static void
forward(gw_call *c)
{
	const gw_route  *rt   = c->m.route;
	ash_bus_client  *peer = ash_svc_peer(c->gw->svc, c->to);
	bool             adm  = rt->auth == GW_AUTH_ADMIN;
	ash_bus_req_opts o    = {
	       rt->op,
	       c->req_id,
            *c->tenant ? c->tenant : NULL,
	       c->user,
            adm ? "admin" : "api",
	       ash_wall_ms() + ash_svc_config(c->gw->svc)->bus_timeout_ms,
	       /* Webhook bursts: the POSTs read in one loop turn travel as
	        * one bus message, and their owner commits them together. */
	       .coalesce = rt->cls == GW_CLASS_WEBHOOK,
        };
	char    msg[160];
	ash_err rv;

	/* A signed body goes as sent, beside the envelope (body_raw). */
	if (rt->shape == GW_RAW_IN) {
		const char *data = NULL;
		ash_http_req_body(c->req, &data, &o.att_len);
		o.att = data ? data : "";
	}

	rv = peer ? ash_bus_request(peer, &o, c->body, on_backend, c)
	          : ASH_EUNAVAIL;
	if (rv == ASH_OK)
		return;
	snprintf(msg, sizeof(msg), "no instance of %s is connected",
	    ash_services[c->to].name);
	fail(c, rv == ASH_ETIMEDOUT ? ASH_ETIMEDOUT : ASH_EUNAVAIL, msg);
}

/* --- the request body --------------------------------------------------- */

/* A query-string value as the field's declared type; NULL if it does not
 * convert (the op check then reports the field). */
static cJSON *
query_value(ash_field_type t, const char *v)
{
	char *end;

	switch (t) {
	case ASH_FT_INT: {
		long long n = strtoll(v, &end, 10);
		return (*v && *end == '\0') ? cJSON_CreateNumber((double) n)
		                            : cJSON_CreateString(v);
	}
	case ASH_FT_BOOL:
		if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
			return cJSON_CreateBool(v[0] == 't');
		return cJSON_CreateString(v);
	default:
		return cJSON_CreateString(v);
	}
}

static ash_err
body_from_json(gw_call *c, char *msg, size_t cap)
{
	const char *data;
	size_t      len;

	ash_http_req_body(c->req, &data, &len);
	if (len == 0 || strspn(data, " \t\r\n") == len) {
		c->body = cJSON_CreateObject();
		return ASH_OK;
	}
	if (ash_json_parse(data, len, &c->body) != ASH_OK ||
	    !cJSON_IsObject(c->body)) {
		snprintf(msg, cap, "the request body must be a JSON object");
		return ASH_EBADJSON;
	}
	return ASH_OK;
}

/* A decoded value going into the envelope must be UTF-8 (ashoon/json.h);
 * else 400 naming its field. */
static ash_err
field_text_ok(const char *name, const char *v, char *msg, size_t cap)
{
	if (ash_json_text_ok(v))
		return ASH_OK;
	snprintf(msg, cap, "\"%s\" must be UTF-8 text", name);
	return ASH_EINVAL;
}

static ash_err
body_from_query(gw_call *c, const ash_op_desc *d, char *msg, size_t cap)
{
	c->body = cJSON_CreateObject();
	for (int i = 0; i < d->nreq; i++) {
		const char *v = ash_http_req_query(c->req, d->req[i].name);
		if (v == NULL)
			continue;
		if (field_text_ok(d->req[i].name, v, msg, cap) != ASH_OK)
			return ASH_EINVAL;
		cJSON_AddItemToObject(
		    c->body, d->req[i].name, query_value(d->req[i].type, v));
	}
	return ASH_OK;
}

/* A signed body: its exact bytes travel as the request's attachment
 * (forward), not in the JSON, since a signature is computed over them and
 * no parse-and-render may change a byte before it is checked; the body
 * only says how they came. */
static void
body_raw(gw_call *c)
{
	const char *sig;

	c->body = cJSON_CreateObject();
	/* A header that is not UTF-8 cannot go into the envelope, and is no
	 * signature: it goes as one that is malformed, refused (401) and
	 * journaled like any other. */
	if ((sig = ash_http_req_header(c->req, "X-Hub-Signature-256")) != NULL)
		ash_json_add_str(c->body, "signature",
		    ash_json_text_ok(sig) ? sig : "(not UTF-8)");
	cJSON_AddNumberToObject(c->body, "received_ms", (double) c->wall0);
}

/* JSON (or query, or raw bytes) + path parameters, checked against the op.
 */
static ash_err
build_body(gw_call *c, char *msg, size_t cap)
{
	const ash_op_desc *d      = ash_op(c->m.route->op);
	const char        *method = c->m.route->method;
	ash_err            rv     = ASH_OK;

	if (c->m.route->shape == GW_RAW_IN)
		body_raw(c);
	else if (strcmp(method, "GET") == 0 || strcmp(method, "DELETE") == 0)
		rv = body_from_query(c, d, msg, cap);
	else
		rv = body_from_json(c, msg, cap);
	if (rv != ASH_OK)
		return rv;
	for (int i = 0; i < c->m.nparams; i++) {
		if (strcmp(c->m.names[i], "svc") == 0)
			continue;
		if (field_text_ok(c->m.names[i], c->m.values[i], msg, cap) !=
		    ASH_OK)
			return ASH_EINVAL;
		cJSON_DeleteItemFromObjectCaseSensitive(
		    c->body, c->m.names[i]);
		ash_json_add_str(c->body, c->m.names[i], c->m.values[i]);
	}
	return ash_proto_check(d->req, d->nreq, c->body, msg, cap);
}

/* --- the steps ---------------------------------------------------------- */

static ash_err
pick_target(gw_call *c)
{
	c->to = c->m.route->to;
	if (c->to != GW_TO_PATH_SVC)
		return ASH_OK;
	for (int i = 0; i < c->m.nparams; i++)
		if (strcmp(c->m.names[i], "svc") == 0)
			c->to = ash_svc_find(c->m.values[i]);
	return c->to >= 0 ? ASH_OK : ASH_ENOTFOUND;
}

static void
proceed(gw_call *c)
{
	char    msg[160];
	ash_err rv;

	if ((rv = build_body(c, msg, sizeof(msg))) != ASH_OK) {
		fail(c, rv, msg);
		return;
	}
	if (pick_target(c) != ASH_OK) {
		fail(c, ASH_ENOTFOUND, "no such service");
		return;
	}
	forward(c);
}

static void
on_authed(void *arg, ash_err rv, const char *tenant)
{
	gw_call *c = arg;

	if (rv == ASH_EUNAUTH) {
		fail(c, rv, "a valid API key is required");
		return;
	}
	if (rv != ASH_OK) {
		fail(c, rv, "cannot verify the API key now");
		return;
	}
	snprintf(c->tenant, sizeof(c->tenant), "%s", tenant);
	proceed(c);
}

static void
authenticate(gw_call *c)
{
	const char *bearer =
	    gw_bearer(ash_http_req_header(c->req, "Authorization"));

	switch (c->m.route->auth) {
	case GW_AUTH_NONE:
		proceed(c);
		break;
	case GW_AUTH_ADMIN:
		if (!gw_auth_admin(bearer)) {
			fail(c,
			    *gw_config.admin_token ? ASH_EUNAUTH
			                           : ASH_EFORBIDDEN,
			    *gw_config.admin_token
			        ? "admin token required"
			        : "the admin API is disabled");
			return;
		}
		snprintf(c->user, sizeof(c->user), "admin");
		proceed(c);
		break;
	case GW_AUTH_API_KEY:
		if (bearer != NULL)
			snprintf(c->user, sizeof(c->user), "key:%.12s",
			    strlen(bearer) > 16 ? bearer + 4 : "?");
		gw_auth_api_key(c->gw, bearer, on_authed, c);
		break;
	}
}

static bool
within_limits(gw_call *c)
{
	gw_class    cls = c->m.route->cls;
	const char *data;
	size_t      len;
	int         retry = 1;
	char        ra[16];

	if (!gw_ratelimit_take(c->gw->rl, cls, c->ip, ash_now_ms(), &retry)) {
		snprintf(ra, sizeof(ra), "%d", retry);
		ash_http_req_set_header(c->req, "Retry-After", ra);
		fail(c, ASH_ERATELIMIT, "too many requests; slow down");
		return false;
	}
	ash_http_req_body(c->req, &data, &len);
	if (cls != GW_CLASS_OPEN && len > (size_t) gw_config.max_body[cls]) {
		fail(c, ASH_ETOOBIG, "request body too large");
		return false;
	}
	return true;
}

static void
on_ready(void *arg, int status, cJSON *report)
{
	reply_json(arg, status, report);
	cJSON_Delete(report);
}

static void
serve_local(gw_call *c)
{
	static const char ok[] = "{\"status\":\"ok\"}";
	char             *text;

	switch ((gw_local) c->m.route->op) {
	case GW_LOCAL_HEALTHZ:
		reply_raw(c, 200, "application/json", ok, sizeof(ok) - 1);
		break;
	case GW_LOCAL_METRICS:
		text = ash_metrics_render(ash_svc_metrics(c->gw->svc));
		reply_raw(
		    c, 200, "text/plain; version=0.0.4", text, strlen(text));
		free(text);
		break;
	case GW_LOCAL_READYZ:
		gw_readyz(c->gw, c->req_id, on_ready, c);
		break;
	}
}

static void
on_client_gone(void *arg)
{
	gw_call *c = arg;

	ash_http_req_release(c->req);
	c->req = NULL;
}

static void
call_start(gw_call *c, ash_http_req *req)
{
	const char *rid = ash_http_req_header(req, "X-Request-Id");
	char       *xff;

	c->req   = req;
	c->t0    = ash_now_ms();
	c->wall0 = ash_wall_ms();
	c->route = "unmatched";
	if (rid != NULL && ash_id_request_valid(rid))
		snprintf(c->req_id, sizeof(c->req_id), "%s", rid);
	else
		ash_id_request(c->req_id);
	ash_http_req_set_header(req, "X-Request-Id", c->req_id);
	/* Draining: answer, but send keep-alive clients elsewhere. */
	if (ash_loop_stopping(ash_svc_loop(c->gw->svc)))
		ash_http_req_set_header(req, "Connection", "close");
	xff = ash_http_req_header_list(req, "X-Forwarded-For");
	gw_client_ip(
	    c->gw->proxies, ash_http_req_peer(req), xff, c->ip, sizeof(c->ip));
	free(xff);
	ash_http_req_on_gone(req, on_client_gone, c);
	ash_loop_hold(ash_svc_loop(c->gw->svc));
}

void
gw_on_http(ash_http_req *req, void *arg)
{
	gw_call *c = ash_xcalloc(1, sizeof(*c));
	ash_err  rv;

	c->gw = arg;
	call_start(c, req);
	rv = gw_route_match(
	    ash_http_req_method(req), ash_http_req_path(req), &c->m);
	if (rv != ASH_OK) {
		fail(c, rv,
		    rv == ASH_EMETHOD ? "method not allowed here"
		                      : "no such route");
		return;
	}
	c->route = c->m.route->pattern;
	if (c->m.route->to == GW_TO_LOCAL) {
		serve_local(c);
		return;
	}
	if (within_limits(c))
		authenticate(c);
}
