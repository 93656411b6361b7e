#include "master.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "../../lib/activation.hpp"
#include "../../lib/log.hpp"
#include "../../lib/net.hpp"
#include "../../lib/util.hpp"
#include "environment.hpp"

namespace clsgw {

namespace {

constexpr int LISTEN_BACKLOG = 128;
constexpr uint64_t HANDSHAKE_GRACE_MS = 1000; // the worker reports its own timeout first
constexpr uint64_t LIMIT_LOG_INTERVAL_MS = 10000;
constexpr uint64_t SIGNER_BACKOFF_MAX_MS = 60000;
constexpr unsigned WORKER_LOG_LINES_MAX = 200;
constexpr uint64_t CERTIFICATE_CHECK_INTERVAL_MS = 24ull * 3600 * 1000; // expiry warnings once a day
constexpr uint64_t SMGW_BACKOFF_FIRST_MS = 1000;
// Workers report their own failures: it takes this many channels failing in a row before their
// word backs the SMGW off (clsgwd's own connect failing counts at once).
constexpr unsigned SMGW_FAILED_CHANNELS_FOR_BACKOFF = 3;
constexpr uint64_t SPARE_REFILL_DEFER_MS = 1000;

// Places the given fds at 3, 4, 5 (and /dev/null on 0-2) and execs; never returns.
[[noreturn]] void exec_child(const std::string &path, const std::vector<int> &fds, std::vector<std::string> args,
                             bool keep_stderr)
{
    std::vector<int> high;
    for (int fd : fds)
        high.push_back(fcntl(fd, F_DUPFD_CLOEXEC, 16));
    for (size_t i = 0; i < high.size(); i++)
        if (high[i] < 0 || dup2(high[i], 3 + static_cast<int>(i)) < 0)
            _exit(126);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        if (!keep_stderr)
            dup2(null, 2);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    std::vector<char *> argv;
    for (auto &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    char *envp[] = {nullptr};
    execve(path.c_str(), argv.data(), envp);
    _exit(127);
}

std::string signal_name(int sig)
{
    const char *abbrev = sigabbrev_np(sig);
    return abbrev ? std::string("SIG") + abbrev : std::to_string(sig);
}

std::string upstream_errno_reason(int err)
{
    switch (err) {
    case ECONNREFUSED: return "smgw_connection_refused";
    case ENETUNREACH:
    case EHOSTUNREACH: return "smgw_network_unreachable";
    case ETIMEDOUT: return "smgw_connect_timeout";
    }
    return "smgw_unreachable";
}

// Worker log text is untrusted: no control bytes reach the log.
std::string sanitize(const uint8_t *data, size_t len)
{
    std::string out(reinterpret_cast<const char *>(data), len);
    for (auto &c : out)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            c = '?';
    return out;
}

// A worker's log record as a line in which all its text is the value of a named key:
// `worker msg="..." key=value ...`. nullopt when malformed (a protocol violation).
std::optional<std::pair<log_level, std::string>> worker_log_line(const bytes &p)
{
    std::string err;
    auto rec = decode_log_record(p, err);
    if (!rec)
        return std::nullopt;
    log_fields f;
    f.add("msg", rec->message.empty() ? "-" : rec->message);
    for (const auto &[k, v] : rec->fields)
        f.add(k, v);
    return std::make_pair(rec->level, "worker " + f.str());
}

// Overwrites a buffer that held a TLS session before it is freed.
void wipe(bytes &b)
{
    if (!b.empty())
        explicit_bzero(b.data(), b.size());
    b.clear();
}

} // namespace

master::master(config cfg, master_paths paths, std::string certificate_pem, std::map<std::string, std::string> trust_pems,
               long worker_uid, long worker_gid)
    : cfg_(std::move(cfg)), paths_(std::move(paths)), certificate_pem_(std::move(certificate_pem)),
      trust_pems_(std::move(trust_pems)), worker_uid_(worker_uid), worker_gid_(worker_gid)
{
}

// Groups channels by listener, then takes systemd's sockets (named after any channel of a
// group) and binds the rest.
bool master::open_listeners(std::string &error)
{
    auto activated = take_activated_sockets(error);
    if (!error.empty())
        return false;
    for (auto &s : activated) {
        const channel_config *ch = cfg_.find_channel(s.name);
        if (!ch) {
            error = "systemd passed a socket named '" + s.name + "' but no [channel:" + s.name +
                    "] exists (FileDescriptorName= must be a channel name)";
            return false;
        }
        auto it = std::find_if(listeners_.begin(), listeners_.end(),
                               [&](const listener &l) { return l.key == ch->listener_key(); });
        if (it != listeners_.end()) {
            error = "systemd passed two sockets for channel '" + s.name + "' or its listener";
            return false;
        }
        listeners_.push_back({ch->listener_key(), {}, std::move(s.fd)});
    }
    std::vector<listener> built;
    if (!build_listeners(cfg_, built, error))
        return false;
    listeners_ = std::move(built);
    return true;
}

// The listeners cfg needs: those already open (from systemd or an earlier configuration) are
// kept, the others are bound. On error nothing of ours changes and the new ones are closed.
bool master::build_listeners(const config &cfg, std::vector<listener> &out, std::string &error)
{
    for (const auto &ch : cfg.channels) {
        auto it = std::find_if(out.begin(), out.end(), [&](const listener &l) { return l.key == ch.listener_key(); });
        if (it == out.end())
            out.push_back({ch.listener_key(), {ch.name}, unique_fd()});
        else
            it->channels.push_back(ch.name);
    }
    for (auto &l : out) {
        auto old = std::find_if(listeners_.begin(), listeners_.end(), [&](const listener &o) { return o.key == l.key; });
        if (old != listeners_.end() && old->fd) {
            l.fd.reset(dup(old->fd.get())); // the old list closes its copy when it is replaced
            fcntl(l.fd.get(), F_SETFD, FD_CLOEXEC);
            continue;
        }
        const channel_config *ch = cfg.find_channel(l.channels[0]);
        if (!ch->listen) {
            error = "channel '" + ch->name + "' has no listen address and systemd passed no socket named '" +
                    ch->name + "'";
            return false;
        }
        l.fd = listen_on(*ch->listen, LISTEN_BACKLOG);
        if (!l.fd) {
            error = "channel '" + ch->name + "': cannot listen on " + ch->listen_text + ": " + errno_text(errno);
            return false;
        }
    }
    return true;
}

void master::setup_signals()
{
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1})
        sigaddset(&set, s);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    signals_.reset(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signals_)
        fatal("signalfd failed", log_fields().add("error", errno_text(errno)));
    signal(SIGPIPE, SIG_IGN);
}

signer_process master::spawn_signer(const config &cfg, const std::string &program)
{
    signer_process s;
    if (!cfg.signer_socket.empty()) {
        // clsgw-signer runs as its own service (its socket is activated by systemd).
        s.external = true;
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        memcpy(addr.sun_path, cfg.signer_socket.c_str(), cfg.signer_socket.size());
        s.control.reset(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
        if (!s.control || connect(s.control.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
            log_error("cannot connect to clsgw-signer", log_fields().add("socket", cfg.signer_socket)
                                                            .add("error", errno_text(errno)));
            s.control.reset();
        }
        s.started_ms = now_ms();
        return s;
    }
    unique_fd theirs;
    if (!ipc_socketpair(s.control, theirs)) {
        log_error("cannot create the signer control socket", log_fields().add("error", errno_text(errno)));
        return s;
    }
    pid_t pid = fork();
    if (pid < 0) {
        log_error("cannot fork the signer", log_fields().add("error", errno_text(errno)));
        s.control.reset();
        return s;
    }
    if (pid == 0)
        exec_child(program, {theirs.get()},
                   {"clsgw-signer", "--key", cfg.key.path, "--certificate", cfg.certificate.path, "--audit-log",
                    cfg.audit_log.path, "--max-sessions", std::to_string(cfg.max_channels + 16), "--log-level",
                    log_level_name(cfg.level)},
                   true);
    s.pid = pid;
    s.started_ms = now_ms();
    log_debug("signer started", log_fields().add("pid", static_cast<int64_t>(pid)));
    return s;
}

void master::start_signer()
{
    unsigned restarts = signer_.restarts;
    uint64_t backoff = signer_.backoff_ms;
    bool ever_ready = signer_.ever_ready;
    signer_ = spawn_signer(cfg_, paths_.signer);
    signer_.restarts = restarts;
    signer_.backoff_ms = backoff;
    signer_.ever_ready = ever_ready;
    if (signer_.down()) {
        signer_.restart_at_ms = now_ms() + signer_.backoff_ms;
        signer_.backoff_ms = std::min(signer_.backoff_ms * 2, SIGNER_BACKOFF_MAX_MS);
    }
}

// A reload's new signer: its log lines pass through (the last one is the reason should it
// fail); once it has loaded the key and proved it matches the certificate, the reload commits.
void master::on_reload_signer_message()
{
    signer_process &s = reload_->signer;
    ipc_recv_result r = ipc_recv(s.control.get(), false);
    const bytes &payload = r.message.payload;
    if (r.status == ipc_status::would_block)
        return;
    if (r.status == ipc_status::closed)
        return refuse_reload("signer: " + (reload_->signer_said.empty()
                                               ? "the new signer did not start (key unreadable, or not matching "
                                                 "the certificate: see its message)"
                                               : reload_->signer_said));
    if (r.status != ipc_status::ok)
        return;
    if (r.message.type == msg_type::log && !payload.empty() && valid_log_level(payload[0]) && payload.size() <= 1025) {
        reload_->signer_said = sanitize(payload.data() + 1, payload.size() - 1);
        log_raw(static_cast<log_level>(payload[0]), reload_->signer_said);
    } else if (r.message.type == msg_type::signer_ready) {
        tlv_reader t;
        std::string err;
        auto id = t.parse(payload, err) ? t.raw(1, 32) : std::nullopt;
        s.key_id = id ? hex(*id) : "?";
        s.ready = s.ever_ready = true;
        commit_reload(*reload_);
        reload_.reset();
    }
}

void master::on_signer_message()
{
    ipc_recv_result r = ipc_recv(signer_.control.get(), false);
    if (r.status == ipc_status::would_block)
        return;
    if (r.status == ipc_status::ok && r.message.type == msg_type::signer_ready && !signer_.ready) {
        tlv_reader t;
        std::string err;
        auto id = t.parse(r.message.payload, err) ? t.raw(1, 32) : std::nullopt;
        signer_.key_id = id ? hex(*id) : "?";
        signer_.ready = signer_.ever_ready = true;
        signer_.backoff_ms = 1000;
        log_info("signer ready", log_fields().add("pid", static_cast<int64_t>(signer_.pid)).add("key", signer_.key_id)
                                     .add("mode", signer_.external ? "service" : "child"));
        return;
    }
    if (r.status == ipc_status::ok && r.message.type == msg_type::signer_counts)
        return on_signer_counts(r.message.payload); // control.cpp: clsgwctl check and metrics
    if (r.status == ipc_status::closed) {
        signer_.control.reset(); // a child's exit status arrives through SIGCHLD
        signer_.ready = false;
        if (signer_.external && !stopping_) {
            signer_.restarts++;
            log_error("lost the connection to clsgw-signer; reconnecting", log_fields().add("in_ms", signer_.backoff_ms));
            signer_.restart_at_ms = now_ms() + signer_.backoff_ms;
            signer_.backoff_ms = std::min(signer_.backoff_ms * 2, SIGNER_BACKOFF_MAX_MS);
        }
        return;
    }
    const bytes &p = r.message.payload;
    if (r.status == ipc_status::ok && r.message.type == msg_type::log && !p.empty() && valid_log_level(p[0]) &&
        p.size() <= 1025) {
        log_raw(static_cast<log_level>(p[0]), sanitize(p.data() + 1, p.size() - 1));
        return;
    }
    log_error("unexpected message from the signer", log_fields().add("error", r.error));
}

void master::signer_exited(int status)
{
    // What it said before it exited (why it failed) may still wait in its socket: the SIGCHLD can
    // be read first. on_signer_message logs it, and resets the socket at its end.
    for (pollfd p{signer_.control.get(), POLLIN, 0}; signer_.control && poll(&p, 1, 0) == 1;)
        on_signer_message();
    signer_.pid = -1;
    signer_.control.reset();
    bool was_ready = signer_.ever_ready;
    signer_.ready = false;
    std::string how = WIFSIGNALED(status) ? "signal=" + signal_name(WTERMSIG(status))
                                          : "exit=" + std::to_string(WEXITSTATUS(status));
    if (!was_ready && !stopping_)
        fatal("the signer failed to start", log_fields().add("status", how));
    if (stopping_)
        return;
    // Back off while it keeps dying; a signer that lived a minute starts from 1s again.
    if (now_ms() - signer_.started_ms > SIGNER_BACKOFF_MAX_MS)
        signer_.backoff_ms = 1000;
    signer_.restarts++;
    log_error("signer exited; restarting", log_fields().add("status", how).add("in_ms", signer_.backoff_ms));
    signer_.restart_at_ms = now_ms() + signer_.backoff_ms;
    signer_.backoff_ms = std::min(signer_.backoff_ms * 2, SIGNER_BACKOFF_MAX_MS);
}

// Before the signer was ever ready, connections wait in the backlog; once it was, a signer
// outage fails new channels fast (accept_on closes them with a reason) instead of piling them up.
bool master::accepting() const
{
    return !stopping_ && signer_.ever_ready && channels_.size() < cfg_.max_channels &&
           now_ms() >= accept_paused_until_ms_;
}

void master::accept_on(listener &l)
{
    while (accepting()) {
        sock_address peer;
        peer.length = sizeof peer.storage;
        int fd = accept4(l.fd.get(), reinterpret_cast<sockaddr *>(&peer.storage), &peer.length,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                accept_paused_until_ms_ = now_ms() + 1000;
                log_warn("out of file descriptors or memory; pausing accept for 1s",
                         log_fields().add("error", errno_text(errno)));
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                log_warn("accept failed", log_fields().add("channel", l.channels[0]).add("error", errno_text(errno)));
            }
            return;
        }
        set_nodelay(fd);
        if (!signer_.ready) {
            refuse_without_signer(l, unique_fd(fd), peer.to_string());
            continue;
        }
        spawn_worker(l, unique_fd(fd), peer.to_string());
    }
    if (channels_.size() >= cfg_.max_channels) {
        limit_hits_++;
        uint64_t now = now_ms();
        if (now - limit_logged_ms_ >= LIMIT_LOG_INTERVAL_MS) {
            log_warn("max_channels reached; new connections wait in the listen backlog",
                     log_fields().add("max_channels", cfg_.max_channels).add("times", limit_hits_));
            limit_logged_ms_ = now;
            limit_hits_ = 0;
        }
    }
}

// The signer is restarting: a channel cannot authenticate, so it ends at once, counted and
// logged (rate-limited like other repeated failures), rather than waiting without a word.
void master::refuse_without_signer(const listener &l, unique_fd connection, const std::string &peer)
{
    count_outcome("failed", "signer_unavailable");
    channel probe;
    probe.peer = peer;
    if (may_log_failure(probe, "signer_unavailable"))
        log_warn("channel refused: the signer is restarting",
                 log_fields().add("name", l.channels[0]).add("peer", peer).add("reason", "signer_unavailable"));
    connection.reset();
}

worker_job master::make_job(const channel &ch) const
{
    worker_job job;
    job.channel_id = ch.id;
    job.direction = ch.cfg.direction;
    job.channel_name = ch.cfg.name;
    if (job.direction == channel_direction::inbound)
        for (const auto &c : ch.candidates)
            job.routes.push_back({c.name, c.server_name, trust_pems_.at(cfg_.trust_path(c))});
    job.peer = ch.peer;
    job.ingress = ch.cfg.ingress;
    job.proxy = ch.cfg.proxy;
    job.target = ch.cfg.target;
    job.allow = ch.cfg.allow;
    job.handshake_timeout_ms = cfg_.handshake_timeout_ms;
    job.idle_timeout_ms = cfg_.idle_timeout_ms;
    job.close_timeout_ms = cfg_.close_timeout_ms;
    job.signer_timeout_ms = cfg_.signer_timeout_ms;
    job.max_session_lifetime_ms = cfg_.max_session_lifetime_ms;
    job.certificate_pem = certificate_pem_;
    job.trust_pem = trust_pems_.at(cfg_.trust_path(ch.cfg));
    auto level = channel_levels_.find(ch.cfg.name);
    job.level = level != channel_levels_.end() ? level->second : log_threshold();
    job.uid = worker_uid_;
    job.gid = worker_gid_;
    return job;
}

void master::spawn_worker(const listener &l, unique_fd connection, const std::string &peer)
{
    const channel_config &cc = *cfg_.find_channel(l.channels[0]);
    channel ch;
    ch.id = ++next_id_;
    ch.cfg = cc;
    for (const auto &name : l.channels)
        ch.candidates.push_back(*cfg_.find_channel(name));
    if (cfg_.smgw_address)
        ch.upstream = *cfg_.smgw_address;
    ch.peer = peer;
    if (cc.direction == channel_direction::inbound)
        han_keepalive(connection.get()); // the HAN side of an inbound channel
    ch.started_ms = now_ms();
    ch.cache_generation = cache_generation_;
    ch.handshake_deadline_ms = ch.started_ms + cfg_.handshake_timeout_ms + HANDSHAKE_GRACE_MS;
    unique_fd signer_end, worker_signer_end;
    if (!ipc_socketpair(signer_end, worker_signer_end)) {
        log_error("cannot create channel sockets", log_fields().add("error", errno_text(errno)));
        return;
    }
    tlv_writer session;
    session.add_u64(1, ch.id).add(2, cc.name).add(3, peer);
    // Never waits: a signer that leaves this many session requests unread is stuck, and the
    // channel ends at once with a reason instead of freezing every other channel.
    if (!ipc_send_nowait(signer_.control.get(), msg_type::session_open, session.data(), signer_end.get())) {
        count_outcome("failed", "signer_unavailable");
        log_error("cannot open a signer session; channel refused",
                  log_fields().add("name", cc.name).add("peer", peer).add("reason", "signer_unavailable")
                      .add("error", errno == EAGAIN ? "the signer is not reading its requests" : errno_text(errno)));
        return;
    }
    signer_end.reset();
    bool spare = hand_to_spare(ch, connection.get(), worker_signer_end.get());
    if (!spare) {
        unique_fd worker_control;
        if (!ipc_socketpair(ch.control, worker_control)) {
            log_error("cannot create channel sockets", log_fields().add("error", errno_text(errno)));
            return;
        }
        pid_t pid = fork();
        if (pid < 0) {
            log_error("cannot fork a worker", log_fields().add("error", errno_text(errno)));
            return;
        }
        if (pid == 0)
            exec_child(paths_.worker, {worker_control.get(), connection.get(), worker_signer_end.get()},
                       {"clsgw-worker"}, false);
        ch.pid = pid;
        if (!send_to_worker(ch, msg_type::job, encode_job(make_job(ch))))
            log_error("cannot send the job to the worker",
                      log_fields().add("channel", ch.id).add("error", errno_text(errno)));
    }
    log_debug("channel accepted", log_fields().add("id", ch.id).add("name", cc.name).add("peer", peer)
                                      .add("pid", static_cast<int64_t>(ch.pid)).add("spare", spare ? "yes" : "no"));
    pid_to_channel_[ch.pid] = ch.id;
    accepted_total_++;
    channels_.emplace(ch.id, std::move(ch));
}

// --- spare workers ---------------------------------------------------------------------------

// The refill waits while a channel's handshake is young: forking blocks this loop for a moment
// and the new spare's start competes for the CPU, both of which that handshake would feel.
uint64_t master::spare_refill_due() const
{
    uint64_t due = spare_refill_at_ms_;
    for (const auto &[id, ch] : channels_)
        if (!ch.established && ch.kill_reason.empty())
            due = std::max(due, ch.started_ms + SPARE_REFILL_DEFER_MS);
    return due;
}

void master::refill_spares()
{
    if (stopping_ || spares_.size() >= cfg_.spare_workers || now_ms() < spare_refill_due())
        return;
    while (spares_.size() < cfg_.spare_workers) {
        spare_worker s;
        unique_fd theirs;
        if (!ipc_socketpair(s.control, theirs)) {
            log_error("cannot create a spare worker's socket", log_fields().add("error", errno_text(errno)));
            spare_refill_at_ms_ = now_ms() + spare_backoff_ms_;
            return;
        }
        s.pid = fork();
        if (s.pid < 0) {
            log_error("cannot fork a spare worker", log_fields().add("error", errno_text(errno)));
            spare_refill_at_ms_ = now_ms() + spare_backoff_ms_;
            return;
        }
        if (s.pid == 0)
            exec_child(paths_.worker, {theirs.get()},
                       {"clsgw-worker", "--spare", std::to_string(worker_uid_), std::to_string(worker_gid_)}, false);
        spares_.push_back(std::move(s));
    }
}

// The oldest spare (the likeliest to be waiting already) takes the channel: the connection in
// a handover message, then the job with the signer session. A spare that died meanwhile is
// killed for certain and the next one tried; false when none took it.
bool master::hand_to_spare(channel &ch, int connection, int signer_session)
{
    while (!spares_.empty()) {
        spare_worker s = std::move(spares_.front());
        spares_.erase(spares_.begin());
        if (s.control && ipc_send_nowait(s.control.get(), msg_type::handover, {}, connection) &&
            ipc_send_nowait(s.control.get(), msg_type::job, encode_job(make_job(ch)), signer_session)) {
            ch.pid = s.pid;
            ch.control = std::move(s.control);
            return true;
        }
        kill(s.pid, SIGKILL);
        retired_spares_.push_back(s.pid);
    }
    return false;
}

// Reload and stop: spares started under the old settings (worker path, user) exit when their
// control socket closes; the pool refills under the new ones.
void master::retire_spares()
{
    for (auto &s : spares_)
        retired_spares_.push_back(s.pid);
    spares_.clear();
    spare_refill_at_ms_ = 0;
    spare_backoff_ms_ = 1000;
}

size_t master::spares_ready() const
{
    return static_cast<size_t>(std::count_if(spares_.begin(), spares_.end(), [](const spare_worker &s) {
        return static_cast<bool>(s.control);
    }));
}

// Before its job a spare says nothing unless it fails (a log line, then it exits).
void master::on_spare_message(spare_worker &s)
{
    ipc_budget unlimited_logs; // a spare may say only log records, which are not counted
    ipc_recv_result r = ipc_recv_checked(s.control.get(), role_master, unlimited_logs);
    if (r.status == ipc_status::would_block)
        return;
    auto line = r.status == ipc_status::ok && r.message.type == msg_type::log ? worker_log_line(r.message.payload)
                                                                                 : std::nullopt;
    if (line) {
        log_raw(line->first, line->second + " " + log_fields().add("spare_pid", static_cast<int64_t>(s.pid)).str());
        return;
    }
    if (r.status != ipc_status::closed)
        kill(s.pid, SIGKILL); // anything else before a job is a protocol violation
    s.control.reset();
}

// True when pid was a spare. One from the pool died unused: logged, and the refill waits.
bool master::spare_exited(pid_t pid, int status)
{
    auto retired = std::find(retired_spares_.begin(), retired_spares_.end(), pid);
    if (retired != retired_spares_.end()) {
        retired_spares_.erase(retired);
        return true;
    }
    auto it = std::find_if(spares_.begin(), spares_.end(), [pid](const spare_worker &s) { return s.pid == pid; });
    if (it == spares_.end())
        return false;
    while (it->control) {
        pollfd p{it->control.get(), POLLIN, 0};
        if (poll(&p, 1, 0) != 1)
            break;
        on_spare_message(*it);
    }
    spares_.erase(it);
    std::string how = WIFSIGNALED(status) ? signal_name(WTERMSIG(status)) : "exit " + std::to_string(WEXITSTATUS(status));
    log_warn("a spare worker ended before serving a channel; the pool refills later",
             log_fields().add("pid", static_cast<int64_t>(pid)).add("status", how).add("retry_in_ms", spare_backoff_ms_));
    spare_refill_at_ms_ = now_ms() + spare_backoff_ms_;
    spare_backoff_ms_ = std::min<uint64_t>(spare_backoff_ms_ * 2, 60000);
    return true;
}

// A silently dead SMGW is noticed within keepalive_idle + keepalive_interval * keepalive_probes.
void master::han_keepalive(int fd) const
{
    set_keepalive(fd, static_cast<int>(std::max<uint64_t>(cfg_.keepalive_idle_ms / 1000, 1)),
                  static_cast<int>(std::max<uint64_t>(cfg_.keepalive_interval_ms / 1000, 1)),
                  static_cast<int>(cfg_.keepalive_probes));
}

// Every violation is logged with what it was; the channel's line then says worker_protocol_violation.
void master::protocol_violation(channel &ch, const std::string &what)
{
    if (ch.kill_reason.empty())
        log_warn("worker broke the IPC protocol; killed",
                 log_fields().add("channel", ch.id).add("name", ch.cfg.name).add("error", what));
    kill_worker(ch, "worker_protocol_violation");
}

void master::kill_worker(channel &ch, const std::string &reason)
{
    if (ch.kill_reason.empty())
        ch.kill_reason = reason;
    kill(ch.pid, SIGKILL);
}

void master::on_worker_message(channel &ch)
{
    ipc_recv_result r = ipc_recv_checked(ch.control.get(), role_master, ch.budget);
    if (r.status == ipc_status::would_block)
        return;
    if (r.status == ipc_status::closed) {
        ch.control.reset();
        return;
    }
    if (r.status != ipc_status::ok) {
        return protocol_violation(ch, r.error);
    }
    const bytes &p = r.message.payload;
    switch (r.message.type) {
    case msg_type::log: {
        auto line = worker_log_line(p);
        if (!line)
            return protocol_violation(ch, "malformed log record");
        if (++ch.log_lines > WORKER_LOG_LINES_MAX)
            return;
        auto level = channel_levels_.find(ch.cfg.name);
        if (level != channel_levels_.end() && line->first > level->second)
            return;
        // What a worker says before its channel carries data is about a failed start (a scanner's
        // handshakes, bad SOCKS5): rate-limited per peer like the channel lines; warnings pass.
        if (!ch.established && line->first >= log_level::info && !may_log_failure(ch, "worker_detail"))
            return;
        log_raw(line->first, line->second + " " + log_fields().add("channel", ch.id).add("name", ch.cfg.name).str());
        return;
    }
    case msg_type::upstream_request:
        ch.upstream_requested = true;
        return start_upstream(ch, p);
    case msg_type::established: {
        auto info = decode_established(p);
        if (!info || !ch.upstream_requested || ch.established)
            return protocol_violation(ch, "established out of order or malformed");
        ch.established = true;
        ch.live = *info;
        return;
    }
    case msg_type::progress: {
        auto bytes_moved = decode_progress(p);
        uint64_t now = now_ms();
        if (ch.progress_at_ms)
            ch.progress_tokens = std::min(5.0, ch.progress_tokens + static_cast<double>(now - ch.progress_at_ms) / 1000.0);
        ch.progress_at_ms = now;
        if (ch.progress_tokens < 1)
            return protocol_violation(ch, "progress more often than once a second");
        ch.progress_tokens -= 1;
        if (!bytes_moved || !ch.established)
            return protocol_violation(ch, "progress before established or malformed");
        ch.live.bytes_up = bytes_moved->first;
        ch.live.bytes_down = bytes_moved->second;
        return;
    }
    case msg_type::result: {
        std::string err;
        auto res = decode_result(p, err);
        if (!res)
            return protocol_violation(ch, "malformed result");
        ch.result = std::move(res);
        return;
    }
    case msg_type::session_request:
    case msg_type::session_offer:
    case msg_type::session_store:
    case msg_type::session_lookup:
        on_session_message(ch, r.message.type, p);
        return wipe(r.message.payload);
    default:
        return protocol_violation(ch, "unexpected message type");
    }
}

bool master::send_to_worker(channel &ch, msg_type type, const bytes &payload, int fd)
{
    if (ipc_send_nowait(ch.control.get(), type, payload, fd))
        return true;
    if (errno == EAGAIN) {
        log_warn("worker does not read its messages; killed",
                 log_fields().add("channel", ch.id).add("name", ch.cfg.name).add("message", ipc_rule_for(type)->name));
        kill_worker(ch, "worker_not_reading");
    }
    return false;
}

// The scope of a client session: the SMGW, the channel and the target it serves, all from the
// configuration and the master's own check of the target. A worker names none of it.
std::string master::client_scope(const channel &ch) const
{
    return "out " + ch.upstream.to_string() + " " + ch.cfg.name + " " + ch.target->to_string();
}

// The scope of a server session: the listener, the channel whose trust accepted its full
// handshake, and the SMGW's address; then the session id.
std::string master::server_scope(const channel &ch, const std::string &channel_name, const bytes &id) const
{
    std::string smgw_host = ch.peer.substr(0, ch.peer.rfind(':'));
    return "in " + ch.cfg.listener_key() + " " + channel_name + " " + smgw_host + " " + hex(id);
}

void master::reset_session_cache()
{
    cache_generation_++;
    // One channel (its apps may name many targets) holds at most a quarter of the cache.
    size_t entries = cfg_.resumption ? cfg_.session_cache_entries : 0;
    if (!sessions_.reset(entries, cfg_.max_session_lifetime_ms, std::max<size_t>(entries / 4, 1)))
        log_error("cannot reserve memory for the TLS session cache; no session is resumed",
                  log_fields().add("session_cache_entries", cfg_.session_cache_entries).add("error", errno_text(errno)));
}

void master::answer_session(channel &ch, const std::string &key)
{
    session_message a;
    bool current = ch.cache_generation == cache_generation_;
    auto found = cfg_.resumption && current ? sessions_.get(key, now_ms()) : std::nullopt;
    if (found) {
        a.blob.assign(found->data, found->data + found->len);
        a.age_ms = now_ms() - found->created_ms;
    }
    bytes out = encode_session_message(a);
    send_to_worker(ch, msg_type::session_answer, out);
    wipe(out);
    wipe(a.blob);
}

// Outbound: a session to resume with the SMGW (request) or the one a full handshake made
// (offer), both in the scope of the target the master checked. Inbound: the session for an id
// the SMGW wants to resume (lookup, which names the channel the server_name picked) or a new one
// (store, after the worker chose its channel). Each at most once per channel (protocol table).
void master::on_session_message(channel &ch, msg_type type, const bytes &payload)
{
    auto m = decode_session_message(payload);
    bool outbound = ch.cfg.direction == channel_direction::outbound;
    bool client_side = type == msg_type::session_request || type == msg_type::session_offer;
    if (!m || outbound != client_side)
        return protocol_violation(ch, "malformed session message or one for the other direction");
    struct wipe_on_exit {
        session_message &m;
        ~wipe_on_exit()
        {
            wipe(m.blob);
            ipc_wipe_receive_buffer();
        }
    } guard{*m};
    if (outbound) {
        if (!m->key.empty() || !ch.target)
            return protocol_violation(ch, "session message with a key of its own or before its target was checked");
        if (type == msg_type::session_request)
            return answer_session(ch, client_scope(ch));
    } else {
        std::string name(m->channel.begin(), m->channel.end());
        bool candidate = std::any_of(ch.candidates.begin(), ch.candidates.end(),
                                     [&](const channel_config &c) { return c.name == name; });
        if (m->key.empty() || m->key.size() > 32)
            return protocol_violation(ch, "session id missing or too long");
        if (type == msg_type::session_lookup) {
            if (!candidate || ch.upstream_requested)
                return protocol_violation(ch, "session lookup for a channel not its own, or after its choice");
            ch.resumed_channel = name; // the channel it then asks for must be this one
            return answer_session(ch, server_scope(ch, name, m->key));
        }
        // A store comes after the worker chose its channel: the one whose trust it checked.
        if (!ch.upstream_requested || !m->channel.empty())
            return protocol_violation(ch, "session stored before the channel was chosen");
    }
    if (!cfg_.resumption || m->blob.empty() || ch.cache_generation != cache_generation_)
        return; // a channel from before a reload authenticated against the old trust
    if (m->age_ms > cfg_.handshake_timeout_ms + HANDSHAKE_GRACE_MS)
        return protocol_violation(ch, "session older than any handshake can be");
    std::string key = outbound ? client_scope(ch) : server_scope(ch, ch.cfg.name, m->key);
    std::string group = (outbound ? "out " : "in ") + ch.cfg.name;
    if (!sessions_.put(key, group, m->blob.data(), m->blob.size(), now_ms() - m->age_ms, now_ms()))
        log_debug("TLS session not kept", log_fields().add("channel", ch.id).add("bytes", m->blob.size()));
}

// The target a worker asks the SMGW for: a static channel's own, or one its allow list admits.
// The master only compares it with its configuration; the worker parsed the app's bytes.
bool master::check_target(channel &ch, const bytes &text)
{
    auto t = parse_host_port(std::string(text.begin(), text.end()));
    if (!t)
        return false;
    if (ch.cfg.ingress == ingress_kind::static_target)
        return ch.cfg.target && t->to_string() == ch.cfg.target->to_string();
    for (const auto &rule : ch.cfg.allow)
        if (allow_rule_matches(rule, *t)) {
            ch.target = t;
            return true;
        }
    return false;
}

// Outbound: the SMGW. Inbound: the local service of the channel the worker picked, which
// must be one of its listener's channels. The worker never names an address.
void master::start_upstream(channel &ch, const bytes &choice)
{
    const sock_address *to = nullptr;
    if (ch.cfg.direction == channel_direction::outbound) {
        if (!check_target(ch, choice))
            return protocol_violation(ch, "a target its channel does not allow");
        if (!ch.target)
            ch.target = ch.cfg.target;
        if (now_ms() < smgw_blocked_until_ms_)
            return fail_upstream(ch, "smgw_backoff"); // not now: the SMGW is left alone for a while
        to = &ch.upstream;
    } else {
        std::string name(choice.begin(), choice.end());
        auto chosen = std::find_if(ch.candidates.begin(), ch.candidates.end(),
                                   [&](const channel_config &c) { return c.name == name; });
        if (chosen == ch.candidates.end() || (!ch.resumed_channel.empty() && ch.resumed_channel != name))
            return protocol_violation(ch, "a channel not its own, or not the one it resumed");
        ch.cfg = *chosen;
        to = &*ch.cfg.forward;
    }
    int err = 0;
    ch.connecting = connect_start(*to, &err);
    if (!ch.connecting) {
        if (ch.cfg.direction == channel_direction::outbound)
            smgw_back_off(upstream_errno_reason(err), "clsgwd");
        return fail_upstream(ch, upstream_errno_reason(err));
    }
    ch.connect_deadline_ms = now_ms() + cfg_.connect_timeout_ms;
}

void master::fail_upstream(channel &ch, const std::string &smgw_reason)
{
    ch.connecting.reset();
    // Reasons are phrased for the SMGW; for an inbound channel the far end is the local service.
    std::string reason = smgw_reason;
    if (ch.cfg.direction == channel_direction::inbound)
        reason = "service" + reason.substr(reason.find('_'));
    bytes why(reason.begin(), reason.end());
    send_to_worker(ch, msg_type::upstream_failed, why);
}

void master::finish_upstream(channel &ch)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(ch.connecting.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        if (ch.cfg.direction == channel_direction::outbound)
            smgw_back_off(upstream_errno_reason(err), "clsgwd");
        return fail_upstream(ch, upstream_errno_reason(err));
    }
    if (ch.cfg.direction == channel_direction::outbound)
        han_keepalive(ch.connecting.get());
    ch.upstream_ready_ms = now_ms();
    if (!send_to_worker(ch, msg_type::upstream_ready, {}, ch.connecting.get()))
        log_warn("cannot pass the upstream socket", log_fields().add("channel", ch.id).add("error", errno_text(errno)));
    ch.connecting.reset();
}

void master::log_summary(const channel &ch, int status)
{
    log_fields f;
    f.add("id", ch.id).add("name", ch.cfg.name).add("direction", direction_name(ch.cfg.direction)).add("peer", ch.peer);
    uint64_t duration = now_ms() - ch.started_ms;
    if (WIFSIGNALED(status) && ch.kill_reason.empty()) {
        int sig = WTERMSIG(status);
        count_outcome("failed", sig == SIGSYS ? "sandbox_violation" : "worker_died_" + signal_name(sig));
        f.add("signal", signal_name(sig)).add("duration_ms", duration);
        if (sig == SIGSYS)
            log_error("channel failed: worker killed by the sandbox (sandbox violation)", f);
        else
            log_error("channel failed: worker died", f);
        return;
    }
    if (!ch.result) {
        count_outcome("failed", ch.kill_reason.empty() ? "worker_exited_without_result" : ch.kill_reason);
        f.add("outcome", "failed").add("reason", ch.kill_reason.empty() ? "worker_exited_without_result" : ch.kill_reason);
        if (WIFEXITED(status))
            f.add("exit", WEXITSTATUS(status));
        f.add("duration_ms", duration);
        log_warn("channel closed", f);
        return;
    }
    const worker_result &r = *ch.result;
    count_outcome(outcome_name(r.result), ch.kill_reason.empty() ? r.reason : ch.kill_reason);
    if (r.result == outcome::failed && r.tls_version.empty() && !may_log_failure(ch, r.reason))
        return;
    f.add("outcome", outcome_name(r.result)).add("reason", ch.kill_reason.empty() ? r.reason : ch.kill_reason);
    if (ch.cfg.direction == channel_direction::outbound) {
        if (ch.target) // as the master checked it
            f.add("target", ch.target->to_string());
        else if (!r.target.empty())
            f.add("target", r.target);
        f.add("proxy", proxy_name(ch.cfg.proxy));
        if (ch.cfg.proxy == proxy_kind::sni)
            f.add("port_sent", "no"); // server_name carries no port: the SMGW's proxy profile picks it
    } else {
        f.add("server_name", r.target.empty() ? "-" : r.target).add("forward", ch.cfg.forward_text);
    }
    f.add("bytes_up", r.bytes_up).add("bytes_down", r.bytes_down);
    if (!r.tls_version.empty())
        f.add("tls", r.tls_version).add("suite", r.cipher_suite).add("group", r.group).add("smgw_cert", r.peer_fingerprint)
            .add("handshake_ms", r.handshake_ms).add("smgw_wait_ms", format_ms_tenths(r.smgw_wait_us))
            .add("signer_ms", format_ms_tenths(r.signer_us));
    if (!r.tls_version.empty())
        f.add("resumed", r.resumed ? "yes" : "no");
    f.add("duration_ms", r.duration_ms).add("exit", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    if (r.result == outcome::ok)
        log_info("channel closed", f);
    else
        log_warn("channel closed", f);
}

bool master::may_log_failure(const channel &ch, const std::string &reason)
{
    const unsigned per_interval = 3;
    if (cfg_.log_suppress_interval_ms == 0)
        return true; // 0 turns the rate limit off
    std::string key = ch.peer.substr(0, ch.peer.rfind(':')) + " " + reason;
    failure_window &w = failures_[key];
    uint64_t now = now_ms();
    if (now - w.started_ms >= cfg_.log_suppress_interval_ms)
        w = failure_window{now, 0, 0}; // a summary was due and has been written by flush_suppressed
    if (w.logged < per_interval) {
        w.logged++;
        return true;
    }
    w.suppressed++;
    if (failures_.size() > 4096) // bounded: a flood of distinct peers cannot grow this without limit
        failures_.clear();
    return false;
}

// Writes the "suppressed" summary of every interval that has ended.
void master::flush_suppressed()
{
    uint64_t now = now_ms();
    for (auto it = failures_.begin(); it != failures_.end();) {
        failure_window &w = it->second;
        if (now - w.started_ms < cfg_.log_suppress_interval_ms) {
            ++it;
            continue;
        }
        if (w.suppressed)
            log_warn("suppressed repeated channel failures",
                     log_fields().add("peer", it->first.substr(0, it->first.find(' ')))
                         .add("reason", it->first.substr(it->first.find(' ') + 1)).add("suppressed", w.suppressed)
                         .add("interval", format_duration_ms(cfg_.log_suppress_interval_ms)));
        it = failures_.erase(it);
    }
}

uint64_t master::next_suppressed_flush() const
{
    uint64_t next = UINT64_MAX;
    for (const auto &[key, w] : failures_)
        if (w.suppressed)
            next = std::min(next, w.started_ms + cfg_.log_suppress_interval_ms);
    return next;
}

// An outbound channel that reached the SMGW but ended before its TLS session stood (refused
// or failed handshake, timeout) is the worker's report, not something clsgwd saw: it backs the
// SMGW off only when SMGW_FAILED_CHANNELS_FOR_BACKOFF channels in a row end so. One that stood
// resets the count.
void master::note_smgw_outcome(const channel &ch)
{
    if (ch.cfg.direction != channel_direction::outbound || !ch.upstream_requested || cfg_.smgw_backoff_max_ms == 0)
        return;
    bool tls_stood = ch.result && !ch.result->tls_version.empty();
    if (tls_stood) { // a refusal after TLS is the SMGW answering, not failing
        smgw_failed_channels_ = 0;
        smgw_backoff_ms_ = SMGW_BACKOFF_FIRST_MS;
        return;
    }
    std::string reason = ch.kill_reason.empty() && ch.result ? ch.result->reason : ch.kill_reason;
    if (reason == "smgw_backoff" || reason.rfind("cert_", 0) == 0 || reason == "signer_failed" ||
        reason == "worker_protocol_violation" || reason == "worker_not_reading" ||
        reason.rfind("smgw_connect", 0) == 0 || reason == "smgw_connection_refused" ||
        reason == "smgw_network_unreachable" || reason == "smgw_unreachable" ||
        (ch.result && ch.result->result == outcome::refused))
        return; // not the SMGW failing, or already counted by clsgwd's own connect
    // A handshake that ran out of time counts only when the SMGW had at least half of it: an app
    // that sends its SOCKS5 request just before handshake_timeout must not stop every channel.
    uint64_t smgw_had = ch.started_ms + cfg_.handshake_timeout_ms > ch.upstream_ready_ms
                            ? ch.started_ms + cfg_.handshake_timeout_ms - ch.upstream_ready_ms
                            : 0;
    if (reason == "handshake_timeout" && (ch.upstream_ready_ms == 0 || smgw_had < cfg_.handshake_timeout_ms / 2))
        return;
    if (++smgw_failed_channels_ < SMGW_FAILED_CHANNELS_FOR_BACKOFF)
        return;
    smgw_back_off(reason, "workers");
}

void master::smgw_back_off(const std::string &reason, const char *seen_by)
{
    if (cfg_.smgw_backoff_max_ms == 0)
        return;
    uint64_t now = now_ms();
    if (now < smgw_blocked_until_ms_)
        return; // channels already under way when the back-off began count once
    // +-20% jitter so that many devices behind one SMGW do not retry in step
    uint64_t jitter = smgw_backoff_ms_ / 5;
    uint64_t wait = smgw_backoff_ms_ - jitter + static_cast<uint64_t>(random()) % (2 * jitter + 1);
    smgw_blocked_until_ms_ = now + wait;
    log_warn("SMGW did not complete a channel; new channels fail fast meanwhile",
             log_fields().add("reason", reason).add("seen_by", seen_by).add("retry_in_ms", wait)
                 .add("smgw", cfg_.smgw_address ? cfg_.smgw_address->to_string() : "-"));
    smgw_backoff_ms_ = std::min(smgw_backoff_ms_ * 2, std::max(cfg_.smgw_backoff_max_ms, SMGW_BACKOFF_FIRST_MS));
}

void master::note_worker_usefulness(const channel &ch)
{
    if (ch.result || !ch.kill_reason.empty()) { // it did its job, or we ended it
        useless_deaths_ = 0;
        spawn_pause_ms_ = 1000;
        spare_backoff_ms_ = 1000;
        return;
    }
    if (++useless_deaths_ < 3)
        return;
    accept_paused_until_ms_ = now_ms() + spawn_pause_ms_;
    log_error("workers die before doing any work; new channels wait in the listen backlog",
              log_fields().add("deaths_in_a_row", useless_deaths_).add("pause_ms", spawn_pause_ms_)
                  .add("worker", paths_.worker));
    spawn_pause_ms_ = std::min<uint64_t>(spawn_pause_ms_ * 2, 60000);
}

void master::on_worker_exit(channel &ch, int status)
{
    // Drain what the worker sent before it exited (its result may still be queued).
    while (ch.control) {
        pollfd p{ch.control.get(), POLLIN, 0};
        if (poll(&p, 1, 0) != 1)
            break;
        on_worker_message(ch);
    }
    log_summary(ch, status);
    count_channel_metrics(ch); // control.cpp: clsgwctl metrics
    note_smgw_outcome(ch);
    note_worker_usefulness(ch);
}

void master::reap()
{
    for (;;) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        if (pid == signer_.pid) {
            signer_exited(status);
            continue;
        }
        if (reload_ && pid == reload_->signer.pid) {
            reload_->signer.pid = -1; // its closed socket ends the reload
            continue;
        }
        auto retired = std::find(retired_signers_.begin(), retired_signers_.end(), pid);
        if (retired != retired_signers_.end()) {
            retired_signers_.erase(retired);
            log_debug("retired signer exited", log_fields().add("pid", static_cast<int64_t>(pid)));
            continue;
        }
        if (spare_exited(pid, status))
            continue;
        auto it = pid_to_channel_.find(pid);
        if (it == pid_to_channel_.end())
            continue;
        auto ch = channels_.find(it->second);
        pid_to_channel_.erase(it);
        if (ch == channels_.end())
            continue;
        on_worker_exit(ch->second, status);
        channels_.erase(ch);
    }
}

void master::begin_stop(const char *why)
{
    if (stopping_)
        return;
    stopping_ = true;
    stop_deadline_ms_ = now_ms() + cfg_.shutdown_timeout_ms;
    if (reload_)
        refuse_reload("clsgwd is stopping");
    listeners_.clear();
    retire_spares();
    sd_notify_state("STOPPING=1");
    log_info("stopping: no new channels", log_fields().add("signal", why).add("open_channels", channels_.size())
                                              .add("shutdown_timeout", format_duration_ms(cfg_.shutdown_timeout_ms)));
}

void master::on_signal()
{
    signalfd_siginfo info;
    while (read(signals_.get(), &info, sizeof info) == sizeof info) {
        switch (info.ssi_signo) {
        case SIGCHLD: reap(); break;
        case SIGTERM: begin_stop("SIGTERM"); break;
        case SIGINT: begin_stop("SIGINT"); break;
        case SIGHUP: reload(); break;
        case SIGUSR1: {
            std::string why;
            if (!log_reopen(&why))
                log_error("cannot reopen the log file; logging on to the one open", log_fields().add("error", why));
            break;
        }
        }
    }
}

void master::check_deadlines()
{
    uint64_t now = now_ms();
    for (auto &[id, ch] : channels_) {
        if (!ch.established && ch.kill_reason.empty() && now >= ch.handshake_deadline_ms)
            kill_worker(ch, "handshake_timeout");
        if (ch.connecting && now >= ch.connect_deadline_ms) {
            if (ch.cfg.direction == channel_direction::outbound)
                smgw_back_off("smgw_connect_timeout", "clsgwd");
            fail_upstream(ch, "smgw_connect_timeout");
        }
    }
    if (stopping_ && now >= stop_deadline_ms_)
        for (auto &[id, ch] : channels_)
            kill_worker(ch, "shutdown_timeout");
    if (!stopping_ && signer_.down() && signer_.restart_at_ms && now >= signer_.restart_at_ms)
        start_signer();
    if (!failures_.empty())
        flush_suppressed();
    if (now - certificates_checked_ms_ >= CERTIFICATE_CHECK_INTERVAL_MS)
        check_certificate_expiry();
    if (now >= sessions_.next_expiry())
        sessions_.sweep(now); // a session's secret does not outlive max_session_lifetime
    check_control_deadlines();
}

int master::poll_timeout() const
{
    uint64_t now = now_ms(), next = now + 60000;
    for (const auto &[id, ch] : channels_) {
        if (!ch.established && ch.kill_reason.empty())
            next = std::min(next, ch.handshake_deadline_ms);
        if (ch.connecting)
            next = std::min(next, ch.connect_deadline_ms);
    }
    if (stopping_)
        next = std::min(next, stop_deadline_ms_);
    if (signer_.restart_at_ms)
        next = std::min(next, signer_.restart_at_ms);
    if (accept_paused_until_ms_ > now)
        next = std::min(next, accept_paused_until_ms_);
    if (spares_.size() < cfg_.spare_workers && !stopping_)
        next = std::min(next, spare_refill_due());
    if (watchdog_interval_ms_)
        next = std::min(next, watchdog_next_ms_);
    next = std::min(next, next_suppressed_flush());
    next = std::min(next, sessions_.next_expiry());
    next = std::min(next, next_control_deadline());
    if (status_due_ms_)
        next = std::min(next, status_due_ms_); // a changed status waits at most a second
    return next <= now ? 0 : static_cast<int>(next - now);
}

// sd_notify STATUS=: what `systemctl status` shows; sent when it changes, at most once a second.
void master::notify_status()
{
    uint64_t ok = 0, finished = 0;
    for (const auto &[key, count] : outcomes_) {
        finished += count;
        if (key.rfind("ok/", 0) == 0)
            ok += count;
    }
    std::string status = std::to_string(channels_.size()) + " open channels, " + std::to_string(finished) +
                         " finished (" + std::to_string(ok) + " ok), signer " + (signer_.ready ? "ready" : "down");
    status_due_ms_ = 0;
    if (status == status_sent_)
        return;
    if (now_ms() - status_sent_ms_ < 1000) {
        status_due_ms_ = status_sent_ms_ + 1000; // wake up for it, once
        return;
    }
    status_sent_ = status;
    status_sent_ms_ = now_ms();
    sd_notify_state("STATUS=" + status);
}

int master::run()
{
    started_ms_ = now_ms();
    srandom(static_cast<unsigned>(getpid() ^ now_ms())); // back-off jitter only
    // systemd asks for WATCHDOG=1 within WATCHDOG_USEC; we send it at half of that.
    const char *wd_usec = getenv("WATCHDOG_USEC"), *wd_pid = getenv("WATCHDOG_PID");
    auto usec = wd_usec ? parse_uint(wd_usec, UINT64_MAX / 2) : std::nullopt;
    auto pid = wd_pid ? parse_uint(wd_pid, 0x7fffffff) : std::nullopt;
    if (usec && *usec > 0 && (!wd_pid || (pid && static_cast<pid_t>(*pid) == getpid())))
        watchdog_interval_ms_ = std::max<uint64_t>(*usec / 2000, 1);
    setup_signals();
    reset_session_cache();
    open_control_socket();
    watch_certificates();
    start_signer();
    enum kind { SIGNALS, SIGNER, LISTENER, WORKER, UPSTREAM, CONTROL, SPARE, CONTROL_CLIENT, CONTROL_PROBE,
                RELOAD_SIGNER };
    struct slot {
        kind k;
        uint64_t id;
    };
    std::vector<pollfd> fds;
    std::vector<slot> slots;
    while (!(stopping_ && channels_.empty())) {
        refill_spares();
        fds.clear();
        slots.clear();
        fds.push_back({signals_.get(), POLLIN, 0});
        slots.push_back({SIGNALS, 0});
        if (signer_.control) {
            fds.push_back({signer_.control.get(), POLLIN, 0});
            slots.push_back({SIGNER, 0});
        }
        if (control_ && control_accepting()) {
            fds.push_back({control_.get(), POLLIN, 0});
            slots.push_back({CONTROL, 0});
        }
        for (const auto &[id, c] : control_clients_) {
            if (short events = c.poll_events()) {
                fds.push_back({c.fd.get(), events, 0});
                slots.push_back({CONTROL_CLIENT, id});
            }
            if (c.probe) {
                fds.push_back({c.probe.get(), POLLIN, 0});
                slots.push_back({CONTROL_PROBE, id});
            }
        }
        if (reload_ && reload_->signer.control) {
            fds.push_back({reload_->signer.control.get(), POLLIN, 0});
            slots.push_back({RELOAD_SIGNER, 0});
        }
        if (accepting())
            for (size_t i = 0; i < listeners_.size(); i++) {
                fds.push_back({listeners_[i].fd.get(), POLLIN, 0});
                slots.push_back({LISTENER, i});
            }
        for (size_t i = 0; i < spares_.size(); i++)
            if (spares_[i].control) {
                fds.push_back({spares_[i].control.get(), POLLIN, 0});
                slots.push_back({SPARE, static_cast<uint64_t>(spares_[i].pid)});
            }
        for (const auto &[id, ch] : channels_) {
            if (ch.control) {
                fds.push_back({ch.control.get(), POLLIN, 0});
                slots.push_back({WORKER, id});
            }
            if (ch.connecting) {
                fds.push_back({ch.connecting.get(), POLLOUT, 0});
                slots.push_back({UPSTREAM, id});
            }
        }
        int n = poll(fds.data(), fds.size(), poll_timeout());
        if (n < 0 && errno != EINTR)
            fatal("poll failed", log_fields().add("error", errno_text(errno)));
        for (size_t i = 0; n > 0 && i < fds.size(); i++) {
            if (!fds[i].revents)
                continue;
            auto ch = channels_.find(slots[i].id);
            switch (slots[i].k) {
            case SIGNALS: on_signal(); break;
            case SIGNER:
                if (signer_.control)
                    on_signer_message();
                break;
            case LISTENER:
                if (slots[i].id < listeners_.size())
                    accept_on(listeners_[slots[i].id]);
                break;
            case WORKER:
                if (ch != channels_.end() && ch->second.control)
                    on_worker_message(ch->second);
                break;
            case UPSTREAM:
                if (ch != channels_.end() && ch->second.connecting)
                    finish_upstream(ch->second);
                break;
            case CONTROL: on_control_connection(); break;
            case CONTROL_CLIENT: on_control_client(slots[i].id); break;
            case CONTROL_PROBE: on_control_probe(slots[i].id); break;
            case RELOAD_SIGNER:
                if (reload_ && reload_->signer.control)
                    on_reload_signer_message();
                break;
            case SPARE:
                for (auto &sp : spares_)
                    if (sp.pid == static_cast<pid_t>(slots[i].id) && sp.control)
                        on_spare_message(sp);
                break;
            }
        }
        if (signer_.ready && !announced_ready_) {
            announced_ready_ = true;
            log_fields f;
            for (const auto &l : listeners_)
                for (const auto &name : l.channels)
                    f.add("channel", name + "@" + local_name(l.fd.get()));
            log_info("clsgwd ready", f.add("max_channels", cfg_.max_channels));
            sd_notify_state("READY=1");
        }
        check_deadlines();
        if (announced_ready_)
            notify_status();
        if (watchdog_interval_ms_ && now_ms() >= watchdog_next_ms_) {
            sd_notify_state("WATCHDOG=1");
            watchdog_next_ms_ = now_ms() + watchdog_interval_ms_;
        }
    }
    signer_.control.reset(); // the signer exits when its control socket closes
    if (signer_.pid > 0) {
        for (int i = 0; i < 200 && waitpid(signer_.pid, nullptr, WNOHANG) == 0; i++)
            usleep(10000);
        kill(signer_.pid, SIGKILL);
        waitpid(signer_.pid, nullptr, WNOHANG);
    }
    if (control_)
        unlink(cfg_.control_socket.c_str());
    log_info("clsgwd stopped");
    return 0;
}

void master::reload()
{
    if (reload_) { // a newer request: the file may have changed again since
        log_info("reload started over", log_fields().add("config", cfg_.file));
        if (reload_->signer.pid > 0) {
            kill(reload_->signer.pid, SIGKILL);
            retired_signers_.push_back(reload_->signer.pid);
        }
        reload_.reset();
    }
    sd_notify_state("RELOADING=1");
    log_info("reloading", log_fields().add("config", cfg_.file));
    config_result loaded = load_config(cfg_.file);
    std::vector<config_error> errors = loaded.errors;
    checked env;
    if (loaded.value)
        env = check_environment(*loaded.value, errors);
    if (!errors.empty()) {
        std::string all;
        for (const auto &e : errors)
            all += (all.empty() ? "" : "; ") + e.to_string();
        return refuse_reload(all);
    }
    for (const auto &w : env.warnings)
        log_warn(w);
    pending_reload r;
    r.next = std::move(*loaded.value);
    std::string error;
    if (!build_listeners(r.next, r.listeners, error))
        return refuse_reload(error);
    r.paths = env.paths;
    r.certificate_pem = env.certificate_pem;
    r.trust_pems = env.trust_pems;
    r.uid = env.uid;
    r.gid = env.gid;
    // A signer service keeps its connection (its key changes with a restart of that service);
    // a child signer is replaced by one that has loaded the new key.
    bool keep_signer = !r.next.signer_socket.empty() && r.next.signer_socket == cfg_.signer_socket && signer_.ready;
    if (keep_signer)
        return commit_reload(r);
    // The signer service serves one master connection at a time: a connection to it that is not
    // ready (it is being replaced) makes way for the new one.
    if (signer_.external && r.next.signer_socket == cfg_.signer_socket)
        signer_.control.reset();
    r.signer = spawn_signer(r.next, r.paths.signer);
    if (r.signer.down())
        return refuse_reload("signer: the new signer could not be started");
    r.deadline_ms = now_ms() + cfg_.signer_timeout_ms;
    reload_ = std::move(r); // on_reload_signer_message commits it
}

// Running channels keep the settings, trust and signer session they started with.
void master::commit_reload(pending_reload &r)
{
    if (r.signer.ready) {
        if (signer_.control && !signer_.external)
            retired_signers_.push_back(signer_.pid);
        r.signer.restarts = signer_.restarts;
        signer_ = std::move(r.signer);
    }
    size_t before = listeners_.size();
    listeners_ = std::move(r.listeners);
    cfg_ = std::move(r.next);
    paths_ = r.paths;
    certificate_pem_ = r.certificate_pem;
    trust_pems_ = r.trust_pems;
    worker_uid_ = r.uid;
    worker_gid_ = r.gid;
    smgw_blocked_until_ms_ = 0; // the SMGW (or its address) may have changed
    smgw_backoff_ms_ = SMGW_BACKOFF_FIRST_MS;
    smgw_failed_channels_ = 0;
    reset_session_cache(); // sessions were authenticated against the old trust
    channel_levels_.clear();
    log_set_threshold(cfg_.level);
    std::string why;
    if (!log_set_target(cfg_.target, cfg_.log_file, &why))
        log_error("cannot open the new log file; logging on as before", log_fields().add("error", why));
    watch_certificates();
    retire_spares();
    log_info("reloaded", log_fields().add("channels", cfg_.channels.size()).add("listeners", listeners_.size())
                             .add("listeners_before", before).add("key", signer_.key_id));
    sd_notify_state("READY=1");
    answer_reload_waiters("");
}

// Nothing of the running configuration has changed; a new signer that was started is ended.
void master::refuse_reload(const std::string &why)
{
    if (reload_ && reload_->signer.pid > 0) {
        kill(reload_->signer.pid, SIGKILL);
        retired_signers_.push_back(reload_->signer.pid);
    }
    reload_.reset();
    log_error("reload refused; the running configuration stays", log_fields().add("reason", why));
    sd_notify_state("READY=1");
    answer_reload_waiters(why);
}

} // namespace clsgw
