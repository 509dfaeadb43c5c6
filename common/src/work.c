/*
 * work.c - fixed worker pool with a bounded FIFO.
 *
 * Threads take jobs from `todo` and put them on `done` when finished; a
 * persistent event, activated from the worker, runs the done callbacks on the
 * loop. Both lists are guarded by one mutex: jobs are coarse (milliseconds
 * at least), so contention is not a concern.
 */
#include <ashoon/work.h>

#include <event2/event.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

typedef struct job {
	struct job      *next;
	ash_work_fn      fn;
	ash_work_done_fn done;
	void            *arg;
	ash_err          rv;
} job;

typedef struct jobq {
	job *head;
	job *tail;
	int  n;
} jobq;

struct ash_work_pool {
	pthread_mutex_t mtx;
	pthread_cond_t  cv;   /* todo got a job, or closing */
	jobq            todo; /* waiting for a worker */
	jobq            done; /* waiting for their done callback */
	struct event   *wake; /* activated when done gets a job */
	pthread_t      *threads;
	int             nthreads;
	int             max_queue;
	bool            closing;
};

static void
jobq_push(jobq *q, job *j)
{
	j->next = NULL;
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	q->n++;
}

static job *
jobq_pop(jobq *q)
{
	job *j = q->head;

	if (j != NULL) {
		q->head = j->next;
		if (q->head == NULL)
			q->tail = NULL;
		q->n--;
	}
	return j;
}

static void *
work_thread(void *arg)
{
	ash_work_pool *pool = arg;
	job           *j;

	pthread_mutex_lock(&pool->mtx);
	for (;;) {
		while (!pool->closing && pool->todo.n == 0)
			pthread_cond_wait(&pool->cv, &pool->mtx);
		if (pool->closing)
			break;
		j = jobq_pop(&pool->todo);
		pthread_mutex_unlock(&pool->mtx);
		j->rv = j->fn(j->arg);
		pthread_mutex_lock(&pool->mtx);
		jobq_push(&pool->done, j);
		event_active(pool->wake, EV_READ, 0);
	}
	pthread_mutex_unlock(&pool->mtx);
	return NULL;
}

static void
work_run_done(ash_work_pool *pool)
{
	job *j;

	for (;;) {
		pthread_mutex_lock(&pool->mtx);
		j = jobq_pop(&pool->done);
		pthread_mutex_unlock(&pool->mtx);
		if (j == NULL)
			return;
		j->done(j->arg, j->rv);
		free(j);
	}
}

static void
work_on_wake(evutil_socket_t fd, short what, void *arg)
{
	work_run_done(arg);
}

ash_err
ash_work_pool_new(
    ash_loop *loop, int nthreads, int max_queue, ash_work_pool **out)
{
	ash_work_pool *pool;

	if (nthreads < 1 || max_queue < 1)
		return ASH_EINVAL;
	pool = ash_xcalloc(1, sizeof(*pool));
	pthread_mutex_init(&pool->mtx, NULL);
	pthread_cond_init(&pool->cv, NULL);
	pool->max_queue = max_queue;
	pool->wake =
	    event_new(ash_loop_base(loop), -1, EV_PERSIST, work_on_wake, pool);
	pool->threads = ash_xcalloc((size_t) nthreads, sizeof(pthread_t));
	for (int i = 0; i < nthreads; i++) {
		if (pthread_create(
		        &pool->threads[i], NULL, work_thread, pool)) {
			pool->nthreads = i;
			ash_work_pool_free(pool);
			return ASH_EINTERNAL;
		}
	}
	pool->nthreads = nthreads;
	*out           = pool;
	return ASH_OK;
}

void
ash_work_pool_free(ash_work_pool *pool)
{
	job *j;

	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->mtx);
	pool->closing = true;
	pthread_cond_broadcast(&pool->cv);
	pthread_mutex_unlock(&pool->mtx);
	for (int i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	work_run_done(pool);
	while ((j = jobq_pop(&pool->todo)) != NULL) {
		j->done(j->arg, ASH_ECANCELED);
		free(j);
	}
	event_free(pool->wake);
	pthread_cond_destroy(&pool->cv);
	pthread_mutex_destroy(&pool->mtx);
	free(pool->threads);
	free(pool);
}

ash_err
ash_work_submit(
    ash_work_pool *pool, ash_work_fn fn, ash_work_done_fn done, void *arg)
{
	job    *j;
	ash_err rv = ASH_OK;

	pthread_mutex_lock(&pool->mtx);
	if (pool->closing)
		rv = ASH_ECLOSED;
	else if (pool->todo.n >= pool->max_queue)
		rv = ASH_EUNAVAIL;
	if (rv == ASH_OK) {
		j       = ash_xmalloc(sizeof(*j));
		j->fn   = fn;
		j->done = done;
		j->arg  = arg;
		j->rv   = ASH_OK;
		jobq_push(&pool->todo, j);
		pthread_cond_signal(&pool->cv);
	}
	pthread_mutex_unlock(&pool->mtx);
	return rv;
}

int
ash_work_queued(const ash_work_pool *pool)
{
	return pool->todo.n;
}
