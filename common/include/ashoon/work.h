/*
 * ashoon/work.h - a small pool of threads for work that can only block.
 *
 * Document extraction, password hashing, PQcancel and libraries with only a
 * blocking API run here (STYLE §14). A job's fn runs on a worker and must
 * not touch any loop object; its done runs on the loop thread. The queue is
 * bounded: a full queue is ASH_EUNAVAIL, so callers answer 503 instead of
 * waiting.
 */
#ifndef ASHOON_WORK_H
#define ASHOON_WORK_H

#include <ashoon/loop.h>

typedef struct ash_work_pool ash_work_pool;

/* Worker thread: may block; returns the job's result. */
typedef ash_err (*ash_work_fn)(void *arg);
/* Loop thread: rv is fn's result, or ASH_ECANCELED if the pool was freed
 * before fn started. */
typedef void (*ash_work_done_fn)(void *arg, ash_err rv);

/* Loop thread. nthreads >= 1, max_queue >= 1. */
ash_err ash_work_pool_new(ash_loop *loop, int nthreads, int max_queue,
    ash_work_pool **out) ASH_MUSTCHECK;

/* Loop thread. Waits for running jobs, then calls done for every job that
 * has not had it yet (finished: their rv; never started: ASH_ECANCELED),
 * on this thread, before returning. NULL is fine. */
void ash_work_pool_free(ash_work_pool *pool);

/* Loop thread. ASH_EUNAVAIL when the queue is full, ASH_ECLOSED while the
 * pool is being freed. On ASH_OK done is called exactly once, later. */
ash_err ash_work_submit(ash_work_pool *pool, ash_work_fn fn,
    ash_work_done_fn done, void *arg) ASH_MUSTCHECK;

/* Loop thread. Jobs queued and not yet started. */
int ash_work_queued(const ash_work_pool *pool);

#endif
