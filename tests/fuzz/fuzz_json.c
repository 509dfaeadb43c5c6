/*
 * fuzz_json.c - ash_json_parse, the one way untrusted JSON enters (webhook
 * bodies, API bodies, bus frames), and ash_json_render, which writes what
 * we store and send.
 *
 * Invariants: a document we accept cJSON accepts too (our checks only add
 * refusals), and its every key and string is UTF-8 (what Postgres text and
 * jsonb take); a refusal is EBADJSON or ETOOBIG; rendering an accepted
 * document gives the bytes cJSON_PrintUnformatted gives, and they parse
 * back to an equal document. ash_json_parse_ids accepts whatever
 * ash_json_parse accepts, and reads it alike but for integers beyond 2^53,
 * which are strings of the same digits.
 */
#include "fuzz.h"

#include <ashoon/json.h>

#include <math.h>
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

/* a (ash_json_parse's) and b (ash_json_parse_ids's) are alike but for
 * integers beyond 2^53, strings in b of digits that round to a's. */
static void
alike_but_ids(const cJSON *a, const cJSON *b)
{
	for (; a != NULL && b != NULL; a = a->next, b = b->next) {
		CHECK((a->string == NULL) == (b->string == NULL));
		CHECK(a->string == NULL || strcmp(a->string, b->string) == 0);
		if (cJSON_IsNumber(a) && cJSON_IsString(b)) {
			CHECK(fabs(a->valuedouble) >= 9007199254740992.0);
			CHECK(strtod(b->valuestring, NULL) == a->valuedouble);
			CHECK(strspn(b->valuestring, "-0123456789") ==
			    strlen(b->valuestring));
			continue;
		}
		CHECK(a->type == b->type);
		if (cJSON_IsNumber(a))
			CHECK(a->valuedouble == b->valuedouble);
		if (cJSON_IsString(a))
			CHECK(strcmp(a->valuestring, b->valuestring) == 0);
		alike_but_ids(a->child, b->child);
	}
	CHECK(a == NULL && b == NULL);
}

static void
ids(const uint8_t *data, size_t size, const cJSON *plain)
{
	cJSON  *doc = NULL;
	ash_err rv  = ash_json_parse_ids((const char *) data, size, &doc);

	if (rv != ASH_OK) {
		CHECK(rv == ASH_EBADJSON || rv == ASH_ETOOBIG);
		CHECK(doc == NULL && plain == NULL);
		return;
	}
	texts_ok(doc);
	if (plain != NULL)
		alike_but_ids(plain, doc);
	cJSON_Delete(doc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cJSON  *doc = NULL, *again = NULL, *theirs;
	ash_err rv = ash_json_parse((const char *) data, size, &doc);
	char   *ours, *cjson;

	ids(data, size, doc);
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
