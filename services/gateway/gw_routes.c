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

static const gw_route routes[] = {
    {"GET", "/healthz", GW_LOCAL_HEALTHZ, GW_TO_LOCAL, GW_CLASS_OPEN,
        GW_AUTH_NONE},
    {"GET", "/readyz", GW_LOCAL_READYZ, GW_TO_LOCAL, GW_CLASS_OPEN,
        GW_AUTH_NONE},
    {"GET", "/metrics", GW_LOCAL_METRICS, GW_TO_LOCAL, GW_CLASS_OPEN,
        GW_AUTH_NONE},
    /* Diagnostics through the whole path: gateway -> service -> schema. */
    {"GET", "/api/v1/sys/{svc}/info", ASH_OP_SYS_INFO, GW_TO_PATH_SVC,
        GW_CLASS_API, GW_AUTH_API_KEY},
    {"POST", "/api/v1/sys/{svc}/echo", ASH_OP_SYS_ECHO, GW_TO_PATH_SVC,
        GW_CLASS_API, GW_AUTH_API_KEY},
    /* Administration (ashoonctl). */
    {"POST", "/admin/v1/tenants", ASH_OP_TENANT_CREATE, ASH_SVC_GATEWAY,
        GW_CLASS_ADMIN, GW_AUTH_ADMIN},
    {"GET", "/admin/v1/tenants", ASH_OP_TENANT_LIST, ASH_SVC_GATEWAY,
        GW_CLASS_ADMIN, GW_AUTH_ADMIN},
    {"POST", "/admin/v1/tenants/{tenant_id}/keys", ASH_OP_APIKEY_CREATE,
        ASH_SVC_GATEWAY, GW_CLASS_ADMIN, GW_AUTH_ADMIN},
    {"DELETE", "/admin/v1/keys/{id}", ASH_OP_APIKEY_REVOKE, ASH_SVC_GATEWAY,
        GW_CLASS_ADMIN, GW_AUTH_ADMIN},
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
