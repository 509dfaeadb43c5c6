/* Unit tests: config (types, ranges, _FILE, all problems at once, secrets
 * kept out of reports and logs, Markdown rendering). Values come from a
 * fake environment passed to ash_cfg_load_from. */
#include <ash_test.h>
#include <ashoon/config.h>
#include <ashoon/log.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECRET_TEXT "TOPSECRET-7f3a9c"

/* NULL-terminated name, value pairs. */
static const char *
fake_getenv(const char *name, void *arg)
{
	const char *const *kv = arg;

	for (; kv[0] != NULL; kv += 2)
		if (strcmp(kv[0], name) == 0)
			return kv[1];
	return NULL;
}

static struct {
	char *host;
	int   port;
	int   grace_ms;
	bool  debug;
	char *key;
	char *opt;
	int   level;
} cfg;

static const ash_cfg_key svc_keys[] = {
    ASH_CFG_STR("T_HOST", cfg.host, "localhost", 0, "Address to bind"),
    ASH_CFG_INT("T_PORT", cfg.port, "8080", 1, 65535, 0, "TCP port"),
    ASH_CFG_MS("T_GRACE", cfg.grace_ms, "5s", 0, 120000, 0, "Drain time"),
    ASH_CFG_BOOL("T_DEBUG", cfg.debug, "off", 0, "Verbose | chatty"),
    ASH_CFG_STR("T_KEY", cfg.key, NULL, ASH_CFG_REQUIRED | ASH_CFG_SECRET,
        "Signing key"),
    ASH_CFG_STR("T_OPT", cfg.opt, NULL, 0, "Optional, no default"),
    ASH_CFG_END,
};
static const ash_cfg_key shared_keys[] = {
    ASH_CFG_INT("T_LEVEL", cfg.level, "3", 0, 9, 0, "Shared key"),
    ASH_CFG_END,
};
static const ash_cfg_key *const tables[] = {svc_keys, shared_keys};

/* Writes text to a new temp file; returns its malloc'd path. */
static char *
temp_file(const char *text)
{
	char *path = strdup("/tmp/ash-test-config-XXXXXX");
	int   fd   = mkstemp(path);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t) strlen(text))
		abort();
	close(fd);
	return path;
}

/* Runs fn with fd 2 sent to a temp file; returns what was written. */
static char *
capture_stderr(void (*fn)(void *), void *arg)
{
	FILE  *tmp   = tmpfile();
	int    saved = dup(STDERR_FILENO);
	char  *out   = calloc(1, 65536);
	size_t n;

	fflush(stderr);
	dup2(fileno(tmp), STDERR_FILENO);
	fn(arg);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n      = fread(out, 1, 65535, tmp);
	out[n] = '\0';
	fclose(tmp);
	return out;
}

static bool
report_has(const ash_cfg_report *rep, const char *a, const char *b)
{
	for (int i = 0; i < rep->n; i++)
		if (strstr(rep->lines[i], a) && strstr(rep->lines[i], b))
			return true;
	return false;
}

ASH_TEST(defaults_and_overrides_load)
{
	const char *env[] = {"T_KEY", "k1", "T_PORT", "9090", "T_DEBUG", "YES",
	    "T_LEVEL", "7", NULL};
	ash_cfg_report rep = {NULL, 0};

	ASH_T_OK(ash_cfg_load_from(tables, 2, fake_getenv, env, &rep));
	ASH_T_EQ_INT(rep.n, 0);
	ASH_T_EQ_STR(cfg.host, "localhost");
	ASH_T_EQ_INT(cfg.port, 9090);
	ASH_T_EQ_INT(cfg.grace_ms, 5000);
	ASH_T_TRUE(cfg.debug);
	ASH_T_EQ_STR(cfg.key, "k1");
	ASH_T_NULL(cfg.opt);
	ASH_T_EQ_INT(cfg.level, 7);
	ash_cfg_free(tables, 2);
	ASH_T_NULL(cfg.host);
	ASH_T_NULL(cfg.key);
}

ASH_TEST(empty_string_is_a_value_for_str_only)
{
	const char    *env[] = {"T_KEY", "", "T_OPT", "", "T_PORT", "", NULL};
	ash_cfg_report rep   = {NULL, 0};

	ASH_T_ERR(
	    ash_cfg_load_from(tables, 2, fake_getenv, env, &rep), ASH_EINVAL);
	ASH_T_EQ_INT(rep.n, 1);
	ASH_T_CONTAINS(rep.lines[0], "T_PORT: must not be empty");
	ASH_T_EQ_STR(cfg.key, "");
	ASH_T_EQ_STR(cfg.opt, "");
	ash_cfg_report_fini(&rep);
	ASH_T_NULL(rep.lines);
	ash_cfg_free(tables, 2);
}

static struct {
	char *need;
	int   workers;
	int   pct;
	bool  flag;
	int   good;
} bad;

static const ash_cfg_key bad_keys[] = {
    ASH_CFG_STR("B_NEED", bad.need, NULL, ASH_CFG_REQUIRED, "required"),
    ASH_CFG_INT("B_WORKERS", bad.workers, "4", 1, 64, 0, "int"),
    ASH_CFG_INT("B_PCT", bad.pct, "50", 0, 100, 0, "range"),
    ASH_CFG_BOOL("B_FLAG", bad.flag, "true", 0, "bool"),
    ASH_CFG_INT("B_GOOD", bad.good, "1", 0, 10, 0, "fine"),
    ASH_CFG_END,
};

ASH_TEST(every_problem_is_reported_together)
{
	const char *env[] = {"B_WORKERS", "four", "B_PCT", "101", "B_FLAG",
	    "maybe", "B_GOOD", "9", NULL};
	const ash_cfg_key *const t[] = {bad_keys};
	ash_cfg_report           rep = {NULL, 0};

	ASH_T_ERR(ash_cfg_load_from(t, 1, fake_getenv, env, &rep), ASH_EINVAL);
	ASH_T_EQ_INT(rep.n, 4);
	ASH_T_TRUE(report_has(&rep, "B_NEED", "required but not set"));
	ASH_T_TRUE(report_has(&rep, "B_WORKERS", "must be an integer"));
	ASH_T_TRUE(report_has(&rep, "B_WORKERS", "\"four\""));
	ASH_T_TRUE(report_has(&rep, "B_PCT", "between 0 and 100"));
	ASH_T_TRUE(report_has(&rep, "B_FLAG", "must be a boolean"));
	/* Good keys are set even when others are bad. */
	ASH_T_EQ_INT(bad.good, 9);
	ash_cfg_report_fini(&rep);
	ash_cfg_free(t, 1);
}

ASH_TEST(long_bad_value_is_truncated_in_report)
{
	const char              *env[] = {"B_NEED", "x", "B_WORKERS",
	                 "123456789012345678901234567890123456789012345678901234567890",
	                 NULL};
	const ash_cfg_key *const t[]   = {bad_keys};
	ash_cfg_report           rep   = {NULL, 0};

	ASH_T_ERR(ash_cfg_load_from(t, 1, fake_getenv, env, &rep), ASH_EINVAL);
	ASH_T_EQ_INT(rep.n, 1);
	ASH_T_CONTAINS(rep.lines[0], "must be an integer");
	ASH_T_CONTAINS(rep.lines[0], "1234567890...\"");
	ASH_T_NOT_CONTAINS(
	    rep.lines[0], "12345678901234567890123456789012345678901");
	ash_cfg_report_fini(&rep);
	ash_cfg_free(t, 1);
}

ASH_TEST(file_values_drop_one_newline)
{
	char       *key   = temp_file(SECRET_TEXT "\n");
	char       *opt   = temp_file("two\n\n");
	char       *port  = temp_file("4443\r\n");
	const char *env[] = {
	    "T_KEY_FILE", key, "T_OPT_FILE", opt, "T_PORT_FILE", port, NULL};
	ash_cfg_report rep = {NULL, 0};

	ASH_T_OK(ash_cfg_load_from(tables, 2, fake_getenv, env, &rep));
	ASH_T_EQ_STR(cfg.key, SECRET_TEXT);
	ASH_T_EQ_STR(cfg.opt, "two\n");
	ASH_T_EQ_INT(cfg.port, 4443);
	ash_cfg_free(tables, 2);
	unlink(key), unlink(opt), unlink(port);
	free(key), free(opt), free(port);
}

ASH_TEST(unreadable_file_is_a_problem)
{
	const char    *env[] = {"T_KEY_FILE", "/nonexistent/ash-secret",
	       "T_OPT_FILE", "/tmp", NULL};
	ash_cfg_report rep   = {NULL, 0};

	ASH_T_ERR(
	    ash_cfg_load_from(tables, 2, fake_getenv, env, &rep), ASH_EINVAL);
	ASH_T_EQ_INT(rep.n, 2);
	ASH_T_TRUE(report_has(&rep, "T_KEY_FILE: cannot read", "nonexist"));
	ASH_T_TRUE(report_has(&rep, "T_OPT_FILE: cannot read /tmp", "direct"));
	ASH_T_NULL(cfg.key);
	ash_cfg_report_fini(&rep);
	ash_cfg_free(tables, 2);
}

ASH_TEST(name_and_file_both_set_is_a_problem)
{
	char       *path  = temp_file("from-file");
	const char *env[] = {
	    "T_KEY", "k", "T_HOST", "h", "T_HOST_FILE", path, NULL};
	ash_cfg_report rep = {NULL, 0};

	ASH_T_ERR(
	    ash_cfg_load_from(tables, 2, fake_getenv, env, &rep), ASH_EINVAL);
	ASH_T_EQ_INT(rep.n, 1);
	ASH_T_CONTAINS(rep.lines[0], "T_HOST: both T_HOST and T_HOST_FILE");
	ASH_T_NULL(cfg.host);
	ash_cfg_report_fini(&rep);
	ash_cfg_free(tables, 2);
	unlink(path);
	free(path);
}

static int               ms_val;
static const ash_cfg_key ms_keys[] = {
    ASH_CFG_MS("M", ms_val, NULL, 0, 3600000, 0, "duration"),
    ASH_CFG_END,
};

/* Loads M=text; returns the error, *out gets the value on success. */
static ash_err
load_ms(const char *text, int *out)
{
	const char              *env[] = {"M", text, NULL};
	const ash_cfg_key *const t[]   = {ms_keys};
	ash_err                  rv;

	ms_val = -1;
	rv     = ash_cfg_load_from(t, 1, fake_getenv, env, NULL);
	*out   = ms_val;
	return rv;
}

ASH_TEST(ms_suffixes)
{
	int v;

	ASH_T_OK(load_ms("250", &v));
	ASH_T_EQ_INT(v, 250);
	ASH_T_OK(load_ms("250ms", &v));
	ASH_T_EQ_INT(v, 250);
	ASH_T_OK(load_ms("5s", &v));
	ASH_T_EQ_INT(v, 5000);
	ASH_T_OK(load_ms("2m", &v));
	ASH_T_EQ_INT(v, 120000);
	ASH_T_OK(load_ms("60m", &v));
	ASH_T_EQ_INT(v, 3600000);
	const char *bad_ms[] = {"61m", "5h", "5 s", " 5", "1.5s", "s", "-1",
	    "99999999999999999999", "5S", "", "0x10"};
	for (size_t i = 0; i < sizeof(bad_ms) / sizeof(bad_ms[0]); i++) {
		ASH_T_ERR(load_ms(bad_ms[i], &v), ASH_EINVAL);
		ASH_T_EQ_INT(v, -1);
	}
}

ASH_TEST(bool_spellings)
{
	const char              *yes[] = {"1", "true", "TRUE", "yes", "On"};
	const char              *no[]  = {"0", "false", "No", "off"};
	const ash_cfg_key *const t[]   = {bad_keys};

	for (size_t i = 0; i < 5; i++) {
		const char *env[] = {"B_NEED", "x", "B_FLAG", yes[i], NULL};
		bad.flag          = false;
		ASH_T_OK(ash_cfg_load_from(t, 1, fake_getenv, env, NULL));
		ASH_T_TRUE(bad.flag);
	}
	for (size_t i = 0; i < 4; i++) {
		const char *env[] = {"B_NEED", "x", "B_FLAG", no[i], NULL};
		bad.flag          = true;
		ASH_T_OK(ash_cfg_load_from(t, 1, fake_getenv, env, NULL));
		ASH_T_TRUE(!bad.flag);
	}
	ash_cfg_free(t, 1);
}

static int               sec_pin;
static const ash_cfg_key secret_keys[] = {
    ASH_CFG_INT("S_PIN", sec_pin, NULL, 0, 9999, ASH_CFG_SECRET, "pin"),
    ASH_CFG_END,
};

ASH_TEST(secret_value_never_in_report)
{
	const char              *env[] = {"S_PIN", SECRET_TEXT, NULL};
	const ash_cfg_key *const t[]   = {secret_keys};
	ash_cfg_report           rep   = {NULL, 0};

	ASH_T_ERR(ash_cfg_load_from(t, 1, fake_getenv, env, &rep), ASH_EINVAL);
	ASH_T_EQ_INT(rep.n, 1);
	ASH_T_CONTAINS(rep.lines[0], "S_PIN: must be an integer");
	ASH_T_NOT_CONTAINS(rep.lines[0], SECRET_TEXT);
	ASH_T_NOT_CONTAINS(rep.lines[0], "TOPSECRET");
	ash_cfg_report_fini(&rep);
}

static void
log_effective(void *arg)
{
	ash_cfg_log_effective(tables, 2);
}

ASH_TEST(secret_value_never_in_effective_log)
{
	const char *env[] = {
	    "T_KEY", SECRET_TEXT, "T_HOST", "db.internal", NULL};
	char *out;

	ash_log_init("test", ASH_LOG_INFO);
	ASH_T_OK(ash_cfg_load_from(tables, 2, fake_getenv, env, NULL));
	out = capture_stderr(log_effective, NULL);
	ash_cfg_free(tables, 2);
	ASH_T_CONTAINS(out, "\"id\":\"CFG\"");
	ASH_T_CONTAINS(out, "\"T_KEY\":\"(set)\"");
	ASH_T_CONTAINS(out, "\"T_HOST\":\"db.internal\"");
	ASH_T_CONTAINS(out, "\"T_PORT\":8080");
	ASH_T_CONTAINS(out, "\"T_DEBUG\":\"false\"");
	ASH_T_CONTAINS(out, "\"T_OPT\":\"(unset)\"");
	ASH_T_NOT_CONTAINS(out, "TOPSECRET");
	ASH_T_EQ_INT(strchr(out, '\n') - out + 1, (long) strlen(out));
	free(out);
}

static ash_err load_rv;

/* What a service does: load (logging problems), then the effective line. */
static void
load_real_env(void *arg)
{
	load_rv = ash_cfg_load(arg, 1);
	if (load_rv == ASH_OK)
		ash_cfg_log_effective(arg, 1);
}

ASH_TEST(secret_value_never_in_cfg_bad_log)
{
	const ash_cfg_key *const t[] = {secret_keys};
	char                    *out;

	ash_log_init("test", ASH_LOG_INFO);
	setenv("S_PIN", SECRET_TEXT, 1);
	out = capture_stderr(load_real_env, (void *) t);
	unsetenv("S_PIN");
	ASH_T_ERR(load_rv, ASH_EINVAL);
	ASH_T_CONTAINS(out, "\"id\":\"CFG-BAD\"");
	ASH_T_CONTAINS(out, "S_PIN: must be an integer");
	ASH_T_NOT_CONTAINS(out, "TOPSECRET");
	free(out);

	setenv("S_PIN", "1234", 1);
	out = capture_stderr(load_real_env, (void *) t);
	unsetenv("S_PIN");
	ASH_T_OK(load_rv);
	ASH_T_EQ_INT(sec_pin, 1234);
	ASH_T_CONTAINS(out, "\"S_PIN\":\"(set)\"");
	ASH_T_NOT_CONTAINS(out, "1234");
	ASH_T_NOT_CONTAINS(out, "CFG-BAD");
	/* ash_cfg_load itself logs nothing on success: one line only. */
	ASH_T_EQ_INT(strchr(out, '\n') - out + 1, (long) strlen(out));
	free(out);
}

ASH_TEST(markdown_lists_every_key)
{
	char  *md  = NULL;
	size_t len = 0;
	FILE  *f   = open_memstream(&md, &len);

	ash_cfg_render_markdown(tables, 2, f);
	fclose(f);
	ASH_T_CONTAINS(md,
	    "| Variable | Type | Default | Required | Secret "
	    "| Description |\n|---|");
	for (int t = 0; t < 2; t++)
		for (const ash_cfg_key *k = tables[t]; k->name; k++)
			ASH_T_CONTAINS(md, k->name);
	ASH_T_CONTAINS(md,
	    "| `T_PORT` | integer, 1..65535 | `8080` | no | no "
	    "| TCP port |\n");
	ASH_T_CONTAINS(md,
	    "| `T_KEY` | string | (none) | yes | yes | "
	    "Signing key |\n");
	ASH_T_CONTAINS(md, "Verbose \\| chatty");
	/* Header, separator and one row per key. */
	int rows = 0;
	for (const char *p = md; *p; p++)
		rows += (*p == '\n');
	ASH_T_EQ_INT(rows, 2 + 7);
	free(md);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(defaults_and_overrides_load),
    ASH_TEST_ENTRY(empty_string_is_a_value_for_str_only),
    ASH_TEST_ENTRY(every_problem_is_reported_together),
    ASH_TEST_ENTRY(long_bad_value_is_truncated_in_report),
    ASH_TEST_ENTRY(file_values_drop_one_newline),
    ASH_TEST_ENTRY(unreadable_file_is_a_problem),
    ASH_TEST_ENTRY(name_and_file_both_set_is_a_problem),
    ASH_TEST_ENTRY(ms_suffixes), ASH_TEST_ENTRY(bool_spellings),
    ASH_TEST_ENTRY(secret_value_never_in_report),
    ASH_TEST_ENTRY(secret_value_never_in_effective_log),
    ASH_TEST_ENTRY(secret_value_never_in_cfg_bad_log),
    ASH_TEST_ENTRY(markdown_lists_every_key))
