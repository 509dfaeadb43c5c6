/* Unit tests: the gateway's routing table, rate limits and client IP. */
#include "gw.h"

#include <ash_test.h>
#include <string.h>

static void
set_limits(void)
{
	gw_config.rate_rps[GW_CLASS_API]       = 2;
	gw_config.rate_burst[GW_CLASS_API]     = 3;
	gw_config.rate_rps[GW_CLASS_WEBHOOK]   = 1000;
	gw_config.rate_burst[GW_CLASS_WEBHOOK] = 2000;
	gw_config.rate_rps[GW_CLASS_ADMIN]     = 1;
	gw_config.rate_burst[GW_CLASS_ADMIN]   = 1;
}

ASH_TEST(bucket_allows_burst_then_refills_at_rate)
{
	gw_ratelimit *rl    = gw_ratelimit_new();
	int           retry = 0;

	set_limits();
	for (int i = 0; i < 3; i++)
		ASH_T_TRUE(gw_ratelimit_take(
		    rl, GW_CLASS_API, "10.0.0.1", 1000, &retry));
	ASH_T_TRUE(
	    !gw_ratelimit_take(rl, GW_CLASS_API, "10.0.0.1", 1000, &retry));
	ASH_T_EQ_INT(retry, 1); /* 2 per second: back within a second */
	/* Another client has its own bucket. */
	ASH_T_TRUE(
	    gw_ratelimit_take(rl, GW_CLASS_API, "10.0.0.2", 1000, &retry));
	/* Half a second later one token (2/s) has come back, not two. */
	ASH_T_TRUE(
	    gw_ratelimit_take(rl, GW_CLASS_API, "10.0.0.1", 1500, &retry));
	ASH_T_TRUE(
	    !gw_ratelimit_take(rl, GW_CLASS_API, "10.0.0.1", 1500, &retry));
	gw_ratelimit_free(rl);
}

ASH_TEST(webhook_class_has_its_own_much_higher_limit)
{
	gw_ratelimit *rl    = gw_ratelimit_new();
	int           retry = 0, passed = 0;

	set_limits();
	/* Meta's senders exhaust the API limit instantly... */
	while (gw_ratelimit_take(rl, GW_CLASS_API, "31.13.0.1", 0, &retry))
		passed++;
	ASH_T_EQ_INT(passed, 3);
	/* ...but the same address still has its whole webhook burst. */
	passed = 0;
	while (passed < 5000 &&
	    gw_ratelimit_take(rl, GW_CLASS_WEBHOOK, "31.13.0.1", 0, &retry))
		passed++;
	ASH_T_EQ_INT(passed, 2000);
	/* Open routes (health, readiness) are never limited. */
	for (int i = 0; i < 10000; i++)
		ASH_T_TRUE(gw_ratelimit_take(
		    rl, GW_CLASS_OPEN, "31.13.0.1", 0, &retry));
	gw_ratelimit_free(rl);
}

ASH_TEST(idle_buckets_are_swept)
{
	gw_ratelimit *rl = gw_ratelimit_new();
	int           retry;
	char          ip[32];

	set_limits();
	for (int i = 0; i < 100; i++) {
		snprintf(ip, sizeof(ip), "10.1.0.%d", i);
		ASH_T_TRUE(gw_ratelimit_take(rl, GW_CLASS_API, ip, 0, &retry));
	}
	ASH_T_EQ_INT(gw_ratelimit_sweep(rl, 100), 0); /* not full yet */
	ASH_T_EQ_INT(gw_ratelimit_sweep(rl, 10000), 100);
	gw_ratelimit_free(rl);
}

ASH_TEST(routes_match_methods_and_capture_segments)
{
	gw_match m;

	ASH_T_OK(gw_route_match("GET", "/api/v1/sys/meta-ingest/info", &m));
	ASH_T_EQ_INT(m.route->op, ASH_OP_SYS_INFO);
	ASH_T_EQ_INT(m.nparams, 1);
	ASH_T_EQ_STR(m.names[0], "svc");
	ASH_T_EQ_STR(m.values[0], "meta-ingest");
	ASH_T_OK(gw_route_match("POST", "/admin/v1/tenants/abc/keys", &m));
	ASH_T_EQ_INT(m.route->op, ASH_OP_APIKEY_CREATE);
	ASH_T_EQ_STR(m.names[0], "tenant_id");
	ASH_T_EQ_INT(m.route->auth, GW_AUTH_ADMIN);
	ASH_T_OK(gw_route_match("HEAD", "/healthz", &m));
	ASH_T_ERR(
	    gw_route_match("DELETE", "/api/v1/sys/x/info", &m), ASH_EMETHOD);
	ASH_T_ERR(
	    gw_route_match("GET", "/api/v1/sys//info", &m), ASH_ENOTFOUND);
	ASH_T_ERR(
	    gw_route_match("GET", "/api/v1/sys/x/info/", &m), ASH_ENOTFOUND);
	ASH_T_ERR(
	    gw_route_match("GET", "/api/v1/sys/a/b/info", &m), ASH_ENOTFOUND);
	ASH_T_ERR(gw_route_match("GET", "/healthzz", &m), ASH_ENOTFOUND);
}

ASH_TEST(forwarded_for_is_believed_only_from_trusted_proxies)
{
	gw_proxies *p;
	char        ip[64];

	ASH_T_OK(gw_proxies_parse("10.0.0.0/8, 192.168.1.7, fd00::/8", &p));
	/* Untrusted peer: its X-Forwarded-For is ignored. */
	gw_client_ip(p, "203.0.113.9", "1.2.3.4", ip, sizeof(ip));
	ASH_T_EQ_STR(ip, "203.0.113.9");
	/* Trusted proxy: the client is the right-most untrusted hop; a
	 * forged left-most entry does not win. */
	gw_client_ip(p, "10.1.2.3", "6.6.6.6, 198.51.100.7, 192.168.1.7", ip,
	    sizeof(ip));
	ASH_T_EQ_STR(ip, "198.51.100.7");
	gw_client_ip(p, "fd00::1", "2001:db8::5", ip, sizeof(ip));
	ASH_T_EQ_STR(ip, "2001:db8::5");
	gw_client_ip(p, "10.1.2.3", NULL, ip, sizeof(ip));
	ASH_T_EQ_STR(ip, "10.1.2.3");
	/* A list of any length is read whole: a long forged left part does
	 * not push the proxy's hop out of what is read. */
	char xff[2048] = "";
	for (int i = 0; i < 100; i++)
		strcat(xff, "6.6.6.6, ");
	strcat(xff, "198.51.100.7, 10.0.0.1");
	gw_client_ip(p, "10.1.2.3", xff, ip, sizeof(ip));
	ASH_T_EQ_STR(ip, "198.51.100.7");
	/* A hop too long for an address is the client's, cut to fit. */
	memset(xff, 'a', 300);
	strcpy(xff + 300, ", 10.0.0.1");
	gw_client_ip(p, "10.1.2.3", xff, ip, sizeof(ip));
	ASH_T_EQ_INT(strlen(ip), 63);
	gw_proxies_free(p);
	ASH_T_ERR(gw_proxies_parse("10.0.0.0/33", &p), ASH_EINVAL);
	ASH_T_ERR(gw_proxies_parse("not-an-ip", &p), ASH_EINVAL);
	ASH_T_ERR(gw_proxies_parse("10.0.0.0/8x", &p), ASH_EINVAL);
}

ASH_TEST(api_keys_are_random_and_stored_only_as_hashes)
{
	char *k1, *k2, prefix[16], hash[65];

	gw_apikey_make(&k1, prefix, hash);
	ASH_T_EQ_INT(strlen(k1), 60);
	ASH_T_TRUE(strncmp(k1, "ash_", 4) == 0);
	ASH_T_TRUE(strncmp(k1 + 4, prefix, 12) == 0);
	ASH_T_EQ_INT(strlen(hash), 64);
	ASH_T_NOT_CONTAINS(hash, k1 + 17); /* the secret is not in the hash */
	gw_apikey_make(&k2, prefix, hash);
	ASH_T_TRUE(strcmp(k1, k2) != 0);
	ASH_T_EQ_STR(gw_bearer("Bearer abc"), "abc");
	ASH_T_EQ_STR(gw_bearer("bearer   abc"), "abc");
	ASH_T_NULL(gw_bearer("Basic abc"));
	ASH_T_NULL(gw_bearer("Bearer "));
	free(k1);
	free(k2);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(bucket_allows_burst_then_refills_at_rate),
    ASH_TEST_ENTRY(webhook_class_has_its_own_much_higher_limit),
    ASH_TEST_ENTRY(idle_buckets_are_swept),
    ASH_TEST_ENTRY(routes_match_methods_and_capture_segments),
    ASH_TEST_ENTRY(forwarded_for_is_believed_only_from_trusted_proxies),
    ASH_TEST_ENTRY(api_keys_are_random_and_stored_only_as_hashes))
