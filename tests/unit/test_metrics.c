/* Unit tests: metrics (exact exposition text, families, label escaping,
 * lock-free updates from several threads, misuse asserts). */
#include <ash_test.h>
#include <ashoon/metrics.h>

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

ASH_TEST(render_exact_text)
{
	ash_metrics *reg      = ash_metrics_new();
	const double bounds[] = {0.25, 1};
	ash_counter *api      = ash_metrics_counter(
	         reg, "http_requests_total", "Requests served.", "route=\"api\"");
	ash_gauge *depth = ash_metrics_gauge(
	    reg, "queue_depth", "Jobs waiting.\nback\\slash", NULL);
	ash_counter *web = ash_metrics_counter(
	    reg, "http_requests_total", "ignored", "route=\"web\"");
	ash_histogram *h = ash_metrics_histogram(
	    reg, "db_seconds", "Query time.", "op=\"x\"", bounds, 2);
	char *text;

	ash_counter_add(api, 3);
	ash_counter_add(web, 1);
	ash_gauge_set(depth, 7);
	ash_gauge_add(depth, -9);
	ash_histogram_observe(h, 0.25); /* le is inclusive */
	ash_histogram_observe(h, 0.5);
	ash_histogram_observe(h, 2);
	text = ash_metrics_render(reg);
	ASH_T_EQ_STR(text,
	    "# HELP http_requests_total Requests served.\n"
	    "# TYPE http_requests_total counter\n"
	    "http_requests_total{route=\"api\"} 3\n"
	    "http_requests_total{route=\"web\"} 1\n"
	    "# HELP queue_depth Jobs waiting.\\nback\\\\slash\n"
	    "# TYPE queue_depth gauge\n"
	    "queue_depth -2\n"
	    "# HELP db_seconds Query time.\n"
	    "# TYPE db_seconds histogram\n"
	    "db_seconds_bucket{op=\"x\",le=\"0.25\"} 1\n"
	    "db_seconds_bucket{op=\"x\",le=\"1\"} 2\n"
	    "db_seconds_bucket{op=\"x\",le=\"+Inf\"} 3\n"
	    "db_seconds_sum{op=\"x\"} 2.75\n"
	    "db_seconds_count{op=\"x\"} 3\n");
	free(text);
	ash_metrics_free(reg);
}

ASH_TEST(default_buckets_without_labels)
{
	ash_metrics   *reg = ash_metrics_new();
	ash_histogram *h =
	    ash_metrics_histogram(reg, "lat", NULL, "", NULL, 0);
	char *text;

	ash_histogram_observe(h, 0.003);
	ash_histogram_observe(h, 60);
	text = ash_metrics_render(reg);
	ASH_T_EQ_STR(text,
	    "# TYPE lat histogram\n"
	    "lat_bucket{le=\"0.001\"} 0\n"
	    "lat_bucket{le=\"0.0025\"} 0\n"
	    "lat_bucket{le=\"0.005\"} 1\n"
	    "lat_bucket{le=\"0.01\"} 1\n"
	    "lat_bucket{le=\"0.025\"} 1\n"
	    "lat_bucket{le=\"0.05\"} 1\n"
	    "lat_bucket{le=\"0.1\"} 1\n"
	    "lat_bucket{le=\"0.25\"} 1\n"
	    "lat_bucket{le=\"0.5\"} 1\n"
	    "lat_bucket{le=\"1\"} 1\n"
	    "lat_bucket{le=\"2.5\"} 1\n"
	    "lat_bucket{le=\"5\"} 1\n"
	    "lat_bucket{le=\"10\"} 1\n"
	    "lat_bucket{le=\"+Inf\"} 2\n"
	    "lat_sum 60.003\n"
	    "lat_count 2\n");
	free(text);
	ash_metrics_free(reg);
}

ASH_TEST(floats_render_shortest_exact)
{
	ash_metrics *reg      = ash_metrics_new();
	const double bounds[] = {1e-05, 0.1 + 0.2, 123456.5, 1e21};
	char        *text;

	ash_histogram_observe(
	    ash_metrics_histogram(reg, "f", "h", NULL, bounds, 4), -0.125);
	text = ash_metrics_render(reg);
	ASH_T_CONTAINS(text, "f_bucket{le=\"1e-05\"} 1\n");
	ASH_T_CONTAINS(text, "f_bucket{le=\"0.30000000000000004\"} 1\n");
	ASH_T_CONTAINS(text, "f_bucket{le=\"123456.5\"} 1\n");
	ASH_T_CONTAINS(text, "f_bucket{le=\"1e+21\"} 1\n");
	ASH_T_CONTAINS(text, "f_sum -0.125\n");
	free(text);
	ash_metrics_free(reg);
}

ASH_TEST(same_name_and_labels_same_pointer)
{
	ash_metrics *reg = ash_metrics_new();
	ash_counter *a   = ash_metrics_counter(reg, "c_total", "h", "k=\"1\"");
	ash_counter *b   = ash_metrics_counter(reg, "c_total", "h", "k=\"1\"");
	ash_counter *c   = ash_metrics_counter(reg, "c_total", "h", "k=\"2\"");
	ash_counter *d   = ash_metrics_counter(reg, "c_total", "h", NULL);
	ash_gauge   *g1  = ash_metrics_gauge(reg, "g", "h", NULL);
	ash_gauge   *g2  = ash_metrics_gauge(reg, "g", "h", "");

	ASH_T_TRUE(a == b);
	ASH_T_TRUE(a != c);
	ASH_T_TRUE(d != a && d != c);
	ASH_T_TRUE(g1 == g2); /* NULL and "" are both "no labels" */
	ash_counter_add(a, 2);
	ash_counter_add(b, 3);
	char *text = ash_metrics_render(reg);
	ASH_T_CONTAINS(text, "c_total{k=\"1\"} 5\n");
	ASH_T_CONTAINS(text, "c_total{k=\"2\"} 0\n");
	ASH_T_CONTAINS(text, "c_total 0\n");
	free(text);
	ash_metrics_free(reg);
	ash_metrics_free(NULL);
}

ASH_TEST(label_escaping)
{
	char buf[128];

	ASH_T_EQ_STR(ash_metrics_labels(buf, sizeof(buf), "path", "a\"b\\c\nd",
	                 "code", "200", NULL),
	    "path=\"a\\\"b\\\\c\\nd\",code=\"200\"");
	ASH_T_EQ_STR(ash_metrics_labels(buf, sizeof(buf), NULL), "");
	/* Too small: the value is cut but the quote is closed... */
	ASH_T_EQ_STR(ash_metrics_labels(buf, 12, "k", "abcdefghijkl", NULL),
	    "k=\"abcdefg\"");
	/* ...an escape is never split... */
	ASH_T_EQ_STR(
	    ash_metrics_labels(buf, 8, "k", "ab\"", NULL), "k=\"ab\"");
	/* ...and a pair that cannot fit at all is left out. */
	ASH_T_EQ_STR(
	    ash_metrics_labels(buf, 10, "a", "1", "long_key", "2", NULL),
	    "a=\"1\"");
}

#define THREADS 4
#define ROUNDS  100000

typedef struct shared {
	ash_metrics *reg;
	ash_counter *c;
	ash_gauge   *g;
} shared;

static void *
hammer(void *arg)
{
	shared        *s = arg;
	ash_histogram *h =
	    ash_metrics_histogram(s->reg, "work_seconds", "h", NULL, NULL, 0);

	for (int i = 0; i < ROUNDS; i++) {
		ash_counter_add(s->c, 1);
		ash_gauge_add(s->g, (i & 1) ? -1 : 1);
		ash_histogram_observe(h, 0.5);
	}
	return NULL;
}

ASH_TEST(concurrent_updates_sum_exactly)
{
	shared    s;
	pthread_t t[THREADS];
	char     *text;

	s.reg = ash_metrics_new();
	s.c   = ash_metrics_counter(s.reg, "ops_total", "h", NULL);
	s.g   = ash_metrics_gauge(s.reg, "inflight", "h", NULL);
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, hammer, &s);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	text = ash_metrics_render(s.reg);
	ASH_T_CONTAINS(text, "\nops_total 400000\n");
	ASH_T_CONTAINS(text, "\ninflight 0\n");
	ASH_T_CONTAINS(text, "\nwork_seconds_bucket{le=\"0.25\"} 0\n");
	ASH_T_CONTAINS(text, "\nwork_seconds_bucket{le=\"0.5\"} 400000\n");
	ASH_T_CONTAINS(text, "\nwork_seconds_sum 200000\n");
	ASH_T_CONTAINS(text, "\nwork_seconds_count 400000\n");
	free(text);
	ash_metrics_free(s.reg);
}

/* Runs fn in a child; true if the child died by SIGABRT (ASH_ASSERT). */
static bool
aborts(void (*fn)(void))
{
	pid_t pid = fork();
	int   st;

	if (pid == 0) {
		/* Keep the expected assertion text out of the test output. */
		if (freopen("/dev/null", "w", stderr) == NULL)
			_exit(2);
		fn();
		_exit(0);
	}
	waitpid(pid, &st, 0);
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void
bad_name(void)
{
	ash_metrics_counter(ash_metrics_new(), "1bad name", "h", NULL);
}

static void
kind_mismatch(void)
{
	ash_metrics *reg = ash_metrics_new();

	ash_metrics_counter(reg, "x_total", "h", NULL);
	ash_metrics_gauge(reg, "x_total", "h", "a=\"b\"");
}

static void
good_name(void)
{
	ash_metrics *reg = ash_metrics_new();

	ash_metrics_counter(reg, "ns:sub_total", "h", NULL);
	ash_metrics_free(reg);
}

ASH_TEST(misuse_asserts)
{
	ASH_T_TRUE(aborts(bad_name));
	ASH_T_TRUE(aborts(kind_mismatch));
	ASH_T_TRUE(!aborts(good_name));
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(render_exact_text),
    ASH_TEST_ENTRY(default_buckets_without_labels),
    ASH_TEST_ENTRY(floats_render_shortest_exact),
    ASH_TEST_ENTRY(same_name_and_labels_same_pointer),
    ASH_TEST_ENTRY(label_escaping),
    ASH_TEST_ENTRY(concurrent_updates_sum_exactly),
    ASH_TEST_ENTRY(misuse_asserts))
