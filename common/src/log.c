/*
 * log.c - JSON lines on stderr.
 *
 * Each line is formatted into a stack buffer and written with one write(2)
 * so concurrent threads cannot interleave. Lines longer than the buffer are
 * truncated (the message is cut, the JSON stays valid).
 */
#include <ashoon/log.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static char               log_service[48] = "ashoon";
static enum ash_log_level log_level       = ASH_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void
ash_log_init(const char *service, enum ash_log_level level)
{
	snprintf(log_service, sizeof(log_service), "%s", service);
	log_level = level;
}

void
ash_log_set_level(enum ash_log_level level)
{
	log_level = level;
}

ash_err
ash_log_level_parse(const char *s, enum ash_log_level *out)
{
	for (int i = 0; i <= ASH_LOG_DEBUG; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum ash_log_level) i;
			return ASH_OK;
		}
	}
	return ASH_EINVAL;
}

bool
ash_log_enabled(enum ash_log_level lvl)
{
	return lvl <= log_level;
}

static void
put(char *buf, size_t cap, size_t *len, const char *s)
{
	size_t n = strlen(s);
	if (*len + n >= cap)
		n = cap - *len - 1;
	memcpy(buf + *len, s, n);
	*len += n;
	buf[*len] = '\0';
}

void
ash_log_json_str(char *buf, size_t cap, size_t *len, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	char              esc[8];

	/* Reserve room for the closing quote. */
	put(buf, cap - 1, len, "\"");
	for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\', esc[1] = (char) *p, esc[2] = '\0';
		} else if (*p == '\n') {
			strcpy(esc, "\\n");
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u00%c%c", hex[*p >> 4],
			    hex[*p & 15]);
		} else {
			esc[0] = (char) *p, esc[1] = '\0';
		}
		if (*len + strlen(esc) + 2 > cap)
			break;
		put(buf, cap - 1, len, esc);
	}
	put(buf, cap, len, "\"");
}

static void
put_ts(char *buf, size_t cap, size_t *len)
{
	struct timespec ts;
	struct tm       tm;
	char            t[40], ms[8];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	/* strftime keeps the compiler's width analysis happy for any year. */
	strftime(t, sizeof(t) - 8, "\"%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ms, sizeof(ms), ".%03dZ\"", (int) (ts.tv_nsec / 1000000));
	strcat(t, ms);
	put(buf, cap, len, t);
}

static void
put_kv(char *buf, size_t cap, size_t *len, const char *k, const char *v)
{
	put(buf, cap, len, ",");
	ash_log_json_str(buf, cap, len, k);
	put(buf, cap, len, ":");
	ash_log_json_str(buf, cap, len, v);
}

static void log_vemit(enum ash_log_level lvl, const ash_log_ctx *ctx,
    const char *msgid, const ash_log_field *fields, size_t nfields,
    const char *fmt, va_list ap) ASH_PRINTF(6, 0);

static void
log_vemit(enum ash_log_level lvl, const ash_log_ctx *ctx, const char *msgid,
    const ash_log_field *fields, size_t nfields, const char *fmt, va_list ap)
{
	char   line[LOG_LINE_MAX];
	char   msg[LOG_LINE_MAX / 2];
	char   num[32];
	size_t len = 0;

	if (!ash_log_enabled(lvl))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* Keep 2 bytes for "}\n" however long the fields are. */
	const size_t cap = sizeof(line) - 2;
	put(line, cap, &len, "{\"ts\":");
	put_ts(line, cap, &len);
	put_kv(line, cap, &len, "lvl", level_names[lvl]);
	put_kv(line, cap, &len, "svc", log_service);
	if (ctx && ctx->req)
		put_kv(line, cap, &len, "req", ctx->req);
	if (ctx && ctx->tenant)
		put_kv(line, cap, &len, "tenant", ctx->tenant);
	put_kv(line, cap, &len, "id", msgid ? msgid : "-");
	put_kv(line, cap, &len, "msg", msg);
	for (size_t i = 0; i < nfields; i++) {
		if (fields[i].str) {
			put_kv(line, cap, &len, fields[i].key, fields[i].str);
			continue;
		}
		snprintf(num, sizeof(num), ":%lld", fields[i].num);
		put(line, cap, &len, ",");
		ash_log_json_str(line, cap, &len, fields[i].key);
		put(line, cap, &len, num);
	}
	line[len++] = '}';
	line[len++] = '\n';
	/* One write per line; a short write to stderr is not worth retrying.
	 */
	(void) !write(STDERR_FILENO, line, len);
}

void
ash_log_emit(enum ash_log_level lvl, const ash_log_ctx *ctx, const char *msgid,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(lvl, ctx, msgid, NULL, 0, fmt, ap);
	va_end(ap);
}

void
ash_log_emitf(enum ash_log_level lvl, const ash_log_ctx *ctx,
    const char *msgid, const ash_log_field *fields, size_t nfields,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(lvl, ctx, msgid, fields, nfields, fmt, ap);
	va_end(ap);
}
