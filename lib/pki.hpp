// Device identity helpers: EC key generation, self-signed and CA-issued certificates, and the
// SHA-256 fingerprint a gateway administrator pins. Used by clsgwctl and by `make demo`.
#pragma once

#include <optional>
#include <string>

namespace clsgw::pki {

// "brainpoolP256r1" (default), "brainpoolP384r1", "brainpoolP512r1", "secp256r1", "secp384r1".
bool curve_supported(const std::string &curve);

struct result {
    bool ok = false;
    std::string pem;
    std::string error;
};

result generate_key(const std::string &curve);

struct cert_request {
    std::string subject;        // "CN=device-1,O=Example"
    std::string key_pem;        // the subject's key (only its public half is used when issuing)
    std::string issuer_cert_pem; // empty: self-signed
    std::string issuer_key_pem;  // empty: self-signed (signed with key_pem)
    int days = 825;
    int valid_from_days = 0;    // negative: starts in the past (tests of expired certificates)
    bool is_ca = false;
};

result make_certificate(const cert_request &request);
// A PKCS#10 certificate signing request for the key (digitalSignature key usage).
result make_request(const std::string &key_pem, const std::string &subject);

// SHA-256 over the first certificate's DER as upper-case, colon-separated hex.
std::optional<std::string> fingerprint_pem(const std::string &pem, std::string &error);

} // namespace clsgw::pki
