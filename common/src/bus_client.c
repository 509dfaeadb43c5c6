/*
 * bus_client.c - the caller side of req/rep.
 *
 * Each request gets its own nng_ctx and aio: send, then (still on the NNG
 * thread, which is allowed: it does not block) recv on the same ctx; only
 * the final completion goes through the mailbox to the loop. A pipe
 * notifier keeps the count of connected peers so a request with nobody to
 * serve it fails at once instead of waiting for its deadline.
 */
#include "bus_impl.h"
#include "loop_impl.h"

#include <ashoon/json.h>

#include <nng/protocol/reqrep0/req.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef enum creq_state { CREQ_SEND, CREQ_RECV } creq_state;

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
} creq;

struct ash_bus_client {
	ash_loop  *loop;
	nng_socket sock;
	ash__mbox *mb;
	creq      *outstanding;
	atomic_int peers;
	bool       closing;
	char      *name;
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

/* Turns the reply message into a result and calls back. */
static void
creq_deliver(creq *r, nng_msg *msg)
{
	ash_bus_result res = {.err = ASH_OK};
	ash_reply      rep;

	if (ash_reply_parse(nng_msg_body(msg), nng_msg_len(msg), &rep) !=
	        ASH_OK ||
	    reply_check(r->op, &rep) != ASH_OK) {
		ash_log_warn(NULL, "BUS-BADREPLY",
		    "malformed %s reply from %s", ash_op(r->op)->name,
		    r->c->name);
		res.err = ASH_EUPSTREAM;
	} else {
		res.status  = rep.status;
		res.body    = rep.body;
		res.code    = rep.code;
		res.message = rep.message;
	}
	r->cb(r->arg, &res);
	ash_reply_fini(&rep);
}

static void
creq_on_done(void *arg, ash__mbox_node *node)
{
	creq          *r   = (creq *) node;
	ash_bus_result res = {0};

	creq_unlink(r);
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
		r->cb(r->arg, &res);
	}
	nng_ctx_close(r->ctx);
	nng_aio_free(r->aio);
	free(r);
}

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
	*out  = c;
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
		r->cb(r->arg, &res);
	c->outstanding = NULL;
}

void
ash_bus_client_close(ash_bus_client *c)
{
	if (c == NULL)
		return;
	c->closing = true;
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
	if ((rv = creq_new(c, o, &r)) != ASH_OK)
		return rv;
	env = ash_request_render(
	    o->op, o->id, o->tenant, o->user, o->role, o->deadline_ms, body);
	ASH_ASSERT(nng_msg_alloc(&msg, 0) == 0);
	nng_msg_append(msg, env, strlen(env));
	cJSON_free(env);
	r->cb   = cb;
	r->arg  = arg;
	r->next = c->outstanding;
	if (r->next)
		r->next->prev = r;
	c->outstanding = r;
	nng_aio_set_msg(r->aio, msg);
	nng_aio_set_timeout(r->aio, remaining(o->deadline_ms));
	nng_ctx_send(r->ctx, r->aio);
	return ASH_OK;
}
