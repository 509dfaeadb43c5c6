/*
 * Integration: the seven real services on a real Postgres, through the
 * gateway's HTTP edge.
 */
#include "it.h"

#include <ashoon/json.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *
service_status(const cJSON *report, const char *name)
{
	const cJSON *s;

	cJSON_ArrayForEach(
	    s, cJSON_GetObjectItemCaseSensitive(report, "services"))
	{
		if (strcmp(ash_json_str(s, "name"), name) == 0)
			return ash_json_str(s, "status");
	}
	return "(missing)";
}

ASH_TEST(readyz_lists_all_seven_healthy)
{
	it_stack s;
	it_resp  r;

	it_stack_init(&s, "readyz");
	it_stack_start_all(&s);
	it_call(&s, &r, "GET", "/healthz", NULL, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	it_call(&s, &r, "GET", "/readyz", NULL, NULL);
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_EQ_STR(ash_json_str(r.json, "status"), "ok");
	ASH_T_EQ_INT(
	    cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "services")), 7);
	for (int i = 0; i < ASH_SVC_COUNT; i++)
		ASH_T_EQ_STR(
		    service_status(r.json, ash_services[i].name), "ok");
	it_resp_fini(&r);
	it_stack_fini(&s);
}

/* An answered request leaves an access line, and it names the client by
 * its /24 (IPv4) or /48 (IPv6) only (the privacy policy's usage logs; P13
 * keeps them 12 months). */
ASH_TEST(access_log_names_the_client_by_its_prefix_only)
{
	it_stack s;
	it_resp  r;

	it_stack_init(&s, "access");
	it_stack_start_all(&s);
	it_call(&s, &r, "GET", "/api/v1/conversations", NULL, NULL);
	ASH_T_EQ_INT(r.status, 401);
	it_resp_fini(&r);
	it_proc_wait_log(s.procs[ASH_SVC_GATEWAY],
	    "\"route\":\"/api/v1/conversations\",\"status\":401", 5000);
	ASH_T_TRUE(it_proc_log_has(
	    s.procs[ASH_SVC_GATEWAY], "\"client\":\"127.0.0.0/24\""));
	ASH_T_TRUE(!it_proc_log_has(
	    s.procs[ASH_SVC_GATEWAY], "\"client\":\"127.0.0.1\""));
	it_stack_fini(&s);
}

ASH_TEST(request_reaches_each_service_and_its_schema)
{
	it_stack    s;
	it_resp     r;
	char        id[64], key[128], path[128], role[64];
	const char *hdr[] = {NULL, "X-Request-Id: it-trace-42", NULL};

	it_stack_init(&s, "roundtrip");
	it_stack_start_all(&s);
	it_tenant_create(&s, "Acme Bakery", id, key);
	for (int i = 0; i < ASH_SVC_COUNT; i++) {
		snprintf(path, sizeof(path), "/api/v1/sys/%s/info",
		    ash_services[i].name);
		it_call(&s, &r, "GET", path, key, NULL);
		ASH_T_EQ_INT(r.status, 200);
		/* Answered by that service, as its own role, in its schema,
		 * for the tenant of the API key. */
		ASH_T_EQ_STR(
		    ash_json_str(r.json, "service"), ash_services[i].name);
		snprintf(
		    role, sizeof(role), "ashoon_%s", ash_services[i].schema);
		ASH_T_EQ_STR(ash_json_str(r.json, "db_user"), role);
		ASH_T_EQ_STR(
		    ash_json_str(r.json, "schema"), ash_services[i].schema);
		ASH_T_EQ_STR(ash_json_str(r.json, "tenant"), id);
		it_resp_fini(&r);
	}
	/* A POST body travels too, and a caller's request id is kept. */
	char auth[200], url[200];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
	hdr[0] = auth;
	snprintf(url, sizeof(url), "%s/api/v1/sys/ai-router/echo", s.base);
	const char *body =
	    "{\"data\":{\"text\":\"caf\\u00e9 \\u2713\",\"n\":1}}";
	it_http(&r, "POST", url, hdr, body, strlen(body));
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_EQ_STR(it_resp_header(&r, "X-Request-Id"), "it-trace-42");
	ASH_T_EQ_STR(ash_json_str(cJSON_GetObjectItem(r.json, "data"), "text"),
	    "caf\xc3\xa9 \xe2\x9c\x93");
	it_resp_fini(&r);
	ASH_T_TRUE(it_proc_log_has(
	    s.procs[ASH_SVC_AI_ROUTER], "\"req\":\"it-trace-42\""));
	it_stack_fini(&s);
}

ASH_TEST(p23_api_needs_a_valid_unrevoked_key)
{
	it_stack s;
	it_resp  r;
	char     id[64], key[128], path[160], key2[128];

	it_stack_init(&s, "apikeys");
	it_stack_env(&s, "ASHOON_KEY_CACHE_MS=0");
	it_stack_start_all(&s);
	it_tenant_create(&s, "Tenant A", id, key);
	it_call(&s, &r, "GET", "/api/v1/sys/gateway/info", NULL, NULL);
	ASH_T_EQ_INT(r.status, 401);
	ASH_T_EQ_STR(it_resp_code(&r), "unauthenticated");
	it_resp_fini(&r);
	/* Right shape, wrong secret. */
	snprintf(key2, sizeof(key2), "%s", key);
	key2[strlen(key2) - 1] = key2[strlen(key2) - 1] == 'A' ? 'B' : 'A';
	it_call(&s, &r, "GET", "/api/v1/sys/gateway/info", key2, NULL);
	ASH_T_EQ_INT(r.status, 401);
	it_resp_fini(&r);
	/* The admin token is not an API key, and the API key is not admin. */
	it_call(
	    &s, &r, "GET", "/api/v1/sys/gateway/info", IT_ADMIN_TOKEN, NULL);
	ASH_T_EQ_INT(r.status, 401);
	it_resp_fini(&r);
	it_call(&s, &r, "GET", "/admin/v1/tenants", key, NULL);
	ASH_T_EQ_INT(r.status, 401);
	it_resp_fini(&r);
	/* A second key works; revoking it stops it; the first still works. */
	snprintf(path, sizeof(path), "/admin/v1/tenants/%s/keys", id);
	it_call(&s, &r, "POST", path, IT_ADMIN_TOKEN, NULL);
	ASH_T_EQ_INT(r.status, 201);
	snprintf(key2, sizeof(key2), "%s", ash_json_str(r.json, "api_key"));
	snprintf(path, sizeof(path), "/admin/v1/keys/%s",
	    ash_json_str(r.json, "id"));
	it_resp_fini(&r);
	it_call(&s, &r, "GET", "/api/v1/sys/gateway/info", key2, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	it_call(&s, &r, "DELETE", path, IT_ADMIN_TOKEN, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	it_call(&s, &r, "GET", "/api/v1/sys/gateway/info", key2, NULL);
	ASH_T_EQ_INT(r.status, 401);
	it_resp_fini(&r);
	it_call(&s, &r, "GET", "/api/v1/sys/gateway/info", key, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	/* Keys are stored hashed: the plaintext is nowhere in the table. */
	char sql[600];
	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM gateway.api_keys WHERE hash = '%s' OR "
	    "prefix = '%s'",
	    key, key);
	ASH_T_EQ_STR(it_pg_exec(s.dsn, sql), "0");
	it_stack_fini(&s);
}

static void
expect_error(it_resp *r, int status, const char *code)
{
	ASH_T_EQ_INT(r->status, status);
	ASH_T_EQ_STR(it_resp_code(r), code);
	/* Every error names the request, so a user can quote it. */
	const cJSON *err = cJSON_GetObjectItem(r->json, "error");
	ASH_T_NOT_NULL(ash_json_str(err, "message"));
	ASH_T_EQ_STR(ash_json_str(err, "request_id"),
	    it_resp_header(r, "X-Request-Id"));
}

ASH_TEST(gateway_answers_413_400_404_405_with_json_errors)
{
	it_stack s;
	it_resp  r;
	char     id[64], key[128], big[3000];

	it_stack_init(&s, "errors");
	it_stack_env(&s, "ASHOON_API_MAX_BODY=1024");
	it_stack_start_all(&s);
	it_tenant_create(&s, "T", id, key);
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "{\"data\":1}", 10);
	it_call(&s, &r, "POST", "/api/v1/sys/meta-ingest/echo", key, big);
	expect_error(&r, 413, "payload_too_large");
	it_resp_fini(&r);
	it_call(&s, &r, "POST", "/api/v1/sys/meta-ingest/echo", key,
	    "{\"data\":1");
	expect_error(&r, 400, "malformed_json");
	it_resp_fini(&r);
	it_call(&s, &r, "POST", "/api/v1/sys/meta-ingest/echo", key, "[1,2]");
	expect_error(&r, 400, "malformed_json");
	it_resp_fini(&r);
	it_call(&s, &r, "POST", "/api/v1/sys/meta-ingest/echo", key, "{}");
	expect_error(&r, 400, "invalid_argument");
	ASH_T_CONTAINS(r.body, "\\\"data\\\"");
	it_resp_fini(&r);
	/* Text that is not UTF-8 is refused before it goes anywhere: in a
	 * JSON body, a query value or a path part. */
	it_call(&s, &r, "POST", "/api/v1/sys/meta-ingest/echo", key,
	    "{\"data\":\"\xc3\x28\"}");
	expect_error(&r, 400, "malformed_json");
	it_resp_fini(&r);
	it_call(
	    &s, &r, "GET", "/api/v1/conversations?cursor=%C3%28", key, NULL);
	expect_error(&r, 400, "invalid_argument");
	ASH_T_CONTAINS(r.body, "\\\"cursor\\\" must be UTF-8 text");
	it_resp_fini(&r);
	it_call(&s, &r, "GET", "/api/v1/conversations/%FF", key, NULL);
	expect_error(&r, 400, "invalid_argument");
	ASH_T_CONTAINS(r.body, "\\\"id\\\" must be UTF-8 text");
	it_resp_fini(&r);
	it_call(&s, &r, "GET", "/api/v1/nothing/here", key, NULL);
	expect_error(&r, 404, "not_found");
	it_resp_fini(&r);
	it_call(&s, &r, "GET", "/api/v1/sys/no-such-service/info", key, NULL);
	expect_error(&r, 404, "not_found");
	it_resp_fini(&r);
	it_call(&s, &r, "PUT", "/api/v1/sys/meta-ingest/info", key, NULL);
	expect_error(&r, 405, "method_not_allowed");
	it_resp_fini(&r);
	it_stack_fini(&s);
}

ASH_TEST(per_ip_rate_limit_answers_429_with_retry_after)
{
	it_stack s;
	it_resp  r;
	char     id[64], key[128];
	int      ok = 0, limited = 0;

	it_stack_init(&s, "ratelimit");
	it_stack_env(&s, "ASHOON_RATE_API_RPS=1");
	it_stack_env(&s, "ASHOON_RATE_API_BURST=3");
	it_stack_start_all(&s);
	it_tenant_create(&s, "T", id, key);
	for (int i = 0; i < 6; i++) {
		it_call(&s, &r, "GET", "/api/v1/sys/gateway/info", key, NULL);
		if (r.status == 200)
			ok++;
		if (r.status == 429) {
			limited++;
			expect_error(&r, 429, "rate_limited");
			ASH_T_NOT_NULL(it_resp_header(&r, "Retry-After"));
		}
		it_resp_fini(&r);
	}
	/* A burst of 3 passes (maybe a 4th if a second went by), the rest
	 * are refused; health checks are never limited. */
	ASH_T_TRUE(ok >= 3 && ok <= 4);
	ASH_T_EQ_INT(ok + limited, 6);
	for (int i = 0; i < 5; i++) {
		it_call(&s, &r, "GET", "/healthz", NULL, NULL);
		ASH_T_EQ_INT(r.status, 200);
		it_resp_fini(&r);
	}
	it_stack_fini(&s);
}

/* Behind a trusted proxy the client is the right-most untrusted hop of
 * the whole X-Forwarded-For list: every field of it (a proxy may add its
 * own line after the client's), however long. Otherwise a client picks
 * its own rate-limit bucket: here each request forges a new left part,
 * and the limit must still hold. */
static int
limited_with_forged_hops(it_stack *s, const char *key, bool long_list)
{
	char        url[512], auth[300], forged[900], proxy[64];
	const char *hdr[4]  = {auth, forged, proxy, NULL};
	int         limited = 0;
	it_resp     r;

	snprintf(url, sizeof(url), "%s/api/v1/sys/gateway/info", s->base);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
	for (int i = 0; i < 6; i++) {
		int n = snprintf(forged, sizeof(forged), "X-Forwarded-For: ");

		/* The long list pushes the proxy's hop past 600 bytes. */
		while (long_list && n < 620)
			n += snprintf(forged + n, sizeof(forged) - (size_t) n,
			    "6.6.6.%d, ", i);
		snprintf(
		    forged + n, sizeof(forged) - (size_t) n, "7.7.7.%d", i);
		snprintf(proxy, sizeof(proxy),
		    "X-Forwarded-For: 198.51.100.%d", long_list ? 8 : 7);
		it_http(&r, "GET", url, hdr, NULL, 0);
		ASH_T_TRUE(r.status == 200 || r.status == 429);
		limited += r.status == 429;
		it_resp_fini(&r);
	}
	return limited;
}

ASH_TEST(forwarded_for_is_read_whole_so_a_client_cannot_pick_its_bucket)
{
	it_stack s;
	char     id[64], key[128];

	it_stack_init(&s, "xff");
	it_stack_env(&s, "ASHOON_TRUSTED_PROXIES=127.0.0.1");
	it_stack_env(&s, "ASHOON_RATE_API_RPS=1");
	it_stack_env(&s, "ASHOON_RATE_API_BURST=3");
	it_stack_start_all(&s);
	it_tenant_create(&s, "T", id, key);
	/* A burst of 3 (maybe 4) per client, whatever the forged hops say. */
	ASH_T_TRUE(limited_with_forged_hops(&s, key, false) >= 2);
	ASH_T_TRUE(limited_with_forged_hops(&s, key, true) >= 2);
	it_stack_fini(&s);
}

/* Sends one input on a fresh connection, half-closes it, and reads what
 * comes back until the gateway closes (or 3 s pass: a slow read is not
 * what this looks for). */
static void
raw_exchange(int port, const char *buf, size_t len)
{
	struct sockaddr_in a = {
	    .sin_family = AF_INET, .sin_port = htons(port)};
	int           fd = socket(AF_INET, SOCK_STREAM, 0);
	char          sink[4096];
	struct pollfd p = {.fd = fd, .events = POLLIN};

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASH_T_TRUE(fd >= 0);
	ASH_T_EQ_INT(connect(fd, (struct sockaddr *) &a, sizeof(a)), 0);
	if (len > 0)
		ASH_T_TRUE(send(fd, buf, len, MSG_NOSIGNAL) >= 0);
	shutdown(fd, SHUT_WR);
	while (poll(&p, 1, 3000) == 1 && read(fd, sink, sizeof(sink)) > 0)
		;
	close(fd);
}

static void
raw_exchange_one(const char *file, const char *data, size_t len, void *arg)
{
	raw_exchange(*(int *) arg, data, len);
}

/* Every input of the HTTP fuzz corpus (tests/fuzz/corpus/http), sent raw
 * to the real gateway (an ASan build under ctest): whatever each one
 * does to the framing, the gateway lives and still answers. */
ASH_TEST(every_fuzzed_http_input_leaves_the_gateway_answering)
{
	it_stack s;
	it_resp  r;

	it_stack_init(&s, "rawhttp");
	it_stack_start_all(&s);
	ASH_T_TRUE(
	    it_corpus_each("http", raw_exchange_one, &s.http_port) > 100);
	it_call(&s, &r, "GET", "/healthz", NULL, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	it_stack_fini(&s);
}

ASH_TEST(p23_service_roles_cannot_read_other_schemas)
{
	it_stack    s;
	char        dsn[400];
	const char *roles[] = {
	    "ashoon_gateway", "ashoon_meta_ingest", "ashoon_dsar_handler"};

	it_stack_init(&s, "isolation");
	it_stack_start(&s, ASH_SVC_GATEWAY);
	it_stack_start(&s, ASH_SVC_META_INGEST);
	/* Each role reaches its own schema... */
	it_dsn_as(s.dsn, "ashoon_gateway", dsn, sizeof(dsn));
	ASH_T_EQ_STR(
	    it_pg_exec(dsn, "SELECT count(*) FROM gateway.tenants"), "0");
	/* ...and nothing else: permission denied (42501). */
	for (int i = 0; i < 3; i++) {
		it_dsn_as(s.dsn, roles[i], dsn, sizeof(dsn));
		if (i != 0)
			ASH_T_EQ_STR(
			    it_pg_try(dsn, "SELECT * FROM gateway.tenants"),
			    "42501");
		if (i != 1)
			ASH_T_EQ_STR(it_pg_try(dsn,
			                 "SELECT * FROM "
			                 "meta_ingest."
			                 "schema_migrations"),
			    "42501");
		ASH_T_EQ_STR(
		    it_pg_try(dsn, "CREATE TABLE public.x (i int)"), "42501");
	}
	it_stack_fini(&s);
}

/* The value of the series whose line starts with prefix, -1 if none. */
static long
metric_value(const char *text, const char *prefix)
{
	const char *p = strstr(text, prefix);

	return p != NULL ? strtol(p + strlen(prefix), NULL, 10) : -1;
}

ASH_TEST(metrics_are_exposed_by_gateway_and_services)
{
	it_stack s;
	it_resp  r;
	char     url[128];
	long     before;

	it_stack_init(&s, "metrics");
	it_stack_start_all(&s);
	/* Two routes and two codes, interleaved: each pair counted apart
	 * (the gateway keeps each pair's metric handles). The harness polled
	 * /readyz while starting, so that count is taken as a difference. */
	it_call(&s, &r, "GET", "/metrics", NULL, NULL);
	before = metric_value(r.body,
	    "ashoon_http_requests_total{route=\"/readyz\",code=\"200\"} ");
	it_resp_fini(&r);
	for (int i = 0; i < 3; i++) {
		it_call(&s, &r, "GET", "/readyz", NULL, NULL);
		ASH_T_EQ_INT(r.status, 200);
		it_resp_fini(&r);
		if (i < 2) {
			it_call(&s, &r, "GET", "/no/such/route", NULL, NULL);
			ASH_T_EQ_INT(r.status, 404);
			it_resp_fini(&r);
		}
	}
	it_call(&s, &r, "GET", "/metrics", NULL, NULL);
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_EQ_INT(metric_value(r.body,
	                 "ashoon_http_requests_total{route=\"/readyz\","
	                 "code=\"200\"} "),
	    before + 3);
	ASH_T_CONTAINS(r.body,
	    "ashoon_http_requests_total{route=\"unmatched\","
	    "code=\"404\"} 2\n");
	ASH_T_CONTAINS(r.body,
	    "ashoon_http_request_seconds_count{route=\"unmatched\"} 2\n");
	it_resp_fini(&r);
	/* Each backend has its own private listener (port from READY). */
	ASH_T_TRUE(s.metrics_port[ASH_SVC_META_INGEST] > 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics",
	    s.metrics_port[ASH_SVC_META_INGEST]);
	it_http(&r, "GET", url, NULL, NULL, 0);
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_CONTAINS(r.body,
	    "ashoon_bus_requests_total{op=\"sys.health\","
	    "status=\"200\"} ");
	ASH_T_CONTAINS(
	    r.body, "ashoon_bus_request_seconds_bucket{op=\"sys.health\"");
	it_resp_fini(&r);
	it_stack_fini(&s);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(readyz_lists_all_seven_healthy),
    ASH_TEST_ENTRY(access_log_names_the_client_by_its_prefix_only),
    ASH_TEST_ENTRY(request_reaches_each_service_and_its_schema),
    ASH_TEST_ENTRY(p23_api_needs_a_valid_unrevoked_key),
    ASH_TEST_ENTRY(gateway_answers_413_400_404_405_with_json_errors),
    ASH_TEST_ENTRY(per_ip_rate_limit_answers_429_with_retry_after),
    ASH_TEST_ENTRY(
        forwarded_for_is_read_whole_so_a_client_cannot_pick_its_bucket),
    ASH_TEST_ENTRY(every_fuzzed_http_input_leaves_the_gateway_answering),
    ASH_TEST_ENTRY(p23_service_roles_cannot_read_other_schemas),
    ASH_TEST_ENTRY(metrics_are_exposed_by_gateway_and_services))
