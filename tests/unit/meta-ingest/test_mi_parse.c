/* Unit tests: meta-ingest webhook parsing and signature checks, over the
 * spec's signed vectors (tests/data/meta, byte-exact copies). */
#include "mi.h"

#include <ash_test.h>
#include <ashoon/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "3f6a1c9e8b7d4f20a5c1e9d7b3f8a6c2"

static char *
load(const char *name, size_t *len)
{
	char  path[512];
	FILE *f;
	long  n;
	char *buf;

	snprintf(path, sizeof(path), "%s/meta/%s", ASH_TEST_DATA_DIR, name);
	f = fopen(path, "rb");
	if (f == NULL)
		ASH_T_FAILF("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf       = malloc((size_t) n + 1);
	*len      = fread(buf, 1, (size_t) n, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

typedef struct parsed {
	cJSON         *doc, *events;
	mi_parse_stats st;
} parsed;

static void
parse_file(const char *name, parsed *p)
{
	size_t len;
	char  *raw = load(name, &len);

	memset(p, 0, sizeof(*p));
	ASH_T_OK(ash_json_parse_ids(raw, len, &p->doc));
	free(raw);
	p->events      = cJSON_CreateArray();
	p->st.kinds    = cJSON_CreateObject();
	p->st.page_ids = cJSON_CreateArray();
	ASH_T_OK(
	    mi_parse_webhook(p->doc, 3, "987654321012345", p->events, &p->st));
}

static void
parsed_fini(parsed *p)
{
	cJSON_Delete(p->doc);
	cJSON_Delete(p->events);
	cJSON_Delete(p->st.kinds);
	cJSON_Delete(p->st.page_ids);
}

static const cJSON *
ev(const parsed *p, int i)
{
	return cJSON_GetArrayItem(p->events, i);
}

ASH_TEST(f6_every_spec_vector_verifies_over_raw_bytes)
{
	static const struct {
		const char *file, *sig;
	} v[] = {
	    {"meta-messenger-text.json",
	        "sha256="
	        "59d2ee038ffd5f7551b039f9673b6d3f89f579e895d0ccceab57d57414ce3"
	        "f49"},
	    {"meta-messenger-image.json",
	        "sha256="
	        "90ca08433290a80aff854b410da74419643f5a0214c2cc83484bb5af00678"
	        "e5b"},
	    {"meta-messenger-echo.json",
	        "sha256="
	        "7c5d81bddbc964394830ceaef27c03d09041241bcf19b9cd921913c81a9e5"
	        "bdc"},
	    {"meta-messenger-read.json",
	        "sha256="
	        "a711b9b1717468c9893b6a59216180377c277b086681d65e487fe56174480"
	        "f09"},
	    {"meta-messenger-batch.json",
	        "sha256="
	        "c6575b6b6b895f26a9616899b52568e52a038acaebff608c88fd23e184cd6"
	        "057"},
	    {"meta-messenger-unicode.json",
	        "sha256="
	        "1afb90408f00edd61e3e61ee5b6649a0a7e17b52d6647447adad84fffab4a"
	        "642"},
	    {"meta-instagram-text.json",
	        "sha256="
	        "0b0888eecffe82167ad83c44457bf3c16547fb675871f4b9e816de4ad6009"
	        "d7d"},
	    {"meta-instagram-story-reply.json",
	        "sha256="
	        "e837109a802eb8967ace87b0f016432b314e4b0cbd6c0046593671280bb7e"
	        "ecc"},
	    {"meta-instagram-reaction.json",
	        "sha256="
	        "04656277bc80e7c5c027d90ec736e5d947a3ddcd583ec870d3024982cc6e8"
	        "a27"},
	};
	/* The webhook path's key, made ready once and used for them all. */
	ash_hmac_key *key = ash_hmac_key_new(SECRET, strlen(SECRET));

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t len;
		char  *raw = load(v[i].file, &len);
		ASH_T_OK(mi_signature_check(v[i].sig, raw, len, SECRET));
		ASH_T_OK(mi_signature_check_key(v[i].sig, raw, len, key));
		/* A body one byte short no longer matches. */
		ASH_T_ERR(mi_signature_check_key(v[i].sig, raw, len - 1, key),
		    ASH_EFORBIDDEN);
		free(raw);
	}
	ash_hmac_key_free(key);
}

ASH_TEST(f6_signature_rejections)
{
	size_t      len;
	char       *raw = load("meta-messenger-text.json", &len);
	const char *good =
	    "sha256="
	    "59d2ee038ffd5f7551b039f9673b6d3f89f579e895d0ccceab57d57414ce3f49";

	/* Signed with another secret, missing, sha1-style, short. */
	ASH_T_ERR(mi_signature_check("sha256=bc8952b4012f89a06724bb1591c7d2c5"
	                             "31062f710111c250b30a0908f7807576",
	              raw, len, SECRET),
	    ASH_EFORBIDDEN);
	ASH_T_ERR(mi_signature_check(good, raw, len, "wrong_secret"),
	    ASH_EFORBIDDEN);
	ASH_T_ERR(mi_signature_check(NULL, raw, len, SECRET), ASH_EUNAUTH);
	ASH_T_ERR(
	    mi_signature_check("sha1=0123456789abcdef0123456789abcdef0123"
	                       "4567",
	        raw, len, SECRET),
	    ASH_EUNAUTH);
	ASH_T_ERR(
	    mi_signature_check("sha256=59d2ee038ffd5f7551b039f9673b6d3f89f"
	                       "579e895d0ccceab57d57414ce3f4",
	        raw, len, SECRET),
	    ASH_EUNAUTH);
	/* One byte more of body. */
	ASH_T_ERR(
	    mi_signature_check(good, raw, len - 1, SECRET), ASH_EFORBIDDEN);
	/* A key made ready from another secret. */
	ash_hmac_key *other = ash_hmac_key_new("wrong_secret", 12);
	ASH_T_ERR(
	    mi_signature_check_key(good, raw, len, other), ASH_EFORBIDDEN);
	ASH_T_ERR(mi_signature_check_key(NULL, raw, len, other), ASH_EUNAUTH);
	ash_hmac_key_free(other);
	free(raw);
}

ASH_TEST(f6_unicode_vector_reserialised_fails)
{
	size_t len;
	char  *raw = load("meta-messenger-unicode.json", &len), *again;
	cJSON *doc;

	ASH_T_OK(ash_json_parse(raw, len, &doc));
	again = cJSON_PrintUnformatted(doc);
	/* The text survives parsing... */
	ASH_T_CONTAINS(again,
	    "Caf\xc3\xa9 \xc3\xa4\xc3\xb6\xc3\xa5 \xe2\x80\x94 "
	    "merci \xf0\x9f\x91\x8b");
	/* ...but the re-serialised bytes are not what Meta signed. */
	ASH_T_ERR(
	    mi_signature_check("sha256=1afb90408f00edd61e3e61ee5b6649a0a7e1"
	                       "7b52d6647447adad84fffab4a642",
	        again, strlen(again), SECRET),
	    ASH_EFORBIDDEN);
	ASH_T_OK(
	    mi_signature_check("sha256=1afb90408f00edd61e3e61ee5b6649a0a7e17"
	                       "b52d6647447adad84fffab4a642",
	        raw, len, SECRET));
	cJSON_free(again);
	cJSON_Delete(doc);
	free(raw);
}

ASH_TEST(f6_messenger_text_becomes_one_message_event)
{
	parsed p;

	parse_file("meta-messenger-text.json", &p);
	ASH_T_EQ_STR(p.st.object, "page");
	ASH_T_EQ_INT(p.st.entries, 1);
	ASH_T_EQ_INT(p.st.events, 1);
	ASH_T_EQ_INT(cJSON_GetArraySize(p.events), 1);
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "type"), "message");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "kind"), "text");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "page"), "104857601234567");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "customer"), "6523918847201937");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "text"),
	    "Hi, has my order #4521 shipped yet?");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "mid"),
	    "m_J8s2kQ9vXq3YbT7nLr5WcE1uHf4Da6Gp0Zi2Mo8Ny3Bk5Vt7Rx9Sa1Qe3CwUz");
	int64_t ts = 0, hit = 0;
	ASH_T_OK(ash_json_get_i64(ev(&p, 0), "ts_ms", &ts));
	ASH_T_EQ_INT(ts, 1736935200123LL);
	ASH_T_OK(ash_json_get_i64(ev(&p, 0), "hit", &hit));
	ASH_T_EQ_INT(hit, 3);
	ASH_T_EQ_STR(cJSON_GetArrayItem(p.st.page_ids, 0)->valuestring,
	    "104857601234567");
	parsed_fini(&p);
}

ASH_TEST(f6_image_url_unescaped_and_echo_attributed)
{
	parsed       p;
	const cJSON *a;

	parse_file("meta-messenger-image.json", &p);
	a = cJSON_GetArrayItem(
	    cJSON_GetObjectItem(ev(&p, 0), "attachments"), 0);
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "kind"), "attachment");
	ASH_T_EQ_STR(ash_json_str(a, "type"), "image");
	ASH_T_CONTAINS(ash_json_str(a, "url"),
	    "https://scontent.xx.fbcdn.net/v/t1.15752-9/");
	parsed_fini(&p);
	parse_file("meta-messenger-echo.json", &p);
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "type"), "echo");
	/* The customer of an echo is its recipient. */
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "customer"), "6523918847201937");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "app_id"), "987654321012345");
	ASH_T_EQ_STR(
	    ash_json_str(ev(&p, 0), "metadata"), "ai-reply:conv_8812");
	parsed_fini(&p);
}

ASH_TEST(f6_read_and_batch_with_delivery_postback_quick_reply)
{
	parsed  p;
	int64_t w = 0;

	parse_file("meta-messenger-read.json", &p);
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "type"), "read");
	ASH_T_OK(ash_json_get_i64(ev(&p, 0), "watermark_ms", &w));
	ASH_T_EQ_INT(w, 1736935205512LL);
	parsed_fini(&p);
	parse_file("meta-messenger-batch.json", &p);
	ASH_T_EQ_INT(p.st.entries, 3);
	ASH_T_EQ_INT(p.st.events, 3);
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "type"), "delivery");
	ASH_T_EQ_INT(
	    cJSON_GetArraySize(cJSON_GetObjectItem(ev(&p, 0), "mids")), 1);
	ASH_T_EQ_STR(ash_json_str(ev(&p, 1), "type"), "postback");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 1), "payload"), "HANDOFF_HUMAN");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 1), "text"), "Talk to a human");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 2), "payload"), "CONFIRM_ORDER_4521");
	ASH_T_CONTAINS(ash_json_str(ev(&p, 2), "reply_to_mid"), "m_Ek7Lp2Wq");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 2), "page"), "110923847561203");
	/* Two pages named, each once. */
	ASH_T_EQ_INT(cJSON_GetArraySize(p.st.page_ids), 2);
	parsed_fini(&p);
}

ASH_TEST(f6_instagram_text_story_reply_and_reaction)
{
	parsed p;

	parse_file("meta-instagram-text.json", &p);
	ASH_T_EQ_STR(p.st.object, "instagram");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "object"), "instagram");
	ASH_T_EQ_STR(
	    ash_json_str(ev(&p, 0), "text"), "Do you ship to Canada?");
	parsed_fini(&p);
	parse_file("meta-instagram-story-reply.json", &p);
	ASH_T_EQ_STR(
	    ash_json_str(
	        cJSON_GetObjectItem(ev(&p, 0), "reply_to_story"), "id"),
	    "18045512345678901");
	parsed_fini(&p);
	parse_file("meta-instagram-reaction.json", &p);
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "type"), "reaction");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "action"), "react");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "reaction"), "love");
	ASH_T_EQ_STR(
	    ash_json_str(ev(&p, 0), "emoji"), "\xe2\x9d\xa4\xef\xb8\x8f");
	parsed_fini(&p);
}

/* Kinds the vectors do not cover, written in the spec's shapes. */
static void
parse_str(const char *json, parsed *p)
{
	memset(p, 0, sizeof(*p));
	ASH_T_OK(ash_json_parse_ids(json, strlen(json), &p->doc));
	p->events      = cJSON_CreateArray();
	p->st.kinds    = cJSON_CreateObject();
	p->st.page_ids = cJSON_CreateArray();
	ASH_T_OK(mi_parse_webhook(p->doc, 0, "555", p->events, &p->st));
}

#define ENVELOPE(obj, items)                                                \
	"{\"object\":\"" obj "\",\"entry\":[{\"id\":\"17841405822304914\"," \
	"\"time\":1,\"messaging\":[" items "]}]}"
#define WHO                                                  \
	"\"sender\":{\"id\":\"111\"},\"recipient\":{\"id\":" \
	"\"17841405822304914\"},\"timestamp\":1000"

ASH_TEST(f6_attachment_kinds_sticker_share_story_mention_reel)
{
	parsed p;

	parse_str(
	    ENVELOPE("instagram",
	        "{" WHO ",\"message\":{\"mid\":\"a\",\"attachments\":["
	        "{\"type\":\"image\",\"payload\":{\"url\":\"u1\",\"sticker_"
	        "id\":369239263222822}},"
	        "{\"type\":\"share\",\"payload\":{\"url\":\"u2\"}},"
	        "{\"type\":\"story_mention\",\"payload\":{\"url\":\"u3\"}},"
	        "{\"type\":\"ig_reel\",\"payload\":{\"url\":\"u4\",\"reel_"
	        "video_id\":\"9\"}},"
	        "{\"type\":\"video\",\"payload\":{\"url\":\"u5\"}},"
	        "{\"type\":\"audio\",\"payload\":{\"url\":\"u6\"}},"
	        "{\"type\":\"file\",\"payload\":{\"url\":\"u7\"}},"
	        "{\"type\":\"brand_new_type\",\"payload\":{}}]}}"),
	    &p);
	const cJSON *atts = cJSON_GetObjectItem(ev(&p, 0), "attachments");
	static const char *want[] = {"sticker", "share", "story_mention",
	    "ig_reel", "video", "audio", "file", "brand_new_type"};
	ASH_T_EQ_INT(cJSON_GetArraySize(atts), 8);
	for (int i = 0; i < 8; i++)
		ASH_T_EQ_STR(ash_json_str(cJSON_GetArrayItem(atts, i), "type"),
		    want[i]);
	ASH_T_EQ_STR(ash_json_str(cJSON_GetArrayItem(atts, 0), "sticker_id"),
	    "369239263222822");
	parsed_fini(&p);
}

ASH_TEST(f6_unsend_edit_unreact_referral_and_standby)
{
	parsed p;

	parse_str(
	    ENVELOPE("instagram",
	        "{" WHO ",\"message\":{\"mid\":\"a\",\"is_deleted\":true}},"
	        "{" WHO ",\"message_edit\":{\"mid\":\"b\",\"text\":\"new\","
	        "\"num_edit\":2}},"
	        "{" WHO
	        ",\"reaction\":{\"mid\":\"c\",\"action\":\"unreact\"}},"
	        "{" WHO ",\"referral\":{\"ref\":\"spring\",\"source\":"
	        "\"SHORTLINK\",\"type\":\"OPEN_THREAD\"}},"
	        "{" WHO
	        ",\"message\":{\"mid\":\"d\",\"is_unsupported\":true}}"),
	    &p);
	ASH_T_EQ_INT(p.st.events, 5);
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "type"), "unsend");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 1), "type"), "edit");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 1), "text"), "new");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 2), "action"), "unreact");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 3), "type"), "referral");
	/* A referral has no mid: a stable one is made so a redelivery is
	 * recognised. */
	ASH_T_EQ_STR(ash_json_str(ev(&p, 3), "mid"), "ref:111:1000");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 4), "kind"), "unsupported");
	parsed_fini(&p);
	parse_str("{\"object\":\"page\",\"entry\":[{\"id\":\"1\",\"time\":1,"
	          "\"standby\":[{" WHO
	          ",\"message\":{\"mid\":\"s\",\"text\":\"hi\"}}]}]}",
	    &p);
	ASH_T_TRUE(ash_json_bool(ev(&p, 0), "standby", false));
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "owner"), "other");
	parsed_fini(&p);
}

ASH_TEST(f6_handover_and_unknown_kinds_are_counted_not_failed)
{
	parsed p;

	parse_str(
	    ENVELOPE("page",
	        "{" WHO ",\"pass_thread_control\":{\"new_owner_app_id\":555}},"
	        "{" WHO
	        ",\"take_thread_control\":{\"previous_owner_app_id\":555}},"
	        "{" WHO ",\"optin\":{\"ref\":\"x\"}}"),
	    &p);
	ASH_T_EQ_INT(p.st.events, 3);
	ASH_T_EQ_INT(p.st.unknown, 1);
	ASH_T_EQ_INT(cJSON_GetArraySize(p.events), 2);
	ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "owner"), "us");
	ASH_T_EQ_STR(ash_json_str(ev(&p, 1), "owner"), "other");
	int n = 0;
	ASH_T_OK(ash_json_get_int(p.st.kinds, "unknown", &n));
	ASH_T_EQ_INT(n, 1);
	parsed_fini(&p);
	/* Not a webhook envelope at all. */
	memset(&p, 0, sizeof(p));
	ASH_T_OK(ash_json_parse("{\"hello\":1}", 11, &p.doc));
	p.events      = cJSON_CreateArray();
	p.st.kinds    = cJSON_CreateObject();
	p.st.page_ids = cJSON_CreateArray();
	ASH_T_ERR(mi_parse_webhook(p.doc, 0, "", p.events, &p.st), ASH_EINVAL);
	parsed_fini(&p);
}

/* Meta sends app ids as JSON numbers; one beyond 2^53 (a double's exact
 * range) keeps every digit, or our own echoes and the threads passed to
 * us would be taken for another app's. */
ASH_TEST(f6_app_ids_beyond_2_pow_53_keep_every_digit)
{
	const char *body = ENVELOPE("page",
	    "{\"sender\":{\"id\":\"17841405822304914\"},\"recipient\":{"
	    "\"id\":\"111\"},\"timestamp\":1000,\"message\":{\"is_echo\":"
	    "true,\"app_id\":9007199254740993,\"metadata\":\"ai-reply:x\","
	    "\"mid\":\"e1\",\"text\":\"ok\"}},"
	    "{" WHO ",\"pass_thread_control\":{"
	    "\"new_owner_app_id\":9007199254740993}}");
	const char *ours = "9007199254740993";
	parsed      p;

	for (int ids = 1; ids >= 0; ids--) {
		memset(&p, 0, sizeof(p));
		if (ids)
			ASH_T_OK(
			    ash_json_parse_ids(body, strlen(body), &p.doc));
		else
			ASH_T_OK(ash_json_parse(body, strlen(body), &p.doc));
		p.events      = cJSON_CreateArray();
		p.st.kinds    = cJSON_CreateObject();
		p.st.page_ids = cJSON_CreateArray();
		ASH_T_OK(mi_parse_webhook(p.doc, 0, ours, p.events, &p.st));
		ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "type"), "echo");
		/* Read as a double, the id is 2^53: another app's. */
		ASH_T_EQ_STR(ash_json_str(ev(&p, 0), "app_id"),
		    ids ? ours : "9007199254740992");
		ASH_T_EQ_STR(ash_json_str(ev(&p, 1), "type"), "handover");
		ASH_T_EQ_STR(
		    ash_json_str(ev(&p, 1), "owner"), ids ? "us" : "other");
		parsed_fini(&p);
	}
}

ASH_TEST_MAIN(ASH_TEST_ENTRY(f6_every_spec_vector_verifies_over_raw_bytes),
    ASH_TEST_ENTRY(f6_signature_rejections),
    ASH_TEST_ENTRY(f6_unicode_vector_reserialised_fails),
    ASH_TEST_ENTRY(f6_messenger_text_becomes_one_message_event),
    ASH_TEST_ENTRY(f6_image_url_unescaped_and_echo_attributed),
    ASH_TEST_ENTRY(f6_read_and_batch_with_delivery_postback_quick_reply),
    ASH_TEST_ENTRY(f6_instagram_text_story_reply_and_reaction),
    ASH_TEST_ENTRY(f6_attachment_kinds_sticker_share_story_mention_reel),
    ASH_TEST_ENTRY(f6_unsend_edit_unreact_referral_and_standby),
    ASH_TEST_ENTRY(f6_app_ids_beyond_2_pow_53_keep_every_digit),
    ASH_TEST_ENTRY(f6_handover_and_unknown_kinds_are_counted_not_failed))
