/*
 * ctl.h - ashoonctl's private interface. A command-line tool: it blocks,
 * prints, and exits (0 ok, 1 failure, 2 usage or configuration).
 */
#ifndef CTL_H
#define CTL_H

#include <ashoon/err.h>

#include <cjson/cJSON.h>
#include <stdbool.h>

/* ctl_db.c: `db bootstrap` with ASHOON_ADMIN_DSN. */
int ctl_db(int argc, char **argv);

/* ctl_admin.c: tenant and API key commands over the admin HTTP API. */
int ctl_tenant(int argc, char **argv);
int ctl_apikey(int argc, char **argv);
int ctl_status(int argc, char **argv);

/* ctl_meta.c: Meta channels with a tenant's API key (`channel ...`), and
 * `keys rotate` (re-seals every channel secret with the newest master key)
 * with the admin token. */
int ctl_channel(int argc, char **argv);
int ctl_keys_rotate(void);

/* ctl_http.c: one admin API call. On a 2xx *out is the JSON reply
 * (cJSON_Delete it) and 0 is returned; otherwise the error is printed and 1
 * returned. body may be NULL. */
int ctl_call(
    const char *method, const char *path, const cJSON *body, cJSON **out);

/* ctl_call with another bearer (a tenant's API key, say); NULL or "" sends
 * none. ctl_call is ctl_call_as(ASHOON_ADMIN_TOKEN, ...). */
int ctl_call_as(const char *bearer, const char *method, const char *path,
    const cJSON *body, cJSON **out);

/* Like ctl_call, but any HTTP status is an answer: *status gets it and
 * *out the JSON body (NULL if none). 1 only when no answer came. */
int ctl_call_any(const char *method, const char *path, const cJSON *body,
    long *status, cJSON **out);

/* Prints the usage text and returns 2. */
int ctl_usage(void);

#endif
