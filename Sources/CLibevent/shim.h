#ifndef SWITCHYARD_CLIBEVENT_SHIM_H
#define SWITCHYARD_CLIBEVENT_SHIM_H
/* <sys/types.h> and the socket headers must come before any event2/ header:
   event-config.h defines _GNU_SOURCE, and if it came first glibc's declarations
   would differ between modules (clean builds fail on fd_set). */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <sys/syscall.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <event2/util.h>

/* accept4 and getrandom are GNU extensions that Glibc does not show to Swift. */
static inline int sy_accept4(int fd, struct sockaddr *addr, socklen_t *length, int flags) {
    return (int)syscall(SYS_accept4, fd, addr, length, flags);
}
static inline long sy_getrandom(void *buffer, size_t length) {
    return syscall(SYS_getrandom, buffer, length, 0);
}

/* recv and writev without glibc's thread-cancellation bookkeeping (workers are never
   cancelled); measured at about 1.5% of a proxied request. */
static inline ssize_t sy_recv(int fd, void *buffer, size_t length) {
    return syscall(SYS_recvfrom, fd, buffer, length, 0, (void *)0, (void *)0);
}
static inline ssize_t sy_writev(int fd, const struct iovec *vectors, int count) {
    return syscall(SYS_writev, fd, vectors, count);
}

static inline short sy_ev_read(void) { return EV_READ; }
static inline short sy_ev_write(void) { return EV_WRITE; }
static inline short sy_ev_persist(void) { return EV_PERSIST; }
static inline short sy_ev_timeout(void) { return EV_TIMEOUT; }
static inline short sy_ev_signal(void) { return EV_SIGNAL; }
#endif
