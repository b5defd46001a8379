#ifndef SWITCHYARD_CPROCESSCONTROL_SHIM_H
#define SWITCHYARD_CPROCESSCONTROL_SHIM_H
#include <sys/prctl.h>
#include <signal.h>

/* prctl is variadic, which Swift cannot call: the kernel sends SIGKILL to this process
   when the thread that started it exits (`deploy run --die-with-parent`). */
static inline int sy_kill_when_parent_exits(void) {
    return prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
}
#endif
