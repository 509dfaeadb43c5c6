/*
 * it_fake.c - starting the fake Graph API and driving its /_fake/ control
 * API (see it_fake.h and tests/fakes/fake_graph.c).
 */
#include "it_fake.h"

#include <ashoon/json.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* build/it-logs/<tag>/fake_graph.<n>.log, kept for reading failures. */
static void
fake_log_path(it_fake *f, const char *tag)
{
	static int starts;
	char       dir[400];

	snprintf(dir, sizeof(dir), "%s/it-logs", getenv("ASH_BUILD_DIR"));
	mkdir(dir, 0755);
	snprintf(
	    dir, sizeof(dir), "%s/it-logs/%s", getenv("ASH_BUILD_DIR"), tag);
	mkdir(dir, 0755);
	snprintf(
	    f->log, sizeof(f->log), "%s/fake_graph.%d.log", dir, ++starts);
}

/* True once READY is logged; false if the fake exited first (the port we
 * picked was taken meanwhile). */
static bool
fake_wait_ready(it_fake *f)
{
	for (int waited = 0; waited < 30000; waited += 20) {
		if (it_proc_log_has(f->proc, "\"id\":\"READY\""))
			return true;
		if (it_proc_wait(f->proc, 0) >= 0)
			return false;
		it_proc_wait(f->proc, 20);
	}
	ASH_T_FAILF(
	    "fake_graph: no READY in 30 s:\n%s", it_proc_tail(f->proc));
	return false;
}

void
it_fake_start(it_fake *f, const char *tag)
{
	char  bin[512], port[16];
	char *argv[] = {bin, port, NULL};
	char *env[]  = {NULL};

	memset(f, 0, sizeof(*f));
	it_bin("tests/fakes/fake_graph", bin, sizeof(bin));
	for (int attempt = 0; attempt < 3; attempt++) {
		f->port = it_free_port();
		snprintf(port, sizeof(port), "%d", f->port);
		snprintf(
		    f->base, sizeof(f->base), "http://127.0.0.1:%d", f->port);
		fake_log_path(f, tag);
		f->proc = it_proc_start(argv, env, f->log);
		if (fake_wait_ready(f))
			return;
		fprintf(stderr, "fake_graph did not start:\n%s\n",
		    it_proc_tail(f->proc));
		it_proc_free(f->proc);
		f->proc = NULL;
	}
	ASH_T_FAILF("fake_graph did not start in 3 attempts");
}

void
it_fake_stop(it_fake *f)
{
	int rc;

	if (f->proc == NULL)
		return;
	it_proc_signal(f->proc, SIGTERM);
	rc = it_proc_wait(f->proc, 15000);
	if (rc != 0)
		fprintf(stderr, "fake_graph exited %d:\n%s\n", rc,
		    it_proc_tail(f->proc));
	it_proc_free(f->proc);
	f->proc = NULL;
	ASH_T_EQ_INT(rc, 0);
}

void
it_fake_call(it_fake *f, it_resp *r, const char *method,
    const char *path_query, const char *bearer, const char *body)
{
	char        url[2048], auth[600];
	const char *hdr[3] = {"Content-Type: application/json", NULL, NULL};

	snprintf(url, sizeof(url), "%s%s", f->base, path_query);
	if (bearer != NULL) {
		snprintf(
		    auth, sizeof(auth), "Authorization: Bearer %s", bearer);
		hdr[1] = auth;
	}
	it_http(r, method, url, hdr, body, body ? strlen(body) : 0);
}

/* POST /_fake/<what> with doc (taken); fails the case unless 200. */
static void
fake_control(it_fake *f, const char *what, cJSON *doc)
{
	char    path[64], *body = ash_json_render(doc);
	it_resp r;
	char    err[600];

	cJSON_Delete(doc);
	snprintf(path, sizeof(path), "/_fake/%s", what);
	it_fake_call(f, &r, "POST", path, NULL, body);
	cJSON_free(body);
	if (r.status == 200) {
		it_resp_fini(&r);
		return;
	}
	snprintf(err, sizeof(err), "%ld %s", r.status, r.body);
	it_resp_fini(&r);
	ASH_T_FAILF("fake_graph /_fake/%s: %s", what, err);
}

/* A JSON argument, parsed; NULL gives {}. */
static cJSON *
fake_json(const char *json)
{
	cJSON *doc;

	if (json == NULL)
		return cJSON_CreateObject();
	if (ash_json_parse(json, strlen(json), &doc) != ASH_OK)
		ASH_T_FAILF("not JSON: %s", json);
	return doc;
}

void
it_fake_reset(it_fake *f)
{
	fake_control(f, "reset", cJSON_CreateObject());
}

void
it_fake_token_ex(it_fake *f, const char *token, const char *account_json,
    bool revoked, int subcode)
{
	cJSON *doc = cJSON_CreateObject();

	ash_json_add_str(doc, "token", token);
	cJSON_AddItemToObject(doc, "account", fake_json(account_json));
	cJSON_AddBoolToObject(doc, "revoked", revoked);
	cJSON_AddNumberToObject(doc, "subcode", subcode);
	fake_control(f, "tokens", doc);
}

void
it_fake_token(it_fake *f, const char *token, const char *account_json)
{
	it_fake_token_ex(f, token, account_json, false, 0);
}

void
it_fake_revoke(it_fake *f, const char *token)
{
	cJSON *doc = cJSON_CreateObject();

	ash_json_add_str(doc, "token", token);
	fake_control(f, "revoke", doc);
}

void
it_fake_object(it_fake *f, const char *id, const char *object_json)
{
	cJSON *doc = cJSON_CreateObject();

	ash_json_add_str(doc, "id", id);
	cJSON_AddItemToObject(doc, "object", fake_json(object_json));
	fake_control(f, "objects", doc);
}

void
it_fake_unavailable(it_fake *f, const char *id)
{
	cJSON *doc = cJSON_CreateObject();

	ash_json_add_str(doc, "id", id);
	cJSON_AddTrueToObject(doc, "unavailable");
	fake_control(f, "objects", doc);
}

void
it_fake_script(it_fake *f, const char *script_json)
{
	fake_control(f, "script", fake_json(script_json));
}

/* Percent-encodes s into out (path suffixes: ids, slashes, underscores). */
static void
fake_escape(const char *s, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t            n     = 0;

	for (; *s != '\0' && n + 4 < cap; s++) {
		unsigned char c = (unsigned char) *s;
		if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || strchr("-._~/", c) != NULL) {
			out[n++] = (char) c;
			continue;
		}
		out[n++] = '%';
		out[n++] = hex[c >> 4];
		out[n++] = hex[c & 15];
	}
	out[n] = '\0';
}

cJSON *
it_fake_calls(it_fake *f, const char *path_suffix)
{
	char    path[1024], esc[900];
	it_resp r;
	cJSON  *calls;

	snprintf(path, sizeof(path), "/_fake/calls");
	if (path_suffix != NULL) {
		fake_escape(path_suffix, esc, sizeof(esc));
		snprintf(
		    path, sizeof(path), "/_fake/calls?path_suffix=%s", esc);
	}
	it_fake_call(f, &r, "GET", path, NULL, NULL);
	calls = r.json
	    ? cJSON_DetachItemFromObjectCaseSensitive(r.json, "calls")
	    : NULL;
	if (r.status != 200 || !cJSON_IsArray(calls)) {
		cJSON_Delete(calls);
		it_resp_fini(&r);
		ASH_T_FAILF("fake_graph /_fake/calls: no calls array");
	}
	it_resp_fini(&r);
	return calls;
}
