#include "signer_proto.hpp"

#include <cstring>

#include "ipc.hpp"

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

bytes encode_session_open(const session_tag &t)
{
    tlv_writer w;
    w.add_u64(1, t.channel_id).add(2, t.channel_name).add(3, t.peer);
    return w.data();
}

std::optional<session_tag> decode_session_open(const bytes &payload)
{
    tlv_reader r;
    std::string err;
    if (!r.parse(payload, err))
        return std::nullopt;
    auto id = r.u64(1);
    auto name = r.str(2, 128), peer = r.str(3, 128);
    if (!id || !name || !peer)
        return std::nullopt;
    return session_tag{*id, *name, *peer};
}

bytes encode_log(log_level level, const std::string &line)
{
    size_t n = line.size() > LOG_LINE_MAX ? LOG_LINE_MAX : line.size();
    bytes payload(1 + n);
    payload[0] = static_cast<uint8_t>(level);
    memcpy(payload.data() + 1, line.data(), n);
    return payload;
}

std::optional<std::pair<log_level, std::string>> decode_log(const bytes &payload)
{
    if (payload.empty() || !valid_log_level(payload[0]) || payload.size() > 1 + LOG_LINE_MAX)
        return std::nullopt;
    std::string line(payload.begin() + 1, payload.end());
    for (auto &c : line)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            c = '?';
    return std::make_pair(static_cast<log_level>(payload[0]), line);
}

bytes encode_signer_ready(const uint8_t (&key_id)[KEY_ID_LEN])
{
    tlv_writer w;
    w.add(1, key_id, KEY_ID_LEN);
    return w.data();
}

std::optional<bytes> decode_signer_ready(const bytes &payload)
{
    tlv_reader r;
    std::string err;
    return r.parse(payload, err) ? r.raw(1, KEY_ID_LEN) : std::nullopt;
}

bytes encode_probe(uint64_t seq) { return tlv_writer().add_u64(1, seq).take(); }

std::optional<uint64_t> decode_probe(const bytes &payload)
{
    tlv_reader r;
    std::string err;
    if (!r.parse(payload, err) || r.count() != 1)
        return std::nullopt;
    return r.u64(1);
}

bytes encode_counts(const counts &c)
{
    return tlv_writer().add_u64(1, c.seq).add_u64(2, c.signatures).add_u64(3, c.refusals).add_u64(4, c.sessions).take();
}

std::optional<counts> decode_counts(const bytes &payload)
{
    tlv_reader r;
    std::string err;
    if (!r.parse(payload, err) || r.count() != 4 || !r.u64(1) || !r.u64(2) || !r.u64(3) || !r.u64(4))
        return std::nullopt;
    return counts{*r.u64(1), *r.u64(2), *r.u64(3), *r.u64(4)};
}

} // namespace clsgw::signer
