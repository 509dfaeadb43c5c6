/*
 * ashoon/ids.h - identifiers: UUIDv4 for rows, short request ids, API keys.
 * Random bits come from the OS CSPRNG, through a per-thread pool that a
 * forked child does not inherit. Any thread.
 */
#ifndef ASHOON_IDS_H
#define ASHOON_IDS_H

#include <stdbool.h>
#include <stddef.h>

#define ASH_UUID_LEN  37 /* 36 chars + NUL */
#define ASH_REQID_LEN 24 /* "r-" + 20 base32 chars + NUL, rounded */

/* Lower-case canonical UUID version 4. */
void ash_id_uuid4(char out[ASH_UUID_LEN]);

/* True for a canonical 8-4-4-4-12 hex UUID (any version, either case). */
bool ash_id_uuid_valid(const char *s);

/* "r-" followed by 20 lower-case base32 characters (100 random bits). */
void ash_id_request(char out[ASH_REQID_LEN]);

/* True if s is acceptable as a caller-supplied X-Request-Id: 1..64 chars
 * of [A-Za-z0-9._:-]. Anything else is replaced, never logged raw. */
bool ash_id_request_valid(const char *s);

#endif
