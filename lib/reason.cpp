#include "reason.hpp"

#include <cerrno>

#include "socks5.hpp"

namespace clsgw {

namespace {

using rc = reason_code;
using rd = reason_detail;
using rs = reason_source;
using sb = smgw_blame;

// A reason whose name is the same whatever the view.
reason_entry same(rc code, const char *name, rs source = rs::worker, sb blame = sb::counts, rd detail = rd::none)
{
    return {code, name, name, name, detail, source, blame};
}

// A reason named after a side: the plain side (app, service, emt) or the TLS peer (smgw, device).
reason_entry plain(rc code, const char *app, const char *service, const char *emt)
{
    return {code, app, service, emt, rd::none, rs::worker, sb::counts};
}
reason_entry tls_peer(rc code, const char *smgw, const char *device)
{
    return {code, smgw, smgw, device, rd::none, rs::worker, sb::counts};
}

// clsgwd's connect toward the far end of the direction (the simulator connects on its own).
reason_entry upstream(rc code, const char *smgw, const char *service)
{
    return {code, smgw, service, smgw, rd::none, rs::worker, sb::own_connect};
}

// clang-format off
const std::vector<reason_entry> TABLE = {
    plain(rc::plain_closed,                       "app_closed", "service_closed", "emt_closed"),
    tls_peer(rc::tls_closed,                      "smgw_closed", "device_closed"),
    tls_peer(rc::tls_closed_without_close_notify, "smgw_closed_without_close_notify", "device_closed_without_close_notify"),
    plain(rc::plain_reset,                        "app_reset", "service_reset", "emt_reset"),
    tls_peer(rc::tls_reset,                       "smgw_reset", "device_reset"),
    tls_peer(rc::tls_error,                       "smgw_tls_error", "device_tls_error"),
    tls_peer(rc::tls_keepalive_timeout,           "smgw_keepalive_timeout", "device_keepalive_timeout"),
    same(rc::idle_timeout,                        "idle_timeout"),
    same(rc::close_timeout,                       "close_timeout"),
    same(rc::max_session_lifetime,                "max_session_lifetime"),
    same(rc::poll_failed,                         "poll_failed"),
    plain(rc::plain_error,                        "app_error", "service_error", "emt_error"),
    same(rc::socks5_bad_greeting,                 "socks5_bad_greeting"),
    same(rc::socks5_no_acceptable_method,         "socks5_no_acceptable_method"),
    same(rc::socks5_bad_request,                  "socks5_bad_request"),
    same(rc::target_not_allowed,                  "target_not_allowed"),
    same(rc::sni_cannot_name_an_address,          "sni_cannot_name_an_address"),
    upstream(rc::upstream_backoff,                "smgw_backoff", "service_backoff"),
    upstream(rc::upstream_connection_refused,     "smgw_connection_refused", "service_connection_refused"),
    upstream(rc::upstream_network_unreachable,    "smgw_network_unreachable", "service_network_unreachable"),
    upstream(rc::upstream_connect_timeout,        "smgw_connect_timeout", "service_connect_timeout"),
    upstream(rc::upstream_unreachable,            "smgw_unreachable", "service_unreachable"),
    same(rc::master_unreachable,                  "master_unreachable"),
    same(rc::master_protocol_error,               "master_protocol_error"),
    same(rc::handshake_timeout,                   "handshake_timeout", rs::both, sb::if_half_the_time),
    same(rc::tls_setup_failed,                    "tls_setup_failed"),
    same(rc::no_client_certificate,               "no_client_certificate"),
    same(rc::cert_bad_signature,                  "cert_bad_signature", rs::worker, sb::not_smgw),
    same(rc::cert_expired,                        "cert_expired", rs::worker, sb::not_smgw),
    same(rc::cert_not_yet_valid,                  "cert_not_yet_valid", rs::worker, sb::not_smgw),
    same(rc::cert_outside_profile,                "cert_outside_profile", rs::worker, sb::not_smgw),
    same(rc::cert_key_usage,                      "cert_key_usage", rs::worker, sb::not_smgw),
    same(rc::cert_ext_key_usage,                  "cert_ext_key_usage", rs::worker, sb::not_smgw),
    same(rc::cert_untrusted,                      "cert_untrusted", rs::worker, sb::not_smgw),
    same(rc::cert_missing,                        "cert_missing", rs::worker, sb::not_smgw),
    same(rc::cert_invalid,                        "cert_invalid", rs::worker, sb::not_smgw),
    same(rc::cert_corrupt,                        "cert_corrupt", rs::worker, sb::not_smgw),
    same(rc::peer_sent_alert,                     "peer_sent_alert"),
    same(rc::peer_alert,                          "peer_alert_", rs::worker, sb::counts, rd::alert),
    same(rc::no_shared_cipher_suite,              "no_shared_cipher_suite"),
    same(rc::protocol_version,                    "protocol_version"),
    same(rc::peer_closed_in_handshake,            "peer_closed_in_handshake"),
    same(rc::peer_reset_in_handshake,             "peer_reset_in_handshake"),
    same(rc::signer_failed,                       "signer_failed", rs::worker, sb::not_smgw),
    same(rc::handshake_failed,                    "handshake_failed"),
    same(rc::smgw_refused_cert_curve,             "smgw_refused_cert_curve"),
    same(rc::cert_curve_not_offered,              "cert_curve_not_offered", rs::worker, sb::not_smgw),
    same(rc::smgw_refused_unrecognized_name,      "smgw_refused_unrecognized_name"),
    same(rc::invalid_server_name,                 "invalid_server_name"),
    same(rc::unknown_server_name,                 "unknown_server_name"),
    same(rc::no_shared_group,                     "no_shared_group", rs::simulator),
    same(rc::smgw_socks5_error,                   "smgw_socks5_error"),
    same(rc::smgw_refused_not_allowed,            "smgw_refused_not_allowed_by_ruleset"),
    same(rc::smgw_failed,                         "smgw_failed_", rs::worker, sb::counts, rd::socks5_reply),
    same(rc::shutdown_timeout,                    "shutdown_timeout", rs::master),
    same(rc::worker_protocol_violation,           "worker_protocol_violation", rs::master, sb::not_smgw),
    same(rc::worker_not_reading,                  "worker_not_reading", rs::master, sb::not_smgw),
    same(rc::signer_unavailable,                  "signer_unavailable", rs::master),
    same(rc::sandbox_violation,                   "sandbox_violation", rs::master),
    same(rc::worker_died,                         "worker_died_", rs::master, sb::counts, rd::signal),
    same(rc::worker_exited_without_result,        "worker_exited_without_result", rs::master),
    same(rc::hostile,                             "hostile_", rs::worker, sb::counts, rd::attack),
};

const std::vector<const char *> ATTACKS = {
    "steal", "plant", "plant-as-victim", "flood-master", "flood-signer", "signer-after-refusal",
    "smgw-failure", "not-text", "late-offer", "forge-log", "forge-reason",
};
// clang-format on

const char *column(const reason_entry &e, reason_view view)
{
    switch (view) {
    case reason_view::outbound: return e.outbound;
    case reason_view::inbound: return e.inbound;
    case reason_view::simulator: return e.simulator;
    }
    return e.outbound;
}

bool detail_fits(reason_detail kind, uint16_t detail)
{
    switch (kind) {
    case reason_detail::none: return detail == 0;
    case reason_detail::alert:
    case reason_detail::socks5_reply: return detail <= 0xff;
    case reason_detail::signal: return detail >= 1 && detail <= 64;
    case reason_detail::attack: return detail < ATTACKS.size();
    }
    return false;
}

} // namespace

reason_view view_of(channel_direction d)
{
    return d == channel_direction::outbound ? reason_view::outbound : reason_view::inbound;
}

const std::vector<reason_entry> &reason_table() { return TABLE; }

const reason_entry *reason_row(reason_code code)
{
    for (const auto &e : TABLE)
        if (e.code == code)
            return &e;
    return nullptr;
}

bool reason_valid(channel_reason r)
{
    const reason_entry *e = reason_row(r.code);
    return e && detail_fits(e->detail, r.detail);
}

std::string reason_name(channel_reason r, reason_view view)
{
    const reason_entry *e = reason_row(r.code);
    if (!e || !detail_fits(e->detail, r.detail))
        return "unknown_reason_" + std::to_string(static_cast<unsigned>(r.code));
    std::string name = column(*e, view);
    switch (e->detail) {
    case reason_detail::none: break;
    case reason_detail::alert: {
        const char *alert = alert_name(static_cast<unsigned char>(r.detail));
        // an alert without a name keeps its number: peer_alert_unknown_99
        name += std::string(alert) == "unknown" ? "unknown_" + std::to_string(r.detail) : std::string(alert);
        break;
    }
    case reason_detail::socks5_reply: name += socks5::reply_name(static_cast<uint8_t>(r.detail)); break;
    case reason_detail::signal: name += signal_name(r.detail); break;
    case reason_detail::attack: name += ATTACKS[r.detail]; break;
    }
    return name;
}

std::string reason_doc_name(const reason_entry &e, reason_view view)
{
    std::string name = column(e, view);
    switch (e.detail) {
    case reason_detail::none: return name;
    case reason_detail::alert: return name + "<alert>";
    case reason_detail::socks5_reply: return name + "<reply>";
    case reason_detail::signal: return name + "<signal>";
    case reason_detail::attack: return name + "<attack>";
    }
    return name;
}

channel_reason peer_alert_reason(uint8_t alert) { return {reason_code::peer_alert, alert}; }
channel_reason smgw_failed_reason(uint8_t socks5_reply) { return {reason_code::smgw_failed, socks5_reply}; }
channel_reason worker_died_reason(int signal) { return {reason_code::worker_died, static_cast<uint16_t>(signal)}; }

const char *alert_name(unsigned char description)
{
    switch (description) {
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 40: return "handshake_failure";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 70: return "protocol_version";
    case 71: return "insufficient_security";
    case 80: return "internal_error";
    case 86: return "inappropriate_fallback";
    case 90: return "user_canceled";
    case 100: return "no_renegotiation";
    case 109: return "missing_extension";
    case 110: return "unsupported_extension";
    case 112: return "unrecognized_name";
    case 116: return "certificate_required";
    }
    return "unknown";
}

const std::vector<const char *> &hostile_attacks() { return ATTACKS; }

bool counts_against_smgw(std::optional<channel_reason> why, bool refused, uint64_t smgw_had_ms,
                         uint64_t handshake_timeout_ms)
{
    if (refused)
        return false; // the SMGW's proxy profile answering, not the SMGW failing
    const reason_entry *e = why ? reason_row(why->code) : nullptr;
    switch (e ? e->blame : smgw_blame::counts) { // a worker that left no reason: counts
    case smgw_blame::counts: return true;
    case smgw_blame::not_smgw:
    case smgw_blame::own_connect: return false;
    case smgw_blame::if_half_the_time:
        // an app that sends its SOCKS5 request just before handshake_timeout must not stop every channel
        return smgw_had_ms != 0 && smgw_had_ms >= handshake_timeout_ms / 2;
    }
    return true;
}

upstream_failure upstream_failure_for_errno(int err)
{
    switch (err) {
    case ECONNREFUSED: return upstream_failure::connection_refused;
    case ENETUNREACH:
    case EHOSTUNREACH: return upstream_failure::network_unreachable;
    case ETIMEDOUT: return upstream_failure::connect_timeout;
    }
    return upstream_failure::unreachable;
}

channel_reason reason_for(upstream_failure f)
{
    switch (f) {
    case upstream_failure::backoff: return reason_of(reason_code::upstream_backoff);
    case upstream_failure::connection_refused: return reason_of(reason_code::upstream_connection_refused);
    case upstream_failure::network_unreachable: return reason_of(reason_code::upstream_network_unreachable);
    case upstream_failure::connect_timeout: return reason_of(reason_code::upstream_connect_timeout);
    case upstream_failure::unreachable: return reason_of(reason_code::upstream_unreachable);
    }
    return reason_of(reason_code::upstream_unreachable);
}

std::string upstream_failure_name(upstream_failure f, channel_direction direction)
{
    return reason_name(reason_for(f), direction);
}

bytes encode_upstream_failure(upstream_failure f) { return bytes{static_cast<uint8_t>(f)}; }

std::optional<upstream_failure> decode_upstream_failure(const bytes &payload)
{
    if (payload.size() != 1 || payload[0] < static_cast<uint8_t>(upstream_failure::backoff) ||
        payload[0] > static_cast<uint8_t>(upstream_failure::unreachable))
        return std::nullopt;
    return static_cast<upstream_failure>(payload[0]);
}

} // namespace clsgw
