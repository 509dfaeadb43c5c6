/*
 * it_files.c - files of the checkout read whole: vectors, fixtures and
 * the committed fuzz corpora (tests/fuzz/corpus/<name>), which
 * integration tests replay through the real services.
 */
#include "it.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *
it_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long  size;

	if (f == NULL)
		ASH_T_FAILF("cannot open %s", path);
	ASH_T_EQ_INT(fseek(f, 0, SEEK_END), 0);
	ASH_T_TRUE((size = ftell(f)) >= 0);
	rewind(f);
	buf  = ash_xmalloc((size_t) size + 1);
	*len = fread(buf, 1, (size_t) size, f);
	fclose(f);
	ASH_T_EQ_INT((long) *len, size);
	buf[*len] = '\0';
	return buf;
}

int
it_corpus_each(const char *name, it_corpus_fn fn, void *arg)
{
	char           dir[1024], path[2048];
	DIR           *d;
	struct dirent *e;
	int            n = 0;

	snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s",
	    getenv("ASH_SOURCE_DIR"), name);
	if ((d = opendir(dir)) == NULL)
		ASH_T_FAILF("cannot open %s", dir);
	while ((e = readdir(d)) != NULL) {
		size_t len;
		char  *data;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		data = it_read_file(path, &len);
		fn(e->d_name, data, len, arg);
		free(data);
		n++;
	}
	closedir(d);
	return n;
}
