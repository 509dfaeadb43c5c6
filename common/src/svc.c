/*
 * svc.c - the service runner: start-up order, READY, drain, shutdown.
 *
 * Everything a service needs that is not its business logic lives here
 * once, so the seven main.c files stay three lines long and every service
 * starts, reports and stops the same way. Loop thread throughout, except
 * the start-up steps before the loop runs.
 */
#include "svc_impl.h"

#include <ashoon/http.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- configuration ------------------------------------------------------ */

static ash_svc_cfg cfg;
static char        def_schema[64], def_metrics[64];
static char        def_bus[ASH_SVC_COUNT][64];
static char        bus_key[ASH_SVC_COUNT][64];
static char        bus_help[ASH_SVC_COUNT][96];
static char        def_events[ASH_SVC_COUNT][64];
static char        events_key[ASH_SVC_COUNT][64];
static char        events_help[ASH_SVC_COUNT][96];
static ash_cfg_key common_keys[48];

/* Builds the shared table; defaults depend on which service this is. */
static void
svc_build_keys(int self, bool doc)
{
	const ash_svc_row *me = &ash_services[self];
	int                n  = 0;

	snprintf(def_schema, sizeof(def_schema), "%s", me->schema);
	if (self != ASH_SVC_GATEWAY)
		snprintf(def_metrics, sizeof(def_metrics), "127.0.0.1:%d",
		    9100 + me->index);
	if (doc) {
		/* The generated docs describe every service at once. */
		snprintf(def_schema, sizeof(def_schema), "<service schema>");
		snprintf(def_metrics, sizeof(def_metrics),
		    "127.0.0.1:910<n> (gateway: empty)");
	}
	common_keys[n++] = (ash_cfg_key) ASH_CFG_STR("ASHOON_LOG_LEVEL",
	    cfg.log_level, "info", 0, "error, warn, info or debug");
	common_keys[n++] = (ash_cfg_key) ASH_CFG_STR("ASHOON_DB_DSN",
	    cfg.db_dsn, NULL, ASH_CFG_REQUIRED | ASH_CFG_SECRET,
	    "libpq connection string, as this service's own role");
	common_keys[n++] = (ash_cfg_key) ASH_CFG_STR("ASHOON_DB_SCHEMA",
	    cfg.db_schema, def_schema, 0,
	    "schema this service owns (its name with _ for -)");
	common_keys[n++] = (ash_cfg_key) ASH_CFG_INT("ASHOON_DB_POOL_SIZE",
	    cfg.db_pool, "4", 1, 64, 0, "Postgres connections");
	common_keys[n++] = (ash_cfg_key) ASH_CFG_MS(
	    "ASHOON_DB_QUERY_TIMEOUT_MS", cfg.db_query_timeout_ms, "5000", 10,
	    600000, 0, "deadline of one query");
	common_keys[n++] = (ash_cfg_key) ASH_CFG_MS("ASHOON_DB_WAIT_MS",
	    cfg.db_wait_ms, "30000", 0, 600000, 0,
	    "how long start-up waits for Postgres to accept connections");
	common_keys[n++] = (ash_cfg_key) ASH_CFG_STR("ASHOON_BUS_LISTEN",
	    cfg.bus_listen, "", 0,
	    "NNG address to listen on; empty: this service's ASHOON_BUS_ "
	    "address");
	for (int i = 0; i < ASH_SVC_COUNT; i++) {
		snprintf(bus_key[i], sizeof(bus_key[i]), "ASHOON_BUS_%s",
		    ash_services[i].env);
		snprintf(def_bus[i], sizeof(def_bus[i]), "tcp://127.0.0.1:%d",
		    7100 + ash_services[i].index);
		snprintf(bus_help[i], sizeof(bus_help[i]),
		    "where %s answers requests (comma-separated list allowed)",
		    ash_services[i].name);
		common_keys[n++] = (ash_cfg_key) ASH_CFG_STR(
		    bus_key[i], cfg.bus[i], def_bus[i], 0, bus_help[i]);
	}
	common_keys[n++] = (ash_cfg_key) ASH_CFG_STR("ASHOON_EVENTS_LISTEN",
	    cfg.events_listen, "", 0,
	    "NNG address to publish events on; empty: this service's "
	    "ASHOON_EVENTS_ address");
	for (int i = 0; i < ASH_SVC_COUNT; i++) {
		snprintf(events_key[i], sizeof(events_key[i]),
		    "ASHOON_EVENTS_%s", ash_services[i].env);
		snprintf(def_events[i], sizeof(def_events[i]),
		    "tcp://127.0.0.1:%d", 7200 + ash_services[i].index);
		snprintf(events_help[i], sizeof(events_help[i]),
		    "where %s publishes its events", ash_services[i].name);
		common_keys[n++] = (ash_cfg_key) ASH_CFG_STR(events_key[i],
		    cfg.events[i], def_events[i], 0, events_help[i]);
	}
	common_keys[n++] =
	    (ash_cfg_key) ASH_CFG_INT("ASHOON_BUS_SLOTS", cfg.bus_slots, "64",
	        1, 4096, 0, "requests this service handles at once");
	common_keys[n++] = (ash_cfg_key) ASH_CFG_INT("ASHOON_BUS_MAX_MSG",
	    cfg.bus_max_msg, "16777216", 1024, 268435456, 0,
	    "largest NNG message accepted, bytes");
	common_keys[n++] = (ash_cfg_key) ASH_CFG_MS("ASHOON_BUS_TIMEOUT_MS",
	    cfg.bus_timeout_ms, "10000", 10, 600000, 0,
	    "default deadline of requests this service starts");
	common_keys[n++] = (ash_cfg_key) ASH_CFG_STR("ASHOON_METRICS_ADDR",
	    cfg.metrics_addr, def_metrics, 0,
	    "host:port serving /metrics and /healthz; empty: none; <n> as in "
	    "the service's ASHOON_BUS_ default port 710<n>");
	common_keys[n++] = (ash_cfg_key) ASH_CFG_MS("ASHOON_SHUTDOWN_GRACE_MS",
	    cfg.grace_ms, "10000", 0, 600000, 0,
	    "how long a SIGTERM waits for in-flight work");
	common_keys[n++] = (ash_cfg_key) ASH_CFG_INT("ASHOON_WORKERS",
	    cfg.workers, "2", 1, 64, 0, "threads for blocking work");
	common_keys[n++] = (ash_cfg_key) ASH_CFG_END;
	ASH_ASSERT(n <= (int) (sizeof(common_keys) / sizeof(common_keys[0])));
}

static int
svc_tables(const ash_svc_def *def, const ash_cfg_key *tables[2])
{
	tables[0] = common_keys;
	tables[1] = def->keys;
	return def->keys ? 2 : 1;
}

/* --- accessors ---------------------------------------------------------- */

const ash_svc_cfg *
ash_svc_config(const ash_svc *svc)
{
	return &cfg;
}

const char *
ash_svc_name(const ash_svc *svc)
{
	return ash_services[svc->def->id].name;
}

ash_loop *
ash_svc_loop(ash_svc *svc)
{
	return svc->loop;
}

ash_work_pool *
ash_svc_work(ash_svc *svc)
{
	return svc->work;
}

ash_db_pool *
ash_svc_db(ash_svc *svc)
{
	return svc->db;
}

ash_metrics *
ash_svc_metrics(ash_svc *svc)
{
	return svc->metrics;
}

ash_bus_server *
ash_svc_bus(ash_svc *svc)
{
	return svc->bus;
}

void
ash_svc_set_data(ash_svc *svc, void *data)
{
	svc->data = data;
}

void *
ash_svc_data(const ash_svc *svc)
{
	return svc->data;
}

ash_bus_client *
ash_svc_peer(ash_svc *svc, int id)
{
	ash_bus_client_opts o = {
	    cfg.bus[id], (size_t) cfg.bus_max_msg, ash_services[id].name};

	ASH_ASSERT(id >= 0 && id < ASH_SVC_COUNT);
	if (svc->peers[id] == NULL &&
	    ash_bus_client_open(svc->loop, &o, &svc->peers[id]) != ASH_OK)
		ash_log_error(NULL, "BUS-PEER", "bad address for %s",
		    ash_services[id].name);
	return svc->peers[id];
}

void
ash_svc_publish(ash_svc *svc, int topic, const char *tenant, const cJSON *body)
{
	char          labels[96];
	ash_err       rv = ash_bus_publish(svc->pub, topic, tenant, body);
	ash_counter **c;

	ASH_ASSERT(topic >= 0 && topic < ASH_TOPIC_COUNT);
	c = &svc->published[topic][rv == ASH_OK];
	if (*c == NULL) {
		ash_metrics_labels(labels, sizeof(labels), "topic",
		    ash_topic(topic)->name, "ok",
		    rv == ASH_OK ? "true" : "false", NULL);
		*c = ash_metrics_counter(svc->metrics,
		    "ashoon_events_published_total",
		    "Events published (ok=false: dropped)", labels);
	}
	ash_counter_add(*c, 1);
	if (rv != ASH_OK)
		ash_log_warn(NULL, "EVENT-DROPPED", "%s: %s",
		    ash_topic(topic)->name, ash_strerror(rv));
}

ash_err
ash_svc_subscribe(
    ash_svc *svc, int pub_svc, int topic, ash_bus_event_cb cb, void *arg)
{
	ash_err rv;

	ASH_ASSERT(pub_svc >= 0 && pub_svc < ASH_SVC_COUNT);
	if (svc->subs[pub_svc] == NULL &&
	    (rv = ash_bus_sub_open(svc->loop, cfg.events[pub_svc], false,
	         (size_t) cfg.bus_max_msg, &svc->subs[pub_svc])) != ASH_OK)
		return rv;
	return ash_bus_subscribe(svc->subs[pub_svc], topic, cb, arg);
}

/* --- start-up and shutdown ---------------------------------------------- */

/* Blocking, before the loop: applies migrations, retrying while Postgres
 * is not up yet (containers start in any order). */
static ash_err
svc_migrate(ash_svc *svc)
{
	int64_t until = ash_now_ms() + cfg.db_wait_ms;
	ash_err rv;

	for (;;) {
		rv = ash_db_migrate(cfg.db_dsn, cfg.db_schema,
		    svc->def->migrations, &svc->migration);
		if (rv != ASH_EUNAVAIL || ash_now_ms() >= until)
			return rv;
		ash_log_info(NULL, "DB-WAIT", "Postgres not reachable yet");
		usleep(500 * 1000);
	}
}

static void
svc_on_drain(void *arg)
{
	ash_svc *svc = arg;

	ash_bus_server_stop_recv(svc->bus);
	if (svc->metrics_http)
		ash_http_server_stop_accepting(svc->metrics_http);
	if (svc->def->drain)
		svc->def->drain(svc);
	ash_loop_exit_when_idle(svc->loop, cfg.grace_ms);
}

static ash_err
svc_open_bus(ash_svc *svc)
{
	const char *url =
	    *cfg.bus_listen ? cfg.bus_listen : cfg.bus[svc->def->id];
	ash_bus_server_opts o = {
	    url, cfg.bus_slots, (size_t) cfg.bus_max_msg, ash_svc_name(svc)};
	ash_err rv;

	if ((rv = ash_bus_server_open(svc->loop, &o, &svc->bus)) != ASH_OK)
		return rv;
	ash_bus_server_set_metrics(svc->bus, svc->metrics);
	ash__svc_sys_register(svc);
	url =
	    *cfg.events_listen ? cfg.events_listen : cfg.events[svc->def->id];
	return ash_bus_pub_open(url, true, &svc->pub);
}

static ash_err
svc_init(ash_svc *svc)
{
	ash_db_opts db = {cfg.db_dsn, cfg.db_schema, cfg.db_pool,
	    cfg.db_query_timeout_ms, 5000, 10000};
	ash_err     rv;

	if ((rv = ash_loop_new(&svc->loop)) != ASH_OK ||
	    (rv = ash_work_pool_new(
	         svc->loop, cfg.workers, 1024, &svc->work)) != ASH_OK)
		return rv;
	svc->metrics = ash_metrics_new();
	if ((rv = ash_db_pool_open(svc->loop, svc->work, &db, &svc->db)) !=
	        ASH_OK ||
	    (rv = svc_open_bus(svc)) != ASH_OK)
		return rv;
	/* Dial every peer now: a client opened on first use would have no
	 * connection yet and fail that first request with "unavailable". */
	for (int i = 0; i < ASH_SVC_COUNT; i++)
		if (ash_svc_peer(svc, i) == NULL)
			return ASH_EINVAL;
	if (svc->def->init && (rv = svc->def->init(svc)) != ASH_OK)
		return rv;
	svc->inited = true;
	if ((rv = ash__svc_metrics_open(svc)) != ASH_OK ||
	    (rv = ash_bus_server_start(svc->bus)) != ASH_OK)
		return rv;
	return ash_loop_on_shutdown(svc->loop, svc_on_drain, svc);
}

/* Reverse of svc_init; safe on a partly initialised svc. */
static void
svc_fini(ash_svc *svc)
{
	ash_http_server_close(svc->metrics_http);
	if (svc->inited && svc->def->fini)
		svc->def->fini(svc);
	for (int i = 0; i < ASH_SVC_COUNT; i++)
		ash_bus_client_close(svc->peers[i]);
	/* The db closes before the bus so that handlers waiting on a query
	 * get their ECANCELED and can still reply. */
	ash_db_pool_close(svc->db);
	ash_bus_server_close(svc->bus);
	for (int i = 0; i < ASH_SVC_COUNT; i++)
		ash_bus_sub_close(svc->subs[i]);
	ash_bus_pub_close(svc->pub);
	ash_metrics_free(svc->metrics);
	ash_work_pool_free(svc->work);
	ash_loop_free(svc->loop);
}

static void
svc_log_ready(ash_svc *svc)
{
	const ash_log_field f[] = {
	    ASH_LF_STR("service", ash_svc_name(svc)),
	    ASH_LF_STR("version", ASH_VERSION),
	    ASH_LF_STR("bus",
	        *cfg.bus_listen ? cfg.bus_listen : cfg.bus[svc->def->id]),
	    ASH_LF_INT("migration", svc->migration),
	    ASH_LF_INT("metrics_port", svc->metrics_port),
	    ASH_LF_INT("pid", getpid()),
	};
	ash_log_emitf(ASH_LOG_INFO, NULL, "READY", f, sizeof(f) / sizeof(f[0]),
	    "%s ready", ash_svc_name(svc));
}

static int
svc_config(const ash_svc_def *def, int argc, char **argv)
{
	const ash_cfg_key *tables[2];
	int                n;
	enum ash_log_level lvl = ASH_LOG_INFO;

	bool doc = argc > 1 && strcmp(argv[1], "--config-doc") == 0;

	svc_build_keys(def->id, doc);
	n = svc_tables(def, tables);
	if (doc) {
		/* "shared": the keys every service reads; "own": this one's.
		 */
		bool own = argc > 2 && strcmp(argv[2], "own") == 0;
		if (!own || n > 1)
			ash_cfg_render_markdown(
			    own ? tables + 1 : tables, 1, stdout);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf(
		    "ashoon-%s %s\n", ash_services[def->id].name, ASH_VERSION);
		return 0;
	}
	ash_log_init(ash_services[def->id].name, ASH_LOG_INFO);
	if (ash_cfg_load(tables, n) != ASH_OK)
		return 2;
	if (ash_log_level_parse(cfg.log_level, &lvl) != ASH_OK) {
		ash_log_error(
		    NULL, "CFG-BAD", "ASHOON_LOG_LEVEL: unknown level");
		return 2;
	}
	ash_log_set_level(lvl);
	ash_cfg_log_effective(tables, n);
	return -1;
}

int
ash_svc_main(const ash_svc_def *def, int argc, char **argv)
{
	ash_svc            svc = {.def = def};
	const ash_cfg_key *tables[2];
	int                rc;

	if ((rc = svc_config(def, argc, argv)) >= 0)
		return rc;
	rc = 1;
	if (svc_migrate(&svc) != ASH_OK) {
		ash_log_error(NULL, "START-FAIL", "migrations failed");
	} else if (svc_init(&svc) != ASH_OK) {
		ash_log_error(NULL, "START-FAIL", "start-up failed");
	} else {
		svc_log_ready(&svc);
		rc = ash_loop_run(svc.loop);
		ash_log_info(NULL, "STOPPED", "%s stopped (%s)",
		    ash_svc_name(&svc), rc ? "forced" : "clean");
	}
	svc_fini(&svc);
	ash_cfg_free(tables, svc_tables(def, tables));
	return rc;
}
