/*
 * config.c - declarative settings tables loaded from the environment.
 *
 * One pass visits every key of every table. Each key resolves its text
 * (NAME, the file named by NAME_FILE, or the built-in default), parses it by
 * type and either sets its target or adds one line to the report. Nothing
 * stops at the first problem, so an operator sees every mistake at once.
 * Secret values are never copied into a report or log line: messages about
 * a secret name the variable and the rule only. Non-secret bad values are
 * echoed (truncated) because that makes typos obvious.
 *
 * Start-up only, main thread: targets are plain globals, so no locking.
 * Failures are reported, never fatal here; only main() exits (exit code 2).
 */
#include <ashoon/config.h>
#include <ashoon/log.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CFG_FILE_MAX (64 * 1024) /* mounted secrets are small */
#define CFG_ECHO_MAX 40          /* longest bad value echoed back */

/* One load in progress. */
typedef struct cfg_ctx {
	ash_cfg_getenv_fn env;  /* NULL: getenv */
	void             *arg;  /* env's argument */
	ash_cfg_report   *rep;  /* may be NULL */
	int               nbad; /* problems so far */
} cfg_ctx;

/* The text a key resolved to. */
typedef struct cfg_src {
	char *text;   /* owned; NULL = unset and no default */
	bool  is_def; /* text is the table's default (a bad one is a bug) */
} cfg_src;

#define CFG_EACH(tables, ntables, t, k)     \
	for (int t = 0; t < (ntables); t++) \
		for (const ash_cfg_key *k = (tables)[t]; k->name; k++)

static void problem(cfg_ctx *c, const char *fmt, ...) ASH_PRINTF(2, 3);

static void
problem(cfg_ctx *c, const char *fmt, ...)
{
	va_list ap;
	int     n;
	char   *line;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	ASH_ASSERT(n >= 0);
	line = ash_xmalloc((size_t) n + 1);
	va_start(ap, fmt);
	vsnprintf(line, (size_t) n + 1, fmt, ap);
	va_end(ap);
	c->nbad++;
	if (c->rep == NULL) {
		free(line);
		return;
	}
	c->rep->lines = ash_xrealloc(
	    c->rep->lines, sizeof(char *) * ((size_t) c->rep->n + 1));
	c->rep->lines[c->rep->n++] = line;
}

static const char *
env_get(const cfg_ctx *c, const char *name)
{
	return c->env ? c->env(name, c->arg) : getenv(name);
}

/* Reads a whole small file; drops one trailing newline (a CR before it
 * too, for files edited on Windows). A NUL byte cannot be carried in a C
 * string, so it is a problem rather than a silent truncation. */
static bool
read_file(cfg_ctx *c, const char *name, const char *path, char **out)
{
	FILE       *f   = fopen(path, "rb");
	const char *why = NULL;
	char       *buf;
	size_t      n;

	if (f == NULL) {
		problem(c, "%s_FILE: cannot read %s: %s", name, path,
		    strerror(errno));
		return false;
	}
	buf = ash_xmalloc(CFG_FILE_MAX + 1);
	n   = fread(buf, 1, CFG_FILE_MAX + 1, f);
	if (ferror(f))
		why = strerror(errno);
	else if (n > CFG_FILE_MAX)
		why = "larger than 64 KiB";
	else if (memchr(buf, '\0', n) != NULL)
		why = "contains a NUL byte";
	fclose(f);
	if (why != NULL) {
		problem(c, "%s_FILE: cannot read %s: %s", name, path, why);
		free(buf);
		return false;
	}
	if (n > 0 && buf[n - 1] == '\n') {
		n--;
		if (n > 0 && buf[n - 1] == '\r')
			n--;
	}
	buf[n] = '\0';
	*out   = ash_xrealloc(buf, n + 1);
	return true;
}

/* Finds the key's text. False (and a problem) when it cannot be had. */
static bool
resolve(cfg_ctx *c, const ash_cfg_key *k, cfg_src *src)
{
	char       *fname = ash_xasprintf("%s_FILE", k->name);
	const char *v     = env_get(c, k->name);
	const char *path  = env_get(c, fname);
	bool        ok    = true;

	if (v != NULL && path != NULL) {
		problem(c, "%s: both %s and %s are set; set only one", k->name,
		    k->name, fname);
		ok = false;
	} else if (path != NULL) {
		ok = read_file(c, k->name, path, &src->text);
	} else if (v != NULL) {
		src->text = ash_xstrdup(v);
	} else if (k->flags & ASH_CFG_REQUIRED) {
		problem(c, "%s: required but not set (set %s or %s)", k->name,
		    k->name, fname);
		ok = false;
	} else if (k->def != NULL) {
		src->text   = ash_xstrdup(k->def);
		src->is_def = true;
	}
	free(fname);
	return ok;
}

/* Reports a value that breaks rule; echoes it only for non-secrets. */
static void
bad_value(
    cfg_ctx *c, const ash_cfg_key *k, const cfg_src *src, const char *rule)
{
	const char *bug = src->is_def ? " (built-in default: a bug)" : "";
	size_t      len = strlen(src->text);

	if (k->flags & ASH_CFG_SECRET) {
		problem(c, "%s: %s%s", k->name, rule, bug);
		return;
	}
	problem(c, "%s: %s (got \"%.*s%s\")%s", k->name, rule, CFG_ECHO_MAX,
	    src->text, len > CFG_ECHO_MAX ? "..." : "", bug);
}

/* Strict decimal: optional sign, at least one digit, no spaces, no
 * overflow (strtoll would skip spaces and clamp). *end gets the rest. */
static bool
parse_ll(const char *s, long long *out, const char **end)
{
	bool      neg = (*s == '-');
	long long v   = 0;

	if (*s == '-' || *s == '+')
		s++;
	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		int d = *s - '0';
		if (v > (LLONG_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = neg ? -v : v;
	*end = s;
	return true;
}

static bool
parse_int(const char *s, long long *out)
{
	const char *end;
	return parse_ll(s, out, &end) && *end == '\0';
}

static bool
parse_ms(const char *s, long long *out)
{
	const char *end;
	long long   v, mul;

	if (!parse_ll(s, &v, &end))
		return false;
	if (*end == '\0' || strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "m") == 0)
		mul = 60 * 1000;
	else
		return false;
	if (v > LLONG_MAX / mul || v < -(LLONG_MAX / mul))
		return false;
	*out = v * mul;
	return true;
}

static bool
parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on"};
	static const char *const no[]  = {"0", "false", "no", "off"};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
			*out = strcasecmp(s, yes[i]) == 0;
			return true;
		}
	}
	return false;
}

static void
apply_number(cfg_ctx *c, const ash_cfg_key *k, const cfg_src *src)
{
	bool        ms   = (k->type == ASH_CFG_T_MS);
	const char *unit = ms ? "ms" : "";
	long long   v;
	char        rule[96];

	if (!(ms ? parse_ms(src->text, &v) : parse_int(src->text, &v))) {
		bad_value(c, k, src,
		    ms ? "must be a duration such as 250, 250ms, 5s or 2m"
		       : "must be an integer");
		return;
	}
	if (v < k->min || v > k->max) {
		snprintf(rule, sizeof(rule),
		    "must be between %lld%s and %lld%s", k->min, unit, k->max,
		    unit);
		bad_value(c, k, src, rule);
		return;
	}
	*(int *) k->target = (int) v;
}

/* Sets k's target from src. Takes src->text for strings. */
static void
apply(cfg_ctx *c, const ash_cfg_key *k, cfg_src *src)
{
	bool b;

	if (k->type == ASH_CFG_T_STR) {
		free(*(char **) k->target); /* a previous load's value */
		*(char **) k->target = src->text;
		src->text            = NULL;
	} else if (src->text == NULL) {
		/* Optional and no default: zero, as documented. */
		if (k->type == ASH_CFG_T_BOOL)
			*(bool *) k->target = false;
		else
			*(int *) k->target = 0;
	} else if (src->text[0] == '\0') {
		problem(c, "%s: must not be empty", k->name);
	} else if (k->type != ASH_CFG_T_BOOL) {
		apply_number(c, k, src);
	} else if (parse_bool(src->text, &b)) {
		*(bool *) k->target = b;
	} else {
		bad_value(c, k, src,
		    "must be a boolean (1/0, true/false, yes/no, on/off)");
	}
}

/* A malformed table row is a programming error, not an operator's. */
static void
check_key(const ash_cfg_key *k)
{
	ASH_ASSERT(k->target != NULL);
	ASH_ASSERT(k->type >= ASH_CFG_T_STR && k->type <= ASH_CFG_T_BOOL);
	if (k->type == ASH_CFG_T_INT || k->type == ASH_CFG_T_MS)
		ASH_ASSERT(k->min >= INT_MIN && k->max <= INT_MAX &&
		    k->min <= k->max);
}

ash_err
ash_cfg_load_from(const ash_cfg_key *const *tables, int ntables,
    ash_cfg_getenv_fn env, void *env_arg, ash_cfg_report *rep)
{
	cfg_ctx c = {env, env_arg, rep, 0};

	CFG_EACH(tables, ntables, t, k)
	{
		cfg_src src = {NULL, false};

		check_key(k);
		if (resolve(&c, k, &src))
			apply(&c, k, &src);
		free(src.text);
	}
	return c.nbad ? ASH_EINVAL : ASH_OK;
}

ash_err
ash_cfg_load(const ash_cfg_key *const *tables, int ntables)
{
	ash_cfg_report rep = {NULL, 0};
	ash_err        rv;

	rv = ash_cfg_load_from(tables, ntables, NULL, NULL, &rep);
	for (int i = 0; i < rep.n; i++)
		ash_log_error(NULL, "CFG-BAD", "%s", rep.lines[i]);
	if (rv != ASH_OK)
		ash_log_error(
		    NULL, "CFG-BAD", "%d configuration problem(s)", rep.n);
	ash_cfg_report_fini(&rep);
	return rv;
}

/* The log field for one key; string values are borrowed from the target. */
static ash_log_field
effective_field(const ash_cfg_key *k)
{
	const char *s;

	if (k->type == ASH_CFG_T_STR) {
		s = *(char *const *) k->target;
		if (k->flags & ASH_CFG_SECRET)
			return ASH_LF_STR(k->name, s ? "(set)" : "(unset)");
		return ASH_LF_STR(k->name, s ? s : "(unset)");
	}
	if (k->flags & ASH_CFG_SECRET)
		return ASH_LF_STR(k->name, "(set)");
	if (k->type == ASH_CFG_T_BOOL)
		return ASH_LF_STR(
		    k->name, *(const bool *) k->target ? "true" : "false");
	return ASH_LF_INT(k->name, *(const int *) k->target);
}

void
ash_cfg_log_effective(const ash_cfg_key *const *tables, int ntables)
{
	ash_log_field *fields;
	size_t         n = 0;

	CFG_EACH(tables, ntables, t, k)
	{
		n++;
	}
	fields = ash_xcalloc(n, sizeof(*fields));
	n      = 0;
	CFG_EACH(tables, ntables, t, k)
	{
		fields[n++] = effective_field(k);
	}
	ash_log_emitf(ASH_LOG_INFO, NULL, "CFG", fields, n,
	    "effective configuration (%zu keys)", n);
	free(fields);
}

/* Markdown table cell text: a '|' would end the cell, a newline the row. */
static void
md_cell(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '|')
			fputs("\\|", out);
		else
			fputc(*s == '\n' ? ' ' : *s, out);
	}
}

static void
md_row(FILE *out, const ash_cfg_key *k)
{
	static const char *const types[] = {
	    [ASH_CFG_T_STR]  = "string",
	    [ASH_CFG_T_INT]  = "integer",
	    [ASH_CFG_T_MS]   = "duration (ms)",
	    [ASH_CFG_T_BOOL] = "boolean",
	};

	fprintf(out, "| `%s` | %s", k->name, types[k->type]);
	if (k->type == ASH_CFG_T_INT || k->type == ASH_CFG_T_MS)
		fprintf(out, ", %lld..%lld", k->min, k->max);
	fputs(" | ", out);
	if (k->def != NULL && *k->def == '\0') {
		fputs("(empty)", out);
	} else if (k->def != NULL) {
		fputc('`', out);
		md_cell(out, k->def);
		fputc('`', out);
	} else {
		fputs("(none)", out);
	}
	fprintf(out, " | %s | %s | ",
	    (k->flags & ASH_CFG_REQUIRED) ? "yes" : "no",
	    (k->flags & ASH_CFG_SECRET) ? "yes" : "no");
	md_cell(out, k->help ? k->help : "");
	fputs(" |\n", out);
}

void
ash_cfg_render_markdown(
    const ash_cfg_key *const *tables, int ntables, FILE *out)
{
	fputs("| Variable | Type | Default | Required | Secret | Description "
	      "|\n",
	    out);
	fputs("|---|---|---|---|---|---|\n", out);
	CFG_EACH(tables, ntables, t, k)
	{
		md_row(out, k);
	}
}

void
ash_cfg_free(const ash_cfg_key *const *tables, int ntables)
{
	if (tables == NULL)
		return;
	CFG_EACH(tables, ntables, t, k)
	{
		if (k->type == ASH_CFG_T_STR) {
			free(*(char **) k->target);
			*(char **) k->target = NULL;
		}
	}
}

void
ash_cfg_report_fini(ash_cfg_report *rep)
{
	if (rep == NULL)
		return;
	for (int i = 0; i < rep->n; i++)
		free(rep->lines[i]);
	free(rep->lines);
	rep->lines = NULL;
	rep->n     = 0;
}
