// What a peer's certificate says, judged against the HAN profile's certificate rules
// (TR-03116-3: EC keys on the five curves, ECDSA with SHA-256/384/512, digitalSignature, valid now).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace clsgw::tls {

struct certificate_facts {
    bool parsed = false;
    std::string error;          // why it did not parse
    std::string subject;        // "CN=device-test"
    std::string curve;          // "brainpoolP256r1", or the key type when not EC
    bool curve_in_profile = false;
    std::string signature;      // "ECDSA with SHA256"
    bool signature_in_profile = false;
    bool digital_signature = false; // key usage allows it (or the certificate has no key usage)
    bool key_usage_listed = false;  // the certificate has a keyUsage extension
    std::string valid_from, valid_to; // "2026-12-02 00:00:00"
    bool expired = false, not_yet_valid = false;
    std::string fingerprint; // SHA-256 over the DER, lower-case hex
    // Every rule the certificate breaks, as short phrases; empty when it meets the profile.
    std::vector<std::string> defects() const;
};

certificate_facts inspect_certificate(const std::vector<uint8_t> &der);

} // namespace clsgw::tls
