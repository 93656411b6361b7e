// Two-way relay between a plain socket and a TLS session, with no data lost at the end.
#pragma once

#include <mbedtls/ssl.h>

#include <cstdint>
#include <functional>
#include <string>

#include "tls/tls.hpp"

namespace clsgw {

struct relay_options {
    uint64_t idle_timeout_ms = 15 * 60 * 1000;
    // After the plain side's FIN: how long the channel may stay quiet (no byte either way) before
    // it ends with reason close_timeout.
    uint64_t close_timeout_ms = 30 * 1000;
    uint64_t lifetime_deadline_ms = 0; // monotonic; 0 = none
    // What the TLS peer's close means for the plain side:
    //  false (the worker's outbound channels): deliver everything, then the channel ends and the
    //        plain side is closed;
    //  true (the worker's inbound channels, the SMGW simulator's --half-close): half-close the
    //        plain side and keep relaying the other direction.
    bool tls_close_is_half_close = false;
    // What the plain side's FIN means for the TLS side. TLS 1.2 has no half-close: a close_notify
    // ends the whole connection for peers such as stunnel or Botan, which then drop the answer.
    //  true (worker): keep the TLS session open and keep delivering the TLS peer's data until the
    //       peer closes or close_timeout passes with nothing moving; then close_notify. A plain side
    //       that sent nothing at all (plain_bytes_before included) is closed at once: no request,
    //       no answer to wait for.
    //  false (SMGW simulator): close_notify at once, then keep reading until the peer closes.
    bool hold_tls_after_plain_close = false;
    uint64_t plain_bytes_before = 0; // plain-side bytes sent to the TLS peer before the relay
    // Called at most once per second while bytes move (plain_to_tls, tls_to_plain so far).
    std::function<void(uint64_t, uint64_t)> on_progress;
    // Called once, the first time the relay has nothing to do and is about to wait: for work that
    // must not delay the channel's first bytes.
    std::function<void()> on_first_idle;
};

struct relay_result {
    bool clean = false;    // both sides closed in order, nothing lost
    channel_reason reason; // why it ended: plain_closed, tls_closed, idle_timeout, ...
    uint64_t plain_to_tls = 0;
    uint64_t tls_to_plain = 0;
    unsigned renegotiations_refused = 0; // attempts by the TLS peer, each answered no_renegotiation
    bool close_notify_sent = false;
};

// plain_name and tls_name label the sides in log lines ("app" or "service", and "smgw", in the
// worker; "emt" and "device" in the simulator); the reason names them by its view (reason.hpp).
relay_result relay(int plain_fd, mbedtls_ssl_context *ssl, tls::bio &tls_io, const relay_options &options,
                   const char *plain_name, const char *tls_name);

} // namespace clsgw
