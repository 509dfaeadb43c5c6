/*
 * httpc.c - outbound HTTP(S) on curl multi driven by libevent (curl's
 * hiperfifo.c design). Loop thread only.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION: one
 * libevent event per socket, found again through curl_multi_assign) and
 * when to call it back (CURLMOPT_TIMERFUNCTION: one evtimer; -1 deletes it,
 * 0 fires on the next loop turn). Our events call curl_multi_socket_action()
 * and then collect finished transfers with curl_multi_info_read(). User
 * callbacks never run inside curl, only from our libevent callbacks after
 * socket_action has returned, or from cancel/free. So a callback may start
 * transfers and cancel others; it may not free the client (asserted),
 * because free has to finish every transfer first.
 *
 * A transfer lives on the client's list from send until its callback has
 * returned: completion takes the easy handle out of the multi, runs the
 * callback exactly once, then frees everything.
 *
 * Private addresses: for an untrusted URL (unless allow_private) the
 * open-socket callback looks at the address curl is about to connect to,
 * refuses a private one with CURL_SOCKET_BAD and notes it, so the failed
 * transfer reports ASH_EFORBIDDEN. Such transfers never reuse a pooled
 * connection (CURLOPT_FRESH_CONNECT): a trusted transfer may have left one
 * open to a private address. Proxies from the environment are ignored, so
 * the checked address is the one the request goes to.
 */
#include <ashoon/httpc.h>
#include <ashoon/log.h>

#include <curl/curl.h>
#include <event2/event.h>

#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define DEFAULT_MAX_RESPONSE (8u << 20) /* max_response == 0 */
#define MAX_HEADER_BYTES     (256u << 10)
#define MAX_REDIRECTS        10

typedef struct httpc_sock {
	struct httpc_sock *prev, *next; /* client's list */
	struct event      *ev;          /* what curl asked us to watch */
} httpc_sock;

typedef struct httpc_header {
	char *name;
	char *value;
} httpc_header;

struct ash_httpc_xfer {
	ash_httpc_xfer    *prev, *next; /* client's in-flight list */
	ash_httpc         *c;
	CURL              *easy;
	struct curl_slist *hdrs; /* request headers */
	ash_httpc_cb       cb;
	void              *arg;
	char              *buf; /* response body, NUL-terminated */
	size_t             len, cap, max;
	httpc_header      *h; /* response headers of the final response */
	size_t             nh, caph, hbytes;
	bool               guard;     /* refuse private addresses */
	bool               forbidden; /* the guard refused a connect */
	bool               too_big;   /* a cap stopped the transfer */
	bool               done;      /* callback running or ran */
	ash_httpc_response resp;
	char               err[CURL_ERROR_SIZE];
};

struct ash_httpc {
	struct event_base *base;
	CURLM             *multi;
	struct event      *timer;
	ash_httpc_xfer    *xfers; /* in flight */
	httpc_sock        *socks; /* watched sockets */
	char              *user_agent;
	bool               allow_private;
	bool               closing; /* ash_httpc_free is running */
	int                in_cb;   /* user callbacks on the stack */
};

static pthread_once_t httpc_once = PTHREAD_ONCE_INIT;
static CURLcode       httpc_global_rc;

static void
httpc_global_init(void)
{
	httpc_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool
httpc_v4_private(uint32_t a) /* host byte order */
{
	return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 ||
	    (a >> 20) == 0xac1 ||  /* 172.16.0.0/12 */
	    (a >> 16) == 0xc0a8 || /* 192.168.0.0/16 */
	    (a >> 16) == 0xa9fe || /* 169.254.0.0/16 */
	    (a >> 22) == 0x191 ||  /* 100.64.0.0/10 */
	    (a >> 28) >= 0xe;      /* 224/4, 240/4, broadcast */
}

static uint32_t
httpc_v4_at(const unsigned char *b)
{
	return (uint32_t) b[0] << 24 | (uint32_t) b[1] << 16 |
	    (uint32_t) b[2] << 8 | b[3];
}

static bool
httpc_v6_private(const unsigned char *b)
{
	static const unsigned char zero[16];
	static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};

	if (memcmp(b, zero, 15) == 0 && b[15] <= 1)
		return true; /* :: and ::1 */
	if ((b[0] & 0xfe) == 0xfc || b[0] == 0xff)
		return true; /* fc00::/7, ff00::/8 */
	if (b[0] == 0xfe && (b[1] & 0x80) == 0x80)
		return true; /* fe80::/10, and deprecated site-local fec0::/10
		              */
	if (memcmp(b, zero, 10) == 0 && b[10] == 0xff && b[11] == 0xff)
		return httpc_v4_private(httpc_v4_at(b + 12)); /* v4-mapped */
	if (memcmp(b, nat64, 12) == 0)
		return httpc_v4_private(
		    httpc_v4_at(b + 12)); /* 64:ff9b::/96 */
	return false;
}

static bool
httpc_addr_private(const struct sockaddr *sa, unsigned len)
{
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in))
		return httpc_v4_private(
		    ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr));
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6))
		return httpc_v6_private(
		    ((const struct sockaddr_in6 *) sa)->sin6_addr.s6_addr);
	return true; /* anything else (AF_UNIX...) is not for untrusted URLs */
}

static curl_socket_t
httpc_on_opensocket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	ash_httpc_xfer *x = arg;

	if (x->guard && httpc_addr_private(&a->addr, a->addrlen)) {
		x->forbidden = true;
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static size_t
httpc_on_write(char *ptr, size_t size, size_t n, void *arg)
{
	ash_httpc_xfer *x   = arg;
	size_t          len = size * n;

	if (len > x->max - x->len) {
		x->too_big = true;
		return 0; /* CURLE_WRITE_ERROR */
	}
	if (x->len + len + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;
		while (cap < x->len + len + 1)
			cap *= 2;
		if (cap > x->max + 1)
			cap = x->max + 1;
		x->buf = ash_xrealloc(x->buf, cap);
		x->cap = cap;
	}
	memcpy(x->buf + x->len, ptr, len);
	x->len += len;
	x->buf[x->len] = '\0';
	return len;
}

static void
httpc_headers_clear(ash_httpc_xfer *x)
{
	for (size_t i = 0; i < x->nh; i++) {
		free(x->h[i].name);
		free(x->h[i].value);
	}
	x->nh = 0;
}

/* [p, p+n) without surrounding blanks and line ends, as a new string. */
static char *
httpc_trim_dup(const char *p, size_t n)
{
	while (n > 0 && (*p == ' ' || *p == '\t')) {
		p++;
		n--;
	}
	while (n > 0 && strchr(" \t\r\n", p[n - 1]) != NULL)
		n--;
	return ash_xstrndup(p, n);
}

static size_t
httpc_on_header(char *buf, size_t size, size_t n, void *arg)
{
	ash_httpc_xfer *x   = arg;
	size_t          len = size * n;
	const char     *colon;

	if ((x->hbytes += len) > MAX_HEADER_BYTES) {
		x->too_big = true;
		return 0;
	}
	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		httpc_headers_clear(x); /* a new response (after 1xx) */
		return len;
	}
	if ((colon = memchr(buf, ':', len)) == NULL)
		return len; /* the blank line */
	if (x->nh == x->caph) {
		x->caph = x->caph ? x->caph * 2 : 16;
		x->h    = ash_xrealloc(x->h, x->caph * sizeof(*x->h));
	}
	x->h[x->nh].name = httpc_trim_dup(buf, (size_t) (colon - buf));
	x->h[x->nh].value =
	    httpc_trim_dup(colon + 1, len - (size_t) (colon - buf) - 1);
	x->nh++;
	return len;
}

static void
xfer_free(ash_httpc_xfer *x)
{
	curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->hdrs);
	httpc_headers_clear(x);
	free(x->h);
	free(x->buf);
	free(x);
}

static void
xfer_unlink(ash_httpc *c, ash_httpc_xfer *x)
{
	if (x->prev != NULL)
		x->prev->next = x->next;
	else
		c->xfers = x->next;
	if (x->next != NULL)
		x->next->prev = x->prev;
}

static ash_err
httpc_map(const ash_httpc_xfer *x, CURLcode res)
{
	switch (res) {
	case CURLE_OK:
		return ASH_OK;
	case CURLE_OPERATION_TIMEDOUT:
		return ASH_ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return x->forbidden ? ASH_EFORBIDDEN : ASH_EUNAVAIL;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return ASH_EUNAVAIL;
	case CURLE_WRITE_ERROR:
		return x->too_big ? ASH_ETOOBIG : ASH_EUPSTREAM;
	case CURLE_FILESIZE_EXCEEDED:
		return ASH_ETOOBIG;
	default:
		return ASH_EUPSTREAM;
	}
}

/* Takes x out of curl and the list, runs its callback once, frees it. */
static void
xfer_finish(ash_httpc_xfer *x, ash_err rv)
{
	ash_httpc *c      = x->c;
	long       status = 0;
	curl_off_t clen   = -1;

	curl_multi_remove_handle(c->multi, x->easy);
	xfer_unlink(c, x);
	x->done = true;
	if (rv == ASH_OK) {
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
		x->resp.status   = status;
		x->resp.body     = x->buf ? x->buf : "";
		x->resp.body_len = x->len;
		curl_easy_getinfo(
		    x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
		x->resp.content_length = clen;
	} else if (rv != ASH_ECANCELED)
		ash_log_debug(NULL, "HTTPC-FAIL", "transfer failed: %s (%s)",
		    ash_strerror(rv), x->err);
	c->in_cb++;
	x->cb(x->arg, rv, rv == ASH_OK ? &x->resp : NULL);
	c->in_cb--;
	xfer_free(x);
}

static void
httpc_collect(ash_httpc *c)
{
	CURLMsg *msg;
	int      left;

	while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
		CURLcode res = msg->data.result;
		char    *priv;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		xfer_finish((ash_httpc_xfer *) priv,
		    httpc_map((ash_httpc_xfer *) priv, res));
	}
}

static void
httpc_on_event(evutil_socket_t fd, short what, void *arg)
{
	ash_httpc *c = arg;
	int        running;
	int        action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) |
	    ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);

	curl_multi_socket_action(c->multi, fd, action, &running);
	httpc_collect(c);
}

static void
httpc_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	ash_httpc *c = arg;
	int        running;

	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	httpc_collect(c);
}

static int
httpc_on_timer(CURLM *multi, long ms, void *arg)
{
	ash_httpc     *c  = arg;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	if (ms < 0)
		evtimer_del(c->timer);
	else
		evtimer_add(c->timer, &tv); /* 0: on the next loop turn */
	return 0;
}

static void
sock_free(ash_httpc *c, httpc_sock *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		c->socks = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	event_free(s->ev);
	free(s);
}

static int
httpc_on_socket(CURL *easy, curl_socket_t fd, int what, void *arg, void *sp)
{
	ash_httpc  *c    = arg;
	httpc_sock *s    = sp;
	short       kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
	    ((what & CURL_POLL_OUT) ? EV_WRITE : 0);

	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			sock_free(c, s);
			curl_multi_assign(c->multi, fd, NULL);
		}
		return 0;
	}
	if (s == NULL) {
		s       = ash_xcalloc(1, sizeof(*s));
		s->next = c->socks;
		if (c->socks != NULL)
			c->socks->prev = s;
		c->socks = s;
		curl_multi_assign(c->multi, fd, s);
	} else
		event_free(s->ev);
	s->ev = event_new(c->base, fd, kind, httpc_on_event, c);
	ASH_ASSERT(s->ev != NULL);
	event_add(s->ev, NULL);
	return 0;
}

/* Loop thread. ASH_EUNAVAIL when curl cannot resolve names
 * asynchronously (it would block the loop). */
ash_err
ash_httpc_new(ash_loop *loop, const ash_httpc_opts *opts, ash_httpc **out)
{
	const curl_version_info_data *info;
	ash_httpc                    *c;

	pthread_once(&httpc_once, httpc_global_init);
	if (httpc_global_rc != CURLE_OK) {
		ash_log_error(NULL, "HTTPC-INIT",
		    "curl_global_init failed: %s",
		    curl_easy_strerror(httpc_global_rc));
		return ASH_EINTERNAL;
	}
	info = curl_version_info(CURLVERSION_NOW);
	if (!(info->features & CURL_VERSION_ASYNCHDNS)) {
		ash_log_error(NULL, "HTTPC-NO-ASYNC-DNS",
		    "libcurl %s resolves names synchronously, which would "
		    "block the event loop; install a libcurl built with the "
		    "threaded resolver or c-ares",
		    info->version);
		return ASH_EUNAVAIL;
	}
	c        = ash_xcalloc(1, sizeof(*c));
	c->base  = ash_loop_base(loop);
	c->multi = curl_multi_init();
	c->timer = evtimer_new(c->base, httpc_on_timeout, c);
	ASH_ASSERT(c->multi != NULL && c->timer != NULL);
	c->allow_private = opts != NULL && opts->allow_private;
	c->user_agent    = opts != NULL && opts->user_agent
	       ? ash_xstrdup(opts->user_agent)
	       : ash_xasprintf("ashoon/%s", ASH_VERSION);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, httpc_on_socket);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, httpc_on_timer);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	*out = c;
	return ASH_OK;
}

/* Loop thread, not from a transfer callback. */
void
ash_httpc_free(ash_httpc *c)
{
	if (c == NULL)
		return;
	ASH_ASSERT(c->in_cb == 0);
	c->closing = true;
	while (c->xfers != NULL)
		xfer_finish(c->xfers, ASH_ECANCELED);
	curl_multi_cleanup(c->multi); /* may still report sockets */
	while (c->socks != NULL)
		sock_free(c, c->socks);
	event_free(c->timer);
	free(c->user_agent);
	free(c);
}

static bool
httpc_url_ok(const char *url)
{
	CURLU *u      = curl_url();
	char  *scheme = NULL;
	bool   ok;

	ASH_ASSERT(u != NULL);
	ok = url != NULL &&
	    curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    (strcasecmp(scheme, "http") == 0 ||
	        strcasecmp(scheme, "https") == 0);
	curl_free(scheme);
	curl_url_cleanup(u);
	return ok;
}

/* host is d, or ends with "." d (both without a trailing dot). */
static bool
host_on_domain(const char *host, const char *d, size_t dlen)
{
	size_t hlen = strlen(host);

	if (dlen == 0 || hlen < dlen ||
	    strncasecmp(host + hlen - dlen, d, dlen) != 0)
		return false;
	return hlen == dlen || host[hlen - dlen - 1] == '.';
}

bool
ash_httpc_url_host_in(const char *url, const char *domains)
{
	CURLU      *u    = curl_url();
	char       *host = NULL;
	const char *d, *end;
	bool        in = false;

	ASH_ASSERT(u != NULL);
	if (httpc_url_ok(url) &&
	    curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		for (d = domains; d != NULL && !in; d = end ? end + 1 : NULL) {
			size_t n;

			d += strspn(d, " ");
			end = strchr(d, ',');
			n   = end ? (size_t) (end - d) : strlen(d);
			while (n > 0 && d[n - 1] == ' ')
				n--;
			in = host_on_domain(host, d, n);
		}
	}
	curl_free(host);
	curl_url_cleanup(u);
	return in;
}

/* An HTTP token of letters: it goes into the request line verbatim. */
static bool
httpc_method_ok(const char *m)
{
	size_t n = m ? strlen(m) : 0;

	if (n == 0 || n > 16)
		return false;
	for (size_t i = 0; i < n; i++)
		if (m[i] < 'A' || m[i] > 'Z')
			return false;
	return true;
}

static bool
httpc_request_ok(const ash_httpc_request *req)
{
	if (req == NULL || req->timeout_ms <= 0 || req->max_redirects < 0 ||
	    req->max_redirects > MAX_REDIRECTS ||
	    !httpc_method_ok(req->method) || !httpc_url_ok(req->url) ||
	    (req->body == NULL && req->body_len > 0))
		return false;
	for (const char *const *h = req->headers; h && *h; h++)
		if (strpbrk(*h, "\r\n") != NULL)
			return false; /* header injection */
	return true;
}

static void
xfer_set_method(CURL *e, const ash_httpc_request *req)
{
	bool post = strcmp(req->method, "POST") == 0;

	if (strcmp(req->method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
		return;
	}
	if (req->body != NULL || post) {
		/* The size first, so the copy takes body_len bytes. */
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t) req->body_len);
		curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS,
		    req->body != NULL ? req->body : "");
	}
	if (!post && strcmp(req->method, "GET") != 0)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	else if (!post && req->body != NULL)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "GET");
}

static void
xfer_set_callbacks(ash_httpc_xfer *x)
{
	CURL *e = x->easy;

	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, httpc_on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, httpc_on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, httpc_on_opensocket);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->err);
}

static void
xfer_setup(ash_httpc_xfer *x, const ash_httpc_request *req)
{
	CURL *e = x->easy;

	xfer_set_callbacks(x);
	curl_easy_setopt(e, CURLOPT_URL, req->url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) req->timeout_ms);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(
	    e, CURLOPT_FOLLOWLOCATION, req->max_redirects > 0 ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long) req->max_redirects);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_USERAGENT, x->c->user_agent);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) x->max);
	if (x->guard)
		curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
	xfer_set_method(e, req);
	x->hdrs = curl_slist_append(NULL, "Expect:"); /* no 100-continue */
	for (const char *const *h = req->headers; h && *h; h++)
		x->hdrs = curl_slist_append(x->hdrs, *h);
	ASH_ASSERT(x->hdrs != NULL);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
}

/* Loop thread. See httpc.h. */
ash_err
ash_httpc_send(ash_httpc *c, const ash_httpc_request *req, ash_httpc_cb cb,
    void *arg, ash_httpc_xfer **xfer)
{
	ash_httpc_xfer *x;

	if (c->closing)
		return ASH_ECLOSED;
	if (cb == NULL || !httpc_request_ok(req))
		return ASH_EINVAL;
	x      = ash_xcalloc(1, sizeof(*x));
	x->c   = c;
	x->cb  = cb;
	x->arg = arg;
	x->max = req->max_response ? req->max_response : DEFAULT_MAX_RESPONSE;
	x->guard = req->untrusted_url && !c->allow_private;
	x->easy  = curl_easy_init();
	ASH_ASSERT(x->easy != NULL);
	xfer_setup(x, req);
	if (curl_multi_add_handle(c->multi, x->easy) != CURLM_OK) {
		xfer_free(x);
		return ASH_EINTERNAL;
	}
	x->next = c->xfers;
	if (c->xfers != NULL)
		c->xfers->prev = x;
	c->xfers = x;
	if (xfer != NULL)
		*xfer = x;
	return ASH_OK;
}

/* Inside the transfer's callback only. */
const char *
ash_httpc_response_header(const ash_httpc_response *resp, const char *name)
{
	const ash_httpc_xfer *x =
	    (const ash_httpc_xfer *) (const void *) ((const char *) resp -
	        offsetof(ash_httpc_xfer, resp));

	for (size_t i = x->nh; i-- > 0;)
		if (strcasecmp(x->h[i].name, name) == 0)
			return x->h[i].value;
	return NULL;
}

/* Loop thread. A no-op from inside the transfer's own callback. */
void
ash_httpc_cancel(ash_httpc_xfer *xfer)
{
	if (xfer == NULL || xfer->done)
		return;
	xfer_finish(xfer, ASH_ECANCELED);
}
