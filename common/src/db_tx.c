/*
 * db_tx.c - transactions: one pinned connection from BEGIN to the end.
 *
 * BEGIN travels through the pool queue like any query; the connection that
 * takes it is pinned (conn->tx) and from then on serves only tx->pending,
 * in order. COMMIT and ROLLBACK are queued there too and free the tx when
 * answered. If the pinned connection dies the tx is BROKEN: queued tx
 * queries get ASH_EUNAVAIL, new ones are refused, COMMIT answers
 * ASH_EUNAVAIL and ROLLBACK ASH_OK (the server rolled back) - both from the
 * kick, never inside the API call.
 */
#include "db_impl.h"

#include <stdlib.h>

static void
tx_unlink(ash_db_tx *tx)
{
	ash_db_pool *pool = tx->pool;

	if (tx->prev)
		tx->prev->next = tx->next;
	else
		pool->txs = tx->next;
	if (tx->next)
		tx->next->prev = tx->prev;
	tx->prev = tx->next = NULL;
}

/*
 * Unpins and frees tx. Anything still pending (only possible when the pool
 * closes) gets ASH_ECANCELED first. The tx must not be used afterwards.
 */
void
ash__db_tx_end(ash_db_tx *tx)
{
	ash__db_q *q;

	ASH_ASSERT(tx->state != ASH__DB_TX_DEAD);
	tx->state = ASH__DB_TX_DEAD;
	if (tx->conn != NULL) {
		tx->conn->tx = NULL;
		tx->conn     = NULL;
	}
	tx_unlink(tx);
	while ((q = ash__db_qlist_pop(&tx->pending)) != NULL) {
		q->tx = NULL; /* do not end tx again from a COMMIT's answer */
		ash__db_q_answer(q, ASH_ECANCELED, NULL);
		ash__db_q_free(q);
	}
	free(tx);
}

/* The pinned connection died (tx->conn is already NULL). */
void
ash__db_tx_broken(ash_db_tx *tx)
{
	if (tx->state == ASH__DB_TX_OPEN)
		tx->state = ASH__DB_TX_BROKEN;
}

/* Answers tx's queued queries after its connection died; stops after the
 * COMMIT/ROLLBACK (which frees tx) or when a callback closes the pool. */
void
ash__db_tx_fail_pending(ash_db_tx *tx)
{
	ash_db_pool *pool = tx->pool;
	ash__db_q   *q;
	bool         ends;

	while ((q = ash__db_qlist_pop(&tx->pending)) != NULL) {
		ends = q->kind != ASH__DB_Q_TX;
		ash__db_q_answer(q,
		    q->kind == ASH__DB_Q_ROLLBACK ? ASH_OK : ASH_EUNAVAIL,
		    NULL);
		ash__db_q_free(q);
		if (ends || pool->closing)
			return;
	}
}

/*
 * Queues BEGIN; the connection that runs it stays pinned to the tx. Loop
 * thread. Errors as ash_db_query; on ASH_OK cb runs later, exactly once.
 */
ash_err
ash_db_tx_begin(ash_db_pool *pool, ash_db_tx_cb cb, void *arg)
{
	ash_db_tx *tx;
	ash__db_q *q;
	ash_err    rv;

	if (cb == NULL)
		return ASH_EINVAL;
	if ((rv = ash__db_admit(pool, "BEGIN", 0, NULL)) != ASH_OK)
		return rv;
	tx        = ash_xcalloc(1, sizeof(*tx));
	tx->pool  = pool;
	tx->state = ASH__DB_TX_BEGINNING;
	tx->next  = pool->txs;
	if (pool->txs)
		pool->txs->prev = tx;
	pool->txs = tx;
	q         = ash__db_q_new(pool, ASH__DB_Q_BEGIN, "BEGIN", 0, NULL);
	q->txcb   = cb;
	q->arg    = arg;
	q->tx     = tx;
	ash__db_q_arm(q);
	ash__db_qlist_push(&pool->queue, q);
	q->where = ASH__DB_AT_QUEUE;
	ash__db_kick(pool);
	return ASH_OK;
}

/*
 * Queues a query on tx's connection. Loop thread. ASH_EUNAVAIL once the
 * connection died, ASH_ECLOSED while the pool closes, ASH_EINVAL after
 * commit/rollback was requested.
 */
ash_err
ash_db_tx_query(ash_db_tx *tx, const char *sql, int n,
    const char *const *params, ash_db_cb cb, void *arg)
{
	ash_db_pool *pool = tx->pool;
	ash__db_q   *q;

	if (cb == NULL || sql == NULL || n < 0 || n > ASH__DB_MAX_PARAMS ||
	    (n > 0 && params == NULL))
		return ASH_EINVAL;
	if (pool->closing)
		return ASH_ECLOSED;
	if (tx->state == ASH__DB_TX_BROKEN)
		return ASH_EUNAVAIL;
	if (tx->state != ASH__DB_TX_OPEN)
		return ASH_EINVAL;
	q      = ash__db_q_new(pool, ASH__DB_Q_TX, sql, n, params);
	q->cb  = cb;
	q->arg = arg;
	q->tx  = tx;
	ash__db_q_arm(q);
	ash__db_qlist_push(&tx->pending, q);
	q->where = ASH__DB_AT_TX;
	ash__db_kick(pool);
	return ASH_OK;
}

static void
tx_finish(ash_db_tx *tx, enum ash__db_qkind kind, ash_db_cb cb, void *arg)
{
	ash_db_pool *pool = tx->pool;
	ash__db_q   *q;

	if (tx->state == ASH__DB_TX_DEAD || pool->closing) {
		if (tx->state != ASH__DB_TX_DEAD)
			ash__db_tx_end(tx);
		if (cb != NULL)
			cb(arg, ASH_ECANCELED, NULL);
		return;
	}
	ASH_ASSERT(
	    tx->state == ASH__DB_TX_OPEN || tx->state == ASH__DB_TX_BROKEN);
	q      = ash__db_q_new(pool, kind,
            kind == ASH__DB_Q_COMMIT ? "COMMIT" : "ROLLBACK", 0, NULL);
	q->cb  = cb;
	q->arg = arg;
	q->tx  = tx;
	if (tx->state == ASH__DB_TX_BROKEN) {
		q->rv = kind == ASH__DB_Q_COMMIT ? ASH_EUNAVAIL : ASH_OK;
		ash__db_qlist_push(&pool->deferred, q);
		q->where = ASH__DB_AT_DEFER;
	} else {
		ash__db_q_arm(q);
		ash__db_qlist_push(&tx->pending, q);
		q->where = ASH__DB_AT_TX;
	}
	tx->state = ASH__DB_TX_ENDING;
	ash__db_kick(pool);
}

/*
 * Ends tx with COMMIT. cb (may be NULL) gets ASH_OK only if the server
 * answered COMMIT; an aborted tx gives ASH_EDB, a lost connection
 * ASH_EUNAVAIL. Loop thread; tx is gone once this returns.
 */
void
ash_db_tx_commit(ash_db_tx *tx, ash_db_cb cb, void *arg)
{
	tx_finish(tx, ASH__DB_Q_COMMIT, cb, arg);
}

/*
 * Ends tx with ROLLBACK. cb (may be NULL) gets ASH_OK also when the
 * connection had died (the server rolled back). Loop thread.
 */
void
ash_db_tx_rollback(ash_db_tx *tx, ash_db_cb cb, void *arg)
{
	tx_finish(tx, ASH__DB_Q_ROLLBACK, cb, arg);
}
