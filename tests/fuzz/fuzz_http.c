/*
 * fuzz_http.c - the HTTP server's framing of untrusted bytes: finding the
 * end of a head (whole, and resumed across a split as reads arrive),
 * parsing it into a request (target, path decoding, query, fields) and
 * decoding a chunked body fed in pieces.
 *
 * Invariants beyond memory safety: the head's end does not depend on how
 * the bytes were split; a refused head has a refusal status and a reason;
 * an accepted one has a method, a path, and a NUL-free decoded path, and
 * its Content-Length read exactly (a huge one never reads small); the
 * chunked decoder never consumes more than it was given nor returns more
 * than its limit, and a piecewise decode equals the whole one.
 */
#include "fuzz.h"
#include "http_impl.h"

#include <ashoon/log.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BODY_MAX 4096

static size_t
head_len_split(const char *p, size_t n, size_t split)
{
	size_t scan = 0, hl = ash__http_head_len(p, split, &scan);

	return hl != 0 ? hl : ash__http_head_len(p, n, &scan);
}

/* Decodes in[0..n) as a connection does: the bytes arrive `piece` at a
 * time (0: all at once) and what a call left unconsumed is offered again
 * with the next arrival. */
static void
chunks(const char *in, size_t n, size_t piece, ash__http_body *b,
    ash__http_chunks *ch, int *status, size_t *used)
{
	const char *why = NULL;
	size_t      off = 0, end = 0;

	memset(ch, 0, sizeof(*ch));
	*status = 0;
	while (end < n && ch->state != ASH__CH_DONE && *status == 0) {
		size_t c;

		end = piece == 0 || n - end < piece ? n : end + piece;
		c   = ash__http_chunks_run(
		      ch, in + off, end - off, b, BODY_MAX, status, &why);
		CHECK(c <= end - off);
		CHECK(b->len <= BODY_MAX);
		CHECK(*status == 0 || *status == 400 || *status == 413);
		CHECK(*status != 400 || why != NULL); /* 413 has none */
		off += c;
	}
	*used = off;
}

static void
body_check(const char *in, size_t n, size_t piece)
{
	ash__http_body   whole = {0}, parts = {0};
	ash__http_chunks cw, cp;
	int              sw, sp;
	size_t           uw, up;

	chunks(in, n, 0, &whole, &cw, &sw, &uw);
	chunks(in, n, piece, &parts, &cp, &sp, &up);
	CHECK(sw == sp && cw.state == cp.state);
	if (sw == 0) {
		CHECK(uw == up && whole.len == parts.len);
		CHECK(whole.len == 0 ||
		    memcmp(whole.data, parts.data, whole.len) == 0);
	}
	free(whole.data);
	free(parts.data);
}

/* Content-Length read independently: exact while it fits in 60 bits,
 * else at least that much (over any body limit), never smaller. */
static void
length_check(const ash_http_req *req)
{
	const char *v    = ash_http_req_header(req, "content-length");
	uint64_t    want = 0;
	bool        big  = false;

	CHECK(v != NULL && *v != '\0');
	for (; *v; v++) {
		CHECK(*v >= '0' && *v <= '9');
		if (want >= (UINT64_C(1) << 60) / 10)
			big = true;
		else
			want = want * 10 + (uint64_t) (*v - '0');
	}
	CHECK(big ? req->head.length >= (UINT64_C(1) << 60) / 10
	          : req->head.length == want);
}

static void
request_check(const char *p, size_t hl, size_t n)
{
	int           status = -1;
	const char   *why    = NULL;
	ash_http_req *req =
	    ash__http_req_new("127.0.0.1:1", p, hl, &status, &why);

	if (req == NULL) {
		CHECK(status == 400 || status == 431 || status == 501 ||
		    status == 505);
		CHECK(why != NULL && *why != '\0');
		return;
	}
	CHECK(status == 0);
	CHECK(ash_http_req_method(req) != NULL);
	CHECK(ash_http_req_path(req) != NULL);
	CHECK(strlen(req->path) == req->path_len);
	(void) ash_http_req_header(req, "host");
	(void) ash_http_req_header(req, "x-hub-signature-256");
	(void) ash_http_req_query(req, "cursor");
	(void) ash_http_req_query(req, "hub.verify_token");
	if (req->head.has_length)
		length_check(req);
	if (req->head.chunked)
		body_check(p + hl, n - hl, 1 + (n % 7));
	ash__http_req_free(req);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p    = (const char *) data;
	size_t      scan = 0, hl, split;

	ash_log_set_level(ASH_LOG_ERROR);
	hl = ash__http_head_len(p, size, &scan);
	CHECK(hl <= size);
	split = size == 0 ? 0 : data[0] % (size + 1);
	CHECK(head_len_split(p, size, split) == hl);
	if (hl != 0)
		request_check(p, hl, size);
	return 0;
}
