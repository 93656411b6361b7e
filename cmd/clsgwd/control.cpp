// clsgwctl's side of the master: a local stream socket, one command per connection, one
// answer ("ok" or "error: ...", then the body). Served inside the master's poll loop and never
// waited on: at most CONTROL_CLIENTS_MAX connections at once, 512 bytes in, control_timeout for
// the command to arrive and again for the answer to leave. `check` and `reload` are answered
// when the signer has answered, or signer_timeout has passed.
#include <grp.h>
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
#include "../../lib/net.hpp"
#include "../../lib/signer_proto.hpp"
#include "../../lib/tls/tls.hpp"
#include "../../lib/util.hpp"
#include "../../lib/version.hpp"
#include "environment.hpp"
#include "master.hpp"

namespace clsgw {

namespace {

constexpr size_t COMMAND_MAX = 512;
constexpr size_t CONTROL_CLIENTS_MAX = 16; // more wait in the listen backlog
constexpr int CONTROL_BACKLOG = 8;

std::vector<std::string> words(const std::string &line)
{
    std::istringstream in(line);
    std::vector<std::string> out;
    for (std::string w; in >> w;)
        out.push_back(w);
    return out;
}

std::string group_name(gid_t gid)
{
    const struct group *g = getgrgid(gid);
    return g ? g->gr_name : std::to_string(gid);
}

// The peer's supplementary groups (SO_PEERGROUPS), as they were when it connected.
std::vector<gid_t> peer_groups(int fd)
{
    std::vector<gid_t> groups(64);
    for (int attempt = 0; attempt < 2; attempt++) {
        socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
            groups.resize(len / sizeof(gid_t));
            return groups;
        }
        if (errno != ERANGE)
            break;
        groups.resize(len / sizeof(gid_t) + 1); // len now says how many there are
    }
    return {};
}

} // namespace

// The socket is 0660 and belongs to control_group (default: our own group), so that the file
// mode admits root, our user and that group; the peer's credentials are checked again at accept.
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
    // clsgwd.service makes /run/clsgw (RuntimeDirectory=); run by hand, clsgwd makes the folder
    // itself, the last level only and as the unit would (0750).
    std::string folder = path.substr(0, path.rfind('/'));
    if (!folder.empty() && mkdir(folder.c_str(), 0750) == 0)
        log_info("made the control socket's folder", log_fields().add("path", folder));
    unique_fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    mode_t old = umask(0117); // the socket is created 0660
    bool ok = fd && bind(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0 &&
              listen(fd.get(), CONTROL_BACKLOG) == 0;
    umask(old);
    if (!ok) {
        log_warn("control socket unavailable: clsgwctl cannot reach clsgwd",
                 log_fields().add("path", path).add("error", errno_text(errno)));
        return;
    }
    control_gid_ = getegid();
    const struct group *g = cfg_.control_group.empty() ? nullptr : getgrnam(cfg_.control_group.c_str());
    if (g && lchown(path.c_str(), static_cast<uid_t>(-1), g->gr_gid) == 0)
        control_gid_ = g->gr_gid;
    else if (!cfg_.control_group.empty())
        log_error("cannot give the control socket to control_group; only root and clsgwd's own group can use it",
                  log_fields().add("path", path).add("control_group", cfg_.control_group)
                      .add("error", g ? errno_text(errno) : "no such group"));
    log_debug("control socket", log_fields().add("path", path).add("group", group_name(control_gid_)));
    control_ = std::move(fd);
}

// Below the cap the socket is polled; at it new connections wait in the listen backlog (and
// during an accept pause for want of fds, as the channels' listeners do).
bool master::control_accepting()
{
    bool full = control_clients_.size() >= CONTROL_CLIENTS_MAX;
    if (full && !control_full_logged_)
        log_warn("control connections at their limit; new ones wait in the listen backlog",
                 log_fields().add("max", static_cast<uint64_t>(CONTROL_CLIENTS_MAX)));
    control_full_logged_ = full;
    return !full && now_ms() >= accept_paused_until_ms_;
}

// Root, our own user and members of the socket's group (primary or supplementary).
bool master::control_peer_allowed(int fd, uid_t &uid) const
{
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return false;
    uid = cred.uid;
    if (cred.uid == 0 || cred.uid == geteuid() || cred.gid == control_gid_)
        return true;
    for (gid_t g : peer_groups(fd))
        if (g == control_gid_)
            return true;
    return false;
}

void master::on_control_connection()
{
    while (control_accepting()) {
        unique_fd conn(accept4(control_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!conn) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                accept_paused_until_ms_ = now_ms() + 1000; // channels and control connections alike
                log_warn("out of file descriptors or memory; pausing accept for 1s",
                         log_fields().add("error", errno_text(errno)));
            }
            return;
        }
        uid_t uid = static_cast<uid_t>(-1);
        if (!control_peer_allowed(conn.get(), uid)) {
            std::string who = "root, uid " + std::to_string(geteuid()) + " or group " + group_name(control_gid_);
            std::string no = "error: uid " + std::to_string(uid) + " may not use clsgwd (" + who + " may)\n";
            ssize_t ignored = send(conn.get(), no.data(), no.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)ignored;
            log_warn("control connection refused: not root, clsgwd's user or a member of the control group",
                     log_fields().add("uid", static_cast<uint64_t>(uid)).add("group", group_name(control_gid_)));
            continue;
        }
        control_client c;
        c.id = ++next_control_id_;
        c.fd = std::move(conn);
        c.uid = uid;
        c.deadline_ms = now_ms() + cfg_.control_timeout_ms;
        control_clients_.emplace(c.id, std::move(c));
    }
}

// Reads the command line, or sends the answer, as far as the socket allows without waiting.
void master::on_control_client(uint64_t id)
{
    auto it = control_clients_.find(id);
    if (it == control_clients_.end())
        return;
    control_client &c = it->second;
    if (!c.answer.empty()) {
        ssize_t n = send(c.fd.get(), c.answer.data() + c.sent, c.answer.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n > 0)
            c.sent += static_cast<size_t>(n);
        if (n <= 0 || c.sent == c.answer.size())
            control_clients_.erase(it);
        return;
    }
    if (c.waiting)
        return;
    char buf[COMMAND_MAX];
    ssize_t n = recv(c.fd.get(), buf, COMMAND_MAX - c.received.size(), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        control_clients_.erase(it); // gone before its command was complete
        return;
    }
    c.received.append(buf, static_cast<size_t>(n));
    size_t newline = c.received.find('\n');
    if (newline == std::string::npos) {
        if (c.received.size() >= COMMAND_MAX)
            answer_control(c, "error: expected one command line of at most 512 bytes\n");
        return;
    }
    std::string line = c.received.substr(0, newline);
    log_debug("control command", log_fields().add("uid", static_cast<uint64_t>(c.uid)).add("command", line));
    try {
        run_command(c, line);
    } catch (const std::exception &e) { // a command never takes clsgwd down with it
        log_error("control command failed", log_fields().add("command", line).add("error", e.what()));
        answer_control(c, "error: internal error\n");
    }
}

// The answer leaves as the socket takes it, within control_timeout.
void master::answer_control(control_client &c, const std::string &answer)
{
    c.waiting = false;
    c.answer = answer;
    c.sent = 0;
    c.deadline_ms = now_ms() + cfg_.control_timeout_ms;
}

void master::run_command(control_client &c, const std::string &line)
{
    auto w = words(line);
    if (w.empty())
        return answer_control(c, "error: empty command\n");
    if (w[0] == "status" && w.size() == 1)
        return answer_control(c, "ok\n" + status_json() + "\n");
    if (w[0] == "log-level" && (w.size() == 2 || w.size() == 3))
        return answer_control(c, log_level_command(w));
    if (w[0] == "reload" && w.size() == 1) {
        c.waiting = true;
        c.deadline_ms = UINT64_MAX; // the reload answers by signer_timeout at the latest
        reload_waiters_.push_back(c.id);
        return reload();
    }
    if (w[0] == "check" && (w.size() == 1 || (w.size() == 2 && w[1] == "--sign")))
        return begin_check(c, w.size() == 2);
    if (w[0] == "metrics" && w.size() == 1) {
        c.metrics = true;
        if (!send_liveness_probe(c))
            answer_metrics(c, std::nullopt);
        return;
    }
    if (w[0] == "reopen-logs" && w.size() == 1) {
        std::string why;
        if (log_reopen(&why))
            return answer_control(c, "ok\n");
        log_error("cannot reopen the log file; logging on to the one open", log_fields().add("error", why));
        return answer_control(c, "error: cannot reopen the log file: " + why + "\n");
    }
    answer_control(c, "error: unknown command '" + line.substr(0, 80) +
                          "' (status, check, metrics, reload, log-level, reopen-logs)\n");
}

std::string master::log_level_command(const std::vector<std::string> &w)
{
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

// A reload is done: committed (why empty) or refused. Every clsgwctl reload waiting hears it.
void master::answer_reload_waiters(const std::string &why)
{
    for (uint64_t id : reload_waiters_) {
        auto it = control_clients_.find(id);
        if (it != control_clients_.end())
            answer_control(it->second, why.empty() ? "ok\n"
                                                   : "error: reload refused, the running configuration stays: " +
                                                         why + "\n");
    }
    reload_waiters_.clear();
}

// clsgwctl check: the configuration file as `clsgwd -t` sees it now, the running signer's
// liveness (a probe it answers from its loop, signing nothing), or with --sign a signature it
// makes (audited) verified against our certificate; then certificates close to expiry.
void master::begin_check(control_client &c, bool sign)
{
    loaded_config loaded = load_and_check(cfg_.file);
    for (const auto &e : loaded.errors)
        c.problems += "config: " + e.to_string() + "\n";
    for (const auto &warning : loaded.env.warnings)
        c.problems += "warning: config: " + warning + "\n";
    if (loaded.errors.empty())
        c.report += "config: " + cfg_.file + " is valid\n";
    c.failed = !loaded.errors.empty();
    std::string why;
    if (!sign) {
        if (!send_liveness_probe(c))
            end_check(c, false, "not ready");
        return;
    }
    if (!send_test_signature(c, why))
        return end_check(c, false, why);
    c.waiting = true;
    c.deadline_ms = now_ms() + cfg_.signer_timeout_ms;
}

// Asks the signer for its counts; the answer comes to on_signer_counts within signer_timeout.
bool master::send_liveness_probe(control_client &c)
{
    if (!signer_.ready || !signer_.control)
        return false;
    if (!ipc_send_nowait(signer_.control.get(), msg_type::signer_probe, signer::encode_probe(++next_probe_seq_)))
        return false;
    c.probe_seq = next_probe_seq_;
    c.waiting = true;
    c.deadline_ms = now_ms() + cfg_.signer_timeout_ms;
    return true;
}

// The signer's answer to a probe: it is alive. An answer nobody waits for any more (its client
// timed out) is dropped.
void master::on_signer_counts(const bytes &payload)
{
    auto answer = signer::decode_counts(payload);
    if (!answer) {
        log_error("malformed signer_counts from the signer");
        return;
    }
    metrics::signer_counts counts{answer->signatures, answer->refusals, answer->sessions};
    for (auto &[id, c] : control_clients_) {
        if (c.probe_seq != answer->seq)
            continue;
        c.probe_seq = 0;
        if (c.metrics)
            answer_metrics(c, counts);
        else
            end_check(c, true, "signer: alive (" +
                                   (signer_.external ? std::string("service") : "pid " + std::to_string(signer_.pid)) +
                                   ", " + std::to_string(counts.signatures) +
                                   " signatures since its start; nothing signed for this check)");
    }
}

// Opens a signer session of the check's own and sends one request; the answer comes to
// on_control_probe.
bool master::send_test_signature(control_client &c, std::string &why)
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
    bytes session = signer::encode_session_open({0, "clsgwctl-check", "local"});
    if (!ipc_send_nowait(signer_.control.get(), msg_type::session_open, session, theirs.get())) {
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
    if (!ipc_send_nowait(mine.get(), msg_type::sign_request, signer::encode_request(req))) {
        why = "cannot send the request: " + errno_text(errno);
        return false;
    }
    c.probe = std::move(mine);
    c.probe_hash.assign(req.hash, req.hash + 32);
    return true;
}

void master::on_control_probe(uint64_t id)
{
    auto it = control_clients_.find(id);
    if (it == control_clients_.end() || !it->second.probe)
        return;
    control_client &c = it->second;
    ipc_recv_result r = ipc_recv_checked(c.probe.get(), role_master, c.probe_budget);
    if (r.status == ipc_status::would_block)
        return;
    auto a = r.status == ipc_status::ok ? signer::decode_answer(r.message.payload) : std::nullopt;
    if (!a || a->seq != 1 || a->st != signer::status::ok)
        return end_check(c, false, a ? std::string("refused: ") + signer::status_name(a->st) : "bad answer");
    tls::cert_list cert;
    std::string why;
    if (!cert.parse_pem(certificate_pem_, why))
        return end_check(c, false, why);
    if (mbedtls_pk_verify(&cert.get()->pk, MBEDTLS_MD_SHA256, c.probe_hash.data(), c.probe_hash.size(),
                          a->signature.data(), a->signature.size()) != 0)
        return end_check(c, false, "the signature does not verify with the certificate's public key");
    end_check(c, true, "signer: test signature verified against " + cfg_.certificate.path);
}

// signer_line: what the signer showed (signer_ok), or what went wrong.
void master::end_check(control_client &c, bool signer_ok, const std::string &signer_line)
{
    c.probe.reset(); // its session ends with it
    c.probe_seq = 0;
    if (signer_ok)
        c.report += signer_line + "\n";
    else
        c.problems += "signer: " + signer_line + "\n";
    int64_t wall = static_cast<int64_t>(time(nullptr));
    bool expired = false;
    for (const auto &cert : certificates_) {
        int64_t days = (cert.not_after - wall) / 86400;
        std::string line =
            cert.role + " certificate '" + cert.subject + "' expires in " + std::to_string(days) + " days\n";
        if (cert.not_after < wall) {
            expired = true; // an error, not the "expires soon" warning (exit 3)
            c.problems += "error: " + cert.role + " certificate '" + cert.subject + "' has expired\n";
        } else if (days < 30) {
            c.problems += "warning: " + line;
        } else {
            c.report += line;
        }
    }
    bool failed = c.failed || !signer_ok || expired;
    answer_control(c, (failed ? "error: check failed\n" : "ok\n") + c.report + c.problems);
}

// Control connections past their deadline, a check whose signer is silent, and a reload whose
// new signer is.
void master::check_control_deadlines()
{
    uint64_t now = now_ms();
    for (auto it = control_clients_.begin(); it != control_clients_.end();) {
        control_client &c = it->second;
        if (now < c.deadline_ms) {
            ++it;
            continue;
        }
        if (c.probe || c.probe_seq) {
            std::string silent = "no answer within signer_timeout (" + format_duration_ms(cfg_.signer_timeout_ms) + ")";
            c.probe_seq = 0;
            if (c.metrics)
                answer_metrics(c, std::nullopt);
            else
                end_check(c, false, silent);
            ++it;
            continue;
        }
        log_warn(c.answer.empty() ? "control connection closed: no command within control_timeout"
                                  : "control connection closed: its answer was not taken within control_timeout",
                 log_fields().add("uid", static_cast<uint64_t>(c.uid))
                     .add("control_timeout", format_duration_ms(cfg_.control_timeout_ms)));
        it = control_clients_.erase(it);
    }
    if (reload_ && now >= reload_->deadline_ms)
        refuse_reload("signer: the new signer was not ready within signer_timeout (" +
                      format_duration_ms(cfg_.signer_timeout_ms) + ")" +
                      (reload_->signer_said.empty() ? "" : ": " + reload_->signer_said));
}

uint64_t master::next_control_deadline() const
{
    uint64_t next = reload_ ? reload_->deadline_ms : UINT64_MAX;
    for (const auto &[id, c] : control_clients_)
        next = std::min(next, c.deadline_ms);
    return next;
}

// Reasons come from workers too: past OUTCOME_KEYS_MAX distinct ones, new ones count as "other".
void master::count_outcome(const std::string &outcome, const std::string &reason)
{
    constexpr size_t OUTCOME_KEYS_MAX = 256;
    std::string key = outcome + "/" + reason;
    if (outcomes_.size() >= OUTCOME_KEYS_MAX && !outcomes_.count(key))
        key = outcome + "/other";
    outcomes_[key]++;
}

// A channel that ended, for clsgwctl metrics: its bytes (the last progress report when it left
// no result) and its handshake time when its TLS session stood.
void master::count_channel_metrics(const channel &ch)
{
    bool tls = ch.result && !ch.result->tls_version.empty();
    channel_metrics_.finished(ch.result ? ch.result->bytes_up : ch.live.bytes_up,
                              ch.result ? ch.result->bytes_down : ch.live.bytes_down,
                              tls ? std::optional<uint64_t>(ch.result->handshake_ms) : std::nullopt);
}

void master::answer_metrics(control_client &c, const std::optional<metrics::signer_counts> &signer)
{
    metrics::snapshot now;
    now.version = clsgw_version_text();
    now.open_channels = channels_.size();
    now.max_channels = cfg_.max_channels;
    now.accepted = accepted_total_;
    for (const auto &[id, ch] : channels_) {
        now.open_bytes_up += ch.live.bytes_up;
        now.open_bytes_down += ch.live.bytes_down;
    }
    now.outcomes = outcomes_;
    now.signer = signer;
    uint64_t ms = now_ms();
    now.smgw_backoff_ms_left = smgw_blocked_until_ms_ > ms ? smgw_blocked_until_ms_ - ms : 0;
    int64_t wall = static_cast<int64_t>(time(nullptr));
    for (const auto &cert : certificates_)
        now.certificates.push_back({cert.role, cert.subject, cert.path, (cert.not_after - wall) / 86400});
    answer_control(c, "ok\n" + metrics::openmetrics_text(channel_metrics_, now));
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
    json sessions = {{"entries", sessions_.size()},
                     {"capacity", sessions_.capacity()},
                     {"bytes", sessions_.bytes_used()},
                     {"evicted", sessions_.evicted()}};
    json listeners = json::array();
    for (const auto &l : listeners_)
        listeners.push_back({{"address", local_name(l.fd.get())},
                             {"from", l.from_systemd ? "systemd" : "clsgwd"},
                             {"channels", l.channels}});
    json smgw = {{"address", cfg_.smgw_address ? cfg_.smgw_address->to_string() : std::string()},
                 {"backoff_ms_left", smgw_blocked_until_ms_ > now ? smgw_blocked_until_ms_ - now : 0}};
    json status = {{"version", clsgw_version_text()},
                   {"pid", getpid()},
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
                   {"listeners", listeners},
                   {"smgw", smgw},
                   {"sessions", sessions},
                   {"certificates", certs}};
    // Every string in it comes from the configuration or was checked as printable on its way in;
    // anything else would be replaced, never thrown about.
    return status.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace clsgw
