/*
 * ashoon/json.h - cJSON helpers with the traps closed (TOOLCHAIN §4).
 *
 * cJSON accepts trailing garbage and reads numbers as doubles, so: parse only
 * through ash_json_parse (whole input must be one value, whitespace around it
 * allowed), and carry 64-bit ids as strings (ash_json_get_i64 accepts either
 * a decimal string or an integral number within +-2^53).
 * Pure functions: any thread.
 */
#ifndef ASHOON_JSON_H
#define ASHOON_JSON_H

#include <ashoon/err.h>

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

/* Parses exactly len bytes (need not be NUL-terminated). ASH_EBADJSON on
 * any syntax error or trailing non-whitespace, a NUL byte, a string that
 * is not UTF-8 or holds the escape \u0000, an object with a key twice, or
 * a number beyond a double's range (cJSON would make it infinite, and
 * render it as null); ASH_ETOOBIG when nesting is deeper than 64. Free *out
 * with cJSON_Delete. */
ash_err ash_json_parse(const char *buf, size_t len, cJSON **out) ASH_MUSTCHECK;

/* As ash_json_parse, but an integer literal beyond 2^53 in magnitude,
 * which a double cannot hold exactly, is read as a string of its digits
 * ("-" first if negative): for bodies that send 64-bit ids as numbers
 * (Meta's app ids), so that none loses a digit. Every other number is a
 * number, as ash_json_parse reads it. */
ash_err ash_json_parse_ids(
    const char *buf, size_t len, cJSON **out) ASH_MUSTCHECK;

/* True when s is UTF-8 (RFC 3629), as every string ash_json_parse accepts
 * is. Bytes from elsewhere (decoded query values, path parts, header
 * values) must pass it before they go into a document: one that is not
 * UTF-8 would render, then fail to parse at its reader, and Postgres
 * refuses it as text. */
bool ash_json_text_ok(const char *s);

/* Compact rendering, byte for byte cJSON_PrintUnformatted's (numbers
 * printed faster: json_render.c); free with cJSON_free. NULL only if doc
 * is NULL; aborts where cJSON would fail (OOM, a raw item without text). */
char *ash_json_render(const cJSON *doc);

/* A compact JSON text written as it goes, for the hot documents whose
 * shape is fixed (the bus envelopes): the bytes ash_json_render writes for
 * the same tree, without building one (a tree is a malloc per member and
 * per string, and a free of each). Start from {0}; objects open and close
 * in order, up to 32 deep, and members go into the innermost open one
 * (key NULL only for the outermost). ash_jw_done returns the text (free
 * with cJSON_free). Out of memory aborts; a misuse asserts. */
typedef struct ash_jw {
	struct ash_jw_text { /* the text so far (json_render.c's buffer) */
		char  *p;
		size_t len, cap;
	} text;
	uint32_t more;  /* bit d: the object at depth d has a member */
	int      depth; /* objects open */
} ash_jw;

void ash_jw_open(ash_jw *w, const char *key);
void ash_jw_close(ash_jw *w);
void ash_jw_str(ash_jw *w, const char *key, const char *v);
/* Written as cJSON writes the double of v (an integer below 10^15). */
void ash_jw_int(ash_jw *w, const char *key, int64_t v);
/* v rendered whole; NULL is {}. */
void ash_jw_item(ash_jw *w, const char *key, const cJSON *v);
/* n bytes as they are, outside any object (a prefix). */
void  ash_jw_raw(ash_jw *w, const char *s, size_t n);
char *ash_jw_done(ash_jw *w);

/* Typed getters on an object member. They never allocate. */
const char *ash_json_str(const cJSON *obj, const char *key); /* NULL if not
                                                                a string */
ash_err ash_json_get_i64(const cJSON *obj, const char *key, int64_t *out)
    ASH_MUSTCHECK; /* ENOTFOUND missing, EINVAL wrong type or range */
ash_err ash_json_get_int(
    const cJSON *obj, const char *key, int *out) ASH_MUSTCHECK;
bool ash_json_bool(const cJSON *obj, const char *key, bool def);

/* Adds a 64-bit integer as a decimal string member. */
void ash_json_add_i64(cJSON *obj, const char *key, int64_t v);

/* Adds a string member (copied); aborts on OOM like ash_xmalloc. */
void ash_json_add_str(cJSON *obj, const char *key, const char *s);

/* Adds a string member that takes s over instead of copying it (for long
 * strings, such as a webhook body in base64): s must come from malloc
 * (ash_xmalloc and the encoders in ashoon/crypto.h), and is freed with obj
 * by cJSON_Delete. Aborts on OOM. */
void ash_json_add_str_take(cJSON *obj, const char *key, char *s);

#endif
