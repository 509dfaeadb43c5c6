/*
 * fuzz_json.c - ash_json_parse, the one way untrusted JSON enters (webhook
 * bodies, API bodies, bus frames), and ash_json_render, which writes what
 * we store and send.
 *
 * Invariants: a document we accept cJSON accepts too (our checks only add
 * refusals), and its every key and string is UTF-8 (what Postgres text and
 * jsonb take); a refusal is EBADJSON or ETOOBIG; rendering an accepted
 * document gives the bytes cJSON_PrintUnformatted gives, and they parse
 * back to an equal document.
 */
#include "fuzz.h"

#include <ashoon/json.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void
texts_ok(const cJSON *it)
{
	for (; it != NULL; it = it->next) {
		CHECK(it->string == NULL || ash_json_text_ok(it->string));
		CHECK(
		    !cJSON_IsString(it) || ash_json_text_ok(it->valuestring));
		texts_ok(it->child);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cJSON  *doc = NULL, *again = NULL, *theirs;
	ash_err rv = ash_json_parse((const char *) data, size, &doc);
	char   *ours, *cjson;

	if (rv != ASH_OK) {
		CHECK(rv == ASH_EBADJSON || rv == ASH_ETOOBIG);
		CHECK(doc == NULL);
		return 0;
	}
	theirs = cJSON_ParseWithLength((const char *) data, size);
	CHECK(theirs != NULL && cJSON_Compare(doc, theirs, true));
	cJSON_Delete(theirs);
	texts_ok(doc);

	ours  = ash_json_render(doc);
	cjson = cJSON_PrintUnformatted(doc);
	CHECK(ours != NULL && cjson != NULL && strcmp(ours, cjson) == 0);
	CHECK(ash_json_parse(ours, strlen(ours), &again) == ASH_OK);
	/* Numbers print with 15 significant digits (cJSON's format), so a
	 * float may come back rounded; everything else must be equal. */
	CHECK(cJSON_Compare(doc, again, true) || strchr(ours, '.') != NULL ||
	    strchr(ours, 'e') != NULL);
	cJSON_Delete(again);
	cJSON_free(cjson);
	cJSON_free(ours);
	cJSON_Delete(doc);
	return 0;
}
