/*
 * Integration: the gateway's public listener with TLS (P22).
 */
#include "it.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A self-signed P-256 certificate for IP 127.0.0.1, written to dir. */
static void
make_cert(const char *dir, char *cert, char *key, size_t cap)
{
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509     *x  = X509_new();
	FILE     *f;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pk);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN",
	    MBSTRING_ASC, (const unsigned char *) "127.0.0.1", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(
	    NULL, NULL, NID_subject_alt_name, "IP:127.0.0.1");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	ASH_T_TRUE(X509_sign(x, pk, EVP_sha256()) > 0);
	snprintf(cert, cap, "%s/cert.pem", dir);
	snprintf(key, cap, "%s/key.pem", dir);
	f = fopen(cert, "w");
	PEM_write_X509(f, x);
	fclose(f);
	f = fopen(key, "w");
	PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(pk);
}

/* GET url trusting ca; max_tls is a CURL_SSLVERSION_MAX_* or 0. Returns
 * the HTTP status, or -curlcode on failure. */
static long
get_tls(const char *url, const char *ca, long max_tls)
{
	CURL *e      = curl_easy_init();
	long  status = 0;

	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CAINFO, ca);
	curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
	if (max_tls) {
		/* OpenSSL 3 will not even offer TLS 1.1 at its default level.
		 */
		curl_easy_setopt(
		    e, CURLOPT_SSL_CIPHER_LIST, "DEFAULT:@SECLEVEL=0");
		curl_easy_setopt(
		    e, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_0 | max_tls);
	}
	CURLcode cc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(e);
	return cc == CURLE_OK ? status : -(long) cc;
}

ASH_TEST(p22_gateway_serves_tls_1_2_and_up_only)
{
	it_stack s;
	char     dir[] = "/tmp/ash-it-tls-XXXXXX", cert[256], key[256];
	char     env1[300], env2[300], url[128];

	ASH_T_NOT_NULL(mkdtemp(dir));
	make_cert(dir, cert, key, sizeof(cert));
	it_stack_init(&s, "tls");
	snprintf(env1, sizeof(env1), "ASHOON_TLS_CERT=%s", cert);
	snprintf(env2, sizeof(env2), "ASHOON_TLS_KEY=%s", key);
	it_stack_env(&s, env1);
	it_stack_env(&s, env2);
	it_stack_start(&s, ASH_SVC_GATEWAY);
	ASH_T_TRUE(it_proc_log_has(s.procs[ASH_SVC_GATEWAY], "(TLS)"));
	snprintf(
	    url, sizeof(url), "https://127.0.0.1:%d/healthz", s.http_port);
	ASH_T_EQ_INT(get_tls(url, cert, 0), 200);
	ASH_T_EQ_INT(get_tls(url, cert, CURL_SSLVERSION_MAX_TLSv1_2), 200);
	ASH_T_TRUE(get_tls(url, cert, CURL_SSLVERSION_MAX_TLSv1_1) < 0);
	/* Plain HTTP on the TLS port gets no answer. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", s.http_port);
	ASH_T_TRUE(get_tls(url, cert, 0) != 200);
	it_stack_fini(&s);
	unlink(cert);
	unlink(key);
	rmdir(dir);
}

ASH_TEST(p22_unreadable_tls_key_stops_start_up)
{
	char     bus[64];
	char    *env[] = {"ASHOON_DB_DSN=host=127.0.0.1 port=1",
	       "ASHOON_TLS_CERT=/nonexistent/cert.pem",
	       "ASHOON_TLS_KEY=/nonexistent/key.pem", bus, NULL};
	it_stack s;
	char     bin[512], log[600];
	char    *argv[] = {bin, NULL};
	char     dsn[400], dsnenv[450];

	snprintf(bus, sizeof(bus), "ASHOON_BUS_GATEWAY=tcp://127.0.0.1:%d",
	    it_free_port());
	it_stack_init(&s, "tlsbad");
	it_dsn_as(s.dsn, "ashoon_gateway", dsn, sizeof(dsn));
	snprintf(dsnenv, sizeof(dsnenv), "ASHOON_DB_DSN=%s", dsn);
	env[0] = dsnenv;
	it_bin("services/gateway/ashoon-gateway", bin, sizeof(bin));
	snprintf(log, sizeof(log), "%s/it-logs/tlsbad/gw.log",
	    getenv("ASH_BUILD_DIR"));
	it_proc *p = it_proc_start(argv, env, log);
	ASH_T_EQ_INT(it_proc_wait(p, 20000), 1);
	ASH_T_TRUE(it_proc_log_has(p, "START-FAIL"));
	it_proc_free(p);
}

/* dsn with the socket directory replaced by 127.0.0.1: libpq never uses
 * TLS on a Unix socket, so the requirement is only meaningful over TCP. */
static void
tcp_dsn(const char *dsn, char *out, size_t cap)
{
	const char *rest = strchr(dsn, ' ');

	ASH_T_TRUE(strncmp(dsn, "host=", 5) == 0 && rest != NULL);
	snprintf(out, cap, "host=127.0.0.1%s", rest);
}

ASH_TEST(p22_database_connections_can_require_tls)
{
	it_stack s;
	char     bin[512], log[600], dsn[400], tcp[400], env0[500];
	char     bus[64], metrics[64];
	char    *argv[] = {bin, NULL};
	char    *env[]  = {env0, bus, metrics, "ASHOON_DB_WAIT_MS=0",
	        "ASHOON_MASTER_KEY=dGVzdC1vbmx5LW1hc3Rlci1rZXktMzItYnl0ZXMhISE=",
	        NULL};

	/* The test cluster has no TLS: a DSN that requires it must refuse
	 * to connect rather than fall back to plain text. */
	it_stack_init(&s, "dbtls");
	it_dsn_as(s.dsn, "ashoon_meta_ingest", dsn, sizeof(dsn));
	tcp_dsn(dsn, tcp, sizeof(tcp));
	snprintf(bus, sizeof(bus), "ASHOON_BUS_META_INGEST=tcp://127.0.0.1:%d",
	    it_free_port());
	snprintf(metrics, sizeof(metrics), "ASHOON_METRICS_ADDR=127.0.0.1:0");
	snprintf(env0, sizeof(env0), "ASHOON_DB_DSN=%s sslmode=require", tcp);
	it_bin("services/meta-ingest/ashoon-meta-ingest", bin, sizeof(bin));
	snprintf(log, sizeof(log), "%s/it-logs/dbtls/mi-require.log",
	    getenv("ASH_BUILD_DIR"));
	it_proc *p = it_proc_start(argv, env, log);
	ASH_T_EQ_INT(it_proc_wait(p, 20000), 1);
	ASH_T_TRUE(it_proc_log_has(p, "SSL"));
	ASH_T_TRUE(!it_proc_log_has(p, "\"id\":\"READY\""));
	it_proc_free(p);
	/* Without the requirement the same DSN works. */
	snprintf(env0, sizeof(env0), "ASHOON_DB_DSN=%s", tcp);
	snprintf(log, sizeof(log), "%s/it-logs/dbtls/mi-plain.log",
	    getenv("ASH_BUILD_DIR"));
	p = it_proc_start(argv, env, log);
	it_proc_wait_log(p, "\"id\":\"READY\"", 20000);
	it_proc_signal(p, SIGTERM);
	ASH_T_EQ_INT(it_proc_wait(p, 10000), 0);
	it_proc_free(p);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(p22_gateway_serves_tls_1_2_and_up_only),
    ASH_TEST_ENTRY(p22_database_connections_can_require_tls),
    ASH_TEST_ENTRY(p22_unreadable_tls_key_stops_start_up))
