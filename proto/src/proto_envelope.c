/*
 * proto_envelope.c - request, reply and event envelopes: parse, validate,
 * render. Validation is driven by the field rows of ops.def.
 */
#include <ashoon/ids.h>
#include <ashoon/json.h>
#include <ashoon/proto.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MSG(...) snprintf(msg, cap, __VA_ARGS__)

/* Times in ms travel as JSON numbers, rendered as cJSON renders them:
 * below 10^15 an integral one prints with all its digits, while from 2^52
 * on its 15 significant digits can be one or two off and still pass
 * cJSON's check (2^53 came back as 9007199254740990: fuzz_envelope). A
 * time beyond (year 33658) is refused, so every envelope accepted renders
 * back to the same one. */
#define MS_MAX INT64_C(999999999999999)

static bool
is_id64(const cJSON *v)
{
	const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
	size_t      n;

	if (s == NULL)
		return false;
	if (*s == '-')
		s++;
	n = strlen(s);
	if (n == 0 || n > 19)
		return false;
	return strspn(s, "0123456789") == n;
}

static bool
type_ok(ash_field_type t, const cJSON *v)
{
	switch (t) {
	case ASH_FT_STR:
		return cJSON_IsString(v);
	case ASH_FT_INT:
		return cJSON_IsNumber(v) &&
		    v->valuedouble == floor(v->valuedouble) &&
		    fabs(v->valuedouble) <= 9007199254740992.0;
	case ASH_FT_ID:
		return is_id64(v);
	case ASH_FT_UUID:
		return cJSON_IsString(v) && ash_id_uuid_valid(v->valuestring);
	case ASH_FT_BOOL:
		return cJSON_IsBool(v);
	case ASH_FT_OBJ:
		return cJSON_IsObject(v);
	case ASH_FT_ARR:
		return cJSON_IsArray(v);
	case ASH_FT_ANY:
		return true;
	}
	return false;
}

static const char *const type_names[] = {"a string", "an integer",
    "an id string", "a UUID", "a boolean", "an object", "an array", "a value"};

ash_err
ash_proto_check(
    const ash_field *fields, int n, const cJSON *body, char *msg, size_t cap)
{
	for (int i = 0; i < n; i++) {
		const cJSON *v = body
		    ? cJSON_GetObjectItemCaseSensitive(body, fields[i].name)
		    : NULL;
		/* null counts as absent: optional fields may be nulled. */
		if (v == NULL || cJSON_IsNull(v)) {
			if (!fields[i].required)
				continue;
			MSG("missing required field \"%s\"", fields[i].name);
			return ASH_EINVAL;
		}
		if (!type_ok(fields[i].type, v)) {
			MSG("field \"%s\" must be %s", fields[i].name,
			    type_names[fields[i].type]);
			return ASH_EINVAL;
		}
	}
	return ASH_OK;
}

/* v, id and an optional tenant are common to requests and events. */
static ash_err
parse_common(const cJSON *doc, const char **id, const char **tenant, char *msg,
    size_t cap)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "v");
	const char  *t = ash_json_str(doc, "tenant");

	*id = ash_json_str(doc, "id");
	if (*id != NULL && !ash_id_request_valid(*id))
		*id = NULL;
	if (!cJSON_IsNumber(v) || v->valuedouble != ASH_PROTO_VERSION) {
		MSG("unsupported envelope version");
		return ASH_EINVAL;
	}
	if (*id == NULL) {
		MSG("missing or invalid \"id\"");
		return ASH_EINVAL;
	}
	if (t != NULL && !ash_id_uuid_valid(t)) {
		MSG("\"tenant\" must be a UUID");
		return ASH_EINVAL;
	}
	*tenant = t;
	return ASH_OK;
}

/* The body member as an object, adding {} when absent. */
static cJSON *
body_of(cJSON *doc)
{
	cJSON *b = cJSON_GetObjectItemCaseSensitive(doc, "body");

	if (b == NULL || cJSON_IsNull(b)) {
		cJSON_DeleteItemFromObjectCaseSensitive(doc, "body");
		b = cJSON_AddObjectToObject(doc, "body");
	}
	return cJSON_IsObject(b) ? b : NULL;
}

static ash_err
request_fill(ash_request *req, char *msg, size_t cap)
{
	const cJSON *pr =
	    cJSON_GetObjectItemCaseSensitive(req->doc, "principal");
	const cJSON *att;
	const char  *op = ash_json_str(req->doc, "op");
	ash_err      rv;

	if ((rv = parse_common(req->doc, &req->id, &req->tenant, msg, cap)))
		return rv;
	if (op == NULL || (req->op = ash_op_find(op)) < 0) {
		MSG("unknown op \"%.64s\"", op ? op : "");
		return op ? ASH_ENOTFOUND : ASH_EINVAL;
	}
	if (ash_json_get_i64(req->doc, "deadline_ms", &req->deadline_ms) ||
	    req->deadline_ms <= 0 || req->deadline_ms > MS_MAX) {
		MSG("missing or invalid \"deadline_ms\"");
		return ASH_EINVAL;
	}
	if (pr != NULL && !cJSON_IsObject(pr) && !cJSON_IsNull(pr)) {
		MSG("\"principal\" must be an object");
		return ASH_EINVAL;
	}
	req->user = ash_json_str(pr, "user");
	req->role = ash_json_str(pr, "role");
	/* Absent or null: no attachment; anything else is a length. */
	att          = cJSON_GetObjectItemCaseSensitive(req->doc, "att");
	req->att_len = ash_request_att_len(req->doc);
	if (req->att_len < 0 && att != NULL && !cJSON_IsNull(att)) {
		MSG("\"att\" must be a length in bytes");
		return ASH_EINVAL;
	}
	if ((req->body = body_of(req->doc)) == NULL) {
		MSG("\"body\" must be an object");
		return ASH_EINVAL;
	}
	const ash_op_desc *d = ash_op(req->op);
	return ash_proto_check(d->req, d->nreq, req->body, msg, cap);
}

ash_err
ash_request_parse(
    const char *buf, size_t len, ash_request *req, char *msg, size_t cap)
{
	ash_err rv;

	memset(req, 0, sizeof(*req));
	req->op      = -1;
	req->att_len = -1;
	if ((rv = ash_json_parse(buf, len, &req->doc)) != ASH_OK) {
		MSG("envelope is not valid JSON");
		return ASH_EBADJSON;
	}
	if (!cJSON_IsObject(req->doc)) {
		MSG("envelope must be an object");
		return ASH_EBADJSON;
	}
	return request_fill(req, msg, cap);
}

ash_err
ash_request_adopt(cJSON *doc, ash_request *req, char *msg, size_t cap)
{
	memset(req, 0, sizeof(*req));
	req->op      = -1;
	req->att_len = -1;
	req->doc     = doc;
	if (!cJSON_IsObject(doc)) {
		MSG("envelope must be an object");
		return ASH_EBADJSON;
	}
	return request_fill(req, msg, cap);
}

void
ash_request_fini(ash_request *req)
{
	cJSON_Delete(req->doc);
	memset(req, 0, sizeof(*req));
	req->att_len = -1;
}

int64_t
ash_request_att_len(const cJSON *doc)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(doc, "att");

	/* Below 2^31: a bus message is capped far lower (max_msg). */
	if (!cJSON_IsNumber(a) || a->valuedouble != floor(a->valuedouble) ||
	    a->valuedouble < 0 || a->valuedouble > 2147483647.0)
		return -1;
	return (int64_t) a->valuedouble;
}

/* Envelopes are written member by member (ash_jw), the bytes their trees
 * would render to: a tree of one was about fifteen mallocs and frees, for
 * every request, reply and event on the bus. The body is rendered where it
 * goes (NULL as {}). */
static void
envelope_open(ash_jw *w, const char *id)
{
	ash_jw_open(w, NULL);
	ash_jw_int(w, "v", ASH_PROTO_VERSION);
	if (id != NULL)
		ash_jw_str(w, "id", id);
}

static char *
envelope_done(ash_jw *w, const cJSON *body)
{
	ash_jw_item(w, "body", body);
	ash_jw_close(w);
	return ash_jw_done(w);
}

char *
ash_request_render(int op, const char *id, const char *tenant,
    const char *user, const char *role, int64_t deadline_ms, const cJSON *body,
    int64_t att_len)
{
	ash_jw w = {0};

	envelope_open(&w, id);
	ash_jw_str(&w, "op", ash_op(op)->name);
	if (tenant != NULL)
		ash_jw_str(&w, "tenant", tenant);
	if (user != NULL || role != NULL) {
		ash_jw_open(&w, "principal");
		if (user != NULL)
			ash_jw_str(&w, "user", user);
		if (role != NULL)
			ash_jw_str(&w, "role", role);
		ash_jw_close(&w);
	}
	ash_jw_int(&w, "deadline_ms", deadline_ms);
	if (att_len >= 0)
		ash_jw_int(&w, "att", att_len);
	return envelope_done(&w, body);
}

char *
ash_reply_render_ok(const char *id, int status, const cJSON *body)
{
	ash_jw w = {0};

	envelope_open(&w, id);
	ash_jw_int(&w, "status", status);
	return envelope_done(&w, body);
}

char *
ash_reply_render_err(
    const char *id, int status, const char *code, const char *message)
{
	ash_jw w = {0};

	envelope_open(&w, id);
	ash_jw_int(&w, "status", status);
	ash_jw_open(&w, "error");
	ash_jw_str(&w, "code", code);
	ash_jw_str(&w, "message", message ? message : "");
	ash_jw_close(&w);
	ash_jw_close(&w);
	return ash_jw_done(&w);
}

static ash_err
reply_fill(ash_reply *rep)
{
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(rep->doc, "status");
	const cJSON *err = cJSON_GetObjectItemCaseSensitive(rep->doc, "error");
	const cJSON *v   = cJSON_GetObjectItemCaseSensitive(rep->doc, "v");

	if (!cJSON_IsNumber(v) || v->valuedouble != ASH_PROTO_VERSION ||
	    !cJSON_IsNumber(st) || st->valuedouble < 100 ||
	    st->valuedouble > 599)
		return ASH_EINVAL;
	rep->id     = ash_json_str(rep->doc, "id");
	rep->status = (int) st->valuedouble;
	if (rep->status < 400)
		return (rep->body = body_of(rep->doc)) ? ASH_OK : ASH_EINVAL;
	rep->code    = ash_json_str(err, "code");
	rep->message = ash_json_str(err, "message");
	return rep->code ? ASH_OK : ASH_EINVAL;
}

ash_err
ash_reply_parse(const char *buf, size_t len, ash_reply *rep)
{
	ash_err rv;

	memset(rep, 0, sizeof(*rep));
	if ((rv = ash_json_parse(buf, len, &rep->doc)) != ASH_OK)
		return ASH_EBADJSON;
	if (!cJSON_IsObject(rep->doc))
		return ASH_EBADJSON;
	return reply_fill(rep);
}

ash_err
ash_reply_adopt(cJSON *doc, ash_reply *rep)
{
	memset(rep, 0, sizeof(*rep));
	rep->doc = doc;
	return cJSON_IsObject(doc) ? reply_fill(rep) : ASH_EBADJSON;
}

void
ash_reply_fini(ash_reply *rep)
{
	cJSON_Delete(rep->doc);
	memset(rep, 0, sizeof(*rep));
}

char *
ash_event_render(int topic, const char *id, const char *tenant, int64_t ts,
    const cJSON *body, size_t *len)
{
	const char *name = ash_topic(topic)->name;
	ash_jw      w    = {0};
	char       *out;

	/* "<topic> " first: SUB sockets filter on the prefix. */
	ash_jw_raw(&w, name, strlen(name));
	ash_jw_raw(&w, " ", 1);
	envelope_open(&w, id);
	ash_jw_str(&w, "topic", name);
	if (tenant != NULL)
		ash_jw_str(&w, "tenant", tenant);
	ash_jw_int(&w, "ts", ts);
	out  = envelope_done(&w, body);
	*len = strlen(out);
	return out;
}

static ash_err
event_fill(ash_event *ev, const char *prefix, size_t plen)
{
	const char *topic = ash_json_str(ev->doc, "topic");
	char        msg[128];
	ash_err     rv;

	if ((rv = parse_common(
	         ev->doc, &ev->id, &ev->tenant, msg, sizeof(msg))) != ASH_OK)
		return rv;
	if (topic == NULL || strlen(topic) != plen ||
	    memcmp(topic, prefix, plen) != 0 ||
	    (ev->topic = ash_topic_find(topic)) < 0)
		return ASH_EINVAL;
	if (ash_json_get_i64(ev->doc, "ts", &ev->ts) != ASH_OK ||
	    ev->ts < -MS_MAX || ev->ts > MS_MAX)
		return ASH_EINVAL;
	if ((ev->body = body_of(ev->doc)) == NULL)
		return ASH_EINVAL;
	const ash_topic_desc *d = ash_topic(ev->topic);
	return ash_proto_check(
	    d->fields, d->nfields, ev->body, msg, sizeof(msg));
}

ash_err
ash_event_parse(const char *buf, size_t len, ash_event *ev)
{
	const char *sp = memchr(buf, ' ', len);

	memset(ev, 0, sizeof(*ev));
	ev->topic = -1;
	if (sp == NULL)
		return ASH_EINVAL;
	if (ash_json_parse(sp + 1, len - (size_t) (sp + 1 - buf), &ev->doc) !=
	    ASH_OK)
		return ASH_EBADJSON;
	if (!cJSON_IsObject(ev->doc))
		return ASH_EBADJSON;
	return event_fill(ev, buf, (size_t) (sp - buf));
}

void
ash_event_fini(ash_event *ev)
{
	cJSON_Delete(ev->doc);
	memset(ev, 0, sizeof(*ev));
}
