/*
 * fuzz_graph.c - what meta-ingest reads from Graph API answers before it
 * decides to wait: the X-Business-Use-Case-Usage and X-App-Usage headers
 * (JSON in a header value). The input is the two values, one per line.
 *
 * Invariants: the wait is never negative and never over a day (the cap
 * on any wait taken from headers), whatever the numbers say; a header
 * that does not parse asks for no wait; either header alone asks for no
 * more than both together.
 */
#include "fuzz.h"
#include "mi.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, *app;
	int   both, buc_only, app_only;

	if ((buf = fuzz_cstr(data, size)) == NULL)
		return 0; /* header values are C strings */
	if ((app = strchr(buf, '\n')) != NULL)
		*app++ = '\0';
	both     = mi_graph_usage_wait_s(buf, app);
	buc_only = mi_graph_usage_wait_s(buf, NULL);
	app_only = mi_graph_usage_wait_s(NULL, app);
	CHECK(both >= 0 && both <= 86400);
	CHECK(buc_only <= both && app_only <= both);
	CHECK(both == (buc_only > app_only ? buc_only : app_only));
	free(buf);
	return 0;
}
