/*
 * ashoon/err.h - the one error enum, failure primitives and allocation.
 *
 * Every fallible libashoon function returns ash_err and writes its result
 * through an out-parameter only on ASH_OK. Each code has a log text, a wire
 * code (proto error.code) and an HTTP status that only the gateway uses.
 * Out-of-memory is not an error code callers handle: ash_x*alloc abort.
 */
#ifndef ASHOON_ERR_H
#define ASHOON_ERR_H

#include <stddef.h>

#define ASH_MUSTCHECK    __attribute__((warn_unused_result))
#define ASH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define ASH_NORETURN     __attribute__((noreturn))

/* X(name, log text, wire code, http status); order is the enum order. */
#define ASH_ERR_TABLE(X)                                                  \
	X(ASH_OK, "ok", "ok", 200)                                        \
	X(ASH_ENOMEM, "out of memory", "internal", 500)                   \
	X(ASH_EINVAL, "invalid argument", "invalid_argument", 400)        \
	X(ASH_EBADJSON, "malformed JSON", "malformed_json", 400)          \
	X(ASH_ENOTFOUND, "not found", "not_found", 404)                   \
	X(ASH_EMETHOD, "method not allowed", "method_not_allowed", 405)   \
	X(ASH_ECONFLICT, "conflict", "conflict", 409)                     \
	X(ASH_EUNAUTH, "unauthenticated", "unauthenticated", 401)         \
	X(ASH_EFORBIDDEN, "forbidden", "forbidden", 403)                  \
	X(ASH_ETOOBIG, "too large", "payload_too_large", 413)             \
	X(ASH_ERATELIMIT, "rate limited", "rate_limited", 429)            \
	X(ASH_ECRYPTO, "integrity check failed", "integrity_failed", 400) \
	X(ASH_ETIMEDOUT, "timed out", "deadline_exceeded", 504)           \
	X(ASH_EUNAVAIL, "unavailable", "unavailable", 503)                \
	X(ASH_ECLOSED, "shutting down", "shutting_down", 503)             \
	X(ASH_ECANCELED, "canceled", "canceled", 503)                     \
	X(ASH_EDB, "database error", "database_error", 500)               \
	X(ASH_EUPSTREAM, "upstream error", "upstream_error", 502)         \
	X(ASH_EINTERNAL, "internal error", "internal", 500)

typedef enum ash_err {
#define ASH__ERR_ENUM(name, text, code, http) name,
	ASH_ERR_TABLE(ASH__ERR_ENUM)
#undef ASH__ERR_ENUM
	    ASH_ERR_COUNT
} ash_err;

/* Any thread. Static strings; an out-of-range value gives the EINTERNAL row.
 */
const char *ash_strerror(ash_err e);
const char *ash_err_code(ash_err e);
int         ash_err_http_status(ash_err e);

/* Any thread. The enum value for a wire code; unknown codes give
 * ASH_EINTERNAL (a peer speaking a newer protocol still maps somewhere). */
ash_err ash_err_from_code(const char *code);

/* Aborts with file:line when cond is false; on in every build. */
#define ASH_ASSERT(cond) \
	((cond) ? (void) 0 : ash__assert_fail(#cond, __FILE__, __LINE__))
ASH_NORETURN void ash__assert_fail(
    const char *cond, const char *file, int line);

/* Allocation that aborts on failure (Redis zmalloc): no untested NULL paths.
 * Check sizes taken from untrusted input against limits before calling. */
void *ash_xmalloc(size_t n);
void *ash_xcalloc(size_t n, size_t size);
void *ash_xrealloc(void *p, size_t n);
char *ash_xstrdup(const char *s);
char *ash_xstrndup(const char *s, size_t n);
char *ash_xasprintf(const char *fmt, ...) ASH_PRINTF(1, 2);

#endif
