// What the bytes of one direction of a TLS 1.2 connection say before they are encrypted: the
// record framing, the group of a ServerKeyExchange and what a ClientHello offers. A parser of
// untrusted bytes with bounded memory; it needs nothing of mbedTLS (tests/fuzz/fuzz_records.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace clsgw::tls {

// Follows the record framing of one direction of a TLS 1.2 connection, and the handshake
// messages inside its plaintext records: mbedTLS 3.6 tells neither the negotiated group nor
// whether a handshake resumed a session, and the ServerKeyExchange (sent or received) says both.
struct record_stream {
    bool watch_handshake_records = false; // set once the handshake is over
    unsigned late_handshake_records = 0;  // handshake records seen while watching
    int kex_group = -1;                   // TLS NamedGroup of the ServerKeyExchange seen, if any
    std::vector<uint16_t> offered_groups; // supported_groups of the ClientHello seen, if any (TLS ids)
    std::vector<uint16_t> offered_suites; // cipher_suites of the ClientHello seen, if any (TLS ids)
    void observe(const unsigned char *data, size_t len);

    // The first bytes of a ClientHello body that are kept and parsed; the rest goes by unread.
    static constexpr size_t CLIENT_HELLO_MAX = 16 * 1024;

private:
    void observe_handshake(unsigned char byte);
    void parse_client_hello();
    std::vector<unsigned char> hello_; // the ClientHello body while it goes by
    unsigned char header_[5] = {};
    size_t header_have_ = 0;
    size_t body_left_ = 0;
    bool encrypted_ = false; // a ChangeCipherSpec went by: what follows is opaque
    unsigned char msg_[7] = {}; // a handshake message's header and the first bytes of its body
    size_t msg_have_ = 0;
    size_t msg_left_ = 0;
};

} // namespace clsgw::tls
