// Why a channel ended, as every process reports it: a code from one table (reason.cpp) and, for
// the few reasons that carry one, a number (the peer's alert, the SMGW's SOCKS5 reply, the signal
// that killed a worker). Workers send the code in their result; the master adds its own (a worker
// it killed, one that died). The name the log, `clsgwctl status` and `clsgwctl metrics` show is
// made from the table only when printing, for the side that reads it: an outbound channel's
// plain side is the app, an inbound channel's the local service, the simulator's the EMT and its
// TLS peer the device. The master's decisions (the SMGW's back-off) read the table's columns,
// never the names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "util.hpp"

namespace clsgw {

// Values travel between processes: never renumber, only add. 0 is no reason.
enum class reason_code : uint16_t {
    none = 0,
    // The relay: how an open channel ended ("plain" is the app or the local service, "tls" the SMGW).
    plain_closed = 1,
    tls_closed,
    tls_closed_without_close_notify,
    plain_reset,
    tls_reset,
    tls_error,
    tls_keepalive_timeout,
    idle_timeout,
    close_timeout,
    max_session_lifetime,
    poll_failed,
    // The app's side before the channel stands.
    plain_error,
    socks5_bad_greeting,
    socks5_no_acceptable_method,
    socks5_bad_request,
    target_not_allowed,
    sni_cannot_name_an_address,
    // The upstream connection clsgwd makes (upstream_failure), and asking for it.
    upstream_backoff,
    upstream_connection_refused,
    upstream_network_unreachable,
    upstream_connect_timeout,
    upstream_unreachable,
    master_unreachable,
    master_protocol_error,
    // The TLS handshake.
    handshake_timeout,
    tls_setup_failed,
    no_client_certificate,
    cert_bad_signature,
    cert_expired,
    cert_not_yet_valid,
    cert_outside_profile,
    cert_key_usage,
    cert_ext_key_usage,
    cert_untrusted,
    cert_missing,
    cert_invalid,
    cert_corrupt,
    peer_sent_alert,
    peer_alert, // detail: the alert's description
    no_shared_cipher_suite,
    protocol_version,
    peer_closed_in_handshake,
    peer_reset_in_handshake,
    signer_failed,
    handshake_failed,
    smgw_refused_cert_curve,
    cert_curve_not_offered,
    smgw_refused_unrecognized_name,
    invalid_server_name,
    unknown_server_name,
    no_shared_group, // the simulator's: the device offered no group of the simulated SMGW
    // SOCKS5 CONNECT inside the SMGW's TLS (proxy = socks5).
    smgw_socks5_error,
    smgw_refused_not_allowed,
    smgw_failed, // detail: the SMGW's SOCKS5 reply code
    // The master's own reasons.
    shutdown_timeout,
    worker_protocol_violation,
    worker_not_reading,
    signer_unavailable,
    sandbox_violation,
    worker_died, // detail: the signal
    worker_exited_without_result,
    // Test builds only (cmd/clsgw-worker/hostile.cpp): a hostile worker's channel.
    hostile, // detail: the attack (hostile_attacks())
};

// What a reason's number means.
enum class reason_detail : uint8_t { none, alert, socks5_reply, signal, attack };

// Who may report a reason: a worker's result carrying one the worker never gives is refused.
enum class reason_source : uint8_t { worker, master, both, simulator };

// Whether an outbound channel that ended so, before its TLS session stood, speaks against the SMGW.
enum class smgw_blame : uint8_t {
    counts,          // the SMGW did not complete the channel
    not_smgw,        // a certificate refused, our own side failing: never the SMGW's doing
    own_connect,     // clsgwd's own connect failed: counted there, at once
    if_half_the_time // a handshake timeout: counts only when the SMGW had half of handshake_timeout
};

// Whose names a reason is printed with.
enum class reason_view : uint8_t { outbound, inbound, simulator };
reason_view view_of(channel_direction d);

struct channel_reason {
    reason_code code = reason_code::none;
    uint16_t detail = 0;
    bool operator==(const channel_reason &o) const { return code == o.code && detail == o.detail; }
    bool operator!=(const channel_reason &o) const { return !(*this == o); }
};

// One row of the table.
struct reason_entry {
    reason_code code;
    // The name per view; a reason with a detail has its name's fixed start here ("peer_alert_").
    const char *outbound, *inbound, *simulator;
    reason_detail detail;
    reason_source source;
    smgw_blame blame;
};
const std::vector<reason_entry> &reason_table();
const reason_entry *reason_row(reason_code code); // nullptr for none and unknown codes

// True when the code is in the table and the detail fits it (none: 0).
bool reason_valid(channel_reason r);
// The name as printed: "app_closed", "peer_alert_handshake_failure", "peer_alert_unknown_99",
// "smgw_failed_connection_refused", "worker_died_SIGABRT", "hostile_plant".
std::string reason_name(channel_reason r, reason_view view);
inline std::string reason_name(channel_reason r, channel_direction d) { return reason_name(r, view_of(d)); }
// The name's form in the documentation: the name, or its start and "<alert>", "<reply>", ...
std::string reason_doc_name(const reason_entry &e, reason_view view);

// Makers for the reasons with a detail.
inline channel_reason reason_of(reason_code c) { return {c, 0}; }
channel_reason peer_alert_reason(uint8_t alert);
channel_reason smgw_failed_reason(uint8_t socks5_reply);
channel_reason worker_died_reason(int signal);

// The TLS alert's name ("handshake_failure"), "unknown" for a description without one.
const char *alert_name(unsigned char description);
// The hostile test hook's attacks, in detail order ("steal", "plant", ...).
const std::vector<const char *> &hostile_attacks();

// The back-off decision for an outbound channel that reached the SMGW and ended before its TLS
// session stood: does it count toward backing the SMGW off? why: the channel's reason (none when
// the worker left none); refused: the outcome was a refusal (the SMGW answering, not failing);
// smgw_had_ms: how much of handshake_timeout was left when the SMGW's socket was ready (0: never).
bool counts_against_smgw(std::optional<channel_reason> why, bool refused, uint64_t smgw_had_ms,
                         uint64_t handshake_timeout_ms);

// Why clsgwd could not give a worker its upstream connection. It travels as one byte in
// upstream_failed; its name is the table's (reason_for), for the far end of the channel's
// direction: the SMGW (outbound) or an inbound channel's local service.
enum class upstream_failure : uint8_t {
    backoff = 1,         // clsgwd leaves the SMGW alone for a while (outbound only)
    connection_refused,  // ECONNREFUSED
    network_unreachable, // ENETUNREACH, EHOSTUNREACH
    connect_timeout,     // connect_timeout passed
    unreachable,         // any other connect error
};

upstream_failure upstream_failure_for_errno(int err);
channel_reason reason_for(upstream_failure f);
// "smgw_connection_refused" for an outbound channel, "service_connection_refused" for an inbound one.
std::string upstream_failure_name(upstream_failure f, channel_direction direction);
bytes encode_upstream_failure(upstream_failure f);
// nullopt unless exactly one byte that names a failure.
std::optional<upstream_failure> decode_upstream_failure(const bytes &payload);

} // namespace clsgw
