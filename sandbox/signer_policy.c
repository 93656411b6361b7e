/*
 * The signer's seccomp allowlist, loaded after the key is read and the audit log is open.
 * It receives session sockets from the master (fd passing), answers on them and appends to
 * the audit log. It cannot open files, create sockets, connect, exec or fork.
 */
#include <linux/mman.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <stddef.h>

#include "policy.h"

const struct policy_rule signer_policy[] = {
    {"read", POLICY_ALLOW, 0, 0, NULL},
    {"write", POLICY_ALLOW, 0, 0, "audit log lines and stderr"},
    {"sendmsg", POLICY_ALLOW, 0, 0, NULL},
    {"accept4", POLICY_ALLOW_ARG_EQ, 0, 3, "as a service of its own: the master connects to the socket on fd 3"},
    {"getsockopt", POLICY_ALLOW_ARG_EQ, 2, SO_PEERCRED, "who connected to fd 3: only the master's uid is served"},
    {"ioctl", POLICY_ALLOW_ARG_EQ, 1, SIOCOUTQ, "answers a session has not read yet"},
    {"recvmsg", POLICY_ALLOW, 0, 0, "requests, and session fds from the master"},
    {"sendto", POLICY_ALLOW, 0, 0, NULL},
    {"recvfrom", POLICY_ALLOW, 0, 0, NULL},
    {"poll", POLICY_ALLOW, 0, 0, NULL},
    {"ppoll", POLICY_ALLOW, 0, 0, "aarch64 glibc implements poll() with ppoll"},
    {"close", POLICY_ALLOW, 0, 0, NULL},
    {"fdatasync", POLICY_ALLOW, 0, 0, "audit lines reach the disk"},
    {"getrandom", POLICY_ALLOW, 0, 0, "ECDSA blinding"},
    {"clock_gettime", POLICY_ALLOW, 0, 0, "vDSO fallback"},
    {"gettimeofday", POLICY_ALLOW, 0, 0, "vDSO fallback"},
    {"brk", POLICY_ALLOW, 0, 0, NULL},
    {"munmap", POLICY_ALLOW, 0, 0, NULL},
    {"mremap", POLICY_ALLOW, 0, 0, NULL},
    {"mmap", POLICY_ALLOW_ARG_NOBITS, 2, PROT_EXEC, "malloc's large chunks; never executable"},
    {"mprotect", POLICY_ALLOW_ARG_NOBITS, 2, PROT_EXEC, "malloc arenas; never executable"},
    {"madvise", POLICY_ALLOW_ARG_EQ, 2, MADV_DONTNEED, "free() returning memory"},
    {"madvise", POLICY_ALLOW_ARG_EQ, 2, MADV_FREE, "free() returning memory"},
    {"restart_syscall", POLICY_ALLOW, 0, 0, "SIGSTOP/SIGCONT resume a waiting poll() this way (x86_64)"},
    {"exit", POLICY_ALLOW, 0, 0, NULL},
    {"exit_group", POLICY_ALLOW, 0, 0, NULL},
    {"rt_sigprocmask", POLICY_ALLOW, 0, 0, "abort()"},
    {"getpid", POLICY_ALLOW, 0, 0, "abort()"},
    {"gettid", POLICY_ALLOW, 0, 0, "abort()"},
    {"tgkill", POLICY_ALLOW_ARG_SELF, 0, 0, "abort() signals only itself"},
    /* opening a file kills, as in the worker; metadata lookups fail softly */
    {"stat", POLICY_SOFT_DENY, 0, 0, NULL},
    {"fstat", POLICY_SOFT_DENY, 0, 0, NULL},
    {"newfstatat", POLICY_SOFT_DENY, 0, 0, NULL},
    {"statx", POLICY_SOFT_DENY, 0, 0, NULL},
    POLICY_SANITIZER_ROWS
    {NULL, POLICY_ALLOW, 0, 0, NULL},
};
