/*
 * fuzz_envelope.c - the bus envelopes every service reads from its peers:
 * requests, replies and events (proto_envelope.c, driven by ops.def).
 * The first byte picks the kind; the rest is the envelope.
 *
 * Invariants: a refusal is one of the documented errors (with a message
 * for a request); an accepted envelope renders back to one that parses to
 * the same op, id, tenant, principal, deadline, status and body.
 */
#include "fuzz.h"

#include <ashoon/json.h>
#include <ashoon/proto.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool
same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void
request(const char *buf, size_t len)
{
	ash_request req, again;
	char        msg[256] = "", msg2[256];
	ash_err     rv = ash_request_parse(buf, len, &req, msg, sizeof(msg));
	char       *out;

	if (rv != ASH_OK) {
		CHECK(rv == ASH_EBADJSON || rv == ASH_EINVAL ||
		    rv == ASH_ENOTFOUND);
		CHECK(rv == ASH_EBADJSON || msg[0] != '\0');
		ash_request_fini(&req);
		return;
	}
	out = ash_request_render(req.op, req.id, req.tenant, req.user,
	    req.role, req.deadline_ms, req.body, req.att_len);
	CHECK(ash_request_parse(
	          out, strlen(out), &again, msg2, sizeof(msg2)) == ASH_OK);
	CHECK(again.op == req.op && again.deadline_ms == req.deadline_ms &&
	    again.att_len == req.att_len);
	CHECK(
	    same_str(again.id, req.id) && same_str(again.tenant, req.tenant));
	CHECK(
	    same_str(again.user, req.user) && same_str(again.role, req.role));
	CHECK(cJSON_Compare(again.body, req.body, true));
	ash_request_fini(&again);
	ash_request_fini(&req);
	cJSON_free(out);
}

static void
reply(const char *buf, size_t len)
{
	ash_reply rep, again;
	ash_err   rv = ash_reply_parse(buf, len, &rep);
	char     *out;

	if (rv != ASH_OK) {
		CHECK(rv == ASH_EBADJSON || rv == ASH_EINVAL);
		ash_reply_fini(&rep);
		return;
	}
	out = rep.body != NULL
	    ? ash_reply_render_ok(rep.id, rep.status, rep.body)
	    : ash_reply_render_err(rep.id, rep.status, rep.code, rep.message);
	CHECK(ash_reply_parse(out, strlen(out), &again) == ASH_OK);
	CHECK(again.status == rep.status && same_str(again.id, rep.id));
	CHECK(same_str(again.code, rep.code));
	/* An error without a message is rendered with an empty one. */
	CHECK(same_str(again.message,
	    rep.message ? rep.message : (rep.code ? "" : NULL)));
	CHECK((again.body == NULL) == (rep.body == NULL));
	CHECK(rep.body == NULL || cJSON_Compare(again.body, rep.body, true));
	ash_reply_fini(&again);
	ash_reply_fini(&rep);
	cJSON_free(out);
}

static void
event(const char *buf, size_t len)
{
	ash_event ev, again;
	ash_err   rv = ash_event_parse(buf, len, &ev);
	size_t    n;
	char     *out;

	if (rv != ASH_OK) {
		CHECK(rv == ASH_EBADJSON || rv == ASH_EINVAL ||
		    rv == ASH_ENOTFOUND);
		ash_event_fini(&ev);
		return;
	}
	out = ash_event_render(ev.topic, ev.id, ev.tenant, ev.ts, ev.body, &n);
	CHECK(ash_event_parse(out, n, &again) == ASH_OK);
	CHECK(again.topic == ev.topic && again.ts == ev.ts);
	CHECK(same_str(again.id, ev.id) && same_str(again.tenant, ev.tenant));
	CHECK(cJSON_Compare(again.body, ev.body, true));
	ash_event_fini(&again);
	ash_event_fini(&ev);
	cJSON_free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *) data + 1;

	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0:
		request(buf, size - 1);
		break;
	case 1:
		reply(buf, size - 1);
		break;
	default:
		event(buf, size - 1);
		break;
	}
	return 0;
}
