/*
 * bus_pubsub.c - events: publish (never blocks), subscribe (RECVFD polled
 * by libevent and drained with NNG_FLAG_NONBLOCK, so no NNG thread ever
 * touches the loop), and the forwarder that gives events one address.
 */
#include "bus_impl.h"

#include <ashoon/ids.h>

#include <event2/event.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct ash_bus_pub {
	nng_socket sock;
	nng_aio   *aio;   /* every publish's, reused: see ash_bus_publish */
	atomic_int pipes; /* connected peers (subscribers or a forwarder) */
};

struct ash_bus_sub {
	nng_socket       sock;
	struct event    *ev;
	ash_bus_event_cb cbs[ASH_TOPIC_COUNT];
	void            *args[ASH_TOPIC_COUNT];
	unsigned long    bad; /* malformed events dropped */
};

struct ash_bus_forwarder {
	nng_socket in, out;
	pthread_t  thread;
};

static ash_err
attach(nng_socket s, const char *url, bool listen)
{
	int rv = listen ? nng_listen(s, url, NULL, 0)
	                : nng_dial(s, url, NULL, NNG_FLAG_NONBLOCK);

	if (rv != 0) {
		ash_log_error(NULL, "BUS-ATTACH", "%s %s: %s",
		    listen ? "listen" : "dial", url, nng_strerror(rv));
		return rv == NNG_EADDRINUSE ? ASH_EUNAVAIL : ASH_EINVAL;
	}
	return ASH_OK;
}

/* NNG's threads: the count ash_bus_publish reads (bus_client.c keeps its
 * peers the same way). */
static void
pub_on_pipe(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
	ash_bus_pub *p = arg;

	(void) pipe;
	if (ev == NNG_PIPE_EV_ADD_POST)
		atomic_fetch_add(&p->pipes, 1);
	else if (ev == NNG_PIPE_EV_REM_POST)
		atomic_fetch_sub(&p->pipes, 1);
}

ash_err
ash_bus_pub_open(const char *url, bool listen, ash_bus_pub **out)
{
	ash_bus_pub *p = ash_xcalloc(1, sizeof(*p));
	ash_err      rv;

	if (nng_aio_alloc(&p->aio, NULL, NULL) != 0) {
		free(p);
		return ASH_ENOMEM;
	}
	if (nng_pub0_open(&p->sock) != 0) {
		nng_aio_free(p->aio);
		free(p);
		return ASH_EINTERNAL;
	}
	nng_socket_set_ms(p->sock, NNG_OPT_RECONNMINT, 100);
	nng_socket_set_ms(p->sock, NNG_OPT_RECONNMAXT, 2000);
	nng_pipe_notify(p->sock, NNG_PIPE_EV_ADD_POST, pub_on_pipe, p);
	nng_pipe_notify(p->sock, NNG_PIPE_EV_REM_POST, pub_on_pipe, p);
	if ((rv = attach(p->sock, url, listen)) != ASH_OK) {
		nng_close(p->sock);
		nng_aio_free(p->aio);
		free(p);
		return rv;
	}
	*out = p;
	return ASH_OK;
}

void
ash_bus_pub_close(ash_bus_pub *p)
{
	if (p == NULL)
		return;
	if (ash__bus_close(p->sock, "publisher", p)) {
		nng_aio_free(p->aio);
		free(p);
	}
}

ash_err
ash_bus_publish(
    ash_bus_pub *p, int topic, const char *tenant, const cJSON *body)
{
	char     id[ASH_REQID_LEN];
	size_t   len;
	char    *txt;
	nng_msg *msg;
	int      rv;

	/* With nobody connected NNG would drop the event; not rendering it
	 * saves that work on every stored message while no service
	 * subscribes (6.8 % of meta-ingest's CPU at full webhook load). A
	 * peer connecting meanwhile misses it either way. */
	if (atomic_load(&p->pipes) == 0)
		return ASH_OK;
	ash_id_request(id);
	id[0] = 'e'; /* event ids read e-... */
	txt   = ash_event_render(topic, id, tenant, ash_wall_ms(), body, &len);
	if ((rv = nng_msg_alloc(&msg, len)) == 0)
		memcpy(nng_msg_body(msg), txt, len);
	cJSON_free(txt);
	if (rv != 0)
		return ash__bus_err(rv);
	/* nng_send() would allocate an aio per call, and NNG 1.5 draws a
	 * random number (a getrandom syscall) for each new aio: one per
	 * stored message in meta-ingest. A pub socket completes a send in
	 * place (it queues to each pipe or drops, never waits), so the wait
	 * returns at once and the aio is free again. */
	nng_aio_set_msg(p->aio, msg);
	nng_send_aio(p->sock, p->aio);
	nng_aio_wait(p->aio);
	if ((rv = nng_aio_result(p->aio)) != 0)
		nng_msg_free(nng_aio_get_msg(p->aio));
	return ash__bus_err(rv);
}

static void
sub_deliver(ash_bus_sub *s, const char *buf, size_t len)
{
	ash_event ev;

	if (ash_event_parse(buf, len, &ev) != ASH_OK) {
		s->bad++;
		ash_log_warn(
		    NULL, "BUS-BADEVENT", "dropped a malformed event");
	} else if (s->cbs[ev.topic] != NULL) {
		s->cbs[ev.topic](s->args[ev.topic], &ev);
	}
	ash_event_fini(&ev);
}

static void
sub_on_readable(evutil_socket_t fd, short what, void *arg)
{
	ash_bus_sub *s = arg;
	nng_msg     *msg;

	/* RECVFD only says "something may be there": drain until EAGAIN. */
	while (nng_recvmsg(s->sock, &msg, NNG_FLAG_NONBLOCK) == 0) {
		sub_deliver(s, nng_msg_body(msg), nng_msg_len(msg));
		nng_msg_free(msg);
	}
}

ash_err
ash_bus_sub_open(ash_loop *loop, const char *url, bool listen, size_t max_msg,
    ash_bus_sub **out)
{
	ash_bus_sub *s = ash_xcalloc(1, sizeof(*s));
	int          fd;
	ash_err      rv;

	if (nng_sub0_open(&s->sock) != 0) {
		free(s);
		return ASH_EINTERNAL;
	}
	if ((rv = ash__bus_sock_opts(s->sock, max_msg)) != ASH_OK ||
	    (rv = attach(s->sock, url, listen)) != ASH_OK ||
	    nng_socket_get_int(s->sock, NNG_OPT_RECVFD, &fd) != 0) {
		nng_close(s->sock);
		free(s);
		return rv ? rv : ASH_EINTERNAL;
	}
	s->ev = event_new(
	    ash_loop_base(loop), fd, EV_READ | EV_PERSIST, sub_on_readable, s);
	event_add(s->ev, NULL);
	*out = s;
	return ASH_OK;
}

void
ash_bus_sub_close(ash_bus_sub *s)
{
	if (s == NULL)
		return;
	event_free(s->ev);
	if (ash__bus_close(s->sock, "subscriber", s))
		free(s);
}

ash_err
ash_bus_subscribe(ash_bus_sub *s, int topic, ash_bus_event_cb cb, void *arg)
{
	const char *name = ash_topic(topic)->name;
	char        prefix[128];
	size_t      n = strlen(name);

	ASH_ASSERT(n + 1 < sizeof(prefix));
	/* "name " so that "conv.message" does not also match
	 * "conv.message.in". */
	memcpy(prefix, name, n);
	prefix[n] = ' ';
	if (nng_socket_set(s->sock, NNG_OPT_SUB_SUBSCRIBE, prefix, n + 1) != 0)
		return ASH_EINTERNAL;
	s->cbs[topic]  = cb;
	s->args[topic] = arg;
	return ASH_OK;
}

static void *
forwarder_main(void *arg)
{
	ash_bus_forwarder *f = arg;

	/* Returns when either socket is closed. */
	(void) nng_device(f->in, f->out);
	return NULL;
}

ash_err
ash_bus_forwarder_start(
    const char *in_url, const char *out_url, ash_bus_forwarder **out)
{
	ash_bus_forwarder *f  = ash_xcalloc(1, sizeof(*f));
	ash_err            rv = ASH_EINTERNAL;

	if (nng_sub0_open_raw(&f->in) != 0)
		goto fail;
	if (nng_pub0_open_raw(&f->out) != 0)
		goto fail_in;
	if ((rv = attach(f->in, in_url, true)) != ASH_OK ||
	    (rv = attach(f->out, out_url, true)) != ASH_OK)
		goto fail_out;
	if (pthread_create(&f->thread, NULL, forwarder_main, f) != 0) {
		rv = ASH_EINTERNAL;
		goto fail_out;
	}
	*out = f;
	return ASH_OK;
fail_out:
	nng_close(f->out);
fail_in:
	nng_close(f->in);
fail:
	free(f);
	return rv;
}

void
ash_bus_forwarder_stop(ash_bus_forwarder *f)
{
	if (f == NULL)
		return;
	bool in  = ash__bus_close(f->in, "forwarder", f);
	bool out = ash__bus_close(f->out, "forwarder", f);

	/* nng_device returns once both are closed; if NNG got stuck it may
	 * not, and the thread is left behind with f. */
	if (in && out) {
		pthread_join(f->thread, NULL);
		free(f);
	} else {
		pthread_detach(f->thread);
	}
}
