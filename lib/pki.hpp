// Device identity helpers: EC key generation, self-signed and CA-issued certificates, and the
// SHA-256 fingerprint a gateway administrator pins. Used by clsgwctl and by `make demo`.
#pragma once

#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

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

// What clsgw-signer requires of its identity before it signs anything: the key is EC on a HAN
// profile curve and is the private half of the (first) certificate's public key. Empty when all
// is well, else what is wrong, as a sentence naming the curve or the mismatch.
std::string key_pair_problem(mbedtls_pk_context *key, const mbedtls_x509_crt *cert);
// The same from PEM text; also says when either does not parse.
std::string key_pair_problem(const std::string &key_pem, const std::string &cert_pem);

// The HAN profile's groups as a list for messages: "brainpoolP256r1, ..., secp384r1".
std::string profile_curves_text();
// The name of an EC key's curve ("secp521r1"), "not an EC key" for any other key.
std::string key_curve_name(const mbedtls_pk_context *key);

// Why a certificate cannot issue others (basicConstraints without CA:TRUE, or a keyUsage
// without keyCertSign); empty when it can.
std::string issuer_problem(const mbedtls_x509_crt *issuer);

// SHA-256 over the first certificate's DER as upper-case, colon-separated hex.
std::optional<std::string> fingerprint_pem(const std::string &pem, std::string &error);

} // namespace clsgw::pki
