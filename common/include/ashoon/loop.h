/*
 * ashoon/loop.h - the service's event loop (libevent) and its lifecycle.
 *
 * One loop per service process, run by the main thread. Other threads (NNG
 * callbacks, the worker pool) never touch loop objects: they hand work over
 * with ash_loop_post(), which queues it and wakes the loop with
 * event_active().
 *
 * Shutdown (STYLE §11): SIGTERM/SIGINT arrive as loop callbacks. The first
 * calls the drain function the service registered (stop intake); the service
 * then calls ash_loop_exit_when_idle(), and the loop exits when every
 * ash_loop_hold() has been released or the grace period ends. A second
 * signal exits at once.
 */
#ifndef ASHOON_LOOP_H
#define ASHOON_LOOP_H

#include <ashoon/err.h>

#include <stdbool.h>
#include <stdint.h>

struct event_base;
typedef struct ash_loop ash_loop;
typedef void (*ash_loop_fn)(void *arg);

/* Main thread. Calls evthread_use_pthreads() (once) before creating the
 * base, so other threads may post. Free with ash_loop_free(). */
ash_err ash_loop_new(ash_loop **out) ASH_MUSTCHECK;

/* Main thread, after the loop stopped and every object on it was closed.
 * Posted functions that never ran are dropped (not called). NULL is fine. */
void ash_loop_free(ash_loop *loop);

/* The libevent base, for modules that add their own events. */
struct event_base *ash_loop_base(ash_loop *loop);

/* Any thread. fn(arg) will run once on the loop thread. Never fails. */
void ash_loop_post(ash_loop *loop, ash_loop_fn fn, void *arg);

/* Loop thread. Installs SIGTERM and SIGINT handlers (as loop events) and
 * ignores SIGPIPE. drain(arg) runs on the first signal; the second exits the
 * loop at once. */
ash_err ash_loop_on_shutdown(
    ash_loop *loop, ash_loop_fn drain, void *arg) ASH_MUSTCHECK;

/* Loop thread. Count of in-flight work that a drain waits for. */
void     ash_loop_hold(ash_loop *loop);
void     ash_loop_rele(ash_loop *loop);
unsigned ash_loop_holds(const ash_loop *loop);

/* Loop thread. Exit once holds reach zero, or after grace_ms at the latest.
 * Also the way to stop a loop programmatically (grace_ms = 0 with no holds
 * exits at the next turn). */
void ash_loop_exit_when_idle(ash_loop *loop, int grace_ms);

/* True once shutdown has begun (signal or exit_when_idle). */
bool ash_loop_stopping(const ash_loop *loop);

/* Main thread. Runs until the loop exits. Returns 0 after a clean drain,
 * 1 when the grace period ran out or a second signal forced the exit. */
int ash_loop_run(ash_loop *loop);

/* Monotonic clock in milliseconds, and wall clock in milliseconds since the
 * epoch (envelope deadlines and timestamps). Any thread. */
int64_t ash_now_ms(void);
int64_t ash_wall_ms(void);

#endif
