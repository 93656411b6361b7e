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

// Builds the filter without loading it and exports it as BPF for architecture `arch`
// ("x86_64" or "aarch64"); used by tests and the policy check. Empty on error.
std::string export_policy_bpf(const policy_rule *policy, const std::string &arch);
// The same filter as libseccomp's pseudo filter code (syscall names and actions), for checks.
std::string export_policy_pfc(const policy_rule *policy, const std::string &arch);

} // namespace clsgw
