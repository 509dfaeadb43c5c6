/*
 * fake_graph - a local stand-in for Meta's Graph API (graph.facebook.com and
 * graph.instagram.com), for integration tests and benchmarks: no machine
 * here reaches Meta. Usage: fake_graph PORT (or HOST:PORT); it listens on
 * 127.0.0.1:PORT, logs JSON lines to stderr and says READY when listening.
 *
 * Graph calls (optional /vNN.N/ prefix, recorded as "version"):
 *   GET  /me, /{id}                      ?fields= filtering
 *   POST /{me|id}/messages               Send API checks of
 *                                        shared/specs/meta-send-api.md §2
 *   POST /{me|id}/{pass,take,request}_thread_control, /{id}/subscribed_apps
 * The token comes from ?access_token= or "Authorization: Bearer". Errors
 * use Graph's body: {"error":{"message","type","code","error_subcode"?,
 * "fbtrace_id"}} with HTTP 400.
 *
 * Before a call is answered normally, the first queued script matching its
 * method and path suffix is consumed: it either answers with its own
 * status, body and headers, or (no status) only delays the normal answer.
 * Every Graph call is recorded. /_fake/ is the control API (JSON, no auth):
 * reset, tokens, objects, script, revoke, calls.
 *
 * All state is cJSON documents owned by fg_ctx; linear scans are fine for a
 * test tool. One thread, the loop. A delayed answer waits on a libevent
 * timer; if the client leaves first, its request is released at once and
 * the timer only frees memory. SIGTERM stops at once (nothing to drain).
 */
#include <ashoon/http.h>
#include <ashoon/json.h>
#include <ashoon/log.h>
#include <ashoon/loop.h>

#include <event2/event.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FG_TEXT_MAX  2000   /* Messenger message.text limit, in characters */
#define FG_DELAY_MAX 600000 /* ms; longer than any client timeout */
#define FG_JSON_TYPE "application/json; charset=UTF-8" /* as Graph sends */

typedef struct fg_delayed fg_delayed;

typedef struct fg_ctx {
	ash_loop        *loop;
	ash_http_server *http;
	cJSON *tokens;  /* token -> {"account":{},"revoked":b,"subcode":n} */
	cJSON *objects; /* id -> {"object":{}} or {"unavailable":true} */
	cJSON *scripts; /* FIFO of normalised scripts; "times" = uses left */
	cJSON *calls;   /* recorded Graph calls, oldest first */
	fg_delayed *delayed;    /* answers waiting for their delay_ms */
	long        next_mid;   /* m_fake_<n>; not reset: ids stay unique */
	long        next_trace; /* fbtrace_id "fake<n>" */
} fg_ctx;

/* An answer ready to send, now or after delay_ms. */
typedef struct fg_reply {
	int         status;   /* 0 = not decided yet */
	char       *body;     /* malloc'd, sent as is */
	const char *ctype;    /* static; NULL = no Content-Type */
	cJSON      *headers;  /* owned {"Name":"value"}, or NULL */
	int         delay_ms; /* from a script */
} fg_reply;

struct fg_delayed {
	fg_ctx       *fg;
	ash_http_req *req; /* NULL once the client left */
	struct event *timer;
	fg_reply      reply;
	fg_delayed   *prev, *next;
};

/* One Graph call, parsed. Pointers borrow from the request. */
typedef struct fg_call {
	const char  *method;
	const char  *path;        /* decoded, as received */
	char         version[16]; /* "v23.0", or "" without a prefix */
	char         node[256];   /* "me", an id, "oauth", ... */
	char         edge[256];   /* "messages", "" for the node itself */
	const char  *fields;      /* ?fields=, or NULL */
	const char  *token;       /* NULL when none was sent */
	const char  *auth;        /* "query", "bearer" or "" */
	cJSON       *json;        /* parsed body (owned), or NULL */
	const cJSON *account;     /* the token's account, once checked */
} fg_call;

/* Query parameters worth recording. ash_http has no raw query string, so
 * the record carries these, decoded, in an object. */
static const char *const fg_query_keys[] = {"access_token", "appsecret_proof",
    "fields", "subscribed_fields", "grant_type", "fb_exchange_token",
    "client_id", "input_token", "platform", NULL};

static bool
fg_in(const char *s, const char *const *set)
{
	for (; s != NULL && *set != NULL; set++)
		if (strcmp(s, *set) == 0)
			return true;
	return false;
}

static bool
fg_ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return k <= n && strcmp(s + n - k, suffix) == 0;
}

/* --- replies ------------------------------------------------------------ */

static void
fg_reply_fini(fg_reply *r)
{
	free(r->body);
	cJSON_Delete(r->headers);
	r->body    = NULL;
	r->headers = NULL;
}

/* Takes doc. */
static void
fg_reply_json(fg_reply *r, int status, cJSON *doc)
{
	char *s = ash_json_render(doc);

	r->status = status;
	r->body   = ash_xstrdup(s);
	r->ctype  = FG_JSON_TYPE;
	cJSON_free(s);
	cJSON_Delete(doc);
}

static void
fg_reply_success(fg_reply *r)
{
	cJSON *doc = cJSON_CreateObject();

	cJSON_AddBoolToObject(doc, "success", true);
	fg_reply_json(r, 200, doc);
}

static void
fg_error(fg_ctx *fg, fg_reply *r, int code, int subcode, const char *type,
    const char *message)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON *err = cJSON_AddObjectToObject(doc, "error");
	char   trace[32];

	ash_json_add_str(err, "message", message);
	ash_json_add_str(err, "type", type);
	cJSON_AddNumberToObject(err, "code", code);
	if (subcode != 0)
		cJSON_AddNumberToObject(err, "error_subcode", subcode);
	snprintf(trace, sizeof(trace), "fake%ld", ++fg->next_trace);
	ash_json_add_str(err, "fbtrace_id", trace);
	fg_reply_json(r, 400, doc);
}

/* Graph's answer for an unknown node or an edge we do not serve. */
static void
fg_unsupported(fg_ctx *fg, fg_reply *r, const fg_call *c)
{
	char msg[600];

	snprintf(msg, sizeof(msg),
	    "Unsupported %s request. Object with ID '%s' does not exist, "
	    "cannot be loaded due to missing permissions, or does not "
	    "support this operation.",
	    strcmp(c->method, "GET") == 0 ? "get" : "post", c->node);
	fg_error(fg, r, 100, 33, "GraphMethodException", msg);
}

static void
fg_send_now(ash_http_req *req, fg_reply *r)
{
	const cJSON *h;
	const char  *ctype = r->ctype;

	/* A script's Content-Type is the reply's (a media file's, say). */
	cJSON_ArrayForEach(h, r->headers)
	{
		if (strcasecmp(h->string, "Content-Type") == 0)
			ctype = h->valuestring;
		else
			ash_http_req_set_header(
			    req, h->string, h->valuestring);
	}
	ash_http_reply(req, r->status, ctype, r->body, strlen(r->body));
	fg_reply_fini(r);
}

static void
fg_delayed_free(fg_delayed *d)
{
	if (d->prev != NULL)
		d->prev->next = d->next;
	else
		d->fg->delayed = d->next;
	if (d->next != NULL)
		d->next->prev = d->prev;
	event_free(d->timer);
	fg_reply_fini(&d->reply);
	free(d);
}

static void
fg_on_delay_gone(void *arg)
{
	fg_delayed *d = arg;

	ash_http_req_release(d->req);
	d->req = NULL;
}

static void
fg_on_delay_done(evutil_socket_t fd, short what, void *arg)
{
	fg_delayed *d = arg;

	if (d->req != NULL)
		fg_send_now(d->req, &d->reply);
	fg_delayed_free(d);
}

/* Sends r now, or parks it on a timer; r's contents move either way. */
static void
fg_send(fg_ctx *fg, ash_http_req *req, fg_reply *r)
{
	fg_delayed    *d;
	struct timeval tv;

	if (r->delay_ms <= 0) {
		fg_send_now(req, r);
		return;
	}
	d        = ash_xcalloc(1, sizeof(*d));
	d->fg    = fg;
	d->req   = req;
	d->reply = *r;
	d->timer = evtimer_new(ash_loop_base(fg->loop), fg_on_delay_done, d);
	ASH_ASSERT(d->timer != NULL);
	d->next = fg->delayed;
	if (d->next != NULL)
		d->next->prev = d;
	fg->delayed = d;
	/* The client may time out first (that is what delays test). */
	ash_http_req_on_gone(req, fg_on_delay_gone, d);
	tv.tv_sec  = r->delay_ms / 1000;
	tv.tv_usec = (r->delay_ms % 1000) * 1000;
	evtimer_add(d->timer, &tv);
}

/* --- parsing and recording ---------------------------------------------- */

/* Skips "/vNN.N" (copied to version); returns the rest of the path. */
static const char *
fg_take_version(const char *p, char *version, size_t cap)
{
	size_t n = 2;

	version[0] = '\0';
	if (strncmp(p, "/v", 2) != 0 || p[n] < '0' || p[n] > '9')
		return p;
	n += strspn(p + n, "0123456789");
	if (p[n] != '.' || p[n + 1] < '0' || p[n + 1] > '9')
		return p;
	n += 1 + strspn(p + n + 1, "0123456789");
	if (p[n] != '/' && p[n] != '\0')
		return p;
	snprintf(version, cap, "%.*s", (int) (n - 1), p + 1);
	return p + n;
}

static void
fg_call_parse(fg_call *c, ash_http_req *req)
{
	const char *p, *authz, *body;
	size_t      n, len;

	memset(c, 0, sizeof(*c));
	c->method = ash_http_req_method(req);
	c->path   = ash_http_req_path(req);
	p         = fg_take_version(c->path, c->version, sizeof(c->version));
	p += strspn(p, "/");
	n = strcspn(p, "/");
	snprintf(c->node, sizeof(c->node), "%.*s", (int) n, p);
	snprintf(c->edge, sizeof(c->edge), "%s", p[n] ? p + n + 1 : "");
	c->fields = ash_http_req_query(req, "fields");
	c->token  = ash_http_req_query(req, "access_token");
	c->auth   = c->token ? "query" : "";
	authz     = ash_http_req_header(req, "Authorization");
	if (c->token == NULL && authz != NULL &&
	    strncasecmp(authz, "Bearer ", 7) == 0) {
		c->token = authz + 7 + strspn(authz + 7, " ");
		c->auth  = "bearer";
	}
	ash_http_req_body(req, &body, &len);
	if (len > 0 && ash_json_parse(body, len, &c->json) != ASH_OK)
		c->json = NULL;
}

/* Appends the call to fg->calls; the caller adds "status" later. */
static cJSON *
fg_record(fg_ctx *fg, ash_http_req *req, const fg_call *c)
{
	cJSON      *rec = cJSON_CreateObject(), *q = cJSON_CreateObject();
	const char *ct = ash_http_req_header(req, "Content-Type");
	const char *body, *v;
	size_t      len;
	char       *copy;

	ash_json_add_str(rec, "method", c->method);
	ash_json_add_str(rec, "path", c->path);
	ash_json_add_str(rec, "version", c->version);
	for (int i = 0; fg_query_keys[i] != NULL; i++)
		if ((v = ash_http_req_query(req, fg_query_keys[i])) != NULL)
			ash_json_add_str(q, fg_query_keys[i], v);
	cJSON_AddItemToObject(rec, "query", q);
	ash_json_add_str(rec, "token", c->token ? c->token : "");
	ash_json_add_str(rec, "auth", c->auth);
	ash_json_add_str(rec, "content_type", ct ? ct : "");
	ash_http_req_body(req, &body, &len);
	copy = ash_xstrndup(body, len); /* a NUL inside ends it: fine here */
	ash_json_add_str(rec, "body", copy);
	free(copy);
	cJSON_AddNumberToObject(rec, "time_ms", (double) ash_wall_ms());
	cJSON_AddItemToArray(fg->calls, rec);
	return rec;
}

/* --- scripts ------------------------------------------------------------ */

static bool
fg_script_matches(const cJSON *s, const fg_call *c)
{
	const char *method = ash_json_str(s, "method");

	if (*method != '\0' && strcasecmp(method, c->method) != 0)
		return false;
	return fg_ends_with(c->path, ash_json_str(s, "path_suffix"));
}

static void
fg_reply_canned(fg_reply *r, const cJSON *s)
{
	const cJSON *body = cJSON_GetObjectItemCaseSensitive(s, "body");
	const cJSON *hdrs = cJSON_GetObjectItemCaseSensitive(s, "headers");
	int          status;

	ASH_ASSERT(ash_json_get_int(s, "status", &status) == ASH_OK);
	if (cJSON_IsString(body)) { /* raw text, e.g. a proxy's error page */
		r->status = status;
		r->body   = ash_xstrdup(body->valuestring);
		r->ctype  = "text/plain";
	} else if (body != NULL && !cJSON_IsNull(body))
		fg_reply_json(r, status, cJSON_Duplicate(body, true));
	else {
		r->status = status;
		r->body   = ash_xstrdup("");
	}
	r->headers = cJSON_Duplicate(hdrs, true);
}

/* Consumes one use of the first script matching c; false if none. A script
 * with a status fills r completely; one without sets only delay_ms. */
static bool
fg_script_take(fg_ctx *fg, const fg_call *c, fg_reply *r)
{
	cJSON *s;
	int    times = 1, status = 0;

	cJSON_ArrayForEach(s, fg->scripts)
	{
		if (fg_script_matches(s, c))
			break;
	}
	if (s == NULL)
		return false;
	/* Normalised by fg_ctl_script: these members exist. */
	ASH_ASSERT(ash_json_get_int(s, "delay_ms", &r->delay_ms) == ASH_OK &&
	    ash_json_get_int(s, "status", &status) == ASH_OK &&
	    ash_json_get_int(s, "times", &times) == ASH_OK);
	if (status != 0)
		fg_reply_canned(r, s);
	if (times > 1)
		cJSON_SetNumberValue(
		    cJSON_GetObjectItemCaseSensitive(s, "times"), times - 1);
	else
		cJSON_Delete(cJSON_DetachItemViaPointer(fg->scripts, s));
	return true;
}

/* --- Graph endpoints ---------------------------------------------------- */

static const cJSON *
fg_account_by_id(fg_ctx *fg, const char *id)
{
	const cJSON *t, *acct;
	const char  *aid;

	cJSON_ArrayForEach(t, fg->tokens)
	{
		acct = cJSON_GetObjectItemCaseSensitive(t, "account");
		aid  = ash_json_str(acct, "id");
		if (aid != NULL && strcmp(aid, id) == 0)
			return acct;
	}
	return NULL;
}

/* False (r filled) unless c carries a registered, unrevoked token. */
static bool
fg_auth(fg_ctx *fg, fg_call *c, fg_reply *r)
{
	const cJSON *t;
	int          subcode = 0;

	if (c->token == NULL || *c->token == '\0') {
		fg_error(fg, r, 2500, 0, "OAuthException",
		    "An active access token must be used to query "
		    "information about the current user.");
		return false;
	}
	t = cJSON_GetObjectItemCaseSensitive(fg->tokens, c->token);
	if (t == NULL || ash_json_bool(t, "revoked", false)) {
		if (t != NULL &&
		    ash_json_get_int(t, "subcode", &subcode) != ASH_OK)
			subcode = 0;
		fg_error(fg, r, 190, subcode, "OAuthException",
		    "Invalid OAuth access token.");
		return false;
	}
	c->account = cJSON_GetObjectItemCaseSensitive(t, "account");
	return true;
}

/* Next top-level name in a Graph fields list ("a,b{c,d},e.limit(2)"),
 * without its {subfields} or .modifiers; false at the end. */
static bool
fg_next_field(const char **pp, char *out, size_t cap)
{
	const char *p = *pp + strspn(*pp, " ,");
	size_t      n;
	int         depth = 0;

	if (*p == '\0')
		return false;
	n = strspn(p,
	    "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
	snprintf(out, cap, "%.*s", (int) n, p);
	for (p += n; *p != '\0' && (depth > 0 || *p != ','); p++) {
		if (*p == '{' || *p == '(')
			depth++;
		else if ((*p == '}' || *p == ')') && depth > 0)
			depth--;
	}
	*pp = p;
	return true;
}

static void
fg_copy_field(cJSON *out, const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	if (v != NULL && !cJSON_HasObjectItem(out, name))
		cJSON_AddItemToObject(out, name, cJSON_Duplicate(v, true));
}

/* The requested fields obj has (Graph's default: id,name), id always. */
static cJSON *
fg_filter(const cJSON *obj, const char *fields)
{
	cJSON      *out = cJSON_CreateObject();
	const char *p   = fields && *fields ? fields : "id,name";
	char        name[128];

	fg_copy_field(out, obj, "id");
	while (fg_next_field(&p, name, sizeof(name)))
		fg_copy_field(out, obj, name);
	return out;
}

static void
fg_get_node(fg_ctx *fg, const fg_call *c, fg_reply *r)
{
	const cJSON *obj = NULL, *e;

	if (strcmp(c->node, "me") == 0)
		obj = c->account;
	else if ((e = cJSON_GetObjectItemCaseSensitive(
	              fg->objects, c->node)) != NULL) {
		if (ash_json_bool(e, "unavailable", false)) {
			fg_error(fg, r, 2018218, 0, "OAuthException",
			    "No profile available for this user.");
			return;
		}
		obj = cJSON_GetObjectItemCaseSensitive(e, "object");
	} else
		obj = fg_account_by_id(fg, c->node);
	if (obj == NULL)
		fg_unsupported(fg, r, c);
	else
		fg_reply_json(r, 200, fg_filter(obj, c->fields));
}

/* Characters, not bytes: Meta's 2000 limit counts characters. */
static size_t
fg_utf8_len(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += ((unsigned char) *s & 0xC0) != 0x80;
	return n;
}

static const char *const fg_actions[] = {
    "typing_on", "typing_off", "mark_seen", "react", "unreact", NULL};
static const char *const fg_types[] = {
    "RESPONSE", "UPDATE", "MESSAGE_TAG", "UTILITY", NULL};
static const char *const fg_tags[] = {"HUMAN_AGENT", "CUSTOMER_FEEDBACK",
    "ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", NULL};

/* The message part of a Send API body; NULL if fine, else the error. */
static const char *
fg_check_message(const cJSON *b)
{
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(b, "message");
	const cJSON *att = cJSON_GetObjectItemCaseSensitive(msg, "attachment");
	const char  *text = ash_json_str(msg, "text");
	const char  *type = ash_json_str(b, "messaging_type");
	const char  *tag  = ash_json_str(b, "tag");

	if (!cJSON_IsObject(msg))
		return "(#100) The parameter message is required";
	if ((text != NULL) == (att != NULL))
		return "(#100) Exactly one of message[text] and "
		       "message[attachment] must be set";
	if (text != NULL && (*text == '\0' || fg_utf8_len(text) > FG_TEXT_MAX))
		return "(#100) Length of param message[text] must be between "
		       "1 and 2000";
	if (att != NULL && ash_json_str(att, "type") == NULL)
		return "(#100) param message[attachment][type] is required";
	if (type == NULL)
		return "(#100) Param messaging_type is required";
	if (!fg_in(type, fg_types))
		return "(#100) Param messaging_type must be one of {RESPONSE, "
		       "UPDATE, MESSAGE_TAG, UTILITY}";
	if ((strcmp(type, "MESSAGE_TAG") == 0) != (tag != NULL))
		return "(#100) Param tag is required with messaging_type "
		       "MESSAGE_TAG, and only with it";
	if (tag != NULL && !fg_in(tag, fg_tags))
		return "(#100) Param tag is not a valid message tag";
	return NULL;
}

/* A whole Send API body; NULL if fine, else the error message. */
static const char *
fg_check_send(const cJSON *b)
{
	const cJSON *rcp = cJSON_GetObjectItemCaseSensitive(b, "recipient");
	const cJSON *act =
	    cJSON_GetObjectItemCaseSensitive(b, "sender_action");
	const char *id = ash_json_str(rcp, "id");

	if (!cJSON_IsObject(b))
		return "(#100) The request body must be a JSON object";
	if (id == NULL || *id == '\0')
		return "(#100) The parameter recipient is required";
	if (act == NULL)
		return fg_check_message(b);
	if (cJSON_HasObjectItem(b, "message"))
		return "(#100) sender_action must be sent without message";
	if (!fg_in(cJSON_GetStringValue(act), fg_actions))
		return "(#100) Param sender_action must be one of {TYPING_ON, "
		       "TYPING_OFF, MARK_SEEN, REACT, UNREACT}";
	return NULL;
}

static void
fg_send_api(fg_ctx *fg, const fg_call *c, fg_reply *r)
{
	const char *bad = fg_check_send(c->json);
	cJSON      *doc;
	char        mid[48];

	if (bad != NULL) {
		fg_error(fg, r, 100, 0, "OAuthException", bad);
		return;
	}
	doc = cJSON_CreateObject();
	ash_json_add_str(doc, "recipient_id",
	    ash_json_str(
	        cJSON_GetObjectItemCaseSensitive(c->json, "recipient"), "id"));
	if (!cJSON_HasObjectItem(c->json, "sender_action")) {
		snprintf(mid, sizeof(mid), "m_fake_%ld", ++fg->next_mid);
		ash_json_add_str(doc, "message_id", mid);
	}
	fg_reply_json(r, 200, doc);
}

static void
fg_thread_control(fg_ctx *fg, const fg_call *c, fg_reply *r)
{
	const char *id = ash_json_str(
	    cJSON_GetObjectItemCaseSensitive(c->json, "recipient"), "id");

	if (id == NULL || *id == '\0')
		fg_error(fg, r, 100, 0, "OAuthException",
		    "(#100) The parameter recipient is required");
	else
		fg_reply_success(r);
}

static const char *const fg_thread_edges[] = {"pass_thread_control",
    "take_thread_control", "request_thread_control", NULL};

/* POSTs go to the token's own account: "me" or its id (when it has one). */
static bool
fg_is_own_node(const fg_call *c)
{
	const char *id = ash_json_str(c->account, "id");

	return strcmp(c->node, "me") == 0 || id == NULL ||
	    strcmp(c->node, id) == 0;
}

static void
fg_route(fg_ctx *fg, fg_call *c, fg_reply *r)
{
	bool get  = strcmp(c->method, "GET") == 0 && c->edge[0] == '\0';
	bool post = strcmp(c->method, "POST") == 0 &&
	    (strcmp(c->edge, "messages") == 0 ||
	        strcmp(c->edge, "subscribed_apps") == 0 ||
	        fg_in(c->edge, fg_thread_edges));

	if (c->node[0] == '\0' || (!get && !post)) {
		fg_unsupported(fg, r, c);
		return;
	}
	if (!fg_auth(fg, c, r))
		return;
	if (get)
		fg_get_node(fg, c, r);
	else if (!fg_is_own_node(c))
		fg_unsupported(fg, r, c);
	else if (strcmp(c->edge, "messages") == 0)
		fg_send_api(fg, c, r);
	else if (strcmp(c->edge, "subscribed_apps") == 0)
		fg_reply_success(r);
	else
		fg_thread_control(fg, c, r);
}

static void
fg_on_graph(fg_ctx *fg, ash_http_req *req)
{
	fg_call  c;
	fg_reply r = {0};
	cJSON   *rec;

	fg_call_parse(&c, req);
	rec = fg_record(fg, req, &c);
	if (!fg_script_take(fg, &c, &r) || r.status == 0)
		fg_route(fg, &c, &r);
	cJSON_AddNumberToObject(rec, "status", r.status);
	/* Paths carry ids only; tokens and bodies stay out of the log. */
	ash_log_info(NULL, "GRAPH-CALL", "%s %s -> %d%s", c.method, c.path,
	    r.status, r.delay_ms > 0 ? " (delayed)" : "");
	cJSON_Delete(c.json);
	fg_send(fg, req, &r);
}

/* --- control API -------------------------------------------------------- */

/* Creates (or recreates) the four state documents. */
static void
fg_state_reset(fg_ctx *fg)
{
	cJSON_Delete(fg->tokens);
	cJSON_Delete(fg->objects);
	cJSON_Delete(fg->scripts);
	cJSON_Delete(fg->calls);
	fg->tokens  = cJSON_CreateObject();
	fg->objects = cJSON_CreateObject();
	fg->scripts = cJSON_CreateArray();
	fg->calls   = cJSON_CreateArray();
	ASH_ASSERT(fg->tokens && fg->objects && fg->scripts && fg->calls);
}

/* An optional integer member: false only when present and not an int. */
static bool
fg_opt_int(const cJSON *in, const char *key, int *out)
{
	ash_err rv = ash_json_get_int(in, key, out);

	return rv == ASH_OK || rv == ASH_ENOTFOUND;
}

/* Replaces key's value in obj (takes v). */
static void
fg_put(cJSON *obj, const char *key, cJSON *v)
{
	cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
	cJSON_AddItemToObject(obj, key, v);
}

static const char *
fg_ctl_reset(fg_ctx *fg, const cJSON *in)
{
	fg_state_reset(fg);
	return NULL;
}

/* {"token","account":{},"revoked":false,"subcode":0} */
static const char *
fg_ctl_token(fg_ctx *fg, const cJSON *in)
{
	const char  *token = ash_json_str(in, "token");
	const cJSON *acct  = cJSON_GetObjectItemCaseSensitive(in, "account");
	cJSON       *t;
	int          subcode = 0;

	if (token == NULL || *token == '\0')
		return "token (string) is required";
	if (acct != NULL && !cJSON_IsObject(acct))
		return "account must be an object";
	if (!fg_opt_int(in, "subcode", &subcode))
		return "subcode must be an integer";
	t = cJSON_CreateObject();
	cJSON_AddItemToObject(t, "account",
	    acct ? cJSON_Duplicate(acct, true) : cJSON_CreateObject());
	cJSON_AddBoolToObject(t, "revoked", ash_json_bool(in, "revoked", 0));
	cJSON_AddNumberToObject(t, "subcode", subcode);
	fg_put(fg->tokens, token, t);
	return NULL;
}

/* {"token","subcode"?}: later calls with it get 190. */
static const char *
fg_ctl_revoke(fg_ctx *fg, const cJSON *in)
{
	const char *token = ash_json_str(in, "token");
	cJSON      *t = cJSON_GetObjectItemCaseSensitive(fg->tokens, token);
	int         subcode;

	if (t == NULL)
		return "unknown token";
	if (!fg_opt_int(in, "subcode", &subcode))
		return "subcode must be an integer";
	if (cJSON_HasObjectItem(in, "subcode"))
		fg_put(t, "subcode", cJSON_CreateNumber(subcode));
	fg_put(t, "revoked", cJSON_CreateTrue());
	return NULL;
}

/* {"id","object":{}} or {"id","unavailable":true} */
static const char *
fg_ctl_object(fg_ctx *fg, const cJSON *in)
{
	const char  *id  = ash_json_str(in, "id");
	const cJSON *obj = cJSON_GetObjectItemCaseSensitive(in, "object");
	cJSON       *e   = cJSON_CreateObject(), *copy;

	if (id == NULL || *id == '\0' ||
	    (!cJSON_IsObject(obj) && !ash_json_bool(in, "unavailable", 0))) {
		cJSON_Delete(e);
		return "id and either object or unavailable:true are required";
	}
	if (ash_json_bool(in, "unavailable", false))
		cJSON_AddTrueToObject(e, "unavailable");
	else {
		copy = cJSON_Duplicate(obj, true);
		if (!cJSON_HasObjectItem(copy, "id")) /* Graph always has it */
			ash_json_add_str(copy, "id", id);
		cJSON_AddItemToObject(e, "object", copy);
	}
	fg_put(fg->objects, id, e);
	return NULL;
}

/* Header values as strings; an object or number is sent as its JSON. */
static cJSON *
fg_headers_norm(const cJSON *in)
{
	cJSON       *out = cJSON_CreateObject();
	const cJSON *h;
	char        *s;

	cJSON_ArrayForEach(h, in)
	{
		if (cJSON_IsString(h)) {
			ash_json_add_str(out, h->string, h->valuestring);
			continue;
		}
		s = ash_json_render(h);
		ash_json_add_str(out, h->string, s);
		cJSON_free(s);
	}
	return out;
}

/* {"method","path_suffix","status","body","headers","times","delay_ms"} */
static const char *
fg_ctl_script(fg_ctx *fg, const cJSON *in)
{
	const cJSON *body   = cJSON_GetObjectItemCaseSensitive(in, "body");
	const cJSON *hdrs   = cJSON_GetObjectItemCaseSensitive(in, "headers");
	const char  *method = ash_json_str(in, "method");
	const char  *suffix = ash_json_str(in, "path_suffix");
	int          status = 0, times = 1, delay = 0;
	cJSON       *s;

	if (!fg_opt_int(in, "status", &status) ||
	    !fg_opt_int(in, "times", &times) ||
	    !fg_opt_int(in, "delay_ms", &delay))
		return "status, times and delay_ms must be integers";
	if ((status != 0 && (status < 100 || status > 599)) || times < 1 ||
	    delay < 0 || delay > FG_DELAY_MAX)
		return "status, times or delay_ms out of range";
	if (hdrs != NULL && !cJSON_IsObject(hdrs))
		return "headers must be an object";
	s = cJSON_CreateObject();
	ash_json_add_str(s, "method", method ? method : "");
	ash_json_add_str(s, "path_suffix", suffix ? suffix : "");
	cJSON_AddNumberToObject(s, "status", status);
	cJSON_AddNumberToObject(s, "times", times);
	cJSON_AddNumberToObject(s, "delay_ms", delay);
	if (body != NULL)
		cJSON_AddItemToObject(s, "body", cJSON_Duplicate(body, true));
	cJSON_AddItemToObject(s, "headers", fg_headers_norm(hdrs));
	cJSON_AddItemToArray(fg->scripts, s);
	return NULL;
}

/* GET /_fake/calls[?path_suffix=]: {"calls":[...]} oldest first. */
static void
fg_ctl_calls(fg_ctx *fg, ash_http_req *req)
{
	const char  *suffix = ash_http_req_query(req, "path_suffix");
	cJSON       *doc    = cJSON_CreateObject();
	cJSON       *list   = cJSON_AddArrayToObject(doc, "calls");
	const cJSON *rec;

	cJSON_ArrayForEach(rec, fg->calls)
	{
		if (suffix == NULL ||
		    fg_ends_with(ash_json_str(rec, "path"), suffix))
			cJSON_AddItemToArray(list, cJSON_Duplicate(rec, true));
	}
	ash_http_reply_json(req, 200, doc);
	cJSON_Delete(doc);
}

typedef const char *(*fg_ctl_fn)(fg_ctx *fg, const cJSON *in);

static const struct {
	const char *name;
	fg_ctl_fn   fn;
} fg_ctl_ops[] = {
    {"reset", fg_ctl_reset},
    {"tokens", fg_ctl_token},
    {"objects", fg_ctl_object},
    {"script", fg_ctl_script},
    {"revoke", fg_ctl_revoke},
};

static void
fg_on_control(fg_ctx *fg, ash_http_req *req, const char *what)
{
	const char *body, *err = "unknown control endpoint";
	size_t      len, i, n = sizeof(fg_ctl_ops) / sizeof(fg_ctl_ops[0]);
	cJSON      *in     = NULL, *ok;
	int         status = 404;

	if (strcmp(what, "calls") == 0 &&
	    strcmp(ash_http_req_method(req), "GET") == 0) {
		fg_ctl_calls(fg, req);
		return;
	}
	for (i = 0; i < n && strcmp(fg_ctl_ops[i].name, what) != 0; i++)
		;
	ash_http_req_body(req, &body, &len);
	if (i < n && strcmp(ash_http_req_method(req), "POST") == 0) {
		status = 400;
		if (len > 0 && ash_json_parse(body, len, &in) != ASH_OK)
			err = "body is not JSON";
		else
			err = fg_ctl_ops[i].fn(fg, in);
	}
	cJSON_Delete(in);
	if (err != NULL) {
		ash_http_reply_error(req, status,
		    status == 404 ? "not_found" : "invalid_argument", err,
		    NULL);
		return;
	}
	ok = cJSON_CreateObject();
	cJSON_AddBoolToObject(ok, "ok", true);
	ash_http_reply_json(req, 200, ok);
	cJSON_Delete(ok);
}

/* --- main --------------------------------------------------------------- */

static void
fg_on_request(ash_http_req *req, void *arg)
{
	const char *path = ash_http_req_path(req);

	if (strncmp(path, "/_fake/", 7) == 0)
		fg_on_control(arg, req, path + 7);
	else
		fg_on_graph(arg, req);
}

static void
fg_on_drain(void *arg)
{
	fg_ctx *fg = arg;

	ash_http_server_stop_accepting(fg->http);
	ash_loop_exit_when_idle(fg->loop, 0); /* delayed answers are dropped */
}

static ash_err
fg_init(fg_ctx *fg, const char *listen)
{
	ash_http_opts opts = {0};
	char          addr[128];
	ash_err       rv;

	fg_state_reset(fg);
	if (strchr(listen, ':') != NULL)
		snprintf(addr, sizeof(addr), "%s", listen);
	else
		snprintf(addr, sizeof(addr), "127.0.0.1:%s", listen);
	opts.addr = addr;
	if ((rv = ash_loop_new(&fg->loop)) != ASH_OK)
		return rv;
	if ((rv = ash_http_server_open(
	         fg->loop, &opts, fg_on_request, fg, &fg->http)) != ASH_OK)
		return rv;
	return ash_loop_on_shutdown(fg->loop, fg_on_drain, fg);
}

/* Reverse of fg_init; safe after a partial init. */
static void
fg_fini(fg_ctx *fg)
{
	ash_http_server_close(fg->http); /* parked requests go gone */
	while (fg->delayed != NULL)
		fg_delayed_free(fg->delayed);
	ash_loop_free(fg->loop);
	cJSON_Delete(fg->tokens);
	cJSON_Delete(fg->objects);
	cJSON_Delete(fg->scripts);
	cJSON_Delete(fg->calls);
}

int
main(int argc, char **argv)
{
	fg_ctx fg = {0};
	int    rc;

	if (argc != 2) {
		fprintf(stderr, "usage: %s PORT|HOST:PORT\n", argv[0]);
		return 2;
	}
	ash_log_init("fake-graph", ASH_LOG_INFO);
	if (fg_init(&fg, argv[1]) != ASH_OK) {
		fg_fini(&fg);
		return 1;
	}
	ash_log_info(NULL, "READY", "fake graph listening on port %d",
	    ash_http_server_port(fg.http));
	rc = ash_loop_run(fg.loop);
	fg_fini(&fg);
	return rc;
}
