/*
 * jwt.c - JWT sign/verify: libjwt 1.10 for the signature, our code for
 * everything it does not check.
 *
 * libjwt 1.10 verifies with whatever algorithm the token's header names:
 * an HS256 token MACed with an RSA public key PEM passes when that PEM is
 * the "key", and a NULL key accepts anything, alg=none included
 * (TOOLCHAIN §4). So ash_jwt_verify reads the header itself and requires
 * the caller's algorithm before libjwt sees the token, never passes libjwt
 * a NULL key, re-checks the algorithm libjwt used, and checks exp, nbf,
 * iat, iss and aud on the exact payload bytes that were signed.
 *
 * No shared state: any thread. Tokens longer than JWT_MAX_LEN are refused
 * before anything is decoded or allocated.
 */
#include <ashoon/crypto.h>
#include <ashoon/json.h>
#include <ashoon/jwt.h>

#include <jwt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JWT_MAX_LEN 16384 /* far above any token we issue or accept */

static const struct {
	const char *name; /* the header's "alg" */
	jwt_alg_t   lib;  /* the same algorithm in libjwt */
} algs[] = {
    [ASH_JWT_HS256] = {"HS256", JWT_ALG_HS256},
    [ASH_JWT_RS256] = {"RS256", JWT_ALG_RS256},
    [ASH_JWT_ES256] = {"ES256", JWT_ALG_ES256},
};

/* The first two segments of a compact JWS "header.payload.signature". */
typedef struct jwt_parts {
	const char *hdr;     /* base64url header, not NUL-terminated */
	size_t      hdrlen;  /* its length */
	const char *body;    /* base64url payload */
	size_t      bodylen; /* its length */
} jwt_parts;

static ash_err
fail(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return ASH_EUNAUTH;
}

static bool
jwt_split(const char *tok, jwt_parts *p)
{
	const char *d1, *d2;

	if (tok == NULL || strnlen(tok, JWT_MAX_LEN + 1) > JWT_MAX_LEN)
		return false;
	if ((d1 = strchr(tok, '.')) == NULL ||
	    (d2 = strchr(d1 + 1, '.')) == NULL || strchr(d2 + 1, '.') != NULL)
		return false;
	p->hdr     = tok;
	p->hdrlen  = (size_t) (d1 - tok);
	p->body    = d1 + 1;
	p->bodylen = (size_t) (d2 - d1 - 1);
	return p->hdrlen > 0 && p->bodylen > 0;
}

/* True if two members of obj share a name. cJSON keeps the first and
 * libjwt's jansson the last, so a duplicate "alg" or "aud" could mean one
 * thing to our checks and another to the signature check. */
static bool
has_duplicate_keys(const cJSON *obj)
{
	for (const cJSON *a = obj->child; a != NULL; a = a->next)
		for (const cJSON *b = a->next; b != NULL; b = b->next)
			if (strcmp(a->string, b->string) == 0)
				return true;
	return false;
}

/* Decodes one base64url segment that must hold exactly one JSON object. */
static ash_err
decode_segment(const char *s, size_t len, cJSON **out)
{
	uint8_t    *raw;
	size_t      n;
	const char *end = NULL;
	cJSON      *j;

	if (ash_b64url_decode(s, len, &raw, &n) != ASH_OK)
		return ASH_EINVAL;
	/* An embedded NUL would hide trailing bytes from the parser. The
	 * length counts raw's NUL: cJSON requires it to see the end. */
	j = memchr(raw, '\0', n) != NULL
	    ? NULL
	    : cJSON_ParseWithLengthOpts((const char *) raw, n + 1, &end, true);
	if (!cJSON_IsObject(j) || end != (const char *) raw + n ||
	    has_duplicate_keys(j)) {
		cJSON_Delete(j);
		free(raw);
		return ASH_EINVAL;
	}
	free(raw);
	*out = j;
	return ASH_OK;
}

ash_err
ash_jwt_peek_header(const char *token, cJSON **header)
{
	jwt_parts p;

	if (!jwt_split(token, &p))
		return ASH_EINVAL;
	return decode_segment(p.hdr, p.hdrlen, header);
}

/* The header must name exactly the expected algorithm. This is what stops
 * alg=none and HS256-keyed-with-an-RSA-public-key before libjwt runs. */
static ash_err
check_header(const jwt_parts *p, ash_jwt_alg alg, const char **why)
{
	cJSON       *h;
	const cJSON *a;
	ash_err      rv = ASH_OK;

	if (decode_segment(p->hdr, p->hdrlen, &h) != ASH_OK)
		return fail(why, "malformed header");
	a = cJSON_GetObjectItemCaseSensitive(h, "alg");
	if (!cJSON_IsString(a) || strcmp(a->valuestring, algs[alg].name) != 0)
		rv = fail(why, "alg mismatch");
	else if (cJSON_GetObjectItemCaseSensitive(h, "crit") != NULL)
		/* RFC 7515 4.1.11: extensions we do not know must fail. */
		rv = fail(why, "unsupported crit header");
	cJSON_Delete(h);
	return rv;
}

/* Checks the header and signature; on ASH_OK *payload is the claims. */
static ash_err
verify_signed(const char *token, const void *key, size_t keylen,
    ash_jwt_alg alg, cJSON **payload, const char **why)
{
	jwt_parts p;
	jwt_t    *jwt = NULL;
	bool      same_alg;

	if (key == NULL || keylen == 0 || keylen > INT_MAX)
		return fail(why, "no key");
	if (!jwt_split(token, &p))
		return fail(why, "malformed token");
	if (check_header(&p, alg, why) != ASH_OK)
		return ASH_EUNAUTH;
	if (jwt_decode(&jwt, token, key, (int) keylen) != 0 || jwt == NULL)
		return fail(why, "bad signature");
	/* Belt and braces: the algorithm libjwt actually verified with. */
	same_alg = jwt_get_alg(jwt) == algs[alg].lib;
	jwt_free(jwt);
	if (!same_alg)
		return fail(why, "alg mismatch");
	if (decode_segment(p.body, p.bodylen, payload) != ASH_OK)
		return fail(why, "malformed payload");
	return ASH_OK;
}

/* exp, nbf and iat are optional numbers (NumericDate, RFC 7519 2). */
static ash_err
check_times(const cJSON *c, const ash_jwt_expect *e, const char **why)
{
	double       now = e->now != 0 ? (double) e->now : (double) time(NULL);
	double       skew = e->leeway_s;
	const cJSON *exp  = cJSON_GetObjectItemCaseSensitive(c, "exp");
	const cJSON *nbf  = cJSON_GetObjectItemCaseSensitive(c, "nbf");
	const cJSON *iat  = cJSON_GetObjectItemCaseSensitive(c, "iat");

	if ((exp != NULL && !cJSON_IsNumber(exp)) ||
	    (nbf != NULL && !cJSON_IsNumber(nbf)) ||
	    (iat != NULL && !cJSON_IsNumber(iat)))
		return fail(why, "malformed time claim");
	if (exp == NULL && e->require_exp)
		return fail(why, "missing exp");
	/* RFC 7519 4.1.4: the token is invalid at and after exp. */
	if (exp != NULL && now >= exp->valuedouble + skew)
		return fail(why, "expired");
	if (nbf != NULL && now + skew < nbf->valuedouble)
		return fail(why, "not yet valid");
	if (iat != NULL && iat->valuedouble > now + skew)
		return fail(why, "issued in the future");
	return ASH_OK;
}

static ash_err
check_iss(const cJSON *c, const char *const *accepted, const char **why)
{
	const cJSON *iss = cJSON_GetObjectItemCaseSensitive(c, "iss");

	if (accepted == NULL)
		return ASH_OK;
	if (!cJSON_IsString(iss))
		return fail(why, "missing issuer");
	for (; *accepted != NULL; accepted++)
		if (strcmp(iss->valuestring, *accepted) == 0)
			return ASH_OK;
	return fail(why, "wrong issuer");
}

/* aud is one string or an array of strings (RFC 7519 4.1.3). */
static ash_err
check_aud(const cJSON *c, const char *want, const char **why)
{
	const cJSON *aud = cJSON_GetObjectItemCaseSensitive(c, "aud");
	const cJSON *a;

	if (want == NULL)
		return ASH_OK;
	if (cJSON_IsString(aud) && strcmp(aud->valuestring, want) == 0)
		return ASH_OK;
	if (cJSON_IsArray(aud))
		cJSON_ArrayForEach(a, aud)
		{
			if (cJSON_IsString(a) &&
			    strcmp(a->valuestring, want) == 0)
				return ASH_OK;
		}
	return fail(why, "wrong audience");
}

ash_err
ash_jwt_verify(const char *token, const void *key, size_t keylen,
    const ash_jwt_expect *expect, cJSON **claims, const char **why)
{
	cJSON  *payload = NULL;
	ash_err rv;

	ASH_ASSERT((unsigned) expect->alg <= ASH_JWT_ES256);
	ASH_ASSERT(expect->leeway_s >= 0);
	if ((rv = verify_signed(
	         token, key, keylen, expect->alg, &payload, why)) != ASH_OK)
		return rv;
	if ((rv = check_times(payload, expect, why)) != ASH_OK ||
	    (rv = check_iss(payload, expect->iss, why)) != ASH_OK ||
	    (rv = check_aud(payload, expect->aud, why)) != ASH_OK) {
		cJSON_Delete(payload);
		return rv;
	}
	*claims = payload;
	return ASH_OK;
}

ash_err
ash_jwt_sign(ash_jwt_alg alg, const void *key, size_t keylen,
    const cJSON *claims, char **out)
{
	jwt_t  *jwt = NULL;
	char   *json, *tok = NULL;
	int     new_rc;
	ash_err rv = ASH_EINVAL;

	ASH_ASSERT((unsigned) alg <= ASH_JWT_ES256);
	if (!cJSON_IsObject(claims) || key == NULL || keylen == 0 ||
	    keylen > INT_MAX)
		return ASH_EINVAL;
	/* Rendering aborts on allocation failure; jwt_new fails only then. */
	json   = ash_json_render(claims);
	new_rc = jwt_new(&jwt);
	ASH_ASSERT(json != NULL && new_rc == 0);
	/* libjwt adds "typ":"JWT" and "alg" to the header itself. */
	if (jwt_add_grants_json(jwt, json) == 0 &&
	    jwt_set_alg(jwt, algs[alg].lib, key, (int) keylen) == 0 &&
	    (tok = jwt_encode_str(jwt)) != NULL) {
		/* libjwt 1.10 always allocates with malloc: free() fits. */
		*out = tok;
		rv   = ASH_OK;
	}
	cJSON_free(json);
	jwt_free(jwt);
	return rv;
}
