/*
 * db_listen.c - LISTEN/NOTIFY over one dedicated connection.
 *
 * The listen connection is created by the first ash_db_listen and runs the
 * same state machine as the query connections, but takes its work from the
 * subscription list: each subscription's LISTEN is sent once per session
 * (the flags are reset whenever the connection breaks, so a reconnect
 * re-issues them all). Notifications are taken with PQnotifies after every
 * PQconsumeInput, on any connection; only the listener delivers them.
 * Notifications sent while the listener is down are lost (pub/sub may
 * drop: DESIGN "Never lose a message").
 */
#include "db_impl.h"

#include <stdlib.h>
#include <string.h>

#define LISTEN_NAME_MAX 63 /* NAMEDATALEN - 1 */

/* The LISTEN for the first subscription not yet sent this session. */
ash__db_q *
ash__db_listen_next(ash_db_pool *pool)
{
	for (ash__db_sub *s = pool->subs; s != NULL; s = s->next) {
		if (s->issued)
			continue;
		s->issued = true;
		return ash__db_q_new(pool, ASH__DB_Q_LISTEN, s->sql, 0, NULL);
	}
	return NULL;
}

/* The listen session ended: every LISTEN must be sent again. */
void
ash__db_listen_reset(ash_db_pool *pool)
{
	for (ash__db_sub *s = pool->subs; s != NULL; s = s->next)
		s->issued = false;
}

static void
notify_deliver(ash_db_pool *pool, const PGnotify *n)
{
	for (ash__db_sub *s = pool->subs; s != NULL; s = s->next) {
		if (strcmp(s->channel, n->relname) != 0)
			continue;
		s->cb(s->arg, n->relname, n->extra ? n->extra : "");
		if (pool->closing)
			return; /* subs are gone */
	}
}

/*
 * Takes every notification libpq has parsed on c; delivers them if c is the
 * listener. False when a callback closed the pool (stop touching c).
 */
bool
ash__db_notify(ash__db_conn *c)
{
	ash_db_pool *pool = c->pool;
	PGnotify    *n;

	while (c->pg != NULL && (n = PQnotifies(c->pg)) != NULL) {
		if (c->listener)
			notify_deliver(pool, n);
		PQfreemem(n);
		if (pool->closing)
			return false;
	}
	return true;
}

/* Frees the subscriptions (pool closing). */
void
ash__db_listen_free(ash_db_pool *pool)
{
	ash__db_sub *s;

	while ((s = pool->subs) != NULL) {
		pool->subs = s->next;
		free(s->channel);
		free(s->sql);
		free(s);
	}
}

/* LISTEN "name" with embedded quotes doubled (identifier quoting). */
static char *
listen_sql(const char *channel)
{
	size_t len = strlen(channel);
	char  *sql = ash_xmalloc(sizeof("LISTEN \"\"") + 2 * len);
	char  *p   = stpcpy(sql, "LISTEN \"");

	for (const char *c = channel; *c; c++) {
		if (*c == '"')
			*p++ = '"';
		*p++ = *c;
	}
	strcpy(p, "\"");
	return sql;
}

/*
 * Subscribes cb to channel (any name up to 63 bytes; matched exactly, as
 * pg_notify sends it). The first call opens the listen connection. Loop
 * thread. ASH_EINVAL for a bad channel, ASH_ECLOSED while closing.
 */
ash_err
ash_db_listen(
    ash_db_pool *pool, const char *channel, ash_db_notify_cb cb, void *arg)
{
	ash__db_sub *s, **tail;

	if (pool->closing)
		return ASH_ECLOSED;
	if (cb == NULL || channel == NULL || *channel == '\0' ||
	    strlen(channel) > LISTEN_NAME_MAX)
		return ASH_EINVAL;
	s          = ash_xcalloc(1, sizeof(*s));
	s->channel = ash_xstrdup(channel);
	s->sql     = listen_sql(channel);
	s->cb      = cb;
	s->arg     = arg;
	for (tail = &pool->subs; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = s;
	if (pool->listener == NULL) {
		pool->listener = ash__db_conn_new(pool, -1, true);
		ash__db_conn_start_soon(pool->listener);
	} else {
		ash__db_kick(pool);
	}
	return ASH_OK;
}
