// The seccomp tables as libseccomp builds them, without loading them: for the tests that read
// the filters (test code only; the programs never export their filters).
#pragma once

#include <string>

#include "../../sandbox/policy.h"

namespace clsgw {

// The filter as BPF for architecture `arch` ("x86_64" or "aarch64"). Empty on error.
std::string export_policy_bpf(const policy_rule *policy, const std::string &arch);
// The same filter as libseccomp's pseudo filter code (syscall names and actions), for checks.
std::string export_policy_pfc(const policy_rule *policy, const std::string &arch);

} // namespace clsgw
