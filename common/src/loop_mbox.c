/*
 * loop_mbox.c - a locked FIFO plus one event: any thread pushes, the loop
 * runs the owner's function for each node (libuv's uv_async shape).
 */
#include "loop_impl.h"

#include <event2/event.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct ash__mbox {
	pthread_mutex_t mtx;
	ash__mbox_node *head, *tail;
	struct event   *ev;
	ash__mbox_fn    fn;
	void           *arg;
	bool            dead; /* killed: pushes are dropped */
};

static void
mbox_on_wake(evutil_socket_t fd, short what, void *arg)
{
	ash__mbox_drain(arg);
}

ash__mbox *
ash__mbox_new(ash_loop *loop, ash__mbox_fn fn, void *arg)
{
	ash__mbox *mb = ash_xcalloc(1, sizeof(*mb));

	pthread_mutex_init(&mb->mtx, NULL);
	mb->fn  = fn;
	mb->arg = arg;
	mb->ev =
	    event_new(ash_loop_base(loop), -1, EV_PERSIST, mbox_on_wake, mb);
	ASH_ASSERT(mb->ev != NULL);
	return mb;
}

void
ash__mbox_push(ash__mbox *mb, ash__mbox_node *node)
{
	bool dead;

	node->next = NULL;
	pthread_mutex_lock(&mb->mtx);
	if (!(dead = mb->dead)) {
		if (mb->tail)
			mb->tail->next = node;
		else
			mb->head = node;
		mb->tail = node;
	}
	pthread_mutex_unlock(&mb->mtx);
	if (!dead)
		event_active(mb->ev, EV_READ, 0);
}

void
ash__mbox_drain(ash__mbox *mb)
{
	ash__mbox_node *n;

	pthread_mutex_lock(&mb->mtx);
	n        = mb->head;
	mb->head = mb->tail = NULL;
	pthread_mutex_unlock(&mb->mtx);
	while (n != NULL) {
		ash__mbox_node *next = n->next;
		mb->fn(mb->arg, n);
		n = next;
	}
}

void
ash__mbox_free(ash__mbox *mb)
{
	if (mb == NULL)
		return;
	ash__mbox_drain(mb);
	event_free(mb->ev);
	pthread_mutex_destroy(&mb->mtx);
	free(mb);
}

void
ash__mbox_kill(ash__mbox *mb)
{
	ash__mbox_drain(mb);
	pthread_mutex_lock(&mb->mtx);
	mb->dead = true;
	pthread_mutex_unlock(&mb->mtx);
	event_free(mb->ev);
	mb->ev = NULL;
}
