// Server mode's hand-made probes (server_probes.cpp) and its full handshakes (server_scan.cpp).
#pragma once

#include <optional>

#include "probe.hpp"
#include "report.hpp"

namespace clsgw::hanscan {

struct server_facts {
    uint16_t certificate_group = 0; // the TLS group of the device certificate's curve, if in the profile
};

// A ClientHello of the profile; its answer must be a TLS 1.2 ServerHello. Judges the answer's
// extended master secret, certificate, key exchange and CertificateRequest. nullopt: the
// device cannot be tested (the report says why).
std::optional<probe_answer> check_baseline(report &rep, prober &p, server_facts &facts);
void check_versions(report &rep, prober &p);
void check_suites(report &rep, prober &p);
void check_groups(report &rep, prober &p, const server_facts &facts);
void check_extensions(report &rep, prober &p);

} // namespace clsgw::hanscan
