/*
 * gw_routes.c - the routing table: method + path pattern -> op and owner.
 *
 * One table, scanned in order (it is short; a trie would only pay off with
 * hundreds of routes). A {name} segment matches one non-empty path segment
 * and becomes a body field of the request (except {svc}, which picks the
 * service).
 */
#include "gw.h"

#include <stdio.h>
#include <string.h>

#define API(m, path, op, to)                                            \
	{                                                               \
		m, path, op, to, GW_CLASS_API, GW_AUTH_API_KEY, GW_JSON \
	}
#define ADMIN(m, path, op)                                                   \
	{                                                                    \
		m, path, op, ASH_SVC_GATEWAY, GW_CLASS_ADMIN, GW_AUTH_ADMIN, \
		    GW_JSON                                                  \
	}
#define MI ASH_SVC_META_INGEST

static const gw_route routes[] = {
    {"GET", "/healthz", GW_LOCAL_HEALTHZ, GW_TO_LOCAL, GW_CLASS_OPEN,
        GW_AUTH_NONE, GW_JSON},
    {"GET", "/readyz", GW_LOCAL_READYZ, GW_TO_LOCAL, GW_CLASS_OPEN,
        GW_AUTH_NONE, GW_JSON},
    {"GET", "/metrics", GW_LOCAL_METRICS, GW_TO_LOCAL, GW_CLASS_OPEN,
        GW_AUTH_NONE, GW_JSON},
    /* Meta's webhooks: no key; the signature, checked by meta-ingest over
     * the raw bytes, is the guard. */
    {"GET", "/webhooks/meta", ASH_OP_META_WEBHOOK_VERIFY, MI, GW_CLASS_WEBHOOK,
        GW_AUTH_NONE, GW_TEXT_OUT},
    {"POST", "/webhooks/meta", ASH_OP_META_WEBHOOK_INGEST, MI,
        GW_CLASS_WEBHOOK, GW_AUTH_NONE, GW_RAW_IN},
    /* Diagnostics through the whole path: gateway -> service -> schema. */
    API("GET", "/api/v1/sys/{svc}/info", ASH_OP_SYS_INFO, GW_TO_PATH_SVC),
    API("POST", "/api/v1/sys/{svc}/echo", ASH_OP_SYS_ECHO, GW_TO_PATH_SVC),
    /* Channels. */
    API("POST", "/api/v1/channels/meta", ASH_OP_CHANNEL_META_CONNECT, MI),
    API("GET", "/api/v1/channels/meta", ASH_OP_CHANNEL_META_LIST, MI),
    API("GET", "/api/v1/channels/meta/journal", ASH_OP_META_JOURNAL_LIST, MI),
    API("DELETE", "/api/v1/channels/meta/{id}", ASH_OP_CHANNEL_META_DISCONNECT,
        MI),
    /* Conversations. */
    API("GET", "/api/v1/conversations", ASH_OP_CONV_LIST, MI),
    API("GET", "/api/v1/conversations/{id}", ASH_OP_CONV_GET, MI),
    API("PATCH", "/api/v1/conversations/{id}", ASH_OP_CONV_UPDATE, MI),
    API("DELETE", "/api/v1/conversations/{id}", ASH_OP_CONV_DELETE, MI),
    API("GET", "/api/v1/conversations/{id}/messages", ASH_OP_CONV_MESSAGES,
        MI),
    API("POST", "/api/v1/conversations/{conversation_id}/messages",
        ASH_OP_CONV_SEND, MI),
    API("POST", "/api/v1/conversations/{conversation_id}/handover",
        ASH_OP_CONV_HANDOVER, MI),
    API("POST", "/api/v1/messages/{message_id}/resend", ASH_OP_CONV_RESEND,
        MI),
    /* Administration (ashoonctl). */
    ADMIN("POST", "/admin/v1/tenants", ASH_OP_TENANT_CREATE),
    ADMIN("GET", "/admin/v1/tenants", ASH_OP_TENANT_LIST),
    ADMIN("POST", "/admin/v1/tenants/{tenant_id}/keys", ASH_OP_APIKEY_CREATE),
    ADMIN("DELETE", "/admin/v1/keys/{id}", ASH_OP_APIKEY_REVOKE),
    {"POST", "/admin/v1/keys/rotate", ASH_OP_META_KEYS_ROTATE, MI,
        GW_CLASS_ADMIN, GW_AUTH_ADMIN, GW_JSON},
};

/* Matches path against pattern, capturing {name} segments into m. */
static bool
match_pattern(const char *pattern, const char *path, gw_match *m)
{
	const char *p = pattern, *s = path;

	m->nparams = 0;
	while (*p && *s) {
		if (*p != '{') {
			if (*p++ != *s++)
				return false;
			continue;
		}
		const char *close = strchr(p, '}');
		size_t      seg   = strcspn(s, "/");
		if (close == NULL || seg == 0 || seg >= sizeof(m->values[0]) ||
		    m->nparams == GW_MAX_PARAMS)
			return false;
		snprintf(m->names[m->nparams], sizeof(m->names[0]), "%.*s",
		    (int) (close - p - 1), p + 1);
		snprintf(m->values[m->nparams], sizeof(m->values[0]), "%.*s",
		    (int) seg, s);
		m->nparams++;
		p = close + 1;
		s += seg;
	}
	return *p == '\0' && *s == '\0';
}

ash_err
gw_route_match(const char *method, const char *path, gw_match *m)
{
	bool path_seen = false;

	/* HEAD is GET without the body (RFC 9110 §9.3.2); http drops it. */
	if (strcmp(method, "HEAD") == 0)
		method = "GET";
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (!match_pattern(routes[i].pattern, path, m))
			continue;
		path_seen = true;
		if (strcmp(routes[i].method, method) == 0) {
			m->route = &routes[i];
			return ASH_OK;
		}
	}
	return path_seen ? ASH_EMETHOD : ASH_ENOTFOUND;
}

/* --- the API reference (docs/API.md, scripts/gen-docs) --- */

static const char *const type_names[] = {
    "string", "integer", "id", "uuid", "boolean", "object", "array", "any"};

static bool
is_path_param(const char *pattern, const char *name)
{
	char want[40];

	snprintf(want, sizeof(want), "{%s}", name);
	return strstr(pattern, want) != NULL;
}

/* "`a` uuid (path), `b`? string": `?` marks an optional field. */
static void
doc_fields(const char *pattern, const ash_field *f, int n, FILE *out)
{
	if (n == 0)
		fputs("-", out);
	for (int i = 0; i < n; i++)
		fprintf(out, "%s`%s`%s %s%s", i ? ", " : "", f[i].name,
		    f[i].required ? "" : "?", type_names[f[i].type],
		    pattern && is_path_param(pattern, f[i].name) ? " (path)"
		                                                 : "");
}

static const char *
doc_auth(const gw_route *r)
{
	switch (r->auth) {
	case GW_AUTH_API_KEY:
		return "API key";
	case GW_AUTH_ADMIN:
		return "admin token";
	default:
		if (r->cls != GW_CLASS_WEBHOOK)
			return "none";
		return r->shape == GW_TEXT_OUT ? "verify token"
		                               : "Meta signature";
	}
}

void
gw_routes_doc(FILE *out)
{
	fputs("| Method | Path | Auth | Op (service) | Request | Reply |\n"
	      "|---|---|---|---|---|---|\n",
	    out);
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const gw_route *r = &routes[i];

		fprintf(out, "| %s | `%s` | %s | ", r->method, r->pattern,
		    doc_auth(r));
		if (r->to == GW_TO_LOCAL) {
			fputs(r->op == GW_LOCAL_METRICS
			        ? "gateway | - | Prometheus text |\n"
			        : "gateway | - | JSON |\n",
			    out);
			continue;
		}
		const ash_op_desc *d = ash_op(r->op);
		fprintf(out, "`%s` (%s) | ", d->name,
		    r->to == GW_TO_PATH_SVC ? "{svc}"
		                            : ash_services[r->to].name);
		if (r->shape == GW_RAW_IN)
			fputs("signed body, kept as sent", out);
		else
			doc_fields(r->pattern, d->req, d->nreq, out);
		fputs(" | ", out);
		if (r->shape == GW_TEXT_OUT)
			fputs("`hub.challenge` as text", out);
		else
			doc_fields(NULL, d->rep, d->nrep, out);
		fputs(" |\n", out);
	}
}
