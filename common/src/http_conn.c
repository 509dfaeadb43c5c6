/*
 * http_conn.c - per-connection state of the evhttp server: its bufferevent
 * (plain or TLS), the request-size guard, and the close callback that
 * tells http.c when a pending request's client is gone. Loop thread only.
 *
 * Why a guard: libevent 2.1.12 has no server-side hook between "headers
 * parsed" and "body read" (evhttp_request_set_header_cb only works on
 * requests we create; evhttp_set_newreqcb arrived in 2.2), and its own
 * limits answer with a fixed HTML page. So every byte the connection's
 * bufferevent reads passes the guard first: an evbuffer callback on its
 * input buffer, which runs inside the read, before evhttp's read callback.
 * It takes the new bytes out and frames requests the way evhttp 2.1.12
 * does: a head up to the first blank line, then Content-Length body bytes
 * for every method evhttp reads a body for (all it knows except HEAD and
 * TRACE, measured). It puts the bytes back unchanged, holding back only an
 * incomplete head. When a head is longer than max_headers, or declares a
 * Content-Length above max_body, it drops that head, its body and
 * everything after it, and gives evhttp a small synthetic "GET /" tagged
 * with a header carrying a random per-server secret; http.c answers that
 * one with the JSON 413/431 and Connection: close. The body is never
 * read, the handler never runs, and since evhttp answers a connection's
 * requests in order, the error cannot overtake an earlier response.
 *
 * What the guard cannot frame with certainty (Transfer-Encoding, folded
 * header lines, a Content-Length that is not plain digits, leading blank
 * lines) switches it to pass-through for the rest of the connection.
 * evhttp's own limits (same max_body and max_headers) then still apply,
 * with its HTML page: 413 for a chunked body over max_body, 413 or 400 for
 * an overlong head. Misframing can only cost the client its own
 * connection: the guard never alters bytes that evhttp parses.
 *
 * (A bufferevent filter would be the obvious tool but does not work under
 * evhttp 2.1.12: evhttp frees a Connection: close connection as soon as
 * the filter's output is drained, before the socket below has written it,
 * and a filter does not restart output that was queued while writing was
 * disabled.)
 *
 * Lifetime: the state is made with the bufferevent and must learn its
 * evhttp_connection to register the close callback. evhttp passes that
 * connection as the bufferevent's callback argument, which we read on the
 * first input or on the next loop turn, whichever comes first (holding a
 * reference on the bufferevent until then, so a connection that died in
 * between is noticed, not touched). Attached states are indexed by socket
 * so http.c can find one from a request; the server frees the rest.
 */
#include "http_impl.h"

#include <ashoon/log.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum guard_state {
	GUARD_HEAD, /* the next byte starts a request head */
	GUARD_BODY, /* passing `left` more body bytes */
	GUARD_PASS, /* cannot frame the stream: pass everything */
	GUARD_DEAD, /* request refused: discard everything */
} guard_state;

struct ash__http_conn {
	ash__http_conn           *prev, *next; /* server's list */
	ash_http_server          *srv;
	struct bufferevent       *bev;
	struct evbuffer_cb_entry *input_cb;
	struct event             *setup; /* pending attach, or NULL */
	bool                      ref;   /* we hold a bufferevent reference */
	bool                      attached; /* close callback registered */
	bool                      busy;     /* inside our own input callback */
	evutil_socket_t           fd;       /* index slot once attached */
	ash_http_req             *req;      /* with the handler, or NULL */
	unsigned                  writing;  /* replies not yet written */
	guard_state               state;
	uint64_t                  left; /* body bytes still to pass */
	struct evbuffer          *held; /* incomplete head, not yet passed */
	struct evbuffer          *scratch;
};

typedef struct head_info {
	bool     body_method; /* evhttp reads a Content-Length body */
	bool     has_length;  /* a Content-Length header was seen */
	bool     unframeable; /* give up: evhttp's own limits apply */
	uint64_t length;      /* declared body size, saturating */
} head_info;

/* Methods evhttp 2.1.12 reads a Content-Length body for. */
static bool
guard_body_method(const char *line, size_t len)
{
	static const char *const methods[] = {"GET ", "POST ", "PUT ",
	    "DELETE ", "OPTIONS ", "PATCH ", "CONNECT "};

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		size_t n = strlen(methods[i]);
		if (len >= n && memcmp(line, methods[i], n) == 0)
			return true;
	}
	return false;
}

/* Plain digits between optional blanks; saturates instead of wrapping. */
static bool
guard_parse_length(const char *p, size_t n, uint64_t *out)
{
	size_t   i = 0, digits = 0;
	uint64_t v = 0;

	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	for (; i < n && p[i] >= '0' && p[i] <= '9'; i++, digits++) {
		uint64_t d = (uint64_t) (p[i] - '0');
		v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
	}
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	*out = v;
	return digits > 0 && i == n;
}

static bool
guard_name_is(const char *p, size_t n, const char *name)
{
	size_t k = strlen(name);

	return n > k && p[k] == ':' && strncasecmp(p, name, k) == 0;
}

/* One header line (without its line end). Like evhttp, the first
 * Content-Length counts and the name must be followed directly by ':'. */
static void
guard_header(const char *p, size_t n, head_info *h)
{
	static const char cl[] = "Content-Length";

	if (n == 0)
		return;
	if (p[0] == ' ' || p[0] == '\t')
		h->unframeable = true; /* obsolete line folding */
	else if (guard_name_is(p, n, "Transfer-Encoding"))
		h->unframeable = true;
	else if (!h->has_length && guard_name_is(p, n, cl)) {
		h->has_length = true;
		if (!guard_parse_length(
		        p + sizeof(cl), n - sizeof(cl), &h->length))
			h->unframeable = true;
	}
}

/* p[0..len) is a whole head ending in its blank line. */
static void
guard_parse(const char *p, size_t len, head_info *h)
{
	const char *end = p + len;
	const char *nl  = memchr(p, '\n', len);

	memset(h, 0, sizeof(*h));
	if (p[0] == '\r' || p[0] == '\n') {
		h->unframeable = true; /* leading blank line */
		return;
	}
	h->body_method = guard_body_method(p, (size_t) (nl - p));
	for (p = nl + 1; p < end; p = nl + 1) {
		size_t n;

		nl = memchr(p, '\n', (size_t) (end - p));
		n  = (size_t) (nl - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		guard_header(p, n, h);
	}
}

/* Length of the head at p (through its blank line), 0 if incomplete. */
static size_t
guard_head_len(const char *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] != '\n')
			continue;
		if (p[i + 1] == '\n')
			return i + 2;
		if (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* Drops the rest of the stream and hands evhttp the tagged stand-in. */
static void
guard_refuse(
    ash__http_conn *c, struct evbuffer *src, struct evbuffer *dst, int status)
{
	evbuffer_drain(src, evbuffer_get_length(src));
	evbuffer_add_printf(dst,
	    "GET / HTTP/1.1\r\nHost: limit\r\nConnection: close\r\n"
	    "%s: %s %d\r\n\r\n",
	    ASH__HTTP_LIMIT_HEADER, c->srv->lim.secret, status);
	c->state = GUARD_DEAD;
	ash_log_debug(NULL, "HTTP-LIMIT", "request refused with %d", status);
}

/* GUARD_HEAD: false while the head is still incomplete. */
static bool
guard_head(ash__http_conn *c, struct evbuffer *src, struct evbuffer *dst)
{
	const ash__http_limits *lim   = &c->srv->lim;
	size_t                  avail = evbuffer_get_length(src);
	size_t want = lim->max_headers < avail ? lim->max_headers + 1 : avail;
	const char *p = (const char *) evbuffer_pullup(src, (ev_ssize_t) want);
	size_t      len = guard_head_len(p, want);
	head_info   h;

	if (len == 0 && want <= lim->max_headers)
		return false;
	if (len == 0 || len > lim->max_headers) {
		guard_refuse(c, src, dst, 431);
		return true;
	}
	guard_parse(p, len, &h);
	if (h.unframeable)
		c->state = GUARD_PASS;
	else if (h.body_method && h.length > lim->max_body) {
		guard_refuse(c, src, dst, 413);
		return true;
	} else if (h.body_method && h.length > 0) {
		c->state = GUARD_BODY;
		c->left  = h.length;
	}
	evbuffer_remove_buffer(src, dst, len);
	return true;
}

/* Moves what may pass from src to dst; an incomplete head stays. */
static void
guard_run(ash__http_conn *c, struct evbuffer *src, struct evbuffer *dst)
{
	size_t n;

	while ((n = evbuffer_get_length(src)) > 0) {
		switch (c->state) {
		case GUARD_HEAD:
			if (!guard_head(c, src, dst))
				return;
			break;
		case GUARD_BODY:
			if (n > c->left)
				n = (size_t) c->left;
			evbuffer_remove_buffer(src, dst, n);
			if ((c->left -= n) == 0)
				c->state = GUARD_HEAD;
			break;
		case GUARD_PASS:
			evbuffer_remove_buffer(src, dst, n);
			break;
		case GUARD_DEAD:
			evbuffer_drain(src, n);
			break;
		}
	}
}

/* bev_alive: the bufferevent may still be touched (we hold a reference,
 * or evhttp is inside its close callback). */
static void
conn_free(ash__http_conn *c, bool bev_alive)
{
	ash_http_server *srv = c->srv;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		srv->conn_list = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (c->attached && srv->conns[c->fd] == c)
		srv->conns[c->fd] = NULL;
	if (bev_alive || c->ref)
		evbuffer_remove_cb_entry(
		    bufferevent_get_input(c->bev), c->input_cb);
	if (c->setup != NULL)
		event_free(c->setup);
	if (c->ref)
		bufferevent_decref(c->bev);
	evbuffer_free(c->held);
	evbuffer_free(c->scratch);
	free(c);
}

/* evhttp_connection_free() calls this first thing. */
static void
conn_on_close(struct evhttp_connection *evcon, void *arg)
{
	ash__http_conn *c   = arg;
	ash_http_req   *req = c->req;

	/* Replies evhttp will now never finish writing. */
	for (; c->writing > 0; c->writing--)
		ash_loop_rele(c->srv->loop);
	conn_free(c, true);
	if (req != NULL)
		ash__http_req_gone(req);
}

static void
conn_index(ash_http_server *srv, ash__http_conn *c)
{
	size_t need = (size_t) c->fd + 1;

	if (need > srv->nconns) {
		size_t n = srv->nconns ? srv->nconns : 64;
		while (n < need)
			n *= 2;
		srv->conns = ash_xrealloc(srv->conns, n * sizeof(*srv->conns));
		memset(srv->conns + srv->nconns, 0,
		    (n - srv->nconns) * sizeof(*srv->conns));
		srv->nconns = n;
	}
	if (srv->conns[c->fd] != NULL)
		ash_log_warn(NULL, "HTTP-CONN", "socket %d reused unnoticed",
		    (int) c->fd);
	srv->conns[c->fd] = c;
}

/* False if evhttp already freed the connection (callbacks cleared). */
static bool
conn_attach(ash__http_conn *c)
{
	void *evcon = NULL;

	if (c->attached)
		return true;
	bufferevent_getcb(c->bev, NULL, NULL, NULL, &evcon);
	if (evcon == NULL || (c->fd = bufferevent_getfd(c->bev)) < 0)
		return false;
	evhttp_connection_set_closecb(evcon, conn_on_close, c);
	conn_index(c->srv, c);
	c->attached = true;
	return true;
}

static void
conn_on_setup(evutil_socket_t fd, short what, void *arg)
{
	ash__http_conn *c = arg;

	event_free(c->setup);
	c->setup = NULL;
	if (!conn_attach(c)) {
		conn_free(c, true); /* died before we met it */
		return;
	}
	c->ref = false;
	bufferevent_decref(c->bev);
}

/* The bufferevent's input buffer changed: runs inside its read, before
 * evhttp's read callback sees the bytes. */
static void
conn_on_input(
    struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
	ash__http_conn *c = arg;
	size_t          total, old;
	bool            attached;

	if (c->busy || info->n_added == 0 || c->state == GUARD_PASS)
		return;
	attached = conn_attach(c); /* evhttp reads: it set its callbacks */
	ASH_ASSERT(attached);
	c->busy = true;
	/* The new bytes are the last n_added; the older ones already passed
	 * and wait for evhttp. Take the new ones out behind what we held. */
	total = evbuffer_get_length(in);
	old   = total - info->n_added;
	evbuffer_remove_buffer(in, c->scratch, total);
	evbuffer_remove_buffer(c->scratch, in, old);
	evbuffer_add_buffer(c->held, c->scratch);
	guard_run(c, c->held, in);
	c->busy = false;
}

/* evhttp_set_bevcb callback. Never returns NULL: evhttp would fall back to
 * a plain socket, which for a TLS server means cleartext. */
struct bufferevent *
ash__http_conn_bev(struct event_base *base, void *arg)
{
	ash_http_server *srv = arg;
	ash__http_conn  *c   = ash_xcalloc(1, sizeof(*c));
	struct timeval   now = {0, 0};

	if (srv->ssl_ctx != NULL) {
		SSL *ssl = SSL_new(srv->ssl_ctx);
		ASH_ASSERT(ssl != NULL);
		c->bev = bufferevent_openssl_socket_new(base, -1, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	} else
		c->bev =
		    bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	c->held    = evbuffer_new();
	c->scratch = evbuffer_new();
	c->setup   = evtimer_new(base, conn_on_setup, c);
	ASH_ASSERT(c->bev != NULL && c->held != NULL && c->scratch != NULL &&
	    c->setup != NULL);
	c->srv = srv;
	c->fd  = -1;
	c->input_cb =
	    evbuffer_add_cb(bufferevent_get_input(c->bev), conn_on_input, c);
	ASH_ASSERT(c->input_cb != NULL);
	bufferevent_incref(c->bev);
	c->ref  = true;
	c->next = srv->conn_list;
	if (srv->conn_list != NULL)
		srv->conn_list->prev = c;
	srv->conn_list = c;
	evtimer_add(c->setup, &now);
	return c->bev;
}

/* By socket: evhttp exposes no user pointer on a connection. */
ash__http_conn *
ash__http_conn_find(ash_http_server *srv, struct evhttp_connection *evcon)
{
	evutil_socket_t fd =
	    bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));

	if (fd < 0 || (size_t) fd >= srv->nconns)
		return NULL;
	return srv->conns[fd];
}

static void
conn_on_sent(struct evhttp_request *evreq, void *arg)
{
	ash__http_conn *c = arg;

	ASH_ASSERT(c->writing > 0);
	c->writing--;
	ash_loop_rele(c->srv->loop);
}

/* See http_impl.h. */
void
ash__http_conn_sending(ash__http_conn *c, struct evhttp_request *evreq)
{
	c->writing++;
	ash_loop_hold(c->srv->loop);
	evhttp_request_set_on_complete_cb(evreq, conn_on_sent, c);
}

/* See http_impl.h. */
void
ash__http_conn_hold(ash__http_conn *c, ash_http_req *req)
{
	c->req = req;
}

/* After evhttp_free(): the states never attached (their bufferevents are
 * alive through our reference). */
void
ash__http_conns_free(ash_http_server *srv)
{
	while (srv->conn_list != NULL)
		conn_free(srv->conn_list, false);
	free(srv->conns);
	srv->conns  = NULL;
	srv->nconns = 0;
}

/* The tag must carry this server's secret: clients cannot forge it. */
int
ash__http_limit_status(
    struct evhttp_request *evreq, const ash__http_limits *lim)
{
	const char *v = evhttp_find_header(
	    evhttp_request_get_input_headers(evreq), ASH__HTTP_LIMIT_HEADER);

	if (v == NULL || strlen(v) != ASH__HTTP_SECRET_LEN + 4 ||
	    v[ASH__HTTP_SECRET_LEN] != ' ' ||
	    CRYPTO_memcmp(v, lim->secret, ASH__HTTP_SECRET_LEN) != 0)
		return 0;
	return atoi(v + ASH__HTTP_SECRET_LEN + 1);
}

/* TLS_server_method, TLS >= 1.2, no compression or renegotiation. */
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
