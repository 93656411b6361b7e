// clsgwctl's side of the master: a local stream socket, one command per connection, one
// answer ("ok" or "error: ...", then the body). Bounded: 512 bytes in, 1 s to send it.
#include <mbedtls/x509_crt.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <sstream>

#include "../../lib/ipc.hpp"
#include "../../lib/log.hpp"
#include "../../lib/signer_proto.hpp"
#include "../../lib/tls/tls.hpp"
#include "../../lib/util.hpp"
#include "environment.hpp"
#include "master.hpp"

namespace clsgw {

namespace {

constexpr size_t COMMAND_MAX = 512;

std::vector<std::string> words(const std::string &line)
{
    std::istringstream in(line);
    std::vector<std::string> out;
    for (std::string w; in >> w;)
        out.push_back(w);
    return out;
}

int64_t unix_time(const mbedtls_x509_time &t)
{
    struct tm tm {};
    tm.tm_year = t.year - 1900;
    tm.tm_mon = t.mon - 1;
    tm.tm_mday = t.day;
    tm.tm_hour = t.hour;
    tm.tm_min = t.min;
    tm.tm_sec = t.sec;
    return static_cast<int64_t>(timegm(&tm));
}

bool read_command(int fd, std::string &line)
{
    char buf[COMMAND_MAX];
    size_t have = 0;
    while (have < sizeof buf) {
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n <= 0)
            return false;
        have += static_cast<size_t>(n);
        if (const void *newline = memchr(buf, '\n', have)) {
            line.assign(buf, static_cast<size_t>(static_cast<const char *>(newline) - buf));
            return true;
        }
    }
    return false;
}

} // namespace

void master::open_control_socket()
{
    const std::string &path = cfg_.control_socket;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path)
        return;
    memcpy(addr.sun_path, path.c_str(), path.size());
    struct stat st;
    if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path.c_str()); // left by an earlier clsgwd that did not stop cleanly
    unique_fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    mode_t old = umask(0117); // the socket is created 0660: root and the clsgw group
    bool ok = fd && bind(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0 && listen(fd.get(), 8) == 0;
    umask(old);
    if (!ok) {
        log_warn("control socket unavailable: clsgwctl cannot reach clsgwd",
                 log_fields().add("path", path).add("error", errno_text(errno)));
        return;
    }
    control_ = std::move(fd);
}

void master::on_control_connection()
{
    for (;;) {
        unique_fd conn(accept4(control_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!conn)
            return;
        ucred cred{};
        socklen_t len = sizeof cred;
        timeval limit{1, 0};
        setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        setsockopt(conn.get(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
        std::string line, answer;
        if (getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
            continue;
        if (!read_command(conn.get(), line))
            answer = "error: expected one command line of at most 512 bytes\n";
        else
            answer = run_command(line);
        log_debug("control command", log_fields().add("uid", static_cast<uint64_t>(cred.uid)).add("command", line));
        size_t done = 0;
        while (done < answer.size()) {
            ssize_t n = send(conn.get(), answer.data() + done, answer.size() - done, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            done += static_cast<size_t>(n);
        }
    }
}

std::string master::run_command(const std::string &line)
{
    auto w = words(line);
    if (w.empty())
        return "error: empty command\n";
    if (w[0] == "status" && w.size() == 1)
        return "ok\n" + status_json() + "\n";
    if (w[0] == "log-level" && (w.size() == 2 || w.size() == 3)) {
        auto level = parse_log_level(w[1]);
        if (!level)
            return "error: log level '" + w[1] + "': expected error, warn, info, debug or trace\n";
        if (w.size() == 3) {
            if (!cfg_.find_channel(w[2]))
                return "error: no channel named '" + w[2] + "'\n";
            channel_levels_[w[2]] = *level;
        } else {
            log_set_threshold(*level);
        }
        log_info("log level changed", log_fields().add("level", w[1]).add("channel", w.size() == 3 ? w[2] : "*"));
        return "ok\n";
    }
    if (w[0] == "reload" && w.size() == 1) {
        std::string why = reload();
        return why.empty() ? "ok\n" : "error: reload refused, the running configuration stays: " + why + "\n";
    }
    if (w[0] == "check" && w.size() == 1)
        return check();
    if (w[0] == "reopen-logs" && w.size() == 1) {
        std::string why;
        if (log_reopen(&why))
            return "ok\n";
        log_error("cannot reopen the log file; logging on to the one open", log_fields().add("error", why));
        return "error: cannot reopen the log file: " + why + "\n";
    }
    return "error: unknown command '" + line.substr(0, 80) + "' (status, check, reload, log-level, reopen-logs)\n";
}

// The configuration file as `clsgwd -t` sees it now, a signature made by the running signer and
// verified against our certificate, and certificates close to expiry.
std::string master::check()
{
    std::string report, problems;
    config_result loaded = load_config(cfg_.file);
    std::vector<config_error> errors = loaded.errors;
    if (loaded.value)
        check_environment(*loaded.value, errors);
    for (const auto &e : errors)
        problems += "config: " + e.to_string() + "\n";
    if (errors.empty())
        report += "config: " + cfg_.file + " is valid\n";
    std::string why;
    bool signed_ok = test_signature(why);
    if (signed_ok)
        report += "signer: test signature verified against " + cfg_.certificate.path + "\n";
    else
        problems += "signer: " + why + "\n";
    int64_t wall = static_cast<int64_t>(time(nullptr));
    for (const auto &c : certificates_) {
        int64_t days = (c.not_after - wall) / 86400;
        std::string line = c.role + " certificate '" + c.subject + "' expires in " + std::to_string(days) + " days\n";
        if (days < 30)
            problems += "warning: " + line;
        else
            report += line;
    }
    bool failed = !errors.empty() || !signed_ok;
    return (failed ? "error: check failed\n" : "ok\n") + report + problems;
}

bool master::test_signature(std::string &why)
{
    if (!signer_.ready || !signer_.control) {
        why = "not ready";
        return false;
    }
    unique_fd mine, theirs;
    if (!ipc_socketpair(mine, theirs)) {
        why = errno_text(errno);
        return false;
    }
    tlv_writer session;
    session.add_u64(1, 0).add(2, "clsgwctl-check").add(3, "local");
    if (!ipc_send(signer_.control.get(), msg_type::session_open, session.data(), theirs.get())) {
        why = "cannot open a session: " + errno_text(errno);
        return false;
    }
    theirs.reset();
    tls::cert_list cert;
    tls::rng rng;
    signer::request req;
    if (!cert.parse_pem(certificate_pem_, why) || !rng.seed("clsgwd-check") || !tls::key_id(&cert.get()->pk, req.key_id))
        return false;
    req.seq = 1;
    req.digest_alg = static_cast<uint8_t>(signer::digest::sha256);
    req.hash_len = 32;
    tls::rng::random(&rng, req.hash, 32);
    ipc_send(mine.get(), msg_type::sign_request, signer::encode_request(req));
    pollfd p{mine.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(cfg_.signer_timeout_ms)) != 1) {
        why = "no answer within signer_timeout";
        return false;
    }
    ipc_recv_result r = ipc_recv(mine.get(), false);
    auto a = r.status == ipc_status::ok ? signer::decode_answer(r.message.payload) : std::nullopt;
    if (!a || a->st != signer::status::ok) {
        why = a ? std::string("refused: ") + signer::status_name(a->st) : "bad answer";
        return false;
    }
    if (mbedtls_pk_verify(&cert.get()->pk, MBEDTLS_MD_SHA256, req.hash, 32, a->signature.data(), a->signature.size()) != 0) {
        why = "the signature does not verify with the certificate's public key";
        return false;
    }
    return true;
}

void master::count_outcome(const std::string &outcome, const std::string &reason) { outcomes_[outcome + "/" + reason]++; }

void master::watch_certificates()
{
    certificates_.clear();
    auto add = [&](const std::string &role, const std::string &path, const std::string &pem) {
        tls::cert_list certs;
        std::string err;
        if (!certs.parse_pem(pem, err))
            return;
        for (const mbedtls_x509_crt *c = certs.get(); c && c->raw.p; c = c->next) {
            char subject[256];
            mbedtls_x509_dn_gets(subject, sizeof subject, &c->subject);
            certificates_.push_back({role, path, subject, unix_time(c->valid_to)});
        }
    };
    add("identity", cfg_.certificate.path, certificate_pem_);
    for (const auto &[path, pem] : trust_pems_)
        add("trust", path, pem);
    for (const auto &c : certificates_) {
        int64_t days = (c.not_after - static_cast<int64_t>(time(nullptr))) / 86400;
        if (days < 30)
            log_warn("certificate expires soon", log_fields().add("role", c.role).add("subject", c.subject)
                                                     .add("days_left", static_cast<int64_t>(days)).add("path", c.path));
    }
}

std::string master::status_json() const
{
    using nlohmann::json;
    uint64_t now = now_ms();
    json channels = json::array();
    for (const auto &[id, ch] : channels_) {
        json c = {{"id", id},
                  {"name", ch.cfg.name},
                  {"direction", direction_name(ch.cfg.direction)},
                  {"peer", ch.peer},
                  {"pid", ch.pid},
                  {"state", ch.established ? "open" : "handshake"},
                  {"age_s", (now - ch.started_ms) / 1000},
                  {"bytes_up", ch.live.bytes_up},
                  {"bytes_down", ch.live.bytes_down}};
        if (ch.established) {
            c["target"] = ch.live.target;
            c["suite"] = ch.live.cipher_suite;
            c["group"] = ch.live.group;
            c["resumed"] = ch.live.resumed;
        }
        channels.push_back(c);
    }
    json outcomes = json::object();
    uint64_t finished = 0;
    for (const auto &[key, count] : outcomes_) {
        outcomes[key] = count;
        finished += count;
    }
    json certs = json::array();
    int64_t wall = static_cast<int64_t>(time(nullptr));
    for (const auto &c : certificates_)
        certs.push_back({{"role", c.role}, {"path", c.path}, {"subject", c.subject}, {"not_after", c.not_after},
                         {"days_left", (c.not_after - wall) / 86400}});
    json signer = {{"state", signer_.ready ? "ready" : (signer_.down() ? "down" : "starting")},
                   {"mode", signer_.external ? "service" : "child"},
                   {"pid", signer_.pid},
                   {"key_id", signer_.key_id},
                   {"restarts", signer_.restarts}};
    json status = {{"pid", getpid()},
                   {"uptime_s", (now - started_ms_) / 1000},
                   {"max_channels", cfg_.max_channels},
                   {"open_channels", channels_.size()},
                   {"spare_workers", {{"configured", cfg_.spare_workers}, {"ready", spares_ready()}}},
                   {"accepted", accepted_total_},
                   {"finished", finished},
                   {"log_level", log_level_name(log_threshold())},
                   {"channels", channels},
                   {"outcomes", outcomes},
                   {"signer", signer},
                   {"certificates", certs}};
    return status.dump();
}

} // namespace clsgw
