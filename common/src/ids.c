/*
 * ids.c - row UUIDs and request ids from the OS CSPRNG.
 *
 * Ids are made of CSPRNG bytes (ash_random_bytes, which aborts if the
 * CSPRNG fails) drawn from a small per-thread pool, so any thread may
 * call them. Validators never look past the first byte that fails, so
 * they are safe on untrusted input.
 */
#include <ashoon/crypto.h>
#include <ashoon/ids.h>

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define UUID_STR_LEN  36
#define REQID_CHARS   20 /* 5 bits each: 100 random bits */
#define REQID_MAX_LEN 64 /* longest caller-supplied X-Request-Id kept */
#define POOL_LEN      512

/* Each RAND_bytes call makes a getpid syscall (OpenSSL 3 checks for a
 * fork), and meta-ingest made an id for every event it published, the
 * gateway one for every request. A thread now refills its pool once per
 * 30-odd ids. Bytes are wiped as they are handed out, and a
 * forked child starts with an empty pool, so it never repeats its
 * parent's ids (the child has only the forking thread, whose pool the
 * handler empties). */
static __thread uint8_t pool[POOL_LEN];
static __thread size_t  pool_left;
static pthread_once_t   pool_once = PTHREAD_ONCE_INIT;

static void
pool_forget(void)
{
	explicit_bzero(pool, sizeof(pool));
	pool_left = 0;
}

static void
pool_register(void)
{
	pthread_atfork(NULL, NULL, pool_forget);
}

static void
pool_take(uint8_t *out, size_t n)
{
	uint8_t *from;

	pthread_once(&pool_once, pool_register);
	if (pool_left < n) {
		ash_random_bytes(pool, sizeof(pool));
		pool_left = sizeof(pool);
	}
	from = pool + sizeof(pool) - pool_left;
	memcpy(out, from, n);
	explicit_bzero(from, n);
	pool_left -= n;
}

void
ash_id_uuid4(char out[ASH_UUID_LEN])
{
	static const char digits[] = "0123456789abcdef";
	uint8_t           b[16];
	char             *o = out;

	pool_take(b, sizeof(b));
	b[6] = (uint8_t) ((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t) ((b[8] & 0x3f) | 0x80); /* RFC 4122 variant 10xx */
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = digits[b[i] >> 4];
		*o++ = digits[b[i] & 0xf];
	}
	*o = '\0';
}

static bool
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

bool
ash_id_uuid_valid(const char *s)
{
	if (s == NULL)
		return false;
	for (int i = 0; i < UUID_STR_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		/* A short string fails here at its NUL, before any overrun. */
		if (dash ? s[i] != '-' : !is_hex(s[i]))
			return false;
	}
	return s[UUID_STR_LEN] == '\0';
}

void
ash_id_request(char out[ASH_REQID_LEN])
{
	static const char abc[] = "abcdefghijklmnopqrstuvwxyz234567";
	uint8_t           b[13]; /* 104 bits; the first 100 are used */
	unsigned          acc = 0, bits = 0;
	size_t            o = 2, i = 0;

	pool_take(b, sizeof(b));
	out[0] = 'r';
	out[1] = '-';
	while (o < 2 + REQID_CHARS) {
		if (bits < 5) {
			acc = (acc << 8 | b[i++]) & 0xfff;
			bits += 8;
		}
		bits -= 5;
		out[o++] = abc[(acc >> bits) & 31];
	}
	out[o] = '\0';
}

bool
ash_id_request_valid(const char *s)
{
	size_t n;

	if (s == NULL)
		return false;
	n = strspn(s,
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789._:-");
	return n >= 1 && n <= REQID_MAX_LEN && s[n] == '\0';
}
