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
    API("PATCH", "/api/v1/conversations/{id}", ASH_OP_CONV_SET_STATUS, MI),
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

	/* HEAD is GET without the body (RFC 9110 §9.3.2); evhttp drops it. */
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
