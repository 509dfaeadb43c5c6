/*
 * json_impl.h - what json.c and json_render.c share (not installed).
 */
#ifndef ASH_JSON_IMPL_H
#define ASH_JSON_IMPL_H

/* 1 for the bytes that cannot stand as they are inside a JSON string:
 * those below 0x20 (NUL included), '"' and '\\'. A string is scanned
 * for them a byte at a time through this table, both when a document is
 * checked before parsing and when a string is escaped for rendering. */
extern const unsigned char ash__json_special[256];

#endif
