// The HAN TLS profile (TR-03116-3) on mbedTLS 3.6 LTS, and the mechanics around it: randomness,
// certificates, pinning, a non-blocking fd BIO and a handshake driver with a deadline.
#pragma once

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../reason.hpp"
#include "record_stream.hpp"

namespace clsgw::tls {

std::string error_text(int ret);
// The linked mbedTLS's version, "3.6.6".
const char *library_version();
// True when argv is exactly PROGRAM --version; then prints "PROGRAM VERSION (mbedTLS X.Y.Z)".
bool print_version(int argc, char **argv, const char *program);

// CTR-DRBG seeded from the kernel (getrandom), one per process.
class rng {
public:
    rng();
    ~rng();
    rng(const rng &) = delete;
    rng &operator=(const rng &) = delete;
    bool seed(const char *personalization);
    mbedtls_ctr_drbg_context *drbg() { return &drbg_; }
    static int random(void *self, unsigned char *out, size_t len);

private:
    mbedtls_ctr_drbg_context drbg_;
};

class cert_list {
public:
    cert_list() { mbedtls_x509_crt_init(&crt_); }
    ~cert_list() { mbedtls_x509_crt_free(&crt_); }
    cert_list(const cert_list &) = delete;
    cert_list &operator=(const cert_list &) = delete;
    // Parses every certificate in PEM text; any unparsable one is an error.
    bool parse_pem(const std::string &pem, std::string &error);
    mbedtls_x509_crt *get() { return &crt_; }
    const mbedtls_x509_crt *get() const { return &crt_; }
    bool empty() const { return crt_.raw.p == nullptr; }

private:
    mbedtls_x509_crt crt_;
};

class private_key {
public:
    private_key() { mbedtls_pk_init(&pk_); }
    ~private_key() { mbedtls_pk_free(&pk_); }
    private_key(const private_key &) = delete;
    private_key &operator=(const private_key &) = delete;
    mbedtls_pk_context *get() { return &pk_; }

private:
    mbedtls_pk_context pk_;
};

// Applies the profile: TLS 1.2 only, the four ECDHE-ECDSA suites, the five groups, ECDSA with
// SHA-256/384/512, certificate profile, encrypt-then-MAC, extended master secret, no
// renegotiation, mandatory peer authentication.
void apply_han_profile(mbedtls_ssl_config *conf);
// mbedtls_ssl_setup, and a client declares that it checks no host name (mbedTLS 3.6.3 and later
// refuse a verifying client that says nothing): the SMGW is authenticated by trust alone. A
// server_name set afterwards (SNI) only names the EMT.
int setup(mbedtls_ssl_context *ssl, const mbedtls_ssl_config *conf);
extern const mbedtls_x509_crt_profile han_cert_profile;
bool curve_in_profile(mbedtls_ecp_group_id id);
// The profile's groups in clsgw's order of preference, ending with MBEDTLS_ECP_DP_NONE.
const mbedtls_ecp_group_id *profile_curves();
// The profile's groups as TLS ids, in the order clsgw offers them.
std::vector<uint16_t> profile_groups();

// Trust: anchors (pinned certificates or CAs) plus exact-leaf pinning, used as verify callback.
// The peer is never checked against a host name: the SMGW is authenticated by trust alone.
struct trust_check {
    const mbedtls_x509_crt *anchors = nullptr;
    std::string pinned_sha256; // optional: a leaf with this SHA-256 fingerprint (hex) is trusted
    bool chain_untrusted = false;
    static int verify(void *self, mbedtls_x509_crt *crt, int depth, uint32_t *flags);
};

// clsgw's own verify flag: the leaf names a trusted issuer whose key did not sign it.
// (mbedTLS reports that case only as BADCERT_NOT_TRUSTED.)
constexpr uint32_t BADCERT_SIGNATURE = 0x40000000;

// The reason for a failed certificate check (cert_expired, ...).
channel_reason verify_reason(uint32_t flags);
// The reason for a failed handshake.
channel_reason handshake_reason(int ret, uint32_t verify_flags);
// The same, and a fatal alert from the peer is kept with its number (peer_alert).
channel_reason handshake_reason(const mbedtls_ssl_context *ssl, int ret);
// The description of the fatal alert the peer sent when ret says it sent one, else -1.
int peer_alert(const mbedtls_ssl_context *ssl, int ret);
// True once a server has processed the ClientHello (the SNI callback has run).
bool past_client_hello(const mbedtls_ssl_context *ssl);
// The curve of an EC key, or MBEDTLS_ECP_DP_NONE for any other key.
mbedtls_ecp_group_id key_group(const mbedtls_pk_context *pk);

// SHA-256 over a certificate's DER, lower-case hex.
std::string fingerprint(const mbedtls_x509_crt *crt);
// SHA-256 over the DER SubjectPublicKeyInfo: the key id the signer and the audit log use.
bool key_id(mbedtls_pk_context *pk, uint8_t out[32]);
const char *group_name(mbedtls_ecp_group_id id);
// The curve of a certificate's EC key; MBEDTLS_ECP_DP_NONE for any other key.
mbedtls_ecp_group_id cert_curve(const mbedtls_x509_crt *crt);

// The transport under a TLS session: a non-blocking socket. It also follows the record
// framing of both directions, so that handshake records arriving after the handshake
// (renegotiation attempts, which mbedTLS refuses internally) can be counted exactly.
struct bio {
    int fd = -1;
    bool watch_handshake_records = false; // set once the handshake is over
    unsigned late_handshake_records = 0;  // handshake records seen while watching
    int failed_errno = 0;                 // why the socket failed (ETIMEDOUT: keepalive gave up)
    record_stream received, sent;
    void observe(const unsigned char *data, size_t len);
    // mbedTLS reads each record in two calls (its 5-byte header, then the body); one recv fills
    // this read-ahead buffer and serves both, and the records behind them. mbedTLS is told
    // "want read" only once it is empty, so nothing waits in it while the socket is polled.
    static constexpr size_t READ_AHEAD = 32 * 1024;
    std::unique_ptr<unsigned char[]> ahead; // allocated on the first read; new[] does not clear it
    size_t ahead_start = 0, ahead_end = 0;
};

// Server side, during or right after a handshake: the groups the client offered in its
// ClientHello (seen by io's received record stream), as "name:name" with mbedTLS's names of
// the groups it knows; empty when none were seen.
std::string offered_groups(const bio &io);

// Server side, after a handshake found no shared suite: true when our certificate's curve is the
// cause (RFC 8422: an ECDSA certificate must be on a curve the client lists in supported_groups),
// i.e. the ClientHello offered a suite and a group of the profile but not the certificate's curve.
// A client with no suite or no group of the profile (TLS 1.3 only, RSA, X25519 only) is outside
// the profile whatever the curve, and a ClientHello without supported_groups allows any curve.
bool cert_curve_not_offered(const bio &io, mbedtls_ecp_group_id cert_curve);

// BIO callbacks for mbedtls_ssl_set_bio; ctx points to a tls::bio.
int bio_send(void *ctx, const unsigned char *buf, size_t len);
int bio_recv(void *ctx, unsigned char *buf, size_t len);

// Polls fd for the direction mbedTLS asked for until deadline_ms (monotonic); false on timeout.
bool wait_io(int fd, int want, uint64_t deadline_ms);

struct handshake_result {
    int ret = 0;
    bool timed_out = false;
    bool resumed = false;
    mbedtls_ecp_group_id group = MBEDTLS_ECP_DP_NONE;
    uint64_t wait_us = 0; // spent waiting for the peer's records
};
// Runs the handshake step by step, waiting on fd, until done, failure or deadline.
// after_step (optional) is called after every step; a non-zero return aborts with that code.
using handshake_check = int (*)(void *arg, mbedtls_ssl_context *ssl);
handshake_result run_handshake(mbedtls_ssl_context *ssl, int fd, uint64_t deadline_ms,
                               handshake_check after_step = nullptr, void *arg = nullptr);

} // namespace clsgw::tls
