/*
 * it_http.c - blocking HTTP for integration tests (libcurl easy).
 */
#include "it.h"

#include <ashoon/crypto.h>
#include <ashoon/json.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct sink {
	char  *data;
	size_t len;
} sink;

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	sink *b = arg;

	b->data = ash_xrealloc(b->data, b->len + size * n + 1);
	memcpy(b->data + b->len, p, size * n);
	b->len += size * n;
	b->data[b->len] = '\0';
	return size * n;
}

static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	it_resp *r   = arg;
	size_t   len = strlen(r->headers);

	if (len + size * n < sizeof(r->headers) - 1) {
		memcpy(r->headers + len, p, size * n);
		r->headers[len + size * n] = '\0';
	}
	return size * n;
}

void
it_http(it_resp *r, const char *method, const char *url,
    const char *const *headers, const char *body, size_t body_len)
{
	CURL              *e = curl_easy_init();
	struct curl_slist *h = NULL;
	sink               b = {0};
	CURLcode           cc;

	memset(r, 0, sizeof(*r));
	for (int i = 0; headers && headers[i]; i++)
		h = curl_slist_append(h, headers[i]);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	if (body != NULL) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(
		    e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
	}
	cc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_cleanup(e);
	curl_slist_free_all(h);
	r->body = b.data ? b.data : ash_xstrdup("");
	if (cc != CURLE_OK)
		r->status = -(long) cc; /* transport failure, negative */
	else if (ash_json_parse(r->body, strlen(r->body), &r->json) != ASH_OK)
		r->json = NULL;
}

void
it_call(it_stack *s, it_resp *r, const char *method, const char *path,
    const char *bearer, const char *body)
{
	char        url[512], auth[300];
	const char *hdr[3] = {"Content-Type: application/json", NULL, NULL};

	snprintf(url, sizeof(url), "%s%s", s->base, path);
	if (bearer != NULL) {
		snprintf(
		    auth, sizeof(auth), "Authorization: Bearer %s", bearer);
		hdr[1] = auth;
	}
	it_http(r, method, url, hdr, body, body ? strlen(body) : 0);
}

const char *
it_resp_header(const it_resp *r, const char *name)
{
	static char val[512];
	size_t      n = strlen(name);

	for (const char *l = r->headers; l && *l; l = strchr(l, '\n')) {
		l += (*l == '\n');
		if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
			const char *v = l + n + 1;
			v += strspn(v, " ");
			snprintf(val, sizeof(val), "%.*s",
			    (int) strcspn(v, "\r\n"), v);
			return val;
		}
	}
	return NULL;
}

const char *
it_resp_code(const it_resp *r)
{
	const char *c = ash_json_str(
	    cJSON_GetObjectItemCaseSensitive(r->json, "error"), "code");
	return c ? c : "";
}

void
it_resp_fini(it_resp *r)
{
	free(r->body);
	cJSON_Delete(r->json);
	memset(r, 0, sizeof(*r));
}

void
it_webhook_signature(
    const char *body, size_t len, const char *secret, char out[80])
{
	uint8_t mac[ASH_SHA256_LEN];
	char   *hex;

	ash_hmac_sha256(secret, strlen(secret), body, len, mac);
	hex = ash_hex_encode(mac, sizeof(mac));
	snprintf(out, 80, "sha256=%s", hex);
	free(hex);
}

long
it_post_webhook(
    it_stack *s, const char *body, size_t len, const char *secret, it_resp *r)
{
	char        url[128], sig[80], hdr[120];
	const char *h[] = {"Content-Type: application/json", NULL, NULL};

	snprintf(url, sizeof(url), "%s/webhooks/meta", s->base);
	if (secret != NULL) {
		it_webhook_signature(body, len, secret, sig);
		snprintf(hdr, sizeof(hdr), "X-Hub-Signature-256: %s", sig);
		h[1] = hdr;
	}
	it_http(r, "POST", url, h, body, len);
	return r->status;
}
