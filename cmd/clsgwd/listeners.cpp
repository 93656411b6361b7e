// The listening sockets: taken from systemd or bound for a configuration, and accepted on
// while the channel limit, the signer and the spawn pause allow.
#include "master.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "../../lib/activation.hpp"
#include "../../lib/log.hpp"
#include "../../lib/net.hpp"
#include "../../lib/util.hpp"

namespace clsgw {

namespace {

constexpr int LISTEN_BACKLOG = 128;
constexpr uint64_t LIMIT_LOG_INTERVAL_MS = 10000;

} // namespace

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
        listeners_.push_back({ch->listener_key(), {}, std::move(s.fd), true});
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
            l.from_systemd = old->from_systemd;
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
    // the same name in every view: the listener's channels need not be looked up
    std::string why = reason_name(reason_of(reason_code::signer_unavailable), reason_view::outbound);
    count_outcome("failed", why);
    channel probe;
    probe.peer = peer;
    if (may_log_failure(probe, why))
        log_warn("channel refused: the signer is restarting",
                 log_fields().add("name", l.channels[0]).add("peer", peer).add("reason", why));
    connection.reset();
}

} // namespace clsgw
