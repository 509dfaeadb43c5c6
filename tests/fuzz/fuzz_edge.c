/*
 * fuzz_edge.c - what the gateway reads from a request before it forwards
 * anything: the route (method and decoded path), the client address behind
 * trusted proxies (X-Forwarded-For) and the bearer token. The input is
 * four lines: method, path, X-Forwarded-For, Authorization.
 *
 * Invariants: a matched route's parameters are non-empty single segments
 * that fit their buffers; the client address is the one a model written
 * here independently picks (the peer, or the right-most X-Forwarded-For
 * hop that is not a trusted proxy, over the whole header whatever its
 * length); a bearer token is a suffix of the header, never empty.
 */
#include "fuzz.h"
#include "gw.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PEER "10.9.8.7" /* a trusted proxy: X-Forwarded-For is read */

static gw_proxies *proxies;

/* The model's trusted set: 10.0.0.0/8, 127.0.0.1 and ::1. */
static bool
model_trusted(const char *ip)
{
	unsigned char              a[16];
	static const unsigned char v6_one[16] = {[15] = 1};

	if (inet_pton(AF_INET, ip, a) == 1)
		return a[0] == 10 ||
		    (a[0] == 127 && a[1] == 0 && a[2] == 0 && a[3] == 1);
	return inet_pton(AF_INET6, ip, a) == 1 && memcmp(a, v6_one, 16) == 0;
}

/* The right-most hop that is not trusted, or the left-most hop if all
 * are, or the peer; an empty hop stops the walk at what was found. */
static void
model_client(const char *xff, char *out, size_t cap)
{
	size_t end = strlen(xff);

	snprintf(out, cap, "%s", PEER);
	for (;;) {
		size_t start = end, b, e;

		while (start > 0 && xff[start - 1] != ',')
			start--;
		b = start + strspn(xff + start, " ");
		e = b;
		while (e < end && xff[e] != ' ')
			e++;
		if (e == b)
			return;
		snprintf(out, cap, "%.*s", (int) (e - b), xff + b);
		if (!model_trusted(out) || start == 0)
			return;
		end = start - 1;
	}
}

static void
route(const char *method, const char *path)
{
	gw_match m;
	ash_err  rv = gw_route_match(method, path, &m);

	CHECK(rv == ASH_OK || rv == ASH_EMETHOD || rv == ASH_ENOTFOUND);
	if (rv != ASH_OK)
		return;
	CHECK(m.route != NULL && m.nparams >= 0 && m.nparams <= GW_MAX_PARAMS);
	for (int i = 0; i < m.nparams; i++) {
		CHECK(m.values[i][0] != '\0' &&
		    strchr(m.values[i], '/') == NULL);
		CHECK(strstr(path, m.values[i]) != NULL);
	}
}

static void
client(const char *xff)
{
	char got[64], want[64];

	gw_client_ip(proxies, PEER, xff, got, sizeof(got));
	model_client(xff, want, sizeof(want));
	CHECK(strcmp(got, want) == 0);
}

static void
bearer(const char *auth)
{
	const char *t = gw_bearer(auth);

	if (t == NULL)
		return;
	CHECK(*t != '\0' && *t != ' ' && t > auth + 6);
	CHECK(strcmp(t, auth + strlen(auth) - strlen(t)) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, *line[4] = {"", "", "", ""}, *p;

	if (proxies == NULL &&
	    gw_proxies_parse("10.0.0.0/8, 127.0.0.1, ::1", &proxies) != ASH_OK)
		abort();
	/* Header values and decoded paths are C strings. */
	if ((buf = fuzz_cstr(data, size)) == NULL)
		return 0;
	p = buf;
	for (int i = 0; i < 4 && p != NULL; i++) {
		line[i] = p;
		if ((p = strchr(p, '\n')) != NULL)
			*p++ = '\0';
	}
	route(line[0], line[1]);
	client(line[2]);
	bearer(line[3]);
	free(buf);
	return 0;
}
