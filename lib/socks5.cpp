#include "socks5.hpp"

#include <arpa/inet.h>

#include <cstdint>
#include <cstring>

namespace clsgw::socks5 {

const char *reply_name(uint8_t rep)
{
    switch (rep) {
    case REP_SUCCEEDED: return "succeeded";
    case REP_GENERAL_FAILURE: return "general_failure";
    case REP_NOT_ALLOWED: return "not_allowed_by_ruleset";
    case REP_NETWORK_UNREACHABLE: return "network_unreachable";
    case REP_HOST_UNREACHABLE: return "host_unreachable";
    case REP_CONNECTION_REFUSED: return "connection_refused";
    case REP_TTL_EXPIRED: return "ttl_expired";
    case REP_COMMAND_NOT_SUPPORTED: return "command_not_supported";
    case REP_ADDRESS_TYPE_NOT_SUPPORTED: return "address_type_not_supported";
    }
    return "unknown";
}

namespace {

template <typename T> parsed<T> need_more()
{
    parsed<T> p;
    p.st = status::need_more;
    return p;
}

template <typename T> parsed<T> invalid(std::string error, uint8_t reply_code = REP_GENERAL_FAILURE)
{
    parsed<T> p;
    p.st = status::invalid;
    p.error = std::move(error);
    p.reply_code = reply_code;
    return p;
}

// Parses ATYP + address + port starting at data[0]; 0 consumed means more bytes are needed.
struct address_parse {
    bool ok = false;
    size_t consumed = 0;
    host_port value;
    std::string error;
    uint8_t reply_code = REP_GENERAL_FAILURE;
};

address_parse parse_address(const uint8_t *data, size_t len)
{
    address_parse a;
    if (len < 1)
        return a;
    uint8_t atyp = data[0];
    size_t addr_len;
    size_t offset = 1;
    if (atyp == ATYP_IPV4) {
        addr_len = 4;
    } else if (atyp == ATYP_IPV6) {
        addr_len = 16;
    } else if (atyp == ATYP_DOMAIN) {
        if (len < 2)
            return a;
        addr_len = data[1];
        offset = 2;
        if (addr_len == 0) {
            a.error = "empty domain name";
            a.consumed = 1;
            return a;
        }
    } else {
        a.error = "unknown address type " + std::to_string(atyp);
        a.reply_code = REP_ADDRESS_TYPE_NOT_SUPPORTED;
        a.consumed = 1;
        return a;
    }
    if (len < offset + addr_len + 2)
        return a;
    const uint8_t *addr = data + offset;
    char text[INET6_ADDRSTRLEN];
    if (atyp == ATYP_IPV4) {
        inet_ntop(AF_INET, addr, text, sizeof text);
        a.value.host = text;
    } else if (atyp == ATYP_IPV6) {
        inet_ntop(AF_INET6, addr, text, sizeof text);
        a.value.host = text;
    } else {
        // Clients send literals as DOMAIN too (curl --socks5-hostname, PySocks): taken as the
        // literal; a trailing dot is the root label.
        std::string_view name(reinterpret_cast<const char *>(addr), addr_len);
        auto host = normalise_target_host(name);
        if (!host) {
            a.error = "invalid domain name";
            a.consumed = 1;
            return a;
        }
        a.value.host = *host;
    }
    a.value.port = static_cast<uint16_t>(addr[addr_len] << 8 | addr[addr_len + 1]);
    a.consumed = offset + addr_len + 2;
    a.ok = true;
    return a;
}

void append_address(bytes &out, const host_port &target)
{
    uint8_t addr[16];
    if (inet_pton(AF_INET, target.host.c_str(), addr) == 1) {
        out.push_back(ATYP_IPV4);
        out.insert(out.end(), addr, addr + 4);
    } else if (inet_pton(AF_INET6, target.host.c_str(), addr) == 1) {
        out.push_back(ATYP_IPV6);
        out.insert(out.end(), addr, addr + 16);
    } else {
        out.push_back(ATYP_DOMAIN);
        size_t n = target.host.size() > 255 ? 255 : target.host.size();
        out.push_back(static_cast<uint8_t>(n));
        out.insert(out.end(), target.host.begin(), target.host.begin() + static_cast<long>(n));
    }
    out.push_back(static_cast<uint8_t>(target.port >> 8));
    out.push_back(static_cast<uint8_t>(target.port & 0xff));
}

} // namespace

parsed<greeting> parse_greeting(const uint8_t *data, size_t len)
{
    if (len < 2)
        return need_more<greeting>();
    if (data[0] != VERSION)
        return invalid<greeting>("not SOCKS version 5 (first byte " + std::to_string(data[0]) + ")");
    size_t n = data[1];
    if (n == 0)
        return invalid<greeting>("greeting offers no methods");
    if (len < 2 + n)
        return need_more<greeting>();
    parsed<greeting> p;
    p.st = status::ok;
    p.consumed = 2 + n;
    p.value.offers_no_auth = memchr(data + 2, METHOD_NO_AUTH, n) != nullptr;
    return p;
}

bytes encode_method_choice(uint8_t method) { return {VERSION, method}; }

parsed<request> parse_request(const uint8_t *data, size_t len)
{
    if (len < 1)
        return need_more<request>();
    if (data[0] != VERSION)
        return invalid<request>("request is not SOCKS version 5");
    if (len < 2)
        return need_more<request>();
    if (data[1] != CMD_CONNECT)
        return invalid<request>("command " + std::to_string(data[1]) + " is not CONNECT",
                                REP_COMMAND_NOT_SUPPORTED);
    if (len < 3)
        return need_more<request>();
    if (data[2] != 0)
        return invalid<request>("reserved byte is not zero");
    auto a = parse_address(data + 3, len - 3);
    if (!a.ok && a.error.empty())
        return need_more<request>();
    if (!a.ok)
        return invalid<request>(a.error, a.reply_code);
    if (a.value.port == 0)
        return invalid<request>("port 0");
    parsed<request> p;
    p.st = status::ok;
    p.value.target = a.value;
    p.value.atyp = data[3];
    p.consumed = 3 + a.consumed;
    return p;
}

bytes encode_reply(uint8_t rep, const std::optional<host_port> &bound)
{
    bytes out{VERSION, rep, 0};
    append_address(out, bound ? *bound : host_port{"0.0.0.0", 0});
    return out;
}

bytes encode_greeting() { return {VERSION, 1, METHOD_NO_AUTH}; }

parsed<uint8_t> parse_method_choice(const uint8_t *data, size_t len)
{
    if (len < 2)
        return need_more<uint8_t>();
    if (data[0] != VERSION)
        return invalid<uint8_t>("method choice is not SOCKS version 5");
    if (data[1] != METHOD_NO_AUTH)
        return invalid<uint8_t>(data[1] == METHOD_NONE_ACCEPTABLE ? "SMGW accepts no offered method"
                                                                  : "SMGW chose a method that was not offered");
    parsed<uint8_t> p;
    p.st = status::ok;
    p.value = data[1];
    p.consumed = 2;
    return p;
}

bytes encode_request(const host_port &target)
{
    bytes out{VERSION, CMD_CONNECT, 0};
    append_address(out, target);
    return out;
}

parsed<reply> parse_reply(const uint8_t *data, size_t len)
{
    if (len < 2)
        return need_more<reply>();
    if (data[0] != VERSION)
        return invalid<reply>("reply is not SOCKS version 5");
    uint8_t rep = data[1];
    parsed<reply> p;
    p.value.rep = rep;
    if (len < 4)
        return need_more<reply>();
    auto a = parse_address(data + 3, len - 3);
    if (!a.ok && a.error.empty())
        return need_more<reply>();
    if (!a.ok) {
        // Failure replies in the field carry ATYP 0 or junk; the code is what counts.
        if (rep == REP_SUCCEEDED)
            return invalid<reply>("success reply with " + a.error);
        p.st = status::ok;
        p.consumed = len;
        return p;
    }
    if (rep == REP_SUCCEEDED && data[2] != 0)
        return invalid<reply>("reserved byte is not zero");
    p.st = status::ok;
    p.value.bound = a.value;
    p.consumed = 3 + a.consumed;
    return p;
}

size_t reply_length(const uint8_t *data, size_t len)
{
    if (len < 4)
        return 0;
    switch (data[3]) {
    case ATYP_IPV4: return 4 + 4 + 2;
    case ATYP_IPV6: return 4 + 16 + 2;
    case ATYP_DOMAIN: return len < 5 ? 0 : 5 + static_cast<size_t>(data[4]) + 2;
    }
    return SIZE_MAX;
}

uint8_t app_reply_code(uint8_t smgw_rep)
{
    if (smgw_rep >= REP_GENERAL_FAILURE && smgw_rep <= REP_ADDRESS_TYPE_NOT_SUPPORTED)
        return smgw_rep;
    return REP_GENERAL_FAILURE;
}

} // namespace clsgw::socks5
