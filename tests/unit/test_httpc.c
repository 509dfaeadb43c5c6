/* Unit tests: httpc (curl multi on libevent) against the real http server
 * on the same loop, plus raw sockets for servers that misbehave. */
#include <ash_test.h>
#include <ash_test_loop.h>
#include <ashoon/http.h>
#include <ashoon/httpc.h>
#include <ashoon/loop.h>

#include <event2/event.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- a server for the client to talk to --------------------------- */

typedef struct seen {
	int           calls;
	int           gone;
	char          method[16];
	char          agent[64];
	size_t        body_len;
	ash_http_req *held[64];
	int           nheld;
} seen;

static seen S;

static void
note(ash_http_req *req)
{
	const char *ua = ash_http_req_header(req, "User-Agent");
	const char *data;

	S.calls++;
	snprintf(S.method, sizeof(S.method), "%s", ash_http_req_method(req));
	snprintf(S.agent, sizeof(S.agent), "%s", ua ? ua : "");
	ash_http_req_body(req, &data, &S.body_len);
}

/* /big/N: N bytes; /dup: two X-Dup headers; /to/URL: a 302 to URL (path
 * or absolute); else "<method> <len>". */
static void
h_serve(ash_http_req *req, void *arg)
{
	const char *path = ash_http_req_path(req);
	char        out[64];
	int         n;

	note(req);
	if (strncmp(path, "/big/", 5) == 0) {
		size_t len  = strtoul(path + 5, NULL, 10);
		char  *body = malloc(len + 1);
		memset(body, 'x', len);
		ash_http_reply(req, 200, "text/plain", body, len);
		free(body);
		return;
	}
	if (strncmp(path, "/to/", 4) == 0) { /* a redirect to the rest */
		ash_http_req_set_header(req, "Location", path + 4);
		ash_http_req_set_header(req, "X-Dup", "redirect");
		ash_http_reply(req, 302, "text/plain", "moved", 5);
		return;
	}
	if (strcmp(path, "/dup") == 0) {
		ash_http_req_set_header(req, "X-Dup", "first");
		ash_http_req_set_header(req, "X-Dup", "second");
	}
	n = snprintf(
	    out, sizeof(out), "%s %zu", ash_http_req_method(req), S.body_len);
	ash_http_reply(req, strcmp(path, "/missing") == 0 ? 404 : 200,
	    "text/plain", out, (size_t) n);
}

static void
on_held_gone(void *arg)
{
	S.gone++;
	ash_http_req_release(arg);
}

/* Keeps every request; they end when the client goes away. */
static void
h_hold(ash_http_req *req, void *arg)
{
	note(req);
	ash_http_req_on_gone(req, on_held_gone, req);
	S.held[S.nheld++] = req;
}

static void
on_release_all(evutil_socket_t fd, short what, void *arg)
{
	for (int i = 0; i < S.nheld; i++) {
		char body[16];
		int  n = snprintf(body, sizeof(body), "r%d", i);
		ash_http_reply(S.held[i], 200, "text/plain", body, (size_t) n);
	}
	S.nheld = 0;
}

/* Holds requests until `*arg` of them are waiting, then answers all. */
static void
h_gather(ash_http_req *req, void *arg)
{
	struct timeval now = {0, 0};

	note(req);
	S.held[S.nheld++] = req;
	if (S.nheld == *(int *) arg)
		event_base_once(ash_loop_base(loop), -1, EV_TIMEOUT,
		    on_release_all, NULL, &now);
}

static ash_http_server *
serve(ash_http_handler h, void *arg, char *base, size_t cap)
{
	ash_http_opts    o   = {.addr = "127.0.0.1:0", .max_body = 1 << 20};
	ash_http_server *srv = NULL;

	ASH_T_OK(ash_http_server_open(loop, &o, h, arg, &srv));
	snprintf(base, cap, "http://127.0.0.1:%d", ash_http_server_port(srv));
	return srv;
}

/* ---- client side --------------------------------------------------- */

typedef struct fetch {
	bool    done;
	ash_err rv;
	long    status;
	char    body[256];
	size_t  len;
	char    dup[32];
	bool    no_such_header;
	int64_t clen;
	int     order; /* completion order */
} fetch;

static int completions;

static void
on_fetched(void *arg, ash_err rv, const ash_httpc_response *resp)
{
	fetch      *f = arg;
	const char *dup;

	f->done  = true;
	f->rv    = rv;
	f->order = ++completions;
	if (resp == NULL)
		return;
	f->status = resp->status;
	f->len    = resp->body_len;
	f->clen   = resp->content_length;
	snprintf(f->body, sizeof(f->body), "%s", resp->body);
	dup = ash_httpc_response_header(resp, "x-DUP");
	snprintf(f->dup, sizeof(f->dup), "%s", dup ? dup : "");
	f->no_such_header = ash_httpc_response_header(resp, "X-None") == NULL;
}

static ash_httpc_request
request(const char *method, const char *url)
{
	return (ash_httpc_request) {
	    .method = method, .url = url, .timeout_ms = 5000};
}

static void
start(ash_httpc *c, const ash_httpc_request *r, fetch *f)
{
	memset(f, 0, sizeof(*f));
	ASH_T_OK(ash_httpc_send(c, r, on_fetched, f, NULL));
}

static fetch  F[64];
static size_t nf;

static bool
all_done(void)
{
	for (size_t i = 0; i < nf; i++)
		if (!F[i].done)
			return false;
	return true;
}

static void
setup(void)
{
	memset(&S, 0, sizeof(S));
	memset(F, 0, sizeof(F));
	nf          = 0;
	completions = 0;
	ASH_T_OK(ash_loop_new(&loop));
}

ASH_TEST(get_status_body_and_headers)
{
	char              base[64], url[128];
	ash_httpc        *c;
	ash_http_server  *srv;
	ash_httpc_request r;

	setup();
	srv = serve(h_serve, NULL, base, sizeof(base));
	ASH_T_OK(ash_httpc_new(loop, NULL, &c));
	snprintf(url, sizeof(url), "%s/dup", base);
	r = request("GET", url);
	start(c, &r, &F[0]);
	snprintf(url, sizeof(url), "%s/missing", base);
	r = request("GET", url);
	start(c, &r, &F[1]);
	nf = 2;
	run_until(all_done);
	ASH_T_OK(F[0].rv);
	ASH_T_EQ_INT(F[0].status, 200);
	ASH_T_EQ_STR(F[0].body, "GET 0");
	ASH_T_EQ_INT(F[0].len, 5);
	ASH_T_EQ_INT(F[0].clen, 5);
	ASH_T_EQ_STR(F[0].dup, "second"); /* last one, any case */
	ASH_T_TRUE(F[0].no_such_header);
	ASH_T_OK(F[1].rv); /* an HTTP error status is still a response */
	ASH_T_EQ_INT(F[1].status, 404);
	ASH_T_EQ_STR(S.agent, "ashoon/" ASH_VERSION);
	ash_httpc_free(c);
	ash_http_server_close(srv);
	ash_loop_free(loop);
}

ASH_TEST(methods_and_bodies)
{
	static const char *const m[] = {
	    "POST", "PUT", "PATCH", "DELETE", "GET", "HEAD", "POST"};
	const char *const hdrs[] = {"Content-Type: application/json", NULL};
	char              base[64], url[128];
	ash_httpc        *c;
	ash_http_server  *srv;

	setup();
	srv = serve(h_serve, NULL, base, sizeof(base));
	ASH_T_OK(ash_httpc_new(loop, NULL, &c));
	snprintf(url, sizeof(url), "%s/m", base);
	for (int i = 0; i < 7; i++) {
		ash_httpc_request r = request(m[i], url);
		r.headers           = hdrs;
		if (i < 3) { /* bodies with a NUL inside */
			r.body     = "{\"a\":1}\0tail";
			r.body_len = 12;
		}
		start(c, &r, &F[0]);
		nf = 1;
		run_until(all_done);
		ASH_T_OK(F[0].rv);
		ASH_T_EQ_INT(F[0].status, 200);
		ASH_T_EQ_STR(S.method, m[i]);
		ASH_T_EQ_INT(S.body_len, i < 3 ? 12 : 0);
		if (strcmp(m[i], "HEAD") == 0) { /* no body, but its length */
			ASH_T_EQ_INT(F[0].len, 0);
			ASH_T_EQ_INT(F[0].clen, 6);
		}
	}
	ash_httpc_free(c);
	ash_http_server_close(srv);
	ash_loop_free(loop);
}

ASH_TEST(timeout_gives_etimedout)
{
	struct sockaddr_in a  = {.sin_family = AF_INET};
	socklen_t          al = sizeof(a);
	int                l  = socket(AF_INET, SOCK_STREAM, 0);
	char               url[64];
	ash_httpc         *c;
	ash_httpc_request  r;
	int64_t            t0;

	setup();
	/* Listens but never accepts or answers: the connect succeeds
	 * through the backlog and the response never comes. */
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASH_T_EQ_INT(bind(l, (struct sockaddr *) &a, sizeof(a)), 0);
	ASH_T_EQ_INT(listen(l, 8), 0);
	getsockname(l, (struct sockaddr *) &a, &al);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(a.sin_port));
	ASH_T_OK(ash_httpc_new(loop, NULL, &c));
	r            = request("GET", url);
	r.timeout_ms = 200;
	start(c, &r, &F[0]);
	nf = 1;
	t0 = ash_now_ms();
	run_until(all_done);
	ASH_T_ERR(F[0].rv, ASH_ETIMEDOUT);
	ASH_T_TRUE(ash_now_ms() - t0 >= 180);
	ASH_T_TRUE(ash_now_ms() - t0 < 3000);
	ash_httpc_free(c);
	close(l);
	ash_loop_free(loop);
}

ASH_TEST(refused_connection_gives_eunavail)
{
	struct sockaddr_in a  = {.sin_family = AF_INET};
	socklen_t          al = sizeof(a);
	int                l  = socket(AF_INET, SOCK_STREAM, 0);
	char               url[64];
	ash_httpc         *c;
	ash_httpc_request  r;

	setup();
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASH_T_EQ_INT(bind(l, (struct sockaddr *) &a, sizeof(a)), 0);
	getsockname(l, (struct sockaddr *) &a, &al);
	close(l); /* nobody listens on that port now */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(a.sin_port));
	ASH_T_OK(ash_httpc_new(loop, NULL, &c));
	r = request("GET", url);
	start(c, &r, &F[0]);
	nf = 1;
	run_until(all_done);
	ASH_T_ERR(F[0].rv, ASH_EUNAVAIL);
	ash_httpc_free(c);
	ash_loop_free(loop);
}

/* A server thread that answers one connection with a body of unknown
 * length (ended by close), so only the write callback can stop it. */
static atomic_int raw_port;

static void *
raw_close_delimited(void *arg)
{
	struct sockaddr_in a  = {.sin_family = AF_INET};
	socklen_t          al = sizeof(a);
	int                l  = socket(AF_INET, SOCK_STREAM, 0), s;
	static char        junk[20000];
	char               req[2048];

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(l, (struct sockaddr *) &a, sizeof(a));
	listen(l, 1);
	getsockname(l, (struct sockaddr *) &a, &al);
	raw_port = ntohs(a.sin_port);
	s        = accept(l, NULL, NULL);
	if (recv(s, req, sizeof(req), 0) > 0) {
		const char *head =
		    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
		memset(junk, 'j', sizeof(junk));
		send(s, head, strlen(head), MSG_NOSIGNAL);
		send(s, junk, sizeof(junk), MSG_NOSIGNAL);
	}
	close(s);
	close(l);
	return NULL;
}

ASH_TEST(response_over_cap_gives_etoobig)
{
	char              base[64], url[3][128], raw[64];
	ash_httpc        *c;
	ash_http_server  *srv;
	pthread_t         t;
	ash_httpc_request r;

	setup();
	srv = serve(h_serve, NULL, base, sizeof(base));
	ASH_T_OK(ash_httpc_new(loop, NULL, &c));
	snprintf(url[0], sizeof(url[0]), "%s/big/10000", base);
	snprintf(url[1], sizeof(url[1]), "%s/big/1000", base);
	for (int i = 0; i < 2; i++) {
		r              = request("GET", url[i]);
		r.max_response = 1000;
		start(c, &r, &F[i]);
	}
	/* Without Content-Length the cap is enforced while receiving. */
	raw_port = 0;
	pthread_create(&t, NULL, raw_close_delimited, NULL);
	while (raw_port == 0)
		usleep(1000);
	snprintf(raw, sizeof(raw), "http://127.0.0.1:%d/", (int) raw_port);
	r              = request("GET", raw);
	r.max_response = 5000;
	start(c, &r, &F[2]);
	nf = 3;
	run_until(all_done);
	pthread_join(t, NULL);
	ASH_T_ERR(F[0].rv, ASH_ETOOBIG);
	ASH_T_OK(F[1].rv); /* exactly at the cap is fine */
	ASH_T_EQ_INT(F[1].len, 1000);
	ASH_T_ERR(F[2].rv, ASH_ETOOBIG);
	ash_httpc_free(c);
	ash_http_server_close(srv);
	ash_loop_free(loop);
}

ASH_TEST(untrusted_url_cannot_reach_private_addresses)
{
	char              base[64], url[4][128];
	ash_httpc        *c, *open;
	ash_http_server  *srv;
	ash_httpc_opts    allow = {.allow_private = true};
	ash_httpc_request r;
	int               port;

	setup();
	srv  = serve(h_serve, NULL, base, sizeof(base));
	port = ash_http_server_port(srv);
	ASH_T_OK(ash_httpc_new(loop, NULL, &c));
	ASH_T_OK(ash_httpc_new(loop, &allow, &open));
	snprintf(url[0], sizeof(url[0]), "%s/x", base);
	snprintf(url[1], sizeof(url[1]), "http://localhost:%d/x", port);
	snprintf(url[2], sizeof(url[2]), "http://0.0.0.0:%d/x", port);
	snprintf(
	    url[3], sizeof(url[3]), "http://[::ffff:127.0.0.1]:%d/x", port);
	/* Trusted first, so a pooled connection to 127.0.0.1 exists. */
	r = request("GET", url[0]);
	start(c, &r, &F[0]);
	nf = 1;
	run_until(all_done);
	ASH_T_OK(F[0].rv);
	ASH_T_EQ_INT(S.calls, 1);
	for (int i = 0; i < 4; i++) {
		r               = request("GET", url[i]);
		r.untrusted_url = true;
		start(c, &r, &F[1 + i]);
	}
	r               = request("GET", url[0]);
	r.untrusted_url = true;
	start(open, &r, &F[5]);
	nf = 6;
	run_until(all_done);
	for (int i = 1; i <= 4; i++)
		ASH_T_ERR(F[i].rv, ASH_EFORBIDDEN);
	ASH_T_OK(F[5].rv); /* allow_private lets it through */
	ASH_T_EQ_INT(F[5].status, 200);
	ASH_T_EQ_INT(S.calls, 2); /* the refused ones never connected */
	ash_httpc_free(c);
	ash_httpc_free(open);
	ash_http_server_close(srv);
	ash_loop_free(loop);
}

/* A 3xx is the answer unless a request asks to follow; then the answer
 * and its headers are the last hop's, HEAD stays HEAD, and the hops are
 * bounded and http/https only. */
ASH_TEST(redirects_only_when_asked)
{
	char              base[64], url[5][160];
	ash_httpc        *c;
	ash_http_server  *srv;
	ash_httpc_request r;

	setup();
	srv = serve(h_serve, NULL, base, sizeof(base));
	ASH_T_OK(ash_httpc_new(loop, NULL, &c));
	snprintf(url[0], sizeof(url[0]), "%s/to/%s/dup", base, base);
	snprintf(url[1], sizeof(url[1]), "%s/to//to//dup", base);
	snprintf(url[2], sizeof(url[2]), "%s/to//to//to//dup", base);
	snprintf(url[3], sizeof(url[3]), "%s/to/ftp://127.0.0.1/x", base);
	r = request("GET", url[0]);
	start(c, &r, &F[0]);
	nf = 1;
	run_until(all_done);
	ASH_T_OK(F[0].rv);
	ASH_T_EQ_INT(F[0].status, 302);
	ASH_T_EQ_STR(F[0].dup, "redirect");
	ASH_T_EQ_INT(S.calls, 1);
	for (int i = 0; i < 4; i++) {
		r               = request("GET", url[i]);
		r.max_redirects = 2;
		start(c, &r, &F[1 + i]);
		nf = 2 + i;
		run_until(all_done);
	}
	ASH_T_OK(F[1].rv); /* absolute Location */
	ASH_T_EQ_INT(F[1].status, 200);
	ASH_T_EQ_STR(F[1].body, "GET 0");
	ASH_T_EQ_STR(F[1].dup, "second"); /* the last hop's headers */
	ASH_T_OK(F[2].rv);                /* two hops, relative */
	ASH_T_EQ_INT(F[2].status, 200);
	ASH_T_EQ_STR(F[2].body, "GET 0");
	ASH_T_ERR(F[3].rv, ASH_EUPSTREAM); /* three hops: too many */
	ASH_T_ERR(F[4].rv, ASH_EUPSTREAM); /* not http */
	r               = request("HEAD", url[1]);
	r.max_redirects = 2;
	S.calls         = 0;
	start(c, &r, &F[5]);
	nf = 6;
	run_until(all_done);
	ASH_T_EQ_INT(F[5].status, 200);
	ASH_T_EQ_INT(S.calls, 3);       /* two redirects and the answer */
	ASH_T_EQ_STR(S.method, "HEAD"); /* the last hop a HEAD too */
	ASH_T_EQ_INT(F[5].len, 0);
	r               = request("GET", url[0]);
	r.max_redirects = 11;
	ASH_T_ERR(ash_httpc_send(c, &r, on_fetched, &F[6], NULL), ASH_EINVAL);
	r.max_redirects = -1;
	ASH_T_ERR(ash_httpc_send(c, &r, on_fetched, &F[6], NULL), ASH_EINVAL);
	ash_httpc_free(c);
	ash_http_server_close(srv);
	ash_loop_free(loop);
}

ASH_TEST(fifty_concurrent_transfers)
{
	char             base[64], url[128];
	ash_httpc       *c;
	ash_http_server *srv;
	int              want = 50;

	setup();
	srv = serve(h_gather, &want, base, sizeof(base));
	ASH_T_OK(ash_httpc_new(loop, NULL, &c));
	snprintf(url, sizeof(url), "%s/c", base);
	for (int i = 0; i < want; i++) {
		ash_httpc_request r = request("GET", url);
		start(c, &r, &F[i]);
	}
	nf = (size_t) want;
	run_until(all_done); /* answers only once all 50 are in flight */
	for (int i = 0; i < want; i++) {
		ASH_T_OK(F[i].rv);
		ASH_T_EQ_INT(F[i].status, 200);
		ASH_T_TRUE(F[i].body[0] == 'r');
	}
	ASH_T_EQ_INT(S.calls, want);
	ash_httpc_free(c);
	ash_http_server_close(srv);
	ash_loop_free(loop);
}

static ash_err    refused_in_cb = ASH_OK;
static ash_httpc *cb_client;

static void
on_canceled_try_again(void *arg, ash_err rv, const ash_httpc_response *resp)
{
	ash_httpc_request r = request("GET", "http://127.0.0.1:1/");

	on_fetched(arg, rv, resp);
	refused_in_cb = ash_httpc_send(cb_client, &r, on_fetched, arg, NULL);
}

static bool
five_held(void)
{
	return S.nheld == 5;
}

static bool
five_gone(void)
{
	return S.gone == 5;
}

ASH_TEST(free_cancels_transfers_in_flight)
{
	char             base[64], url[128];
	ash_http_server *srv;

	setup();
	srv = serve(h_hold, NULL, base, sizeof(base));
	ASH_T_OK(ash_httpc_new(loop, NULL, &cb_client));
	snprintf(url, sizeof(url), "%s/hold", base);
	for (int i = 0; i < 5; i++) {
		ash_httpc_request r = request("GET", url);
		memset(&F[i], 0, sizeof(F[i]));
		ASH_T_OK(ash_httpc_send(
		    cb_client, &r, on_canceled_try_again, &F[i], NULL));
	}
	nf = 5;
	run_until(five_held);
	ash_httpc_free(cb_client); /* callbacks run before it returns */
	for (int i = 0; i < 5; i++) {
		ASH_T_TRUE(F[i].done);
		ASH_T_ERR(F[i].rv, ASH_ECANCELED);
	}
	ASH_T_ERR(refused_in_cb, ASH_ECLOSED);
	run_until(five_gone); /* the server saw every client leave */
	ash_http_server_close(srv);
	ash_loop_free(loop);
}

static ash_httpc      *chain_client;
static char            chain_url[128];
static int             chain_left;
static ash_httpc_xfer *victim;

static void
on_chain(void *arg, ash_err rv, const ash_httpc_response *resp)
{
	ash_httpc_request r = request("GET", chain_url);

	on_fetched(arg, rv, resp);
	ash_httpc_cancel(victim); /* no-op once it completed */
	victim = NULL;
	if (rv == ASH_OK && --chain_left > 0)
		ASH_T_OK(
		    ash_httpc_send(chain_client, &r, on_chain, arg, NULL));
}

static bool
chain_done(void)
{
	return chain_left == 0;
}

ASH_TEST(cancel_and_send_from_callback)
{
	struct sockaddr_in a  = {.sin_family = AF_INET};
	socklen_t          al = sizeof(a);
	int                l  = socket(AF_INET, SOCK_STREAM, 0);
	char               base[64], url[128];
	ash_http_server   *srv;
	ash_httpc_xfer    *x;
	ash_httpc_request  r;

	setup();
	srv = serve(h_serve, NULL, base, sizeof(base));
	ASH_T_OK(ash_httpc_new(loop, NULL, &chain_client));
	snprintf(url, sizeof(url), "%s/slow", base);
	r = request("GET", url);
	memset(&F[0], 0, sizeof(F[0]));
	ASH_T_OK(ash_httpc_send(chain_client, &r, on_fetched, &F[0], &x));
	ash_httpc_cancel(x); /* synchronous */
	ASH_T_TRUE(F[0].done);
	ASH_T_ERR(F[0].rv, ASH_ECANCELED);

	/* A transfer that never completes, canceled from another's
	 * callback. */
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASH_T_EQ_INT(bind(l, (struct sockaddr *) &a, sizeof(a)), 0);
	ASH_T_EQ_INT(listen(l, 8), 0);
	getsockname(l, (struct sockaddr *) &a, &al);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(a.sin_port));
	r = request("GET", url);
	memset(&F[2], 0, sizeof(F[2]));
	ASH_T_OK(ash_httpc_send(chain_client, &r, on_fetched, &F[2], &victim));

	snprintf(chain_url, sizeof(chain_url), "%s/chain", base);
	chain_left = 3; /* each callback starts the next transfer */
	r          = request("GET", chain_url);
	memset(&F[1], 0, sizeof(F[1]));
	ASH_T_OK(ash_httpc_send(chain_client, &r, on_chain, &F[1], NULL));
	run_until(chain_done);
	ASH_T_OK(F[1].rv);
	ASH_T_EQ_INT(S.calls, 3);
	ASH_T_TRUE(F[2].done);
	ASH_T_ERR(F[2].rv, ASH_ECANCELED);
	ash_httpc_free(chain_client);
	ash_http_server_close(srv);
	close(l);
	ash_loop_free(loop);
}

/* The host of a URL against a list of domains: subdomains count, names
 * that merely end the same, userinfo and query strings do not. */
ASH_TEST(url_host_on_listed_domains)
{
	static const char L[] = "fbcdn.net, cdninstagram.com ,fbsbx.com";

	ASH_T_TRUE(ash_httpc_url_host_in(
	    "https://scontent.xx.fbcdn.net/v/t1/a.jpg?oh=1", L));
	ASH_T_TRUE(ash_httpc_url_host_in("HTTPS://FBCDN.NET:443/x", L));
	ASH_T_TRUE(ash_httpc_url_host_in(
	    "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1", L));
	ASH_T_TRUE(ash_httpc_url_host_in("http://a.cdninstagram.com/", L));
	ASH_T_TRUE(!ash_httpc_url_host_in("https://evilfbcdn.net/", L));
	ASH_T_TRUE(!ash_httpc_url_host_in("https://fbcdn.net.evil.com/", L));
	ASH_T_TRUE(!ash_httpc_url_host_in("https://evil.com/?u=fbcdn.net", L));
	ASH_T_TRUE(!ash_httpc_url_host_in("https://fbcdn.net@evil.com/", L));
	ASH_T_TRUE(!ash_httpc_url_host_in("ftp://scontent.fbcdn.net/", L));
	ASH_T_TRUE(!ash_httpc_url_host_in("not a url", L));
	ASH_T_TRUE(!ash_httpc_url_host_in(NULL, L));
	ASH_T_TRUE(!ash_httpc_url_host_in("https://fbcdn.net/", ""));
	ASH_T_TRUE(!ash_httpc_url_host_in("https://fbcdn.net/", ","));
	ASH_T_TRUE(
	    ash_httpc_url_host_in("http://127.0.0.1:8080/m", "127.0.0.1"));
}

ASH_TEST(bad_requests_are_einval)
{
	static const char *const bad_urls[] = {
	    "ftp://127.0.0.1/x", "file:///etc/passwd", "not a url", NULL};
	const char *const crlf[] = {"X-A: 1\r\nX-Injected: 1", NULL};
	ash_httpc        *c;
	ash_httpc_request r;
	fetch             f;

	setup();
	ASH_T_OK(ash_httpc_new(loop, NULL, &c));
	for (int i = 0; i < 4; i++) {
		r = request("GET", bad_urls[i]);
		ASH_T_ERR(
		    ash_httpc_send(c, &r, on_fetched, &f, NULL), ASH_EINVAL);
	}
	r            = request("GET", "http://127.0.0.1/");
	r.timeout_ms = 0;
	ASH_T_ERR(ash_httpc_send(c, &r, on_fetched, &f, NULL), ASH_EINVAL);
	r = request("GE T", "http://127.0.0.1/");
	ASH_T_ERR(ash_httpc_send(c, &r, on_fetched, &f, NULL), ASH_EINVAL);
	r         = request("GET", "http://127.0.0.1/");
	r.headers = crlf;
	ASH_T_ERR(ash_httpc_send(c, &r, on_fetched, &f, NULL), ASH_EINVAL);
	ASH_T_ERR(ash_httpc_send(c, NULL, on_fetched, &f, NULL), ASH_EINVAL);
	ash_httpc_free(c);
	ash_httpc_free(NULL);
	ash_loop_free(loop);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(get_status_body_and_headers),
    ASH_TEST_ENTRY(methods_and_bodies),
    ASH_TEST_ENTRY(timeout_gives_etimedout),
    ASH_TEST_ENTRY(refused_connection_gives_eunavail),
    ASH_TEST_ENTRY(response_over_cap_gives_etoobig),
    ASH_TEST_ENTRY(untrusted_url_cannot_reach_private_addresses),
    ASH_TEST_ENTRY(redirects_only_when_asked),
    ASH_TEST_ENTRY(fifty_concurrent_transfers),
    ASH_TEST_ENTRY(free_cancels_transfers_in_flight),
    ASH_TEST_ENTRY(cancel_and_send_from_callback),
    ASH_TEST_ENTRY(url_host_on_listed_domains),
    ASH_TEST_ENTRY(bad_requests_are_einval))
