/*
 * ashoon/proto.h - the message contracts of DESIGN.md, versioned.
 *
 * Request:  {"v":1,"op":"sys.info","id":"r-...","tenant":"<uuid>",
 *            "principal":{"user":"...","role":"agent"},
 *            "deadline_ms":<epoch ms>,"att":<bytes>,"body":{...}}
 * Reply:    {"v":1,"id":"r-...","status":200,"body":{...}}
 *        or {"v":1,"id":"r-...","status":404,
 *            "error":{"code":"not_found","message":"..."}}
 * Event:    "<topic> " + {"v":1,"topic":"...","id":"e-...","tenant":"...",
 *            "ts":<epoch ms>,"body":{...}}   (the topic prefix is what SUB
 *            sockets filter on; the space ends it)
 *
 * "att" (optional) is the length of the request's attachment: bytes that
 * travel beside the JSON, not in it, so that a body which must stay
 * exactly as sent (a signed webhook) is neither base64-encoded nor
 * escaped on the way. Where the bytes are is the bus's business
 * (ashoon/bus.h: after the frame's JSON and a NUL).
 *
 * deadline_ms is absolute wall-clock time: a receiver drops requests whose
 * deadline has passed, and an owner that calls further passes the same
 * deadline on. Services in one cluster keep clocks in sync (NTP) to well
 * under the deadlines used (hundreds of ms and up).
 *
 * Ops, topics and services are declared in proto/ops.def and
 * proto/services.def; everything here is generated from those rows.
 * Pure functions: any thread.
 */
#ifndef ASHOON_PROTO_H
#define ASHOON_PROTO_H

#include <ashoon/err.h>

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#define ASH_PROTO_VERSION 1

/* --- services ----------------------------------------------------------- */
typedef enum ash_svc_id {
#define ASH_SVC(id, name, env, schema, idx) ASH_SVC_##id,
#include <ashoon/proto/services.def>
#undef ASH_SVC
	ASH_SVC_COUNT,
	ASH_SVC_ANY = -1, /* an op every service answers (sys.*) */
} ash_svc_id;

typedef struct ash_svc_row {
	const char *name;   /* "meta-ingest" */
	const char *env;    /* "META_INGEST": ASHOON_BUS_META_INGEST */
	const char *schema; /* "meta_ingest"; role ashoon_meta_ingest */
	int         index;  /* 1..7: default ports 7100+i (bus), 9100+i
	                       (metrics) */
} ash_svc_row;

extern const ash_svc_row ash_services[ASH_SVC_COUNT];

/* The service with that name, or -1. */
int ash_svc_find(const char *name);

/* --- ops and topics ----------------------------------------------------- */
typedef enum ash_field_type {
	ASH_FT_STR,
	ASH_FT_INT,
	ASH_FT_ID,
	ASH_FT_UUID,
	ASH_FT_BOOL,
	ASH_FT_OBJ,
	ASH_FT_ARR,
	ASH_FT_ANY,
} ash_field_type;

typedef struct ash_field {
	const char    *name;
	ash_field_type type;
	bool           required;
} ash_field;

typedef enum ash_op_id {
#define ASH_OP(id, name, ver, owner) ASH_OP_##id,
#define ASH_REQ(op, f, t, r)
#define ASH_REP(op, f, t, r)
#define ASH_TOPIC(id, name, ver, pub)
#define ASH_EVT(t, f, ty, r)
#include <ashoon/proto/ops.def>
#undef ASH_OP
#undef ASH_REQ
#undef ASH_REP
#undef ASH_TOPIC
#undef ASH_EVT
	ASH_OP_COUNT
} ash_op_id;

typedef enum ash_topic_id {
#define ASH_OP(id, name, ver, owner)
#define ASH_REQ(op, f, t, r)
#define ASH_REP(op, f, t, r)
#define ASH_TOPIC(id, name, ver, pub) ASH_TOPIC_##id,
#define ASH_EVT(t, f, ty, r)
#include <ashoon/proto/ops.def>
#undef ASH_OP
#undef ASH_REQ
#undef ASH_REP
#undef ASH_TOPIC
#undef ASH_EVT
	ASH_TOPIC_COUNT
} ash_topic_id;

typedef struct ash_op_desc {
	const char      *name;
	int              version;
	int              owner; /* ash_svc_id, or ASH_SVC_ANY */
	const ash_field *req;   /* request body fields */
	int              nreq;
	const ash_field *rep; /* reply body fields */
	int              nrep;
} ash_op_desc;

typedef struct ash_topic_desc {
	const char      *name;
	int              version;
	int              publisher;
	const ash_field *fields;
	int              nfields;
} ash_topic_desc;

/* The descriptor of a declared op / topic (id in range, else asserts). The
 * tables are built once from ops.def when libashoon loads. */
const ash_op_desc    *ash_op(int op);
const ash_topic_desc *ash_topic(int topic);

/* The op or topic with that name, or -1. */
int ash_op_find(const char *name);
int ash_topic_find(const char *name);

/* Checks body against fields: every required field present, every present
 * declared field of the right type. ASH_EINVAL with a message naming the
 * field in msg (cap bytes). body may be NULL (= {}). */
ash_err ash_proto_check(const ash_field *fields, int n, const cJSON *body,
    char *msg, size_t cap) ASH_MUSTCHECK;

/* --- envelopes ---------------------------------------------------------- */
#define ASH_PROTO_ID_MAX 64

typedef struct ash_request {
	int         op;     /* ash_op_id */
	const char *id;     /* request id (borrowed from doc) */
	const char *tenant; /* uuid or NULL (borrowed) */
	const char *user;   /* principal.user or NULL */
	const char *role;   /* principal.role or NULL */
	int64_t     deadline_ms;
	cJSON      *body;    /* always an object (borrowed from doc) */
	cJSON      *doc;     /* the parsed envelope, owned */
	int64_t     att_len; /* "att", or -1: no attachment */
	const void *att;     /* its bytes, set by the bus (ashoon/bus.h) */
} ash_request;

/* Parses and validates a request envelope (exactly len bytes). Errors:
 * ASH_EBADJSON (not JSON / not an object), ASH_EINVAL (bad version, id,
 * tenant, deadline or body fields; msg says which), ASH_ENOTFOUND (unknown
 * op). On ASH_OK fill *req; free with ash_request_fini. On error req->id is
 * set if the envelope had a usable id (so the reply can carry it). */
ash_err ash_request_parse(const char *buf, size_t len, ash_request *req,
    char *msg, size_t cap) ASH_MUSTCHECK;
/* The same for an envelope already parsed (an item of a batch frame, see
 * ashoon/bus.h). Takes doc whatever the outcome: ash_request_fini frees
 * it. */
ash_err ash_request_adopt(
    cJSON *doc, ash_request *req, char *msg, size_t cap) ASH_MUSTCHECK;
void ash_request_fini(ash_request *req);

/* Renders a request envelope; body may be NULL ({}). tenant/user/role may
 * be NULL (omitted). att_len: the attachment's length, or -1 for none
 * ("att" omitted). Free with cJSON_free. */
char *ash_request_render(int op, const char *id, const char *tenant,
    const char *user, const char *role, int64_t deadline_ms, const cJSON *body,
    int64_t att_len);

/* The "att" of an envelope not yet adopted (an item of a batch frame):
 * its length, or -1 when it has none or not a valid one (which
 * ash_request_adopt then refuses). */
int64_t ash_request_att_len(const cJSON *doc);

typedef struct ash_reply {
	const char *id;      /* borrowed from doc */
	int         status;  /* HTTP-like status */
	cJSON      *body;    /* object on success (borrowed), NULL on error */
	const char *code;    /* error code on failure (borrowed) */
	const char *message; /* error message on failure (borrowed) */
	cJSON      *doc;     /* owned */
} ash_reply;

/* Parses a reply envelope. ASH_EBADJSON / ASH_EINVAL for malformed ones.
 * Free with ash_reply_fini. */
ash_err ash_reply_parse(
    const char *buf, size_t len, ash_reply *rep) ASH_MUSTCHECK;
/* The same for a parsed reply (a batch item); takes doc in every case. */
ash_err ash_reply_adopt(cJSON *doc, ash_reply *rep) ASH_MUSTCHECK;
void    ash_reply_fini(ash_reply *rep);

/* Renders a success reply (body NULL = {}) or an error reply. id may be
 * NULL. Free with cJSON_free. */
char *ash_reply_render_ok(const char *id, int status, const cJSON *body);
char *ash_reply_render_err(
    const char *id, int status, const char *code, const char *message);

typedef struct ash_event {
	int         topic;  /* ash_topic_id */
	const char *id;     /* borrowed */
	const char *tenant; /* borrowed, may be NULL */
	int64_t     ts;     /* epoch ms */
	cJSON      *body;   /* borrowed */
	cJSON      *doc;    /* owned */
} ash_event;

/* Renders "<topic> {envelope}"; *len receives the length. Free with
 * cJSON_free. */
char *ash_event_render(int topic, const char *id, const char *tenant,
    int64_t ts, const cJSON *body, size_t *len);
/* Parses what ash_event_render made; validates the body fields. */
ash_err ash_event_parse(
    const char *buf, size_t len, ash_event *ev) ASH_MUSTCHECK;
void ash_event_fini(ash_event *ev);

#endif
