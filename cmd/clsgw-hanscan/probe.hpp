// Hand-made ClientHellos against a device's TLS server: what no TLS library would send (old and
// new versions, suites and groups outside the profile, compression, truncated HMAC), and the
// device's answer read in the clear up to its ServerHelloDone.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "../../lib/tls/wire.hpp"
#include "endpoint.hpp"

namespace clsgw::hanscan {

extern const std::vector<uint16_t> PROFILE_SUITES; // C0,2B C0,2C C0,23 C0,24
extern const std::vector<uint16_t> PROFILE_GROUPS; // brainpoolP256r1/384r1/512r1, secp256r1/384r1
extern const std::vector<uint16_t> PROFILE_SIGNATURES; // ECDSA with SHA-512/384/256
bool in_profile(const std::vector<uint16_t> &list, uint16_t value);

struct probe_answer {
    enum class kind { server_hello, alert, closed, reset, timeout, malformed, no_connection } what = kind::closed;
    std::optional<wire::server_hello> hello;
    std::vector<wire::handshake_message> messages;
    std::optional<std::pair<uint8_t, uint8_t>> alert;
    std::string error; // no_connection, malformed: why; timeout: which
    const wire::handshake_message *find(uint8_t type) const;
    std::optional<wire::key_exchange> key_exchange() const;
    // "ServerHello TLSv1.2 C0,2B", "alert handshake_failure", "closed without an answer", ...
    std::string text() const;
    bool accepted() const { return what == kind::server_hello; }
};

class prober {
public:
    prober(std::string address, std::string server_name, const timeouts &limits)
        : address_(std::move(address)), server_name_(std::move(server_name)), limits_(limits) {}
    // A ClientHello as the SMGW would send it: the profile's suites, groups and signatures,
    // null compression, encrypt-then-MAC, extended master secret, the renegotiation SCSV.
    wire::client_hello profile_hello() const;
    probe_answer send(const wire::client_hello &hello);
    // The ServerHello.random of every answer so far (HelloRetryRequests left out).
    std::vector<std::vector<uint8_t>> randoms;
    // Why a probe after the first could not connect: a device that went away is not judged by
    // the refusals its absence looks like.
    std::string lost;

private:
    std::string address_, server_name_;
    timeouts limits_;
};

void set_extension(wire::client_hello &hello, uint16_t type, const wire::bytes &data);
void drop_extension(wire::client_hello &hello, uint16_t type);

} // namespace clsgw::hanscan
