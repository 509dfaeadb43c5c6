/*
 * loop.c - libevent base, cross-thread posting, signals and the drain.
 *
 * Posting: a mutex-protected FIFO and one persistent "wake" event that any
 * thread may event_active(); the loop drains the whole FIFO per wake-up, so
 * a burst of posts costs one wake. This is libuv's uv_async idea.
 */
#include <ashoon/log.h>
#include <ashoon/loop.h>

#include <event2/event.h>
#include <event2/thread.h>

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

typedef struct post {
	struct post *next;
	ash_loop_fn  fn;
	void        *arg;
} post;

struct ash_loop {
	struct event_base *base;
	struct event      *wake;     /* posted work is waiting */
	struct event      *sigterm;  /* NULL until on_shutdown */
	struct event      *sigint;   /* NULL until on_shutdown */
	struct event      *deadline; /* grace period timer */
	pthread_mutex_t    mtx;      /* guards head/tail */
	post              *head;     /* FIFO of posted work */
	post              *tail;
	ash_loop_fn        drain; /* service's stop-intake function */
	void              *drain_arg;
	unsigned           holds;    /* in-flight work */
	int                signals;  /* shutdown signals seen */
	bool               stopping; /* exit when holds reach 0 */
	bool               forced;   /* exit was not clean */
};

static pthread_once_t evthread_once = PTHREAD_ONCE_INIT;

static void
loop_evthread_init(void)
{
	evthread_use_pthreads();
}

static void
loop_on_wake(evutil_socket_t fd, short what, void *arg)
{
	ash_loop *loop = arg;
	post     *p;

	pthread_mutex_lock(&loop->mtx);
	p          = loop->head;
	loop->head = loop->tail = NULL;
	pthread_mutex_unlock(&loop->mtx);
	while (p != NULL) {
		post *next = p->next;
		p->fn(p->arg);
		free(p);
		p = next;
	}
}

ash_err
ash_loop_new(ash_loop **out)
{
	ash_loop *loop;

	pthread_once(&evthread_once, loop_evthread_init);
	loop = ash_xcalloc(1, sizeof(*loop));
	if ((loop->base = event_base_new()) == NULL) {
		free(loop);
		return ASH_EINTERNAL;
	}
	pthread_mutex_init(&loop->mtx, NULL);
	loop->wake = event_new(loop->base, -1, EV_PERSIST, loop_on_wake, loop);
	ASH_ASSERT(loop->wake != NULL);
	/* Added with a long persistent timeout so the loop never runs dry (an
	 * event with no fd and no timeout does not count as pending): it ends
	 * only through ash_loop_exit_when_idle or a second signal. */
	struct timeval hour = {3600, 0};
	event_add(loop->wake, &hour);
	*out = loop;
	return ASH_OK;
}

void
ash_loop_free(ash_loop *loop)
{
	post *p;

	if (loop == NULL)
		return;
	while ((p = loop->head) != NULL) {
		loop->head = p->next;
		free(p);
	}
	if (loop->sigterm)
		event_free(loop->sigterm);
	if (loop->sigint)
		event_free(loop->sigint);
	if (loop->deadline)
		event_free(loop->deadline);
	event_free(loop->wake);
	event_base_free(loop->base);
	pthread_mutex_destroy(&loop->mtx);
	free(loop);
}

struct event_base *
ash_loop_base(ash_loop *loop)
{
	return loop->base;
}

void
ash_loop_post(ash_loop *loop, ash_loop_fn fn, void *arg)
{
	post *p = ash_xmalloc(sizeof(*p));

	p->next = NULL;
	p->fn   = fn;
	p->arg  = arg;
	pthread_mutex_lock(&loop->mtx);
	if (loop->tail)
		loop->tail->next = p;
	else
		loop->head = p;
	loop->tail = p;
	pthread_mutex_unlock(&loop->mtx);
	event_active(loop->wake, EV_READ, 0);
}

static void
loop_maybe_exit(ash_loop *loop)
{
	if (loop->stopping && loop->holds == 0)
		event_base_loopexit(loop->base, NULL);
}

static void
loop_on_signal(evutil_socket_t sig, short what, void *arg)
{
	ash_loop *loop = arg;

	if (++loop->signals > 1) {
		ash_log_warn(NULL, "SHUTDOWN-NOW",
		    "second signal %d: exiting with %u in flight", (int) sig,
		    loop->holds);
		loop->forced = true;
		event_base_loopbreak(loop->base);
		return;
	}
	ash_log_info(NULL, "SHUTDOWN", "signal %d: draining %u in flight",
	    (int) sig, loop->holds);
	if (loop->drain)
		loop->drain(loop->drain_arg);
	else
		ash_loop_exit_when_idle(loop, 0);
}

ash_err
ash_loop_on_shutdown(ash_loop *loop, ash_loop_fn drain, void *arg)
{
	signal(SIGPIPE, SIG_IGN);
	loop->drain     = drain;
	loop->drain_arg = arg;
	loop->sigterm =
	    evsignal_new(loop->base, SIGTERM, loop_on_signal, loop);
	loop->sigint = evsignal_new(loop->base, SIGINT, loop_on_signal, loop);
	if (loop->sigterm == NULL || loop->sigint == NULL ||
	    evsignal_add(loop->sigterm, NULL) != 0 ||
	    evsignal_add(loop->sigint, NULL) != 0)
		return ASH_EINTERNAL;
	return ASH_OK;
}

void
ash_loop_hold(ash_loop *loop)
{
	loop->holds++;
}

void
ash_loop_rele(ash_loop *loop)
{
	ASH_ASSERT(loop->holds > 0);
	loop->holds--;
	loop_maybe_exit(loop);
}

unsigned
ash_loop_holds(const ash_loop *loop)
{
	return loop->holds;
}

static void
loop_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	ash_loop *loop = arg;

	ash_log_warn(NULL, "SHUTDOWN-DEADLINE",
	    "grace period over with %u in flight", loop->holds);
	loop->forced = true;
	event_base_loopbreak(loop->base);
}

void
ash_loop_exit_when_idle(ash_loop *loop, int grace_ms)
{
	struct timeval tv = {grace_ms / 1000, (grace_ms % 1000) * 1000};

	if (loop->stopping)
		return;
	loop->stopping = true;
	if (loop->holds == 0) {
		event_base_loopexit(loop->base, NULL);
		return;
	}
	loop->deadline = evtimer_new(loop->base, loop_on_deadline, loop);
	evtimer_add(loop->deadline, &tv);
}

bool
ash_loop_stopping(const ash_loop *loop)
{
	return loop->stopping || loop->signals > 0;
}

int
ash_loop_run(ash_loop *loop)
{
	event_base_dispatch(loop->base);
	return loop->forced ? 1 : 0;
}

int64_t
ash_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
ash_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
