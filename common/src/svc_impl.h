/*
 * svc_impl.h - libashoon-internal: the runner's state, shared by svc*.c.
 */
#ifndef ASHOON_SVC_IMPL_H
#define ASHOON_SVC_IMPL_H

#include <ashoon/http.h>
#include <ashoon/svc.h>

#include <stdbool.h>

struct ash_svc {
	const ash_svc_def *def;
	ash_loop          *loop;
	ash_work_pool     *work;
	ash_metrics       *metrics;
	ash_db_pool       *db;
	ash_bus_server    *bus;
	ash_bus_client    *peers[ASH_SVC_COUNT]; /* opened on first use */
	ash_http_server   *metrics_http;         /* NULL when not configured */
	ash_bus_pub       *pub;                  /* our events */
	ash_bus_sub       *subs[ASH_SVC_COUNT];  /* others' events, on use */
	int                metrics_port;
	int                migration; /* highest applied at start-up */
	bool               inited;    /* def->init succeeded */
	void              *data;      /* the service's own state */
	/* ashoon_events_published_total by topic and ok, looked up once
	 * (a webhook's new message publishes one event). */
	ash_counter *published[ASH_TOPIC_COUNT][2];
};

/* Registers sys.health, sys.info and sys.echo on svc->bus. */
void ash__svc_sys_register(ash_svc *svc);

/* Opens the /metrics + /healthz listener if ASHOON_METRICS_ADDR is set. */
ash_err ash__svc_metrics_open(ash_svc *svc) ASH_MUSTCHECK;

#endif
