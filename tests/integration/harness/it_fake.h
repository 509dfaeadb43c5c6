/*
 * it_fake.h - the fake Graph API (tests/fakes/fake_graph) for integration
 * tests: start it on a free port, set it up through its /_fake/ control
 * API, read back the calls it recorded. A service under test points
 * META_GRAPH_URL (and META_IG_GRAPH_URL) at f->base.
 *
 * Every helper fails the case (ASH_T_FAILF) when the fake does not answer
 * 200, so a test never runs against a half-configured fake. JSON arguments
 * are strings checked with ash_json_parse; other strings are escaped here.
 * Test thread only (blocking calls).
 */
#ifndef ASH_IT_FAKE_H
#define ASH_IT_FAKE_H

#include "it.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

typedef struct it_fake {
	it_proc *proc;     /* NULL once stopped */
	int      port;     /* 127.0.0.1 */
	char     base[64]; /* "http://127.0.0.1:<port>": the META_GRAPH_URL */
	char     log[512]; /* build/it-logs/<tag>/fake_graph.<n>.log */
} it_fake;

/* Starts the fake on a free port and waits for its READY line. tag names
 * the log directory (use the case's tag). */
void it_fake_start(it_fake *f, const char *tag);
/* SIGTERM; asserts exit code 0 (clean exit, no leaks under ASan). NULL
 * proc (already stopped) is fine. */
void it_fake_stop(it_fake *f);

/* Forgets tokens, objects, scripts and recorded calls. */
void it_fake_reset(it_fake *f);
/* Registers token for the account object account_json (what /me returns,
 * e.g. {"id":"1001","name":"Acme"}; NULL = {}). */
void it_fake_token(it_fake *f, const char *token, const char *account_json);
/* Same, possibly already revoked (calls get 190 with error_subcode subcode
 * unless it is 0). */
void it_fake_token_ex(it_fake *f, const char *token, const char *account_json,
    bool revoked, int subcode);
/* Later calls with token get 190 (error_subcode as registered). */
void it_fake_revoke(it_fake *f, const char *token);
/* Registers GET /{id} (a PSID/IGSID profile or any node): object_json is
 * its object; "id" is added when missing. */
void it_fake_object(it_fake *f, const char *id, const char *object_json);
/* GET /{id} answers code 2018218 "No profile available for this user". */
void it_fake_unavailable(it_fake *f, const char *id);
/* Queues a canned answer, script_json as /_fake/script takes it:
 * {"method":"POST","path_suffix":"/messages","status":400,"body":{...},
 *  "headers":{"Name":"value" or JSON},"times":1,"delay_ms":0}. */
void it_fake_script(it_fake *f, const char *script_json);
/* The recorded Graph calls (oldest first) whose path ends with path_suffix
 * (NULL = all), as a JSON array; the caller cJSON_Deletes it. Each call:
 * {"method","path","version","query":{...},"token","auth","content_type",
 *  "body","time_ms","status"}. */
cJSON *it_fake_calls(it_fake *f, const char *path_suffix);

/* A request to the fake itself: path_query is "/v23.0/me?fields=name";
 * bearer (or NULL) becomes "Authorization: Bearer"; body (or NULL) is sent
 * as application/json. */
void it_fake_call(it_fake *f, it_resp *r, const char *method,
    const char *path_query, const char *bearer, const char *body);

#endif
