/*
 * ctl_http.c - one call to the gateway's admin API (blocking libcurl: this
 * is a command-line tool, not a service loop).
 */
#include "ctl.h"

#include <ashoon/json.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTL_MAX_REPLY (8 << 20)

typedef struct buf {
	char  *data;
	size_t len;
} buf;

static size_t
on_data(char *p, size_t size, size_t n, void *arg)
{
	buf *b = arg;

	if (b->len + size * n > CTL_MAX_REPLY)
		return 0; /* abort: no admin reply is that large */
	b->data = ash_xrealloc(b->data, b->len + size * n + 1);
	memcpy(b->data + b->len, p, size * n);
	b->len += size * n;
	b->data[b->len] = '\0';
	return size * n;
}

static struct curl_slist *
headers(const char *tok)
{
	struct curl_slist *h = NULL;
	char              *auth;

	h = curl_slist_append(h, "Content-Type: application/json");
	if (tok != NULL && *tok) {
		auth = ash_xasprintf("Authorization: Bearer %s", tok);
		h    = curl_slist_append(h, auth);
		free(auth);
	}
	return h;
}

/* Prints the platform's error body, or the raw status when it is not. */
static void
print_error(long status, const buf *b)
{
	cJSON      *doc = NULL;
	const char *msg = NULL, *code = NULL;

	if (b->data && ash_json_parse(b->data, b->len, &doc) == ASH_OK) {
		cJSON *err = cJSON_GetObjectItemCaseSensitive(doc, "error");
		code       = ash_json_str(err, "code");
		msg        = ash_json_str(err, "message");
	}
	fprintf(stderr, "ashoonctl: HTTP %ld %s%s%s\n", status,
	    code ? code : "", code ? ": " : "", msg ? msg : "");
	cJSON_Delete(doc);
}

static CURL *
easy_for(const char *method, const char *url, const char *payload, buf *b,
    struct curl_slist *h)
{
	CURL       *e  = curl_easy_init();
	const char *ca = getenv("ASHOON_CA_FILE");

	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	if (ca != NULL && *ca)
		curl_easy_setopt(e, CURLOPT_CAINFO, ca);
	if (payload != NULL)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, payload);
	return e;
}

/* Performs the request; the reply body is in *b. */
static int
perform(const char *bearer, const char *method, const char *path,
    const cJSON *body, buf *b, long *status)
{
	const char        *base    = getenv("ASHOON_URL");
	char              *payload = body ? ash_json_render(body) : NULL;
	struct curl_slist *h       = headers(bearer);
	char              *url;
	CURLcode           cc;

	url = ash_xasprintf(
	    "%s%s", base && *base ? base : "http://127.0.0.1:8080", path);
	CURL *e = easy_for(method, url, payload, b, h);
	cc      = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(e);
	curl_slist_free_all(h);
	cJSON_free(payload);
	if (cc != CURLE_OK)
		fprintf(stderr, "ashoonctl: %s: %s\n", url,
		    curl_easy_strerror(cc));
	free(url);
	return cc == CURLE_OK ? 0 : 1;
}

int
ctl_call_any(const char *method, const char *path, const cJSON *body,
    long *status, cJSON **out)
{
	buf b = {0};
	int rc;

	*out = NULL;
	if ((rc = perform(getenv("ASHOON_ADMIN_TOKEN"), method, path, body, &b,
	         status)) == 0 &&
	    b.len > 0 && ash_json_parse(b.data, b.len, out) != ASH_OK)
		*out = NULL;
	free(b.data);
	return rc;
}

int
ctl_call(const char *method, const char *path, const cJSON *body, cJSON **out)
{
	return ctl_call_as(
	    getenv("ASHOON_ADMIN_TOKEN"), method, path, body, out);
}

int
ctl_call_as(const char *bearer, const char *method, const char *path,
    const cJSON *body, cJSON **out)
{
	buf  b      = {0};
	long status = 0;
	int  rc     = 1;

	if (perform(bearer, method, path, body, &b, &status) != 0)
		;
	else if (status < 200 || status > 299)
		print_error(status, &b);
	else if (ash_json_parse(b.data ? b.data : "", b.len, out) != ASH_OK)
		fprintf(stderr, "ashoonctl: the reply is not JSON\n");
	else
		rc = 0;
	free(b.data);
	return rc;
}
