/*
 * gw_ratelimit.c - token buckets per (route class, client IP).
 *
 * A chained hash table of buckets; a bucket refills at rate_rps up to
 * rate_burst. Loop thread only, so no locking. Idle buckets (full again)
 * are swept periodically so the table's size follows the number of active
 * clients, not the number ever seen.
 */
#include "gw.h"

#include <stdlib.h>
#include <string.h>

#define RL_SLOTS 4096 /* power of two */

typedef struct bucket {
	struct bucket *next;
	double         tokens;
	int64_t        last_ms;
	gw_class       cls;
	char           ip[48];
} bucket;

struct gw_ratelimit {
	bucket *slots[RL_SLOTS];
	int     count;
};

gw_ratelimit *
gw_ratelimit_new(void)
{
	return ash_xcalloc(1, sizeof(gw_ratelimit));
}

void
gw_ratelimit_free(gw_ratelimit *rl)
{
	if (rl == NULL)
		return;
	for (int i = 0; i < RL_SLOTS; i++) {
		while (rl->slots[i]) {
			bucket *b    = rl->slots[i];
			rl->slots[i] = b->next;
			free(b);
		}
	}
	free(rl);
}

static unsigned
rl_hash(gw_class cls, const char *ip)
{
	unsigned h = 2166136261u ^ (unsigned) cls; /* FNV-1a */

	for (const unsigned char *p = (const unsigned char *) ip; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h & (RL_SLOTS - 1);
}

static bucket *
rl_get(gw_ratelimit *rl, gw_class cls, const char *ip, int64_t now_ms)
{
	unsigned h = rl_hash(cls, ip);
	bucket  *b;

	for (b = rl->slots[h]; b; b = b->next)
		if (b->cls == cls && strcmp(b->ip, ip) == 0)
			return b;
	b          = ash_xcalloc(1, sizeof(*b));
	b->cls     = cls;
	b->tokens  = gw_config.rate_burst[cls];
	b->last_ms = now_ms;
	snprintf(b->ip, sizeof(b->ip), "%s", ip);
	b->next      = rl->slots[h];
	rl->slots[h] = b;
	rl->count++;
	return b;
}

static void
rl_refill(bucket *b, int64_t now_ms)
{
	double burst = gw_config.rate_burst[b->cls];

	b->tokens += (double) (now_ms - b->last_ms) / 1000.0 *
	    gw_config.rate_rps[b->cls];
	if (b->tokens > burst)
		b->tokens = burst;
	b->last_ms = now_ms;
}

bool
gw_ratelimit_take(gw_ratelimit *rl, gw_class cls, const char *ip,
    int64_t now_ms, int *retry_s)
{
	bucket *b;

	if (cls == GW_CLASS_OPEN)
		return true;
	b = rl_get(rl, cls, ip, now_ms);
	rl_refill(b, now_ms);
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		return true;
	}
	/* Seconds until one token is back, rounded up (Retry-After). */
	*retry_s = (int) ((1.0 - b->tokens) / gw_config.rate_rps[cls]) + 1;
	return false;
}

int
gw_ratelimit_sweep(gw_ratelimit *rl, int64_t now_ms)
{
	int dropped = 0;

	for (int i = 0; i < RL_SLOTS; i++) {
		bucket **pp = &rl->slots[i];
		while (*pp) {
			bucket *b = *pp;
			rl_refill(b, now_ms);
			if (b->tokens >= gw_config.rate_burst[b->cls]) {
				*pp = b->next;
				free(b);
				dropped++;
				continue;
			}
			pp = &b->next;
		}
	}
	rl->count -= dropped;
	return dropped;
}
