/*
 * err.c - error texts and allocation that aborts on failure.
 */
#include <ashoon/err.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *text;
	const char *code;
	int         http;
} err_rows[] = {
#define ERR_ROW(name, text, code, http) [name] = {text, code, http},
    ASH_ERR_TABLE(ERR_ROW)
#undef ERR_ROW
};

static ash_err
err_clamp(ash_err e)
{
	return ((unsigned) e < ASH_ERR_COUNT) ? e : ASH_EINTERNAL;
}

const char *
ash_strerror(ash_err e)
{
	return err_rows[err_clamp(e)].text;
}

const char *
ash_err_code(ash_err e)
{
	return err_rows[err_clamp(e)].code;
}

int
ash_err_http_status(ash_err e)
{
	return err_rows[err_clamp(e)].http;
}

ash_err
ash_err_from_code(const char *code)
{
	if (code == NULL)
		return ASH_EINTERNAL;
	/* Start at 1: "ok" is never an error, and ENOMEM shares "internal". */
	for (int e = ASH_EINVAL; e < ASH_ERR_COUNT; e++)
		if (strcmp(err_rows[e].code, code) == 0)
			return (ash_err) e;
	return ASH_EINTERNAL;
}

void
ash__assert_fail(const char *cond, const char *file, int line)
{
	fprintf(stderr, "assertion failed: %s (%s:%d)\n", cond, file, line);
	abort();
}

static void *
oom(size_t n)
{
	fprintf(stderr, "out of memory allocating %zu bytes\n", n);
	abort();
}

void *
ash_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	return p ? p : oom(n);
}

void *
ash_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	return p ? p : oom(n * size);
}

void *
ash_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	return q ? q : oom(n);
}

char *
ash_xstrdup(const char *s)
{
	return ash_xstrndup(s, strlen(s));
}

char *
ash_xstrndup(const char *s, size_t n)
{
	char *p = ash_xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
ash_xasprintf(const char *fmt, ...)
{
	va_list ap;
	int     n;
	char   *p;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	ASH_ASSERT(n >= 0);
	p = ash_xmalloc((size_t) n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t) n + 1, fmt, ap);
	va_end(ap);
	return p;
}
