/*
 * The fds a child of clsgwd finds at exec (exec_child places them; the seccomp tables filter
 * by them; the children use them by these names). C and C++.
 */
#ifndef CLSGW_FD_LAYOUT_H
#define CLSGW_FD_LAYOUT_H

/* clsgw-worker */
#define CLSGW_WORKER_CONTROL_FD 3    /* its control socket to the master */
#define CLSGW_WORKER_CONNECTION_FD 4 /* the accepted connection (a spare: passed later over fd 3) */
#define CLSGW_WORKER_SIGNER_FD 5     /* its signer session */

/* clsgw-signer */
#define CLSGW_SIGNER_FIRST_FD 3 /* the control socket from clsgwd, or the listening socket from systemd */
#define CLSGW_SIGNER_AUDIT_FD 4 /* the audit log, once opened */

/* The first fd exec_child places; the others follow it. */
#define CLSGW_CHILD_FIRST_FD 3

#endif
