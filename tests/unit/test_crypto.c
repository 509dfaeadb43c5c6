/* Unit tests: crypto (hashes, HMAC, codecs, keyring, sealed values). */
#include <ash_test.h>
#include <ashoon/crypto.h>

#include <ctype.h>

/* 32-byte test keys: bytes 0x00..0x1f and 0x20..0x3f. */
#define KEY_A "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define KEY_B "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
#define AAD   "meta-ingest/channel/42/token"

static void
expect_hex(const uint8_t *got, size_t n, const char *want)
{
	char *hex = ash_hex_encode(got, n);

	ASH_T_EQ_STR(hex, want);
	free(hex);
}

static void
expect_hmac(const void *key, size_t keylen, const void *data, size_t len,
    const char *want)
{
	uint8_t       mac[ASH_SHA256_LEN];
	ash_hmac_key *k = ash_hmac_key_new(key, keylen);

	ash_hmac_sha256(key, keylen, data, len, mac);
	expect_hex(mac, strlen(want) / 2, want);
	/* The key made ready once gives the same, and again when reused. */
	for (int i = 0; i < 2; i++) {
		memset(mac, 0, sizeof(mac));
		ash_hmac_key_mac(k, data, len, mac);
		expect_hex(mac, strlen(want) / 2, want);
	}
	ash_hmac_key_free(k);
}

ASH_TEST(hmac_sha256_rfc4231)
{
	uint8_t k[131], d[50];

	memset(k, 0x0b, 20); /* case 1 */
	expect_hmac(k, 20, "Hi There", 8,
	    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff"
	    "7");
	expect_hmac("Jefe", 4, "what do ya want for nothing?", 28, /* 2 */
	    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec384"
	    "3");
	memset(k, 0xaa, 20); /* case 3 */
	memset(d, 0xdd, 50);
	expect_hmac(k, 20, d, 50,
	    "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565f"
	    "e");
	for (int i = 0; i < 25; i++) /* case 4 */
		k[i] = (uint8_t) (i + 1);
	memset(d, 0xcd, 50);
	expect_hmac(k, 25, d, 50,
	    "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665"
	    "b");
	memset(k, 0x0c, 20); /* case 5, truncated to 128 bits */
	expect_hmac(k, 20, "Test With Truncation", 20,
	    "a3b6167473100ee06e0c796c2955552b");
	memset(k, 0xaa, 131); /* case 6 */
	expect_hmac(k, 131,
	    "Test Using Larger Than Block-Size Key - Hash Key First", 54,
	    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f5"
	    "4");
	expect_hmac(k, 131, /* case 7 */
	    "This is a test using a larger than block-size key and a larger "
	    "than block-size data. The key needs to be hashed before being "
	    "used by the HMAC algorithm.",
	    152,
	    "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e"
	    "2");
}

ASH_TEST(hmac_sha256_empty_key_and_data)
{
	/* Python: hmac.new(b"", b"", sha256).hexdigest() */
	expect_hmac(NULL, 0, NULL, 0,
	    "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5a"
	    "d");
	expect_hmac("", 0, "", 0,
	    "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5a"
	    "d");
}

ASH_TEST(hmac_key_reused_matches_one_shot)
{
	/* One key for many messages of every length around SHA-256's 64-byte
	 * block: each MAC starts from the key, never from the last one. */
	static const char secret[] = "e2c7d8dc5c1175703caca1c191405c1b";
	ash_hmac_key     *k        = ash_hmac_key_new(secret, strlen(secret));
	uint8_t           data[300], want[ASH_SHA256_LEN], got[ASH_SHA256_LEN];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t) (i * 7 + 3);
	for (size_t n = 0; n <= sizeof(data); n++) {
		size_t len =
		    n % 2 ? n : sizeof(data) - n; /* long, short, ... */
		ash_hmac_sha256(secret, strlen(secret), data, len, want);
		ash_hmac_key_mac(k, data, len, got);
		ASH_T_EQ_MEM(got, want, sizeof(got));
	}
	ash_hmac_key_free(k);
	ash_hmac_key_free(NULL);
}

ASH_TEST(hmac_meta_signed_request_vector)
{
	/* specs/vectors/meta-data-deletion-signed-request.txt */
	static const char secret[] = "3f6a1c9e8b7d4f20a5c1e9d7b3f8a6c2";
	static const char payload[] =
	    "eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjE3MzY5NDI0MDAs"
	    "Imlzc3VlZF9hdCI6MTczNjkzNTIwMCwidXNlcl9pZCI6IjcyNTQ5MTczMzgyMDE4"
	    "NDcifQ";
	uint8_t mac[ASH_SHA256_LEN];
	char   *sig;

	ash_hmac_sha256(secret, strlen(secret), payload, strlen(payload), mac);
	sig = ash_b64url_encode(mac, sizeof(mac));
	ASH_T_EQ_STR(sig, "hTdEtHv1au50LoY7VcrX8XnQVHGN6Vy9PumO8Mrbtx4");
	free(sig);
}

ASH_TEST(sha256_known_vectors)
{
	uint8_t     h[ASH_SHA256_LEN];
	char       *s;
	const char *verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
	const char *access =
	    "ya29.a0AfB_byTESTaccessTOKEN_0123456789abcdefghijklmnop";

	ash_sha256("abc", 3, h);
	expect_hex(h, sizeof(h),
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a"
	    "d");
	ash_sha256("", 0, h);
	expect_hex(h, sizeof(h),
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85"
	    "5");
	/* RFC 7636 appendix B: PKCE S256 challenge. */
	ash_sha256(verifier, strlen(verifier), h);
	s = ash_b64url_encode(h, sizeof(h));
	ASH_T_EQ_STR(s, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
	free(s);
	/* google-oidc.md: at_hash = b64url(left half of SHA-256). */
	ash_sha256(access, strlen(access), h);
	s = ash_b64url_encode(h, 16);
	ASH_T_EQ_STR(s, "xpkaMx34WQMKZL_RuyhBaw");
	free(s);
}

ASH_TEST(ct_equal_compares)
{
	uint8_t a[64], b[64];

	memset(a, 0x5a, sizeof(a));
	memcpy(b, a, sizeof(b));
	ASH_T_TRUE(ash_ct_equal(a, b, sizeof(a)));
	ASH_T_TRUE(ash_ct_equal(a, b, 0));
	for (size_t i = 0; i < sizeof(b); i += 21) {
		b[i] ^= 0x01; /* first, middle and last bytes all count */
		ASH_T_TRUE(!ash_ct_equal(a, b, sizeof(a)));
		b[i] ^= 0x01;
	}
	b[63] ^= 0x80;
	ASH_T_TRUE(!ash_ct_equal(a, b, sizeof(a)));
	ASH_T_TRUE(ash_ct_equal(a, b, 63));
}

ASH_TEST(random_bytes_are_fresh)
{
	uint8_t a[32] = {0}, b[32] = {0}, zero[32] = {0};

	ash_random_bytes(a, sizeof(a));
	ash_random_bytes(b, sizeof(b));
	ASH_T_TRUE(memcmp(a, zero, sizeof(a)) != 0);
	ASH_T_TRUE(memcmp(a, b, sizeof(a)) != 0);
	ash_random_bytes(a, 0); /* allowed, does nothing */
}

/* RFC 4648 §10 */
static const char *const rfc4648_in[] = {
    "", "f", "fo", "foo", "foob", "fooba", "foobar"};
static const char *const rfc4648_b64[] = {
    "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
static const char *const rfc4648_url[] = {
    "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
static const char *const rfc4648_hex[] = {
    "", "66", "666F", "666F6F", "666F6F62", "666F6F6261", "666F6F626172"};

typedef ash_err (*decode_fn)(const char *, size_t, uint8_t **, size_t *);

static void
expect_decode(decode_fn dec, const char *in, const char *want)
{
	uint8_t *out    = NULL;
	size_t   outlen = 0;

	ASH_T_OK(dec(in, strlen(in), &out, &outlen));
	ASH_T_EQ_INT(outlen, strlen(want));
	ASH_T_EQ_MEM(out, want, outlen);
	ASH_T_EQ_INT(out[outlen], '\0'); /* NUL-terminated for convenience */
	free(out);
}

static void
expect_reject(decode_fn dec, const char *in, size_t len)
{
	uint8_t *out    = (uint8_t *) "sentinel";
	size_t   outlen = 12345;

	if (dec(in, len, &out, &outlen) != ASH_EINVAL)
		ASH_T_FAILF("decoder accepted \"%.*s\"", (int) len, in);
	ASH_T_EQ_STR((char *) out, "sentinel"); /* untouched on error */
	ASH_T_EQ_INT(outlen, 12345);
}

ASH_TEST(b64_rfc4648_vectors)
{
	for (size_t i = 0; i < 7; i++) {
		char *s = ash_b64_encode(rfc4648_in[i], strlen(rfc4648_in[i]));
		ASH_T_EQ_STR(s, rfc4648_b64[i]);
		free(s);
		expect_decode(ash_b64_decode, rfc4648_b64[i], rfc4648_in[i]);
	}
}

ASH_TEST(b64url_rfc4648_vectors)
{
	for (size_t i = 0; i < 7; i++) {
		const char *in = rfc4648_in[i];
		char       *s  = ash_b64url_encode(in, strlen(in));
		ASH_T_EQ_STR(s, rfc4648_url[i]);
		free(s);
		/* Unpadded and padded spellings both decode. */
		expect_decode(ash_b64url_decode, rfc4648_url[i], in);
		expect_decode(ash_b64url_decode, rfc4648_b64[i], in);
	}
	/* The two alphabets differ exactly in 62 and 63. */
	char *s = ash_b64url_encode("\xfb\xff\xbf", 3);
	ASH_T_EQ_STR(s, "-_-_");
	free(s);
	s = ash_b64_encode("\xfb\xff\xbf", 3);
	ASH_T_EQ_STR(s, "+/+/");
	free(s);
	expect_decode(ash_b64url_decode, "-_-_", "\xfb\xff\xbf");
	expect_decode(ash_b64_decode, "+/+/", "\xfb\xff\xbf");
}

ASH_TEST(hex_rfc4648_vectors)
{
	for (size_t i = 0; i < 7; i++) {
		const char *in = rfc4648_in[i];
		char       *s  = ash_hex_encode(in, strlen(in));
		char        lower[16];
		size_t      j;

		for (j = 0; rfc4648_hex[i][j] != '\0'; j++)
			lower[j] = (char) tolower(rfc4648_hex[i][j]);
		lower[j] = '\0';
		ASH_T_EQ_STR(s, lower); /* encodes lower case */
		free(s);
		expect_decode(ash_hex_decode, rfc4648_hex[i], in);
		expect_decode(ash_hex_decode, lower, in);
	}
}

ASH_TEST(codecs_round_trip_all_lengths)
{
	uint8_t data[70];

	for (size_t len = 0; len <= sizeof(data); len++) {
		ash_random_bytes(data, len);
		char     *enc[3] = {ash_b64_encode(data, len),
		        ash_b64url_encode(data, len), ash_hex_encode(data, len)};
		decode_fn dec[3] = {
		    ash_b64_decode, ash_b64url_decode, ash_hex_decode};
		for (int k = 0; k < 3; k++) {
			uint8_t *out;
			size_t   outlen;
			ASH_T_OK(
			    dec[k](enc[k], strlen(enc[k]), &out, &outlen));
			ASH_T_EQ_INT(outlen, len);
			ASH_T_EQ_MEM(out, data, len);
			free(out);
			free(enc[k]);
		}
	}
}

ASH_TEST(b64_strict_rejections)
{
	static const char *const bad[] = {
	    "Zm9v!A==", /* character outside the alphabet */
	    "Zm9 v",    /* whitespace */
	    "Zm9v\n",   /* trailing newline */
	    "Zm-v",     /* base64url character in base64 */
	    "Zm_v",     /* base64url character in base64 */
	    "Zg",       /* padding required */
	    "Zg=",      /* padding incomplete */
	    "Zg===",    /* too much padding */
	    "Z===",     /* a lone 6-bit character */
	    "====",     /* padding only */
	    "=Zg=",     /* padding first */
	    "Zg==Zm8=", /* padding in the middle */
	    "Zm9vY",    /* not a whole quantum */
	    "Zh==",     /* non-zero trailing bits ("f" is "Zg==") */
	    "Zm9=",     /* non-zero trailing bits ("fo" is "Zm8=") */
	    "Zm9vYmF=", /* non-zero trailing bits */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_reject(ash_b64_decode, bad[i], strlen(bad[i]));
	expect_reject(ash_b64_decode, "Zm9v\0\0\0\0", 8); /* embedded NUL */
}

ASH_TEST(b64url_strict_rejections)
{
	static const char *const bad[] = {
	    "Zm9v+A", /* base64 character in base64url */
	    "Zm9v/A", /* base64 character in base64url */
	    "Zm9v.A", /* the JWT separator */
	    "Zm 9v",  /* whitespace */
	    "Z",      /* a lone 6-bit character */
	    "Zm9vY",  /* same, after a whole quantum */
	    "Zg=",    /* padding present but incomplete */
	    "Zm8==",  /* padding present but wrong */
	    "Zg===",  /* too much padding */
	    "Zg=A",   /* padding in the middle */
	    "Zh",     /* non-zero trailing bits */
	    "Zm9",    /* non-zero trailing bits */
	    "Zh==",   /* non-zero trailing bits, padded */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_reject(ash_b64url_decode, bad[i], strlen(bad[i]));
	expect_reject(ash_b64url_decode, "Zm9v\0A", 6);
}

ASH_TEST(hex_strict_rejections)
{
	static const char *const bad[] = {
	    "6", "666", "6g", "0x66", " 66", "66 ", "-1"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_reject(ash_hex_decode, bad[i], strlen(bad[i]));
	expect_reject(ash_hex_decode, "6\0", 2);
}

ASH_TEST(keyring_single_key_is_version_1)
{
	ash_keyring *kr  = NULL;
	const char  *why = NULL;

	ASH_T_OK(ash_keyring_parse(KEY_A, &kr, &why));
	ASH_T_EQ_INT(ash_keyring_current(kr), 1);
	ASH_T_TRUE(ash_keyring_has(kr, 1));
	ASH_T_TRUE(!ash_keyring_has(kr, 2));
	ash_keyring_free(kr);
	/* A key read from a file keeps its newline; that is tolerated. */
	ASH_T_OK(ash_keyring_parse(KEY_A "\n", &kr, &why));
	ASH_T_EQ_INT(ash_keyring_current(kr), 1);
	ash_keyring_free(kr);
	ash_keyring_free(NULL);
}

ASH_TEST(keyring_versions_highest_is_current)
{
	ash_keyring *kr;
	const char  *why;

	ASH_T_OK(ash_keyring_parse("1:" KEY_A ",2:" KEY_B, &kr, &why));
	ASH_T_EQ_INT(ash_keyring_current(kr), 2);
	ASH_T_TRUE(ash_keyring_has(kr, 1) && ash_keyring_has(kr, 2));
	ash_keyring_free(kr);
	ASH_T_OK(ash_keyring_parse("7:" KEY_B ", 3:" KEY_A, &kr, &why));
	ASH_T_EQ_INT(ash_keyring_current(kr), 7);
	ASH_T_TRUE(ash_keyring_has(kr, 3) && !ash_keyring_has(kr, 1));
	ash_keyring_free(kr);
	ASH_T_OK(ash_keyring_parse("65535:" KEY_A, &kr, &why));
	ASH_T_EQ_INT(ash_keyring_current(kr), 65535);
	ash_keyring_free(kr);
}

static void
expect_bad_spec(const char *spec, const char *reason)
{
	static char  sentinel;
	ash_keyring *kr  = (ash_keyring *) &sentinel;
	const char  *why = NULL;

	ASH_T_ERR(ash_keyring_parse(spec, &kr, &why), ASH_EINVAL);
	ASH_T_TRUE(kr == (ash_keyring *) &sentinel); /* untouched on error */
	ASH_T_EQ_STR(why, reason);
	/* The reason is safe to log: it never quotes the key. */
	ASH_T_NOT_CONTAINS(why, "AAEC");
	ASH_T_NOT_CONTAINS(why, "ICEi");
}

ASH_TEST(keyring_parse_errors)
{
	const char *length  = "key must be 32 bytes";
	const char *base64  = "key is not valid base64";
	const char *version = "key version is not 1..65535";

	expect_bad_spec("AAECAwQFBgcICQoLDA0ODw==", length); /* 16 bytes */
	expect_bad_spec("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",
	    length); /* 33 bytes */
	expect_bad_spec("2:AAECAwQFBgcICQoLDA0ODw==", length);
	expect_bad_spec("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
	    base64); /* padding missing */
	expect_bad_spec("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh-=",
	    base64); /* base64url character */
	expect_bad_spec(
	    "1:" KEY_A ",2:" KEY_B ",1:" KEY_B, "duplicate key version");
	expect_bad_spec("hello world", base64);
	expect_bad_spec(
	    KEY_A "," KEY_B, "several keys need N:BASE64 versions");
	expect_bad_spec("0:" KEY_A, version);
	expect_bad_spec("65536:" KEY_A, version);
	expect_bad_spec("01:" KEY_A, version);
	expect_bad_spec("-1:" KEY_A, version);
	expect_bad_spec("x:" KEY_A, version);
	expect_bad_spec(":" KEY_A, version);
	expect_bad_spec("1:", length);
	expect_bad_spec("1:" KEY_A ",", "entry is not N:BASE64");
	expect_bad_spec("1:" KEY_A ",," KEY_B, "entry is not N:BASE64");
	expect_bad_spec("", "no master key");
	expect_bad_spec(" \n", "no master key");
	expect_bad_spec(NULL, "no master key");
}

static ash_keyring *
ring(const char *spec)
{
	ash_keyring *kr  = NULL;
	const char  *why = NULL;

	ASH_T_OK(ash_keyring_parse(spec, &kr, &why));
	return kr;
}

static void
expect_open(const ash_keyring *kr, const char *aad, const char *sealed,
    const void *want, size_t n)
{
	uint8_t *pt    = NULL;
	size_t   ptlen = 0;

	ASH_T_OK(ash_crypto_unseal(kr, aad, sealed, &pt, &ptlen));
	ASH_T_EQ_INT(ptlen, n);
	ASH_T_EQ_MEM(pt, want, n);
	ASH_T_EQ_INT(pt[n], '\0');
	free(pt);
}

static void
expect_no_open(const ash_keyring *kr, const char *aad, const char *sealed)
{
	uint8_t *pt    = (uint8_t *) "sentinel";
	size_t   ptlen = 99;

	if (ash_crypto_unseal(kr, aad, sealed, &pt, &ptlen) != ASH_ECRYPTO)
		ASH_T_FAILF("unseal accepted \"%s\" (aad %s)", sealed, aad);
	ASH_T_EQ_STR((char *) pt, "sentinel");
	ASH_T_EQ_INT(ptlen, 99);
}

ASH_TEST(seal_unseal_round_trip)
{
	ash_keyring *kr    = ring(KEY_A);
	const char   bin[] = "a\0b\xff\x00z"; /* binary, with NULs */
	char        *s;

	ASH_T_OK(ash_crypto_seal(kr, AAD, "EAAG-page-token", 15, &s));
	ASH_T_EQ_INT(strncmp(s, "v1.", 3), 0);
	ASH_T_EQ_INT(ash_crypto_sealed_version(s), 1);
	ASH_T_NOT_CONTAINS(s, "=");
	/* iv 12 + ct 15 + tag 16 = 43 bytes = 58 base64url chars. */
	ASH_T_EQ_INT(strlen(s), 3 + 58);
	expect_open(kr, AAD, s, "EAAG-page-token", 15);
	free(s);
	ASH_T_OK(ash_crypto_seal(kr, AAD, bin, sizeof(bin), &s));
	expect_open(kr, AAD, s, bin, sizeof(bin));
	free(s);
	ASH_T_OK(ash_crypto_seal(kr, "", NULL, 0, &s));
	expect_open(kr, "", s, "", 0);
	free(s);
	ash_keyring_free(kr);
}

ASH_TEST(seal_known_answer_from_other_implementation)
{
	/* Python cryptography AESGCM, key KEY_A, iv bytes 100..111. */
	static const char sealed[] = "v1.ZGVmZ2hpamtsbW5vDVqfIVSZN_lbTyuHsQAE"
	                             "7RhF3ZDAGdSLnrlIXp8-nA";
	ash_keyring      *kr       = ring(KEY_A);

	expect_open(kr, AAD, sealed, "EAAG-page-token", 15);
	expect_no_open(kr, "meta-ingest/channel/43/token", sealed);
	ash_keyring_free(kr);
}

ASH_TEST(seal_uses_fresh_iv)
{
	ash_keyring *kr = ring(KEY_A);
	char        *a, *b;

	ASH_T_OK(ash_crypto_seal(kr, AAD, "same", 4, &a));
	ASH_T_OK(ash_crypto_seal(kr, AAD, "same", 4, &b));
	ASH_T_TRUE(strcmp(a, b) != 0);
	/* The IV (first 16 base64url chars = 12 bytes) differs. */
	ASH_T_TRUE(strncmp(a + 3, b + 3, 16) != 0);
	expect_open(kr, AAD, a, "same", 4);
	expect_open(kr, AAD, b, "same", 4);
	free(a);
	free(b);
	ash_keyring_free(kr);
}

ASH_TEST(seal_any_flipped_bit_fails)
{
	ash_keyring *kr = ring(KEY_A);
	char        *s;
	size_t       len;

	ASH_T_OK(ash_crypto_seal(kr, AAD, "EAAG-page-token", 15, &s));
	len = strlen(s);
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			s[i] ^= (char) (1 << bit);
			expect_no_open(kr, AAD, s);
			s[i] ^= (char) (1 << bit);
		}
	}
	expect_open(kr, AAD, s, "EAAG-page-token", 15); /* restored */
	/* Truncated or extended values fail too. */
	s[len - 1] = '\0';
	expect_no_open(kr, AAD, s);
	free(s);
	ash_keyring_free(kr);
}

ASH_TEST(seal_wrong_aad_fails)
{
	ash_keyring *kr = ring(KEY_A);
	char        *s;

	ASH_T_OK(ash_crypto_seal(kr, AAD, "secret", 6, &s));
	expect_no_open(kr, "meta-ingest/channel/43/token", s);
	expect_no_open(kr, "", s);
	expect_no_open(kr, AAD "x", s);
	expect_open(kr, AAD, s, "secret", 6);
	free(s);
	ash_keyring_free(kr);
}

ASH_TEST(seal_wrong_key_version_fails)
{
	ash_keyring *v1     = ring(KEY_A);
	ash_keyring *only2  = ring("2:" KEY_B);
	ash_keyring *other1 = ring("1:" KEY_B); /* same number, other key */
	char        *s;

	ASH_T_OK(ash_crypto_seal(v1, AAD, "secret", 6, &s));
	ASH_T_TRUE(!ash_keyring_has(only2, 1));
	expect_no_open(only2, AAD, s);
	expect_no_open(other1, AAD, s);
	/* Relabelling the value as v2 does not help either. */
	s[1] = '2';
	expect_no_open(only2, AAD, s);
	free(s);
	ash_keyring_free(v1);
	ash_keyring_free(only2);
	ash_keyring_free(other1);
}

ASH_TEST(keyring_rotation_opens_old_and_new)
{
	ash_keyring *old  = ring(KEY_A);
	ash_keyring *both = ring("1:" KEY_A ",2:" KEY_B);
	char        *s1, *s2;

	ASH_T_OK(ash_crypto_seal(old, AAD, "old", 3, &s1));
	ASH_T_OK(ash_crypto_seal(both, AAD, "new", 3, &s2));
	ASH_T_EQ_INT(ash_crypto_sealed_version(s1), 1);
	ASH_T_EQ_INT(ash_crypto_sealed_version(s2), 2);
	ASH_T_EQ_INT(strncmp(s2, "v2.", 3), 0);
	expect_open(both, AAD, s1, "old", 3);
	expect_open(both, AAD, s2, "new", 3);
	expect_no_open(old, AAD, s2); /* the old ring lacks v2 */
	free(s1);
	free(s2);
	ash_keyring_free(old);
	ash_keyring_free(both);
}

ASH_TEST(sealed_version_parses_canonical_form_only)
{
	ash_keyring *kr = ring(KEY_A);

	ASH_T_EQ_INT(ash_crypto_sealed_version("v1.AAAA"), 1);
	ASH_T_EQ_INT(ash_crypto_sealed_version("v65535.a-_Z"), 65535);
	ASH_T_EQ_INT(ash_crypto_sealed_version("v0.AAAA"), -1);
	ASH_T_EQ_INT(ash_crypto_sealed_version("v01.AAAA"), -1);
	ASH_T_EQ_INT(ash_crypto_sealed_version("v65536.AAAA"), -1);
	ASH_T_EQ_INT(ash_crypto_sealed_version("v.AAAA"), -1);
	ASH_T_EQ_INT(ash_crypto_sealed_version("V1.AAAA"), -1);
	ASH_T_EQ_INT(ash_crypto_sealed_version("v1."), -1);
	ASH_T_EQ_INT(ash_crypto_sealed_version("v1.AA=="), -1);
	ASH_T_EQ_INT(ash_crypto_sealed_version("v1.AA+/"), -1);
	ASH_T_EQ_INT(ash_crypto_sealed_version("v1"), -1);
	ASH_T_EQ_INT(ash_crypto_sealed_version("plaintext-token"), -1);
	ASH_T_EQ_INT(ash_crypto_sealed_version(""), -1);
	ASH_T_EQ_INT(ash_crypto_sealed_version(NULL), -1);
	/* Well-formed but too short to hold an IV and a tag. */
	expect_no_open(kr, AAD, "v1.AAAA");
	expect_no_open(kr, AAD, "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
	expect_no_open(kr, AAD, "");
	ash_keyring_free(kr);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(hmac_sha256_rfc4231),
    ASH_TEST_ENTRY(hmac_sha256_empty_key_and_data),
    ASH_TEST_ENTRY(hmac_key_reused_matches_one_shot),
    ASH_TEST_ENTRY(hmac_meta_signed_request_vector),
    ASH_TEST_ENTRY(sha256_known_vectors), ASH_TEST_ENTRY(ct_equal_compares),
    ASH_TEST_ENTRY(random_bytes_are_fresh),
    ASH_TEST_ENTRY(b64_rfc4648_vectors),
    ASH_TEST_ENTRY(b64url_rfc4648_vectors),
    ASH_TEST_ENTRY(hex_rfc4648_vectors),
    ASH_TEST_ENTRY(codecs_round_trip_all_lengths),
    ASH_TEST_ENTRY(b64_strict_rejections),
    ASH_TEST_ENTRY(b64url_strict_rejections),
    ASH_TEST_ENTRY(hex_strict_rejections),
    ASH_TEST_ENTRY(keyring_single_key_is_version_1),
    ASH_TEST_ENTRY(keyring_versions_highest_is_current),
    ASH_TEST_ENTRY(keyring_parse_errors),
    ASH_TEST_ENTRY(seal_unseal_round_trip),
    ASH_TEST_ENTRY(seal_known_answer_from_other_implementation),
    ASH_TEST_ENTRY(seal_uses_fresh_iv),
    ASH_TEST_ENTRY(seal_any_flipped_bit_fails),
    ASH_TEST_ENTRY(seal_wrong_aad_fails),
    ASH_TEST_ENTRY(seal_wrong_key_version_fails),
    ASH_TEST_ENTRY(keyring_rotation_opens_old_and_new),
    ASH_TEST_ENTRY(sealed_version_parses_canonical_form_only))
