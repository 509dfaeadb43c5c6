/*
 * mi_graph.c - calls to Meta's Graph API and what their errors mean.
 *
 * mi_graph_call builds the URL for the channel's login flavour
 * ("facebook": {META_GRAPH_URL}/{ver}/{path}?access_token=<token>;
 * "instagram": {META_IG_GRAPH_URL}/{ver}/{path} with Authorization:
 * Bearer), sends it through the service's curl-multi client (never blocks
 * the loop), parses the JSON answer and classifies errors by code and
 * subcode (meta-send-api.md §4), never by the message text. How long to
 * back off comes from the usage headers (§6) and Retry-After.
 *
 * Secrets: the token only lives in the URL or header we hand to curl
 * (copied there) and is wiped from our own buffers right after. Log lines
 * carry the path, status, code, subcode and fbtrace_id - never the URL.
 *
 * Everything runs on the loop thread; the classifiers are pure.
 */
#include "mi.h"

#include <ashoon/json.h>

#include <openssl/crypto.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE_FULL_WAIT_S 60    /* a usage percentage >= 100, no estimate */
#define USAGE_MAX_WAIT_S  86400 /* cap on any wait we take from headers */

typedef struct gcall {
	mi_graph_cb cb;
	void       *arg;
	char        path[128]; /* for log lines (no query, no token) */
} gcall;

/* --- classification (pure) ---------------------------------------------- */

static bool
is_window_subcode(int subcode)
{
	return subcode == 2018065 || subcode == 2018278 || subcode == 2534022;
}

mi_graph_class
mi_graph_classify(long status, int code, int subcode)
{
	switch (code) {
	case 0:
		break; /* no Graph error body: the HTTP status decides */
	case 190:
		return MI_GRAPH_REAUTH;
	case 4:
	case 17:
	case 32:
	case 613:
	case 80006:
		return MI_GRAPH_THROTTLED;
	case 1:
	case 2:
	case 1200:
		return MI_GRAPH_RETRY;
	case 10:
		return is_window_subcode(subcode) ? MI_GRAPH_WINDOW
		                                  : MI_GRAPH_PERMANENT;
	case 100:  /* invalid parameter */
	case 368:  /* abusive or disallowed */
	case 551:  /* this person isn't available */
	case 2022: /* commerce messaging disabled */
		return MI_GRAPH_PERMANENT;
	default:
		if (code >= 200 && code <= 299) /* permissions (200, 230) */
			return MI_GRAPH_PERMANENT;
		/* An unknown code: a server fault may pass, a client error
		 * will not. */
		return status >= 500 ? MI_GRAPH_RETRY : MI_GRAPH_PERMANENT;
	}
	if (status >= 200 && status < 300)
		return MI_GRAPH_OK;
	if (status == 429)
		return MI_GRAPH_THROTTLED;
	if (status == 0 || status >= 500 || status == 408)
		return MI_GRAPH_RETRY;
	return MI_GRAPH_PERMANENT;
}

/* The wait one usage object asks for: its estimate (minutes), or a minute
 * when any of its percentages reached 100. */
static int
usage_obj_wait_s(const cJSON *o)
{
	static const char *const pct[] = {
	    "call_count", "total_time", "total_cputime"};
	const cJSON *eta;
	int          wait = 0;

	if (!cJSON_IsObject(o))
		return 0;
	eta = cJSON_GetObjectItemCaseSensitive(
	    o, "estimated_time_to_regain_access");
	if (cJSON_IsNumber(eta) && eta->valuedouble > 0)
		wait = eta->valuedouble * 60 >= USAGE_MAX_WAIT_S
		    ? USAGE_MAX_WAIT_S
		    : (int) (eta->valuedouble * 60);
	for (size_t i = 0; i < sizeof(pct) / sizeof(pct[0]); i++) {
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, pct[i]);
		if (cJSON_IsNumber(p) && p->valuedouble >= 100 &&
		    wait < USAGE_FULL_WAIT_S)
			wait = USAGE_FULL_WAIT_S;
	}
	return wait;
}

/* X-Business-Use-Case-Usage: {"<id>":[{usage},...],...}. */
static int
buc_wait_s(const char *v)
{
	cJSON       *doc = NULL;
	const cJSON *id, *u;
	int          wait = 0, w;

	if (v == NULL || ash_json_parse(v, strlen(v), &doc) != ASH_OK)
		return 0;
	cJSON_ArrayForEach(id, doc)
	{
		if (!cJSON_IsArray(id))
			continue;
		cJSON_ArrayForEach(u, id)
		{
			if ((w = usage_obj_wait_s(u)) > wait)
				wait = w;
		}
	}
	cJSON_Delete(doc);
	return wait;
}

int
mi_graph_usage_wait_s(const char *buc_usage, const char *app_usage)
{
	cJSON *doc  = NULL;
	int    wait = buc_wait_s(buc_usage), w;

	if (app_usage != NULL &&
	    ash_json_parse(app_usage, strlen(app_usage), &doc) == ASH_OK) {
		if ((w = usage_obj_wait_s(doc)) > wait)
			wait = w;
		cJSON_Delete(doc);
	}
	return wait;
}

/* --- the call ----------------------------------------------------------- */

/* Percent-encodes s (RFC 3986 unreserved characters stay). */
static char *
url_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t            n     = strlen(s);
	char             *out = ash_xmalloc(3 * n + 1), *o = out;

	for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL) {
			*o++ = (char) *p;
			continue;
		}
		*o++ = '%';
		*o++ = hex[*p >> 4];
		*o++ = hex[*p & 15];
	}
	*o = '\0';
	return out;
}

/* Frees a string that held a secret. */
static void
free_wiped(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

/* The full URL; for "facebook" it carries the token (free with
 * free_wiped). */
static char *
build_url(bool ig, const char *token, const char *path, const char *query)
{
	const char *base = ig ? mi_config.ig_graph_url : mi_config.graph_url;
	size_t      bl   = strlen(base);
	char       *tok, *url;

	while (bl > 0 && base[bl - 1] == '/')
		bl--;
	if (ig)
		return ash_xasprintf("%.*s/%s/%s%s%s", (int) bl, base,
		    mi_config.graph_version, path, query ? "?" : "",
		    query ? query : "");
	tok = url_encode(token);
	url = ash_xasprintf("%.*s/%s/%s?%s%saccess_token=%s", (int) bl, base,
	    mi_config.graph_version, path, query ? query : "",
	    query ? "&" : "", tok);
	free_wiped(tok);
	return url;
}

/* Fills the error fields of r from a Graph error body. */
static void
read_error(const cJSON *body, mi_graph_result *r)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(body, "error");
	int          v;

	if (!cJSON_IsObject(e))
		return;
	if (ash_json_get_int(e, "code", &v) == ASH_OK)
		r->code = v;
	if (ash_json_get_int(e, "error_subcode", &v) == ASH_OK)
		r->subcode = v;
	r->message    = ash_json_str(e, "message");
	r->fbtrace_id = ash_json_str(e, "fbtrace_id");
}

/* Seconds from Retry-After (delta-seconds only; a date is ignored). */
static int
retry_after_s(const char *v)
{
	char *end;
	long  n;

	if (v == NULL)
		return 0;
	n = strtol(v, &end, 10);
	if (end == v || n <= 0)
		return 0;
	return n > USAGE_MAX_WAIT_S ? USAGE_MAX_WAIT_S : (int) n;
}

static void
log_failure(const gcall *g, const mi_graph_result *r)
{
	const ash_log_field f[] = {
	    ASH_LF_STR("path", g->path),
	    ASH_LF_INT("status", r->status),
	    ASH_LF_INT("code", r->code),
	    ASH_LF_INT("subcode", r->subcode),
	    ASH_LF_STR("fbtrace_id", r->fbtrace_id ? r->fbtrace_id : ""),
	    ASH_LF_INT("retry_after_s", r->retry_after_s),
	};

	ash_log_emitf(ASH_LOG_WARN, NULL, "GRAPH-ERROR", f,
	    sizeof(f) / sizeof(f[0]), "Graph API call failed: %s",
	    r->err != ASH_OK ? ash_strerror(r->err) : "error reply");
}

static void
mi_graph_on_done(void *arg, ash_err rv, const ash_httpc_response *resp)
{
	gcall          *g   = arg;
	cJSON          *doc = NULL;
	mi_graph_result r = {rv, 0, MI_GRAPH_RETRY, 0, 0, NULL, NULL, 0, NULL};

	if (rv == ASH_OK) {
		r.status = resp->status;
		if (ash_json_parse(resp->body, resp->body_len, &doc) == ASH_OK)
			r.body = doc;
		read_error(doc, &r);
		r.cls = mi_graph_classify(r.status, r.code, r.subcode);
		r.retry_after_s =
		    mi_graph_usage_wait_s(ash_httpc_response_header(resp,
		                              "X-Business-Use-Case-Usage"),
		        ash_httpc_response_header(resp, "X-App-Usage"));
		int ra = retry_after_s(
		    ash_httpc_response_header(resp, "Retry-After"));
		if (ra > r.retry_after_s)
			r.retry_after_s = ra;
	}
	if (r.cls != MI_GRAPH_OK && rv != ASH_ECANCELED)
		log_failure(g, &r);
	g->cb(g->arg, &r);
	cJSON_Delete(doc);
	free(g);
}

/* The headers of one call into hdrs; *auth, the bearer line of an
 * Instagram Login channel, holds the token (free with free_wiped). */
static void
build_headers(
    bool ig, const char *token, bool json, char **auth, const char *hdrs[3])
{
	int n = 0;

	*auth = ig ? ash_xasprintf("Authorization: Bearer %s", token) : NULL;
	if (*auth)
		hdrs[n++] = *auth;
	if (json)
		hdrs[n++] = "Content-Type: application/json";
	hdrs[n] = NULL;
}

ash_err
mi_graph_call(mi_ctx *mi, const char *login, const char *token,
    const char *method, const char *path, const char *query, const cJSON *body,
    mi_graph_cb cb, void *arg)
{
	bool        ig   = login != NULL && strcmp(login, "instagram") == 0;
	char       *json = body ? ash_json_render(body) : NULL, *auth;
	char       *url  = build_url(ig, token, path, query);
	const char *hdrs[3];
	gcall      *g = ash_xcalloc(1, sizeof(*g));
	ash_httpc_request req;
	ash_err           rv;

	build_headers(ig, token, json != NULL, &auth, hdrs);
	g->cb  = cb;
	g->arg = arg;
	snprintf(g->path, sizeof(g->path), "%s", path);
	req = (ash_httpc_request) {.method = method,
	    .url                           = url,
	    .headers                       = hdrs,
	    .body                          = json,
	    .body_len                      = json ? strlen(json) : 0,
	    .timeout_ms                    = mi_config.graph_timeout_ms,
	    .max_response                  = 1 << 20};
	rv  = ash_httpc_send(mi->http, &req, mi_graph_on_done, g, NULL);
	free_wiped(url);
	free_wiped(auth);
	cJSON_free(json);
	if (rv != ASH_OK)
		free(g);
	return rv;
}
