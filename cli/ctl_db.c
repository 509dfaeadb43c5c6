/*
 * ctl_db.c - `ashoonctl db bootstrap`: one role and one schema per service.
 *
 * Each service connects as ashoon_<schema>, which owns its schema and has
 * no rights anywhere else: another service's tables are not readable even
 * by mistake (permission denied), and each service's migrations run as
 * itself. Run with an administrator's DSN (ASHOON_ADMIN_DSN); safe to run
 * again (everything is IF NOT EXISTS or re-applied). A role's password is
 * set from ASHOON_DB_PASSWORD_<SERVICE> when that variable is set.
 */
#include "ctl.h"

#include <ashoon/proto.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool
exec_ok(PGconn *c, const char *sql, int n, const char *const *params)
{
	PGresult *r  = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	bool      ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
	    PQresultStatus(r) == PGRES_TUPLES_OK;

	if (!ok)
		fprintf(stderr, "ashoonctl: %s", PQresultErrorMessage(r));
	PQclear(r);
	return ok;
}

/* Creates the role if missing. Two bootstraps racing (parallel tests, two
 * operators) may both see it missing: duplicate_object then means done. */
static bool
ensure_role(PGconn *c, const char *role)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
	    "DO $$ BEGIN CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB "
	    "NOCREATEROLE; EXCEPTION WHEN duplicate_object OR "
	    "unique_violation THEN NULL; END $$",
	    role);
	return exec_ok(c, sql, 0, NULL);
}

static bool
set_password(PGconn *c, const char *role, const char *env)
{
	char        var[96], *sql;
	const char *pw;
	bool        ok;

	snprintf(var, sizeof(var), "ASHOON_DB_PASSWORD_%s", env);
	if ((pw = getenv(var)) == NULL || *pw == '\0')
		return true;
	/* ALTER ROLE takes no parameters: quote the literal with libpq. */
	char *lit = PQescapeLiteral(c, pw, strlen(pw));
	if (lit == NULL)
		return false;
	sql = ash_xasprintf("ALTER ROLE %s PASSWORD %s", role, lit);
	ok  = exec_ok(c, sql, 0, NULL);
	PQfreemem(lit);
	free(sql);
	return ok;
}

/* The role's search_path, set only when it is not already (so a bootstrap
 * of a set-up cluster writes no catalog row). Two first bootstraps racing
 * (parallel tests) may both insert the setting: unique_violation then
 * means the other one set the same value. */
static bool
set_search_path(PGconn *c, const char *role, const char *schema)
{
	char sql[768];

	snprintf(sql, sizeof(sql),
	    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_db_role_setting s "
	    "JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = '%s' "
	    "AND s.setdatabase = 0 AND 'search_path=%s' = ANY (s.setconfig)) "
	    "THEN ALTER ROLE %s SET search_path = %s; END IF; "
	    "EXCEPTION WHEN unique_violation THEN NULL; END $$",
	    role, schema, role, schema);
	return exec_ok(c, sql, 0, NULL);
}

static bool
bootstrap_one(PGconn *c, const ash_svc_row *s)
{
	char role[96], sql[512];

	snprintf(role, sizeof(role), "ashoon_%s", s->schema);
	if (!ensure_role(c, role) || !set_password(c, role, s->env))
		return false;
	snprintf(sql, sizeof(sql),
	    "CREATE SCHEMA IF NOT EXISTS %s AUTHORIZATION %s", s->schema,
	    role);
	if (!exec_ok(c, sql, 0, NULL))
		return false;
	/* An existing schema keeps its owner: make sure it is the role. */
	snprintf(
	    sql, sizeof(sql), "ALTER SCHEMA %s OWNER TO %s", s->schema, role);
	if (!exec_ok(c, sql, 0, NULL))
		return false;
	if (!set_search_path(c, role, s->schema))
		return false;
	printf("%-18s schema %-18s role %s\n", s->name, s->schema, role);
	return true;
}

static int
bootstrap(PGconn *c)
{
	/* Nothing in public for anyone: every table lives in a service's
	 * schema (Postgres 15 already drops CREATE; be explicit anyway). */
	if (!exec_ok(c, "REVOKE ALL ON SCHEMA public FROM PUBLIC", 0, NULL))
		return 1;
	for (int i = 0; i < ASH_SVC_COUNT; i++)
		if (!bootstrap_one(c, &ash_services[i]))
			return 1;
	return 0;
}

static void
quiet(void *arg, const char *message)
{
}

int
ctl_db(int argc, char **argv)
{
	const char *dsn = getenv("ASHOON_ADMIN_DSN");
	PGconn     *c;
	int         rc;

	if (argc != 2 || strcmp(argv[1], "bootstrap") != 0)
		return ctl_usage();
	if (dsn == NULL || *dsn == '\0') {
		fprintf(stderr,
		    "ashoonctl: set ASHOON_ADMIN_DSN to an "
		    "administrator's connection string\n");
		return 2;
	}
	c = PQconnectdb(dsn);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "ashoonctl: %s", PQerrorMessage(c));
		PQfinish(c);
		return 1;
	}
	PQsetNoticeProcessor(c, quiet, NULL); /* "already exists, skipping" */
	rc = bootstrap(c);
	PQfinish(c);
	return rc;
}
