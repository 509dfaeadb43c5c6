/* Unit tests: jwt (sign/verify, the checks libjwt 1.10 lacks, the Google
 * ID token vectors of specs/google-oidc.md). */
#include <ash_test.h>
#include <ashoon/crypto.h>
#include <ashoon/jwt.h>

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdarg.h>

#define NOW    1700000000LL
#define SECRET "0123456789abcdef0123456789abcdef"
#define ISS    "https://ashoon.example"
#define AUD    "ashoon-session"

/* specs/vectors/google-test-rsa-public.pem, byte for byte. */
static const char google_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAs0o+RWIalH4Zw0yP8SXH\n"
    "VFDGyRUCkPRIMCcsqnzFftqJXwNSfqQ2qu60jP2NYzc4EesDeVgmx34KA/YMGDUP\n"
    "Z8FEdzoRn5JV0k91AYGNT+ulS5wb2auqIBNHo6EMAy4G78GF7GlTN/+BB02gQ136\n"
    "0MWLMo2Bl3MgihXLE6jRiulGlePKfFHDGgEWaYypvSJQX4GfmqNbOVgu5LYT9EjD\n"
    "hng4ngUDcgPl8wuDHCNqmlFXaIjjc9yG32zPxthxWSw+RRTc9SS811OVcSi8h4Cp\n"
    "MvWLRQOSrSXUVb8TUQrwAFVcVAfSJD0WanxJrK9TlFmWYHk7y9EtKNBGdvGCUmL0\n"
    "CwIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

/* The RS256 header and payload shared by the signed Google vectors
 * (google-id-token-signing-input.txt). */
#define G_HDR                                                              \
	"eyJhbGciOiJSUzI1NiIsImtpZCI6IjRmMWMyYjdlOWEwZDNjNmI4ZTVmMmExZDdj" \
	"OWIwZTNmNmEyZDhjNWIiLCJ0eXAiOiJKV1QifQ"
#define G_BODY                                                             \
	"eyJpc3MiOiJodHRwczovL2FjY291bnRzLmdvb2dsZS5jb20iLCJhenAiOiIxMjM0" \
	"NTY3ODkwMTItMGExYjJjM2Q0ZTVmNmc3aDhpOWowazFsMm0zbjRvNXAuYXBwcy5n" \
	"b29nbGV1c2VyY29udGVudC5jb20iLCJhdWQiOiIxMjM0NTY3ODkwMTItMGExYjJj" \
	"M2Q0ZTVmNmc3aDhpOWowazFsMm0zbjRvNXAuYXBwcy5nb29nbGV1c2VyY29udGVu" \
	"dC5jb20iLCJzdWIiOiIxMTAxNjk0ODQ0NzQzODYyNzYzMzQiLCJoZCI6ImV4YW1w" \
	"bGUuY29tIiwiZW1haWwiOiJkYW5hQGV4YW1wbGUuY29tIiwiZW1haWxfdmVyaWZp" \
	"ZWQiOnRydWUsImF0X2hhc2giOiJ4cGthTXgzNFdRTUtaTF9SdXloQmF3Iiwibm9u" \
	"Y2UiOiIwMzk0ODUyLTMxOTA0ODUtMjQ5MDM1OCIsIm5hbWUiOiJEYW5hIE93bmVy" \
	"IiwicGljdHVyZSI6Imh0dHBzOi8vbGgzLmdvb2dsZXVzZXJjb250ZW50LmNvbS9h" \
	"L0FDZzhvY1RFU1RwaWN0dXJlIiwiZ2l2ZW5fbmFtZSI6IkRhbmEiLCJmYW1pbHlf" \
	"bmFtZSI6Ik93bmVyIiwiaWF0IjoxNzM2OTM1MjAwLCJleHAiOjE3MzY5Mzg4MDB9"

/* specs/vectors/google-id-token.txt */
static const char google_token[] =
    G_HDR "." G_BODY "."
          "TzYuuy4Zy362vYTcAJki8LxpdavgxRP6NiGBpAffV73HGQsxQWNSselyrbpoRPQb"
          "fIEHLDqPa_qsCs_w2GqNyMbLwQ-uxfhk1vLCFN7zaC7pJ-5OLuNlJXOZlkBIAe0S"
          "T5GQSDZ7CecFr3Nqyp_uQUpdtrATGMEYGAJGA1e7BKo6FJe38L0_T_f7pMhOZEA_"
          "mqZMhn1HEVfBY0OJQVudZfQI7ytAFNqv-vKgeXKHNs0rZbPbkPfowmks1vqCkCJp"
          "_X_Utu5lAjPqgYhKmy-kVCTxXqOccmF8-1PE_CYvA0Ws7-t5abcWMPYnNeQKXNyA"
          "22UD2H7n8GhxI8_WzibB7g";

/* specs/vectors/google-id-token-legacy-iss.txt */
static const char google_legacy_iss[] =
    G_HDR "."
          "eyJpc3MiOiJhY2NvdW50cy5nb29nbGUuY29tIiwiYXpwIjoiMTIzNDU2Nzg5MDEy"
          "LTBhMWIyYzNkNGU1ZjZnN2g4aTlqMGsxbDJtM240bzVwLmFwcHMuZ29vZ2xldXNl"
          "cmNvbnRlbnQuY29tIiwiYXVkIjoiMTIzNDU2Nzg5MDEyLTBhMWIyYzNkNGU1ZjZn"
          "N2g4aTlqMGsxbDJtM240bzVwLmFwcHMuZ29vZ2xldXNlcmNvbnRlbnQuY29tIiwi"
          "c3ViIjoiMTEwMTY5NDg0NDc0Mzg2Mjc2MzM0IiwiaGQiOiJleGFtcGxlLmNvbSIs"
          "ImVtYWlsIjoiZGFuYUBleGFtcGxlLmNvbSIsImVtYWlsX3ZlcmlmaWVkIjp0cnVl"
          "LCJhdF9oYXNoIjoieHBrYU14MzRXUU1LWkxfUnV5aEJhdyIsIm5vbmNlIjoiMDM5"
          "NDg1Mi0zMTkwNDg1LTI0OTAzNTgiLCJuYW1lIjoiRGFuYSBPd25lciIsInBpY3R1"
          "cmUiOiJodHRwczovL2xoMy5nb29nbGV1c2VyY29udGVudC5jb20vYS9BQ2c4b2NU"
          "RVNUcGljdHVyZSIsImdpdmVuX25hbWUiOiJEYW5hIiwiZmFtaWx5X25hbWUiOiJP"
          "d25lciIsImlhdCI6MTczNjkzNTIwMCwiZXhwIjoxNzM2OTM4ODAwfQ"
          "."
          "r3d9qPuNzC0QJShTxuIYarfOgtmyfry4Ufln5DM4PNbTlx7yQC8TXBcYDTrgCDoG"
          "S2S2Z_lUcX7BZlZQ48ElA5PfpJQ-VXA4-0KojUDQEuaOU7gzOvDMb2YMBuLsDr5t"
          "XDr-pMI10c-9hvWTIUoiBZq8GYZRFqUshsA-LRl6QJf7y01NFpgCVFv0kCtGJoZJ"
          "N-jvTlGuJ9ATjL8yg2ZNSWLcbQ00gHnGCMk8U8nfPRhGLuOyVot_mnghdQPgLAPU"
          "F6gky14Af32jRSJTVuJNPaYPKzXOwqu9qnowqCHIS5ueIKQ4jo5pV_xG2mql4RiS"
          "-t8ybZ7EBV2nDIeza9Y0ew";

/* specs/vectors/google-id-token-wrong-aud.txt */
static const char google_wrong_aud[] =
    G_HDR "."
          "eyJpc3MiOiJodHRwczovL2FjY291bnRzLmdvb2dsZS5jb20iLCJhenAiOiI5OTk5"
          "OTk5OTk5OTktb3RoZXJjbGllbnQuYXBwcy5nb29nbGV1c2VyY29udGVudC5jb20i"
          "LCJhdWQiOiI5OTk5OTk5OTk5OTktb3RoZXJjbGllbnQuYXBwcy5nb29nbGV1c2Vy"
          "Y29udGVudC5jb20iLCJzdWIiOiIxMTAxNjk0ODQ0NzQzODYyNzYzMzQiLCJoZCI6"
          "ImV4YW1wbGUuY29tIiwiZW1haWwiOiJkYW5hQGV4YW1wbGUuY29tIiwiZW1haWxf"
          "dmVyaWZpZWQiOnRydWUsImF0X2hhc2giOiJ4cGthTXgzNFdRTUtaTF9SdXloQmF3"
          "Iiwibm9uY2UiOiIwMzk0ODUyLTMxOTA0ODUtMjQ5MDM1OCIsIm5hbWUiOiJEYW5h"
          "IE93bmVyIiwicGljdHVyZSI6Imh0dHBzOi8vbGgzLmdvb2dsZXVzZXJjb250ZW50"
          "LmNvbS9hL0FDZzhvY1RFU1RwaWN0dXJlIiwiZ2l2ZW5fbmFtZSI6IkRhbmEiLCJm"
          "YW1pbHlfbmFtZSI6Ik93bmVyIiwiaWF0IjoxNzM2OTM1MjAwLCJleHAiOjE3MzY5"
          "Mzg4MDB9"
          "."
          "nyLcW7iaA5t7i6Hn2RnppHd2p-uA2TUy7IPByc7cz9ir3vq79cCJVhKoC3f1CKZN"
          "4WLfXOevW_n7qgjh5oMX6Vp3Pi7ho4OiGEfrZpPiXngCNn4p9q_i2DCeiHMtXLWP"
          "ba6UwKu7s6amNvfH8rqUZT1QmwZyWkRacgfBI1NfMbcq3phaa5n9LRaBMUH_vUrD"
          "8Ce1LlcV_MW9VKn17gl-FyD2FqhI17H_gYb0d-uyNwpXtgyy7BtllZqdL-OpWW5t"
          "jeYScOxy9FprInnBTjedJiqW-hiv1MJ_EAVeAMjmsGATIiIWw_hI5kyQe2T4EHal"
          "2VLsbbCTkb0ux6g9PSY2WA";

/* specs/vectors/google-id-token-alg-none.txt: {"alg":"none","typ":"JWT"},
 * the valid payload, an empty signature. */
static const char google_alg_none[] =
    "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." G_BODY ".";

#define G_CLIENT                                              \
	"123456789012-0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p.apps." \
	"googleusercontent.com"
#define G_IAT 1736935200LL /* 2025-01-15T10:00:00Z */
#define G_EXP 1736938800LL /* 11:00:00Z */

static const char *const google_issuers[] = {
    "https://accounts.google.com", "accounts.google.com", NULL};
static const char *const our_issuers[] = {ISS, NULL};

static ash_jwt_expect
google_expect(int64_t now)
{
	ash_jwt_expect e = {.alg = ASH_JWT_RS256,
	    .iss                 = google_issuers,
	    .aud                 = G_CLIENT,
	    .leeway_s            = 60,
	    .now                 = now,
	    .require_exp         = true};
	return e;
}

static ash_jwt_expect
our_expect(void)
{
	ash_jwt_expect e = {.alg = ASH_JWT_HS256,
	    .iss                 = our_issuers,
	    .aud                 = AUD,
	    .leeway_s            = 0,
	    .now                 = NOW,
	    .require_exp         = true};
	return e;
}

/* Signs the JSON claims printf'd from fmt. */
static char *sign_claims(ash_jwt_alg alg, const void *key, size_t keylen,
    const char *fmt, ...) ASH_PRINTF(4, 5);

static char *
sign_claims(
    ash_jwt_alg alg, const void *key, size_t keylen, const char *fmt, ...)
{
	va_list ap;
	char    json[1024];
	cJSON  *claims;
	char   *tok = NULL;

	va_start(ap, fmt);
	vsnprintf(json, sizeof(json), fmt, ap);
	va_end(ap);
	claims = cJSON_Parse(json);
	ASH_T_NOT_NULL(claims);
	ASH_T_OK(ash_jwt_sign(alg, key, keylen, claims, &tok));
	cJSON_Delete(claims);
	return tok;
}

/* An HS256 token with our secret, iss and aud, and the given extra claims
 * (leading comma included). */
#define HS_TOKEN(extra)                                                     \
	sign_claims(ASH_JWT_HS256, SECRET, strlen(SECRET),                  \
	    "{\"sub\":\"u1\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\"" extra \
	    "}")

static void
expect_ok(
    const char *tok, const void *key, size_t keylen, const ash_jwt_expect *e)
{
	cJSON      *claims = NULL;
	const char *why    = NULL;
	ash_err     rv = ash_jwt_verify(tok, key, keylen, e, &claims, &why);

	if (rv != ASH_OK)
		ASH_T_FAILF("verify: %s (%s)", ash_strerror(rv),
		    why ? why : "no reason");
	ASH_T_TRUE(cJSON_IsObject(claims));
	cJSON_Delete(claims);
}

static void
expect_reject(const char *tok, const void *key, size_t keylen,
    const ash_jwt_expect *e, const char *reason)
{
	cJSON      *claims = (cJSON *) &claims; /* must stay untouched */
	const char *why    = NULL;

	ASH_T_ERR(
	    ash_jwt_verify(tok, key, keylen, e, &claims, &why), ASH_EUNAUTH);
	ASH_T_TRUE(claims == (cJSON *) &claims);
	ASH_T_EQ_STR(why, reason);
}

static char *
make_token(const char *header, const char *payload, const char *sig)
{
	char *h = ash_b64url_encode(header, strlen(header));
	char *p = ash_b64url_encode(payload, strlen(payload));
	char *t = ash_xasprintf("%s.%s.%s", h, p, sig);

	free(h);
	free(p);
	return t;
}

/* header.payload with an HS256 MAC under key: what an attacker can mint. */
static char *
make_hs256(const char *header, const char *payload, const char *key)
{
	char   *unsigned_tok = make_token(header, payload, "");
	size_t  len          = strlen(unsigned_tok) - 1; /* without the '.' */
	uint8_t mac[ASH_SHA256_LEN];
	char   *sig, *t;

	ash_hmac_sha256(key, strlen(key), unsigned_tok, len, mac);
	sig = ash_b64url_encode(mac, sizeof(mac));
	t   = ash_xasprintf("%.*s.%s", (int) len, unsigned_tok, sig);
	free(sig);
	free(unsigned_tok);
	return t;
}

ASH_TEST(hs256_sign_verify_round_trip)
{
	ash_jwt_expect e = our_expect();
	char       *tok  = HS_TOKEN(",\"exp\":1700000300,\"iat\":1700000000");
	cJSON      *claims = NULL, *hdr = NULL;
	const char *why = NULL;

	ASH_T_OK(ash_jwt_peek_header(tok, &hdr));
	ASH_T_EQ_STR(cJSON_GetObjectItem(hdr, "alg")->valuestring, "HS256");
	ASH_T_EQ_STR(cJSON_GetObjectItem(hdr, "typ")->valuestring, "JWT");
	cJSON_Delete(hdr);
	ASH_T_OK(
	    ash_jwt_verify(tok, SECRET, strlen(SECRET), &e, &claims, &why));
	ASH_T_EQ_STR(cJSON_GetObjectItem(claims, "sub")->valuestring, "u1");
	ASH_T_EQ_INT(
	    cJSON_GetObjectItem(claims, "exp")->valuedouble, 1700000300);
	cJSON_Delete(claims);
	free(tok);
}

ASH_TEST(sign_rejects_bad_input)
{
	cJSON *arr = cJSON_CreateArray(), *obj = cJSON_CreateObject();
	char  *tok = (char *) "untouched";

	ASH_T_ERR(
	    ash_jwt_sign(ASH_JWT_HS256, SECRET, 32, arr, &tok), ASH_EINVAL);
	ASH_T_ERR(
	    ash_jwt_sign(ASH_JWT_HS256, SECRET, 32, NULL, &tok), ASH_EINVAL);
	ASH_T_ERR(ash_jwt_sign(ASH_JWT_HS256, NULL, 0, obj, &tok), ASH_EINVAL);
	/* RS256 needs a private key PEM, not a secret or a public key. */
	ASH_T_ERR(
	    ash_jwt_sign(ASH_JWT_RS256, SECRET, 32, obj, &tok), ASH_EINVAL);
	ASH_T_ERR(ash_jwt_sign(ASH_JWT_RS256, google_pem, strlen(google_pem),
	              obj, &tok),
	    ASH_EINVAL);
	ASH_T_EQ_STR(tok, "untouched");
	cJSON_Delete(arr);
	cJSON_Delete(obj);
}

/* PEM text of a fresh key pair: *priv for signing, *pub for verifying. */
static void
keypair_pem(EVP_PKEY *k, char **priv, char **pub)
{
	BIO  *b = BIO_new(BIO_s_mem());
	char *p;
	long  n;

	ASH_T_NOT_NULL(k);
	ASH_T_TRUE(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL));
	n     = BIO_get_mem_data(b, &p);
	*priv = ash_xstrndup(p, (size_t) n);
	BIO_free(b);
	b = BIO_new(BIO_s_mem());
	ASH_T_TRUE(PEM_write_bio_PUBKEY(b, k));
	n    = BIO_get_mem_data(b, &p);
	*pub = ash_xstrndup(p, (size_t) n);
	BIO_free(b);
	EVP_PKEY_free(k);
}

static void
asym_round_trip(ash_jwt_alg alg, EVP_PKEY *k, EVP_PKEY *other)
{
	ash_jwt_expect e = our_expect();
	char          *priv, *pub, *opriv, *opub, *tok;

	keypair_pem(k, &priv, &pub);
	keypair_pem(other, &opriv, &opub);
	e.alg = alg;
	tok   = sign_claims(alg, priv, strlen(priv),
	      "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld}",
	      NOW + 60);
	expect_ok(tok, pub, strlen(pub), &e);
	expect_reject(tok, opub, strlen(opub), &e, "bad signature");
	e.alg = ASH_JWT_HS256;
	expect_reject(tok, pub, strlen(pub), &e, "alg mismatch");
	free(tok);
	free(priv);
	free(pub);
	free(opriv);
	free(opub);
}

ASH_TEST(rs256_sign_verify_round_trip)
{
	asym_round_trip(ASH_JWT_RS256,
	    EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048),
	    EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048));
}

ASH_TEST(es256_sign_verify_round_trip)
{
	asym_round_trip(ASH_JWT_ES256,
	    EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"),
	    EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
}

ASH_TEST(alg_none_rejected)
{
	ash_jwt_expect e   = our_expect();
	char          *tok = make_token("{\"alg\":\"none\",\"typ\":\"JWT\"}",
	             "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1700000300}",
	             "");
	jwt_t         *j   = NULL;

	expect_reject(tok, SECRET, strlen(SECRET), &e, "alg mismatch");
	/* libjwt alone, given no key, takes it: so we never pass none. */
	ASH_T_EQ_INT(jwt_decode(&j, tok, NULL, 0), 0);
	ASH_T_EQ_INT(jwt_get_alg(j), JWT_ALG_NONE);
	jwt_free(j);
	expect_reject(tok, NULL, 0, &e, "no key");
	free(tok);
}

ASH_TEST(hs256_keyed_with_rsa_public_key_rejected)
{
	/* The classic confusion: the attacker MACs with the server's public
	 * RSA key, which the server hands to the verifier as "the key". */
	ash_jwt_expect e = google_expect(G_IAT + 60);
	char  *tok = sign_claims(ASH_JWT_HS256, google_pem, strlen(google_pem),
	     "{\"iss\":\"https://accounts.google.com\",\"aud\":\"" G_CLIENT
	     "\",\"sub\":\"attacker\",\"exp\":%lld}",
	     G_EXP);
	jwt_t *j   = NULL;

	/* libjwt 1.10 alone accepts it: the check is ours. */
	ASH_T_EQ_INT(jwt_decode(&j, tok, (const unsigned char *) google_pem,
	                 (int) strlen(google_pem)),
	    0);
	ASH_T_EQ_INT(jwt_get_alg(j), JWT_ALG_HS256);
	jwt_free(j);
	expect_reject(tok, google_pem, strlen(google_pem), &e, "alg mismatch");
	free(tok);
}

ASH_TEST(duplicate_alg_header_rejected)
{
	/* cJSON reads the first "alg", libjwt's jansson the last: a header
	 * that says both must not pass either check. */
	ash_jwt_expect e = google_expect(G_IAT + 60);
	char          *tok =
	    make_hs256("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"alg\":\"HS256\"}",
	        "{\"iss\":\"accounts.google.com\",\"aud\":\"" G_CLIENT
	        "\",\"exp\":1736938800}",
	        google_pem);

	expect_reject(
	    tok, google_pem, strlen(google_pem), &e, "malformed header");
	free(tok);
}

ASH_TEST(expired_rejected_within_leeway_accepted)
{
	ash_jwt_expect e   = our_expect();
	char          *tok = HS_TOKEN(",\"exp\":1699999990"); /* NOW - 10 */

	expect_reject(tok, SECRET, strlen(SECRET), &e, "expired");
	e.leeway_s = 10; /* now == exp + leeway is already too late */
	expect_reject(tok, SECRET, strlen(SECRET), &e, "expired");
	e.leeway_s = 11;
	expect_ok(tok, SECRET, strlen(SECRET), &e);
	free(tok);
	tok        = HS_TOKEN(",\"exp\":1700000000"); /* exp == now */
	e.leeway_s = 0;
	expect_reject(tok, SECRET, strlen(SECRET), &e, "expired");
	e.now = NOW - 1;
	expect_ok(tok, SECRET, strlen(SECRET), &e);
	free(tok);
}

ASH_TEST(nbf_in_future_rejected)
{
	ash_jwt_expect e = our_expect();
	char *tok        = HS_TOKEN(",\"exp\":1700000600,\"nbf\":1700000060");

	expect_reject(tok, SECRET, strlen(SECRET), &e, "not yet valid");
	e.leeway_s = 59;
	expect_reject(tok, SECRET, strlen(SECRET), &e, "not yet valid");
	e.leeway_s = 60;
	expect_ok(tok, SECRET, strlen(SECRET), &e);
	e.leeway_s = 0;
	e.now      = NOW + 60;
	expect_ok(tok, SECRET, strlen(SECRET), &e);
	free(tok);
}

ASH_TEST(iat_in_future_rejected)
{
	ash_jwt_expect e = our_expect();
	char *tok        = HS_TOKEN(",\"exp\":1700000600,\"iat\":1700000030");

	expect_reject(tok, SECRET, strlen(SECRET), &e, "issued in the future");
	e.leeway_s = 30;
	expect_ok(tok, SECRET, strlen(SECRET), &e);
	free(tok);
}

ASH_TEST(time_claims_must_be_numbers)
{
	ash_jwt_expect e   = our_expect();
	char          *tok = HS_TOKEN(",\"exp\":\"1700000600\"");

	expect_reject(tok, SECRET, strlen(SECRET), &e, "malformed time claim");
	free(tok);
	tok = HS_TOKEN(",\"exp\":1700000600,\"nbf\":null");
	expect_reject(tok, SECRET, strlen(SECRET), &e, "malformed time claim");
	free(tok);
}

ASH_TEST(missing_exp_rejected_when_required)
{
	ash_jwt_expect e   = our_expect();
	char          *tok = HS_TOKEN("");

	expect_reject(tok, SECRET, strlen(SECRET), &e, "missing exp");
	e.require_exp = false;
	expect_ok(tok, SECRET, strlen(SECRET), &e);
	free(tok);
}

ASH_TEST(wrong_aud_rejected)
{
	ash_jwt_expect e   = our_expect();
	char          *tok = sign_claims(ASH_JWT_HS256, SECRET, strlen(SECRET),
	             "{\"iss\":\"" ISS "\",\"aud\":\"other\",\"exp\":%lld}", NOW + 60);

	expect_reject(tok, SECRET, strlen(SECRET), &e, "wrong audience");
	e.aud = NULL; /* not checked */
	expect_ok(tok, SECRET, strlen(SECRET), &e);
	free(tok);
	e.aud = AUD;
	tok   = sign_claims(ASH_JWT_HS256, SECRET, strlen(SECRET),
	      "{\"iss\":\"" ISS "\",\"exp\":%lld}", NOW + 60);
	expect_reject(tok, SECRET, strlen(SECRET), &e, "wrong audience");
	free(tok);
	/* A prefix or a number is not the audience. */
	tok = sign_claims(ASH_JWT_HS256, SECRET, strlen(SECRET),
	    "{\"iss\":\"" ISS "\",\"aud\":\"ashoon\",\"exp\":%lld}", NOW + 60);
	expect_reject(tok, SECRET, strlen(SECRET), &e, "wrong audience");
	free(tok);
}

ASH_TEST(aud_array_containing_expected_accepted)
{
	ash_jwt_expect e   = our_expect();
	char          *tok = sign_claims(ASH_JWT_HS256, SECRET, strlen(SECRET),
	             "{\"iss\":\"" ISS "\",\"aud\":[\"other\",1,\"" AUD
	             "\"],\"exp\":%lld}",
	             NOW + 60);

	expect_ok(tok, SECRET, strlen(SECRET), &e);
	free(tok);
	tok = sign_claims(ASH_JWT_HS256, SECRET, strlen(SECRET),
	    "{\"iss\":\"" ISS "\",\"aud\":[\"other\",\"x\"],\"exp\":%lld}",
	    NOW + 60);
	expect_reject(tok, SECRET, strlen(SECRET), &e, "wrong audience");
	free(tok);
	tok = sign_claims(ASH_JWT_HS256, SECRET, strlen(SECRET),
	    "{\"iss\":\"" ISS "\",\"aud\":[],\"exp\":%lld}", NOW + 60);
	expect_reject(tok, SECRET, strlen(SECRET), &e, "wrong audience");
	free(tok);
}

ASH_TEST(wrong_iss_rejected)
{
	ash_jwt_expect e   = our_expect();
	char          *tok = sign_claims(ASH_JWT_HS256, SECRET, strlen(SECRET),
	             "{\"iss\":\"https://evil.example\",\"aud\":\"" AUD
	             "\",\"exp\":%lld}",
	             NOW + 60);

	expect_reject(tok, SECRET, strlen(SECRET), &e, "wrong issuer");
	e.iss = NULL; /* not checked */
	expect_ok(tok, SECRET, strlen(SECRET), &e);
	free(tok);
	e.iss = our_issuers;
	tok   = sign_claims(ASH_JWT_HS256, SECRET, strlen(SECRET),
	      "{\"aud\":\"" AUD "\",\"exp\":%lld}", NOW + 60);
	expect_reject(tok, SECRET, strlen(SECRET), &e, "missing issuer");
	free(tok);
}

ASH_TEST(bad_signature_rejected)
{
	ash_jwt_expect e   = our_expect();
	char          *tok = HS_TOKEN(",\"exp\":1700000600");
	char          *forged;
	size_t         len = strlen(tok);

	expect_reject(tok, "wrong-secret", 12, &e, "bad signature");
	/* Same signature over a payload with a changed claim. */
	forged = make_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
	    "{\"sub\":\"admin\",\"iss\":\"" ISS "\",\"aud\":\"" AUD
	    "\",\"exp\":1700000600}",
	    strrchr(tok, '.') + 1);
	expect_reject(forged, SECRET, strlen(SECRET), &e, "bad signature");
	free(forged);
	/* Signature stripped, or its first character changed. */
	forged = ash_xstrndup(tok, (size_t) (strrchr(tok, '.') - tok + 1));
	expect_reject(forged, SECRET, strlen(SECRET), &e, "bad signature");
	free(forged);
	forged           = ash_xstrdup(tok);
	forged[len - 43] = forged[len - 43] == 'A' ? 'B' : 'A';
	expect_reject(forged, SECRET, strlen(SECRET), &e, "bad signature");
	free(forged);
	expect_ok(tok, SECRET, strlen(SECRET), &e);
	free(tok);
}

ASH_TEST(malformed_tokens_rejected)
{
	ash_jwt_expect e = our_expect();
	char           huge[16400];
	char          *tok = HS_TOKEN(",\"exp\":1700000600");
	char          *t;

	expect_reject(NULL, SECRET, 32, &e, "malformed token");
	expect_reject("", SECRET, 32, &e, "malformed token");
	expect_reject("abc", SECRET, 32, &e, "malformed token");
	expect_reject("a.b", SECRET, 32, &e, "malformed token");
	expect_reject(".b.c", SECRET, 32, &e, "malformed token");
	expect_reject("a..c", SECRET, 32, &e, "malformed token");
	t = ash_xasprintf("%s.x", tok); /* four segments */
	expect_reject(t, SECRET, 32, &e, "malformed token");
	free(t);
	expect_reject("e30.e30.", SECRET, 32, &e, "alg mismatch"); /* {} */
	expect_reject("!!!.e30.", SECRET, 32, &e, "malformed header");
	expect_reject("W10.e30.", SECRET, 32, &e, "malformed header"); /* [] */
	/* {"alg":"HS256"}x : trailing garbage after the object */
	expect_reject(
	    "eyJhbGciOiJIUzI1NiJ9eA.e30.", SECRET, 32, &e, "malformed header");
	t = make_hs256("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
	    "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1700000600}",
	    SECRET);
	expect_reject(t, SECRET, 32, &e, "unsupported crit header");
	free(t);
	/* Correctly signed, but the claims are not an object. */
	t = make_hs256("{\"alg\":\"HS256\"}", "[1]", SECRET);
	expect_reject(t, SECRET, 32, &e, "malformed payload");
	free(t);
	memset(huge, 'A', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	memcpy(huge, tok, strlen(tok));
	expect_reject(huge, SECRET, 32, &e, "malformed token");
	expect_reject(tok, SECRET, 0, &e, "no key");
	free(tok);
}

ASH_TEST(payload_with_duplicate_claim_rejected)
{
	ash_jwt_expect e = our_expect();
	char          *t = make_hs256("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
	             "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"aud\":\"x\","
	                      "\"exp\":1700000600}",
	             SECRET);
	cJSON         *claims;
	const char    *why = NULL;

	/* libjwt may refuse it first; either way it must not pass. */
	ASH_T_ERR(
	    ash_jwt_verify(t, SECRET, 32, &e, &claims, &why), ASH_EUNAUTH);
	ASH_T_NOT_NULL(why);
	free(t);
}

ASH_TEST(google_id_token_vector_verifies)
{
	ash_jwt_expect e      = google_expect(G_IAT + 1800);
	cJSON         *claims = NULL;
	const char    *why    = NULL;

	ASH_T_OK(ash_jwt_verify(
	    google_token, google_pem, strlen(google_pem), &e, &claims, &why));
	ASH_T_EQ_STR(cJSON_GetObjectItem(claims, "sub")->valuestring,
	    "110169484474386276334");
	ASH_T_EQ_STR(cJSON_GetObjectItem(claims, "email")->valuestring,
	    "dana@example.com");
	ASH_T_EQ_STR(cJSON_GetObjectItem(claims, "nonce")->valuestring,
	    "0394852-3190485-2490358");
	ASH_T_TRUE(
	    cJSON_IsTrue(cJSON_GetObjectItem(claims, "email_verified")));
	ASH_T_EQ_INT(cJSON_GetObjectItem(claims, "iat")->valuedouble, G_IAT);
	cJSON_Delete(claims);
	/* Whole valid window: [iat, exp), plus the 60 s skew at each end. */
	e.now = G_IAT;
	expect_ok(google_token, google_pem, strlen(google_pem), &e);
	e.now = G_IAT - 60;
	expect_ok(google_token, google_pem, strlen(google_pem), &e);
	e.now = G_EXP + 59;
	expect_ok(google_token, google_pem, strlen(google_pem), &e);
}

ASH_TEST(google_id_token_outside_window_rejected)
{
	ash_jwt_expect e = google_expect(G_EXP + 60);

	expect_reject(
	    google_token, google_pem, strlen(google_pem), &e, "expired");
	e.leeway_s = 0;
	e.now      = G_EXP;
	expect_reject(
	    google_token, google_pem, strlen(google_pem), &e, "expired");
	e.leeway_s = 60;
	e.now      = G_IAT - 61;
	expect_reject(google_token, google_pem, strlen(google_pem), &e,
	    "issued in the future");
	/* now = 0 means the real clock, long after this token expired. */
	e.now = 0;
	expect_reject(
	    google_token, google_pem, strlen(google_pem), &e, "expired");
}

ASH_TEST(google_legacy_iss_accepted)
{
	static const char *const https_only[] = {
	    "https://accounts.google.com", NULL};
	ash_jwt_expect e = google_expect(G_IAT + 1800);

	expect_ok(google_legacy_iss, google_pem, strlen(google_pem), &e);
	e.iss = https_only; /* proves iss is what decided it */
	expect_reject(google_legacy_iss, google_pem, strlen(google_pem), &e,
	    "wrong issuer");
}

ASH_TEST(google_wrong_aud_rejected)
{
	ash_jwt_expect e = google_expect(G_IAT + 1800);

	expect_reject(google_wrong_aud, google_pem, strlen(google_pem), &e,
	    "wrong audience");
	e.aud = NULL; /* the signature itself is good */
	expect_ok(google_wrong_aud, google_pem, strlen(google_pem), &e);
}

ASH_TEST(google_alg_none_rejected)
{
	ash_jwt_expect e = google_expect(G_IAT + 1800);

	expect_reject(google_alg_none, google_pem, strlen(google_pem), &e,
	    "alg mismatch");
	e.alg = ASH_JWT_HS256;
	expect_reject(google_alg_none, google_pem, strlen(google_pem), &e,
	    "alg mismatch");
}

ASH_TEST(google_tampered_token_rejected)
{
	ash_jwt_expect e   = google_expect(G_IAT + 1800);
	char          *tok = ash_xstrdup(google_token);
	char          *sig = strrchr(tok, '.') + 1;

	sig[0] = sig[0] == 'T' ? 'U' : 'T';
	expect_reject(
	    tok, google_pem, strlen(google_pem), &e, "bad signature");
	free(tok);
	/* The right token with an expectation of HS256 never reaches
	 * libjwt. */
	e.alg = ASH_JWT_HS256;
	expect_reject(
	    google_token, google_pem, strlen(google_pem), &e, "alg mismatch");
}

ASH_TEST(peek_header_reads_kid)
{
	cJSON *h         = NULL;
	cJSON *untouched = (cJSON *) &h;

	ASH_T_OK(ash_jwt_peek_header(google_token, &h));
	ASH_T_EQ_STR(cJSON_GetObjectItem(h, "kid")->valuestring,
	    "4f1c2b7e9a0d3c6b8e5f2a1d7c9b0e3f6a2d8c5b");
	ASH_T_EQ_STR(cJSON_GetObjectItem(h, "alg")->valuestring, "RS256");
	cJSON_Delete(h);
	ASH_T_OK(ash_jwt_peek_header(google_alg_none, &h));
	ASH_T_EQ_STR(cJSON_GetObjectItem(h, "alg")->valuestring, "none");
	cJSON_Delete(h);
	h = untouched;
	ASH_T_ERR(ash_jwt_peek_header("not a jwt", &h), ASH_EINVAL);
	ASH_T_ERR(ash_jwt_peek_header("W10.e30.", &h), ASH_EINVAL);
	ASH_T_ERR(ash_jwt_peek_header("e30", &h), ASH_EINVAL);
	ASH_T_ERR(ash_jwt_peek_header(NULL, &h), ASH_EINVAL);
	ASH_T_TRUE(h == untouched);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(hs256_sign_verify_round_trip),
    ASH_TEST_ENTRY(sign_rejects_bad_input),
    ASH_TEST_ENTRY(rs256_sign_verify_round_trip),
    ASH_TEST_ENTRY(es256_sign_verify_round_trip),
    ASH_TEST_ENTRY(alg_none_rejected),
    ASH_TEST_ENTRY(hs256_keyed_with_rsa_public_key_rejected),
    ASH_TEST_ENTRY(duplicate_alg_header_rejected),
    ASH_TEST_ENTRY(expired_rejected_within_leeway_accepted),
    ASH_TEST_ENTRY(nbf_in_future_rejected),
    ASH_TEST_ENTRY(iat_in_future_rejected),
    ASH_TEST_ENTRY(time_claims_must_be_numbers),
    ASH_TEST_ENTRY(missing_exp_rejected_when_required),
    ASH_TEST_ENTRY(wrong_aud_rejected),
    ASH_TEST_ENTRY(aud_array_containing_expected_accepted),
    ASH_TEST_ENTRY(wrong_iss_rejected), ASH_TEST_ENTRY(bad_signature_rejected),
    ASH_TEST_ENTRY(malformed_tokens_rejected),
    ASH_TEST_ENTRY(payload_with_duplicate_claim_rejected),
    ASH_TEST_ENTRY(google_id_token_vector_verifies),
    ASH_TEST_ENTRY(google_id_token_outside_window_rejected),
    ASH_TEST_ENTRY(google_legacy_iss_accepted),
    ASH_TEST_ENTRY(google_wrong_aud_rejected),
    ASH_TEST_ENTRY(google_alg_none_rejected),
    ASH_TEST_ENTRY(google_tampered_token_rejected),
    ASH_TEST_ENTRY(peek_header_reads_kid))
