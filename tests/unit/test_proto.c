/* Unit tests: proto (op table, envelopes, field validation). */
#include <ash_test.h>
#include <ashoon/proto.h>

#include <stdio.h>
#include <string.h>

#define T_UUID "6f1c8d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f"

/* A value of the declared type, for building sample bodies. */
static cJSON *
sample(ash_field_type t)
{
	switch (t) {
	case ASH_FT_STR:
		return cJSON_CreateString("text \xc3\xa9\xe2\x9c\x93");
	case ASH_FT_INT:
		return cJSON_CreateNumber(42);
	case ASH_FT_ID:
		return cJSON_CreateString("9007199254740993");
	case ASH_FT_UUID:
		return cJSON_CreateString(T_UUID);
	case ASH_FT_BOOL:
		return cJSON_CreateTrue();
	case ASH_FT_OBJ:
		return cJSON_CreateObject();
	case ASH_FT_ARR:
		return cJSON_CreateArray();
	case ASH_FT_ANY:
		return cJSON_CreateString("any");
	}
	return NULL;
}

/* A value of a different type than t (ANY has none). */
static cJSON *
wrong(ash_field_type t)
{
	return t == ASH_FT_STR || t == ASH_FT_UUID || t == ASH_FT_ID
	    ? cJSON_CreateNumber(7)
	    : cJSON_CreateString("not-it");
}

static cJSON *
sample_body(const ash_field *f, int n, int skip, int bad)
{
	cJSON *b = cJSON_CreateObject();

	for (int i = 0; i < n; i++) {
		if (i == skip)
			continue;
		cJSON_AddItemToObject(b, f[i].name,
		    i == bad ? wrong(f[i].type) : sample(f[i].type));
	}
	return b;
}

ASH_TEST(every_op_round_trips_its_sample_request)
{
	for (int op = 0; op < ASH_OP_COUNT; op++) {
		const ash_op_desc *d    = ash_op(op);
		cJSON             *body = sample_body(d->req, d->nreq, -1, -1);
		char       *env = ash_request_render(op, "r-abc", T_UUID, "u1",
		          "agent", 4102444800000LL, body, -1);
		ash_request req;
		char        msg[160];

		ASH_T_OK(ash_request_parse(
		    env, strlen(env), &req, msg, sizeof(msg)));
		ASH_T_EQ_INT(req.op, op);
		ASH_T_EQ_STR(req.id, "r-abc");
		ASH_T_EQ_STR(req.tenant, T_UUID);
		ASH_T_EQ_STR(req.user, "u1");
		ASH_T_EQ_STR(req.role, "agent");
		ASH_T_EQ_INT(req.deadline_ms, 4102444800000LL);
		ASH_T_TRUE(cJSON_Compare(req.body, body, true));
		ash_request_fini(&req);
		cJSON_free(env);
		cJSON_Delete(body);
	}
}

ASH_TEST(every_required_field_is_enforced_and_typed)
{
	for (int op = 0; op < ASH_OP_COUNT; op++) {
		const ash_op_desc *d = ash_op(op);
		char               msg[160], want[96];
		for (int i = 0; i < d->nreq; i++) {
			cJSON  *b  = sample_body(d->req, d->nreq, i, -1);
			ash_err rv = ash_proto_check(
			    d->req, d->nreq, b, msg, sizeof(msg));
			if (d->req[i].required) {
				ASH_T_ERR(rv, ASH_EINVAL);
				snprintf(want, sizeof(want), "\"%s\"",
				    d->req[i].name);
				ASH_T_CONTAINS(msg, want);
			} else {
				ASH_T_OK(rv);
			}
			cJSON_Delete(b);
			if (d->req[i].type == ASH_FT_ANY)
				continue;
			b = sample_body(d->req, d->nreq, -1, i);
			ASH_T_ERR(ash_proto_check(
			              d->req, d->nreq, b, msg, sizeof(msg)),
			    ASH_EINVAL);
			ASH_T_CONTAINS(msg, "must be");
			cJSON_Delete(b);
		}
	}
}

ASH_TEST(op_and_service_tables_are_consistent)
{
	ASH_T_EQ_INT(ash_op_find("sys.health"), ASH_OP_SYS_HEALTH);
	ASH_T_EQ_INT(ash_op_find("no.such"), -1);
	ASH_T_EQ_INT(ash_svc_find("meta-ingest"), ASH_SVC_META_INGEST);
	ASH_T_EQ_INT(ash_svc_find("nope"), -1);
	ASH_T_EQ_STR(
	    ash_services[ASH_SVC_DSAR_HANDLER].schema, "dsar_handler");
	for (int i = 0; i < ASH_SVC_COUNT; i++)
		ASH_T_EQ_INT(ash_services[i].index, i + 1);
	for (int op = 0; op < ASH_OP_COUNT; op++) {
		ASH_T_TRUE(ash_op(op)->owner >= ASH_SVC_ANY &&
		    ash_op(op)->owner < ASH_SVC_COUNT);
		ASH_T_EQ_INT(ash_op_find(ash_op(op)->name), op);
	}
	ASH_T_EQ_INT(ash_op(ASH_OP_SYS_ECHO)->nreq, 1);
	ASH_T_EQ_STR(ash_op(ASH_OP_SYS_ECHO)->req[0].name, "data");
}

static ash_err
parse_str(const char *s, ash_request *req, char *msg)
{
	ash_err rv = ash_request_parse(s, strlen(s), req, msg, 160);
	ash_request_fini(req);
	return rv;
}

ASH_TEST(bad_envelopes_are_rejected_with_reasons)
{
	ash_request req;
	char        msg[160];

	ASH_T_ERR(parse_str("{\"v\":1,\"op\":\"sys.info\",\"id\":\"r-1\","
	                    "\"deadline_ms\":5}x",
	              &req, msg),
	    ASH_EBADJSON);
	ASH_T_ERR(parse_str("[1]", &req, msg), ASH_EBADJSON);
	ASH_T_ERR(parse_str("{\"v\":2,\"op\":\"sys.info\",\"id\":\"r-1\","
	                    "\"deadline_ms\":5}",
	              &req, msg),
	    ASH_EINVAL);
	ASH_T_CONTAINS(msg, "version");
	ASH_T_ERR(parse_str("{\"v\":1,\"op\":\"sys.info\",\"deadline_ms\":5}",
	              &req, msg),
	    ASH_EINVAL);
	ASH_T_CONTAINS(msg, "\"id\"");
	ASH_T_ERR(parse_str("{\"v\":1,\"op\":\"nope\",\"id\":\"r-1\","
	                    "\"deadline_ms\":5}",
	              &req, msg),
	    ASH_ENOTFOUND);
	ASH_T_ERR(parse_str("{\"v\":1,\"op\":\"sys.info\",\"id\":\"r-1\","
	                    "\"tenant\":\"x\",\"deadline_ms\":5}",
	              &req, msg),
	    ASH_EINVAL);
	ASH_T_CONTAINS(msg, "tenant");
	ASH_T_ERR(parse_str("{\"v\":1,\"op\":\"sys.info\",\"id\":\"r-1\"}",
	              &req, msg),
	    ASH_EINVAL);
	ASH_T_CONTAINS(msg, "deadline_ms");
	/* A time of 10^15 ms or more could be rounded when rendered again
	 * (2^53 was). */
	ASH_T_ERR(parse_str("{\"v\":1,\"op\":\"sys.info\",\"id\":\"r-1\","
	                    "\"deadline_ms\":\"9007199254740992\"}",
	              &req, msg),
	    ASH_EINVAL);
	ASH_T_CONTAINS(msg, "deadline_ms");
	ASH_T_ERR(parse_str("{\"v\":1,\"op\":\"sys.info\",\"id\":\"r-1\","
	                    "\"deadline_ms\":1000000000000000}",
	              &req, msg),
	    ASH_EINVAL);
	ASH_T_OK(parse_str("{\"v\":1,\"op\":\"sys.info\",\"id\":\"r-1\","
	                   "\"deadline_ms\":\"999999999999999\"}",
	    &req, msg));
	/* The largest time taken renders back to itself. */
	char *out = ash_request_render(ASH_OP_SYS_INFO, "r-1", NULL, NULL,
	    NULL, INT64_C(999999999999999), NULL, -1);
	ASH_T_OK(ash_request_parse(out, strlen(out), &req, msg, sizeof(msg)));
	ASH_T_TRUE(req.deadline_ms == INT64_C(999999999999999));
	ash_request_fini(&req);
	cJSON_free(out);
	ASH_T_ERR(parse_str("{\"v\":1,\"op\":\"sys.info\",\"id\":\"r-1\","
	                    "\"deadline_ms\":5,\"body\":[]}",
	              &req, msg),
	    ASH_EINVAL);
	ASH_T_CONTAINS(msg, "body");
	ASH_T_ERR(parse_str("{\"v\":1,\"op\":\"sys.echo\",\"id\":\"r-1\","
	                    "\"deadline_ms\":5,\"body\":{}}",
	              &req, msg),
	    ASH_EINVAL);
	ASH_T_CONTAINS(msg, "\"data\"");
	/* Unknown fields are ignored; a missing body is {}. */
	ASH_T_OK(parse_str("{\"v\":1,\"op\":\"sys.info\",\"id\":\"r-1\","
	                   "\"deadline_ms\":5,\"extra\":true}",
	    &req, msg));
}

ASH_TEST(an_attachment_length_is_read_rendered_and_checked)
{
	ash_request req;
	char        msg[160];
	char       *out;

	/* Rendered with its length, read back; -1 renders none. */
	out = ash_request_render(
	    ASH_OP_SYS_INFO, "r-1", NULL, NULL, NULL, 5, NULL, 274);
	ASH_T_CONTAINS(out, "\"att\":274");
	ASH_T_OK(ash_request_parse(out, strlen(out), &req, msg, sizeof(msg)));
	ASH_T_TRUE(req.att_len == 274 && req.att == NULL);
	ash_request_fini(&req);
	cJSON_free(out);
	out = ash_request_render(
	    ASH_OP_SYS_INFO, "r-1", NULL, NULL, NULL, 5, NULL, -1);
	ASH_T_TRUE(strstr(out, "att") == NULL);
	ASH_T_OK(ash_request_parse(out, strlen(out), &req, msg, sizeof(msg)));
	ASH_T_TRUE(req.att_len == -1);
	ash_request_fini(&req);
	cJSON_free(out);
	/* null is absent; anything but a length in bytes is refused. */
	ASH_T_OK(parse_str("{\"v\":1,\"op\":\"sys.info\",\"id\":\"r-1\","
	                   "\"deadline_ms\":5,\"att\":null}",
	    &req, msg));
	const char *bad[] = {"-1", "1.5", "\"3\"", "true", "2147483648", "[]"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char env[160];
		snprintf(env, sizeof(env),
		    "{\"v\":1,\"op\":\"sys.info\",\"id\":\"r-1\","
		    "\"deadline_ms\":5,\"att\":%s}",
		    bad[i]);
		ASH_T_ERR(parse_str(env, &req, msg), ASH_EINVAL);
		ASH_T_CONTAINS(msg, "\"att\"");
	}
	ASH_T_OK(parse_str("{\"v\":1,\"op\":\"sys.info\",\"id\":\"r-1\","
	                   "\"deadline_ms\":5,\"att\":0}",
	    &req, msg));
}

ASH_TEST(id_survives_an_invalid_envelope_for_the_reply)
{
	const char *s = "{\"v\":1,\"op\":\"sys.echo\",\"id\":\"r-keep\","
	                "\"deadline_ms\":5,\"body\":{}}";
	ash_request req;
	char        msg[160];

	ASH_T_ERR(ash_request_parse(s, strlen(s), &req, msg, sizeof(msg)),
	    ASH_EINVAL);
	ASH_T_EQ_STR(req.id, "r-keep");
	ash_request_fini(&req);
}

ASH_TEST(replies_round_trip)
{
	cJSON    *b = cJSON_CreateObject();
	ash_reply rep;
	char     *s;

	cJSON_AddStringToObject(b, "k", "v");
	s = ash_reply_render_ok("r-1", 201, b);
	ASH_T_OK(ash_reply_parse(s, strlen(s), &rep));
	ASH_T_EQ_INT(rep.status, 201);
	ASH_T_EQ_STR(rep.id, "r-1");
	ASH_T_TRUE(cJSON_Compare(rep.body, b, true));
	ASH_T_NULL(rep.code);
	ash_reply_fini(&rep);
	cJSON_free(s);
	s = ash_reply_render_err("r-2", 404, "not_found", "no such thing");
	ASH_T_EQ_STR(s,
	    "{\"v\":1,\"id\":\"r-2\",\"status\":404,\"error\":"
	    "{\"code\":\"not_found\",\"message\":\"no such "
	    "thing\"}}");
	ASH_T_OK(ash_reply_parse(s, strlen(s), &rep));
	ASH_T_EQ_INT(rep.status, 404);
	ASH_T_EQ_STR(rep.code, "not_found");
	ASH_T_EQ_STR(rep.message, "no such thing");
	ASH_T_NULL(rep.body);
	ash_reply_fini(&rep);
	cJSON_free(s);
	s = "{\"v\":1,\"status\":500}"; /* an error without an error object */
	ASH_T_ERR(ash_reply_parse(s, strlen(s), &rep), ASH_EINVAL);
	ash_reply_fini(&rep);
	cJSON_Delete(b);
}

ASH_TEST(events_round_trip_with_topic_prefix)
{
	cJSON    *b = cJSON_CreateObject();
	ash_event ev;
	size_t    len;
	char     *s;

	cJSON_AddStringToObject(b, "service", "gateway");
	cJSON_AddStringToObject(b, "version", "1");
	cJSON_AddStringToObject(b, "instance", "h:1");
	s = ash_event_render(
	    ASH_TOPIC_SYS_STARTED, "e-1", T_UUID, 1234, b, &len);
	ASH_T_TRUE(strncmp(s, "sys.started {", 13) == 0);
	ASH_T_EQ_INT(len, strlen(s));
	ASH_T_OK(ash_event_parse(s, len, &ev));
	ASH_T_EQ_INT(ev.topic, ASH_TOPIC_SYS_STARTED);
	ASH_T_EQ_INT(ev.ts, 1234);
	ASH_T_EQ_STR(ev.tenant, T_UUID);
	ash_event_fini(&ev);
	cJSON_free(s);
	/* A ts of 10^15 ms or more (here a string, which get_i64 reads
	 * exactly) could be rounded when the event is rendered again. */
	s = ash_xstrdup(
	    "sys.started {\"v\":1,\"id\":\"e-1\",\"topic\":"
	    "\"sys.started\",\"ts\":\"1000000000000000\",\"body\":{"
	    "\"service\":\"g\",\"version\":\"1\",\"instance\":\"i\"}}");
	len = strlen(s);
	ASH_T_ERR(ash_event_parse(s, len, &ev), ASH_EINVAL);
	ash_event_fini(&ev);
	free(s);
	s = ash_xstrdup(
	    "sys.started {\"v\":1,\"id\":\"e-1\",\"topic\":"
	    "\"sys.started\",\"ts\":\"999999999999999\",\"body\":{"
	    "\"service\":\"g\",\"version\":\"1\",\"instance\":\"i\"}}");
	len = strlen(s);
	ASH_T_OK(ash_event_parse(s, len, &ev));
	ASH_T_TRUE(ev.ts == INT64_C(999999999999999));
	ash_event_fini(&ev);
	free(s);
	/* ... and renders back to itself. */
	s = ash_event_render(ASH_TOPIC_SYS_STARTED, "e-1", T_UUID,
	    INT64_C(999999999999999), b, &len);
	ASH_T_OK(ash_event_parse(s, len, &ev));
	ASH_T_TRUE(ev.ts == INT64_C(999999999999999));
	ash_event_fini(&ev);
	cJSON_free(s);
	s = ash_event_render(
	    ASH_TOPIC_SYS_STARTED, "e-1", T_UUID, 1234, b, &len);
	/* The prefix must name the same topic as the envelope. */
	memcpy(s, "sys.stortX", 10);
	ASH_T_ERR(ash_event_parse(s, len, &ev), ASH_EINVAL);
	ash_event_fini(&ev);
	cJSON_free(s);
	/* A body missing a declared field is not an event. */
	cJSON_DeleteItemFromObject(b, "instance");
	s = ash_event_render(ASH_TOPIC_SYS_STARTED, "e-1", NULL, 1, b, &len);
	ASH_T_ERR(ash_event_parse(s, len, &ev), ASH_EINVAL);
	ash_event_fini(&ev);
	cJSON_free(s);
	cJSON_Delete(b);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(every_op_round_trips_its_sample_request),
    ASH_TEST_ENTRY(every_required_field_is_enforced_and_typed),
    ASH_TEST_ENTRY(op_and_service_tables_are_consistent),
    ASH_TEST_ENTRY(bad_envelopes_are_rejected_with_reasons),
    ASH_TEST_ENTRY(an_attachment_length_is_read_rendered_and_checked),
    ASH_TEST_ENTRY(id_survives_an_invalid_envelope_for_the_reply),
    ASH_TEST_ENTRY(replies_round_trip),
    ASH_TEST_ENTRY(events_round_trip_with_topic_prefix))
