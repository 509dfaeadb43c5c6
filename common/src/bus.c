/*
 * bus.c - shared NNG helpers: error mapping, socket options, dialing.
 */
#include "bus_impl.h"

#include <stdlib.h>
#include <string.h>

ash_err
ash__bus_err(int nngrv)
{
	switch (nngrv) {
	case 0:
		return ASH_OK;
	case NNG_ETIMEDOUT:
		return ASH_ETIMEDOUT;
	case NNG_ECLOSED:
		return ASH_ECLOSED;
	case NNG_ECANCELED:
		return ASH_ECANCELED;
	case NNG_ENOMEM:
		return ASH_ENOMEM;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
		return ASH_EINVAL;
	case NNG_ECONNREFUSED:
	case NNG_ECONNRESET:
	case NNG_ECONNSHUT:
	case NNG_EADDRINUSE:
	case NNG_EUNREACHABLE:
		return ASH_EUNAVAIL;
	case NNG_EMSGSIZE:
		return ASH_ETOOBIG;
	default:
		return ASH_EUPSTREAM;
	}
}

ash_err
ash__bus_sock_opts(nng_socket s, size_t max_msg)
{
	/* An unlimited receive size lets any peer make us allocate at will;
	 * quick reconnects let a restarted service rejoin within ~100 ms. */
	if (nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, max_msg) != 0 ||
	    nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 100) != 0 ||
	    nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 2000) != 0)
		return ASH_EINTERNAL;
	return ASH_OK;
}

ash_err
ash__bus_dial_all(nng_socket s, const char *urls)
{
	char   *list = ash_xstrdup(urls), *save = NULL;
	ash_err rv = ASH_OK;
	int     n  = 0;

	for (char *u = strtok_r(list, ",", &save); u != NULL;
	     u       = strtok_r(NULL, ",", &save)) {
		u += strspn(u, " ");
		if (*u == '\0')
			continue;
		/* NONBLOCK: a peer that is down now is dialed again until it
		 * comes up, instead of failing our start-up. */
		if (nng_dial(s, u, NULL, NNG_FLAG_NONBLOCK) != 0) {
			rv = ASH_EINVAL;
			break;
		}
		n++;
	}
	free(list);
	return (rv == ASH_OK && n == 0) ? ASH_EINVAL : rv;
}
