/*
 * gw_client_ip.c - who the client is, for rate limits and logs.
 *
 * Behind a load balancer every request comes from the balancer's address,
 * so X-Forwarded-For is honoured - but only when the peer is a configured
 * trusted proxy (ASHOON_TRUSTED_PROXIES, CIDRs), and only up to the first
 * address from the right that is not one: anything left of it was written
 * by the client and cannot be trusted.
 */
#include "gw.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cidr {
	int           family;
	unsigned char addr[16];
	int           bits;
} cidr;

struct gw_proxies {
	cidr *nets;
	int   n;
};

static bool
cidr_parse(const char *s, cidr *c)
{
	char  buf[64];
	char *slash;
	int   max;

	snprintf(buf, sizeof(buf), "%s", s);
	slash = strchr(buf, '/');
	if (slash)
		*slash++ = '\0';
	c->family = strchr(buf, ':') ? AF_INET6 : AF_INET;
	max       = c->family == AF_INET ? 32 : 128;
	if (inet_pton(c->family, buf, c->addr) != 1)
		return false;
	c->bits = slash ? atoi(slash) : max;
	return c->bits >= 0 && c->bits <= max &&
	    (slash == NULL || strspn(slash, "0123456789") == strlen(slash));
}

static bool
cidr_contains(const cidr *c, const char *ip)
{
	unsigned char a[16];
	int           full, rest;

	if (inet_pton(c->family, ip, a) != 1)
		return false;
	full = c->bits / 8;
	rest = c->bits % 8;
	if (memcmp(a, c->addr, (size_t) full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char) (0xff << (8 - rest));
	return (a[full] & mask) == (c->addr[full] & mask);
}

ash_err
gw_proxies_parse(const char *list, gw_proxies **out)
{
	gw_proxies *p    = ash_xcalloc(1, sizeof(*p));
	char       *copy = ash_xstrdup(list), *save = NULL;

	for (char *t = strtok_r(copy, ", ", &save); t;
	     t       = strtok_r(NULL, ", ", &save)) {
		p->nets =
		    ash_xrealloc(p->nets, sizeof(cidr) * (size_t) (p->n + 1));
		if (!cidr_parse(t, &p->nets[p->n])) {
			ash_log_error(NULL, "CFG-BAD",
			    "ASHOON_TRUSTED_PROXIES: bad CIDR \"%.64s\"", t);
			free(copy);
			gw_proxies_free(p);
			return ASH_EINVAL;
		}
		p->n++;
	}
	free(copy);
	*out = p;
	return ASH_OK;
}

void
gw_proxies_free(gw_proxies *p)
{
	if (p == NULL)
		return;
	free(p->nets);
	free(p);
}

static bool
trusted(const gw_proxies *p, const char *ip)
{
	for (int i = 0; i < p->n; i++)
		if (cidr_contains(&p->nets[i], ip))
			return true;
	return false;
}

void
gw_client_ip(const gw_proxies *p, const char *peer, const char *xff, char *out,
    size_t cap)
{
	size_t end;

	snprintf(out, cap, "%s", peer ? peer : "?");
	if (xff == NULL || p->n == 0 || !trusted(p, out))
		return;
	/* Walk from the right: each hop we trust vouches for the next. The
	 * walk reads the whole value in place: a copy cut to a fixed size
	 * would lose the right end, which our proxies wrote, and leave a hop
	 * the client wrote there instead. */
	end = strlen(xff);
	for (;;) {
		size_t start = end, b, e;
		char   ip[INET6_ADDRSTRLEN + 8];

		while (start > 0 && xff[start - 1] != ',')
			start--;
		b = start + strspn(xff + start, " ");
		for (e = b; e < end && xff[e] != ' '; e++)
			;
		if (e == b)
			return;
		snprintf(out, cap, "%.*s", (int) (e - b), xff + b);
		/* Cut to fit, a hop too long for an address stays one that
		 * inet_pton refuses: never a proxy's. */
		snprintf(ip, sizeof(ip), "%.*s", (int) (e - b), xff + b);
		if (!trusted(p, ip) || start == 0)
			return;
		end = start - 1;
	}
}
