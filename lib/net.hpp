// Addresses and sockets: parsing "host:port", binding listeners, non-blocking connects.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fd.hpp"

namespace clsgw {

// A numeric socket address (the HAN has no DNS: every address in the config is numeric).
struct sock_address {
    sockaddr_storage storage{};
    socklen_t length = 0;

    const sockaddr *sa() const { return reinterpret_cast<const sockaddr *>(&storage); }
    int family() const { return storage.ss_family; }
    std::string to_string() const;
};

// "127.0.0.1:7000", "[::1]:7000"; nullopt for anything else (names, missing port, port 0).
std::optional<sock_address> parse_sock_address(std::string_view text);

// A "host:port" target as an application names it: a DNS name, IPv4 or IPv6 literal.
struct host_port {
    std::string host;
    uint16_t port = 0;
    std::string to_string() const;
};
// Accepts "name:port", "1.2.3.4:port", "[v6]:port"; the host must be a valid DNS name or literal.
// A trailing-dot name ("localhost.") is accepted as the name without the dot.
std::optional<host_port> parse_host_port(std::string_view text);
bool valid_dns_name(std::string_view name);
// The one place a target host is made canonical, for the worker (the app's SOCKS5 request) and
// the master (the target the worker asks for) alike: an IPv4 or IPv6 literal (bare or in
// brackets) as the literal, a DNS name without its trailing dot; nullopt for anything else.
std::optional<std::string> normalise_target_host(std::string_view host);
// An IPv4 or IPv6 literal: never a server_name (RFC 6066 section 3).
bool is_ip_literal(std::string_view host);

std::string peer_name(int fd);
std::string local_name(int fd);

// Binds and listens (SO_REUSEADDR, CLOEXEC, non-blocking); returns an invalid fd and sets errno on failure.
unique_fd listen_on(const sock_address &address, int backlog);
// Starts a non-blocking connect; the fd is valid while the connect is in progress or done.
unique_fd connect_start(const sock_address &address, int *error);
// Enables TCP keepalive with the given idle time, interval and probe count.
void set_keepalive(int fd, int idle_s, int interval_s, int count);
void set_nodelay(int fd);
bool set_nonblocking(int fd, bool on);

// Ends our side of a TCP connection so that what we sent last (a fatal alert, a close_notify)
// reaches the peer: shutdown(SHUT_WR) sends it with our FIN, then what the peer still sends is
// read and dropped until its FIN, `deadline_ms` or `max_bytes`, and only then is fd closed.
// Closing with unread bytes in the receive buffer makes Linux answer with a reset, which can
// reach the peer before it has read our last record and makes it discard that record.
// Returns the bytes drained.
size_t close_orderly(int fd, uint64_t deadline_ms, size_t max_bytes);

} // namespace clsgw
