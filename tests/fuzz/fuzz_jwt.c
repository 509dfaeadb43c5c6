/*
 * fuzz_jwt.c - tokens from outside: ID tokens at sign-in, and any bearer
 * a client makes up. ash_jwt_verify with an HS256 key, and the unverified
 * header peek used to choose a key by "kid".
 *
 * Invariants: every refusal is EUNAUTH with a reason; an accepted token's
 * last part is exactly the base64url HMAC of its first two parts under the
 * key, so no unsigned, re-encoded or other-key token gets through; a
 * peeked header is an object.
 */
#include "fuzz.h"

#include <ashoon/crypto.h>
#include <ashoon/jwt.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KEY "fuzz-jwt-key-0123456789abcdef0123"

static void
accepted(const char *token)
{
	const char *dot = strrchr(token, '.');
	uint8_t     mac[ASH_SHA256_LEN];
	char       *sig;

	CHECK(dot != NULL);
	ash_hmac_sha256(KEY, strlen(KEY), token, (size_t) (dot - token), mac);
	sig = ash_b64url_encode(mac, sizeof(mac));
	CHECK(strcmp(dot + 1, sig) == 0);
	free(sig);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const iss[]  = {"https://issuer.example", NULL};
	ash_jwt_expect           ex     = {.alg = ASH_JWT_HS256,
	                  .iss                  = iss,
	                  .aud                  = "ashoon",
	                  .leeway_s             = 60,
	                  .now                  = 1800000000,
	                  .require_exp          = true};
	cJSON                   *claims = NULL, *header = NULL;
	const char              *why = NULL;
	char                    *token;
	ash_err                  rv;

	if ((token = fuzz_cstr(data, size)) == NULL)
		return 0; /* an Authorization value is a C string */
	rv = ash_jwt_verify(token, KEY, strlen(KEY), &ex, &claims, &why);
	if (rv == ASH_OK) {
		CHECK(cJSON_IsObject(claims));
		accepted(token);
		cJSON_Delete(claims);
	} else {
		CHECK(rv == ASH_EUNAUTH && why != NULL && *why != '\0');
	}
	if (ash_jwt_peek_header(token, &header) == ASH_OK) {
		CHECK(cJSON_IsObject(header));
		cJSON_Delete(header);
	}
	free(token);
	return 0;
}
