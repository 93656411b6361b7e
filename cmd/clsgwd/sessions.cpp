// TLS session resumption: the master keeps the sessions (session_cache) under scopes it derives
// itself and answers a worker's requests for its own channel only.
#include "master.hpp"

#include <string.h>

#include <algorithm>
#include <cerrno>

#include "../../lib/log.hpp"
#include "../../lib/util.hpp"

namespace clsgw {

// Overwrites a buffer that held a TLS session before it is freed.
void wipe(bytes &b)
{
    if (!b.empty())
        explicit_bzero(b.data(), b.size());
    b.clear();
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

} // namespace clsgw
