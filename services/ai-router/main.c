/*
 * ashoon-ai-router - decides and produces replies.
 *
 * So far it runs the shared service skeleton (libashoon svc.h): its own
 * schema and migrations, the sys.* ops on its bus address, metrics, READY
 * and a graceful drain. Its own ops arrive with the issues that need them.
 */
#include <ashoon/svc.h>

extern const ash_db_migration ar_migrations[];

int
main(int argc, char **argv)
{
	static const ash_svc_def def = {
	    .id         = ASH_SVC_AI_ROUTER,
	    .migrations = ar_migrations,
	};
	return ash_svc_main(&def, argc, argv);
}
