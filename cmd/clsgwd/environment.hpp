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
};

checked check_environment(const config &cfg, std::vector<config_error> &errors);

// The configuration file as the start, `clsgwd -t`, a reload and `clsgwctl check` all see it:
// parsed (load_config), then checked (check_environment). Usable when errors is empty.
struct loaded_config {
    std::optional<config> value;
    checked env;
    std::vector<config_error> errors;
};
loaded_config load_and_check(const std::string &file);

} // namespace clsgw
