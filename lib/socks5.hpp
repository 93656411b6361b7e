// SOCKS5 (RFC 1928) codec, both sides: the server side for local apps (socks5 ingress) and the
// client side spoken to the SMGW inside the HAN TLS session (socks5 proxy format).
// Pure functions over byte spans; no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "net.hpp"
#include "util.hpp"

namespace clsgw::socks5 {

constexpr uint8_t VERSION = 0x05;
constexpr uint8_t METHOD_NO_AUTH = 0x00;
constexpr uint8_t METHOD_NONE_ACCEPTABLE = 0xff;
constexpr uint8_t CMD_CONNECT = 0x01;
constexpr uint8_t ATYP_IPV4 = 0x01;
constexpr uint8_t ATYP_DOMAIN = 0x03;
constexpr uint8_t ATYP_IPV6 = 0x04;

constexpr uint8_t REP_SUCCEEDED = 0x00;
constexpr uint8_t REP_GENERAL_FAILURE = 0x01;
constexpr uint8_t REP_NOT_ALLOWED = 0x02;
constexpr uint8_t REP_NETWORK_UNREACHABLE = 0x03;
constexpr uint8_t REP_HOST_UNREACHABLE = 0x04;
constexpr uint8_t REP_CONNECTION_REFUSED = 0x05;
constexpr uint8_t REP_TTL_EXPIRED = 0x06;
constexpr uint8_t REP_COMMAND_NOT_SUPPORTED = 0x07;
constexpr uint8_t REP_ADDRESS_TYPE_NOT_SUPPORTED = 0x08;

// The longest messages either side can send: greeting 2+255, request/reply 4+1+255+2.
constexpr size_t MAX_GREETING = 257;
constexpr size_t MAX_REQUEST = 262;

const char *reply_name(uint8_t rep);

enum class status { ok, need_more, invalid };

struct greeting {
    bool offers_no_auth = false;
};

struct request {
    host_port target;
    uint8_t atyp = 0;
};

struct reply {
    uint8_t rep = 0;
    std::optional<host_port> bound; // absent when a failure reply carries no usable address
};

template <typename T> struct parsed {
    status st = status::invalid;
    T value{};
    size_t consumed = 0;
    std::string error;
    uint8_t reply_code = REP_GENERAL_FAILURE; // what to answer the app for an invalid request
};

// Server side (the app is the client).
parsed<greeting> parse_greeting(const uint8_t *data, size_t len);
bytes encode_method_choice(uint8_t method);
parsed<request> parse_request(const uint8_t *data, size_t len);
bytes encode_reply(uint8_t rep, const std::optional<host_port> &bound = std::nullopt);

// Client side (the SMGW is the server).
bytes encode_greeting();
parsed<uint8_t> parse_method_choice(const uint8_t *data, size_t len);
bytes encode_request(const host_port &target);
parsed<reply> parse_reply(const uint8_t *data, size_t len);

// How long the reply that starts with `data` is: 0 while more bytes are needed to tell,
// SIZE_MAX when the address type is unknown (a failure reply then ends at what was received).
size_t reply_length(const uint8_t *data, size_t len);

// Maps an SMGW reply code to the code the app is told: known codes pass, others become 0x01.
uint8_t app_reply_code(uint8_t smgw_rep);

} // namespace clsgw::socks5
