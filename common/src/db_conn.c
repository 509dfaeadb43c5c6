/*
 * db_conn.c - one Postgres connection as an explicit state machine.
 *
 *   RESOLVE -> CONNECTING -> IDLE <-> BUSY
 *                  |          |        |
 *                  +----------+--------+--> BACKOFF -> (RESOLVE|CONNECTING)
 *
 * One non-persistent libevent event per connection, re-armed after each
 * wake-up and re-created whenever the socket or the wanted events change
 * (PQconnectPoll may switch sockets). One timer per connection serves as
 * the connect timeout (CONNECTING) and the reconnect delay (BACKOFF).
 */
#include "db_impl.h"

#include <stdlib.h>
#include <string.h>

static void conn_on_io(evutil_socket_t fd, short what, void *arg);
static void conn_on_timer(evutil_socket_t fd, short what, void *arg);
static void conn_break(ash__db_conn *c, const char *why);

/* A connection in BACKOFF that has not started yet. */
ash__db_conn *
ash__db_conn_new(ash_db_pool *pool, int id, bool listener)
{
	ash__db_conn *c = ash_xcalloc(1, sizeof(*c));

	c->pool       = pool;
	c->id         = id;
	c->listener   = listener;
	c->state      = ASH__DB_C_BACKOFF;
	c->ev_fd      = -1;
	c->backoff_ms = ASH__DB_BACKOFF_MIN_MS;
	c->timer      = evtimer_new(pool->base, conn_on_timer, c);
	ASH_ASSERT(c->timer != NULL);
	return c;
}

/* Frees a connection closed by ash__db_conn_close. NULL is fine. */
void
ash__db_conn_free(ash__db_conn *c)
{
	if (c == NULL)
		return;
	ASH_ASSERT(c->state == ASH__DB_C_CLOSED && c->pg == NULL);
	free(c);
}

/* Releases the socket side: event, connect timer, PGconn. */
static void
conn_drop(ash__db_conn *c)
{
	if (c->ev != NULL) {
		event_free(c->ev);
		c->ev = NULL;
	}
	c->ev_fd    = -1;
	c->flushing = false;
	c->session++; /* a cancel still in flight targets a dead session */
	c->cancels = 0;
	if (c->timer != NULL)
		evtimer_del(c->timer);
	if (c->pg != NULL) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
}

/* Arms the socket event for what, re-creating it if the socket changed. */
static void
conn_wait(ash__db_conn *c, short what)
{
	int fd = PQsocket(c->pg);

	if (fd < 0) {
		conn_break(c, "no socket");
		return;
	}
	if (c->ev != NULL && (c->ev_fd != fd || c->ev_what != what)) {
		event_free(c->ev);
		c->ev = NULL;
	}
	if (c->ev == NULL) {
		c->ev = event_new(c->pool->base, fd, what, conn_on_io, c);
		ASH_ASSERT(c->ev != NULL);
		c->ev_fd   = fd;
		c->ev_what = what;
	}
	event_add(c->ev, NULL);
}

static void
conn_on_notice(void *arg, const PGresult *res)
{
	const char *sev =
	    PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *st   = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *msg  = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	bool        loud = sev != NULL && strcmp(sev, "NOTICE") != 0 &&
	    strcmp(sev, "INFO") != 0 && strcmp(sev, "LOG") != 0 &&
	    strncmp(sev, "DEBUG", 5) != 0;

	if (!loud && !ash_log_enabled(ASH_LOG_DEBUG))
		return;
	ash_log_field f[] = {ASH_LF_STR("sqlstate", st ? st : "")};
	ash_log_emitf(loud ? ASH_LOG_WARN : ASH_LOG_DEBUG, NULL, "DB-NOTICE",
	    f, 1, "%s: %s", sev ? sev : "?", msg ? msg : "");
}

/* Trims libpq's trailing newline into buf (messages hold no secrets). */
static const char *
conn_errmsg(const ash__db_conn *c, char *buf, size_t cap)
{
	const char *m = c->pg ? PQerrorMessage(c->pg) : "";
	size_t      n = strcspn(m, "\n");

	snprintf(buf, cap, "%.*s", (int) n, *m ? m : "unknown error");
	return buf;
}

/* --- BACKOFF ----------------------------------------------------------- */

static void
conn_backoff(ash__db_conn *c)
{
	int            base = c->backoff_ms;
	int            ms   = base + ash__db_rand(c->pool, base / 2 + 1);
	struct timeval tv;

	if (ms > ASH__DB_BACKOFF_MAX_MS)
		ms = ASH__DB_BACKOFF_MAX_MS;
	tv.tv_sec     = ms / 1000;
	tv.tv_usec    = (ms % 1000) * 1000;
	c->backoff_ms = base * 2 > ASH__DB_BACKOFF_MAX_MS
	    ? ASH__DB_BACKOFF_MAX_MS
	    : base * 2;
	c->state      = ASH__DB_C_BACKOFF;
	evtimer_add(c->timer, &tv);
}

/* Answers what the dead connection carried, after the state is settled. */
static void
conn_break_answer(ash__db_conn *c, ash__db_q *q, ash_db_tx *tx)
{
	ash_db_pool *pool = c->pool;
	bool         ends =
	    q != NULL && tx != NULL && q->tx == tx && q->kind != ASH__DB_Q_TX;

	if (tx != NULL && !ends)
		ash__db_tx_broken(tx);
	if (q != NULL) {
		q->where = ASH__DB_AT_NONE;
		q->conn  = NULL;
		/* A rollback has happened once the session is gone. */
		ash__db_q_answer(q,
		    q->kind == ASH__DB_Q_ROLLBACK ? ASH_OK : ASH_EUNAVAIL,
		    NULL);
		ash__db_q_free(q);
		if (pool->closing)
			return;
	}
	if (tx != NULL && !ends) {
		ash__db_tx_fail_pending(tx);
		if (pool->closing)
			return;
	}
	if (!c->listener && ash__db_live(pool) == 0)
		ash__db_fail_queue(pool, ASH_EUNAVAIL);
}

/* BROKEN: drops the session, schedules a reconnect, answers its work. */
static void
conn_break(ash__db_conn *c, const char *why)
{
	ash__db_q *q  = c->q;
	ash_db_tx *tx = c->tx;
	char       buf[256];

	if (why == NULL)
		why = conn_errmsg(c, buf, sizeof(buf));
	ash_log_warn(NULL, "DB-CONN", "connection %d%s down: %s", c->id,
	    c->listener ? " (listen)" : "", why);
	c->q  = NULL;
	c->tx = NULL;
	if (tx != NULL)
		tx->conn = NULL;
	conn_drop(c);
	conn_backoff(c);
	if (c->listener)
		ash__db_listen_reset(c->pool);
	conn_break_answer(c, q, tx);
}

/* --- CONNECTING -------------------------------------------------------- */

/* Starts a connection attempt (from BACKOFF or RESOLVE). */
void
ash__db_conn_start(ash__db_conn *c)
{
	ash_db_pool   *pool = c->pool;
	const char    *keys[8], *vals[8];
	int            ms = pool->connect_timeout_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	if (pool->need_resolve) {
		c->state = ASH__DB_C_RESOLVE;
		ash__db_resolve(pool);
		return;
	}
	ash__db_dsn_params(pool, keys, vals);
	c->pg = PQconnectStartParams(keys, vals, 1);
	ASH_ASSERT(c->pg != NULL); /* NULL only when libpq is out of memory */
	PQsetNoticeReceiver(c->pg, conn_on_notice, c);
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_break(c, NULL);
		return;
	}
	c->state = ASH__DB_C_CONNECTING;
	if (ms > 0)
		evtimer_add(c->timer, &tv);
	conn_wait(c, EV_WRITE); /* the first PQconnectPoll wants writable */
}

/* Starts c from a zero-delay timer, outside the caller's stack. */
void
ash__db_conn_start_soon(ash__db_conn *c)
{
	struct timeval now = {0, 0};

	ASH_ASSERT(c->state == ASH__DB_C_BACKOFF);
	evtimer_add(c->timer, &now);
}

/* RESOLVE: the pool's lookup finished (ok) or failed (back off). */
void
ash__db_conn_resolved(ash__db_conn *c, bool ok)
{
	if (ok)
		ash__db_conn_start(c);
	else
		conn_break(c, "host lookup failed");
}

static void
conn_ready(ash__db_conn *c)
{
	evtimer_del(c->timer);
	if (PQsetnonblocking(c->pg, 1) != 0) {
		conn_break(c, NULL);
		return;
	}
	c->backoff_ms = ASH__DB_BACKOFF_MIN_MS;
	c->state      = ASH__DB_C_IDLE;
	ash_log_debug(NULL, "DB-CONN", "connection %d%s up (backend %d)",
	    c->id, c->listener ? " (listen)" : "", PQbackendPID(c->pg));
	ash__db_conn_next(c);
}

static void
conn_connecting(ash__db_conn *c)
{
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_READING:
		conn_wait(c, EV_READ);
		return;
	case PGRES_POLLING_WRITING:
		conn_wait(c, EV_WRITE);
		return;
	case PGRES_POLLING_OK:
		conn_ready(c);
		return;
	default:
		conn_break(c, NULL);
		return;
	}
}

/* --- IDLE -------------------------------------------------------------- */

/* Picks this connection's next query, or NULL. */
static ash__db_q *
conn_take(ash__db_conn *c)
{
	ash_db_pool *pool = c->pool;
	ash__db_q   *q;

	if (c->listener)
		return ash__db_listen_next(pool);
	if (c->tx != NULL)
		return ash__db_qlist_pop(&c->tx->pending);
	if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		return ash__db_q_new(
		    pool, ASH__DB_Q_RESET, "ROLLBACK", 0, NULL);
	if ((q = ash__db_qlist_pop(&pool->queue)) != NULL &&
	    q->kind == ASH__DB_Q_BEGIN) {
		c->tx       = q->tx;
		q->tx->conn = c;
	}
	return q;
}

static void
conn_flush(ash__db_conn *c)
{
	int r = PQflush(c->pg);

	if (r < 0) {
		conn_break(c, NULL);
		return;
	}
	c->flushing = r == 1;
	conn_wait(c, c->flushing ? EV_READ | EV_WRITE : EV_READ);
}

/* Sends q. False when q failed locally and c can take the next one. */
static bool
conn_send(ash__db_conn *c, ash__db_q *q)
{
	char buf[256];

	c->q     = q;
	q->conn  = c;
	q->where = ASH__DB_AT_CONN;
	c->state = ASH__DB_C_BUSY;
	if (PQsendQueryParams(
	        c->pg, q->sql, q->n, NULL, q->params, NULL, NULL, 0)) {
		conn_flush(c);
		return true;
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_break(c, NULL);
		return true;
	}
	ash_log_warn(NULL, "DB-ERROR", "send failed: %s",
	    conn_errmsg(c, buf, sizeof(buf)));
	c->q     = NULL;
	q->conn  = NULL;
	q->where = ASH__DB_AT_NONE;
	c->state = ASH__DB_C_IDLE;
	ash__db_q_answer(q, ASH_EDB, NULL);
	ash__db_q_free(q);
	return false;
}

/* IDLE: sends the next query if there is one, else waits for input (EOF,
 * notifications). */
void
ash__db_conn_next(ash__db_conn *c)
{
	ash__db_q *q;

	ASH_ASSERT(c->state == ASH__DB_C_IDLE && c->q == NULL);
	/* A late cancel must not hit the next query: wait for the job. */
	while (c->cancels == 0 && (q = conn_take(c)) != NULL) {
		if (conn_send(c, q) || c->pool->closing)
			return;
	}
	if (!ash__db_notify(c))
		return;
	conn_wait(c, EV_READ);
}

static void
conn_idle(ash__db_conn *c)
{
	if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
		conn_break(c, NULL);
		return;
	}
	if (!ash__db_notify(c))
		return;
	conn_wait(c, EV_READ);
}

/* --- BUSY -------------------------------------------------------------- */

/* Keeps the first error, else the latest result. */
static void
conn_keep(ash__db_q *q, PGresult *r)
{
	if (q->res != NULL && PQresultStatus(q->res) == PGRES_FATAL_ERROR) {
		PQclear(r);
		return;
	}
	PQclear(q->res);
	q->res = r;
}

static ash_err
conn_result(ash__db_conn *c, ash__db_q *q, const PGresult **pass)
{
	ash_err rv = ash__db_map(c->pg, q->res);

	/* res goes to the callback for OK and SQL errors, not for a lost
	 * connection (db.h: NULL otherwise). */
	*pass = rv == ASH_OK ||
	        (rv != ASH_EUNAVAIL &&
	            PQresultErrorField(q->res, PG_DIAG_SQLSTATE))
	    ? q->res
	    : NULL;
	if (rv != ASH_OK && !q->answered)
		ash__db_log_result(c, q->res);
	/* COMMIT of an aborted transaction "succeeds" as ROLLBACK. */
	if (rv == ASH_OK && q->kind == ASH__DB_Q_COMMIT &&
	    strcmp(PQcmdStatus(q->res), "COMMIT") != 0) {
		if (!q->answered)
			ash_log_warn(NULL, "DB-ERROR",
			    "COMMIT answered %s: transaction was aborted",
			    PQcmdStatus(q->res));
		rv    = ASH_EDB;
		*pass = NULL;
	}
	return rv;
}

/* PQgetResult returned NULL: the query is complete. */
static void
conn_done(ash__db_conn *c)
{
	ash__db_q      *q = c->q;
	const PGresult *pass;
	ash_err         rv;

	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_break(c, NULL);
		return;
	}
	c->q     = NULL;
	q->conn  = NULL;
	q->where = ASH__DB_AT_NONE;
	c->state = ASH__DB_C_IDLE;
	if (q->res == NULL) /* no result at all: treat as a client error */
		q->res = PQmakeEmptyPGresult(c->pg, PGRES_FATAL_ERROR);
	rv = conn_result(c, q, &pass);
	ash__db_q_answer(q, rv, pass);
	ash__db_q_free(q);
	if (!c->pool->closing)
		ash__db_conn_next(c);
}

static void
conn_collect(ash__db_conn *c)
{
	PGresult *r;

	while (!PQisBusy(c->pg)) {
		if ((r = PQgetResult(c->pg)) == NULL) {
			conn_done(c);
			return;
		}
		conn_keep(c->q, r);
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_break(c, NULL);
		return;
	}
	conn_wait(c, c->flushing ? EV_READ | EV_WRITE : EV_READ);
}

static void
conn_busy(ash__db_conn *c, short what)
{
	int r;

	if ((what & EV_READ) && !PQconsumeInput(c->pg)) {
		conn_break(c, NULL);
		return;
	}
	if (!ash__db_notify(c))
		return;
	if (c->flushing) {
		if ((r = PQflush(c->pg)) < 0) {
			conn_break(c, NULL);
			return;
		}
		c->flushing = r == 1;
	}
	conn_collect(c);
}

/* --- events ------------------------------------------------------------ */

static void
conn_on_io(evutil_socket_t fd, short what, void *arg)
{
	ash__db_conn *c    = arg;
	ash_db_pool  *pool = c->pool;

	ash__db_pool_hold(pool);
	switch (c->state) {
	case ASH__DB_C_CONNECTING:
		conn_connecting(c);
		break;
	case ASH__DB_C_IDLE:
		conn_idle(c);
		break;
	case ASH__DB_C_BUSY:
		conn_busy(c, what);
		break;
	default:
		ASH_ASSERT(!"socket event in a state without a socket");
	}
	ash__db_pool_rele(pool);
}

static void
conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
	ash__db_conn *c    = arg;
	ash_db_pool  *pool = c->pool;

	ash__db_pool_hold(pool);
	switch (c->state) {
	case ASH__DB_C_BACKOFF:
		ash__db_conn_start(c);
		break;
	case ASH__DB_C_CONNECTING:
		conn_break(c, "connect timeout");
		break;
	default:
		ASH_ASSERT(!"timer in a state without a timer");
	}
	ash__db_pool_rele(pool);
}

/* --- cancel and close -------------------------------------------------- */

typedef struct conn_cancel {
	PGcancel     *pc;      /* the worker touches only pc and err */
	ash__db_conn *c;       /* loop side; the job holds a pool reference */
	unsigned      session; /* c->session the cancel was aimed at */
	char          err[256];
} conn_cancel;

static ash_err
conn_cancel_run(void *arg)
{
	conn_cancel *k = arg;

	return PQcancel(k->pc, k->err, (int) sizeof(k->err)) ? ASH_OK
	                                                     : ASH_EUNAVAIL;
}

static void
conn_cancel_done(void *arg, ash_err rv)
{
	conn_cancel  *k    = arg;
	ash__db_conn *c    = k->c;
	ash_db_pool  *pool = c->pool;

	if (rv == ASH_EUNAVAIL)
		ash_log_warn(NULL, "DB-CANCEL", "cancel failed: %s", k->err);
	PQfreeCancel(k->pc);
	if (!pool->closing && k->session == c->session && --c->cancels == 0 &&
	    c->state == ASH__DB_C_IDLE)
		ash__db_conn_next(c); /* drained meanwhile: back to work */
	free(k);
	ash__db_pool_rele(pool);
}

/*
 * The query on c timed out (already answered): asks the server to cancel it
 * from a worker (PQcancel blocks), while c keeps draining; c takes no new
 * work until the job is done. Without a worker the session is dropped.
 */
void
ash__db_conn_cancel(ash__db_conn *c)
{
	conn_cancel *k = ash_xcalloc(1, sizeof(*k));

	ASH_ASSERT(c->state == ASH__DB_C_BUSY);
	k->c       = c;
	k->session = c->session;
	k->pc      = PQgetCancel(c->pg);
	if (k->pc != NULL && c->pool->work != NULL &&
	    ash_work_submit(c->pool->work, conn_cancel_run, conn_cancel_done,
	        k) == ASH_OK) {
		c->cancels++;
		ash__db_pool_hold(c->pool);
		return;
	}
	PQfreeCancel(k->pc);
	free(k);
	conn_break(c, "cannot cancel a timed-out query");
}

/* Pool closing: drops everything armed; returns the query on the wire (the
 * caller answers it) and unpins the tx. */
ash__db_q *
ash__db_conn_close(ash__db_conn *c)
{
	ash__db_q *q = c->q;

	c->q = NULL;
	if (c->tx != NULL) {
		c->tx->conn = NULL;
		c->tx       = NULL;
	}
	conn_drop(c);
	event_free(c->timer);
	c->timer = NULL;
	c->state = ASH__DB_C_CLOSED;
	if (q != NULL) {
		q->where = ASH__DB_AT_NONE;
		q->conn  = NULL;
	}
	return q;
}
