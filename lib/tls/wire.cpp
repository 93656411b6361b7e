// TLS 1.2 handshake messages by hand: RFC 5246 7.4, with the extensions of RFC 6066, 7627 and
// 7366, and the TLS 1.3 fields (RFC 8446) a probe needs to see whether a peer negotiates TLS 1.3.
#include "wire.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>

namespace clsgw::tls::wire {

namespace {

// A bounded reader over one message body: every read checks what is left, and a failed read
// leaves the cursor failed for good.
class cursor {
public:
    cursor(const uint8_t *data, size_t len) : at_(data), end_(data + len) {}
    bool ok() const { return ok_; }
    bool done() const { return ok_ && at_ == end_; }
    size_t left() const { return ok_ ? static_cast<size_t>(end_ - at_) : 0; }
    uint32_t number(size_t width)
    {
        if (!take(width))
            return 0;
        const uint8_t *p = at_ - width;
        uint32_t v = 0;
        for (size_t i = 0; i < width; i++)
            v = v << 8 | p[i];
        return v;
    }
    // A vector<floor..ceiling> with a length field of `width` bytes.
    bytes vector(size_t width, size_t floor = 0, size_t ceiling = SIZE_MAX)
    {
        size_t n = number(width);
        if (!ok_ || n < floor || n > ceiling || !take(n))
            return fail_bytes();
        return bytes(at_ - n, at_);
    }
    void copy(uint8_t *out, size_t n)
    {
        if (take(n))
            memcpy(out, at_ - n, n);
    }

private:
    bool take(size_t n)
    {
        if (!ok_ || n > static_cast<size_t>(end_ - at_))
            return ok_ = false;
        at_ += n;
        return true;
    }
    bytes fail_bytes()
    {
        ok_ = false;
        return {};
    }
    const uint8_t *at_, *end_;
    bool ok_ = true;
};

void put16(bytes &out, uint32_t v)
{
    out.push_back(static_cast<uint8_t>(v >> 8));
    out.push_back(static_cast<uint8_t>(v));
}

void put24(bytes &out, uint32_t v)
{
    out.push_back(static_cast<uint8_t>(v >> 16));
    put16(out, v);
}

// The extensions block: each type once, each body within it, nothing left over.
bool parse_extensions(cursor &c, std::vector<extension> &out)
{
    if (c.done())
        return true; // a hello may end without an extensions block
    bytes block = c.vector(2, 0, 0xffff);
    if (!c.ok())
        return false;
    cursor e(block.data(), block.size());
    std::set<uint16_t> seen;
    while (e.ok() && !e.done()) {
        extension x;
        x.type = static_cast<uint16_t>(e.number(2));
        x.data = e.vector(2);
        if (!e.ok() || !seen.insert(x.type).second)
            return false;
        out.push_back(std::move(x));
    }
    return e.done();
}

const extension *find_in(const std::vector<extension> &list, uint16_t type)
{
    for (const auto &x : list)
        if (x.type == type)
            return &x;
    return nullptr;
}

// RFC 8446 4.1.3: SHA-256("HelloRetryRequest").
const uint8_t RETRY_REQUEST_RANDOM[32] = {
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
};

} // namespace

const extension *client_hello::find(uint16_t type) const
{
    return find_in(extensions, type);
}

const extension *server_hello::find(uint16_t type) const
{
    return find_in(extensions, type);
}

uint16_t server_hello::negotiated_version() const
{
    const extension *v = find(EXT_SUPPORTED_VERSIONS);
    if (v && v->data.size() == 2)
        return static_cast<uint16_t>(v->data[0] << 8 | v->data[1]);
    return version;
}

bool server_hello::is_retry_request() const
{
    return memcmp(random, RETRY_REQUEST_RANDOM, sizeof random) == 0;
}

bytes u16_list(const std::vector<uint16_t> &values, size_t length_bytes)
{
    bytes out;
    size_t n = 2 * values.size();
    if (length_bytes == 1)
        out.push_back(static_cast<uint8_t>(n));
    else
        put16(out, static_cast<uint32_t>(n));
    for (uint16_t v : values)
        put16(out, v);
    return out;
}

bytes encode_client_hello_message(const client_hello &hello)
{
    bytes body;
    put16(body, hello.version);
    body.insert(body.end(), hello.random, hello.random + 32);
    body.push_back(static_cast<uint8_t>(hello.session_id.size()));
    body.insert(body.end(), hello.session_id.begin(), hello.session_id.end());
    bytes suites = u16_list(hello.suites);
    body.insert(body.end(), suites.begin(), suites.end());
    body.push_back(static_cast<uint8_t>(hello.compression.size()));
    body.insert(body.end(), hello.compression.begin(), hello.compression.end());
    bytes ext;
    for (const auto &x : hello.extensions) {
        put16(ext, x.type);
        put16(ext, static_cast<uint32_t>(x.data.size()));
        ext.insert(ext.end(), x.data.begin(), x.data.end());
    }
    if (!hello.extensions.empty()) {
        put16(body, static_cast<uint32_t>(ext.size()));
        body.insert(body.end(), ext.begin(), ext.end());
    }
    bytes message{HS_CLIENT_HELLO};
    put24(message, static_cast<uint32_t>(body.size()));
    message.insert(message.end(), body.begin(), body.end());
    return message;
}

bytes encode_client_hello_record(const client_hello &hello)
{
    bytes message = encode_client_hello_message(hello);
    bytes record{CONTENT_HANDSHAKE};
    put16(record, hello.record_version);
    put16(record, static_cast<uint32_t>(message.size()));
    record.insert(record.end(), message.begin(), message.end());
    return record;
}

std::optional<client_hello> parse_client_hello(const uint8_t *body, size_t len)
{
    cursor c(body, len);
    client_hello h;
    h.version = static_cast<uint16_t>(c.number(2));
    c.copy(h.random, 32);
    h.session_id = c.vector(1, 0, 32);
    bytes suites = c.vector(2, 2, 0xfffe);
    h.compression = c.vector(1, 1, 0xff);
    if (!c.ok() || suites.size() % 2 != 0)
        return std::nullopt;
    for (size_t i = 0; i < suites.size(); i += 2)
        h.suites.push_back(static_cast<uint16_t>(suites[i] << 8 | suites[i + 1]));
    if (!parse_extensions(c, h.extensions) || !c.done())
        return std::nullopt;
    return h;
}

std::optional<server_hello> parse_server_hello(const uint8_t *body, size_t len)
{
    cursor c(body, len);
    server_hello h;
    h.version = static_cast<uint16_t>(c.number(2));
    c.copy(h.random, 32);
    h.session_id = c.vector(1, 0, 32);
    h.suite = static_cast<uint16_t>(c.number(2));
    h.compression = static_cast<uint8_t>(c.number(1));
    if (!c.ok() || !parse_extensions(c, h.extensions) || !c.done())
        return std::nullopt;
    return h;
}

std::optional<std::vector<bytes>> parse_certificate(const uint8_t *body, size_t len)
{
    cursor c(body, len);
    bytes list = c.vector(3);
    if (!c.done())
        return std::nullopt;
    cursor l(list.data(), list.size());
    std::vector<bytes> out;
    while (l.ok() && !l.done())
        out.push_back(l.vector(3, 1));
    if (!l.done())
        return std::nullopt;
    return out;
}

std::optional<key_exchange> parse_ecdhe_server_key_exchange(const uint8_t *body, size_t len)
{
    cursor c(body, len);
    key_exchange k;
    if (c.number(1) != EC_CURVE_TYPE_NAMED)
        return std::nullopt;
    k.group = static_cast<uint16_t>(c.number(2));
    c.vector(1, 1);
    k.signature_algorithm = static_cast<uint16_t>(c.number(2));
    c.vector(2, 1);
    if (!c.done())
        return std::nullopt;
    return k;
}

std::optional<std::vector<uint16_t>> parse_u16_list(const bytes &data)
{
    cursor c(data.data(), data.size());
    bytes list = c.vector(2);
    if (!c.done() || list.size() % 2 != 0)
        return std::nullopt;
    std::vector<uint16_t> out;
    for (size_t i = 0; i < list.size(); i += 2)
        out.push_back(static_cast<uint16_t>(list[i] << 8 | list[i + 1]));
    return out;
}

std::optional<certificate_request> parse_certificate_request(const uint8_t *body, size_t len)
{
    cursor c(body, len);
    certificate_request r;
    r.types = c.vector(1, 1);
    bytes algs = c.vector(2, 2);
    bytes names = c.vector(2);
    if (!c.done() || algs.size() % 2 != 0)
        return std::nullopt;
    for (size_t i = 0; i < algs.size(); i += 2)
        r.signature_algorithms.push_back(static_cast<uint16_t>(algs[i] << 8 | algs[i + 1]));
    cursor n(names.data(), names.size());
    while (n.ok() && !n.done()) {
        n.vector(2, 1);
        r.authorities++;
    }
    if (!n.done())
        return std::nullopt;
    return r;
}

std::optional<uint32_t> parse_new_session_ticket(const uint8_t *body, size_t len)
{
    cursor c(body, len);
    uint32_t hint = c.number(4);
    c.vector(2);
    if (!c.done())
        return std::nullopt;
    return hint;
}

void record_reader::fail(const std::string &why)
{
    if (!malformed)
        malformed_reason = why;
    malformed = true;
}

void record_reader::record(uint8_t type, const bytes &body)
{
    if (change_cipher_spec) {
        if (sealed.size() < 16)
            sealed.push_back({type, body});
        return;
    }
    switch (type) {
    case CONTENT_CHANGE_CIPHER_SPEC:
        if (body != bytes{1} || !handshake_.empty())
            return fail("bad ChangeCipherSpec");
        change_cipher_spec = true;
        return;
    case CONTENT_ALERT:
        if (body.size() != 2)
            return fail("bad alert record");
        if (!alert)
            alert = std::make_pair(body[0], body[1]);
        return;
    case CONTENT_HANDSHAKE:
        handshake_.insert(handshake_.end(), body.begin(), body.end());
        while (handshake_.size() >= 4) {
            size_t n = static_cast<size_t>(handshake_[1]) << 16 | static_cast<size_t>(handshake_[2]) << 8 | handshake_[3];
            if (n > MAX_HANDSHAKE_MESSAGE)
                return fail("handshake message over " + std::to_string(MAX_HANDSHAKE_MESSAGE) + " bytes");
            if (handshake_.size() < 4 + n)
                return;
            messages.push_back({handshake_[0], bytes(handshake_.begin() + 4, handshake_.begin() + 4 + static_cast<long>(n))});
            handshake_.erase(handshake_.begin(), handshake_.begin() + 4 + static_cast<long>(n));
        }
        return;
    default:
        return fail("record of content type " + std::to_string(type) + " in the clear");
    }
}

void record_reader::feed(const uint8_t *data, size_t len)
{
    bytes_seen += len;
    if (bytes_seen > MAX_READ)
        return fail("more than " + std::to_string(MAX_READ) + " bytes");
    while (len > 0 && !malformed) {
        size_t want = pending_.size() < 5 ? 5 - pending_.size() : 0;
        if (want == 0) {
            size_t body = static_cast<size_t>(pending_[3]) << 8 | pending_[4];
            want = 5 + body - pending_.size();
        }
        size_t take = std::min(want, len);
        pending_.insert(pending_.end(), data, data + take);
        data += take;
        len -= take;
        if (pending_.size() < 5)
            continue;
        uint8_t type = pending_[0];
        size_t body = static_cast<size_t>(pending_[3]) << 8 | pending_[4];
        if (type < CONTENT_CHANGE_CIPHER_SPEC || type > CONTENT_APPLICATION_DATA || pending_[1] != 3)
            return fail("not a TLS record (first bytes " + std::to_string(pending_[0]) + " " +
                        std::to_string(pending_[1]) + ")");
        if (body > MAX_RECORD_BODY)
            return fail("record of " + std::to_string(body) + " bytes");
        if (pending_.size() < 5 + body)
            continue;
        record(type, bytes(pending_.begin() + 5, pending_.end()));
        pending_.clear();
    }
}

const char *suite_name(uint16_t suite)
{
    switch (suite) {
    case 0xC02B: return "ECDHE-ECDSA-AES128-GCM-SHA256";
    case 0xC02C: return "ECDHE-ECDSA-AES256-GCM-SHA384";
    case 0xC023: return "ECDHE-ECDSA-AES128-SHA256";
    case 0xC024: return "ECDHE-ECDSA-AES256-SHA384";
    case 0xC009: return "ECDHE-ECDSA-AES128-SHA";
    case 0xC00A: return "ECDHE-ECDSA-AES256-SHA";
    case 0xC013: return "ECDHE-RSA-AES128-SHA";
    case 0xC014: return "ECDHE-RSA-AES256-SHA";
    case 0xC027: return "ECDHE-RSA-AES128-SHA256";
    case 0xC028: return "ECDHE-RSA-AES256-SHA384";
    case 0xC02F: return "ECDHE-RSA-AES128-GCM-SHA256";
    case 0xC030: return "ECDHE-RSA-AES256-GCM-SHA384";
    case 0xCCA8: return "ECDHE-RSA-CHACHA20-POLY1305";
    case 0xCCA9: return "ECDHE-ECDSA-CHACHA20-POLY1305";
    case 0xC0AC: return "ECDHE-ECDSA-AES128-CCM";
    case 0xC0AD: return "ECDHE-ECDSA-AES256-CCM";
    case 0xC0AE: return "ECDHE-ECDSA-AES128-CCM8";
    case 0xC0AF: return "ECDHE-ECDSA-AES256-CCM8";
    case 0xC004: return "ECDH-ECDSA-AES128-SHA";
    case 0xC005: return "ECDH-ECDSA-AES256-SHA";
    case 0xC025: return "ECDH-ECDSA-AES128-SHA256";
    case 0xC02D: return "ECDH-ECDSA-AES128-GCM-SHA256";
    case 0xC02E: return "ECDH-ECDSA-AES256-GCM-SHA384";
    case 0x002F: return "AES128-SHA";
    case 0x0035: return "AES256-SHA";
    case 0x003C: return "AES128-SHA256";
    case 0x009C: return "AES128-GCM-SHA256";
    case 0x009D: return "AES256-GCM-SHA384";
    case 0x009E: return "DHE-RSA-AES128-GCM-SHA256";
    case 0x000A: return "DES-CBC3-SHA";
    case 0x0005: return "RC4-SHA";
    case 0x00FF: return "EMPTY-RENEGOTIATION-INFO-SCSV";
    case 0x1301: return "TLS_AES_128_GCM_SHA256";
    case 0x1302: return "TLS_AES_256_GCM_SHA384";
    case 0x1303: return "TLS_CHACHA20_POLY1305_SHA256";
    }
    return "unknown";
}

const char *group_name(uint16_t group)
{
    switch (group) {
    case 19: return "secp192r1";
    case 21: return "secp224r1";
    case 23: return "secp256r1";
    case 24: return "secp384r1";
    case 25: return "secp521r1";
    case 26: return "brainpoolP256r1";
    case 27: return "brainpoolP384r1";
    case 28: return "brainpoolP512r1";
    case 29: return "x25519";
    case 30: return "x448";
    case 256: return "ffdhe2048";
    case 257: return "ffdhe3072";
    }
    return "unknown";
}

const char *signature_algorithm_name(uint16_t alg)
{
    switch (alg) {
    case 0x0403: return "ecdsa_sha256";
    case 0x0503: return "ecdsa_sha384";
    case 0x0603: return "ecdsa_sha512";
    case 0x0203: return "ecdsa_sha1";
    case 0x0303: return "ecdsa_sha224";
    case 0x0401: return "rsa_pkcs1_sha256";
    case 0x0501: return "rsa_pkcs1_sha384";
    case 0x0601: return "rsa_pkcs1_sha512";
    case 0x0201: return "rsa_pkcs1_sha1";
    case 0x0804: return "rsa_pss_rsae_sha256";
    case 0x0805: return "rsa_pss_rsae_sha384";
    case 0x0806: return "rsa_pss_rsae_sha512";
    case 0x0807: return "ed25519";
    case 0x0809: return "rsa_pss_pss_sha256";
    case 0x080A: return "rsa_pss_pss_sha384";
    case 0x080B: return "rsa_pss_pss_sha512";
    case 0x0301: return "rsa_pkcs1_sha224";
    case 0x0302: return "dsa_sha224";
    case 0x0402: return "dsa_sha256";
    case 0x0502: return "dsa_sha384";
    case 0x0602: return "dsa_sha512";
    case 0x0202: return "dsa_sha1";
    case 0x0808: return "ed448";
    case 0x081A: return "ecdsa_brainpoolP256r1tls13_sha256";
    case 0x081B: return "ecdsa_brainpoolP384r1tls13_sha384";
    case 0x081C: return "ecdsa_brainpoolP512r1tls13_sha512";
    }
    return "unknown";
}

const char *extension_name(uint16_t type)
{
    switch (type) {
    case EXT_SERVER_NAME: return "server_name";
    case 1: return "max_fragment_length";
    case EXT_TRUNCATED_HMAC: return "truncated_hmac";
    case 5: return "status_request";
    case EXT_SUPPORTED_GROUPS: return "supported_groups";
    case EXT_EC_POINT_FORMATS: return "ec_point_formats";
    case EXT_SIGNATURE_ALGORITHMS: return "signature_algorithms";
    case 16: return "alpn";
    case 21: return "padding";
    case EXT_ENCRYPT_THEN_MAC: return "encrypt_then_mac";
    case EXT_EXTENDED_MASTER_SECRET: return "extended_master_secret";
    case EXT_SESSION_TICKET: return "session_ticket";
    case EXT_SUPPORTED_VERSIONS: return "supported_versions";
    case 45: return "psk_key_exchange_modes";
    case EXT_KEY_SHARE: return "key_share";
    case EXT_RENEGOTIATION_INFO: return "renegotiation_info";
    }
    return "unknown";
}

std::string version_name(uint16_t version)
{
    switch (version) {
    case 0x0300: return "SSLv3";
    case VERSION_TLS10: return "TLSv1.0";
    case VERSION_TLS11: return "TLSv1.1";
    case VERSION_TLS12: return "TLSv1.2";
    case VERSION_TLS13: return "TLSv1.3";
    }
    return "version " + hex16(version);
}

std::string hex16(uint16_t value)
{
    char text[8];
    snprintf(text, sizeof text, "%02X,%02X", value >> 8, value & 0xff);
    return text;
}

} // namespace clsgw::tls::wire
