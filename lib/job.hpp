// What the master tells a worker (the job) and what the worker reports back (the result).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "log.hpp"
#include "reason.hpp"
#include "util.hpp"

namespace clsgw {

// One channel an inbound worker may serve, chosen by the server_name the SMGW sends.
struct inbound_route {
    std::string channel_name;
    std::string server_name; // empty: the listener's default channel
    std::string trust_pem;
};

struct worker_job {
    uint64_t channel_id = 0;
    channel_direction direction = channel_direction::outbound;
    std::string channel_name; // outbound: the channel; inbound: the listener's first channel
    std::vector<inbound_route> routes; // inbound only
    std::string peer; // the accepted connection's peer, for logs
    ingress_kind ingress = ingress_kind::static_target;
    proxy_kind proxy = proxy_kind::socks5;
    std::optional<host_port> target;
    std::vector<allow_rule> allow;
    uint64_t handshake_timeout_ms = 0, idle_timeout_ms = 0, close_timeout_ms = 0, signer_timeout_ms = 0,
             max_session_lifetime_ms = 0;
    std::string certificate_pem; // our chain, leaf first
    std::string trust_pem;       // pinned SMGW certificate(s) or CA
    log_level level = log_level::info;
    // Demotion target when the worker starts privileged; -1 = keep the inherited ids.
    int64_t uid = -1, gid = -1;
};

bytes encode_job(const worker_job &job);
std::optional<worker_job> decode_job(const bytes &payload, std::string &error);

enum class outcome : uint8_t { ok = 0, refused = 1, failed = 2 };
const char *outcome_name(outcome o);

struct worker_result {
    outcome result = outcome::failed;
    channel_reason reason; // travels as its code and detail, named only when printed
    std::string target;
    std::string tls_version, cipher_suite, group, peer_fingerprint;
    uint64_t bytes_up = 0, bytes_down = 0; // up: app -> SMGW
    uint64_t handshake_ms = 0, duration_ms = 0;
    // Where the handshake's time went: waiting for the SMGW's flights, and for clsgw-signer's
    // signature; the rest is the worker's own work (its ECC above all).
    uint64_t smgw_wait_us = 0, signer_us = 0;
    bool resumed = false; // the TLS session was resumed (no signature was needed)
};

// What a worker tells the master when its channel starts carrying data, and while it does.
struct channel_progress {
    std::string target, cipher_suite, group;
    bool resumed = false;
    uint64_t bytes_up = 0, bytes_down = 0;
};
bytes encode_established(const worker_result &r);
std::optional<channel_progress> decode_established(const bytes &payload);
// upstream_request (worker -> master): what the worker asks clsgwd to connect, as text: the
// app's target ("host:port") on an outbound channel, the chosen channel's name on an inbound one.
// clsgwd alone decides whether that is allowed and where it leads.
constexpr size_t UPSTREAM_CHOICE_MAX = 512;
bytes encode_upstream_request(const std::string &choice);
// nullopt unless 1 to UPSTREAM_CHOICE_MAX printable ASCII characters without spaces.
std::optional<std::string> decode_upstream_request(const bytes &payload);
bytes encode_progress(uint64_t up, uint64_t down);
std::optional<std::pair<uint64_t, uint64_t>> decode_progress(const bytes &payload);

// Session messages between worker and master (TLV): key (inbound: the session id; outbound:
// empty, as the master names the scope), the serialised mbedtls_ssl_session, its age since its
// full handshake, and for an inbound lookup the channel the server_name picked.
struct session_message {
    bytes key;
    bytes blob;
    uint64_t age_ms = 0;
    bytes channel; // session_lookup only: the channel the SMGW's server_name picked
};
constexpr size_t SESSION_BLOB_MAX = 8 * 1024;
bytes encode_session_message(const session_message &m);
std::optional<session_message> decode_session_message(const bytes &payload);

// A worker's log record: its level byte, then TLV fields: 1 the message, then each field as a
// key (2, 4, ...) and its value (3, 5, ...). The master prints it as `worker msg="..." key=value`,
// so a worker's text is only ever the value of a named key. Keys are [a-z_], at most 32 bytes.
constexpr size_t LOG_RECORD_FIELDS_MAX = 16, LOG_RECORD_MESSAGE_MAX = 256, LOG_RECORD_VALUE_MAX = 512;
struct log_record {
    log_level level = log_level::info;
    std::string message;
    std::vector<std::pair<std::string, std::string>> fields;
};
bytes encode_log_record(log_level level, std::string_view message, const log_fields &fields);
std::optional<log_record> decode_log_record(const bytes &payload, std::string &error);

// The result's reason is a worker's code of reason.hpp's table with a detail that fits it; an
// unknown code, a detail that does not fit, or a reason only the master gives is refused.
bytes encode_result(const worker_result &r);
std::optional<worker_result> decode_result(const bytes &payload, std::string &error);

} // namespace clsgw
