/*
 * ashoon/crypto.h - HMAC, constant-time compare, AES-256-GCM with a versioned
 * master key, base64/base64url/hex, random bytes. OpenSSL 3 EVP underneath.
 * All functions are pure or use only their arguments: any thread (an
 * ash_hmac_key, one thread at a time).
 *
 * Sealed values (tokens at rest) are text, so they store in a TEXT column
 * and survive pg_dump unchanged:
 *     "v<version>.<base64url(iv[12] || ciphertext || tag[16])>"
 * The AAD names what the value is (e.g. "meta-ingest/channel/<id>/token"),
 * so a sealed value copied into another row does not open.
 */
#ifndef ASHOON_CRYPTO_H
#define ASHOON_CRYPTO_H

#include <ashoon/err.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ASH_SHA256_LEN  32
#define ASH_AES_KEY_LEN 32

void ash_sha256(const void *data, size_t len, uint8_t out[ASH_SHA256_LEN]);
void ash_hmac_sha256(const void *key, size_t keylen, const void *data,
    size_t len, uint8_t out[ASH_SHA256_LEN]);

/* An HMAC-SHA256 key made ready once, for a secret that signs many
 * messages (a webhook's app secret). ash_hmac_sha256 has OpenSSL look the
 * algorithm up and key it at every call, about 45 % of its time for a
 * 1.6 KB body. The same results as ash_hmac_sha256 with the same key.
 * The exception to this header's rule: a key holds the running MAC's
 * state, so one thread at a time uses it. OpenSSL keeps the key material
 * (its pads), and wipes it when the key is freed. */
typedef struct ash_hmac_key ash_hmac_key;

ash_hmac_key *ash_hmac_key_new(const void *key, size_t keylen);
void          ash_hmac_key_mac(ash_hmac_key *k, const void *data, size_t len,
             uint8_t out[ASH_SHA256_LEN]);
void          ash_hmac_key_free(ash_hmac_key *k);

/* Constant time in n: compares a and b without early exit. */
bool ash_ct_equal(const void *a, const void *b, size_t n);

/* Fills buf from the OS CSPRNG (RAND_bytes); aborts if that fails. */
void ash_random_bytes(void *buf, size_t n);

/* Encoders return a new NUL-terminated string; free with free().
 * base64 is RFC 4648 §4 with padding; base64url is §5 without padding. */
char *ash_b64_encode(const void *data, size_t len);
char *ash_b64url_encode(const void *data, size_t len);
char *ash_hex_encode(const void *data, size_t len);

/* Strict decoders: any character outside the alphabet, bad padding, or
 * non-zero trailing bits is ASH_EINVAL. b64 requires correct padding;
 * b64url accepts it absent (and present). *out is malloc'd, NUL-terminated
 * for convenience (not counted in *outlen); free with free(). */
ash_err ash_b64_decode(
    const char *s, size_t len, uint8_t **out, size_t *outlen) ASH_MUSTCHECK;
ash_err ash_b64url_decode(
    const char *s, size_t len, uint8_t **out, size_t *outlen) ASH_MUSTCHECK;
ash_err ash_hex_decode(
    const char *s, size_t len, uint8_t **out, size_t *outlen) ASH_MUSTCHECK;

/* The master keys: one or more versions; the highest encrypts, all decrypt.
 * Spec (ASHOON_MASTER_KEY): "BASE64" (version 1), or comma-separated
 * "N:BASE64" entries, N in 1..65535, each key exactly 32 bytes. Whitespace
 * around an entry is ignored (a key file's trailing newline). */
typedef struct ash_keyring ash_keyring;

/* ASH_EINVAL with a reason (static string, names no key material) in *why
 * when the spec is malformed, a key is not 32 bytes or a version repeats. */
ash_err ash_keyring_parse(
    const char *spec, ash_keyring **out, const char **why) ASH_MUSTCHECK;
void ash_keyring_free(ash_keyring *kr); /* wipes keys; NULL is fine */
int  ash_keyring_current(const ash_keyring *kr);
bool ash_keyring_has(const ash_keyring *kr, int version);

/* Encrypts with the current key and a fresh random IV. *out: free().
 * aad must not be NULL. ASH_EINTERNAL only if OpenSSL itself fails. */
ash_err ash_crypto_seal(const ash_keyring *kr, const char *aad, const void *pt,
    size_t n, char **out) ASH_MUSTCHECK;

/* ASH_ECRYPTO if the value is malformed, its key version is not in the
 * ring, or authentication fails (tamper, wrong AAD, wrong key). *pt is
 * malloc'd and NUL-terminated (not counted in *n); free() it. */
ash_err ash_crypto_unseal(const ash_keyring *kr, const char *aad,
    const char *sealed, uint8_t **pt, size_t *n) ASH_MUSTCHECK;

/* Version of a sealed value, or -1 if it is not one. */
int ash_crypto_sealed_version(const char *sealed);

#endif
