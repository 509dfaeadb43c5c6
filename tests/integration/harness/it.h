/*
 * it.h - integration test harness: the shared throwaway Postgres, the real
 * service binaries, and blocking HTTP/NNG clients. Tests are ordinary
 * ash_test.h cases; blocking calls are fine here (this is the test process,
 * not a service loop).
 *
 * Environment (set by tests/CMakeLists.txt):
 *   ASH_IT_PG       admin DSN of the cluster started by the pg fixture
 *   ASH_BUILD_DIR   where the binaries are
 *   ASH_SOURCE_DIR  the checkout (scripts/, services/)
 */
#ifndef ASH_IT_H
#define ASH_IT_H

#include <ash_test.h>
#include <ashoon/err.h>

#include <libpq-fe.h>
#include <stdbool.h>

/* --- Postgres ----------------------------------------------------------- */

/* The admin DSN of the shared cluster (aborts the case if unset). */
const char *it_pg_admin(void);

/* Creates a fresh database named after the case plus a random suffix and
 * writes its admin DSN (user postgres) into dsn (>= 256 bytes). The
 * database is dropped by it_cleanup(). */
void it_db_create(const char *tag, char *dsn, size_t cap);

/* Runs sql (no params) on dsn; fails the case on error unless allow_fail.
 * Returns the first column of the first row (static buffer) or "". */
const char *it_pg_exec(const char *dsn, const char *sql);
/* Same, but returns the error SQLSTATE ("" on success). */
const char *it_pg_try(const char *dsn, const char *sql);

/* A DSN for dsn's database as another user. */
void it_dsn_as(const char *dsn, const char *user, char *out, size_t cap);

/* Drops databases made by it_db_create and stops processes started by
 * it_proc_start; call at the end of every case (also run atexit). */
void it_cleanup(void);

#endif
