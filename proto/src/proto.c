/*
 * proto.c - op/topic tables from ops.def, and body validation.
 *
 * ops.def lists each op's fields right after the op, so the rows are
 * flattened into one array per kind and each op gets a slice of it; a
 * constructor builds the slices when libashoon loads (and asserts that an
 * op's rows are contiguous, so a misplaced row fails at start, not later).
 */
#include <ashoon/proto.h>

#include <stdio.h>
#include <string.h>

const ash_svc_row ash_services[ASH_SVC_COUNT] = {
#define ASH_SVC(id, name, env, schema, idx) {name, env, schema, idx},
#include <ashoon/proto/services.def>
#undef ASH_SVC
};

#define REQUIRED true
#define OPTIONAL false

typedef struct field_row {
	int       owner; /* op or topic id */
	ash_field f;
} field_row;

/* Owner ids in ops.def: a service ID, or ANY. */
#define OWNER(o)                OWNER_##o
#define OWNER_ANY               ASH_SVC_ANY
#define OWNER_GATEWAY           ASH_SVC_GATEWAY
#define OWNER_META_INGEST       ASH_SVC_META_INGEST
#define OWNER_WIDGET_GATEWAY    ASH_SVC_WIDGET_GATEWAY
#define OWNER_AI_ROUTER         ASH_SVC_AI_ROUTER
#define OWNER_KNOWLEDGE_INDEXER ASH_SVC_KNOWLEDGE_INDEXER
#define OWNER_RETENTION_PURGER  ASH_SVC_RETENTION_PURGER
#define OWNER_DSAR_HANDLER      ASH_SVC_DSAR_HANDLER

#define X_NONE(...)
#define X_FIELD(owner, name, type, req) {owner, {name, ASH_FT_##type, req}},

static const field_row req_rows[] = {
#define ASH_OP               X_NONE
#define ASH_REQ(op, f, t, r) X_FIELD(ASH_OP_##op, f, t, r)
#define ASH_REP              X_NONE
#define ASH_TOPIC            X_NONE
#define ASH_EVT              X_NONE
#include <ashoon/proto/ops.def>
#undef ASH_OP
#undef ASH_REQ
#undef ASH_REP
#undef ASH_TOPIC
#undef ASH_EVT
    {-1, {NULL, ASH_FT_ANY, false}},
};

static const field_row rep_rows[] = {
#define ASH_OP               X_NONE
#define ASH_REQ              X_NONE
#define ASH_REP(op, f, t, r) X_FIELD(ASH_OP_##op, f, t, r)
#define ASH_TOPIC            X_NONE
#define ASH_EVT              X_NONE
#include <ashoon/proto/ops.def>
#undef ASH_OP
#undef ASH_REQ
#undef ASH_REP
#undef ASH_TOPIC
#undef ASH_EVT
    {-1, {NULL, ASH_FT_ANY, false}},
};

static const field_row evt_rows[] = {
#define ASH_OP               X_NONE
#define ASH_REQ              X_NONE
#define ASH_REP              X_NONE
#define ASH_TOPIC            X_NONE
#define ASH_EVT(t, f, ty, r) X_FIELD(ASH_TOPIC_##t, f, ty, r)
#include <ashoon/proto/ops.def>
#undef ASH_OP
#undef ASH_REQ
#undef ASH_REP
#undef ASH_TOPIC
#undef ASH_EVT
    {-1, {NULL, ASH_FT_ANY, false}},
};

/* Flattened field arrays (same order as the rows) and the descriptors. */
static ash_field   req_fields[sizeof(req_rows) / sizeof(req_rows[0])];
static ash_field   rep_fields[sizeof(rep_rows) / sizeof(rep_rows[0])];
static ash_field   evt_fields[sizeof(evt_rows) / sizeof(evt_rows[0])];
static ash_op_desc op_table[ASH_OP_COUNT] = {
#define ASH_OP(id, name, ver, owner) \
	[ASH_OP_##id] = {name, ver, OWNER(owner), NULL, 0, NULL, 0},
#define ASH_REQ   X_NONE
#define ASH_REP   X_NONE
#define ASH_TOPIC X_NONE
#define ASH_EVT   X_NONE
#include <ashoon/proto/ops.def>
#undef ASH_OP
#undef ASH_REQ
#undef ASH_REP
#undef ASH_TOPIC
#undef ASH_EVT
};
static ash_topic_desc topic_table[ASH_TOPIC_COUNT] = {
#define ASH_OP  X_NONE
#define ASH_REQ X_NONE
#define ASH_REP X_NONE
#define ASH_TOPIC(id, name, ver, pub) \
	[ASH_TOPIC_##id] = {name, ver, OWNER(pub), NULL, 0},
#define ASH_EVT X_NONE
#include <ashoon/proto/ops.def>
#undef ASH_OP
#undef ASH_REQ
#undef ASH_REP
#undef ASH_TOPIC
#undef ASH_EVT
};

/* Points each owner's (fields, n) at its contiguous slice of rows. */
static void
slice(const field_row *rows, ash_field *out, int owner,
    const ash_field **fields, int *n)
{
	int first = -1, count = 0;

	for (int i = 0; rows[i].owner != -1; i++) {
		out[i] = rows[i].f;
		if (rows[i].owner != owner)
			continue;
		if (first < 0)
			first = i;
		/* ops.def keeps an op's rows together; enforce it. */
		ASH_ASSERT(i == first + count);
		count++;
	}
	*fields = first >= 0 ? &out[first] : NULL;
	*n      = count;
}

__attribute__((constructor)) static void
proto_build_tables(void)
{
	for (int op = 0; op < ASH_OP_COUNT; op++) {
		slice(req_rows, req_fields, op, &op_table[op].req,
		    &op_table[op].nreq);
		slice(rep_rows, rep_fields, op, &op_table[op].rep,
		    &op_table[op].nrep);
	}
	for (int t = 0; t < ASH_TOPIC_COUNT; t++)
		slice(evt_rows, evt_fields, t, &topic_table[t].fields,
		    &topic_table[t].nfields);
}

const ash_op_desc *
ash_op(int op)
{
	ASH_ASSERT(op >= 0 && op < ASH_OP_COUNT);
	return &op_table[op];
}

const ash_topic_desc *
ash_topic(int topic)
{
	ASH_ASSERT(topic >= 0 && topic < ASH_TOPIC_COUNT);
	return &topic_table[topic];
}

int
ash_svc_find(const char *name)
{
	for (int i = 0; i < ASH_SVC_COUNT; i++)
		if (strcmp(ash_services[i].name, name) == 0)
			return i;
	return -1;
}

int
ash_op_find(const char *name)
{
	for (int i = 0; i < ASH_OP_COUNT; i++)
		if (strcmp(op_table[i].name, name) == 0)
			return i;
	return -1;
}

int
ash_topic_find(const char *name)
{
	for (int i = 0; i < ASH_TOPIC_COUNT; i++)
		if (strcmp(topic_table[i].name, name) == 0)
			return i;
	return -1;
}
