/*
 * The worker's seccomp allowlist. Default action and bad-architecture action: KILL_PROCESS.
 * The worker holds one app connection (fd 4), its control socket to the master (fd 3), its
 * signer session (fd 5) and the upstream socket the master passed (fd 6). It cannot open
 * files, create sockets, connect, exec or fork: each of those kills it.
 */
#include <linux/mman.h>
#include <sys/mman.h>

#include <stddef.h>

#include "../lib/fd_layout.h"
#include "policy.h"

#define CONTROL_FD CLSGW_WORKER_CONTROL_FD
#define SIGNER_FD CLSGW_WORKER_SIGNER_FD

const struct policy_rule worker_policy[] = {
    /* relay and TLS I/O */
    {"read", POLICY_ALLOW, 0, 0, NULL},
    {"write", POLICY_ALLOW, 0, 0, NULL},
    {"readv", POLICY_ALLOW, 0, 0, NULL},
    {"writev", POLICY_ALLOW, 0, 0, NULL},
    {"recvfrom", POLICY_ALLOW, 0, 0, NULL},
    {"sendto", POLICY_ALLOW, 0, 0, NULL},
    {"shutdown", POLICY_ALLOW, 0, 0, NULL},
    {"close", POLICY_ALLOW, 0, 0, NULL},
    POLICY_POLL_ROWS
    /* framed IPC: only on the control socket and the signer session */
    {"sendmsg", POLICY_ALLOW_ARG_EQ, 0, CONTROL_FD, "reports and requests to the master"},
    {"sendmsg", POLICY_ALLOW_ARG_EQ, 0, SIGNER_FD, "signature requests"},
    {"recvmsg", POLICY_ALLOW_ARG_EQ, 0, CONTROL_FD, "answers and the passed upstream fd"},
    {"recvmsg", POLICY_ALLOW_ARG_EQ, 0, SIGNER_FD, "signature answers"},
    /* randomness and time */
    {"getrandom", POLICY_ALLOW, 0, 0, "DRBG reseeds; ENOSYS would make mbedTLS fall back to /dev/urandom"},
    POLICY_COMMON_ROWS
    /* Nothing in the worker opens files after its sandbox (tzset and the DRBG run first), and a
     * kill shows any path that would. */
    {"lstat", POLICY_SOFT_DENY, 0, 0, NULL},
    {"access", POLICY_SOFT_DENY, 0, 0, NULL},
    {"faccessat", POLICY_SOFT_DENY, 0, 0, NULL},
    POLICY_SANITIZER_ROWS
    {NULL, POLICY_ALLOW, 0, 0, NULL},
};
