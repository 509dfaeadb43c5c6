/*
 * mi_webhook.c - Meta's webhooks: the GET handshake and the POSTs.
 *
 * A POST is acknowledged only after it is committed: each one becomes a
 * "hit" (its journal row and its normalized events) queued in one of
 * batch_lanes lanes, chosen by the thread (page and customer) of its first
 * event. One call of ingest_batch() at a time takes the queues of all the
 * lanes, their hits in arrival order - one statement, one transaction, one
 * round trip for however many POSTs arrived while the call before ran
 * (group commit) - and the next starts when it returns. One call at a
 * time is the cheap way for Postgres: two side by side cost it a fifth to
 * a third more CPU per POST, in calls half the size, and took no more
 * POSTs a second (docs/PERFORMANCE.md). A call starts beside running
 * ones only once the latest of them has run batch_stagger_ms: a slow
 * commit, or one stuck on a thread's row, then gets company, up to
 * batch_inflight calls, each on its own connection. Such a call carries
 * the lanes with no call running, or, beside a call holding a lane's hits,
 * that lane's alone, and only while fewer than batch_overlap of them wait
 * (a long queue waits and goes whole: two calls sharing threads halve the
 * batch and the second waits at the thread rows' lock for the first's
 * commit). Lanes are taken in turn, so that a call stuck on one thread
 * holds back only the POSTs of its own lane. The SQL takes shared rows in
 * one order, so calls do not deadlock (migration 0005). Every caller of a
 * batch is answered from its commit: 200 when stored, 503 when Postgres
 * could not be reached (Meta then retries, and ingest is idempotent), 500
 * when it failed otherwise. A failing batch of several hits is retried hit
 * by hit, so one bad POST cannot hold the others back. A hit that fails
 * alone on a value Postgres cannot take (a data exception: it would fail
 * on every retry, and Meta may unsubscribe an app whose webhook keeps
 * failing) is journaled raw as "unstorable" and answered 200 once that
 * line is committed, as a body that does not parse is. An idle batch
 * starts its commit at the end of the loop turn in which its first hit
 * arrived, so the hits of one bus batch frame (the gateway coalesces the
 * POSTs it reads in one turn) commit together.
 *
 * Rejected POSTs (no or bad signature) are answered at once and leave only
 * their journal line, written with the next batch. A signed body that does
 * not parse is stored raw in the journal and answered 200: a non-200 would
 * only bring 36 hours of retries of the same bytes.
 */
#include "mi.h"

#include <ashoon/json.h>
#include <ashoon/pgrec.h>

#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hit {
	struct hit   *next;
	ash_bus_call *call;   /* NULL once answered (rejected hits) */
	cJSON        *row;    /* its journal row (batch "hits" item) */
	cJSON        *events; /* its normalized events */
	int           nevents;
	bool          solo; /* commit alone (its batch failed) */
	uint8_t      *body; /* the body as sent, journaled if the hit fails */
	size_t        body_len;
	int64_t       t0;   /* ms, for the commit latency metric */
	int           lane; /* its lane (hit_lane) */
	uint64_t      seq;  /* arrival order, over all lanes */
} hit;

/* A queue of hits and its calls of ingest_batch(). */
typedef struct lane {
	hit *head, *tail; /* waiting for the next commit */
	int  queued;
	int  flying; /* its ingest_batch() calls running */
} lane;

struct mi_batch {
	mi_ctx        *mi;
	lane          *lanes;     /* mi_config.batch_lanes */
	int            queued;    /* in all lanes */
	ash_gauge     *waiting;   /* queued, as a metric */
	int            flying;    /* ingest_batch() calls running, all lanes */
	struct flight *flights;   /* those calls, the latest started first */
	uint64_t       seq;       /* hits queued so far (hit.seq) */
	int            next_lane; /* where the next overlap pass begins */
	int            journaling; /* unstorable hits' journal lines */
	int            checking;   /* POSTs waiting for channels' secrets */
	bool           closing;    /* free when the last query returns */
	struct event  *kick;       /* end of turn: start a commit when idle */
	struct event  *stagger;    /* when a call may start beside others */
	ash_hmac_key  *app_key; /* META_APP_SECRET's, NULL when it is empty */
	ash_counter   *hits;    /* hits_total of hits_outcome (hit_count) */
	/* POST bodies by how they crossed the bus: as the request's
	 * attachment, or in base64 from a gateway of before (when both
	 * counts move, an upgrade is half done). */
	ash_counter *bodies_att, *bodies_b64;
	char         hits_outcome[32];
};

/* One ingest_batch() call and the hits it carries. */
typedef struct flight {
	mi_batch      *b;
	struct flight *prev, *next; /* the calls running (mi_batch.flights) */
	uint32_t       lanes;       /* those its hits are of (bit i: lane i) */
	hit           *list;
	int            count; /* hits in list */
	int64_t        t0;    /* when it started (ash_now_ms) */
} flight;

static void batch_flush(mi_batch *b);

/* --- hits --- */

static hit *
hit_new(ash_bus_call *call, int64_t received_ms, const char *signature,
    size_t bytes)
{
	hit *h = ash_xcalloc(1, sizeof(*h));

	h->call   = call;
	h->t0     = ash_now_ms();
	h->row    = cJSON_CreateObject();
	h->events = cJSON_CreateArray();
	cJSON_AddNumberToObject(h->row, "received_ms", (double) received_ms);
	ash_json_add_str(h->row, "signature", signature);
	cJSON_AddNumberToObject(h->row, "bytes", (double) bytes);
	cJSON_AddArrayToObject(h->row, "page_ids");
	cJSON_AddObjectToObject(h->row, "kinds");
	return h;
}

static void
hit_free(hit *h)
{
	cJSON_Delete(h->row);
	cJSON_Delete(h->events);
	free(h->body);
	free(h);
}

static void
hit_set_outcome(hit *h, const char *outcome)
{
	cJSON_DeleteItemFromObjectCaseSensitive(h->row, "outcome");
	ash_json_add_str(h->row, "outcome", outcome);
}

/* Keeps the body itself in the journal (for bodies we could not fully
 * process: kept 90 days, like every journal row). In base64: the row is
 * text (ingest_hit_in), and ingest_batch() decodes it. */
static void
hit_keep_raw(hit *h)
{
	cJSON_DeleteItemFromObjectCaseSensitive(h->row, "raw");
	ash_json_add_str_take(
	    h->row, "raw", ash_b64_encode(h->body, h->body_len));
}

/* Counts a POST by the outcome it was answered with, once: where it is
 * answered (a rejected POST is answered at once, before its journal line
 * is stored with a batch, and counted there). */
static void
hit_count(mi_batch *b, const char *outcome)
{
	char labels[64];

	/* The handle of the last outcome counted, nearly always "stored". */
	if (b->hits == NULL || strcmp(b->hits_outcome, outcome) != 0) {
		ash_metrics_labels(
		    labels, sizeof(labels), "outcome", outcome, NULL);
		b->hits = ash_metrics_counter(ash_svc_metrics(b->mi->svc),
		    "ashoon_meta_webhook_hits_total",
		    "Meta webhook POSTs by outcome", labels);
		snprintf(
		    b->hits_outcome, sizeof(b->hits_outcome), "%s", outcome);
	}
	ash_counter_add(b->hits, 1);
}

/* --- the batch --- */

static void
batch_push(mi_batch *b, hit *h, bool front)
{
	lane *l = &b->lanes[h->lane];

	if (front) {
		h->next = l->head;
		l->head = h;
		if (l->tail == NULL)
			l->tail = h;
	} else {
		h->next = NULL;
		if (l->tail)
			l->tail->next = h;
		else
			l->head = h;
		l->tail = h;
	}
	l->queued++;
	b->queued++;
	ash_gauge_set(b->waiting, b->queued);
}

/* The lane of mask whose first hit arrived first, NULL if all are empty. */
static lane *
oldest_lane(mi_batch *b, uint32_t mask)
{
	lane *best = NULL;

	for (int i = 0; i < mi_config.batch_lanes; i++) {
		lane *l = &b->lanes[i];

		if ((mask >> i & 1u) != 0 && l->head != NULL &&
		    (best == NULL || l->head->seq < best->head->seq))
			best = l;
	}
	return best;
}

/* Takes the next batch off the queues of the lanes in mask, their hits
 * in the order they arrived: up to batch_max, or one hit marked solo
 * alone (a lane whose first hit is solo is left for the next call).
 * *lanes gets the lanes it took hits of. */
static hit *
batch_take(mi_batch *b, uint32_t mask, int *count, uint32_t *lanes)
{
	hit  *first = NULL, **tail = &first;
	int   n = 0;
	lane *l;

	*lanes = 0;
	while (n < mi_config.batch_max && (l = oldest_lane(b, mask)) != NULL) {
		hit *h = l->head;
		int  i = (int) (l - b->lanes);

		if (h->solo && n > 0) {
			mask &= ~(1u << i);
			continue;
		}
		l->head = h->next;
		if (l->head == NULL)
			l->tail = NULL;
		l->queued--;
		*tail = h;
		tail  = &h->next;
		*lanes |= 1u << i;
		n++;
		if (h->solo)
			break;
	}
	*tail = NULL;
	b->queued -= n;
	ash_gauge_set(b->waiting, b->queued);
	*count = n;
	return first;
}

/* The fields of ingest_hit_in and ingest_event_in, in their order
 * (0012_ingest_rows.sql): the members of a hit's row and of its events. */
static const ash_pgrec_col hit_cols[] = {
    {"n", ASH_PGREC_PLAIN},
    {"received_ms", ASH_PGREC_PLAIN},
    {"signature", ASH_PGREC_PLAIN},
    {"object", ASH_PGREC_PLAIN},
    {"page_ids", ASH_PGREC_JSON},
    {"entries", ASH_PGREC_PLAIN},
    {"events", ASH_PGREC_PLAIN},
    {"kinds", ASH_PGREC_JSON},
    {"bytes", ASH_PGREC_PLAIN},
    {"raw", ASH_PGREC_PLAIN},
    {"outcome", ASH_PGREC_PLAIN},
};
static const ash_pgrec_col event_cols[] = {
    {"hit", ASH_PGREC_PLAIN},
    {"object", ASH_PGREC_PLAIN},
    {"page", ASH_PGREC_PLAIN},
    {"customer", ASH_PGREC_PLAIN},
    {"ts_ms", ASH_PGREC_PLAIN},
    {"type", ASH_PGREC_PLAIN},
    {"standby", ASH_PGREC_PLAIN},
    {"mid", ASH_PGREC_PLAIN},
    {"kind", ASH_PGREC_PLAIN},
    {"text", ASH_PGREC_PLAIN},
    {"attachments", ASH_PGREC_JSON},
    {"payload", ASH_PGREC_PLAIN},
    {"reply_to_mid", ASH_PGREC_PLAIN},
    {"reply_to_story", ASH_PGREC_JSON},
    {"referral", ASH_PGREC_JSON},
    {"app_id", ASH_PGREC_PLAIN},
    {"metadata", ASH_PGREC_PLAIN},
    {"watermark_ms", ASH_PGREC_PLAIN},
    {"mids", ASH_PGREC_JSON},
    {"action", ASH_PGREC_PLAIN},
    {"reaction", ASH_PGREC_PLAIN},
    {"emoji", ASH_PGREC_PLAIN},
    {"num_edit", ASH_PGREC_PLAIN},
    {"owner", ASH_PGREC_PLAIN},
};

/* The hits and events of list as the rows ingest_batch() takes, by
 * reference: the hits keep their objects for a retry. */
static void
batch_render(hit *list, char **hits_out, char **events_out)
{
	cJSON *hits = cJSON_CreateArray(), *events = cJSON_CreateArray(), *e;
	int    n = 0;

	for (hit *h = list; h != NULL; h = h->next, n++) {
		cJSON_DeleteItemFromObjectCaseSensitive(h->row, "n");
		cJSON_AddNumberToObject(h->row, "n", n);
		cJSON_AddItemReferenceToArray(hits, h->row);
		cJSON_ArrayForEach(e, h->events)
		{
			cJSON_SetNumberValue(cJSON_GetObjectItem(e, "hit"), n);
			cJSON_AddItemReferenceToArray(events, e);
		}
	}
	*hits_out = ash_pgrec_array(
	    hits, hit_cols, (int) (sizeof(hit_cols) / sizeof(hit_cols[0])));
	*events_out = ash_pgrec_array(events, event_cols,
	    (int) (sizeof(event_cols) / sizeof(event_cols[0])));
	cJSON_Delete(hits);
	cJSON_Delete(events);
}

/* The five words of one line of "announce" (from line to end) into w;
 * false when the line does not have exactly five, or a word is too long. */
static bool
announce_words(const char *line, const char *end, char w[5][64])
{
	const char *p = line;
	int         n = 0;

	while (p < end && n < 5) {
		size_t len = strcspn(p, " \n");

		if (len >= sizeof(w[0]))
			return false;
		memcpy(w[n], p, len);
		w[n++][len] = '\0';
		p += len + (p[len] == ' ');
	}
	return n == 5 && p >= end;
}

/* conv.message.in for every new inbound message, which is what the
 * result's "announce" lists (not echoes, nor the tombstones of unsent
 * messages: migrations/0010_ingest_instructions.sql), a line each of five
 * words: tenant, conversation, message, the message's kind, the channel's
 * kind. Wakes ai-router and the inbox (they re-read durable state; a lost
 * event delays nothing that a poll would not catch). */
static void
publish_new(mi_ctx *mi, const cJSON *result)
{
	const char *line = ash_json_str(result, "announce");
	char        w[5][64];

	while (line != NULL && *line != '\0') {
		const char *end = line + strcspn(line, "\n");

		if (announce_words(line, end, w)) {
			cJSON *b = cJSON_CreateObject();

			ash_json_add_str(b, "conversation_id", w[1]);
			ash_json_add_str(b, "message_id", w[2]);
			ash_json_add_str(b, "channel", w[4]);
			ash_json_add_str(b, "kind", w[3]);
			ash_svc_publish(
			    mi->svc, ASH_TOPIC_CONV_MESSAGE_IN, w[0], b);
			cJSON_Delete(b);
		} else {
			ash_log_warn(NULL, "MI-ANNOUNCE",
			    "not five words: %.*s", (int) (end - line), line);
		}
		line = *end == '\n' ? end + 1 : end;
	}
}

/* The result's hit rows indexed by their n, for a batch of count hits (a
 * row missing from the result stays NULL). */
static const cJSON **
result_hits(const cJSON *result, int count)
{
	const cJSON **rows = ash_xcalloc((size_t) count, sizeof(*rows));
	const cJSON  *h;

	cJSON_ArrayForEach(h, cJSON_GetObjectItem(result, "hits"))
	{
		int i = -1;
		if (ash_json_get_int(h, "n", &i) == ASH_OK && i >= 0 &&
		    i < count)
			rows[i] = h;
	}
	return rows;
}

/* Answers the hit's POST 200 with its outcome. */
static void
reply_outcome(hit *h, const char *outcome)
{
	cJSON *rep = cJSON_CreateObject();

	ash_json_add_str(rep, "outcome", outcome);
	cJSON_AddNumberToObject(rep, "events", h->nevents);
	ash_bus_call_reply(h->call, 200, rep);
}

/* row: the hit's row in the result when ingest_batch() changed its
 * outcome, else NULL (the outcome is the one the hit was queued with). */
static void
reply_stored(mi_batch *b, hit *h, const cJSON *row)
{
	const char *outcome = ash_json_str(row ? row : h->row, "outcome");

	if (h->call == NULL)
		return;
	hit_count(b, outcome ? outcome : "stored");
	reply_outcome(h, outcome ? outcome : "stored");
}

static void
batch_committed(mi_batch *b, hit *list, int count, const PGresult *res)
{
	const cJSON  **rows;
	cJSON         *result = NULL;
	int            n = 0, people = 0;
	int64_t        now     = ash_now_ms();
	ash_histogram *latency = ash_metrics_histogram(
	    ash_svc_metrics(b->mi->svc), "ashoon_meta_webhook_commit_seconds",
	    "Webhook POST arrival to commit", NULL, NULL, 0);

	if (ash_json_parse(PQgetvalue(res, 0, 0),
	        (size_t) PQgetlength(res, 0, 0), &result) != ASH_OK)
		result = cJSON_CreateObject();
	rows = result_hits(result, count);
	for (hit *h = list, *next; h != NULL; h = next, n++) {
		next = h->next;
		ash_histogram_observe(
		    latency, (double) (now - h->t0) / 1000.0);
		reply_stored(b, h, rows[n]);
		hit_free(h);
	}
	publish_new(b->mi, result);
	/* New people get their profile fetched now, not at the next tick. */
	if (ash_json_get_int(result, "people", &people) == ASH_OK &&
	    people > 0)
		mi_channels_profile_kick(b->mi);
	free(rows);
	cJSON_Delete(result);
}

static void batch_free(mi_batch *b);

/* Frees a closing batch once its last query has returned. */
static void
batch_release(mi_batch *b)
{
	if (b->closing && b->flying == 0 && b->journaling == 0 &&
	    b->checking == 0)
		batch_free(b);
}

/* An unstorable hit waiting for its journal line. */
typedef struct unstorable {
	mi_batch *b;
	hit      *h;
} unstorable;

/* The journal line of a hit that failed alone. An unstorable hit is
 * answered 200 only now, with its bytes committed: a 200 before would
 * lose them to a crash or a failed insert while Meta counts them
 * delivered. If the line could not be written, it gets 503 and Meta
 * sends it again. */
static void
on_failed_journaled(void *arg, ash_err rv, const PGresult *res)
{
	unstorable *u = arg;

	(void) res;
	if (rv != ASH_OK)
		ash_log_warn(NULL, "MI-JOURNAL",
		    "failed hit not journaled: %s", ash_strerror(rv));
	if (u == NULL)
		return;
	u->b->journaling--;
	if (u->h->call != NULL) {
		hit_count(u->b, rv == ASH_OK ? "unstorable" : "unavailable");
		if (rv == ASH_OK)
			reply_outcome(u->h, "unstorable");
		else
			ash_bus_call_fail(u->h->call, ASH_EUNAVAIL,
			    "the webhook could not be journaled, retry");
	}
	hit_free(u->h);
	batch_release(u->b);
	free(u);
}

/* A hit that failed alone: its journal line written on its own, with its
 * bytes, so "did Meta call?" still has the answer. Answered 500 at once
 * (Meta retries later), or, when its data can never be stored
 * (ASH_EINVAL: a retry would fail the same way), 200 once the line is
 * committed. */
static void
hit_failed_alone(mi_batch *b, hit *h, ash_err rv)
{
	static const char sql[] =
	    "INSERT INTO journal (received_at, signature, object, outcome, "
	    "bytes, raw) VALUES (to_timestamp($1::float8 / 1000), $2, $3, "
	    "$6, $4::int, decode($5, 'base64'))";
	const char *outcome = rv == ASH_EINVAL ? "unstorable" : "failed";
	char   *b64 = h->body ? ash_b64_encode(h->body, h->body_len) : NULL;
	char    ms[24], bytes[24];
	int64_t v = 0;
	const char *p[6];
	unstorable *u = NULL;

	if (ash_json_get_i64(h->row, "received_ms", &v) != ASH_OK)
		v = ash_wall_ms();
	snprintf(ms, sizeof(ms), "%lld", (long long) v);
	snprintf(bytes, sizeof(bytes), "%d",
	    (int) cJSON_GetObjectItem(h->row, "bytes")->valuedouble);
	p[0] = ms;
	p[1] = ash_json_str(h->row, "signature");
	p[2] = ash_json_str(h->row, "object");
	p[3] = bytes;
	p[4] = b64;
	p[5] = outcome;
	if (rv == ASH_EINVAL) {
		u  = ash_xmalloc(sizeof(*u));
		*u = (unstorable) {b, h};
		b->journaling++;
	} else if (h->call != NULL) {
		hit_count(b, outcome);
		ash_bus_call_fail(
		    h->call, rv, "the webhook could not be stored");
	}
	rv = ash_db_query(
	    ash_svc_db(b->mi->svc), sql, 6, p, on_failed_journaled, u);
	free(b64);
	if (rv != ASH_OK)
		on_failed_journaled(u, rv, NULL);
	if (u == NULL)
		hit_free(h);
}

static void
batch_failed(mi_batch *b, hit *list, ash_err rv)
{
	bool connectivity = rv == ASH_EUNAVAIL || rv == ASH_ETIMEDOUT ||
	    rv == ASH_ECANCELED || rv == ASH_ECLOSED;
	bool single = list->next == NULL; /* before the list is taken apart */

	ash_log_warn(
	    NULL, "MI-INGEST", "batch not stored: %s", ash_strerror(rv));
	for (hit *h = list, *next; h != NULL; h = next) {
		next = h->next;
		if (connectivity || b->closing) {
			/* Nothing was stored: Meta will send it again. */
			if (h->call) {
				hit_count(b, "unavailable");
				ash_bus_call_fail(h->call, ASH_EUNAVAIL,
				    "storage unavailable, retry");
			}
			hit_free(h);
		} else if (single) {
			hit_failed_alone(b, h, rv);
		} else {
			h->solo = true; /* retried alone, first */
			batch_push(b, h, true);
		}
	}
}

static void
on_batch_done(void *arg, ash_err rv, const PGresult *res)
{
	flight   *f     = arg;
	mi_batch *b     = f->b;
	hit      *list  = f->list;
	int       count = f->count;

	if (f->prev != NULL)
		f->prev->next = f->next;
	else
		b->flights = f->next;
	if (f->next != NULL)
		f->next->prev = f->prev;
	for (int i = 0; i < mi_config.batch_lanes; i++)
		if ((f->lanes >> i & 1u) != 0)
			b->lanes[i].flying--;
	b->flying--;
	free(f);
	/* A failed batch first queues its hits again, to be tried alone.
	 * The next call starts before a committed batch's POSTs are
	 * answered: otherwise Postgres sat idle while they were, 1.1-1.5 ms
	 * a call at full load (docs/PERFORMANCE.md). */
	if (rv != ASH_OK)
		batch_failed(b, list, rv);
	if (!b->closing)
		batch_flush(b);
	if (rv == ASH_OK)
		batch_committed(b, list, count, res);
	batch_release(b);
}

/* Starts a call of ingest_batch() with the next batch of the lanes in
 * mask (batch_take). */
static void
batch_start(mi_batch *b, uint32_t mask)
{
	static const double sizes[] = {1, 2, 5, 10, 20, 50, 100, 200, 500};
	flight             *f       = ash_xcalloc(1, sizeof(*f));
	char               *hits, *events;
	ash_err             rv;

	f->b    = b;
	f->t0   = ash_now_ms();
	f->list = batch_take(b, mask, &f->count, &f->lanes);
	for (int i = 0; i < mi_config.batch_lanes; i++)
		if ((f->lanes >> i & 1u) != 0)
			b->lanes[i].flying++;
	b->flying++;
	f->next = b->flights;
	if (f->next != NULL)
		f->next->prev = f;
	b->flights = f;
	batch_render(f->list, &hits, &events);
	const char *p[] = {mi_config.app_id, hits, events};
	ash_histogram_observe(
	    ash_metrics_histogram(ash_svc_metrics(b->mi->svc),
	        "ashoon_meta_webhook_batch_size", "Webhook POSTs per commit",
	        NULL, sizes, sizeof(sizes) / sizeof(sizes[0])),
	    (double) f->count);
	rv = ash_db_query(ash_svc_db(b->mi->svc),
	    "SELECT ingest_batch($1, $2::ingest_hit_in[], "
	    "$3::ingest_event_in[])",
	    3, p, on_batch_done, f);
	cJSON_free(hits);
	cJSON_free(events);
	if (rv != ASH_OK)
		on_batch_done(f, rv, NULL);
}

/* Whether a call may start now: none is running, or the latest started
 * has run batch_stagger_ms. If not, the stagger timer is set for when it
 * will have: a commit slow or stuck on one thread's rows then gets
 * company, while at any load the POSTs arriving during a quick one wait
 * for it and go together (the top of this file). */
static bool
batch_may_start(mi_batch *b)
{
	int64_t        age;
	struct timeval tv;

	if (b->flights == NULL || mi_config.batch_stagger_ms == 0)
		return true;
	age = ash_now_ms() - b->flights->t0;
	if (age >= mi_config.batch_stagger_ms)
		return true;
	if (!evtimer_pending(b->stagger, NULL)) {
		int64_t left = mi_config.batch_stagger_ms - age;
		tv.tv_sec    = (time_t) (left / 1000);
		tv.tv_usec   = (suseconds_t) (left % 1000 * 1000);
		evtimer_add(b->stagger, &tv);
	}
	return false;
}

/* Starts the calls that may start (batch_may_start): one for all the
 * lanes with none running, their hits in arrival order; then, beside a
 * lane's running call, one for its queue if it is short
 * (batch_overlap), lane by lane in turn so that with more lanes than
 * connections none is passed over for good. */
static void
batch_flush(mi_batch *b)
{
	int      n     = mi_config.batch_lanes;
	int      first = b->next_lane;
	uint32_t idle  = 0;

	if (b->queued == 0 || b->flying >= mi_config.batch_inflight ||
	    !batch_may_start(b))
		return;
	for (int i = 0; i < n; i++)
		if (b->lanes[i].flying == 0 && b->lanes[i].head != NULL)
			idle |= 1u << i;
	if (idle != 0)
		batch_start(b, idle);
	for (int k = 0; k < n; k++) {
		int   i = (first + k) % n;
		lane *l = &b->lanes[i];

		if (b->flying >= mi_config.batch_inflight)
			return;
		if (l->head == NULL || l->flying == 0 ||
		    l->queued >= mi_config.batch_overlap)
			continue;
		if (!batch_may_start(b))
			return;
		batch_start(b, 1u << i);
		b->next_lane = (i + 1) % n;
	}
}

static void
batch_free(mi_batch *b)
{
	hit *h;

	for (int i = 0; i < mi_config.batch_lanes; i++)
		while ((h = b->lanes[i].head) != NULL) {
			b->lanes[i].head = h->next;
			if (h->call)
				ash_bus_call_fail(h->call, ASH_ECLOSED, NULL);
			hit_free(h);
		}
	free(b->lanes);
	event_free(b->kick);
	event_free(b->stagger);
	ash_hmac_key_free(b->app_key);
	free(b);
}

/* --- POST --- */

/* Whether ids (an array of strings) has id. */
static bool
ids_have(const cJSON *ids, const char *id)
{
	const cJSON *v;

	cJSON_ArrayForEach(v, ids)
	{
		if (id != NULL && cJSON_IsString(v) &&
		    strcmp(v->valuestring, id) == 0)
			return true;
	}
	return false;
}

/* Takes out of doc the entries whose id is not in only; returns how many.
 * A channel's own app secret vouches for that channel's account alone:
 * whoever knows it (the tenant who connected the channel) must not get
 * events stored for another account, of their own or another tenant. */
static int
drop_entries(cJSON *doc, const cJSON *only)
{
	cJSON *entries = cJSON_GetObjectItemCaseSensitive(doc, "entry");
	cJSON *e       = cJSON_IsArray(entries) ? entries->child : NULL;
	int    dropped = 0;

	for (cJSON *next; e != NULL; e = next) {
		next = e->next;
		if (!ids_have(only, ash_json_str(e, "id"))) {
			cJSON_Delete(cJSON_DetachItemViaPointer(entries, e));
			dropped++;
		}
	}
	return dropped;
}

/* Fills the hit from its body, whose signature checked out: all of it
 * when it was signed with our app's secret (only == NULL), else the
 * entries of the accounts in only, whose channels' own secrets it was
 * signed with. The entries left out are counted as kind "unverified_entry"
 * and the body is kept in the journal, listed for those accounts' tenants.
 */
static void
hit_parse(hit *h, const cJSON *only)
{
	mi_parse_stats st      = {0};
	cJSON         *doc     = NULL;
	int            dropped = 0;

	st.kinds    = cJSON_GetObjectItem(h->row, "kinds");
	st.page_ids = cJSON_GetObjectItem(h->row, "page_ids");
	if (ash_json_parse_ids((const char *) h->body, h->body_len, &doc) ==
	        ASH_OK &&
	    only != NULL)
		dropped = drop_entries(doc, only);
	if (doc == NULL ||
	    mi_parse_webhook(doc, 0, mi_config.app_id, h->events, &st) !=
	        ASH_OK) {
		hit_set_outcome(h, "unparseable");
		hit_keep_raw(h);
		cJSON_Delete(doc);
		return;
	}
	cJSON_Delete(doc);
	ash_json_add_str(h->row, "object", st.object);
	cJSON_AddNumberToObject(h->row, "entries", st.entries);
	cJSON_AddNumberToObject(h->row, "events", st.events);
	if (dropped > 0)
		cJSON_AddNumberToObject(st.kinds, "unverified_entry", dropped);
	hit_set_outcome(h, "stored");
	if (st.unknown > 0 || dropped > 0)
		hit_keep_raw(h); /* to see later what we did not store */
	h->nevents = cJSON_GetArraySize(h->events);
}

/* A hit's lane: by the thread of its first event (its page and customer,
 * FNV-1a), so that the calls of two lanes seldom share a thread's rows and
 * run side by side, and a thread's hits queue in one lane, behind each
 * other. A POST naming several threads goes by its first: its commit may
 * then wait for another lane's, never deadlock with it (the SQL's order).
 * A hit without events (refused, unparseable) goes to the first lane. */
static int
hit_lane(const hit *h)
{
	const cJSON *e = h->events != NULL ? h->events->child : NULL;
	const char  *k[2];
	uint32_t     x = 2166136261u;

	if (e == NULL || mi_config.batch_lanes <= 1)
		return 0;
	k[0] = ash_json_str(e, "page");
	k[1] = ash_json_str(e, "customer");
	for (int i = 0; i < 2; i++)
		for (const char *c = k[i] ? k[i] : ""; *c != '\0'; c++)
			x = (x ^ (uint8_t) *c) * 16777619u;
	return (int) (x % (uint32_t) mi_config.batch_lanes);
}

static void
queue_hit(mi_batch *b, hit *h)
{
	h->lane = hit_lane(h);
	h->seq  = b->seq++;
	batch_push(b, h, false);
	if (b->flying < mi_config.batch_inflight)
		event_active(b->kick, EV_TIMEOUT, 0);
}

static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
	batch_flush(arg);
}

static void
on_stagger(evutil_socket_t fd, short what, void *arg)
{
	mi_batch *b = arg;

	if (!b->closing)
		batch_flush(b);
}

/* A POST refused for its signature: answered at once, journaled with the
 * next batch, nothing else kept. header: it had an X-Hub-Signature-256. */
static void
hit_rejected(mi_batch *b, hit *h, bool header, ash_err why)
{
	ash_bus_call *call = h->call;

	h->call = NULL;
	hit_set_outcome(h, "rejected");
	/* "missing" only without a header: a malformed one is "invalid". */
	cJSON_DeleteItemFromObjectCaseSensitive(h->row, "signature");
	ash_json_add_str(h->row, "signature", header ? "invalid" : "missing");
	cJSON_Delete(h->events);
	h->events = cJSON_CreateArray();
	queue_hit(b, h);
	hit_count(b, "rejected");
	ash_bus_call_fail(call, why,
	    why == ASH_EUNAUTH ? "X-Hub-Signature-256 is missing or malformed"
	                       : "X-Hub-Signature-256 does not match");
}

/* The object (into object, "" if none) and the ids of the first 16
 * entries of a body, read without trusting it. */
static cJSON *
body_peek(const uint8_t *raw, size_t len, char object[16])
{
	cJSON       *doc = NULL;
	cJSON       *ids = cJSON_CreateArray();
	const cJSON *e;

	object[0] = '\0';
	if (ash_json_parse_ids((const char *) raw, len, &doc) != ASH_OK)
		return ids;
	if (ash_json_str(doc, "object") != NULL)
		snprintf(object, 16, "%s", ash_json_str(doc, "object"));
	cJSON_ArrayForEach(e, cJSON_GetObjectItem(doc, "entry"))
	{
		const char *id = ash_json_str(e, "id");
		if (id != NULL && cJSON_GetArraySize(ids) < 16)
			cJSON_AddItemToArray(ids, cJSON_CreateString(id));
	}
	cJSON_Delete(doc);
	return ids;
}

/* object and entry ids into the hit's journal row (a rejected POST). */
static void
hit_peek(hit *h, const uint8_t *raw, size_t len)
{
	char   object[16];
	cJSON *ids = body_peek(raw, len, object);

	if (object[0] != '\0')
		ash_json_add_str(h->row, "object", object);
	cJSON_DeleteItemFromObjectCaseSensitive(h->row, "page_ids");
	cJSON_AddItemToObject(h->row, "page_ids", ids);
}

/* A POST whose signature is being checked (possibly against the secrets
 * of Instagram-login channels, which needs a query). */
typedef struct post {
	mi_batch *b;
	hit      *h;
	uint8_t  *raw; /* the body as sent */
	size_t    len;
	char     *sig;
} post;

static void
post_free(post *p)
{
	free(p->raw);
	free(p->sig);
	free(p);
}

static void
post_accept(post *p, const cJSON *only)
{
	p->h->body     = p->raw; /* kept in case the hit fails */
	p->h->body_len = p->len;
	p->raw         = NULL;
	hit_parse(p->h, only);
	queue_hit(p->b, p->h);
	post_free(p);
}

static void
post_reject(post *p, ash_err why)
{
	hit_peek(p->h, p->raw, p->len);
	hit_rejected(p->b, p->h, p->sig != NULL, why);
	post_free(p);
}

/* Instagram-login channels may sign with their own app secret: a POST
 * signed with one is taken for the accounts of the channels whose secret
 * it is (several, when they share an app), and for no other. */
static void
on_channel_secrets(void *arg, ash_err rv, const PGresult *res)
{
	post     *p = arg;
	mi_batch *b = p->b;
	cJSON    *only;
	char      aad[128];

	b->checking--;
	if (rv != ASH_OK || b->closing) {
		/* Not known to be forged: Meta sends it again. */
		hit_count(b, "unavailable");
		ash_bus_call_fail(p->h->call, ASH_EUNAVAIL,
		    "the signature could not be checked, retry");
		hit_free(p->h);
		post_free(p);
		batch_release(b);
		return;
	}
	only = cJSON_CreateArray();
	for (int i = 0; i < PQntuples(res); i++) {
		uint8_t *secret = NULL;
		size_t   n      = 0;
		mi_channel_aad(
		    PQgetvalue(res, i, 0), "app_secret", aad, sizeof(aad));
		if (ash_crypto_unseal(p->b->mi->keys, aad,
		        PQgetvalue(res, i, 1), &secret, &n) != ASH_OK)
			continue;
		if (mi_signature_check(p->sig, p->raw, p->len,
		        (const char *) secret) == ASH_OK)
			cJSON_AddItemToArray(
			    only, cJSON_CreateString(PQgetvalue(res, i, 2)));
		OPENSSL_cleanse(secret, n);
		free(secret);
	}
	if (cJSON_GetArraySize(only) > 0)
		post_accept(p, only);
	else
		post_reject(p, ASH_EFORBIDDEN);
	cJSON_Delete(only);
}

/* A body our app's secret did not sign: an Instagram one may be signed
 * with the secret of a channel it names. */
static void
post_try_channels(post *p)
{
	static const char sql[] =
	    "SELECT id, app_secret_sealed, external_id FROM channels "
	    "WHERE kind = 'instagram' AND external_id = ANY($1::text[]) "
	    "AND app_secret_sealed IS NOT NULL AND disconnected_at IS NULL";
	char   object[16];
	cJSON *ids = body_peek(p->raw, p->len, object);
	char  *arr;

	if (strcmp(object, "instagram") != 0 || cJSON_GetArraySize(ids) == 0) {
		cJSON_Delete(ids);
		post_reject(p, ASH_EFORBIDDEN);
		return;
	}
	arr = ash_pgrec_values(ids);
	cJSON_Delete(ids);
	const char *params[] = {arr};
	p->b->checking++;
	ash_err rv = ash_db_query(
	    ash_svc_db(p->b->mi->svc), sql, 1, params, on_channel_secrets, p);
	cJSON_free(arr);
	if (rv != ASH_OK)
		on_channel_secrets(p, rv, NULL);
}

static void
on_ingest(ash_bus_call *call, void *arg)
{
	mi_ctx            *mi       = arg;
	const ash_request *req      = ash_bus_call_req(call);
	const char        *b64      = ash_json_str(req->body, "raw");
	const char        *sig      = ash_json_str(req->body, "signature");
	int64_t            received = 0;
	post              *p;
	ash_err            rv;

	if (req->att == NULL && b64 == NULL) {
		ash_bus_call_fail(call, ASH_EINVAL,
		    "the body is missing (neither an attachment nor \"raw\")");
		return;
	}
	if (ash_json_get_i64(req->body, "received_ms", &received) != ASH_OK)
		received = ash_wall_ms();
	p      = ash_xcalloc(1, sizeof(*p));
	p->b   = mi->batch;
	p->sig = sig ? ash_xstrdup(sig) : NULL;
	ash_counter_add(
	    req->att != NULL ? p->b->bodies_att : p->b->bodies_b64, 1);
	if (req->att != NULL) {
		p->len = (size_t) req->att_len;
		p->raw = ash_xmalloc(p->len + 1);
		memcpy(p->raw, req->att, p->len);
		p->raw[p->len] = '\0';
	} else if (ash_b64_decode(b64, strlen(b64), &p->raw, &p->len) !=
	    ASH_OK) {
		post_free(p);
		ash_bus_call_fail(call, ASH_EINVAL, "raw is not base64");
		return;
	}
	p->h = hit_new(call, received, "valid", p->len);
	rv   = p->b->app_key != NULL
	      ? mi_signature_check_key(sig, p->raw, p->len, p->b->app_key)
	      : (sig ? ASH_EFORBIDDEN : ASH_EUNAUTH);
	if (rv == ASH_OK)
		post_accept(p, NULL);
	else if (rv == ASH_EFORBIDDEN &&
	    memmem(p->raw, p->len, "\"object\":\"instagram\"", 20))
		post_try_channels(p);
	else
		post_reject(p, rv);
}

/* --- GET --- */

static void
on_verify(ash_bus_call *call, void *arg)
{
	const cJSON *b     = ash_bus_call_req(call)->body;
	const char  *mode  = ash_json_str(b, "hub.mode");
	const char  *token = ash_json_str(b, "hub.verify_token");
	const char  *chal  = ash_json_str(b, "hub.challenge");
	uint8_t      x[ASH_SHA256_LEN], y[ASH_SHA256_LEN];
	cJSON       *out;

	if (token != NULL) {
		ash_sha256(token, strlen(token), x);
		ash_sha256(
		    mi_config.verify_token, strlen(mi_config.verify_token), y);
	}
	/* Hashing both makes the comparison independent of lengths. */
	if (mode == NULL || strcmp(mode, "subscribe") != 0 || token == NULL ||
	    chal == NULL || *mi_config.verify_token == '\0' ||
	    !ash_ct_equal(x, y, sizeof(x))) {
		ash_log_warn(ash_bus_call_log(call), "MI-VERIFY",
		    "webhook verification refused");
		ash_bus_call_fail(
		    call, ASH_EFORBIDDEN, "verification token mismatch");
		return;
	}
	out = cJSON_CreateObject();
	ash_json_add_str(out, "challenge", chal);
	ash_bus_call_reply(call, 200, out);
}

/* --- life cycle --- */

void
mi_webhook_register(mi_ctx *mi)
{
	ash_bus_server *bus = ash_svc_bus(mi->svc);

	ash_bus_server_handle(bus, ASH_OP_META_WEBHOOK_VERIFY, on_verify, mi);
	ash_bus_server_handle(bus, ASH_OP_META_WEBHOOK_INGEST, on_ingest, mi);
}

ash_err
mi_webhook_init(mi_ctx *mi)
{
	mi_batch *b = ash_xcalloc(1, sizeof(*b));

	b->mi      = mi;
	b->lanes   = ash_xcalloc((size_t) mi_config.batch_lanes, sizeof(lane));
	b->waiting = ash_metrics_gauge(ash_svc_metrics(mi->svc),
	    "ashoon_meta_webhook_waiting",
	    "Webhook POSTs waiting for their commit to start", NULL);
	b->kick =
	    event_new(ash_loop_base(ash_svc_loop(mi->svc)), -1, 0, on_kick, b);
	b->stagger =
	    evtimer_new(ash_loop_base(ash_svc_loop(mi->svc)), on_stagger, b);
	if (b->kick == NULL || b->stagger == NULL) {
		if (b->kick != NULL)
			event_free(b->kick);
		free(b->lanes);
		free(b);
		return ASH_ENOMEM;
	}
	b->bodies_att = ash_metrics_counter(ash_svc_metrics(mi->svc),
	    "ashoon_meta_webhook_bodies_total",
	    "Webhook POST bodies by how they crossed the bus",
	    "form=\"attachment\"");
	b->bodies_b64 = ash_metrics_counter(ash_svc_metrics(mi->svc),
	    "ashoon_meta_webhook_bodies_total",
	    "Webhook POST bodies by how they crossed the bus",
	    "form=\"base64\"");
	if (*mi_config.app_secret)
		b->app_key = ash_hmac_key_new(
		    mi_config.app_secret, strlen(mi_config.app_secret));
	mi->batch = b;
	return ASH_OK;
}

void
mi_webhook_fini(mi_ctx *mi)
{
	mi_batch *b = mi->batch;

	if (b == NULL)
		return;
	mi->batch = NULL;
	/* A commit, an unstorable hit's journal line or a POST's lookup of
	 * its channels' secrets still running answers and frees when it
	 * returns (the db pool closes after us and cancels it). */
	b->closing = true;
	batch_release(b);
}
