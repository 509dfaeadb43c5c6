/*
 * ctl_meta.c - Meta channels and master-key rotation from the command line.
 *
 *   channel connect-meta [--tenant-key KEY] --kind messenger|instagram
 *       --id PAGE_OR_IG_ID [--token-file FILE|-] [--app-secret-file FILE]
 *       [--login facebook|instagram]
 *   channel list [--tenant-key KEY]
 *   channel disconnect CHANNEL_ID [--tenant-key KEY]
 *   keys rotate
 *
 * The channel commands act as the tenant: its API key comes from
 * --tenant-key or ASHOON_API_KEY. `keys rotate` uses the admin token
 * (ASHOON_ADMIN_TOKEN) like the other admin commands.
 *
 * Secrets never travel in argv, where ps and shell history would keep
 * them: the access token is read from --token-file (no option or "-":
 * stdin) and the app secret from --app-secret-file, trimmed of surrounding
 * whitespace, sent in the request body only, and wiped from our buffers
 * afterwards. Nothing printed here ever includes them.
 */
#include "ctl.h"

#include <ashoon/json.h>

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_MAX 8192 /* bytes read from a secret file at most */

typedef struct meta_opts {
	const char *key;         /* tenant API key */
	const char *kind;        /* messenger | instagram */
	const char *id;          /* Page / IG account id */
	const char *token_file;  /* NULL or "-": stdin */
	const char *secret_file; /* NULL: no app secret */
	const char *login;       /* NULL: the platform's default */
} meta_opts;

static void
secret_free(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Reads a whole secret file (or stdin for NULL / "-"), trimmed. NULL (after
 * a message naming only the file) when it cannot be read, is empty or is
 * larger than SECRET_MAX. */
static char *
secret_read(const char *path, const char *what)
{
	bool   in  = path == NULL || strcmp(path, "-") == 0;
	FILE  *f   = in ? stdin : fopen(path, "r");
	char  *buf = ash_xcalloc(1, SECRET_MAX + 2), *s;
	size_t n;

	if (f == NULL) {
		fprintf(
		    stderr, "ashoonctl: cannot open %s file %s\n", what, path);
		free(buf);
		return NULL;
	}
	n = fread(buf, 1, SECRET_MAX + 1, f);
	if (!in)
		fclose(f);
	while (n > 0 && strchr(" \t\r\n", buf[n - 1]) != NULL)
		buf[--n] = '\0';
	s = buf + strspn(buf, " \t\r\n");
	if (n > SECRET_MAX || *s == '\0') {
		fprintf(stderr, "ashoonctl: the %s (from %s) is %s\n", what,
		    in ? "stdin" : path, *s ? "too large" : "empty");
		secret_free(buf);
		return NULL;
	}
	memmove(buf, s, strlen(s) + 1);
	return buf;
}

/* The tenant's API key: --tenant-key, else ASHOON_API_KEY. */
static const char *
api_key(const meta_opts *o)
{
	const char *k = o->key ? o->key : getenv("ASHOON_API_KEY");

	if (k == NULL || *k == '\0') {
		fprintf(stderr,
		    "ashoonctl: no API key: give --tenant-key or "
		    "set ASHOON_API_KEY\n");
		return NULL;
	}
	return k;
}

/* Parses "--name value" pairs from argv[from]; 2 (after usage) on
 * anything unknown or a missing value. */
static int
opts_parse(int argc, char **argv, int from, meta_opts *o)
{
	static const struct {
		const char *name;
		size_t      off;
	} names[] = {
	    {"--tenant-key", offsetof(meta_opts, key)},
	    {"--kind", offsetof(meta_opts, kind)},
	    {"--id", offsetof(meta_opts, id)},
	    {"--token-file", offsetof(meta_opts, token_file)},
	    {"--app-secret-file", offsetof(meta_opts, secret_file)},
	    {"--login", offsetof(meta_opts, login)},
	};

	memset(o, 0, sizeof(*o));
	for (int i = from; i < argc; i += 2) {
		size_t k = 0;
		while (k < sizeof(names) / sizeof(names[0]) &&
		    strcmp(argv[i], names[k].name) != 0)
			k++;
		if (k == sizeof(names) / sizeof(names[0]) || i + 1 >= argc)
			return ctl_usage();
		*(const char **) ((char *) o + names[k].off) = argv[i + 1];
	}
	return 0;
}

static void
print_channel(const cJSON *c)
{
	const char *name = ash_json_str(c, "name");
	const char *user = ash_json_str(c, "username");

	printf("%s  %-9s  %-20s  %-12s  %s%s%s\n", ash_json_str(c, "id"),
	    ash_json_str(c, "kind"), ash_json_str(c, "external_id"),
	    ash_json_str(c, "status"), name ? name : "", user ? " @" : "",
	    user ? user : "");
}

/* The request body; the secrets are copied into it (wiped by the caller
 * through body_free). */
static cJSON *
connect_body(const meta_opts *o, const char *token, const char *secret)
{
	cJSON *b = cJSON_CreateObject();

	ash_json_add_str(b, "kind", o->kind);
	ash_json_add_str(b, "external_id", o->id);
	ash_json_add_str(b, "access_token", token);
	if (secret != NULL)
		ash_json_add_str(b, "app_secret", secret);
	if (o->login != NULL)
		ash_json_add_str(b, "login", o->login);
	return b;
}

/* Wipes the secret members before freeing the body. */
static void
body_free(cJSON *b)
{
	static const char *const secret[] = {"access_token", "app_secret"};

	for (size_t i = 0; i < 2; i++) {
		cJSON *v = cJSON_GetObjectItemCaseSensitive(b, secret[i]);
		if (cJSON_IsString(v))
			explicit_bzero(v->valuestring, strlen(v->valuestring));
	}
	cJSON_Delete(b);
}

static int
channel_connect(int argc, char **argv)
{
	meta_opts   o;
	const char *key;
	char       *token = NULL, *secret = NULL;
	cJSON      *body, *rep            = NULL;
	int         rc;

	if ((rc = opts_parse(argc, argv, 2, &o)) != 0)
		return rc;
	if (o.kind == NULL || o.id == NULL)
		return ctl_usage();
	if ((key = api_key(&o)) == NULL)
		return 2;
	if ((token = secret_read(o.token_file, "access token")) == NULL ||
	    (o.secret_file != NULL &&
	        (secret = secret_read(o.secret_file, "app secret")) == NULL)) {
		secret_free(token);
		return 1;
	}
	body = connect_body(&o, token, secret);
	secret_free(token);
	secret_free(secret);
	rc = ctl_call_as(key, "POST", "/api/v1/channels/meta", body, &rep);
	body_free(body);
	if (rc == 0)
		print_channel(
		    cJSON_GetObjectItemCaseSensitive(rep, "channel"));
	cJSON_Delete(rep);
	return rc;
}

static int
channel_list(int argc, char **argv)
{
	meta_opts    o;
	const char  *key;
	cJSON       *rep = NULL;
	const cJSON *c;
	int          rc;

	if ((rc = opts_parse(argc, argv, 2, &o)) != 0)
		return rc;
	if ((key = api_key(&o)) == NULL)
		return 2;
	if ((rc = ctl_call_as(
	         key, "GET", "/api/v1/channels/meta", NULL, &rep)) != 0)
		return rc;
	cJSON_ArrayForEach(
	    c, cJSON_GetObjectItemCaseSensitive(rep, "channels"))
	    print_channel(c);
	cJSON_Delete(rep);
	return 0;
}

static int
channel_disconnect(int argc, char **argv)
{
	meta_opts   o;
	const char *key;
	cJSON      *rep = NULL;
	char        path[128];
	int         rc;

	if (argc < 3 || strlen(argv[2]) > 64 ||
	    (rc = opts_parse(argc, argv, 3, &o)) != 0)
		return ctl_usage();
	if ((key = api_key(&o)) == NULL)
		return 2;
	snprintf(path, sizeof(path), "/api/v1/channels/meta/%s", argv[2]);
	if ((rc = ctl_call_as(key, "DELETE", path, NULL, &rep)) == 0)
		printf("disconnected %s (its token is erased)\n", argv[2]);
	cJSON_Delete(rep);
	return rc;
}

int
ctl_channel(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "connect-meta") == 0)
		return channel_connect(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "list") == 0)
		return channel_list(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "disconnect") == 0)
		return channel_disconnect(argc, argv);
	return ctl_usage();
}

/* Exit 1 unless every channel was resealed: a failure means a key version
 * still in use is missing from ASHOON_MASTER_KEY (see the service log). */
int
ctl_keys_rotate(void)
{
	cJSON *rep = NULL;
	int    ver = 0, rotated = 0, failed = 0;
	bool   complete;
	int    rc = ctl_call("POST", "/admin/v1/keys/rotate", NULL, &rep);

	if (rc != 0)
		return rc;
	if (ash_json_get_int(rep, "key_version", &ver) != ASH_OK ||
	    ash_json_get_int(rep, "rotated", &rotated) != ASH_OK ||
	    ash_json_get_int(rep, "failed", &failed) != ASH_OK)
		failed = -1;
	complete = ash_json_bool(rep, "complete", true);
	printf("key version %d: %d channel(s) resealed\n", ver, rotated);
	if (failed != 0)
		printf("%d channel(s) could not be opened: is every key "
		       "version still in ASHOON_MASTER_KEY?\n",
		    failed);
	if (!complete)
		printf("stopped before the end: run it again\n");
	cJSON_Delete(rep);
	return failed == 0 && complete ? 0 : 1;
}
