/*
 * fuzz_main.c - runs a fuzz driver without libFuzzer: every file named on
 * the command line, or found directly in a directory named there, is
 * passed once to LLVMFuzzerTestOneInput. This is how the committed corpora
 * run as ordinary ctest cases under the asan preset (gcc has no libFuzzer),
 * so an input that once crashed a parser stays a regression test.
 *
 * A driver signals a broken invariant by aborting (ASan and UBSan abort on
 * their own findings); this runner only fails on inputs it cannot read and
 * on an empty run, so a corpus that went missing is not a silent pass.
 */
#include "fuzz.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int
run_file(const char *path)
{
	FILE    *f = fopen(path, "rb");
	uint8_t *buf;
	long     n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		fprintf(stderr, "fuzz: cannot read %s\n", path);
		if (f != NULL)
			fclose(f);
		return -1;
	}
	/* An exact-size copy, so ASan sees a read past the input's end. */
	buf = malloc(n > 0 ? (size_t) n : 1);
	if (buf == NULL || fread(buf, 1, (size_t) n, f) != (size_t) n) {
		fprintf(stderr, "fuzz: cannot read %s\n", path);
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t) n);
	free(buf);
	return 0;
}

static int
run_dir(const char *dir, int *count)
{
	DIR           *d = opendir(dir);
	struct dirent *e;
	char           path[4096];
	struct stat    st;

	if (d == NULL) {
		fprintf(stderr, "fuzz: cannot open %s\n", dir);
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (run_file(path) != 0) {
			closedir(d);
			return -1;
		}
		(*count)++;
	}
	closedir(d);
	return 0;
}

int
main(int argc, char **argv)
{
	int         count = 0;
	struct stat st;

	for (int i = 1; i < argc; i++) {
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			if (run_dir(argv[i], &count) != 0)
				return 1;
		} else if (run_file(argv[i]) == 0) {
			count++;
		} else {
			return 1;
		}
	}
	printf("%s: %d inputs\n", argv[0], count);
	if (count == 0) {
		fprintf(stderr, "fuzz: no inputs\n");
		return 1;
	}
	return 0;
}
