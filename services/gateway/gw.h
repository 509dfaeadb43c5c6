/*
 * gw.h - the gateway's private interface: the only public HTTP(S) edge.
 *
 * A request goes: request id -> route match -> per-IP token bucket of the
 * route's class -> body limit of the class -> authentication (API key or
 * admin token) -> body built from JSON/query/path and checked against the
 * op's declared fields -> request envelope to the owning service over NNG
 * -> the reply mapped back to HTTP. Every error is the JSON body
 * {"error":{"code":..,"message":..,"request_id":..}}.
 */
#ifndef GW_H
#define GW_H

#include <ashoon/http.h>
#include <ashoon/svc.h>

#include <stdbool.h>
#include <stdio.h>

/* Route classes: each has its own rate limit and body limit. */
typedef enum gw_class {
	GW_CLASS_OPEN,    /* /healthz /readyz /metrics: not limited */
	GW_CLASS_API,     /* /api/v1 with an API key */
	GW_CLASS_ADMIN,   /* /admin/v1 with the admin token */
	GW_CLASS_WEBHOOK, /* signed provider webhooks: high limits */
	GW_CLASS_COUNT,
} gw_class;

typedef enum gw_auth {
	GW_AUTH_NONE,
	GW_AUTH_API_KEY, /* Authorization: Bearer <API key> -> tenant */
	GW_AUTH_ADMIN,   /* Authorization: Bearer $ASHOON_ADMIN_TOKEN */
} gw_auth;

/* Where a route goes: a service id, the {svc} path segment, or a handler
 * inside the gateway itself. */
enum { GW_TO_PATH_SVC = -2, GW_TO_LOCAL = -3 };

typedef enum gw_local {
	GW_LOCAL_HEALTHZ,
	GW_LOCAL_READYZ,
	GW_LOCAL_METRICS,
} gw_local;

/* How a route's request and reply are carried. */
typedef enum gw_shape {
	GW_JSON,    /* JSON object (or query fields) in, JSON out */
	GW_RAW_IN,  /* the body's exact bytes, base64, as "raw" (+ the
	               X-Hub-Signature-256 header as "signature"): signed
	               webhooks are verified over the bytes as sent */
	GW_TEXT_OUT /* query fields in; the reply's "challenge" field out as
	               text/plain (webhook verification handshakes) */
} gw_shape;

typedef struct gw_route {
	const char *method;
	const char *pattern; /* "/api/v1/sys/{svc}/info"; {x} = one segment */
	int         op;      /* ash_op_id, or the gw_local for GW_TO_LOCAL */
	int         to;      /* ash_svc_id, GW_TO_PATH_SVC or GW_TO_LOCAL */
	gw_class    cls;
	gw_auth     auth;
	gw_shape    shape;
} gw_route;

#define GW_MAX_PARAMS 4

typedef struct gw_match {
	const gw_route *route;
	int             nparams;
	char            names[GW_MAX_PARAMS][32];
	char            values[GW_MAX_PARAMS][128];
} gw_match;

/* Gateway settings (gw_config.c). */
typedef struct gw_cfg {
	char *http_addr;
	char *tls_cert, *tls_key;
	int   http_timeout_s;
	int   max_body[GW_CLASS_COUNT];
	int   rate_rps[GW_CLASS_COUNT];
	int   rate_burst[GW_CLASS_COUNT];
	char *admin_token; /* secret; "" disables the admin API */
	char *trusted_proxies;
	int   ready_timeout_ms;
	int   key_cache_ms;
} gw_cfg;

extern gw_cfg            gw_config;
extern const ash_cfg_key gw_keys[];
extern const char *const gw_class_names[GW_CLASS_COUNT];

typedef struct gw_ratelimit gw_ratelimit;
typedef struct gw_keycache  gw_keycache;
typedef struct gw_proxies   gw_proxies;

/* A route's metrics for the last status it answered (gw_http.c). */
typedef struct gw_count_slot {
	const char    *route; /* a route table pattern or "unmatched" */
	int            status;
	ash_counter   *answered;
	ash_histogram *seconds;
} gw_count_slot;

#define GW_COUNT_SLOTS 64

typedef struct gw_ctx {
	ash_svc         *svc;
	ash_http_server *http;
	gw_ratelimit    *rl;
	gw_keycache     *keys;
	gw_proxies      *proxies;
	struct event    *sweep; /* periodic rate-limit table sweep */
	gw_count_slot    counts[GW_COUNT_SLOTS];
} gw_ctx;

/* gw_routes.c: 0 and fills m when method+path match a route; ASH_EMETHOD
 * when only the path matches; ASH_ENOTFOUND otherwise. */
ash_err gw_route_match(
    const char *method, const char *path, gw_match *m) ASH_MUSTCHECK;

/* Writes the route table as the markdown table of docs/API.md. */
void gw_routes_doc(FILE *out);

/* gw_ratelimit.c: a token bucket per (class, client IP). */
gw_ratelimit *gw_ratelimit_new(void);
void          gw_ratelimit_free(gw_ratelimit *rl);
/* True if a token was taken; else *retry_s says when to come back. */
bool gw_ratelimit_take(gw_ratelimit *rl, gw_class cls, const char *ip,
    int64_t now_ms, int *retry_s);
/* Drops buckets that are full again (idle clients); returns how many. */
int gw_ratelimit_sweep(gw_ratelimit *rl, int64_t now_ms);

/* gw_client_ip.c: trusted proxies and the client address. */
ash_err gw_proxies_parse(const char *list, gw_proxies **out) ASH_MUSTCHECK;
void    gw_proxies_free(gw_proxies *p);
/* The client's IP: the peer, or - when the peer is a trusted proxy - the
 * right-most address in X-Forwarded-For that is not a trusted proxy (the
 * left-most if all are). xff is the header's whole list, every field of
 * it joined (ash_http_req_header_list), of any length. */
void gw_client_ip(const gw_proxies *p, const char *peer, const char *xff,
    char *out, size_t cap);

/* gw_auth.c: API keys. */
gw_keycache *gw_keycache_new(void);
void         gw_keycache_free(gw_keycache *kc);
typedef void (*gw_auth_cb)(void *arg, ash_err rv, const char *tenant);
/* Resolves an API key to its tenant (cached for key_cache_ms; a DB
 * lookup otherwise). ASH_EUNAUTH for unknown, malformed or revoked keys.
 * cb runs exactly once, maybe before this returns. */
void gw_auth_api_key(gw_ctx *gw, const char *key, gw_auth_cb cb, void *arg);
/* Constant-time check of the admin token. */
bool gw_auth_admin(const char *bearer);
/* The token of "Authorization: Bearer <token>", or NULL. */
const char *gw_bearer(const char *authorization);

/* gw_tenants.c: the gateway's own ops (tenant.*, apikey.*). */
void gw_tenants_register(gw_ctx *gw);
/* Makes a new API key: *key (free()) is shown once; prefix and hash are
 * what is stored. */
void gw_apikey_make(char **key, char prefix[16], char hash[65]);

/* gw_http.c: the request path. */
void gw_on_http(ash_http_req *req, void *arg);

/* gw_ready.c: /readyz asks every service for sys.health (in parallel,
 * within ASHOON_READY_TIMEOUT_MS) and calls done once with 200 when all
 * answered ok, else 503, and the report (done takes it). */
typedef void (*gw_ready_cb)(void *arg, int status, cJSON *report);
void gw_readyz(gw_ctx *gw, const char *req_id, gw_ready_cb done, void *arg);

#endif
