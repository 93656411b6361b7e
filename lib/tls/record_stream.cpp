#include "record_stream.hpp"

#include <algorithm>

namespace clsgw::tls {

namespace {
constexpr unsigned char RECORD_CHANGE_CIPHER_SPEC = 20;
constexpr unsigned char RECORD_HANDSHAKE = 22;
constexpr unsigned char HANDSHAKE_CLIENT_HELLO = 1;
constexpr unsigned char HANDSHAKE_SERVER_KEY_EXCHANGE = 12;
constexpr unsigned char EC_CURVE_TYPE_NAMED = 3;
constexpr size_t EXTENSION_SUPPORTED_GROUPS = 10;

// A list of 16-bit values with a 16-bit length in front, at m[at]; the values that fit before end
// (a list cut short by the end of what was kept gives what it has). False without a length.
bool read_u16_list(const std::vector<unsigned char> &m, size_t at, size_t end, std::vector<uint16_t> &out)
{
    if (at + 2 > end)
        return false;
    size_t list_end = std::min(end, at + 2 + (static_cast<size_t>(m[at]) << 8 | m[at + 1]));
    out.clear();
    for (size_t i = at + 2; i + 2 <= list_end; i += 2)
        out.push_back(static_cast<uint16_t>(m[i] << 8 | m[i + 1]));
    return true;
}
} // namespace

void record_stream::parse_client_hello()
{
    // ClientHello: version(2) random(32) session_id<0..32> cipher_suites<2..> compression<1..>
    // extensions<0..>; supported_groups (10) holds a NamedGroup list<2..>.
    const std::vector<unsigned char> &m = hello_;
    auto u16 = [&m](size_t i) { return static_cast<size_t>(m[i]) << 8 | m[i + 1]; };
    size_t at = 2 + 32;
    if (at + 1 > m.size())
        return;
    at += 1 + m[at];
    if (!read_u16_list(m, at, m.size(), offered_suites))
        return;
    at += 2 + u16(at);
    if (at + 1 > m.size())
        return;
    at += 1 + m[at];
    if (at + 2 > m.size())
        return;
    size_t end = std::min(m.size(), at + 2 + u16(at));
    at += 2;
    while (at + 4 <= end) {
        size_t type = u16(at), len = u16(at + 2);
        at += 4;
        if (at + len > end)
            return;
        if (type == EXTENSION_SUPPORTED_GROUPS) {
            read_u16_list(m, at, at + len, offered_groups);
            return;
        }
        at += len;
    }
}

void record_stream::observe_handshake(unsigned char byte)
{
    if (msg_have_ < 4) {
        msg_[msg_have_++] = byte;
        if (msg_have_ == 4)
            msg_left_ = static_cast<size_t>(msg_[1]) << 16 | static_cast<size_t>(msg_[2]) << 8 | msg_[3];
    } else {
        if (msg_have_ < sizeof msg_)
            msg_[msg_have_++] = byte;
        if (msg_[0] == HANDSHAKE_CLIENT_HELLO && hello_.size() < CLIENT_HELLO_MAX)
            hello_.push_back(byte);
        msg_left_--;
    }
    if (msg_have_ >= 4 && msg_left_ == 0) {
        if (msg_[0] == HANDSHAKE_CLIENT_HELLO)
            parse_client_hello();
        hello_.clear();
        // ServerKeyExchange of ECDHE: ECParameters { curve_type named_curve, NamedGroup } first.
        if (msg_[0] == HANDSHAKE_SERVER_KEY_EXCHANGE && msg_have_ == sizeof msg_ && msg_[4] == EC_CURVE_TYPE_NAMED)
            kex_group = msg_[5] << 8 | msg_[6];
        msg_have_ = 0;
    }
}

void record_stream::observe(const unsigned char *data, size_t len)
{
    while (len > 0) {
        if (body_left_ > 0) {
            size_t take = len < body_left_ ? len : body_left_;
            if (header_[0] == RECORD_HANDSHAKE && !encrypted_)
                for (size_t i = 0; i < take; i++)
                    observe_handshake(data[i]);
            body_left_ -= take;
            data += take;
            len -= take;
            continue;
        }
        header_[header_have_++] = *data++;
        len--;
        if (header_have_ < sizeof header_)
            continue;
        header_have_ = 0;
        body_left_ = static_cast<size_t>(header_[3]) << 8 | header_[4];
        if (header_[0] == RECORD_CHANGE_CIPHER_SPEC)
            encrypted_ = true;
        if (watch_handshake_records && header_[0] == RECORD_HANDSHAKE)
            late_handshake_records++;
    }
}

} // namespace clsgw::tls
