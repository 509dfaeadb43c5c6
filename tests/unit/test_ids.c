/* Unit tests: ids (UUIDv4, request ids, validation of caller ids). */
#include <ash_test.h>
#include <ashoon/ids.h>

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SAMPLE 2000

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* True if the n fixed-width strings in v are all different. */
static bool
all_distinct(char *v, size_t n, size_t width)
{
	qsort(v, n, width, cmp_str);
	for (size_t i = 1; i < n; i++)
		if (strcmp(v + (i - 1) * width, v + i * width) == 0)
			return false;
	return true;
}

ASH_TEST(uuid4_format)
{
	static char ids[SAMPLE][ASH_UUID_LEN];
	bool        variant_seen[4] = {false};

	for (int i = 0; i < SAMPLE; i++) {
		char *u = ids[i];
		ash_id_uuid4(u);
		ASH_T_EQ_INT(strlen(u), 36);
		ASH_T_TRUE(ash_id_uuid_valid(u));
		for (int j = 0; j < 36; j++) {
			bool dash = j == 8 || j == 13 || j == 18 || j == 23;
			if (dash ? u[j] != '-'
			         : strchr("0123456789abcdef", u[j]) == NULL)
				ASH_T_FAILF("bad char %d in %s", j, u);
		}
		ASH_T_EQ_INT(u[14], '4'); /* version nibble */
		const char *v = strchr("89ab", u[19]);
		if (v == NULL || *v == '\0')
			ASH_T_FAILF("variant nibble in %s", u);
		variant_seen[v - "89ab"] = true;
	}
	/* The two variant bits are set, the other two stay random. */
	for (int i = 0; i < 4; i++)
		ASH_T_TRUE(variant_seen[i]);
	ASH_T_TRUE(all_distinct(&ids[0][0], SAMPLE, ASH_UUID_LEN));
}

ASH_TEST(uuid4_bits_are_random)
{
	/* Every random hex position takes several values over a sample. */
	char        u[ASH_UUID_LEN];
	unsigned    seen[36] = {0};
	const char *hex      = "0123456789abcdef";

	for (int i = 0; i < 400; i++) {
		ash_id_uuid4(u);
		for (int j = 0; j < 36; j++)
			if (u[j] != '-')
				seen[j] |= 1u << (strchr(hex, u[j]) - hex);
	}
	for (int j = 0; j < 36; j++) {
		int n = __builtin_popcount(seen[j]);
		if (j == 8 || j == 13 || j == 18 || j == 23)
			ASH_T_EQ_INT(n, 0);
		else if (j == 14)
			ASH_T_EQ_INT(n, 1); /* always '4' */
		else if (j == 19)
			ASH_T_EQ_INT(n, 4); /* 8, 9, a, b */
		else
			ASH_T_EQ_INT(n, 16);
	}
}

ASH_TEST(uuid_validation)
{
	static const char *const good[] = {
	    "123e4567-e89b-12d3-a456-426614174000", /* version 1 */
	    "550E8400-E29B-41D4-A716-446655440000", /* upper case */
	    "00000000-0000-0000-0000-000000000000",
	    "ffffffff-ffff-4fff-bfff-ffffffffffff",
	};
	static const char *const bad[] = {
	    "",
	    "123e4567e89b12d3a456426614174000",      /* no dashes */
	    "123e4567-e89b-12d3-a456-42661417400",   /* short */
	    "123e4567-e89b-12d3-a456-4266141740000", /* long */
	    "123e4567-e89b-12d3-a456_426614174000",  /* wrong separator */
	    "123e4567-e89b-12d3-a4564-26614174000",  /* dash misplaced */
	    "g23e4567-e89b-12d3-a456-426614174000",  /* not hex */
	    "{123e4567-e89b-12d3-a456-426614174000}",
	    " 123e4567-e89b-12d3-a456-426614174000",
	    "123e4567-e89b-12d3-a456-426614174000\n",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ASH_T_TRUE(ash_id_uuid_valid(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ash_id_uuid_valid(bad[i]))
			ASH_T_FAILF("accepted \"%s\"", bad[i]);
	ASH_T_TRUE(!ash_id_uuid_valid(NULL));
}

ASH_TEST(request_id_format)
{
	static char ids[SAMPLE][ASH_REQID_LEN];
	unsigned    seen[20] = {0};
	const char *abc      = "abcdefghijklmnopqrstuvwxyz234567";

	for (int i = 0; i < SAMPLE; i++) {
		char *r = ids[i];
		ash_id_request(r);
		ASH_T_EQ_INT(strlen(r), 22);
		ASH_T_EQ_INT(strncmp(r, "r-", 2), 0);
		for (int j = 0; j < 20; j++) {
			const char *p = strchr(abc, r[2 + j]);
			if (p == NULL || *p == '\0')
				ASH_T_FAILF("bad char %d in %s", j, r);
			seen[j] |= 1u << (p - abc);
		}
		ASH_T_TRUE(ash_id_request_valid(r));
	}
	/* Each of the 20 positions carries 5 random bits. */
	for (int j = 0; j < 20; j++)
		ASH_T_EQ_INT(__builtin_popcount(seen[j]), 32);
	ASH_T_TRUE(all_distinct(&ids[0][0], SAMPLE, ASH_REQID_LEN));
}

ASH_TEST(request_id_validation)
{
	char max[65], over[66];

	memset(max, 'a', 64);
	max[64] = '\0';
	memset(over, 'a', 65);
	over[65] = '\0';
	ASH_T_TRUE(ash_id_request_valid("a"));
	ASH_T_TRUE(ash_id_request_valid("r-abcdefghij234567abcd"));
	ASH_T_TRUE(ash_id_request_valid("Trace.ID:42_x-Y"));
	ASH_T_TRUE(
	    ash_id_request_valid("123e4567-e89b-12d3-a456-426614174000"));
	ASH_T_TRUE(ash_id_request_valid(max));
	ASH_T_TRUE(!ash_id_request_valid(over));
	ASH_T_TRUE(!ash_id_request_valid(""));
	ASH_T_TRUE(!ash_id_request_valid(NULL));
	ASH_T_TRUE(!ash_id_request_valid("a b"));
	ASH_T_TRUE(!ash_id_request_valid("abc\n"));
	ASH_T_TRUE(!ash_id_request_valid("abc\r\nX-Evil: 1"));
	ASH_T_TRUE(!ash_id_request_valid("\"quoted\""));
	ASH_T_TRUE(!ash_id_request_valid("a/b"));
	ASH_T_TRUE(!ash_id_request_valid("a\\b"));
	ASH_T_TRUE(!ash_id_request_valid("caf\xc3\xa9"));
	ASH_T_TRUE(!ash_id_request_valid("{\"json\":1}"));
}

/* Ids come from a per-thread pool of random bytes: a forked child must not
 * hand out the ids its parent's pool still holds. */
ASH_TEST(ids_of_a_forked_child_are_not_its_parents)
{
	char  first[ASH_UUID_LEN], parent[ASH_UUID_LEN];
	char  child[ASH_UUID_LEN] = {0};
	int   fd[2];
	pid_t pid;

	ash_id_uuid4(first); /* the pool is full now */
	ASH_T_EQ_INT(pipe(fd), 0);
	ASH_T_TRUE((pid = fork()) >= 0);
	if (pid == 0) {
		ash_id_uuid4(child);
		_exit(write(fd[1], child, sizeof(child)) == sizeof(child) ? 0
		                                                          : 1);
	}
	close(fd[1]);
	ASH_T_EQ_INT(
	    (int) read(fd[0], child, sizeof(child)), (int) sizeof(child));
	close(fd[0]);
	ASH_T_EQ_INT(waitpid(pid, NULL, 0), pid);
	ash_id_uuid4(parent);
	ASH_T_TRUE(ash_id_uuid_valid(child));
	ASH_T_TRUE(strcmp(child, parent) != 0);
	ASH_T_TRUE(strcmp(child, first) != 0);
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(uuid4_format),
    ASH_TEST_ENTRY(uuid4_bits_are_random), ASH_TEST_ENTRY(uuid_validation),
    ASH_TEST_ENTRY(request_id_format), ASH_TEST_ENTRY(request_id_validation),
    ASH_TEST_ENTRY(ids_of_a_forked_child_are_not_its_parents))
