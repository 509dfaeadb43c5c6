/*
 * http_impl.h - what http.c and http_conn.c share. Never included from
 * outside the http module.
 */
#ifndef ASH_HTTP_IMPL_H
#define ASH_HTTP_IMPL_H

#include <ashoon/http.h>

#include <event2/http.h>
#include <openssl/ssl.h>

/* Request header that tags the guard's synthetic requests (http_conn.c). */
#define ASH__HTTP_LIMIT_HEADER "X-Ashoon-Limit"
#define ASH__HTTP_SECRET_LEN   32 /* hex characters */

typedef struct ash__http_limits {
	size_t max_body;    /* bytes of one request body */
	size_t max_headers; /* bytes of one request head */
	char   secret[ASH__HTTP_SECRET_LEN + 1]; /* random, per server */
} ash__http_limits;

typedef struct ash__http_conn ash__http_conn; /* http_conn.c */

struct ash_http_server {
	ash_loop                   *loop;
	struct evhttp              *http;
	struct evhttp_bound_socket *bound;   /* NULL after stop_accepting */
	SSL_CTX                    *ssl_ctx; /* NULL for plain HTTP */
	ash_http_handler            handler;
	void                       *arg;
	ash__http_limits            lim;
	int                         port;        /* bound TCP port */
	bool                        early_close; /* base has EV_CLOSED */
	ash__http_conn             *conn_list;   /* every connection */
	ash__http_conn            **conns;       /* attached ones, by fd */
	size_t                      nconns;      /* slots in conns */
};

/* TLS >= 1.2 server context from PEM files. ASH_EINVAL if a file cannot be
 * read or the key does not match the certificate. */
ash_err ash__http_tls_new(
    const char *cert, const char *key, SSL_CTX **out) ASH_MUSTCHECK;

/* evhttp_set_bevcb callback (arg: the server): a connection's bufferevent,
 * TLS when the server has a context, always behind the size guard. */
struct bufferevent *ash__http_conn_bev(struct event_base *base, void *arg);

/* The state of the connection a request came on (NULL: unknown). */
ash__http_conn *ash__http_conn_find(
    ash_http_server *srv, struct evhttp_connection *evcon);

/* The request now with the handler (NULL once answered): if the
 * connection closes first, http_conn.c calls ash__http_req_gone(req). */
void ash__http_conn_hold(ash__http_conn *c, ash_http_req *req);

/* A reply is being handed to evhttp on c: the loop is held until evhttp
 * has written it (or the connection died), so a drain never exits with a
 * response still in a buffer. Call before evhttp_send_reply. */
void ash__http_conn_sending(ash__http_conn *c, struct evhttp_request *evreq);

/* After evhttp_free(): frees the states evhttp never closed. */
void ash__http_conns_free(ash_http_server *srv);

/* http.c: req's connection is being freed (inside evhttp's close
 * callback; evreq is still valid for the duration of the call). */
void ash__http_req_gone(ash_http_req *req);

/* 413 or 431 when evreq is the guard's synthetic stand-in for a refused
 * request, else 0. */
int ash__http_limit_status(
    struct evhttp_request *evreq, const ash__http_limits *lim);

#endif
