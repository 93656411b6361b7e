// Records protected by hand, after mbedTLS did the handshake: TLS 1.2 with an AES-GCM suite of the
// profile (RFC 5246 6.3 key expansion, RFC 5288 nonces). clsgw-hanscan uses it to send what the
// library would never send inside a session (a renegotiating ClientHello, a HelloRequest) and to
// read what the peer answers, without relying on the library's renegotiation support.
#pragma once

#include <mbedtls/ssl.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace clsgw::tls {

// The TLS 1.2 master secret and hello randoms of a session, as mbedTLS exports them.
struct exported_keys {
    bool have = false;
    unsigned char master[48] = {};
    unsigned char client_random[32] = {}, server_random[32] = {};
    mbedtls_tls_prf_types prf = MBEDTLS_SSL_TLS_PRF_NONE;
};
// Asks mbedTLS to fill `keys` when the handshake derives its master secret.
void export_keys(mbedtls_ssl_context *ssl, exported_keys *keys);

// Both directions of a session after its Finished messages: each side's write key and IV, and
// the sequence number of its next record (1 after its Finished, which was record 0).
class sealed_session {
public:
    // suite: C0,2B or C0,2C; false for any other suite (no keys derived).
    bool derive(const exported_keys &keys, uint16_t suite);
    // A whole record of `type` as the client (from_client) or the server writes it.
    std::vector<uint8_t> seal(bool from_client, uint8_t type, const std::vector<uint8_t> &plaintext);
    // The plaintext of a record body of `type` the client (from_client) or the server wrote;
    // nullopt if it does not verify. Each record opened or sealed takes its side's next number.
    std::optional<std::vector<uint8_t>> open(bool from_client, uint8_t type, const std::vector<uint8_t> &body);
    void set_sequence(bool from_client, uint64_t next) { seq_[from_client ? 0 : 1] = next; }

private:
    bool ready_ = false;
    size_t key_len_ = 0;
    unsigned char client_key_[32] = {}, server_key_[32] = {};
    unsigned char client_iv_[4] = {}, server_iv_[4] = {};
    uint64_t seq_[2] = {1, 1}; // client, server
};

} // namespace clsgw::tls
