/*
 * ashoon/bus.h - NNG request/reply and pub/sub between services.
 *
 * Everything here is used from the loop thread. NNG completes its aios on
 * its own threads; those callbacks only hand the aio to the loop (a
 * mailbox: a locked list plus event_active), and all parsing, dispatching
 * and replying happens on the loop (STYLE §15).
 *
 * Server (owner side): a REP socket listening on one address with `slots`
 * nng_ctx, each cycling recv -> handle -> send, so up to `slots` requests
 * are handled concurrently. Envelopes are validated against proto/ops.def
 * before a handler sees them; requests whose deadline has passed are
 * dropped; replies are checked against the op's reply fields.
 *
 * Client (caller side): a REQ socket dialing one or more addresses (NNG
 * spreads requests over the connected peers and reconnects by itself). A
 * request fails at once with ASH_EUNAVAIL when no peer is connected, and
 * with ASH_ETIMEDOUT at its deadline. Resends are off (REQ_RESENDTIME
 * infinite): NNG never sends a request twice on its own. If the peer that
 * holds a request disconnects (it crashed or was stopped), the request
 * fails at once with ASH_EUNAVAIL (NNG 1.5.2 reports ECONNRESET), and the
 * caller decides whether a retry is safe.
 *
 * Messages: a request is its envelope's JSON (ashoon/proto.h), or a batch
 * frame, the JSON array of several envelopes (coalescing requests, below);
 * a reply is the reply envelope, or for a batch frame the array of its
 * replies in item order. A request with an attachment (an envelope with
 * "att": n) has its bytes after the JSON: the JSON, one NUL byte (JSON
 * text never holds one), then the attachments of the message's envelopes
 * that have one, in their order, back to back. The lengths must add up to
 * exactly what follows the NUL, else the whole message is refused (400).
 *
 * Sizes: every socket caps received messages at max_msg bytes.
 */
#ifndef ASHOON_BUS_H
#define ASHOON_BUS_H

#include <ashoon/log.h>
#include <ashoon/loop.h>
#include <ashoon/metrics.h>
#include <ashoon/proto.h>

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct ash_bus_server    ash_bus_server;
typedef struct ash_bus_call      ash_bus_call;
typedef struct ash_bus_client    ash_bus_client;
typedef struct ash_bus_pub       ash_bus_pub;
typedef struct ash_bus_sub       ash_bus_sub;
typedef struct ash_bus_forwarder ash_bus_forwarder;

/* --- server ------------------------------------------------------------- */

typedef struct ash_bus_server_opts {
	const char *url;     /* listen address, e.g. tcp://0.0.0.0:7102 */
	int         slots;   /* concurrent requests, >= 1 */
	size_t      max_msg; /* receive cap in bytes */
	const char *service; /* name used in "not served here" errors */
} ash_bus_server_opts;

/* Loop thread. Handles one call; must end it with exactly one
 * ash_bus_call_reply / ash_bus_call_fail, now or later. */
typedef void (*ash_bus_handler)(ash_bus_call *call, void *arg);

/* Loop thread. Opens and listens; receiving starts with _start. ASH_EINVAL
 * for a bad URL, ASH_EUNAVAIL if the address is in use. */
ash_err ash_bus_server_open(ash_loop *loop, const ash_bus_server_opts *o,
    ash_bus_server **out) ASH_MUSTCHECK;

/* Loop thread, before _start. Counts every answered request in reg:
 * ashoon_bus_requests_total{op,status} and ashoon_bus_request_seconds{op}.
 * reg must outlive the server. */
void ash_bus_server_set_metrics(ash_bus_server *srv, ash_metrics *reg);

/* Loop thread, before _start. Ops without a handler are answered 404. */
void ash_bus_server_handle(
    ash_bus_server *srv, int op, ash_bus_handler h, void *arg);

/* Loop thread. Arms every slot. */
ash_err ash_bus_server_start(ash_bus_server *srv) ASH_MUSTCHECK;

/* Loop thread. Drain: receive nothing more; calls being handled finish and
 * their replies are sent. Each call in flight holds the loop
 * (ash_loop_hold) until its reply has been sent. */
void ash_bus_server_stop_recv(ash_bus_server *srv);

/* Loop thread. Closes the socket. A call still held by a handler stays
 * valid; its later reply is discarded. NULL is fine. */
void ash_bus_server_close(ash_bus_server *srv);

/* Calls being handled now. */
unsigned ash_bus_server_inflight(const ash_bus_server *srv);

/* The validated request (borrowed, valid until the call is ended), its
 * attachment (att, att_len) included when it had one. */
const ash_request *ash_bus_call_req(const ash_bus_call *call);
/* Request id and tenant, for log lines about this call. */
const ash_log_ctx *ash_bus_call_log(const ash_bus_call *call);
/* Milliseconds left before the caller's deadline (may be <= 0). */
int64_t ash_bus_call_remaining_ms(const ash_bus_call *call);

/* Ends the call with a success reply. Takes body (may be NULL = {}) in all
 * cases. A body that does not match the op's reply fields is a bug in the
 * handler: it is logged (BUS-BADREPLY) and the caller gets a 500. */
void ash_bus_call_reply(ash_bus_call *call, int status, cJSON *body);

/* Ends the call with an error reply: status from the error, its wire code,
 * and message (may be NULL: the error's text). */
void ash_bus_call_fail(ash_bus_call *call, ash_err e, const char *message);

/* --- client ------------------------------------------------------------- */

typedef struct ash_bus_client_opts {
	const char *urls;    /* comma-separated dial addresses */
	size_t      max_msg; /* receive cap in bytes */
	const char *name;    /* peer's name, for logs */
} ash_bus_client_opts;

/* Loop thread. Starts dialing in the background (a peer that is down now
 * is reached when it comes up; reconnects start after 100 ms, up to 2 s).
 */
ash_err ash_bus_client_open(ash_loop *loop, const ash_bus_client_opts *o,
    ash_bus_client **out) ASH_MUSTCHECK;

/* Loop thread. Requests still outstanding get ASH_ECANCELED before this
 * returns. NULL is fine. */
void ash_bus_client_close(ash_bus_client *c);

/* Connected peers now (any thread). */
int ash_bus_client_peers(const ash_bus_client *c);

/* What came back. err is ASH_OK when a reply arrived (whatever its status);
 * otherwise the transport failure (ETIMEDOUT, EUNAVAIL, ECANCELED,
 * EUPSTREAM for a malformed or contract-breaking reply). Borrowed until the
 * callback returns. */
typedef struct ash_bus_result {
	ash_err      err;
	int          status;  /* reply status when err == ASH_OK */
	const cJSON *body;    /* reply body when status < 400 */
	const char  *code;    /* error code when status >= 400 */
	const char  *message; /* error message when status >= 400 */
} ash_bus_result;

typedef void (*ash_bus_result_cb)(void *arg, const ash_bus_result *res);

typedef struct ash_bus_req_opts {
	int         op;          /* ash_op_id */
	const char *id;          /* request id (required) */
	const char *tenant;      /* may be NULL */
	const char *user, *role; /* principal, may be NULL */
	int64_t     deadline_ms; /* absolute wall-clock ms */
	/* May share one bus message (a batch frame) with the other coalescing
	 * requests made to this client in the same loop turn. The callee
	 * handles each on its own but replies to the frame once all have
	 * ended, so use it for requests the callee finishes together anyway
	 * (webhook hits, which it commits as one group). The frame waits
	 * for the latest deadline of its requests, so coalesce only
	 * requests made with the same timeout. At most two frames per
	 * connected peer are in flight; later requests wait in the client
	 * for one to come back and then go together (one whose deadline
	 * passes meanwhile fails with ASH_ETIMEDOUT, never sent). */
	bool coalesce;
	/* An attachment: att_len bytes sent beside the envelope, exactly as
	 * they are (copied; see Messages above). NULL: none. */
	const void *att;
	size_t      att_len;
} ash_bus_req_opts;

/* Loop thread. body is borrowed (may be NULL). On ASH_OK cb runs exactly
 * once, later, on the loop. ASH_EUNAVAIL (no peer), ASH_ETIMEDOUT
 * (deadline already passed) and ASH_ECLOSED come back directly; cb is then
 * not called. */
ash_err ash_bus_request(ash_bus_client *c, const ash_bus_req_opts *o,
    const cJSON *body, ash_bus_result_cb cb, void *arg) ASH_MUSTCHECK;

/* --- pub/sub ------------------------------------------------------------ */

/* Loop thread. listen=true binds url, else dials it (in the background).
 * Publishing never blocks: a slow or absent subscriber misses events, which
 * is why events only wake consumers and durable work lives in tables.
 * While no peer is connected, ash_bus_publish returns ASH_OK at once
 * without rendering the event. */
ash_err ash_bus_pub_open(
    const char *url, bool listen, ash_bus_pub **out) ASH_MUSTCHECK;
void    ash_bus_pub_close(ash_bus_pub *p);
ash_err ash_bus_publish(ash_bus_pub *p, int topic, const char *tenant,
    const cJSON *body) ASH_MUSTCHECK;

typedef void (*ash_bus_event_cb)(void *arg, const ash_event *ev);

ash_err ash_bus_sub_open(ash_loop *loop, const char *url, bool listen,
    size_t max_msg, ash_bus_sub **out) ASH_MUSTCHECK;
void    ash_bus_sub_close(ash_bus_sub *s);
/* Loop thread. cb runs on the loop for each valid event of that topic;
 * malformed events are counted and logged (BUS-BADEVENT), never
 * delivered. One callback per topic. */
ash_err ash_bus_subscribe(
    ash_bus_sub *s, int topic, ash_bus_event_cb cb, void *arg) ASH_MUSTCHECK;

/* The event forwarder: publishers dial in_url, subscribers dial out_url,
 * so every service has one stable address for events however many
 * replicas run (nng_device over raw sockets, on its own thread). */
ash_err ash_bus_forwarder_start(const char *in_url, const char *out_url,
    ash_bus_forwarder **out) ASH_MUSTCHECK;
void    ash_bus_forwarder_stop(ash_bus_forwarder *f);

#endif
