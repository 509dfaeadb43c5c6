/*
 * http.c - HTTP(S) server on evhttp: one handler for every request, replies
 * now or later, and noticing clients that leave first. Loop thread only.
 *
 * Request lifetime. evhttp owns its evhttp_request; we wrap it in an
 * ash_http_req that the handler may keep after it returns. The wrapper's
 * link to evhttp ends in one of two ways. (1) Our reply: we detach the
 * wrapper from its connection state, hand the response to evhttp (which
 * frees its request once the response is written) and free the wrapper.
 * (2) The connection goes away first: evhttp_connection_free() runs the
 * close callback that http_conn.c registered, which calls
 * ash__http_req_gone(): the wrapper is marked gone and on_gone runs.
 * evhttp frees a request still queued on the connection right after that
 * callback (and leaves one it detached on EOF to us), so we drop our
 * pointer there and nothing touches that evhttp_request again. A gone
 * wrapper lives until the caller's ash_http_req_release() or its (dropped)
 * reply.
 *
 * Noticing the hang-up. libevent 2.1.12 stops reading a connection while a
 * request is with the handler, so it never sees the client leave. Once a
 * wrapper has been pending WATCH_AFTER_MS we therefore watch the socket
 * ourselves (EV_READ and, where epoll has it, EV_CLOSED = EPOLLRDHUP;
 * EV_CLOSED alone misses a reset, which epoll reports as an error). Not
 * sooner: arming and dropping the watch costs two epoll_ctl calls, most
 * requests are answered before, and a client gone a little longer costs
 * nothing but the work done for it. On EOF, a hang-up or a socket
 * error we free the evhttp connection, which runs path (2). If bytes are
 * waiting instead (a pipelined request, or a TLS 1.3 close_notify, which
 * looks the same from outside) we cannot read them without disturbing
 * evhttp, so we look again every GONE_RECHECK_MS until the reply. A client
 * that half-closes after sending its request counts as gone.
 *
 * Limits: http_conn.c frames requests and turns oversize ones into tagged
 * stand-ins that http_on_request answers with JSON 413/431.
 */
#include "http_impl.h"

#include <ashoon/json.h>
#include <ashoon/log.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/rand.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DEFAULT_MAX_BODY    (1u << 20) /* opts->max_body == 0 */
#define DEFAULT_MAX_HEADERS (16u << 10)
#define DEFAULT_TIMEOUT_S   30
#define GONE_RECHECK_MS     100 /* re-poll a socket with unread bytes */
#define WATCH_AFTER_MS      100 /* pending this long: watch for hang-up */

struct ash_http_req {
	ash__http_conn           *conn;        /* NULL once replied or gone */
	struct evhttp_request    *evreq;       /* NULL once replied or gone */
	struct evhttp_connection *evcon;       /* NULL once replied or gone */
	struct event             *hangup;      /* socket watch while pending */
	struct event             *recheck;     /* arms, then re-arms, hangup */
	bool                      early_close; /* epoll has EV_CLOSED */
	const char               *method;      /* static string */
	char                     *path;        /* decoded (malloc'd) */
	size_t                    path_len;
	char                      peer[64]; /* client IP, text */
	struct evbuffer          *body;     /* taken over from evhttp */
	struct evkeyvalq          query;    /* valid when query_parsed */
	bool                      query_parsed;
	bool                      gone;
	void (*on_gone)(void *arg);
	void *on_gone_arg;
	void *data; /* caller's */
};

static const char *
http_method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	default:
		return "UNKNOWN"; /* evhttp refuses other methods itself */
	}
}

/* {"error":{"code":..,"message":..[,"request_id":..]}}; free with
 * cJSON_free(). */
static char *
http_error_body(const char *code, const char *message, const char *request_id)
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

/* Writes the response on evreq; evhttp frees evreq once it is sent. */
static void
http_send(struct evhttp_request *evreq, int status, const char *ctype,
    const char *body, size_t len, bool close)
{
	struct evkeyvalq *out    = evhttp_request_get_output_headers(evreq);
	bool              nobody = status == 204 || status == 304;
	bool head = evhttp_request_get_command(evreq) == EVHTTP_REQ_HEAD;
	char num[32];

	ASH_ASSERT(status >= 200 && status <= 599);
	evhttp_remove_header(out, "Content-Type");
	evhttp_remove_header(out, "Content-Length");
	if (!nobody) {
		if (ctype != NULL)
			evhttp_add_header(out, "Content-Type", ctype);
		snprintf(num, sizeof(num), "%zu", len);
		evhttp_add_header(out, "Content-Length", num);
	}
	if (close)
		evhttp_add_header(out, "Connection", "close");
	/* evhttp 2.1.12 would send a HEAD response's body: never add one. */
	if (!nobody && !head && len > 0)
		evbuffer_add(
		    evhttp_request_get_output_buffer(evreq), body, len);
	evhttp_send_reply(evreq, status, NULL, NULL);
}

static void
http_send_error(struct evhttp_request *evreq, int status, const char *code,
    const char *message, bool close)
{
	char *body = http_error_body(code, message, NULL);

	http_send(
	    evreq, status, "application/json", body, strlen(body), close);
	cJSON_free(body);
}

/* The guard's stand-in for a refused request (http_conn.c). */
static void
http_reply_limit(
    struct evhttp_request *evreq, int status, const ash__http_limits *lim)
{
	char msg[96];

	if (status == 413) {
		snprintf(msg, sizeof(msg), "request body exceeds %zu bytes",
		    lim->max_body);
		http_send_error(evreq, 413, "payload_too_large", msg, true);
	} else {
		snprintf(msg, sizeof(msg), "request headers exceed %zu bytes",
		    lim->max_headers);
		http_send_error(evreq, 431, "headers_too_large", msg, true);
	}
}

static void
req_free(ash_http_req *req)
{
	if (req->hangup != NULL)
		event_free(req->hangup);
	if (req->recheck != NULL)
		event_free(req->recheck);
	if (req->query_parsed)
		evhttp_clear_headers(&req->query);
	evbuffer_free(req->body);
	free(req->path);
	free(req);
}

/* Ends the link to evhttp (before a reply, or when gone). */
static void
req_unlink(ash_http_req *req)
{
	if (req->conn != NULL)
		ash__http_conn_hold(req->conn, NULL);
	if (req->hangup != NULL)
		event_free(req->hangup);
	if (req->recheck != NULL)
		event_free(req->recheck);
	req->conn    = NULL;
	req->hangup  = NULL;
	req->recheck = NULL;
	req->evreq   = NULL;
	req->evcon   = NULL;
}

/* http_conn.c: the connection is being freed while req is pending. */
void
ash__http_req_gone(ash_http_req *req)
{
	req->conn = NULL; /* already freed */
	/* On EOF evhttp detaches a pending request from its connection and
	 * then never frees it; one still attached is freed after we return. */
	if (evhttp_request_get_connection(req->evreq) == NULL)
		evhttp_request_free(req->evreq);
	req_unlink(req);
	req->gone = true;
	ash_log_debug(
	    NULL, "HTTP-GONE", "client %s left before the reply", req->peer);
	if (req->on_gone != NULL)
		req->on_gone(req->on_gone_arg); /* may release req */
}

static void req_watch(ash_http_req *req);

static void
http_on_recheck(evutil_socket_t fd, short what, void *arg)
{
	ash_http_req *req = arg;

	if (req->hangup == NULL)
		req_watch(req);
	else
		event_add(req->hangup, NULL);
}

static void
http_on_hangup(evutil_socket_t fd, short what, void *arg)
{
	ash_http_req  *req  = arg;
	struct timeval tv   = {0, GONE_RECHECK_MS * 1000};
	char           byte = 0;
	ssize_t        n;

	if (!(what & EV_CLOSED)) {
		n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 &&
		    (errno == EAGAIN || errno == EWOULDBLOCK ||
		        errno == EINTR))
			return;
		if (n > 0) { /* unread bytes: look again later */
			event_del(req->hangup);
			evtimer_add(req->recheck, &tv);
			return;
		}
	}
	evhttp_connection_free(req->evcon); /* runs ash__http_req_gone */
}

static void
req_watch(ash_http_req *req)
{
	struct bufferevent *bev =
	    evhttp_connection_get_bufferevent(req->evcon);
	evutil_socket_t fd = bufferevent_getfd(bev);
	short what = EV_READ | EV_PERSIST | (req->early_close ? EV_CLOSED : 0);

	if (fd < 0)
		return;
	req->hangup = event_new(evhttp_connection_get_base(req->evcon), fd,
	    what, http_on_hangup, req);
	ASH_ASSERT(req->hangup != NULL);
	event_add(req->hangup, NULL);
}

static void
req_set_peer(ash_http_req *req)
{
	char       *raw  = NULL;
	const char *addr = "";
	ev_uint16_t port = 0;

	evhttp_connection_get_peer(req->evcon, &raw, &port);
	if (raw != NULL)
		addr = raw;
	/* A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d. */
	if (strncmp(addr, "::ffff:", 7) == 0 && strchr(addr + 7, '.') != NULL)
		addr += 7;
	snprintf(req->peer, sizeof(req->peer), "%s", addr);
}

static ash_http_req *
req_new(ash_http_server *srv, struct evhttp_request *evreq)
{
	static const struct timeval watch_after = {0, WATCH_AFTER_MS * 1000};
	ash_http_req               *req         = ash_xcalloc(1, sizeof(*req));
	const struct evhttp_uri    *uri = evhttp_request_get_evhttp_uri(evreq);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;

	req->evreq  = evreq;
	req->evcon  = evhttp_request_get_connection(evreq);
	req->method = http_method_name(evhttp_request_get_command(evreq));
	req->body   = evbuffer_new();
	ASH_ASSERT(req->body != NULL);
	evbuffer_add_buffer(req->body, evhttp_request_get_input_buffer(evreq));
	req->path =
	    evhttp_uridecode(path && *path ? path : "/", 0, &req->path_len);
	ASH_ASSERT(req->path != NULL);
	req_set_peer(req);
	/* A request implies bytes, so the connection state is attached. */
	req->conn = ash__http_conn_find(srv, req->evcon);
	ASH_ASSERT(req->conn != NULL);
	ash__http_conn_hold(req->conn, req);
	req->early_close = srv->early_close;
	req->recheck     = evtimer_new(
	        evhttp_connection_get_base(req->evcon), http_on_recheck, req);
	ASH_ASSERT(req->recheck != NULL);
	evtimer_add(req->recheck, &watch_after);
	return req;
}

/* evhttp's callback for every request it has read completely. */
static void
http_on_request(struct evhttp_request *evreq, void *arg)
{
	ash_http_server *srv = arg;
	int              limit;
	ash_http_req    *req;

	if ((limit = ash__http_limit_status(evreq, &srv->lim)) != 0) {
		http_reply_limit(evreq, limit, &srv->lim);
		return;
	}
	req = req_new(srv, evreq);
	if (memchr(req->path, '\0', req->path_len) != NULL) {
		ash_http_reply_error(req, 400, ash_err_code(ASH_EINVAL),
		    "path contains a NUL byte", NULL);
		return;
	}
	srv->handler(req, srv->arg);
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

static ash_err
http_bind(ash_http_server *srv, const char *host, int port)
{
	struct addrinfo hints = {.ai_flags = AI_PASSIVE,
	                    .ai_socktype   = SOCK_STREAM},
	                *res;
	struct sockaddr_storage ss;
	socklen_t               sslen = sizeof(ss);

	if (getaddrinfo(host, NULL, &hints, &res) != 0) {
		ash_log_error(NULL, "HTTP-ADDR", "cannot resolve %s", host);
		return ASH_EINVAL;
	}
	freeaddrinfo(res);
	srv->bound = evhttp_bind_socket_with_handle(
	    srv->http, host, (ev_uint16_t) port);
	if (srv->bound == NULL) {
		ash_log_error(NULL, "HTTP-BIND", "cannot listen on %s:%d: %s",
		    host, port, strerror(errno));
		return ASH_EUNAVAIL;
	}
	getsockname(evhttp_bound_socket_get_fd(srv->bound),
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
http_limits_init(ash__http_limits *lim, const ash_http_opts *opts)
{
	unsigned char raw[ASH__HTTP_SECRET_LEN / 2];

	lim->max_body = opts->max_body ? opts->max_body : DEFAULT_MAX_BODY;
	lim->max_headers =
	    opts->max_headers ? opts->max_headers : DEFAULT_MAX_HEADERS;
	if (lim->max_body > INT32_MAX)
		lim->max_body = INT32_MAX;
	if (lim->max_headers > INT32_MAX)
		lim->max_headers = INT32_MAX;
	ASH_ASSERT(RAND_bytes(raw, sizeof(raw)) == 1);
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(lim->secret + 2 * i, 3, "%02x", raw[i]);
}

static void
http_configure(ash_http_server *srv, struct event_base *base, int timeout_s)
{
	struct evhttp *h = srv->http;

	evhttp_set_allowed_methods(h,
	    EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
	        EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
	        EVHTTP_REQ_HEAD);
	/* Backstops behind the guard (http_conn.c). */
	evhttp_set_max_headers_size(h, (ev_ssize_t) srv->lim.max_headers);
	evhttp_set_max_body_size(h, (ev_ssize_t) srv->lim.max_body);
	evhttp_set_timeout(h, timeout_s > 0 ? timeout_s : DEFAULT_TIMEOUT_S);
	evhttp_set_default_content_type(h, NULL);
	evhttp_set_bevcb(h, ash__http_conn_bev, srv);
	evhttp_set_gencb(h, http_on_request, srv);
	srv->early_close =
	    (event_base_get_features(base) & EV_FEATURE_EARLY_CLOSE) != 0;
}

/* Loop thread. See http.h. */
ash_err
ash_http_server_open(ash_loop *loop, const ash_http_opts *opts,
    ash_http_handler handler, void *arg, ash_http_server **out)
{
	ash_http_server *srv;
	char             host[256];
	int              port;
	ash_err          rv;

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
	http_limits_init(&srv->lim, opts);
	if ((rv = http_tls_init(srv, opts)) != ASH_OK)
		goto fail;
	srv->http = evhttp_new(ash_loop_base(loop));
	ASH_ASSERT(srv->http != NULL);
	http_configure(srv, ash_loop_base(loop), opts->timeout_s);
	if ((rv = http_bind(srv, host, port)) != ASH_OK)
		goto fail;
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
	if (srv->bound == NULL)
		return;
	evhttp_del_accept_socket(srv->http, srv->bound);
	srv->bound = NULL;
}

/* Loop thread, not from inside the handler. Pending requests go gone. */
void
ash_http_server_close(ash_http_server *srv)
{
	if (srv == NULL)
		return;
	if (srv->http != NULL)
		evhttp_free(srv->http); /* close callbacks: on_gone */
	ash__http_conns_free(srv);
	if (srv->ssl_ctx != NULL)
		SSL_CTX_free(srv->ssl_ctx);
	free(srv);
}

/* Accessors (see http.h). Header and query lookups need the evhttp
 * request, so they give NULL once the request is gone. */

/* Static "GET", "POST", ... */
const char *
ash_http_req_method(const ash_http_req *req)
{
	return req->method;
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
	if (req->evreq == NULL)
		return NULL;
	return evhttp_find_header(
	    evhttp_request_get_input_headers(req->evreq), name);
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
	const char *q;

	if (!req->query_parsed) {
		if (req->evreq == NULL)
			return NULL;
		q = evhttp_uri_get_query(
		    evhttp_request_get_evhttp_uri(req->evreq));
		req->query_parsed    = true;
		req->query.tqh_first = NULL;
		req->query.tqh_last  = &req->query.tqh_first;
		/* A malformed query string counts as an empty one. */
		if (q != NULL && evhttp_parse_query_str(q, &req->query) != 0)
			evhttp_clear_headers(&req->query);
	}
	return evhttp_find_header(&req->query, key);
}

/* The body, contiguous ("" when empty); borrowed from req. */
void
ash_http_req_body(ash_http_req *req, const char **data, size_t *len)
{
	*len  = evbuffer_get_length(req->body);
	*data = *len ? (const char *) evbuffer_pullup(req->body, -1) : "";
}

/* Before replying. Values with CR or LF are refused by evhttp (dropped). */
void
ash_http_req_set_header(ash_http_req *req, const char *name, const char *value)
{
	if (req->evreq == NULL)
		return;
	if (evhttp_add_header(evhttp_request_get_output_headers(req->evreq),
	        name, value) != 0)
		ash_log_warn(
		    NULL, "HTTP-HEADER", "response header %s refused", name);
}

/* Sends the response (unless gone) and frees req. */
void
ash_http_reply(ash_http_req *req, int status, const char *content_type,
    const char *body, size_t len)
{
	struct evhttp_request *evreq = req->evreq;

	if (!req->gone) {
		ASH_ASSERT(evreq != NULL);
		if (req->conn != NULL)
			ash__http_conn_sending(req->conn, evreq);
		req_unlink(req);
		http_send(evreq, status, content_type, body, len, false);
	}
	req_free(req);
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

/* The platform's error body (http_error_body). */
void
ash_http_reply_error(ash_http_req *req, int status, const char *code,
    const char *message, const char *request_id)
{
	char *body = http_error_body(code, message, request_id);

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
	req_free(req);
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
