/*
 * ctl_admin.c - tenants, API keys and status through the admin API.
 */
#include "ctl.h"

#include <ashoon/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
tenant_create(const char *name)
{
	cJSON *body = cJSON_CreateObject(), *rep = NULL;
	int    rc;

	ash_json_add_str(body, "name", name);
	rc = ctl_call("POST", "/admin/v1/tenants", body, &rep);
	if (rc == 0) {
		printf("tenant  %s\n", ash_json_str(rep, "id"));
		printf("name    %s\n", ash_json_str(rep, "name"));
		printf("api key %s\n", ash_json_str(rep, "api_key"));
		printf("(the API key is shown only now; store it safely)\n");
	}
	cJSON_Delete(body);
	cJSON_Delete(rep);
	return rc;
}

static int
tenant_list(void)
{
	cJSON *rep = NULL, *t;
	int    rc  = ctl_call("GET", "/admin/v1/tenants", NULL, &rep);

	if (rc != 0)
		return rc;
	cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(rep, "tenants"))
	{
		int keys = 0;
		if (ash_json_get_int(t, "active_keys", &keys) != ASH_OK)
			keys = -1;
		printf("%s  %s  %d key(s)  %s\n", ash_json_str(t, "id"),
		    ash_json_str(t, "created_at"), keys,
		    ash_json_str(t, "name"));
	}
	cJSON_Delete(rep);
	return 0;
}

int
ctl_tenant(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "create") == 0)
		return tenant_create(argv[2]);
	if (argc == 2 && strcmp(argv[1], "list") == 0)
		return tenant_list();
	return ctl_usage();
}

int
ctl_apikey(int argc, char **argv)
{
	cJSON *rep = NULL;
	char   path[256];
	int    rc;

	if (argc != 3)
		return ctl_usage();
	if (strcmp(argv[1], "create") == 0) {
		snprintf(
		    path, sizeof(path), "/admin/v1/tenants/%s/keys", argv[2]);
		if ((rc = ctl_call("POST", path, NULL, &rep)) == 0)
			printf("key id  %s\napi key %s\n",
			    ash_json_str(rep, "id"),
			    ash_json_str(rep, "api_key"));
	} else if (strcmp(argv[1], "revoke") == 0) {
		snprintf(path, sizeof(path), "/admin/v1/keys/%s", argv[2]);
		if ((rc = ctl_call("DELETE", path, NULL, &rep)) == 0)
			printf("revoked %s\n", argv[2]);
	} else {
		return ctl_usage();
	}
	cJSON_Delete(rep);
	return rc;
}

int
ctl_status(int argc, char **argv)
{
	cJSON *rep = NULL, *s;
	long   status;
	int    rc = ctl_call_any("GET", "/readyz", NULL, &status, &rep);

	/* 503 is an answer here: the report says which service is down. */
	if (rc != 0 || rep == NULL)
		return 1;
	cJSON_ArrayForEach(
	    s, cJSON_GetObjectItemCaseSensitive(rep, "services"))
	{
		int         ms     = 0;
		const char *detail = ash_json_str(s, "detail");
		if (ash_json_get_int(s, "ms", &ms) != ASH_OK)
			ms = -1;
		printf("%-18s %-12s %4d ms %s\n", ash_json_str(s, "name"),
		    ash_json_str(s, "status"), ms, detail ? detail : "");
	}
	cJSON_Delete(rep);
	return status == 200 ? 0 : 1;
}
