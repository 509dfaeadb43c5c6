/*
 * mi_media.c - the sizes of received attachments.
 *
 * A webhook gives an attachment's type and CDN URL, not its size
 * (meta-webhooks.md §3). ingest_batch() makes each new message with
 * attachments due (a media_due row, migration 0018); a 1 s timer claims
 * up to MEDIA_BATCH due messages, and claims again as soon as those are
 * done while claims come back full (FOR UPDATE SKIP LOCKED, next_at moved
 * forward as a lease, so replicas share the work and a crash only delays
 * it), asks each attachment URL for its headers with a HEAD, and writes
 * "size" (Content-Length, bytes) and "mime_type" (Content-Type) into the
 * attachment. Meta's CDN URLs expire: a URL answered 4xx (but 429), or
 * refused, gets "size": null and is not asked again; a 429, a 5xx or a
 * network failure is asked again after a backoff, MEDIA_TRIES claims at
 * most. The message is written only while its attachments are those read
 * (an unsend meanwhile keeps none), and a deleted message is simply gone.
 *
 * Only URLs on Meta's CDNs are asked (ASHOON_META_MEDIA_HOSTS): a
 * customer's shared link (a "fallback" attachment) names any site, which
 * must not learn our address or take requests from us on a customer's
 * word. The URLs come from webhook bodies, which the app secret of a
 * tenant's own Instagram-login channel may sign: they are untrusted (no
 * private or loopback addresses, on the first hop or a redirect's:
 * ashoon/httpc.h), unless ASHOON_META_MEDIA_ALLOW_PRIVATE (tests, on-prem
 * mirrors).
 *
 * Everything runs on the loop thread; every claim and HEAD holds the loop,
 * so a drain lets them finish.
 */
#include "mi.h"

#include <ashoon/ids.h>
#include <ashoon/json.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MEDIA_BATCH     16 /* messages in flight at most */
#define MEDIA_MAX_ITEMS 10 /* attachments asked per message */
#define MEDIA_TRIES     5  /* claims of one message that ask */
/* Claims at most: one whose answers cannot be written (twice after its
 * last try) is given up rather than claimed again every lease. */
#define MEDIA_CLAIMS    (MEDIA_TRIES + 2)
#define MEDIA_BACKOFF_S 5 /* after the first try; doubles */
#define MEDIA_REDIRECTS 3 /* Instagram's lookaside URLs redirect */
#define MIME_MAX        100
#define TICK_MS         1000

static struct {
	bool          closing;
	bool          claiming;
	bool          more;     /* the last claim was full: more may be due */
	int           inflight; /* messages being asked about */
	ash_httpc    *http;     /* untrusted URLs */
	struct event *timer;    /* claims every TICK_MS */
	/* ashoon_meta_media_total{result}: attachments whose size was read,
	 * is unknown for good, or is to be asked again. */
	ash_counter *read, *unknown, *retry;
} ms;

/* One claimed message. */
typedef struct media_job {
	mi_ctx *mi;
	char    id[ASH_UUID_LEN];
	char   *read;  /* its attachments as claimed (text) */
	cJSON  *atts;  /* the same, filled in as answers come */
	int     tries; /* claims, this one included */
	int     waiting;
	bool    again; /* some URL is to be asked again */
} media_job;

/* One HEAD. */
typedef struct media_head {
	media_job *j;
	cJSON     *item;
} media_head;

static void job_store(media_job *j);
static void media_claim(mi_ctx *mi);

/* A Content-Type worth keeping: printable ASCII, as a media type is
 * (anything else, stored as it came, could make the row's jsonb invalid
 * and the write fail at every try). */
static bool
mime_ok(const char *v)
{
	size_t n = 0;

	for (; v != NULL && v[n] != '\0'; n++)
		if (v[n] < 0x20 || v[n] > 0x7e || n == MIME_MAX)
			return false;
	return n > 0;
}

/* What a HEAD's answer means for its attachment: written into item, or
 * false when it is to be asked again. */
static bool
head_settles(cJSON *item, ash_err rv, const ash_httpc_response *resp)
{
	const char *ct;
	int64_t     n;

	if (rv != ASH_OK && rv != ASH_EFORBIDDEN && rv != ASH_EINVAL)
		return false; /* the network: ask again */
	if (rv != ASH_OK) {   /* a refused address, not a URL: for good */
		cJSON_AddNullToObject(item, "size");
		return true;
	}
	if (resp->status == 429 || resp->status >= 500)
		return false;
	/* A size JSON holds exactly (a double's integers), or none. */
	n = resp->status / 100 == 2 ? resp->content_length : -1;
	if (n < 0 || n > (INT64_C(1) << 53)) {
		cJSON_AddNullToObject(item, "size");
		return true;
	}
	cJSON_AddNumberToObject(item, "size", (double) n);
	ct = ash_httpc_response_header(resp, "Content-Type");
	if (mime_ok(ct))
		ash_json_add_str(item, "mime_type", ct);
	return true;
}

static void
on_head(void *arg, ash_err rv, const ash_httpc_response *resp)
{
	media_head *h = arg;
	media_job  *j = h->j;

	if (rv == ASH_ECANCELED)
		; /* closing: the lease brings the message back */
	else if (!head_settles(h->item, rv, resp)) {
		j->again = true;
		ash_counter_add(ms.retry, 1);
	} else if (cJSON_IsNull(
	               cJSON_GetObjectItemCaseSensitive(h->item, "size")))
		ash_counter_add(ms.unknown, 1);
	else
		ash_counter_add(ms.read, 1);
	free(h);
	if (--j->waiting == 0)
		job_store(j);
}

/* The last of a full claim done, the next is claimed at once: a busy
 * hour's attachments are not held to one claim a tick. */
static void
job_free(media_job *j)
{
	mi_ctx *mi = j->mi;

	free(j->read);
	cJSON_Delete(j->atts);
	free(j);
	if (--ms.inflight == 0 && ms.more)
		media_claim(mi);
}

static void
on_stored(void *arg, ash_err rv, const PGresult *res)
{
	media_job *j = arg;

	if (rv != ASH_OK && !ms.closing)
		ash_log_warn(NULL, "MI-MEDIA", "message %s not updated: %s",
		    j->id, ash_strerror(rv));
	ash_loop_rele(ash_svc_loop(j->mi->svc));
	job_free(j);
}

/* Writes what was learnt. Out of tries, what is still open is unknown. */
static void
job_store(media_job *j)
{
	/* The message is written only when something was learnt and its
	 * attachments are still those read; the due row goes, or is due
	 * again after $4 s while the message still has them. */
	static const char sql[] =
	    "WITH m AS (UPDATE messages SET attachments = $2::jsonb"
	    " WHERE id = $1 AND attachments = $3::jsonb"
	    " AND $2::jsonb <> $3::jsonb),"
	    " a AS (SELECT $4::int > 0 AND EXISTS (SELECT 1 FROM messages"
	    " WHERE id = $1 AND attachments = $3::jsonb) AS again),"
	    " d AS (DELETE FROM media_due WHERE message_id = $1"
	    " AND NOT (SELECT again FROM a))"
	    " UPDATE media_due SET next_at = now() + make_interval(secs => "
	    "$4::int) WHERE message_id = $1 AND (SELECT again FROM a)";
	cJSON *it;
	char  *atts, delay[16];

	if (ms.closing) { /* the lease brings it back */
		ash_loop_rele(ash_svc_loop(j->mi->svc));
		job_free(j);
		return;
	}
	if (j->again && j->tries >= MEDIA_TRIES) {
		cJSON_ArrayForEach(it, j->atts)
		{
			if (ash_json_str(it, "url") != NULL &&
			    !cJSON_HasObjectItem(it, "size")) {
				cJSON_AddNullToObject(it, "size");
				ash_counter_add(ms.unknown, 1);
			}
		}
		j->again = false;
	}
	snprintf(delay, sizeof(delay), "%d",
	    j->again ? MEDIA_BACKOFF_S << (j->tries - 1) : 0);
	atts            = j->atts ? cJSON_PrintUnformatted(j->atts) : NULL;
	const char *p[] = {j->id, atts ? atts : j->read, j->read, delay};
	if (ash_db_query(ash_svc_db(j->mi->svc), sql, 4, p, on_stored, j) !=
	    ASH_OK)
		on_stored(j, ASH_EUNAVAIL, NULL);
	cJSON_free(atts);
}

/* Asks about each attachment of row i of a claim (message id,
 * attachments or NULL when the message is gone, claims) that has a URL
 * and no size yet. Without a list to work (the message gone, claimed too
 * often, or attachments that are no list: not ours to mend), j->atts
 * stays NULL and the due row is only dropped. */
static void
job_start(mi_ctx *mi, const PGresult *r, int i)
{
	media_job *j = ash_xcalloc(1, sizeof(*j));
	cJSON     *it, *list = NULL;
	int        n = 0;

	j->mi = mi;
	snprintf(j->id, sizeof(j->id), "%s", PQgetvalue(r, i, 0));
	j->read =
	    ash_xstrdup(PQgetisnull(r, i, 1) ? "[]" : PQgetvalue(r, i, 1));
	j->tries = atoi(PQgetvalue(r, i, 2));
	ms.inflight++;
	ash_loop_hold(ash_svc_loop(mi->svc));
	if (j->tries > MEDIA_CLAIMS)
		ash_log_warn(NULL, "MI-MEDIA",
		    "message %s: sizes given up after %d claims", j->id,
		    MEDIA_CLAIMS);
	else if (!PQgetisnull(r, i, 1) &&
	    ash_json_parse(j->read, strlen(j->read), &list) == ASH_OK &&
	    cJSON_IsArray(list)) {
		j->atts = list;
		list    = NULL;
	}
	cJSON_Delete(list);
	j->waiting = 1; /* until every HEAD has started */
	cJSON_ArrayForEach(it, j->atts)
	{
		const char       *url = ash_json_str(it, "url");
		ash_httpc_request req = {.method = "HEAD",
		    .url                         = url,
		    .timeout_ms                  = mi_config.graph_timeout_ms,
		    .untrusted_url               = true,
		    .max_redirects               = MEDIA_REDIRECTS};
		media_head       *h;

		if (url == NULL || cJSON_HasObjectItem(it, "size"))
			continue;
		if (!ash_httpc_url_host_in(url, mi_config.media_hosts) ||
		    n++ == MEDIA_MAX_ITEMS) {
			cJSON_AddNullToObject(it, "size");
			ash_counter_add(ms.unknown, 1);
			continue;
		}
		h       = ash_xmalloc(sizeof(*h));
		h->j    = j;
		h->item = it;
		j->waiting++;
		/* A string that is not a URL we can ask: for good. */
		if (ash_httpc_send(ms.http, &req, on_head, h, NULL) != ASH_OK)
			on_head(h, ASH_EINVAL, NULL);
	}
	if (--j->waiting == 0)
		job_store(j);
}

static void
on_claimed(void *arg, ash_err rv, const PGresult *res)
{
	mi_ctx *mi = arg;

	ms.claiming = false;
	ash_loop_rele(ash_svc_loop(mi->svc));
	if (rv != ASH_OK && rv != ASH_ECANCELED && rv != ASH_ECLOSED)
		ash_log_warn(
		    NULL, "MI-MEDIA", "claim failed: %s", ash_strerror(rv));
	ms.more = false; /* jobs that end at once do not claim meanwhile */
	for (int i = 0; rv == ASH_OK && !ms.closing && i < PQntuples(res); i++)
		job_start(mi, res, i);
	ms.more = rv == ASH_OK && PQntuples(res) == MEDIA_BATCH;
	if (ms.more && ms.inflight == 0)
		media_claim(mi);
}

static void
media_claim(mi_ctx *mi)
{
	/* The lease outlasts the longest HEAD. */
	static const char sql[] =
	    "WITH due AS (SELECT message_id FROM media_due"
	    " WHERE next_at <= now() ORDER BY next_at"
	    " LIMIT $2::int FOR UPDATE SKIP LOCKED),"
	    " c AS (UPDATE media_due d"
	    " SET next_at = now() + make_interval(secs => $1::int),"
	    " tries = d.tries + 1"
	    " FROM due WHERE d.message_id = due.message_id"
	    " RETURNING d.message_id, d.tries)"
	    " SELECT c.message_id, m.attachments, c.tries"
	    " FROM c LEFT JOIN messages m ON m.id = c.message_id";
	char lease[16], batch[8];

	/* No new claims while the service drains; those running finish. */
	if (ms.closing || ms.http == NULL || ms.claiming || ms.inflight > 0 ||
	    mi->draining || ash_loop_stopping(ash_svc_loop(mi->svc)))
		return;
	snprintf(lease, sizeof(lease), "%d",
	    mi_config.graph_timeout_ms / 1000 + 30);
	snprintf(batch, sizeof(batch), "%d", MEDIA_BATCH);
	const char *p[] = {lease, batch};
	if (ash_db_query(ash_svc_db(mi->svc), sql, 2, p, on_claimed, mi) !=
	    ASH_OK)
		return; /* the next tick tries again */
	ms.claiming = true;
	ash_loop_hold(ash_svc_loop(mi->svc));
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void) fd;
	(void) what;
	media_claim(arg);
}

ash_err
mi_media_init(mi_ctx *mi)
{
	static const char name[] = "ashoon_meta_media_total";
	static const char help[] =
	    "Received attachments by what is known of their size";
	ash_metrics   *reg = ash_svc_metrics(mi->svc);
	ash_httpc_opts o   = {mi_config.media_allow_private, NULL};
	struct timeval tv  = {TICK_MS / 1000, (TICK_MS % 1000) * 1000};
	ash_err        rv;

	ms.read = ash_metrics_counter(reg, name, help, "result=\"read\"");
	ms.unknown =
	    ash_metrics_counter(reg, name, help, "result=\"unknown\"");
	ms.retry   = ash_metrics_counter(reg, name, help, "result=\"retry\"");
	ms.closing = false;
	if ((rv = ash_httpc_new(ash_svc_loop(mi->svc), &o, &ms.http)) !=
	    ASH_OK)
		return rv;
	ms.timer = event_new(ash_loop_base(ash_svc_loop(mi->svc)), -1,
	    EV_PERSIST, on_timer, mi);
	ASH_ASSERT(ms.timer != NULL);
	event_add(ms.timer, &tv);
	return ASH_OK;
}

void
mi_media_fini(mi_ctx *mi)
{
	(void) mi;
	ms.closing = true;
	if (ms.timer != NULL)
		event_free(ms.timer);
	ms.timer = NULL;
	ash_httpc_free(ms.http); /* HEADs in flight: on_head, canceled */
	ms.http = NULL;
}
