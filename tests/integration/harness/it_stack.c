/*
 * it_stack.c - the whole platform for one test case: a fresh database
 * bootstrapped by the real ashoonctl, the real service binaries on free
 * loopback ports, each with its own role's DSN.
 */
#include "it.h"

#include <ashoon/json.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* build/it-logs/<case>/: kept after the run for reading failures. */
static void
it_logdir(const it_stack *s, char *out, size_t cap)
{
	snprintf(out, cap, "%s/it-logs", getenv("ASH_BUILD_DIR"));
	mkdir(out, 0755);
	snprintf(out, cap, "%s/it-logs/%s", getenv("ASH_BUILD_DIR"), s->tag);
	mkdir(out, 0755);
}

static void
bootstrap(it_stack *s)
{
	char     bin[512], log[600], dir[512], env0[400];
	char    *argv[] = {bin, "db", "bootstrap", NULL};
	char    *env[]  = {env0, NULL};
	it_proc *p;

	it_bin("cli/ashoonctl", bin, sizeof(bin));
	it_logdir(s, dir, sizeof(dir));
	snprintf(log, sizeof(log), "%s/ashoonctl.log", dir);
	snprintf(env0, sizeof(env0), "ASHOON_ADMIN_DSN=%s", s->dsn);
	p      = it_proc_start(argv, env, log);
	int rc = it_proc_wait(p, 30000);
	if (rc != 0)
		ASH_T_FAILF(
		    "ashoonctl db bootstrap: %d\n%s", rc, it_proc_tail(p));
	it_proc_free(p);
}

void
it_stack_init(it_stack *s, const char *tag)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->tag, sizeof(s->tag), "%s", tag);
	it_db_create(tag, s->dsn, sizeof(s->dsn));
	bootstrap(s);
	s->http_port = it_free_port();
	snprintf(
	    s->base, sizeof(s->base), "http://127.0.0.1:%d", s->http_port);
	for (int i = 0; i < ASH_SVC_COUNT; i++) {
		s->bus_port[i]    = it_free_port();
		s->events_port[i] = it_free_port();
	}
}

void
it_stack_env(it_stack *s, const char *kv)
{
	ASH_T_TRUE(s->nenv < IT_MAX_ENV);
	s->env[s->nenv++] = ash_xstrdup(kv);
}

static bool
stack_has_env(const it_stack *s, const char *prefix)
{
	for (int i = 0; i < s->nenv; i++)
		if (strncmp(s->env[i], prefix, strlen(prefix)) == 0)
			return true;
	return false;
}

/* The environment of service svc: its own DSN, every bus address, the
 * stack's extras. */
static char **
svc_env(it_stack *s, int svc)
{
	char **env =
	    ash_xcalloc(IT_MAX_ENV + 2 * ASH_SVC_COUNT + 8, sizeof(char *));
	char dsn[400];
	int  n = 0;

	char role[80];
	snprintf(role, sizeof(role), "ashoon_%s", ash_services[svc].schema);
	it_dsn_as(s->dsn, role, dsn, sizeof(dsn));
	env[n++] = ash_xasprintf("ASHOON_DB_DSN=%s", dsn);
	for (int i = 0; i < ASH_SVC_COUNT; i++) {
		env[n++] = ash_xasprintf("ASHOON_BUS_%s=tcp://127.0.0.1:%d",
		    ash_services[i].env, s->bus_port[i]);
		env[n++] = ash_xasprintf("ASHOON_EVENTS_%s=tcp://127.0.0.1:%d",
		    ash_services[i].env, s->events_port[i]);
	}
	env[n++] =
	    ash_xasprintf("ASHOON_HTTP_ADDR=127.0.0.1:%d", s->http_port);
	env[n++] = ash_xstrdup("ASHOON_METRICS_ADDR=127.0.0.1:0");
	env[n++] = ash_xstrdup("ASHOON_ADMIN_TOKEN=" IT_ADMIN_TOKEN);
	env[n++] = ash_xstrdup("ASHOON_LOG_LEVEL=debug");
	/* A test master key unless the case brings its own (getenv takes
	 * the first match, so a default may not precede an override). */
	if (!stack_has_env(s, "ASHOON_MASTER_KEY="))
		env[n++] = ash_xstrdup(
		    "ASHOON_MASTER_KEY="
		    "dGVzdC1vbmx5LW1hc3Rlci1rZXktMzItYnl0ZXMhISE=");
	for (int i = 0; i < s->nenv; i++)
		env[n++] = s->env[i];
	return env;
}

/* "metrics_port":12345 from the READY line. */
static int
ready_port(it_proc *p)
{
	const char *t = it_proc_tail(p);
	const char *m = strstr(t, "\"metrics_port\":");

	return m ? atoi(m + 15) : 0;
}

void
it_stack_start(it_stack *s, int svc)
{
	char   bin[512], rel[128], dir[400];
	char  *argv[] = {bin, NULL};
	char **env    = svc_env(s, svc);

	snprintf(rel, sizeof(rel), "services/%s/ashoon-%s",
	    ash_services[svc].name, ash_services[svc].name);
	it_bin(rel, bin, sizeof(bin));
	it_logdir(s, dir, sizeof(dir));
	/* A new log per start, so a READY from an earlier run never counts. */
	snprintf(s->logs[svc], sizeof(s->logs[svc]), "%s/%s.%d.log", dir,
	    ash_services[svc].name, ++s->starts[svc]);
	s->procs[svc] = it_proc_start(argv, env, s->logs[svc]);
	/* Ours are the entries before the stack's extras. */
	for (int i = 0; env[i] != NULL && env[i] != s->env[0]; i++)
		free(env[i]);
	free(env);
	it_proc_wait_log(s->procs[svc], "\"id\":\"READY\"", 30000);
	s->metrics_port[svc] = ready_port(s->procs[svc]);
}

void
it_stack_wait_ready(it_stack *s)
{
	it_resp r = {0};

	/* Peers redial with backoff (up to 2 s), so READY lines alone do not
	 * mean the gateway reaches everyone yet: /readyz says when it does. */
	for (int i = 0; i < 300; i++) {
		it_call(s, &r, "GET", "/readyz", NULL, NULL);
		long status = r.status;
		if (status == 200) {
			it_resp_fini(&r);
			return;
		}
		it_resp_fini(&r);
		usleep(50000);
	}
	ASH_T_FAILF("/readyz never became 200");
}

void
it_stack_start_all(it_stack *s)
{
	for (int i = 0; i < ASH_SVC_COUNT; i++)
		it_stack_start(s, i);
	it_stack_wait_ready(s);
}

int
it_stack_stop(it_stack *s, int svc)
{
	int rc;

	if (s->procs[svc] == NULL)
		return -1;
	it_proc_signal(s->procs[svc], SIGTERM);
	rc = it_proc_wait(s->procs[svc], 15000);
	if (rc != 0)
		fprintf(stderr, "%s exited %d:\n%s\n", ash_services[svc].name,
		    rc, it_proc_tail(s->procs[svc]));
	it_proc_free(s->procs[svc]);
	s->procs[svc] = NULL;
	return rc;
}

void
it_stack_fini(it_stack *s)
{
	/* Every service must stop cleanly: exit 0 also means LeakSanitizer
	 * found nothing under the asan preset. */
	for (int i = 0; i < ASH_SVC_COUNT; i++)
		if (s->procs[i] != NULL)
			ASH_T_EQ_INT(it_stack_stop(s, i), 0);
	for (int i = 0; i < s->nenv; i++)
		free(s->env[i]);
	s->nenv = 0;
}

void
it_tenant_create(it_stack *s, const char *name, char id[64], char key[128])
{
	it_resp r;
	char    body[256];

	snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
	it_call(s, &r, "POST", "/admin/v1/tenants", IT_ADMIN_TOKEN, body);
	if (r.status != 201)
		ASH_T_FAILF("tenant create: %ld %s", r.status, r.body);
	snprintf(id, 64, "%s", ash_json_str(r.json, "id"));
	snprintf(key, 128, "%s", ash_json_str(r.json, "api_key"));
	it_resp_fini(&r);
}
