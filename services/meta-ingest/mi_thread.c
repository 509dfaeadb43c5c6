/*
 * mi_thread.c - Graph calls about a conversation rather than a message:
 * conv.typing (typing_on/off while the AI composes), conv.handover (the
 * handover protocol: pass, take or request thread control, so ashoon
 * coexists with Meta's inbox or another app) and mark_seen when a person
 * opens a conversation. These are answered from the Graph call itself:
 * nothing here must survive a restart.
 */
#include "mi.h"

#include <ashoon/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Meta's Page Inbox: passing a thread to it hands it to humans there. */
#define PAGE_INBOX_APP_ID "263902037430900"

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
	char         *sealed; /* the token the call is made with */
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
	free(t->sealed);
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

/* True when the conversation's row came back; else fails t. */
static bool
tcall_found(tcall *t, ash_err rv, const PGresult *res)
{
	if (rv == ASH_OK && PQntuples(res) == 0)
		rv = ASH_ENOTFOUND;
	if (rv != ASH_OK)
		tcall_fail(t, rv,
		    rv == ASH_ENOTFOUND ? "no such conversation" : NULL);
	return rv == ASH_OK;
}

static void
on_owner_stored(void *arg, ash_err rv, const PGresult *res)
{
	tcall *t = arg;
	cJSON *b, *v;

	if (!tcall_found(t, rv, res))
		return;
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
	    "thread_owner), thread_owner_at = CASE WHEN $3::text IS NULL "
	    "THEN thread_owner_at ELSE now() END, updated_at = now() "
	    "WHERE id = $1 AND "
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
		mi_channel_set_status(t->mi, t->channel, t->sealed,
		    MI_GRAPH_REAUTH, res->code, res->subcode, 0);
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

	if (!tcall_found(t, rv, res))
		return;
	snprintf(t->channel, sizeof(t->channel), "%s", PQgetvalue(res, 0, 0));
	snprintf(t->login, sizeof(t->login), "%s", PQgetvalue(res, 0, 1));
	t->recipient = ash_xstrdup(PQgetvalue(res, 0, 3));
	t->sealed    = ash_xstrdup(PQgetvalue(res, 0, 2));
	if ((token = mi_token_unseal(
	         t->mi, t->channel, PQgetvalue(res, 0, 2))) == NULL) {
		tcall_fail(t, ASH_EINTERNAL,
		    "the channel's token cannot be unsealed");
		return;
	}
	body = tcall_body(t, path, sizeof(path));
	rv   = mi_graph_call(t->mi, t->login, token, "POST", path, NULL, body,
	      on_tcall_reply, t);
	mi_free_wiped(token);
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
	const char  *tenant = mi_call_tenant(call);
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
	const char  *tenant = mi_call_tenant(call), *why;
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
mi_thread_mark_seen(
    mi_ctx *mi, const char *tenant, const char *conversation_id)
{
	if (tenant == NULL || conversation_id == NULL)
		return;
	tcall_start(tcall_new(mi, NULL, T_SEEN, tenant, conversation_id));
}

void
mi_thread_register(mi_ctx *mi)
{
	ash_bus_server *bus = ash_svc_bus(mi->svc);

	ash_bus_server_handle(bus, ASH_OP_CONV_TYPING, on_conv_typing, mi);
	ash_bus_server_handle(bus, ASH_OP_CONV_HANDOVER, on_conv_handover, mi);
}
