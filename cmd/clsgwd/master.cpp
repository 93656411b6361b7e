// The master's event loop: one poll over every socket it serves, signals (through a signalfd),
// reaping, deadlines, the drain on SIGTERM and what it tells systemd. The jobs it dispatches to
// live in a file each (listeners, spawn, spares, signer_link, worker_link, sessions, upstream,
// reports, throttle, reload, control, certificates).
#include "master.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "../../lib/activation.hpp"
#include "../../lib/log.hpp"
#include "../../lib/net.hpp"
#include "../../lib/util.hpp"

namespace clsgw {

namespace {


} // namespace

master::master(config cfg, master_paths paths, std::string certificate_pem, std::map<std::string, std::string> trust_pems,
               long worker_uid, long worker_gid)
    : cfg_(std::move(cfg)), paths_(std::move(paths)), certificate_pem_(std::move(certificate_pem)),
      trust_pems_(std::move(trust_pems)), worker_uid_(worker_uid), worker_gid_(worker_gid)
{
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
        if (!ch.established && !ch.kill_reason && now >= ch.handshake_deadline_ms)
            kill_worker(ch, reason_code::handshake_timeout);
        if (ch.connecting && now >= ch.connect_deadline_ms)
            connect_failed(ch, upstream_failure::connect_timeout);
    }
    if (stopping_ && now >= stop_deadline_ms_)
        for (auto &[id, ch] : channels_)
            kill_worker(ch, reason_code::shutdown_timeout);
    if (!stopping_ && signer_.down() && signer_.restart_at_ms && now >= signer_.restart_at_ms)
        start_signer();
    if (!failures_.empty())
        flush_suppressed();
    if (now >= certificates_next_check_ms_)
        check_certificate_expiry();
    if (now >= sessions_.next_expiry())
        sessions_.sweep(now); // a session's secret does not outlive max_session_lifetime
    check_control_deadlines();
}

int master::poll_timeout() const
{
    uint64_t now = now_ms(), next = now + 60000;
    for (const auto &[id, ch] : channels_) {
        if (!ch.established && !ch.kill_reason)
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
    next = std::min(next, certificates_next_check_ms_);
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

} // namespace clsgw
