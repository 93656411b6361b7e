// clsgw-signer's command line.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../../lib/log.hpp"

namespace clsgw {

struct options {
    std::string key_path, certificate_path, audit_path;
    unsigned max_sessions = 64;
    log_level level = log_level::info;
    std::vector<uid_t> master_uids; // empty: uid 0 only
    unsigned refusals_per_window = 10;
    uint64_t refusal_window_ms = 60 * 1000;
    bool check_only = false; // --check: load and check the key pair, then exit
    // --retire-wait: how long a signer whose audit log a newer signer closed waits to be retired
    // (a reload's commit lets go of it) before it ends itself; clsgwd passes twice its
    // signer_timeout, the longest it waits for a reload's signer.
    uint64_t retire_wait_ms = 60 * 1000;
};

// Parses argv; a wrong option ends the program with the usage text (exit 2).
options parse_options(int argc, char **argv);

} // namespace clsgw
