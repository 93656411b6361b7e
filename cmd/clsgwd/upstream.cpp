// Upstream connects on a worker's behalf: the SMGW for an outbound channel (target checked
// against the configuration), the chosen channel's local service for an inbound one.
#include "master.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "../../lib/log.hpp"
#include "../../lib/net.hpp"
#include "../../lib/reason.hpp"
#include "../../lib/util.hpp"

namespace clsgw {

// A silently dead SMGW is noticed within keepalive_idle + keepalive_interval * keepalive_probes.
void master::han_keepalive(int fd) const
{
    set_keepalive(fd, static_cast<int>(std::max<uint64_t>(cfg_.keepalive_idle_ms / 1000, 1)),
                  static_cast<int>(std::max<uint64_t>(cfg_.keepalive_interval_ms / 1000, 1)),
                  static_cast<int>(cfg_.keepalive_probes));
}

// The target a worker asks the SMGW for: a static channel's own, or one its allow list admits.
// The master only compares it with its configuration; the worker parsed the app's bytes.
bool master::check_target(channel &ch, const std::string &text)
{
    auto t = parse_host_port(text);
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
void master::start_upstream(channel &ch, const std::string &choice)
{
    const sock_address *to = nullptr;
    if (ch.cfg.direction == channel_direction::outbound) {
        if (!check_target(ch, choice))
            return protocol_violation(ch, "a target its channel does not allow");
        if (!ch.target)
            ch.target = ch.cfg.target;
        if (now_ms() < smgw_blocked_until_ms_)
            return fail_upstream(ch, upstream_failure::backoff); // not now: the SMGW is left alone for a while
        to = &ch.upstream;
    } else {
        auto chosen = std::find_if(ch.candidates.begin(), ch.candidates.end(),
                                   [&](const channel_config &c) { return c.name == choice; });
        if (chosen == ch.candidates.end() || (!ch.resumed_channel.empty() && ch.resumed_channel != choice))
            return protocol_violation(ch, "a channel not its own, or not the one it resumed");
        ch.cfg = *chosen;
        to = &*ch.cfg.forward;
    }
    int err = 0;
    ch.connecting = connect_start(*to, &err);
    if (!ch.connecting)
        return connect_failed(ch, upstream_failure_for_errno(err));
    ch.connect_deadline_ms = now_ms() + cfg_.connect_timeout_ms;
}

// The worker names it for its channel's direction (reason.hpp's table).
void master::fail_upstream(channel &ch, upstream_failure why)
{
    ch.connecting.reset();
    send_to_worker(ch, msg_type::upstream_failed, encode_upstream_failure(why));
}

// clsgwd's own connect failed (or timed out): toward the SMGW that counts at once for its back-off.
void master::connect_failed(channel &ch, upstream_failure why)
{
    if (ch.cfg.direction == channel_direction::outbound)
        smgw_back_off(upstream_failure_name(why, channel_direction::outbound), "clsgwd");
    fail_upstream(ch, why);
}

void master::finish_upstream(channel &ch)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(ch.connecting.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0)
        return connect_failed(ch, upstream_failure_for_errno(err));
    if (ch.cfg.direction == channel_direction::outbound)
        han_keepalive(ch.connecting.get());
    ch.upstream_ready_ms = now_ms();
    if (!send_to_worker(ch, msg_type::upstream_ready, {}, ch.connecting.get()))
        log_warn("cannot pass the upstream socket", log_fields().add("channel", ch.id).add("error", errno_text(errno)));
    ch.connecting.reset();
}

} // namespace clsgw
