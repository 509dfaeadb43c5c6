/* Unit tests: log (one valid JSON object per line, escaping, levels). */
#include <ash_test.h>
#include <ashoon/json.h>
#include <ashoon/log.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs fn with stderr redirected to a temp file; returns what it wrote. */
static char *
capture(void (*fn)(void))
{
	char  path[] = "/tmp/ash-test-log-XXXXXX";
	int   fd = mkstemp(path), saved = dup(2);
	FILE *f;
	long  n;
	char *out;

	dup2(fd, 2);
	fn();
	dup2(saved, 2);
	close(saved);
	f = fopen(path, "r");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	out = calloc(1, (size_t) n + 1);
	n   = (long) fread(out, 1, (size_t) n, f);
	fclose(f);
	close(fd);
	unlink(path);
	return out;
}

static void
emit_tricky(void)
{
	ash_log_ctx   ctx = {"r-1", "6f1c8d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f"};
	ash_log_field f[] = {
	    ASH_LF_STR("route", "/a\"b"), ASH_LF_INT("ms", -3)};

	ash_log_init("gateway", ASH_LOG_INFO);
	ash_log_emitf(ASH_LOG_WARN, &ctx, "DB-SLOW", f, 2,
	    "quote \" backslash \\ newline \n tab \t bell \a done");
}

ASH_TEST(line_is_one_valid_json_object_with_context_and_fields)
{
	char  *out = capture(emit_tricky);
	cJSON *doc;

	ASH_T_EQ_INT(strchr(out, '\n') - out + 1, (long) strlen(out));
	ASH_T_OK(ash_json_parse(out, strlen(out), &doc));
	ASH_T_EQ_STR(ash_json_str(doc, "lvl"), "warn");
	ASH_T_EQ_STR(ash_json_str(doc, "svc"), "gateway");
	ASH_T_EQ_STR(ash_json_str(doc, "req"), "r-1");
	ASH_T_EQ_STR(ash_json_str(doc, "tenant"),
	    "6f1c8d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f");
	ASH_T_EQ_STR(ash_json_str(doc, "id"), "DB-SLOW");
	ASH_T_EQ_STR(ash_json_str(doc, "msg"),
	    "quote \" backslash \\ newline \n tab \t bell \a done");
	ASH_T_EQ_STR(ash_json_str(doc, "route"), "/a\"b");
	int ms = 0;
	ASH_T_OK(ash_json_get_int(doc, "ms", &ms));
	ASH_T_EQ_INT(ms, -3);
	ASH_T_EQ_INT(strlen(ash_json_str(doc, "ts")), 24); /* ms, UTC */
	cJSON_Delete(doc);
	free(out);
}

static void
emit_levels(void)
{
	ash_log_init("x", ASH_LOG_WARN);
	ash_log_debug(NULL, "D", "debug");
	ash_log_info(NULL, "I", "info");
	ash_log_warn(NULL, "W", "warn");
	ash_log_error(NULL, "E", "error");
	ash_log_set_level(ASH_LOG_INFO);
}

ASH_TEST(levels_below_the_threshold_are_not_written)
{
	char              *out = capture(emit_levels);
	enum ash_log_level lvl;

	ASH_T_NOT_CONTAINS(out, "\"id\":\"D\"");
	ASH_T_NOT_CONTAINS(out, "\"id\":\"I\"");
	ASH_T_CONTAINS(out, "\"id\":\"W\"");
	ASH_T_CONTAINS(out, "\"id\":\"E\"");
	ASH_T_OK(ash_log_level_parse("debug", &lvl));
	ASH_T_EQ_INT(lvl, ASH_LOG_DEBUG);
	ASH_T_ERR(ash_log_level_parse("verbose", &lvl), ASH_EINVAL);
	free(out);
}

static void
emit_huge(void)
{
	char *big = malloc(20000);

	memset(big, '"', 19999); /* every byte needs escaping */
	big[19999] = '\0';
	ash_log_init("x", ASH_LOG_INFO);
	ash_log_info(NULL, "BIG", "%s", big);
	free(big);
}

ASH_TEST(overlong_message_is_cut_but_stays_valid_json)
{
	char  *out = capture(emit_huge);
	cJSON *doc;

	ASH_T_TRUE(strlen(out) <= 4096);
	ASH_T_OK(ash_json_parse(out, strlen(out), &doc));
	ASH_T_EQ_STR(ash_json_str(doc, "id"), "BIG");
	cJSON_Delete(doc);
	free(out);
}

static void *
spam(void *arg)
{
	for (int i = 0; i < 500; i++)
		ash_log_info(NULL, "SPAM", "thread %ld line %d %s", (long) arg,
		    i,
		    "padding padding padding padding padding padding padding");
	return NULL;
}

static void
emit_threads(void)
{
	pthread_t t[4];

	ash_log_init("x", ASH_LOG_INFO);
	for (long i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, spam, (void *) i);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
}

ASH_TEST(lines_from_threads_never_interleave)
{
	char *out = capture(emit_threads), *save = NULL;
	int   lines = 0;

	for (char *l = strtok_r(out, "\n", &save); l;
	     l       = strtok_r(NULL, "\n", &save)) {
		cJSON *doc;
		ASH_T_OK(ash_json_parse(l, strlen(l), &doc));
		cJSON_Delete(doc);
		lines++;
	}
	ASH_T_EQ_INT(lines, 2000);
	free(out);
}

ASH_TEST_MAIN(
    ASH_TEST_ENTRY(line_is_one_valid_json_object_with_context_and_fields),
    ASH_TEST_ENTRY(levels_below_the_threshold_are_not_written),
    ASH_TEST_ENTRY(overlong_message_is_cut_but_stays_valid_json),
    ASH_TEST_ENTRY(lines_from_threads_never_interleave))
