/*
 * metrics.c - counters, gauges and histograms in Prometheus text format.
 *
 * A registry holds families (one per metric name, in creation order) and
 * each family holds series (one per label set, in creation order). The
 * registry mutex guards only these lists: lookup, creation and rendering.
 * Values are C11 atomics updated with relaxed ordering, since each value is
 * an independent statistic that orders no other memory; so updates from any
 * thread never take the lock. Series are never freed before the registry,
 * which is why callers may keep the pointers.
 *
 * Histograms keep one count per bucket (not cumulative; the last is +Inf)
 * so an observation is one atomic add; rendering accumulates them, and
 * _count is that accumulated total, so _count equals the +Inf bucket even
 * while observations race with a scrape. The sum is a double whose bit
 * pattern lives in an atomic uint64 and is updated by compare-and-swap:
 * exact for any magnitude, unlike fixed-point microunits.
 */
#include <ashoon/metrics.h>

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum metric_kind {
	KIND_COUNTER,
	KIND_GAUGE,
	KIND_HISTOGRAM,
} metric_kind;

struct ash_counter {
	_Atomic uint64_t v; /* monotonic total */
};

struct ash_gauge {
	_Atomic int64_t v; /* current value */
};

struct ash_histogram {
	double           *bounds;   /* ascending upper bounds, owned */
	size_t            n;        /* number of bounds */
	_Atomic uint64_t *counts;   /* n + 1 per-bucket counts; [n] is +Inf */
	_Atomic uint64_t  sum_bits; /* the sum as a double's bit pattern */
};

typedef struct series {
	struct series *next;   /* next label set of the family */
	char          *labels; /* rendered label set, "" for none */
	union {
		ash_counter   c;
		ash_gauge     g;
		ash_histogram h;
	} u; /* which one: the family's kind */
} series;

typedef struct family {
	struct family *next; /* next family, creation order */
	char          *name; /* metric name, validated */
	char          *help; /* HELP text, NULL for none */
	metric_kind    kind; /* same for every series */
	series        *head; /* label sets, creation order */
} family;

struct ash_metrics {
	pthread_mutex_t mu;   /* guards the lists, not the values */
	family         *head; /* families, creation order */
};

/* Prometheus client_golang's defaults, in seconds. */
static const double default_bounds[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* [a-zA-Z_:][a-zA-Z0-9_:]* for metrics; labels have no ':'. */
static bool
valid_name(const char *s, bool colon)
{
	for (const char *p = s; *p; p++) {
		char ch = *p;
		bool ok = (ch >= 'a' && ch <= 'z') ||
		    (ch >= 'A' && ch <= 'Z') || ch == '_' ||
		    (colon && ch == ':') || (p != s && ch >= '0' && ch <= '9');
		if (!ok)
			return false;
	}
	return *s != '\0';
}

ash_metrics *
ash_metrics_new(void)
{
	ash_metrics *reg = ash_xcalloc(1, sizeof(*reg));

	pthread_mutex_init(&reg->mu, NULL);
	return reg;
}

static void
series_free(series *s, metric_kind kind)
{
	if (kind == KIND_HISTOGRAM) {
		free(s->u.h.bounds);
		free(s->u.h.counts);
	}
	free(s->labels);
	free(s);
}

void
ash_metrics_free(ash_metrics *reg)
{
	family *f, *fnext;
	series *s, *snext;

	if (reg == NULL)
		return;
	for (f = reg->head; f != NULL; f = fnext) {
		fnext = f->next;
		for (s = f->head; s != NULL; s = snext) {
			snext = s->next;
			series_free(s, f->kind);
		}
		free(f->name);
		free(f->help);
		free(f);
	}
	pthread_mutex_destroy(&reg->mu);
	free(reg);
}

/* Finds or appends the family; caller holds the mutex. */
static family *
get_family(
    ash_metrics *reg, const char *name, const char *help, metric_kind kind)
{
	family **pp = &reg->head;

	for (; *pp != NULL; pp = &(*pp)->next) {
		if (strcmp((*pp)->name, name) == 0) {
			/* One name, one type: Prometheus rejects a mix. */
			ASH_ASSERT((*pp)->kind == kind);
			return *pp;
		}
	}
	ASH_ASSERT(valid_name(name, true));
	*pp         = ash_xcalloc(1, sizeof(**pp));
	(*pp)->name = ash_xstrdup(name);
	(*pp)->help = (help && *help) ? ash_xstrdup(help) : NULL;
	(*pp)->kind = kind;
	return *pp;
}

/* Finds or appends the series; *is_new tells the caller to set it up.
 * Caller holds the mutex. */
static series *
get_series(ash_metrics *reg, const char *name, const char *help,
    const char *labels, metric_kind kind, bool *is_new)
{
	family  *f  = get_family(reg, name, help, kind);
	series **pp = &f->head;

	if (labels == NULL)
		labels = "";
	for (; *pp != NULL; pp = &(*pp)->next) {
		if (strcmp((*pp)->labels, labels) == 0) {
			*is_new = false;
			return *pp;
		}
	}
	*pp           = ash_xcalloc(1, sizeof(**pp));
	(*pp)->labels = ash_xstrdup(labels);
	*is_new       = true;
	return *pp;
}

ash_counter *
ash_metrics_counter(
    ash_metrics *reg, const char *name, const char *help, const char *labels)
{
	series *s;
	bool    is_new;

	pthread_mutex_lock(&reg->mu);
	s = get_series(reg, name, help, labels, KIND_COUNTER, &is_new);
	if (is_new)
		atomic_init(&s->u.c.v, 0);
	pthread_mutex_unlock(&reg->mu);
	return &s->u.c;
}

ash_gauge *
ash_metrics_gauge(
    ash_metrics *reg, const char *name, const char *help, const char *labels)
{
	series *s;
	bool    is_new;

	pthread_mutex_lock(&reg->mu);
	s = get_series(reg, name, help, labels, KIND_GAUGE, &is_new);
	if (is_new)
		atomic_init(&s->u.g.v, 0);
	pthread_mutex_unlock(&reg->mu);
	return &s->u.g;
}

static void
histogram_init(ash_histogram *h, const double *bounds, size_t n)
{
	if (bounds == NULL || n == 0) {
		bounds = default_bounds;
		n      = sizeof(default_bounds) / sizeof(default_bounds[0]);
	}
	for (size_t i = 0; i < n; i++)
		ASH_ASSERT(isfinite(bounds[i]) &&
		    (i == 0 || bounds[i - 1] < bounds[i]));
	h->n      = n;
	h->bounds = ash_xmalloc(n * sizeof(double));
	memcpy(h->bounds, bounds, n * sizeof(double));
	h->counts = ash_xcalloc(n + 1, sizeof(*h->counts));
	for (size_t i = 0; i <= n; i++)
		atomic_init(&h->counts[i], 0);
	atomic_init(&h->sum_bits, 0); /* all-zero bits are +0.0 */
}

ash_histogram *
ash_metrics_histogram(ash_metrics *reg, const char *name, const char *help,
    const char *labels, const double *bounds, size_t n)
{
	series *s;
	bool    is_new;

	pthread_mutex_lock(&reg->mu);
	s = get_series(reg, name, help, labels, KIND_HISTOGRAM, &is_new);
	if (is_new)
		histogram_init(&s->u.h, bounds, n);
	pthread_mutex_unlock(&reg->mu);
	return &s->u.h;
}

void
ash_counter_add(ash_counter *c, uint64_t v)
{
	atomic_fetch_add_explicit(&c->v, v, memory_order_relaxed);
}

void
ash_gauge_set(ash_gauge *g, int64_t v)
{
	atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

void
ash_gauge_add(ash_gauge *g, int64_t v)
{
	/* Atomic signed arithmetic wraps (C11 7.17.7.5): no UB. */
	atomic_fetch_add_explicit(&g->v, v, memory_order_relaxed);
}

static double
bits_to_double(uint64_t bits)
{
	double d;

	memcpy(&d, &bits, sizeof(d));
	return d;
}

static uint64_t
double_to_bits(double d)
{
	uint64_t bits;

	memcpy(&bits, &d, sizeof(bits));
	return bits;
}

void
ash_histogram_observe(ash_histogram *h, double v)
{
	size_t   i = 0;
	uint64_t old =
	    atomic_load_explicit(&h->sum_bits, memory_order_relaxed);

	/* NaN fails every comparison and lands in +Inf, as in client_golang.
	 */
	while (i < h->n && !(v <= h->bounds[i]))
		i++;
	atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
	/* On failure the CAS reloads old, so the sum is recomputed from the
	 * value another thread just stored. */
	while (!atomic_compare_exchange_weak_explicit(&h->sum_bits, &old,
	    double_to_bits(bits_to_double(old) + v), memory_order_relaxed,
	    memory_order_relaxed))
		;
}

/* Escapes one byte of a label value into esc; returns its length. */
static size_t
label_esc(char ch, char esc[2])
{
	if (ch == '\\' || ch == '"' || ch == '\n') {
		esc[0] = '\\';
		esc[1] = (ch == '\n') ? 'n' : ch;
		return 2;
	}
	esc[0] = ch;
	return 1;
}

/* One k="v" pair. A pair whose key does not fit is dropped and a value
 * that does not fit is cut before an escape, so buf stays well-formed.
 * False once buf is full. */
static bool
label_put(char *buf, size_t cap, size_t *len, const char *k, const char *v)
{
	size_t klen = strlen(k);
	size_t need = (*len ? 1 : 0) + klen + 3; /* [,]k="" */
	char   esc[2];

	ASH_ASSERT(valid_name(k, false) && v != NULL);
	if (*len + need >= cap)
		return false;
	if (*len)
		buf[(*len)++] = ',';
	memcpy(buf + *len, k, klen);
	*len += klen;
	buf[(*len)++] = '=';
	buf[(*len)++] = '"';
	for (; *v; v++) {
		size_t n = label_esc(*v, esc);
		/* Keep room for the closing quote and the NUL. */
		if (*len + n + 1 >= cap)
			break;
		memcpy(buf + *len, esc, n);
		*len += n;
	}
	buf[(*len)++] = '"';
	buf[*len]     = '\0';
	return *v == '\0';
}

char *
ash_metrics_labels(char *buf, size_t cap, ...)
{
	va_list     ap;
	const char *k;
	size_t      len = 0;

	ASH_ASSERT(buf != NULL && cap > 0);
	buf[0] = '\0';
	va_start(ap, cap);
	while ((k = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);
		if (!label_put(buf, cap, &len, k, v))
			break;
	}
	va_end(ap);
	return buf;
}

/* A growing render buffer. */
typedef struct sbuf {
	char  *p;   /* NUL-terminated text */
	size_t len; /* bytes used, without the NUL */
	size_t cap; /* bytes allocated */
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) ASH_PRINTF(2, 3);

static void
sb_printf(sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int     n;

	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	ASH_ASSERT(n >= 0);
	if ((size_t) n >= b->cap - b->len) {
		b->cap = (b->len + (size_t) n + 1) * 2;
		b->p   = ash_xrealloc(b->p, b->cap);
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t) n;
}

/* Shortest text that reads back as the same double, in Go's 'g', -1 style
 * (what client_golang writes): plain digits for exponents -4..20, else
 * d.ddde+xx; and Prometheus's spellings of the special values. */
static void
fmt_double(char out[32], double v)
{
	int prec, exp, decimals;

	if (isnan(v) || isinf(v)) {
		strcpy(out, isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf"));
		return;
	}
	/* 17 significant digits always round-trip, so the loop ends. */
	for (prec = 1; prec <= 17; prec++) {
		snprintf(out, 32, "%.*e", prec - 1, v);
		if (strtod(out, NULL) == v)
			break;
	}
	exp = atoi(strchr(out, 'e') + 1);
	if (exp < -4 || exp > 20)
		return;
	decimals = prec - 1 - exp;
	snprintf(out, 32, "%.*f", decimals > 0 ? decimals : 0, v);
}

/* HELP text escapes only backslash and newline (exposition format). */
static void
render_help(sbuf *b, const family *f)
{
	if (f->help != NULL) {
		sb_printf(b, "# HELP %s ", f->name);
		for (const char *p = f->help; *p; p++) {
			if (*p == '\\')
				sb_printf(b, "\\\\");
			else if (*p == '\n')
				sb_printf(b, "\\n");
			else
				sb_printf(b, "%c", *p);
		}
		sb_printf(b, "\n");
	}
	static const char *const types[] = {"counter", "gauge", "histogram"};
	sb_printf(b, "# TYPE %s %s\n", f->name, types[f->kind]);
}

/* name+suffix, then {labels} or {labels,le="x"} or nothing. */
static void
render_name(sbuf *b, const char *name, const char *suffix, const char *labels,
    const char *le)
{
	const char *sep = (*labels && le) ? "," : "";

	sb_printf(b, "%s%s", name, suffix);
	if (le != NULL)
		sb_printf(b, "{%s%sle=\"%s\"}", labels, sep, le);
	else if (*labels)
		sb_printf(b, "{%s}", labels);
}

static void
render_histogram(sbuf *b, const char *name, const series *s)
{
	const ash_histogram *h   = &s->u.h;
	uint64_t             cum = 0;
	char                 num[32];

	for (size_t i = 0; i <= h->n; i++) {
		cum +=
		    atomic_load_explicit(&h->counts[i], memory_order_relaxed);
		if (i < h->n)
			fmt_double(num, h->bounds[i]);
		else
			strcpy(num, "+Inf");
		render_name(b, name, "_bucket", s->labels, num);
		sb_printf(b, " %" PRIu64 "\n", cum);
	}
	fmt_double(num,
	    bits_to_double(
	        atomic_load_explicit(&h->sum_bits, memory_order_relaxed)));
	render_name(b, name, "_sum", s->labels, NULL);
	sb_printf(b, " %s\n", num);
	render_name(b, name, "_count", s->labels, NULL);
	sb_printf(b, " %" PRIu64 "\n", cum);
}

static void
render_family(sbuf *b, const family *f)
{
	render_help(b, f);
	for (const series *s = f->head; s != NULL; s = s->next) {
		if (f->kind == KIND_HISTOGRAM) {
			render_histogram(b, f->name, s);
			continue;
		}
		render_name(b, f->name, "", s->labels, NULL);
		if (f->kind == KIND_COUNTER)
			sb_printf(b, " %" PRIu64 "\n",
			    atomic_load_explicit(
			        &s->u.c.v, memory_order_relaxed));
		else
			sb_printf(b, " %" PRId64 "\n",
			    atomic_load_explicit(
			        &s->u.g.v, memory_order_relaxed));
	}
}

char *
ash_metrics_render(ash_metrics *reg)
{
	sbuf b = {ash_xmalloc(1024), 0, 1024};

	b.p[0] = '\0';
	pthread_mutex_lock(&reg->mu);
	for (const family *f = reg->head; f != NULL; f = f->next)
		render_family(&b, f);
	pthread_mutex_unlock(&reg->mu);
	return b.p;
}
