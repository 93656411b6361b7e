// Channel reports: one summary line per channel from the worker's result and exit status,
// with repeated failures from one peer rate-limited into a "suppressed" line.
#include "master.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>

#include "../../lib/log.hpp"
#include "../../lib/util.hpp"

namespace clsgw {

void master::log_summary(const channel &ch, int status)
{
    log_fields f;
    f.add("id", ch.id).add("name", ch.cfg.name).add("direction", direction_name(ch.cfg.direction)).add("peer", ch.peer);
    uint64_t duration = now_ms() - ch.started_ms;
    reason_view view = view_of(ch.cfg.direction);
    if (WIFSIGNALED(status) && !ch.kill_reason) {
        int sig = WTERMSIG(status);
        count_outcome("failed", reason_name(sig == SIGSYS ? reason_of(reason_code::sandbox_violation) : worker_died_reason(sig), view));
        f.add("signal", signal_name(sig)).add("duration_ms", duration);
        if (sig == SIGSYS)
            log_error("channel failed: worker killed by the sandbox (sandbox violation)", f);
        else
            log_error("channel failed: worker died", f);
        return;
    }
    if (!ch.result) {
        std::string why = reason_name(ch.kill_reason.value_or(reason_of(reason_code::worker_exited_without_result)), view);
        count_outcome("failed", why);
        f.add("outcome", "failed").add("reason", why);
        if (WIFEXITED(status))
            f.add("exit", WEXITSTATUS(status));
        f.add("duration_ms", duration);
        log_warn("channel closed", f);
        return;
    }
    const worker_result &r = *ch.result;
    std::string why = reason_name(ch.kill_reason.value_or(r.reason), view);
    count_outcome(outcome_name(r.result), why);
    if (r.result == outcome::failed && r.tls_version.empty() && !may_log_failure(ch, reason_name(r.reason, view)))
        return;
    f.add("outcome", outcome_name(r.result)).add("reason", why);
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

} // namespace clsgw
