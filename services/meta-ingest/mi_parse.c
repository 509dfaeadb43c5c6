/*
 * mi_parse.c - a Meta webhook body (meta-webhooks.md §3) to normalized
 * events, the rows ingest_batch() (migrations/0002_ingest.sql) stores.
 *
 * Pure: no I/O, no globals. Every event kind of the spec becomes one event
 * object; kinds we do not know are counted (the caller keeps the raw body
 * in the journal), never an error. Ids stay strings, as Meta sends them;
 * numbers that are ids (app_id) are rendered as integers, not doubles.
 */
#include "mi.h"

#include <ashoon/json.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The context shared by the events of one messaging[] / standby[] item. */
typedef struct evctx {
	int             hit;
	const char     *object;
	const char     *page;
	const char     *our_app;
	bool            standby;
	cJSON          *events;
	mi_parse_stats *st;
} evctx;

static void
count_kind(mi_parse_stats *st, const char *kind)
{
	cJSON *n = cJSON_GetObjectItemCaseSensitive(st->kinds, kind);

	if (n == NULL)
		cJSON_AddNumberToObject(st->kinds, kind, 1);
	else
		cJSON_SetNumberValue(n, n->valuedouble + 1);
}

/* A JSON number or string as text (ids and app ids arrive as both). */
static void
add_id(cJSON *o, const char *key, const cJSON *v)
{
	char buf[32];

	if (cJSON_IsString(v)) {
		ash_json_add_str(o, key, v->valuestring);
	} else if (cJSON_IsNumber(v) &&
	    v->valuedouble == floor(v->valuedouble)) {
		snprintf(buf, sizeof(buf), "%.0f", v->valuedouble);
		ash_json_add_str(o, key, buf);
	}
}

static void
copy_str(cJSON *to, const char *key, const cJSON *from, const char *fkey)
{
	const char *s = ash_json_str(from, fkey);

	if (s != NULL)
		ash_json_add_str(to, key, s);
}

static void
copy_item(cJSON *to, const char *key, const cJSON *from, const char *fkey)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, fkey);

	if (v != NULL && !cJSON_IsNull(v))
		cJSON_AddItemToObject(to, key, cJSON_Duplicate(v, true));
}

static int64_t
ms_of(const cJSON *o, const char *key)
{
	int64_t v = 0;

	if (ash_json_get_i64(o, key, &v) != ASH_OK)
		v = 0;
	return v;
}

/* A new event with the fields every event has. */
static cJSON *
event_new(
    const evctx *x, const char *type, const char *customer, int64_t ts_ms)
{
	cJSON *e = cJSON_CreateObject();

	cJSON_AddNumberToObject(e, "hit", x->hit);
	ash_json_add_str(e, "object", x->object);
	ash_json_add_str(e, "page", x->page);
	if (customer != NULL)
		ash_json_add_str(e, "customer", customer);
	cJSON_AddNumberToObject(e, "ts_ms", (double) ts_ms);
	ash_json_add_str(e, "type", type);
	if (x->standby) {
		cJSON_AddBoolToObject(e, "standby", true);
		/* Standby: another app owns this thread now. */
		ash_json_add_str(e, "owner", "other");
	}
	return e;
}

static void
event_emit(evctx *x, cJSON *e, const char *kind)
{
	cJSON_AddItemToArray(x->events, e);
	x->st->events++;
	count_kind(x->st, kind);
}

/* Attachment types as we store them: the spec's list, stickers told
 * apart, anything new kept under its own name. */
static cJSON *
attachment_norm(const cJSON *a)
{
	const cJSON *pl   = cJSON_GetObjectItemCaseSensitive(a, "payload");
	const char  *type = ash_json_str(a, "type");
	cJSON       *out  = cJSON_CreateObject();

	if (cJSON_GetObjectItemCaseSensitive(pl, "sticker_id") != NULL)
		type = "sticker";
	ash_json_add_str(out, "type", type ? type : "unknown");
	copy_str(out, "url", pl, "url");
	copy_str(out, "title", a, "title");
	add_id(out, "sticker_id",
	    cJSON_GetObjectItemCaseSensitive(pl, "sticker_id"));
	copy_str(out, "reel_video_id", pl, "reel_video_id");
	return out;
}

static const char *
message_kind(const cJSON *msg, const cJSON *atts)
{
	if (ash_json_bool(msg, "is_unsupported", false))
		return "unsupported";
	if (cJSON_GetArraySize(atts) > 0)
		return "attachment";
	return "text";
}

/* message (inbound or echo, or an unsend of one). */
static void
parse_message(evctx *x, const cJSON *m, const cJSON *msg, const char *sender,
    const char *recipient, int64_t ts)
{
	const cJSON *atts =
	    cJSON_GetObjectItemCaseSensitive(msg, "attachments");
	const cJSON *rt   = cJSON_GetObjectItemCaseSensitive(msg, "reply_to");
	bool         echo = ash_json_bool(msg, "is_echo", false);
	bool         del  = ash_json_bool(msg, "is_deleted", false);
	cJSON       *e, *arr;

	e = event_new(x,
	    del        ? "unsend"
	        : echo ? "echo"
	               : "message",
	    echo ? recipient : sender, ts);
	copy_str(e, "mid", msg, "mid");
	ash_json_add_str(e, "kind", message_kind(msg, atts));
	copy_str(e, "text", msg, "text");
	arr = cJSON_AddArrayToObject(e, "attachments");
	for (const cJSON *a = atts ? atts->child : NULL; a; a = a->next)
		cJSON_AddItemToArray(arr, attachment_norm(a));
	copy_str(e, "payload",
	    cJSON_GetObjectItemCaseSensitive(msg, "quick_reply"), "payload");
	copy_str(e, "reply_to_mid", rt, "mid");
	copy_item(e, "reply_to_story", rt, "story");
	copy_item(e, "referral", msg, "referral");
	if (echo) {
		add_id(e, "app_id",
		    cJSON_GetObjectItemCaseSensitive(msg, "app_id"));
		copy_str(e, "metadata", msg, "metadata");
	}
	event_emit(x, e, del ? "unsend" : echo ? "echo" : "message");
}

static void
parse_read(evctx *x, const cJSON *read, const char *sender, int64_t ts)
{
	cJSON  *e = event_new(x, "read", sender, ts);
	int64_t w = ms_of(read, "watermark");

	/* Messenger gives a watermark; Instagram names the message seen. */
	if (w > 0)
		cJSON_AddNumberToObject(e, "watermark_ms", (double) w);
	copy_str(e, "mid", read, "mid");
	event_emit(x, e, "read");
}

static void
parse_delivery(evctx *x, const cJSON *d, const char *sender, int64_t ts)
{
	cJSON  *e = event_new(x, "delivery", sender, ts);
	int64_t w = ms_of(d, "watermark");

	if (w > 0)
		cJSON_AddNumberToObject(e, "watermark_ms", (double) w);
	copy_item(e, "mids", d, "mids");
	event_emit(x, e, "delivery");
}

static void
parse_reaction(evctx *x, const cJSON *r, const char *sender, int64_t ts)
{
	cJSON *e = event_new(x, "reaction", sender, ts);

	copy_str(e, "mid", r, "mid");
	copy_str(e, "action", r, "action");
	copy_str(e, "reaction", r, "reaction");
	copy_str(e, "emoji", r, "emoji");
	event_emit(x, e, "reaction");
}

/* Postbacks and standalone referrals may come without a mid (postbacks
 * before v11.0, referrals always): a stable synthetic one keeps a
 * redelivery from being stored twice. */
static void
synthetic_mid(cJSON *e, const char *prefix, const char *customer, int64_t ts)
{
	char *mid;

	if (ash_json_str(e, "mid") != NULL)
		return;
	/* Allocated: a long customer id must not be cut (two cut ids could
	 * name one message). */
	mid = ash_xasprintf(
	    "%s:%s:%lld", prefix, customer ? customer : "-", (long long) ts);
	ash_json_add_str(e, "mid", mid);
	free(mid);
}

static void
parse_postback(evctx *x, const cJSON *p, const char *sender, int64_t ts)
{
	cJSON *e = event_new(x, "postback", sender, ts);

	copy_str(e, "mid", p, "mid");
	synthetic_mid(e, "pb", sender, ts);
	ash_json_add_str(e, "kind", "postback");
	copy_str(e, "text", p, "title");
	copy_str(e, "payload", p, "payload");
	copy_item(e, "referral", p, "referral");
	cJSON_AddArrayToObject(e, "attachments");
	event_emit(x, e, "postback");
}

static void
parse_referral(evctx *x, const cJSON *r, const char *sender, int64_t ts)
{
	cJSON *e = event_new(x, "referral", sender, ts);

	synthetic_mid(e, "ref", sender, ts);
	ash_json_add_str(e, "kind", "referral");
	cJSON_AddItemToObject(e, "referral", cJSON_Duplicate(r, true));
	cJSON_AddArrayToObject(e, "attachments");
	event_emit(x, e, "referral");
}

static void
parse_edit(evctx *x, const cJSON *ed, const char *sender, int64_t ts)
{
	cJSON *e = event_new(x, "edit", sender, ts);
	int    n = 0;

	copy_str(e, "mid", ed, "mid");
	copy_str(e, "text", ed, "text");
	if (ash_json_get_int(ed, "num_edit", &n) != ASH_OK)
		n = 1;
	cJSON_AddNumberToObject(e, "num_edit", n);
	event_emit(x, e, "edit");
}

/* pass / take / request thread control (the handover protocol). */
static void
parse_handover(
    evctx *x, const char *key, const cJSON *h, const char *sender, int64_t ts)
{
	cJSON      *e       = event_new(x, "handover", sender, ts);
	const char *own     = NULL;
	char        app[32] = "";
	cJSON      *tmp     = cJSON_CreateObject();

	add_id(
	    tmp, "a", cJSON_GetObjectItemCaseSensitive(h, "new_owner_app_id"));
	if (ash_json_str(tmp, "a") != NULL)
		snprintf(app, sizeof(app), "%s", ash_json_str(tmp, "a"));
	cJSON_Delete(tmp);
	if (strcmp(key, "pass_thread_control") == 0)
		own = (*x->our_app && strcmp(app, x->our_app) == 0) ? "us"
		                                                    : "other";
	else if (strcmp(key, "take_thread_control") == 0)
		own = "other"; /* sent to the app that lost the thread */
	cJSON_DeleteItemFromObjectCaseSensitive(e, "owner");
	if (own != NULL)
		ash_json_add_str(e, "owner", own);
	copy_str(e, "metadata", h, "metadata");
	event_emit(x, e, key);
}

static void
parse_other(evctx *x, const cJSON *m, const char *sender, int64_t ts)
{
	static const char *const handover[] = {"pass_thread_control",
	    "take_thread_control", "request_thread_control"};
	const cJSON             *v;

	for (size_t i = 0; i < sizeof(handover) / sizeof(handover[0]); i++) {
		v = cJSON_GetObjectItemCaseSensitive(m, handover[i]);
		if (v != NULL) {
			parse_handover(x, handover[i], v, sender, ts);
			return;
		}
	}
	/* optin, account_linking, ...: acknowledged, journaled raw. */
	x->st->unknown++;
	x->st->events++;
	count_kind(x->st, "unknown");
}

/* One item of messaging[] / standby[]: dispatch on the key present. */
static void
parse_item(evctx *x, const cJSON *m)
{
	const char *sender =
	    ash_json_str(cJSON_GetObjectItemCaseSensitive(m, "sender"), "id");
	const char *recip = ash_json_str(
	    cJSON_GetObjectItemCaseSensitive(m, "recipient"), "id");
	const char *uref = ash_json_str(
	    cJSON_GetObjectItemCaseSensitive(m, "sender"), "user_ref");
	char         uid[160];
	int64_t      ts = ms_of(m, "timestamp");
	const cJSON *v;

	if (sender == NULL && uref != NULL) {
		/* Chat-plugin visitors have no PSID yet. */
		snprintf(uid, sizeof(uid), "user_ref:%.140s", uref);
		sender = uid;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(m, "message")) != NULL)
		parse_message(x, m, v, sender, recip, ts);
	else if ((v = cJSON_GetObjectItemCaseSensitive(m, "read")) != NULL)
		parse_read(x, v, sender, ts);
	else if ((v = cJSON_GetObjectItemCaseSensitive(m, "delivery")) != NULL)
		parse_delivery(x, v, sender, ts);
	else if ((v = cJSON_GetObjectItemCaseSensitive(m, "reaction")) != NULL)
		parse_reaction(x, v, sender, ts);
	else if ((v = cJSON_GetObjectItemCaseSensitive(m, "postback")) != NULL)
		parse_postback(x, v, sender, ts);
	else if ((v = cJSON_GetObjectItemCaseSensitive(m, "referral")) != NULL)
		parse_referral(x, v, sender, ts);
	else if ((v = cJSON_GetObjectItemCaseSensitive(m, "message_edit")))
		parse_edit(x, v, sender, ts);
	else
		parse_other(x, m, sender, ts);
}

static void
add_page_id(mi_parse_stats *st, const char *id)
{
	const cJSON *p;

	cJSON_ArrayForEach(p, st->page_ids)
	{
		if (strcmp(p->valuestring, id) == 0)
			return;
	}
	cJSON_AddItemToArray(st->page_ids, cJSON_CreateString(id));
}

static void
parse_list(evctx *x, const cJSON *list, bool standby)
{
	const cJSON *m;

	x->standby = standby;
	cJSON_ArrayForEach(m, list)
	{
		if (cJSON_IsObject(m))
			parse_item(x, m);
	}
}

static void
parse_entry(evctx *x, const cJSON *entry)
{
	const cJSON *changes =
	    cJSON_GetObjectItemCaseSensitive(entry, "changes");
	char   id[40];
	cJSON *tmp = cJSON_CreateObject();

	add_id(tmp, "id", cJSON_GetObjectItemCaseSensitive(entry, "id"));
	snprintf(id, sizeof(id), "%s",
	    ash_json_str(tmp, "id") ? ash_json_str(tmp, "id") : "");
	cJSON_Delete(tmp);
	x->page = id;
	add_page_id(x->st, id);
	parse_list(
	    x, cJSON_GetObjectItemCaseSensitive(entry, "messaging"), false);
	parse_list(
	    x, cJSON_GetObjectItemCaseSensitive(entry, "standby"), true);
	/* Non-messaging fields (feed, comments): not ours to store. */
	for (int i = 0; i < cJSON_GetArraySize(changes); i++) {
		x->st->unknown++;
		x->st->events++;
		count_kind(x->st, "change");
	}
}

ash_err
mi_parse_webhook(const cJSON *doc, int hit, const char *our_app_id,
    cJSON *events, mi_parse_stats *st)
{
	const char  *object  = ash_json_str(doc, "object");
	const cJSON *entries = cJSON_GetObjectItemCaseSensitive(doc, "entry");
	evctx        x       = {
	                 hit, NULL, NULL, our_app_id ? our_app_id : "", false, events, st};
	const cJSON *entry;

	if (object == NULL || !cJSON_IsArray(entries))
		return ASH_EINVAL;
	snprintf(st->object, sizeof(st->object), "%s", object);
	if (strcmp(object, "page") != 0 && strcmp(object, "instagram") != 0) {
		/* An object we do not serve (whatsapp_business_account...). */
		st->unknown++;
		return ASH_OK;
	}
	x.object = st->object;
	cJSON_ArrayForEach(entry, entries)
	{
		st->entries++;
		if (cJSON_IsObject(entry))
			parse_entry(&x, entry);
	}
	return ASH_OK;
}
