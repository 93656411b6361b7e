#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "../../lib/config.hpp"

using namespace clsgw;

namespace {

const std::string base = R"([clsgw]
max_channels = 8
[identity]
certificate = certs/device.crt
key = /etc/clsgw/keys/device.key
[smgw]
address = 192.168.100.100:4443
trust = smgw.crt
[channel:app]
listen = 127.0.0.1:7000
ingress = static
target = emt.example:443
proxy = socks5
)";

int line_of(const std::string &text, const std::string &needle)
{
    size_t at = text.find(needle);
    REQUIRE_MESSAGE(at != std::string::npos, "test text lacks " << needle);
    int line = 1;
    for (size_t i = 0; i < at; i++)
        line += text[i] == '\n';
    return line;
}

std::string replace(std::string text, const std::string &from, const std::string &to)
{
    size_t at = text.find(from);
    REQUIRE_MESSAGE(at != std::string::npos, "base lacks " << from);
    return text.replace(at, from.size(), to);
}

void expect_error(const std::string &text, const std::string &needle, const std::string &message)
{
    config_result r = parse_config(text, "/etc/clsgw/clsgw.ini");
    CHECK_FALSE(r.value.has_value());
    int line = needle.empty() ? 0 : line_of(text, needle);
    bool found = false;
    for (const auto &e : r.errors)
        if (e.line == line && e.message.find(message) != std::string::npos && e.file == "/etc/clsgw/clsgw.ini")
            found = true;
    std::string all;
    for (const auto &e : r.errors)
        all += e.to_string() + "\n";
    CHECK_MESSAGE(found, "expected '" << message << "' at line " << line << ", got:\n" << all);
}

} // namespace

TEST_CASE("a valid configuration parses, with defaults and paths resolved against its folder")
{
    config_result r = parse_config(base, "/etc/clsgw/clsgw.ini");
    REQUIRE(r.errors.empty());
    const config &c = *r.value;
    CHECK(c.max_channels == 8);
    CHECK(c.spare_workers == 2);
    CHECK(c.handshake_timeout_ms == 30000);
    CHECK(c.idle_timeout_ms == 15 * 60 * 1000);
    CHECK(c.max_session_lifetime_ms == 48ULL * 3600 * 1000);
    CHECK(c.certificate.path == "/etc/clsgw/certs/device.crt");
    CHECK(c.key.path == "/etc/clsgw/keys/device.key");
    CHECK(c.smgw_trust.path == "/etc/clsgw/smgw.crt");
    CHECK(c.smgw_address->to_string() == "192.168.100.100:4443");
    REQUIRE(c.channels.size() == 1);
    CHECK(c.channels[0].target->to_string() == "emt.example:443");
    CHECK(c.channels[0].listen->to_string() == "127.0.0.1:7000");
}

TEST_CASE("durations take units and are bounded")
{
    config_result r = parse_config(replace(base, "max_channels = 8", "handshake_timeout = 250ms\nidle_timeout = 10m\n"
                                                                     "max_session_lifetime = 2h"),
                                   "x.ini");
    REQUIRE(r.errors.empty());
    CHECK(r.value->handshake_timeout_ms == 250);
    CHECK(r.value->idle_timeout_ms == 600000);
    CHECK(r.value->max_session_lifetime_ms == 7200000);
}

TEST_CASE("spare_workers takes 0 to 64")
{
    for (unsigned n : {0u, 1u, 64u}) {
        config_result r = parse_config(replace(base, "max_channels = 8", "spare_workers = " + std::to_string(n)), "x.ini");
        REQUIRE(r.errors.empty());
        CHECK(r.value->spare_workers == n);
    }
}

TEST_CASE("the control socket's timeout defaults to 2s and takes 1ms to 60s; its group is a name")
{
    config_result r = parse_config(base, "x.ini");
    REQUIRE(r.errors.empty());
    CHECK(r.value->control_timeout_ms == 2000);
    CHECK(r.value->control_group.empty());
    r = parse_config(replace(base, "max_channels = 8", "control_timeout = 500ms\ncontrol_group = clsgw"), "x.ini");
    REQUIRE(r.errors.empty());
    CHECK(r.value->control_timeout_ms == 500);
    CHECK(r.value->control_group == "clsgw");
    expect_error(replace(base, "max_channels = 8", "control_timeout = 0s"), "control_timeout", "must be greater than 0");
    expect_error(replace(base, "max_channels = 8", "control_timeout = 2m"), "control_timeout", "above the maximum of");
    expect_error(replace(base, "max_channels = 8", "control_group ="), "control_group", "control_group: empty");
}

TEST_CASE("IPv6 listen addresses are written in brackets")
{
    config_result r = parse_config(replace(base, "listen = 127.0.0.1:7000", "listen = [::1]:7000"), "x.ini");
    REQUIRE(r.errors.empty());
    CHECK(r.value->channels[0].listen->family() == AF_INET6);
    expect_error(replace(base, "listen = 127.0.0.1:7000", "listen = ::1:7000"), "listen = ::1:7000", "not a numeric");
}

TEST_CASE("every configuration error names its file and line")
{
    struct error_case {
        std::string from, to, needle, message;
    };
    const std::vector<error_case> cases = {
        {"max_channels = 8", "max_channels = 0", "max_channels = 0", "max_channels: expected a number"},
        {"max_channels = 8", "max_channels = lots", "max_channels = lots", "max_channels: expected a number"},
        {"max_channels = 8", "spare_workers = 65", "spare_workers = 65", "spare_workers: expected a number from 0 to 64"},
        {"max_channels = 8", "spare_workers = -1", "spare_workers = -1", "spare_workers: expected a number from 0 to 64"},
        {"max_channels = 8", "handshake_timeout = 5 minutes", "handshake_timeout", "is not a duration"},
        {"max_channels = 8", "handshake_timeout = 0s", "handshake_timeout", "must be greater than 0"},
        {"max_channels = 8", "max_session_lifetime = 49h", "max_session_lifetime", "above the maximum of 2d"},
        {"max_channels = 8", "log_level = loud", "log_level", "expected error, warn, info, debug or trace"},
        {"max_channels = 8", "worker_user =", "worker_user", "worker_user: empty"},
        {"max_channels = 8", "colour = blue", "colour", "unknown key 'colour' in [clsgw]"},
        {"max_channels = 8", "max_channels = 8\nmax_channels = 9", "max_channels = 9", "duplicate key 'max_channels'"},
        {"key = /etc/clsgw/keys/device.key", "key = /k\npassword = x", "password", "unknown key 'password' in [identity]"},
        {"address = 192.168.100.100:4443", "address = smgw.local:4443", "address = smgw", "not a numeric address"},
        {"address = 192.168.100.100:4443", "address = 192.168.100.100", "address = 192", "not a numeric address"},
        {"address = 192.168.100.100:4443", "address = 10.0.0.1:0", "address = 10", "not a numeric address"},
        {"trust = smgw.crt", "trust = smgw.crt\ncheck = none", "check = none", "unknown key 'check' in [smgw]"},
        {"ingress = static", "ingress = http", "ingress = http", "ingress: expected static or socks5"},
        {"proxy = socks5", "proxy = http", "proxy = http", "proxy: expected socks5 or sni"},
        {"proxy = socks5", "proxy = socks5\ndirection = sideways", "direction", "expected outbound or inbound"},
        {"target = emt.example:443", "target = emt.example", "target = emt", "is not host:port"},
        {"target = emt.example:443", "target = -bad-.example:443", "target = -bad", "is not host:port"},
        {"listen = 127.0.0.1:7000", "listen = 127.0.0.1:99999", "listen = 127", "not a numeric address"},
        {"proxy = socks5", "proxy = socks5\nretry = 3", "retry", "unknown key 'retry' in [channel:app]"},
        {"[smgw]", "[smgw\n", "[smgw", "section header is missing ']'"},
        {"[smgw]", "[smgw]\nthis is not a setting", "this is not", "expected 'key = value' or '[section]'"},
        {"[smgw]", "[smgw]\n= value", "= value", "missing key before '='"},
        {"[smgw]", "[smgw]\n  address = 10.0.0.1:1", "  address", "indented line"},
        {"[smgw]", "[smgw]\n[proxy]", "[proxy]", "unknown section [proxy]"},
        {"[channel:app]", "[channel:my app]", "[channel:my app]", "channel name 'my app'"},
        {"[clsgw]", "orphan = 1\n[clsgw]", "orphan", "outside of any section"},
        {"ingress = static", "ingress = socks5", "[channel:app]", "target applies to ingress = static only"},
        {"target = emt.example:443", "allow = emt.example:443", "[channel:app]", "ingress = static needs target"},
        {"target = emt.example:443", "target = emt.example:443\nallow = a.example:1", "[channel:app]",
         "allow applies to ingress = socks5 only"},
    };
    for (const auto &c : cases) {
        CAPTURE(c.to);
        expect_error(replace(base, c.from, c.to), c.needle, c.message);
    }
}

TEST_CASE("a section given twice is reported at its second header")
{
    std::string text = base + "[identity]\ncertificate = other.crt\n";
    expect_error(text, "[identity]\ncertificate = other", "section [identity] appears twice");
}

TEST_CASE("socks5 ingress needs an allow list and refuses a fixed target")
{
    std::string text = replace(replace(base, "ingress = static", "ingress = socks5"), "target = emt.example:443\n", "");
    expect_error(text, "[channel:app]", "ingress = socks5 needs an allow list");
    expect_error(replace(text, "proxy = socks5", "allow = emt.example:*, *.example.org:443\nallow = x.example:1"),
                 "allow = x.example:1", "duplicate key 'allow'");
    expect_error(replace(text, "proxy = socks5", "allow = emt.example:http"), "allow = emt", "is not host:port");
}

TEST_CASE("proxy = sni needs a DNS name as target")
{
    expect_error(replace(replace(base, "proxy = socks5", "proxy = sni"), "target = emt.example:443", "target = 10.1.1.1:443"),
                 "[channel:app]", "proxy = sni needs a DNS name");
}

TEST_CASE("missing required settings are reported against the file")
{
    expect_error(replace(base, "certificate = certs/device.crt\n", ""), "", "[identity] certificate is required");
    expect_error(replace(base, "key = /etc/clsgw/keys/device.key\n", ""), "", "[identity] key is required");
    expect_error(replace(base, "address = 192.168.100.100:4443\n", ""), "", "[smgw] address is required");
    expect_error(replace(base, "trust = smgw.crt\n", ""), "[channel:app]", "no trust: set [smgw] trust or the channel's trust");
    std::string no_channel = base.substr(0, base.find("[channel:app]"));
    expect_error(no_channel, "", "no [channel:NAME] section");
}

TEST_CASE("two channels cannot listen on the same address")
{
    std::string text = base + "[channel:other]\nlisten = 127.0.0.1:7000\ningress = static\ntarget = b.example:1\n";
    expect_error(text, "[channel:other]", "already used by channel 'app'");
}

const std::string inbound = base + R"([channel:modbus]
direction = inbound
listen = 192.168.100.50:8443
server_name = modbus.device
forward = 127.0.0.1:502
trust = smgw-other.crt
[channel:api]
direction = inbound
listen = 192.168.100.50:8443
forward = 127.0.0.1:8080
)";

TEST_CASE("inbound channels parse, share a listener by server_name, and may have their own trust")
{
    config_result r = parse_config(inbound, "/etc/clsgw/clsgw.ini");
    std::string all;
    for (const auto &e : r.errors)
        all += e.to_string() + "\n";
    REQUIRE_MESSAGE(r.errors.empty(), all);
    const channel_config *modbus = r.value->find_channel("modbus");
    REQUIRE(modbus);
    CHECK(modbus->direction == channel_direction::inbound);
    CHECK(modbus->forward->to_string() == "127.0.0.1:502");
    CHECK(modbus->server_name == "modbus.device");
    CHECK(r.value->trust_path(*modbus) == "/etc/clsgw/smgw-other.crt");
    const channel_config *api = r.value->find_channel("api");
    CHECK(r.value->trust_path(*api) == "/etc/clsgw/smgw.crt");
    CHECK(api->listener_key() == modbus->listener_key());
}

TEST_CASE("inbound channels need forward and refuse outbound keys")
{
    expect_error(replace(inbound, "forward = 127.0.0.1:8080\n", ""), "[channel:api]",
                 "an inbound channel needs forward = address:port");
    expect_error(replace(inbound, "forward = 127.0.0.1:8080", "forward = 127.0.0.1:8080\ntarget = a.example:1"),
                 "[channel:api]", "target applies to outbound channels only");
    expect_error(replace(inbound, "forward = 127.0.0.1:502", "forward = localhost:502"), "forward = localhost",
                 "not a numeric address");
    expect_error(replace(inbound, "server_name = modbus.device", "server_name = not a name"), "server_name = not",
                 "is not a DNS name");
    expect_error(replace(base, "proxy = socks5", "proxy = socks5\nforward = 127.0.0.1:1"), "[channel:app]",
                 "forward applies to inbound channels only");
}

TEST_CASE("a shared listener has at most one default and no repeated server_name")
{
    expect_error(replace(inbound, "server_name = modbus.device\n", ""), "[channel:api]",
                 "share it without server_name; only one may be the default");
    expect_error(replace(inbound, "forward = 127.0.0.1:8080", "forward = 127.0.0.1:8080\nserver_name = MODBUS.device"),
                 "[channel:api]", "server_name MODBUS.device is used twice");
    std::string with_outbound = inbound + "[channel:out]\nlisten = 192.168.100.50:8443\ningress = static\n"
                                          "target = a.example:1\n";
    expect_error(with_outbound, "[channel:out]", "is already used by channel 'modbus' (only inbound channels share");
}

TEST_CASE("[smgw] address is needed only when there are outbound channels")
{
    std::string only_inbound = inbound.substr(0, inbound.find("[channel:app]")) +
                               inbound.substr(inbound.find("[channel:modbus]"));
    only_inbound = replace(only_inbound, "address = 192.168.100.100:4443\n", "");
    config_result r = parse_config(only_inbound, "x.ini");
    CHECK(r.errors.empty());
}

TEST_CASE("an over-long line is an error, not silently cut")
{
    std::string text = replace(base, "target = emt.example:443", "target = " + std::string(300, 'a') + ".example:443");
    expect_error(text, "target = aaa", "line longer than");
}

TEST_CASE("a file that cannot be read is an error naming it")
{
    config_result r = load_config("/nonexistent/clsgw.ini");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].to_string() == "/nonexistent/clsgw.ini: cannot read: No such file or directory");
}

TEST_CASE("allow rules match exact names, wildcards and ports case-insensitively")
{
    auto exact = parse_allow_rule("emt.example:443");
    auto any_port = parse_allow_rule("emt.example:*");
    auto sub = parse_allow_rule("*.Example.org:8443");
    REQUIRE(exact);
    REQUIRE(any_port);
    REQUIRE(sub);
    CHECK(allow_rule_matches(*exact, {"EMT.example", 443}));
    CHECK_FALSE(allow_rule_matches(*exact, {"emt.example", 444}));
    CHECK(allow_rule_matches(*any_port, {"emt.example", 1}));
    CHECK(allow_rule_matches(*sub, {"a.b.example.org", 8443}));
    CHECK_FALSE(allow_rule_matches(*sub, {"example.org", 8443}));
    CHECK_FALSE(allow_rule_matches(*sub, {"evilexample.org", 8443}));
    CHECK_FALSE(parse_allow_rule("emt.example").has_value());
    CHECK_FALSE(parse_allow_rule("emt.example:0").has_value());
}

TEST_CASE("the annotated etc/clsgw.ini shipped with clsgw is valid")
{
    config_result r = load_config("etc/clsgw.ini");
    std::string all;
    for (const auto &e : r.errors)
        all += e.to_string() + "\n";
    CHECK_MESSAGE(r.errors.empty(), all);
    REQUIRE(r.value);
    CHECK(r.value->channels.size() == 3);
    CHECK(r.value->find_channel("modbus")->direction == channel_direction::inbound);
    // the signer service's socket when it exists, else (no systemd here) clsgwd starts the signer with the key
    CHECK(r.value->signer_socket + r.value->signer_socket_absent == "/run/clsgw-signer/signer.sock");
    CHECK(r.value->key.path == "/etc/clsgw/private/device.key");
    CHECK(r.value->max_session_lifetime_ms == 48ULL * 3600 * 1000);
}
