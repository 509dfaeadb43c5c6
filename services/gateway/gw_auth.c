/*
 * gw_auth.c - API keys and the admin token.
 *
 * An API key reads "ash_<prefix>_<secret>": the prefix (12 hex) finds the
 * row, and only the SHA-256 of the whole key is stored, compared in
 * constant time. Keys carry 256 random bits, so a fast hash is the right
 * one (a slow KDF protects low-entropy passwords, not random keys).
 *
 * Verified keys are cached for ASHOON_KEY_CACHE_MS so a busy client costs
 * one query per interval, not one per request; a revoked key therefore
 * keeps working for at most that long on each gateway replica.
 */
#include "gw.h"

#include <ashoon/crypto.h>
#include <ashoon/db.h>

#include <stdlib.h>
#include <string.h>

#define KC_SLOTS 1024
#define KC_MAX   8192 /* entries; past this the cache starts over */

typedef struct kc_entry {
	struct kc_entry *next;
	char             hash[65];
	char             tenant[37];
	int64_t          expires_ms;
} kc_entry;

struct gw_keycache {
	kc_entry *slots[KC_SLOTS];
	int       count;
};

gw_keycache *
gw_keycache_new(void)
{
	return ash_xcalloc(1, sizeof(gw_keycache));
}

void
gw_keycache_free(gw_keycache *kc)
{
	if (kc == NULL)
		return;
	for (int i = 0; i < KC_SLOTS; i++) {
		while (kc->slots[i]) {
			kc_entry *e  = kc->slots[i];
			kc->slots[i] = e->next;
			free(e);
		}
	}
	free(kc);
}

static unsigned
kc_slot(const char *hash)
{
	unsigned h = 0;

	/* The key is already a SHA-256: its first hex digits are uniform. */
	for (int i = 0; i < 8; i++)
		h = h * 16 +
		    (unsigned) (hash[i] <= '9' ? hash[i] - '0'
		                               : hash[i] - 'a' + 10);
	return h & (KC_SLOTS - 1);
}

static const char *
kc_get(gw_keycache *kc, const char *hash, int64_t now)
{
	for (kc_entry *e = kc->slots[kc_slot(hash)]; e; e = e->next)
		if (strcmp(e->hash, hash) == 0 && e->expires_ms > now)
			return e->tenant;
	return NULL;
}

static void
kc_put(gw_keycache *kc, const char *hash, const char *tenant, int64_t now)
{
	kc_entry *e;
	unsigned  s = kc_slot(hash);

	if (kc->count >= KC_MAX) {
		for (int i = 0; i < KC_SLOTS; i++) {
			while (kc->slots[i]) {
				e            = kc->slots[i];
				kc->slots[i] = e->next;
				free(e);
			}
		}
		kc->count = 0;
	}
	e = ash_xcalloc(1, sizeof(*e));
	snprintf(e->hash, sizeof(e->hash), "%s", hash);
	snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
	e->expires_ms = now + gw_config.key_cache_ms;
	e->next       = kc->slots[s];
	kc->slots[s]  = e;
	kc->count++;
}

typedef struct key_lookup {
	gw_ctx    *gw;
	char       hash[65];
	gw_auth_cb cb;
	void      *arg;
} key_lookup;

static void
on_key_row(void *arg, ash_err rv, const PGresult *res)
{
	key_lookup *kl = arg;

	if (rv == ASH_OK && PQntuples(res) == 1 &&
	    ash_ct_equal(PQgetvalue(res, 0, 1), kl->hash, 64)) {
		kc_put(kl->gw->keys, kl->hash, PQgetvalue(res, 0, 0),
		    ash_now_ms());
		kl->cb(kl->arg, ASH_OK, PQgetvalue(res, 0, 0));
	} else {
		/* A database failure is not the client's fault: 503, not
		 * 401, so a good key is never reported as bad. */
		kl->cb(
		    kl->arg, rv == ASH_OK ? ASH_EUNAUTH : ASH_EUNAVAIL, NULL);
	}
	free(kl);
}

/* "ash_" + 12 hex + "_" + 43 base64url characters. */
static bool
key_well_formed(const char *key, char prefix[13])
{
	if (strncmp(key, "ash_", 4) != 0 || strlen(key) != 4 + 12 + 1 + 43 ||
	    key[16] != '_' || strspn(key + 4, "0123456789abcdef") != 12)
		return false;
	memcpy(prefix, key + 4, 12);
	prefix[12] = '\0';
	return true;
}

void
gw_auth_api_key(gw_ctx *gw, const char *key, gw_auth_cb cb, void *arg)
{
	static const char sql[] =
	    "SELECT k.tenant_id, k.hash FROM api_keys k "
	    "JOIN tenants t ON t.id = k.tenant_id "
	    "WHERE k.prefix = $1 AND k.revoked_at IS NULL "
	    "AND t.deleted_at IS NULL";
	uint8_t     digest[ASH_SHA256_LEN];
	char        prefix[13], *hex;
	const char *tenant;
	key_lookup *kl;

	if (key == NULL || !key_well_formed(key, prefix)) {
		cb(arg, ASH_EUNAUTH, NULL);
		return;
	}
	ash_sha256(key, strlen(key), digest);
	hex = ash_hex_encode(digest, sizeof(digest));
	if ((tenant = kc_get(gw->keys, hex, ash_now_ms())) != NULL) {
		free(hex);
		cb(arg, ASH_OK, tenant);
		return;
	}
	kl      = ash_xcalloc(1, sizeof(*kl));
	kl->gw  = gw;
	kl->cb  = cb;
	kl->arg = arg;
	snprintf(kl->hash, sizeof(kl->hash), "%s", hex);
	free(hex);
	const char *params[] = {prefix};
	if (ash_db_query(
	        ash_svc_db(gw->svc), sql, 1, params, on_key_row, kl) != ASH_OK)
		on_key_row(kl, ASH_EUNAVAIL, NULL);
}

bool
gw_auth_admin(const char *bearer)
{
	uint8_t a[ASH_SHA256_LEN], b[ASH_SHA256_LEN];

	if (bearer == NULL || *gw_config.admin_token == '\0')
		return false;
	/* Hash both so the comparison does not depend on their lengths. */
	ash_sha256(bearer, strlen(bearer), a);
	ash_sha256(gw_config.admin_token, strlen(gw_config.admin_token), b);
	return ash_ct_equal(a, b, sizeof(a));
}

const char *
gw_bearer(const char *authorization)
{
	if (authorization == NULL ||
	    strncasecmp(authorization, "Bearer ", 7) != 0)
		return NULL;
	authorization += 7;
	authorization += strspn(authorization, " ");
	return *authorization ? authorization : NULL;
}

void
gw_apikey_make(char **key, char prefix[16], char hash[65])
{
	uint8_t p[6], secret[32], digest[ASH_SHA256_LEN];
	char   *phex, *sec, *hex;

	ash_random_bytes(p, sizeof(p));
	ash_random_bytes(secret, sizeof(secret));
	phex = ash_hex_encode(p, sizeof(p));
	sec  = ash_b64url_encode(secret, sizeof(secret));
	*key = ash_xasprintf("ash_%s_%s", phex, sec);
	ash_sha256(*key, strlen(*key), digest);
	hex = ash_hex_encode(digest, sizeof(digest));
	snprintf(prefix, 16, "%s", phex);
	snprintf(hash, 65, "%s", hex);
	free(phex);
	free(sec);
	free(hex);
}
