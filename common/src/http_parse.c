/*
 * http_parse.c - HTTP/1.1 request heads and chunked bodies (RFC 9112).
 *
 * Strict where two parsers could frame a request differently, since a
 * proxy in front of us is one of them (request smuggling): no line
 * folding, no space before a field's colon, no control bytes in values
 * and no NUL anywhere in a head (the parts are C strings: a NUL would cut
 * a value short where the proxy read all of it), no two different
 * Content-Lengths, no Content-Length next to a Transfer-Encoding, no
 * coding but "chunked", exactly one Host in HTTP/1.1. Lenient only where
 * the RFC lets a recipient be: a line may end in a bare LF. Pure
 * functions: no I/O, no allocation but the chunked body's buffer.
 */
#include "http_impl.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHUNK_LINE_MAX 1024        /* a chunk-size line, with its extensions */
#define TRAILER_MAX    (16u << 10) /* all trailer lines of a body */

static bool
is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') ||
	    (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Field-value bytes: HT, visible ASCII, space, obs-text. */
static bool
is_vchar(unsigned char ch)
{
	return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

size_t
ash__http_head_len(const char *p, size_t n, size_t *scan)
{
	size_t i = *scan;

	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t      at;

		if (nl == NULL)
			break;
		at = (size_t) (nl - p);
		if (at + 1 < n && p[at + 1] == '\n')
			return at + 2;
		if (at + 2 < n && p[at + 1] == '\r' && p[at + 2] == '\n')
			return at + 3;
		if (at + 1 == n || (at + 2 == n && p[at + 1] == '\r')) {
			*scan = at; /* its line may still end the head */
			return 0;
		}
		i = at + 1;
	}
	*scan = n;
	return 0;
}

/* The line at *pos, NUL-terminated in place without its CR LF or LF; NULL
 * at the end. */
static char *
next_line(char *p, size_t len, size_t *pos)
{
	char *line = p + *pos, *nl;

	if (*pos >= len)
		return NULL;
	nl = memchr(line, '\n', len - *pos);
	if (nl == NULL)
		return NULL;
	*pos = (size_t) (nl - p) + 1;
	if (nl > line && nl[-1] == '\r')
		nl--;
	*nl = '\0';
	return line;
}

static const char *
method_name(const char *m)
{
	static const char *const known[] = {
	    "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(m, known[i]) == 0)
			return known[i];
	return NULL;
}

static int
parse_request_line(char *line, ash__http_head *h, const char **why)
{
	char *sp1 = strchr(line, ' '), *sp2, *m;

	*why = "malformed request line";
	if (sp1 == NULL || (sp2 = strchr(sp1 + 1, ' ')) == NULL ||
	    sp1 == line || sp2 == sp1 + 1)
		return 400;
	*sp1 = *sp2 = '\0';
	for (m = line; *m; m++)
		if (!is_tchar((unsigned char) *m))
			return 400;
	for (const char *t = sp1 + 1; *t; t++)
		if ((unsigned char) *t <= 0x20 || *t == 0x7f)
			return 400;
	if (strncmp(sp2 + 1, "HTTP/", 5) != 0)
		return 400;
	if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
		h->minor = 1;
	else if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
		h->minor = 0;
	else {
		*why = "only HTTP/1.0 and HTTP/1.1 are spoken here";
		return 505;
	}
	h->target = sp1 + 1;
	if ((h->method = method_name(line)) == NULL) {
		*why = "method not supported";
		return 501;
	}
	return 0;
}

/* Content-Length: digits only; saturates (a huge one is over any limit). */
static int
parse_length(const char *v, uint64_t *out)
{
	uint64_t n = 0;

	if (*v == '\0')
		return -1;
	for (; *v; v++) {
		if (*v < '0' || *v > '9')
			return -1;
		n = n > UINT64_MAX / 16 ? UINT64_MAX / 16
		                        : n * 10 + (uint64_t) (*v - '0');
	}
	*out = n;
	return 0;
}

/* Does the comma-separated list v hold token tok (any case)? */
static bool
has_token(const char *v, const char *tok)
{
	size_t n = strlen(tok);

	while (*v) {
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		if (strncasecmp(v, tok, n) == 0 &&
		    (v[n] == '\0' || v[n] == ',' || v[n] == ' ' ||
		        v[n] == '\t'))
			return true;
		while (*v && *v != ',')
			v++;
	}
	return false;
}

/* What the head's framing and connection fields mean. */
static int
apply_field(ash__http_head *h, const char *name, size_t nlen, const char *v,
    const char **why)
{
	uint64_t n;

	if (nlen == 14 && strcasecmp(name, "Content-Length") == 0) {
		*why = "bad Content-Length";
		if (parse_length(v, &n) != 0 ||
		    (h->has_length && n != h->length))
			return 400;
		h->has_length = true;
		h->length     = n;
	} else if (nlen == 17 && strcasecmp(name, "Transfer-Encoding") == 0) {
		*why = "only a single \"chunked\" transfer coding is accepted";
		if (h->chunked || strcasecmp(v, "chunked") != 0)
			return h->chunked ? 400 : 501;
		h->chunked = true;
	} else if (nlen == 10 && strcasecmp(name, "Connection") == 0) {
		if (has_token(v, "close"))
			h->close = true;
		if (has_token(v, "keep-alive"))
			h->keep_alive = true;
	} else if (nlen == 6 && strcasecmp(name, "Expect") == 0) {
		h->expect_continue = strcasecmp(v, "100-continue") == 0;
	} else if (nlen == 4 && strcasecmp(name, "Host") == 0) {
		h->hosts++;
	}
	return 0;
}

static int
parse_field(char *line, ash__http_head *h, const char **why)
{
	char  *colon = strchr(line, ':'), *v, *end;
	size_t nlen;

	*why = "malformed header field";
	if (*line == ' ' || *line == '\t') {
		*why = "obsolete line folding in the header";
		return 400;
	}
	if (colon == NULL || colon == line)
		return 400;
	for (char *q = line; q < colon; q++)
		if (!is_tchar((unsigned char) *q))
			return 400;
	nlen   = (size_t) (colon - line);
	*colon = '\0';
	for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
		;
	for (end = v; *end; end++)
		if (!is_vchar((unsigned char) *end))
			return 400;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*end = '\0';
	if (h->nfields == ASH__HTTP_MAX_FIELDS) {
		*why = "too many header fields";
		return 431;
	}
	h->fields[h->nfields].name    = line;
	h->fields[h->nfields++].value = v;
	return apply_field(h, line, nlen, v, why);
}

int
ash__http_parse_head(char *p, size_t len, ash__http_head *h, const char **why)
{
	size_t pos = 0;
	char  *line;
	int    st;

	memset(h, 0, offsetof(ash__http_head, fields));
	if (memchr(p, '\0', len) != NULL) {
		*why = "NUL byte in the request head";
		return 400;
	}
	if ((line = next_line(p, len, &pos)) == NULL) {
		*why = "malformed request line";
		return 400;
	}
	if ((st = parse_request_line(line, h, why)) != 0)
		return st;
	while ((line = next_line(p, len, &pos)) != NULL && *line != '\0')
		if ((st = parse_field(line, h, why)) != 0)
			return st;
	if (h->chunked && (h->has_length || h->minor == 0)) {
		*why = h->minor == 0 ? "chunked transfer coding needs HTTP/1.1"
		                     : "both Content-Length and "
		                       "Transfer-Encoding";
		return 400;
	}
	if (h->minor == 1 && h->hosts != 1) { /* RFC 9112 3.2: a MUST */
		*why = h->hosts
		    ? "more than one Host header field"
		    : "HTTP/1.1 request without a Host header field";
		return 400;
	}
	h->keep_alive = h->minor == 1 ? !h->close : h->keep_alive && !h->close;
	if (h->minor == 0)
		h->expect_continue = false;
	return 0;
}

const char *
ash__http_head_field(const ash__http_head *h, const char *name)
{
	for (int i = 0; i < h->nfields; i++)
		if (strcasecmp(h->fields[i].name, name) == 0)
			return h->fields[i].value;
	return NULL;
}

/* --- chunked bodies ----------------------------------------------------- */

/* The length of the line at in (through LF), 0 if not all there yet. */
static size_t
line_len(const char *in, size_t n)
{
	const char *nl = memchr(in, '\n', n);

	return nl ? (size_t) (nl - in) + 1 : 0;
}

static int
chunk_size(const char *line, size_t len, uint64_t *out)
{
	uint64_t v      = 0;
	size_t   i      = 0, digits;
	size_t   endlen = len - 1 - (len >= 2 && line[len - 2] == '\r');

	for (; i < endlen; i++) {
		int d = line[i] >= '0' && line[i] <= '9' ? line[i] - '0'
		    : line[i] >= 'a' && line[i] <= 'f'   ? line[i] - 'a' + 10
		    : line[i] >= 'A' && line[i] <= 'F'   ? line[i] - 'A' + 10
		                                         : -1;
		if (d < 0)
			break;
		if (i >= 15) /* 2^60: over any body limit, never wraps */
			return -1;
		v = v * 16 + (uint64_t) d;
	}
	digits = i;
	if (digits == 0)
		return -1;
	/* Extensions are ignored; spaces before them are tolerated. */
	while (i < endlen && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i < endlen && line[i] != ';')
		return -1;
	for (; i < endlen; i++)
		if (!is_vchar((unsigned char) line[i]))
			return -1;
	*out = v;
	return 0;
}

/* Within the body limit: the chunk's size line was checked against it. */
static void
body_append(ash__http_body *b, const char *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		b->data = ash_xrealloc(b->data, cap);
		b->cap  = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static size_t
chunks_step(ash__http_chunks *ch, const char *in, size_t n,
    ash__http_body *body, size_t max, int *status, const char **why)
{
	size_t len, take;

	switch (ch->state) {
	case ASH__CH_SIZE:
		if ((len = line_len(in, n)) == 0) {
			if (n > CHUNK_LINE_MAX)
				goto bad;
			return 0;
		}
		if (len > CHUNK_LINE_MAX ||
		    chunk_size(in, len, &ch->left) != 0)
			goto bad;
		if (ch->left > max - body->len)
			goto big;
		ch->state = ch->left ? ASH__CH_DATA : ASH__CH_TRAILER;
		return len;
	case ASH__CH_DATA:
		if (n == 0)
			return 0;
		take = n < ch->left ? n : (size_t) ch->left;
		body_append(body, in, take);
		ch->left -= take;
		if (ch->left == 0)
			ch->state = ASH__CH_DATA_END;
		return take;
	case ASH__CH_DATA_END:
		if (n >= 1 && in[0] == '\n')
			len = 1;
		else if (n >= 2 && in[0] == '\r' && in[1] == '\n')
			len = 2;
		else if (n < 2 && (n == 0 || in[0] == '\r'))
			return 0;
		else
			goto bad;
		ch->state = ASH__CH_SIZE;
		return len;
	case ASH__CH_TRAILER:
		if ((len = line_len(in, n)) == 0) {
			if (ch->trailer + n > TRAILER_MAX)
				goto bad;
			return 0;
		}
		ch->trailer += len;
		if (ch->trailer > TRAILER_MAX)
			goto bad;
		if (len == 1 || (len == 2 && in[0] == '\r'))
			ch->state = ASH__CH_DONE;
		return len;
	default:
		return 0;
	}
bad:
	*status = 400;
	*why    = "malformed chunked body";
	return 0;
big:
	*status = 413;
	*why    = NULL;
	return 0;
}

size_t
ash__http_chunks_run(ash__http_chunks *ch, const char *in, size_t n,
    ash__http_body *body, size_t max, int *status, const char **why)
{
	size_t used = 0, step;

	*status = 0;
	while (ch->state != ASH__CH_DONE && *status == 0) {
		step = chunks_step(
		    ch, in + used, n - used, body, max, status, why);
		if (step == 0)
			break;
		used += step;
	}
	return used;
}
