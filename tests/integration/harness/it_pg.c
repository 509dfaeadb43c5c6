/*
 * it_pg.c - Postgres helpers for integration tests (blocking libpq).
 */
#include "it.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IT_MAX_DBS 16

static char it_dbs[IT_MAX_DBS][64];
static int  it_ndbs;

const char *
it_pg_admin(void)
{
	const char *dsn = getenv("ASH_IT_PG");

	if (dsn == NULL || *dsn == '\0')
		ASH_T_FAILF("ASH_IT_PG is not set: run through ctest");
	return dsn;
}

static PGconn *
it_connect(const char *dsn)
{
	PGconn *c = PQconnectdb(dsn);

	if (PQstatus(c) != CONNECTION_OK) {
		char msg[512];
		snprintf(msg, sizeof(msg), "connect %s: %s", dsn,
		    PQerrorMessage(c));
		PQfinish(c);
		ASH_T_FAILF("%s", msg);
	}
	return c;
}

static const char *
it_run(const char *dsn, const char *sql, bool allow_fail)
{
	static char    out[4096];
	PGconn        *c  = it_connect(dsn);
	PGresult      *r  = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);

	out[0] = '\0';
	if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0) {
		snprintf(out, sizeof(out), "%s", PQgetvalue(r, 0, 0));
	} else if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		if (!allow_fail) {
			char msg[1024];
			snprintf(msg, sizeof(msg), "%s: %s", sql,
			    PQresultErrorMessage(r));
			PQclear(r);
			PQfinish(c);
			ASH_T_FAILF("%s", msg);
		}
		snprintf(out, sizeof(out), "%s", state ? state : "?????");
	}
	PQclear(r);
	PQfinish(c);
	return out;
}

const char *
it_pg_exec(const char *dsn, const char *sql)
{
	return it_run(dsn, sql, false);
}

const char *
it_pg_try(const char *dsn, const char *sql)
{
	const char *r = it_run(dsn, sql, true);
	/* it_run returns the SQLSTATE on error, the value on success: tell
	 * them apart by re-checking is not possible, so errors are 5 chars
	 * of [0-9A-Z] and callers only compare against SQLSTATEs. */
	return r;
}

void
it_pg_wait_lock(const char *dsn, const char *role)
{
	char sql[300];

	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM pg_stat_activity WHERE usename = '%s' "
	    "AND wait_event_type = 'Lock'",
	    role);
	for (int i = 0; i < 500; i++) {
		if (strcmp(it_pg_exec(dsn, sql), "0") != 0)
			return;
		usleep(10000);
	}
	ASH_T_FAILF("%s never waited for a lock", role);
}

static void
it_drop_dbs(void)
{
	char sql[160];

	while (it_ndbs > 0) {
		it_ndbs--;
		snprintf(sql, sizeof(sql),
		    "DROP DATABASE IF EXISTS %s WITH (FORCE)",
		    it_dbs[it_ndbs]);
		PGconn *c = PQconnectdb(getenv("ASH_IT_PG"));
		PQclear(PQexec(c, sql));
		PQfinish(c);
	}
}

void
it_db_create(const char *tag, char *dsn, size_t cap)
{
	static bool registered;
	char        name[64], sql[160];
	const char *admin = it_pg_admin();

	if (!registered) {
		atexit(it_cleanup);
		registered = true;
	}
	ASH_T_TRUE(it_ndbs < IT_MAX_DBS);
	snprintf(name, sizeof(name), "it_%.24s_%d_%ld", tag, (int) getpid(),
	    (long) (time(NULL) % 100000));
	snprintf(
	    sql, sizeof(sql), "CREATE DATABASE %s STRATEGY FILE_COPY", name);
	it_pg_exec(admin, sql);
	snprintf(it_dbs[it_ndbs++], sizeof(it_dbs[0]), "%s", name);
	it_dsn_as(admin, "postgres", dsn, cap);
	/* Replace dbname=postgres with ours. */
	char *p = strstr(dsn, "dbname=");
	ASH_T_NOT_NULL(p);
	snprintf(p, cap - (size_t) (p - dsn), "dbname=%s", name);
}

void
it_dsn_as(const char *dsn, const char *user, char *out, size_t cap)
{
	char        buf[512];
	const char *u = strstr(dsn, "user=");

	snprintf(buf, sizeof(buf), "%s", dsn);
	if (u == NULL) {
		snprintf(out, cap, "%s user=%s", buf, user);
		return;
	}
	size_t      pre  = (size_t) (u - dsn);
	const char *rest = strchr(u, ' ');
	snprintf(
	    out, cap, "%.*suser=%s%s", (int) pre, dsn, user, rest ? rest : "");
}

void
it_cleanup(void)
{
	it_procs_kill_all();
	it_drop_dbs();
}
