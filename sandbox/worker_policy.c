/*
 * The worker's seccomp allowlist. Default action and bad-architecture action: KILL_PROCESS.
 * The worker holds one app connection (fd 4), its control socket to the master (fd 3), its
 * signer session (fd 5) and the upstream socket the master passed (fd 6). It cannot open
 * files, create sockets, connect, exec or fork: each of those kills it.
 */
#include <linux/mman.h>
#include <sys/mman.h>

#include <stddef.h>

#include "policy.h"

#define CONTROL_FD 3
#define SIGNER_FD 5

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
    {"poll", POLICY_ALLOW, 0, 0, NULL},
    {"ppoll", POLICY_ALLOW, 0, 0, "aarch64 glibc implements poll() with ppoll"},
    /* framed IPC: only on the control socket and the signer session */
    {"sendmsg", POLICY_ALLOW_ARG_EQ, 0, CONTROL_FD, "reports and requests to the master"},
    {"sendmsg", POLICY_ALLOW_ARG_EQ, 0, SIGNER_FD, "signature requests"},
    {"recvmsg", POLICY_ALLOW_ARG_EQ, 0, CONTROL_FD, "answers and the passed upstream fd"},
    {"recvmsg", POLICY_ALLOW_ARG_EQ, 0, SIGNER_FD, "signature answers"},
    /* randomness and time */
    {"getrandom", POLICY_ALLOW, 0, 0, "DRBG reseeds; ENOSYS would make mbedTLS fall back to /dev/urandom"},
    {"clock_gettime", POLICY_ALLOW, 0, 0, "vDSO fallback"},
    {"gettimeofday", POLICY_ALLOW, 0, 0, "vDSO fallback"},
    /* memory */
    {"brk", POLICY_ALLOW, 0, 0, NULL},
    {"munmap", POLICY_ALLOW, 0, 0, NULL},
    {"mremap", POLICY_ALLOW, 0, 0, NULL},
    {"mmap", POLICY_ALLOW_ARG_NOBITS, 2, PROT_EXEC, "malloc's large chunks; never executable"},
    {"mprotect", POLICY_ALLOW_ARG_NOBITS, 2, PROT_EXEC, "malloc arenas; never executable"},
    {"madvise", POLICY_ALLOW_ARG_EQ, 2, MADV_DONTNEED, "free() returning memory"},
    {"madvise", POLICY_ALLOW_ARG_EQ, 2, MADV_FREE, "free() returning memory"},
    /* SIGSTOP then SIGCONT (a debugger, the cgroup freezer) resumes a poll() that was waiting
     * with restart_syscall on x86_64; aarch64's ppoll is re-entered as itself */
    {"restart_syscall", POLICY_ALLOW, 0, 0, "a stopped and continued poll() resumes"},
    /* ending, and abort() so that a failed assertion is reported as SIGABRT, not SIGSYS */
    {"exit", POLICY_ALLOW, 0, 0, NULL},
    {"exit_group", POLICY_ALLOW, 0, 0, NULL},
    {"rt_sigprocmask", POLICY_ALLOW, 0, 0, "abort()"},
    {"getpid", POLICY_ALLOW, 0, 0, "abort()"},
    {"gettid", POLICY_ALLOW, 0, 0, "abort()"},
    {"tgkill", POLICY_ALLOW_ARG_SELF, 0, 0, "abort() signals only itself"},
    /* Opening a file kills (open and openat are not listed): nothing in the worker opens files
     * after its sandbox (tzset and the DRBG run first), and a kill shows any path that would.
     * Looking at file metadata fails softly. */
    {"stat", POLICY_SOFT_DENY, 0, 0, NULL},
    {"lstat", POLICY_SOFT_DENY, 0, 0, NULL},
    {"fstat", POLICY_SOFT_DENY, 0, 0, NULL},
    {"newfstatat", POLICY_SOFT_DENY, 0, 0, NULL},
    {"statx", POLICY_SOFT_DENY, 0, 0, NULL},
    {"access", POLICY_SOFT_DENY, 0, 0, NULL},
    {"faccessat", POLICY_SOFT_DENY, 0, 0, NULL},
    POLICY_SANITIZER_ROWS
    {NULL, POLICY_ALLOW, 0, 0, NULL},
};
