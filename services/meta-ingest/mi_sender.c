/*
 * mi_sender.c - the sender: works the outbound rows conv.send wrote.
 *
 * Never lose a message (DESIGN.md): the row is the job. The sender claims
 * due rows with UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)
 * (so replicas share the work), marks them 'sending' under a lease, calls
 * the Send API and records 'sent' / a retry with backoff / 'failed'. A
 * replica that dies mid-send leaves a lease that expires; the row is then
 * claimed again. Messages of one conversation go out one at a time, in
 * order: a row is due only when no older outbound row of its thread is
 * still queued or sending.
 *
 * Wake-ups: mi_sender_kick (this process), NOTIFY mi_outbox (sent in the
 * statement that queues, so every replica wakes at commit) and a timer
 * every sender_poll_ms (retries that come due, lost notifications).
 *
 * Threads and lifetimes: everything runs on the loop. At most
 * SEND_INFLIGHT transfers run at once; each holds the loop (drain waits
 * for it to be recorded). The sender is refcounted (STYLE §7): the owner,
 * a claim in flight and every job hold a reference, so fini may run while
 * curl or libpq still owe callbacks; those see `closing` and only free.
 *
 * Tokens are unsealed just before a call and wiped right after it.
 */
#include "mi.h"

#include <ashoon/json.h>

#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEND_INFLIGHT 16 /* transfers at once */
#define LEASE_EXTRA_S 60 /* lease = timeout + this */

struct mi_sender {
	mi_ctx       *mi;
	struct event *timer;
	int           refs;     /* owner + claim in flight + each job */
	int           inflight; /* jobs */
	bool          claiming; /* a claim query is in flight */
	bool          again;    /* woken while claiming: claim once more */
	bool          draining; /* no new claims */
	bool          closing;  /* fini ran: callbacks only free */
	ash_counter  *sent, *retry, *failed, *refused;
};

static void
sender_unref(mi_sender *s)
{
	if (--s->refs > 0)
		return;
	free(s);
}

/* --- the sender: claiming ----------------------------------------------- */

/* Claim result columns. */
enum {
	CL_ID,
	CL_TENANT,
	CL_CHANNEL,
	CL_CONV,
	CL_TEXT,
	CL_ATT_TYPE,
	CL_ATT_URL,
	CL_MTYPE,
	CL_TAG,
	CL_REPLY_TO,
	CL_ATTEMPTS,
	CL_LOGIN,
	CL_TOKEN,
	CL_CH_STATUS,
	CL_RECIPIENT,
	CL_GONE,
	CL_AUTHOR,
	CL_LAST_CUSTOMER,
	CL_THROTTLES,
};

/* Due rows: queued (or sending under an expired lease), their time has
 * come, their channel is usable (or disconnected: they fail at once), and
 * no older outbound row of the same thread is still waiting (order within
 * a thread). */
static const char claim_sql[] =
    "UPDATE messages m SET state = 'sending', attempts = m.attempts + 1, "
    "lease_until = now() + make_interval(secs => $2::int) "
    "FROM channels c, conversations v, participants p "
    "WHERE m.id IN ("
    " SELECT o.id FROM messages o JOIN channels oc ON oc.id = o.channel_id"
    " WHERE o.direction = 'out' AND o.state IN ('queued', 'sending')"
    " AND (o.state = 'queued' OR o.lease_until < now())"
    " AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= now())"
    " AND (oc.disconnected_at IS NOT NULL OR (oc.status <> 'needs_reauth'"
    " AND (oc.rate_limited_until IS NULL"
    " OR oc.rate_limited_until <= now())))"
    " AND NOT EXISTS (SELECT 1 FROM messages e"
    "  WHERE e.conversation_id = o.conversation_id AND e.direction = 'out'"
    "  AND e.state IN ('queued', 'sending')"
    "  AND (e.sent_at, e.id) < (o.sent_at, o.id))"
    " ORDER BY o.next_attempt_at NULLS FIRST, o.sent_at"
    " LIMIT $1::int FOR UPDATE OF o SKIP LOCKED) "
    "AND c.id = m.channel_id AND v.id = m.conversation_id "
    "AND p.id = v.participant_id "
    "RETURNING m.id, m.tenant_id, m.channel_id, m.conversation_id, m.text, "
    "m.attachments -> 0 ->> 'type', m.attachments -> 0 ->> 'url', "
    "m.messaging_type, m.tag, m.reply_to_mid, m.attempts, c.login, "
    "c.token_sealed, c.status, p.external_id, "
    "c.disconnected_at IS NOT NULL, m.author, "
    "(extract(epoch from v.last_customer_msg_at) * 1000)::bigint, "
    "m.throttles";

static void claim(mi_sender *s);
static void job_start(mi_sender *s, const PGresult *r, int row);

static void
on_claimed(void *arg, ash_err rv, const PGresult *res)
{
	mi_sender *s = arg;

	s->claiming = false;
	if (rv != ASH_OK && !s->closing)
		ash_log_warn(NULL, "MI-CLAIM",
		    "claiming outbound messages "
		    "failed: %s",
		    ash_strerror(rv));
	for (int i = 0; rv == ASH_OK && !s->closing && i < PQntuples(res); i++)
		job_start(s, res, i);
	/* A full batch may have left more due rows behind. */
	if (rv == ASH_OK && PQntuples(res) > 0 && s->inflight < SEND_INFLIGHT)
		s->again = true;
	if (s->again && !s->closing) {
		s->again = false;
		claim(s);
	}
	sender_unref(s);
}

/* Claims as many due rows as there are free transfer slots. */
static void
claim(mi_sender *s)
{
	char lim[16], lease[16];

	if (s->closing || s->draining || s->inflight >= SEND_INFLIGHT)
		return;
	if (s->claiming) {
		s->again = true;
		return;
	}
	snprintf(lim, sizeof(lim), "%d", SEND_INFLIGHT - s->inflight);
	snprintf(lease, sizeof(lease), "%d",
	    mi_config.graph_timeout_ms / 1000 + LEASE_EXTRA_S);
	const char *p[] = {lim, lease};
	if (ash_db_query(ash_svc_db(s->mi->svc), claim_sql, 2, p, on_claimed,
	        s) != ASH_OK)
		return; /* the timer tries again */
	s->claiming = true;
	s->refs++;
}

/* --- the sender: one message -------------------------------------------- */

typedef struct job {
	mi_sender      *s;
	char            id[40], tenant[40], channel[40], conv[40];
	char            login[16];
	char           *text, *att_type, *att_url, *mtype, *tag, *reply_to;
	char           *sealed, *recipient;
	int             attempts;  /* tries, this one included */
	int             throttles; /* tries Meta answered "wait" */
	mi_author       author;
	int64_t         last_customer_ms; /* 0: never wrote */
	bool            channel_ok; /* channel status was 'ok' at claim */
	bool            gone;       /* the channel was disconnected */
	const char     *why;        /* failure_reason, if not from Graph */
	mi_send_outcome outcome;
} job;

static void
job_free(job *j)
{
	mi_sender *s = j->s;

	free(j->text);
	free(j->att_type);
	free(j->att_url);
	free(j->mtype);
	free(j->tag);
	free(j->reply_to);
	free(j->sealed);
	free(j->recipient);
	free(j);
	s->inflight--;
	ash_loop_rele(ash_svc_loop(s->mi->svc));
	sender_unref(s);
}

static job *
job_new(mi_sender *s, const PGresult *r, int i)
{
	job *j = ash_xcalloc(1, sizeof(*j));

	j->s = s;
	snprintf(j->id, sizeof(j->id), "%s", PQgetvalue(r, i, CL_ID));
	snprintf(
	    j->tenant, sizeof(j->tenant), "%s", PQgetvalue(r, i, CL_TENANT));
	snprintf(j->channel, sizeof(j->channel), "%s",
	    PQgetvalue(r, i, CL_CHANNEL));
	snprintf(j->conv, sizeof(j->conv), "%s", PQgetvalue(r, i, CL_CONV));
	snprintf(j->login, sizeof(j->login), "%s", PQgetvalue(r, i, CL_LOGIN));
	j->text             = mi_col_dup(r, i, CL_TEXT);
	j->att_type         = mi_col_dup(r, i, CL_ATT_TYPE);
	j->att_url          = mi_col_dup(r, i, CL_ATT_URL);
	j->mtype            = mi_col_dup(r, i, CL_MTYPE);
	j->tag              = mi_col_dup(r, i, CL_TAG);
	j->reply_to         = mi_col_dup(r, i, CL_REPLY_TO);
	j->sealed           = mi_col_dup(r, i, CL_TOKEN);
	j->recipient        = mi_col_dup(r, i, CL_RECIPIENT);
	j->attempts         = atoi(PQgetvalue(r, i, CL_ATTEMPTS));
	j->throttles        = atoi(PQgetvalue(r, i, CL_THROTTLES));
	j->author           = strcmp(PQgetvalue(r, i, CL_AUTHOR), "ai") == 0
	              ? MI_AUTHOR_AI
	              : MI_AUTHOR_AGENT;
	j->last_customer_ms = atoll(PQgetvalue(r, i, CL_LAST_CUSTOMER));
	j->channel_ok = strcmp(PQgetvalue(r, i, CL_CH_STATUS), "ok") == 0;
	j->gone       = PQgetvalue(r, i, CL_GONE)[0] == 't';
	s->inflight++;
	s->refs++;
	ash_loop_hold(ash_svc_loop(s->mi->svc));
	return j;
}

static void job_on_reply(void *arg, const mi_graph_result *res);
static void job_record(job *j, const mi_graph_result *res);

/* Unseals the token, builds the body, calls Graph (job_on_reply next). */
static ash_err
job_call(job *j)
{
	mi_outbound o = {j->id, j->recipient, j->mtype, j->tag, j->text,
	    j->att_type, j->att_url, j->reply_to};
	char       *token;
	cJSON      *body;
	ash_err     rv;

	/* conv.send always stores all of these; a row written otherwise is
	 * retried until it fails. */
	if (j->recipient == NULL || j->mtype == NULL ||
	    (j->text == NULL && (j->att_type == NULL || j->att_url == NULL)))
		return ASH_EINVAL;
	if ((token = mi_token_unseal(j->s->mi, j->channel, j->sealed)) == NULL)
		return ASH_ECRYPTO;
	body = mi_send_body(&o);
	rv   = mi_graph_call(j->s->mi, j->login, token, "POST", "me/messages",
	      NULL, body, job_on_reply, j);
	mi_free_wiped(token);
	cJSON_Delete(body);
	return rv;
}

/* The window policy again, now: a row can wait for days (throttling,
 * backoff, an older message of its thread). Goes with the type it allows
 * now (a person's reply queued inside 24 h, sent after, needs the
 * HUMAN_AGENT tag), or returns the refusal. */
static const char *
job_policy(job *j)
{
	mi_policy p = mi_policy_at_send(
	    j->author, ash_wall_ms(), j->last_customer_ms, j->mtype);

	if (!p.allowed)
		return p.refusal;
	if (j->mtype == NULL || strcmp(j->mtype, p.messaging_type) != 0) {
		free(j->mtype);
		free(j->tag);
		j->mtype = ash_xstrdup(p.messaging_type);
		j->tag   = p.tag ? ash_xstrdup(p.tag) : NULL;
	}
	return NULL;
}

/* Sends one claimed row. */
static void
job_start(mi_sender *s, const PGresult *r, int row)
{
	job            *j    = job_new(s, r, row);
	mi_graph_result fail = {
	    ASH_OK, 0, MI_GRAPH_PERMANENT, 0, 0, NULL, NULL, 0, NULL};

	if (j->gone) {
		j->why = "the channel was disconnected before the message "
		         "could be sent";
		job_record(j, &fail);
		return;
	}
	if ((j->why = job_policy(j)) != NULL) {
		job_record(j, &fail);
		return;
	}
	if ((fail.err = job_call(j)) == ASH_OK)
		return;
	if (fail.err == ASH_EINVAL)
		j->why = "the stored message lacks a recipient, a messaging "
		         "type or content";
	/* Could not even start: a retry (counted), so a key missing on
	 * this replica or a busy client never loses the message. */
	fail.cls = MI_GRAPH_RETRY;
	job_record(j, &fail);
}

/* Channel status side effects of a result: 190 marks the channel for
 * reconnection, throttling rate-limits it for the wait, success (or usage
 * at 100 %) after trouble puts it back / throttles it ahead of time. */
static void
job_channel_status(job *j, const mi_graph_result *res, int wait_s)
{
	mi_ctx *mi = j->s->mi;

	if (res->cls == MI_GRAPH_REAUTH)
		mi_channel_set_status(mi, j->channel, j->sealed,
		    MI_GRAPH_REAUTH, res->code, res->subcode, 0);
	else if (res->cls == MI_GRAPH_THROTTLED)
		mi_channel_set_status(mi, j->channel, j->sealed,
		    MI_GRAPH_THROTTLED, res->code, res->subcode, wait_s);
	else if (res->cls == MI_GRAPH_OK && res->retry_after_s > 0)
		mi_channel_set_status(mi, j->channel, j->sealed,
		    MI_GRAPH_THROTTLED, 0, 0, res->retry_after_s);
	else if (res->cls == MI_GRAPH_OK && !j->channel_ok)
		mi_channel_set_status(
		    mi, j->channel, j->sealed, MI_GRAPH_OK, 0, 0, 0);
}

static void
job_on_reply(void *arg, const mi_graph_result *res)
{
	job *j = arg;

	if (j->s->closing) {
		job_free(j); /* the lease expires; another try picks it up */
		return;
	}
	job_record(j, res);
}

static void job_on_stored(void *arg, ash_err rv, const PGresult *res);

static void
job_store_sent(job *j, const mi_graph_result *res)
{
	/* Meta's message_id becomes our mid, unless an echo stored under it
	 * already (then the echo row keeps it: mids are unique). sent_at
	 * moves to the real send time so earlier read receipts cannot
	 * cover it. */
	static const char sql[] =
	    "UPDATE messages m SET state = CASE WHEN m.state IN ('queued', "
	    "'sending', 'failed') THEN 'sent' ELSE m.state END, "
	    "mid = CASE WHEN m.mid IS NOT NULL OR $2::text IS NULL OR EXISTS "
	    "(SELECT 1 FROM messages o WHERE o.channel_id = m.channel_id "
	    "AND o.mid = $2) THEN m.mid ELSE $2 END, "
	    "sent_at = greatest(m.sent_at, now()), lease_until = NULL, "
	    "next_attempt_at = NULL, failure_code = NULL, "
	    "failure_subcode = NULL, failure_reason = NULL, "
	    "messaging_type = $3, tag = $4 "
	    "WHERE m.id = $1 RETURNING m.state";
	const char *p[] = {
	    j->id, ash_json_str(res->body, "message_id"), j->mtype, j->tag};

	if (ash_db_query(ash_svc_db(j->s->mi->svc), sql, 4, p, job_on_stored,
	        j) != ASH_OK)
		job_on_stored(j, ASH_EUNAVAIL, NULL);
}

/* A retry ('queued' after delay_ms) or a failure, with the reason. */
static void
job_store_unsent(job *j, const mi_graph_result *res, int64_t delay_ms)
{
	static const char sql[] =
	    "UPDATE messages SET state = $2::text, lease_until = NULL, "
	    "next_attempt_at = CASE WHEN $2::text = 'queued' THEN now() + "
	    "make_interval(secs => $3::double precision / 1000) END, "
	    "failure_code = $4::int, failure_subcode = $5::int, "
	    "failure_reason = $6, throttles = throttles + $7::int "
	    "WHERE id = $1 AND state = 'sending' RETURNING state";
	char reason[400], last[320], ms[24], code[16], sub[16];
	bool retry = j->outcome == MI_SEND_RETRY;

	mi_send_failure_reason(res, last, sizeof(last));
	if (j->why != NULL)
		snprintf(reason, sizeof(reason), "%s", j->why);
	else if (!retry && (res->cls == MI_GRAPH_RETRY || res->err != ASH_OK))
		snprintf(reason, sizeof(reason),
		    "gave up after %d attempts: %s",
		    j->attempts - j->throttles, last);
	else
		snprintf(reason, sizeof(reason), "%s", last);
	snprintf(ms, sizeof(ms), "%lld", (long long) delay_ms);
	snprintf(code, sizeof(code), "%d", res->code);
	snprintf(sub, sizeof(sub), "%d", res->subcode);
	const char *p[] = {j->id, retry ? "queued" : "failed", ms,
	    res->code ? code : NULL, res->subcode ? sub : NULL, reason,
	    res->cls == MI_GRAPH_THROTTLED ? "1" : "0"};
	if (ash_db_query(ash_svc_db(j->s->mi->svc), sql, 7, p, job_on_stored,
	        j) != ASH_OK)
		job_on_stored(j, ASH_EUNAVAIL, NULL);
}

/* Decides what a result means for the row and records it. */
static void
job_record(job *j, const mi_graph_result *res)
{
	uint32_t rnd;
	int64_t  delay;

	/* A transport failure is classified MI_GRAPH_RETRY too. */
	j->outcome = mi_send_outcome_of(
	    res->cls, j->attempts - j->throttles, mi_config.send_max_attempts);
	ash_random_bytes(&rnd, sizeof(rnd));
	delay = mi_send_backoff_ms(j->attempts, res->retry_after_s, rnd);
	if (mi_send_maybe_taken(res) && delay < MI_SEND_ECHO_WAIT_MS)
		delay = MI_SEND_ECHO_WAIT_MS;
	if (res->err == ASH_OK)
		job_channel_status(j, res, (int) ((delay + 999) / 1000));
	if (j->outcome == MI_SEND_SENT)
		job_store_sent(j, res);
	else
		job_store_unsent(j, res, delay);
}

static void job_done(job *j, const char *state);

static void
job_on_watermarks(void *arg, ash_err rv, const PGresult *res)
{
	job *j = arg;

	if (rv != ASH_OK && !j->s->closing)
		ash_log_warn(NULL, "MI-SEND",
		    "watermarks of %s not applied: %s", j->conv,
		    ash_strerror(rv));
	job_done(j, "sent");
}

static void
job_on_stored(void *arg, ash_err rv, const PGresult *res)
{
	static const char wm[] = "SELECT apply_watermarks(ARRAY[$1::uuid])";
	job              *j    = arg;
	const char       *state =
            rv == ASH_OK && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : NULL;

	if (rv != ASH_OK && !j->s->closing)
		/* The lease will expire and the row be tried again. */
		ash_log_error(NULL, "MI-SEND",
		    "message %s: result not stored: %s", j->id,
		    ash_strerror(rv));
	else if (state == NULL && !j->s->closing)
		/* No longer 'sending': its echo marked it sent meanwhile, or
		 * it was deleted. Nothing to record. */
		ash_log_info(
		    NULL, "MI-SEND", "message %s changed meanwhile", j->id);
	if (state == NULL || j->s->closing) {
		job_done(j, NULL);
		return;
	}
	if (j->outcome != MI_SEND_SENT) {
		job_done(j, state);
		return;
	}
	const char *p[] = {j->conv};
	if (ash_db_query(ash_svc_db(j->s->mi->svc), wm, 1, p,
	        job_on_watermarks, j) != ASH_OK)
		job_done(j, "sent");
}

/* The row is recorded (state, or NULL if not): count, announce, free and
 * take the next due row into the freed slot. */
static void
job_done(job *j, const char *state)
{
	mi_sender *s = j->s;

	if (state != NULL && !s->closing) {
		ash_counter_add(j->outcome == MI_SEND_SENT ? s->sent
		        : j->outcome == MI_SEND_RETRY      ? s->retry
		                                           : s->failed,
		    1);
		ash_log_info(NULL, "MI-SEND", "message %s: %s (attempt %d)",
		    j->id, state, j->attempts);
		mi_publish_state(s->mi, j->tenant, j->conv, j->id, state);
	}
	s->refs++; /* job_free may drop the last other reference */
	job_free(j);
	claim(s);
	sender_unref(s);
}

/* --- the sender: life --------------------------------------------------- */

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	claim(arg);
}

static void
on_outbox_notify(void *arg, const char *channel, const char *payload)
{
	mi_sender_kick(arg);
}

void
mi_sender_kick(mi_ctx *mi)
{
	if (mi->sender != NULL)
		claim(mi->sender);
}

ash_err
mi_sender_init(mi_ctx *mi)
{
	ash_metrics      *reg    = ash_svc_metrics(mi->svc);
	mi_sender        *s      = ash_xcalloc(1, sizeof(*s));
	struct timeval    tv     = {mi_config.sender_poll_ms / 1000,
	           (mi_config.sender_poll_ms % 1000) * 1000};
	static const char name[] = "ashoon_meta_sends_total";
	static const char help[] =
	    "Outbound Messenger/Instagram messages by result";

	s->mi     = mi;
	s->refs   = 1;
	s->sent   = ash_metrics_counter(reg, name, help, "result=\"sent\"");
	s->retry  = ash_metrics_counter(reg, name, help, "result=\"retry\"");
	s->failed = ash_metrics_counter(reg, name, help, "result=\"failed\"");
	s->refused =
	    ash_metrics_counter(reg, name, help, "result=\"refused\"");
	s->timer = event_new(
	    ash_loop_base(ash_svc_loop(mi->svc)), -1, EV_PERSIST, on_tick, s);
	evtimer_add(s->timer, &tv);
	/* arg is mi (it outlives the pool's subscriptions), not s. */
	ash_err rv = ash_db_listen(
	    ash_svc_db(mi->svc), MI_OUTBOX_CHANNEL, on_outbox_notify, mi);
	if (rv != ASH_OK) {
		event_free(s->timer);
		free(s);
		return rv;
	}
	mi->sender = s;
	claim(s); /* rows left over from before a restart */
	return ASH_OK;
}

void
mi_sender_drain(mi_ctx *mi)
{
	if (mi->sender == NULL)
		return;
	mi->sender->draining = true;
	evtimer_del(mi->sender->timer);
}

void
mi_sender_fini(mi_ctx *mi)
{
	mi_sender *s = mi->sender;

	if (s == NULL)
		return;
	mi->sender  = NULL;
	s->closing  = true;
	s->draining = true;
	event_free(s->timer);
	sender_unref(s);
}

void
mi_sender_count_refused(mi_ctx *mi)
{
	if (mi->sender != NULL)
		ash_counter_add(mi->sender->refused, 1);
}
