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
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/bufferevent_ssl.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <pwd.h>

/* The peer's user id on a Unix socket. glibc declares struct ucred only under _GNU_SOURCE,
   which must not be defined here (see the note above), so this mirrors the kernel's layout. */
struct sy_ucred { pid_t pid; uid_t uid; gid_t gid; };
static inline int sy_peer_uid(int fd, unsigned int *uid) {
    struct sy_ucred cred;
    socklen_t length = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return -1;
    *uid = cred.uid;
    return 0;
}

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

/* Passing listening sockets between processes (SCM_RIGHTS); the CMSG macros do not import
   into Swift. At most 253 descriptors per message (the kernel's SCM_MAX_FD). */
static inline ssize_t sy_send_fds(int sock, const int *fds, int count, const void *data, size_t length) {
    struct iovec vector = { (void *)data, length };
    char control[CMSG_SPACE(sizeof(int) * 253)];
    struct msghdr message = { 0 };
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    if (count > 0) {
        if (count > 253) return -1;
        message.msg_control = control;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * count);
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * count);
        int *slot = (int *)CMSG_DATA(header);
        for (int i = 0; i < count; i++) slot[i] = fds[i];
    }
    return sendmsg(sock, &message, 0);
}

static inline ssize_t sy_recv_fds(int sock, int *fds, int max, int *count, void *data, size_t length) {
    struct iovec vector = { data, length };
    char control[CMSG_SPACE(sizeof(int) * 253)];
    struct msghdr message = { 0 };
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    ssize_t received = recvmsg(sock, &message, 0);
    *count = 0;
    if (received < 0) return received;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS) {
            int n = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int *slot = (int *)CMSG_DATA(header);
            for (int i = 0; i < n && *count < max; i++) fds[(*count)++] = slot[i];
        }
    }
    return received;
}

static inline short sy_ev_read(void) { return EV_READ; }
static inline short sy_ev_write(void) { return EV_WRITE; }
static inline short sy_ev_persist(void) { return EV_PERSIST; }
static inline short sy_ev_timeout(void) { return EV_TIMEOUT; }
static inline short sy_ev_signal(void) { return EV_SIGNAL; }
#endif
