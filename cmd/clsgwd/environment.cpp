// Loading and checking the configuration beyond its syntax: the files it names (and their
// modes), the worker user, the helper programs, overlapping listeners.
#include "environment.hpp"

#include <mbedtls/x509_crt.h>
#include <cap-ng.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cctype>
#include <climits>
#include <optional>
#include <set>

#include "../../lib/activation.hpp"
#include "../../lib/pki.hpp"
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
            // The device's own key must be on a group the SMGW offers (RFC 8422), and clsgw offers and
            // accepts the profile's groups only: a handshake with any other curve cannot succeed.
            bool own = std::string(what) == "certificate" && c == certs.get();
            errors.push_back({cfg.file, p.line, std::string(what) + " " + p.path + ": " +
                                                    (own ? "the device key" : "a certificate's key") + " is " +
                                                    pki::key_curve_name(&c->pk) +
                                                    ", not one of the groups clsgw offers and accepts on the HAN (" +
                                                    pki::profile_curves_text() + ")" +
                                                    (own ? ": make the key on one the SMGW offers (clsgw.ini(5))" : "")});
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

constexpr uint64_t KEY_CHECK_TIMEOUT_MS = 10000;

// Runs a program with stdin and stdout on /dev/null and an empty environment, and returns its
// stderr and exit status (-1 when it ran past timeout_ms and was killed). nullopt with errno when
// it could not be started at all.
struct program_run {
    int status = 0;
    std::string stderr_text;
};
std::optional<program_run> run_program(const std::string &path, std::vector<std::string> args, uint64_t timeout_ms)
{
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0)
        return std::nullopt;
    unique_fd out(pipe_fds[0]), in(pipe_fds[1]);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, in.get(), 2);
    std::vector<char *> argv;
    for (auto &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    char *envp[] = {nullptr};
    pid_t pid = -1;
    int err = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv.data(), envp);
    posix_spawn_file_actions_destroy(&actions);
    if (err != 0) {
        errno = err;
        return std::nullopt;
    }
    in.reset();
    program_run r;
    uint64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        uint64_t now = now_ms();
        pollfd p{out.get(), POLLIN, 0};
        int ready = now >= deadline ? 0 : poll(&p, 1, static_cast<int>(deadline - now));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0) { // the deadline, or poll failing: never a read that could wait
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
            r.status = -1;
            return r;
        }
        char buf[4096];
        ssize_t n = read(out.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (r.stderr_text.size() < 64 * 1024)
            r.stderr_text.append(buf, static_cast<size_t>(n));
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
}

// The last line a program wrote, without its "program: " prefix.
std::string last_line(std::string text, const std::string &program)
{
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
        text.pop_back();
    text = text.substr(text.rfind('\n') + 1);
    if (text.rfind(program + ": ", 0) == 0)
        text = text.substr(program.size() + 2);
    return text;
}

// Read now by -t and the start: the lowest port anyone may bind (net.ipv4.ip_unprivileged_port_start).
unsigned unprivileged_port_start()
{
    auto text = read_file("/proc/sys/net/ipv4/ip_unprivileged_port_start", 64);
    auto n = text ? parse_uint(text->substr(0, text->find('\n')), 65536) : std::nullopt;
    return n ? static_cast<unsigned>(*n) : 1024;
}

bool may_bind_below_1024()
{
    capng_get_caps_process();
    bool can = capng_have_capability(CAPNG_EFFECTIVE, CAP_NET_BIND_SERVICE);
    capng_clear(CAPNG_SELECT_BOTH);
    return can;
}

// A channel socket unit enabled for the channel: systemd binds its address and passes it.
std::string enabled_socket_unit(const std::string &channel)
{
    std::string unit = "clsgw-channel@" + channel + ".socket";
    for (const char *dir : {"/etc/systemd/system/sockets.target.wants/", "/run/systemd/system/sockets.target.wants/"}) {
        struct stat st;
        if (stat((std::string(dir) + unit).c_str(), &st) == 0)
            return unit;
    }
    return "";
}

uint16_t port_of(const sock_address &a)
{
    if (a.family() == AF_INET)
        return ntohs(reinterpret_cast<const sockaddr_in *>(&a.storage)->sin_port);
    return ntohs(reinterpret_cast<const sockaddr_in6 *>(&a.storage)->sin6_port);
}

// The audit log's folder, without its trailing slash; empty for a file in the current folder.
std::string audit_folder(const config &cfg)
{
    size_t slash = cfg.audit_log.path.rfind('/');
    return slash == std::string::npos || slash == 0 ? "" : cfg.audit_log.path.substr(0, slash);
}

} // namespace

void make_audit_folder(const config &cfg)
{
    std::string folder = audit_folder(cfg);
    if (cfg.signer_socket.empty() && !folder.empty() && mkdir(folder.c_str(), 0750) == 0)
        log_info("made the audit log's folder", log_fields().add("path", folder));
}

void check_key_pair(const config &cfg, checked &c, std::vector<config_error> &errors)
{
    if (!cfg.signer_socket.empty())
        return; // clsgw-signer.service reads its key and refuses a wrong one at its own start
    auto run = run_program(c.paths.signer,
                           {"clsgw-signer", "--check", "--key", cfg.key.path, "--certificate", cfg.certificate.path},
                           KEY_CHECK_TIMEOUT_MS);
    // 127 and not a word: the exec failed in the child (an emulator such as qemu-user turns
    // posix_spawn into a fork, and cannot start another architecture's program). Said, not guessed.
    if (!run || (run->status == 127 && run->stderr_text.empty())) {
        c.warnings.push_back("the key was not checked against the certificate: cannot run " + c.paths.signer +
                             (run ? "" : ": " + errno_text(errno)));
        return;
    }
    if (run->status == 0)
        return;
    std::string why = run->status < 0 ? "clsgw-signer did not finish checking it within 10s"
                                      : last_line(run->stderr_text, "clsgw-signer");
    errors.push_back({cfg.file, cfg.key.line, "key " + cfg.key.path + ": " + (why.empty() ? "refused by clsgw-signer" : why)});
}

void check_listeners(const config &cfg, checked &c, std::vector<config_error> &errors)
{
    std::map<std::string, std::string> from_systemd; // channel name -> the socket's address
    for (const auto &s : activated_addresses())
        from_systemd[s.name] = s.address;
    std::set<std::string> from_systemd_listeners; // a socket named after any channel of a listener serves it
    for (const auto &ch : cfg.channels)
        if (from_systemd.count(ch.name))
            from_systemd_listeners.insert(ch.listener_key());
    std::set<std::string> seen;
    for (const auto &ch : cfg.channels) {
        auto socket = from_systemd.find(ch.name);
        if (!ch.listen)
            continue;
        std::string where = cfg.file + ":" + std::to_string(ch.listen_line);
        if (socket != from_systemd.end() && socket->second != ch.listen->to_string())
            c.warnings.push_back("channel '" + ch.name + "': systemd's socket listens on " + socket->second +
                                 ", not on listen = " + ch.listen_text + " (" + where +
                                 "); the socket is used: make the two agree, or remove listen");
        if (from_systemd_listeners.count(ch.listener_key()) || !seen.insert(ch.listener_key()).second)
            continue;
        unsigned lowest = unprivileged_port_start();
        uint16_t port = port_of(*ch.listen);
        if (port >= lowest)
            continue;
        std::string below = "listen = " + ch.listen_text + " is below net.ipv4.ip_unprivileged_port_start (" +
                            std::to_string(lowest) + ")";
        std::string unit = enabled_socket_unit(ch.name);
        if (may_bind_below_1024())
            c.notes.push_back("channel '" + ch.name + "': " + below +
                              "; this process may bind it (CAP_NET_BIND_SERVICE), clsgwd.service does not grant "
                              "that: there it needs clsgw-channel@" + ch.name + ".socket");
        else if (!unit.empty())
            c.notes.push_back("channel '" + ch.name + "': " + below + ", which clsgwd cannot bind itself; " + unit +
                              " is enabled and passes it");
        else
            errors.push_back({cfg.file, ch.listen_line,
                              "channel '" + ch.name + "': " + below +
                                  " and clsgwd has no CAP_NET_BIND_SERVICE to bind it (clsgwd.service does not "
                                  "grant it): let clsgw-channel@" + ch.name +
                                  ".socket listen there (systemctl edit, ListenStream=), or choose a port from " +
                                  std::to_string(lowest)});
    }
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
    if (!cfg.signer_socket_absent.empty())
        c.notes.push_back("signer_socket " + cfg.signer_socket_absent +
                          " does not exist (no clsgw-signer.socket here): clsgwd starts clsgw-signer itself with key = " +
                          cfg.key.path);
    if (cfg.signer_socket.empty()) { // clsgwd starts the signer with this key and audit log
        std::string loose = private_key_mode_problem(cfg.key.path);
        if (access(cfg.key.path.c_str(), F_OK) != 0 && errno == ENOENT)
            errors.push_back({cfg.file, cfg.key.line, "key " + cfg.key.path + ": no such file"});
        else if (!loose.empty())
            errors.push_back({cfg.file, cfg.key.line, loose});
        check_log_path(cfg, cfg.audit_log.path, cfg.audit_log.line, "audit_log", errors);
        // Without clsgwd.service's LogsDirectory= (run by hand) the start makes the last level
        // (make_audit_folder); a folder further up missing is an error.
        std::string folder = audit_folder(cfg), parent = folder.substr(0, folder.rfind('/'));
        struct stat dir;
        if (!folder.empty() && (stat(folder.c_str(), &dir) != 0 || !S_ISDIR(dir.st_mode))) {
            if (!parent.empty() && stat(parent.c_str(), &dir) == 0 && S_ISDIR(dir.st_mode))
                c.notes.push_back("audit_log " + cfg.audit_log.path + ": folder " + folder +
                                  " does not exist yet; the start makes it (mode 0750)");
            else
                errors.push_back({cfg.file, cfg.audit_log.line, "audit_log " + cfg.audit_log.path + ": folder " + folder +
                                                                    " does not exist, nor does " + parent});
        }
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
