// Confinement of the worker and the signer: the documented order, in two steps.
//
//   sandbox_prepare():  fds closed, SIGPIPE ignored, tzset, rlimits, not dumpable, no_new_privs
//   (the caller parses certificates and seeds its DRBG here, while files are still reachable)
//   sandbox_lockdown(): capabilities dropped (uid changed when privileged), seccomp loaded
#pragma once

#include <sys/types.h>

#include <string>

#include "policy.h"

namespace clsgw {

struct sandbox_limits {
    int highest_fd = 6;      // fds 0..highest_fd stay open; RLIMIT_NOFILE is set just above
    bool keep_fsize = false; // the signer appends to its audit log
};

// Returns an empty string on success, else what failed (the caller must exit).
std::string sandbox_prepare(int keep_up_to_fd, const sandbox_limits &limits);
// uid/gid < 0: keep the current ids and drop every capability.
std::string sandbox_lockdown(const policy_rule *policy, long uid, long gid);

// Adds a table's rules, and the bad-architecture action, to a libseccomp filter context
// (scmp_filter_ctx) made with seccomp_init(SCMP_ACT_KILL_PROCESS); what failed, or empty.
std::string sandbox_build_filter(void *ctx, const policy_rule *policy);

} // namespace clsgw
