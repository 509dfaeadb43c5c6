/*
 * webhook_load - a load generator for signed Meta webhooks (or any URL).
 *
 *   webhook_load [options] URL
 *
 * POSTs pre-signed Messenger text events over keep-alive HTTP/1.1
 * connections (non-blocking sockets on a libevent loop per thread) and
 * reports what came back. Every body carries a new mid
 * ("m_bench_<nonce>_<n>"), one of a few sender ids, and
 * X-Hub-Signature-256 = "sha256=" + hex HMAC-SHA256(secret, body). All
 * requests (head and body) are built and signed before the clock starts,
 * so neither JSON building nor HMAC is in the measured loop.
 *
 * Two modes:
 *   max   (default) C connections, each sends its next request as soon as
 *         the previous answer is read (closed loop): the highest rate the
 *         target sustains at that concurrency. Latency: send to answer.
 *   rate  (-r R) open loop: request k is scheduled at start + k/R, on a
 *         precise timer, and goes out on the next idle connection of C.
 *         Latency is measured from the scheduled time, so a stalled
 *         target cannot hide its queueing (no coordinated omission).
 *
 * A run is warm-up (-w s, not measured) then the measured window (-d s),
 * then a drain: nothing new is started (in rate mode the requests scheduled
 * inside the window still go out) and the tool waits for every answer (up
 * to -T s). A request belongs to the window when it was started (max) or
 * scheduled (rate) inside it; its latency counts, and achieved req/s is
 * their number divided by the time from the window's start to the last
 * answer among them (never less than -d).
 *
 * Output: a human summary and one "RESULT key=value ..." line for
 * scripts (cpu_s: this tool's CPU time after the requests were built, i.e.
 * warm-up, window and drain; build_cpu_s: building them). Exit status: 0
 * if every answer of the whole run (warm-up and drain included) was 2xx
 * and no request failed; 1 if any non-2xx or failed request (connection
 * error, timeout, unanswered); 2 on usage or set-up errors, or when the
 * pre-built requests ran out (-n; --cycle reuses them instead, which
 * repeats mids: only for targets that do not care, like nginx).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* --- options ------------------------------------------------------------ */

typedef struct opts {
	const char *url;
	const char *secret;
	const char *page;
	const char *nonce;
	int         conns;
	int         threads;
	double      duration;
	double      warmup;
	double      rate; /* 0: max mode */
	double      timeout;
	long        pool; /* pre-built requests; 0: derived */
	int         senders;
	bool        cycle;
	bool        quiet;
	FILE       *trace; /* --trace: one line per measured answer */
} opts;

static opts o = {
    .secret   = "3f6a1c9e8b7d4f20a5c1e9d7b3f8a6c2",
    .page     = "104857601234567",
    .conns    = 64,
    .threads  = 1,
    .duration = 10,
    .warmup   = 3,
    .timeout  = 10,
    .senders  = 16,
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: webhook_load [options] URL\n"
	    "  -c N        connections (default 64)\n"
	    "  -t N        threads, connections and rate split among them "
	    "(default 1)\n"
	    "  -d S        measured seconds (default 10)\n"
	    "  -w S        warm-up seconds before (default 3)\n"
	    "  -r R        open loop at R requests/s (default: max "
	    "throughput)\n"
	    "  -T S        per-request timeout and drain limit (default 10)\n"
	    "  -n N        requests to pre-build (default: enough for 30000/s "
	    "or 1.2 x R)\n"
	    "  -s SECRET   app secret for X-Hub-Signature-256 (default: "
	    "the test vectors' secret)\n"
	    "  -p PAGE     page id (entry.id and recipient.id; default "
	    "104857601234567)\n"
	    "  -S N        distinct sender ids (default 16)\n"
	    "  -m NONCE    mid prefix nonce (default: from time and pid)\n"
	    "  --cycle     reuse the pre-built requests when they run out\n"
	    "  --trace F   write \"<send time, ms into the window> <latency, "
	    "us>\" per\n"
	    "              measured answer to F (to see when the slow ones "
	    "were sent)\n"
	    "  -q          only the RESULT line\n");
}

/* --- time --------------------------------------------------------------- */

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static struct timeval
tv_of_ns(uint64_t ns)
{
	struct timeval tv = {(time_t) (ns / 1000000000u),
	    (suseconds_t) ((ns % 1000000000u) / 1000u)};
	return tv;
}

/* --- the pre-built requests --------------------------------------------- */

typedef struct preq {
	char  *data;
	size_t len;
} preq;

static preq                   *pool;
static long                    pool_n;
static atomic_long             pool_next;
static atomic_bool             pool_dry; /* ran out (without --cycle) */
static char                    host_hdr[300];
static char                    path[1024];
static struct sockaddr_storage target;
static socklen_t               target_len;

static void
hex(const unsigned char *in, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i]     = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static void
pool_build(void)
{
	char          body[1024], head[512], sig[65];
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t        maclen = 0;
	/* HMAC keyed once; each body signs on a copy of the keyed state. */
	EVP_MAC     *hmac     = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *keyed    = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
	OSSL_PARAM   params[] = {
	      OSSL_PARAM_construct_utf8_string(
	          OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0),
	      OSSL_PARAM_construct_end(),
        };
	/* Meta's timestamps are ms since the epoch. */
	struct timespec wall;
	int64_t         base_ms;

	clock_gettime(CLOCK_REALTIME, &wall);
	base_ms = (int64_t) wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
	if (keyed == NULL ||
	    !EVP_MAC_init(keyed, (const unsigned char *) o.secret,
	        strlen(o.secret), params)) {
		fprintf(stderr, "webhook_load: HMAC-SHA256 unavailable\n");
		exit(2);
	}
	pool = calloc((size_t) pool_n, sizeof(*pool));
	if (pool == NULL) {
		fprintf(stderr, "webhook_load: out of memory\n");
		exit(2);
	}
	for (long i = 0; i < pool_n; i++) {
		int64_t ts = base_ms + i / 16;
		int     blen, hlen;

		/* Compact like Meta's own (and tests/data/meta/
		 * meta-messenger-text.json), sender ids of 16 digits. */
		blen = snprintf(body, sizeof(body),
		    "{\"object\":\"page\",\"entry\":[{\"id\":\"%s\","
		    "\"time\":%" PRId64 ",\"messaging\":[{\"sender\":{\"id\":"
		    "\"65239188472%05ld\"},\"recipient\":{\"id\":\"%s\"},"
		    "\"timestamp\":%" PRId64 ",\"message\":{\"mid\":"
		    "\"m_bench_%s_%ld\",\"text\":\"Hi, has my order #%ld "
		    "shipped yet?\"}}]}]}",
		    o.page, ts + 300, i % o.senders, o.page, ts, o.nonce, i,
		    4521 + i % 1000);
		if (blen <= 0 || (size_t) blen >= sizeof(body)) {
			fprintf(stderr, "webhook_load: body too long\n");
			exit(2);
		}
		EVP_MAC_CTX *m = EVP_MAC_CTX_dup(keyed);
		if (m == NULL ||
		    !EVP_MAC_update(
		        m, (const unsigned char *) body, (size_t) blen) ||
		    !EVP_MAC_final(m, mac, &maclen, sizeof(mac))) {
			fprintf(stderr, "webhook_load: HMAC failed\n");
			exit(2);
		}
		EVP_MAC_CTX_free(m);
		hex(mac, maclen, sig);
		hlen = snprintf(head, sizeof(head),
		    "POST %s HTTP/1.1\r\nHost: %s\r\n"
		    "Content-Type: application/json\r\n"
		    "X-Hub-Signature-256: sha256=%s\r\n"
		    "Content-Length: %d\r\n\r\n",
		    path, host_hdr, sig, blen);
		if (hlen <= 0 || (size_t) hlen >= sizeof(head)) {
			fprintf(stderr, "webhook_load: head too long\n");
			exit(2);
		}
		pool[i].len  = (size_t) hlen + (size_t) blen;
		pool[i].data = malloc(pool[i].len);
		if (pool[i].data == NULL) {
			fprintf(stderr, "webhook_load: out of memory\n");
			exit(2);
		}
		memcpy(pool[i].data, head, (size_t) hlen);
		memcpy(pool[i].data + hlen, body, (size_t) blen);
	}
	EVP_MAC_CTX_free(keyed);
	EVP_MAC_free(hmac);
}

/* The next request, or NULL when the pool ran dry. */
static const preq *
pool_take(void)
{
	long i = atomic_fetch_add(&pool_next, 1);

	if (i >= pool_n) {
		if (!o.cycle) {
			atomic_store(&pool_dry, true);
			return NULL;
		}
		i %= pool_n;
	}
	return &pool[i];
}

/* --- per-thread state ---------------------------------------------------- */

enum phase { PH_WARMUP, PH_MEASURE, PH_DRAIN };
enum rstate { RS_HEAD, RS_BODY, RS_CHUNK_SIZE, RS_CHUNK_DATA, RS_TRAILER };

#define INBUF 16384

typedef struct worker worker;

/* One keep-alive connection: a non-blocking socket with a persistent read
 * event. Requests are written with send() straight away (a 0.5 KB request
 * fits the socket buffer; a partial write finishes on a write event), and
 * answers are parsed in place. Plain events rather than bufferevents: a
 * bufferevent costs two epoll_ctl (write interest on, off) and a FIONREAD
 * ioctl per request, which halved this tool's rate on a 2-vCPU VM. */
typedef struct conn {
	worker       *w;
	int           idx;
	int           fd;
	struct event *rev, *wev;
	bool          connecting;
	bool          connected;
	bool          in_idle;
	bool          busy;        /* a request is out */
	bool          close_after; /* Connection: close */
	uint64_t      t_start;     /* scheduled (rate) or sent (max) */
	uint64_t      t_sent;      /* for the timeout */
	const char   *out;         /* unwritten rest of the request */
	size_t        outlen;
	enum rstate   rs;
	long          remaining; /* body / chunk bytes still to read */
	int           status;
	size_t        pos, fill; /* parsed / received bytes of in */
	char          in[INBUF];
} conn;

typedef struct stats {
	long      sent, ok, non2xx, errors;
	long      status[600];
	uint32_t *lat_us; /* measured requests' latencies */
	long      nlat, caplat;
	uint64_t  last_done; /* ns, last answer of a measured request */
} stats;

struct worker {
	int                id;
	struct event_base *base;
	conn              *conns;
	int                nconns;
	int                nconnected;
	int                outstanding;
	int               *idle; /* idle connections (stack) */
	int                nidle;
	/* rate mode: scheduled but not yet sent */
	uint64_t     *pending;
	long          phead, ptail, pcap;
	uint64_t      interval_ns;
	uint64_t      next_sched;
	struct event *sched_ev;
	struct event *phase_ev;
	struct event *drain_ev;
	struct event *sweep_ev; /* request timeouts */
	enum phase    phase;
	bool          started;
	stats         all;  /* whole run */
	stats         meas; /* measured window */
	char          first_bad[256];
	pthread_t     tid;
};

static uint64_t          t_begin, t_measure, t_end; /* ns */
static pthread_barrier_t start_barrier;

static void conn_send_next(conn *c);
static void worker_dispatch(worker *w);
static void worker_maybe_done(worker *w);
static void conn_open(conn *c);

static void
idle_push(conn *c)
{
	if (!c->in_idle) {
		c->in_idle                = true;
		c->w->idle[c->w->nidle++] = c->idx;
	}
}

static void
lat_add(stats *s, uint64_t ns)
{
	if (s->nlat == s->caplat) {
		s->caplat = s->caplat ? s->caplat * 2 : 65536;
		s->lat_us = realloc(s->lat_us, (size_t) s->caplat * 4);
		if (s->lat_us == NULL) {
			fprintf(stderr, "webhook_load: out of memory\n");
			exit(2);
		}
	}
	s->lat_us[s->nlat++] =
	    (uint32_t) (ns / 1000u > UINT32_MAX ? UINT32_MAX : ns / 1000u);
}

static bool
in_window(uint64_t t)
{
	return t >= t_measure && t < t_end;
}

static void
note_bad(worker *w, const char *what, const char *detail, size_t len)
{
	if (w->first_bad[0] == '\0')
		snprintf(w->first_bad, sizeof(w->first_bad), "%s%.*s", what,
		    (int) (len > 200 ? 200 : len), detail);
}

/* The request on c ended: status > 0 an answer, 0 a failure. */
static void
request_done(conn *c, int status)
{
	worker  *w   = c->w;
	uint64_t now = now_ns();
	bool     m   = in_window(c->t_start);

	c->busy = false;
	w->outstanding--;
	if (status >= 200 && status < 300) {
		w->all.ok++;
		if (m)
			w->meas.ok++;
	} else if (status > 0) {
		w->all.non2xx++;
		if (m)
			w->meas.non2xx++;
		if (status < 600) {
			w->all.status[status]++;
			if (m)
				w->meas.status[status]++;
		}
	} else {
		w->all.errors++;
		if (m)
			w->meas.errors++;
	}
	if (m && status > 0) {
		lat_add(&w->meas, now - c->t_start);
		if (o.trace != NULL)
			fprintf(o.trace, "%.3f %llu\n",
			    (double) (c->t_start - t_measure) / 1e6,
			    (unsigned long long) ((now - c->t_start) / 1000u));
		if (now > w->meas.last_done)
			w->meas.last_done = now;
	}
}

static void
conn_close(conn *c)
{
	worker *w = c->w;

	if (c->fd >= 0) {
		event_free(c->rev);
		event_free(c->wev);
		close(c->fd);
		c->fd  = -1;
		c->rev = c->wev = NULL;
	}
	if (c->connected) {
		c->connected = false;
		w->nconnected--;
	}
	c->connecting = false;
}

/* c is unusable: its request (if any) failed; reconnect unless the run is
 * over. */
static void
conn_fail(conn *c, const char *why)
{
	worker *w = c->w;

	if (c->busy) {
		note_bad(w, "connection: ", why, strlen(why));
		request_done(c, 0);
	}
	conn_close(c);
	if (w->phase != PH_DRAIN)
		conn_open(c);
	worker_maybe_done(w);
}

static bool
hdr_is(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name);
	return len > n && strncasecmp(line, name, n) == 0;
}

static bool
hdr_has(const char *line, size_t len, const char *word)
{
	char v[128];

	if (len >= sizeof(v))
		len = sizeof(v) - 1;
	memcpy(v, line, len);
	v[len] = '\0';
	return strcasestr(v, word) != NULL;
}

/* One step of the answer parser over c->in[pos..fill): 1 progress, 0 need
 * more bytes, -1 c failed (closed). */
static int
parse_step(conn *c)
{
	char  *p     = c->in + c->pos;
	size_t avail = c->fill - c->pos;

	switch (c->rs) {
	case RS_HEAD: {
		char *end = memmem(p, avail, "\r\n\r\n", 4);
		char *line, *eol;
		bool  chunked = false;
		long  clen    = -1;

		if (end == NULL) {
			if (avail >= INBUF / 2) {
				conn_fail(c, "answer head too long");
				return -1;
			}
			return 0;
		}
		c->close_after = false;
		if (avail < 12 || memcmp(p, "HTTP/1.", 7) != 0) {
			note_bad(
			    c->w, "bad status line: ", p, (size_t) (end - p));
			conn_fail(c, "bad status line");
			return -1;
		}
		c->status = atoi(p + 9);
		if (p[7] == '0')
			c->close_after = true;
		line = (char *) memchr(p, '\n', (size_t) (end - p)) + 1;
		while (line < end) {
			size_t len;
			eol = memchr(line, '\r', (size_t) (end + 2 - line));
			len = (size_t) (eol - line);
			if (hdr_is(line, len, "content-length:"))
				clen = strtol(line + 15, NULL, 10);
			else if (hdr_is(line, len, "transfer-encoding:"))
				chunked =
				    hdr_has(line + 18, len - 18, "chunked");
			else if (hdr_is(line, len, "connection:"))
				c->close_after =
				    hdr_has(line + 11, len - 11, "close");
			line = eol + 2;
		}
		if (c->status < 200 || c->status >= 300)
			note_bad(c->w, "answer: ", p,
			    (size_t) ((char *) memchr(p, '\r', avail) - p));
		c->pos += (size_t) (end + 4 - p);
		if (c->status >= 100 && c->status < 200)
			return 1; /* 1xx: the real answer follows */
		if (c->status == 204 || c->status == 304) {
			c->remaining = 0;
			c->rs        = RS_BODY;
		} else if (chunked) {
			c->rs = RS_CHUNK_SIZE;
		} else if (clen >= 0) {
			c->remaining = clen;
			c->rs        = RS_BODY;
		} else {
			conn_fail(c, "answer without a length");
			return -1;
		}
		return 1;
	}
	case RS_BODY:
	case RS_CHUNK_DATA: {
		size_t take = avail < (size_t) c->remaining
		    ? avail
		    : (size_t) c->remaining;
		c->pos += take;
		c->remaining -= (long) take;
		if (c->remaining > 0)
			return 0;
		if (c->rs == RS_CHUNK_DATA) {
			c->rs = RS_CHUNK_SIZE;
			return 1;
		}
		break; /* answered */
	}
	case RS_CHUNK_SIZE:
	case RS_TRAILER: {
		char *eol = memmem(p, avail, "\r\n", 2);
		if (eol == NULL)
			return 0;
		c->pos += (size_t) (eol + 2 - p);
		if (c->rs == RS_CHUNK_SIZE) {
			c->remaining = strtol(p, NULL, 16);
			if (c->remaining > 0) {
				c->remaining += 2; /* CRLF after the data */
				c->rs = RS_CHUNK_DATA;
			} else {
				c->rs = RS_TRAILER;
			}
			return 1;
		}
		if (eol != p)
			return 1; /* a trailer line */
		break;            /* answered */
	}
	}
	/* A whole answer. */
	c->rs = RS_HEAD;
	request_done(c, c->status);
	if (c->close_after) {
		conn_close(c);
		if (c->w->phase != PH_DRAIN)
			conn_open(c);
		worker_maybe_done(c->w);
		return -1;
	}
	conn_send_next(c);
	worker_maybe_done(c->w);
	return 1;
}

static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
	conn   *c = arg;
	ssize_t n;
	int     r;

	if (c->pos == c->fill)
		c->pos = c->fill = 0;
	else if (c->pos > 0 && c->fill > INBUF / 2) {
		memmove(c->in, c->in + c->pos, c->fill - c->pos);
		c->fill -= c->pos;
		c->pos = 0;
	}
	n = recv(c->fd, c->in + c->fill, INBUF - c->fill, 0);
	if (n == 0) {
		conn_fail(c, "closed by peer");
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			conn_fail(c, strerror(errno));
		return;
	}
	c->fill += (size_t) n;
	while (c->pos < c->fill || c->rs == RS_BODY) {
		if (!c->busy) {
			conn_fail(c, "bytes with no request out");
			return;
		}
		r = parse_step(c);
		if (r < 0)
			return;
		if (r == 0)
			break;
		if (!c->busy)
			break; /* answered and not sent again (idle) */
	}
}

/* Writes what is left of the request; a write event finishes it. */
static void
conn_flush(conn *c)
{
	while (c->outlen > 0) {
		ssize_t n = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN) {
				event_add(c->wev, NULL);
				return;
			}
			if (errno == EINTR)
				continue;
			conn_fail(c, strerror(errno));
			return;
		}
		c->out += n;
		c->outlen -= (size_t) n;
	}
}

static void
on_writable(evutil_socket_t fd, short what, void *arg)
{
	conn *c = arg;

	if (c->connecting) {
		int       err = 0, one = 1;
		socklen_t l = sizeof(err);

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err != 0) {
			fprintf(stderr, "webhook_load: cannot connect: %s\n",
			    strerror(err));
			exit(2);
		}
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->connecting = false;
		c->connected  = true;
		c->w->nconnected++;
		event_add(c->rev, NULL);
		idle_push(c);
		if (c->w->started)
			worker_dispatch(c->w);
		return;
	}
	conn_flush(c);
}

static void
conn_open(conn *c)
{
	worker *w = c->w;

	c->fd = socket(target.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c->fd < 0) {
		fprintf(stderr, "webhook_load: socket: %s\n", strerror(errno));
		exit(2);
	}
	c->rev =
	    event_new(w->base, c->fd, EV_READ | EV_PERSIST, on_readable, c);
	c->wev  = event_new(w->base, c->fd, EV_WRITE, on_writable, c);
	c->rs   = RS_HEAD;
	c->busy = false;
	c->pos = c->fill = 0;
	c->outlen        = 0;
	c->connecting    = true;
	if (connect(c->fd, (struct sockaddr *) &target, target_len) != 0 &&
	    errno != EINPROGRESS) {
		fprintf(
		    stderr, "webhook_load: connect: %s\n", strerror(errno));
		exit(2);
	}
	event_add(c->wev, NULL);
}

/* Puts the next request on c (idle, connected). t: its start time. */
static bool
conn_send(conn *c, uint64_t t)
{
	const preq *r = pool_take();
	worker     *w = c->w;

	if (r == NULL)
		return false;
	c->busy    = true;
	c->t_start = t;
	c->t_sent  = now_ns();
	c->rs      = RS_HEAD;
	w->outstanding++;
	w->all.sent++;
	if (in_window(t))
		w->meas.sent++;
	c->out    = r->data;
	c->outlen = r->len;
	conn_flush(c);
	return true;
}

/* Fails requests out for longer than the timeout (every 100 ms). */
static void
on_sweep(evutil_socket_t fd, short what, void *arg)
{
	worker  *w   = arg;
	uint64_t now = now_ns();

	for (int i = 0; i < w->nconns; i++) {
		conn *c = &w->conns[i];
		if (c->busy && now - c->t_sent > (uint64_t) (o.timeout * 1e9))
			conn_fail(c, "request timed out");
	}
}

/* After an answer on c: max mode sends at once; rate mode hands c back. */
static void
conn_send_next(conn *c)
{
	worker *w = c->w;

	if (o.rate > 0) {
		idle_push(c);
		worker_dispatch(w);
		return;
	}
	if (w->phase == PH_DRAIN || !conn_send(c, now_ns()))
		idle_push(c);
}

/* Rate mode: sends pending requests on idle connections. Max mode: starts
 * idle connections. */
static void
worker_dispatch(worker *w)
{
	while (w->nidle > 0) {
		conn    *c = &w->conns[w->idle[w->nidle - 1]];
		uint64_t t;

		if (!c->connected || c->busy) {
			w->nidle--;
			c->in_idle = false;
			continue;
		}
		if (o.rate > 0) {
			if (w->phead == w->ptail)
				return;
			t = w->pending[w->phead % w->pcap];
		} else {
			if (w->phase == PH_DRAIN)
				return;
			t = now_ns();
		}
		if (!conn_send(c, t))
			return;
		w->nidle--;
		c->in_idle = false;
		if (o.rate > 0)
			w->phead++;
	}
}

static void
pending_push(worker *w, uint64_t t)
{
	if (w->ptail - w->phead == w->pcap) {
		long      ncap = w->pcap * 2;
		uint64_t *np   = malloc((size_t) ncap * sizeof(*np));
		if (np == NULL)
			exit(2);
		for (long i = w->phead; i < w->ptail; i++)
			np[i - w->phead] = w->pending[i % w->pcap];
		free(w->pending);
		w->ptail -= w->phead;
		w->phead   = 0;
		w->pending = np;
		w->pcap    = ncap;
	}
	w->pending[w->ptail % w->pcap] = t;
	w->ptail++;
}

static void
on_schedule(evutil_socket_t fd, short what, void *arg)
{
	worker  *w   = arg;
	uint64_t now = now_ns();

	while (w->next_sched <= now && w->next_sched < t_end) {
		pending_push(w, w->next_sched);
		w->next_sched += w->interval_ns;
	}
	worker_dispatch(w);
	if (w->next_sched < t_end) {
		struct timeval tv = tv_of_ns(w->next_sched - now);
		evtimer_add(w->sched_ev, &tv);
	} else {
		worker_maybe_done(w);
	}
}

static void
worker_maybe_done(worker *w)
{
	/* Rate mode: also every request of the schedule (the window can end
	 * a few us before its last one is due). */
	if (w->phase == PH_DRAIN && w->outstanding == 0 &&
	    (o.rate <= 0 || (w->phead == w->ptail && w->next_sched >= t_end)))
		event_base_loopexit(w->base, NULL);
	/* Dry pool: nothing more can be sent. */
	if (w->outstanding == 0 && atomic_load(&pool_dry))
		event_base_loopexit(w->base, NULL);
}

static void
on_drain_limit(evutil_socket_t fd, short what, void *arg)
{
	worker *w = arg;

	/* Whatever is still out never got an answer. */
	for (int i = 0; i < w->nconns; i++)
		if (w->conns[i].busy)
			conn_fail(
			    &w->conns[i], "no answer before the drain limit");
	w->all.errors += w->ptail - w->phead; /* never sent */
	w->meas.errors += w->ptail - w->phead;
	w->phead = w->ptail;
	event_base_loopexit(w->base, NULL);
}

static void
on_phase(evutil_socket_t fd, short what, void *arg)
{
	worker        *w   = arg;
	uint64_t       now = now_ns();
	struct timeval tv;

	if (w->phase == PH_WARMUP && now < t_end) {
		w->phase = PH_MEASURE;
		tv       = tv_of_ns(t_end > now ? t_end - now : 0);
		evtimer_add(w->phase_ev, &tv);
		return;
	}
	w->phase = PH_DRAIN;
	tv       = tv_of_ns((uint64_t) (o.timeout * 1e9));
	evtimer_add(w->drain_ev, &tv);
	worker_maybe_done(w);
}

static void *
worker_run(void *arg)
{
	worker        *w = arg;
	uint64_t       now;
	struct timeval tv;

	/* Wait until every connection is up. */
	while (w->nconnected < w->nconns)
		if (event_base_loop(w->base, EVLOOP_ONCE) != 0)
			break;
	pthread_barrier_wait(&start_barrier); /* all connected */
	pthread_barrier_wait(&start_barrier); /* main set the clock */
	w->started = true;
	now        = now_ns();
	tv         = tv_of_ns(100000000u);
	evtimer_add(w->sweep_ev, &tv);
	tv = tv_of_ns(t_measure > now ? t_measure - now : 0);
	evtimer_add(w->phase_ev, &tv);
	if (o.rate > 0) {
		/* Threads are offset within one interval of the total rate. */
		w->next_sched =
		    t_begin + (uint64_t) ((double) w->id * 1e9 / o.rate);
		on_schedule(-1, 0, w);
	} else {
		worker_dispatch(w);
	}
	event_base_dispatch(w->base);
	/* Anything still out never got an answer. */
	for (int i = 0; i < w->nconns; i++)
		if (w->conns[i].busy) {
			note_bad(w, "", "unanswered at exit", 18);
			request_done(&w->conns[i], 0);
		}
	return NULL;
}

static void
worker_free(worker *w)
{
	for (int i = 0; i < w->nconns; i++)
		conn_close(&w->conns[i]);
	event_free(w->sched_ev);
	event_free(w->phase_ev);
	event_free(w->drain_ev);
	event_free(w->sweep_ev);
	event_base_free(w->base);
	free(w->conns);
	free(w->idle);
	free(w->pending);
	free(w->all.lat_us);
	free(w->meas.lat_us);
}

/* --- results ------------------------------------------------------------- */

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
	return (x > y) - (x < y);
}

static double
pct(const uint32_t *v, long n, double p)
{
	long i;

	if (n == 0)
		return 0;
	i = (long) (p / 100.0 * (double) n + 0.5) - 1;
	if (i < 0)
		i = 0;
	if (i >= n)
		i = n - 1;
	return v[i] / 1000.0;
}

static void
merge(stats *to, const stats *from)
{
	to->sent += from->sent;
	to->ok += from->ok;
	to->non2xx += from->non2xx;
	to->errors += from->errors;
	for (int i = 0; i < 600; i++)
		to->status[i] += from->status[i];
	if (from->last_done > to->last_done)
		to->last_done = from->last_done;
	for (long i = 0; i < from->nlat; i++)
		lat_add(to, (uint64_t) from->lat_us[i] * 1000u);
}

/* --- main ---------------------------------------------------------------- */

static void
parse_url(void)
{
	struct evhttp_uri *u     = evhttp_uri_parse(o.url);
	struct addrinfo    hints = {0}, *ai = NULL;
	const char        *host, *p, *q;
	char               port[16];
	int                pn;

	if (u == NULL || evhttp_uri_get_host(u) == NULL ||
	    evhttp_uri_get_scheme(u) == NULL ||
	    strcmp(evhttp_uri_get_scheme(u), "http") != 0) {
		fprintf(stderr, "webhook_load: need an http:// URL\n");
		exit(2);
	}
	host = evhttp_uri_get_host(u);
	pn   = evhttp_uri_get_port(u);
	if (pn < 0)
		pn = 80;
	p = evhttp_uri_get_path(u);
	q = evhttp_uri_get_query(u);
	snprintf(path, sizeof(path), "%s%s%s", p && *p ? p : "/", q ? "?" : "",
	    q ? q : "");
	snprintf(host_hdr, sizeof(host_hdr), "%s:%d", host, pn);
	snprintf(port, sizeof(port), "%d", pn);
	hints.ai_family   = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL) {
		fprintf(stderr, "webhook_load: cannot resolve %s\n", host);
		exit(2);
	}
	memcpy(&target, ai->ai_addr, ai->ai_addrlen);
	target_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	evhttp_uri_free(u);
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"cycle", no_argument, NULL, 'C'},
	    {"trace", required_argument, NULL, 'L'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static char   nonce[40];
	worker       *ws;
	stats         all = {0}, meas = {0};
	int           ch, rc;
	char          first_bad[256] = "";
	double        secs, rps;
	uint64_t      t0, t1;
	struct rusage ru;
	double        cpu, cpu_build;

	while ((ch = getopt_long(
	            argc, argv, "c:t:d:w:r:T:n:s:p:S:m:qh", lo, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o.conns = atoi(optarg);
			break;
		case 't':
			o.threads = atoi(optarg);
			break;
		case 'd':
			o.duration = atof(optarg);
			break;
		case 'w':
			o.warmup = atof(optarg);
			break;
		case 'r':
			o.rate = atof(optarg);
			break;
		case 'T':
			o.timeout = atof(optarg);
			break;
		case 'n':
			o.pool = atol(optarg);
			break;
		case 's':
			o.secret = optarg;
			break;
		case 'p':
			o.page = optarg;
			break;
		case 'S':
			o.senders = atoi(optarg);
			break;
		case 'm':
			o.nonce = optarg;
			break;
		case 'C':
			o.cycle = true;
			break;
		case 'q':
			o.quiet = true;
			break;
		case 'L':
			if ((o.trace = fopen(optarg, "w")) == NULL) {
				perror(optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1 || o.conns < 1 || o.threads < 1 ||
	    o.threads > o.conns || o.duration <= 0 || o.warmup < 0 ||
	    o.rate < 0 || o.timeout <= 0 || o.senders < 1 ||
	    o.senders > 99999) {
		usage(stderr);
		return 2;
	}
	o.url = argv[optind];
	if (o.nonce == NULL) {
		snprintf(nonce, sizeof(nonce), "%lx%x", (long) time(NULL),
		    (unsigned) getpid());
		o.nonce = nonce;
	}
	parse_url();
	pool_n = o.pool > 0 ? o.pool
	                    : (long) ((o.rate > 0 ? o.rate * 1.2 : 30000) *
	                              (o.warmup + o.duration) +
	                          o.conns);
	t0     = now_ns();
	pool_build();
	t1 = now_ns();
	getrusage(RUSAGE_SELF, &ru);
	cpu_build = (double) ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double) ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	if (!o.quiet)
		fprintf(stderr,
		    "webhook_load: %ld requests built and signed in %.2f s "
		    "(%zu bytes each, first mid m_bench_%s_0)\n",
		    pool_n, (double) (t1 - t0) / 1e9, pool[0].len, o.nonce);

	ws = calloc((size_t) o.threads, sizeof(*ws));
	pthread_barrier_init(&start_barrier, NULL, (unsigned) o.threads + 1);
	for (int i = 0; i < o.threads; i++) {
		worker              *w   = &ws[i];
		struct event_config *cfg = event_config_new();

		/* The open-loop schedule needs sub-ms timers (timerfd). */
		if (o.rate > 0)
			event_config_set_flag(
			    cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
		w->id   = i;
		w->base = event_base_new_with_config(cfg);
		event_config_free(cfg);
		w->nconns  = o.conns / o.threads + (i < o.conns % o.threads);
		w->conns   = calloc((size_t) w->nconns, sizeof(conn));
		w->idle    = calloc((size_t) w->nconns, sizeof(int));
		w->pcap    = 4096;
		w->pending = malloc((size_t) w->pcap * sizeof(uint64_t));
		if (o.rate > 0)
			w->interval_ns = (uint64_t) (1e9 * o.threads / o.rate);
		w->sched_ev = evtimer_new(w->base, on_schedule, w);
		w->phase_ev = evtimer_new(w->base, on_phase, w);
		w->drain_ev = evtimer_new(w->base, on_drain_limit, w);
		w->sweep_ev = event_new(w->base, -1, EV_PERSIST, on_sweep, w);
		for (int j = 0; j < w->nconns; j++) {
			conn *c = &w->conns[j];
			c->w    = w;
			c->idx  = j;
			c->fd   = -1;
			conn_open(c);
		}
	}
	for (int i = 0; i < o.threads; i++)
		pthread_create(&ws[i].tid, NULL, worker_run, &ws[i]);
	/* Connections are up in every thread: the clock starts. */
	pthread_barrier_wait(&start_barrier);
	t_begin   = now_ns();
	t_measure = t_begin + (uint64_t) (o.warmup * 1e9);
	t_end     = t_measure + (uint64_t) (o.duration * 1e9);
	pthread_barrier_wait(&start_barrier);
	for (int i = 0; i < o.threads; i++) {
		pthread_join(ws[i].tid, NULL);
		merge(&all, &ws[i].all);
		merge(&meas, &ws[i].meas);
		if (first_bad[0] == '\0' && ws[i].first_bad[0] != '\0')
			memcpy(first_bad, ws[i].first_bad, sizeof(first_bad));
	}
	qsort(meas.lat_us, (size_t) meas.nlat, sizeof(uint32_t), cmp_u32);
	secs = meas.last_done > t_measure
	    ? (double) (meas.last_done - t_measure) / 1e9
	    : o.duration;
	if (secs < o.duration)
		secs = o.duration;
	rps = (double) meas.ok / secs;
	if (!o.quiet) {
		printf("target      %s\n", o.url);
		if (o.rate > 0)
			printf("mode        open loop at %.0f req/s, %d "
			       "connections, %d thread(s)\n",
			    o.rate, o.conns, o.threads);
		else
			printf(
			    "mode        max throughput, %d connections, %d "
			    "thread(s)\n",
			    o.conns, o.threads);
		printf("window      %.1f s warm-up, %.1f s measured (%.2f s "
		       "to the last answer)\n",
		    o.warmup, o.duration, secs);
		printf("measured    sent %ld, 2xx %ld, non-2xx %ld, errors "
		       "%ld\n",
		    meas.sent, meas.ok, meas.non2xx, meas.errors);
		printf("throughput  %.0f req/s (2xx)\n", rps);
		printf(
		    "latency ms  p50 %.2f  p90 %.2f  p99 %.2f  max %.2f%s\n",
		    pct(meas.lat_us, meas.nlat, 50),
		    pct(meas.lat_us, meas.nlat, 90),
		    pct(meas.lat_us, meas.nlat, 99),
		    meas.nlat ? meas.lat_us[meas.nlat - 1] / 1000.0 : 0.0,
		    o.rate > 0 ? " (from the scheduled time)" : "");
		printf(
		    "whole run   sent %ld, 2xx %ld, non-2xx %ld, errors %ld\n",
		    all.sent, all.ok, all.non2xx, all.errors);
		for (int i = 0; i < 600; i++)
			if (all.status[i])
				printf("  status %d: %ld\n", i, all.status[i]);
		if (first_bad[0])
			printf("first problem: %s\n", first_bad);
		if (atomic_load(&pool_dry))
			printf("the %ld pre-built requests ran out (-n, or "
			       "--cycle)\n",
			    pool_n);
		fflush(stdout);
	}
	getrusage(RUSAGE_SELF, &ru);
	cpu = (double) ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double) ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6 -
	    cpu_build;
	printf("RESULT mode=%s conns=%d threads=%d rate=%.0f duration=%.2f "
	       "sent=%ld ok=%ld non2xx=%ld errors=%ld rps=%.0f p50_ms=%.2f "
	       "p90_ms=%.2f p99_ms=%.2f max_ms=%.2f total_sent=%ld "
	       "total_ok=%ld total_non2xx=%ld total_errors=%ld dry=%d "
	       "cpu_s=%.2f build_cpu_s=%.2f\n",
	    o.rate > 0 ? "rate" : "max", o.conns, o.threads, o.rate, secs,
	    meas.sent, meas.ok, meas.non2xx, meas.errors, rps,
	    pct(meas.lat_us, meas.nlat, 50), pct(meas.lat_us, meas.nlat, 90),
	    pct(meas.lat_us, meas.nlat, 99),
	    meas.nlat ? meas.lat_us[meas.nlat - 1] / 1000.0 : 0.0, all.sent,
	    all.ok, all.non2xx, all.errors, atomic_load(&pool_dry) ? 1 : 0,
	    cpu, cpu_build);
	fflush(stdout);
	if (atomic_load(&pool_dry))
		rc = 2;
	else
		rc = all.non2xx > 0 || all.errors > 0 ? 1 : 0;
	for (int i = 0; i < o.threads; i++)
		worker_free(&ws[i]);
	free(ws);
	free(all.lat_us);
	free(meas.lat_us);
	for (long i = 0; i < pool_n; i++)
		free(pool[i].data);
	free(pool);
	pthread_barrier_destroy(&start_barrier);
	if (o.trace != NULL && fclose(o.trace) != 0) {
		perror("webhook_load: --trace");
		rc = 2;
	}
	return rc;
}
