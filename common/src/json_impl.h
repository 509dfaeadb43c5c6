/*
 * json_impl.h - what json.c, json_render.c and pgrec.c share (not
 * installed).
 */
#ifndef ASH_JSON_IMPL_H
#define ASH_JSON_IMPL_H

#include <ashoon/json.h>

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* 1 for the bytes that cannot stand as they are inside a JSON string:
 * those below 0x20 (NUL included), '"' and '\\'. A string is scanned
 * for them a byte at a time through this table, both when a document is
 * checked before parsing and when a string is escaped for rendering. */
extern const unsigned char ash__json_special[256];

/* A text growing in a buffer of cJSON's (cJSON_free frees p), as
 * json_render.c and pgrec.c write theirs, and an ash_jw's text is.
 * Out of memory aborts. */
typedef struct ash_jw_text ash__out;

/* Grows o to hold n more bytes; where they go. */
char *ash__out_grow(ash__out *o, size_t n);

/* Room for n more bytes at p + len (len is not moved). Inline: a rendered
 * envelope is some seventy small writes, and the call around each was
 * most of its cost. */
static inline char *
ash__out_room(ash__out *o, size_t n)
{
	if (o->len + n <= o->cap)
		return o->p + o->len;
	return ash__out_grow(o, n);
}

static inline void
ash__out_put(ash__out *o, const char *s, size_t n)
{
	memcpy(ash__out_room(o, n), s, n);
	o->len += n;
}
/* The decimal digits of v into buf (at least 21 bytes); their count. */
size_t ash__int_digits(char *buf, int64_t v);
/* item (and what it holds, not its siblings) as compact JSON, the bytes
 * ash_json_render writes for it. */
void ash__json_put(ash__out *o, const cJSON *item);

#endif
