#include "policy_export.hpp"

#include <seccomp.h>
#include <unistd.h>

#include <cstdlib>

#include "../../lib/fd.hpp"
#include "../../sandbox/sandbox.hpp"

namespace clsgw {

namespace {

struct filter {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    ~filter()
    {
        if (ctx)
            seccomp_release(ctx);
    }
};

std::string export_policy(const policy_rule *policy, const std::string &arch, bool pfc)
{
    filter f;
    uint32_t token = seccomp_arch_resolve_name(arch.c_str());
    if (token == 0 || !f.ctx)
        return {};
    if (token != seccomp_arch_native()) {
        if (seccomp_arch_add(f.ctx, token) != 0 || seccomp_arch_remove(f.ctx, SCMP_ARCH_NATIVE) != 0)
            return {};
    }
    if (!sandbox_build_filter(f.ctx, policy).empty())
        return {};
    char path[] = "/tmp/clsgw-bpf-XXXXXX";
    unique_fd fd(mkstemp(path));
    if (!fd)
        return {};
    unlink(path);
    if ((pfc ? seccomp_export_pfc(f.ctx, fd.get()) : seccomp_export_bpf(f.ctx, fd.get())) != 0)
        return {};
    std::string out;
    char buf[4096];
    lseek(fd.get(), 0, SEEK_SET);
    ssize_t n;
    while ((n = read(fd.get(), buf, sizeof buf)) > 0)
        out.append(buf, static_cast<size_t>(n));
    return out;
}

} // namespace

std::string export_policy_bpf(const policy_rule *policy, const std::string &arch)
{
    return export_policy(policy, arch, false);
}

std::string export_policy_pfc(const policy_rule *policy, const std::string &arch)
{
    return export_policy(policy, arch, true);
}

} // namespace clsgw
