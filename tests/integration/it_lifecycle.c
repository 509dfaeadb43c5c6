/*
 * Integration: services stopping, freezing, restarting and draining under
 * load, start-up configuration errors, and ashoonctl against a live stack.
 */
#include "it.h"

#include <ashoon/json.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Holds an ACCESS EXCLUSIVE lock on a service's migrations table, so that
 * its sys.info query waits: a slow request without any test-only hook. */
static PGconn *
lock_schema(it_stack *s, const char *schema)
{
	PGconn *c = PQconnectdb(s->dsn);
	char    sql[200];

	ASH_T_EQ_INT(PQstatus(c), CONNECTION_OK);
	snprintf(sql, sizeof(sql),
	    "BEGIN; LOCK TABLE %s.schema_migrations IN ACCESS EXCLUSIVE MODE",
	    schema);
	PQclear(PQexec(c, sql));
	return c;
}

static void
unlock_schema(PGconn *c)
{
	PQclear(PQexec(c, "COMMIT"));
	PQfinish(c);
}

typedef struct bg_call {
	it_stack *s;
	char      path[128];
	char      key[128];
	long      status;
	pthread_t t;
} bg_call;

static void *
bg_run(void *arg)
{
	bg_call *b = arg;
	it_resp  r;

	it_call(b->s, &r, "GET", b->path, b->key, NULL);
	b->status = r.status;
	it_resp_fini(&r);
	return NULL;
}

static void
bg_start(bg_call *b, it_stack *s, const char *path, const char *key)
{
	b->s = s;
	snprintf(b->path, sizeof(b->path), "%s", path);
	snprintf(b->key, sizeof(b->key), "%s", key);
	pthread_create(&b->t, NULL, bg_run, b);
}

ASH_TEST(sigterm_lets_an_inflight_request_finish)
{
	it_stack s;
	char     id[64], key[128];
	bg_call  b;

	it_stack_init(&s, "drain");
	it_stack_start_all(&s);
	it_tenant_create(&s, "T", id, key);
	PGconn *lock = lock_schema(&s, "meta_ingest");
	bg_start(&b, &s, "/api/v1/sys/meta-ingest/info", key);
	it_pg_wait_lock(s.dsn, "ashoon_meta_ingest");
	it_proc_signal(s.procs[ASH_SVC_META_INGEST], SIGTERM);
	/* Draining, not gone: it waits for the request it is serving. */
	ASH_T_EQ_INT(it_proc_wait(s.procs[ASH_SVC_META_INGEST], 500), -1);
	unlock_schema(lock);
	pthread_join(b.t, NULL);
	ASH_T_EQ_INT(b.status, 200);
	ASH_T_EQ_INT(it_proc_wait(s.procs[ASH_SVC_META_INGEST], 10000), 0);
	it_proc_free(s.procs[ASH_SVC_META_INGEST]);
	s.procs[ASH_SVC_META_INGEST] = NULL;
	it_stack_fini(&s);
}

ASH_TEST(stopped_service_gives_503_others_answer_restart_recovers)
{
	it_stack s;
	it_resp  r;
	char     id[64], key[128];

	it_stack_init(&s, "restart");
	it_stack_start_all(&s);
	it_tenant_create(&s, "T", id, key);
	ASH_T_EQ_INT(it_stack_stop(&s, ASH_SVC_META_INGEST), 0);
	it_call(&s, &r, "GET", "/api/v1/sys/meta-ingest/info", key, NULL);
	ASH_T_EQ_INT(r.status, 503);
	ASH_T_EQ_STR(it_resp_code(&r), "unavailable");
	it_resp_fini(&r);
	it_call(&s, &r, "GET", "/api/v1/sys/widget-gateway/info", key, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	it_call(&s, &r, "GET", "/readyz", NULL, NULL);
	ASH_T_EQ_INT(r.status, 503);
	ASH_T_CONTAINS(r.body,
	    "\"name\":\"meta-ingest\",\"status\":"
	    "\"unavailable\"");
	it_resp_fini(&r);
	/* Back without touching the gateway: it redials by itself. */
	it_stack_start(&s, ASH_SVC_META_INGEST);
	long status = 0;
	for (int i = 0; i < 300 && status != 200; i++) {
		it_call(
		    &s, &r, "GET", "/api/v1/sys/meta-ingest/info", key, NULL);
		status = r.status;
		it_resp_fini(&r);
		if (status != 200)
			usleep(10000);
	}
	ASH_T_EQ_INT(status, 200);
	it_stack_fini(&s);
}

ASH_TEST(frozen_service_gives_504_and_recovers)
{
	it_stack s;
	it_resp  r;
	char     id[64], key[128];

	it_stack_init(&s, "frozen");
	it_stack_env(&s, "ASHOON_BUS_TIMEOUT_MS=400");
	it_stack_start_all(&s);
	it_tenant_create(&s, "T", id, key);
	it_proc_signal(s.procs[ASH_SVC_KNOWLEDGE_INDEXER], SIGSTOP);
	it_call(
	    &s, &r, "GET", "/api/v1/sys/knowledge-indexer/info", key, NULL);
	ASH_T_EQ_INT(r.status, 504);
	ASH_T_EQ_STR(it_resp_code(&r), "deadline_exceeded");
	it_resp_fini(&r);
	it_call(&s, &r, "GET", "/api/v1/sys/dsar-handler/info", key, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	it_proc_signal(s.procs[ASH_SVC_KNOWLEDGE_INDEXER], SIGCONT);
	it_call(
	    &s, &r, "GET", "/api/v1/sys/knowledge-indexer/info", key, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	it_stack_fini(&s);
}

/* Sends a request on a raw socket and hangs up before the answer. */
static void
send_and_hang_up(it_stack *s, const char *path, const char *key)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	char               req[512];
	int                fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_port        = htons((uint16_t) s->http_port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASH_T_EQ_INT(connect(fd, (struct sockaddr *) &a, sizeof(a)), 0);
	snprintf(req, sizeof(req),
	    "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n",
	    path, key);
	ASH_T_TRUE(write(fd, req, strlen(req)) == (ssize_t) strlen(req));
	it_pg_wait_lock(s->dsn, "ashoon_dsar_handler");
	close(fd);
}

ASH_TEST(client_gone_during_a_slow_request_is_harmless)
{
	it_stack s;
	it_resp  r;
	char     id[64], key[128];

	it_stack_init(&s, "gone");
	it_stack_start_all(&s);
	it_tenant_create(&s, "T", id, key);
	PGconn *lock = lock_schema(&s, "dsar_handler");
	send_and_hang_up(&s, "/api/v1/sys/dsar-handler/info", key);
	usleep(100000);
	unlock_schema(lock);
	/* The backend answer arrives for a departed client: dropped. The
	 * gateway keeps serving, and exits clean (ASan-checked) at fini. */
	it_call(&s, &r, "GET", "/api/v1/sys/dsar-handler/info", key, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	ASH_T_TRUE(it_proc_log_has(s.procs[ASH_SVC_GATEWAY],
	    "\"route\":\"/api/v1/sys/{svc}/info\",\"status\":200"));
	it_stack_fini(&s);
}

/* Reads one HTTP response head+body (small) from fd into buf. */
static void
read_response(int fd, char *buf, size_t cap)
{
	size_t  n = 0;
	ssize_t r;

	/* Our responses here are tiny; stop at the end of the JSON body. */
	while (n < cap - 1 && (r = read(fd, buf + n, cap - 1 - n)) > 0) {
		n += (size_t) r;
		buf[n] = '\0';
		if (strstr(buf, "\r\n\r\n") &&
		    strchr(strstr(buf, "\r\n\r\n"), '}'))
			break;
	}
	buf[n] = '\0';
}

ASH_TEST(gateway_drain_closes_keepalive_connections_after_answering)
{
	it_stack           s;
	struct sockaddr_in a = {.sin_family = AF_INET};
	char               buf[2048], id[64], key[128];
	const char        *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	int                fd  = socket(AF_INET, SOCK_STREAM, 0);
	bg_call            b;

	it_stack_init(&s, "gwdrain");
	it_stack_start_all(&s);
	it_tenant_create(&s, "T", id, key);
	a.sin_port        = htons((uint16_t) s.http_port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASH_T_EQ_INT(connect(fd, (struct sockaddr *) &a, sizeof(a)), 0);
	ASH_T_TRUE(write(fd, req, strlen(req)) > 0);
	read_response(fd, buf, sizeof(buf));
	ASH_T_CONTAINS(buf, "200");
	ASH_T_NOT_CONTAINS(buf, "Connection: close");
	/* A slow request keeps the gateway draining... */
	PGconn *lock = lock_schema(&s, "meta_ingest");
	bg_start(&b, &s, "/api/v1/sys/meta-ingest/info", key);
	it_pg_wait_lock(s.dsn, "ashoon_meta_ingest");
	it_proc_signal(s.procs[ASH_SVC_GATEWAY], SIGTERM);
	it_proc_wait_log(
	    s.procs[ASH_SVC_GATEWAY], "\"id\":\"SHUTDOWN\"", 5000);
	/* ...meanwhile a keep-alive client is still answered, and told to
	 * take its next request elsewhere. */
	ASH_T_TRUE(write(fd, req, strlen(req)) > 0);
	read_response(fd, buf, sizeof(buf));
	ASH_T_CONTAINS(buf, "200");
	ASH_T_CONTAINS(buf, "Connection: close");
	close(fd);
	unlock_schema(lock);
	pthread_join(b.t, NULL);
	ASH_T_EQ_INT(b.status, 200);
	ASH_T_EQ_INT(it_proc_wait(s.procs[ASH_SVC_GATEWAY], 10000), 0);
	it_proc_free(s.procs[ASH_SVC_GATEWAY]);
	s.procs[ASH_SVC_GATEWAY] = NULL;
	it_stack_fini(&s);
}

/* Runs a service binary once with env; returns its exit code. */
static int
run_once(const char *svc, char *const env[], it_proc **out)
{
	char  bin[512], rel[128], log[600];
	char *argv[] = {bin, NULL};

	snprintf(rel, sizeof(rel), "services/%s/ashoon-%s", svc, svc);
	it_bin(rel, bin, sizeof(bin));
	snprintf(log, sizeof(log), "%s/it-logs/cfg-%s-%d.log",
	    getenv("ASH_BUILD_DIR"), svc, (int) getpid());
	*out = it_proc_start(argv, env, log);
	return it_proc_wait(*out, 20000);
}

ASH_TEST(config_errors_are_reported_together_and_secrets_never_logged)
{
	char    *bad[]  = {"ASHOON_DB_POOL_SIZE=lots", "ASHOON_RATE_API_RPS=0",
	        "ASHOON_SHUTDOWN_GRACE_MS=soon", NULL};
	char    *good[] = {"ASHOON_DB_DSN=host=127.0.0.1 port=1 user=x "
	                      "password=hunter2-secret-pw",
	       "ASHOON_ADMIN_TOKEN=admin-token-secret-value",
	       "ASHOON_DB_WAIT_MS=0", "ASHOON_HTTP_ADDR=127.0.0.1:0", NULL};
	it_proc *p;

	/* Every problem in one go (the DSN is missing too), exit code 2. */
	ASH_T_EQ_INT(run_once("gateway", bad, &p), 2);
	ASH_T_TRUE(it_proc_log_has(p, "ASHOON_DB_POOL_SIZE"));
	ASH_T_TRUE(it_proc_log_has(p, "ASHOON_RATE_API_RPS"));
	ASH_T_TRUE(it_proc_log_has(p, "ASHOON_SHUTDOWN_GRACE_MS"));
	ASH_T_TRUE(it_proc_log_has(p, "ASHOON_DB_DSN"));
	it_proc_free(p);
	/* Valid configuration, unreachable Postgres: the effective settings
	 * are logged with the secrets redacted, then start-up fails. */
	ASH_T_EQ_INT(run_once("gateway", good, &p), 1);
	ASH_T_TRUE(it_proc_log_has(p, "\"id\":\"CFG\""));
	ASH_T_TRUE(it_proc_log_has(p, "(set)"));
	ASH_T_TRUE(!it_proc_log_has(p, "hunter2-secret-pw"));
	ASH_T_TRUE(!it_proc_log_has(p, "admin-token-secret-value"));
	ASH_T_TRUE(it_proc_log_has(p, "START-FAIL"));
	it_proc_free(p);
}

/* Runs ashoonctl with the stack's URL and token; returns its exit code
 * and leaves its output in *out (free with it_proc_free). */
static int
ctl(it_stack *s, const char *token, it_proc **out, char *a1, char *a2,
    char *a3)
{
	char  bin[512], log[600], url[128], tok[128];
	char *argv[] = {bin, a1, a2, a3, NULL};
	char *env[]  = {url, tok, NULL};

	it_bin("cli/ashoonctl", bin, sizeof(bin));
	snprintf(log, sizeof(log), "%s/it-logs/%s/ctl-%s.log",
	    getenv("ASH_BUILD_DIR"), s->tag, a1);
	snprintf(url, sizeof(url), "ASHOON_URL=%s", s->base);
	snprintf(tok, sizeof(tok), "ASHOON_ADMIN_TOKEN=%s", token);
	*out = it_proc_start(argv, env, log);
	return it_proc_wait(*out, 20000);
}

ASH_TEST(ashoonctl_creates_a_tenant_whose_key_works)
{
	it_stack s;
	it_proc *p;
	it_resp  r;
	char     key[128] = "";

	it_stack_init(&s, "ctl");
	it_stack_start_all(&s);
	ASH_T_EQ_INT(
	    ctl(&s, IT_ADMIN_TOKEN, &p, "tenant", "create", "Corner Shop"), 0);
	const char *k = strstr(it_proc_tail(p), "api key ");
	ASH_T_NOT_NULL(k);
	snprintf(key, sizeof(key), "%.*s", (int) strcspn(k + 8, "\n"), k + 8);
	it_proc_free(p);
	it_call(&s, &r, "GET", "/api/v1/sys/gateway/info", key, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	ASH_T_EQ_INT(ctl(&s, IT_ADMIN_TOKEN, &p, "tenant", "list", NULL), 0);
	ASH_T_CONTAINS(it_proc_tail(p), "Corner Shop");
	it_proc_free(p);
	ASH_T_EQ_INT(ctl(&s, IT_ADMIN_TOKEN, &p, "status", NULL, NULL), 0);
	ASH_T_CONTAINS(it_proc_tail(p), "dsar-handler");
	it_proc_free(p);
	ASH_T_EQ_INT(ctl(&s, "wrong-token", &p, "tenant", "list", NULL), 1);
	ASH_T_CONTAINS(it_proc_tail(p), "HTTP 401");
	it_proc_free(p);
	it_stack_fini(&s);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(sigterm_lets_an_inflight_request_finish),
    ASH_TEST_ENTRY(stopped_service_gives_503_others_answer_restart_recovers),
    ASH_TEST_ENTRY(frozen_service_gives_504_and_recovers),
    ASH_TEST_ENTRY(client_gone_during_a_slow_request_is_harmless),
    ASH_TEST_ENTRY(gateway_drain_closes_keepalive_connections_after_answering),
    ASH_TEST_ENTRY(
        config_errors_are_reported_together_and_secrets_never_logged),
    ASH_TEST_ENTRY(ashoonctl_creates_a_tenant_whose_key_works))
