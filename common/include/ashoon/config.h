/*
 * ashoon/config.h - declarative configuration from the environment.
 *
 * Each service lists its settings in a static table (name, type, target,
 * default, range, flags, help); libashoon adds the keys every service shares
 * (svc.h). ash_cfg_load() reads NAME, or the file named by NAME_FILE (for
 * secrets mounted as files; a trailing newline is dropped), checks types and
 * ranges, and reports EVERY bad or missing key before failing, so an operator
 * fixes them all in one go. Secrets are never printed: the effective
 * configuration line shows them as "(set)" / "(unset)".
 *
 * Start-up only (main thread, before other threads): the targets are plain
 * globals that are read-only once loading returned.
 */
#ifndef ASHOON_CONFIG_H
#define ASHOON_CONFIG_H

#include <ashoon/err.h>

#include <stdbool.h>
#include <stdio.h>

typedef enum ash_cfg_type {
	ASH_CFG_T_STR, /* char *: owned by the config, freed by ash_cfg_free */
	ASH_CFG_T_INT, /* int, within [min, max] */
	ASH_CFG_T_MS,  /* int milliseconds, within [min, max]; "250", "250ms",
	                  "5s", "2m" accepted */
	ASH_CFG_T_BOOL, /* bool: 1/0, true/false, yes/no, on/off */
} ash_cfg_type;

enum {
	ASH_CFG_REQUIRED = 1
	    << 0,                /* no default: must be set (value or _FILE) */
	ASH_CFG_SECRET = 1 << 1, /* never logged; _FILE allowed */
};

typedef struct ash_cfg_key {
	const char  *name; /* NULL ends the table */
	ash_cfg_type type;
	void        *target; /* char **, int * or bool * per type */
	const char  *def;    /* default text, or NULL (= unset / required) */
	long long    min, max;
	unsigned     flags;
	const char  *help; /* one line for docs/OPERATIONS.md */
} ash_cfg_key;

#define ASH_CFG_STR(n, field, def, flags, help)                            \
	{                                                                  \
		(n), ASH_CFG_T_STR, &(field), (def), 0, 0, (flags), (help) \
	}
#define ASH_CFG_INT(n, field, def, lo, hi, flags, help)                   \
	{                                                                 \
		(n), ASH_CFG_T_INT, &(field), (def), (lo), (hi), (flags), \
		    (help)                                                \
	}
#define ASH_CFG_MS(n, field, def, lo, hi, flags, help)                   \
	{                                                                \
		(n), ASH_CFG_T_MS, &(field), (def), (lo), (hi), (flags), \
		    (help)                                               \
	}
#define ASH_CFG_BOOL(n, field, def, flags, help)                            \
	{                                                                   \
		(n), ASH_CFG_T_BOOL, &(field), (def), 0, 1, (flags), (help) \
	}
#define ASH_CFG_END                                            \
	{                                                      \
		NULL, ASH_CFG_T_STR, NULL, NULL, 0, 0, 0, NULL \
	}

/* Where values come from: getenv by default, a fake in tests. Returns NULL
 * when the variable is unset. */
typedef const char *(*ash_cfg_getenv_fn)(const char *name, void *arg);

/* Collected problems, one line each ("ASHOON_X: must be an integer ..."). */
typedef struct ash_cfg_report {
	char **lines;
	int    n;
} ash_cfg_report;

/* Loads tables[0..ntables) in order from env (NULL = getenv). Every problem
 * is appended to rep (may be NULL; start from {NULL, 0}, release with
 * ash_cfg_report_fini); nothing is logged here. ASH_EINVAL if there was any
 * problem; targets of good keys are set either way, targets of bad keys are
 * left alone. A key set both as NAME and NAME_FILE is a problem. An unset
 * optional key without default gives NULL / 0 / false. A STR target that
 * already holds a string (an earlier load) is freed before it is replaced,
 * so targets must start NULL. */
ash_err ash_cfg_load_from(const ash_cfg_key *const *tables, int ntables,
    ash_cfg_getenv_fn env, void *env_arg, ash_cfg_report *rep) ASH_MUSTCHECK;

/* ash_cfg_load_from with getenv and logging: what services call. Logs each
 * problem as an error line CFG-BAD, then a CFG-BAD count line. It does not
 * log the effective configuration: the caller does that with
 * ash_cfg_log_effective once the log level from the config is applied. */
ash_err ash_cfg_load(
    const ash_cfg_key *const *tables, int ntables) ASH_MUSTCHECK;

/* Logs the effective configuration as one CFG line, secrets redacted. */
void ash_cfg_log_effective(const ash_cfg_key *const *tables, int ntables);

/* Renders a Markdown table (name, type, default, required, secret, help)
 * for docs/OPERATIONS.md. */
void ash_cfg_render_markdown(
    const ash_cfg_key *const *tables, int ntables, FILE *out);

/* Frees string targets (set to NULL) and the report. NULL-safe. */
void ash_cfg_free(const ash_cfg_key *const *tables, int ntables);
void ash_cfg_report_fini(ash_cfg_report *rep);

#endif
