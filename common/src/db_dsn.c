/*
 * db_dsn.c - the pool's conninfo: server options and the host lookup.
 *
 * Connections use PQconnectStartParams with expand_dbname: the DSN goes in
 * as "dbname" first, and the keywords after it override what it says
 * (libpq processes keywords in order). We override "options" (the DSN's own
 * options plus search_path and statement_timeout) and, after a lookup,
 * "host"/"hostaddr"/"port", so libpq never calls getaddrinfo on the loop.
 *
 * The lookup runs once, on the worker pool (getaddrinfo blocks). Each host
 * name in the DSN's host list becomes one entry per address (up to
 * DSN_MAX_ADDRS), with the name kept in "host" (for TLS and .pgpass) and
 * the address in "hostaddr"; IP literals and socket directories pass
 * through with an empty hostaddr entry, which libpq reads as "use host".
 */
#include "db_impl.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DSN_MAX_ADDRS 4

/* A growing string. */
typedef struct dsn_buf {
	char  *s;
	size_t len;
	size_t cap;
} dsn_buf;

static void
buf_add(dsn_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->s   = ash_xrealloc(b->s, b->cap);
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void
buf_item(dsn_buf *b, const char *s, size_t n)
{
	if (b->s != NULL)
		buf_add(b, ",", 1);
	else
		buf_add(b, "", 0);
	buf_add(b, s, n);
}

/* True when the host entry [s, s+n) needs no lookup. */
static bool
host_is_literal(const char *s, size_t n)
{
	char          tmp[INET6_ADDRSTRLEN + 1];
	unsigned char addr[sizeof(struct in6_addr)];

	if (n == 0 || s[0] == '/' || s[0] == '@')
		return true;
	if (n >= sizeof(tmp))
		return false;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	return inet_pton(AF_INET, tmp, addr) == 1 ||
	    inet_pton(AF_INET6, tmp, addr) == 1;
}

static bool
hosts_need_lookup(const char *hosts)
{
	for (const char *p = hosts; p != NULL;) {
		size_t n = strcspn(p, ",");
		if (!host_is_literal(p, n))
			return true;
		p = p[n] ? p + n + 1 : NULL;
	}
	return false;
}

/* search_path is passed through the options string, so the schema must be
 * a plain lower-case identifier (no quoting or escaping needed). */
static bool
schema_ok(const char *s)
{
	if (s == NULL || *s == '\0' || strlen(s) > 63)
		return false;
	if (!(*s == '_' || (*s >= 'a' && *s <= 'z')))
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_$") ==
	    strlen(s);
}

static char *
opt_dup(const PQconninfoOption *o)
{
	return o->val != NULL && o->val[0] != '\0' ? ash_xstrdup(o->val)
	                                           : NULL;
}

static void
dsn_take(ash_db_pool *pool, const PQconninfoOption *opts, char **options,
    bool *has_addr)
{
	for (const PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "options") == 0)
			*options = opt_dup(o);
		else if (strcmp(o->keyword, "host") == 0)
			pool->host = opt_dup(o);
		else if (strcmp(o->keyword, "port") == 0)
			pool->port = opt_dup(o);
		else if (strcmp(o->keyword, "hostaddr") == 0)
			*has_addr = o->val != NULL && o->val[0] != '\0';
	}
}

/*
 * Parses opts->dsn and builds the options string. ASH_EINVAL for a DSN
 * libpq cannot parse or a schema that is not a plain identifier. Anything
 * allocated is released by ash__db_dsn_fini, also on error.
 */
ash_err
ash__db_dsn_init(ash_db_pool *pool, const ash_db_opts *opts)
{
	PQconninfoOption *parsed;
	char             *err = NULL, *old = NULL;
	bool              has_addr = false;

	if (opts->schema != NULL && !schema_ok(opts->schema))
		return ASH_EINVAL;
	if ((parsed = PQconninfoParse(opts->dsn, &err)) == NULL) {
		/* err can quote part of the DSN, which may be a password. */
		PQfreemem(err);
		ash_log_error(NULL, "DB-DSN", "the DSN cannot be parsed");
		return ASH_EINVAL;
	}
	dsn_take(pool, parsed, &old, &has_addr);
	PQconninfoFree(parsed);
	pool->dsn     = ash_xstrdup(opts->dsn);
	pool->options = ash_xasprintf("%s%s-c statement_timeout=%d%s%s",
	    old ? old : "", old ? " " : "", opts->query_timeout_ms,
	    opts->schema ? " -c search_path=" : "",
	    opts->schema ? opts->schema : "");
	free(old);
	pool->need_resolve =
	    !has_addr && pool->host != NULL && hosts_need_lookup(pool->host);
	if (pool->need_resolve && pool->work == NULL) {
		ash_log_error(NULL, "DB-DSN",
		    "a host name needs a worker pool for the lookup");
		return ASH_EINVAL;
	}
	return ASH_OK;
}

/* Frees what ash__db_dsn_init and the lookup allocated. */
void
ash__db_dsn_fini(ash_db_pool *pool)
{
	free(pool->dsn);
	free(pool->options);
	free(pool->host);
	free(pool->port);
	free(pool->r_host);
	free(pool->r_addr);
	free(pool->r_port);
}

/* Fills keys/vals (room for 6 + NULL) for PQconnectStartParams with
 * expand_dbname = 1; returns the count. */
int
ash__db_dsn_params(
    const ash_db_pool *pool, const char **keys, const char **vals)
{
	int n = 0;

	keys[n] = "dbname", vals[n++] = pool->dsn; /* first: overridable */
	keys[n] = "options", vals[n++] = pool->options;
	if (pool->r_host != NULL) {
		keys[n] = "host", vals[n++] = pool->r_host;
		keys[n] = "hostaddr", vals[n++] = pool->r_addr;
	}
	if (pool->r_port != NULL)
		keys[n] = "port", vals[n++] = pool->r_port;
	keys[n] = NULL, vals[n] = NULL;
	return n;
}

/* --- the lookup job ---------------------------------------------------- */

typedef struct dsn_lookup {
	ash_db_pool *pool;   /* held until done; not touched by the worker */
	char        *hosts;  /* input copies */
	char        *ports;  /* NULL, one port, or a list */
	dsn_buf      o_host; /* outputs */
	dsn_buf      o_addr;
	dsn_buf      o_port;
	int          entries;
} dsn_lookup;

/* Port for host i: the i-th list item, or the single port. */
static void
lookup_port(const dsn_lookup *k, int i, const char **p, size_t *n)
{
	const char *s = k->ports ? k->ports : "";

	*p = s;
	*n = strcspn(s, ",");
	if (s[*n] == '\0')
		return; /* one port for every host */
	for (; i > 0 && (*p)[*n] == ','; i--) {
		*p += *n + 1;
		*n = strcspn(*p, ",");
	}
}

static void
lookup_emit(dsn_lookup *k, const char *h, size_t hn, const char *a,
    const char *p, size_t pn)
{
	buf_item(&k->o_host, h, hn);
	buf_item(&k->o_addr, a, strlen(a));
	buf_item(&k->o_port, p, pn);
	k->entries++;
}

static void
lookup_one(dsn_lookup *k, const char *h, size_t hn, const char *p, size_t pn)
{
	struct addrinfo hints = {0}, *res, *ai;
	char            name[256], addr[INET6_ADDRSTRLEN];
	int             rc, got = 0;

	snprintf(name, sizeof(name), "%.*s", (int) hn, h);
	hints.ai_family   = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(name, NULL, &hints, &res)) != 0) {
		ash_log_warn(NULL, "DB-RESOLVE", "cannot resolve %s: %s", name,
		    gai_strerror(rc));
		return;
	}
	for (ai = res; ai != NULL && got < DSN_MAX_ADDRS; ai = ai->ai_next) {
		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr,
		        sizeof(addr), NULL, 0, NI_NUMERICHOST) != 0)
			continue;
		lookup_emit(k, h, hn, addr, p, pn);
		got++;
	}
	freeaddrinfo(res);
}

/* Worker thread: resolves every name in k->hosts. */
static ash_err
lookup_run(void *arg)
{
	dsn_lookup *k = arg;
	const char *h = k->hosts, *p;
	size_t      hn, pn;

	for (int i = 0; h != NULL; i++) {
		hn = strcspn(h, ",");
		lookup_port(k, i, &p, &pn);
		if (host_is_literal(h, hn))
			lookup_emit(k, h, hn, "", p, pn);
		else
			lookup_one(k, h, hn, p, pn);
		h = h[hn] ? h + hn + 1 : NULL;
	}
	return k->entries > 0 ? ASH_OK : ASH_EUNAVAIL;
}

static void
lookup_free(dsn_lookup *k)
{
	free(k->hosts);
	free(k->ports);
	free(k->o_host.s);
	free(k->o_addr.s);
	free(k->o_port.s);
	free(k);
}

/* Loop: stores the result once and moves waiting connections on. */
static void
lookup_done(void *arg, ash_err rv)
{
	dsn_lookup  *k    = arg;
	ash_db_pool *pool = k->pool;

	pool->resolving = false;
	if (!pool->closing && rv == ASH_OK) {
		pool->r_host = k->o_host.s, k->o_host.s = NULL;
		pool->r_addr = k->o_addr.s, k->o_addr.s = NULL;
		if (pool->port != NULL && strchr(pool->port, ',') != NULL)
			pool->r_port = k->o_port.s, k->o_port.s = NULL;
		pool->need_resolve = false;
	}
	lookup_free(k);
	for (int i = -1; i < pool->size && !pool->closing; i++) {
		ash__db_conn *c = i < 0 ? pool->listener : pool->conns[i];
		if (c != NULL && c->state == ASH__DB_C_RESOLVE)
			ash__db_conn_resolved(c, rv == ASH_OK);
	}
	ash__db_pool_rele(pool);
}

/*
 * Starts the host lookup unless one is in flight. Connections wait in
 * RESOLVE; if the lookup cannot start or finds nothing, they back off and
 * ask again later.
 */
void
ash__db_resolve(ash_db_pool *pool)
{
	dsn_lookup *k;

	if (pool->resolving)
		return;
	k        = ash_xcalloc(1, sizeof(*k));
	k->pool  = pool;
	k->hosts = ash_xstrdup(pool->host);
	k->ports = pool->port ? ash_xstrdup(pool->port) : NULL;
	ash__db_pool_hold(pool);
	pool->resolving = true;
	if (ash_work_submit(pool->work, lookup_run, lookup_done, k) == ASH_OK)
		return;
	ash_log_warn(NULL, "DB-RESOLVE", "the worker pool refused the lookup");
	lookup_done(k, ASH_EUNAVAIL);
}
