/*
 * ashoon-meta-ingest - the Instagram Direct and Messenger channel: signed
 * webhooks, durable idempotent ingest, the Send API, token safety. main()
 * hands the service definition to the runner; the work is in mi_*.c.
 */
#include "mi.h"

#include <stdlib.h>

static mi_ctx mi;

static ash_err
mi_init(ash_svc *svc)
{
	const char    *why = NULL;
	ash_httpc_opts ho  = {false, NULL};
	ash_err        rv;

	mi.svc = svc;
	if (ash_keyring_parse(mi_config.master_key, &mi.keys, &why) !=
	    ASH_OK) {
		ash_log_error(NULL, "CFG-BAD", "ASHOON_MASTER_KEY: %s", why);
		return ASH_EINVAL;
	}
	if (*mi_config.app_secret == '\0')
		ash_log_warn(NULL, "CFG",
		    "META_APP_SECRET is empty: every "
		    "webhook POST will be refused");
	if ((rv = ash_httpc_new(ash_svc_loop(svc), &ho, &mi.http)) != ASH_OK)
		return rv;
	mi_webhook_register(&mi);
	mi_journal_register(&mi);
	mi_channels_register(&mi);
	mi_send_register(&mi);
	mi_thread_register(&mi);
	mi_conv_register(&mi);
	if ((rv = mi_webhook_init(&mi)) != ASH_OK ||
	    (rv = mi_channels_init(&mi)) != ASH_OK ||
	    (rv = mi_media_init(&mi)) != ASH_OK ||
	    (rv = mi_sender_init(&mi)) != ASH_OK)
		return rv;
	ash_svc_set_data(svc, &mi);
	return ASH_OK;
}

static void
mi_drain(ash_svc *svc)
{
	mi.draining = true;
	mi_sender_drain(&mi);
}

static void
mi_fini(ash_svc *svc)
{
	mi_sender_fini(&mi);
	mi_channels_fini(&mi);
	mi_media_fini(&mi);
	mi_webhook_fini(&mi);
	mi_journal_fini(&mi);
	ash_httpc_free(mi.http);
	ash_keyring_free(mi.keys);
}

extern const ash_db_migration mi_migrations[];

int
main(int argc, char **argv)
{
	static const ash_svc_def def = {
	    .id         = ASH_SVC_META_INGEST,
	    .keys       = mi_keys,
	    .migrations = mi_migrations,
	    .init       = mi_init,
	    .drain      = mi_drain,
	    .fini       = mi_fini,
	};
	return ash_svc_main(&def, argc, argv);
}
