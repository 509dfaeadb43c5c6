/*
 * bus_impl.h - libashoon-internal pieces shared by bus*.c.
 */
#ifndef ASHOON_BUS_IMPL_H
#define ASHOON_BUS_IMPL_H

#include <ashoon/bus.h>

#include <nng/nng.h>

#include <stdbool.h>

/* NNG error -> ash_err, at the lowest layer (STYLE §4). */
ash_err ash__bus_err(int nngrv);

/* Sets the receive cap and fast reconnects on a socket. */
ash_err ash__bus_sock_opts(nng_socket s, size_t max_msg);

/* nng_close(s), but never for longer than a few seconds: NNG 1.5.2 can
 * wait forever for a TCP pipe whose message was being read as the socket
 * closed. False if it did not return in time: the socket is abandoned
 * (logged as BUS-CLOSE-STUCK) and the caller must keep every object NNG
 * might still call back into (pass it as keep: it is parked where it stays
 * reachable, for leak checkers too). */
bool ash__bus_close(nng_socket s, const char *what, void *keep);

/* Dials every address in a comma-separated list, in the background. */
ash_err ash__bus_dial_all(nng_socket s, const char *urls);

#endif
