/*
 * bus_server.c - the owner side of req/rep.
 *
 * Each slot owns an nng_ctx and an aio and cycles RECV -> HANDLE -> SEND ->
 * RECV. The aio callback (NNG thread) only pushes the slot into the
 * server's mailbox; the loop does the rest. A slot in HANDLE belongs to
 * the handler until it replies, and holds both the loop (drain waits for
 * it) and a reference on the server (so closing the server while a handler
 * still works does not free the slot under it).
 *
 * A batch frame (a JSON array of envelopes, see ashoon/bus.h) fills one
 * slot with several calls: each is dispatched and ended on its own, the
 * slot counts those still open, and the last one to end sends the array
 * of replies. The slot then holds the loop and one server reference for
 * the whole frame.
 *
 * A message with attachments (bus.h: the JSON, a NUL, the bytes) is kept
 * by its slot until its reply goes: each call's attachment points into
 * it, so none is copied.
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
	ash_request  req;
	ash_log_ctx  log;
	struct slot *slot;
	int          idx; /* item of a batch frame; -1 for a lone request */
	int64_t      t0;  /* when it arrived (ms) */
};

/* Items per batch frame: more is a malformed frame. */
#define BATCH_MAX 1024

typedef struct slot {
	ash__mbox_node  node; /* first: the mailbox hands us back */
	ash_bus_server *srv;
	nng_ctx         ctx;
	nng_aio        *aio;
	slot_state      state;
	int             result;          /* nng_aio_result, read on the loop */
	ash_bus_call    call;            /* a lone request */
	ash_bus_call   *parts;           /* a batch frame's calls, else NULL */
	char          **outs;            /* their rendered replies, by item */
	int             nparts, pending; /* items, and those not ended */
	nng_msg        *in; /* the request, kept for its attachments */
} slot;

/* An op's metrics, found once: looking them up by name and labels at every
 * call cost about 3,000 instructions a webhook POST. The counter is that
 * of the last status answered (nearly always the same one). */
typedef struct srv_op_metrics {
	ash_histogram *seconds;
	ash_counter   *answered;
	int            status;
} srv_op_metrics;

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
	srv_op_metrics  opm[ASH_OP_COUNT]; /* srv_count's handles */
};

static void srv_unref(ash_bus_server *srv);

static void
slot_on_aio(void *arg)
{
	slot *s   = arg;
	s->result = nng_aio_result(s->aio);
	ash__mbox_push(s->srv->mb, &s->node);
}

/* The request message is no longer needed: its calls have ended. */
static void
slot_drop_in(slot *s)
{
	if (s->in != NULL)
		nng_msg_free(s->in);
	s->in = NULL;
}

static void
slot_arm(slot *s)
{
	slot_drop_in(s);
	if (s->srv->stopping || s->srv->closed) {
		s->state = SLOT_IDLE;
		return;
	}
	s->state = SLOT_RECV;
	nng_ctx_recv(s->ctx, s->aio);
}

static void
srv_count(ash_bus_server *srv, int opid, int64_t t0, int status)
{
	char            labels[128], st[8];
	const char     *op  = opid >= 0 ? ash_op(opid)->name : "-";
	srv_op_metrics  one = {0};
	srv_op_metrics *m   = opid >= 0 ? &srv->opm[opid] : &one;

	if (srv->metrics == NULL)
		return;
	if (m->answered == NULL || m->status != status) {
		snprintf(st, sizeof(st), "%d", status);
		ash_metrics_labels(
		    labels, sizeof(labels), "op", op, "status", st, NULL);
		m->answered = ash_metrics_counter(srv->metrics,
		    "ashoon_bus_requests_total",
		    "Requests answered on the bus", labels);
		m->status   = status;
	}
	if (m->seconds == NULL) {
		ash_metrics_labels(labels, sizeof(labels), "op", op, NULL);
		m->seconds = ash_metrics_histogram(srv->metrics,
		    "ashoon_bus_request_seconds",
		    "Time from request arrival to reply", labels, NULL, 0);
	}
	ash_counter_add(m->answered, 1);
	ash_histogram_observe(
	    m->seconds, (double) (ash_now_ms() - t0) / 1000.0);
}

/* Sends rendered (a cJSON string) as the reply of slot s. */
static void
slot_send(slot *s, char *rendered)
{
	nng_msg *msg;
	size_t   len = strlen(rendered);

	slot_drop_in(s);
	s->state = SLOT_SEND;
	/* Sized once (see flush_pending in bus_client.c). */
	if (s->srv->closed || nng_msg_alloc(&msg, len) != 0) {
		cJSON_free(rendered);
		s->result = NNG_ECLOSED;
		ash__mbox_push(s->srv->mb, &s->node);
		return;
	}
	memcpy(nng_msg_body(msg), rendered, len);
	cJSON_free(rendered);
	nng_aio_set_msg(s->aio, msg);
	nng_ctx_send(s->ctx, s->aio);
}

static void
slot_fail_early(
    slot *s, int op, const char *id, ash_err e, const char *message)
{
	int status = ash_err_http_status(e);

	srv_count(s->srv, op, s->call.t0, status);
	s->srv->inflight++;
	ash_loop_hold(s->srv->loop);
	slot_send(
	    s, ash_reply_render_err(id, status, ash_err_code(e), message));
}

/* After a request parsed: ASH_ETIMEDOUT if its caller has given up,
 * ASH_ENOTFOUND (why says so) if nobody here serves its op. */
static ash_err
call_check(ash_bus_call *call, char *why, size_t cap)
{
	ash_bus_server *srv = call->slot->srv;

	call->log.req    = call->req.id;
	call->log.tenant = call->req.tenant;
	if (call->req.deadline_ms <= ash_wall_ms())
		return ASH_ETIMEDOUT;
	if (srv->handlers[call->req.op] == NULL) {
		snprintf(why, cap, "op %s is not served by %s",
		    ash_op(call->req.op)->name, srv->service);
		return ASH_ENOTFOUND;
	}
	return ASH_OK;
}

/* The length of msg's JSON (up to its NUL, if any); *atts: the bytes
 * after the NUL (the attachments), or -1 without one. */
static size_t
msg_split(nng_msg *msg, int64_t *atts)
{
	const char *p   = nng_msg_body(msg);
	size_t      len = nng_msg_len(msg);
	const char *nul = memchr(p, '\0', len);

	*atts = nul ? (int64_t) (len - (size_t) (nul - p) - 1) : -1;
	return nul ? (size_t) (nul - p) : len;
}

static void
slot_dispatch(slot *s, nng_msg *msg)
{
	ash_bus_server *srv  = s->srv;
	ash_bus_call   *call = &s->call;
	const char     *body = nng_msg_body(msg);
	int64_t         atts;
	size_t          jlen = msg_split(msg, &atts);
	char            why[160];
	ash_err         rv;

	call->slot = s;
	call->idx  = -1;
	call->t0   = ash_now_ms();
	rv = ash_request_parse(body, jlen, &call->req, why, sizeof(why));
	if (rv == ASH_OK && call->req.att_len != atts) {
		snprintf(why, sizeof(why),
		    "\"att\" is not the length of the bytes after the JSON");
		rv = ASH_EINVAL;
	}
	if (rv == ASH_OK && atts >= 0) {
		call->req.att = body + jlen + 1;
		s->in         = msg;
	} else {
		nng_msg_free(msg);
	}
	if (rv != ASH_OK) {
		ash_log_warn(NULL, "BUS-BADREQ", "%s", why);
		slot_fail_early(s, call->req.op, call->req.id, rv, why);
		ash_request_fini(&call->req);
		return;
	}
	if ((rv = call_check(call, why, sizeof(why))) == ASH_ETIMEDOUT) {
		/* The caller has given up already: answering is wasted work.
		 */
		ash_log_debug(&call->log, "BUS-LATE", "dropped %s",
		    ash_op(call->req.op)->name);
		ash_request_fini(&call->req);
		slot_arm(s);
		return;
	}
	if (rv != ASH_OK) {
		slot_fail_early(s, call->req.op, call->req.id, rv, why);
		ash_request_fini(&call->req);
		return;
	}
	s->state = SLOT_HANDLE;
	srv->inflight++;
	srv->refs++;
	ash_loop_hold(srv->loop);
	srv->handlers[call->req.op](call, srv->hargs[call->req.op]);
}

static void call_end(ash_bus_call *call, char *rendered, int status);

static void
part_fail(ash_bus_call *call, ash_err e, const char *message)
{
	call_end(call,
	    ash_reply_render_err(call->req.id, ash_err_http_status(e),
	        ash_err_code(e), message),
	    ash_err_http_status(e));
}

/* One item of a batch frame: checked and handed to its handler like a lone
 * request, except that every failure is answered in its place (a late item
 * too: the frame's reply must have one entry per item). */
static void
part_start(slot *s, int idx, cJSON *item, const char *att)
{
	ash_bus_server *srv  = s->srv;
	ash_bus_call   *call = &s->parts[idx];
	char            why[160];
	ash_err         rv;

	call->slot = s;
	call->idx  = idx;
	call->t0   = s->call.t0;
	rv         = ash_request_adopt(item, &call->req, why, sizeof(why));
	if (call->req.att_len >= 0)
		call->req.att = att;
	if (rv != ASH_OK) {
		ash_log_warn(
		    NULL, "BUS-BADREQ", "batch item %d: %s", idx, why);
		part_fail(call, rv, why);
		return;
	}
	if ((rv = call_check(call, why, sizeof(why))) != ASH_OK) {
		part_fail(call, rv,
		    rv == ASH_ETIMEDOUT ? "deadline passed before handling"
		                        : why);
		return;
	}
	srv->handlers[call->req.op](call, srv->hargs[call->req.op]);
}

/* The items' attachments fill what follows the frame's NUL exactly. */
static bool
batch_atts_ok(const cJSON *doc, int64_t atts)
{
	int64_t      sum = 0;
	bool         any = false;
	const cJSON *item;

	cJSON_ArrayForEach(item, doc)
	{
		int64_t a = ash_request_att_len(item);
		if (a >= 0) {
			sum += a;
			any = true;
		}
	}
	return any ? sum == atts : atts < 0;
}

static void
slot_dispatch_batch(slot *s, nng_msg *msg)
{
	ash_bus_server *srv  = s->srv;
	const char     *body = nng_msg_body(msg), *att;
	cJSON          *doc  = NULL;
	int             n    = 0;
	int64_t         atts;
	size_t          jlen = msg_split(msg, &atts);

	s->call.t0 = ash_now_ms();
	if (ash_json_parse(body, jlen, &doc) == ASH_OK && cJSON_IsArray(doc))
		n = cJSON_GetArraySize(doc);
	if (n < 1 || n > BATCH_MAX || !batch_atts_ok(doc, atts)) {
		cJSON_Delete(doc);
		nng_msg_free(msg);
		ash_log_warn(NULL, "BUS-BADREQ", "malformed batch frame");
		slot_fail_early(s, -1, NULL, ASH_EINVAL,
		    n < 1 || n > BATCH_MAX
		        ? "a batch frame is an array of 1-1024 envelopes"
		        : "the items' \"att\" do not add up to what follows "
		          "the JSON");
		return;
	}
	if (atts >= 0)
		s->in = msg;
	else
		nng_msg_free(msg);
	if (srv->metrics != NULL) {
		ash_counter_add(
		    ash_metrics_counter(srv->metrics,
		        "ashoon_bus_batch_frames_total",
		        "Batch frames received (coalesced requests)", NULL),
		    1);
		ash_counter_add(
		    ash_metrics_counter(srv->metrics,
		        "ashoon_bus_batch_items_total",
		        "Requests that arrived in batch frames", NULL),
		    (uint64_t) n);
	}
	s->parts  = ash_xcalloc((size_t) n, sizeof(ash_bus_call));
	s->outs   = ash_xcalloc((size_t) n, sizeof(char *));
	s->nparts = s->pending = n;
	s->state               = SLOT_HANDLE;
	srv->inflight++;
	srv->refs++;
	ash_loop_hold(srv->loop);
	/* The slot is only sent when the last item ends, which cannot
	 * happen before the last one has been started. */
	/* Each item's bytes follow those of the items before it, whether or
	 * not it is then accepted (its "att" read as batch_atts_ok read it).
	 */
	att = body + jlen + 1;
	for (int i = 0; i < n; i++) {
		cJSON  *item = cJSON_DetachItemFromArray(doc, 0);
		int64_t a    = ash_request_att_len(item);

		part_start(s, i, item, att);
		att += a > 0 ? a : 0;
	}
	cJSON_Delete(doc);
}

static bool
is_batch_frame(nng_msg *msg)
{
	const char *p = nng_msg_body(msg);
	size_t      n = nng_msg_len(msg), i = 0;

	while (i < n && strchr(" \t\r\n", p[i]) != NULL && p[i] != '\0')
		i++;
	return i < n && p[i] == '[';
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
			if (is_batch_frame(msg))
				slot_dispatch_batch(s, msg);
			else
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
	memset(srv->opm, 0, sizeof(srv->opm)); /* handles of the old one */
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
	for (int i = 0; i < srv->nslots; i++) {
		if (srv->slots[i].aio)
			nng_aio_free(srv->slots[i].aio);
		slot_drop_in(&srv->slots[i]);
	}
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

/* "[r0,r1,...]": the replies of a batch frame in item order, each freed.
 */
static char *
frame_join(char **outs, int n)
{
	size_t len = 2, at = 0;
	char  *f;

	for (int i = 0; i < n; i++)
		len += strlen(outs[i]) + 1;
	f       = cJSON_malloc(len + 1);
	f[at++] = '[';
	for (int i = 0; i < n; i++) {
		size_t k = strlen(outs[i]);
		if (i > 0)
			f[at++] = ',';
		memcpy(f + at, outs[i], k);
		at += k;
		cJSON_free(outs[i]);
	}
	f[at++] = ']';
	f[at]   = '\0';
	return f;
}

/* Ends a HANDLE slot: sends rendered, or drops it if the server closed. */
static void
slot_end(slot *s, char *rendered)
{
	ash_bus_server *srv = s->srv;

	if (srv->closed) {
		cJSON_free(rendered);
		slot_drop_in(s);
		s->state = SLOT_IDLE;
		srv->inflight--;
		ash_loop_rele(srv->loop);
	} else {
		slot_send(s, rendered);
	}
	srv_unref(srv);
}

static void
call_end(ash_bus_call *call, char *rendered, int status)
{
	slot *s = call->slot;

	ASH_ASSERT(s->state == SLOT_HANDLE);
	ash_log_debug(&call->log, "BUS-CALL", "%s answered %d in %lld ms",
	    call->req.op >= 0 ? ash_op(call->req.op)->name : "-", status,
	    (long long) (ash_now_ms() - call->t0));
	srv_count(s->srv, call->req.op, call->t0, status);
	ash_request_fini(&call->req);
	memset(&call->log, 0, sizeof(call->log));
	if (call->idx < 0) {
		slot_end(s, rendered);
		return;
	}
	s->outs[call->idx] = rendered;
	if (--s->pending > 0)
		return;
	rendered = frame_join(s->outs, s->nparts);
	free(s->outs);
	free(s->parts);
	s->outs  = NULL;
	s->parts = NULL;
	slot_end(s, rendered);
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
