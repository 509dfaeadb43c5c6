/*
 * loop_impl.h - libashoon-internal: the mailbox that carries completions
 * from other threads (NNG callbacks, workers) to the loop.
 *
 * Unlike ash_loop_post, a mailbox belongs to one object, so closing that
 * object can drain it synchronously: nothing is ever left queued that
 * points at freed memory.
 */
#ifndef ASHOON_LOOP_IMPL_H
#define ASHOON_LOOP_IMPL_H

#include <ashoon/loop.h>

typedef struct ash__mbox_node {
	struct ash__mbox_node *next;
} ash__mbox_node;

typedef struct ash__mbox ash__mbox;

/* Loop thread: fn(arg, node) runs on the loop once per pushed node. */
typedef void (*ash__mbox_fn)(void *arg, ash__mbox_node *node);

ash__mbox *ash__mbox_new(ash_loop *loop, ash__mbox_fn fn, void *arg);
/* Any thread. */
void ash__mbox_push(ash__mbox *mb, ash__mbox_node *node);
/* Loop thread: runs fn for everything queued now. */
void ash__mbox_drain(ash__mbox *mb);
/* Loop thread: drains, then frees. NULL is fine. */
void ash__mbox_free(ash__mbox *mb);

/* Loop thread: drains, then stops: later pushes are dropped without
 * touching the loop (for an owner abandoned while another library may
 * still call back). The mailbox itself is never freed. */
void ash__mbox_kill(ash__mbox *mb);

#endif
