/*
 * bus_client.c - the caller side of req/rep.
 *
 * Each request gets its own nng_ctx and aio: send, then (still on the NNG
 * thread, which is allowed: it does not block) recv on the same ctx; only
 * the final completion goes through the mailbox to the loop. A pipe
 * notifier keeps the count of connected peers so a request with nobody to
 * serve it fails at once instead of waiting for its deadline.
 *
 * Coalescing requests (opts.coalesce) made in one loop turn wait in a
 * pending list; an event activated with the first of them runs after the
 * callbacks already queued in that turn, and sends them as one batch
 * frame (a lone one as a plain envelope). The frame travels as one creq,
 * a carrier, whose reply array is handed out member by member.
 *
 * At most CARRIERS_PER_PEER carriers per connected peer are in flight;
 * while that many are out, the pending list keeps growing and goes when
 * one comes back. The callee works a frame as one group and queues what
 * arrives while its groups run, so holding the requests here instead
 * costs them little, and saves bus messages, each several thread
 * wake-ups on both sides: at half the maximum webhook rate, when frames
 * carried one or two POSTs, they were about 40 % of the CPU the gateway
 * and meta-ingest spent per webhook.
 */
#include "bus_impl.h"
#include "loop_impl.h"

#include <ashoon/json.h>

#include <event2/event.h>
#include <nng/protocol/reqrep0/req.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef enum creq_state { CREQ_SEND, CREQ_RECV } creq_state;

/* A coalescing request, pending or carried in a batch frame. */
typedef struct cmember {
	struct cmember *next;
	int             op;
	int64_t         deadline_ms;
	char *
	    env; /* rendered envelope (cJSON_free), until the frame is built */
	size_t            len;
	uint8_t          *att; /* a copy of its attachment, or NULL */
	size_t            att_len;
	ash_bus_result_cb cb;
	void             *arg;
} cmember;

typedef struct creq {
	ash__mbox_node    node;        /* first */
	struct creq      *prev, *next; /* outstanding list */
	ash_bus_client   *c;
	nng_ctx           ctx;
	nng_aio          *aio;
	_Atomic int       state; /* written on NNG threads */
	int               result;
	int               op;
	int64_t           deadline_ms;
	ash_bus_result_cb cb;
	void             *arg;
	cmember          *members; /* a carrier's requests, in frame order */
	int               nmembers;
	bool              carrier; /* sent from the pending list */
} creq;

/* Carriers in flight per connected peer (see the top of this file). */
#define CARRIERS_PER_PEER 2

struct ash_bus_client {
	ash_loop     *loop;
	nng_socket    sock;
	ash__mbox    *mb;
	creq         *outstanding;
	atomic_int    peers;
	bool          closing;
	char         *name;
	size_t        max_frame; /* bytes a batch frame may reach */
	struct event *flush;     /* sends the pending list */
	cmember      *pending, **pending_tail;
	int           npending;
	size_t        pending_len;
	int           carriers; /* carriers in flight */
};

static void
client_on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	ash_bus_client *c = arg;

	if (ev == NNG_PIPE_EV_ADD_POST)
		atomic_fetch_add(&c->peers, 1);
	else if (ev == NNG_PIPE_EV_REM_POST)
		atomic_fetch_sub(&c->peers, 1);
}

static nng_duration
remaining(int64_t deadline_ms)
{
	int64_t ms = deadline_ms - ash_wall_ms();
	return ms < 1 ? 1 : (nng_duration) ms;
}

static void
creq_on_aio(void *arg)
{
	creq *r  = arg;
	int   rv = nng_aio_result(r->aio);

	if (rv == 0 && atomic_load(&r->state) == CREQ_SEND) {
		atomic_store(&r->state, CREQ_RECV);
		nng_aio_set_timeout(r->aio, remaining(r->deadline_ms));
		nng_ctx_recv(r->ctx, r->aio);
		return;
	}
	r->result = rv;
	ash__mbox_push(r->c->mb, &r->node);
}

static void
creq_unlink(creq *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		r->c->outstanding = r->next;
	if (r->next)
		r->next->prev = r->prev;
}

static ash_err
reply_check(int op, const ash_reply *rep)
{
	const ash_op_desc *d = ash_op(op);
	char               why[160];

	if (rep->status >= 400)
		return ASH_OK;
	return ash_proto_check(d->rep, d->nrep, rep->body, why, sizeof(why)) ==
	        ASH_OK
	    ? ASH_OK
	    : ASH_EUPSTREAM;
}

/* Hands one reply (parse result rv, rep owned here) to its caller. */
static void
deliver(ash_bus_client *c, int op, ash_err rv, ash_reply *rep,
    ash_bus_result_cb cb, void *arg)
{
	ash_bus_result res = {.err = ASH_OK};

	if (rv != ASH_OK || reply_check(op, rep) != ASH_OK) {
		ash_log_warn(NULL, "BUS-BADREPLY",
		    "malformed %s reply from %s", ash_op(op)->name, c->name);
		res.err = ASH_EUPSTREAM;
	} else {
		res.status  = rep->status;
		res.body    = rep->body;
		res.code    = rep->code;
		res.message = rep->message;
	}
	cb(arg, &res);
	ash_reply_fini(rep);
}

/* Every member of a carrier gets res, and is freed. */
static void
members_fail(cmember *m, const ash_bus_result *res)
{
	while (m != NULL) {
		cmember *next = m->next;
		m->cb(m->arg, res);
		cJSON_free(m->env);
		free(m->att);
		free(m);
		m = next;
	}
}

/* A batch frame's reply: one reply per member, in order. A frame that does
 * not match is a malformed reply for every member. */
static void
carrier_deliver(creq *r, nng_msg *msg)
{
	ash_bus_result bad = {.err = ASH_EUPSTREAM};
	cJSON         *doc = NULL;
	ash_reply      rep;
	cmember       *m;

	if (ash_json_parse(nng_msg_body(msg), nng_msg_len(msg), &doc) !=
	        ASH_OK ||
	    !cJSON_IsArray(doc) || cJSON_GetArraySize(doc) != r->nmembers) {
		ash_log_warn(NULL, "BUS-BADREPLY",
		    "malformed batch reply from %s", r->c->name);
		cJSON_Delete(doc);
		members_fail(r->members, &bad);
		return;
	}
	while ((m = r->members) != NULL) {
		ash_err rv =
		    ash_reply_adopt(cJSON_DetachItemFromArray(doc, 0), &rep);
		r->members = m->next;
		deliver(r->c, m->op, rv, &rep, m->cb, m->arg);
		free(m);
	}
	cJSON_Delete(doc);
}

/* Turns the reply message into a result and calls back. */
static void
creq_deliver(creq *r, nng_msg *msg)
{
	ash_reply rep;
	ash_err   rv;

	if (r->members != NULL) {
		carrier_deliver(r, msg);
		return;
	}
	rv = ash_reply_parse(nng_msg_body(msg), nng_msg_len(msg), &rep);
	deliver(r->c, r->op, rv, &rep, r->cb, r->arg);
}

static void
creq_fail(creq *r, const ash_bus_result *res)
{
	if (r->members != NULL)
		members_fail(r->members, res);
	else
		r->cb(r->arg, res);
	r->members = NULL;
}

static void flush_pending(ash_bus_client *c, bool force);

static void
creq_on_done(void *arg, ash__mbox_node *node)
{
	creq           *r   = (creq *) node;
	ash_bus_client *c   = r->c;
	ash_bus_result  res = {0};

	creq_unlink(r);
	if (r->carrier)
		c->carriers--;
	if (r->result == 0) {
		nng_msg *msg = nng_aio_get_msg(r->aio);
		nng_aio_set_msg(r->aio, NULL);
		creq_deliver(r, msg);
		nng_msg_free(msg);
	} else {
		if (atomic_load(&r->state) == CREQ_SEND &&
		    nng_aio_get_msg(r->aio) != NULL)
			nng_msg_free(nng_aio_get_msg(r->aio));
		res.err = ash__bus_err(r->result);
		if (r->c->closing)
			res.err = ASH_ECANCELED;
		creq_fail(r, &res);
	}
	nng_ctx_close(r->ctx);
	nng_aio_free(r->aio);
	free(r);
	if (!c->closing && c->pending != NULL)
		flush_pending(c, false);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg);

ash_err
ash_bus_client_open(
    ash_loop *loop, const ash_bus_client_opts *o, ash_bus_client **out)
{
	ash_bus_client *c = ash_xcalloc(1, sizeof(*c));
	ash_err         rv;

	c->loop = loop;
	c->name = ash_xstrdup(o->name ? o->name : "peer");
	if (nng_req0_open(&c->sock) != 0) {
		free(c->name);
		free(c);
		return ASH_EINTERNAL;
	}
	nng_socket_set_ms(
	    c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_pipe_notify(c->sock, NNG_PIPE_EV_ADD_POST, client_on_pipe, c);
	nng_pipe_notify(c->sock, NNG_PIPE_EV_REM_POST, client_on_pipe, c);
	if ((rv = ash__bus_sock_opts(c->sock, o->max_msg)) != ASH_OK ||
	    (rv = ash__bus_dial_all(c->sock, o->urls)) != ASH_OK) {
		nng_close(c->sock);
		free(c->name);
		free(c);
		return rv;
	}
	c->mb = ash__mbox_new(loop, creq_on_done, c);
	/* A frame stays well under the receive cap, which the callee sets
	 * from the same ASHOON_BUS_MAX_MSG. */
	c->max_frame    = o->max_msg / 2;
	c->flush        = event_new(ash_loop_base(loop), -1, 0, flush_cb, c);
	c->pending_tail = &c->pending;
	ASH_ASSERT(c->flush != NULL);
	*out = c;
	return ASH_OK;
}

/* NNG never finished closing: deliver what completed, cancel the rest for
 * our callers, and leave every struct NNG might still touch alone. */
static void
client_abandon(ash_bus_client *c)
{
	ash_bus_result res = {.err = ASH_ECANCELED};

	ash__mbox_kill(c->mb);
	for (creq *r = c->outstanding; r != NULL; r = r->next)
		creq_fail(r, &res);
	c->outstanding = NULL;
}

void
ash_bus_client_close(ash_bus_client *c)
{
	ash_bus_result cancel = {.err = ASH_ECANCELED};

	if (c == NULL)
		return;
	c->closing = true;
	event_free(c->flush);
	members_fail(c->pending, &cancel);
	c->pending = NULL;
	/* Every outstanding aio completes while the socket closes. */
	if (!ash__bus_close(c->sock, c->name, c)) {
		client_abandon(c);
		return;
	}
	for (creq *r = c->outstanding; r != NULL; r = r->next)
		nng_aio_stop(r->aio);
	ash__mbox_free(c->mb); /* delivers ECANCELED to each */
	ASH_ASSERT(c->outstanding == NULL);
	free(c->name);
	free(c);
}

int
ash_bus_client_peers(const ash_bus_client *c)
{
	return atomic_load(&((ash_bus_client *) c)->peers);
}

static ash_err
creq_new(ash_bus_client *c, const ash_bus_req_opts *o, creq **out)
{
	creq *r = ash_xcalloc(1, sizeof(*r));

	r->c           = c;
	r->op          = o->op;
	r->deadline_ms = o->deadline_ms;
	if (nng_ctx_open(&r->ctx, c->sock) != 0) {
		free(r);
		return ASH_ECLOSED;
	}
	if (nng_aio_alloc(&r->aio, creq_on_aio, r) != 0) {
		nng_ctx_close(r->ctx);
		free(r);
		return ASH_EINTERNAL;
	}
	*out = r;
	return ASH_OK;
}

/* Puts r on the outstanding list and sends msg. */
static void
creq_send(creq *r, nng_msg *msg)
{
	ash_bus_client *c = r->c;

	r->next = c->outstanding;
	if (r->next)
		r->next->prev = r;
	c->outstanding = r;
	nng_aio_set_msg(r->aio, msg);
	nng_aio_set_timeout(r->aio, remaining(r->deadline_ms));
	nng_ctx_send(r->ctx, r->aio);
}

/* Takes the pending members whose deadline has passed out of the list,
 * and fails them: they waited here for a carrier to come back. */
static void
pending_expire(ash_bus_client *c)
{
	ash_bus_result late = {.err = ASH_ETIMEDOUT};
	int64_t        now  = ash_wall_ms();
	cmember      **pp = &c->pending, *m, *dead = NULL, **dt = &dead;

	while ((m = *pp) != NULL) {
		if (m->deadline_ms > now) {
			pp = &m->next;
			continue;
		}
		*pp = m->next;
		c->npending--;
		c->pending_len -= m->len + m->att_len + 1;
		m->next = NULL;
		*dt     = m;
		dt      = &m->next;
	}
	c->pending_tail = pp;
	members_fail(dead, &late);
}

/* The message for the members of list (n of them): one envelope as it
 * is, more as a batch frame "[env,env,...]"; then, if any has an
 * attachment, a NUL and the attachments in member order (bus.h). Sized
 * once: appending grows an NNG message by reallocating and zeroing it,
 * which made a 100-item frame cost more than its items (a sixth of the
 * gateway's CPU at full webhook load). */
static nng_msg *
frame_build(const cmember *list, int n)
{
	size_t   total = n > 1 ? (size_t) n + 1 : 0; /* [ , ... ] */
	bool     nul   = false;
	nng_msg *msg;
	char    *p;

	for (const cmember *m = list; m != NULL; m = m->next) {
		total += m->len + m->att_len;
		nul = nul || m->att != NULL;
	}
	ASH_ASSERT(nng_msg_alloc(&msg, total + nul) == 0);
	p = nng_msg_body(msg);
	if (n > 1)
		*p++ = '[';
	for (const cmember *m = list; m != NULL; m = m->next) {
		if (m != list)
			*p++ = ',';
		memcpy(p, m->env, m->len);
		p += m->len;
	}
	if (n > 1)
		*p++ = ']';
	if (nul)
		*p++ = '\0';
	for (const cmember *m = list; m != NULL; m = m->next)
		if (m->att != NULL) {
			memcpy(p, m->att, m->att_len);
			p += m->att_len;
		}
	ASH_ASSERT(p == (char *) nng_msg_body(msg) + total + nul);
	return msg;
}

/* Sends the pending coalescing requests: one as it is, more as a batch
 * frame "[env,env,...]" under the latest of their deadlines. Unless
 * forced (the frame is full), waits while the peers have their carriers. */
static void
flush_pending(ash_bus_client *c, bool force)
{
	int              peers = atomic_load(&c->peers);
	cmember         *list;
	int              n;
	ash_bus_req_opts o    = {0};
	ash_bus_result   fail = {.err = ASH_ECLOSED};
	nng_msg         *msg;
	creq            *r;

	if (!force &&
	    c->carriers >= CARRIERS_PER_PEER * (peers > 1 ? peers : 1))
		return;
	pending_expire(c);
	list            = c->pending;
	n               = c->npending;
	o.op            = list ? list->op : 0;
	c->pending      = NULL;
	c->pending_tail = &c->pending;
	c->npending     = 0;
	c->pending_len  = 0;
	if (list == NULL)
		return;
	for (cmember *m = list; m != NULL; m = m->next)
		if (m->deadline_ms > o.deadline_ms)
			o.deadline_ms = m->deadline_ms;
	if (creq_new(c, &o, &r) != ASH_OK) {
		members_fail(list, &fail);
		return;
	}
	r->carrier = true;
	c->carriers++;
	msg = frame_build(list, n);
	/* Only the callbacks are kept until the reply. */
	for (cmember *m = list; m != NULL; m = m->next) {
		cJSON_free(m->env);
		free(m->att);
		m->env = NULL;
		m->att = NULL;
	}
	if (n > 1) {
		r->members  = list;
		r->nmembers = n;
	} else {
		r->cb  = list->cb;
		r->arg = list->arg;
		free(list);
	}
	creq_send(r, msg);
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	flush_pending(arg, false);
}

/* Queues a coalescing request for the end of this loop turn; takes env,
 * copies the attachment. */
static void
coalesce(ash_bus_client *c, const ash_bus_req_opts *o, char *env,
    ash_bus_result_cb cb, void *arg)
{
	cmember *m = ash_xcalloc(1, sizeof(*m));

	m->op          = o->op;
	m->deadline_ms = o->deadline_ms;
	m->len         = strlen(env);
	m->env         = env;
	m->cb          = cb;
	m->arg         = arg;
	if (o->att != NULL) {
		m->att     = ash_xmalloc(o->att_len ? o->att_len : 1);
		m->att_len = o->att_len;
		memcpy(m->att, o->att, o->att_len);
	}
	if (c->npending > 0 &&
	    c->pending_len + m->len + m->att_len + 3 > c->max_frame)
		flush_pending(c, true);
	*c->pending_tail = m;
	c->pending_tail  = &m->next;
	c->pending_len += m->len + m->att_len + 1;
	if (c->npending++ == 0)
		event_active(c->flush, EV_TIMEOUT, 0);
}

ash_err
ash_bus_request(ash_bus_client *c, const ash_bus_req_opts *o,
    const cJSON *body, ash_bus_result_cb cb, void *arg)
{
	nng_msg *msg;
	creq    *r;
	char    *env;
	ash_err  rv;

	if (c->closing)
		return ASH_ECLOSED;
	if (o->deadline_ms <= ash_wall_ms())
		return ASH_ETIMEDOUT;
	if (atomic_load(&c->peers) == 0)
		return ASH_EUNAVAIL;
	env = ash_request_render(o->op, o->id, o->tenant, o->user, o->role,
	    o->deadline_ms, body, o->att ? (int64_t) o->att_len : -1);
	if (o->coalesce) {
		coalesce(c, o, env, cb, arg);
		return ASH_OK;
	}
	if ((rv = creq_new(c, o, &r)) != ASH_OK) {
		cJSON_free(env);
		return rv;
	}
	cmember lone = {.env = env,
	    .len             = strlen(env),
	    .att             = (uint8_t *) o->att, /* read only */
	    .att_len         = o->att ? o->att_len : 0};
	msg          = frame_build(&lone, 1);
	cJSON_free(env);
	r->cb  = cb;
	r->arg = arg;
	creq_send(r, msg);
	return ASH_OK;
}
