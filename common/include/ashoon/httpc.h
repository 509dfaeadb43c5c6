/*
 * ashoon/httpc.h - outbound HTTP on curl multi driven by libevent.
 *
 * One client per loop. curl tells us its sockets and timer
 * (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION) and we map them onto libevent
 * (curl's hiperfifo design). Every transfer has a timeout, NOSIGNAL,
 * http/https only, and a response size cap. curl must have an asynchronous
 * resolver (CURL_VERSION_ASYNCHDNS), checked by ash_httpc_new, so name
 * resolution never blocks the loop.
 *
 * Private addresses: a request marked `untrusted_url` (a URL a user gave us)
 * may not connect to loopback, private, link-local, CGNAT, multicast or
 * unspecified addresses (v4 and v6, including v4-mapped) unless the client
 * was created with allow_private. The check runs on the address curl
 * actually connects to (CURLOPT_OPENSOCKETFUNCTION), so DNS rebinding
 * cannot get around it; a refused connect is ASH_EFORBIDDEN. Such a
 * transfer never reuses a pooled connection. Redirects are followed only
 * when a request asks (max_redirects), to http/https URLs, and every
 * connection they open is checked the same way. Proxies from the
 * environment are not used, and "Expect: 100-continue" is not sent. Loop
 * thread only.
 *
 * Callbacks run from the loop, never from inside curl: a callback may
 * start transfers and cancel others, but not free the client (asserted).
 */
#ifndef ASHOON_HTTPC_H
#define ASHOON_HTTPC_H

#include <ashoon/loop.h>

#include <stdbool.h>
#include <stddef.h>

typedef struct ash_httpc      ash_httpc;
typedef struct ash_httpc_xfer ash_httpc_xfer;

typedef struct ash_httpc_opts {
	bool allow_private;     /* tests and on-prem: let untrusted URLs
	                           reach private addresses */
	const char *user_agent; /* NULL: "ashoon/<version>" */
} ash_httpc_opts;

typedef struct ash_httpc_request {
	const char        *method; /* "GET", "POST", ... */
	const char        *url;
	const char *const *headers; /* NULL-terminated "Name: value" lines */
	const char        *body;    /* may be NULL */
	size_t             body_len;
	int                timeout_ms;   /* whole transfer, > 0 */
	size_t             max_response; /* bytes; 0 = 8 MiB */
	bool               untrusted_url;
	int                max_redirects; /* 0..10; 0: a 3xx is the answer */
} ash_httpc_request;

typedef struct ash_httpc_response {
	long        status; /* HTTP status */
	const char *body;   /* NUL-terminated for convenience */
	size_t      body_len;
	/* The last response's Content-Length as curl read it (a HEAD's too),
	 * -1 when it gave none. */
	int64_t content_length;
} ash_httpc_response;

/* Loop thread, exactly once per accepted transfer. resp is non-NULL when
 * rv is ASH_OK (any HTTP status, including 4xx/5xx); borrowed until return.
 * ASH_ETIMEDOUT, ASH_EUNAVAIL (connect/DNS failure), ASH_ETOOBIG (response
 * over max_response), ASH_EFORBIDDEN (private address), ASH_ECANCELED,
 * ASH_EUPSTREAM (anything else: TLS failure, reset, malformed response). */
typedef void (*ash_httpc_cb)(
    void *arg, ash_err rv, const ash_httpc_response *resp);

/* Loop thread. opts may be NULL (defaults). ASH_EUNAVAIL when this libcurl
 * resolves names synchronously (it would block the loop). */
ash_err ash_httpc_new(
    ash_loop *loop, const ash_httpc_opts *opts, ash_httpc **out) ASH_MUSTCHECK;

/* Cancels every transfer (their callbacks get ASH_ECANCELED before this
 * returns; a send from one of them gets ASH_ECLOSED) and frees the client.
 * NULL is fine. Not from a transfer callback (asserted). */
void ash_httpc_free(ash_httpc *c);

/* Starts a transfer; the request is copied. *xfer (if xfer is non-NULL)
 * can be used to cancel until the callback has run. ASH_EINVAL for a bad
 * request (URL not http/https, method not a token of A-Z, timeout_ms <= 0,
 * max_redirects outside 0..10,
 * a header line with CR or LF, body_len without body), ASH_ECLOSED while
 * ash_httpc_free runs. */
ash_err ash_httpc_send(ash_httpc *c, const ash_httpc_request *req,
    ash_httpc_cb cb, void *arg, ash_httpc_xfer **xfer) ASH_MUSTCHECK;

/* Whether url (http or https) names a host on one of domains, a
 * comma-separated list: the domain itself or any name under it
 * ("fbcdn.net" takes "scontent.xx.fbcdn.net", not "evilfbcdn.net"), by
 * the host curl would connect to (userinfo, port and path do not count),
 * ignoring case. False for a URL that does not parse. Any thread. */
bool ash_httpc_url_host_in(const char *url, const char *domains);

/* Inside the callback only: a response header (case-insensitive), last
 * occurrence, NULL if absent. */
const char *ash_httpc_response_header(
    const ash_httpc_response *resp, const char *name);

/* Cancels one transfer: its callback runs with ASH_ECANCELED before this
 * returns. A no-op from inside that transfer's own callback. */
void ash_httpc_cancel(ash_httpc_xfer *xfer);

#endif
