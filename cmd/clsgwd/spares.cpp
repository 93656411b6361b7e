// The spare pool: workers exec'd and sandboxed ahead of time, each waiting for one channel;
// refilled after a channel's handshake, with a back-off when spares die unused.
#include "master.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "../../lib/log.hpp"
#include "../../lib/util.hpp"

namespace clsgw {

namespace {

constexpr uint64_t SPARE_REFILL_DEFER_MS = 1000;

} // namespace

// The refill waits while a channel's handshake is young: forking blocks this loop for a moment
// and the new spare's start competes for the CPU, both of which that handshake would feel.
uint64_t master::spare_refill_due() const
{
    uint64_t due = spare_refill_at_ms_;
    for (const auto &[id, ch] : channels_)
        if (!ch.established && !ch.kill_reason)
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
            spare_refill_at_ms_ = now_ms() + spare_backoff_.delay();
            return;
        }
        s.pid = fork();
        if (s.pid < 0) {
            log_error("cannot fork a spare worker", log_fields().add("error", errno_text(errno)));
            spare_refill_at_ms_ = now_ms() + spare_backoff_.delay();
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
    spare_backoff_.reset();
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
    ipc_budget logs_uncounted{msg_type::log}; // a spare may say only log records, and then it exits
    ipc_recv_result r = ipc_recv_checked(s.control.get(), role_master, logs_uncounted);
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
             log_fields().add("pid", static_cast<int64_t>(pid)).add("status", how).add("retry_in_ms", spare_backoff_.delay()));
    spare_refill_at_ms_ = now_ms() + spare_backoff_.fail();
    return true;
}

} // namespace clsgw
