// One TLS connection made by mbedTLS with the HAN profile, as the SMGW would make it (client
// against a device's server, or server for a device's client), with every byte each way kept so
// the scan can read the handshake in the clear and protect records of its own afterwards.
#pragma once

#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>

#include <memory>
#include <optional>
#include <string>

#include "../../lib/tls/sealed.hpp"
#include "../../lib/tls/tls.hpp"
#include "../../lib/tls/wire.hpp"
#include "../../lib/util.hpp"

namespace clsgw::hanscan {

namespace wire = tls::wire;

// Every timeout of a scan, with its default; each is named in the evidence when it fires.
struct timeouts {
    uint64_t connect_ms = 10000;     // connect_timeout: TCP connect to the device (server mode)
    uint64_t answer_ms = 10000;      // answer_timeout: the device's answer to one hand-made hello
    uint64_t handshake_ms = 30000;   // handshake_timeout: one whole handshake
    uint64_t renegotiation_ms = 3000; // renegotiation_wait: silence after a renegotiation probe = ignored
    uint64_t accept_ms = 120000;     // accept_timeout: the device's next connection (client mode)
};

// A certificate with its key, as files give them.
struct identity {
    std::string cert_pem, key_pem;
    tls::cert_list cert;
    tls::private_key key;
    std::string subject;
};
// "answer_timeout (10s)": how evidence names a timeout that fired.
std::string timeout_text(const char *name, uint64_t ms);

// Loads an identity; the error names the file.
bool load_identity(identity &id, const std::string &cert_file, const std::string &key_file, tls::rng &rng,
                   std::string &error);
// Seeds rng and loads the SMGW identity and the device's trust anchors; "" or what is wrong.
std::string load_scan_files(const std::string &cert_file, const std::string &key_file, const std::string &trust_file,
                            tls::rng &rng, identity &own, tls::cert_list &trust);
// A throwaway identity: a fresh key's self-signed certificate (untrusted), or one for the same
// key and subject that expired days ago.
bool make_untrusted_identity(identity &id, tls::rng &rng, std::string &error);
bool make_expired_identity(identity &id, const identity &from, tls::rng &rng, std::string &error);

// The byte-keeping transport: tls::bio below, copies of both directions above (bounded).
struct tap {
    tls::bio io;
    wire::bytes sent, received;
    static constexpr size_t KEEP = 256 * 1024;
};

struct endpoint_settings {
    bool is_client = true;
    identity *own = nullptr;                   // none: no certificate is presented
    const tls::cert_list *trust = nullptr;     // the peer's certificate is verified against it
    const int *suites = nullptr;               // a 0-terminated list instead of the profile's four
    bool tickets = true;                       // client: accept tickets
    mbedtls_ssl_ticket_context *ticket_keys = nullptr; // server: issue tickets with these keys
    mbedtls_ssl_session *resume = nullptr;     // client: offer this session
    std::string server_name;
};

class endpoint {
public:
    endpoint(tls::rng &rng, const endpoint_settings &settings);
    ~endpoint();
    endpoint(const endpoint &) = delete;
    endpoint &operator=(const endpoint &) = delete;

    // Runs the handshake on fd (connected, non-blocking) until done, failure or timeout_ms.
    bool handshake(int fd, uint64_t timeout_ms);
    // Why the handshake failed: "alert bad_certificate from the device", "closed by the device", ...
    std::string failure;
    bool peer_alerted = false;
    mbedtls_ssl_context *ssl() { return &ssl_; }
    tap &wire_tap() { return tap_; }
    tls::exported_keys keys;
    uint32_t verify_flags() const { return mbedtls_ssl_get_verify_result(&ssl_); }
    // After a handshake: whether it resumed a session. The transport's record streams saw every
    // ServerKeyExchange, and every suite of the profile is ECDHE: a handshake without one resumed.
    bool resumed() const { return (is_client_ ? tap_.io.received : tap_.io.sent).kex_group < 0; }
    // The handshake messages each side sent in the clear, and what came after.
    wire::record_reader received() const;
    wire::record_reader sent() const;
    // Keys for records of our own after the handshake (GCM suites only).
    bool seal_keys(tls::sealed_session &sealed);
    // Bytes the transport read ahead of mbedTLS, to be read before the socket.
    wire::bytes unread();

private:
    mbedtls_ssl_config conf_;
    mbedtls_ssl_context ssl_;
    tls::trust_check check_;
    tap tap_;
    bool is_client_;
};

// The records the peer sends after the handshake (until `deadline_ms`, a close, an alert, or
// `until` says enough), fed into reader, which starts after the ChangeCipherSpec.
enum class wait_end { condition, closed, reset, timeout };
wait_end read_records(int fd, wire::bytes first, wire::record_reader &reader, uint64_t deadline_ms,
                      bool (*until)(const wire::record_reader &));

// Non-blocking TCP connect with a deadline; an invalid fd and `error` on failure.
unique_fd connect_with_deadline(const std::string &address, uint64_t timeout_ms, std::string &error);

} // namespace clsgw::hanscan
