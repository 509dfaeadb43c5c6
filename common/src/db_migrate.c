/*
 * db_migrate.c - start-up schema migrations (blocking libpq, before the
 * loop runs: the only place PQexec is allowed, STYLE §12).
 *
 * One session: SET search_path, take a session advisory lock keyed on the
 * schema (replicas starting together queue here), create the bookkeeping
 * table, then for each migration in version order either check the
 * recorded name (a renamed file is an error, never silently skipped) or
 * apply it - the file's SQL through PQexec (several statements allowed) and
 * its schema_migrations row, in one transaction. The first failure rolls
 * back that file and stops.
 *
 * Then the routines (version 0, migrations/routines/NAME.sql: functions
 * kept in one file and changed in place, instead of copied whole into
 * every migration that changes them): each is applied again, with its
 * schema_routines row, when its text's MD5 differs from the recorded one.
 * A binary older than the schema (the schema has a version it does not
 * know) changes no routine, and none recorded by a newer version, so
 * replicas of two releases running side by side do not take turns
 * replacing each other's functions.
 */
#include "db_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mig_ctx {
	PGconn     *pg;
	const char *schema;
	char       *qs;     /* schema as a quoted identifier */
	char       *insert; /* INSERT of one schema_migrations row */
	int         top;    /* highest recorded version */
	int         last;   /* highest version this binary has */
} mig_ctx;

static void
mig_on_notice(void *arg, const PGresult *res)
{
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	ash_log_debug(NULL, "DB-NOTICE", "%s", msg ? msg : "");
}

static void
mig_log_fail(const mig_ctx *m, const char *what, const PGresult *r)
{
	const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *msg =
	    r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char buf[256];

	if (msg == NULL) {
		const char *e = PQerrorMessage(m->pg);
		snprintf(buf, sizeof(buf), "%.*s", (int) strcspn(e, "\n"), e);
		msg = buf;
	}
	ash_log_field f[] = {ASH_LF_STR("schema", m->schema),
	    ASH_LF_STR("file", what), ASH_LF_STR("sqlstate", st ? st : "")};
	ash_log_emitf(ASH_LOG_ERROR, NULL, "DB-MIGRATE", f, 3,
	    "migration %s failed: %s", what, msg);
}

/* Runs one command (several for PQexec); on success hands the result out
 * through out (or clears it). Failures are logged naming `what`. */
static ash_err
mig_run(mig_ctx *m, const char *what, const char *sql, int n,
    const char *const *params, PGresult **out)
{
	PGresult      *r  = n > 0
	          ? PQexecParams(m->pg, sql, n, NULL, params, NULL, NULL, 0)
	          : PQexec(m->pg, sql);
	ExecStatusType st = PQresultStatus(r);

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ||
	    st == PGRES_EMPTY_QUERY) {
		if (out != NULL)
			*out = r;
		else
			PQclear(r);
		return ASH_OK;
	}
	mig_log_fail(m, what, r);
	PQclear(r);
	return PQstatus(m->pg) == CONNECTION_BAD ? ASH_EUNAVAIL : ASH_EDB;
}

/* Versions must be positive and strictly ascending, then come the
 * routines (version 0) in ascending name order; names and SQL set. */
static ash_err
mig_check_table(const ash_db_migration *list)
{
	int         last    = 0;
	const char *routine = NULL;

	for (const ash_db_migration *x = list; x->name != NULL; x++) {
		bool bad = x->sql == NULL;

		if (x->version == 0) {
			bad = bad ||
			    (routine != NULL && strcmp(x->name, routine) <= 0);
			routine = x->name;
		} else {
			bad  = bad || routine != NULL || x->version <= last;
			last = x->version;
		}
		if (bad) {
			ash_log_error(NULL, "DB-MIGRATE",
			    "migration table out of order at %s", x->name);
			return ASH_EINVAL;
		}
	}
	return ASH_OK;
}

static ash_err
mig_open(mig_ctx *m, const char *dsn)
{
	char buf[256];

	m->pg = PQconnectdb(dsn);
	if (m->pg == NULL || PQstatus(m->pg) != CONNECTION_OK) {
		const char *e =
		    m->pg ? PQerrorMessage(m->pg) : "out of memory";
		snprintf(buf, sizeof(buf), "%.*s", (int) strcspn(e, "\n"), e);
		ash_log_error(
		    NULL, "DB-MIGRATE", "cannot connect to migrate: %s", buf);
		return ASH_EUNAVAIL;
	}
	PQsetNoticeReceiver(m->pg, mig_on_notice, NULL);
	m->qs = PQescapeIdentifier(m->pg, m->schema, strlen(m->schema));
	ASH_ASSERT(m->qs != NULL);
	m->insert = ash_xasprintf("INSERT INTO %s.schema_migrations "
	                          "(version, name) VALUES ($1, $2)",
	    m->qs);
	return ASH_OK;
}

static ash_err
mig_lock(mig_ctx *m, const char *fn)
{
	char       *key = ash_xasprintf("ashoon.migrate.%s", m->schema);
	char       *sql = ash_xasprintf("SELECT %s(hashtext($1))", fn);
	const char *p[] = {key};
	ash_err     rv  = mig_run(m, fn, sql, 1, p, NULL);

	free(sql);
	free(key);
	return rv;
}

static ash_err
mig_prepare(mig_ctx *m)
{
	char   *sql = ash_xasprintf("SET search_path TO %s", m->qs);
	ash_err rv  = mig_run(m, "search_path", sql, 0, NULL, NULL);

	free(sql);
	if (rv != ASH_OK || (rv = mig_lock(m, "pg_advisory_lock")) != ASH_OK)
		return rv;
	sql = ash_xasprintf("CREATE TABLE IF NOT EXISTS %s.schema_migrations ("
	                    "version int PRIMARY KEY, name text NOT NULL, "
	                    "applied_at timestamptz NOT NULL DEFAULT now())",
	    m->qs);
	rv  = mig_run(m, "schema_migrations", sql, 0, NULL, NULL);
	free(sql);
	return rv;
}

/* Recorded name of version v into name (cap bytes); "" when absent. */
static ash_err
mig_recorded(mig_ctx *m, int v, char *name, size_t cap)
{
	char        ver[16], *sql;
	const char *p[] = {ver};
	PGresult   *r;
	ash_err     rv;

	snprintf(ver, sizeof(ver), "%d", v);
	sql = ash_xasprintf(
	    "SELECT name FROM %s.schema_migrations WHERE version = $1", m->qs);
	rv = mig_run(m, "schema_migrations", sql, 1, p, &r);
	free(sql);
	if (rv != ASH_OK)
		return rv;
	snprintf(name, cap, "%s", PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
	PQclear(r);
	return ASH_OK;
}

/* Applies x's SQL, then the bookkeeping statement rec (n params), in one
 * transaction. */
static ash_err
mig_apply(mig_ctx *m, const ash_db_migration *x, const char *rec, int n,
    const char *const *params)
{
	PGresult *r;
	ash_err   rv;

	if ((rv = mig_run(m, x->name, "BEGIN", 0, NULL, NULL)) != ASH_OK)
		return rv;
	if ((rv = mig_run(m, x->name, x->sql, 0, NULL, NULL)) == ASH_OK &&
	    (rv = mig_run(m, x->name, rec, n, params, NULL)) == ASH_OK &&
	    (rv = mig_run(m, x->name, "COMMIT", 0, NULL, &r)) == ASH_OK) {
		/* A file that ended its own transaction badly: no COMMIT. */
		bool ok = strcmp(PQcmdStatus(r), "COMMIT") == 0;
		PQclear(r);
		if (ok) {
			ash_log_field f[] = {ASH_LF_STR("schema", m->schema),
			    ASH_LF_INT("version", x->version)};
			ash_log_emitf(ASH_LOG_INFO, NULL, "DB-MIGRATE", f, 2,
			    "applied %s", x->name);
			return ASH_OK;
		}
		ash_log_error(NULL, "DB-MIGRATE",
		    "migration %s failed: its transaction did not commit",
		    x->name);
		rv = ASH_EDB;
	}
	PQclear(PQexec(m->pg, "ROLLBACK"));
	return rv;
}

static ash_err
mig_top(mig_ctx *m)
{
	char *sql = ash_xasprintf(
	    "SELECT coalesce(max(version), 0) FROM %s.schema_migrations",
	    m->qs);
	PGresult *r;
	ash_err   rv = mig_run(m, "schema_migrations", sql, 0, NULL, &r);

	free(sql);
	if (rv != ASH_OK)
		return rv;
	m->top = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	if (m->top > m->last)
		ash_log_warn(NULL, "DB-MIGRATE",
		    "schema %s is at version %d, newer than this binary (%d): "
		    "its routines are left as they are",
		    m->schema, m->top, m->last);
	return ASH_OK;
}

/* A routine is applied again when its text changed, unless a binary of a
 * newer version recorded it. */
static ash_err
mig_routine(mig_ctx *m, const ash_db_migration *x)
{
	char        ver[16];
	const char *p[] = {x->name, x->sql, ver};
	char       *sql;
	PGresult   *r;
	ash_err     rv;
	bool        due;

	snprintf(ver, sizeof(ver), "%d", m->last);
	sql = ash_xasprintf("SELECT NOT EXISTS (SELECT 1 FROM "
	                    "%s.schema_routines WHERE name = $1 AND "
	                    "(md5 = md5($2) OR version > $3::int))",
	    m->qs);
	rv  = mig_run(m, x->name, sql, 3, p, &r);
	free(sql);
	if (rv != ASH_OK)
		return rv;
	due = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	if (!due)
		return ASH_OK;
	sql = ash_xasprintf(
	    "INSERT INTO %s.schema_routines (name, md5, version) "
	    "VALUES ($1, md5($2), $3::int) ON CONFLICT (name) DO UPDATE "
	    "SET md5 = EXCLUDED.md5, version = EXCLUDED.version, "
	    "applied_at = now()",
	    m->qs);
	rv = mig_apply(m, x, sql, 3, p);
	free(sql);
	return rv;
}

static ash_err
mig_routines(mig_ctx *m, const ash_db_migration *x)
{
	char   *sql = ash_xasprintf("CREATE TABLE IF NOT EXISTS "
	                              "%s.schema_routines (name text PRIMARY KEY, "
	                              "md5 text NOT NULL, version int NOT NULL, "
	                              "applied_at timestamptz NOT NULL DEFAULT "
	                              "now())",
	      m->qs);
	ash_err rv  = mig_run(m, "schema_routines", sql, 0, NULL, NULL);

	free(sql);
	for (; rv == ASH_OK && x->name != NULL; x++)
		rv = mig_routine(m, x);
	return rv;
}

static ash_err
mig_all(mig_ctx *m, const ash_db_migration *list)
{
	const ash_db_migration *x;
	char                    name[256], ver[16];
	const char             *p[] = {ver, NULL};
	ash_err                 rv;

	for (x = list; x->name != NULL && x->version > 0; x++) {
		m->last = x->version;
		if ((rv = mig_recorded(m, x->version, name, sizeof(name))) !=
		    ASH_OK)
			return rv;
		if (name[0] == '\0') {
			snprintf(ver, sizeof(ver), "%d", x->version);
			p[1] = x->name;
			if ((rv = mig_apply(m, x, m->insert, 2, p)) != ASH_OK)
				return rv;
		} else if (strcmp(name, x->name) != 0) {
			ash_log_error(NULL, "DB-MIGRATE",
			    "version %d is recorded as %s but the file is %s",
			    x->version, name, x->name);
			return ASH_ECONFLICT;
		}
	}
	if ((rv = mig_top(m)) != ASH_OK || x->name == NULL || m->top > m->last)
		return rv;
	return mig_routines(m, x);
}

/*
 * Applies the missing migrations of `schema` (see db.h). Blocking: start-up
 * only. ASH_EINVAL for a bad table, ASH_EUNAVAIL when the server cannot be
 * reached, ASH_EDB when a migration fails (rolled back, logged with the
 * file), ASH_ECONFLICT when a recorded version has another name.
 */
ash_err
ash_db_migrate(const char *dsn, const char *schema,
    const ash_db_migration *migrations, int *version)
{
	mig_ctx m = {.schema = schema};
	ash_err rv;

	if (dsn == NULL || schema == NULL || *schema == '\0' ||
	    migrations == NULL)
		return ASH_EINVAL;
	if ((rv = mig_check_table(migrations)) != ASH_OK)
		return rv;
	if ((rv = mig_open(&m, dsn)) == ASH_OK &&
	    (rv = mig_prepare(&m)) == ASH_OK) {
		rv = mig_all(&m, migrations);
		if (mig_lock(&m, "pg_advisory_unlock") != ASH_OK &&
		    rv == ASH_OK)
			rv = ASH_EDB;
	}
	PQfreemem(m.qs);
	free(m.insert);
	PQfinish(m.pg);
	if (rv == ASH_OK && version != NULL)
		*version = m.top;
	return rv;
}
