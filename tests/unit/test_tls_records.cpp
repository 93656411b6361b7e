#include <doctest/doctest.h>

#include "../../lib/tls/tls.hpp"

#include <vector>

using namespace clsgw;

namespace {

using record = std::vector<unsigned char>;

record tls_record(unsigned char type, const record &body)
{
    record r{type, 0x03, 0x03, static_cast<unsigned char>(body.size() >> 8), static_cast<unsigned char>(body.size())};
    r.insert(r.end(), body.begin(), body.end());
    return r;
}

record handshake_message(unsigned char type, const record &body)
{
    record m{type, 0, static_cast<unsigned char>(body.size() >> 8), static_cast<unsigned char>(body.size())};
    m.insert(m.end(), body.begin(), body.end());
    return m;
}

// ServerKeyExchange of ECDHE on a named group: curve_type 3, the group, then a point and a signature.
record server_key_exchange(uint16_t group)
{
    record body{3, static_cast<unsigned char>(group >> 8), static_cast<unsigned char>(group), 3, 4, 1, 2};
    body.insert(body.end(), 70, 0x55);
    return handshake_message(12, body);
}

void feed_in_pieces(tls::record_stream &s, const record &bytes, size_t piece)
{
    for (size_t at = 0; at < bytes.size(); at += piece)
        s.observe(bytes.data() + at, std::min(piece, bytes.size() - at));
}

} // namespace

TEST_CASE("record stream: the ServerKeyExchange names the group, however the bytes arrive")
{
    record hello = handshake_message(2, record(70, 0x11));
    record flight;
    for (const record &r : {tls_record(22, hello), tls_record(22, server_key_exchange(26))})
        flight.insert(flight.end(), r.begin(), r.end());
    for (size_t piece : {1, 3, 5, 7, 64, 4096}) {
        tls::record_stream s;
        feed_in_pieces(s, flight, piece);
        CHECK(s.kex_group == 26); // brainpoolP256r1
    }
}

TEST_CASE("record stream: several handshake messages in one record are told apart")
{
    record body = handshake_message(11, record(300, 0x30)); // a Certificate first
    record kex = server_key_exchange(24);
    body.insert(body.end(), kex.begin(), kex.end());
    tls::record_stream s;
    feed_in_pieces(s, tls_record(22, body), 13);
    CHECK(s.kex_group == 24); // secp384r1
}

TEST_CASE("record stream: nothing after ChangeCipherSpec is read as a handshake message")
{
    tls::record_stream s;
    feed_in_pieces(s, tls_record(20, {1}), 1);
    feed_in_pieces(s, tls_record(22, server_key_exchange(26)), 2); // encrypted bytes that look like one
    CHECK(s.kex_group == -1);
}

TEST_CASE("record stream: a resumed handshake has no ServerKeyExchange, and late handshake records are counted")
{
    tls::record_stream s;
    feed_in_pieces(s, tls_record(22, handshake_message(2, record(70, 0x11))), 9);
    feed_in_pieces(s, tls_record(20, {1}), 1);
    CHECK(s.kex_group == -1);
    CHECK(s.late_handshake_records == 0);
    s.watch_handshake_records = true;
    feed_in_pieces(s, tls_record(23, record(100, 0)), 7);
    feed_in_pieces(s, tls_record(22, record(40, 0)), 7);
    CHECK(s.late_handshake_records == 1);
}

TEST_CASE("record stream: a ServerKeyExchange that is not on a named curve names no group")
{
    record body{1, 0, 23, 3, 4, 1, 2}; // explicit_prime: not in any profile
    tls::record_stream s;
    feed_in_pieces(s, tls_record(22, handshake_message(12, body)), 4);
    CHECK(s.kex_group == -1);
}

// A ClientHello with a session id, two suites, null compression, then server_name and
// supported_groups (secp384r1, an FFDHE group mbedTLS does not know, brainpoolP256r1).
TEST_CASE("record stream: the ClientHello's supported_groups are kept, however the bytes arrive")
{
    record body{3, 3};
    body.insert(body.end(), 32, 0x22);                        // random
    body.push_back(4);                                        // session id
    body.insert(body.end(), 4, 0x33);
    body.insert(body.end(), {0, 4, 0xc0, 0x2b, 0xc0, 0x2c});  // cipher suites
    body.insert(body.end(), {1, 0});                          // compression
    record sni{0, 0, 0, 9, 0, 7, 0, 0, 4, 's', 'm', 'g', 'w'};
    record groups{0, 10, 0, 8, 0, 6, 0, 24, 1, 0, 0, 26};
    size_t ext_len = sni.size() + groups.size();
    body.insert(body.end(), {static_cast<unsigned char>(ext_len >> 8), static_cast<unsigned char>(ext_len)});
    body.insert(body.end(), sni.begin(), sni.end());
    body.insert(body.end(), groups.begin(), groups.end());
    record flight = tls_record(22, handshake_message(1, body));
    for (size_t piece : {1, 3, 5, 7, 64, 4096}) {
        tls::bio io;
        feed_in_pieces(io.received, flight, piece);
        CHECK(io.received.offered_groups == std::vector<uint16_t>{24, 256, 26});
        CHECK(tls::offered_groups(io) == "secp384r1:brainpoolP256r1");
    }

    SUBCASE("a ClientHello cut short keeps nothing")
    {
        record cut = tls_record(22, handshake_message(1, record(body.begin(), body.begin() + 40)));
        tls::bio io;
        feed_in_pieces(io.received, cut, 5);
        CHECK(io.received.offered_groups.empty());
        CHECK(tls::offered_groups(io).empty());
    }
}

namespace {

// A ClientHello with these cipher suites and, unless groups is empty, a supported_groups extension.
record client_hello(const std::vector<uint16_t> &suites, const std::vector<uint16_t> &groups)
{
    auto u16 = [](record &r, size_t v) {
        r.push_back(static_cast<unsigned char>(v >> 8));
        r.push_back(static_cast<unsigned char>(v));
    };
    record body{3, 3};
    body.insert(body.end(), 32, 0x22); // random
    body.push_back(0);                 // no session id
    u16(body, 2 * suites.size());
    for (uint16_t s : suites)
        u16(body, s);
    body.insert(body.end(), {1, 0}); // null compression
    record ext;
    if (!groups.empty()) {
        u16(ext, 10);
        u16(ext, 2 + 2 * groups.size());
        u16(ext, 2 * groups.size());
        for (uint16_t g : groups)
            u16(ext, g);
    }
    u16(body, ext.size());
    body.insert(body.end(), ext.begin(), ext.end());
    return tls_record(22, handshake_message(1, body));
}

bool curve_named(const record &hello)
{
    tls::bio io;
    feed_in_pieces(io.received, hello, 11);
    return tls::cert_curve_not_offered(io, MBEDTLS_ECP_DP_BP256R1);
}

} // namespace

TEST_CASE("record stream: the ClientHello's cipher suites are kept")
{
    tls::record_stream s;
    feed_in_pieces(s, client_hello({0xc02b, 0x1301, 0xc024}, {24}), 3);
    CHECK(s.offered_suites == std::vector<uint16_t>{0xc02b, 0x1301, 0xc024});
    CHECK(s.offered_groups == std::vector<uint16_t>{24});
}

TEST_CASE("inbound: a brainpoolP256r1 certificate's curve is named only when it is why no suite was shared")
{
    CHECK(curve_named(client_hello({0xc02b, 0xc02c}, {24})));     // profile suites, secp384r1 only
    CHECK(curve_named(client_hello({0xc023}, {29, 23, 24})));     // X25519 too, but a profile group
    CHECK(!curve_named(client_hello({0xc02b}, {26, 24})));        // brainpoolP256r1 offered
    CHECK(!curve_named(client_hello({0xc02f, 0x009c}, {23, 24}))); // RSA suites only
    CHECK(!curve_named(client_hello({0x1301, 0x1302}, {23, 24}))); // TLS 1.3 suites only
    CHECK(!curve_named(client_hello({0xc02b}, {29})));            // X25519 only: outside the profile
    CHECK(!curve_named(client_hello({0xc02b}, {})));              // no supported_groups: any curve
}
