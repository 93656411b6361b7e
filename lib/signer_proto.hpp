// The signer's session protocol: one fixed-size request, one answer, paired by sequence number.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "log.hpp"
#include "util.hpp"

namespace clsgw::signer {

enum class digest : uint8_t { sha256 = 1, sha384 = 2, sha512 = 3 };

enum class status : uint8_t {
    ok = 0,
    malformed = 1,
    unknown_key = 2,
    unsupported_digest = 3,
    wrong_digest_length = 4,
    quota_exceeded = 5,
    sign_failed = 6,
    answer_unread = 7, // a request came while an earlier answer was still unread
};

const char *status_name(status s);
const char *digest_name(digest d);
// Expected length of a digest; 0 for an unknown value.
size_t digest_length(uint8_t d);

constexpr size_t KEY_ID_LEN = 32;  // SHA-256 of the public key (SubjectPublicKeyInfo DER)
constexpr size_t MAX_HASH_LEN = 64;
constexpr size_t MAX_SIG_LEN = 160; // DER ECDSA signature on a 521-bit curve fits in 141
constexpr unsigned SIGNATURES_PER_SESSION = 2;

struct request {
    uint32_t seq = 0;
    uint8_t digest_alg = 0;
    uint8_t hash_len = 0;
    uint8_t key_id[KEY_ID_LEN] = {};
    uint8_t hash[MAX_HASH_LEN] = {};
};
constexpr size_t REQUEST_SIZE = 4 + 1 + 1 + KEY_ID_LEN + MAX_HASH_LEN;

struct answer {
    uint32_t seq = 0;
    status st = status::malformed;
    bytes signature;
};

bytes encode_request(const request &r);
// Decodes the fixed layout; nullopt when the size is wrong.
std::optional<request> decode_request(const bytes &payload);
// Checks a decoded request against the signer's key: the first failing rule, or ok.
status validate_request(const request &r, const uint8_t (&key_id)[KEY_ID_LEN]);

bytes encode_answer(const answer &a);
std::optional<answer> decode_answer(const bytes &payload);

// session_open (master -> signer, with the session's socket): whom the session is for, as the
// audit log names it.
struct session_tag {
    uint64_t channel_id = 0;
    std::string channel_name, peer;
};
bytes encode_session_open(const session_tag &t);
std::optional<session_tag> decode_session_open(const bytes &payload);

// log (signer -> master): a level byte, then the line, at most LOG_LINE_MAX bytes. Decoded, the
// line's control bytes are '?': the master logs it as it is.
constexpr size_t LOG_LINE_MAX = 1024;
bytes encode_log(log_level level, const std::string &line);
std::optional<std::pair<log_level, std::string>> decode_log(const bytes &payload);

// signer_ready (signer -> master): the key id of the key the signer holds.
bytes encode_signer_ready(const uint8_t (&key_id)[KEY_ID_LEN]);
std::optional<bytes> decode_signer_ready(const bytes &payload);

// signer_probe (master -> signer): a liveness probe, named by its sequence number. The signer
// answers from its loop with signer_counts: the same number and its counts since start.
struct counts {
    uint64_t seq = 0;
    uint64_t signatures = 0, refusals = 0, sessions = 0;
};
bytes encode_probe(uint64_t seq);
std::optional<uint64_t> decode_probe(const bytes &payload);
bytes encode_counts(const counts &c);
// nullopt unless exactly the four fields.
std::optional<counts> decode_counts(const bytes &payload);

} // namespace clsgw::signer
