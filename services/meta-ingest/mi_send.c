/*
 * mi_send.c - sending: conv.send / conv.resend / conv.typing /
 * conv.handover, the messaging-window policy, and the sender that works
 * outbound rows.
 *
 * Never lose a message (DESIGN.md): conv.send first writes the outbound
 * row ('queued', or 'refused' with its reason when the window policy says
 * no) and only then answers. The row is the job: the sender claims due
 * rows with UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)
 * (so replicas share the work), marks them 'sending' under a lease, calls
 * the Send API and records 'sent' / a retry with backoff / 'failed'. A
 * replica that dies mid-send leaves a lease that expires; the row is then
 * claimed again. Messages of one conversation go out one at a time, in
 * order: a row is due only when no older outbound row of its thread is
 * still queued or sending.
 *
 * Wake-ups: mi_send_kick (this process), NOTIFY mi_outbox (sent in the
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
#include <openssl/crypto.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEND_INFLIGHT  16 /* transfers at once */
#define LEASE_EXTRA_S  60 /* lease = timeout + this */
#define HOUR_MS        (3600 * (int64_t) 1000)
#define WINDOW_MS      (24 * HOUR_MS)     /* standard window */
#define HUMAN_AGENT_MS (7 * 24 * HOUR_MS) /* HUMAN_AGENT tag window */
/* The 24 h edge is judged 10 minutes early (meta-send-api.md §5 suggests
 * 23h50m): a message queued at 23h59m would reach Meta after the window
 * closed. Only the 24 h edge has it; the 7-day edge is exact. */
#define WINDOW_MARGIN_MS (10 * 60 * (int64_t) 1000)
#define BACKOFF_BASE_MS  1000
#define BACKOFF_CAP_MS   (5 * 60 * 1000)
#define TEXT_MAX_CHARS   2000 /* Messenger, in characters */
#define TEXT_MAX_BYTES   1000 /* Instagram, in bytes */
#define OUTBOX_CHANNEL   "mi_outbox"
/* Meta's Page Inbox: passing a thread to it hands it to humans there. */
#define PAGE_INBOX_APP_ID "263902037430900"
#define GONE_MSG \
	"the conversation's channel is disconnected: reconnect it to send"

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

/* --- the window policy (pure) ------------------------------------------- */

mi_policy
mi_policy_decide(mi_author author, int64_t now_ms, int64_t last_customer_ms)
{
	mi_policy p   = {false, NULL, NULL, NULL};
	int64_t   age = now_ms - last_customer_ms;

	if (last_customer_ms <= 0) {
		p.refusal = "the customer has never written in this "
		            "conversation, so Meta allows no message";
		return p;
	}
	if (age < 0)
		age = 0; /* clocks a little apart: the customer just wrote */
	if (age < WINDOW_MS - WINDOW_MARGIN_MS) {
		p.allowed        = true;
		p.messaging_type = "RESPONSE";
		return p;
	}
	if (author == MI_AUTHOR_AI) {
		p.refusal =
		    "the customer's last message is more than 24 hours "
		    "old (23h50m with our safety margin) and automated "
		    "replies may not use the HUMAN_AGENT tag";
		return p;
	}
	if (age >= HUMAN_AGENT_MS) {
		p.refusal =
		    "the customer's last message is more than 7 days "
		    "old: only a new message from the customer reopens "
		    "the conversation";
		return p;
	}
	p.allowed        = true;
	p.messaging_type = "MESSAGE_TAG";
	p.tag            = "HUMAN_AGENT";
	return p;
}

/* --- other pure pieces -------------------------------------------------- */

ash_err
mi_send_text_check(
    const char *channel_kind, const char *text, char *why, size_t cap)
{
	size_t bytes = strlen(text), chars = 0;

	if (bytes == 0) {
		snprintf(why, cap, "text must not be empty");
		return ASH_EINVAL;
	}
	for (const char *p = text; *p; p++)
		chars += ((unsigned char) *p & 0xC0) != 0x80;
	if (strcmp(channel_kind, "instagram") == 0 && bytes > TEXT_MAX_BYTES) {
		snprintf(why, cap,
		    "text is %zu bytes; Instagram allows at most %d bytes "
		    "per message (nothing is split: shorten it or send "
		    "several messages)",
		    bytes, TEXT_MAX_BYTES);
		return ASH_EINVAL;
	}
	if (strcmp(channel_kind, "instagram") != 0 && chars > TEXT_MAX_CHARS) {
		snprintf(why, cap,
		    "text is %zu characters; Messenger allows at most %d "
		    "characters per message (nothing is split: shorten it or "
		    "send several messages)",
		    chars, TEXT_MAX_CHARS);
		return ASH_EINVAL;
	}
	return ASH_OK;
}

int64_t
mi_send_backoff_ms(int attempts, int retry_after_s, uint32_t rnd)
{
	int64_t ms = BACKOFF_BASE_MS;

	for (int i = 1; i < attempts && ms < BACKOFF_CAP_MS; i++)
		ms *= 2;
	if (ms > BACKOFF_CAP_MS)
		ms = BACKOFF_CAP_MS;
	/* +-25 %: a factor of 750..1250 per mille. */
	ms = ms * (750 + (int64_t) (rnd % 501)) / 1000;
	if (ms > BACKOFF_CAP_MS)
		ms = BACKOFF_CAP_MS;
	if ((int64_t) retry_after_s * 1000 > ms)
		ms = (int64_t) retry_after_s * 1000;
	return ms;
}

mi_send_outcome
mi_send_outcome_of(mi_graph_class cls, int attempts, int max_attempts)
{
	switch (cls) {
	case MI_GRAPH_OK:
		return MI_SEND_SENT;
	case MI_GRAPH_THROTTLED:
		return MI_SEND_RETRY;
	case MI_GRAPH_RETRY:
		return attempts < max_attempts ? MI_SEND_RETRY
		                               : MI_SEND_FAILED;
	default:
		return MI_SEND_FAILED;
	}
}

/* What a Graph code means, in words (meta-send-api.md §4), or NULL. */
static const char *
code_text(int code, int subcode)
{
	switch (code) {
	case 190:
		return "the access token was rejected: reconnect the channel";
	case 10:
		if (mi_graph_classify(400, code, subcode) == MI_GRAPH_WINDOW)
			return "Meta says the message is outside the allowed "
			       "messaging window";
		if (subcode == 2018108)
			return "this person cannot receive messages from you "
			       "right now";
		return "permission denied";
	case 100:
		return subcode == 2018001 ? "no matching user found"
		                          : "invalid parameter";
	case 200:
		return "permissions error";
	case 230:
		return "permissions disallow messages to this user";
	case 368:
		return "Meta deemed the action abusive or disallowed";
	case 551:
		return "this person isn't available right now";
	case 4:
	case 17:
	case 32:
	case 613:
	case 80006:
		return "Meta is rate-limiting this channel";
	case 1:
	case 2:
	case 1200:
		return "temporary failure at Meta";
	case 2022:
		return "commerce messaging is temporarily disabled";
	}
	return NULL;
}

void
mi_send_failure_reason(const mi_graph_result *r, char *out, size_t cap)
{
	const char *what = code_text(r->code, r->subcode);

	if (r->err == ASH_ECRYPTO)
		snprintf(out, cap,
		    "the channel's token cannot be unsealed "
		    "with the configured master keys");
	else if (r->err != ASH_OK)
		snprintf(out, cap, "could not reach the Graph API: %s",
		    ash_strerror(r->err));
	else if (r->code != 0 && what != NULL)
		snprintf(out, cap, "%s (Graph error %d, subcode %d)", what,
		    r->code, r->subcode);
	else if (r->code != 0)
		/* Not Meta's message: it can quote what we sent (a malformed
		 * token, say). fbtrace_id lets Meta find the rest. */
		snprintf(out, cap,
		    "unexpected Graph error %d, subcode %d (fbtrace_id %.64s)",
		    r->code, r->subcode,
		    r->fbtrace_id ? r->fbtrace_id : "none");
	else
		snprintf(
		    out, cap, "the Graph API answered HTTP %ld", r->status);
}

cJSON *
mi_send_body(const mi_outbound *o)
{
	cJSON *b   = cJSON_CreateObject();
	cJSON *rcp = cJSON_AddObjectToObject(b, "recipient");
	cJSON *msg, *att, *pl;

	ash_json_add_str(rcp, "id", o->recipient);
	ash_json_add_str(b, "messaging_type", o->messaging_type);
	if (o->tag != NULL)
		ash_json_add_str(b, "tag", o->tag);
	msg = cJSON_AddObjectToObject(b, "message");
	if (o->text != NULL) {
		ash_json_add_str(msg, "text", o->text);
	} else {
		att = cJSON_AddObjectToObject(msg, "attachment");
		ash_json_add_str(att, "type", o->att_type);
		pl = cJSON_AddObjectToObject(att, "payload");
		ash_json_add_str(pl, "url", o->att_url);
		cJSON_AddBoolToObject(pl, "is_reusable", true);
	}
	char meta[64];
	snprintf(meta, sizeof(meta), "ashoon:%s", o->message_id);
	ash_json_add_str(msg, "metadata", meta);
	if (o->reply_to_mid != NULL)
		ash_json_add_str(cJSON_AddObjectToObject(b, "reply_to"), "mid",
		    o->reply_to_mid);
	return b;
}

/* --- small helpers ------------------------------------------------------ */

static void
free_wiped(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

/* A copy of a column, NULL for SQL NULL. */
static char *
col_dup(const PGresult *r, int row, int c)
{
	return PQgetisnull(r, row, c) ? NULL
	                              : ash_xstrdup(PQgetvalue(r, row, c));
}

/* A bigint column (ms), 0 for SQL NULL. */
static int64_t
col_ms(const PGresult *r, int row, int c)
{
	return PQgetisnull(r, row, c)
	    ? 0
	    : strtoll(PQgetvalue(r, row, c), NULL, 10);
}

/* The channel's token in clear (free with free_wiped), or NULL if it
 * cannot be unsealed with our keys (logged, without the value). */
static char *
token_unseal(mi_ctx *mi, const char *channel_id, const char *sealed)
{
	char     aad[128];
	uint8_t *pt = NULL;
	size_t   n;

	mi_channel_aad(channel_id, "token", aad, sizeof(aad));
	if (sealed == NULL ||
	    ash_crypto_unseal(mi->keys, aad, sealed, &pt, &n) != ASH_OK) {
		ash_log_error(NULL, "MI-TOKEN",
		    "channel %s: the token cannot be unsealed with the "
		    "configured master keys",
		    channel_id);
		return NULL;
	}
	return (char *) pt;
}

static void
publish_state(mi_ctx *mi, const char *tenant, const char *conv,
    const char *msg, const char *state)
{
	cJSON *b = cJSON_CreateObject();

	ash_json_add_str(b, "conversation_id", conv);
	ash_json_add_str(b, "message_id", msg);
	ash_json_add_str(b, "state", state);
	ash_svc_publish(mi->svc, ASH_TOPIC_CONV_MESSAGE_UPDATED, tenant, b);
	cJSON_Delete(b);
}

/* The tenant of a call, or fails it: tenant data needs one. */
static const char *
call_tenant(ash_bus_call *call)
{
	const char *t = ash_bus_call_req(call)->tenant;

	if (t == NULL)
		ash_bus_call_fail(
		    call, ASH_EFORBIDDEN, "a tenant is required");
	return t;
}

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
    "c.disconnected_at IS NOT NULL";

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
	int             attempts;
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
	j->text       = col_dup(r, i, CL_TEXT);
	j->att_type   = col_dup(r, i, CL_ATT_TYPE);
	j->att_url    = col_dup(r, i, CL_ATT_URL);
	j->mtype      = col_dup(r, i, CL_MTYPE);
	j->tag        = col_dup(r, i, CL_TAG);
	j->reply_to   = col_dup(r, i, CL_REPLY_TO);
	j->sealed     = col_dup(r, i, CL_TOKEN);
	j->recipient  = col_dup(r, i, CL_RECIPIENT);
	j->attempts   = atoi(PQgetvalue(r, i, CL_ATTEMPTS));
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
	if ((token = token_unseal(j->s->mi, j->channel, j->sealed)) == NULL)
		return ASH_ECRYPTO;
	body = mi_send_body(&o);
	rv   = mi_graph_call(j->s->mi, j->login, token, "POST", "me/messages",
	      NULL, body, job_on_reply, j);
	free_wiped(token);
	cJSON_Delete(body);
	return rv;
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
		mi_channel_set_status(mi, j->channel, MI_GRAPH_REAUTH,
		    res->code, res->subcode, 0);
	else if (res->cls == MI_GRAPH_THROTTLED)
		mi_channel_set_status(mi, j->channel, MI_GRAPH_THROTTLED,
		    res->code, res->subcode, wait_s);
	else if (res->cls == MI_GRAPH_OK && res->retry_after_s > 0)
		mi_channel_set_status(mi, j->channel, MI_GRAPH_THROTTLED, 0, 0,
		    res->retry_after_s);
	else if (res->cls == MI_GRAPH_OK && !j->channel_ok)
		mi_channel_set_status(mi, j->channel, MI_GRAPH_OK, 0, 0, 0);
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
	    "failure_subcode = NULL, failure_reason = NULL "
	    "WHERE m.id = $1 RETURNING m.state";
	const char *p[] = {j->id, ash_json_str(res->body, "message_id")};

	if (ash_db_query(ash_svc_db(j->s->mi->svc), sql, 2, p, job_on_stored,
	        j) != ASH_OK)
		job_on_stored(j, ASH_EUNAVAIL, NULL);
}

/* A retry ('queued' after delay_ms) or a failure, with the reason. */
static void
job_store_unsent(job *j, const mi_graph_result *res, int64_t delay_ms)
{
	static const char sql[] =
	    "UPDATE messages SET state = $2, lease_until = NULL, "
	    "next_attempt_at = CASE WHEN $2 = 'queued' THEN now() + "
	    "make_interval(secs => $3::double precision / 1000) END, "
	    "failure_code = $4::int, failure_subcode = $5::int, "
	    "failure_reason = $6 WHERE id = $1 AND state = 'sending' "
	    "RETURNING state";
	char reason[400], last[320], ms[24], code[16], sub[16];
	bool retry = j->outcome == MI_SEND_RETRY;

	mi_send_failure_reason(res, last, sizeof(last));
	if (j->why != NULL)
		snprintf(reason, sizeof(reason), "%s", j->why);
	else if (!retry && (res->cls == MI_GRAPH_RETRY || res->err != ASH_OK))
		snprintf(reason, sizeof(reason),
		    "gave up after %d attempts: %s", j->attempts, last);
	else
		snprintf(reason, sizeof(reason), "%s", last);
	snprintf(ms, sizeof(ms), "%lld", (long long) delay_ms);
	snprintf(code, sizeof(code), "%d", res->code);
	snprintf(sub, sizeof(sub), "%d", res->subcode);
	const char *p[] = {j->id, retry ? "queued" : "failed", ms,
	    res->code ? code : NULL, res->subcode ? sub : NULL, reason};
	if (ash_db_query(ash_svc_db(j->s->mi->svc), sql, 6, p, job_on_stored,
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
	    res->cls, j->attempts, mi_config.send_max_attempts);
	ash_random_bytes(&rnd, sizeof(rnd));
	delay = mi_send_backoff_ms(j->attempts, res->retry_after_s, rnd);
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
		publish_state(s->mi, j->tenant, j->conv, j->id, state);
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
	mi_send_kick(arg);
}

void
mi_send_kick(mi_ctx *mi)
{
	if (mi->sender != NULL)
		claim(mi->sender);
}

ash_err
mi_send_init(mi_ctx *mi)
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
	    ash_svc_db(mi->svc), OUTBOX_CHANNEL, on_outbox_notify, mi);
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
mi_send_drain(mi_ctx *mi)
{
	if (mi->sender == NULL)
		return;
	mi->sender->draining = true;
	evtimer_del(mi->sender->timer);
}

void
mi_send_fini(mi_ctx *mi)
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

/* --- conv.send ---------------------------------------------------------- */

/* One conv.send / conv.resend in progress. Strings borrow from the call's
 * request, which lives until the call is answered. */
typedef struct scall {
	mi_ctx       *mi;
	ash_bus_call *call;
	const char   *tenant, *conv, *text, *client_id;
	const char   *reply_to, *message_id;
	char         *att_json; /* [{"type","url"}] */
	mi_author     author;
	char          state[16]; /* resend: the state it had */
	mi_policy     pol;
} scall;

static void
scall_free(scall *c)
{
	free(c->att_json);
	free(c);
}

/* Replies with the stored message, or the refusal naming it. The
 * strings c borrows from the request die with the reply: announce first,
 * then reply, then wake the sender. */
static void
scall_answer(scall *c, const PGresult *r, int status)
{
	mi_ctx     *mi     = c->mi;
	const char *id     = PQgetvalue(r, 0, 0);
	const char *state  = PQgetvalue(r, 0, 13);
	bool        queued = strcmp(state, "queued") == 0;
	char        msg[600];

	if (strcmp(state, "refused") == 0) {
		snprintf(msg, sizeof(msg),
		    "messaging window closed: %s (message %s was stored as "
		    "refused)",
		    PQgetvalue(r, 0, 17), id);
		ash_bus_call_fail(c->call, ASH_ECONFLICT, msg);
		return;
	}
	if (queued)
		publish_state(mi, c->tenant, PQgetvalue(r, 0, 1), id, state);
	cJSON *b = cJSON_CreateObject();
	cJSON_AddItemToObject(b, "message", mi_message_json(r, 0));
	ash_bus_call_reply(c->call, status, b);
	if (queued)
		mi_send_kick(mi);
}

static void
on_existing(void *arg, ash_err rv, const PGresult *res)
{
	scall *c = arg;

	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK)
		ash_bus_call_fail(c->call, rv,
		    rv == ASH_ENOTFOUND ? "no such conversation" : NULL);
	else
		scall_answer(c, res, 200);
	scall_free(c);
}

/* The client_id was used before: answer with that message as it is. */
static void
send_existing(scall *c)
{
	static const char sql[] =
	    "SELECT " MI_MESSAGE_COLUMNS " FROM messages m "
	    "WHERE m.conversation_id = $1 AND m.client_id = $2 "
	    "AND m.tenant_id = $3";
	const char *p[] = {c->conv, c->client_id, c->tenant};

	if (ash_db_query(ash_svc_db(c->mi->svc), sql, 3, p, on_existing, c) !=
	    ASH_OK)
		on_existing(c, ASH_EUNAVAIL, NULL);
}

static void
on_inserted(void *arg, ash_err rv, const PGresult *res)
{
	scall *c = arg;

	if (rv == ASH_OK && PQntuples(res) == 0 && c->client_id != NULL) {
		send_existing(c); /* ON CONFLICT: the key was used before */
		return;
	}
	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK) {
		ash_bus_call_fail(c->call, rv,
		    rv == ASH_ENOTFOUND ? "no such conversation" : NULL);
	} else {
		if (!c->pol.allowed && c->mi->sender != NULL)
			ash_counter_add(c->mi->sender->refused, 1);
		scall_answer(c, res, 202);
	}
	scall_free(c);
}

/* Writes the outbound row (and, when queued, the NOTIFY that wakes every
 * replica's sender at commit) in one statement. */
static void
send_insert(scall *c)
{
	static const char sql[] =
	    "WITH ins AS (INSERT INTO messages (tenant_id, channel_id, "
	    "conversation_id, direction, kind, text, attachments, "
	    "reply_to_mid, author, author_ref, ai_generated, sent_at, state, "
	    "messaging_type, tag, client_id, failure_reason) "
	    "SELECT v.tenant_id, v.channel_id, v.id, 'out', $3, $4, "
	    "$5::jsonb, $6, $7, $8, $7 = 'ai', now(), $9, $10, $11, $12, $13 "
	    "FROM conversations v WHERE v.id = $1 AND v.tenant_id = $2 "
	    "ON CONFLICT (conversation_id, client_id) DO NOTHING "
	    "RETURNING *), "
	    "wake AS (SELECT pg_notify('" OUTBOX_CHANNEL "', '') FROM ins "
	    "WHERE ins.state = 'queued') "
	    "SELECT " MI_MESSAGE_COLUMNS ", (SELECT count(*) FROM wake) "
	    "FROM ins m";
	const ash_request *req = ash_bus_call_req(c->call);
	const char *p[] = {c->conv, c->tenant, c->text ? "text" : "attachment",
	    c->text, c->att_json ? c->att_json : "[]", c->reply_to,
	    c->author == MI_AUTHOR_AI ? "ai" : "agent", req->user,
	    c->pol.allowed ? "queued" : "refused", c->pol.messaging_type,
	    c->pol.tag, c->client_id, c->pol.refusal};

	if (ash_db_query(ash_svc_db(c->mi->svc), sql, 13, p, on_inserted, c) !=
	    ASH_OK)
		on_inserted(c, ASH_EUNAVAIL, NULL);
}

/* The conversation's channel kind and window: check the text, decide. */
static void
on_send_context(void *arg, ash_err rv, const PGresult *res)
{
	scall *c = arg;
	char   why[256];

	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK) {
		ash_bus_call_fail(c->call, rv,
		    rv == ASH_ENOTFOUND ? "no such conversation" : NULL);
		scall_free(c);
		return;
	}
	if (PQgetvalue(res, 0, 3)[0] == 't') {
		ash_bus_call_fail(c->call, ASH_ECONFLICT, GONE_MSG);
		scall_free(c);
		return;
	}
	if (c->text != NULL &&
	    mi_send_text_check(
	        PQgetvalue(res, 0, 0), c->text, why, sizeof(why)) != ASH_OK) {
		ash_bus_call_fail(c->call, ASH_EINVAL, why);
		scall_free(c);
		return;
	}
	c->pol =
	    mi_policy_decide(c->author, col_ms(res, 0, 2), col_ms(res, 0, 1));
	send_insert(c);
}

/* Checks the optional attachment {type, url}; builds the stored JSON. */
static bool
attachment_ok(scall *c, const cJSON *att, const char **why)
{
	static const char *const types[] = {"image", "video", "audio", "file"};
	const char              *type    = ash_json_str(att, "type");
	const char              *url     = ash_json_str(att, "url");
	bool                     ok      = false;

	for (size_t i = 0; type && i < sizeof(types) / sizeof(types[0]); i++)
		ok = ok || strcmp(type, types[i]) == 0;
	*why = "attachment.type must be image, video, audio or file";
	if (!ok)
		return false;
	*why = "attachment.url must be an http(s) URL of at most 2000 bytes";
	if (url == NULL || strlen(url) > 2000 ||
	    (strncmp(url, "https://", 8) != 0 &&
	        strncmp(url, "http://", 7) != 0))
		return false;
	cJSON *arr = cJSON_CreateArray(), *o = cJSON_CreateObject();
	ash_json_add_str(o, "type", type);
	ash_json_add_str(o, "url", url);
	cJSON_AddItemToArray(arr, o);
	c->att_json = ash_json_render(arr);
	cJSON_Delete(arr);
	return true;
}

/* Reads and checks conv.send's body into c; NULL or the reason. */
static const char *
send_parse(scall *c, const cJSON *b)
{
	const cJSON *att = cJSON_GetObjectItemCaseSensitive(b, "attachment");
	const char  *author = ash_json_str(b, "author");
	const char  *why    = NULL;

	c->conv      = ash_json_str(b, "conversation_id");
	c->text      = ash_json_str(b, "text");
	c->client_id = ash_json_str(b, "client_id");
	c->reply_to  = ash_json_str(b, "reply_to");
	if (author != NULL && strcmp(author, "ai") != 0 &&
	    strcmp(author, "agent") != 0)
		return "author must be \"agent\" or \"ai\"";
	c->author = author && strcmp(author, "ai") == 0 ? MI_AUTHOR_AI
	                                                : MI_AUTHOR_AGENT;
	if ((c->text != NULL) == (att != NULL))
		return "exactly one of text and attachment is required";
	if (att != NULL && !attachment_ok(c, att, &why))
		return why;
	if (c->client_id != NULL &&
	    (*c->client_id == '\0' || strlen(c->client_id) > 128))
		return "client_id must be 1-128 bytes";
	if (c->reply_to != NULL &&
	    (*c->reply_to == '\0' || strlen(c->reply_to) > 256))
		return "reply_to must be a message mid (1-256 bytes)";
	return NULL;
}

static scall *
scall_new(mi_ctx *mi, ash_bus_call *call, const char *tenant)
{
	scall *c  = ash_xcalloc(1, sizeof(*c));
	c->mi     = mi;
	c->call   = call;
	c->tenant = tenant;
	return c;
}

static void
on_conv_send(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "SELECT c.kind, "
	    "(extract(epoch from v.last_customer_msg_at) * 1000)::bigint, "
	    "(extract(epoch from now()) * 1000)::bigint, "
	    "c.disconnected_at IS NOT NULL "
	    "FROM conversations v JOIN channels c ON c.id = v.channel_id "
	    "WHERE v.id = $1 AND v.tenant_id = $2";
	const char *tenant = call_tenant(call), *why;
	scall      *c;

	if (tenant == NULL)
		return;
	c = scall_new(arg, call, tenant);
	if ((why = send_parse(c, ash_bus_call_req(call)->body)) != NULL) {
		ash_bus_call_fail(call, ASH_EINVAL, why);
		scall_free(c);
		return;
	}
	const char *p[] = {c->conv, tenant};
	if (ash_db_query(ash_svc_db(c->mi->svc), sql, 2, p, on_send_context,
	        c) != ASH_OK)
		on_send_context(c, ASH_EUNAVAIL, NULL);
}

/* --- conv.resend -------------------------------------------------------- */

static void
on_requeued(void *arg, ash_err rv, const PGresult *res)
{
	scall *c = arg;

	if (rv == ASH_OK && PQntuples(res) == 0)
		ash_bus_call_fail(c->call, ASH_ECONFLICT,
		    "the message changed meanwhile; read it again");
	else if (rv != ASH_OK)
		ash_bus_call_fail(c->call, rv, NULL);
	else
		scall_answer(c, res, 200);
	scall_free(c);
}

/* Queues the message again: fresh attempts, no failure, the policy's new
 * type/tag, and sent_at = now (it is sent now; older read receipts must
 * not cover it). Only if it is still in the state we judged. */
static void
resend_requeue(scall *c)
{
	static const char sql[] =
	    "WITH up AS (UPDATE messages SET state = 'queued', attempts = 0, "
	    "next_attempt_at = NULL, lease_until = NULL, failure_code = NULL, "
	    "failure_subcode = NULL, failure_reason = NULL, sent_at = now(), "
	    "messaging_type = $4, tag = $5 "
	    "WHERE id = $1 AND tenant_id = $2 AND state = $3 RETURNING *), "
	    "wake AS (SELECT pg_notify('" OUTBOX_CHANNEL "', '') FROM up) "
	    "SELECT " MI_MESSAGE_COLUMNS ", (SELECT count(*) FROM wake) "
	    "FROM up m";
	const char *p[] = {c->message_id, c->tenant, c->state,
	    c->pol.messaging_type, c->pol.tag};

	if (ash_db_query(ash_svc_db(c->mi->svc), sql, 5, p, on_requeued, c) !=
	    ASH_OK)
		on_requeued(c, ASH_EUNAVAIL, NULL);
}

/* Which messages may be resent, or why not (NULL: fine). */
static const char *
resend_refusal(const PGresult *r)
{
	const char *direction = PQgetvalue(r, 0, 0);
	const char *author    = PQgetvalue(r, 0, 1);
	const char *state     = PQgetvalue(r, 0, 2);

	if (PQgetvalue(r, 0, 5)[0] == 't')
		return GONE_MSG;
	if (strcmp(direction, "out") != 0 ||
	    (strcmp(author, "agent") != 0 && strcmp(author, "ai") != 0))
		return "only messages sent through ashoon can be resent";
	if (strcmp(state, "failed") != 0 && strcmp(state, "refused") != 0)
		return "only failed or refused messages can be resent";
	return NULL;
}

static void
on_resend_context(void *arg, ash_err rv, const PGresult *res)
{
	scall      *c = arg;
	const char *why;
	char        msg[512];

	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK) {
		ash_bus_call_fail(c->call, rv,
		    rv == ASH_ENOTFOUND ? "no such message" : NULL);
		scall_free(c);
		return;
	}
	why = resend_refusal(res);
	snprintf(c->state, sizeof(c->state), "%s", PQgetvalue(res, 0, 2));
	c->author = strcmp(PQgetvalue(res, 0, 1), "ai") == 0 ? MI_AUTHOR_AI
	                                                     : MI_AUTHOR_AGENT;
	c->pol =
	    mi_policy_decide(c->author, col_ms(res, 0, 4), col_ms(res, 0, 3));
	if (why == NULL && !c->pol.allowed) {
		snprintf(msg, sizeof(msg), "messaging window closed: %s",
		    c->pol.refusal);
		why = msg;
	}
	if (why != NULL) {
		ash_bus_call_fail(c->call, ASH_ECONFLICT, why);
		scall_free(c);
		return;
	}
	resend_requeue(c);
}

static void
on_conv_resend(ash_bus_call *call, void *arg)
{
	static const char sql[] =
	    "SELECT m.direction, m.author, m.state, "
	    "(extract(epoch from v.last_customer_msg_at) * 1000)::bigint, "
	    "(extract(epoch from now()) * 1000)::bigint, "
	    "c.disconnected_at IS NOT NULL "
	    "FROM messages m JOIN conversations v ON v.id = m.conversation_id "
	    "JOIN channels c ON c.id = m.channel_id "
	    "WHERE m.id = $1 AND m.tenant_id = $2";
	const char *tenant = call_tenant(call);
	scall      *c;

	if (tenant == NULL)
		return;
	c = scall_new(arg, call, tenant);
	c->message_id =
	    ash_json_str(ash_bus_call_req(call)->body, "message_id");
	const char *p[] = {c->message_id, tenant};
	if (ash_db_query(ash_svc_db(c->mi->svc), sql, 2, p, on_resend_context,
	        c) != ASH_OK)
		on_resend_context(c, ASH_EUNAVAIL, NULL);
}

/* --- conv.typing, conv.handover, mark_seen ------------------------------ */

typedef enum tkind { T_TYPING, T_HANDOVER, T_SEEN } tkind;

/* One Graph call about a conversation (not a message). */
typedef struct tcall {
	mi_ctx       *mi;
	ash_bus_call *call; /* NULL for mark_seen (nobody waits) */
	tkind         kind;
	char          tenant[40], conv[40], channel[40], login[16];
	char          action[16]; /* handover: pass | take | request */
	bool          on;         /* typing */
	char         *recipient, *app_id, *metadata;
} tcall;

static tcall *
tcall_new(mi_ctx *mi, ash_bus_call *call, tkind kind, const char *tenant,
    const char *conv)
{
	tcall *t = ash_xcalloc(1, sizeof(*t));

	t->mi   = mi;
	t->call = call;
	t->kind = kind;
	snprintf(t->tenant, sizeof(t->tenant), "%s", tenant);
	snprintf(t->conv, sizeof(t->conv), "%s", conv);
	return t;
}

static void
tcall_free(tcall *t)
{
	free(t->recipient);
	free(t->app_id);
	free(t->metadata);
	free(t);
}

/* Ends t with an error (for mark_seen: a debug line). */
static void
tcall_fail(tcall *t, ash_err rv, const char *msg)
{
	if (t->call != NULL)
		ash_bus_call_fail(t->call, rv, msg);
	else
		ash_log_debug(NULL, "MI-SEEN", "mark_seen for %s not sent: %s",
		    t->conv, msg ? msg : ash_strerror(rv));
	tcall_free(t);
}

/* The Graph body and path of t. */
static cJSON *
tcall_body(const tcall *t, char *path, size_t cap)
{
	cJSON *b = cJSON_CreateObject();

	ash_json_add_str(
	    cJSON_AddObjectToObject(b, "recipient"), "id", t->recipient);
	snprintf(path, cap, "me/messages");
	if (t->kind != T_HANDOVER) {
		ash_json_add_str(b, "sender_action",
		    t->kind == T_SEEN ? "mark_seen"
		        : t->on       ? "typing_on"
		                      : "typing_off");
		return b;
	}
	snprintf(path, cap, "me/%s_thread_control", t->action);
	/* Digits as a JSON number, exactly (app ids can pass 2^53). */
	if (strcmp(t->action, "pass") == 0)
		cJSON_AddItemToObject(b, "target_app_id",
		    cJSON_CreateRaw(
		        t->app_id ? t->app_id : PAGE_INBOX_APP_ID));
	if (t->metadata != NULL)
		ash_json_add_str(b, "metadata", t->metadata);
	return b;
}

static void
on_owner_stored(void *arg, ash_err rv, const PGresult *res)
{
	tcall *t = arg;
	cJSON *b, *v;

	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK) {
		tcall_fail(t, rv,
		    rv == ASH_ENOTFOUND ? "no such conversation" : NULL);
		return;
	}
	b = cJSON_CreateObject();
	v = cJSON_AddObjectToObject(b, "conversation");
	ash_json_add_str(v, "id", PQgetvalue(res, 0, 0));
	ash_json_add_str(v, "channel_id", PQgetvalue(res, 0, 1));
	ash_json_add_str(v, "status", PQgetvalue(res, 0, 2));
	ash_json_add_str(v, "thread_owner", PQgetvalue(res, 0, 3));
	ash_log_info(ash_bus_call_log(t->call), "MI-HANDOVER",
	    "conversation %s: %s, thread owner now %s", t->conv, t->action,
	    PQgetvalue(res, 0, 3));
	ash_bus_call_reply(t->call, 200, b);
	tcall_free(t);
}

/* Meta accepted a handover: pass leaves the thread to the other app,
 * take brings it back; request only asks (the owner decides later). */
static void
handover_store(tcall *t)
{
	static const char sql[] =
	    "UPDATE conversations SET thread_owner = coalesce($3, "
	    "thread_owner), updated_at = now() WHERE id = $1 AND "
	    "tenant_id = $2 RETURNING id, channel_id, status, thread_owner";
	const char *owner = strcmp(t->action, "pass") == 0 ? "other"
	    : strcmp(t->action, "take") == 0               ? "us"
	                                                   : NULL;
	const char *p[]   = {t->conv, t->tenant, owner};

	if (ash_db_query(ash_svc_db(t->mi->svc), sql, 3, p, on_owner_stored,
	        t) != ASH_OK)
		on_owner_stored(t, ASH_EUNAVAIL, NULL);
}

static void
on_tcall_reply(void *arg, const mi_graph_result *res)
{
	tcall *t = arg;
	char   why[400];

	if (res->err == ASH_OK && res->cls == MI_GRAPH_REAUTH)
		mi_channel_set_status(t->mi, t->channel, MI_GRAPH_REAUTH,
		    res->code, res->subcode, 0);
	if (t->kind == T_TYPING) {
		cJSON *b = cJSON_CreateObject();
		cJSON_AddBoolToObject(b, "sent", res->cls == MI_GRAPH_OK);
		ash_bus_call_reply(t->call, 200, b);
		tcall_free(t);
	} else if (res->cls == MI_GRAPH_OK && t->kind == T_HANDOVER) {
		handover_store(t);
	} else if (res->cls == MI_GRAPH_OK) {
		tcall_free(t);
	} else {
		mi_send_failure_reason(res, why, sizeof(why));
		tcall_fail(t, ASH_EUPSTREAM, why);
	}
}

/* Columns: channel id, login, sealed token, recipient. */
static void
on_target(void *arg, ash_err rv, const PGresult *res)
{
	tcall *t = arg;
	char  *token, path[64];
	cJSON *body;

	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK) {
		tcall_fail(t, rv,
		    rv == ASH_ENOTFOUND ? "no such conversation" : NULL);
		return;
	}
	snprintf(t->channel, sizeof(t->channel), "%s", PQgetvalue(res, 0, 0));
	snprintf(t->login, sizeof(t->login), "%s", PQgetvalue(res, 0, 1));
	t->recipient = ash_xstrdup(PQgetvalue(res, 0, 3));
	if ((token = token_unseal(t->mi, t->channel, PQgetvalue(res, 0, 2))) ==
	    NULL) {
		tcall_fail(t, ASH_EINTERNAL,
		    "the channel's token cannot be unsealed");
		return;
	}
	body = tcall_body(t, path, sizeof(path));
	rv   = mi_graph_call(t->mi, t->login, token, "POST", path, NULL, body,
	      on_tcall_reply, t);
	free_wiped(token);
	cJSON_Delete(body);
	if (rv != ASH_OK)
		tcall_fail(t, rv, "the Graph API client is not available");
}

/* Loads the conversation's channel and customer (tenant-checked). */
static void
tcall_start(tcall *t)
{
	static const char sql[] =
	    "SELECT c.id, c.login, c.token_sealed, p.external_id "
	    "FROM conversations v JOIN channels c ON c.id = v.channel_id "
	    "JOIN participants p ON p.id = v.participant_id "
	    "WHERE v.id = $1 AND v.tenant_id = $2 "
	    "AND c.disconnected_at IS NULL";
	const char *p[] = {t->conv, t->tenant};

	if (ash_db_query(ash_svc_db(t->mi->svc), sql, 2, p, on_target, t) !=
	    ASH_OK)
		tcall_fail(t, ASH_EUNAVAIL, NULL);
}

static void
on_conv_typing(ash_bus_call *call, void *arg)
{
	const cJSON *b      = ash_bus_call_req(call)->body;
	const char  *tenant = call_tenant(call);
	tcall       *t;

	if (tenant == NULL)
		return;
	t = tcall_new(
	    arg, call, T_TYPING, tenant, ash_json_str(b, "conversation_id"));
	t->on = ash_json_bool(b, "on", false);
	tcall_start(t);
}

/* Checks conv.handover's body into t; NULL or the reason. */
static const char *
handover_parse(tcall *t, const cJSON *b)
{
	const char *action = ash_json_str(b, "action");
	const char *app    = ash_json_str(b, "target_app_id");
	const char *meta   = ash_json_str(b, "metadata");

	if (action == NULL ||
	    (strcmp(action, "pass") != 0 && strcmp(action, "take") != 0 &&
	        strcmp(action, "request") != 0))
		return "action must be pass, take or request";
	snprintf(t->action, sizeof(t->action), "%s", action);
	if (app != NULL &&
	    (*app == '\0' || strlen(app) > 20 ||
	        strspn(app, "0123456789") != strlen(app)))
		return "target_app_id must be a Meta app id (digits)";
	if (meta != NULL && strlen(meta) > 1000)
		return "metadata must be at most 1000 bytes";
	t->app_id   = app ? ash_xstrdup(app) : NULL;
	t->metadata = meta ? ash_xstrdup(meta) : NULL;
	return NULL;
}

static void
on_conv_handover(ash_bus_call *call, void *arg)
{
	const cJSON *b      = ash_bus_call_req(call)->body;
	const char  *tenant = call_tenant(call), *why;
	tcall       *t;

	if (tenant == NULL)
		return;
	t = tcall_new(
	    arg, call, T_HANDOVER, tenant, ash_json_str(b, "conversation_id"));
	if ((why = handover_parse(t, b)) != NULL) {
		tcall_fail(t, ASH_EINVAL, why);
		return;
	}
	tcall_start(t);
}

void
mi_send_mark_seen(mi_ctx *mi, const char *tenant, const char *conversation_id)
{
	if (tenant == NULL || conversation_id == NULL)
		return;
	tcall_start(tcall_new(mi, NULL, T_SEEN, tenant, conversation_id));
}

void
mi_send_register(mi_ctx *mi)
{
	ash_bus_server *bus = ash_svc_bus(mi->svc);

	ash_bus_server_handle(bus, ASH_OP_CONV_SEND, on_conv_send, mi);
	ash_bus_server_handle(bus, ASH_OP_CONV_RESEND, on_conv_resend, mi);
	ash_bus_server_handle(bus, ASH_OP_CONV_TYPING, on_conv_typing, mi);
	ash_bus_server_handle(bus, ASH_OP_CONV_HANDOVER, on_conv_handover, mi);
}
