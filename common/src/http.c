/*
 * http.c - HTTP(S) server: one handler for every request, replies now or
 * later, and noticing clients that leave first. Loop thread only.
 *
 * This file has the server (listening, TLS, limits, the idle sweep) and
 * the request API; http_conn.c reads, frames and writes connections, and
 * http_parse.c parses heads and chunked bodies.
 *
 * Request lifetime. A request belongs to its connection until the handler
 * has it; from then on it lives until the handler's reply (which writes
 * the response and frees it) or, if the connection ends first, until it
 * is gone: http_conn.c unlinks it and calls ash__http_req_gone(), on_gone
 * runs, and the request lives on until the caller's
 * ash_http_req_release() or its (dropped) reply. A request owns all its
 * bytes, so its accessors keep working when it is gone.
 */
#include "http_impl.h"

#include <ashoon/json.h>
#include <ashoon/log.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <openssl/err.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define DEFAULT_MAX_BODY    (1u << 20) /* opts->max_body == 0 */
#define DEFAULT_MAX_HEADERS (16u << 10)
#define DEFAULT_TIMEOUT_S   30
#define LISTEN_BACKLOG      1024
#define ACCEPT_PAUSE_MS     250   /* after accept() failed (descriptors) */
#define ACCEPT_LOG_MS       10000 /* a log line about it at most this often */

/* {"error":{"code":..,"message":..[,"request_id":..]}}; free with
 * cJSON_free(). */
char *
ash__http_error_body(
    const char *code, const char *message, const char *request_id)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON *err = cJSON_AddObjectToObject(doc, "error");
	char  *out;

	ASH_ASSERT(err != NULL);
	ASH_ASSERT(cJSON_AddStringToObject(err, "code", code ? code : "") &&
	    cJSON_AddStringToObject(err, "message", message ? message : ""));
	if (request_id != NULL)
		ASH_ASSERT(
		    cJSON_AddStringToObject(err, "request_id", request_id));
	out = ash_json_render(doc);
	cJSON_Delete(doc);
	return out;
}

/* --- requests ----------------------------------------------------------- */

void
ash__http_req_free(ash_http_req *req)
{
	if (req->query_parsed)
		evhttp_clear_headers(&req->qs);
	free(req->bodybuf.data);
	free(req->path);
	free(req->raw);
	free(req->out);
	free(req);
}

void
ash__http_req_gone(ash_http_req *req)
{
	req->gone = true;
	if (req->on_gone != NULL)
		req->on_gone(req->on_gone_arg); /* may release req */
}

/* The path of an origin-form target ("/a?b"), of an absolute-form one
 * ("http://host/a?b"), or "*" (OPTIONS); NULL for anything else. The
 * query is split off (and a fragment dropped) in place. */
static char *
req_split_target(ash_http_req *req)
{
	char *t = req->head.target, *q;

	if (strncasecmp(t, "http://", 7) == 0 ||
	    strncasecmp(t, "https://", 8) == 0) {
		t = strchr(t, ':') + 3;
		t += strcspn(t, "/?#"); /* the authority ends there */
		if (*t != '/') {        /* no path: "/", with any query */
			if ((q = strchr(t, '#')) != NULL)
				*q = '\0';
			if (*t == '?')
				req->query = t + 1;
			return "/";
		}
	} else if (strcmp(t, "*") == 0) {
		return strcmp(req->head.method, "OPTIONS") == 0 ? t : NULL;
	} else if (*t != '/') {
		return NULL;
	}
	if ((q = strchr(t, '#')) != NULL)
		*q = '\0';
	if ((q = strchr(t, '?')) != NULL) {
		*q         = '\0';
		req->query = q + 1;
	}
	return t;
}

ash_http_req *
ash__http_req_new(const char *peer, const char *head, size_t hlen, int *status,
    const char **why)
{
	ash_http_req *req = ash_xcalloc(1, sizeof(*req));
	const char   *path;

	req->raw = ash_xmalloc(hlen + 1);
	memcpy(req->raw, head, hlen);
	req->raw[hlen] = '\0';
	snprintf(req->peer, sizeof(req->peer), "%s", peer);
	if ((*status = ash__http_parse_head(
	         req->raw, hlen, &req->head, why)) != 0)
		goto refuse;
	*status = 400;
	if ((path = req_split_target(req)) == NULL) {
		*why = "malformed request target";
		goto refuse;
	}
	req->path = evhttp_uridecode(path, 0, &req->path_len);
	ASH_ASSERT(req->path != NULL);
	if (memchr(req->path, '\0', req->path_len) != NULL) {
		*why = "path contains a NUL byte";
		goto refuse;
	}
	/* A decoded value is a C string: a NUL would cut it short. */
	if (req->query != NULL && strstr(req->query, "%00") != NULL) {
		*why = "query contains a NUL byte";
		goto refuse;
	}
	*status = 0;
	return req;
refuse:
	ash__http_req_free(req);
	return NULL;
}

/* "host:port", "[v6]:port" or ":port" (all addresses). */
static ash_err
http_parse_addr(const char *addr, char *host, size_t cap, int *port)
{
	const char *colon = addr ? strrchr(addr, ':') : NULL;
	const char *h     = addr;
	size_t      hlen;
	char       *end;
	long        p;

	if (colon == NULL || colon[1] == '\0')
		return ASH_EINVAL;
	hlen = (size_t) (colon - addr);
	if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	} else if (memchr(addr, ':', hlen) != NULL)
		return ASH_EINVAL; /* IPv6 needs brackets */
	if (hlen == 0) {
		h    = "0.0.0.0";
		hlen = 7;
	}
	p = strtol(colon + 1, &end, 10);
	if (*end != '\0' || p < 0 || p > 65535 || hlen >= cap)
		return ASH_EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port      = (int) p;
	return ASH_OK;
}

/* --- the server --------------------------------------------------------- */

static void
http_on_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	(void) l;
	(void) salen;
	ash__http_conn_accept(arg, fd, sa);
}

/* accept() failed for want of something that comes back (descriptors,
 * memory): the connection stays in the backlog and the listening socket
 * stays readable, so going on would spin. Accepting pauses instead, and
 * the log says so at most every ACCEPT_LOG_MS. */
static void
http_on_accept_error(struct evconnlistener *l, void *arg)
{
	static const struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};
	ash_http_server            *srv   = arg;
	int                         e     = EVUTIL_SOCKET_ERROR();
	int64_t                     now   = ash_now_ms();

	evconnlistener_disable(l);
	evtimer_add(srv->accept_again, &pause);
	srv->accept_pauses++;
	if (srv->accept_logged != 0 &&
	    now - srv->accept_logged < ACCEPT_LOG_MS)
		return;
	ash_log_warn(NULL, "HTTP-ACCEPT",
	    "cannot accept a connection: %s; paused %u time(s) for %d ms",
	    strerror(e), srv->accept_pauses, ACCEPT_PAUSE_MS);
	srv->accept_logged = now;
	srv->accept_pauses = 0;
}

static void
http_accept_again(evutil_socket_t fd, short what, void *arg)
{
	ash_http_server *srv = arg;

	(void) fd;
	(void) what;
	if (srv->listener != NULL)
		evconnlistener_enable(srv->listener);
}

static ash_err
http_bind(ash_http_server *srv, const char *host, int port)
{
	struct addrinfo hints = {.ai_flags = AI_PASSIVE,
	                    .ai_socktype   = SOCK_STREAM},
	                *res;
	struct sockaddr_storage ss;
	socklen_t               sslen = sizeof(ss);
	char                    service[8];

	snprintf(service, sizeof(service), "%d", port);
	if (getaddrinfo(host, service, &hints, &res) != 0) {
		ash_log_error(NULL, "HTTP-ADDR", "cannot resolve %s", host);
		return ASH_EINVAL;
	}
	srv->listener = evconnlistener_new_bind(ash_loop_base(srv->loop),
	    http_on_accept, srv,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    LISTEN_BACKLOG, res->ai_addr, (int) res->ai_addrlen);
	freeaddrinfo(res);
	if (srv->listener == NULL) {
		ash_log_error(NULL, "HTTP-BIND", "cannot listen on %s:%d: %s",
		    host, port, strerror(errno));
		return ASH_EUNAVAIL;
	}
	evconnlistener_set_error_cb(srv->listener, http_on_accept_error);
	getsockname(evconnlistener_get_fd(srv->listener),
	    (struct sockaddr *) &ss, &sslen);
	srv->port = ntohs(ss.ss_family == AF_INET6
	        ? ((struct sockaddr_in6 *) &ss)->sin6_port
	        : ((struct sockaddr_in *) &ss)->sin_port);
	return ASH_OK;
}

static ash_err
http_tls_init(ash_http_server *srv, const ash_http_opts *opts)
{
	bool cert = opts->tls_cert != NULL && opts->tls_cert[0] != '\0';
	bool key  = opts->tls_key != NULL && opts->tls_key[0] != '\0';

	if (!cert && !key)
		return ASH_OK;
	if (!cert || !key) {
		ash_log_error(NULL, "HTTP-TLS",
		    "TLS needs both a certificate and a key");
		return ASH_EINVAL;
	}
	return ash__http_tls_new(opts->tls_cert, opts->tls_key, &srv->ssl_ctx);
}

static void
http_limits_init(ash_http_server *srv, const ash_http_opts *opts)
{
	int t = opts->timeout_s > 0 ? opts->timeout_s : DEFAULT_TIMEOUT_S;

	srv->max_body = opts->max_body ? opts->max_body : DEFAULT_MAX_BODY;
	srv->max_headers =
	    opts->max_headers ? opts->max_headers : DEFAULT_MAX_HEADERS;
	if (srv->max_body > INT32_MAX)
		srv->max_body = INT32_MAX;
	if (srv->max_headers > INT32_MAX)
		srv->max_headers = INT32_MAX;
	srv->timeout_ms = (int64_t) t * 1000;
}

/* Loop thread. See http.h. */
ash_err
ash_http_server_open(ash_loop *loop, const ash_http_opts *opts,
    ash_http_handler handler, void *arg, ash_http_server **out)
{
	static const struct timeval second = {1, 0};
	ash_http_server            *srv;
	char                        host[256];
	int                         port;
	ash_err                     rv;

	if (opts == NULL || handler == NULL)
		return ASH_EINVAL;
	if ((rv = http_parse_addr(opts->addr, host, sizeof(host), &port)) !=
	    ASH_OK) {
		ash_log_error(NULL, "HTTP-ADDR", "bad listen address \"%s\"",
		    opts->addr ? opts->addr : "");
		return rv;
	}
	srv          = ash_xcalloc(1, sizeof(*srv));
	srv->loop    = loop;
	srv->handler = handler;
	srv->arg     = arg;
	http_limits_init(srv, opts);
	if ((rv = http_tls_init(srv, opts)) != ASH_OK)
		goto fail;
	if ((rv = http_bind(srv, host, port)) != ASH_OK)
		goto fail;
	srv->sweep = event_new(
	    ash_loop_base(loop), -1, EV_PERSIST, ash__http_conns_sweep, srv);
	srv->accept_again =
	    evtimer_new(ash_loop_base(loop), http_accept_again, srv);
	ASH_ASSERT(srv->sweep != NULL && srv->accept_again != NULL);
	event_add(srv->sweep, &second);
	*out = srv;
	return ASH_OK;
fail:
	ash_http_server_close(srv);
	return rv;
}

/* Loop thread. */
int
ash_http_server_port(const ash_http_server *srv)
{
	return srv->port;
}

/* Loop thread. Accepted connections keep working. */
void
ash_http_server_stop_accepting(ash_http_server *srv)
{
	if (srv->listener == NULL)
		return;
	evconnlistener_free(srv->listener);
	srv->listener = NULL;
}

/* Loop thread, not from inside the handler. Pending requests go gone. */
void
ash_http_server_close(ash_http_server *srv)
{
	if (srv == NULL)
		return;
	ash_http_server_stop_accepting(srv);
	ash__http_conns_close(srv);
	if (srv->sweep != NULL)
		event_free(srv->sweep);
	if (srv->accept_again != NULL)
		event_free(srv->accept_again);
	if (srv->ssl_ctx != NULL)
		SSL_CTX_free(srv->ssl_ctx);
	free(srv);
}

/* --- the request API (see http.h) --------------------------------------- */

/* Static "GET", "POST", ... */
const char *
ash_http_req_method(const ash_http_req *req)
{
	return req->head.method;
}

/* Percent-decoded, without the query string. */
const char *
ash_http_req_path(const ash_http_req *req)
{
	return req->path;
}

/* Case-insensitive; the first occurrence. */
const char *
ash_http_req_header(const ash_http_req *req, const char *name)
{
	return ash__http_head_field(&req->head, name);
}

char *
ash_http_req_header_list(const ash_http_req *req, const char *name)
{
	const ash__http_head *h   = &req->head;
	char                 *out = NULL;
	size_t                len = 0, n, sep;

	for (int i = 0; i < h->nfields; i++) {
		if (strcasecmp(h->fields[i].name, name) != 0)
			continue;
		n   = strlen(h->fields[i].value);
		sep = out != NULL ? 2 : 0;
		out = ash_xrealloc(out, len + sep + n + 1);
		memcpy(out + len, ", ", sep);
		memcpy(out + len + sep, h->fields[i].value, n + 1);
		len += sep + n;
	}
	return out;
}

/* The client's IP address as text. */
const char *
ash_http_req_peer(const ash_http_req *req)
{
	return req->peer;
}

/* One decoded query parameter, parsed on first use. */
const char *
ash_http_req_query(ash_http_req *req, const char *key)
{
	if (!req->query_parsed) {
		req->query_parsed = true;
		req->qs.tqh_first = NULL;
		req->qs.tqh_last  = &req->qs.tqh_first;
		/* A malformed query string counts as an empty one. */
		if (req->query != NULL &&
		    evhttp_parse_query_str(req->query, &req->qs) != 0)
			evhttp_clear_headers(&req->qs);
	}
	return evhttp_find_header(&req->qs, key);
}

/* The body, contiguous ("" when empty); borrowed from req. */
void
ash_http_req_body(ash_http_req *req, const char **data, size_t *len)
{
	*data = req->bodybuf.len ? req->bodybuf.data : "";
	*len  = req->bodybuf.len;
}

static bool
header_ok(const char *name, const char *value)
{
	if (*name == '\0' || strpbrk(value, "\r\n") != NULL)
		return false;
	for (const char *p = name; *p; p++)
		if ((unsigned char) *p <= 0x20 || *p == ':' || *p == 0x7f)
			return false;
	return true;
}

/* Before replying. A name or value that would break the response (CR, LF,
 * a colon in the name) is refused and logged. The server writes
 * Content-Type, Content-Length and Date itself; Connection: close is
 * honoured (the connection closes after this response). */
void
ash_http_req_set_header(ash_http_req *req, const char *name, const char *value)
{
	size_t nl, vl;

	if (req->gone)
		return;
	if (!header_ok(name, value)) {
		ash_log_warn(
		    NULL, "HTTP-HEADER", "response header %s refused", name);
		return;
	}
	if (strcasecmp(name, "Connection") == 0) {
		req->out_close =
		    req->out_close || strcasecmp(value, "close") == 0;
		return;
	}
	if (strcasecmp(name, "Content-Type") == 0 ||
	    strcasecmp(name, "Content-Length") == 0 ||
	    strcasecmp(name, "Date") == 0)
		return;
	nl = strlen(name);
	vl = strlen(value);
	if (req->out_len + nl + vl + 4 > req->out_cap) {
		req->out_cap = (req->out_len + nl + vl + 4) * 2;
		req->out     = ash_xrealloc(req->out, req->out_cap);
	}
	memcpy(req->out + req->out_len, name, nl);
	memcpy(req->out + req->out_len + nl, ": ", 2);
	memcpy(req->out + req->out_len + nl + 2, value, vl);
	memcpy(req->out + req->out_len + nl + 2 + vl, "\r\n", 2);
	req->out_len += nl + vl + 4;
}

/* Sends the response (unless gone) and frees req. */
void
ash_http_reply(ash_http_req *req, int status, const char *content_type,
    const char *body, size_t len)
{
	if (!req->gone)
		ash__http_conn_reply(req, status, content_type, body, len);
	ash__http_req_free(req);
}

/* doc rendered compactly as application/json; doc stays the caller's. */
void
ash_http_reply_json(ash_http_req *req, int status, const cJSON *doc)
{
	char *body = ash_json_render(doc);

	ASH_ASSERT(body != NULL);
	ash_http_reply(req, status, "application/json", body, strlen(body));
	cJSON_free(body);
}

/* The platform's error body (ash__http_error_body). */
void
ash_http_reply_error(ash_http_req *req, int status, const char *code,
    const char *message, const char *request_id)
{
	char *body = ash__http_error_body(code, message, request_id);

	ash_http_reply(req, status, "application/json", body, strlen(body));
	cJSON_free(body);
}

/* Replaces any earlier callback; register it inside the handler. */
void
ash_http_req_on_gone(ash_http_req *req, void (*cb)(void *arg), void *arg)
{
	req->on_gone     = cb;
	req->on_gone_arg = arg;
}

/* True once the client left before the reply. */
bool
ash_http_req_gone(const ash_http_req *req)
{
	return req->gone;
}

/* Only for a gone request (a live one must be answered). */
void
ash_http_req_release(ash_http_req *req)
{
	ASH_ASSERT(req->gone);
	ash__http_req_free(req);
}

/* Caller-owned pointer, never touched by the server. */
void
ash_http_req_set_data(ash_http_req *req, void *data)
{
	req->data = data;
}

/* What ash_http_req_set_data() stored (NULL by default). */
void *
ash_http_req_data(const ash_http_req *req)
{
	return req->data;
}

/* --- TLS ---------------------------------------------------------------- */

ash_err
ash__http_tls_new(const char *cert, const char *key, SSL_CTX **out)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char     why[256];

	ASH_ASSERT(ctx != NULL);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx,
	    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	        SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) == 1 &&
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1 &&
	    SSL_CTX_check_private_key(ctx) == 1) {
		*out = ctx;
		return ASH_OK;
	}
	ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
	ERR_clear_error();
	ash_log_error(NULL, "HTTP-TLS",
	    "cannot use certificate %s with key %s: %s", cert, key, why);
	SSL_CTX_free(ctx);
	return ASH_EINVAL;
}
