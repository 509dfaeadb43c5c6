/*
 * ashoon/jwt.h - JWT sign/verify on libjwt 1.10, with the checks it lacks.
 *
 * libjwt 1.10 validates no claim and accepts algorithm confusion
 * (TOOLCHAIN §4), so ash_jwt_verify REQUIRES the caller's expected algorithm
 * (alg=none and any other alg are rejected before the signature is looked
 * at, so an HS256 token "signed" with an RSA public key never passes) and
 * checks exp, nbf, iat, iss and aud itself. Any thread.
 */
#ifndef ASHOON_JWT_H
#define ASHOON_JWT_H

#include <ashoon/err.h>

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ash_jwt_alg {
	ASH_JWT_HS256,
	ASH_JWT_RS256,
	ASH_JWT_ES256,
} ash_jwt_alg;

/* What a token must satisfy. */
typedef struct ash_jwt_expect {
	ash_jwt_alg        alg; /* exactly this alg, nothing else */
	const char *const *iss; /* NULL-terminated accepted issuers;
	                           NULL: iss is not checked */
	const char *aud;        /* required audience (string or member of
	                           the aud array); NULL = not checked */
	int     leeway_s;       /* clock skew allowed on exp/nbf/iat */
	int64_t now;            /* seconds since epoch; 0 = time(NULL) */
	bool    require_exp;    /* a token without exp is rejected */
} ash_jwt_expect;

/* Signs claims (copied into the payload) with alg. key: the HMAC secret for
 * HS256, a private key PEM for RS256/ES256. *out: free(). ASH_EINVAL if
 * claims is not an object or key is empty or unusable for alg. */
ash_err ash_jwt_sign(ash_jwt_alg alg, const void *key, size_t keylen,
    const cJSON *claims, char **out) ASH_MUSTCHECK;

/* Verifies token against key (HMAC secret, or public key PEM) and expect.
 * Every failure is ASH_EUNAUTH with a static reason in *why ("alg
 * mismatch", "expired", "bad signature", "wrong audience", ...), which is
 * safe to log. On ASH_OK *claims is the payload: cJSON_Delete it.
 * An empty key is refused ("no key"; libjwt would skip the signature
 * check), as is a token over 16 KiB ("malformed token"). */
ash_err ash_jwt_verify(const char *token, const void *key, size_t keylen,
    const ash_jwt_expect *expect, cJSON **claims,
    const char **why) ASH_MUSTCHECK;

/* Decodes the header WITHOUT verifying anything, to choose a key by "kid".
 * ASH_EINVAL if it is not a JWT. *header: cJSON_Delete it. */
ash_err ash_jwt_peek_header(const char *token, cJSON **header) ASH_MUSTCHECK;

#endif
