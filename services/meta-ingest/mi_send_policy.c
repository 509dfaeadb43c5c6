/*
 * mi_send_policy.c - the pure pieces of sending, unit-tested on their own
 * (tests/unit/meta-ingest/test_mi_send.c): the messaging-window policy,
 * text limits, backoff, what a Graph result means for a message, failure
 * reasons, and the Send API body.
 */
#include "mi.h"

#include <ashoon/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

mi_policy
mi_policy_after_window(
    mi_author author, int64_t now_ms, int64_t last_customer_ms)
{
	mi_policy p;
	bool      moved =
	    last_customer_ms > 0 && now_ms - last_customer_ms < WINDOW_MS;

	if (moved)
		last_customer_ms = now_ms - WINDOW_MS;
	p = mi_policy_decide(author, now_ms, last_customer_ms);
	if (moved && !p.allowed)
		p.refusal =
		    "Meta answered that the 24-hour window is closed, "
		    "and automated replies may not use the HUMAN_AGENT "
		    "tag";
	return p;
}

mi_policy
mi_policy_at_send(mi_author author, int64_t now_ms, int64_t last_customer_ms,
    const char *queued_type)
{
	mi_policy p = mi_policy_decide(author, now_ms, last_customer_ms);

	if (p.allowed && strcmp(p.messaging_type, "RESPONSE") == 0 &&
	    queued_type != NULL && strcmp(queued_type, "MESSAGE_TAG") == 0) {
		/* Queued with the tag (Meta had closed the window): our
		 * clock does not reopen it. */
		p.messaging_type = "MESSAGE_TAG";
		p.tag            = "HUMAN_AGENT";
	}
	if (!p.allowed)
		p.refusal = author == MI_AUTHOR_AI && last_customer_ms > 0 &&
		        now_ms - last_customer_ms < HUMAN_AGENT_MS
		    ? "the 24-hour window closed while the message waited "
		      "to be sent, and automated replies may not use the "
		      "HUMAN_AGENT tag"
		    : "the messaging window closed while the message "
		      "waited to be sent (the customer's last message is "
		      "now more than 7 days old)";
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

bool
mi_send_maybe_taken(const mi_graph_result *r)
{
	if (r->cls != MI_GRAPH_RETRY)
		return false;
	if (r->err != ASH_OK)
		/* Cut off after the request may have left. A refused or
		 * unresolved connection (ASH_EUNAVAIL), or a call that could
		 * not start, never carried it. */
		return r->err == ASH_ETIMEDOUT || r->err == ASH_EUPSTREAM ||
		    r->err == ASH_ETOOBIG;
	/* 1200 says the send failed; other faults of the server may come
	 * after Meta stored the message. */
	return r->status >= 500 && r->code != 1200;
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
