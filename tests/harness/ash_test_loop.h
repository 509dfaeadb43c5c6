/*
 * ash_test_loop.h - running a test's event loop until a condition holds.
 *
 * The test sets `loop` (ash_loop_new) and calls run_until(pred): the loop
 * runs, pred() is polled every 5 ms, and the case fails after 10 s.
 * run_for_ms(ms) runs it for that long (under 10 s), whatever happens.
 */
#ifndef ASH_TEST_LOOP_H
#define ASH_TEST_LOOP_H

#include "ash_test.h"

#include <ashoon/loop.h>

#include <event2/event.h>
#include <stdbool.h>

static ash_loop *loop;
static bool (*until)(void);
static bool timed_out;

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	if (until == NULL || until())
		event_base_loopexit(ash_loop_base(loop), NULL);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	timed_out = true;
	event_base_loopexit(ash_loop_base(loop), NULL);
}

/* Runs the loop until pred() holds (polled every 5 ms); fails after 10 s. */
static void
run_until(bool (*pred)(void))
{
	struct event_base *base = ash_loop_base(loop);
	struct timeval     tick = {0, 5000}, limit = {10, 0};
	struct event      *t = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	struct event      *d = evtimer_new(base, on_deadline, NULL);

	until     = pred;
	timed_out = false;
	event_add(t, &tick);
	evtimer_add(d, &limit);
	event_base_dispatch(base);
	event_free(t);
	event_free(d);
	ASH_T_TRUE(!timed_out);
}

static int64_t run_for_end; /* ms, for run_for_ms */

static inline bool
run_for_over(void)
{
	return ash_now_ms() >= run_for_end;
}

/* inline: not every test that includes this uses it */
static inline void
run_for_ms(int ms)
{
	run_for_end = ash_now_ms() + ms;
	run_until(run_for_over);
}

#endif
