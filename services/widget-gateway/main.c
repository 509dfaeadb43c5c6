/*
 * ashoon-widget-gateway - the website chat widget channel.
 *
 * So far it runs the shared service skeleton (libashoon svc.h): its own
 * schema and migrations, the sys.* ops on its bus address, metrics, READY
 * and a graceful drain. Its own ops arrive with the issues that need them.
 */
#include <ashoon/svc.h>

extern const ash_db_migration wg_migrations[];

int
main(int argc, char **argv)
{
	static const ash_svc_def def = {
	    .id         = ASH_SVC_WIDGET_GATEWAY,
	    .migrations = wg_migrations,
	};
	return ash_svc_main(&def, argc, argv);
}
