// What `clsgwd -t` and a reload check beyond the syntax: the files the configuration names
// (and their modes), the worker user, the helper programs.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../../lib/config.hpp"
#include "master.hpp"

namespace clsgw {

struct checked {
    std::string certificate_pem;
    std::map<std::string, std::string> trust_pems; // by path
    long uid = -1, gid = -1;
    master_paths paths;
    std::vector<std::string> warnings; // worth fixing, but no reason to refuse the configuration
    std::vector<std::string> notes;    // why something that looks wrong is fine here
};

checked check_environment(const config &cfg, std::vector<config_error> &errors);

// clsgwd -t: the key pair as the start would load it, checked by clsgw-signer itself (the only
// program that reads the key) when clsgwd starts the signer. Waits for that program's run: never
// called from the master's loop.
void check_key_pair(const config &cfg, checked &c, std::vector<config_error> &errors);
// The start, when clsgwd starts the signer: the audit log's folder when it is missing (its
// parent exists: check_environment said so), as clsgwd.service's LogsDirectory= would.
void make_audit_folder(const config &cfg);
// clsgwd -t and the start: ports below 1024 that clsgwd would have to bind without the right to,
// and sockets from systemd whose address is not the channel's listen.
void check_listeners(const config &cfg, checked &c, std::vector<config_error> &errors);
// The configuration file as the start, `clsgwd -t`, a reload and `clsgwctl check` all see it:
// parsed (load_config), then checked (check_environment). Usable when errors is empty.
struct loaded_config {
    std::optional<config> value;
    checked env;
    std::vector<config_error> errors;
};
loaded_config load_and_check(const std::string &file);

} // namespace clsgw
