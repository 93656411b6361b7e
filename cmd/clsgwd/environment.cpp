#include "environment.hpp"

#include <mbedtls/x509_crt.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

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
    c.paths.worker = helper_path(cfg.worker_path, "clsgw-worker");
    c.paths.signer = helper_path(cfg.signer_path, "clsgw-signer");
    for (const auto &p : {c.paths.worker, c.paths.signer})
        if (access(p.c_str(), X_OK) != 0)
            errors.push_back({cfg.file, 0, "helper program " + p + " is not executable: " + errno_text(errno)});
    return c;
}


} // namespace clsgw
