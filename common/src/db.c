/*
 * db.c - the Postgres pool: queue, deadlines, answers, open and close.
 *
 * Design. A pool owns `size` connections (db_conn.c), each an explicit
 * state machine driven by one libevent event on its socket, plus an
 * optional listen connection (db_listen.c). Everything runs on the loop
 * thread; the worker pool only runs PQcancel and getaddrinfo, and those
 * jobs never touch pool objects except the lookup's done callback, which
 * holds a pool reference.
 *
 * A query is copied into one allocation (ash__db_q) and is always owned by
 * exactly one place: the pool queue, a transaction's pending list, the
 * deferred-answer list, or the connection it was sent on. API calls never
 * run user callbacks and never touch a socket: they enqueue and "kick" a
 * zero-delay event that dispatches to idle connections. So every user
 * callback runs from a libevent callback (or from ash_db_pool_close), and
 * re-entrancy is limited to one thing: a callback may close the pool. Each
 * place that runs a callback therefore checks pool->closing right after and
 * unwinds without touching connections. Memory stays valid meanwhile: the
 * pool and its connection structs are freed only when the last reference
 * (owner, running libevent callback, lookup job) is released (STYLE §7).
 *
 * Deadlines start at submission. At expiry the callback gets ASH_ETIMEDOUT
 * at once; a query still queued is simply dropped, one on the wire is
 * cancelled with PQcancel on a worker and its connection keeps draining
 * (results discarded) until PQgetResult returns NULL, then goes back to
 * the pool. What can fail: connections (reopened with backoff, queries on
 * them get ASH_EUNAVAIL), SQL (mapped per db.h, logged as DB-ERROR with the
 * SQLSTATE and primary message only), capacity (ASH_EUNAVAIL at once).
 */
#include "db_impl.h"

#include <stdlib.h>
#include <string.h>

/* --- lists ------------------------------------------------------------- */

/* Appends q to l (FIFO). */
void
ash__db_qlist_push(ash__db_qlist *l, ash__db_q *q)
{
	q->next = NULL;
	q->prev = l->tail;
	if (l->tail)
		l->tail->next = q;
	else
		l->head = q;
	l->tail = q;
	l->n++;
}

/* Unlinks q, which must be on l. */
void
ash__db_qlist_remove(ash__db_qlist *l, ash__db_q *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		l->head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		l->tail = q->prev;
	q->prev = q->next = NULL;
	q->where          = ASH__DB_AT_NONE;
	l->n--;
}

/* Takes the oldest query off l, or NULL. */
ash__db_q *
ash__db_qlist_pop(ash__db_qlist *l)
{
	ash__db_q *q = l->head;

	if (q != NULL)
		ash__db_qlist_remove(l, q);
	return q;
}

/* --- references and small helpers -------------------------------------- */

/* Takes a reference that keeps the pool's memory alive. */
void
ash__db_pool_hold(ash_db_pool *pool)
{
	pool->refs++;
}

static void
pool_free(ash_db_pool *pool)
{
	for (int i = 0; i < pool->size; i++)
		ash__db_conn_free(pool->conns[i]);
	ash__db_conn_free(pool->listener);
	ash__db_dsn_fini(pool);
	free(pool->conns);
	free(pool);
}

/* Drops a reference; the last one frees the pool (closing is set by then).
 */
void
ash__db_pool_rele(ash_db_pool *pool)
{
	ASH_ASSERT(pool->refs > 0);
	if (--pool->refs == 0) {
		ASH_ASSERT(pool->closing);
		pool_free(pool);
	}
}

/* Returns a pseudo-random number in [0, n) for backoff jitter. */
int
ash__db_rand(ash_db_pool *pool, int n)
{
	uint64_t x = pool->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	pool->rng = x;
	return n > 0 ? (int) (x % (uint64_t) n) : 0;
}

/* Counts query connections that are up or trying to come up. */
int
ash__db_live(const ash_db_pool *pool)
{
	int n = 0;

	for (int i = 0; i < pool->size; i++) {
		enum ash__db_cstate s = pool->conns[i]->state;
		n += s != ASH__DB_C_BACKOFF && s != ASH__DB_C_CLOSED;
	}
	return n;
}

static int
pool_idle_free(const ash_db_pool *pool)
{
	int n = 0;

	for (int i = 0; i < pool->size; i++)
		n += pool->conns[i]->state == ASH__DB_C_IDLE &&
		    pool->conns[i]->tx == NULL && pool->conns[i]->cancels == 0;
	return n;
}

/* Schedules pool_on_kick for this loop turn (idempotent). */
void
ash__db_kick(ash_db_pool *pool)
{
	if (!pool->closing)
		event_active(pool->kick, EV_TIMEOUT, 0);
}

/* --- queries ----------------------------------------------------------- */

/* Copies sql and params into one new query (owned by the caller). */
ash__db_q *
ash__db_q_new(ash_db_pool *pool, enum ash__db_qkind kind, const char *sql,
    int n, const char *const *params)
{
	size_t     len = strlen(sql) + 1, plen = (size_t) n * sizeof(char *);
	ash__db_q *q;
	char      *s;

	for (int i = 0; i < n; i++)
		len += params[i] ? strlen(params[i]) + 1 : 0;
	q       = ash_xcalloc(1, sizeof(*q) + plen + len);
	s       = (char *) q + sizeof(*q) + plen;
	q->pool = pool;
	q->kind = kind;
	q->n    = n;
	for (int i = 0; i < n; i++) {
		if (params[i] == NULL)
			continue;
		q->params[i] = s;
		s            = stpcpy(s, params[i]) + 1;
	}
	q->sql = s;
	strcpy(s, sql);
	return q;
}

/* Frees a query that no list or connection owns any more. */
void
ash__db_q_free(ash__db_q *q)
{
	if (q == NULL)
		return;
	ASH_ASSERT(q->where == ASH__DB_AT_NONE);
	if (q->deadline)
		event_free(q->deadline);
	PQclear(q->res);
	free(q);
}

static void
q_answer_begin(ash__db_q *q, ash_err rv)
{
	ash_db_tx *tx = q->tx;

	q->tx = NULL;
	if (rv == ASH_OK && tx->state == ASH__DB_TX_BEGINNING) {
		tx->state = ASH__DB_TX_OPEN;
		q->txcb(q->arg, ASH_OK, tx);
		return;
	}
	ash__db_tx_end(tx);
	q->txcb(q->arg, rv == ASH_OK ? ASH_EDB : rv, NULL);
}

static void
q_answer_internal(ash__db_q *q, ash_err rv)
{
	if (rv != ASH_OK && rv != ASH_EUNAVAIL && rv != ASH_ECANCELED)
		ash_log_warn(NULL, "DB-ERROR", "internal %s failed: %s",
		    q->kind == ASH__DB_Q_RESET ? "ROLLBACK" : "LISTEN",
		    ash_strerror(rv));
}

/* Delivers the one answer of q. */
void
ash__db_q_answer(ash__db_q *q, ash_err rv, const PGresult *res)
{
	if (q->answered)
		return;
	q->answered = true;
	if (q->deadline) {
		event_free(q->deadline);
		q->deadline = NULL;
	}
	switch (q->kind) {
	case ASH__DB_Q_PLAIN:
	case ASH__DB_Q_TX:
		q->cb(q->arg, rv, res);
		break;
	case ASH__DB_Q_BEGIN:
		q_answer_begin(q, rv);
		break;
	case ASH__DB_Q_COMMIT:
	case ASH__DB_Q_ROLLBACK:
		if (q->tx != NULL) {
			ash__db_tx_end(q->tx);
			q->tx = NULL;
		}
		if (q->cb)
			q->cb(q->arg, rv, res);
		break;
	case ASH__DB_Q_RESET:
	case ASH__DB_Q_LISTEN:
		q_answer_internal(q, rv);
		break;
	}
}

static void
q_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	ash__db_q   *q    = arg;
	ash_db_pool *pool = q->pool;

	ash__db_pool_hold(pool);
	switch (q->where) {
	case ASH__DB_AT_QUEUE:
		ash__db_qlist_remove(&pool->queue, q);
		ash__db_q_answer(q, ASH_ETIMEDOUT, NULL);
		ash__db_q_free(q);
		break;
	case ASH__DB_AT_TX:
		ash__db_qlist_remove(&q->tx->pending, q);
		ash__db_q_answer(q, ASH_ETIMEDOUT, NULL);
		ash__db_q_free(q);
		break;
	case ASH__DB_AT_CONN:
		/* Answer first ("at once"), then stop the server's work. */
		ash__db_q_answer(q, ASH_ETIMEDOUT, NULL);
		if (!pool->closing)
			ash__db_conn_cancel(q->conn);
		break;
	default:
		ASH_ASSERT(!"deadline on a query nobody owns");
	}
	ash__db_pool_rele(pool);
}

/* Starts q's deadline (query_timeout_ms from now). */
void
ash__db_q_arm(ash__db_q *q)
{
	int            ms = q->pool->query_timeout_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	q->deadline = evtimer_new(q->pool->base, q_on_deadline, q);
	ASH_ASSERT(q->deadline != NULL);
	evtimer_add(q->deadline, &tv);
}

/* Answers every queued query with rv; stops if a callback closes the pool.
 */
void
ash__db_fail_queue(ash_db_pool *pool, ash_err rv)
{
	ash__db_q *q;

	while (!pool->closing && (q = ash__db_qlist_pop(&pool->queue))) {
		ash__db_q_answer(q, rv, NULL);
		ash__db_q_free(q);
	}
}

/* Checks a new query's arguments and whether the pool can take it. */
ash_err
ash__db_admit(
    ash_db_pool *pool, const char *sql, int n, const char *const *params)
{
	if (pool->closing)
		return ASH_ECLOSED;
	if (sql == NULL || n < 0 || n > ASH__DB_MAX_PARAMS ||
	    (n > 0 && params == NULL))
		return ASH_EINVAL;
	if (ash__db_live(pool) == 0)
		return ASH_EUNAVAIL;
	/* Queries pass through the queue on their way to an idle
	 * connection, so only those beyond the idle ones count. */
	if (pool->queue.n >= pool->max_queue + pool_idle_free(pool))
		return ASH_EUNAVAIL;
	return ASH_OK;
}

/* --- result mapping and logging ---------------------------------------- */

static ash_err
map_sqlstate(const PGconn *pg, const char *st)
{
	if (st == NULL || strlen(st) != 5)
		return pg != NULL && PQstatus(pg) == CONNECTION_BAD
		    ? ASH_EUNAVAIL
		    : ASH_EDB;
	if (strcmp(st, "23505") == 0)
		return ASH_ECONFLICT;
	if (strcmp(st, "42501") == 0)
		return ASH_EFORBIDDEN;
	if (strcmp(st, "57014") == 0)
		return ASH_ETIMEDOUT;
	/* data_exception (a value out of range or bad text for its type)
	 * and program_limit_exceeded (a value too big for an index): the
	 * same value fails every time. */
	if (strncmp(st, "22", 2) == 0 || strncmp(st, "54", 2) == 0)
		return ASH_EINVAL;
	/* connection_exception, admin/crash shutdown, cannot connect now */
	if (strncmp(st, "08", 2) == 0 || strncmp(st, "57P0", 4) == 0)
		return ASH_EUNAVAIL;
	return ASH_EDB;
}

/* Maps one result to the error contract of db.h. */
ash_err
ash__db_map(const PGconn *pg, const PGresult *res)
{
	if (res == NULL)
		return map_sqlstate(pg, NULL);
	switch (PQresultStatus(res)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
	case PGRES_EMPTY_QUERY:
		return ASH_OK;
	case PGRES_FATAL_ERROR:
		return map_sqlstate(
		    pg, PQresultErrorField(res, PG_DIAG_SQLSTATE));
	default: /* COPY and friends: not supported through this API */
		return ASH_EDB;
	}
}

/* Logs an error result as DB-ERROR: SQLSTATE and primary message only.
 * Data exceptions (class 22) quote the offending input after ": ", which
 * can be a parameter value, so that part is cut. */
void
ash__db_log_result(const ash__db_conn *c, const PGresult *res)
{
	const char *st  = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *cut;
	int         len;

	if (st == NULL)
		st = "";
	if (msg == NULL)
		msg = PQresultStatus(res) == PGRES_FATAL_ERROR
		    ? "client-side error"
		    : PQresStatus(PQresultStatus(res));
	len = (int) strlen(msg);
	if (strncmp(st, "22", 2) == 0 && (cut = strstr(msg, ": ")) != NULL)
		len = (int) (cut - msg);
	ash_log_field f[] = {
	    ASH_LF_STR("sqlstate", st), ASH_LF_INT("conn", c ? c->id : 0)};
	ash_log_emitf(ASH_LOG_WARN, NULL, "DB-ERROR", f, 2, "%.*s", len, msg);
}

/* --- the kick: deferred answers and dispatch ---------------------------- */

static void
pool_on_kick(evutil_socket_t fd, short what, void *arg)
{
	ash_db_pool *pool = arg;
	ash__db_q   *q;

	ash__db_pool_hold(pool);
	while (!pool->closing && (q = ash__db_qlist_pop(&pool->deferred))) {
		ash__db_q_answer(q, q->rv, NULL);
		ash__db_q_free(q);
	}
	for (int i = 0; i < pool->size && !pool->closing; i++)
		if (pool->conns[i]->state == ASH__DB_C_IDLE)
			ash__db_conn_next(pool->conns[i]);
	if (!pool->closing && pool->listener != NULL &&
	    pool->listener->state == ASH__DB_C_IDLE)
		ash__db_conn_next(pool->listener);
	ash__db_pool_rele(pool);
}

/* --- public API -------------------------------------------------------- */

static ash_err
pool_check_opts(const ash_loop *loop, const ash_db_opts *o)
{
	if (loop == NULL || o == NULL || o->dsn == NULL)
		return ASH_EINVAL;
	if (o->size < 1 || o->size > 1000 || o->query_timeout_ms < 1 ||
	    o->max_queue < 1)
		return ASH_EINVAL;
	return ASH_OK;
}

/*
 * Validates opts, parses the DSN and starts every connection (none is
 * waited for). Loop thread. ASH_EINVAL for bad options or an unparsable
 * DSN (not logged in full: it may hold a password).
 */
ash_err
ash_db_pool_open(ash_loop *loop, ash_work_pool *work, const ash_db_opts *opts,
    ash_db_pool **out)
{
	ash_db_pool *pool;
	ash_err      rv;

	if ((rv = pool_check_opts(loop, opts)) != ASH_OK)
		return rv;
	pool                     = ash_xcalloc(1, sizeof(*pool));
	pool->loop               = loop;
	pool->work               = work;
	pool->base               = ash_loop_base(loop);
	pool->query_timeout_ms   = opts->query_timeout_ms;
	pool->connect_timeout_ms = opts->connect_timeout_ms;
	pool->max_queue          = opts->max_queue;
	pool->refs               = 1;
	pool->rng = (uint64_t) ash_now_ms() * 2654435761u ^ (uintptr_t) pool;
	pool->rng |= 1;
	if ((rv = ash__db_dsn_init(pool, opts)) != ASH_OK) {
		ash__db_dsn_fini(pool);
		free(pool);
		return rv;
	}
	pool->kick = event_new(pool->base, -1, 0, pool_on_kick, pool);
	ASH_ASSERT(pool->kick != NULL);
	pool->size  = opts->size;
	pool->conns = ash_xcalloc((size_t) pool->size, sizeof(*pool->conns));
	for (int i = 0; i < pool->size; i++)
		pool->conns[i] = ash__db_conn_new(pool, i, false);
	for (int i = 0; i < pool->size; i++)
		ash__db_conn_start(pool->conns[i]);
	*out = pool;
	return ASH_OK;
}

static void
pool_cancel_conn(ash__db_conn *c)
{
	ash__db_q *q;

	if (c == NULL || (q = ash__db_conn_close(c)) == NULL)
		return;
	ash__db_q_answer(q, ASH_ECANCELED, NULL);
	ash__db_q_free(q);
}

static void
pool_cancel_list(ash__db_qlist *l)
{
	ash__db_q *q;

	while ((q = ash__db_qlist_pop(l)) != NULL) {
		ash__db_q_answer(q, ASH_ECANCELED, NULL);
		ash__db_q_free(q);
	}
}

/*
 * Answers everything outstanding with ASH_ECANCELED (callbacks run here,
 * before this returns), closes every connection (open transactions roll
 * back server-side) and drops the owner's reference. Loop thread. Safe to
 * call from a pool callback; a second call does nothing.
 */
void
ash_db_pool_close(ash_db_pool *pool)
{
	if (pool == NULL || pool->closing)
		return;
	pool->closing = true;
	ash__db_pool_hold(pool);
	for (int i = 0; i < pool->size; i++)
		pool_cancel_conn(pool->conns[i]);
	pool_cancel_conn(pool->listener);
	pool_cancel_list(&pool->deferred);
	pool_cancel_list(&pool->queue);
	while (pool->txs != NULL)
		ash__db_tx_end(pool->txs);
	event_free(pool->kick);
	pool->kick = NULL;
	ash__db_listen_free(pool);
	ash__db_pool_rele(pool); /* ours */
	ash__db_pool_rele(pool); /* the owner's */
}

/* Query connections that are connected and not broken. */
int
ash_db_pool_up(const ash_db_pool *pool)
{
	int n = 0;

	for (int i = 0; i < pool->size; i++) {
		enum ash__db_cstate s = pool->conns[i]->state;
		n += s == ASH__DB_C_IDLE || s == ASH__DB_C_BUSY;
	}
	return n;
}

/*
 * Queues sql with its parameters (copied) for the next idle connection.
 * Loop thread; cb runs later, exactly once, unless this returns an error.
 */
ash_err
ash_db_query(ash_db_pool *pool, const char *sql, int n,
    const char *const *params, ash_db_cb cb, void *arg)
{
	ash__db_q *q;
	ash_err    rv;

	if (cb == NULL)
		return ASH_EINVAL;
	if ((rv = ash__db_admit(pool, sql, n, params)) != ASH_OK)
		return rv;
	q      = ash__db_q_new(pool, ASH__DB_Q_PLAIN, sql, n, params);
	q->cb  = cb;
	q->arg = arg;
	ash__db_q_arm(q);
	ash__db_qlist_push(&pool->queue, q);
	q->where = ASH__DB_AT_QUEUE;
	ash__db_kick(pool);
	return ASH_OK;
}
