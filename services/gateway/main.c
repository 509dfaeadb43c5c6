/*
 * ashoon-gateway - the public HTTP(S) edge. main() only hands the service
 * definition to the runner (libashoon svc.h); the work is in gw_*.c.
 */
#include "gw.h"

#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gw_ctx gw;

static void
gw_on_sweep(evutil_socket_t fd, short what, void *arg)
{
	gw_ratelimit_sweep(gw.rl, ash_now_ms());
}

static size_t
gw_largest_body(void)
{
	int max = 0;

	for (int i = 0; i < GW_CLASS_COUNT; i++)
		if (gw_config.max_body[i] > max)
			max = gw_config.max_body[i];
	return (size_t) max;
}

static ash_err
gw_init(ash_svc *svc)
{
	ash_http_opts  o  = {gw_config.http_addr, gw_config.tls_cert,
	      gw_config.tls_key, gw_largest_body(), 16384,
	      gw_config.http_timeout_s};
	struct timeval tv = {30, 0};
	ash_err        rv;

	gw.svc  = svc;
	gw.rl   = gw_ratelimit_new();
	gw.keys = gw_keycache_new();
	if ((rv = gw_proxies_parse(gw_config.trusted_proxies, &gw.proxies)))
		return rv;
	gw_tenants_register(&gw);
	rv = ash_http_server_open(
	    ash_svc_loop(svc), &o, gw_on_http, &gw, &gw.http);
	if (rv != ASH_OK) {
		ash_log_error(NULL, "HTTP-LISTEN", "cannot listen on %s",
		    gw_config.http_addr);
		return rv;
	}
	ash_log_info(NULL, "HTTP-LISTEN", "listening on %s port %d (%s)",
	    gw_config.http_addr, ash_http_server_port(gw.http),
	    *gw_config.tls_cert ? "TLS" : "plain HTTP");
	gw.sweep = event_new(ash_loop_base(ash_svc_loop(svc)), -1, EV_PERSIST,
	    gw_on_sweep, NULL);
	event_add(gw.sweep, &tv);
	return ASH_OK;
}

static void
gw_drain(ash_svc *svc)
{
	ash_http_server_stop_accepting(gw.http);
	if (gw.sweep)
		event_del(gw.sweep);
}

static void
gw_fini(ash_svc *svc)
{
	ash_http_server_close(gw.http);
	if (gw.sweep)
		event_free(gw.sweep);
	gw_proxies_free(gw.proxies);
	gw_keycache_free(gw.keys);
	gw_ratelimit_free(gw.rl);
}

extern const ash_db_migration gw_migrations[];

int
main(int argc, char **argv)
{
	static const ash_svc_def def = {
	    .id         = ASH_SVC_GATEWAY,
	    .keys       = gw_keys,
	    .migrations = gw_migrations,
	    .init       = gw_init,
	    .drain      = gw_drain,
	    .fini       = gw_fini,
	};
	if (argc > 1 && strcmp(argv[1], "--api-doc") == 0) {
		gw_routes_doc(stdout);
		return 0;
	}
	return ash_svc_main(&def, argc, argv);
}
