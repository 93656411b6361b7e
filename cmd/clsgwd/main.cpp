// clsgwd: the master. Reads the configuration, takes or binds the listeners, starts the
// signer and serves channels until SIGTERM. `clsgwd -t` only validates the configuration.
#include <getopt.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <map>

#include "../../lib/config.hpp"
#include "../../lib/log.hpp"
#include "../../lib/tls/tls.hpp"
#include "../../lib/util.hpp"
#include "environment.hpp"
#include "master.hpp"

using namespace clsgw;

namespace {

void usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: clsgwd -c FILE        run in the foreground\n"
            "       clsgwd -t -c FILE     check the configuration and exit (0 = valid)\n"
            "       clsgwd -h\n");
    exit(code);
}

} // namespace

int main(int argc, char **argv)
{
    if (tls::print_version(argc, argv, "clsgwd"))
        return 0;
    std::string file;
    bool test_only = false;
    int opt;
    while ((opt = getopt(argc, argv, "c:th")) != -1) {
        switch (opt) {
        case 'c': file = optarg; break;
        case 't': test_only = true; break;
        case 'h': usage(0); break;
        default: usage(2);
        }
    }
    if (file.empty() || optind != argc)
        usage(2);

    loaded_config loaded = load_and_check(file);
    std::vector<config_error> &errors = loaded.errors;
    checked &env = loaded.env;
    if (loaded.value) {
        check_listeners(*loaded.value, env, errors); // not on reload: the listeners in use stay
        // The start leaves this to the signer it starts, which says why it refuses a key.
        if (test_only && errors.empty())
            check_key_pair(*loaded.value, env, errors);
    }
    if (!errors.empty()) {
        std::string err = journal_prefix(log_level::error); // ExecStartPre's errors reach journalctl -p err
        for (const auto &e : errors)
            fprintf(stderr, "%s%s\n", err.c_str(), e.to_string().c_str());
        fprintf(stderr, "%sclsgwd: %zu error(s) in %s\n", err.c_str(), errors.size(), file.c_str());
        return 1;
    }
    if (test_only) {
        for (const auto &w : env.warnings)
            fprintf(stderr, "%sclsgwd: warning: %s\n", journal_prefix(log_level::warn).c_str(), w.c_str());
        for (const auto &n : env.notes)
            fprintf(stderr, "%sclsgwd: note: %s\n", journal_prefix(log_level::info).c_str(), n.c_str());
        printf("clsgwd: configuration %s is valid (%zu channel(s))\n", file.c_str(), loaded.value->channels.size());
        return 0;
    }

    config cfg = std::move(*loaded.value);
    log_init("clsgwd", cfg.level);
    std::string why;
    if (!log_set_target(cfg.target, cfg.log_file, &why))
        fatal("cannot open the log file", log_fields().add("path", cfg.log_file).add("error", why));
    for (const auto &w : env.warnings)
        log_warn(w);
    for (const auto &n : env.notes)
        log_info(n);
    make_audit_folder(cfg);
    master m(std::move(cfg), env.paths, env.certificate_pem, env.trust_pems, env.uid, env.gid);
    std::string err;
    if (!m.open_listeners(err))
        fatal("cannot start", log_fields().add("error", err));
    return m.run();
}
