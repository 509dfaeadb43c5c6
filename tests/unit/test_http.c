/* Unit tests: http (the HTTP/1.1 server). Clients: the real httpc on the same
 * loop, raw sockets (on the loop thread or in a helper thread) for clients
 * that misbehave, and blocking libcurl in a helper thread for TLS. */
#include <ash_test.h>
#include <ash_test_loop.h>
#include <ashoon/http.h>
#include <ashoon/httpc.h>
#include <ashoon/loop.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void
after_ms(int ms, event_callback_fn fn, void *arg)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_once(ash_loop_base(loop), -1, EV_TIMEOUT, fn, arg, &tv);
}

/* ---- what the handlers saw ---------------------------------------- */

typedef struct seen {
	int           calls;
	int           gone;    /* on_gone calls */
	int           replied; /* late replies attempted */
	bool          was_gone;
	char          method[16];
	char          path[128];
	char          peer[64];
	char          qa[64], qb[64], qnone[8];
	char          hdr[64];
	char          body[2048];
	size_t        body_len;
	void         *data;
	ash_http_req *held;
} seen;

static seen S;

static void
copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "(null)");
}

static void
note(ash_http_req *req)
{
	const char *data;
	size_t      len;

	S.calls++;
	copy(S.method, sizeof(S.method), ash_http_req_method(req));
	copy(S.path, sizeof(S.path), ash_http_req_path(req));
	copy(S.peer, sizeof(S.peer), ash_http_req_peer(req));
	copy(S.qa, sizeof(S.qa), ash_http_req_query(req, "a"));
	copy(S.qb, sizeof(S.qb), ash_http_req_query(req, "b"));
	copy(S.qnone, sizeof(S.qnone), ash_http_req_query(req, "zz"));
	copy(S.hdr, sizeof(S.hdr), ash_http_req_header(req, "x-test"));
	ash_http_req_body(req, &data, &len);
	S.body_len = len;
	memcpy(S.body, data, len < sizeof(S.body) ? len : sizeof(S.body) - 1);
}

/* Answers 201 "echo:<body>" (the body cut at 200 bytes). */
static void
h_echo(ash_http_req *req, void *arg)
{
	char        out[256];
	const char *data;
	size_t      len;

	note(req);
	ash_http_req_set_data(req, &S);
	S.data = ash_http_req_data(req);
	ash_http_req_body(req, &data, &len);
	if (len > 200)
		len = 200;
	memcpy(out, "echo:", 5);
	memcpy(out + 5, data, len);
	ash_http_req_set_header(req, "X-Reply", "yes");
	ash_http_req_set_header(req, "X-Bad", "a\r\nInjected: 1");
	ash_http_reply(req, 201, "text/plain", out, len + 5);
}

static ash_http_server *
serve(ash_http_opts *o, ash_http_handler h, char *base, size_t cap)
{
	ash_http_server *srv = NULL;

	if (o->addr == NULL)
		o->addr = "127.0.0.1:0";
	ASH_T_OK(ash_http_server_open(loop, o, h, NULL, &srv));
	snprintf(base, cap, "http://127.0.0.1:%d", ash_http_server_port(srv));
	return srv;
}

/* ---- httpc as the client ------------------------------------------ */

typedef struct fetch {
	bool    done;
	ash_err rv;
	long    status;
	char    body[512];
	size_t  len;
	char    ctype[64];
	char    reply_hdr[16];
	bool    bad_hdr_absent;
} fetch;

static void
on_fetched(void *arg, ash_err rv, const ash_httpc_response *resp)
{
	fetch      *f = arg;
	const char *v;

	f->done = true;
	f->rv   = rv;
	if (resp == NULL)
		return;
	f->status = resp->status;
	f->len    = resp->body_len;
	copy(f->body, sizeof(f->body), resp->body);
	v = ash_httpc_response_header(resp, "Content-Type");
	copy(f->ctype, sizeof(f->ctype), v);
	copy(f->reply_hdr, sizeof(f->reply_hdr),
	    ash_httpc_response_header(resp, "X-Reply"));
	f->bad_hdr_absent = ash_httpc_response_header(resp, "X-Bad") == NULL &&
	    ash_httpc_response_header(resp, "Injected") == NULL;
}

static fetch      F[8];
static int        nf;
static ash_httpc *client;

static void
fetch_start(fetch *f, const char *method, const char *url,
    const char *const *hdrs, const char *body, size_t len)
{
	ash_httpc_request r = {.method = method,
	    .url                       = url,
	    .headers                   = hdrs,
	    .body                      = body,
	    .body_len                  = len,
	    .timeout_ms                = 5000};

	memset(f, 0, sizeof(*f));
	ASH_T_OK(ash_httpc_send(client, &r, on_fetched, f, NULL));
}

static bool
fetches_done(void)
{
	for (int i = 0; i < nf; i++)
		if (!F[i].done)
			return false;
	return true;
}

static void
setup(void)
{
	memset(&S, 0, sizeof(S));
	memset(F, 0, sizeof(F));
	nf = 0;
	ASH_T_OK(ash_loop_new(&loop));
	ASH_T_OK(ash_httpc_new(loop, NULL, &client));
}

static void
teardown(ash_http_server *srv)
{
	ash_httpc_free(client);
	ash_http_server_close(srv);
	ash_loop_free(loop);
}

/* ---- blocking clients in a helper thread --------------------------- */

static pthread_t   bg;
static atomic_bool bg_done;
static int         port;

static bool
bg_finished(void)
{
	return bg_done;
}

/* bg_run in two halves, for a test that acts while the client runs. */
static void
bg_start(void *(*fn)(void *), void *arg)
{
	bg_done = false;
	ASH_T_EQ_INT(pthread_create(&bg, NULL, fn, arg), 0);
}

static void
bg_wait(void)
{
	run_until(bg_finished);
	pthread_join(bg, NULL);
}

static void
bg_run(void *(*fn)(void *), void *arg)
{
	bg_start(fn, arg);
	bg_wait();
}

/* A blocking client socket, 5 s timeouts; rcvbuf > 0: its receive buffer
 * (small: the server soon finds it cannot write). */
static int
raw_connect_rcvbuf(int p, int rcvbuf)
{
	struct sockaddr_in a = {
	    .sin_family = AF_INET, .sin_port = htons((uint16_t) p)};
	struct timeval tv = {5, 0};
	int            fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *) &a, sizeof(a)) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int
raw_connect(int p)
{
	return raw_connect_rcvbuf(p, 0);
}

static void
raw_send(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		s += w;
		n -= (size_t) w;
	}
}

static void
raw_puts(int fd, const char *s)
{
	raw_send(fd, s, strlen(s));
}

/* Everything until the server closes (or 5 s pass). */
static size_t
raw_read_all(int fd, char *buf, size_t cap)
{
	size_t  n = 0;
	ssize_t r;

	while (n + 1 < cap && (r = recv(fd, buf + n, cap - 1 - n, 0)) > 0)
		n += (size_t) r;
	buf[n] = '\0';
	return n;
}

/* One response framed by Content-Length (no body if head_only). */
static void
raw_read_response(int fd, char *buf, size_t cap, bool head_only)
{
	size_t      n = 0;
	const char *cl;
	long        left;

	while (n + 1 < cap && recv(fd, buf + n, 1, 0) == 1) {
		buf[++n] = '\0';
		if (n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0)
			break;
	}
	buf[n] = '\0';
	cl     = strcasestr(buf, "Content-Length:");
	left   = cl && !head_only ? atol(cl + 15) : 0;
	while (left > 0 && n + 1 < cap) {
		ssize_t r = recv(fd, buf + n, 1, 0);
		if (r <= 0)
			break;
		n += (size_t) r;
		left -= r;
	}
	buf[n] = '\0';
}

/* setup(), then a server of h on the port the raw clients use. */
static ash_http_server *
serve_raw(ash_http_opts *o, ash_http_handler h)
{
	ash_http_server *srv;
	char             base[64];

	setup();
	srv  = serve(o, h, base, sizeof(base));
	port = ash_http_server_port(srv);
	return srv;
}

static ash_http_server *
serve_echo(ash_http_opts *o)
{
	return serve_raw(o, h_echo);
}

static char R1[900], R2[900]; /* small: the harness prints them */
static int  R_err;

/* ---- tests --------------------------------------------------------- */

ASH_TEST(round_trip_with_headers_query_and_body)
{
	ash_http_opts     o = {0};
	ash_http_server  *srv;
	char              base[64], url[2][256];
	const char *const hdrs[] = {"X-Test: hello", NULL};

	setup();
	srv = serve(&o, h_echo, base, sizeof(base));
	snprintf(url[0], sizeof(url[0]),
	    "%s/items/%%7Bid%%7D/a%%20b?a=1%%202&b=x%%26y+z", base);
	fetch_start(&F[0], "POST", url[0], hdrs, "pay\0load", 8);
	nf = 1;
	run_until(fetches_done);
	ASH_T_OK(F[0].rv);
	ASH_T_EQ_INT(F[0].status, 201);
	ASH_T_EQ_INT(F[0].len, 13);
	ASH_T_EQ_STR(F[0].body, "echo:pay"); /* a C string up to the NUL */
	ASH_T_EQ_STR(F[0].reply_hdr, "yes");
	ASH_T_TRUE(F[0].bad_hdr_absent); /* CR/LF in a value is refused */
	ASH_T_EQ_STR(F[0].ctype, "text/plain");
	ASH_T_EQ_STR(S.method, "POST");
	ASH_T_EQ_STR(S.path, "/items/{id}/a b");
	ASH_T_EQ_STR(S.qa, "1 2");
	ASH_T_EQ_STR(S.qb, "x&y z");
	ASH_T_EQ_STR(S.qnone, "(null)");
	ASH_T_EQ_STR(S.hdr, "hello");
	ASH_T_EQ_STR(S.peer, "127.0.0.1");
	ASH_T_EQ_INT(S.body_len, 8);
	ASH_T_EQ_MEM(S.body, "pay\0load", 8);
	ASH_T_TRUE(S.data == &S);

	snprintf(url[1], sizeof(url[1]), "%s/plain", base);
	fetch_start(&F[0], "GET", url[1], NULL, NULL, 0);
	run_until(fetches_done);
	ASH_T_OK(F[0].rv);
	ASH_T_EQ_STR(F[0].body, "echo:");
	ASH_T_EQ_STR(S.method, "GET");
	ASH_T_EQ_STR(S.path, "/plain");
	ASH_T_EQ_STR(S.qa, "(null)");
	ASH_T_EQ_INT(S.body_len, 0);
	teardown(srv);
}

static void
h_errors(ash_http_req *req, void *arg)
{
	const char *p = ash_http_req_path(req);
	cJSON      *doc;

	if (strcmp(p, "/with-id") == 0) {
		ash_http_reply_error(
		    req, 404, "not_found", "no such \"thing\"", "r-123");
	} else if (strcmp(p, "/without-id") == 0) {
		ash_http_reply_error(req, 409, "conflict", "taken", NULL);
	} else {
		doc = cJSON_CreateObject();
		cJSON_AddNumberToObject(doc, "n", 7);
		ash_http_reply_json(req, 200, doc);
		cJSON_Delete(doc);
	}
}

ASH_TEST(json_error_body_exact_text)
{
	ash_http_opts    o = {0};
	ash_http_server *srv;
	char             base[64], url[3][128];

	setup();
	srv = serve(&o, h_errors, base, sizeof(base));
	snprintf(url[0], sizeof(url[0]), "%s/with-id", base);
	snprintf(url[1], sizeof(url[1]), "%s/without-id", base);
	snprintf(url[2], sizeof(url[2]), "%s/json", base);
	for (int i = 0; i < 3; i++)
		fetch_start(&F[i], "GET", url[i], NULL, NULL, 0);
	nf = 3;
	run_until(fetches_done);
	ASH_T_EQ_INT(F[0].status, 404);
	ASH_T_EQ_STR(F[0].body,
	    "{\"error\":{\"code\":\"not_found\",\"message\":"
	    "\"no such \\\"thing\\\"\",\"request_id\":\"r-123\"}}");
	ASH_T_EQ_STR(F[0].ctype, "application/json");
	ASH_T_EQ_INT(F[0].len, strlen(F[0].body));
	ASH_T_EQ_INT(F[1].status, 409);
	ASH_T_EQ_STR(F[1].body,
	    "{\"error\":{\"code\":\"conflict\",\"message\":\"taken\"}}");
	ASH_T_EQ_INT(F[2].status, 200);
	ASH_T_EQ_STR(F[2].body, "{\"n\":7}");
	ASH_T_EQ_STR(F[2].ctype, "application/json");
	teardown(srv);
}

static void *
bg_oversize(void *arg)
{
	int fd = raw_connect(port);

	/* Declares 100000 bytes and sends none: the answer must come
	 * without the server waiting for (or reading) the body. */
	raw_puts(fd,
	    "POST /up HTTP/1.1\r\nHost: x\r\n"
	    "Expect: 100-continue\r\nContent-Length: 100000\r\n\r\n");
	raw_read_all(fd, R1, sizeof(R1));
	close(fd);
	bg_done = true;
	return NULL;
}

ASH_TEST(body_over_limit_gets_json_413_before_the_body)
{
	ash_http_opts    o = {.max_body = 1024};
	ash_http_server *srv;
	char             base[64], url[128];
	static char      big[5000], fits[1024];

	setup();
	srv  = serve(&o, h_echo, base, sizeof(base));
	port = ash_http_server_port(srv);
	bg_run(bg_oversize, NULL);
	ASH_T_CONTAINS(R1, "HTTP/1.1 413 ");
	ASH_T_CONTAINS(R1, "Connection: close");
	ASH_T_CONTAINS(R1, "Content-Type: application/json");
	ASH_T_NOT_CONTAINS(R1, "100 Continue");
	ASH_T_CONTAINS(R1,
	    "\r\n\r\n{\"error\":{\"code\":\"payload_too_large\","
	    "\"message\":\"request body exceeds 1024 bytes\"}}");
	ASH_T_EQ_INT(S.calls, 0);

	/* The same through curl, with the body actually sent. */
	memset(big, 'b', sizeof(big));
	memset(fits, 'f', sizeof(fits));
	snprintf(url, sizeof(url), "%s/up", base);
	fetch_start(&F[0], "POST", url, NULL, big, sizeof(big));
	nf = 1;
	run_until(fetches_done);
	ASH_T_OK(F[0].rv);
	ASH_T_EQ_INT(F[0].status, 413);
	ASH_T_CONTAINS(F[0].body, "payload_too_large");
	ASH_T_EQ_INT(S.calls, 0);
	fetch_start(&F[0], "PUT", url, NULL, fits, sizeof(fits));
	run_until(fetches_done);
	ASH_T_EQ_INT(F[0].status, 201); /* exactly max_body is fine */
	ASH_T_EQ_INT(S.body_len, 1024);
	teardown(srv);
}

static void *
bg_chunked(void *arg)
{
	int  fd = raw_connect(port);
	char chunk[2100];

	raw_puts(fd,
	    "POST /up HTTP/1.1\r\nHost: x\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n7d0\r\n");
	memset(chunk, 'c', 2000);
	memcpy(chunk + 2000, "\r\n0\r\n\r\n", 7);
	raw_send(fd, chunk, 2007);
	raw_read_all(fd, R1, sizeof(R1));
	close(fd);
	bg_done = true;
	return NULL;
}

/* A chunked body over max_body is stopped as it arrives: the JSON 413. */
ASH_TEST(chunked_body_over_limit_gets_json_413)
{
	ash_http_opts    o = {.max_body = 1024};
	ash_http_server *srv;

	srv = serve_echo(&o);
	bg_run(bg_chunked, NULL);
	ASH_T_CONTAINS(R1, "HTTP/1.1 413 ");
	ASH_T_CONTAINS(R1, "Connection: close");
	ASH_T_CONTAINS(R1,
	    "\r\n\r\n{\"error\":{\"code\":\"payload_too_large\","
	    "\"message\":\"request body exceeds 1024 bytes\"}}");
	ASH_T_EQ_INT(S.calls, 0);
	teardown(srv);
}

/* ---- framing: what is refused, what is read ------------------------ */

static const char *raw_request; /* for bg_one */
static size_t      raw_request_len;

/* Sends raw_request as it is, reads until the server closes. */
static void *
bg_one(void *arg)
{
	int fd = raw_connect(port);

	(void) arg;
	raw_send(fd, raw_request, raw_request_len);
	raw_read_all(fd, R1, sizeof(R1));
	close(fd);
	bg_done = true;
	return NULL;
}

static void
send_raw(const char *req, size_t len)
{
	raw_request     = req;
	raw_request_len = len;
	bg_run(bg_one, NULL);
}

/* Heads two parsers could read differently (request smuggling through a
 * proxy) and other malformed ones: refused with the JSON error and
 * Connection: close, before any handler runs. */
ASH_TEST(ambiguous_or_malformed_requests_are_refused)
{
	static const struct {
		const char *req, *status, *body;
	} cases[] = {
	    {"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
	     "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	        "400", "both Content-Length and Transfer-Encoding"},
	    {"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
	     "Content-Length: 4\r\n\r\nabcd",
	        "400", "bad Content-Length"},
	    {"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
	        "400", "bad Content-Length"},
	    {"GET /a HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n b\r\n\r\n", "400",
	        "obsolete line folding"},
	    {"GET /a HTTP/1.1\r\nHost : x\r\n\r\n", "400",
	        "malformed header field"},
	    {"GET /a HTTP/1.1\r\nHost: x\r\nX-Ctl: a\001b\r\n\r\n", "400",
	        "malformed header field"},
	    {"GET /a HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", "400",
	        "malformed header field"},
	    {"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	     "\r\nzz\r\n",
	        "400", "malformed chunked body"},
	    {"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	     "\r\n3\r\nabcX\r\n",
	        "400", "malformed chunked body"},
	    {"POST /a HTTP/1.1\r\nHost: x\r\n"
	     "Transfer-Encoding: gzip, chunked\r\n\r\n",
	        "501", "single \\\"chunked\\\" transfer coding"},
	    {"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "400",
	        "chunked transfer coding needs HTTP/1.1"},
	    {"GET /a HTTP/2.0\r\nHost: x\r\n\r\n", "505",
	        "http_version_not_supported"},
	    {"GET /a  HTTP/1.1\r\nHost: x\r\n\r\n", "400",
	        "malformed request line"},
	    {"GET a HTTP/1.1\r\nHost: x\r\n\r\n", "400",
	        "malformed request target"},
	    {"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", "501",
	        "method not supported"},
	    {"GET /a HTTP/1.1\r\nX-Test: 1\r\n\r\n", "400",
	        "without a Host header field"},
	    {"GET /a HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n", "400",
	        "more than one Host header field"},
	};
	/* A NUL would end the value early for us but not for a proxy. */
	static const char nul[] = "POST /a HTTP/1.1\r\nHost: x\r\n"
	                          "Content-Length: 1\0\r\n\r\nab";
	ash_http_opts     o     = {0};
	ash_http_server  *srv;
	char              want[32];

	srv = serve_echo(&o);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		send_raw(cases[i].req, strlen(cases[i].req));
		snprintf(want, sizeof(want), "HTTP/1.1 %s ", cases[i].status);
		ASH_T_CONTAINS(R1, want);
		ASH_T_CONTAINS(R1, "Connection: close\r\n");
		ASH_T_CONTAINS(R1, "Content-Type: application/json\r\n");
		ASH_T_CONTAINS(R1, cases[i].body);
		ASH_T_EQ_INT(S.calls, 0);
	}
	send_raw(nul, sizeof(nul) - 1);
	ASH_T_CONTAINS(R1, "HTTP/1.1 400 ");
	ASH_T_CONTAINS(R1, "NUL byte in the request head");
	ASH_T_EQ_INT(S.calls, 0);
	teardown(srv);
}

/* The response's Date header is the IMF-fixdate of about now. */
static bool
date_is_now(const char *resp)
{
	const char *d = strstr(resp, "\r\nDate: ");
	struct tm   tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	if (d == NULL ||
	    (end = strptime(d + 8, "%a, %d %b %Y %H:%M:%S GMT", &tm)) ==
	        NULL ||
	    strncmp(end, "\r\n", 2) != 0)
		return false;
	return labs((long) (timegm(&tm) - time(NULL))) <= 5;
}

/* What RFC 9112 lets a server accept: a chunked body with extensions
 * and trailers, bare LF line ends, empty lines before the request line,
 * an absolute-form target; and keep-alive as each version means it. */
ASH_TEST(chunked_bodies_bare_lf_and_versions_are_read)
{
	static const char chunked[] =
	    "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n"
	    "Connection: close\r\n\r\n"
	    "3;ext=\"1\"\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n";
	static const char lf[] =
	    "\r\nGET http://example.test/lf?a=1 HTTP/1.1\nHost: x\n"
	    "X-Test: bare\nConnection: close\n\n";
	static const char absq[] =
	    "GET http://example.test?a=2/b#f HTTP/1.1\r\n"
	    "Host: x\r\nConnection: close\r\n\r\n";
	static const char v10[] = "GET /ten HTTP/1.0\r\n\r\n"
	                          "GET /never HTTP/1.0\r\n\r\n";
	static const char v10ka[] =
	    "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
	    "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	ash_http_opts    o = {0};
	ash_http_server *srv;

	srv = serve_echo(&o);
	send_raw(chunked, sizeof(chunked) - 1);
	ASH_T_CONTAINS(R1, "HTTP/1.1 201 ");
	ASH_T_CONTAINS(R1, "\r\n\r\necho:abcde");
	ASH_T_EQ_INT(S.body_len, 5);
	ASH_T_TRUE(date_is_now(R1));
	send_raw(lf, sizeof(lf) - 1);
	ASH_T_CONTAINS(R1, "HTTP/1.1 201 ");
	ASH_T_EQ_STR(S.path, "/lf");
	ASH_T_EQ_STR(S.qa, "1");
	ASH_T_EQ_STR(S.hdr, "bare");
	send_raw(absq, sizeof(absq) - 1); /* the authority ends at the '?' */
	ASH_T_EQ_STR(S.path, "/");
	ASH_T_EQ_STR(S.qa, "2/b");
	S.calls = 0; /* HTTP/1.0 closes after one response by default */
	send_raw(v10, sizeof(v10) - 1);
	ASH_T_CONTAINS(R1, "Connection: close\r\n");
	ASH_T_NOT_CONTAINS(R1, "/never");
	ASH_T_NULL(strstr(strstr(R1, "HTTP/1.1 ") + 1, "HTTP/1.1 "));
	ASH_T_EQ_INT(S.calls, 1);
	ASH_T_EQ_STR(S.path, "/ten");
	send_raw(v10ka, sizeof(v10ka) - 1); /* unless it asks for more */
	ASH_T_CONTAINS(R1, "Connection: keep-alive\r\n");
	ASH_T_EQ_INT(S.calls, 3);
	ASH_T_EQ_STR(S.path, "/last");
	teardown(srv);
}

/* raw_request one byte per segment: every partial state of the framing. */
static void *
bg_trickle(void *arg)
{
	int fd = raw_connect(port), one = 1;

	(void) arg;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (size_t i = 0; i < raw_request_len; i++) {
		raw_send(fd, raw_request + i, 1);
		usleep(300);
	}
	raw_read_all(fd, R1, sizeof(R1));
	close(fd);
	bg_done = true;
	return NULL;
}

ASH_TEST(requests_sent_a_byte_at_a_time_are_read_the_same)
{
	static const char two[] =
	    "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "3;e=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n"
	    "POST /d HTTP/1.1\nHost: x\nContent-Length: 4\n"
	    "Connection: close\n\nwxyz";
	ash_http_opts    o = {0};
	ash_http_server *srv;

	srv             = serve_echo(&o);
	raw_request     = two;
	raw_request_len = sizeof(two) - 1;
	bg_run(bg_trickle, NULL);
	ASH_T_CONTAINS(R1, "\r\n\r\necho:abc0123456789abcdefHTTP/1.1 201 ");
	ASH_T_CONTAINS(R1, "\r\n\r\necho:wxyz");
	ASH_T_EQ_INT(S.calls, 2);
	ASH_T_EQ_STR(S.path, "/d");
	teardown(srv);
}

static void *
bg_expect(void *arg)
{
	int  fd = raw_connect(port);
	char got[64];

	(void) arg;
	raw_puts(fd,
	    "PUT /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
	    "Content-Length: 3\r\nConnection: close\r\n\r\n");
	raw_read_response(fd, got, sizeof(got), true);
	snprintf(R2, sizeof(R2), "%s", got);
	raw_puts(fd, "xyz");
	raw_read_all(fd, R1, sizeof(R1));
	close(fd);
	bg_done = true;
	return NULL;
}

/* The client waits for the interim answer before it sends the body. */
ASH_TEST(expect_100_continue_gets_the_interim_answer)
{
	ash_http_opts    o = {0};
	ash_http_server *srv;

	srv = serve_echo(&o);
	bg_run(bg_expect, NULL);
	ASH_T_EQ_STR(R2, "HTTP/1.1 100 Continue\r\n\r\n");
	ASH_T_CONTAINS(R1, "HTTP/1.1 201 ");
	ASH_T_CONTAINS(R1, "echo:xyz");
	teardown(srv);
}

static void *
bg_big_head(void *arg)
{
	int         fd = raw_connect(port);
	char        head[4096];
	const char *start =
	    "GET /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: ";
	size_t n = strlen(start), want = (size_t) (intptr_t) arg;

	/* A head of exactly `want` bytes. */
	memcpy(head, start, n);
	memset(head + n, 'p', want - n - 4);
	memcpy(head + want - 4, "\r\n\r\n", 4);
	raw_send(fd, head, want);
	raw_read_all(fd, want > 1024 ? R1 : R2, sizeof(R1));
	close(fd);
	bg_done = true;
	return NULL;
}

ASH_TEST(headers_over_limit_get_json_431)
{
	ash_http_opts    o = {.max_headers = 1024};
	ash_http_server *srv;

	srv = serve_echo(&o);
	bg_run(bg_big_head, (void *) (intptr_t) 1025);
	ASH_T_CONTAINS(R1, "HTTP/1.1 431 ");
	ASH_T_CONTAINS(R1,
	    "{\"error\":{\"code\":\"headers_too_large\","
	    "\"message\":\"request headers exceed 1024 bytes\"}}");
	ASH_T_EQ_INT(S.calls, 0);
	bg_run(bg_big_head, (void *) (intptr_t) 1024); /* at the limit: ok */
	ASH_T_CONTAINS(R2, "HTTP/1.1 201 ");
	ASH_T_EQ_INT(S.calls, 1);
	teardown(srv);
}

static void *
bg_pipeline(void *arg)
{
	int fd = raw_connect(port);

	/* Three requests in one write: a small POST, a HEAD, then one over
	 * the limit. Answers must come in order, the last one a 413. */
	raw_puts(fd,
	    "POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"
	    "abcHEAD /two HTTP/1.1\r\nHost: x\r\n\r\n"
	    "POST /three HTTP/1.1\r\nHost: x\r\n"
	    "Content-Length: 5000\r\n\r\n");
	raw_read_all(fd, R1, sizeof(R1));
	close(fd);
	bg_done = true;
	return NULL;
}

static void
on_reply_held(evutil_socket_t fd, short what, void *arg)
{
	ash_http_req *req = S.held;

	S.held = NULL;
	ash_http_reply(req, 200, "text/plain", "first", 5);
}

/* /one is answered 50 ms later; everything else at once. */
static void
h_first_slow(ash_http_req *req, void *arg)
{
	note(req);
	if (strcmp(ash_http_req_path(req), "/one") == 0) {
		S.held = req;
		after_ms(50, on_reply_held, NULL);
		return;
	}
	ash_http_reply(req, 200, "text/plain", "second", 6);
}

static int answered; /* responses bg_flood read */

/* One held request, then far more pipelined bytes than the server will
 * buffer: it stops reading until the reply, then reads on. */
static void *
bg_flood(void *arg)
{
	static char buf[64 << 10], reqs[16 << 10];
	int         fd = raw_connect(port);
	size_t      n  = 0, got;

	(void) arg;
	n += (size_t) snprintf(reqs, sizeof(reqs),
	    "GET /one HTTP/1.1\r\n"
	    "Host: x\r\n\r\n");
	for (int i = 0; i < 40; i++)
		n += (size_t) snprintf(reqs + n, sizeof(reqs) - n,
		    "GET /n%d HTTP/1.1\r\nHost: x\r\nX-Pad: %0200d\r\n%s\r\n",
		    i, 0, i == 39 ? "Connection: close\r\n" : "");
	raw_send(fd, reqs, n);
	got      = raw_read_all(fd, buf, sizeof(buf));
	answered = 0;
	for (const char *p = buf;
	     (p = strstr(p, "HTTP/1.1 200 ")) != NULL && p < buf + got; p++)
		answered++;
	close(fd);
	bg_done = true;
	return NULL;
}

ASH_TEST(a_full_input_buffer_pauses_reading_until_the_reply)
{
	ash_http_opts    o = {.max_body = 1024, .max_headers = 1024};
	ash_http_server *srv;

	srv = serve_raw(&o, h_first_slow);
	bg_run(bg_flood, NULL); /* 9 KB pipelined; the buffer holds 6 KB */
	ASH_T_EQ_INT(answered, 41);
	ASH_T_EQ_INT(S.calls, 41);
	ASH_T_EQ_STR(S.path, "/n39");
	teardown(srv);
}

ASH_TEST(pipelined_requests_answered_in_order)
{
	ash_http_opts    o = {.max_body = 1024};
	ash_http_server *srv;
	const char      *a, *b, *c;

	srv = serve_raw(&o, h_first_slow);
	bg_run(bg_pipeline, NULL);
	a = strstr(R1, "HTTP/1.1 200 OK");
	b = a ? strstr(a + 1, "HTTP/1.1 200 OK") : NULL;
	c = b ? strstr(b + 1, "HTTP/1.1 413 ") : NULL;
	ASH_T_NOT_NULL(a);
	ASH_T_NOT_NULL(b);
	ASH_T_NOT_NULL(c);
	ASH_T_CONTAINS(a, "\r\n\r\nfirst");
	ASH_T_TRUE(strstr(b, "second") == NULL); /* HEAD: no body */
	ASH_T_CONTAINS(b, "Content-Length: 6\r\n");
	ASH_T_CONTAINS(c, "payload_too_large");
	ASH_T_EQ_INT(S.calls, 2);
	teardown(srv);
}

static void
on_late_reply(evutil_socket_t fd, short what, void *arg)
{
	ash_http_req *req = arg;

	S.was_gone = ash_http_req_gone(req);
	S.replied++;
	ash_http_reply(req, 200, "text/plain", "late", 4); /* dropped */
}

static void
on_gone_count(void *arg)
{
	S.gone++;
}

static void
h_late(ash_http_req *req, void *arg)
{
	note(req);
	ash_http_req_on_gone(req, on_gone_count, NULL);
	after_ms(*(int *) arg, on_late_reply, req);
}

ASH_TEST(async_reply_from_a_timer)
{
	ash_http_opts    o     = {0};
	ash_http_server *srv   = NULL;
	int              delay = 80;
	char             url[128];
	int64_t          t0;

	setup();
	o.addr = "127.0.0.1:0";
	ASH_T_OK(ash_http_server_open(loop, &o, h_late, &delay, &srv));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/later",
	    ash_http_server_port(srv));
	t0 = ash_now_ms();
	fetch_start(&F[0], "GET", url, NULL, NULL, 0);
	nf = 1;
	run_until(fetches_done);
	ASH_T_OK(F[0].rv);
	ASH_T_EQ_STR(F[0].body, "late");
	ASH_T_TRUE(ash_now_ms() - t0 >= 70);
	ASH_T_EQ_INT(S.gone, 0);
	ASH_T_TRUE(!S.was_gone);
	teardown(srv);
}

static int gone_fd = -1;

static void
on_client_close(evutil_socket_t fd, short what, void *arg)
{
	if (arg != NULL) { /* reset instead of an orderly close */
		struct linger lg = {1, 0};
		setsockopt(gone_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(gone_fd);
	gone_fd = -1;
}

static bool
late_reply_done(void)
{
	return S.replied == 1;
}

/* The client leaves 50 ms in; the handler answers at 300 ms. */
static void
gone_case(void *rst)
{
	ash_http_opts    o     = {0};
	ash_http_server *srv   = NULL;
	int              delay = 300;

	setup();
	o.addr = "127.0.0.1:0";
	ASH_T_OK(ash_http_server_open(loop, &o, h_late, &delay, &srv));
	gone_fd = raw_connect(ash_http_server_port(srv));
	ASH_T_TRUE(gone_fd >= 0);
	raw_puts(gone_fd, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
	after_ms(50, on_client_close, rst);
	run_until(late_reply_done);
	ASH_T_EQ_INT(S.calls, 1);
	ASH_T_EQ_INT(S.gone, 1);
	ASH_T_TRUE(S.was_gone);
	teardown(srv);
}

ASH_TEST(client_gone_before_async_reply)
{
	gone_case(NULL);
}

ASH_TEST(client_reset_before_async_reply)
{
	gone_case((void *) 1);
}

static void
on_send_more(evutil_socket_t fd, short what, void *arg)
{
	raw_puts(gone_fd, "GET /next HTTP/1.1\r\n");
}

/* Bytes arrive while the request is pending (they wait in the buffer),
 * then the client leaves: still noticed. */
ASH_TEST(client_gone_after_pipelining_more_bytes)
{
	ash_http_opts    o     = {0};
	ash_http_server *srv   = NULL;
	int              delay = 600;

	setup();
	o.addr = "127.0.0.1:0";
	ASH_T_OK(ash_http_server_open(loop, &o, h_late, &delay, &srv));
	gone_fd = raw_connect(ash_http_server_port(srv));
	raw_puts(gone_fd, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
	after_ms(30, on_send_more, NULL);
	after_ms(150, on_client_close, NULL);
	run_until(late_reply_done);
	ASH_T_EQ_INT(S.calls, 1);
	ASH_T_EQ_INT(S.gone, 1);
	ASH_T_TRUE(S.was_gone);
	teardown(srv);
}

static void
on_gone_release(void *arg)
{
	S.gone++;
	ash_http_req_release(arg); /* we hold nothing else */
}

static void
h_hold_release(ash_http_req *req, void *arg)
{
	note(req);
	ash_http_req_on_gone(req, on_gone_release, req);
	S.held = req;
}

static bool
gone_once(void)
{
	return S.gone == 1;
}

ASH_TEST(release_inside_on_gone)
{
	ash_http_opts    o = {0};
	ash_http_server *srv;
	char             base[64];

	setup();
	srv     = serve(&o, h_hold_release, base, sizeof(base));
	gone_fd = raw_connect(ash_http_server_port(srv));
	raw_puts(gone_fd,
	    "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
	    "\r\nhi");
	after_ms(50, on_client_close, NULL);
	run_until(gone_once);
	ASH_T_EQ_INT(S.calls, 1);
	teardown(srv);
}

static bool
held_one(void)
{
	return S.held != NULL;
}

ASH_TEST(server_close_marks_pending_requests_gone)
{
	ash_http_opts    o = {0};
	ash_http_server *srv;
	char             base[64], url[128];

	setup();
	srv = serve(&o, h_hold_release, base, sizeof(base));
	snprintf(url, sizeof(url), "%s/hold", base);
	fetch_start(&F[0], "GET", url, NULL, NULL, 0);
	nf = 1;
	run_until(held_one);
	ash_http_server_close(srv); /* on_gone runs, and releases */
	ASH_T_EQ_INT(S.gone, 1);
	run_until(fetches_done);
	ASH_T_ERR(F[0].rv, ASH_EUPSTREAM); /* connection closed, no reply */
	teardown(NULL);
}

static sem_t stopped;

static void
do_stop_accepting(void *arg)
{
	ash_http_server_stop_accepting(arg);
	ash_http_server_stop_accepting(arg); /* twice is fine */
	sem_post(&stopped);
}

static void *
bg_keepalive(void *srv)
{
	int a = raw_connect(port), b;

	raw_puts(a, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
	raw_read_response(a, R1, sizeof(R1), false);
	ash_loop_post(loop, do_stop_accepting, srv);
	sem_wait(&stopped);
	b     = raw_connect(port);
	R_err = b < 0 ? errno : 0;
	if (b >= 0)
		close(b);
	raw_puts(a, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
	raw_read_response(a, R2, sizeof(R2), false);
	close(a);
	bg_done = true;
	return NULL;
}

ASH_TEST(stop_accepting_keeps_accepted_connections)
{
	ash_http_opts    o = {0};
	ash_http_server *srv;
	char             base[64];

	setup();
	sem_init(&stopped, 0, 0);
	srv  = serve(&o, h_echo, base, sizeof(base));
	port = ash_http_server_port(srv);
	bg_run(bg_keepalive, srv);
	ASH_T_CONTAINS(R1, "HTTP/1.1 201 ");
	ASH_T_EQ_INT(R_err, ECONNREFUSED);
	ASH_T_CONTAINS(R2, "HTTP/1.1 201 ");
	ASH_T_EQ_INT(S.calls, 2);
	ASH_T_EQ_STR(S.path, "/2");
	sem_destroy(&stopped);
	teardown(srv);
}

static long timed_ms[2]; /* how long each bg_timeouts client waited */

static long
ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 +
	    (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* A client that stops halfway through its head, then one whose request
 * the handler keeps longer than the timeout. */
static void *
bg_timeouts(void *arg)
{
	struct timespec t0;
	int             fd = raw_connect(port);

	(void) arg;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	raw_puts(fd, "GET /slow HTTP/1.1\r\nHost: x\r\n");
	raw_read_all(fd, R1, sizeof(R1));
	timed_ms[0] = ms_since(&t0);
	close(fd);
	fd = raw_connect(port);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	raw_puts(fd, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
	raw_read_response(fd, R2, sizeof(R2), false);
	timed_ms[1] = ms_since(&t0);
	close(fd);
	bg_done = true;
	return NULL;
}

/* Sends s[0..n) a byte every 200 ms, over and over, until the server
 * closes (or 8 s pass); how long that took. */
static long
trickle_until_cut(const char *s, size_t n)
{
	struct timespec t0;
	int             fd = raw_connect(port), one = 1;
	char            c;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (size_t i = 0; ms_since(&t0) < 8000; i++) {
		if (send(fd, s + i % n, 1, MSG_NOSIGNAL) != 1 ||
		    recv(fd, &c, 1, MSG_DONTWAIT) == 0)
			break;
		usleep(200 * 1000);
	}
	close(fd);
	return ms_since(&t0);
}

/* A head trickled a byte at a time (its last LF never comes), and empty
 * lines trickled before any head: each cut by the head's deadline though
 * a byte came every 200 ms. */
static void *
bg_trickles(void *arg)
{
	static const char head[] = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";

	(void) arg;
	timed_ms[0] = trickle_until_cut(head, sizeof(head) - 2); /* no LF */
	timed_ms[1] = trickle_until_cut("\r\n", 2);
	bg_done     = true;
	return NULL;
}

/* timeout_s cuts a client that is too slow to send its request, never
 * one whose request is with the handler. */
ASH_TEST(slow_clients_are_cut_but_slow_handlers_are_not)
{
	ash_http_opts    o     = {.addr = "127.0.0.1:0", .timeout_s = 1};
	ash_http_server *srv   = NULL;
	int              delay = 2500;

	setup();
	ASH_T_OK(ash_http_server_open(loop, &o, h_late, &delay, &srv));
	port = ash_http_server_port(srv);
	bg_run(bg_timeouts, NULL);
	ASH_T_EQ_STR(R1, ""); /* closed without an answer */
	ASH_T_TRUE(timed_ms[0] >= 1000 && timed_ms[0] < 4000);
	ASH_T_CONTAINS(R2, "HTTP/1.1 200 ");
	ASH_T_CONTAINS(R2, "\r\n\r\nlate");
	ASH_T_TRUE(timed_ms[1] >= 2400);
	ASH_T_EQ_INT(S.calls, 1);
	bg_run(bg_trickles, NULL);
	ASH_T_TRUE(timed_ms[0] >= 1000 && timed_ms[0] < 3500);
	ASH_T_TRUE(timed_ms[1] >= 1000 && timed_ms[1] < 3500);
	ASH_T_EQ_INT(S.calls, 1);
	teardown(srv);
}

ASH_TEST(nul_in_path_and_unknown_methods_refused)
{
	static const char nul[] =
	    "GET /a%00b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	static const char qnul[] =
	    "GET /a?cursor=b%00c HTTP/1.1\r\nHost: x\r\n"
	    "Connection: close\r\n\r\n";
	static const char trace[] =
	    "TRACE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	ash_http_opts    o = {0};
	ash_http_server *srv;

	srv = serve_echo(&o);
	send_raw(nul, sizeof(nul) - 1);
	ASH_T_CONTAINS(R1, "HTTP/1.1 400 ");
	ASH_T_CONTAINS(R1,
	    "\r\n\r\n{\"error\":{\"code\":\"invalid_argument\","
	    "\"message\":\"path contains a NUL byte\"}}");
	send_raw(qnul, sizeof(qnul) - 1);
	ASH_T_CONTAINS(R1, "HTTP/1.1 400 ");
	ASH_T_CONTAINS(R1, "query contains a NUL byte");
	send_raw(trace, sizeof(trace) - 1);
	ASH_T_CONTAINS(R1, "HTTP/1.1 501 ");
	ASH_T_CONTAINS(R1,
	    "{\"error\":{\"code\":\"not_implemented\","
	    "\"message\":\"method not supported\"}}");
	ASH_T_EQ_INT(S.calls, 0);
	teardown(srv);
}

static double
cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	    (double) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* With no descriptor left for accept(), the server pauses accepting
 * instead of spinning on a connection it cannot take (its listening
 * socket stays readable), and takes it once descriptors are free. */
ASH_TEST(out_of_descriptors_pauses_accepting_without_spinning)
{
	static int       spare[512];
	ash_http_opts    o = {0};
	ash_http_server *srv;
	struct rlimit    old, low;
	int              n = 0;
	double           cpu;

	srv = serve_echo(&o);
	raw_request =
	    "GET /fd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	raw_request_len = strlen(raw_request);
	ASH_T_EQ_INT(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = (struct rlimit) {256, old.rlim_max};
	ASH_T_EQ_INT(setrlimit(RLIMIT_NOFILE, &low), 0);
	while (n < 512 && (spare[n] = dup(0)) >= 0)
		n++;
	ASH_T_EQ_INT(errno, EMFILE);
	close(spare[--n]); /* one left: the client's socket takes it */
	bg_start(bg_one, NULL);
	cpu = cpu_s();
	run_for_ms(500); /* the server cannot accept the client */
	cpu = cpu_s() - cpu;
	while (n > 0)
		close(spare[--n]);
	ASH_T_EQ_INT(setrlimit(RLIMIT_NOFILE, &old), 0);
	bg_wait();
	ASH_T_CONTAINS(R1, "HTTP/1.1 201 ");
	ASH_T_EQ_STR(S.path, "/fd");
	/* A spinning loop takes the whole 0.5 s of CPU. */
	ASH_T_TRUE(cpu < 0.15);
	teardown(srv);
}

/* 4 KiB of 'x' for every request. */
static void
h_big(ash_http_req *req, void *arg)
{
	static char big[4096];

	(void) arg;
	note(req);
	memset(big, 'x', sizeof(big));
	ash_http_reply(req, 200, "text/plain", big, sizeof(big));
}

enum { FLOOD_N = 10000 };
static atomic_bool flood_sent, flood_read;
static int         flood_answers;

static bool
flood_is_sent(void)
{
	return flood_sent;
}

/* Pipelines FLOOD_N requests with a small receive buffer, half-closes,
 * and reads nothing until told to; then counts the answers. */
static void *
bg_unread(void *arg)
{
	static char reqs[FLOOD_N * 48], buf[1 << 16];
	int         fd = raw_connect_rcvbuf(port, 8192);
	size_t      n = 0, keep = 0, len;
	ssize_t     r;

	(void) arg;
	for (int i = 0; i < FLOOD_N; i++)
		n += (size_t) snprintf(reqs + n, sizeof(reqs) - n,
		    "GET /p HTTP/1.1\r\nHost: x\r\n%s\r\n",
		    i == FLOOD_N - 1 ? "Connection: close\r\n" : "");
	raw_send(fd, reqs, n);
	shutdown(fd, SHUT_WR); /* all sent: still owed every answer */
	flood_sent = true;
	while (!flood_read)
		usleep(1000);
	while ((r = recv(fd, buf + keep, sizeof(buf) - 1 - keep, 0)) > 0) {
		len      = keep + (size_t) r;
		buf[len] = '\0';
		for (char *p = buf; (p = strstr(p, "HTTP/1.1 200 ")) != NULL;
		     p++)
			flood_answers++;
		keep = len < 12 ? len : 12; /* a status line cut at the end */
		memmove(buf, buf + len - keep, keep);
	}
	close(fd);
	bg_done = true;
	return NULL;
}

/* A client that pipelines requests and reads none of the answers gets
 * only as many answered as the socket buffers hold: the server takes the
 * next request only once the last answer is with the kernel, so its
 * memory does not grow with what the client sends. When the client
 * reads, everything is answered. */
ASH_TEST(a_client_that_does_not_read_is_not_answered_ahead)
{
	ash_http_opts    o = {.max_body = 1024, .max_headers = 1024};
	ash_http_server *srv;
	int              calls;

	srv        = serve_raw(&o, h_big);
	flood_sent = flood_read = false;
	flood_answers           = 0;
	bg_start(bg_unread, NULL);
	run_until(flood_is_sent);
	run_for_ms(500); /* the server answers what the buffers hold */
	calls      = S.calls;
	flood_read = true;
	bg_wait();
	ASH_T_TRUE(calls < FLOOD_N / 2);
	ASH_T_EQ_INT(flood_answers, FLOOD_N);
	ASH_T_EQ_INT(S.calls, FLOOD_N);
	teardown(srv);
}

ASH_TEST(open_refuses_bad_addresses_and_busy_ports)
{
	static const char *const bad[] = {"nonsense", "127.0.0.1",
	    "127.0.0.1:99999", "127.0.0.1:", "::1:80", "127.0.0.1:8x",
	    "no-such-host.invalid:0", NULL};
	ash_http_opts            o     = {0};
	ash_http_server         *srv = NULL, *other = NULL, *v6 = NULL;
	char                     addr[64];

	setup();
	for (int i = 0; i < 8; i++) {
		o.addr = bad[i];
		ASH_T_ERR(ash_http_server_open(loop, &o, h_echo, NULL, &other),
		    ASH_EINVAL);
	}
	ASH_T_NULL(other);
	ASH_T_ERR(ash_http_server_open(loop, NULL, h_echo, NULL, &other),
	    ASH_EINVAL);
	o.addr = "127.0.0.1:0";
	ASH_T_OK(ash_http_server_open(loop, &o, h_echo, NULL, &srv));
	ASH_T_TRUE(ash_http_server_port(srv) > 0);
	snprintf(
	    addr, sizeof(addr), "127.0.0.1:%d", ash_http_server_port(srv));
	o.addr = addr;
	ASH_T_ERR(ash_http_server_open(loop, &o, h_echo, NULL, &other),
	    ASH_EUNAVAIL);
	o.addr = "[::1]:0"; /* only where the host has IPv6 loopback */
	if (ash_http_server_open(loop, &o, h_echo, NULL, &v6) == ASH_OK)
		ASH_T_TRUE(ash_http_server_port(v6) > 0);
	ash_http_server_close(v6);
	ash_http_server_close(NULL);
	teardown(srv);
}

ASH_TEST(ipv6_listener_reports_ipv6_peer)
{
	ash_http_opts    o   = {.addr = "[::1]:0"};
	ash_http_server *srv = NULL;
	char             url[128];

	setup();
	if (ash_http_server_open(loop, &o, h_echo, NULL, &srv) != ASH_OK) {
		ASH_T_TRUE(true); /* no IPv6 loopback on this host */
		teardown(NULL);
		return;
	}
	snprintf(url, sizeof(url), "http://[::1]:%d/six",
	    ash_http_server_port(srv));
	fetch_start(&F[0], "GET", url, NULL, NULL, 0);
	nf = 1;
	run_until(fetches_done);
	ASH_T_OK(F[0].rv);
	ASH_T_EQ_INT(F[0].status, 201);
	ASH_T_EQ_STR(S.peer, "::1");
	teardown(srv);
}

/* ---- TLS ----------------------------------------------------------- */

static char tls_dir[64], tls_cert[128], tls_key[128], tls_key2[128];

static void
write_key(EVP_PKEY *k, const char *path)
{
	FILE *f = fopen(path, "w");

	ASH_T_NOT_NULL(f);
	ASH_T_EQ_INT(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
}

/* A self-signed P-256 certificate for IP 127.0.0.1, a matching key and an
 * unrelated key, in a fresh temporary directory. */
static void
make_tls_files(void)
{
	EVP_PKEY       *k  = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY       *k2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509           *x  = X509_new();
	X509_NAME      *n  = X509_get_subject_name(x);
	X509V3_CTX      ctx;
	X509_EXTENSION *san;
	FILE           *f;

	snprintf(tls_dir, sizeof(tls_dir), "/tmp/ash-http-tls.XXXXXX");
	ASH_T_NOT_NULL(mkdtemp(tls_dir));
	snprintf(tls_cert, sizeof(tls_cert), "%s/cert.pem", tls_dir);
	snprintf(tls_key, sizeof(tls_key), "%s/key.pem", tls_dir);
	snprintf(tls_key2, sizeof(tls_key2), "%s/other.pem", tls_dir);
	ASH_T_TRUE(k != NULL && k2 != NULL && x != NULL);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *) "127.0.0.1", -1, -1, 0);
	X509_set_issuer_name(x, n);
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	san = X509V3_EXT_conf_nid(
	    NULL, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
	X509_add_ext(x, san, -1);
	X509_EXTENSION_free(san);
	ASH_T_TRUE(X509_sign(x, k, EVP_sha256()) > 0);
	f = fopen(tls_cert, "w");
	ASH_T_NOT_NULL(f);
	PEM_write_X509(f, x);
	fclose(f);
	write_key(k, tls_key);
	write_key(k2, tls_key2);
	X509_free(x);
	EVP_PKEY_free(k);
	EVP_PKEY_free(k2);
}

static void
remove_tls_files(void)
{
	unlink(tls_cert);
	unlink(tls_key);
	unlink(tls_key2);
	rmdir(tls_dir);
}

typedef struct tls_try {
	long     ssl_version; /* CURLOPT_SSLVERSION, 0 = default */
	bool     plain;       /* http:// to the TLS port */
	long     post_len;    /* POST this many bytes */
	bool     big;         /* GET /big: BIG_LEN bytes of a pattern */
	size_t   got;         /* body bytes received */
	bool     garbled;     /* a /big byte out of its pattern */
	int      timeout_ms;
	CURLcode rc;
	long     status;
	char     body[64];
	char     err[CURL_ERROR_SIZE];
} tls_try;

static size_t
tls_on_body(char *p, size_t size, size_t n, void *arg)
{
	tls_try *t   = arg;
	size_t   len = strlen(t->body);

	if (t->big && t->got == 0)
		usleep(300 * 1000); /* let the server's socket fill up */
	for (size_t i = 0; t->big && i < size * n; i++)
		t->garbled |= (unsigned char) p[i] != (t->got + i) % 251;
	t->got += size * n;
	if (t->big)
		return size * n;
	snprintf(
	    t->body + len, sizeof(t->body) - len, "%.*s", (int) (size * n), p);
	return size * n;
}

static void
tls_get(tls_try *t)
{
	CURL *e = curl_easy_init();
	char  url[96];

	snprintf(url, sizeof(url), "%s://127.0.0.1:%d/%s",
	    t->plain ? "http" : "https", port, t->big ? "big" : "secure");
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CAINFO, tls_cert);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
	    (long) (t->timeout_ms ? t->timeout_ms : 5000));
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->err);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, tls_on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
	if (t->post_len > 0) {
		static char payload[8192];
		memset(payload, 'p', sizeof(payload));
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, t->post_len);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, payload);
	}
	if (t->ssl_version != 0) {
		curl_easy_setopt(e, CURLOPT_SSLVERSION, t->ssl_version);
		/* OpenSSL 3 refuses TLS < 1.2 at its default level: let the
		 * client offer it, so the refusal is the server's. */
		curl_easy_setopt(
		    e, CURLOPT_SSL_CIPHER_LIST, "DEFAULT:@SECLEVEL=0");
	}
	t->rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &t->status);
	curl_easy_cleanup(e);
}

static void *
bg_tls(void *arg)
{
	tls_try *t = arg;

	for (; t->timeout_ms >= 0; t++)
		tls_get(t);
	bg_done = true;
	return NULL;
}

#define BIG_LEN (16u << 20) /* far more than the socket takes at once */

static void
h_secure(ash_http_req *req, void *arg)
{
	static char big[BIG_LEN];

	note(req);
	if (strcmp(ash_http_req_path(req), "/big") == 0) {
		for (size_t i = 0; i < BIG_LEN; i++)
			big[i] = (char) (i % 251);
		ash_http_reply(
		    req, 200, "application/octet-stream", big, BIG_LEN);
		return;
	}
	ash_http_reply(req, 200, "text/plain", "secret", 6);
}

ASH_TEST(tls_round_trip_and_old_versions_refused)
{
	ash_http_opts    o = {.max_body = 1024};
	ash_http_server *srv;
	char             base[64];
	tls_try          t[] = {
	             {.ssl_version = 0},
	             {.ssl_version =
	                     CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2},
	             {.ssl_version =
	                     CURL_SSLVERSION_TLSv1_1 | CURL_SSLVERSION_MAX_TLSv1_1},
	             {.plain = true},
	             {.post_len = 5000},
	             {.big = true},
	             {.timeout_ms = -1},
        };

	setup();
	make_tls_files();
	o.tls_cert = tls_cert;
	o.tls_key  = tls_key;
	srv        = serve(&o, h_secure, base, sizeof(base));
	port       = ash_http_server_port(srv);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	bg_run(bg_tls, t);
	ASH_T_EQ_INT(t[0].rc, CURLE_OK); /* verified against the cert */
	ASH_T_EQ_INT(t[0].status, 200);
	ASH_T_EQ_STR(t[0].body, "secret");
	ASH_T_EQ_INT(t[1].rc, CURLE_OK); /* TLS 1.2 is the floor */
	ASH_T_EQ_INT(t[2].rc, CURLE_SSL_CONNECT_ERROR);
	ASH_T_CONTAINS(t[2].err, "alert protocol version");
	ASH_T_NE_INT(t[3].rc, CURLE_OK); /* no cleartext on a TLS port */
	ASH_T_EQ_INT(t[4].rc, CURLE_OK); /* the guard works under TLS too */
	ASH_T_EQ_INT(t[4].status, 413);
	ASH_T_CONTAINS(t[4].body, "payload_too_large");
	ASH_T_EQ_INT(t[5].rc, CURLE_OK); /* written over many writable turns */
	ASH_T_EQ_INT(t[5].got, BIG_LEN);
	ASH_T_TRUE(!t[5].garbled);
	ASH_T_EQ_INT(S.calls, 3);
	teardown(srv);
	remove_tls_files();
}

/* A response far larger than the socket takes: written over many
 * writable turns, every byte in order (plain; TLS in the test above). */
ASH_TEST(large_responses_are_written_whole)
{
	ash_http_opts    o   = {0};
	ash_http_server *srv = NULL;
	tls_try t[2] = {{.plain = true, .big = true}, {.timeout_ms = -1}};

	srv = serve_raw(&o, h_secure);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	bg_run(bg_tls, t);
	ASH_T_EQ_INT(t[0].rc, CURLE_OK);
	ASH_T_EQ_INT(t[0].got, BIG_LEN);
	ASH_T_TRUE(!t[0].garbled);
	teardown(srv);
}

static size_t slow_got; /* bytes bg_slow_reader read */

/* Asks for /big, then (once the server is writing it) pipelines a second
 * request and half-closes, and reads 16 KiB every 4 ms: the answer takes
 * longer than the server's timeout, all the while making progress. */
static void *
bg_slow_reader(void *arg)
{
	static char buf[1 << 14];
	int         fd = raw_connect_rcvbuf(port, 1 << 14);
	ssize_t     r;

	(void) arg;
	raw_puts(fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
	usleep(100 * 1000);
	raw_puts(fd,
	    "GET /small HTTP/1.1\r\nHost: x\r\n"
	    "Connection: close\r\n\r\n");
	shutdown(fd, SHUT_WR); /* done sending: still owed both answers */
	slow_got = 0;
	memset(R1, 0, 7);
	while ((r = recv(fd, buf, sizeof(buf), 0)) > 0) {
		size_t k = (size_t) r < 6 ? (size_t) r : 6;

		slow_got += (size_t) r;
		memmove(R1, R1 + k, 6 - k); /* the last 6 bytes: "secret" */
		memcpy(R1 + 6 - k, buf + (size_t) r - k, k);
		usleep(4000);
	}
	close(fd);
	bg_done = true;
	return NULL;
}

/* A request pipelined behind an answer the client reads slowly is not
 * cut by the head's deadline: it waited for us, not for the client. */
ASH_TEST(a_request_waiting_behind_a_slow_answer_is_not_cut)
{
	ash_http_opts    o = {.timeout_s = 1};
	ash_http_server *srv;

	srv = serve_raw(&o, h_secure);
	bg_run(bg_slow_reader, NULL);
	ASH_T_TRUE(slow_got > BIG_LEN);
	ASH_T_EQ_STR(R1, "secret");
	ASH_T_EQ_INT(S.calls, 2);
	teardown(srv);
}

static void *
bg_tls_give_up(void *arg)
{
	tls_try t = {.timeout_ms = 200};

	tls_get(&t); /* times out, closes (close_notify + FIN) */
	R_err   = (int) t.rc;
	bg_done = true;
	return NULL;
}

static bool
tls_gone(void)
{
	return bg_done && S.gone == 1;
}

ASH_TEST(tls_client_gone_before_reply)
{
	ash_http_opts    o = {0};
	ash_http_server *srv;
	char             base[64];

	setup();
	make_tls_files();
	o.tls_cert = tls_cert;
	o.tls_key  = tls_key;
	srv        = serve(&o, h_hold_release, base, sizeof(base));
	port       = ash_http_server_port(srv);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	bg_start(bg_tls_give_up, NULL);
	run_until(tls_gone);
	pthread_join(bg, NULL);
	ASH_T_EQ_INT(R_err, CURLE_OPERATION_TIMEDOUT);
	ASH_T_EQ_INT(S.calls, 1);
	teardown(srv);
	remove_tls_files();
}

ASH_TEST(tls_files_must_load_and_match)
{
	ash_http_opts    o   = {.addr = "127.0.0.1:0"};
	ash_http_server *srv = NULL;

	setup();
	make_tls_files();
	o.tls_cert = tls_cert;
	o.tls_key  = tls_key2; /* not the certificate's key */
	ASH_T_ERR(
	    ash_http_server_open(loop, &o, h_echo, NULL, &srv), ASH_EINVAL);
	o.tls_key = "/nonexistent/key.pem";
	ASH_T_ERR(
	    ash_http_server_open(loop, &o, h_echo, NULL, &srv), ASH_EINVAL);
	o.tls_key = NULL; /* a certificate without a key */
	ASH_T_ERR(
	    ash_http_server_open(loop, &o, h_echo, NULL, &srv), ASH_EINVAL);
	o.tls_cert = "";
	o.tls_key  = ""; /* both empty: plain HTTP */
	ASH_T_OK(ash_http_server_open(loop, &o, h_echo, NULL, &srv));
	teardown(srv);
	remove_tls_files();
}

/* ---- requests against a model of the framing ----------------------- */

/* An independent reading of the framing rules (http_parse.c's header,
 * RFC 9112), written on byte runs with lengths, not C strings: for the
 * bytes a client sends before it half-closes, the responses the server
 * owes it. Generated requests, and the same mutated, go to the real
 * server; what it answers must be what the model says. */

enum { M_MAX_BODY = 256, M_MAX_HEADERS = 256, M_CAP = 16384 };

typedef struct mstr {
	char   b[M_CAP];
	size_t n;
} mstr;

static void
mput(mstr *s, const void *p, size_t n)
{
	if (n > 0 && s->n + n <= sizeof(s->b)) {
		memcpy(s->b + s->n, p, n);
		s->n += n;
	}
}

static void
mputs(mstr *s, const char *p)
{
	mput(s, p, strlen(p));
}

/* "<length>:<bytes>", so that any bytes compare exactly. */
static void
mfield(mstr *s, const char *p, size_t n)
{
	char len[24];

	snprintf(len, sizeof(len), "%zu:", n);
	mputs(s, len);
	mput(s, p, n);
}

/* Replies 201 with what the handler saw: method, path, the first X-Test
 * ("-:" if none) and the body, each as an mfield. */
static void
h_model(ash_http_req *req, void *arg)
{
	static mstr out;
	const char *x = ash_http_req_header(req, "x-test");
	const char *m = ash_http_req_method(req), *p = ash_http_req_path(req);
	const char *data;
	size_t      len;

	(void) arg;
	out.n = 0;
	ash_http_req_body(req, &data, &len);
	mfield(&out, m, strlen(m));
	mfield(&out, p, strlen(p));
	if (x != NULL)
		mfield(&out, x, strlen(x));
	else
		mputs(&out, "-:");
	mfield(&out, data, len);
	ash_http_reply(req, 201, "application/octet-stream", out.b, out.n);
}

static bool
m_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != 0 && strchr("!#$%&'*+-.^_`|~", c));
}

static bool
m_vchar(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int
m_hex(unsigned char c)
{
	return c >= '0' && c <= '9' ? c - '0'
	    : c >= 'a' && c <= 'f'  ? c - 'a' + 10
	    : c >= 'A' && c <= 'F'  ? c - 'A' + 10
	                            : -1;
}

static bool
m_is(const char *p, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(p, word, n) == 0;
}

/* Does a comma-separated list hold tok (any case, then an end, a comma or
 * white space)? */
static bool
m_token(const char *v, size_t n, const char *tok)
{
	size_t t = strlen(tok), i = 0;

	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		if (n - i >= t && strncasecmp(v + i, tok, t) == 0 &&
		    (i + t == n || v[i + t] == ',' || v[i + t] == ' ' ||
		        v[i + t] == '\t'))
			return true;
		while (i < n && v[i] != ',')
			i++;
	}
	return false;
}

typedef struct mreq {
	const char *method;
	int         minor, hosts, nfields;
	bool        has_len, chunked, close, keep_alive, has_x;
	uint64_t    len;
	const char *x, *target;
	size_t      xn, tn;
	mstr        path;
} mreq;

static int
m_request_line(const char *l, size_t n, mreq *r)
{
	static const char *const known[] = {
	    "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"};
	const char *sp1 = memchr(l, ' ', n), *sp2, *v;
	size_t      vn;

	if (sp1 == NULL || sp1 == l ||
	    (sp2 = memchr(sp1 + 1, ' ', (size_t) (l + n - sp1 - 1))) == NULL ||
	    sp2 == sp1 + 1)
		return 400;
	for (const char *p = l; p < sp1; p++)
		if (!m_tchar((unsigned char) *p))
			return 400;
	for (const char *p = sp1 + 1; p < sp2; p++)
		if ((unsigned char) *p <= 0x20 || *p == 0x7f)
			return 400;
	v  = sp2 + 1;
	vn = (size_t) (l + n - v);
	if (vn < 5 || memcmp(v, "HTTP/", 5) != 0)
		return 400;
	if (vn == 8 && memcmp(v, "HTTP/1.1", 8) == 0)
		r->minor = 1;
	else if (vn == 8 && memcmp(v, "HTTP/1.0", 8) == 0)
		r->minor = 0;
	else
		return 505;
	r->target = sp1 + 1;
	r->tn     = (size_t) (sp2 - sp1 - 1);
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strlen(known[i]) == (size_t) (sp1 - l) &&
		    memcmp(l, known[i], (size_t) (sp1 - l)) == 0)
			r->method = known[i];
	return r->method ? 0 : 501;
}

static int
m_field(const char *l, size_t n, mreq *r)
{
	const char *colon = memchr(l, ':', n), *v, *end = l + n;
	uint64_t    len = 0;

	if (n > 0 && (l[0] == ' ' || l[0] == '\t'))
		return 400;
	if (colon == NULL || colon == l)
		return 400;
	for (const char *p = l; p < colon; p++)
		if (!m_tchar((unsigned char) *p))
			return 400;
	for (v = colon + 1; v < end && (*v == ' ' || *v == '\t'); v++)
		;
	for (const char *p = v; p < end; p++)
		if (!m_vchar((unsigned char) *p))
			return 400;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (r->nfields++ == 100)
		return 431;
	size_t nl = (size_t) (colon - l), vn = (size_t) (end - v);
	if (m_is(l, nl, "content-length")) {
		if (vn == 0)
			return 400;
		for (const char *p = v; p < end; p++) {
			if (*p < '0' || *p > '9')
				return 400;
			len = len > UINT64_MAX / 16
			    ? UINT64_MAX / 16
			    : len * 10 + (uint64_t) (*p - '0');
		}
		if (r->has_len && len != r->len)
			return 400;
		r->has_len = true;
		r->len     = len;
	} else if (m_is(l, nl, "transfer-encoding")) {
		if (r->chunked)
			return 400;
		if (!m_is(v, vn, "chunked"))
			return 501;
		r->chunked = true;
	} else if (m_is(l, nl, "connection")) {
		r->close |= m_token(v, vn, "close");
		r->keep_alive |= m_token(v, vn, "keep-alive");
	} else if (m_is(l, nl, "host")) {
		r->hosts++;
	} else if (m_is(l, nl, "x-test") && !r->has_x) {
		r->has_x = true;
		r->x     = v;
		r->xn    = vn;
	}
	return 0;
}

/* Does the query of t[0..n) (from its first '?' unless a '#' comes
 * first, to the next '#') hold "%00", any case? */
static bool
m_query_nul(const char *t, size_t n)
{
	size_t i = 0, j;

	while (i < n && t[i] != '?' && t[i] != '#')
		i++;
	if (i == n || t[i] == '#')
		return false;
	for (j = i + 1; j + 2 < n && t[j] != '#'; j++)
		if (t[j] == '%' && t[j + 1] == '0' && t[j + 2] == '0')
			return true;
	return false;
}

/* The decoded path of r->target into r->path; 0 or 400 (a NUL in the
 * path or the query). */
static int
m_path(mreq *r)
{
	const char *t = r->target, *end = t + r->tn;

	r->path.n = 0;
	if (m_query_nul(t, r->tn))
		return 400;
	if ((r->tn >= 7 && strncasecmp(t, "http://", 7) == 0) ||
	    (r->tn >= 8 && strncasecmp(t, "https://", 8) == 0)) {
		t = (const char *) memchr(t, ':', r->tn) + 3;
		while (t < end && *t != '/' && *t != '?' && *t != '#')
			t++;
		if (t == end || *t != '/') {
			mputs(&r->path, "/");
			return 0;
		}
	} else if (r->tn == 1 && *t == '*') {
		mputs(&r->path, "*");
		return strcmp(r->method, "OPTIONS") == 0 ? 0 : 400;
	} else if (t == end || *t != '/') {
		return 400;
	}
	for (const char *p = t; p < end; p++)
		if (*p == '?' || *p == '#')
			end = p; /* query and fragment are not the path */
	for (const char *p = t; p < end; p++) {
		char c = *p;
		if (c == '%' && end - p > 2 &&
		    m_hex((unsigned char) p[1]) >= 0 &&
		    m_hex((unsigned char) p[2]) >= 0) {
			c = (char) (m_hex((unsigned char) p[1]) * 16 +
			    m_hex((unsigned char) p[2]));
			p += 2;
		}
		if (c == '\0')
			return 400;
		mput(&r->path, &c, 1);
	}
	return 0;
}

/* Parses the head in[0..n) (through its blank line); 0 or a status. */
static int
m_head(const char *in, size_t n, mreq *r)
{
	size_t pos   = 0;
	int    st    = 0;
	bool   first = true;

	memset(r, 0, offsetof(mreq, path));
	if (memchr(in, '\0', n) != NULL)
		return 400;
	while (pos < n) {
		const char *l = in + pos, *nl = memchr(l, '\n', n - pos);
		size_t      ln = (size_t) (nl - l);

		pos += ln + 1;
		if (ln > 0 && l[ln - 1] == '\r')
			ln--;
		if (first)
			st = m_request_line(l, ln, r);
		else if (ln == 0)
			break;
		else
			st = m_field(l, ln, r);
		if (st != 0)
			return st;
		first = false;
	}
	if (r->chunked && (r->has_len || r->minor == 0))
		return 400;
	if (r->minor == 1 && r->hosts != 1)
		return 400;
	r->keep_alive = r->minor == 1 ? !r->close : r->keep_alive && !r->close;
	return m_path(r);
}

/* A chunk-size line l[0..len) through its LF: hex digits (at most 15),
 * white space, then nothing or extensions after a ';'. 0 or -1. */
static int
m_size_line(const char *l, size_t len, uint64_t *size)
{
	size_t end = len - 1 - (len >= 2 && l[len - 2] == '\r'), i = 0;

	*size = 0;
	for (; i < end && m_hex((unsigned char) l[i]) >= 0; i++) {
		if (i >= 15)
			return -1;
		*size = *size * 16 + (uint64_t) m_hex((unsigned char) l[i]);
	}
	if (i == 0)
		return -1;
	while (i < end && (l[i] == ' ' || l[i] == '\t'))
		i++;
	if (i < end && l[i] != ';')
		return -1;
	for (; i < end; i++)
		if (!m_vchar((unsigned char) l[i]))
			return -1;
	return 0;
}

/* A chunked body from in[0..n) into body: bytes used, or 0 with *st
 * (400, 413), or 0 with *st 0 when it is not all there. */
static size_t
m_chunked(const char *in, size_t n, mstr *body, int *st)
{
	size_t pos = 0, trailer = 0;

	*st = 0;
	for (;;) { /* size line */
		const char *l = in + pos, *nl = memchr(l, '\n', n - pos);
		size_t      len;
		uint64_t    size;

		if (nl == NULL) {
			*st = n - pos > 1024 ? 400 : 0;
			return 0;
		}
		len = (size_t) (nl - l) + 1;
		if (len > 1024 || m_size_line(l, len, &size) != 0)
			return *st = 400, 0;
		if (size > M_MAX_BODY - body->n)
			return *st = 413, 0;
		pos += len;
		if (size == 0)
			break;
		if (n - pos < size)
			return 0;
		mput(body, in + pos, (size_t) size);
		pos += (size_t) size;
		if (n - pos >= 1 && in[pos] == '\n')
			pos += 1;
		else if (n - pos >= 2 && in[pos] == '\r' &&
		    in[pos + 1] == '\n')
			pos += 2;
		else if (n - pos == 0 || (n - pos == 1 && in[pos] == '\r'))
			return 0;
		else
			return *st = 400, 0;
	}
	for (;;) { /* trailer lines, through the blank one */
		const char *l = in + pos, *nl = memchr(l, '\n', n - pos);
		size_t      len;

		if (nl == NULL) {
			*st = trailer + (n - pos) > (16u << 10) ? 400 : 0;
			return 0;
		}
		len = (size_t) (nl - l) + 1;
		trailer += len;
		if (trailer > (16u << 10))
			return *st = 400, 0;
		pos += len;
		if (len == 1 || (len == 2 && l[0] == '\r'))
			return pos;
	}
}

/* Offset of the end of the head at in[0..n) (its blank line), 0 if none. */
static size_t
m_head_end(const char *in, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (in[i] != '\n')
			continue;
		if (i + 1 < n && in[i + 1] == '\n')
			return i + 2;
		if (i + 2 < n && in[i + 1] == '\r' && in[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* The next request at in[*pos..n) into r and body: 0 when it is to be
 * handled, a status to refuse it with, or -1 when it is not all there
 * (the client's half-close then ends the connection without an answer).
 * Empty lines before it are skipped, as the server skips them. */
static int
m_next(const char *in, size_t n, size_t *pos, mreq *r, mstr *body)
{
	size_t hl;
	int    st;

	while (*pos < n && (in[*pos] == '\r' || in[*pos] == '\n'))
		(*pos)++;
	if (*pos == n)
		return -1;
	hl = m_head_end(in + *pos, n - *pos);
	if (hl > M_MAX_HEADERS || (hl == 0 && n - *pos > M_MAX_HEADERS))
		return 431;
	if (hl == 0)
		return -1;
	st = m_head(in + *pos, hl, r);
	*pos += hl;
	body->n = 0;
	if (st == 0 && r->has_len && r->len > M_MAX_BODY)
		st = 413;
	if (st == 0 && r->chunked) {
		size_t used = m_chunked(in + *pos, n - *pos, body, &st);
		if (used == 0 && st == 0)
			return -1;
		*pos += used;
	} else if (st == 0 && r->has_len) {
		if (n - *pos < r->len)
			return -1;
		mput(body, in + *pos, (size_t) r->len);
		*pos += (size_t) r->len;
	}
	return st;
}

/* What the server owes for in[0..n): one line per response, "NNN\n", or
 * for a 201 "201 " and h_model's body then "\n". heads[i]: response i
 * answers a HEAD (no body on the wire). Returns the status of the
 * refusal that ends it, 0 if none; *accepted counts the 201s. */
static int
m_expect(
    const char *in, size_t n, mstr *out, bool *heads, int max, int *accepted)
{
	static mreq r;
	static mstr body, reply;
	size_t      pos = 0;
	char        line[16];

	out->n = 0;
	for (int k = 0, st; k < max; k++) {
		if ((st = m_next(in, n, &pos, &r, &body)) < 0)
			return 0;
		heads[k] = st == 0 && strcmp(r.method, "HEAD") == 0;
		if (st != 0) {
			snprintf(line, sizeof(line), "%d\n", st);
			mputs(out, line);
			return st;
		}
		reply.n = 0;
		mfield(&reply, r.method, strlen(r.method));
		mfield(&reply, r.path.b, r.path.n);
		if (r.has_x)
			mfield(&reply, r.x, r.xn);
		else
			mputs(&reply, "-:");
		mfield(&reply, body.b, body.n);
		mputs(out, "201 ");
		if (!heads[k])
			mput(out, reply.b, reply.n);
		mputs(out, "\n");
		(*accepted)++;
		if (!r.keep_alive)
			return 0;
	}
	return 0;
}

/* --- generating requests --- */

static uint64_t m_seed;

static uint32_t
rnd(uint32_t n)
{
	m_seed ^= m_seed >> 12; /* xorshift64* */
	m_seed ^= m_seed << 25;
	m_seed ^= m_seed >> 27;
	return (uint32_t) ((m_seed * 2685821657736338717ull) >> 33) % n;
}

static const char *
g_eol(void)
{
	return rnd(4) == 0 ? "\n" : "\r\n";
}

static void
g_chars(mstr *s, const char *set, int max)
{
	for (int i = rnd((uint32_t) max + 1); i > 0; i--)
		mput(s, set + rnd((uint32_t) strlen(set)), 1);
}

/* A field value: white space around bytes HT, SP, visible, obs-text. */
static void
g_value(mstr *s)
{
	mputs(s, rnd(3) ? " " : rnd(2) ? "" : " \t ");
	for (int i = rnd(16); i > 0; i--) {
		char c =
		    (char) (rnd(8) == 0 ? 0x80 + rnd(128) : 0x21 + rnd(94));
		mput(s, rnd(10) == 0 ? " " : &c, 1);
	}
	mputs(s, rnd(3) ? "" : " \t");
}

/* An origin-form path (sometimes absolute-form, or "*" for OPTIONS)
 * with percent-escapes (never %00) and sometimes a query. */
static void
g_target(mstr *s, const char *method)
{
	char esc[8];

	if (strcmp(method, "OPTIONS") == 0 && rnd(3) == 0) {
		mputs(s, "*");
		return;
	}
	if (rnd(8) == 0)
		mputs(s, rnd(2) ? "http://h.test" : "HTTPS://h.test:8443");
	for (int i = 1 + rnd(3); i > 0; i--) {
		mputs(s, "/");
		g_chars(s, "abz09-._~!$&'()*+,;=:@", 6);
		if (rnd(3) == 0) {
			snprintf(esc, sizeof(esc), "%%%02X", 1 + rnd(255));
			mputs(s, esc);
		}
	}
	if (rnd(3) == 0) {
		mputs(s, "?a=");
		g_chars(s, "xy%/?", 5);
	}
}

/* The end of the head and a body of random bytes: none (kind 0), by
 * Content-Length (1) or chunked, with extensions and trailers (2). */
static void
g_body(mstr *s, int kind)
{
	static mstr body;
	char        line[64];

	body.n = 0;
	for (int i = kind ? rnd(300) : 0; i > 0; i--) {
		char b = (char) rnd(256);
		mput(&body, &b, 1);
	}
	if (kind != 2) {
		if (kind == 1) {
			snprintf(
			    line, sizeof(line), "Content-Length: %zu", body.n);
			mputs(s, line);
			mputs(s, g_eol());
		}
		mputs(s, g_eol());
		mput(s, body.b, body.n);
		return;
	}
	mputs(s, "Transfer-Encoding: chunked");
	mputs(s, g_eol());
	mputs(s, g_eol());
	for (size_t at = 0, n; at < body.n; at += n) {
		n = 1 + rnd((uint32_t) (body.n - at));
		snprintf(line, sizeof(line), rnd(2) ? "%zx%s" : "%zX%s", n,
		    rnd(4) ? "" : ";ext=\"1\"");
		mputs(s, line);
		mputs(s, g_eol());
		mput(s, body.b + at, n);
		mputs(s, g_eol());
	}
	mputs(s, "0");
	mputs(s, g_eol());
	if (rnd(3) == 0) {
		mputs(s, "X-Trailer: t");
		mputs(s, g_eol());
	}
	mputs(s, g_eol());
}

/* One valid request (its head within M_MAX_HEADERS, unless rarely). */
static void
g_request(mstr *s)
{
	static const char *const methods[] = {
	    "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"};
	static const char *const conn[] = {
	    NULL, "close", "keep-alive", "Keep-Alive, Upgrade"};
	const char *m = methods[rnd(7)], *c = conn[rnd(4)];
	int         minor = rnd(6) ? 1 : 0, kind = (int) rnd(3);

	if (rnd(8) == 0)
		mputs(s, g_eol()); /* an empty line before: ignored */
	mputs(s, m);
	mputs(s, " ");
	g_target(s, m);
	mputs(s, minor ? " HTTP/1.1" : " HTTP/1.0");
	mputs(s, g_eol());
	if (minor == 1 || rnd(2)) {
		mputs(s, rnd(2) ? "Host:" : "host:");
		g_value(s);
		mputs(s, g_eol());
	}
	for (int i = rnd(4); i > 0; i--) {
		mputs(s, "X-");
		g_chars(s, "abcXYZ019!#$%&'*+-.^_`|~", 10);
		mputs(s, ":");
		g_value(s);
		mputs(s, g_eol());
	}
	if (rnd(2)) {
		mputs(s, rnd(2) ? "X-Test:" : "x-TEST:");
		g_value(s);
		mputs(s, g_eol());
	}
	if (c != NULL) {
		mputs(s, "Connection: ");
		mputs(s, c);
		mputs(s, g_eol());
	}
	g_body(s, kind == 2 && minor == 0 ? 1 : kind); /* 1.0: no chunks */
}

/* Inserts p[0..n) at s->b[at] (when it fits). */
static void
g_insert(mstr *s, size_t at, const char *p, size_t n)
{
	if (s->n + n > M_CAP)
		return;
	memmove(s->b + at + n, s->b + at, s->n - at);
	memcpy(s->b + at, p, n);
	s->n += n;
}

/* The start of a line that begins with a hex digit (most likely a chunk
 * size), at or after at; s->n if none. */
static size_t
g_hex_line(const mstr *s, size_t at)
{
	for (; at + 1 < s->n; at++)
		if (s->b[at] == '\n' &&
		    m_hex((unsigned char) s->b[at + 1]) >= 0)
			return at + 1;
	return s->n;
}

/* One to three changes a proxy or an attacker could make. */
static void
g_mutate(mstr *s)
{
	static const char pick[] = "\r\n \t:;,09af%/x\x7f\x80\xff";
	static const struct {
		const char *p;
		size_t      n;
	} lines[] = {
	    {"Content-Length: 5\r\n", 19},
	    {"Content-Length: 0\r\n", 19},
	    {"Content-Length: 99999999999999999999999\r\n", 41},
	    {"Transfer-Encoding: chunked\r\n", 28},
	    {"Transfer-Encoding: gzip\r\n", 25},
	    {"Host: other\r\n", 13},
	    {" folded\r\n", 9},
	    {"Connection: close\r\n", 19},
	    {"X-Test: a\0b\r\n", 13},
	};

	for (int k = 1 + rnd(3); k > 0 && s->n > 0 && s->n < M_CAP - 64; k--) {
		size_t at = rnd((uint32_t) s->n), nl;
		char   c  = rnd(4) ? pick[rnd(sizeof(pick))] : (char) rnd(256);
		const char *first;
		int         i;

		switch (rnd(6)) {
		case 0: /* replace a byte */
			s->b[at] = c;
			break;
		case 1: /* insert one */
			g_insert(s, at, &c, 1);
			break;
		case 2: /* delete one */
			memmove(s->b + at, s->b + at + 1, s->n - at - 1);
			s->n--;
			break;
		case 3: /* repeat the line at */
			while (at > 0 && s->b[at - 1] != '\n')
				at--;
			for (nl = at; nl < s->n && s->b[nl] != '\n'; nl++)
				;
			if (nl < s->n)
				g_insert(s, nl + 1, s->b + at, nl - at + 1);
			break;
		case 4: /* a chunk size of 16 or more digits */
			g_insert(s, g_hex_line(s, at), "000000000000000", 15);
			break;
		default: /* a line after the request line */
			i = (int) rnd(sizeof(lines) / sizeof(lines[0]));
			if ((first = memchr(s->b, '\n', s->n)) != NULL)
				g_insert(s, (size_t) (first - s->b) + 1,
				    lines[i].p, lines[i].n);
		}
	}
}

/* --- sending them --- */

static mstr m_in, m_want, m_got, m_wire;
static char m_failure[2048];
static int  m_per_round, m_sent, m_mutated, m_accepted, m_refused[600];

/* The responses on the wire as m_expect writes them (heads: which
 * answer a HEAD, so carry no body). */
static void
m_read_back(const mstr *w, const bool *heads, int max, mstr *out)
{
	size_t pos = 0;
	int    k   = 0;

	out->n = 0;
	while (pos < w->n && k < max) {
		const char *h = w->b + pos, *end, *cl;
		size_t      hl, len;
		int         st;

		end = memmem(h, w->n - pos, "\r\n\r\n", 4);
		if (end == NULL || sscanf(h, "HTTP/1.1 %d ", &st) != 1) {
			mputs(out, "garbage\n");
			return;
		}
		hl  = (size_t) (end - h) + 4;
		cl  = memmem(h, hl, "\r\nContent-Length: ", 18);
		len = cl && !(st == 201 && heads[k])
		    ? strtoul(cl + 18, NULL, 10)
		    : 0;
		if (len > w->n - pos - hl)
			len = w->n - pos - hl;
		char num[16];
		snprintf(num, sizeof(num), st == 201 ? "%d " : "%d\n", st);
		mputs(out, num);
		if (st == 201) {
			mput(out, h + hl, len);
			mputs(out, "\n");
		}
		pos += hl + len;
		k++;
	}
}

/* Printable: what a failure shows of the bytes. */
static void
m_show(char *dst, size_t cap, const mstr *s)
{
	size_t o = 0;

	for (size_t i = 0; i < s->n && o + 5 < cap; i++) {
		unsigned char c = (unsigned char) s->b[i];
		o += (size_t) (c >= 0x20 && c < 0x7f && c != '\\'
		        ? snprintf(dst + o, cap - o, "%c", c)
		        : snprintf(dst + o, cap - o, "\\x%02x", c));
	}
	dst[o < cap ? o : cap - 1] = '\0';
}

/* Sends s whole, or one time in eight in two to four pieces 0.5 ms apart,
 * so that heads and chunks are also read across several reads. */
static void
m_send(int fd, const mstr *s)
{
	size_t at  = 0, cut;
	int    one = 1;

	if (rnd(8) != 0 || s->n < 2) {
		raw_send(fd, s->b, s->n);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (int pieces = 2 + (int) rnd(3); pieces > 1 && at < s->n;
	     pieces--) {
		cut = at + rnd((uint32_t) (s->n - at));
		raw_send(fd, s->b + at, cut - at);
		at = cut;
		usleep(500);
	}
	raw_send(fd, s->b + at, s->n - at);
}

static void *
bg_model(void *arg)
{
	static bool heads[8], unused[8];
	static mstr gen_want;
	int         ignored = 0, st;

	(void) arg;
	for (int i = 0; i < m_per_round && m_failure[0] == '\0'; i++) {
		int     fd, reqs = 1 + (int) rnd(3);
		bool    mutate = rnd(10) < 6;
		ssize_t r;

		m_in.n = 0;
		for (int j = 0; j < reqs; j++)
			g_request(&m_in);
		/* Unchanged, the model must take it as generated. */
		st = m_expect(m_in.b, m_in.n, &gen_want, unused, 8, &ignored);
		if (st != 0 && st != 413 && st != 431) { /* only the limits */
			char shown[1024];
			m_show(shown, sizeof(shown), &m_in);
			snprintf(m_failure, sizeof(m_failure),
			    "the model refuses a generated request: %s",
			    shown);
			break;
		}
		if (mutate)
			g_mutate(&m_in);
		st = m_expect(m_in.b, m_in.n, &m_want, heads, 8, &m_accepted);
		m_refused[st]++;
		fd = raw_connect(port);
		m_send(fd, &m_in);
		shutdown(fd, SHUT_WR);
		m_wire.n = 0;
		while (m_wire.n < sizeof(m_wire.b) &&
		    (r = recv(fd, m_wire.b + m_wire.n,
		         sizeof(m_wire.b) - m_wire.n, 0)) > 0)
			m_wire.n += (size_t) r;
		close(fd);
		m_read_back(&m_wire, heads, 8, &m_got);
		m_sent++;
		m_mutated += mutate;
		if (m_got.n != m_want.n ||
		    memcmp(m_got.b, m_want.b, m_got.n)) {
			char in[900], want[500], got[500];
			m_show(in, sizeof(in), &m_in);
			m_show(want, sizeof(want), &m_want);
			m_show(got, sizeof(got), &m_got);
			snprintf(m_failure, sizeof(m_failure),
			    "sent: %s\nmodel: %s\nserver: %s", in, want, got);
		}
	}
	bg_done = true;
	return NULL;
}

/* Generated requests, pipelined one to three on a connection, and the
 * same with one to three bytes or lines changed (60 %), sent whole or in
 * pieces, each answered
 * exactly as the model of the framing says, byte for byte of what the
 * handler saw. ASH_HTTP_MODEL_RUNS (default 10,000) and _SEED for longer
 * runs by hand. */
ASH_TEST(requests_and_mutations_are_framed_as_the_model_says)
{
	ash_http_opts o = {
	    .max_body = M_MAX_BODY, .max_headers = M_MAX_HEADERS};
	ash_http_server   *srv;
	const char        *runs  = getenv("ASH_HTTP_MODEL_RUNS");
	const char        *seed  = getenv("ASH_HTTP_MODEL_SEED");
	int                total = runs ? atoi(runs) : 10000;
	unsigned long long first = seed ? strtoull(seed, NULL, 10) : 20261130;

	m_seed      = first;
	srv         = serve_raw(&o, h_model);
	m_per_round = 250; /* a round must end within run_until's 10 s */
	for (int done = 0; done < total && m_failure[0] == '\0';
	     done += m_per_round)
		bg_run(bg_model, NULL);
	if (m_failure[0] != '\0')
		ASH_T_FAILF("seed %llu: %s", first, m_failure);
	/* The mix must have reached every outcome. */
	ASH_T_TRUE(m_sent >= total);
	ASH_T_TRUE(m_mutated > total / 3);
	ASH_T_TRUE(m_accepted > total / 2);
	ASH_T_TRUE(m_refused[400] > 0 && m_refused[413] > 0);
	ASH_T_TRUE(m_refused[431] > 0 && m_refused[501] > 0);
	ASH_T_TRUE(m_refused[505] > 0);
	teardown(srv);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(round_trip_with_headers_query_and_body),
    ASH_TEST_ENTRY(json_error_body_exact_text),
    ASH_TEST_ENTRY(body_over_limit_gets_json_413_before_the_body),
    ASH_TEST_ENTRY(chunked_body_over_limit_gets_json_413),
    ASH_TEST_ENTRY(ambiguous_or_malformed_requests_are_refused),
    ASH_TEST_ENTRY(chunked_bodies_bare_lf_and_versions_are_read),
    ASH_TEST_ENTRY(expect_100_continue_gets_the_interim_answer),
    ASH_TEST_ENTRY(requests_sent_a_byte_at_a_time_are_read_the_same),
    ASH_TEST_ENTRY(headers_over_limit_get_json_431),
    ASH_TEST_ENTRY(pipelined_requests_answered_in_order),
    ASH_TEST_ENTRY(a_full_input_buffer_pauses_reading_until_the_reply),
    ASH_TEST_ENTRY(async_reply_from_a_timer),
    ASH_TEST_ENTRY(client_gone_before_async_reply),
    ASH_TEST_ENTRY(client_reset_before_async_reply),
    ASH_TEST_ENTRY(client_gone_after_pipelining_more_bytes),
    ASH_TEST_ENTRY(release_inside_on_gone),
    ASH_TEST_ENTRY(server_close_marks_pending_requests_gone),
    ASH_TEST_ENTRY(stop_accepting_keeps_accepted_connections),
    ASH_TEST_ENTRY(slow_clients_are_cut_but_slow_handlers_are_not),
    ASH_TEST_ENTRY(nul_in_path_and_unknown_methods_refused),
    ASH_TEST_ENTRY(out_of_descriptors_pauses_accepting_without_spinning),
    ASH_TEST_ENTRY(a_client_that_does_not_read_is_not_answered_ahead),
    ASH_TEST_ENTRY(open_refuses_bad_addresses_and_busy_ports),
    ASH_TEST_ENTRY(ipv6_listener_reports_ipv6_peer),
    ASH_TEST_ENTRY(tls_round_trip_and_old_versions_refused),
    ASH_TEST_ENTRY(large_responses_are_written_whole),
    ASH_TEST_ENTRY(a_request_waiting_behind_a_slow_answer_is_not_cut),
    ASH_TEST_ENTRY(tls_client_gone_before_reply),
    ASH_TEST_ENTRY(tls_files_must_load_and_match),
    ASH_TEST_ENTRY(requests_and_mutations_are_framed_as_the_model_says))
