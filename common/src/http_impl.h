/*
 * http_impl.h - what the http module's files share: http.c (the server and
 * the request API), http_conn.c (connections: reading, framing, writing,
 * closing) and http_parse.c (heads and chunked bodies). Never included
 * from outside the http module.
 */
#ifndef ASH_HTTP_IMPL_H
#define ASH_HTTP_IMPL_H

#include <ashoon/http.h>

#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include <stddef.h>
#include <stdint.h>

#define ASH__HTTP_MAX_FIELDS 100 /* header fields of one request */

/* --- http_parse.c ------------------------------------------------------- */

typedef struct ash__http_field {
	const char *name, *value; /* NUL-terminated, inside the head */
} ash__http_field;

typedef struct ash__http_head {
	const char     *method; /* static "GET", ... */
	char           *target; /* request-target as sent */
	int             minor;  /* HTTP/1.minor */
	bool            has_length;
	uint64_t        length; /* Content-Length (saturated) */
	bool            chunked;
	bool            close;      /* Connection: close */
	bool            keep_alive; /* after the reply (version and fields) */
	bool            expect_continue; /* Expect: 100-continue (HTTP/1.1) */
	int             hosts;           /* Host fields */
	int             nfields;
	ash__http_field fields[ASH__HTTP_MAX_FIELDS]; /* last: not zeroed */
} ash__http_head;

/* Length of the head at p[0..n) through its blank line, 0 while it is
 * incomplete. *scan (0 at first) lets the next call resume the search. */
size_t ash__http_head_len(const char *p, size_t n, size_t *scan);

/* Parses a complete head in place (NUL-terminates its parts). 0, or the
 * status to refuse it with (400, 431, 501, 505) and *why. */
int ash__http_parse_head(
    char *p, size_t len, ash__http_head *h, const char **why);

/* First field of that name, any case; NULL if absent. */
const char *ash__http_head_field(const ash__http_head *h, const char *name);

typedef enum ash__http_chunk_state {
	ASH__CH_SIZE,     /* a chunk-size line */
	ASH__CH_DATA,     /* `left` data bytes */
	ASH__CH_DATA_END, /* the CR LF after the data */
	ASH__CH_TRAILER,  /* trailer lines up to the blank one */
	ASH__CH_DONE,
} ash__http_chunk_state;

typedef struct ash__http_chunks {
	ash__http_chunk_state state;
	uint64_t              left;
	size_t                trailer; /* trailer bytes so far */
} ash__http_chunks;

typedef struct ash__http_body {
	char  *data; /* malloc'd; NULL while empty */
	size_t len, cap;
} ash__http_body;

/* Decodes what it can of in[0..n) into body (never past max bytes).
 * Returns the bytes consumed; the body is complete when ch->state is
 * ASH__CH_DONE. *status becomes 400 (malformed, *why) or 413 (over max). */
size_t ash__http_chunks_run(ash__http_chunks *ch, const char *in, size_t n,
    ash__http_body *body, size_t max, int *status, const char **why);

/* --- http.c and http_conn.c --------------------------------------------- */

typedef struct ash__http_conn ash__http_conn;

struct ash_http_server {
	ash_loop              *loop;
	struct evconnlistener *listener; /* NULL after stop_accepting */
	SSL_CTX               *ssl_ctx;  /* NULL for plain HTTP */
	ash_http_handler       handler;
	void                  *arg;
	size_t                 max_body;    /* bytes of one request body */
	size_t                 max_headers; /* bytes of one request head */
	int64_t                timeout_ms;
	int                    port;  /* bound TCP port */
	struct event          *sweep; /* cuts idle and slow connections */
	struct event          *accept_again;  /* ends a pause in accepting */
	int64_t                accept_logged; /* ms of its last log line */
	unsigned               accept_pauses; /* since that line */
	ash__http_conn        *conns;         /* every open connection */
};

struct ash_http_req {
	ash__http_conn  *conn; /* NULL once replied or gone */
	ash__http_head   head;
	char            *raw;     /* the head's bytes, parsed in place */
	ash__http_body   bodybuf; /* the body (chunked: decoded) */
	char            *path;    /* decoded (malloc'd) */
	size_t           path_len;
	const char      *query; /* in raw, or NULL */
	struct evkeyvalq qs;    /* valid when query_parsed */
	bool             query_parsed;
	char             peer[64];
	char            *out; /* response header lines the caller set */
	size_t           out_len, out_cap;
	bool             out_close; /* the caller set Connection: close */
	bool             gone;
	void (*on_gone)(void *arg);
	void *on_gone_arg;
	void *data; /* caller's */
};

/* http.c: a request from the head's hlen bytes at head (copied), or NULL
 * with *status and *why to refuse it. Its body is added by http_conn.c. */
ash_http_req *ash__http_req_new(const char *peer, const char *head,
    size_t hlen, int *status, const char **why);

/* http.c: frees req (its connection link already ended). */
void ash__http_req_free(ash_http_req *req);

/* http.c: req's client left before the reply; on_gone runs. */
void ash__http_req_gone(ash_http_req *req);

/* http.c: the platform's JSON error body; free with cJSON_free(). */
char *ash__http_error_body(
    const char *code, const char *message, const char *request_id);

/* http_conn.c: takes the accepted socket (nonblocking). */
void ash__http_conn_accept(
    ash_http_server *srv, evutil_socket_t fd, const struct sockaddr *sa);

/* http_conn.c: writes req's response on its connection and ends the link
 * (req itself stays the caller's to free). */
void ash__http_conn_reply(ash_http_req *req, int status,
    const char *content_type, const char *body, size_t len);

/* http_conn.c: closes every connection (pending requests go gone). */
void ash__http_conns_close(ash_http_server *srv);

/* http_conn.c: the server's once-a-second timer. */
void ash__http_conns_sweep(evutil_socket_t fd, short what, void *arg);

/* TLS >= 1.2 server context from PEM files. ASH_EINVAL if a file cannot be
 * read or the key does not match the certificate. */
ash_err ash__http_tls_new(
    const char *cert, const char *key, SSL_CTX **out) ASH_MUSTCHECK;

#endif
