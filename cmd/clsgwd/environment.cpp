// Loading and checking the configuration beyond its syntax: the files it names (and their
// modes), the worker user, the helper programs, overlapping listeners.
#include "environment.hpp"

#include <mbedtls/x509_crt.h>
#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cctype>
#include <climits>
#include <optional>

#include "../../lib/tls/tls.hpp"
#include "../../lib/util.hpp"

namespace clsgw {

namespace {

#ifndef CLSGW_LIBEXECDIR
#define CLSGW_LIBEXECDIR "/usr/libexec/clsgw"
#endif
constexpr const char *LIBEXEC_DIR = CLSGW_LIBEXECDIR;
constexpr size_t PEM_MAX = 48 * 1024;

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
        if (!mbedtls_pk_can_do(&c->pk, MBEDTLS_PK_ECDSA) || !tls::curve_in_profile(tls::key_group(&c->pk))) {
            errors.push_back({cfg.file, p.line, std::string(what) + " " + p.path +
                                                    ": a certificate's key is not EC on a HAN profile curve"});
            return;
        }
    }
    // The device's own certificate, expired: every SMGW refuses it. An error here (and so in the
    // ExecStartPre check and at a reload), not a warning that only clsgwctl check shows.
    if (std::string(what) == "certificate" && mbedtls_x509_time_is_past(&certs.get()->valid_to)) {
        const mbedtls_x509_time &t = certs.get()->valid_to;
        char date[32];
        snprintf(date, sizeof date, "%04d-%02d-%02d", t.year, t.mon, t.day);
        errors.push_back({cfg.file, p.line, std::string(what) + " " + p.path + " expired on " + date});
        return;
    }
    out = *text;
}

// Log and audit files are opened without following a symbolic link and only when regular
// (open_log_file); a configuration that names anything else is refused before the start.
void check_log_path(const config &cfg, const std::string &path, int line, const char *what,
                    std::vector<config_error> &errors)
{
    struct stat st;
    if (path.empty() || lstat(path.c_str(), &st) != 0)
        return; // created at the start, or its open says why not
    if (S_ISLNK(st.st_mode))
        errors.push_back({cfg.file, line, std::string(what) + " " + path + " is a symbolic link; name the file itself"});
    else if (!S_ISREG(st.st_mode))
        errors.push_back({cfg.file, line, std::string(what) + " " + path + " is not a regular file"});
}

// The cgroup's task limit (pids.max) of this process, cgroup v2 or v1; nullopt when unlimited.
std::optional<unsigned long long> cgroup_tasks_max()
{
    auto text = read_file("/proc/self/cgroup", 64 * 1024);
    if (!text)
        return std::nullopt;
    size_t pos = 0;
    while (pos < text->size()) {
        size_t end = text->find('\n', pos);
        std::string line = text->substr(pos, end == std::string::npos ? std::string::npos : end - pos);
        pos = end == std::string::npos ? text->size() : end + 1;
        size_t a = line.find(':'), b = line.find(':', a + 1);
        if (a == std::string::npos || b == std::string::npos)
            continue;
        std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
        std::string file;
        if (controllers.empty())
            file = "/sys/fs/cgroup" + path + "/pids.max";
        else if (controllers == "pids")
            file = "/sys/fs/cgroup/pids" + path + "/pids.max";
        else
            continue;
        auto value = read_file(file, 64);
        if (value && !value->empty() && isdigit(static_cast<unsigned char>((*value)[0])))
            return std::stoull(*value);
    }
    return std::nullopt;
}

// What max_channels needs from the process limits: the master holds about four descriptors per
// open channel (accepted socket, worker control, upstream, signer session) and one task per worker.
// The soft descriptor limit is raised as far as the hard one allows; what cannot be met is an
// error naming the limit and the setting, instead of channel N+1 failing at accept or fork.
void check_limits(const config &cfg, std::vector<config_error> &errors)
{
    unsigned long long channels = cfg.max_channels, spares = cfg.spare_workers;
    unsigned long long fds = 4 * channels + 2 * spares + cfg.channels.size() + 64;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < fds) {
        if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= fds) {
            rl.rlim_cur = fds;
            setrlimit(RLIMIT_NOFILE, &rl);
        } else {
            errors.push_back({cfg.file, cfg.max_channels_line,
                              "max_channels = " + std::to_string(channels) + " needs " + std::to_string(fds) +
                                  " file descriptors but the limit is " + std::to_string(rl.rlim_max) +
                                  ": raise LimitNOFILE= (clsgwd.service) or lower max_channels"});
        }
    }
    unsigned long long tasks = channels + spares + 8; // the master, the signer, workers on their way out
    auto tasks_max = cgroup_tasks_max();
    if (tasks_max && *tasks_max < tasks)
        errors.push_back({cfg.file, cfg.max_channels_line,
                          "max_channels = " + std::to_string(channels) + " and spare_workers = " +
                              std::to_string(spares) + " need " + std::to_string(tasks) +
                              " tasks but the cgroup allows " + std::to_string(*tasks_max) +
                              ": raise TasksMax= (clsgwd.service) or lower max_channels"});
}

// 0.0.0.0:P (or [::]:P) beside a specific address with the same port: the second bind fails at
// the start with EADDRINUSE, so the check says so first.
void check_wildcard_overlap(const config &cfg, std::vector<config_error> &errors)
{
    std::map<std::string, const channel_config *> seen; // by listener
    for (const auto &ch : cfg.channels)
        if (ch.listen && !seen.count(ch.listen_text))
            seen[ch.listen_text] = &ch;
    for (const auto &[text, a] : seen)
        for (const auto &[other, b] : seen) {
            if (text == other || a->line > b->line || a->listen->family() != b->listen->family())
                continue;
            std::string host_a = text.substr(0, text.rfind(':')), host_b = other.substr(0, other.rfind(':'));
            bool wild_a = host_a == "0.0.0.0" || host_a == "[::]", wild_b = host_b == "0.0.0.0" || host_b == "[::]";
            if (text.substr(text.rfind(':')) == other.substr(other.rfind(':')) && (wild_a || wild_b))
                errors.push_back({cfg.file, b->line, "channel '" + b->name + "' listens on " + other +
                                                       ", which overlaps channel '" + a->name + "' on " + text +
                                                       ": a wildcard address takes the port on every address"});
        }
}

} // namespace

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
    if (cfg.signer_socket.empty()) { // clsgwd starts the signer with this key and audit log
        std::string loose = private_key_mode_problem(cfg.key.path);
        if (access(cfg.key.path.c_str(), F_OK) != 0 && errno == ENOENT)
            errors.push_back({cfg.file, cfg.key.line, "key " + cfg.key.path + ": no such file"});
        else if (!loose.empty())
            errors.push_back({cfg.file, cfg.key.line, loose});
        check_log_path(cfg, cfg.audit_log.path, cfg.audit_log.line, "audit_log", errors);
        std::string folder = cfg.audit_log.path.substr(0, cfg.audit_log.path.rfind('/') + 1);
        struct stat dir;
        if (!folder.empty() && (stat(folder.c_str(), &dir) != 0 || !S_ISDIR(dir.st_mode)))
            errors.push_back({cfg.file, cfg.audit_log.line, "audit_log " + cfg.audit_log.path + ": folder " + folder +
                                                                " does not exist"});
    }
    if (cfg.target == log_target::file)
        check_log_path(cfg, cfg.log_file, 0, "log_file", errors);
    if (!cfg.control_group.empty() && !getgrnam(cfg.control_group.c_str()))
        errors.push_back(
            {cfg.file, cfg.control_group_line, "control_group '" + cfg.control_group + "' does not exist"});
    struct stat st;
    if (stat(cfg.file.c_str(), &st) == 0 && (st.st_mode & S_IWOTH))
        c.warnings.push_back("configuration file " + cfg.file + " is writable by others; chmod o-w " + cfg.file);
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
    check_limits(cfg, errors);
    check_wildcard_overlap(cfg, errors);
    c.paths.worker = helper_path(cfg.worker_path, "clsgw-worker");
    c.paths.signer = helper_path(cfg.signer_path, "clsgw-signer");
    for (const auto &p : {c.paths.worker, c.paths.signer})
        if (access(p.c_str(), X_OK) != 0)
            errors.push_back({cfg.file, 0, "helper program " + p + " is not executable: " + errno_text(errno)});
    return c;
}

loaded_config load_and_check(const std::string &file)
{
    config_result parsed = load_config(file);
    loaded_config loaded;
    loaded.errors = std::move(parsed.errors);
    if (parsed.value)
        loaded.env = check_environment(*parsed.value, loaded.errors);
    loaded.value = std::move(parsed.value);
    return loaded;
}

} // namespace clsgw
