/*
 * Integration: connecting Meta channels through the gateway into
 * meta-ingest, against the fake Graph API - token validation, sealing at
 * rest (P10: no plaintext token in the database, a pg_dump, the logs, the
 * metrics or any reply), conflicts and reconnects, disconnect, master key
 * rotation with ashoonctl, participants' profiles and channel status.
 */
#include "it.h"
#include "it_fake.h"

#include <ashoon/crypto.h>
#include <ashoon/json.h>

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MI ASH_SVC_META_INGEST
/* "0123456789abcdef0123456789abcdef" and "fedcba9876543210fedcba9876543210" */
#define K1 "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
#define K2 "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="

#define PAGE  "104857601234567"
#define IG    "17841405822304914"
#define PSID1 "6523918847201937"
#define PSID2 "6523918847201938"
#define PSID3 "6523918847201939"
#define IGSID "1122334455667788"

/* Recognisable secrets: any copy of them anywhere is a P10 breach. */
#define TOK       "EAAPtenTOKENplaintextCANARY0001"
#define TOK2      "EAAPtenTOKENplaintextCANARY0002"
#define TOK3      "EAAPtenTOKENplaintextCANARY0003"
#define IGTOK     "IGAAPtenTOKENplaintextCANARY0004"
#define APPSECRET "appSECRETplaintextCANARY5"

#define PAGE_ACCOUNT                                           \
	"{\"id\":\"" PAGE                                      \
	"\",\"name\":\"Acme Bakery\",\"category\":\"Bakery\"," \
	"\"followers_count\":1234}"

typedef struct env {
	it_stack s;
	it_fake  f;
	char     tenant[64];
	char     key[128];
	char     master[200]; /* ASHOON_MASTER_KEY meta-ingest runs with */
} env;

/* --- fixtures ------------------------------------------------------------ */

static void
up(env *e, const char *tag, const char *master)
{
	char kv[256];

	it_fake_start(&e->f, tag);
	it_stack_init(&e->s, tag);
	snprintf(kv, sizeof(kv), "META_GRAPH_URL=%s", e->f.base);
	it_stack_env(&e->s, kv);
	snprintf(kv, sizeof(kv), "META_IG_GRAPH_URL=%s", e->f.base);
	it_stack_env(&e->s, kv);
	snprintf(e->master, sizeof(e->master), "%s", master);
	snprintf(kv, sizeof(kv), "ASHOON_MASTER_KEY=%s", master);
	it_stack_env(&e->s, kv);
	it_stack_start_all(&e->s);
	it_tenant_create(&e->s, "Acme Bakery", e->tenant, e->key);
}

static void
down(env *e)
{
	it_stack_fini(&e->s);
	it_fake_stop(&e->f);
}

/* Restarts meta-ingest with another ASHOON_MASTER_KEY (asserting that it
 * stopped cleanly). */
static void
restart_mi(env *e, const char *master)
{
	ASH_T_EQ_INT(it_stack_stop(&e->s, MI), 0);
	for (int i = 0; i < e->s.nenv; i++)
		if (strncmp(e->s.env[i], "ASHOON_MASTER_KEY=", 18) == 0) {
			free(e->s.env[i]);
			e->s.env[i] =
			    ash_xasprintf("ASHOON_MASTER_KEY=%s", master);
		}
	snprintf(e->master, sizeof(e->master), "%s", master);
	it_stack_start(&e->s, MI);
	it_stack_wait_ready(&e->s);
}

/* A copy of the first value of sql (free it). */
static char *q(env *e, const char *fmt, ...) ASH_PRINTF(2, 3);
static char *
q(env *e, const char *fmt, ...)
{
	char    sql[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	return ash_xstrdup(it_pg_exec(e->s.dsn, sql));
}

static void
q_eq(env *e, const char *want, const char *sql)
{
	char *got = q(e, "%s", sql);

	if (strcmp(got, want) != 0) {
		char msg[2400];
		snprintf(
		    msg, sizeof(msg), "%s: \"%s\" != \"%s\"", sql, got, want);
		free(got);
		ASH_T_FAILF("%s", msg);
	}
	free(got);
	ash_t_checks++;
}

/* Polls sql until it gives want (up to ms). */
static void
wait_sql(env *e, const char *sql, const char *want, int ms)
{
	for (int waited = 0; waited < ms; waited += 100) {
		char *got = q(e, "%s", sql);
		bool  ok  = strcmp(got, want) == 0;
		free(got);
		if (ok) {
			ash_t_checks++;
			return;
		}
		usleep(100000);
	}
	q_eq(e, want, sql); /* fails with what it is now */
}

/* POST /api/v1/channels/meta as the tenant of key; r filled. */
static long
connect_ch(env *e, const char *key, it_resp *r, const char *kind,
    const char *id, const char *token, const char *secret, const char *login)
{
	cJSON *b = cJSON_CreateObject();
	char  *body;

	ash_json_add_str(b, "kind", kind);
	ash_json_add_str(b, "external_id", id);
	ash_json_add_str(b, "access_token", token);
	if (secret != NULL)
		ash_json_add_str(b, "app_secret", secret);
	if (login != NULL)
		ash_json_add_str(b, "login", login);
	body = ash_json_render(b);
	cJSON_Delete(b);
	it_call(&e->s, r, "POST", "/api/v1/channels/meta", key, body);
	cJSON_free(body);
	return r->status;
}

/* Connects and copies the new channel's id; the reply must hold no
 * secret. */
static void
connect_ok(env *e, const char *kind, const char *id, const char *token,
    const char *secret, const char *login, char chan[64])
{
	it_resp r;

	connect_ch(e, e->key, &r, kind, id, token, secret, login);
	if (r.status != 201 && r.status != 200)
		ASH_T_FAILF("connect: %ld %s", r.status, r.body);
	ASH_T_NOT_CONTAINS(r.body, token);
	ASH_T_NOT_CONTAINS(r.body, "sealed");
	snprintf(chan, 64, "%s",
	    ash_json_str(cJSON_GetObjectItem(r.json, "channel"), "id"));
	it_resp_fini(&r);
}

/* The tenant's channel list; *one is its first channel (or NULL). The
 * caller frees r. */
static void
list(env *e, const char *key, it_resp *r, const cJSON **one)
{
	it_call(&e->s, r, "GET", "/api/v1/channels/meta", key, NULL);
	ASH_T_EQ_INT(r->status, 200);
	*one = cJSON_GetArrayItem(cJSON_GetObjectItem(r->json, "channels"), 0);
}

/* Opens a sealed value with master and the channel's AAD; must be want. */
static void
assert_opens(const char *master, const char *chan, const char *what,
    const char *sealed, const char *want)
{
	ash_keyring *kr  = NULL;
	const char  *why = NULL;
	uint8_t     *pt  = NULL;
	size_t       n   = 0;
	char         aad[160];

	ASH_T_OK(ash_keyring_parse(master, &kr, &why));
	snprintf(aad, sizeof(aad), "meta-ingest/channel/%s/%s", chan, what);
	ASH_T_OK(ash_crypto_unseal(kr, aad, sealed, &pt, &n));
	ASH_T_EQ_STR((const char *) pt, want);
	free(pt);
	ash_keyring_free(kr);
}

static char *
slurp(const char *path)
{
	FILE  *f = fopen(path, "rb");
	char  *buf;
	size_t n = 0, cap = 1 << 16;

	if (f == NULL)
		ASH_T_FAILF("cannot open %s", path);
	buf = ash_xmalloc(cap);
	for (size_t k; (k = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
		n += k;
		if (cap - n < 4096)
			buf = ash_xrealloc(buf, cap *= 2);
	}
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* None of secrets in any log of this case (services, ashoonctl); the
 * fake's own log is Meta's side. Returns the number of logs read. */
static int
assert_logs_clean(env *e, const char *const *secrets)
{
	char           dir[512], path[1024];
	DIR           *d;
	struct dirent *de;
	int            files = 0;

	snprintf(dir, sizeof(dir), "%s/it-logs/%s", getenv("ASH_BUILD_DIR"),
	    e->s.tag);
	ASH_T_NOT_NULL(d = opendir(dir));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' ||
		    strncmp(de->d_name, "fake_graph", 10) == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		char *text = slurp(path);
		for (int i = 0; secrets[i] != NULL; i++)
			if (strstr(text, secrets[i]) != NULL) {
				free(text);
				closedir(d);
				ASH_T_FAILF("%s holds a secret", path);
			}
		free(text);
		files++;
	}
	closedir(d);
	return files;
}

/* The whole database as SQL text, as a backup would hold it. */
static char *
pg_dump(env *e)
{
	char  cmd[1024], path[600];
	char *text;

	snprintf(path, sizeof(path), "%s/it-logs/%s/dump.sql.txt",
	    getenv("ASH_BUILD_DIR"), e->s.tag);
	snprintf(cmd, sizeof(cmd),
	    "/usr/lib/postgresql/15/bin/pg_dump -d '%s' > '%s' 2>&1", e->s.dsn,
	    path);
	ASH_T_EQ_INT(system(cmd), 0);
	text = slurp(path);
	unlink(path); /* not a log: keep it out of the log scan */
	return text;
}

/* meta-ingest's /metrics text (free it). */
static char *
metrics(env *e)
{
	char    url[128];
	it_resp r;
	char   *text;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics",
	    e->s.metrics_port[MI]);
	it_http(&r, "GET", url, NULL, NULL, 0);
	ASH_T_EQ_INT(r.status, 200);
	text = ash_xstrdup(r.body);
	it_resp_fini(&r);
	return text;
}

/* Waits (the gauge is refreshed every few seconds) for a sample line. */
static void
wait_metric(env *e, const char *line, int ms)
{
	for (int waited = 0; waited < ms; waited += 200) {
		char *m  = metrics(e);
		bool  ok = strstr(m, line) != NULL;
		free(m);
		if (ok) {
			ash_t_checks++;
			return;
		}
		usleep(200000);
	}
	char *m = metrics(e);
	ASH_T_CONTAINS(m, line);
	free(m);
}

/* Runs ashoonctl with args; its output (stdout + stderr) replaces *out
 * (free it). */
static int
ctl(env *e, const char *name, const char *const *args, const char *api_key,
    char **out)
{
	char  bin[512], log[600], url[128], key[200];
	char *argv[16] = {bin};
	char *envv[] = {url, "ASHOON_ADMIN_TOKEN=" IT_ADMIN_TOKEN, key, NULL};
	int   n      = 1, rc;
	it_proc *p;

	it_bin("cli/ashoonctl", bin, sizeof(bin));
	for (; args[n - 1] != NULL && n < 15; n++)
		argv[n] = (char *) args[n - 1];
	argv[n] = NULL;
	snprintf(url, sizeof(url), "ASHOON_URL=%s", e->s.base);
	snprintf(
	    key, sizeof(key), "ASHOON_API_KEY=%s", api_key ? api_key : "");
	snprintf(log, sizeof(log), "%s/it-logs/%s/ashoonctl-%s.log",
	    getenv("ASH_BUILD_DIR"), e->s.tag, name);
	p  = it_proc_start(argv, envv, log);
	rc = it_proc_wait(p, 30000);
	it_proc_free(p);
	free(*out);
	*out = slurp(log);
	return rc;
}

static void
participant(env *e, const char *chan, const char *psid)
{
	char *r = q(e,
	    "INSERT INTO meta_ingest.participants (tenant_id, channel_id, "
	    "external_id) VALUES ('%s', '%s', '%s') RETURNING id",
	    e->tenant, chan, psid);
	free(r);
}

/* profile_state of a participant, as a query for wait_sql. */
static void
state_sql(char *out, size_t cap, const char *psid)
{
	snprintf(out, cap,
	    "SELECT profile_state FROM meta_ingest.participants "
	    "WHERE external_id = '%s'",
	    psid);
}

static int
calls_to(env *e, const char *suffix)
{
	cJSON *calls = it_fake_calls(&e->f, suffix);
	int    n     = cJSON_GetArraySize(calls);

	cJSON_Delete(calls);
	return n;
}

/* --- cases --------------------------------------------------------------- */

ASH_TEST(p10_token_never_stored_in_plaintext)
{
	static const char *const secrets[] = {TOK, APPSECRET, NULL};
	env                      e;
	it_resp                  r;
	const cJSON             *c;
	char                     chan[64], *v, *dump, *m;

	up(&e, "p10_plaintext", K1);
	it_fake_token(&e.f, TOK, PAGE_ACCOUNT);
	connect_ch(&e, e.key, &r, "messenger", PAGE, TOK, APPSECRET, NULL);
	ASH_T_EQ_INT(r.status, 201);
	ASH_T_NOT_CONTAINS(r.body, TOK);
	ASH_T_NOT_CONTAINS(r.body, APPSECRET);
	ASH_T_NOT_CONTAINS(r.body, "sealed");
	ASH_T_NOT_CONTAINS(r.body, "\"v1.");
	c = cJSON_GetObjectItem(r.json, "channel");
	snprintf(chan, sizeof(chan), "%s", ash_json_str(c, "id"));
	ASH_T_EQ_STR(ash_json_str(c, "name"), "Acme Bakery");
	ASH_T_EQ_STR(ash_json_str(c, "category"), "Bakery");
	ASH_T_EQ_STR(ash_json_str(c, "status"), "ok");
	ASH_T_EQ_STR(ash_json_str(c, "login"), "facebook");
	ASH_T_EQ_INT(
	    cJSON_GetObjectItem(c, "follower_count")->valuedouble, 1234);
	ASH_T_EQ_INT(cJSON_GetObjectItem(c, "key_version")->valuedouble, 1);
	ASH_T_TRUE(cJSON_GetObjectItem(c, "access_token") == NULL);
	ASH_T_TRUE(cJSON_GetObjectItem(c, "app_secret") == NULL);
	it_resp_fini(&r);
	/* The list has the channel and no secret either. */
	list(&e, e.key, &r, &c);
	ASH_T_EQ_STR(ash_json_str(c, "id"), chan);
	ASH_T_EQ_STR(ash_json_str(c, "external_id"), PAGE);
	ASH_T_NOT_CONTAINS(r.body, TOK);
	ASH_T_NOT_CONTAINS(r.body, APPSECRET);
	ASH_T_NOT_CONTAINS(r.body, "sealed");
	it_resp_fini(&r);
	/* At rest: sealed under the row's AAD with key 1, nothing else. */
	v = q(&e, "SELECT token_sealed FROM meta_ingest.channels");
	ASH_T_TRUE(strncmp(v, "v1.", 3) == 0);
	assert_opens(K1, chan, "token", v, TOK);
	free(v);
	v = q(&e, "SELECT app_secret_sealed FROM meta_ingest.channels");
	assert_opens(K1, chan, "app_secret", v, APPSECRET);
	free(v);
	/* A backup of the whole database holds the row, not the secrets. */
	dump = pg_dump(&e);
	ASH_T_CONTAINS(dump, chan);
	ASH_T_CONTAINS(dump, "Acme Bakery");
	for (int i = 0; secrets[i] != NULL; i++)
		if (strstr(dump, secrets[i]) != NULL) {
			free(dump);
			ASH_T_FAILF("pg_dump holds %s", secrets[i]);
		}
	free(dump);
	/* Nor do the metrics, once the gauge has counted the channel. */
	wait_metric(&e, "ashoon_meta_channels{status=\"ok\"} 1", 8000);
	m = metrics(&e);
	ASH_T_NOT_CONTAINS(m, TOK);
	free(m);
	/* The token was checked with Graph, sent there and only there. */
	cJSON *calls = it_fake_calls(&e.f, "/me");
	ASH_T_EQ_INT(cJSON_GetArraySize(calls), 1);
	ASH_T_EQ_STR(ash_json_str(cJSON_GetArrayItem(calls, 0), "token"), TOK);
	cJSON_Delete(calls);
	ASH_T_TRUE(it_proc_log_has(e.s.procs[MI], "MI-CONNECTED"));
	down(&e);
	/* Every service's log, read after a clean stop. */
	ASH_T_TRUE(assert_logs_clean(&e, secrets) >= ASH_SVC_COUNT);
}

ASH_TEST(connect_validates_the_token_with_graph)
{
	static const char *const secrets[] = {TOK, TOK2, TOK3, IGTOK, NULL};
	env                      e;
	it_resp                  r;
	const cJSON             *c;
	char                     chan[64];

	up(&e, "connect_validate", K1);
	/* Unknown to Meta: 190, refused, nothing stored. */
	connect_ch(&e, e.key, &r, "messenger", PAGE, TOK, NULL, NULL);
	ASH_T_EQ_INT(r.status, 400);
	ASH_T_CONTAINS(r.body, "rejected by Meta (190)");
	ASH_T_NOT_CONTAINS(r.body, TOK);
	it_resp_fini(&r);
	/* Another account's token. */
	it_fake_token(&e.f, TOK2, "{\"id\":\"999000111\",\"name\":\"Other\"}");
	connect_ch(&e, e.key, &r, "messenger", PAGE, TOK2, NULL, NULL);
	ASH_T_EQ_INT(r.status, 400);
	ASH_T_CONTAINS(r.body, "another account");
	ASH_T_NOT_CONTAINS(r.body, TOK2);
	it_resp_fini(&r);
	/* Revoked: 190 again. */
	it_fake_token_ex(&e.f, TOK3, PAGE_ACCOUNT, true, 460);
	connect_ch(&e, e.key, &r, "messenger", PAGE, TOK3, NULL, NULL);
	ASH_T_EQ_INT(r.status, 400);
	it_resp_fini(&r);
	/* Malformed input never reaches Graph. */
	connect_ch(&e, e.key, &r, "messenger", "12ab", TOK2, NULL, NULL);
	ASH_T_EQ_INT(r.status, 400);
	it_resp_fini(&r);
	q_eq(&e, "0", "SELECT count(*) FROM meta_ingest.channels");
	ASH_T_EQ_INT(calls_to(&e, NULL), 3);
	/* Instagram Login: /me on the IG host with a bearer; user_id is the
	 * professional account. */
	it_fake_token(&e.f, IGTOK,
	    "{\"id\":\"555\",\"user_id\":\"" IG "\",\"username\":\"acme\","
	    "\"name\":\"Acme IG\",\"followers_count\":77,"
	    "\"account_type\":\"BUSINESS\"}");
	connect_ok(&e, "instagram", IG, IGTOK, NULL, "instagram", chan);
	cJSON *calls = it_fake_calls(&e.f, "/me");
	ASH_T_EQ_STR(
	    ash_json_str(cJSON_GetArrayItem(calls, 3), "auth"), "bearer");
	cJSON_Delete(calls);
	list(&e, e.key, &r, &c);
	ASH_T_EQ_STR(ash_json_str(c, "username"), "acme");
	ASH_T_EQ_STR(ash_json_str(c, "account_type"), "BUSINESS");
	ASH_T_EQ_STR(ash_json_str(c, "login"), "instagram");
	it_resp_fini(&r);
	down(&e);
	ASH_T_TRUE(assert_logs_clean(&e, secrets) >= ASH_SVC_COUNT);
}

ASH_TEST(connect_conflict_across_tenants_and_reconnect_updates)
{
	env          e;
	it_resp      r;
	const cJSON *c;
	char         chan[64], chan2[64], t2[64], k2[128], path[128];
	char        *before, *after;

	up(&e, "connect_conflict", K1);
	it_tenant_create(&e.s, "Rival", t2, k2);
	it_fake_token(&e.f, TOK, PAGE_ACCOUNT);
	it_fake_token(&e.f, TOK2, PAGE_ACCOUNT);
	it_fake_token(&e.f, TOK3,
	    "{\"id\":\"" PAGE "\",\"name\":\"Acme Renamed\","
	    "\"followers_count\":2000}");
	connect_ok(&e, "messenger", PAGE, TOK, APPSECRET, NULL, chan);
	/* Another tenant, even with a valid token for the Page: 409. */
	connect_ch(&e, k2, &r, "messenger", PAGE, TOK2, NULL, NULL);
	ASH_T_EQ_INT(r.status, 409);
	ASH_T_NOT_CONTAINS(r.body, TOK2);
	it_resp_fini(&r);
	list(&e, k2, &r, &c);
	ASH_T_NULL(c);
	it_resp_fini(&r);
	snprintf(path, sizeof(path), "/api/v1/channels/meta/%s", chan);
	it_call(&e.s, &r, "DELETE", path, k2, NULL);
	ASH_T_EQ_INT(r.status, 404);
	it_resp_fini(&r);
	/* The same tenant again: same row, new token and metadata, status
	 * back to ok, the app secret kept. */
	before = q(&e, "SELECT token_sealed FROM meta_ingest.channels");
	free(q(&e,
	    "UPDATE meta_ingest.channels SET status = 'needs_reauth', "
	    "status_code = 190 RETURNING id"));
	connect_ch(&e, e.key, &r, "messenger", PAGE, TOK3, NULL, NULL);
	ASH_T_EQ_INT(r.status, 200);
	c = cJSON_GetObjectItem(r.json, "channel");
	ASH_T_EQ_STR(ash_json_str(c, "id"), chan);
	ASH_T_EQ_STR(ash_json_str(c, "name"), "Acme Renamed");
	ASH_T_EQ_STR(ash_json_str(c, "status"), "ok");
	ASH_T_TRUE(cJSON_IsNull(cJSON_GetObjectItem(c, "status_code")));
	it_resp_fini(&r);
	after = q(&e, "SELECT token_sealed FROM meta_ingest.channels");
	ASH_T_TRUE(strcmp(before, after) != 0);
	assert_opens(K1, chan, "token", after, TOK3);
	free(before);
	free(after);
	after = q(&e, "SELECT app_secret_sealed FROM meta_ingest.channels");
	assert_opens(K1, chan, "app_secret", after, APPSECRET);
	free(after);
	q_eq(&e, "1", "SELECT count(*) FROM meta_ingest.channels");
	/* Disconnected, the Page is free for the other tenant. */
	it_call(&e.s, &r, "DELETE", path, e.key, NULL);
	ASH_T_EQ_INT(r.status, 200);
	it_resp_fini(&r);
	connect_ch(&e, k2, &r, "messenger", PAGE, TOK2, NULL, NULL);
	ASH_T_EQ_INT(r.status, 201);
	snprintf(chan2, sizeof(chan2), "%s",
	    ash_json_str(cJSON_GetObjectItem(r.json, "channel"), "id"));
	ASH_T_TRUE(strcmp(chan, chan2) != 0);
	it_resp_fini(&r);
	down(&e);
}

ASH_TEST(disconnect_erases_the_sealed_token)
{
	env          e;
	it_resp      r;
	const cJSON *c;
	char         chan[64], path[128];

	up(&e, "disconnect", K1);
	it_fake_token(&e.f, TOK, PAGE_ACCOUNT);
	connect_ok(&e, "messenger", PAGE, TOK, APPSECRET, NULL, chan);
	snprintf(path, sizeof(path), "/api/v1/channels/meta/%s", chan);
	it_call(&e.s, &r, "DELETE", path, e.key, NULL);
	ASH_T_EQ_INT(r.status, 200);
	ASH_T_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "disconnected")));
	it_resp_fini(&r);
	q_eq(&e, "|true|true",
	    "SELECT token_sealed || '|' || (app_secret_sealed IS NULL) || '|' "
	    "|| (disconnected_at IS NOT NULL) FROM meta_ingest.channels");
	list(&e, e.key, &r, &c);
	ASH_T_NULL(c);
	it_resp_fini(&r);
	it_call(&e.s, &r, "DELETE", path, e.key, NULL);
	ASH_T_EQ_INT(r.status, 404);
	it_resp_fini(&r);
	down(&e);
}

ASH_TEST(keys_rotate_reseals_and_the_old_key_can_go)
{
	static const char *const secrets[] = {TOK, APPSECRET, NULL};
	const char *const        rotate[]  = {"keys", "rotate", NULL};
	env                      e;
	it_resp                  r;
	char                     chan[64], *out = NULL, sql[256], *v;

	up(&e, "keys_rotate", "1:" K1);
	it_fake_token(&e.f, TOK, PAGE_ACCOUNT);
	it_fake_object(
	    &e.f, PSID1, "{\"first_name\":\"Peter\",\"last_name\":\"Chang\"}");
	connect_ok(&e, "messenger", PAGE, TOK, APPSECRET, NULL, chan);
	q_eq(&e, "1", "SELECT key_version FROM meta_ingest.channels");
	restart_mi(&e, "1:" K1 ",2:" K2);
	/* Admin only: a tenant's API key does not reach the op. */
	it_call(&e.s, &r, "POST", "/admin/v1/keys/rotate", e.key, "{}");
	ASH_T_TRUE(r.status == 401 || r.status == 403);
	it_resp_fini(&r);
	ASH_T_EQ_INT(ctl(&e, "rotate1", rotate, NULL, &out), 0);
	ASH_T_CONTAINS(out, "key version 2: 1 channel(s) resealed");
	q_eq(&e, "2", "SELECT key_version FROM meta_ingest.channels");
	v = q(&e, "SELECT token_sealed FROM meta_ingest.channels");
	ASH_T_TRUE(strncmp(v, "v2.", 3) == 0);
	assert_opens("2:" K2, chan, "token", v, TOK);
	free(v);
	v = q(&e, "SELECT app_secret_sealed FROM meta_ingest.channels");
	ASH_T_TRUE(strncmp(v, "v2.", 3) == 0);
	assert_opens("2:" K2, chan, "app_secret", v, APPSECRET);
	free(v);
	/* Nothing left to do the second time. */
	ASH_T_EQ_INT(ctl(&e, "rotate2", rotate, NULL, &out), 0);
	ASH_T_CONTAINS(out, "key version 2: 0 channel(s) resealed");
	/* Key 1 gone: the token still opens, for a profile lookup. */
	restart_mi(&e, "2:" K2);
	participant(&e, chan, PSID1);
	state_sql(sql, sizeof(sql), PSID1);
	wait_sql(&e, sql, "fetched", 15000);
	q_eq(&e, "Peter Chang",
	    "SELECT name FROM meta_ingest.participants WHERE external_id = "
	    "'" PSID1 "'");
	cJSON *calls = it_fake_calls(&e.f, "/" PSID1);
	ASH_T_EQ_INT(cJSON_GetArraySize(calls), 1);
	ASH_T_EQ_STR(ash_json_str(cJSON_GetArrayItem(calls, 0), "token"), TOK);
	cJSON_Delete(calls);
	free(out);
	down(&e);
	ASH_T_TRUE(assert_logs_clean(&e, secrets) >= ASH_SVC_COUNT);
}

ASH_TEST(profile_fetched_once_and_unavailable_is_final)
{
	env  e;
	char chan[64], igchan[64], sql[256];

	up(&e, "profile_once", K1);
	it_fake_token(&e.f, TOK, PAGE_ACCOUNT);
	it_fake_token(&e.f, IGTOK,
	    "{\"id\":\"555\",\"user_id\":\"" IG "\",\"username\":\"acme\"}");
	it_fake_object(&e.f, PSID1,
	    "{\"first_name\":\"Peter\",\"last_name\":\"Chang\","
	    "\"profile_pic\":\"https://cdn.example/p.jpg\"}");
	it_fake_unavailable(&e.f, PSID2);
	it_fake_object(&e.f, PSID3, "{\"first_name\":\"Ann\"}");
	it_fake_object(&e.f, IGSID,
	    "{\"name\":\"Insta Person\",\"username\":\"insta_p\","
	    "\"profile_pic\":\"https://cdn.example/i.jpg\"}");
	connect_ok(&e, "messenger", PAGE, TOK, NULL, NULL, chan);
	connect_ok(&e, "instagram", IG, IGTOK, NULL, "instagram", igchan);
	participant(&e, chan, PSID1);
	participant(&e, chan, PSID2);
	participant(&e, igchan, IGSID);
	state_sql(sql, sizeof(sql), PSID1);
	wait_sql(&e, sql, "fetched", 15000);
	q_eq(&e, "Peter Chang|https://cdn.example/p.jpg",
	    "SELECT name || '|' || profile_pic FROM meta_ingest.participants "
	    "WHERE external_id = '" PSID1 "'");
	state_sql(sql, sizeof(sql), PSID2);
	wait_sql(&e, sql, "unavailable", 15000);
	state_sql(sql, sizeof(sql), IGSID);
	wait_sql(&e, sql, "fetched", 15000);
	q_eq(&e, "Insta Person|insta_p",
	    "SELECT name || '|' || username FROM meta_ingest.participants "
	    "WHERE external_id = '" IGSID "'");
	/* Kicks, and another round that fetches someone else: the fetched
	 * and the unavailable profiles are not asked for again. */
	free(q(&e, "SELECT pg_notify('mi_profiles', '')"));
	free(q(&e, "SELECT pg_notify('mi_profiles', '')"));
	participant(&e, chan, PSID3);
	state_sql(sql, sizeof(sql), PSID3);
	wait_sql(&e, sql, "fetched", 15000);
	sleep(2);
	ASH_T_EQ_INT(calls_to(&e, "/" PSID1), 1);
	ASH_T_EQ_INT(calls_to(&e, "/" PSID2), 1);
	ASH_T_EQ_INT(calls_to(&e, "/" IGSID), 1);
	q_eq(&e, "Ann",
	    "SELECT name FROM meta_ingest.participants WHERE external_id = "
	    "'" PSID3 "'");
	down(&e);
}

ASH_TEST(profile_190_marks_the_channel_needs_reauth)
{
	env          e;
	it_resp      r;
	const cJSON *c;
	char         chan[64], sql[256];

	up(&e, "profile_190", K1);
	it_fake_token(&e.f, TOK, PAGE_ACCOUNT);
	it_fake_token(&e.f, TOK2, PAGE_ACCOUNT);
	it_fake_object(&e.f, PSID1, "{\"first_name\":\"Peter\"}");
	connect_ok(&e, "messenger", PAGE, TOK, NULL, NULL, chan);
	it_fake_revoke(&e.f, TOK);
	participant(&e, chan, PSID1);
	wait_sql(&e, "SELECT status FROM meta_ingest.channels", "needs_reauth",
	    15000);
	list(&e, e.key, &r, &c);
	ASH_T_EQ_STR(ash_json_str(c, "status"), "needs_reauth");
	ASH_T_EQ_INT(cJSON_GetObjectItem(c, "status_code")->valuedouble, 190);
	ASH_T_CONTAINS(ash_json_str(c, "status_reason"), "190");
	it_resp_fini(&r);
	state_sql(sql, sizeof(sql), PSID1);
	q_eq(&e, "pending", sql);
	wait_metric(
	    &e, "ashoon_meta_channels{status=\"needs_reauth\"} 1", 8000);
	/* A reconnect puts it back to ok and the profile comes. */
	connect_ok(&e, "messenger", PAGE, TOK2, NULL, NULL, chan);
	wait_sql(&e, sql, "fetched", 15000);
	list(&e, e.key, &r, &c);
	ASH_T_EQ_STR(ash_json_str(c, "status"), "ok");
	it_resp_fini(&r);
	wait_metric(&e, "ashoon_meta_channels{status=\"ok\"} 1", 8000);
	down(&e);
}

ASH_TEST(ctl_channel_connect_reads_the_token_from_a_file)
{
	static const char *const secrets[] = {TOK, APPSECRET, NULL};
	env                      e;
	char  tokfile[600], secfile[600], *out = NULL, chan[64];
	FILE *f;

	up(&e, "ctl_channel", K1);
	it_fake_token(&e.f, TOK, PAGE_ACCOUNT);
	snprintf(tokfile, sizeof(tokfile), "%s/it-logs/%s/token.secret",
	    getenv("ASH_BUILD_DIR"), e.s.tag);
	snprintf(secfile, sizeof(secfile), "%s/it-logs/%s/app.secret",
	    getenv("ASH_BUILD_DIR"), e.s.tag);
	ASH_T_NOT_NULL(f = fopen(tokfile, "w"));
	fprintf(f, "%s\n", TOK);
	fclose(f);
	ASH_T_NOT_NULL(f = fopen(secfile, "w"));
	fprintf(f, "  %s\r\n", APPSECRET);
	fclose(f);
	const char *const conn[] = {"channel", "connect-meta", "--tenant-key",
	    e.key, "--kind", "messenger", "--id", PAGE, "--token-file",
	    tokfile, "--app-secret-file", secfile, NULL};
	ASH_T_EQ_INT(ctl(&e, "connect", conn, NULL, &out), 0);
	ASH_T_CONTAINS(out, PAGE);
	ASH_T_CONTAINS(out, "Acme Bakery");
	unlink(tokfile);
	unlink(secfile);
	/* The secrets arrived whole (trimmed). */
	snprintf(chan, sizeof(chan), "%s",
	    it_pg_exec(e.s.dsn, "SELECT id FROM meta_ingest.channels"));
	char *v = q(&e, "SELECT token_sealed FROM meta_ingest.channels");
	assert_opens(K1, chan, "token", v, TOK);
	free(v);
	v = q(&e, "SELECT app_secret_sealed FROM meta_ingest.channels");
	assert_opens(K1, chan, "app_secret", v, APPSECRET);
	free(v);
	const char *const ls[] = {"channel", "list", NULL};
	ASH_T_EQ_INT(ctl(&e, "list", ls, e.key, &out), 0);
	ASH_T_CONTAINS(out, chan);
	ASH_T_CONTAINS(out, "ok");
	/* No key: a usage error, not a call. */
	ASH_T_EQ_INT(ctl(&e, "nokey", ls, NULL, &out), 2);
	const char *const dc[] = {"channel", "disconnect", chan, NULL};
	ASH_T_EQ_INT(ctl(&e, "disconnect", dc, e.key, &out), 0);
	q_eq(&e, "", "SELECT token_sealed FROM meta_ingest.channels");
	free(out);
	down(&e);
	ASH_T_TRUE(assert_logs_clean(&e, secrets) >= ASH_SVC_COUNT);
}

ASH_TEST(f6_connect_subscribes_the_page_to_our_webhooks)
{
	env          e;
	it_resp      r;
	char         chan[64];
	cJSON       *calls;
	const cJSON *q0;

	up(&e, "connect_subscribe", K1);
	it_fake_token(&e.f, TOK, PAGE_ACCOUNT);
	connect_ok(&e, "messenger", PAGE, TOK, NULL, NULL, chan);
	/* Without the subscription Meta sends no webhook at all. */
	calls = it_fake_calls(&e.f, "/subscribed_apps");
	ASH_T_EQ_INT(cJSON_GetArraySize(calls), 1);
	q0 = cJSON_GetArrayItem(calls, 0);
	ASH_T_EQ_STR(ash_json_str(q0, "method"), "POST");
	ASH_T_CONTAINS(ash_json_str(q0, "path"), "/" PAGE "/subscribed_apps");
	ASH_T_CONTAINS(ash_json_str(cJSON_GetObjectItem(q0, "query"),
	                   "subscribed_fields"),
	    "messages,messaging_postbacks,message_echoes,message_reads");
	ASH_T_EQ_STR(ash_json_str(q0, "token"), TOK);
	cJSON_Delete(calls);
	/* Meta refusing the subscription refuses the connection: a channel
	 * that can never receive a message is not connected. */
	it_fake_token(
	    &e.f, TOK2, "{\"id\":\"104857601234999\",\"name\":\"Second\"}");
	it_fake_script(&e.f,
	    "{\"method\":\"POST\",\"path_suffix\":\"/subscribed_apps\","
	    "\"status\":400,\"body\":{\"error\":{\"code\":200,"
	    "\"message\":\"Permissions "
	    "error\",\"type\":\"OAuthException\"}}}");
	connect_ch(
	    &e, e.key, &r, "messenger", "104857601234999", TOK2, NULL, NULL);
	ASH_T_EQ_INT(r.status, 502);
	ASH_T_CONTAINS(r.body, "subscribe");
	it_resp_fini(&r);
	q_eq(&e, "1", "SELECT count(*) FROM meta_ingest.channels");
	down(&e);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(p10_token_never_stored_in_plaintext),
    ASH_TEST_ENTRY(connect_validates_the_token_with_graph),
    ASH_TEST_ENTRY(connect_conflict_across_tenants_and_reconnect_updates),
    ASH_TEST_ENTRY(disconnect_erases_the_sealed_token),
    ASH_TEST_ENTRY(keys_rotate_reseals_and_the_old_key_can_go),
    ASH_TEST_ENTRY(profile_fetched_once_and_unavailable_is_final),
    ASH_TEST_ENTRY(profile_190_marks_the_channel_needs_reauth),
    ASH_TEST_ENTRY(ctl_channel_connect_reads_the_token_from_a_file),
    ASH_TEST_ENTRY(f6_connect_subscribes_the_page_to_our_webhooks))
