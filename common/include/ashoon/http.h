/*
 * ashoon/http.h - HTTP/1.1 (and TLS) server on the loop.
 *
 * One handler sees every request (routing is the caller's). The handler may
 * answer at once or later (after NNG or DB work); it must answer exactly
 * once with an ash_http_reply* call, unless the client went away first:
 * then the request is "gone", replies are silently dropped, and the
 * on_gone callback (if any) runs so the caller can release its state. The
 * ash_http_req stays valid until the reply is sent or, if gone, until the
 * caller either calls ash_http_req_release() or replies (one of the two,
 * once). A client that closes or resets its connection while its request
 * is pending is gone, and so is one that half-closes (shutdown(SHUT_WR))
 * after sending it. Loop thread only.
 *
 * Requests on a connection are answered in order (pipelining), the next
 * one taken only once the last answer is with the kernel: a client that
 * does not read gets no answers ahead. Requests it sent before a
 * half-close are still answered when they wait behind an answer, not a
 * handler. Keep-alive is HTTP/1.1's default and HTTP/1.0's on request;
 * Connection: close (from the client, or set by the handler on its
 * response) closes after the response. Expect: 100-continue gets its
 * interim answer.
 *
 * Limits: a request whose Content-Length exceeds max_body gets 413 with
 * the JSON error before its body is read, a chunked body gets it once it
 * passes max_body, and a head over max_headers (or over 100 fields) gets
 * 431; the handler never sees either. Heads that two parsers could frame
 * differently (Content-Length with Transfer-Encoding, two different
 * Content-Lengths, line folding, a space before a colon, control bytes)
 * get 400, a transfer coding other than chunked or a method other than
 * GET POST PUT PATCH DELETE OPTIONS HEAD gets 501, a version other than
 * HTTP/1.0 and 1.1 gets 505: all with the JSON error and Connection:
 * close.
 *
 * A connection idle (or a body arriving, or a response leaving) for
 * timeout_s is cut, and so is one whose request head has not arrived whole
 * timeout_s after its first byte, or after the answer before it was
 * written (a client trickling it a byte at a time); one whose request is
 * with the handler is not. TLS (>= 1.2) is on when
 * tls_cert and tls_key are set.
 */
#ifndef ASHOON_HTTP_H
#define ASHOON_HTTP_H

#include <ashoon/loop.h>

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct ash_http_server ash_http_server;
typedef struct ash_http_req    ash_http_req;

typedef struct ash_http_opts {
	const char *addr;     /* "host:port", "[v6]:port" or ":port" (all
	                         addresses); port 0 picks a free one */
	const char *tls_cert; /* PEM chain path, or NULL/"" for plain HTTP */
	const char *tls_key;  /* PEM key path */
	size_t      max_body; /* bytes; 0 = 1 MiB */
	size_t      max_headers; /* bytes of the request head; 0 = 16 KiB */
	int         timeout_s;   /* read/write timeout per connection;
	                            <= 0 = 30 */
} ash_http_opts;

typedef void (*ash_http_handler)(ash_http_req *req, void *arg);

/* Loop thread. Binds and listens. ASH_EINVAL for a bad addr or unreadable
 * TLS files, ASH_EUNAVAIL if the address cannot be bound. */
ash_err ash_http_server_open(ash_loop *loop, const ash_http_opts *opts,
    ash_http_handler handler, void *arg, ash_http_server **out) ASH_MUSTCHECK;

/* The bound TCP port (useful with port 0). */
int ash_http_server_port(const ash_http_server *srv);

/* Closes the listening sockets; requests already accepted continue. */
void ash_http_server_stop_accepting(ash_http_server *srv);

/* Frees the server and every connection. Requests still unanswered are
 * marked gone first (their on_gone runs). NULL is fine. Not from inside
 * the handler. */
void ash_http_server_close(ash_http_server *srv);

/* Request accessors; returned strings are borrowed from req and stay
 * valid while req does (gone or not). */
const char *ash_http_req_method(const ash_http_req *req); /* "GET", ... */
const char *ash_http_req_path(const ash_http_req *req);   /* decoded, no
                                                             query string */
/* The first field of that name (any case), NULL if absent. */
const char *ash_http_req_header(const ash_http_req *req, const char *name);
/* Every field of that name joined with ", " in the order they came, which
 * RFC 9110 §5.3 makes the same as one field holding that list; NULL if
 * absent. For list fields where the last element counts (a proxy may add
 * its own X-Forwarded-For line after the client's). free() it. */
char *ash_http_req_header_list(const ash_http_req *req, const char *name);
const char *ash_http_req_peer(const ash_http_req *req); /* client IP */
/* Value of one query-string parameter (decoded), NULL if absent. */
const char *ash_http_req_query(ash_http_req *req, const char *key);
/* The whole body as one contiguous buffer (not NUL-terminated). */
void ash_http_req_body(ash_http_req *req, const char **data, size_t *len);

/* Response headers; call before replying. */
void ash_http_req_set_header(
    ash_http_req *req, const char *name, const char *value);

/* Sends the response and frees req (unless gone: then nothing is sent and
 * req is freed too). content_type may be NULL (no Content-Type). status is
 * 200..599. A HEAD response carries Content-Length: len but no body; 204
 * and 304 carry neither. */
void ash_http_reply(ash_http_req *req, int status, const char *content_type,
    const char *body, size_t len);
void ash_http_reply_json(ash_http_req *req, int status, const cJSON *doc);

/* The platform's error body:
 *   {"error":{"code":code,"message":message,"request_id":request_id}}
 * request_id may be NULL (then omitted). */
void ash_http_reply_error(ash_http_req *req, int status, const char *code,
    const char *message, const char *request_id);

/* Called on the loop when the client disconnects before the reply. After
 * it the caller must call ash_http_req_release() once it holds no more
 * references (possibly inside the callback), or reply (dropped). Register
 * it before the handler returns: a disconnect is only noticed on the loop,
 * and a later registration is not called for one already noticed (check
 * ash_http_req_gone()). ash_http_req_release() on a request that is not
 * gone is a programming error (asserted). */
void ash_http_req_on_gone(ash_http_req *req, void (*cb)(void *arg), void *arg);
bool ash_http_req_gone(const ash_http_req *req);
void ash_http_req_release(ash_http_req *req);

/* Caller-owned per-request pointer (e.g. the gateway's call state). */
void  ash_http_req_set_data(ash_http_req *req, void *data);
void *ash_http_req_data(const ash_http_req *req);

#endif
