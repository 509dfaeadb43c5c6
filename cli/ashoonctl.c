/*
 * ashoonctl - administration of an ashoon installation.
 *
 *   ashoonctl db bootstrap              roles and schemas (ASHOON_ADMIN_DSN)
 *   ashoonctl tenant create NAME        prints the tenant id and an API key
 *   ashoonctl tenant list
 *   ashoonctl apikey create TENANT_ID   another key for a tenant
 *   ashoonctl apikey revoke KEY_ID
 *   ashoonctl status                    /readyz of the gateway
 *   ashoonctl keys generate             a new base64 master key
 *   ashoonctl keys rotate               re-seal channel tokens with the
 *                                       newest master key
 *   ashoonctl channel connect-meta ...  connect a Page / IG account (with
 *   ashoonctl channel list | disconnect ID   a tenant's API key)
 *
 * The admin commands talk to the gateway at ASHOON_URL (default
 * http://127.0.0.1:8080) with ASHOON_ADMIN_TOKEN.
 */
#include "ctl.h"

#include <ashoon/crypto.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
ctl_usage(void)
{
	fprintf(stderr,
	    "usage: ashoonctl db bootstrap\n"
	    "       ashoonctl tenant create NAME | tenant list\n"
	    "       ashoonctl apikey create TENANT_ID | apikey revoke KEY_ID\n"
	    "       ashoonctl status\n"
	    "       ashoonctl keys generate | keys rotate\n"
	    "       ashoonctl channel connect-meta [--tenant-key KEY] "
	    "--kind messenger|instagram\n"
	    "                 --id PAGE_OR_IG_ID [--token-file FILE|-] "
	    "[--app-secret-file FILE]\n"
	    "                 [--login facebook|instagram]\n"
	    "       ashoonctl channel list | channel disconnect CHANNEL_ID "
	    "[--tenant-key KEY]\n"
	    "env:   ASHOON_ADMIN_DSN (db), ASHOON_API_KEY (channel), "
	    "ASHOON_URL "
	    "and\n"
	    "       ASHOON_ADMIN_TOKEN (the rest); secrets are read from "
	    "files "
	    "or stdin,\n"
	    "       never from the command line\n");
	return 2;
}

/* A fresh 32-byte master key, base64, for ASHOON_MASTER_KEY. */
static int
ctl_keys(int argc, char **argv)
{
	uint8_t key[ASH_AES_KEY_LEN];
	char   *b64;

	if (argc == 2 && strcmp(argv[1], "rotate") == 0)
		return ctl_keys_rotate();
	if (argc != 2 || strcmp(argv[1], "generate") != 0)
		return ctl_usage();
	ash_random_bytes(key, sizeof(key));
	b64 = ash_b64_encode(key, sizeof(key));
	printf("%s\n", b64);
	free(b64);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
	    {"db", ctl_db},
	    {"tenant", ctl_tenant},
	    {"apikey", ctl_apikey},
	    {"status", ctl_status},
	    {"keys", ctl_keys},
	    {"channel", ctl_channel},
	};

	if (argc < 2)
		return ctl_usage();
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	return ctl_usage();
}
