/*
 * mi.h - meta-ingest's private interface: the Instagram and Messenger
 * channel.
 *
 *   webhooks  mi_webhook.c  GET handshake; POST: signature over the raw
 *                           bytes, parse (mi_parse.c), group commit of many
 *                           POSTs in one call of the SQL function
 *                           ingest_batch(); acknowledged only after commit
 *   journal   mi_journal.c  every webhook hit, listed per tenant; purged
 *                           after ASHOON_META_JOURNAL_DAYS
 *   channels  mi_channels.c connect (token checked with the Graph API,
 *                           sealed with the master key), list, disconnect,
 *                           key rotation, status, profile fetching
 *   graph     mi_graph.c    Graph API calls and error classification
 *   sending   mi_send.c     conv.send/resend: the outbound row first
 *             mi_sender.c   the sender that works outbound rows
 *             mi_send_policy.c  the window policy and other pure pieces
 *             mi_thread.c   conv.typing/handover, mark_seen
 *   inbox     mi_conv.c     conv.list/get/messages/update/delete and
 *                           the reply jobs ai-router claims
 *   media     mi_media.c    attachments' sizes, read with a HEAD
 *
 * Everything runs on the service's loop thread.
 */
#ifndef MI_H
#define MI_H

#include <ashoon/crypto.h>
#include <ashoon/httpc.h>
#include <ashoon/svc.h>

#include <stdbool.h>
#include <stdint.h>

struct event;

/* --- configuration (mi_config.c) --------------------------------------- */

typedef struct mi_cfg {
	char *app_secret;    /* META_APP_SECRET (secret) */
	char *verify_token;  /* META_VERIFY_TOKEN (secret) */
	char *app_id;        /* META_APP_ID: our app, to tell our echoes */
	char *graph_url;     /* META_GRAPH_URL */
	char *ig_graph_url;  /* META_IG_GRAPH_URL (Instagram Login) */
	char *graph_version; /* META_GRAPH_VERSION, e.g. v23.0 */
	char *master_key;    /* ASHOON_MASTER_KEY (secret) */
	int   graph_timeout_ms;
	int   send_max_attempts;
	int   journal_days;
	int   batch_max;      /* webhook hits per commit */
	int   batch_inflight; /* ingest_batch() calls at once */
	int   batch_lanes;    /* queues of hits, by thread */
	int   batch_overlap;  /* a call beside another only below this queue */
	int   batch_stagger_ms; /* nor before the latest has run this long */
	int   sender_poll_ms; /* how often due outbound rows are looked for */
	bool  media_allow_private; /* attachment URLs may be private */
	char *media_hosts;         /* domains whose attachment URLs we ask */
} mi_cfg;

extern mi_cfg            mi_config;
extern const ash_cfg_key mi_keys[];

typedef struct mi_batch  mi_batch;  /* mi_webhook.c */
typedef struct mi_sender mi_sender; /* mi_send.c */

typedef struct mi_ctx {
	ash_svc      *svc;
	ash_keyring  *keys;   /* from ASHOON_MASTER_KEY */
	ash_httpc    *http;   /* Graph API client */
	mi_batch     *batch;  /* webhook group commit */
	mi_sender    *sender; /* outbound worker */
	struct event *profile_timer;
	struct event *purge_timer;
	bool          draining;
} mi_ctx;

/* --- attachment sizes (mi_media.c) ------------------------------------ */

/* Starts claiming, every second, messages whose attachments' sizes are
 * due and asking for them (HEAD), with its own HTTP client for untrusted
 * URLs (ASHOON_META_MEDIA_ALLOW_PRIVATE lets them reach private
 * addresses). */
ash_err mi_media_init(mi_ctx *mi) ASH_MUSTCHECK;
/* Cancels the HEADs in flight; their messages come due again. */
void mi_media_fini(mi_ctx *mi);

/* --- webhooks (mi_webhook.c) ------------------------------------------- */

void    mi_webhook_register(mi_ctx *mi);
ash_err mi_webhook_init(mi_ctx *mi) ASH_MUSTCHECK;
void    mi_webhook_fini(mi_ctx *mi);

/* Checks "sha256=<64 hex>" against HMAC-SHA256(secret, body) in constant
 * time. ASH_EUNAUTH when the header is missing or malformed, ASH_EFORBIDDEN
 * when it does not match. */
ash_err mi_signature_check(const char *header, const void *body, size_t len,
    const char *secret) ASH_MUSTCHECK;
/* The same with a key made ready once (META_APP_SECRET's, mi_webhook.c). */
ash_err mi_signature_check_key(const char *header, const void *body,
    size_t len, ash_hmac_key *key) ASH_MUSTCHECK;

/* --- parsing (mi_parse.c): pure, unit-tested ---------------------------- */

/* What one webhook POST held. */
typedef struct mi_parse_stats {
	int    entries;
	int    events;
	int    unknown;    /* events of a kind we do not know */
	char   object[16]; /* "page" | "instagram" | "" */
	cJSON *kinds;      /* {"message":n,...}; owned by the caller */
	cJSON *page_ids;   /* ["104857601234567",...]; owned by the caller */
} mi_parse_stats;

/* Turns a parsed webhook body into normalized events appended to events
 * (an array; see migrations/0002_ingest.sql for the fields), tagging each
 * with hit = the POST's index in its batch. ASH_EINVAL if doc is not a
 * webhook envelope (no "object" / "entry"); unknown event kinds are
 * counted in st->unknown, never an error. st->kinds and st->page_ids must
 * be created by the caller. */
ash_err mi_parse_webhook(const cJSON *doc, int hit, const char *our_app_id,
    cJSON *events, mi_parse_stats *st) ASH_MUSTCHECK;

/* --- journal (mi_journal.c) -------------------------------------------- */

/* Registers meta.journal.list and starts the purge timer (journal rows
 * older than journal_days are deleted hourly, and once soon after start). */
void mi_journal_register(mi_ctx *mi);
void mi_journal_fini(mi_ctx *mi);

/* --- Graph API (mi_graph.c) -------------------------------------------- */

/* How a Graph error should be handled: classified by code and subcode,
 * never by message text (meta-send-api.md §4). */
typedef enum mi_graph_class {
	MI_GRAPH_OK,
	MI_GRAPH_RETRY,     /* transient: 1, 2, 1200, network, 5xx */
	MI_GRAPH_THROTTLED, /* 4, 17, 32, 613, 80006, HTTP 429 */
	MI_GRAPH_REAUTH,    /* 190: the channel needs a new token */
	MI_GRAPH_WINDOW,    /* 10 + 2018065/2018278/2534022: outside window */
	MI_GRAPH_PERMANENT, /* 10, 100, 200, 230, 368, 551, ...: no retry */
} mi_graph_class;

typedef struct mi_graph_result {
	ash_err        err;    /* transport result (ASH_OK if a reply) */
	long           status; /* HTTP status */
	mi_graph_class cls;
	int            code;    /* error.code, 0 if none */
	int            subcode; /* error.error_subcode, 0 if none */
	const char    *message; /* error.message (log it, never parse it) */
	const char    *fbtrace_id;
	int            retry_after_s; /* from usage headers / Retry-After */
	const cJSON   *body;          /* parsed JSON body, or NULL */
} mi_graph_result;

/* Loop thread, once per call; res is borrowed until it returns. */
typedef void (*mi_graph_cb)(void *arg, const mi_graph_result *res);

/* Calls the Graph API for a channel: login "facebook" uses
 * {META_GRAPH_URL}/{version}/{path} with access_token as a query
 * parameter; "instagram" uses {META_IG_GRAPH_URL}/{version}/{path} with
 * Authorization: Bearer. query is an already-encoded "a=b&c=d" or NULL;
 * body (JSON) is sent for POST. The token is never logged. */
ash_err mi_graph_call(mi_ctx *mi, const char *login, const char *token,
    const char *method, const char *path, const char *query, const cJSON *body,
    mi_graph_cb cb, void *arg) ASH_MUSTCHECK;

/* Pure: the class of a Graph error (code, subcode, HTTP status). */
mi_graph_class mi_graph_classify(long status, int code, int subcode);

/* Pure: seconds to wait, from X-Business-Use-Case-Usage /
 * X-App-Usage values (NULL if absent): the largest
 * estimated_time_to_regain_access in minutes, or 60 s when any usage
 * percentage is >= 100, else 0. */
int mi_graph_usage_wait_s(const char *buc_usage, const char *app_usage);

/* --- channels (mi_channels.c) ------------------------------------------ */

void    mi_channels_register(mi_ctx *mi);
ash_err mi_channels_init(mi_ctx *mi) ASH_MUSTCHECK; /* profile timer */
void    mi_channels_fini(mi_ctx *mi);

/* The AAD a channel secret is sealed with: "meta-ingest/channel/<id>/<what>"
 * (what: "token" or "app_secret"). Writes into out (>= 96 bytes). */
void mi_channel_aad(
    const char *channel_id, const char *what, char *out, size_t cap);

/* Records a Graph failure on the channel's status (needs_reauth for 190,
 * rate_limited until now + wait_s for throttling), with the code and a
 * reason (never the token). sealed is the token the call was made with,
 * as stored: the status is recorded only while the channel still has it,
 * so that the answer to a call made with a replaced token (the channel
 * was reconnected meanwhile) does not mark the new one. Fire and forget.
 */
void mi_channel_set_status(mi_ctx *mi, const char *channel_id,
    const char *sealed, mi_graph_class cls, int code, int subcode, int wait_s);

/* Asks the profile fetcher (mi_profile.c) to look for pending participants
 * now, e.g. after a commit that created some; a NOTIFY on "mi_profiles"
 * does the same from SQL or another replica. Loop thread; never fails. */
void mi_channels_profile_kick(mi_ctx *mi);

/* Pure helpers of mi_channels.c / mi_profile.c (unit-tested). */

/* Checks channel.meta.connect's fields; *login gets the effective login
 * ("facebook" when NULL). ASH_EINVAL with a static reason in *why that
 * never quotes a secret. app_secret may be NULL. */
ash_err mi_connect_check(const char *kind, const char *login_in,
    const char *external_id, const char *token, const char *app_secret,
    const char **login, const char **why) ASH_MUSTCHECK;

/* The Graph call that validates a token: path and query for kind/login
 * ("me" or the account id). Static or external_id-borrowed strings. */
void mi_connect_probe(const char *kind, const char *login,
    const char *external_id, const char **path, const char **query);

/* The error a failed validation call gives the caller, with a message
 * (never the token, never Meta's own text) in msg. ASH_OK if res is a
 * success. */
ash_err mi_connect_error(const mi_graph_result *res, char *msg, size_t cap);

/* True if the account the token belongs to (body of the probe) is
 * external_id: "user_id" or "id" for Instagram Login, "id" otherwise. */
bool mi_connect_same_account(
    const char *login, const cJSON *body, const char *external_id);

/* What a profile lookup's result means for the participant. */
typedef enum mi_profile_outcome {
	MI_PROFILE_FETCHED,     /* store it, profile_state 'fetched' */
	MI_PROFILE_UNAVAILABLE, /* 2018218, consent, 100, ...: never again */
	MI_PROFILE_RETRY,       /* transient: attempts + 1, later */
	MI_PROFILE_FAILED,      /* transient, but out of attempts */
	MI_PROFILE_REAUTH,      /* 190: the channel needs a new token */
	MI_PROFILE_THROTTLED,   /* the channel is rate limited */
} mi_profile_outcome;

#define MI_PROFILE_MAX_ATTEMPTS 5

/* attempts: tries made before this one. */
mi_profile_outcome mi_profile_outcome_of(
    const mi_graph_result *res, int attempts);

/* A participant's display name from Messenger's first/last name (either
 * may be NULL or empty): a new string (free()), or NULL if both are. */
char *mi_profile_name_new(const char *first, const char *last);

/* --- sending --------------------------------------------------------- */

/* mi_send.c: conv.send and conv.resend write the outbound row. */
void mi_send_register(mi_ctx *mi);

/* mi_sender.c: works the outbound rows. The queuing statement NOTIFYs
 * MI_OUTBOX_CHANNEL, which wakes every replica's sender. */
#define MI_OUTBOX_CHANNEL "mi_outbox"
ash_err mi_sender_init(mi_ctx *mi) ASH_MUSTCHECK; /* timer, LISTEN */
void    mi_sender_drain(mi_ctx *mi);
void    mi_sender_fini(mi_ctx *mi);
/* Asks the sender to look for due rows now (after a commit that queued). */
void mi_sender_kick(mi_ctx *mi);
/* Counts a message the window policy refused (a metric). */
void mi_sender_count_refused(mi_ctx *mi);

/* mi_thread.c: conv.typing, conv.handover, and mark_seen. */
void mi_thread_register(mi_ctx *mi);
/* An agent opened the conversation: send mark_seen (best effort, never
 * fails the caller). */
void mi_thread_mark_seen(
    mi_ctx *mi, const char *tenant, const char *conversation_id);

/* mi_common.c: helpers of the sending modules. */
void mi_free_wiped(char *s); /* OPENSSL_cleanse, then free; NULL is ok */
/* A copy of a column (free()), NULL for SQL NULL. */
char *mi_col_dup(const PGresult *r, int row, int c);
/* A bigint column (ms), 0 for SQL NULL. */
int64_t mi_col_ms(const PGresult *r, int row, int c);
/* The channel's token in clear (free with mi_free_wiped), or NULL if it
 * cannot be unsealed with our keys (logged, without the value). */
char *mi_token_unseal(mi_ctx *mi, const char *channel_id, const char *sealed);
/* Publishes conv.message.updated for a message's new state. */
void mi_publish_state(mi_ctx *mi, const char *tenant, const char *conv,
    const char *msg, const char *state);
/* The tenant of a call, or NULL after failing it (tenant data needs
 * one). */
const char *mi_call_tenant(ash_bus_call *call);

/* mi_send_policy.c: the pure pieces, unit-tested. */
/* The Messenger/Instagram window policy (meta-send-api.md §5), pure. */
typedef enum mi_author { MI_AUTHOR_AI, MI_AUTHOR_AGENT } mi_author;
typedef struct mi_policy {
	bool        allowed;
	const char *messaging_type; /* "RESPONSE" | "MESSAGE_TAG" */
	const char *tag;            /* "HUMAN_AGENT" or NULL */
	const char *refusal;        /* reason when !allowed */
} mi_policy;
/* now_ms and last_customer_ms in ms since the epoch; last_customer_ms <= 0
 * means the customer never wrote. */
mi_policy mi_policy_decide(
    mi_author author, int64_t now_ms, int64_t last_customer_ms);
/* The same for a message Meta refused as outside the 24-hour window
 * (MI_GRAPH_WINDOW): Meta's answer wins over our clock (meta-send-api.md
 * §5), so the standard window counts as closed whatever the customer's
 * last message says here; a person may still send with HUMAN_AGENT. */
mi_policy mi_policy_after_window(
    mi_author author, int64_t now_ms, int64_t last_customer_ms);

/* The policy again when a queued message is about to go (retries and
 * throttling can hold it for days): mi_policy_decide now, except that a
 * message queued with MESSAGE_TAG keeps it (Meta had said the window was
 * closed); refused with the reason if its window closed meanwhile. */
mi_policy mi_policy_at_send(mi_author author, int64_t now_ms,
    int64_t last_customer_ms, const char *queued_type);

/* The pieces of the sender below are pure and unit-tested. */

/* Checks outbound text for a channel kind ("messenger": 1..2000
 * characters, "instagram": 1..1000 bytes). Nothing is ever split: too
 * long is ASH_EINVAL with the reason in why (cap bytes). */
ash_err mi_send_text_check(const char *channel_kind, const char *text,
    char *why, size_t cap) ASH_MUSTCHECK;

/* The delay before the next try after try number attempts (1-based):
 * 1 s * 2^(attempts-1) with +-25 % jitter taken from rnd, capped at
 * 5 min, and never shorter than retry_after_s (Meta's own estimate). */
int64_t mi_send_backoff_ms(int attempts, int retry_after_s, uint32_t rnd);

/* True if a retryable send result leaves open whether Meta took the
 * message (a timeout, a broken connection, a 5xx other than 1200): the
 * retry then waits MI_SEND_ECHO_WAIT_MS at least, so that the echo of a
 * message Meta did take marks it sent first and it is not sent twice. */
bool mi_send_maybe_taken(const mi_graph_result *r);
#define MI_SEND_ECHO_WAIT_MS 15000

/* What the sender does with a Graph result after try number attempts. */
typedef enum mi_send_outcome {
	MI_SEND_SENT,   /* Meta took it */
	MI_SEND_RETRY,  /* queued again with a backoff */
	MI_SEND_FAILED, /* for good (the reason says why) */
} mi_send_outcome;
/* RETRY results fail once attempts (tries that were not throttled)
 * reaches max_attempts; THROTTLED ones never fail (Meta only asks us to
 * wait; the window closing ends the wait, mi_policy_at_send); everything
 * else but OK fails at once. */
mi_send_outcome mi_send_outcome_of(
    mi_graph_class cls, int attempts, int max_attempts);

/* The failure_reason stored for a Graph result: what happened in words,
 * always with the Graph code/subcode (or HTTP status / transport error);
 * never the token, never Meta's message text (it can quote the request):
 * an unknown code gets its fbtrace_id instead. */
void mi_send_failure_reason(const mi_graph_result *r, char *out, size_t cap);

/* One outbound message; text, or an attachment (att_type, att_url). */
typedef struct mi_outbound {
	const char *message_id;     /* ours: metadata "ashoon:<id>" */
	const char *recipient;      /* PSID / IGSID */
	const char *messaging_type; /* "RESPONSE" | "MESSAGE_TAG" */
	const char *tag;            /* "HUMAN_AGENT" or NULL */
	const char *text;           /* or NULL */
	const char *att_type;       /* image | video | audio | file */
	const char *att_url;
	const char *reply_to_mid; /* or NULL */
} mi_outbound;
/* The Send API body for o (meta-send-api.md §2); free with cJSON_Delete. */
cJSON *mi_send_body(const mi_outbound *o);

/* --- inbox (mi_conv.c) ------------------------------------------------- */

void mi_conv_register(mi_ctx *mi);

/* JSON of one message row (the shape every conv.* op returns). The row
 * comes from the column list MI_MESSAGE_COLUMNS, in that order. */
#define MI_MESSAGE_COLUMNS                                                  \
	"m.id, m.conversation_id, m.direction, m.kind, m.text, "            \
	"m.attachments::text, m.payload, m.mid, m.reply_to_mid, m.author, " \
	"m.ai_generated, m.is_echo, "                                       \
	"(extract(epoch from m.sent_at) * 1000)::bigint, m.state, "         \
	"(extract(epoch from m.delivered_at) * 1000)::bigint, "             \
	"(extract(epoch from m.read_at) * 1000)::bigint, m.failure_code, "  \
	"m.failure_reason, m.edit_count, m.unsent_at IS NOT NULL, "         \
	"m.messaging_type, m.tag"
cJSON *mi_message_json(const PGresult *res, int row);

#endif
