/*
 * bus_impl.h - libashoon-internal pieces shared by bus*.c.
 */
#ifndef ASHOON_BUS_IMPL_H
#define ASHOON_BUS_IMPL_H

#include <ashoon/bus.h>

#include <nng/nng.h>

/* NNG error -> ash_err, at the lowest layer (STYLE §4). */
ash_err ash__bus_err(int nngrv);

/* Sets the receive cap and fast reconnects on a socket. */
ash_err ash__bus_sock_opts(nng_socket s, size_t max_msg);

/* Dials every address in a comma-separated list, in the background. */
ash_err ash__bus_dial_all(nng_socket s, const char *urls);

#endif
