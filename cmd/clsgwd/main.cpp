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
#include "master.hpp"

using namespace clsgw;

namespace {

constexpr const char *LIBEXEC_DIR = "/usr/libexec/clsgw";
constexpr size_t PEM_MAX = 48 * 1024;

void usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: clsgwd -c FILE        run in the foreground\n"
            "       clsgwd -t -c FILE     check the configuration and exit (0 = valid)\n"
            "       clsgwd -h\n");
    exit(code);
}

std::string exe_dir()
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        return ".";
    std::string path(buf, static_cast<size_t>(n));
    return path.substr(0, path.rfind('/'));
}

// A helper program: the configured path, else next to clsgwd, else the libexec folder.
std::string helper_path(const std::string &configured, const char *name)
{
    if (!configured.empty())
        return configured;
    std::string beside = exe_dir() + "/" + name;
    if (access(beside.c_str(), X_OK) == 0)
        return beside;
    return std::string(LIBEXEC_DIR) + "/" + name;
}

// Everything `-t` checks beyond the syntax: files named by the config, users, helpers.
struct checked {
    std::string certificate_pem;
    std::map<std::string, std::string> trust_pems; // by path
    long uid = -1, gid = -1;
    master_paths paths;
};

void check_pem(const config &cfg, const config_path &p, const char *what, std::string &out,
               std::vector<config_error> &errors)
{
    auto text = read_file(p.path, PEM_MAX);
    if (!text) {
        errors.push_back({cfg.file, p.line, std::string(what) + " " + p.path + ": " + errno_text(errno)});
        return;
    }
    tls::cert_list certs;
    std::string err;
    if (!certs.parse_pem(*text, err)) {
        errors.push_back({cfg.file, p.line, std::string(what) + " " + p.path + ": " + err});
        return;
    }
    for (const mbedtls_x509_crt *c = certs.get(); c && c->raw.p; c = c->next) {
        if (!mbedtls_pk_can_do(&c->pk, MBEDTLS_PK_ECDSA) || !tls::curve_in_profile(mbedtls_pk_ec(c->pk)->grp.id)) {
            errors.push_back({cfg.file, p.line, std::string(what) + " " + p.path +
                                                    ": a certificate's key is not EC on a HAN profile curve"});
            return;
        }
    }
    out = *text;
}

checked check_environment(const config &cfg, std::vector<config_error> &errors)
{
    checked c;
    check_pem(cfg, cfg.certificate, "certificate", c.certificate_pem, errors);
    std::vector<config_path> trusts;
    if (!cfg.smgw_trust.path.empty())
        trusts.push_back(cfg.smgw_trust);
    for (const auto &ch : cfg.channels)
        if (!ch.trust.path.empty())
            trusts.push_back({ch.trust.path, ch.trust.line});
    for (const auto &t : trusts)
        if (!c.trust_pems.count(t.path))
            check_pem(cfg, t, "trust", c.trust_pems[t.path], errors);
    if (access(cfg.key.path.c_str(), F_OK) != 0 && errno == ENOENT)
        errors.push_back({cfg.file, cfg.key.line, "key " + cfg.key.path + ": no such file"});
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam(cfg.worker_user.c_str());
        if (!pw)
            errors.push_back({cfg.file, 0, "worker_user '" + cfg.worker_user +
                                               "' does not exist (create it, e.g. with etc/sysusers.d/clsgw.conf, "
                                               "or set [clsgw] worker_user)"});
        else if (pw->pw_uid == 0)
            errors.push_back({cfg.file, 0, "worker_user '" + cfg.worker_user + "' is root; workers must not run as root"});
        else {
            c.uid = pw->pw_uid;
            c.gid = pw->pw_gid;
        }
    }
    c.paths.worker = helper_path(cfg.worker_path, "clsgw-worker");
    c.paths.signer = helper_path(cfg.signer_path, "clsgw-signer");
    for (const auto &p : {c.paths.worker, c.paths.signer})
        if (access(p.c_str(), X_OK) != 0)
            errors.push_back({cfg.file, 0, "helper program " + p + " is not executable: " + errno_text(errno)});
    return c;
}

} // namespace

int main(int argc, char **argv)
{
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

    config_result loaded = load_config(file);
    std::vector<config_error> errors = loaded.errors;
    checked env;
    if (loaded.value)
        env = check_environment(*loaded.value, errors);
    if (!errors.empty()) {
        for (const auto &e : errors)
            fprintf(stderr, "%s\n", e.to_string().c_str());
        fprintf(stderr, "clsgwd: %zu error(s) in %s\n", errors.size(), file.c_str());
        return 1;
    }
    if (test_only) {
        printf("clsgwd: configuration %s is valid (%zu channel(s))\n", file.c_str(), loaded.value->channels.size());
        return 0;
    }

    config cfg = std::move(*loaded.value);
    log_init("clsgwd", cfg.level);
    if (!log_set_target(cfg.target, cfg.log_file))
        fatal("cannot open the log file", log_fields().add("path", cfg.log_file).add("error", errno_text(errno)));
    master m(std::move(cfg), env.paths, env.certificate_pem, env.trust_pems, env.uid, env.gid);
    std::string err;
    if (!m.open_listeners(err))
        fatal("cannot start", log_fields().add("error", err));
    return m.run();
}
