/*
 * Integration tests: the db module (pool, transactions, LISTEN, migrate)
 * against the real throwaway Postgres. Each case makes its own database.
 *
 * Most cases are a script: a table of steps (query, tx step, admin SQL,
 * sleep) run one after another from loop callbacks; every answer is
 * recorded and checked after ash_loop_run returns (asserting inside a loop
 * callback would longjmp out of libevent).
 */
#include "it.h"

#include <ashoon/db.h>
#include <ashoon/log.h>
#include <ashoon/loop.h>
#include <ashoon/work.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* Ends every other client session on the case's database, and waits. */
#define TERMINATE_ALL                                                     \
	"SELECT count(pg_terminate_backend(pid, 5000)) FROM "             \
	"pg_stat_activity "                                               \
	"WHERE datname = current_database() AND pid <> pg_backend_pid() " \
	"AND backend_type = 'client backend'"

#define UNICODE_TEXT                                                       \
	"h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac " \
	"\xf0\x9f\x8e\x89"

/* --- environment: loop, workers, pool, watchdog ------------------------ */

typedef struct env {
	ash_loop      *loop;
	ash_work_pool *work;
	ash_db_pool   *db;
	char           dsn[512]; /* admin DSN of the case's database */
	struct event  *watchdog;
	bool           hung; /* the watchdog stopped the loop */
} env;

static void
env_on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	env *e  = arg;
	e->hung = true;
	ash_loop_exit_when_idle(e->loop, 0);
}

static void
env_init(env *e, const char *tag, int watchdog_s)
{
	struct timeval tv = {watchdog_s, 0};

	memset(e, 0, sizeof(*e));
	ash_log_init("it_db", ASH_LOG_INFO);
	if (tag != NULL) {
		it_db_create(tag, e->dsn, sizeof(e->dsn));
		it_pg_exec(e->dsn, "CREATE SCHEMA app");
	}
	ASH_T_OK(ash_loop_new(&e->loop));
	ASH_T_OK(ash_work_pool_new(e->loop, 2, 64, &e->work));
	e->watchdog = evtimer_new(ash_loop_base(e->loop), env_on_watchdog, e);
	evtimer_add(e->watchdog, &tv);
}

static ash_db_opts
env_opts(const char *dsn, int size, int timeout_ms)
{
	ash_db_opts o = {.dsn   = dsn,
	    .schema             = "app",
	    .size               = size,
	    .query_timeout_ms   = timeout_ms,
	    .connect_timeout_ms = 3000,
	    .max_queue          = 64};
	return o;
}

static void
env_pool(env *e, const char *dsn, int size, int timeout_ms)
{
	ash_db_opts o = env_opts(dsn ? dsn : e->dsn, size, timeout_ms);

	ASH_T_OK(ash_db_pool_open(e->loop, e->work, &o, &e->db));
}

static void
env_fini(env *e)
{
	ash_db_pool_close(e->db);
	e->db = NULL;
	ash_work_pool_free(e->work);
	event_free(e->watchdog);
	ash_loop_free(e->loop);
	ASH_T_TRUE(!e->hung);
	it_cleanup();
}

static void
env_after(env *e, int ms, event_callback_fn fn, void *arg)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_once(ash_loop_base(e->loop), -1, EV_TIMEOUT, fn, arg, &tv);
}

/* stderr capture, to check what the module logs. */
typedef struct capture {
	char path[64];
	int  saved;
} capture;

static void
capture_start(capture *c)
{
	int fd;

	snprintf(c->path, sizeof(c->path), "/tmp/it_db_log.XXXXXX");
	fd = mkstemp(c->path);
	ASH_T_TRUE(fd >= 0);
	fflush(stderr);
	c->saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
}

static const char *
capture_stop(capture *c)
{
	static char buf[1 << 16];
	int         fd;
	ssize_t     n;

	fflush(stderr);
	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	fd                 = open(c->path, O_RDONLY);
	n                  = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	buf[n > 0 ? n : 0] = '\0';
	if (fd >= 0)
		close(fd);
	unlink(c->path);
	fputs(buf, stderr); /* still visible in the ctest output */
	return buf;
}

/* --- the script runner ------------------------------------------------- */

enum t_op {
	T_Q,        /* ash_db_query */
	T_UNTIL_OK, /* ash_db_query, retried every 50 ms until ASH_OK */
	T_BEGIN,    /* ash_db_tx_begin */
	T_TXQ,      /* ash_db_tx_query on the open tx */
	T_COMMIT,   /* ash_db_tx_commit */
	T_ROLLBACK, /* ash_db_tx_rollback */
	T_ADMIN,    /* it_pg_exec as admin on the case's database (blocking) */
	T_SLEEP,    /* n milliseconds on the loop */
	T_WAIT_UP,  /* until ash_db_pool_up >= n (5 s at most) */
};

typedef struct t_step {
	enum t_op   op;
	const char *sql;
	int         n;    /* parameter count (T_SLEEP: milliseconds) */
	const char *p[3]; /* parameters */
	ash_err     want;
	const char *val;   /* row 0 col 0 ("<null>"); NULL: not checked */
	const char *state; /* SQLSTATE; NULL: not checked */
} t_step;

typedef struct t_got {
	bool    done;
	ash_err rv;
	char    val[256];
	char    state[8];
	int64_t ms;    /* from the (last) submission to the answer */
	int     tries; /* T_UNTIL_OK failures before success */
} t_got;

#define T_MAX 32

typedef struct script {
	env          *e;
	const t_step *steps;
	int           n;
	int           i;
	ash_db_tx    *tx;
	int64_t       t0;
	t_got         got[T_MAX];
} script;

static void s_start(evutil_socket_t fd, short what, void *arg);

static void
s_record(script *s, ash_err rv, const PGresult *res)
{
	t_got      *g = &s->got[s->i];
	const char *st;

	g->done = true;
	g->rv   = rv;
	g->ms   = ash_now_ms() - s->t0;
	if (res == NULL)
		return;
	if (PQntuples(res) > 0 && PQnfields(res) > 0)
		snprintf(g->val, sizeof(g->val), "%s",
		    PQgetisnull(res, 0, 0) ? "<null>" : PQgetvalue(res, 0, 0));
	if ((st = PQresultErrorField(res, PG_DIAG_SQLSTATE)) != NULL)
		snprintf(g->state, sizeof(g->state), "%s", st);
}

/* Moves on from a fresh loop callback (no recursion into the pool). */
static void
s_advance(script *s, int delay_ms)
{
	const t_step *st = &s->steps[s->i];

	if (st->op == T_UNTIL_OK && s->got[s->i].rv != ASH_OK &&
	    s->got[s->i].tries++ < 100) {
		env_after(s->e, 50, s_start, s);
		return;
	}
	if (++s->i == s->n) {
		ash_loop_exit_when_idle(s->e->loop, 0);
		return;
	}
	env_after(s->e, delay_ms, s_start, s);
}

static void
s_on_result(void *arg, ash_err rv, const PGresult *res)
{
	script *s = arg;

	s_record(s, rv, res);
	s_advance(s, 0);
}

static void
s_on_begin(void *arg, ash_err rv, ash_db_tx *tx)
{
	script *s = arg;

	s->tx = tx;
	s_record(s, rv, NULL);
	s_advance(s, 0);
}

static ash_err
s_submit(script *s, const t_step *st)
{
	switch (st->op) {
	case T_Q:
	case T_UNTIL_OK:
		return ash_db_query(
		    s->e->db, st->sql, st->n, st->p, s_on_result, s);
	case T_BEGIN:
		return ash_db_tx_begin(s->e->db, s_on_begin, s);
	case T_TXQ:
		if (s->tx == NULL)
			return ASH_EINVAL;
		return ash_db_tx_query(
		    s->tx, st->sql, st->n, st->p, s_on_result, s);
	case T_COMMIT:
	case T_ROLLBACK:
		if (s->tx == NULL)
			return ASH_EINVAL;
		(st->op == T_COMMIT ? ash_db_tx_commit : ash_db_tx_rollback)(
		    s->tx, s_on_result, s);
		s->tx = NULL;
		return ASH_OK;
	case T_ADMIN:
		snprintf(s->got[s->i].val, sizeof(s->got[0].val), "%s",
		    it_pg_exec(s->e->dsn, st->sql));
		return ASH_EINTERNAL; /* recorded below as done, no callback */
	case T_SLEEP:
	case T_WAIT_UP:
		return ASH_EINTERNAL;
	}
	return ASH_EINVAL;
}

static void
s_start(evutil_socket_t fd, short what, void *arg)
{
	script       *s  = arg;
	const t_step *st = &s->steps[s->i];
	ash_err       rv;

	if (st->op == T_WAIT_UP && ash_db_pool_up(s->e->db) < st->n &&
	    s->got[s->i].tries++ < 250) {
		env_after(s->e, 20, s_start, s);
		return;
	}
	s->t0 = ash_now_ms();
	rv    = s_submit(s, st);
	if (rv == ASH_OK)
		return; /* the callback advances */
	if (st->op == T_ADMIN || st->op == T_SLEEP)
		rv = ASH_OK;
	if (st->op == T_WAIT_UP)
		rv = ash_db_pool_up(s->e->db) >= st->n ? ASH_OK : ASH_EUNAVAIL;
	s->got[s->i].done = true;
	s->got[s->i].rv   = rv;
	s->got[s->i].ms   = 0;
	s_advance(s, st->op == T_SLEEP ? st->n : 0);
}

/* Runs steps to the end on e's loop (n <= T_MAX); asserts nothing. */
static void
s_exec(script *s, env *e, const t_step *steps, int n)
{
	memset(s, 0, sizeof(*s));
	s->e     = e;
	s->steps = steps;
	s->n     = n < T_MAX ? n : T_MAX;
	env_after(e, 0, s_start, s);
	ash_loop_run(e->loop);
}

/* Checks every step's expectation. */
static void
s_check(const script *s)
{
	const t_step *steps = s->steps;

	for (int i = 0; i < s->n; i++) {
		const t_step *st = &steps[i];
		const t_got  *g  = &s->got[i];
		const char   *q  = st->sql ? st->sql : "-";
		if (!g->done)
			ASH_T_FAILF("step %d (%s): never answered", i, q);
		if (g->rv != st->want)
			ASH_T_FAILF("step %d (%s): got %s, want %s", i, q,
			    ash_strerror(g->rv), ash_strerror(st->want));
		if (st->val && strcmp(g->val, st->val) != 0)
			ASH_T_FAILF("step %d (%s): value \"%s\", want \"%s\"",
			    i, q, g->val, st->val);
		if (st->state && strcmp(g->state, st->state) != 0)
			ASH_T_FAILF(
			    "step %d (%s): SQLSTATE \"%s\", want \"%s\"", i, q,
			    g->state, st->state);
		ash_t_checks++;
	}
}

static void
s_run(script *s, env *e, const t_step *steps, int n)
{
	ASH_T_TRUE(n <= T_MAX);
	s_exec(s, e, steps, n);
	s_check(s);
}

#define N_STEPS(a) ((int) (sizeof(a) / sizeof((a)[0])))

/* --- queries ------------------------------------------------------------ */

ASH_TEST(query_round_trip_params)
{
	env                 e;
	script              s;
	static const t_step steps[] = {
	    {T_Q, "SELECT current_schema()", 0, {0}, ASH_OK, "app", NULL},
	    {T_Q, "SHOW statement_timeout", 0, {0}, ASH_OK, "5s", NULL},
	    {T_Q,
	        "INSERT INTO t (id, name, note) VALUES ($1, $2, $3) "
	        "RETURNING name",
	        3, {"1", UNICODE_TEXT, NULL}, ASH_OK, UNICODE_TEXT, NULL},
	    {T_Q, "SELECT note FROM t WHERE id = $1", 1, {"1"}, ASH_OK,
	        "<null>", NULL},
	    {T_Q, "SELECT name FROM t WHERE id = $1", 1, {"1"}, ASH_OK,
	        UNICODE_TEXT, NULL},
	    {T_Q, "SELECT length($1)", 1, {UNICODE_TEXT}, ASH_OK, "18", NULL},
	    {T_Q, "SELECT $1::text IS NULL", 1, {NULL}, ASH_OK, "t", NULL},
	    /* a value is never spliced into SQL */
	    {T_Q, "SELECT count(*) FROM t WHERE name = $1", 1,
	        {"x'; DROP TABLE t; --"}, ASH_OK, "0", NULL},
	    {T_Q, "SELECT count(*) FROM t", 0, {0}, ASH_OK, "1", NULL},
	    {T_WAIT_UP, NULL, 2, {0}, ASH_OK, NULL, NULL},
	};

	env_init(&e, "roundtrip", 30);
	it_pg_exec(e.dsn,
	    "CREATE TABLE app.t (id int PRIMARY KEY, name text, note text)");
	env_pool(&e, NULL, 2, 5000);
	s_run(&s, &e, steps, N_STEPS(steps));
	ASH_T_EQ_INT(ash_db_pool_up(e.db), 2);
	env_fini(&e);
}

typedef struct ticks {
	env          *e;
	int           n;        /* timer ticks so far */
	int           at_start; /* ticks when the query was sent */
	int           during;   /* ticks while it ran */
	ash_err       rv;
	int64_t       t0, ms;
	struct event *tick;
} ticks;

static void
tk_on_tick(evutil_socket_t fd, short what, void *arg)
{
	((ticks *) arg)->n++;
}

static void
tk_on_sleep(void *arg, ash_err rv, const PGresult *res)
{
	ticks *t  = arg;
	t->rv     = rv;
	t->ms     = ash_now_ms() - t->t0;
	t->during = t->n - t->at_start;
	ash_loop_exit_when_idle(t->e->loop, 0);
}

static void
tk_on_ready(void *arg, ash_err rv, const PGresult *res)
{
	ticks *t = arg;

	t->at_start = t->n;
	t->t0       = ash_now_ms();
	t->rv       = ash_db_query(
	          t->e->db, "SELECT pg_sleep(0.3)", 0, NULL, tk_on_sleep, t);
	if (t->rv != ASH_OK)
		ash_loop_exit_when_idle(t->e->loop, 0);
}

ASH_TEST(loop_not_blocked_during_query)
{
	env            e;
	ticks          t     = {0};
	struct timeval every = {0, 20000};

	env_init(&e, "noblock", 30);
	env_pool(&e, NULL, 1, 5000);
	t.e  = &e;
	t.rv = ASH_EINTERNAL;
	t.tick =
	    event_new(ash_loop_base(e.loop), -1, EV_PERSIST, tk_on_tick, &t);
	event_add(t.tick, &every);
	ASH_T_OK(ash_db_query(e.db, "SELECT 1", 0, NULL, tk_on_ready, &t));
	ash_loop_run(e.loop);
	event_free(t.tick);
	ASH_T_OK(t.rv);
	ASH_T_TRUE(t.ms >= 290);
	/* 300 ms at 20 ms a tick is 15; allow for a slow sanitized build */
	ASH_T_TRUE(t.during >= 10);
	env_fini(&e);
}

ASH_TEST(sql_errors_map_and_log_without_params)
{
	env                 e;
	script              s;
	capture             cap;
	const char         *log;
	static const t_step steps[] = {
	    {T_Q, "INSERT INTO u (k) VALUES ($1)", 1, {"s3cr3t-value-1"},
	        ASH_OK, NULL, NULL},
	    {T_Q, "INSERT INTO u (k) VALUES ($1)", 1, {"s3cr3t-value-1"},
	        ASH_ECONFLICT, NULL, "23505"},
	    {T_Q, "SELEC 1", 0, {0}, ASH_EDB, NULL, "42601"},
	    /* A data exception fails the same way every time: the caller's
	     * value, EINVAL. */
	    {T_Q, "INSERT INTO u (k, n) VALUES ($1, $2)", 2,
	        {"k2", "s3cr3t-number-2"}, ASH_EINVAL, NULL, "22P02"},
	    {T_Q, "SELECT count(*) FROM u", 0, {0}, ASH_OK, "1", NULL},
	};

	env_init(&e, "sqlerr", 30);
	it_pg_exec(e.dsn, "CREATE TABLE app.u (k text PRIMARY KEY, n int)");
	env_pool(&e, NULL, 1, 5000);
	capture_start(&cap);
	s_exec(&s, &e, steps, N_STEPS(steps));
	log = capture_stop(&cap);
	s_check(&s);
	ASH_T_CONTAINS(log, "\"id\":\"DB-ERROR\"");
	ASH_T_CONTAINS(log, "\"sqlstate\":\"23505\"");
	ASH_T_CONTAINS(log, "\"sqlstate\":\"42601\"");
	ASH_T_CONTAINS(log, "\"sqlstate\":\"22P02\"");
	ASH_T_CONTAINS(log, "duplicate key value violates unique constraint");
	ASH_T_NOT_CONTAINS(log, "s3cr3t");
	env_fini(&e);
}

ASH_TEST(query_timeout_cancels_and_drains)
{
	env                 e;
	script              s;
	static const t_step steps[] = {
	    {T_Q, "SHOW statement_timeout", 0, {0}, ASH_OK, "200ms", NULL},
	    {T_Q, "SELECT pg_backend_pid()", 0, {0}, ASH_OK, NULL, NULL},
	    /* only PQcancel can stop what follows: no server-side timeout */
	    {T_Q, "SELECT set_config('statement_timeout', '0', false)", 0, {0},
	        ASH_OK, "0", NULL},
	    {T_Q, "SELECT pg_sleep(5)", 0, {0}, ASH_ETIMEDOUT, NULL, NULL},
	    /* same connection (size 1, same pid, same session setting) */
	    {T_Q, "SELECT pg_backend_pid()", 0, {0}, ASH_OK, NULL, NULL},
	    {T_Q, "SELECT current_setting('statement_timeout')", 0, {0},
	        ASH_OK, "0", NULL},
	    {T_Q, "SELECT 1", 0, {0}, ASH_OK, "1", NULL},
	};
	int64_t t0 = 0;

	env_init(&e, "timeout", 30);
	env_pool(&e, NULL, 1, 200);
	t0 = ash_now_ms();
	s_run(&s, &e, steps, N_STEPS(steps));
	ASH_T_TRUE(s.got[3].ms >= 150);
	ASH_T_TRUE(s.got[3].ms < 1000);
	ASH_T_EQ_STR(s.got[4].val, s.got[1].val);
	/* had the sleep not been cancelled, we would still be in it */
	ASH_T_TRUE(ash_now_ms() - t0 < 4000);
	env_fini(&e);
}

ASH_TEST(server_statement_timeout_maps_to_timedout)
{
	env                 e;
	script              s;
	static const t_step steps[] = {
	    {T_Q, "SET statement_timeout = 100", 0, {0}, ASH_OK, NULL, NULL},
	    {T_Q, "SELECT pg_sleep(2)", 0, {0}, ASH_ETIMEDOUT, NULL, "57014"},
	    {T_Q, "SELECT 1", 0, {0}, ASH_OK, "1", NULL},
	};

	env_init(&e, "stmttimeout", 30);
	env_pool(&e, NULL, 1, 5000);
	s_run(&s, &e, steps, N_STEPS(steps));
	ASH_T_TRUE(s.got[1].ms < 1500);
	env_fini(&e);
}

/* --- transactions ------------------------------------------------------- */

ASH_TEST(tx_commit_visible)
{
	env                 e;
	script              s;
	static const t_step steps[] = {
	    {T_BEGIN, NULL, 0, {0}, ASH_OK, NULL, NULL},
	    {T_TXQ, "INSERT INTO k (v) VALUES ($1)", 1, {"a"}, ASH_OK, NULL,
	        NULL},
	    {T_TXQ, "SELECT count(*) FROM k", 0, {0}, ASH_OK, "1", NULL},
	    /* another session (the pool's other connection) sees nothing */
	    {T_Q, "SELECT count(*) FROM k", 0, {0}, ASH_OK, "0", NULL},
	    {T_COMMIT, NULL, 0, {0}, ASH_OK, NULL, NULL},
	    {T_Q, "SELECT count(*) FROM k WHERE v = 'a'", 0, {0}, ASH_OK, "1",
	        NULL},
	};

	env_init(&e, "txcommit", 30);
	it_pg_exec(e.dsn, "CREATE TABLE app.k (v text)");
	env_pool(&e, NULL, 2, 5000);
	s_run(&s, &e, steps, N_STEPS(steps));
	env_fini(&e);
}

ASH_TEST(tx_rollback_invisible)
{
	env                 e;
	script              s;
	static const t_step steps[] = {
	    {T_BEGIN, NULL, 0, {0}, ASH_OK, NULL, NULL},
	    {T_TXQ, "INSERT INTO k (v) VALUES ($1)", 1, {"b"}, ASH_OK, NULL,
	        NULL},
	    {T_ROLLBACK, NULL, 0, {0}, ASH_OK, NULL, NULL},
	    /* same session (size 1): still inside the tx it would see 1 */
	    {T_Q, "SELECT count(*) FROM k", 0, {0}, ASH_OK, "0", NULL},
	};

	env_init(&e, "txrollback", 30);
	it_pg_exec(e.dsn, "CREATE TABLE app.k (v text)");
	env_pool(&e, NULL, 1, 5000);
	s_run(&s, &e, steps, N_STEPS(steps));
	env_fini(&e);
}

ASH_TEST(tx_error_then_commit_fails)
{
	env                 e;
	script              s;
	static const t_step steps[] = {
	    {T_BEGIN, NULL, 0, {0}, ASH_OK, NULL, NULL},
	    {T_TXQ, "INSERT INTO k (v) VALUES ($1)", 1, {"c"}, ASH_OK, NULL,
	        NULL},
	    {T_TXQ, "SELEC 1", 0, {0}, ASH_EDB, NULL, "42601"},
	    {T_TXQ, "SELECT 1", 0, {0}, ASH_EDB, NULL, "25P02"},
	    {T_COMMIT, NULL, 0, {0}, ASH_EDB, NULL, NULL},
	    {T_Q, "SELECT count(*) FROM k", 0, {0}, ASH_OK, "0", NULL},
	};

	env_init(&e, "txerror", 30);
	it_pg_exec(e.dsn, "CREATE TABLE app.k (v text)");
	env_pool(&e, NULL, 1, 5000);
	s_run(&s, &e, steps, N_STEPS(steps));
	env_fini(&e);
}

ASH_TEST(tx_connection_lost_commit_unavailable)
{
	env                 e;
	script              s;
	static const t_step steps[] = {
	    {T_BEGIN, NULL, 0, {0}, ASH_OK, NULL, NULL},
	    {T_TXQ, "INSERT INTO k (v) VALUES ($1)", 1, {"d"}, ASH_OK, NULL,
	        NULL},
	    {T_ADMIN, TERMINATE_ALL, 0, {0}, ASH_OK, "1", NULL},
	    {T_TXQ, "SELECT 1", 0, {0}, ASH_EUNAVAIL, NULL, NULL},
	    {T_COMMIT, NULL, 0, {0}, ASH_EUNAVAIL, NULL, NULL},
	    {T_UNTIL_OK, "SELECT count(*) FROM k", 0, {0}, ASH_OK, "0", NULL},
	};

	env_init(&e, "txlost", 30);
	it_pg_exec(e.dsn, "CREATE TABLE app.k (v text)");
	env_pool(&e, NULL, 1, 5000);
	s_run(&s, &e, steps, N_STEPS(steps));
	env_fini(&e);
}

/* --- permissions, reconnects, availability ------------------------------ */

ASH_TEST(permission_denied_forbidden)
{
	env                 e;
	script              s;
	char                dsn[512];
	ash_db_opts         o;
	static const t_step steps[] = {
	    {T_Q, "SELECT current_user", 0, {0}, ASH_OK, "r_other", NULL},
	    {T_Q, "SELECT x FROM s_other.t", 0, {0}, ASH_EFORBIDDEN, NULL,
	        "42501"},
	};

	env_init(&e, "forbidden", 30);
	it_pg_exec(e.dsn,
	    "DO $$ BEGIN CREATE ROLE r_other LOGIN; "
	    "EXCEPTION WHEN duplicate_object THEN NULL; END $$");
	it_pg_exec(e.dsn, "CREATE SCHEMA s_other");
	it_pg_exec(e.dsn, "CREATE TABLE s_other.t (x int)");
	it_dsn_as(e.dsn, "r_other", dsn, sizeof(dsn));
	o        = env_opts(dsn, 1, 5000);
	o.schema = "s_other";
	ASH_T_OK(ash_db_pool_open(e.loop, e.work, &o, &e.db));
	s_run(&s, &e, steps, N_STEPS(steps));
	env_fini(&e);
}

ASH_TEST(reconnect_after_terminate)
{
	env                 e;
	script              s;
	static const t_step steps[] = {
	    {T_WAIT_UP, NULL, 2, {0}, ASH_OK, NULL, NULL},
	    {T_Q, "SELECT pg_backend_pid()", 0, {0}, ASH_OK, NULL, NULL},
	    /* the session dies under a query in flight */
	    {T_Q, "SELECT pg_terminate_backend(pg_backend_pid())", 0, {0},
	        ASH_EUNAVAIL, NULL, NULL},
	    {T_UNTIL_OK, "SELECT pg_backend_pid()", 0, {0}, ASH_OK, NULL,
	        NULL},
	    {T_WAIT_UP, NULL, 2, {0}, ASH_OK, NULL, NULL}, /* both back */
	    /* idle sessions killed from outside */
	    {T_ADMIN, TERMINATE_ALL, 0, {0}, ASH_OK, "2", NULL},
	    {T_UNTIL_OK, "SELECT pg_backend_pid()", 0, {0}, ASH_OK, NULL,
	        NULL},
	    {T_Q, "SELECT current_schema()", 0, {0}, ASH_OK, "app", NULL},
	};

	env_init(&e, "reconnect", 30);
	env_pool(&e, NULL, 2, 5000);
	s_run(&s, &e, steps, N_STEPS(steps));
	/* every session alive at the admin kill (step 5) was replaced */
	ASH_T_TRUE(strcmp(s.got[1].val, s.got[6].val) != 0);
	ASH_T_TRUE(strcmp(s.got[3].val, s.got[6].val) != 0);
	env_fini(&e);
}

typedef struct down {
	env    *e;
	ash_err first; /* the query submitted right after open */
	ash_err first_cb;
	int64_t open_ms; /* when the pool was opened */
	int64_t cb_ms;
	ash_err later; /* a query once every connection failed */
	int64_t later_ms;
	int     up;
} down;

static void
dn_on_unexpected(void *arg, ash_err rv, const PGresult *res)
{
	((down *) arg)->later = ASH_EINTERNAL; /* must not be queued */
}

static void
dn_on_later(evutil_socket_t fd, short what, void *arg)
{
	down   *d = arg;
	int64_t t = ash_now_ms();

	d->later =
	    ash_db_query(d->e->db, "SELECT 1", 0, NULL, dn_on_unexpected, d);
	d->later_ms = ash_now_ms() - t;
	d->up       = ash_db_pool_up(d->e->db);
	ash_loop_exit_when_idle(d->e->loop, 0);
}

static void
dn_on_first(void *arg, ash_err rv, const PGresult *res)
{
	down *d     = arg;
	d->first_cb = rv;
	d->cb_ms    = ash_now_ms() - d->open_ms;
	env_after(d->e, 200, dn_on_later, d);
}

static int
closed_port(void)
{
	struct sockaddr_in a   = {.sin_family = AF_INET};
	socklen_t          len = sizeof(a);
	int                fd  = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASH_T_TRUE(bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0);
	ASH_T_TRUE(getsockname(fd, (struct sockaddr *) &a, &len) == 0);
	close(fd); /* nothing listens there now */
	return ntohs(a.sin_port);
}

ASH_TEST(all_connections_down_unavailable_fast)
{
	env  e;
	down d = {0};
	char dsn[128];

	env_init(&e, NULL, 30);
	snprintf(dsn, sizeof(dsn),
	    "host=127.0.0.1 port=%d user=postgres dbname=postgres",
	    closed_port());
	d.e       = &e;
	d.open_ms = ash_now_ms();
	env_pool(&e, dsn, 2, 5000);
	d.first_cb = ASH_EINTERNAL;
	d.first    = ash_db_query(e.db, "SELECT 1", 0, NULL, dn_on_first, &d);
	if (d.first != ASH_OK)
		env_after(&e, 0, dn_on_later, &d);
	ash_loop_run(e.loop);
	/* queued while connecting, then failed with the connections */
	if (d.first == ASH_OK) {
		ASH_T_ERR(d.first_cb, ASH_EUNAVAIL);
		ASH_T_TRUE(d.cb_ms < 1000);
	} else {
		ASH_T_ERR(d.first, ASH_EUNAVAIL);
	}
	ASH_T_ERR(d.later, ASH_EUNAVAIL);
	ASH_T_TRUE(d.later_ms < 50);
	ASH_T_EQ_INT(d.up, 0);
	env_fini(&e);
}

typedef struct lastbrk {
	env    *e;
	ash_err rv[2];
	int     n;
	int64_t t0, ms;
} lastbrk;

static void
bk_on_answer(void *arg, ash_err rv, const PGresult *res)
{
	lastbrk *b = arg;

	b->rv[b->n++] = rv;
	if (b->n == 2) {
		b->ms = ash_now_ms() - b->t0;
		ash_loop_exit_when_idle(b->e->loop, 0);
	}
}

static void
bk_on_ready(void *arg, ash_err rv, const PGresult *res)
{
	lastbrk *b = arg;

	b->t0 = ash_now_ms();
	/* the first kills its own session; the second waits in the queue */
	if (ash_db_query(b->e->db,
	        "SELECT pg_terminate_backend(pg_backend_pid())", 0, NULL,
	        bk_on_answer, b) != ASH_OK ||
	    ash_db_query(b->e->db, "SELECT 1", 0, NULL, bk_on_answer, b) !=
	        ASH_OK)
		ash_loop_exit_when_idle(b->e->loop, 0);
}

ASH_TEST(queued_queries_fail_when_last_connection_breaks)
{
	env     e;
	lastbrk b = {0};

	env_init(&e, "lastbreak", 30);
	env_pool(&e, NULL, 1, 5000);
	b.e = &e;
	ASH_T_OK(ash_db_query(e.db, "SELECT 1", 0, NULL, bk_on_ready, &b));
	ash_loop_run(e.loop);
	ASH_T_EQ_INT(b.n, 2);
	ASH_T_ERR(b.rv[0], ASH_EUNAVAIL);
	ASH_T_ERR(b.rv[1], ASH_EUNAVAIL);
	ASH_T_TRUE(b.ms < 1000); /* failed at once, not after a reconnect */
	env_fini(&e);
}

typedef struct ctmo {
	env    *e;
	ash_err rv;
	int64_t t0, ms;
} ctmo;

static void
ct_on_answer(void *arg, ash_err rv, const PGresult *res)
{
	ctmo *c = arg;

	c->rv = rv;
	c->ms = ash_now_ms() - c->t0;
	ash_loop_exit_when_idle(c->e->loop, 0);
}

ASH_TEST(connect_timeout_gives_up)
{
	env                e;
	ctmo               c   = {0};
	struct sockaddr_in a   = {.sin_family = AF_INET};
	socklen_t          len = sizeof(a);
	int                fd  = socket(AF_INET, SOCK_STREAM, 0);
	char               dsn[128];
	ash_db_opts        o;
	capture            cap;

	/* accepts TCP (kernel backlog) but never answers the start-up */
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASH_T_TRUE(bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0);
	ASH_T_TRUE(listen(fd, 8) == 0);
	ASH_T_TRUE(getsockname(fd, (struct sockaddr *) &a, &len) == 0);
	snprintf(dsn, sizeof(dsn),
	    "host=127.0.0.1 port=%d user=postgres dbname=postgres",
	    ntohs(a.sin_port));
	env_init(&e, NULL, 30);
	o                    = env_opts(dsn, 1, 5000);
	o.connect_timeout_ms = 300;
	c.e                  = &e;
	c.rv                 = ASH_EINTERNAL;
	ASH_T_OK(ash_db_pool_open(e.loop, e.work, &o, &e.db));
	capture_start(&cap);
	c.t0 = ash_now_ms();
	if (ash_db_query(e.db, "SELECT 1", 0, NULL, ct_on_answer, &c) ==
	    ASH_OK)
		ash_loop_run(e.loop);
	ASH_T_CONTAINS(capture_stop(&cap), "connect timeout");
	close(fd);
	ASH_T_ERR(c.rv, ASH_EUNAVAIL);
	ASH_T_TRUE(c.ms >= 250);
	ASH_T_TRUE(c.ms < 1500);
	env_fini(&e);
}

typedef struct qfull {
	env    *e;
	ash_err sub[4]; /* ash_db_query results */
	ash_err got[4]; /* callback results */
	int     answered;
} qfull;

static qfull *qf_ctx;

static void
qf_on_answer(void *arg, ash_err rv, const PGresult *res)
{
	qf_ctx->got[(intptr_t) arg] = rv;
	if (++qf_ctx->answered == 3)
		ash_loop_exit_when_idle(qf_ctx->e->loop, 0);
}

static void
qf_on_ready(void *arg, ash_err rv, const PGresult *res)
{
	qfull *q = arg;

	for (intptr_t i = 0; i < 4; i++)
		q->sub[i] = ash_db_query(q->e->db, "SELECT pg_sleep(0.05)", 0,
		    NULL, qf_on_answer, (void *) i);
	if (q->sub[0] != ASH_OK)
		ash_loop_exit_when_idle(q->e->loop, 0);
}

ASH_TEST(queue_full_unavailable)
{
	env         e;
	qfull       q = {0};
	ash_db_opts o;

	env_init(&e, "qfull", 30);
	o           = env_opts(e.dsn, 1, 5000);
	o.max_queue = 2;
	ASH_T_OK(ash_db_pool_open(e.loop, e.work, &o, &e.db));
	q.e    = &e;
	qf_ctx = &q;
	ASH_T_OK(ash_db_query(e.db, "SELECT 1", 0, NULL, qf_on_ready, &q));
	ash_loop_run(e.loop);
	/* one idle connection + max_queue 2 waiting: the 4th is refused */
	ASH_T_OK(q.sub[0]);
	ASH_T_OK(q.sub[1]);
	ASH_T_OK(q.sub[2]);
	ASH_T_ERR(q.sub[3], ASH_EUNAVAIL);
	ASH_T_EQ_INT(q.answered, 3);
	ASH_T_OK(q.got[0]);
	ASH_T_OK(q.got[1]);
	ASH_T_OK(q.got[2]);
	env_fini(&e);
}

ASH_TEST(resolve_host_name)
{
	env                 e;
	script              s;
	char                dsn[512];
	const char         *port = strstr(it_pg_admin(), "port=");
	const char         *db;
	static const t_step steps[] = {
	    {T_Q, "SELECT host(inet_server_addr())", 0, {0}, ASH_OK,
	        "127.0.0.1", NULL},
	    {T_Q, "SELECT current_schema()", 0, {0}, ASH_OK, "app", NULL},
	};

	env_init(&e, "resolve", 30);
	ASH_T_NOT_NULL(port);
	db = strstr(e.dsn, "dbname=");
	ASH_T_NOT_NULL(db);
	snprintf(dsn, sizeof(dsn), "host=localhost port=%d user=postgres %s",
	    atoi(port + 5), db);
	env_pool(&e, dsn, 1, 5000);
	s_run(&s, &e, steps, N_STEPS(steps));
	env_fini(&e);
}

ASH_TEST(dsn_options_are_combined)
{
	env                 e;
	script              s;
	char                dsn[640];
	static const t_step steps[] = {
	    {T_Q, "SHOW work_mem", 0, {0}, ASH_OK, "8MB", NULL},
	    {T_Q, "SHOW search_path", 0, {0}, ASH_OK, "app", NULL},
	    {T_Q, "SHOW statement_timeout", 0, {0}, ASH_OK, "4s", NULL},
	};

	env_init(&e, "options", 30);
	snprintf(dsn, sizeof(dsn), "%s options='-c work_mem=8MB'", e.dsn);
	env_pool(&e, dsn, 1, 4000);
	s_run(&s, &e, steps, N_STEPS(steps));
	env_fini(&e);
}

ASH_TEST(open_rejects_bad_options)
{
	env          e;
	ash_db_pool *p = NULL;
	ash_db_opts  o;

	env_init(&e, NULL, 5);
	o        = env_opts("host=/tmp port=1 dbname=x", 1, 1000);
	o.schema = "Bad Schema";
	ASH_T_ERR(ash_db_pool_open(e.loop, e.work, &o, &p), ASH_EINVAL);
	o = env_opts("this is = not a dsn '", 1, 1000);
	ASH_T_ERR(ash_db_pool_open(e.loop, e.work, &o, &p), ASH_EINVAL);
	o = env_opts("host=/tmp port=1 dbname=x", 0, 1000);
	ASH_T_ERR(ash_db_pool_open(e.loop, e.work, &o, &p), ASH_EINVAL);
	o = env_opts("host=db.example port=1 dbname=x", 1, 1000);
	ASH_T_ERR(ash_db_pool_open(e.loop, NULL, &o, &p), ASH_EINVAL);
	ASH_T_NULL(p);
	env_fini(&e);
}

/* --- LISTEN/NOTIFY --------------------------------------------------------
 */

typedef struct lis {
	env          *e;
	int           phase; /* 1: want "first", 2: want "second", 3: done */
	int           sent;
	int           other; /* notifications for the other channel */
	char          chan[64];
	struct event *tick;
} lis;

static void
ls_on_sent(void *arg, ash_err rv, const PGresult *res)
{
}

static void
ls_on_tick(evutil_socket_t fd, short what, void *arg)
{
	lis        *l   = arg;
	const char *p[] = {"Chan\"x", l->phase == 1 ? "first" : "second"};

	if (l->phase < 3 &&
	    ash_db_query(l->e->db, "SELECT pg_notify($1, $2)", 2, p,
	        ls_on_sent, l) == ASH_OK)
		l->sent++;
}

static void
ls_on_notify(void *arg, const char *channel, const char *payload)
{
	lis *l = arg;

	snprintf(l->chan, sizeof(l->chan), "%s", channel);
	if (l->phase == 1 && strcmp(payload, "first") == 0) {
		l->phase = 2;
		/* kill every session, the listener's included */
		it_pg_exec(l->e->dsn, TERMINATE_ALL);
	} else if (l->phase == 2 && strcmp(payload, "second") == 0) {
		l->phase = 3;
		ash_loop_exit_when_idle(l->e->loop, 0);
	}
}

static void
ls_on_other(void *arg, const char *channel, const char *payload)
{
	((lis *) arg)->other++;
}

ASH_TEST(listen_notify_survives_reconnect)
{
	env            e;
	lis            l     = {0};
	struct timeval every = {0, 50000};

	env_init(&e, "listen", 20);
	env_pool(&e, NULL, 1, 5000);
	l.e     = &e;
	l.phase = 1;
	ASH_T_OK(ash_db_listen(e.db, "Chan\"x", ls_on_notify, &l));
	ASH_T_OK(ash_db_listen(e.db, "other", ls_on_other, &l));
	ASH_T_ERR(ash_db_listen(e.db, "", ls_on_other, &l), ASH_EINVAL);
	l.tick =
	    event_new(ash_loop_base(e.loop), -1, EV_PERSIST, ls_on_tick, &l);
	event_add(l.tick, &every);
	ash_loop_run(e.loop);
	event_free(l.tick);
	ASH_T_EQ_INT(l.phase, 3);
	ASH_T_EQ_STR(l.chan, "Chan\"x");
	ASH_T_EQ_INT(l.other, 0);
	env_fini(&e);
}

/* --- close ----------------------------------------------------------------
 */

typedef struct cl {
	env       *e;
	ash_db_tx *tx;
	int        canceled; /* ASH_ECANCELED answers */
	int        other;    /* any other answer after the start */
	int        rollback_rv;
	int        at_close; /* canceled when ash_db_pool_close returned */
} cl;

static void
cl_on_answer(void *arg, ash_err rv, const PGresult *res)
{
	cl *c = arg;

	if (rv == ASH_ECANCELED)
		c->canceled++;
	else
		c->other++;
}

static void
cl_on_rollback(void *arg, ash_err rv, const PGresult *res)
{
	((cl *) arg)->rollback_rv = rv;
}

static void
cl_on_txq(void *arg, ash_err rv, const PGresult *res)
{
	cl *c = arg;

	cl_on_answer(c, rv, res);
	/* the natural error path: roll back from the failed query's cb */
	ash_db_tx_rollback(c->tx, cl_on_rollback, c);
}

static void
cl_on_close(evutil_socket_t fd, short what, void *arg)
{
	cl *c = arg;

	ash_db_pool_close(c->e->db);
	c->e->db    = NULL;
	c->at_close = c->canceled;
	ash_loop_exit_when_idle(c->e->loop, 0);
}

static void
cl_on_begin(void *arg, ash_err rv, ash_db_tx *tx)
{
	cl *c = arg;

	c->tx = tx;
	if (rv != ASH_OK ||
	    ash_db_tx_query(
	        tx, "SELECT pg_sleep(10)", 0, NULL, cl_on_txq, c) != ASH_OK) {
		c->other++;
		ash_loop_exit_when_idle(c->e->loop, 0);
		return;
	}
	for (int i = 0; i < 3; i++)
		if (ash_db_query(c->e->db, "SELECT pg_sleep(10)", 0, NULL,
		        cl_on_answer, c) != ASH_OK)
			c->other++;
	env_after(c->e, 200, cl_on_close, c);
}

ASH_TEST(close_with_queries_in_flight)
{
	env e;
	cl  c = {0};

	env_init(&e, "close", 30);
	env_pool(&e, NULL, 2, 20000);
	c.e           = &e;
	c.rollback_rv = -1;
	it_pg_exec(e.dsn, "SELECT 1");
	ASH_T_OK(ash_db_tx_begin(e.db, cl_on_begin, &c));
	ash_loop_run(e.loop);
	/* tx query (on the pinned conn), one on the other conn, 2 queued */
	ASH_T_EQ_INT(c.other, 0);
	ASH_T_EQ_INT(c.at_close, 4);
	ASH_T_EQ_INT(c.canceled, 4);
	ASH_T_ERR(c.rollback_rv, ASH_ECANCELED);
	env_fini(&e);
}

typedef struct cb_close {
	env    *e;
	ash_err rv[3];
	int     n;
} cb_close;

static void
cc_on_answer(void *arg, ash_err rv, const PGresult *res)
{
	cb_close *c = arg;

	c->rv[c->n++] = rv;
	if (c->n == 1) { /* close from inside the pool's own callback */
		ash_db_pool_close(c->e->db);
		c->e->db = NULL;
		ash_loop_exit_when_idle(c->e->loop, 0);
	}
}

ASH_TEST(close_inside_callback)
{
	env      e;
	cb_close c = {0};

	env_init(&e, "closecb", 30);
	env_pool(&e, NULL, 1, 5000);
	c.e = &e;
	for (int i = 0; i < 3; i++)
		ASH_T_OK(
		    ash_db_query(e.db, "SELECT 1", 0, NULL, cc_on_answer, &c));
	ash_loop_run(e.loop);
	ASH_T_EQ_INT(c.n, 3);
	ASH_T_OK(c.rv[0]);
	ASH_T_ERR(c.rv[1], ASH_ECANCELED);
	ASH_T_ERR(c.rv[2], ASH_ECANCELED);
	env_fini(&e);
}

/* --- migrations ------------------------------------------------------------
 */

static const ash_db_migration mig_two[] = {
    {1, "0001_first", "CREATE TABLE a (x int); INSERT INTO a VALUES (1);"},
    {2, "0002_second", "CREATE TABLE b (y int);\nINSERT INTO a VALUES (2);"},
    {0, NULL, NULL},
};

static const ash_db_migration mig_bad[] = {
    {1, "0001_first", "CREATE TABLE a (x int); INSERT INTO a VALUES (1);"},
    {2, "0002_second", "CREATE TABLE b (y int);\nINSERT INTO a VALUES (2);"},
    {3, "0003_broken", "CREATE TABLE c (z int); INSERT INTO nope VALUES (1);"},
    {0, NULL, NULL},
};

static const ash_db_migration mig_renamed[] = {
    {1, "0001_renamed", "CREATE TABLE a (x int); INSERT INTO a VALUES (1);"},
    {2, "0002_second", "CREATE TABLE b (y int);\nINSERT INTO a VALUES (2);"},
    {0, NULL, NULL},
};

ASH_TEST(migrate_applies_skips_and_rolls_back)
{
	char        dsn[512];
	int         v = -1;
	capture     cap;
	const char *log;
	ash_err     bad, renamed;

	ash_log_init("it_db", ASH_LOG_INFO);
	it_db_create("migrate", dsn, sizeof(dsn));
	it_pg_exec(dsn, "CREATE SCHEMA app");
	ASH_T_OK(ash_db_migrate(dsn, "app", mig_two, &v));
	ASH_T_EQ_INT(v, 2);
	ASH_T_EQ_STR(it_pg_exec(dsn,
	                 "SELECT string_agg(version || ':' || name, ',' "
	                 "ORDER BY version) FROM app.schema_migrations"),
	    "1:0001_first,2:0002_second");
	ASH_T_EQ_STR(it_pg_exec(dsn, "SELECT count(*) FROM app.a"), "2");
	ASH_T_EQ_STR(
	    it_pg_exec(dsn, "SELECT to_regclass('app.b') IS NOT NULL"), "t");
	/* second run: nothing applied again */
	v = -1;
	ASH_T_OK(ash_db_migrate(dsn, "app", mig_two, &v));
	ASH_T_EQ_INT(v, 2);
	ASH_T_EQ_STR(it_pg_exec(dsn, "SELECT count(*) FROM app.a"), "2");
	capture_start(&cap);
	bad     = ash_db_migrate(dsn, "app", mig_bad, &v);
	renamed = ash_db_migrate(dsn, "app", mig_renamed, NULL);
	log     = capture_stop(&cap);
	ASH_T_ERR(bad, ASH_EDB);
	ASH_T_EQ_STR(
	    it_pg_exec(dsn, "SELECT to_regclass('app.c') IS NULL"), "t");
	ASH_T_EQ_STR(
	    it_pg_exec(dsn, "SELECT max(version) FROM app.schema_migrations"),
	    "2");
	ASH_T_CONTAINS(log, "0003_broken");
	ASH_T_CONTAINS(log, "\"sqlstate\":\"42P01\"");
	ASH_T_ERR(renamed, ASH_ECONFLICT);
	ASH_T_CONTAINS(log, "0001_renamed");
	ASH_T_EQ_INT(v, 2); /* not written on failure */
	it_cleanup();
}

/* Routine f() logs each time it is applied into log, so a test sees when
 * it ran. */
#define ROUTINE(n)                                                    \
	"CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS " \
	"'SELECT " #n "'; INSERT INTO log VALUES (" #n ");"
#define LOG_TABLE                                          \
	{                                                  \
		1, "0001_log", "CREATE TABLE log (n int);" \
	}

static const ash_db_migration mig_f1[] = {
    LOG_TABLE, {0, "f.sql", ROUTINE(1)}, {0, NULL, NULL}};
static const ash_db_migration mig_f2[] = {
    LOG_TABLE, {0, "f.sql", ROUTINE(2)}, {0, NULL, NULL}};
static const ash_db_migration mig_f_broken[] = {
    LOG_TABLE, {0, "f.sql", ROUTINE(4) " SELECT nope;"}, {0, NULL, NULL}};
/* The next release: a new version, and f changed again. */
static const ash_db_migration mig_f3[]      = {LOG_TABLE,
         {2, "0002_more", "CREATE TABLE more (x int);"}, {0, "f.sql", ROUTINE(3)},
         {0, NULL, NULL}};
static const ash_db_migration mig_f_first[] = {
    {0, "f.sql", ROUTINE(1)}, LOG_TABLE, {0, NULL, NULL}};

ASH_TEST(migrate_reapplies_a_routine_only_when_its_text_changes)
{
	char    dsn[512];
	int     v = -1;
	capture cap;
	ash_err broken;

	ash_log_init("it_db", ASH_LOG_INFO);
	it_db_create("routines", dsn, sizeof(dsn));
	it_pg_exec(dsn, "CREATE SCHEMA app");
#define APPLIED "SELECT string_agg(n::text, ',') FROM app.log"
	ASH_T_OK(ash_db_migrate(dsn, "app", mig_f1, &v));
	ASH_T_EQ_INT(v, 1);
	ASH_T_EQ_STR(it_pg_exec(dsn, "SELECT app.f()"), "1");
	/* Unchanged: not applied again. */
	ASH_T_OK(ash_db_migrate(dsn, "app", mig_f1, &v));
	ASH_T_EQ_STR(it_pg_exec(dsn, APPLIED), "1");
	/* Changed: applied again, in place. */
	ASH_T_OK(ash_db_migrate(dsn, "app", mig_f2, &v));
	ASH_T_EQ_STR(it_pg_exec(dsn, "SELECT app.f()"), "2");
	ASH_T_EQ_STR(it_pg_exec(dsn, APPLIED), "1,2");
	/* A broken change is rolled back whole. */
	capture_start(&cap);
	broken = ash_db_migrate(dsn, "app", mig_f_broken, &v);
	ASH_T_CONTAINS(capture_stop(&cap), "f.sql");
	ASH_T_ERR(broken, ASH_EDB);
	ASH_T_EQ_STR(it_pg_exec(dsn, "SELECT app.f()"), "2");
	ASH_T_EQ_STR(it_pg_exec(dsn, APPLIED), "1,2");
	/* The next release changes it again; a replica of the release
	 * before, started after it, leaves it alone. */
	ASH_T_OK(ash_db_migrate(dsn, "app", mig_f3, &v));
	ASH_T_EQ_INT(v, 2);
	ASH_T_OK(ash_db_migrate(dsn, "app", mig_f2, &v));
	ASH_T_EQ_INT(v, 2);
	ASH_T_EQ_STR(it_pg_exec(dsn, "SELECT app.f()"), "3");
	ASH_T_EQ_STR(it_pg_exec(dsn, APPLIED), "1,2,3");
	ASH_T_EQ_STR(it_pg_exec(dsn,
	                 "SELECT name || ':' || version FROM "
	                 "app.schema_routines"),
	    "f.sql:2");
#undef APPLIED
	/* Routines come after the versioned migrations. */
	ASH_T_ERR(ash_db_migrate(dsn, "app", mig_f_first, NULL), ASH_EINVAL);
	it_cleanup();
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(query_round_trip_params),
    ASH_TEST_ENTRY(loop_not_blocked_during_query),
    ASH_TEST_ENTRY(sql_errors_map_and_log_without_params),
    ASH_TEST_ENTRY(query_timeout_cancels_and_drains),
    ASH_TEST_ENTRY(server_statement_timeout_maps_to_timedout),
    ASH_TEST_ENTRY(tx_commit_visible), ASH_TEST_ENTRY(tx_rollback_invisible),
    ASH_TEST_ENTRY(tx_error_then_commit_fails),
    ASH_TEST_ENTRY(tx_connection_lost_commit_unavailable),
    ASH_TEST_ENTRY(permission_denied_forbidden),
    ASH_TEST_ENTRY(reconnect_after_terminate),
    ASH_TEST_ENTRY(all_connections_down_unavailable_fast),
    ASH_TEST_ENTRY(queued_queries_fail_when_last_connection_breaks),
    ASH_TEST_ENTRY(connect_timeout_gives_up),
    ASH_TEST_ENTRY(queue_full_unavailable), ASH_TEST_ENTRY(resolve_host_name),
    ASH_TEST_ENTRY(dsn_options_are_combined),
    ASH_TEST_ENTRY(open_rejects_bad_options),
    ASH_TEST_ENTRY(listen_notify_survives_reconnect),
    ASH_TEST_ENTRY(close_with_queries_in_flight),
    ASH_TEST_ENTRY(close_inside_callback),
    ASH_TEST_ENTRY(migrate_applies_skips_and_rolls_back),
    ASH_TEST_ENTRY(migrate_reapplies_a_routine_only_when_its_text_changes))
