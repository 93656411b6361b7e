/*
 * The signer's seccomp allowlist, loaded after the key is read and the audit log is open.
 * It receives session sockets from the master (fd passing), answers on them and appends to
 * the audit log (reading its last record back under a lock). It cannot open files, create
 * sockets, connect, exec or fork.
 */
#include <linux/mman.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <stddef.h>
#include <stdio.h>

#include "../lib/fd_layout.h"
#include "policy.h"

const struct policy_rule signer_policy[] = {
    {"read", POLICY_ALLOW, 0, 0, NULL},
    {"write", POLICY_ALLOW, 0, 0, "audit log lines and stderr"},
    {"sendmsg", POLICY_ALLOW, 0, 0, NULL},
    {"accept4", POLICY_ALLOW_ARG_EQ, 0, CLSGW_SIGNER_FIRST_FD, "as a service of its own: the master connects to the socket on fd 3"},
    {"getsockopt", POLICY_ALLOW_ARG_EQ, 2, SO_PEERCRED, "who connected to fd 3: only the master's uid is served"},
    {"ioctl", POLICY_ALLOW_ARG_EQ, 1, SIOCOUTQ, "answers a session has not read yet"},
    {"recvmsg", POLICY_ALLOW, 0, 0, "requests, and session fds from the master"},
    {"sendto", POLICY_ALLOW, 0, 0, NULL},
    {"recvfrom", POLICY_ALLOW, 0, 0, NULL},
    POLICY_POLL_ROWS
    {"close", POLICY_ALLOW, 0, 0, NULL},
    {"fdatasync", POLICY_ALLOW, 0, 0, "audit lines reach the disk"},
    {"flock", POLICY_ALLOW, 0, 0, "one appender at a time on the shared audit log (a reload's new signer)"},
    {"lseek", POLICY_ALLOW_ARG_EQ, 2, SEEK_END, "the audit log's size, to read its last record"},
    {"pread64", POLICY_ALLOW, 0, 0, "the audit log's last record, where the chain continues"},
    {"getrandom", POLICY_ALLOW, 0, 0, "ECDSA blinding"},
    POLICY_COMMON_ROWS
    POLICY_SANITIZER_ROWS
    {NULL, POLICY_ALLOW, 0, 0, NULL},
};
