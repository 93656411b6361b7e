/*
 * Seccomp policies as tables: one entry per line, with the reason for anything that is
 * filtered by argument. Names are resolved per architecture by libseccomp, so the same
 * table builds for x86_64 and aarch64 (a name an architecture lacks, such as poll on
 * aarch64, is skipped there).
 */
#ifndef CLSGW_POLICY_H
#define CLSGW_POLICY_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum policy_kind {
    POLICY_ALLOW,            /* allowed unconditionally */
    POLICY_SOFT_DENY,        /* fails with EACCES: calls libraries make by accident */
    POLICY_ALLOW_ARG_EQ,     /* allowed when argument `arg` equals `value` */
    POLICY_ALLOW_ARG_NOBITS, /* allowed when argument `arg` has none of the bits in `value` */
    POLICY_ALLOW_ARG_SELF,   /* allowed when argument `arg` is the process's own pid */
};

struct policy_rule {
    const char *syscall;
    enum policy_kind kind;
    unsigned arg;
    uint64_t value;
    const char *why;
};

/* make SANITIZE=...: what the ASan/UBSan runtime itself needs, in every table; never in release
 * builds. The tables that use it include <sys/mman.h>. */
#ifdef CLSGW_SANITIZER_RUNTIME
#define POLICY_SANITIZER_ROWS \
    {"madvise", POLICY_ALLOW_ARG_EQ, 2, MADV_NOHUGEPAGE, "sanitizer shadow memory"}, \
    {"madvise", POLICY_ALLOW_ARG_EQ, 2, MADV_DONTDUMP, "sanitizer shadow memory"}, \
    {"sigaltstack", POLICY_ALLOW, 0, 0, "sanitizer deadly-signal handling"}, \
    {"rt_sigaction", POLICY_ALLOW, 0, 0, "sanitizer deadly-signal handling"},
#else
#define POLICY_SANITIZER_ROWS
#endif

/* Rows both tables share (they include <sys/mman.h> and <linux/mman.h>). */
/* waiting, and the clock */
#define POLICY_POLL_ROWS \
    {"poll", POLICY_ALLOW, 0, 0, NULL}, \
    {"ppoll", POLICY_ALLOW, 0, 0, "aarch64 glibc implements poll() with ppoll"},
/* the clock, memory (malloc and free, never executable), being stopped and continued, ending
 * (and abort(), so that a failed assertion is reported as SIGABRT, not SIGSYS); looking at file
 * metadata fails softly, while opening a file kills (open and openat are not listed) */
#define POLICY_COMMON_ROWS \
    {"clock_gettime", POLICY_ALLOW, 0, 0, "vDSO fallback"}, \
    {"gettimeofday", POLICY_ALLOW, 0, 0, "vDSO fallback"}, \
    {"brk", POLICY_ALLOW, 0, 0, NULL}, \
    {"munmap", POLICY_ALLOW, 0, 0, NULL}, \
    {"mremap", POLICY_ALLOW, 0, 0, NULL}, \
    {"mmap", POLICY_ALLOW_ARG_NOBITS, 2, PROT_EXEC, "malloc's large chunks; never executable"}, \
    {"mprotect", POLICY_ALLOW_ARG_NOBITS, 2, PROT_EXEC, "malloc arenas; never executable"}, \
    {"madvise", POLICY_ALLOW_ARG_EQ, 2, MADV_DONTNEED, "free() returning memory"}, \
    {"madvise", POLICY_ALLOW_ARG_EQ, 2, MADV_FREE, "free() returning memory"}, \
    {"restart_syscall", POLICY_ALLOW, 0, 0, "SIGSTOP/SIGCONT resume a waiting poll() this way (x86_64)"}, \
    {"exit", POLICY_ALLOW, 0, 0, NULL}, \
    {"exit_group", POLICY_ALLOW, 0, 0, NULL}, \
    {"rt_sigprocmask", POLICY_ALLOW, 0, 0, "abort()"}, \
    {"getpid", POLICY_ALLOW, 0, 0, "abort()"}, \
    {"gettid", POLICY_ALLOW, 0, 0, "abort()"}, \
    {"tgkill", POLICY_ALLOW_ARG_SELF, 0, 0, "abort() signals only itself"}, \
    {"stat", POLICY_SOFT_DENY, 0, 0, NULL}, \
    {"fstat", POLICY_SOFT_DENY, 0, 0, NULL}, \
    {"newfstatat", POLICY_SOFT_DENY, 0, 0, NULL}, \
    {"statx", POLICY_SOFT_DENY, 0, 0, NULL},

/* Each table ends with an entry whose syscall is NULL. */
extern const struct policy_rule worker_policy[];
extern const struct policy_rule signer_policy[];

#ifdef __cplusplus
}
#endif

#endif
