/*
 * ashoon/svc.h - the life of a service process, written once.
 *
 * Every service's main() is `return ash_svc_main(&def, argc, argv);`. The
 * runner does, in this order (STYLE §10):
 *   config (shared keys + the service's table; exit 2 listing every bad key)
 *   -> migrations (blocking, before the loop; waits for Postgres up to
 *      ASHOON_DB_WAIT_MS) -> loop, worker pool, metrics, db pool, bus server
 *      with the sys.* ops, peers -> def->init -> metrics HTTP listener ->
 *   signals -> READY log line -> run
 * and on the first SIGTERM: stop receiving on the bus, close the metrics
 * listener, def->drain, then exit once in-flight work is done or
 * ASHOON_SHUTDOWN_GRACE_MS passed (second signal: at once). Then def->fini
 * and everything else in reverse order.
 *
 * `ashoon-<svc> --config-doc [own]` prints the shared (or, with `own`, the
 * service's own) configuration table in Markdown: docs/OPERATIONS.md is
 * generated from them by scripts/gen-docs. `--version` prints the version.
 */
#ifndef ASHOON_SVC_H
#define ASHOON_SVC_H

#include <ashoon/bus.h>
#include <ashoon/config.h>
#include <ashoon/db.h>
#include <ashoon/loop.h>
#include <ashoon/metrics.h>
#include <ashoon/proto.h>
#include <ashoon/work.h>

typedef struct ash_svc ash_svc;

/* The settings every service shares (read-only after start-up). */
typedef struct ash_svc_cfg {
	char *log_level;
	char *db_dsn; /* secret */
	char *db_schema;
	int   db_pool;
	int   db_query_timeout_ms;
	int   db_wait_ms; /* how long start-up waits for Postgres */
	char *bus_listen; /* "" = the service's own ASHOON_BUS_<NAME> */
	char *bus[ASH_SVC_COUNT]; /* ASHOON_BUS_<NAME>: where each service
	                             answers (comma-separated list allowed) */
	char *events_listen; /* "" = the service's own ASHOON_EVENTS_<NAME> */
	char *events[ASH_SVC_COUNT]; /* ASHOON_EVENTS_<NAME>: where each
	                                service publishes its events */
	int   bus_slots;
	int   bus_max_msg;
	int   bus_timeout_ms; /* default deadline of calls we start */
	char *metrics_addr;   /* "" = no metrics listener */
	int   grace_ms;
	int   workers;
} ash_svc_cfg;

typedef struct ash_svc_def {
	int                     id;         /* ASH_SVC_* */
	const ash_cfg_key      *keys;       /* own settings, or NULL */
	const ash_db_migration *migrations; /* {0,NULL,NULL}-terminated */
	/* Loop thread, after the shared parts are up and before the bus
	 * starts receiving: register op handlers, open what the service
	 * needs. An error stops start-up (exit 1). */
	ash_err (*init)(ash_svc *svc);
	/* First SIGTERM, after the bus stopped receiving: stop the service's
	 * own intake (listeners, job claimers). May be NULL. */
	void (*drain)(ash_svc *svc);
	/* After the loop ended: undo init. May be NULL. */
	void (*fini)(ash_svc *svc);
} ash_svc_def;

/* Runs the service; returns the process exit code (0 clean, 1 failure or
 * forced shutdown, 2 configuration errors). */
int ash_svc_main(const ash_svc_def *def, int argc, char **argv);

/* Accessors for init/drain/fini and handlers (loop thread). */
const ash_svc_cfg *ash_svc_config(const ash_svc *svc);
const char        *ash_svc_name(const ash_svc *svc);
ash_loop          *ash_svc_loop(ash_svc *svc);
ash_work_pool     *ash_svc_work(ash_svc *svc);
ash_db_pool       *ash_svc_db(ash_svc *svc);
ash_metrics       *ash_svc_metrics(ash_svc *svc);
ash_bus_server    *ash_svc_bus(ash_svc *svc);

/* The client for another service (every peer is dialed at start-up and
 * closed at exit). NULL only if its address is malformed (logged). */
ash_bus_client *ash_svc_peer(ash_svc *svc, int svc_id);

/* Publishes an event on this service's events address (after the work it
 * announces is committed: events only wake, they carry no duty). Never
 * blocks; a failure is logged and counted, not returned. Loop thread. */
void ash_svc_publish(
    ash_svc *svc, int topic, const char *tenant, const cJSON *body);

/* Subscribes cb to topic as published by service pub_svc (dialed on first
 * use, redialed when it restarts). Loop thread. */
ash_err ash_svc_subscribe(ash_svc *svc, int pub_svc, int topic,
    ash_bus_event_cb cb, void *arg) ASH_MUSTCHECK;

/* The service's own state, set in init. */
void  ash_svc_set_data(ash_svc *svc, void *data);
void *ash_svc_data(const ash_svc *svc);

#endif
