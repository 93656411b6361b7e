// One TLS endpoint on the HAN profile over a non-blocking socket, as the worker (both directions)
// and the SMGW simulator use it: configuration, own certificate and key, trust, the fd transport,
// a handshake and exact reads and writes, each bounded by a deadline.
#pragma once

#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include <cstdint>
#include <string>
#include <vector>

#include "remote_pk.h"
#include "tls.hpp"

namespace clsgw::tls {

// How a read or write with a deadline ended.
enum class io_status {
    ok,      // all bytes moved
    timeout, // the deadline passed first
    closed,  // the peer closed (close_notify or end of stream)
    error,   // any other TLS or socket failure
};

// Use in this order: configure, then the key and own_cert, then the options, then open, then
// handshake, read_exact, write_all. The endpoint cannot be copied or moved (mbedTLS keeps
// pointers into it); the rng, the certificates and the anchors handed in must outlive it.
class endpoint {
public:
    endpoint();
    ~endpoint();
    endpoint(const endpoint &) = delete;
    endpoint &operator=(const endpoint &) = delete;

    // role: MBEDTLS_SSL_IS_CLIENT or MBEDTLS_SSL_IS_SERVER. The HAN profile with mandatory peer
    // authentication against anchors (CAs or pinned certificates) through tls::trust_check.
    int configure(int role, rng &random, const mbedtls_x509_crt *anchors);
    // Our private key, parsed from PEM text (a local key file).
    int parse_key(const std::string &pem);
    // Our private key held by another process: public_key is our certificate's, sign makes every
    // signature.
    int remote_key(const mbedtls_pk_context *public_key, clsgw_remote_sign_fn sign, void *arg);
    // Our certificate chain, with the key set above. Without one a client offers no certificate.
    int own_cert(mbedtls_x509_crt *chain);

    // Options, before open.
    // A leaf with this SHA-256 fingerprint is trusted too ("AB:CD:..." or plain hex).
    void pin_sha256(const std::string &fingerprint);
    // The groups (TLS ids) offered as client or accepted as server, in this order, instead of
    // the profile's.
    void set_groups(const std::vector<uint16_t> &groups);
    // Server: called with the ClientHello's server_name; non-zero refuses it (unrecognized_name).
    using server_name_hook = int (*)(void *arg, mbedtls_ssl_context *ssl, const unsigned char *name, size_t len);
    void on_server_name(server_name_hook hook, void *arg);
    // Server: a session-id cache kept elsewhere.
    void session_cache(mbedtls_ssl_cache_get_t *get, mbedtls_ssl_cache_set_t *set, void *arg);
    // Server: session tickets issued and accepted by these callbacks.
    void session_tickets(mbedtls_ssl_ticket_write_t *write, mbedtls_ssl_ticket_parse_t *parse, void *arg);

    // The TLS context over fd, which must be non-blocking and stays the caller's. A client
    // names server_name in its ClientHello (SNI) when given; the peer is still checked by trust
    // alone.
    int open(int fd, const char *server_name = nullptr);
    // Server, during the handshake (from the server-name hook): the anchors this handshake checks
    // the client against.
    void set_handshake_anchors(const mbedtls_x509_crt *anchors);
    // tls::run_handshake on this endpoint's socket.
    handshake_result handshake(uint64_t deadline_ms, handshake_check after_step = nullptr, void *arg = nullptr);
    // Reads exactly n bytes into out, counting them in got (which may start above 0); on any
    // status but ok, got says how many arrived.
    io_status read_exact(unsigned char *out, size_t n, size_t &got, uint64_t deadline_ms);
    io_status write_all(const unsigned char *data, size_t len, uint64_t deadline_ms);
    int close_notify() { return mbedtls_ssl_close_notify(&ssl_); }

    // The curve of the peer's leaf certificate, once the handshake has seen it.
    mbedtls_ecp_group_id peer_cert_curve() const { return peer_curve_; }
    mbedtls_ssl_context *ssl() { return &ssl_; }
    const mbedtls_ssl_context *ssl() const { return &ssl_; }
    mbedtls_ssl_config *conf() { return &conf_; }
    bio &io() { return io_; }
    const bio &io() const { return io_; }
    int fd() const { return io_.fd; }

private:
    static int verify(void *self, mbedtls_x509_crt *crt, int depth, uint32_t *flags);

    mbedtls_ssl_config conf_;
    mbedtls_ssl_context ssl_;
    mbedtls_pk_context key_;
    rng *rng_ = nullptr;
    trust_check check_;
    bio io_;
    std::vector<uint16_t> groups_; // as mbedTLS is given them, ending with GROUP_NONE
    mbedtls_ecp_group_id peer_curve_ = MBEDTLS_ECP_DP_NONE;
};

} // namespace clsgw::tls
