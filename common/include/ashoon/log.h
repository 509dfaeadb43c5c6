/*
 * ashoon/log.h - one JSON object per line on stderr.
 *
 *   {"ts":"2026-11-29T23:56:05.123Z","lvl":"warn","svc":"gateway",
 *    "req":"r-...","tenant":"...","id":"DB-SLOW","msg":"...", <fields>}
 *
 * The msgid is a short stable tag (READY, DB-SLOW, BUS-TIMEOUT) that alerts
 * and tests grep for. Never log a message body, a token, a secret or personal
 * data: log ids instead. Each line is written with one write(2), so lines
 * from different threads never interleave. Any thread may log; nothing logs
 * from a signal handler.
 */
#ifndef ASHOON_LOG_H
#define ASHOON_LOG_H

#include <ashoon/err.h>

#include <stdbool.h>

enum ash_log_level {
	ASH_LOG_ERROR,
	ASH_LOG_WARN,
	ASH_LOG_INFO,
	ASH_LOG_DEBUG,
};

/* Who a line is about. Borrowed for the call; either member may be NULL. */
typedef struct ash_log_ctx {
	const char *req;    /* request id */
	const char *tenant; /* tenant uuid */
} ash_log_ctx;

/* An extra top-level field: a string when str is set, else the number. */
typedef struct ash_log_field {
	const char *key;
	const char *str;
	long long   num;
} ash_log_field;
#define ASH_LF_STR(k, v) ((ash_log_field) {(k), (v), 0})
#define ASH_LF_INT(k, v) ((ash_log_field) {(k), NULL, (long long) (v)})

/* Call once at start-up, before other threads exist. service is copied. */
void ash_log_init(const char *service, enum ash_log_level level);

/* Main thread, start-up only (the level is read without a lock). */
void ash_log_set_level(enum ash_log_level level);

/* "error" "warn" "info" "debug" -> level. ASH_EINVAL for anything else. */
ash_err ash_log_level_parse(
    const char *s, enum ash_log_level *out) ASH_MUSTCHECK;

/* True when lines at lvl are written; gate expensive formatting with it. */
bool ash_log_enabled(enum ash_log_level lvl);

/* Any thread. ctx and fields may be NULL/0. */
void ash_log_emit(enum ash_log_level lvl, const ash_log_ctx *ctx,
    const char *msgid, const char *fmt, ...) ASH_PRINTF(4, 5);
void ash_log_emitf(enum ash_log_level lvl, const ash_log_ctx *ctx,
    const char *msgid, const ash_log_field *fields, size_t nfields,
    const char *fmt, ...) ASH_PRINTF(6, 7);

#define ash_log_error(ctx, id, ...) \
	ash_log_emit(ASH_LOG_ERROR, (ctx), (id), __VA_ARGS__)
#define ash_log_warn(ctx, id, ...) \
	ash_log_emit(ASH_LOG_WARN, (ctx), (id), __VA_ARGS__)
#define ash_log_info(ctx, id, ...) \
	ash_log_emit(ASH_LOG_INFO, (ctx), (id), __VA_ARGS__)
#define ash_log_debug(ctx, id, ...)                                   \
	do {                                                          \
		if (ash_log_enabled(ASH_LOG_DEBUG))                   \
			ash_log_emit(                                 \
			    ASH_LOG_DEBUG, (ctx), (id), __VA_ARGS__); \
	} while (0)

/* Appends s as a JSON string literal (quotes included) to buf of size cap
 * starting at *len; truncates safely. Shared with the json module's users
 * that build small documents by hand. */
void ash_log_json_str(char *buf, size_t cap, size_t *len, const char *s);

#endif
