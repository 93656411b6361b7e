#include "signer_proto.hpp"

#include <cstring>

namespace clsgw::signer {

const char *status_name(status s)
{
    switch (s) {
    case status::ok: return "ok";
    case status::malformed: return "malformed";
    case status::unknown_key: return "unknown_key";
    case status::unsupported_digest: return "unsupported_digest";
    case status::wrong_digest_length: return "wrong_digest_length";
    case status::quota_exceeded: return "quota_exceeded";
    case status::sign_failed: return "sign_failed";
    case status::answer_unread: return "answer_unread";
    }
    return "unknown";
}

const char *digest_name(digest d)
{
    switch (d) {
    case digest::sha256: return "SHA256";
    case digest::sha384: return "SHA384";
    case digest::sha512: return "SHA512";
    }
    return "unknown";
}

size_t digest_length(uint8_t d)
{
    switch (static_cast<digest>(d)) {
    case digest::sha256: return 32;
    case digest::sha384: return 48;
    case digest::sha512: return 64;
    }
    return 0;
}

bytes encode_request(const request &r)
{
    bytes out(REQUEST_SIZE);
    memcpy(out.data(), &r.seq, 4);
    out[4] = r.digest_alg;
    out[5] = r.hash_len;
    memcpy(out.data() + 6, r.key_id, KEY_ID_LEN);
    memcpy(out.data() + 6 + KEY_ID_LEN, r.hash, MAX_HASH_LEN);
    return out;
}

std::optional<request> decode_request(const bytes &payload)
{
    if (payload.size() != REQUEST_SIZE)
        return std::nullopt;
    request r;
    memcpy(&r.seq, payload.data(), 4);
    r.digest_alg = payload[4];
    r.hash_len = payload[5];
    memcpy(r.key_id, payload.data() + 6, KEY_ID_LEN);
    memcpy(r.hash, payload.data() + 6 + KEY_ID_LEN, MAX_HASH_LEN);
    return r;
}

status validate_request(const request &r, const uint8_t (&key_id)[KEY_ID_LEN])
{
    if (memcmp(r.key_id, key_id, KEY_ID_LEN) != 0)
        return status::unknown_key;
    size_t expected = digest_length(r.digest_alg);
    if (expected == 0)
        return status::unsupported_digest;
    if (r.hash_len != expected)
        return status::wrong_digest_length;
    return status::ok;
}

bytes encode_answer(const answer &a)
{
    uint16_t sig_len = static_cast<uint16_t>(a.signature.size());
    bytes out(4 + 1 + 2 + a.signature.size());
    memcpy(out.data(), &a.seq, 4);
    out[4] = static_cast<uint8_t>(a.st);
    memcpy(out.data() + 5, &sig_len, 2);
    if (!a.signature.empty())
        memcpy(out.data() + 7, a.signature.data(), a.signature.size());
    return out;
}

std::optional<answer> decode_answer(const bytes &payload)
{
    if (payload.size() < 7)
        return std::nullopt;
    answer a;
    uint16_t sig_len;
    memcpy(&a.seq, payload.data(), 4);
    if (payload[4] > static_cast<uint8_t>(status::answer_unread))
        return std::nullopt;
    a.st = static_cast<status>(payload[4]);
    memcpy(&sig_len, payload.data() + 5, 2);
    if (sig_len > MAX_SIG_LEN || payload.size() != 7u + sig_len)
        return std::nullopt;
    if (a.st != status::ok && sig_len != 0)
        return std::nullopt;
    a.signature.assign(payload.begin() + 7, payload.end());
    return a;
}

} // namespace clsgw::signer
