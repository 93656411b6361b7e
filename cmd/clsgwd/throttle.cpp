// Back-offs of the master: leaving an SMGW that keeps failing alone for a while, and pausing
// accept when workers die before doing any work.
#include "master.hpp"

#include <cstdlib>
#include <algorithm>

#include "../../lib/log.hpp"
#include "../../lib/util.hpp"

namespace clsgw {

namespace {

// Workers report their own failures: it takes this many channels failing in a row before their
// word backs the SMGW off (clsgwd's own connect failing counts at once).
constexpr unsigned SMGW_FAILED_CHANNELS_FOR_BACKOFF = 3;

} // namespace

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
        smgw_backoff_.reset();
        return;
    }
    std::optional<channel_reason> why = ch.kill_reason;
    if (!why && ch.result)
        why = ch.result->reason;
    // How much of handshake_timeout the SMGW had once its socket was ready (0: never ready).
    uint64_t deadline = ch.started_ms + cfg_.handshake_timeout_ms;
    uint64_t smgw_had = ch.upstream_ready_ms != 0 && deadline > ch.upstream_ready_ms ? deadline - ch.upstream_ready_ms : 0;
    // The table says which reasons are not the SMGW failing (reason.hpp's smgw_blame).
    if (!counts_against_smgw(why, ch.result && ch.result->result == outcome::refused, smgw_had, cfg_.handshake_timeout_ms))
        return;
    if (++smgw_failed_channels_ < SMGW_FAILED_CHANNELS_FOR_BACKOFF)
        return;
    smgw_back_off(why ? reason_name(*why, reason_view::outbound) : "", "workers");
}

void master::smgw_back_off(const std::string &reason, const char *seen_by)
{
    if (cfg_.smgw_backoff_max_ms == 0)
        return;
    uint64_t now = now_ms();
    if (now < smgw_blocked_until_ms_)
        return; // channels already under way when the back-off began count once
    // +-20% jitter so that many devices behind one SMGW do not retry in step
    smgw_backoff_.set_max(cfg_.smgw_backoff_max_ms);
    uint64_t wait = smgw_backoff_.fail_jittered(static_cast<uint64_t>(random()));
    smgw_blocked_until_ms_ = now + wait;
    log_warn("SMGW did not complete a channel; new channels fail fast meanwhile",
             log_fields().add("reason", reason).add("seen_by", seen_by).add("retry_in_ms", wait)
                 .add("smgw", cfg_.smgw_address ? cfg_.smgw_address->to_string() : "-"));
}

void master::note_worker_usefulness(const channel &ch)
{
    if (ch.result || ch.kill_reason) { // it did its job, or we ended it
        useless_deaths_ = 0;
        spawn_pause_.reset();
        spare_backoff_.reset();
        return;
    }
    if (++useless_deaths_ < 3)
        return;
    uint64_t pause = spawn_pause_.fail();
    accept_paused_until_ms_ = now_ms() + pause;
    log_error("workers die before doing any work; new channels wait in the listen backlog",
              log_fields().add("deaths_in_a_row", useless_deaths_).add("pause_ms", pause).add("worker", paths_.worker));
}

} // namespace clsgw
