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

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

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

/* Waits up to 5 s until a query of role waits for a lock
 * (pg_stat_activity, asked through dsn); fails the case if none does. */
void it_pg_wait_lock(const char *dsn, const char *role);

/* A DSN for dsn's database as another user. */
void it_dsn_as(const char *dsn, const char *user, char *out, size_t cap);

/* Drops databases made by it_db_create and kills processes still running;
 * registered with atexit by it_db_create. */
void it_cleanup(void);

/* --- processes ---------------------------------------------------------- */

typedef struct it_proc it_proc;

/* Starts argv[0] (a path) with exactly the environment env (NULL-terminated
 * "K=V"; PATH and sanitizer options are added), stderr and stdout to log.
 * Does not wait. */
it_proc *it_proc_start(char *const argv[], char *const env[], const char *log);
/* Waits up to ms for a line containing needle in the log; fails the case
 * (printing the log's tail) if it does not come or the process exits. */
void it_proc_wait_log(it_proc *p, const char *needle, int ms);
/* True if the log contains needle now. */
bool it_proc_log_has(it_proc *p, const char *needle);
/* Sends sig. */
void it_proc_signal(it_proc *p, int sig);
/* Waits up to ms for exit; returns the exit code (128+signal if killed), or
 * -1 on timeout (then the process is still running). */
int it_proc_wait(it_proc *p, int ms);
/* SIGKILL if running, reap, free. NULL is fine. */
void it_proc_free(it_proc *p);
/* The log's tail, for failure messages (static buffer). */
const char *it_proc_tail(it_proc *p);

/* Kills every process still running (it_cleanup does this). */
void it_procs_kill_all(void);

/* A free TCP port on 127.0.0.1 (bind to 0, read, close). */
int it_free_port(void);
/* Where the build put a binary: "services/gateway/ashoon-gateway". */
void it_bin(const char *rel, char *out, size_t cap);

/* --- the platform ------------------------------------------------------- */

#include <ashoon/proto.h>

#define IT_MAX_ENV 48

/* All seven services on one fresh database and free ports. */
typedef struct it_stack {
	char     tag[48];
	char     dsn[320]; /* admin DSN of the stack's database */
	char     base[64]; /* http://127.0.0.1:<port> */
	int      http_port;
	int      bus_port[ASH_SVC_COUNT];
	int      events_port[ASH_SVC_COUNT];
	int      metrics_port[ASH_SVC_COUNT];
	it_proc *procs[ASH_SVC_COUNT];
	char     logs[ASH_SVC_COUNT][512];
	int      starts[ASH_SVC_COUNT];
	char    *env[IT_MAX_ENV]; /* extra "K=V" for every service */
	int      nenv;
} it_stack;

#define IT_ADMIN_TOKEN "it-admin-token-0123456789"

/* Makes the database, runs `ashoonctl db bootstrap`, picks ports. */
void it_stack_init(it_stack *s, const char *tag);
/* Adds "K=V" to every service started afterwards. */
void it_stack_env(it_stack *s, const char *kv);
/* Starts one service and waits for its READY line. */
void it_stack_start(it_stack *s, int svc);
/* Starts all seven and waits until /readyz answers 200. */
void it_stack_start_all(it_stack *s);
void it_stack_wait_ready(it_stack *s);
/* SIGTERM and wait up to 15 s: returns the exit code. */
int it_stack_stop(it_stack *s, int svc);
/* Stops everything still running (asserting clean exits) and frees. */
void it_stack_fini(it_stack *s);

/* Creates a tenant through the admin API; writes its id and API key. */
void it_tenant_create(
    it_stack *s, const char *name, char id[64], char key[128]);

/* --- files -------------------------------------------------------------- */

/* The whole file at path, NUL-terminated after its *len bytes; free() it.
 * Fails the case if it cannot be read. */
char *it_read_file(const char *path, size_t *len);

/* Calls fn once for every file of tests/fuzz/corpus/<name> (file: its
 * name; data: its bytes, NUL-terminated, borrowed for the call). Returns
 * how many; fails the case if the directory cannot be opened. */
typedef void (*it_corpus_fn)(
    const char *file, const char *data, size_t len, void *arg);
int it_corpus_each(const char *name, it_corpus_fn fn, void *arg);

/* --- HTTP --------------------------------------------------------------- */

typedef struct it_resp {
	long   status;
	char  *body; /* NUL-terminated */
	cJSON *json; /* parsed body, or NULL */
	char   headers[8192];
} it_resp;

/* A blocking request. headers: NULL-terminated "Name: value" or NULL. */
void it_http(it_resp *r, const char *method, const char *url,
    const char *const *headers, const char *body, size_t body_len);
/* Convenience: request to s->base + path with an optional bearer. */
void it_call(it_stack *s, it_resp *r, const char *method, const char *path,
    const char *bearer, const char *body);
/* "sha256=<hex HMAC-SHA256(secret, body)>", X-Hub-Signature-256's value. */
void it_webhook_signature(
    const char *body, size_t len, const char *secret, char out[80]);
/* POSTs body to s->base + /webhooks/meta as Meta does, signed
 * X-Hub-Signature-256 with secret (NULL: no signature header); returns
 * the status. */
long it_post_webhook(
    it_stack *s, const char *body, size_t len, const char *secret, it_resp *r);
/* Value of a response header (static buffer) or NULL. */
const char *it_resp_header(const it_resp *r, const char *name);
/* error.code of an error body, or "". */
const char *it_resp_code(const it_resp *r);
void        it_resp_fini(it_resp *r);

#endif
