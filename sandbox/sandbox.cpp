#include "sandbox.hpp"

#include <cap-ng.h>
#include <fcntl.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>

#include "../lib/fd.hpp"
#include "../lib/util.hpp"

namespace clsgw {

namespace {

bool set_limit(int resource, rlim_t value)
{
    struct rlimit rl = {value, value};
    return setrlimit(resource, &rl) == 0;
}

// Adds the rules of a table to ctx; returns the first error as text.
std::string add_rules(scmp_filter_ctx ctx, const policy_rule *policy)
{
    for (const policy_rule *r = policy; r->syscall; r++) {
        int nr = seccomp_syscall_resolve_name(r->syscall);
        if (nr == __NR_SCMP_ERROR)
            continue; // not on this architecture (poll on aarch64)
        int rc = 0;
        switch (r->kind) {
        case POLICY_ALLOW:
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
            break;
        case POLICY_SOFT_DENY:
            rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), nr, 0);
            break;
        case POLICY_ALLOW_ARG_EQ:
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, SCMP_CMP(r->arg, SCMP_CMP_EQ, r->value));
            break;
        case POLICY_ALLOW_ARG_NOBITS:
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, SCMP_CMP(r->arg, SCMP_CMP_MASKED_EQ, r->value, 0));
            break;
        case POLICY_ALLOW_ARG_SELF:
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
                                  SCMP_CMP(r->arg, SCMP_CMP_EQ, static_cast<scmp_datum_t>(getpid())));
            break;
        }
        if (rc != 0)
            return std::string("seccomp rule for ") + r->syscall + ": " + errno_text(-rc);
    }
    return {};
}

struct filter {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    ~filter()
    {
        if (ctx)
            seccomp_release(ctx);
    }
};

std::string build(filter &f, const policy_rule *policy)
{
    if (!f.ctx)
        return "seccomp_init failed";
    return sandbox_build_filter(f.ctx, policy);
}

std::string drop_capabilities(long uid, long gid)
{
    capng_clear(CAPNG_SELECT_BOTH);
    if (uid >= 0 && (static_cast<uid_t>(uid) != getuid() || static_cast<gid_t>(gid) != getgid())) {
        capng_flags_t flags = static_cast<capng_flags_t>(CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_AMBIENT);
        capng_get_caps_process();
        if (capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP))
            flags = static_cast<capng_flags_t>(flags | CAPNG_CLEAR_BOUNDING);
        capng_clear(CAPNG_SELECT_BOTH);
        int rc = capng_change_id(static_cast<int>(uid), static_cast<int>(gid), flags);
        if (rc != 0)
            return "capng_change_id to " + std::to_string(uid) + ":" + std::to_string(gid) + " failed (" +
                   std::to_string(rc) + ")";
    } else {
        // Without CAP_SETPCAP the bounding set cannot change, and libcap-ng says so at syslog
        // priority err on every start: a false alarm for a process that holds no capability and
        // can gain none (no_new_privs, no exec). Clear the sets it can clear.
        capng_get_caps_process();
        bool setpcap = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP);
        capng_clear(CAPNG_SELECT_BOTH);
        if (capng_apply(setpcap ? CAPNG_SELECT_BOTH : CAPNG_SELECT_CAPS) != 0)
            return "capng_apply failed";
    }
    capng_get_caps_process();
    if (capng_have_capabilities(CAPNG_SELECT_CAPS) != CAPNG_NONE)
        return "capabilities still held after dropping them";
    return {};
}

} // namespace

std::string sandbox_build_filter(void *ctx, const policy_rule *policy)
{
    if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) != 0)
        return "seccomp: cannot set the bad-architecture action";
    return add_rules(ctx, policy);
}

std::string sandbox_prepare(int keep_up_to_fd, const sandbox_limits &limits)
{
    if (syscall(SYS_close_range, static_cast<unsigned>(keep_up_to_fd + 1), ~0U, 0) != 0)
        for (int fd = keep_up_to_fd + 1; fd < 1024; fd++)
            close(fd);
    signal(SIGPIPE, SIG_IGN);
    tzset(); // glibc would open /etc/localtime lazily on the first time conversion
    if (!set_limit(RLIMIT_NOFILE, static_cast<rlim_t>(limits.highest_fd + 2)))
        return "setrlimit(RLIMIT_NOFILE): " + errno_text(errno);
    if (!limits.keep_fsize && !set_limit(RLIMIT_FSIZE, 0))
        return "setrlimit(RLIMIT_FSIZE): " + errno_text(errno);
    if (!set_limit(RLIMIT_NPROC, 0) || !set_limit(RLIMIT_CORE, 0))
        return "setrlimit(RLIMIT_NPROC/RLIMIT_CORE): " + errno_text(errno);
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return "prctl(PR_SET_DUMPABLE): " + errno_text(errno);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return "prctl(PR_SET_NO_NEW_PRIVS): " + errno_text(errno);
    return {};
}

std::string sandbox_lockdown(const policy_rule *policy, long uid, long gid)
{
    // libcap-ng reads /proc, so capabilities go before the filter.
    std::string err = drop_capabilities(uid, gid);
    if (!err.empty())
        return err;
    filter f;
    err = build(f, policy);
    if (!err.empty())
        return err;
    int rc = seccomp_load(f.ctx);
    if (rc != 0)
        return "seccomp_load: " + errno_text(-rc) + " (a service manager's own filter must allow 'seccomp')";
    return {};
}

} // namespace clsgw
