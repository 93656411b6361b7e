// TLS 1.2 handshake messages as bytes: ClientHellos made by hand (for probes no TLS library
// would send) and strict, bounded parsers for what a peer sends in the clear. Pure functions over
// byte spans, no mbedTLS: the unit tests and clsgw-hanscan call exactly the same code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace clsgw::tls::wire {

using bytes = std::vector<uint8_t>;

constexpr uint8_t CONTENT_CHANGE_CIPHER_SPEC = 20;
constexpr uint8_t CONTENT_ALERT = 21;
constexpr uint8_t CONTENT_HANDSHAKE = 22;
constexpr uint8_t CONTENT_APPLICATION_DATA = 23;

constexpr uint8_t HS_HELLO_REQUEST = 0;
constexpr uint8_t HS_CLIENT_HELLO = 1;
constexpr uint8_t HS_SERVER_HELLO = 2;
constexpr uint8_t HS_NEW_SESSION_TICKET = 4;
constexpr uint8_t HS_CERTIFICATE = 11;
constexpr uint8_t HS_SERVER_KEY_EXCHANGE = 12;
constexpr uint8_t HS_CERTIFICATE_REQUEST = 13;
constexpr uint8_t HS_SERVER_HELLO_DONE = 14;
constexpr uint8_t HS_FINISHED = 20;

constexpr uint16_t VERSION_TLS10 = 0x0301;
constexpr uint16_t VERSION_TLS11 = 0x0302;
constexpr uint16_t VERSION_TLS12 = 0x0303;
constexpr uint16_t VERSION_TLS13 = 0x0304;

constexpr uint16_t EXT_SERVER_NAME = 0;
constexpr uint16_t EXT_TRUNCATED_HMAC = 4;
constexpr uint16_t EXT_SUPPORTED_GROUPS = 10;
constexpr uint16_t EXT_EC_POINT_FORMATS = 11;
constexpr uint16_t EXT_SIGNATURE_ALGORITHMS = 13;
constexpr uint16_t EXT_ENCRYPT_THEN_MAC = 22;
constexpr uint16_t EXT_EXTENDED_MASTER_SECRET = 23;
constexpr uint16_t EXT_SESSION_TICKET = 35;
constexpr uint16_t EXT_SUPPORTED_VERSIONS = 43;
constexpr uint16_t EXT_KEY_SHARE = 51;
constexpr uint16_t EXT_RENEGOTIATION_INFO = 0xff01;

constexpr uint16_t SUITE_RENEGOTIATION_SCSV = 0x00ff;
constexpr uint8_t EC_CURVE_TYPE_NAMED = 3;
constexpr size_t MAX_RECORD_BODY = 16384 + 2048; // TLSCiphertext.length limit (RFC 5246 6.2.3)
constexpr size_t MAX_HANDSHAKE_MESSAGE = 64 * 1024; // beyond it a peer's message is refused
constexpr size_t MAX_READ = 256 * 1024; // what one reader takes from a peer at most

struct extension {
    uint16_t type = 0;
    bytes data;
};

struct client_hello {
    uint16_t record_version = VERSION_TLS10;
    uint16_t version = VERSION_TLS12;
    uint8_t random[32] = {};
    bytes session_id;
    std::vector<uint16_t> suites;
    std::vector<uint8_t> compression = {0};
    std::vector<extension> extensions;

    const extension *find(uint16_t type) const;
};

// The ClientHello as one handshake record.
bytes encode_client_hello_record(const client_hello &hello);
// The ClientHello handshake message (type, length, body) without the record header.
bytes encode_client_hello_message(const client_hello &hello);
// Extension bodies.
bytes u16_list(const std::vector<uint16_t> &values, size_t length_bytes = 2);

struct server_hello {
    uint16_t version = 0;
    uint8_t random[32] = {};
    bytes session_id;
    uint16_t suite = 0;
    uint8_t compression = 0;
    std::vector<extension> extensions;

    const extension *find(uint16_t type) const;
    // The version supported_versions selects (TLS 1.3), else the legacy version field.
    uint16_t negotiated_version() const;
    // A HelloRetryRequest: a TLS 1.3 ServerHello with the fixed random of RFC 8446 4.1.3.
    bool is_retry_request() const;
};

// A handshake message body. Every parser checks every length and refuses trailing bytes,
// repeated extensions and lists that do not fill their length exactly.
std::optional<client_hello> parse_client_hello(const uint8_t *body, size_t len);
std::optional<server_hello> parse_server_hello(const uint8_t *body, size_t len);
// Certificate: the DER certificates in order, the leaf first.
std::optional<std::vector<bytes>> parse_certificate(const uint8_t *body, size_t len);

struct key_exchange {
    uint16_t group = 0;
    uint16_t signature_algorithm = 0; // TLS 1.2 SignatureAndHashAlgorithm
};
std::optional<key_exchange> parse_ecdhe_server_key_exchange(const uint8_t *body, size_t len);

struct certificate_request {
    std::vector<uint8_t> types;
    std::vector<uint16_t> signature_algorithms;
    size_t authorities = 0;
};
std::optional<certificate_request> parse_certificate_request(const uint8_t *body, size_t len);
// NewSessionTicket: the lifetime hint in seconds.
std::optional<uint32_t> parse_new_session_ticket(const uint8_t *body, size_t len);
// A list of u16 values with a 2-byte length (supported_groups, signature_algorithms).
std::optional<std::vector<uint16_t>> parse_u16_list(const bytes &data);

struct handshake_message {
    uint8_t type = 0;
    bytes body;
};

// Reassembles the records of one direction of a connection as they arrive: the handshake
// messages of the plaintext part, an alert, or the end of the plaintext (ChangeCipherSpec).
// Bounded: a record longer than TLS allows, an unknown content type, an SSL 2 header, a
// handshake message over MAX_HANDSHAKE_MESSAGE or more than MAX_READ bytes in all make it
// `malformed`, and it takes nothing more.
class record_reader {
public:
    void feed(const uint8_t *data, size_t len);
    std::vector<handshake_message> messages; // complete handshake messages, in order
    std::optional<std::pair<uint8_t, uint8_t>> alert; // the first alert: level, description
    bool change_cipher_spec = false;        // what follows is encrypted
    bool malformed = false;
    std::string malformed_reason;
    // Records after the ChangeCipherSpec: content type and length of each, bodies kept (bounded).
    struct sealed_record {
        uint8_t type;
        bytes body;
    };
    std::vector<sealed_record> sealed;
    size_t bytes_seen = 0;

private:
    void record(uint8_t type, const bytes &body);
    void fail(const std::string &why);
    bytes pending_;   // bytes of the record being read
    bytes handshake_; // handshake bytes not yet a whole message
};

const char *suite_name(uint16_t suite);
const char *group_name(uint16_t group);
const char *signature_algorithm_name(uint16_t alg);
const char *extension_name(uint16_t type);
std::string version_name(uint16_t version);
std::string hex16(uint16_t value); // "C0,2B" as the profile writes suites

} // namespace clsgw::tls::wire
