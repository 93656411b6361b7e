// The link to clsgw-signer: starting it (or connecting to its service), its ready message and
// log lines, restarting it with a back-off when it dies.
#include "master.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "../../lib/log.hpp"
#include "../../lib/signer_proto.hpp"
#include "../../lib/util.hpp"

namespace clsgw {

namespace {

constexpr uint64_t SIGNER_BACKOFF_MAX_MS = 60000;

// signer_ready's key id (the SHA-256 of the key's SPKI) in hex, "?" when malformed.
std::string key_id_of(const bytes &payload)
{
    auto id = signer::decode_signer_ready(payload);
    return id ? hex(*id) : "?";
}

} // namespace

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
                    cfg.audit_log.path, "--max-sessions", std::to_string(cfg.max_channels + 16), "--retire-wait",
                    std::to_string(2 * cfg.signer_timeout_ms) + "ms", "--log-level",
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
    backoff restart_backoff = signer_.restart_backoff;
    bool ever_ready = signer_.ever_ready;
    signer_ = spawn_signer(cfg_, paths_.signer);
    signer_.restarts = restarts;
    signer_.restart_backoff = restart_backoff;
    signer_.ever_ready = ever_ready;
    if (signer_.down()) {
        signer_.restart_at_ms = now_ms() + signer_.restart_backoff.fail();
    }
}

// A reload's new signer: its log lines pass through (the last one is the reason should it
// fail); once it has loaded the key and proved it matches the certificate, the reload commits.
void master::on_reload_signer_message()
{
    signer_process &s = reload_->signer;
    ipc_recv_result r = ipc_recv_checked(s.control.get(), role_master, s.budget);
    const bytes &payload = r.message.payload;
    if (r.status == ipc_status::would_block)
        return;
    if (r.status == ipc_status::closed)
        return refuse_reload("signer: " + (reload_->signer_said.empty()
                                               ? "the new signer did not start (key unreadable, or not matching "
                                                 "the certificate: see its message)"
                                               : reload_->signer_said));
    if (r.status != ipc_status::ok) {
        log_error("unexpected message from the new signer", log_fields().add("error", r.error));
        return;
    }
    auto line = r.message.type == msg_type::log ? signer::decode_log(payload) : std::nullopt;
    if (line) {
        reload_->signer_said = line->second;
        log_raw(line->first, reload_->signer_said);
    } else if (r.message.type == msg_type::signer_ready) {
        s.key_id = key_id_of(payload);
        s.ready = s.ever_ready = true;
        commit_reload(*reload_);
        reload_.reset();
    }
}

void master::on_signer_message()
{
    ipc_recv_result r = ipc_recv_checked(signer_.control.get(), role_master, signer_.budget);
    if (r.status == ipc_status::would_block)
        return;
    if (r.status == ipc_status::ok && r.message.type == msg_type::signer_ready && !signer_.ready) {
        signer_.key_id = key_id_of(r.message.payload);
        signer_.ready = signer_.ever_ready = true;
        signer_.restart_backoff.reset();
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
            log_error("lost the connection to clsgw-signer; reconnecting", log_fields().add("in_ms", signer_.restart_backoff.delay()));
            signer_.restart_at_ms = now_ms() + signer_.restart_backoff.fail();
        }
        return;
    }
    auto line = r.status == ipc_status::ok && r.message.type == msg_type::log ? signer::decode_log(r.message.payload)
                                                                                 : std::nullopt;
    if (line) {
        log_raw(line->first, line->second);
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
        signer_.restart_backoff.reset();
    signer_.restarts++;
    log_error("signer exited; restarting", log_fields().add("status", how).add("in_ms", signer_.restart_backoff.delay()));
    signer_.restart_at_ms = now_ms() + signer_.restart_backoff.fail();
}

} // namespace clsgw
