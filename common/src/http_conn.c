/*
 * http_conn.c - one client connection of the HTTP server: reading and
 * framing its requests, handing them to the handler one at a time,
 * writing the responses, noticing the client leave, closing. Loop thread
 * only.
 *
 * Why our own and not evhttp: at the webhook rate evhttp cost the gateway
 * about 30 us of CPU per request (four epoll_ctl calls, an ioctl, header
 * lists of malloc'd strings, printf per response header) where nginx on
 * the same machine spends 11. Here a socket is watched for reading once,
 * for its whole life; a response is written at once, from the reply call,
 * and the socket is watched for writing only when the kernel did not take
 * it all. Bytes are read into one buffer per connection and a request's
 * head is parsed in one copy.
 *
 * Reading never stops while a request is with the handler (up to the
 * buffer's limit), so a client that closes, resets or half-closes its
 * connection is noticed at once: the request goes gone (http.c).
 * Pipelined requests wait in the buffer and are answered in order; the
 * next is taken only once the last answer is with the kernel (a client
 * that does not read must not make us hold its answers), and the output
 * draining takes it (conn_flush).
 *
 * A refused request (a head over max_headers, a body over max_body, a
 * malformed head or chunked body, an unknown method or version) is
 * answered with the JSON error and Connection: close; its body is never
 * read. Every close after a response is a lingering one: we shut our
 * side, then read and discard until the client closes (at most
 * LINGER_MS), so unread bytes cannot turn the close into a reset that
 * destroys the response before the client has read it.
 */
#include "http_impl.h"

#include <ashoon/log.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define IN_START  4096 /* input buffer when idle; grows to the limits */
#define LINGER_MS 2000 /* discarding a closed connection's input */
#define IO_AGAIN  (-1)
#define IO_ERROR  (-2)

struct ash__http_conn {
	ash__http_conn  *prev, *next; /* server's list */
	ash_http_server *srv;
	evutil_socket_t  fd;
	SSL             *ssl; /* NULL for plain HTTP */
	struct event    *rev; /* added for the connection's whole life */
	struct event    *wev; /* added only while output waits */
	char             peer[64];
	char            *in;            /* read; [off, len) not yet used */
	size_t           off, len, cap; /* into in */
	size_t           scan;          /* head search resumes here */
	struct evbuffer *out;           /* what the kernel did not take yet */
	ash_http_req    *req;           /* being read, or with the handler */
	bool             dispatched;    /* req is with the handler */
	bool             continued;     /* 100 Continue sent for req */
	ash__http_chunks ch;
	int64_t          active;     /* ms of the last progress */
	int64_t          head_from;  /* ms the awaited head began; 0: none */
	unsigned         busy;       /* inside our own callbacks */
	bool             in_process; /* conn_process is running */
	bool             dead;       /* free once no longer busy */
	bool             closing;    /* shut once the output is written */
	bool             lingering;  /* shut: discarding input */
	bool             eof;        /* the client closed its side */
	bool             paused;     /* input full: rev not added */
	bool             held;       /* holding the loop for output */
	bool             read_wants_write, write_wants_read; /* TLS */
};

static void conn_process(ash__http_conn *c);

/* --- lifetime ----------------------------------------------------------- */

static void
conn_free(ash__http_conn *c)
{
	ash_http_server *srv = c->srv;
	ash_http_req    *req = c->req;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->req = NULL;
	if (req != NULL && c->dispatched) {
		req->conn = NULL;
		ash__http_req_gone(req); /* may free req */
	} else if (req != NULL) {
		ash__http_req_free(req);
	}
	event_free(c->rev);
	event_free(c->wev);
	if (c->held)
		ash_loop_rele(srv->loop);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	evutil_closesocket(c->fd);
	evbuffer_free(c->out);
	free(c->in);
	free(c);
}

/* Closes now, or as soon as our own callbacks have returned. */
static void
conn_close(ash__http_conn *c)
{
	if (c->busy > 0)
		c->dead = true;
	else
		conn_free(c);
}

static void
conn_unbusy(ash__http_conn *c)
{
	if (--c->busy == 0 && c->dead)
		conn_free(c);
}

/* --- I/O: plain or TLS -------------------------------------------------- */

static ssize_t
tls_result(ash__http_conn *c, int n, bool reading)
{
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_READ:
		if (!reading)
			c->write_wants_read = true;
		return IO_AGAIN;
	case SSL_ERROR_WANT_WRITE:
		if (reading) {
			c->read_wants_write = true;
			event_add(c->wev, NULL);
		}
		return IO_AGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return reading ? 0 : IO_ERROR;
	default:
		ERR_clear_error();
		return reading && n == 0 ? 0 : IO_ERROR;
	}
}

/* A failed recv or send: IO_AGAIN if the socket is only not ready. */
static ssize_t
io_failed(void)
{
	return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : IO_ERROR;
}

static ssize_t
io_read(ash__http_conn *c, char *buf, size_t cap)
{
	ssize_t n;

	if (c->ssl != NULL) {
		int r = SSL_read(
		    c->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int) cap);
		return r > 0 ? r : tls_result(c, r, true);
	}
	do
		n = recv(c->fd, buf, cap, 0);
	while (n < 0 && errno == EINTR);
	return n >= 0 ? n : io_failed();
}

/* Plain sockets only: bytes the kernel took, or IO_AGAIN / IO_ERROR. */
static ssize_t
io_sendv(ash__http_conn *c, struct iovec *iov, int cnt)
{
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t) cnt};
	ssize_t       n;

	do
		n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n >= 0 ? n : io_failed();
}

/* Writes from c->out; the bytes written, or IO_AGAIN / IO_ERROR. A TLS
 * retry passes the same bytes again, never fewer (OpenSSL's rule). */
static ssize_t
io_flush_some(ash__http_conn *c)
{
	struct iovec v[16];
	int          cnt;
	ssize_t      n;

	if (c->ssl != NULL) {
		size_t len  = evbuffer_get_length(c->out);
		int    want = len > 16384 ? 16384 : (int) len;
		void  *p    = evbuffer_pullup(c->out, want);
		int    r    = SSL_write(c->ssl, p, want);
		n           = r > 0 ? r : tls_result(c, r, false);
	} else {
		struct evbuffer_iovec ev[16];
		cnt = evbuffer_peek(c->out, -1, NULL, ev, 16);
		cnt = cnt > 16 ? 16 : cnt;
		for (int i = 0; i < cnt; i++) {
			v[i].iov_base = ev[i].iov_base;
			v[i].iov_len  = ev[i].iov_len;
		}
		n = io_sendv(c, v, cnt);
	}
	if (n > 0)
		evbuffer_drain(c->out, (size_t) n);
	return n;
}

/* --- writing ------------------------------------------------------------ */

static void
conn_want_write(ash__http_conn *c)
{
	event_add(c->wev, NULL);
	if (!c->held) {
		c->held = true; /* a drain waits for this output */
		ash_loop_hold(c->srv->loop);
	}
}

/* Reading again after a full buffer stopped it. */
static void
conn_resume(ash__http_conn *c)
{
	if (!c->paused)
		return;
	c->paused = false;
	event_add(c->rev, NULL);
	/* TLS records already decrypted: no readiness will say so. */
	if (c->ssl != NULL && SSL_has_pending(c->ssl))
		event_active(c->rev, EV_READ, 1);
}

static void
conn_shut(ash__http_conn *c)
{
	if (c->eof) {
		conn_close(c);
		return;
	}
	if (c->ssl != NULL) {
		/* Our close_notify; theirs is not waited for. */
		SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	shutdown(c->fd, SHUT_WR);
	c->lingering = true;
	c->active    = ash_now_ms();
	c->off = c->len = 0;
	conn_resume(c);
}

/* Writes what waits in c->out. Output done: stop watching, maybe shut. */
static void
conn_flush(ash__http_conn *c)
{
	ssize_t n;

	while (evbuffer_get_length(c->out) > 0) {
		if ((n = io_flush_some(c)) == IO_ERROR) {
			conn_close(c);
			return;
		}
		if (n == IO_AGAIN) {
			if (c->write_wants_read) /* writable is not enough */
				event_del(c->wev);
			return;
		}
		c->active = ash_now_ms();
	}
	event_del(c->wev);
	if (c->held) {
		c->held = false;
		ash_loop_rele(c->srv->loop);
	}
	if (c->head_from != 0) /* a head that waited for us starts now */
		c->head_from = ash_now_ms();
	if (c->closing && !c->lingering)
		conn_shut(c);
	else if (!c->dispatched && (c->len > c->off || c->eof) &&
	    !c->in_process)
		event_active(c->rev, EV_READ, 1); /* requests waited for it */
}

/* Sends iov[0..cnt) after whatever is still waiting. */
static void
conn_send(ash__http_conn *c, struct iovec *iov, int cnt)
{
	size_t  total = 0, skip;
	ssize_t n     = 0;

	for (int i = 0; i < cnt; i++)
		total += iov[i].iov_len;
	if (c->ssl == NULL && evbuffer_get_length(c->out) == 0) {
		if ((n = io_sendv(c, iov, cnt)) == IO_ERROR) {
			conn_close(c);
			return;
		}
		if (n == IO_AGAIN)
			n = 0;
		c->active = ash_now_ms();
		if ((size_t) n == total)
			return;
	}
	skip = (size_t) n;
	for (int i = 0; i < cnt; i++) {
		size_t len = iov[i].iov_len, from = skip < len ? skip : len;
		evbuffer_add(
		    c->out, (char *) iov[i].iov_base + from, len - from);
		skip -= from;
	}
	conn_want_write(c);
	if (c->ssl != NULL)
		conn_flush(c);
}

static const char *
reason(int status)
{
	static const struct {
		int         status;
		const char *text;
	} reasons[] = {{100, "Continue"}, {200, "OK"}, {201, "Created"},
	    {202, "Accepted"}, {204, "No Content"}, {301, "Moved Permanently"},
	    {302, "Found"}, {303, "See Other"}, {304, "Not Modified"},
	    {307, "Temporary Redirect"}, {400, "Bad Request"},
	    {401, "Unauthorized"}, {403, "Forbidden"}, {404, "Not Found"},
	    {405, "Method Not Allowed"}, {408, "Request Timeout"},
	    {409, "Conflict"}, {410, "Gone"}, {412, "Precondition Failed"},
	    {413, "Payload Too Large"}, {415, "Unsupported Media Type"},
	    {422, "Unprocessable Entity"}, {429, "Too Many Requests"},
	    {431, "Request Header Fields Too Large"},
	    {500, "Internal Server Error"}, {501, "Not Implemented"},
	    {502, "Bad Gateway"}, {503, "Service Unavailable"},
	    {504, "Gateway Timeout"}, {505, "HTTP Version Not Supported"}};

	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].status == status)
			return reasons[i].text;
	return status < 400 ? "OK"
	    : status < 500  ? "Client Error"
	                    : "Server Error";
}

/* "Sun, 06 Nov 1994 08:49:37 GMT", formatted once a second per thread. */
static const char *
http_date(void)
{
	static _Thread_local char   text[40];
	static _Thread_local time_t at  = -1;
	time_t                      now = time(NULL);
	struct tm                   tm;

	if (now != at) {
		gmtime_r(&now, &tm);
		strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		at = now;
	}
	return text;
}

static char *
put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

#define PUT_LIT(p, s) put((p), (s), sizeof(s) - 1)

static char *
put_str(char *p, const char *s)
{
	return put(p, s, strlen(s));
}

static char *
put_uint(char *p, size_t v)
{
	char   tmp[24];
	size_t i = sizeof(tmp);

	do
		tmp[--i] = (char) ('0' + v % 10);
	while ((v /= 10) != 0);
	return put(p, tmp + i, sizeof(tmp) - i);
}

typedef struct response {
	int         status;
	const char *ctype;
	const char *body;
	size_t      len;
	const char *extra; /* header lines, each ending in CR LF */
	size_t      extra_len;
	bool        close;
	bool        keep_alive_10; /* say keep-alive to an HTTP/1.0 client */
	bool        head;          /* HEAD: no body, its length stays */
} response;

/* Status line, headers and body, written with one call. */
static void
conn_respond(ash__http_conn *c, const response *r)
{
	bool   nobody = r->status == 204 || r->status == 304;
	size_t cap    = 192 + r->extra_len + (r->ctype ? strlen(r->ctype) : 0);
	char stack[1024], *h = cap <= sizeof(stack) ? stack : ash_xmalloc(cap);
	char        *p = h;
	struct iovec iov[2];

	p    = PUT_LIT(p, "HTTP/1.1 ");
	p    = put_uint(p, (size_t) r->status);
	*p++ = ' ';
	p    = put_str(p, reason(r->status));
	p    = PUT_LIT(p, "\r\n");
	if (r->extra_len > 0)
		p = put(p, r->extra, r->extra_len);
	if (!nobody && r->ctype != NULL) {
		p = PUT_LIT(p, "Content-Type: ");
		p = put_str(p, r->ctype);
		p = PUT_LIT(p, "\r\n");
	}
	if (!nobody) {
		p = PUT_LIT(p, "Content-Length: ");
		p = put_uint(p, r->len);
		p = PUT_LIT(p, "\r\n");
	}
	p = PUT_LIT(p, "Date: ");
	p = put(p, http_date(), 29);
	p = PUT_LIT(p, "\r\n");
	if (r->close)
		p = PUT_LIT(p, "Connection: close\r\n");
	else if (r->keep_alive_10)
		p = PUT_LIT(p, "Connection: keep-alive\r\n");
	p               = PUT_LIT(p, "\r\n");
	iov[0].iov_base = h;
	iov[0].iov_len  = (size_t) (p - h);
	iov[1].iov_base = (void *) r->body;
	iov[1].iov_len  = r->len;
	conn_send(c, iov, nobody || r->head || r->len == 0 ? 1 : 2);
	if (h != stack)
		free(h);
}

/* The response just written is the connection's last: unread input is
 * dropped, and the socket shut once the output is out. */
static void
conn_last_response(ash__http_conn *c)
{
	c->closing = true;
	c->off     = c->len;
	if (!c->dead && evbuffer_get_length(c->out) == 0)
		conn_shut(c);
}

static const char *
refusal_code(int status)
{
	switch (status) {
	case 413:
		return "payload_too_large";
	case 431:
		return "headers_too_large";
	case 501:
		return "not_implemented";
	case 505:
		return "http_version_not_supported";
	default:
		return ash_err_code(ASH_EINVAL);
	}
}

/* The rest of the connection is not read: answer the JSON error, close. */
static void
conn_refuse(ash__http_conn *c, int status, const char *why)
{
	const ash_http_server *srv  = c->srv;
	const char            *code = refusal_code(status);
	char                   msg[128], *body;
	response               r = {
	                  .status = status, .ctype = "application/json", .close = true};

	if (status == 413)
		snprintf(msg, sizeof(msg), "request body exceeds %zu bytes",
		    srv->max_body);
	else if (status == 431)
		snprintf(msg, sizeof(msg), "request headers exceed %zu bytes",
		    srv->max_headers);
	else
		snprintf(msg, sizeof(msg), "%s", why);
	if (c->req != NULL) {
		ash__http_req_free(c->req);
		c->req = NULL;
	}
	body   = ash__http_error_body(code, msg, NULL);
	r.body = body;
	r.len  = strlen(body);
	c->busy++;
	conn_respond(c, &r);
	cJSON_free(body);
	conn_last_response(c);
	conn_unbusy(c);
}

/* Loop thread, from ash_http_reply (not gone). */
void
ash__http_conn_reply(ash_http_req *req, int status, const char *content_type,
    const char *body, size_t len)
{
	ash__http_conn *c = req->conn;
	response        r = {
	           .status        = status,
	           .ctype         = content_type,
	           .body          = body,
	           .len           = len,
	           .extra         = req->out,
	           .extra_len     = req->out_len,
	           .close         = req->out_close || !req->head.keep_alive,
	           .keep_alive_10 = req->head.minor == 0,
	           .head          = req->head.method[0] == 'H',
        };

	ASH_ASSERT(status >= 200 && status <= 599 && c->req == req);
	req->conn     = NULL;
	c->req        = NULL;
	c->dispatched = false;
	c->busy++;
	conn_respond(c, &r);
	if (r.close) {
		conn_last_response(c);
	} else if (!c->dead && !c->in_process) {
		conn_resume(c);
		/* Pipelined: no readiness will say so. If the answer waits for
		 * the kernel, its draining goes on instead (conn_flush). */
		if (c->len > c->off && evbuffer_get_length(c->out) == 0)
			event_active(c->rev, EV_READ, 1);
	}
	conn_unbusy(c);
}

/* --- reading ------------------------------------------------------------ */

/* Room to read into: compacts, then grows up to the limits. */
static bool
conn_room(ash__http_conn *c)
{
	size_t max = c->srv->max_headers + c->srv->max_body + 4096;

	if (c->off > 0) {
		memmove(c->in, c->in + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
		if (c->len < c->cap)
			return true;
	}
	if (c->cap >= max)
		return false;
	c->cap = c->cap * 2 < max ? c->cap * 2 : max;
	c->in  = ash_xrealloc(c->in, c->cap);
	return true;
}

/* Reads what the socket has. Sets c->eof; closes on an error. */
static void
conn_fill(ash__http_conn *c)
{
	ssize_t n;
	size_t  room;

	for (;;) {
		if (c->lingering)
			c->off = c->len = 0;
		if (c->len == c->cap && !conn_room(c)) {
			c->paused = true; /* resumed once there is room */
			event_del(c->rev);
			return;
		}
		room = c->cap - c->len;
		n    = io_read(c, c->in + c->len, room);
		if (n == IO_ERROR) {
			conn_close(c);
			return;
		}
		if (n == IO_AGAIN)
			return;
		if (n == 0) {
			c->eof = true;
			return;
		}
		c->len += (size_t) n;
		c->active = ash_now_ms();
		/* A head has timeout_ms to arrive whole, however it trickles
		 * (empty lines before it included): a byte at a time must not
		 * hold a connection for ever. */
		if (c->req == NULL && c->head_from == 0)
			c->head_from = c->active;
		if ((size_t) n < room && c->ssl == NULL)
			return; /* drained (TLS may hold decrypted bytes) */
	}
}

static void
conn_on_eof(ash__http_conn *c)
{
	if (c->req != NULL && c->dispatched) {
		ash_log_debug(NULL, "HTTP-GONE",
		    "client %s left before the reply", c->peer);
		conn_close(c); /* the request goes gone */
	} else if (c->lingering || evbuffer_get_length(c->out) == 0) {
		conn_close(c);
	} else if (c->len > c->off) {
		/* Requests wait behind an answer (conn_process): they are
		 * still owed theirs. The output draining goes on with them. */
		event_del(c->rev);
	} else {
		c->closing = true; /* finish writing, then close */
		event_del(c->rev);
	}
}

static void
conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	ash__http_conn *c = arg;

	(void) fd;
	(void) what;
	c->busy++;
	if (c->write_wants_read) {
		c->write_wants_read = false;
		event_add(c->wev, NULL); /* dropped while it waited for this */
		conn_flush(c);
	}
	if (!c->dead)
		conn_fill(c);
	if (!c->dead && !c->lingering)
		conn_process(c);
	if (!c->dead && c->eof)
		conn_on_eof(c);
	conn_unbusy(c);
}

static void
conn_on_write(evutil_socket_t fd, short what, void *arg)
{
	ash__http_conn *c = arg;

	(void) fd;
	(void) what;
	c->busy++;
	if (c->read_wants_write) {
		c->read_wants_write = false;
		event_active(c->rev, EV_READ, 1);
	}
	conn_flush(c); /* with nothing to write: stops watching */
	conn_unbusy(c);
}

/* --- framing ------------------------------------------------------------ */

static void
conn_continue(ash__http_conn *c)
{
	static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
	struct iovec      iov   = {(void *) msg, sizeof(msg) - 1};

	if (c->req->head.expect_continue && !c->continued) {
		c->continued = true;
		conn_send(c, &iov, 1);
	}
}

/* A whole head: c->req holds it. False to wait (or refused). */
static bool
conn_read_head(ash__http_conn *c)
{
	ash_http_server *srv = c->srv;
	size_t           hl;
	int              status;
	const char      *why;

	/* Empty lines before a request line are ignored (RFC 9112 2.2). */
	while (c->off < c->len &&
	    (c->in[c->off] == '\r' || c->in[c->off] == '\n'))
		c->off++;
	hl = ash__http_head_len(c->in + c->off, c->len - c->off, &c->scan);
	if (hl == 0) {
		if (c->len - c->off > srv->max_headers)
			conn_refuse(c, 431, NULL);
		return false;
	}
	if (hl > srv->max_headers) {
		conn_refuse(c, 431, NULL);
		return false;
	}
	c->req = ash__http_req_new(c->peer, c->in + c->off, hl, &status, &why);
	c->off += hl;
	c->head_from = 0;
	c->scan      = 0;
	if (c->req == NULL) {
		conn_refuse(c, status, why);
		return false;
	}
	c->continued = false;
	memset(&c->ch, 0, sizeof(c->ch));
	if (c->req->head.has_length && c->req->head.length > srv->max_body) {
		conn_refuse(c, 413, NULL);
		return false;
	}
	return true;
}

/* The whole body is in c->req. False to wait (or refused). */
static bool
conn_read_body(ash__http_conn *c)
{
	ash_http_req *req   = c->req;
	size_t        avail = c->len - c->off, n;
	int           status;
	const char   *why;

	if (req->head.chunked) {
		c->off += ash__http_chunks_run(&c->ch, c->in + c->off, avail,
		    &req->bodybuf, c->srv->max_body, &status, &why);
		if (status != 0) {
			conn_refuse(c, status, why);
			return false;
		}
		if (c->ch.state != ASH__CH_DONE) {
			conn_continue(c);
			return false;
		}
	} else if ((n = (size_t) req->head.length) > 0) {
		if (avail < n) {
			conn_continue(c);
			return false;
		}
		req->bodybuf.data = ash_xmalloc(n);
		memcpy(req->bodybuf.data, c->in + c->off, n);
		req->bodybuf.len = n;
		c->off += n;
	}
	return true;
}

/* Hands complete requests to the handler, one at a time. */
static void
conn_process(ash__http_conn *c)
{
	ash_http_server *srv = c->srv;

	c->in_process = true;
	/* The next request waits while an answer waits for the kernel: a
	 * client that pipelines and never reads must not make us hold every
	 * answer in memory. Its input then fills and reading pauses; the
	 * output draining starts us again (conn_flush). */
	while (!c->dead && !c->closing && !c->dispatched &&
	    evbuffer_get_length(c->out) == 0) {
		if (c->req == NULL && !conn_read_head(c))
			break;
		if (!conn_read_body(c))
			break;
		c->dispatched = true;
		c->req->conn  = c;
		srv->handler(c->req, srv->arg); /* may reply at once */
	}
	c->in_process = false;
	if (c->dead)
		return;
	/* Requests answered here made room (a held one resumes at its
	 * reply): the kernel may have more waiting. */
	if (c->off > 0 && !c->dispatched)
		conn_resume(c);
	if (c->off != c->len)
		return;
	c->off = c->len = 0;
	if (c->cap > IN_START && c->req == NULL) { /* idle: give back */
		free(c->in);
		c->in  = ash_xmalloc(IN_START);
		c->cap = IN_START;
	}
}

/* --- the server's side -------------------------------------------------- */

/* The client's address as text ("" if neither IPv4 nor IPv6). */
static void
peer_text(const struct sockaddr *sa, char *out, size_t cap)
{
	char        ip[INET6_ADDRSTRLEN] = "";
	const char *p                    = ip;

	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET,
		    &((const struct sockaddr_in *) sa)->sin_addr, ip,
		    sizeof(ip));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
		    &((const struct sockaddr_in6 *) sa)->sin6_addr, ip,
		    sizeof(ip));
	/* A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d. */
	if (strncmp(ip, "::ffff:", 7) == 0 && strchr(ip + 7, '.') != NULL)
		p += 7;
	snprintf(out, cap, "%s", p);
}

/* evconnlistener's callback (http.c): a new client. */
void
ash__http_conn_accept(
    ash_http_server *srv, evutil_socket_t fd, const struct sockaddr *sa)
{
	struct event_base *base = ash_loop_base(srv->loop);
	ash__http_conn    *c    = ash_xcalloc(1, sizeof(*c));
	int                one  = 1;

	c->srv = srv;
	c->fd  = fd;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	peer_text(sa, c->peer, sizeof(c->peer));
	c->cap = IN_START;
	c->in  = ash_xmalloc(c->cap);
	c->out = evbuffer_new();
	c->rev = event_new(base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
	c->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
	ASH_ASSERT(c->out != NULL && c->rev != NULL && c->wev != NULL);
	if (srv->ssl_ctx != NULL) {
		c->ssl = SSL_new(srv->ssl_ctx);
		ASH_ASSERT(c->ssl != NULL && SSL_set_fd(c->ssl, fd) == 1);
		SSL_set_accept_state(c->ssl);
		SSL_set_mode(c->ssl,
		    SSL_MODE_ENABLE_PARTIAL_WRITE |
		        SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	}
	c->active = ash_now_ms();
	c->next   = srv->conns;
	if (c->next != NULL)
		c->next->prev = c;
	srv->conns = c;
	event_add(c->rev, NULL);
}

/* Not from inside the handler. */
void
ash__http_conns_close(ash_http_server *srv)
{
	while (srv->conns != NULL)
		conn_free(srv->conns);
}

/* Once a second: cuts connections idle or stalled for timeout_ms, or
 * whose request head has taken longer than that (never one whose request
 * is with the handler, nor a head waiting behind our unwritten answer),
 * and ends lingering closes. */
void
ash__http_conns_sweep(evutil_socket_t fd, short what, void *arg)
{
	ash_http_server *srv = arg;
	int64_t          now = ash_now_ms();
	ash__http_conn  *c, *next;

	(void) fd;
	(void) what;
	for (c = srv->conns; c != NULL; c = next) {
		int64_t limit = c->lingering ? LINGER_MS : srv->timeout_ms;

		next = c->next;
		if (c->dispatched || c->busy > 0)
			continue;
		if (now - c->active > limit ||
		    (c->req == NULL && c->head_from != 0 && !c->lingering &&
		        evbuffer_get_length(c->out) == 0 &&
		        now - c->head_from > limit))
			conn_free(c);
	}
}
