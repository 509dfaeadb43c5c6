/*
 * mi_profile.c - channel upkeep on a timer: participants' profiles, run-out
 * rate limits and the channel status gauge.
 *
 * Profiles. A 1 s timer (and mi_channels_profile_kick, and a NOTIFY on
 * "mi_profiles") claims up to PROFILE_BATCH pending participants whose
 * profile_next_at has come, on live channels that neither wait for a new
 * token nor are rate limited. The claim is one statement (FOR UPDATE SKIP
 * LOCKED) that also moves profile_next_at forward by a lease, so replicas
 * never look one profile up twice at once and a crash only delays it. Each
 * claimed participant gets one Graph call with its channel's token (opened
 * here and wiped as soon as the call has copied it) and one UPDATE:
 *   fetched      name, username, profile_pic stored; never looked up again
 *   unavailable  2018218, consent (230), 100, ...: never again
 *   retry        transient: attempts + 1, due again after a backoff;
 *                'failed' after MI_PROFILE_MAX_ATTEMPTS
 *   190          mi_channel_set_status(REAUTH); left pending: a reconnect
 *                makes it due again (mi_channels.c)
 *   throttled    mi_channel_set_status(THROTTLED); due after the wait
 * At most PROFILE_BATCH lookups run at once and the next claim waits for
 * the batch. Each claim and lookup holds the loop, so a drain lets them
 * finish. Nothing is published.
 *
 * Status. Every GAUGE_EVERY ticks one statement stores run-out rate limits
 * back as 'ok' and counts live channels per status into
 * ashoon_meta_channels{status="ok|needs_reauth|rate_limited"}.
 *
 * Everything runs on the loop thread; state is this file's `ps`.
 */
#include "mi.h"

#include <ashoon/ids.h>
#include <ashoon/json.h>

#include <ctype.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROFILE_BATCH 4 /* lookups in flight at most */
#define TICK_S        1 /* the timer's period */
#define GAUGE_EVERY   5 /* ticks between status counts */
#define BACKOFF_S     5 /* first retry delay; doubles per attempt */
#define NOTIFY_NAME   "mi_profiles"
#define STR_(x)       #x
#define STR(x)        STR_(x)

static const char *const statuses[] = {"ok", "needs_reauth", "rate_limited"};
#define NSTATUS 3

typedef struct prof_state {
	mi_ctx    *mi;
	bool       closing;  /* fini ran: start nothing */
	bool       claiming; /* a claim is in flight */
	bool       again;    /* claim once the batch is done */
	bool       counting; /* a status count is in flight */
	int        inflight; /* lookups not finished */
	unsigned   ticks;
	ash_gauge *gauge[NSTATUS];
} prof_state;

static prof_state ps;

/* One claimed participant. */
typedef struct prof_job {
	mi_ctx            *mi;
	char               id[ASH_UUID_LEN];
	char               channel_id[ASH_UUID_LEN];
	char               kind[16];
	int                attempts; /* before this one */
	mi_profile_outcome out;
	int                wait_s; /* THROTTLED: Meta's wait */
	char              *sealed; /* the token the call was made with */
} prof_job;

static void profiles_claim(mi_ctx *mi);

/* --- pure helpers (mi.h) --- */

char *
mi_profile_name_new(const char *first, const char *last)
{
	bool f = first != NULL && *first, l = last != NULL && *last;

	if (f && l)
		return ash_xasprintf("%s %s", first, last);
	if (f || l)
		return ash_xstrdup(f ? first : last);
	return NULL;
}

mi_profile_outcome
mi_profile_outcome_of(const mi_graph_result *res, int attempts)
{
	bool last = attempts + 1 >= MI_PROFILE_MAX_ATTEMPTS;

	if (res->err != ASH_OK)
		return last ? MI_PROFILE_FAILED : MI_PROFILE_RETRY;
	/* "No profile available for this user" (phone sign-ups), whatever
	 * class it came with. */
	if (res->code == 2018218 || res->subcode == 2018218)
		return MI_PROFILE_UNAVAILABLE;
	switch (res->cls) {
	case MI_GRAPH_OK:
		if (cJSON_IsObject(res->body))
			return MI_PROFILE_FETCHED;
		break;
	case MI_GRAPH_REAUTH:
		return MI_PROFILE_REAUTH;
	case MI_GRAPH_THROTTLED:
		return MI_PROFILE_THROTTLED;
	case MI_GRAPH_RETRY:
		break;
	default: /* no consent (230), unknown user (100), blocked, ... */
		return MI_PROFILE_UNAVAILABLE;
	}
	return last ? MI_PROFILE_FAILED : MI_PROFILE_RETRY;
}

/* --- one lookup --- */

static void
job_end(prof_job *j)
{
	ps.inflight--;
	ash_loop_rele(ash_svc_loop(j->mi->svc));
	if (ps.inflight == 0 && ps.again && !ps.closing) {
		ps.again = false;
		profiles_claim(j->mi);
	}
	free(j->sealed);
	free(j);
}

static void
on_job_stored(void *arg, ash_err rv, const PGresult *res)
{
	prof_job *j = arg;

	if (rv != ASH_OK)
		ash_log_warn(NULL, "MI-PROFILE",
		    "participant %s: not stored: %s", j->id, ash_strerror(rv));
	job_end(j);
}

/* What the UPDATE writes for an outcome: the new state, +attempts, and the
 * delay before the next try (pending only). */
static const char *
job_state(const prof_job *j, int *inc, int *delay_s)
{
	*inc     = 0;
	*delay_s = 0;
	switch (j->out) {
	case MI_PROFILE_FETCHED:
		return "fetched";
	case MI_PROFILE_UNAVAILABLE:
		return "unavailable";
	case MI_PROFILE_FAILED:
		*inc = 1;
		return "failed";
	case MI_PROFILE_RETRY:
		*inc     = 1;
		*delay_s = BACKOFF_S << (j->attempts < 10 ? j->attempts : 10);
		return "pending";
	default: /* THROTTLED */
		*delay_s = j->wait_s;
		return "pending";
	}
}

/* name, username, profile_pic of a fetched profile (all may be NULL). */
static void
profile_fields(const prof_job *j, const cJSON *b, char **name,
    const char **username, const char **pic)
{
	*name     = NULL;
	*username = NULL;
	*pic      = ash_json_str(b, "profile_pic");
	if (strcmp(j->kind, "messenger") == 0)
		*name = mi_profile_name_new(ash_json_str(b, "first_name"),
		    ash_json_str(b, "last_name"));
	else
		*username = ash_json_str(b, "username");
	if (*name == NULL && ash_json_str(b, "name") != NULL)
		*name = ash_xstrdup(ash_json_str(b, "name"));
}

static void
job_store(prof_job *j, const cJSON *body)
{
	static const char sql[] =
	    "UPDATE participants SET profile_state = $2, "
	    "name = CASE WHEN $2 = 'fetched' THEN $3 ELSE name END, "
	    "username = CASE WHEN $2 = 'fetched' THEN $4 ELSE username END, "
	    "profile_pic = CASE WHEN $2 = 'fetched' THEN $5 "
	    "ELSE profile_pic END, "
	    "profile_fetched_at = CASE WHEN $2 IN ('fetched', 'unavailable') "
	    "THEN now() ELSE profile_fetched_at END, "
	    "profile_attempts = profile_attempts + $6::int, "
	    "profile_next_at = CASE WHEN $2 = 'pending' "
	    "THEN now() + make_interval(secs => $7::int) END "
	    "WHERE id = $1::uuid AND profile_state = 'pending'";
	char        inc_s[8], delay_s[16], *name = NULL;
	const char *user = NULL, *pic = NULL;
	int         inc, delay;
	const char *state = job_state(j, &inc, &delay);

	if (j->out == MI_PROFILE_FETCHED)
		profile_fields(j, body, &name, &user, &pic);
	snprintf(inc_s, sizeof(inc_s), "%d", inc);
	snprintf(delay_s, sizeof(delay_s), "%d", delay);
	const char *p[] = {j->id, state, name, user, pic, inc_s, delay_s};
	ash_err     rv =
	    ash_db_query(ash_svc_db(j->mi->svc), sql, 7, p, on_job_stored, j);
	free(name);
	if (rv != ASH_OK)
		on_job_stored(j, rv, NULL);
}

static void
on_profile(void *arg, const mi_graph_result *res)
{
	prof_job *j = arg;

	if (ps.closing) {
		job_end(j);
		return;
	}
	j->out = mi_profile_outcome_of(res, j->attempts);
	ash_log_debug(NULL, "MI-PROFILE",
	    "participant %s: outcome %d (HTTP %ld, code %d/%d)", j->id, j->out,
	    res->status, res->code, res->subcode);
	if (j->out == MI_PROFILE_REAUTH) {
		/* Left as claimed: the channel is skipped until reconnected.
		 */
		mi_channel_set_status(j->mi, j->channel_id, j->sealed,
		    MI_GRAPH_REAUTH, res->code, res->subcode, 0);
		job_end(j);
		return;
	}
	if (j->out == MI_PROFILE_THROTTLED) {
		j->wait_s = res->retry_after_s > 0 ? res->retry_after_s : 60;
		mi_channel_set_status(j->mi, j->channel_id, j->sealed,
		    MI_GRAPH_THROTTLED, res->code, res->subcode, j->wait_s);
	}
	job_store(j, res->body);
}

static void
secret_free(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Opens the channel's sealed token (any key version still in the ring). */
static ash_err
token_open(mi_ctx *mi, const char *channel_id, const char *sealed, char **out)
{
	char     aad[128];
	uint8_t *pt = NULL;
	size_t   n  = 0;
	ash_err  rv;

	mi_channel_aad(channel_id, "token", aad, sizeof(aad));
	if ((rv = ash_crypto_unseal(mi->keys, aad, sealed, &pt, &n)) != ASH_OK)
		return rv;
	*out = (char *) pt;
	return ASH_OK;
}

static bool
digits_only(const char *s)
{
	if (*s == '\0' || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char) *s))
			return false;
	return true;
}

/* Starts the lookup of row i of a claim: id, channel_id, external_id,
 * attempts, kind, login, token_sealed. */
static void
job_start(mi_ctx *mi, const PGresult *r, int i)
{
	prof_job   *j   = ash_xcalloc(1, sizeof(*j));
	const char *ext = PQgetvalue(r, i, 2), *login = PQgetvalue(r, i, 5);
	char       *tok = NULL;
	ash_err     rv;

	j->mi = mi;
	snprintf(j->id, sizeof(j->id), "%s", PQgetvalue(r, i, 0));
	snprintf(
	    j->channel_id, sizeof(j->channel_id), "%s", PQgetvalue(r, i, 1));
	j->attempts = atoi(PQgetvalue(r, i, 3));
	snprintf(j->kind, sizeof(j->kind), "%s", PQgetvalue(r, i, 4));
	j->sealed = ash_xstrdup(PQgetvalue(r, i, 6));
	ps.inflight++;
	ash_loop_hold(ash_svc_loop(mi->svc));
	if (!digits_only(ext)) { /* not a PSID/IGSID: no path to ask */
		j->out = MI_PROFILE_UNAVAILABLE;
		job_store(j, NULL);
		return;
	}
	if (token_open(mi, j->channel_id, PQgetvalue(r, i, 6), &tok) !=
	    ASH_OK) {
		ash_log_error(NULL, "MI-PROFILE-KEY",
		    "channel %s: the token does not open (key version missing "
		    "from ASHOON_MASTER_KEY?)",
		    j->channel_id);
		job_end(j); /* stays claimed until its lease runs out */
		return;
	}
	rv = mi_graph_call(mi, login, tok, "GET", ext,
	    strcmp(j->kind, "messenger") == 0
	        ? "fields=first_name,last_name,profile_pic"
	        : "fields=name,username,profile_pic",
	    NULL, on_profile, j);
	secret_free(tok);
	if (rv != ASH_OK)
		job_end(j); /* the lease brings it back */
}

/* --- claiming --- */

static void
on_claimed(void *arg, ash_err rv, const PGresult *res)
{
	mi_ctx *mi = arg;
	int     n  = rv == ASH_OK ? PQntuples(res) : 0;

	ps.claiming = false;
	ash_loop_rele(ash_svc_loop(mi->svc));
	if (rv != ASH_OK && rv != ASH_ECANCELED && rv != ASH_ECLOSED)
		ash_log_warn(
		    NULL, "MI-PROFILE", "claim failed: %s", ash_strerror(rv));
	if (ps.closing)
		return;
	/* A full batch may have left more behind: go on when it is done. */
	if (n == PROFILE_BATCH)
		ps.again = true;
	for (int i = 0; i < n; i++)
		job_start(mi, res, i);
}

static void
profiles_claim(mi_ctx *mi)
{
	static const char sql[] =
	    "WITH due AS (SELECT p.id FROM participants p "
	    "JOIN channels c ON c.id = p.channel_id "
	    "WHERE p.profile_state = 'pending' AND (p.profile_next_at IS NULL "
	    "OR p.profile_next_at <= now()) AND c.disconnected_at IS NULL "
	    "AND c.token_sealed <> '' AND c.status <> 'needs_reauth' "
	    "AND (c.status <> 'rate_limited' OR c.rate_limited_until <= "
	    "now()) "
	    "ORDER BY p.created_at LIMIT " STR(
	        PROFILE_BATCH) " "
	                       "FOR UPDATE OF p SKIP LOCKED) "
	                       "UPDATE participants p SET profile_next_at = "
	                       "now() + "
	                       "make_interval(secs => $1::int) FROM due, "
	                       "channels c "
	                       "WHERE p.id = due.id AND c.id = p.channel_id "
	                       "RETURNING p.id, "
	                       "p.channel_id, p.external_id, "
	                       "p.profile_attempts, c.kind, c.login, "
	                       "c.token_sealed";
	char lease[16];

	if (ps.claiming || ps.inflight > 0) {
		ps.again = true;
		return;
	}
	/* The lease outlasts the longest Graph call. */
	snprintf(lease, sizeof(lease), "%d",
	    mi_config.graph_timeout_ms / 1000 + 30);
	const char *p[] = {lease};
	if (ash_db_query(ash_svc_db(mi->svc), sql, 1, p, on_claimed, mi) !=
	    ASH_OK)
		return; /* the next tick tries again */
	ps.claiming = true;
	ash_loop_hold(ash_svc_loop(mi->svc));
}

/* --- the status gauge --- */

static void
on_counted(void *arg, ash_err rv, const PGresult *res)
{
	int64_t n[NSTATUS] = {0};

	ps.counting = false;
	if (rv != ASH_OK || ps.closing)
		return;
	for (int i = 0; i < PQntuples(res); i++)
		for (int s = 0; s < NSTATUS; s++)
			if (strcmp(PQgetvalue(res, i, 0), statuses[s]) == 0)
				n[s] =
				    strtoll(PQgetvalue(res, i, 1), NULL, 10);
	for (int s = 0; s < NSTATUS; s++)
		ash_gauge_set(ps.gauge[s], n[s]);
}

/* The CTE writes run-out rate limits back as 'ok'; the count (which sees
 * the rows as they were) applies the same rule. */
static void
status_count(mi_ctx *mi)
{
	static const char sql[] =
	    "WITH fix AS (UPDATE channels SET status = 'ok', "
	    "status_code = NULL, status_subcode = NULL, status_reason = NULL, "
	    "status_at = now(), rate_limited_until = NULL "
	    "WHERE status = 'rate_limited' AND rate_limited_until <= now() "
	    "RETURNING id) "
	    "SELECT CASE WHEN status = 'rate_limited' AND "
	    "rate_limited_until <= now() THEN 'ok' ELSE status END, count(*) "
	    "FROM channels WHERE disconnected_at IS NULL GROUP BY 1";

	if (ps.counting)
		return;
	if (ash_db_query(ash_svc_db(mi->svc), sql, 0, NULL, on_counted, mi) ==
	    ASH_OK)
		ps.counting = true;
}

/* --- timer, kick, init --- */

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	mi_ctx *mi = arg;

	if (ps.closing || mi->draining ||
	    ash_loop_stopping(ash_svc_loop(mi->svc)))
		return;
	if (ps.ticks++ % GAUGE_EVERY == 0)
		status_count(mi);
	profiles_claim(mi);
}

void
mi_channels_profile_kick(mi_ctx *mi)
{
	if (ps.closing || mi->draining || mi->profile_timer == NULL)
		return;
	profiles_claim(mi);
}

static void
on_notify(void *arg, const char *channel, const char *payload)
{
	mi_channels_profile_kick(arg);
}

ash_err
mi_channels_init(mi_ctx *mi)
{
	struct timeval tv = {TICK_S, 0};
	char           labels[64];
	ash_err        rv;

	ps.mi = mi;
	for (int s = 0; s < NSTATUS; s++)
		ps.gauge[s] = ash_metrics_gauge(ash_svc_metrics(mi->svc),
		    "ashoon_meta_channels",
		    "live Meta channels per status (ok, needs_reauth, "
		    "rate_limited)",
		    ash_metrics_labels(
		        labels, sizeof(labels), "status", statuses[s], NULL));
	if ((rv = ash_db_listen(
	         ash_svc_db(mi->svc), NOTIFY_NAME, on_notify, mi)) != ASH_OK)
		return rv;
	mi->profile_timer = event_new(
	    ash_loop_base(ash_svc_loop(mi->svc)), -1, EV_PERSIST, on_tick, mi);
	ASH_ASSERT(mi->profile_timer != NULL);
	event_add(mi->profile_timer, &tv);
	/* The first tick at once: the gauge has values from the start. */
	event_active(mi->profile_timer, EV_TIMEOUT, 0);
	return ASH_OK;
}

void
mi_channels_fini(mi_ctx *mi)
{
	ps.closing = true;
	if (mi->profile_timer != NULL) {
		event_free(mi->profile_timer);
		mi->profile_timer = NULL;
	}
}
