/*
 * ashoon/db.h - Postgres access that never blocks the service's event loop.
 *
 * A pool of libpq connections driven asynchronously on the loop
 * (PQconnectStartParams/PQconnectPoll, PQsendQueryParams, PQflush,
 * PQconsumeInput/PQisBusy/PQgetResult). Every connection sets search_path to
 * the service's schema, so SQL is written unqualified. Queries take text
 * parameters only ($1..$n) - there is no API that splices values into SQL.
 *
 * Timeouts: each query has a deadline (the pool's query_timeout_ms). At the
 * deadline the callback gets ASH_ETIMEDOUT at once and the query is
 * cancelled with PQcancel on the worker pool (PQcancel blocks); the
 * connection returns to the pool once its results are drained.
 * statement_timeout is also set server-side as a second line of defence.
 *
 * Failures: a broken connection is reopened with exponential backoff
 * (100 ms .. 5 s, jittered). While no connection is up or connecting,
 * queries fail at once with ASH_EUNAVAIL (a webhook then answers 5xx and is
 * retried by its sender) rather than waiting.
 *
 * Error mapping: unique_violation 23505 -> ASH_ECONFLICT;
 * insufficient_privilege 42501 -> ASH_EFORBIDDEN; query_canceled 57014 ->
 * ASH_ETIMEDOUT; data_exception (class 22: a value out of range or not
 * valid for its type) and program_limit_exceeded (class 54: a value too
 * big for an index), which fail again however often they are sent ->
 * ASH_EINVAL; connection lost -> ASH_EUNAVAIL; other SQL errors -> ASH_EDB
 * (the SQLSTATE and message are logged as DB-ERROR, never params).
 *
 * Threads: loop thread only, except ash_db_migrate (start-up, blocking).
 */
#ifndef ASHOON_DB_H
#define ASHOON_DB_H

#include <ashoon/loop.h>
#include <ashoon/work.h>

#include <libpq-fe.h>
#include <stdbool.h>

typedef struct ash_db_pool ash_db_pool;
typedef struct ash_db_tx   ash_db_tx;

/* schema: a lower-case identifier (it travels in the options string), or
 * NULL to keep the role's search_path. query_timeout_ms and max_queue are
 * >= 1; max_queue counts queries waiting beyond the idle connections. */
typedef struct ash_db_opts {
	const char *dsn;              /* libpq conninfo (secret: not logged) */
	const char *schema;           /* search_path for every connection */
	int         size;             /* connections, >= 1 */
	int         query_timeout_ms; /* per query deadline */
	int         connect_timeout_ms; /* per attempt; <= 0: none */
	int         max_queue;          /* queued queries beyond: EUNAVAIL */
} ash_db_opts;

/* One migration; a table of them ends with {0, NULL, NULL}. Generated from
 * services/<name>/migrations/NNNN_words.sql, then from the routines in
 * services/<name>/migrations/routines/words.sql (version 0), by
 * cmake/embed_sql.cmake. */
typedef struct ash_db_migration {
	int         version;
	const char *name;
	const char *sql;
} ash_db_migration;

/* Loop thread, exactly once per accepted query. res is the query's result
 * when rv is ASH_OK, the error result for SQL errors (PQresultErrorField
 * works on it), NULL otherwise. Borrowed: valid until the callback returns.
 */
typedef void (*ash_db_cb)(void *arg, ash_err rv, const PGresult *res);

/* Loop thread. Starts connecting (does not wait). The DSN's host must be an
 * IP address or a socket directory, or a name that is resolved once on the
 * worker pool. ASH_EINVAL for a DSN libpq cannot parse, bad opts, or a host
 * name with work == NULL. work runs PQcancel; without it a timed-out query
 * drops its connection instead. */
ash_err ash_db_pool_open(ash_loop *loop, ash_work_pool *work,
    const ash_db_opts *opts, ash_db_pool **out) ASH_MUSTCHECK;

/* Loop thread. Every query not yet answered gets ASH_ECANCELED before this
 * returns; open transactions are rolled back by closing their connection
 * (their ash_db_tx handles are invalid afterwards). May be called from a
 * pool callback. NULL is fine. */
void ash_db_pool_close(ash_db_pool *pool);

/* Number of query connections currently usable (connected and not broken;
 * the LISTEN connection is not counted). */
int ash_db_pool_up(const ash_db_pool *pool);

/* Loop thread. params[0..n) are borrowed for the call (copied as needed);
 * NULL entries are SQL NULL. On ASH_OK cb is called exactly once, later.
 * ASH_EUNAVAIL (no connection / queue full), ASH_ECLOSED and ASH_EINVAL
 * (NULL sql or cb, n outside 0..65535) are returned directly and cb is not
 * called. */
ash_err ash_db_query(ash_db_pool *pool, const char *sql, int n,
    const char *const *params, ash_db_cb cb, void *arg) ASH_MUSTCHECK;

/* Transactions pin one connection from BEGIN to COMMIT/ROLLBACK.
 * cb gets tx on ASH_OK (BEGIN done) and must end it with commit or
 * rollback exactly once. */
typedef void (*ash_db_tx_cb)(void *arg, ash_err rv, ash_db_tx *tx);
ash_err ash_db_tx_begin(
    ash_db_pool *pool, ash_db_tx_cb cb, void *arg) ASH_MUSTCHECK;

/* Like ash_db_query, inside tx. After an error the transaction is aborted
 * server-side: only rollback makes sense. One query at a time per tx. */
ash_err ash_db_tx_query(ash_db_tx *tx, const char *sql, int n,
    const char *const *params, ash_db_cb cb, void *arg) ASH_MUSTCHECK;

/* Ends tx (which must not be used afterwards). cb (may be NULL) gets the
 * result: for COMMIT, ASH_OK only when the server answered COMMIT (an
 * aborted tx gives ASH_EDB, a lost connection ASH_EUNAVAIL); ROLLBACK gives
 * ASH_OK also when the connection was lost (the server rolled back). */
void ash_db_tx_commit(ash_db_tx *tx, ash_db_cb cb, void *arg);
void ash_db_tx_rollback(ash_db_tx *tx, ash_db_cb cb, void *arg);

/* LISTEN on channel (1..63 bytes, matched exactly) over a dedicated
 * connection, re-issued after every reconnect; notifications sent while it
 * is down are lost. cb runs on the loop for each NOTIFY; strings are
 * borrowed. ASH_EINVAL for a bad channel, ASH_ECLOSED while closing. */
typedef void (*ash_db_notify_cb)(
    void *arg, const char *channel, const char *payload);
ash_err ash_db_listen(ash_db_pool *pool, const char *channel,
    ash_db_notify_cb cb, void *arg) ASH_MUSTCHECK;

/* START-UP ONLY (blocking, before the loop runs). Connects with dsn, takes
 * an advisory lock (so replicas starting together apply each file once),
 * creates schema_migrations(version, name, applied_at) in `schema` if
 * missing, and applies every migration whose version is not recorded, each
 * in its own transaction with its row. The schema itself must exist (it is
 * created by `ashoonctl db bootstrap`, owned by the service's role).
 * Then the routines, which follow the versioned migrations in the table
 * (version 0, ascending names): CREATE OR REPLACE files for functions that
 * change often, so a change is a diff of one file, not a copy of the whole
 * function in a new migration. Each is applied again, in its own
 * transaction with its row in schema_routines(name, md5, version,
 * applied_at), when its text differs from the recorded one; not by a
 * binary older than the schema, nor over one recorded by a newer version.
 * A change a routine cannot make by itself (a new return type, a dropped
 * function) goes in a versioned migration, which runs first.
 * *version is the highest applied version afterwards (may be NULL).
 * Logs DB-MIGRATE per file; on failure logs the file and error.
 * ASH_EDB: a migration failed (it was rolled back); ASH_ECONFLICT: a
 * recorded version has another name (renamed file); ASH_EUNAVAIL: cannot
 * connect; ASH_EINVAL: versions not ascending, or a routine before a
 * versioned migration. */
ash_err ash_db_migrate(const char *dsn, const char *schema,
    const ash_db_migration *migrations, int *version) ASH_MUSTCHECK;

#endif
