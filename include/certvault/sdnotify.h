/* Readiness and state for a service manager: systemd's sd_notify protocol, written by hand
 * (one datagram to $NOTIFY_SOCKET), so certvaultd needs no libsystemd. */
#ifndef CERTVAULT_SDNOTIFY_H
#define CERTVAULT_SDNOTIFY_H

/* Sends state ("READY=1", "RELOADING=1", "STOPPING=1", "STATUS=...", several separated by
 * newlines) to $NOTIFY_SOCKET when it is set (an absolute path, or "@name" in the abstract
 * namespace); nothing otherwise. Returns 1 sent, 0 no socket set, -1 it could not be sent
 * (errno set). */
int cv_sd_notify(const char *state);

#endif
