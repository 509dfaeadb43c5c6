/*
 * fuzz_webhook.c - what meta-ingest does with a POST from Meta before
 * anything is stored: the X-Hub-Signature-256 check over the raw bytes,
 * then the body parsed and normalized into events (mi_parse.c). The input
 * is the header's value, a newline, then the body.
 *
 * Invariants: the signature is accepted exactly when the header is
 * "sha256=" and the HMAC of these very bytes (hex, any case); parsing
 * never fails on a well-formed envelope whatever its events hold; every
 * event counted is in the kinds, every stored-kind event is in the array,
 * tagged with its hit and object, and the events render as JSON that
 * parses back (it goes to Postgres as jsonb).
 */
#include "fuzz.h"
#include "mi.h"

#include <ashoon/crypto.h>
#include <ashoon/json.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SECRET "fuzz-app-secret"

static void
signature(const char *header, const uint8_t *body, size_t len)
{
	uint8_t mac[ASH_SHA256_LEN];
	char   *hex;
	ash_err rv = mi_signature_check(header, body, len, SECRET);
	bool    want;

	ash_hmac_sha256(SECRET, strlen(SECRET), body, len, mac);
	hex  = ash_hex_encode(mac, sizeof(mac));
	want = strncmp(header, "sha256=", 7) == 0 &&
	    strcasecmp(header + 7, hex) == 0;
	CHECK(want ? rv == ASH_OK : rv == ASH_EUNAUTH || rv == ASH_EFORBIDDEN);
	free(hex);
}

static int
kinds_sum(const cJSON *kinds)
{
	const cJSON *k;
	int          n = 0;

	cJSON_ArrayForEach(k, kinds)
	{
		CHECK(cJSON_IsNumber(k) && k->valueint > 0);
		n += k->valueint;
	}
	return n;
}

static void
events_check(const cJSON *events, const mi_parse_stats *st)
{
	const cJSON *e;
	cJSON       *again = NULL;
	char        *out;

	CHECK(cJSON_GetArraySize(events) == st->events - st->unknown);
	CHECK(kinds_sum(st->kinds) == st->events);
	cJSON_ArrayForEach(e, events)
	{
		const cJSON *hit = cJSON_GetObjectItemCaseSensitive(e, "hit");

		CHECK(cJSON_IsNumber(hit) && hit->valueint == 7);
		CHECK(ash_json_str(e, "type") != NULL);
		CHECK(strcmp(ash_json_str(e, "object"), st->object) == 0);
	}
	out = ash_json_render(events);
	CHECK(ash_json_parse(out, strlen(out), &again) == ASH_OK);
	cJSON_Delete(again);
	cJSON_free(out);
}

static void
parse(const uint8_t *body, size_t len)
{
	cJSON         *doc = NULL, *events;
	mi_parse_stats st  = {0};
	ash_err        rv;

	if (ash_json_parse_ids((const char *) body, len, &doc) != ASH_OK)
		return;
	events      = cJSON_CreateArray();
	st.kinds    = cJSON_CreateObject();
	st.page_ids = cJSON_CreateArray();
	rv          = mi_parse_webhook(doc, 7, "987654321012345", events, &st);
	if (rv == ASH_OK) {
		if (strcmp(st.object, "page") == 0 ||
		    strcmp(st.object, "instagram") == 0)
			events_check(events, &st);
		else
			CHECK(cJSON_GetArraySize(events) == 0);
	} else {
		CHECK(rv == ASH_EINVAL && cJSON_GetArraySize(events) == 0);
	}
	cJSON_Delete(events);
	cJSON_Delete(st.kinds);
	cJSON_Delete(st.page_ids);
	cJSON_Delete(doc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl   = memchr(data, '\n', size);
	size_t         hlen = nl ? (size_t) (nl - data) : size;
	const uint8_t *body = nl ? nl + 1 : data + size;
	size_t         blen = size - hlen - (nl ? 1 : 0);
	char          *header;

	if ((header = fuzz_cstr(data, hlen)) == NULL)
		return 0; /* a header value cannot hold a NUL */
	signature(header, body, blen);
	free(header);
	parse(body, blen);
	return 0;
}
