/*
 * bus.c - shared NNG helpers: error mapping, socket options, dialing.
 */
#include "bus_impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#define CLOSE_WAIT_MS 3000

typedef struct closer {
	pthread_mutex_t mtx;
	pthread_cond_t  cv;
	nng_socket      sock;
	bool            done;
	int             refs; /* the caller and the thread */
} closer;

/* Objects kept alive for sockets NNG never finished closing. */
static pthread_mutex_t parked_mtx = PTHREAD_MUTEX_INITIALIZER;
static void          **parked;
static size_t          nparked;

static void
closer_rele(closer *c)
{
	bool last;

	pthread_mutex_lock(&c->mtx);
	last = --c->refs == 0;
	pthread_mutex_unlock(&c->mtx);
	if (last) {
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mtx);
		free(c);
	}
}

static void *
closer_main(void *arg)
{
	closer *c = arg;

	nng_close(c->sock);
	pthread_mutex_lock(&c->mtx);
	c->done = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mtx);
	closer_rele(c);
	return NULL;
}

static void
park(void *keep)
{
	pthread_mutex_lock(&parked_mtx);
	parked = ash_xrealloc(parked, (nparked + 1) * sizeof(*parked));
	parked[nparked++] = keep;
	pthread_mutex_unlock(&parked_mtx);
}

bool
ash__bus_close(nng_socket s, const char *what, void *keep)
{
	closer         *c = ash_xcalloc(1, sizeof(*c));
	pthread_t       t;
	struct timespec until;
	bool            done;

	pthread_mutex_init(&c->mtx, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->sock = s;
	c->refs = 2;
	if (pthread_create(&t, NULL, closer_main, c) != 0) {
		c->refs = 1;
		closer_main(c); /* no thread to spare: wait in place */
		return true;
	}
	pthread_detach(t);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += CLOSE_WAIT_MS / 1000;
	pthread_mutex_lock(&c->mtx);
	while (
	    !c->done && pthread_cond_timedwait(&c->cv, &c->mtx, &until) == 0)
		;
	done = c->done;
	pthread_mutex_unlock(&c->mtx);
	closer_rele(c);
	if (!done) {
		ash_log_error(NULL, "BUS-CLOSE-STUCK",
		    "NNG did not finish closing the %s socket in %d ms "
		    "(NNG 1.5.2 close race); abandoning it",
		    what, CLOSE_WAIT_MS);
		park(keep);
	}
	return done;
}
