/*
 * bus_server.c - the owner side of req/rep.
 *
 * Each slot owns an nng_ctx and an aio and cycles RECV -> HANDLE -> SEND ->
 * RECV. The aio callback (NNG thread) only pushes the slot into the
 * server's mailbox; the loop does the rest. A slot in HANDLE belongs to
 * the handler until it replies, and holds both the loop (drain waits for
 * it) and a reference on the server (so closing the server while a handler
 * still works does not free the slot under it).
 */
#include "bus_impl.h"
#include "loop_impl.h"

#include <ashoon/json.h>

#include <nng/protocol/reqrep0/rep.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum slot_state {
	SLOT_IDLE,   /* not armed (stopped or closed) */
	SLOT_RECV,   /* waiting for a request */
	SLOT_HANDLE, /* the handler owns the call */
	SLOT_SEND,   /* reply on its way */
} slot_state;

struct ash_bus_call {
	ash_request     req;
	ash_log_ctx     log;
	ash_bus_server *srv;
};

typedef struct slot {
	ash__mbox_node  node; /* first: the mailbox hands us back */
	ash_bus_server *srv;
	nng_ctx         ctx;
	nng_aio        *aio;
	slot_state      state;
	int             result; /* nng_aio_result, read on the loop */
	int64_t         t0;     /* when the request arrived (ms) */
	int             op;     /* op being answered, -1 if unknown */
	ash_bus_call    call;
} slot;

struct ash_bus_server {
	ash_loop       *loop;
	nng_socket      sock;
	ash__mbox      *mb;
	slot           *slots;
	int             nslots;
	unsigned        inflight; /* slots in HANDLE or SEND */
	unsigned        refs;     /* 1 + slots in HANDLE */
	bool            stopping; /* drain: do not re-arm */
	bool            closed;
	char           *service;
	ash_metrics    *metrics; /* NULL: not counted */
	ash_bus_handler handlers[ASH_OP_COUNT];
	void           *hargs[ASH_OP_COUNT];
};

static void srv_unref(ash_bus_server *srv);

static void
slot_on_aio(void *arg)
{
	slot *s   = arg;
	s->result = nng_aio_result(s->aio);
	ash__mbox_push(s->srv->mb, &s->node);
}

static void
slot_arm(slot *s)
{
	if (s->srv->stopping || s->srv->closed) {
		s->state = SLOT_IDLE;
		return;
	}
	s->state = SLOT_RECV;
	nng_ctx_recv(s->ctx, s->aio);
}

static void
slot_count(slot *s, int status)
{
	char            labels[128], st[8];
	ash_bus_server *srv = s->srv;
	const char     *op  = s->op >= 0 ? ash_op(s->op)->name : "-";

	if (srv->metrics == NULL)
		return;
	snprintf(st, sizeof(st), "%d", status);
	ash_metrics_labels(
	    labels, sizeof(labels), "op", op, "status", st, NULL);
	ash_counter_add(
	    ash_metrics_counter(srv->metrics, "ashoon_bus_requests_total",
	        "Requests answered on the bus", labels),
	    1);
	ash_metrics_labels(labels, sizeof(labels), "op", op, NULL);
	ash_histogram_observe(
	    ash_metrics_histogram(srv->metrics, "ashoon_bus_request_seconds",
	        "Time from request arrival to reply", labels, NULL, 0),
	    (double) (ash_now_ms() - s->t0) / 1000.0);
}

/* Sends rendered (a cJSON string) as the reply of slot s. */
static void
slot_send(slot *s, char *rendered, int status)
{
	nng_msg *msg;

	slot_count(s, status);

	s->state = SLOT_SEND;
	if (s->srv->closed || nng_msg_alloc(&msg, 0) != 0) {
		cJSON_free(rendered);
		s->result = NNG_ECLOSED;
		ash__mbox_push(s->srv->mb, &s->node);
		return;
	}
	nng_msg_append(msg, rendered, strlen(rendered));
	cJSON_free(rendered);
	nng_aio_set_msg(s->aio, msg);
	nng_ctx_send(s->ctx, s->aio);
}

static void
slot_fail_early(slot *s, const char *id, ash_err e, const char *message)
{
	s->srv->inflight++;
	ash_loop_hold(s->srv->loop);
	slot_send(s,
	    ash_reply_render_err(
	        id, ash_err_http_status(e), ash_err_code(e), message),
	    ash_err_http_status(e));
}

static void
slot_dispatch(slot *s, nng_msg *msg)
{
	ash_bus_server *srv  = s->srv;
	ash_bus_call   *call = &s->call;
	char            why[160];
	ash_err         rv;

	s->t0 = ash_now_ms();
	rv    = ash_request_parse(
	       nng_msg_body(msg), nng_msg_len(msg), &call->req, why, sizeof(why));
	s->op = call->req.op;
	nng_msg_free(msg);
	if (rv != ASH_OK) {
		ash_log_warn(NULL, "BUS-BADREQ", "%s", why);
		slot_fail_early(s, call->req.id, rv, why);
		ash_request_fini(&call->req);
		return;
	}
	call->log.req    = call->req.id;
	call->log.tenant = call->req.tenant;
	if (call->req.deadline_ms <= ash_wall_ms()) {
		/* The caller has given up already: answering is wasted work.
		 */
		ash_log_debug(&call->log, "BUS-LATE", "dropped %s",
		    ash_op(call->req.op)->name);
		ash_request_fini(&call->req);
		slot_arm(s);
		return;
	}
	if (srv->handlers[call->req.op] == NULL) {
		snprintf(why, sizeof(why), "op %s is not served by %s",
		    ash_op(call->req.op)->name, srv->service);
		slot_fail_early(s, call->req.id, ASH_ENOTFOUND, why);
		ash_request_fini(&call->req);
		return;
	}
	s->state = SLOT_HANDLE;
	srv->inflight++;
	srv->refs++;
	ash_loop_hold(srv->loop);
	srv->handlers[call->req.op](call, srv->hargs[call->req.op]);
}

static void
slot_on_done(void *arg, ash__mbox_node *node)
{
	slot           *s   = (slot *) node;
	ash_bus_server *srv = s->srv;

	switch (s->state) {
	case SLOT_RECV:
		if (s->result == 0) {
			nng_msg *msg = nng_aio_get_msg(s->aio);
			nng_aio_set_msg(s->aio, NULL);
			slot_dispatch(s, msg);
		} else if (s->result == NNG_ECANCELED ||
		    s->result == NNG_ECLOSED) {
			s->state = SLOT_IDLE;
		} else {
			slot_arm(s);
		}
		break;
	case SLOT_SEND:
		if (s->result != 0 && nng_aio_get_msg(s->aio) != NULL) {
			nng_msg_free(nng_aio_get_msg(s->aio));
			nng_aio_set_msg(s->aio, NULL);
		}
		srv->inflight--;
		slot_arm(s);
		ash_loop_rele(srv->loop);
		break;
	default:
		break;
	}
}

ash_err
ash_bus_server_open(
    ash_loop *loop, const ash_bus_server_opts *o, ash_bus_server **out)
{
	ash_bus_server *srv;
	int             rv;

	if (o->slots < 1)
		return ASH_EINVAL;
	srv          = ash_xcalloc(1, sizeof(*srv));
	srv->loop    = loop;
	srv->refs    = 1;
	srv->service = ash_xstrdup(o->service ? o->service : "this service");
	if ((rv = nng_rep0_open(&srv->sock)) != 0)
		goto fail;
	if (ash__bus_sock_opts(srv->sock, o->max_msg) != ASH_OK ||
	    (rv = nng_listen(srv->sock, o->url, NULL, 0)) != 0) {
		ash_log_error(NULL, "BUS-LISTEN", "listen %s: %s", o->url,
		    nng_strerror(rv));
		nng_close(srv->sock);
		goto fail;
	}
	srv->mb     = ash__mbox_new(loop, slot_on_done, srv);
	srv->nslots = o->slots;
	srv->slots  = ash_xcalloc((size_t) o->slots, sizeof(slot));
	*out        = srv;
	return ASH_OK;
fail:
	free(srv->service);
	free(srv);
	return rv == NNG_EADDRINUSE ? ASH_EUNAVAIL : ASH_EINVAL;
}

void
ash_bus_server_set_metrics(ash_bus_server *srv, ash_metrics *reg)
{
	srv->metrics = reg;
}

void
ash_bus_server_handle(
    ash_bus_server *srv, int op, ash_bus_handler h, void *arg)
{
	ASH_ASSERT(op >= 0 && op < ASH_OP_COUNT);
	srv->handlers[op] = h;
	srv->hargs[op]    = arg;
}

ash_err
ash_bus_server_start(ash_bus_server *srv)
{
	for (int i = 0; i < srv->nslots; i++) {
		slot *s = &srv->slots[i];
		s->srv  = srv;
		if (nng_ctx_open(&s->ctx, srv->sock) != 0 ||
		    nng_aio_alloc(&s->aio, slot_on_aio, s) != 0)
			return ASH_EINTERNAL;
		slot_arm(s);
	}
	return ASH_OK;
}

void
ash_bus_server_stop_recv(ash_bus_server *srv)
{
	srv->stopping = true;
	for (int i = 0; i < srv->nslots; i++)
		if (srv->slots[i].state == SLOT_RECV)
			nng_aio_cancel(srv->slots[i].aio);
}

static void
srv_free(ash_bus_server *srv)
{
	for (int i = 0; i < srv->nslots; i++)
		if (srv->slots[i].aio)
			nng_aio_free(srv->slots[i].aio);
	free(srv->slots);
	free(srv->service);
	free(srv);
}

static void
srv_unref(ash_bus_server *srv)
{
	if (--srv->refs == 0)
		srv_free(srv);
}

void
ash_bus_server_close(ash_bus_server *srv)
{
	if (srv == NULL)
		return;
	srv->stopping = true;
	srv->closed   = true;
	/* Every pending aio completes with ECLOSED. */
	if (!ash__bus_close(srv->sock, srv->service, srv)) {
		ash__mbox_kill(srv->mb); /* srv stays, parked */
		return;
	}
	for (int i = 0; i < srv->nslots; i++)
		if (srv->slots[i].aio)
			nng_aio_stop(srv->slots[i].aio);
	ash__mbox_free(srv->mb);
	srv->mb = NULL;
	srv_unref(srv);
}

unsigned
ash_bus_server_inflight(const ash_bus_server *srv)
{
	return srv->inflight;
}

const ash_request *
ash_bus_call_req(const ash_bus_call *call)
{
	return &call->req;
}

const ash_log_ctx *
ash_bus_call_log(const ash_bus_call *call)
{
	return &call->log;
}

int64_t
ash_bus_call_remaining_ms(const ash_bus_call *call)
{
	return call->req.deadline_ms - ash_wall_ms();
}

static slot *
call_slot(ash_bus_call *call)
{
	return (slot *) ((char *) call - offsetof(slot, call));
}

/* Ends a HANDLE slot: sends rendered, or drops it if the server closed. */
static void
call_end(ash_bus_call *call, char *rendered, int status)
{
	slot           *s   = call_slot(call);
	ash_bus_server *srv = s->srv;

	ASH_ASSERT(s->state == SLOT_HANDLE);
	ash_log_debug(&call->log, "BUS-CALL", "%s answered %d in %lld ms",
	    ash_op(call->req.op)->name, status,
	    (long long) (ash_now_ms() - s->t0));
	ash_request_fini(&call->req);
	memset(&call->log, 0, sizeof(call->log));
	if (srv->closed) {
		cJSON_free(rendered);
		s->state = SLOT_IDLE;
		srv->inflight--;
		ash_loop_rele(srv->loop);
	} else {
		slot_send(s, rendered, status);
	}
	srv_unref(srv);
}

void
ash_bus_call_reply(ash_bus_call *call, int status, cJSON *body)
{
	const ash_op_desc *d = ash_op(call->req.op);
	char               why[160];
	char              *out;

	if (ash_proto_check(d->rep, d->nrep, body, why, sizeof(why)) !=
	    ASH_OK) {
		ash_log_error(
		    &call->log, "BUS-BADREPLY", "%s reply: %s", d->name, why);
		out = ash_reply_render_err(
		    call->req.id, 500, "internal", "internal error");
		status = 500;
	} else {
		out = ash_reply_render_ok(call->req.id, status, body);
	}
	cJSON_Delete(body);
	call_end(call, out, status);
}

void
ash_bus_call_fail(ash_bus_call *call, ash_err e, const char *message)
{
	call_end(call,
	    ash_reply_render_err(call->req.id, ash_err_http_status(e),
	        ash_err_code(e), message ? message : ash_strerror(e)),
	    ash_err_http_status(e));
}
