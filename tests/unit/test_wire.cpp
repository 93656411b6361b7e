#include <doctest/doctest.h>

#include "../../lib/tls/sealed.hpp"
#include "../../lib/tls/wire.hpp"

#include <cstring>

using namespace clsgw::tls;
using wire::bytes;

namespace {

wire::client_hello sample_hello()
{
    wire::client_hello h;
    memset(h.random, 0x5a, sizeof h.random);
    h.session_id = bytes(32, 7);
    h.suites = {0xC02B, 0xC023, 0x00FF};
    h.extensions = {{wire::EXT_SUPPORTED_GROUPS, wire::u16_list({26, 23})},
                    {wire::EXT_ENCRYPT_THEN_MAC, {}},
                    {wire::EXT_EXTENDED_MASTER_SECRET, {}}};
    return h;
}

// The body of a handshake message (without its 4-byte header).
bytes body_of(const bytes &message)
{
    return bytes(message.begin() + 4, message.end());
}

bytes server_hello_body(uint16_t version, uint16_t suite, const std::vector<wire::extension> &ext)
{
    bytes b{static_cast<uint8_t>(version >> 8), static_cast<uint8_t>(version)};
    b.insert(b.end(), 32, 0x11);
    b.push_back(0);
    b.push_back(static_cast<uint8_t>(suite >> 8));
    b.push_back(static_cast<uint8_t>(suite));
    b.push_back(0);
    bytes list;
    for (const auto &x : ext) {
        list.insert(list.end(), {static_cast<uint8_t>(x.type >> 8), static_cast<uint8_t>(x.type), 0,
                                 static_cast<uint8_t>(x.data.size())});
        list.insert(list.end(), x.data.begin(), x.data.end());
    }
    b.push_back(static_cast<uint8_t>(list.size() >> 8));
    b.push_back(static_cast<uint8_t>(list.size()));
    b.insert(b.end(), list.begin(), list.end());
    return b;
}

} // namespace

TEST_CASE("a hand-made ClientHello parses back to what was encoded")
{
    bytes record = wire::encode_client_hello_record(sample_hello());
    REQUIRE(record.size() > 9);
    CHECK(record[0] == wire::CONTENT_HANDSHAKE);
    wire::record_reader r;
    r.feed(record.data(), record.size());
    REQUIRE(r.messages.size() == 1);
    auto h = wire::parse_client_hello(r.messages[0].body.data(), r.messages[0].body.size());
    REQUIRE(h);
    CHECK(h->version == wire::VERSION_TLS12);
    CHECK(h->suites == std::vector<uint16_t>{0xC02B, 0xC023, 0x00FF});
    CHECK(h->session_id == bytes(32, 7));
    CHECK(h->compression == std::vector<uint8_t>{0});
    REQUIRE(h->find(wire::EXT_SUPPORTED_GROUPS));
    CHECK(wire::parse_u16_list(h->find(wire::EXT_SUPPORTED_GROUPS)->data) == std::vector<uint16_t>{26, 23});
    CHECK(h->find(wire::EXT_TRUNCATED_HMAC) == nullptr);
}

TEST_CASE("the ClientHello parser refuses trailing bytes, repeated extensions and short lists")
{
    bytes body = body_of(wire::encode_client_hello_message(sample_hello()));
    CHECK(wire::parse_client_hello(body.data(), body.size()));
    bytes trailing = body;
    trailing.push_back(0);
    CHECK_FALSE(wire::parse_client_hello(trailing.data(), trailing.size()));
    wire::client_hello twice = sample_hello();
    twice.extensions.push_back({wire::EXT_ENCRYPT_THEN_MAC, {}});
    bytes repeated = body_of(wire::encode_client_hello_message(twice));
    CHECK_FALSE(wire::parse_client_hello(repeated.data(), repeated.size()));
    // every truncation is refused but the one that leaves the (optional) extensions out altogether
    size_t parsed = 0;
    for (size_t cut = 0; cut < body.size(); cut++)
        if (auto t = wire::parse_client_hello(body.data(), cut)) {
            parsed++;
            CHECK(t->extensions.empty());
        }
    CHECK(parsed == 1);
}

TEST_CASE("a ServerHello names its version, suite and extensions; a HelloRetryRequest is recognised")
{
    bytes b = server_hello_body(wire::VERSION_TLS12, 0xC02B, {{wire::EXT_EXTENDED_MASTER_SECRET, {}}});
    auto h = wire::parse_server_hello(b.data(), b.size());
    REQUIRE(h);
    CHECK(h->suite == 0xC02B);
    CHECK(h->negotiated_version() == wire::VERSION_TLS12);
    CHECK(h->find(wire::EXT_EXTENDED_MASTER_SECRET));
    CHECK_FALSE(h->is_retry_request());
    bytes tls13 = server_hello_body(wire::VERSION_TLS12, 0x1301, {{wire::EXT_SUPPORTED_VERSIONS, {3, 4}}});
    auto h13 = wire::parse_server_hello(tls13.data(), tls13.size());
    REQUIRE(h13);
    CHECK(h13->negotiated_version() == wire::VERSION_TLS13);
    size_t parsed = 0;
    for (size_t cut = 0; cut < b.size(); cut++)
        if (auto t = wire::parse_server_hello(b.data(), cut)) {
            parsed++;
            CHECK(t->extensions.empty());
        }
    CHECK(parsed == 1);
}

TEST_CASE("the record reader takes messages split across records and bytes, and stops at nonsense")
{
    bytes message = wire::encode_client_hello_message(sample_hello());
    // the message in two records, fed one byte at a time
    size_t half = message.size() / 2;
    bytes stream;
    for (auto part : {bytes(message.begin(), message.begin() + static_cast<long>(half)),
                      bytes(message.begin() + static_cast<long>(half), message.end())}) {
        stream.insert(stream.end(), {wire::CONTENT_HANDSHAKE, 3, 3, static_cast<uint8_t>(part.size() >> 8),
                                     static_cast<uint8_t>(part.size())});
        stream.insert(stream.end(), part.begin(), part.end());
    }
    stream.insert(stream.end(), {wire::CONTENT_ALERT, 3, 3, 0, 2, 2, 40});
    wire::record_reader r;
    for (uint8_t byte : stream)
        r.feed(&byte, 1);
    CHECK_FALSE(r.malformed);
    REQUIRE(r.messages.size() == 1);
    CHECK(r.messages[0].body == body_of(message));
    REQUIRE(r.alert);
    CHECK(r.alert->second == 40);

    wire::record_reader http;
    const char get[] = "GET / HTTP/1.1\r\n";
    http.feed(reinterpret_cast<const uint8_t *>(get), sizeof get - 1);
    CHECK(http.malformed);
    wire::record_reader huge;
    bytes oversized{wire::CONTENT_HANDSHAKE, 3, 3, 0x48, 0x01};
    huge.feed(oversized.data(), oversized.size());
    CHECK(huge.malformed); // over 16384 + 2048 bytes
    wire::record_reader big_message;
    bytes header{wire::CONTENT_HANDSHAKE, 3, 3, 0, 4, wire::HS_CERTIFICATE, 0x10, 0, 0};
    big_message.feed(header.data(), header.size());
    CHECK(big_message.malformed); // a 1 MiB handshake message is refused before it is buffered
    wire::record_reader endless; // HelloRequests without end: the reader stops taking them
    bytes hello_requests{wire::CONTENT_HANDSHAKE, 3, 3, 0x40, 0};
    hello_requests.resize(5 + 0x4000, 0);
    for (int i = 0; i < 20 && !endless.malformed; i++)
        endless.feed(hello_requests.data(), hello_requests.size());
    CHECK(endless.malformed);
    CHECK(endless.messages.size() <= wire::MAX_READ / 4);
}

TEST_CASE("ServerKeyExchange, CertificateRequest and NewSessionTicket bodies parse strictly")
{
    bytes kex{3, 0, 26, 3, 4, 5, 6, 0x04, 0x03, 0, 2, 0x30, 0x00};
    auto k = wire::parse_ecdhe_server_key_exchange(kex.data(), kex.size());
    REQUIRE(k);
    CHECK(k->group == 26);
    CHECK(k->signature_algorithm == 0x0403);
    kex.push_back(0);
    CHECK_FALSE(wire::parse_ecdhe_server_key_exchange(kex.data(), kex.size()));
    bytes request{1, 64, 0, 4, 0x05, 0x03, 0x04, 0x03, 0, 0};
    auto r = wire::parse_certificate_request(request.data(), request.size());
    REQUIRE(r);
    CHECK(r->signature_algorithms == std::vector<uint16_t>{0x0503, 0x0403});
    CHECK(r->authorities == 0);
    bytes ticket{0, 0x02, 0xa3, 0, 0, 3, 1, 2, 3};
    CHECK(wire::parse_new_session_ticket(ticket.data(), ticket.size()) == 172800u);
}

TEST_CASE("records sealed by hand open with the other side's view of the keys, and not when tampered with")
{
    exported_keys keys;
    keys.have = true;
    keys.prf = MBEDTLS_SSL_TLS_PRF_SHA256;
    memset(keys.master, 1, sizeof keys.master);
    memset(keys.client_random, 2, sizeof keys.client_random);
    memset(keys.server_random, 3, sizeof keys.server_random);
    sealed_session client, server;
    REQUIRE(client.derive(keys, 0xC02B));
    REQUIRE(server.derive(keys, 0xC02B));
    CHECK_FALSE(client.derive(keys, 0xC023)); // CBC: not sealed by hand
    bytes hello{wire::HS_HELLO_REQUEST, 0, 0, 0};
    bytes record = server.seal(false, wire::CONTENT_HANDSHAKE, hello);
    REQUIRE(record.size() == 5 + 8 + hello.size() + 16);
    bytes body(record.begin() + 5, record.end());
    CHECK(client.open(false, wire::CONTENT_HANDSHAKE, body) == hello);
    bytes again = server.seal(false, wire::CONTENT_HANDSHAKE, hello);
    bytes tampered(again.begin() + 5, again.end());
    tampered[10] ^= 1;
    CHECK_FALSE(client.open(false, wire::CONTENT_HANDSHAKE, tampered));
}
