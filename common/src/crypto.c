/*
 * crypto.c - hashes, MACs, encodings, the master keyring and sealed values.
 *
 * No shared state: any thread may call anything here, and a keyring is
 * read-only once parsed. An ash_hmac_key is the one object with running
 * state: one thread at a time. OpenSSL 3 EVP supplies the primitives. The
 * base64/hex codecs are our own because OpenSSL's (EVP_DecodeBlock) are
 * lenient: they skip whitespace and ignore trailing bits, so one signature or
 * key would have several accepted spellings. Ours accept exactly one.
 *
 * Key material is wiped with OPENSSL_cleanse before its memory is freed.
 * A failing OpenSSL hash, MAC or RAND call on valid arguments can only
 * mean allocation failure (or no entropy), which aborts as ash_xmalloc
 * does; sealing reports it as ASH_EINTERNAL instead.
 */
#include <ashoon/crypto.h>

#include <ctype.h>
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define GCM_IV_LEN      12
#define GCM_TAG_LEN     16
#define KEY_VERSION_MAX 65535
#define EVP_CHUNK       (1 << 30) /* EVP lengths are int: feed in chunks */

/* ---- hashes and MACs ------------------------------------------------ */

void
ash_sha256(const void *data, size_t len, uint8_t out[ASH_SHA256_LEN])
{
	int ok = EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL);

	ASH_ASSERT(ok == 1);
}

void
ash_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
    uint8_t out[ASH_SHA256_LEN])
{
	/* A NULL key makes OpenSSL skip setting it (and fail); an empty
	 * key is a valid, if weak, HMAC key. */
	const void    *k      = key != NULL ? key : "";
	const void    *d      = data != NULL ? data : "";
	size_t         outlen = 0;
	unsigned char *r;

	r = EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, k, keylen, d, len,
	    out, ASH_SHA256_LEN, &outlen);
	ASH_ASSERT(r != NULL && outlen == ASH_SHA256_LEN);
}

struct ash_hmac_key {
	EVP_MAC     *mac;
	EVP_MAC_CTX *ctx; /* keyed; initialised again for each MAC */
};

ash_hmac_key *
ash_hmac_key_new(const void *key, size_t keylen)
{
	ash_hmac_key *k = ash_xcalloc(1, sizeof(*k));
	OSSL_PARAM    params[2];

	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	/* As in ash_hmac_sha256: an empty key is "", not NULL (a NULL key
	 * would mean "keep the current one"). */
	k->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	k->ctx = k->mac != NULL ? EVP_MAC_CTX_new(k->mac) : NULL;
	ASH_ASSERT(k->ctx != NULL &&
	    EVP_MAC_init(k->ctx, key != NULL ? key : (const void *) "", keylen,
	        params) == 1);
	return k;
}

void
ash_hmac_key_mac(
    ash_hmac_key *k, const void *data, size_t len, uint8_t out[ASH_SHA256_LEN])
{
	const uint8_t *d      = data;
	size_t         outlen = 0;
	int            ok;

	/* No key: back to the keyed state without keying again. */
	ok = EVP_MAC_init(k->ctx, NULL, 0, NULL);
	do {
		size_t n = len < EVP_CHUNK ? len : EVP_CHUNK;
		ok       = ok && EVP_MAC_update(k->ctx, d, n);
		d += n;
		len -= n;
	} while (len > 0);
	ok = ok && EVP_MAC_final(k->ctx, out, &outlen, ASH_SHA256_LEN);
	ASH_ASSERT(ok && outlen == ASH_SHA256_LEN);
}

void
ash_hmac_key_free(ash_hmac_key *k)
{
	if (k == NULL)
		return;
	EVP_MAC_CTX_free(k->ctx);
	EVP_MAC_free(k->mac);
	free(k);
}

bool
ash_ct_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

void
ash_random_bytes(void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n > 0) {
		int chunk = n > EVP_CHUNK ? EVP_CHUNK : (int) n;
		int ok    = RAND_bytes(p, chunk);

		/* No entropy means no safe keys, IVs or ids: stop here. */
		ASH_ASSERT(ok == 1);
		p += chunk;
		n -= (size_t) chunk;
	}
}

/* ---- base64, base64url, hex ----------------------------------------- */

static const char b64_std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *
b64_encode(const uint8_t *p, size_t len, const char *abc, bool pad)
{
	ASH_ASSERT(len <= (SIZE_MAX - 8) / 4 * 3);
	char  *out = ash_xmalloc(len / 3 * 4 + 5);
	char  *o   = out;
	size_t i   = 0;

	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8 |
		    p[i + 2];
		*o++ = abc[v >> 18];
		*o++ = abc[v >> 12 & 63];
		*o++ = abc[v >> 6 & 63];
		*o++ = abc[v & 63];
	}
	if (i < len) {
		bool     two = i + 1 < len;
		uint32_t v   = (uint32_t) p[i] << 16 |
		    (two ? (uint32_t) p[i + 1] << 8 : 0);
		*o++ = abc[v >> 18];
		*o++ = abc[v >> 12 & 63];
		if (two)
			*o++ = abc[v >> 6 & 63];
		else if (pad)
			*o++ = '=';
		if (pad)
			*o++ = '=';
	}
	*o = '\0';
	return out;
}

char *
ash_b64_encode(const void *data, size_t len)
{
	return b64_encode(data, len, b64_std, true);
}

char *
ash_b64url_encode(const void *data, size_t len)
{
	return b64_encode(data, len, b64_url, false);
}

static int
b64_value(unsigned char c, bool url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	return -1;
}

/* Writes the 1 or 2 bytes of a final partial quantum of r (2 or 3) chars
 * held in acc. Bits beyond the data must be zero, else the same bytes
 * would have several spellings. */
static bool
b64_tail(uint32_t acc, size_t r, uint8_t *o)
{
	if (r == 2) {
		o[0] = (uint8_t) (acc >> 4);
		return (acc & 0xf) == 0;
	}
	o[0] = (uint8_t) (acc >> 10);
	o[1] = (uint8_t) (acc >> 2);
	return (acc & 0x3) == 0;
}

/* Decodes n alphabet characters (padding already stripped). */
static ash_err
b64_decode_chars(
    const char *s, size_t n, bool url, uint8_t **out, size_t *outlen)
{
	size_t   r   = n % 4;
	size_t   cap = n / 4 * 3 + (r ? r - 1 : 0);
	uint8_t *buf, *o;
	uint32_t acc = 0;

	if (r == 1)
		return ASH_EINVAL;
	o = buf = ash_xmalloc(cap + 1);
	for (size_t i = 0; i < n; i++) {
		int v = b64_value((unsigned char) s[i], url);
		if (v < 0)
			goto bad;
		acc = acc << 6 | (uint32_t) v;
		if (i % 4 == 3) {
			*o++ = (uint8_t) (acc >> 16);
			*o++ = (uint8_t) (acc >> 8);
			*o++ = (uint8_t) acc;
			acc  = 0;
		}
	}
	if (r != 0 && !b64_tail(acc, r, o))
		goto bad;
	buf[cap] = '\0';
	*out     = buf;
	*outlen  = cap;
	return ASH_OK;
bad:
	/* The input may be a key: leave no partial copy behind. */
	OPENSSL_cleanse(buf, cap + 1);
	free(buf);
	return ASH_EINVAL;
}

/* Sets *n to len minus the '=' padding, which is only valid as one or two
 * characters completing a 4-character quantum. */
static ash_err
b64_strip_pad(const char *s, size_t len, size_t *n)
{
	size_t pad = 0;

	while (pad < len && s[len - 1 - pad] == '=')
		pad++;
	if (pad > 2 || (pad > 0 && len % 4 != 0))
		return ASH_EINVAL;
	*n = len - pad;
	return ASH_OK;
}

ash_err
ash_b64_decode(const char *s, size_t len, uint8_t **out, size_t *outlen)
{
	size_t n;

	if (len % 4 != 0 || b64_strip_pad(s, len, &n) != ASH_OK)
		return ASH_EINVAL;
	return b64_decode_chars(s, n, false, out, outlen);
}

ash_err
ash_b64url_decode(const char *s, size_t len, uint8_t **out, size_t *outlen)
{
	size_t n;

	if (b64_strip_pad(s, len, &n) != ASH_OK)
		return ASH_EINVAL;
	return b64_decode_chars(s, n, true, out, outlen);
}

char *
ash_hex_encode(const void *data, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	const uint8_t    *p        = data;
	char             *out;

	ASH_ASSERT(len < SIZE_MAX / 2);
	out = ash_xmalloc(len * 2 + 1);
	for (size_t i = 0; i < len; i++) {
		out[2 * i]     = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 0xf];
	}
	out[len * 2] = '\0';
	return out;
}

static int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

ash_err
ash_hex_decode(const char *s, size_t len, uint8_t **out, size_t *outlen)
{
	uint8_t *buf;

	if (len % 2 != 0)
		return ASH_EINVAL;
	buf = ash_xmalloc(len / 2 + 1);
	for (size_t i = 0; i < len / 2; i++) {
		int hi = hex_value((unsigned char) s[2 * i]);
		int lo = hex_value((unsigned char) s[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			OPENSSL_cleanse(buf, len / 2 + 1);
			free(buf);
			return ASH_EINVAL;
		}
		buf[i] = (uint8_t) (hi << 4 | lo);
	}
	buf[len / 2] = '\0';
	*out         = buf;
	*outlen      = len / 2;
	return ASH_OK;
}

/* ---- keyring -------------------------------------------------------- */

typedef struct kr_key {
	int     version;              /* 1..65535 */
	uint8_t key[ASH_AES_KEY_LEN]; /* AES-256 key */
} kr_key;

struct ash_keyring {
	int    current; /* highest version: the one that seals */
	size_t n;       /* entries used in keys */
	size_t cap;     /* entries allocated (commas in the spec + 1) */
	kr_key keys[];  /* in spec order */
};

static const kr_key *
kr_find(const ash_keyring *kr, int version)
{
	for (size_t i = 0; i < kr->n; i++)
		if (kr->keys[i].version == version)
			return &kr->keys[i];
	return NULL;
}

/* Parses 1..5 decimal digits without a leading zero into 1..65535, so each
 * version has one spelling. Returns -1 on anything else. */
static int
parse_version(const char *s, size_t len)
{
	int v = 0;

	if (len == 0 || len > 5 || s[0] == '0')
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= KEY_VERSION_MAX ? v : -1;
}

static ash_err
kr_add(ash_keyring *kr, int version, const char *b64, size_t len,
    const char **why)
{
	uint8_t *key;
	size_t   keylen;

	if (kr_find(kr, version) != NULL) {
		*why = "duplicate key version";
		return ASH_EINVAL;
	}
	if (ash_b64_decode(b64, len, &key, &keylen) != ASH_OK) {
		*why = "key is not valid base64";
		return ASH_EINVAL;
	}
	if (keylen != ASH_AES_KEY_LEN) {
		OPENSSL_cleanse(key, keylen);
		free(key);
		*why = "key must be 32 bytes";
		return ASH_EINVAL;
	}
	ASH_ASSERT(kr->n < kr->cap);
	kr->keys[kr->n].version = version;
	memcpy(kr->keys[kr->n].key, key, ASH_AES_KEY_LEN);
	kr->n++;
	OPENSSL_cleanse(key, keylen);
	free(key);
	if (version > kr->current)
		kr->current = version;
	return ASH_OK;
}

/* Trims ASCII whitespace: a key read from a *_FILE usually ends in '\n'. */
static void
trim(const char **s, size_t *len)
{
	while (*len > 0 && isspace((unsigned char) (*s)[0])) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && isspace((unsigned char) (*s)[*len - 1]))
		(*len)--;
}

/* One "N:BASE64" entry of a versioned spec. */
static ash_err
kr_add_entry(ash_keyring *kr, const char *s, size_t len, const char **why)
{
	const char *colon;
	int         version;

	trim(&s, &len);
	colon = memchr(s, ':', len);
	if (colon == NULL) {
		*why = "entry is not N:BASE64";
		return ASH_EINVAL;
	}
	version = parse_version(s, (size_t) (colon - s));
	if (version < 0) {
		*why = "key version is not 1..65535";
		return ASH_EINVAL;
	}
	return kr_add(
	    kr, version, colon + 1, (size_t) (s + len - colon - 1), why);
}

static ash_err
kr_parse_into(ash_keyring *kr, const char *spec, const char **why)
{
	const char *p = spec;
	size_t      len;
	ash_err     rv;

	if (strchr(spec, ':') == NULL) {
		/* The bare form is one key, version 1. */
		if (strchr(spec, ',') != NULL) {
			*why = "several keys need N:BASE64 versions";
			return ASH_EINVAL;
		}
		len = strlen(spec);
		trim(&p, &len);
		return kr_add(kr, 1, p, len, why);
	}
	for (;;) {
		len = strcspn(p, ",");
		if ((rv = kr_add_entry(kr, p, len, why)) != ASH_OK)
			return rv;
		if (p[len] == '\0')
			return ASH_OK;
		p += len + 1;
	}
}

ash_err
ash_keyring_parse(const char *spec, ash_keyring **out, const char **why)
{
	const char  *reason = NULL;
	size_t       cap    = 1;
	ash_keyring *kr;

	if (spec == NULL || spec[strspn(spec, " \t\r\n")] == '\0') {
		if (why != NULL)
			*why = "no master key";
		return ASH_EINVAL;
	}
	for (const char *p = spec; *p != '\0'; p++)
		cap += *p == ',';
	kr      = ash_xcalloc(1, sizeof(*kr) + cap * sizeof(kr_key));
	kr->cap = cap;
	if (kr_parse_into(kr, spec, &reason) != ASH_OK) {
		ash_keyring_free(kr);
		if (why != NULL)
			*why = reason;
		return ASH_EINVAL;
	}
	*out = kr;
	return ASH_OK;
}

void
ash_keyring_free(ash_keyring *kr)
{
	if (kr == NULL)
		return;
	OPENSSL_cleanse(kr, sizeof(*kr) + kr->cap * sizeof(kr_key));
	free(kr);
}

int
ash_keyring_current(const ash_keyring *kr)
{
	return kr->current;
}

bool
ash_keyring_has(const ash_keyring *kr, int version)
{
	return kr_find(kr, version) != NULL;
}

/* ---- sealed values -------------------------------------------------- */

/* Runs AES-256-GCM over n bytes of in. Encrypting writes tag; decrypting
 * checks it. False on any failure, which when decrypting means the value
 * was not sealed with this key and aad (or was altered). */
static bool
gcm_run(bool enc, const uint8_t *key, const uint8_t *iv, const char *aad,
    const uint8_t *in, size_t n, uint8_t *out, uint8_t *tag)
{
	EVP_CIPHER_CTX *ctx    = EVP_CIPHER_CTX_new();
	size_t          aadlen = strlen(aad);
	int             outl;
	bool            ok;

	ASH_ASSERT(ctx != NULL && aadlen <= INT_MAX);
	ok =
	    EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv, enc) == 1;
	if (ok && !enc)
		ok = EVP_CIPHER_CTX_ctrl(
		         ctx, EVP_CTRL_GCM_SET_TAG, GCM_TAG_LEN, tag) == 1;
	if (ok)
		ok = EVP_CipherUpdate(ctx, NULL, &outl, (const uint8_t *) aad,
		         (int) aadlen) == 1;
	for (size_t off = 0; ok && off < n; off += EVP_CHUNK) {
		int len = n - off > EVP_CHUNK ? EVP_CHUNK : (int) (n - off);
		ok = EVP_CipherUpdate(ctx, out + off, &outl, in + off, len) ==
		    1;
	}
	/* GCM emits nothing at final; the tag check happens here. */
	ok = ok && EVP_CipherFinal_ex(ctx, out + n, &outl) == 1;
	if (ok && enc)
		ok = EVP_CIPHER_CTX_ctrl(
		         ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG_LEN, tag) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return ok;
}

ash_err
ash_crypto_seal(const ash_keyring *kr, const char *aad, const void *pt,
    size_t n, char **out)
{
	const kr_key *k = kr_find(kr, kr->current);
	size_t        rawlen;
	uint8_t      *raw;
	char         *b64;

	ASH_ASSERT(k != NULL && aad != NULL);
	ASH_ASSERT(n <= SIZE_MAX / 2 - GCM_IV_LEN - GCM_TAG_LEN);
	rawlen = GCM_IV_LEN + n + GCM_TAG_LEN;
	raw    = ash_xmalloc(rawlen);
	/* A fresh random IV per value: GCM must never reuse (key, IV). */
	ash_random_bytes(raw, GCM_IV_LEN);
	if (!gcm_run(true, k->key, raw, aad, pt, n, raw + GCM_IV_LEN,
	        raw + GCM_IV_LEN + n)) {
		free(raw);
		return ASH_EINTERNAL;
	}
	b64  = ash_b64url_encode(raw, rawlen);
	*out = ash_xasprintf("v%d.%s", k->version, b64);
	free(b64);
	free(raw);
	return ASH_OK;
}

/* Splits "v<version>.<base64url>" into the version (returned) and *body.
 * Only the canonical form passes: no leading zeros, no padding, a
 * non-empty body, so each sealed value has exactly one spelling. */
static int
sealed_parse(const char *s, const char **body)
{
	const char *dot;
	int         version;

	if (s == NULL || s[0] != 'v' || (dot = strchr(s, '.')) == NULL)
		return -1;
	version = parse_version(s + 1, (size_t) (dot - s - 1));
	if (version < 0 || dot[1] == '\0')
		return -1;
	for (const char *p = dot + 1; *p != '\0'; p++)
		if (b64_value((unsigned char) *p, true) < 0)
			return -1;
	*body = dot + 1;
	return version;
}

int
ash_crypto_sealed_version(const char *sealed)
{
	const char *body;

	return sealed_parse(sealed, &body);
}

ash_err
ash_crypto_unseal(const ash_keyring *kr, const char *aad, const char *sealed,
    uint8_t **pt, size_t *n)
{
	const char   *body;
	int           version = sealed_parse(sealed, &body);
	const kr_key *k       = version < 0 ? NULL : kr_find(kr, version);
	uint8_t      *raw, *out;
	size_t        rawlen, ctlen;

	ASH_ASSERT(aad != NULL);
	if (k == NULL ||
	    ash_b64url_decode(body, strlen(body), &raw, &rawlen) != ASH_OK)
		return ASH_ECRYPTO;
	if (rawlen < GCM_IV_LEN + GCM_TAG_LEN) {
		free(raw);
		return ASH_ECRYPTO;
	}
	ctlen = rawlen - GCM_IV_LEN - GCM_TAG_LEN;
	out   = ash_xmalloc(ctlen + 1);
	if (!gcm_run(false, k->key, raw, aad, raw + GCM_IV_LEN, ctlen, out,
	        raw + GCM_IV_LEN + ctlen)) {
		/* Unauthenticated plaintext must not linger in the heap. */
		OPENSSL_cleanse(out, ctlen + 1);
		free(out);
		free(raw);
		return ASH_ECRYPTO;
	}
	out[ctlen] = '\0';
	free(raw);
	*pt = out;
	*n  = ctlen;
	return ASH_OK;
}
