/*
 * ash_test.h - the unit test harness (one header, in the spirit of NNG's
 * nuts and acutest).
 *
 *   ASH_TEST(hmac_rfc4231) { ASH_T_EQ_INT(f(1), 2); }
 *   ASH_TEST_MAIN(ASH_TEST_ENTRY(hmac_rfc4231), ...)
 *
 * `test_x` runs every case; `test_x NAME` runs one (ctest registers each case
 * on its own, named from the ASH_TEST lines in the source). A failed assert
 * prints both values and ends that case; the exit code is the number of
 * failed cases.
 */
#ifndef ASH_TEST_H
#define ASH_TEST_H

#include <inttypes.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ash_test_case {
	const char *name;
	void (*fn)(void);
} ash_test_case;

/* One of each per test program (defined by ASH_TEST_MAIN): helpers in other
 * files (the integration harness) fail through the same jump buffer. */
extern jmp_buf ash_t_jmp;
extern int     ash_t_checks;

#define ASH_TEST(name) static void name(void)
#define ASH_TEST_ENTRY(name) \
	{                    \
#name, name  \
	}

static inline void
ash_t_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "  FAIL %s:%d: %s\n", file, line, what);
	longjmp(ash_t_jmp, 1);
}

#define ASH_T_FAILF(...)                                               \
	do {                                                           \
		char ash_t_buf_[4096];                                 \
		snprintf(ash_t_buf_, sizeof(ash_t_buf_), __VA_ARGS__); \
		ash_t_fail(__FILE__, __LINE__, ash_t_buf_);            \
	} while (0)

#define ASH_T_TRUE(c)                                         \
	do {                                                  \
		ash_t_checks++;                               \
		if (!(c))                                     \
			ASH_T_FAILF("expected true: %s", #c); \
	} while (0)

#define ASH_T_EQ_INT(a, b)                                                    \
	do {                                                                  \
		long long ash_a_ = (long long) (a), ash_b_ = (long long) (b); \
		ash_t_checks++;                                               \
		if (ash_a_ != ash_b_)                                         \
			ASH_T_FAILF("%s == %s: %lld != %lld", #a, #b, ash_a_, \
			    ash_b_);                                          \
	} while (0)

#define ASH_T_NE_INT(a, b)                                                    \
	do {                                                                  \
		long long ash_a_ = (long long) (a), ash_b_ = (long long) (b); \
		ash_t_checks++;                                               \
		if (ash_a_ == ash_b_)                                         \
			ASH_T_FAILF("%s != %s: both %lld", #a, #b, ash_a_);   \
	} while (0)

#define ASH_T_EQ_STR(a, b)                                                \
	do {                                                              \
		const char *ash_a_ = (a), *ash_b_ = (b);                  \
		ash_t_checks++;                                           \
		if (ash_a_ == NULL || ash_b_ == NULL ||                   \
		    strcmp(ash_a_, ash_b_) != 0)                          \
			ASH_T_FAILF("%s == %s: \"%s\" != \"%s\"", #a, #b, \
			    ash_a_ ? ash_a_ : "(null)",                   \
			    ash_b_ ? ash_b_ : "(null)");                  \
	} while (0)

#define ASH_T_CONTAINS(hay, needle)                                         \
	do {                                                                \
		const char *ash_h_ = (hay), *ash_n_ = (needle);             \
		ash_t_checks++;                                             \
		if (ash_h_ == NULL || strstr(ash_h_, ash_n_) == NULL)       \
			ASH_T_FAILF("%s contains \"%s\": got \"%s\"", #hay, \
			    ash_n_, ash_h_ ? ash_h_ : "(null)");            \
	} while (0)

#define ASH_T_NOT_CONTAINS(hay, needle)                                  \
	do {                                                             \
		const char *ash_h_ = (hay), *ash_n_ = (needle);          \
		ash_t_checks++;                                          \
		if (ash_h_ != NULL && strstr(ash_h_, ash_n_) != NULL)    \
			ASH_T_FAILF(                                     \
			    "%s must not contain \"%s\"", #hay, ash_n_); \
	} while (0)

#define ASH_T_EQ_MEM(a, b, n)                                              \
	do {                                                               \
		ash_t_checks++;                                            \
		if (memcmp((a), (b), (n)) != 0)                            \
			ASH_T_FAILF(                                       \
			    "%s == %s (%zu bytes)", #a, #b, (size_t) (n)); \
	} while (0)

#define ASH_T_NULL(p)     ASH_T_TRUE((p) == NULL)
#define ASH_T_NOT_NULL(p) ASH_T_TRUE((p) != NULL)

/* Asserts an ash_err result, printing both texts. */
#define ASH_T_ERR(expr, want)                                          \
	do {                                                           \
		int ash_got_ = (int) (expr), ash_want_ = (int) (want); \
		ash_t_checks++;                                        \
		if (ash_got_ != ash_want_)                             \
			ASH_T_FAILF("%s: got %s, want %s", #expr,      \
			    ash_strerror((ash_err) ash_got_),          \
			    ash_strerror((ash_err) ash_want_));        \
	} while (0)
#define ASH_T_OK(expr) ASH_T_ERR(expr, ASH_OK)

/* setjmp lives in its own frame so no local of the runner is clobbered. */
static inline int
ash_t_run_one(const ash_test_case *c)
{
	ash_t_checks = 0;
	if (setjmp(ash_t_jmp) != 0) {
		fprintf(stderr, "FAIL %s\n", c->name);
		return 1;
	}
	c->fn();
	if (ash_t_checks == 0) {
		fprintf(stderr, "FAIL %s: asserted nothing\n", c->name);
		return 1;
	}
	fprintf(stderr, "ok   %s (%d checks)\n", c->name, ash_t_checks);
	return 0;
}

static inline int
ash_t_run(const ash_test_case *cases, size_t n, int argc, char **argv)
{
	int failed = 0, ran = 0;

	for (size_t i = 0; i < n; i++) {
		if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
			continue;
		ran++;
		failed += ash_t_run_one(&cases[i]);
	}
	if (ran == 0) {
		fprintf(stderr, "no test named %s\n", argc > 1 ? argv[1] : "");
		return 1;
	}
	return failed;
}

#define ASH_TEST_MAIN(...)                                                   \
	jmp_buf ash_t_jmp;                                                   \
	int     ash_t_checks;                                                \
	int     main(int argc, char **argv)                                  \
	{                                                                    \
		static const ash_test_case cases_[] = {__VA_ARGS__};         \
		return ash_t_run(                                            \
		    cases_, sizeof(cases_) / sizeof(cases_[0]), argc, argv); \
	}

#endif
