#include <doctest/doctest.h>

#include "../../lib/socks5.hpp"

using namespace clsgw;
namespace s5 = clsgw::socks5;

namespace {

bytes b(std::initializer_list<int> v)
{
    bytes out;
    for (int x : v)
        out.push_back(static_cast<uint8_t>(x));
    return out;
}

bytes domain_request(const std::string &host, uint16_t port, uint8_t cmd = s5::CMD_CONNECT)
{
    bytes r(5 + host.size() + 2);
    r[0] = 5;
    r[1] = cmd;
    r[3] = s5::ATYP_DOMAIN;
    r[4] = static_cast<uint8_t>(host.size());
    for (size_t i = 0; i < host.size(); i++)
        r[5 + i] = static_cast<uint8_t>(host[i]);
    r[5 + host.size()] = static_cast<uint8_t>(port >> 8);
    r[6 + host.size()] = static_cast<uint8_t>(port & 0xff);
    return r;
}

} // namespace

TEST_CASE("server side: a greeting offering no-auth is accepted, whole or in pieces")
{
    bytes g = b({5, 2, 2, 0});
    for (size_t n = 0; n < g.size(); n++)
        CHECK(s5::parse_greeting(g.data(), n).st == s5::status::need_more);
    auto p = s5::parse_greeting(g.data(), g.size());
    REQUIRE(p.st == s5::status::ok);
    CHECK(p.consumed == 4);
    CHECK(p.value.offers_no_auth);
    bytes only_password = b({5, 1, 2});
    CHECK_FALSE(s5::parse_greeting(only_password.data(), only_password.size()).value.offers_no_auth);
}

TEST_CASE("server side: malformed greetings are invalid")
{
    bytes v4 = b({4, 1, 0});
    CHECK(s5::parse_greeting(v4.data(), v4.size()).st == s5::status::invalid);
    bytes none = b({5, 0});
    CHECK(s5::parse_greeting(none.data(), none.size()).st == s5::status::invalid);
}

TEST_CASE("server side: CONNECT requests parse for every address type")
{
    bytes v4 = b({5, 1, 0, 1, 10, 0, 0, 7, 0x01, 0xbb});
    auto p4 = s5::parse_request(v4.data(), v4.size());
    REQUIRE(p4.st == s5::status::ok);
    CHECK(p4.value.target.to_string() == "10.0.0.7:443");
    CHECK(p4.consumed == v4.size());

    bytes v6 = {5, 1, 0, 4};
    for (int i = 0; i < 15; i++)
        v6.push_back(0);
    v6.push_back(1);
    v6.push_back(0x1f);
    v6.push_back(0x90);
    auto p6 = s5::parse_request(v6.data(), v6.size());
    REQUIRE(p6.st == s5::status::ok);
    CHECK(p6.value.target.to_string() == "[::1]:8080");

    bytes dn = domain_request("emt.example", 4443);
    dn.push_back(0x42); // payload behind the request is not consumed
    auto pd = s5::parse_request(dn.data(), dn.size());
    REQUIRE(pd.st == s5::status::ok);
    CHECK(pd.value.target.to_string() == "emt.example:4443");
    CHECK(pd.consumed == dn.size() - 1);
}

TEST_CASE("server side: a DOMAIN-typed literal is the literal, a trailing dot is the root label")
{
    // curl --socks5-hostname and PySocks send literals as DOMAIN; resolvers send "localhost."
    for (auto [sent, parsed] : {std::pair<std::string, std::string>{"127.0.0.1", "127.0.0.1:80"},
                                {"::1", "[::1]:80"},
                                {"[::1]", "[::1]:80"},
                                {"localhost.", "localhost:80"},
                                {"emt.example.", "emt.example:80"}}) {
        bytes r = domain_request(sent, 80);
        auto p = s5::parse_request(r.data(), r.size());
        REQUIRE_MESSAGE(p.st == s5::status::ok, sent);
        CHECK(p.value.target.to_string() == parsed);
    }
    for (const char *bad : {".", "emt..example", "emt.example..", "emt example"}) {
        bytes r = domain_request(bad, 80);
        auto p = s5::parse_request(r.data(), r.size());
        CHECK_MESSAGE(p.st == s5::status::invalid, bad);
    }
}

TEST_CASE("server side: truncated requests ask for more at every cut")
{
    bytes dn = domain_request("emt.example", 4443);
    for (size_t n = 0; n < dn.size(); n++)
        CHECK(s5::parse_request(dn.data(), n).st == s5::status::need_more);
}

TEST_CASE("server side: invalid requests carry the right reply code")
{
    bytes bind = domain_request("emt.example", 1, 2);
    auto pb = s5::parse_request(bind.data(), bind.size());
    CHECK(pb.st == s5::status::invalid);
    CHECK(pb.reply_code == s5::REP_COMMAND_NOT_SUPPORTED);

    bytes atyp = b({5, 1, 0, 9, 1, 2, 3, 4, 0, 80});
    auto pa = s5::parse_request(atyp.data(), atyp.size());
    CHECK(pa.st == s5::status::invalid);
    CHECK(pa.reply_code == s5::REP_ADDRESS_TYPE_NOT_SUPPORTED);

    bytes rsv = b({5, 1, 1, 1, 1, 2, 3, 4, 0, 80});
    CHECK(s5::parse_request(rsv.data(), rsv.size()).st == s5::status::invalid);
    bytes empty_name = b({5, 1, 0, 3, 0, 0, 80});
    CHECK(s5::parse_request(empty_name.data(), empty_name.size()).st == s5::status::invalid);
    bytes bad_name = domain_request("bad name!", 80);
    CHECK(s5::parse_request(bad_name.data(), bad_name.size()).st == s5::status::invalid);
    bytes port0 = domain_request("emt.example", 0);
    CHECK(s5::parse_request(port0.data(), port0.size()).st == s5::status::invalid);
}

TEST_CASE("server side: a 253-character name parses; longer ones fit the buffer but are refused")
{
    std::string host;
    for (int i = 0; i < 4; i++)
        host += std::string(62, 'a') + ".";
    host += "a"; // 253 characters: the DNS limit
    REQUIRE(host.size() == 253);
    CHECK(s5::parse_request(domain_request(host, 443).data(), host.size() + 7).st == s5::status::ok);
    std::string longest = host + "bc"; // 255: what the length byte allows
    bytes r = domain_request(longest, 443);
    CHECK(r.size() == s5::MAX_REQUEST);
    auto p = s5::parse_request(r.data(), r.size());
    CHECK(p.st == s5::status::invalid);
    CHECK(p.error == "invalid domain name");
}

TEST_CASE("replies encode the code and an IPv4 zero address by default")
{
    CHECK(s5::encode_reply(s5::REP_NOT_ALLOWED) == b({5, 2, 0, 1, 0, 0, 0, 0, 0, 0}));
    CHECK(s5::encode_method_choice(0) == b({5, 0}));
}

TEST_CASE("client side: requests pick the address type from the target")
{
    CHECK(s5::encode_request({"10.1.2.3", 80}) == b({5, 1, 0, 1, 10, 1, 2, 3, 0, 80}));
    CHECK(s5::encode_request({"emt.example", 443}) == domain_request("emt.example", 443));
    CHECK(s5::encode_request({"::1", 80})[3] == s5::ATYP_IPV6);
    CHECK(s5::encode_greeting() == b({5, 1, 0}));
}

TEST_CASE("client side: method choice must be no-auth")
{
    bytes ok = b({5, 0}), refused = b({5, 0xff}), other = b({5, 2}), v4 = b({4, 0});
    CHECK(s5::parse_method_choice(ok.data(), 2).st == s5::status::ok);
    CHECK(s5::parse_method_choice(ok.data(), 1).st == s5::status::need_more);
    CHECK(s5::parse_method_choice(refused.data(), 2).st == s5::status::invalid);
    CHECK(s5::parse_method_choice(other.data(), 2).st == s5::status::invalid);
    CHECK(s5::parse_method_choice(v4.data(), 2).st == s5::status::invalid);
}

TEST_CASE("client side: replies of every address type parse, and their length is known early")
{
    bytes v4 = b({5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90});
    auto p = s5::parse_reply(v4.data(), v4.size());
    REQUIRE(p.st == s5::status::ok);
    CHECK(p.value.bound->to_string() == "127.0.0.1:8080");
    CHECK(s5::reply_length(v4.data(), 4) == 10);

    bytes dn = {5, 0, 0, 3, 3, 'a', '.', 'b', 0, 1};
    CHECK(s5::reply_length(dn.data(), 4) == 0);
    CHECK(s5::reply_length(dn.data(), 5) == 10);
    auto pd = s5::parse_reply(dn.data(), dn.size());
    REQUIRE(pd.st == s5::status::ok);
    CHECK(pd.value.bound->host == "a.b");

    bytes v6(22, 0);
    v6[0] = 5;
    v6[3] = 4;
    CHECK(s5::reply_length(v6.data(), 4) == 22);
    CHECK(s5::parse_reply(v6.data(), v6.size()).st == s5::status::ok);
}

TEST_CASE("client side: a failure reply with a zeroed or unknown address still yields its code")
{
    bytes zeroed = b({5, 2, 0, 0, 0, 0, 0, 0, 0, 0});
    auto p = s5::parse_reply(zeroed.data(), zeroed.size());
    REQUIRE(p.st == s5::status::ok);
    CHECK(p.value.rep == s5::REP_NOT_ALLOWED);
    CHECK_FALSE(p.value.bound.has_value());
    CHECK(s5::reply_length(zeroed.data(), 4) == SIZE_MAX);
}

TEST_CASE("client side: a success reply must be well formed")
{
    bytes bad_atyp = b({5, 0, 0, 7, 0, 0, 0, 0, 0, 0});
    CHECK(s5::parse_reply(bad_atyp.data(), bad_atyp.size()).st == s5::status::invalid);
    bytes bad_rsv = b({5, 0, 9, 1, 0, 0, 0, 0, 0, 0});
    CHECK(s5::parse_reply(bad_rsv.data(), bad_rsv.size()).st == s5::status::invalid);
    bytes bad_ver = b({4, 0, 0, 1, 0, 0, 0, 0, 0, 0});
    CHECK(s5::parse_reply(bad_ver.data(), bad_ver.size()).st == s5::status::invalid);
    bytes cut = b({5, 0, 0, 1, 0, 0});
    CHECK(s5::parse_reply(cut.data(), cut.size()).st == s5::status::need_more);
}

TEST_CASE("SMGW reply codes map to the app's: known codes pass, others become general failure")
{
    CHECK(s5::app_reply_code(s5::REP_NOT_ALLOWED) == s5::REP_NOT_ALLOWED);
    CHECK(s5::app_reply_code(s5::REP_CONNECTION_REFUSED) == s5::REP_CONNECTION_REFUSED);
    CHECK(s5::app_reply_code(0x09) == s5::REP_GENERAL_FAILURE);
    CHECK(s5::app_reply_code(0xff) == s5::REP_GENERAL_FAILURE);
}
