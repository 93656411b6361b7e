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

/* Each table ends with an entry whose syscall is NULL. */
extern const struct policy_rule worker_policy[];
extern const struct policy_rule signer_policy[];

#ifdef __cplusplus
}
#endif

#endif
