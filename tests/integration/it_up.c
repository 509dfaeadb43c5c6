/*
 * Integration: scripts/up, the README's first command, end to end: it
 * generates dev secrets, starts its own Postgres and the seven services,
 * reports them all healthy, hands out a working API key, and stops
 * everything on SIGTERM.
 *
 * It runs the release build (scripts/test builds it before ctest). Its
 * ports come from this process's claimed port block, so no other test
 * program uses them. Nothing is asserted before the platform is stopped:
 * a failing case must not leave Postgres and seven services running.
 */
#include <it.h>

#include <ash_test.h>
#include <ashoon/json.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The API key printed into var/first-tenant.txt ("  api key ash_..."). */
static bool
read_key(const char *path, char *key, size_t cap)
{
	FILE *f = fopen(path, "r");
	char  line[256];
	bool  found = false;

	if (f == NULL)
		return false;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		char *k = strstr(line, "ash_");
		if (k != NULL && strstr(line, "api key") != NULL) {
			k[strcspn(k, " \r\n")] = '\0';
			snprintf(key, cap, "%s", k);
			found = true;
		}
	}
	fclose(f);
	return found;
}

/* Services /readyz lists as "ok". */
static int
healthy_services(const it_resp *r)
{
	const cJSON *s;
	int          n = 0;

	cJSON_ArrayForEach(s, cJSON_GetObjectItem(r->json, "services"))
	{
		const char *st = ash_json_str(s, "status");
		n += st != NULL && strcmp(st, "ok") == 0;
	}
	return n;
}

ASH_TEST(scripts_up_starts_seven_healthy_services_and_stops_on_sigterm)
{
	const char *src  = getenv("ASH_SOURCE_DIR");
	int         base = it_free_port(); /* start of our port block */
	char        dir[96], var[128], pg[128], key_file[160], log[160];
	char        script[512], e_var[160], e_pg[160], e_pgport[48];
	char        e_http[64], e_base[48], url[96], key[128] = "";
	char       *argv[] = {"/bin/sh", script, NULL};
	char       *env[]  = {e_var, e_pg, e_pgport, e_http, e_base, NULL};
	it_resp     ready = {0}, info = {0};
	int         healthy = 0, rc;
	bool        up      = false, keyed;

	ASH_T_TRUE(src != NULL);
	snprintf(dir, sizeof(dir), "/tmp/ash-it-up-%d", (int) getpid());
	snprintf(var, sizeof(var), "%s/var", dir);
	snprintf(pg, sizeof(pg), "%s/pg", dir);
	snprintf(key_file, sizeof(key_file), "%s/first-tenant.txt", var);
	snprintf(log, sizeof(log), "%s.log", dir);
	snprintf(script, sizeof(script), "%s/scripts/up", src);
	snprintf(e_var, sizeof(e_var), "ASHOON_VAR_DIR=%s", var);
	snprintf(e_pg, sizeof(e_pg), "ASHOON_PG_DIR=%s", pg);
	/* Bus on base+1..7, events on base+101..107: all inside the block. */
	snprintf(e_pgport, sizeof(e_pgport), "ASHOON_PG_PORT=%d", base + 110);
	snprintf(e_http, sizeof(e_http), "ASHOON_HTTP_ADDR=127.0.0.1:%d",
	    base + 111);
	snprintf(e_base, sizeof(e_base), "ASHOON_BUS_BASE_PORT=%d", base);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", base + 111);

	it_proc *p = it_proc_start(argv, env, log);
	for (int i = 0; i < 1200 && !up; i++) {
		up = it_proc_log_has(p, "ashoon is up");
		if (!up && it_proc_wait(p, 100) >= 0)
			break; /* it exited */
	}
	if (up) {
		char ready_url[128], info_url[160], auth[192];
		snprintf(ready_url, sizeof(ready_url), "%s/readyz", url);
		it_http(&ready, "GET", ready_url, NULL, NULL, 0);
		healthy = healthy_services(&ready);
		/* The key was made with the dev master key scripts/up read
		 * back from its env file (a base64 value ending in '='). */
		keyed = read_key(key_file, key, sizeof(key));
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
		const char *h[] = {auth, NULL};
		snprintf(info_url, sizeof(info_url),
		    "%s/api/v1/sys/meta-ingest/info", url);
		if (keyed)
			it_http(&info, "GET", info_url, h, NULL, 0);
	}
	it_proc_signal(p, SIGTERM);
	rc = it_proc_wait(p, 60000);

	ASH_T_TRUE(up);
	ASH_T_EQ_INT(ready.status, 200);
	ASH_T_EQ_STR(ash_json_str(ready.json, "status"), "ok");
	ASH_T_EQ_INT(healthy, ASH_SVC_COUNT);
	ASH_T_EQ_INT(info.status, 200);
	ASH_T_TRUE(rc >= 0); /* it exited */
	ASH_T_TRUE(it_proc_log_has(p, "stopped (Postgres data kept"));
	char pidfile[192];
	snprintf(pidfile, sizeof(pidfile), "%s/data/postmaster.pid", pg);
	ASH_T_TRUE(access(pidfile, F_OK) != 0);
	/* Nothing answers any more. */
	it_resp gone = {0};
	char    ready_url[128];
	snprintf(ready_url, sizeof(ready_url), "%s/readyz", url);
	it_http(&gone, "GET", ready_url, NULL, NULL, 0);
	ASH_T_TRUE(gone.status < 0); /* connection refused */
	it_resp_fini(&gone);
	it_resp_fini(&ready);
	it_resp_fini(&info);
	it_proc_free(p);
	char cmd[384];
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir, log);
	ASH_T_EQ_INT(system(cmd), 0);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(
    scripts_up_starts_seven_healthy_services_and_stops_on_sigterm))
