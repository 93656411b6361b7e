#include "net.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "util.hpp"

namespace clsgw {

std::string sock_address::to_string() const
{
    char host[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (family() == AF_INET) {
        auto *in = reinterpret_cast<const sockaddr_in *>(&storage);
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        return std::string(host) + ":" + std::to_string(port);
    }
    if (family() == AF_INET6) {
        auto *in6 = reinterpret_cast<const sockaddr_in6 *>(&storage);
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        return "[" + std::string(host) + "]:" + std::to_string(port);
    }
    if (family() == AF_UNIX)
        return "unix";
    return "?";
}

namespace {

// Splits "host:port" or "[v6]:port"; bracketed tells whether the host came in brackets.
bool split_host_port(std::string_view text, std::string &host, uint16_t &port, bool &bracketed)
{
    size_t colon;
    bracketed = !text.empty() && text[0] == '[';
    if (bracketed) {
        size_t close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return false;
        host = std::string(text.substr(1, close - 1));
        colon = close + 1;
    } else {
        colon = text.rfind(':');
        if (colon == std::string_view::npos)
            return false;
        host = std::string(text.substr(0, colon));
        if (host.find(':') != std::string::npos)
            return false;
    }
    auto p = parse_uint(text.substr(colon + 1), 65535);
    if (!p || *p == 0 || host.empty())
        return false;
    port = static_cast<uint16_t>(*p);
    return true;
}

} // namespace

std::optional<sock_address> parse_sock_address(std::string_view text)
{
    std::string host;
    uint16_t port;
    bool bracketed;
    if (!split_host_port(text, host, port, bracketed))
        return std::nullopt;
    sock_address out;
    if (bracketed) {
        auto *in6 = reinterpret_cast<sockaddr_in6 *>(&out.storage);
        if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) != 1)
            return std::nullopt;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        out.length = sizeof *in6;
        return out;
    }
    auto *in = reinterpret_cast<sockaddr_in *>(&out.storage);
    if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) != 1)
        return std::nullopt;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    out.length = sizeof *in;
    return out;
}

bool valid_dns_name(std::string_view name)
{
    if (name.empty() || name.size() > 253)
        return false;
    unsigned char addr[16];
    if (inet_pton(AF_INET, std::string(name).c_str(), addr) == 1)
        return false; // an IPv4 literal is an address, not a name
    size_t label = 0;
    for (size_t i = 0; i < name.size(); i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (c == '.') {
            if (label == 0 || name[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!alnum && c != '-' && c != '_')
            return false;
        if (c == '-' && label == 0)
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && name.back() != '-';
}

std::string host_port::to_string() const
{
    if (host.find(':') != std::string::npos)
        return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

std::optional<host_port> parse_host_port(std::string_view text)
{
    host_port out;
    bool bracketed;
    if (!split_host_port(text, out.host, out.port, bracketed))
        return std::nullopt;
    unsigned char buf[16];
    if (bracketed) {
        if (inet_pton(AF_INET6, out.host.c_str(), buf) != 1)
            return std::nullopt;
        return out;
    }
    auto host = normalise_target_host(out.host);
    if (!host || host->find(':') != std::string::npos) // a bare IPv6 literal needs its brackets here
        return std::nullopt;
    out.host = *host;
    return out;
}

bool is_ip_literal(std::string_view host)
{
    unsigned char buf[16];
    std::string text(host);
    return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

std::optional<std::string> normalise_target_host(std::string_view host)
{
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    if (is_ip_literal(host))
        return std::string(host);
    if (host.size() > 1 && host.back() == '.')
        host.remove_suffix(1); // the root label: "localhost." names "localhost"
    if (valid_dns_name(host))
        return std::string(host);
    return std::nullopt;
}

std::string peer_name(int fd)
{
    sock_address a;
    a.length = sizeof a.storage;
    if (getpeername(fd, reinterpret_cast<sockaddr *>(&a.storage), &a.length) != 0)
        return "?";
    return a.to_string();
}

std::string local_name(int fd)
{
    sock_address a;
    a.length = sizeof a.storage;
    if (getsockname(fd, reinterpret_cast<sockaddr *>(&a.storage), &a.length) != 0)
        return "?";
    return a.to_string();
}

bool set_nonblocking(int fd, bool on)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return false;
    flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, flags) == 0;
}

size_t close_orderly(int fd, uint64_t deadline_ms, size_t max_bytes)
{
    shutdown(fd, SHUT_WR);
    uint8_t buf[4096];
    size_t drained = 0;
    while (drained < max_bytes) {
        uint64_t now = now_ms();
        if (now >= deadline_ms)
            break;
        pollfd p{fd, POLLIN, 0};
        int r = poll(&p, 1, static_cast<int>(std::min<uint64_t>(deadline_ms - now, 1000)));
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0)
            continue;
        ssize_t n = read(fd, buf, std::min(sizeof buf, max_bytes - drained));
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            break;
        if (n > 0)
            drained += static_cast<size_t>(n);
    }
    close(fd);
    return drained;
}

unique_fd listen_on(const sock_address &address, int backlog)
{
    unique_fd fd(socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd)
        return fd;
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (address.family() == AF_INET6)
        setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    // A HAN address may come up after clsgwd (DHCP, a late interface): bind it anyway, so that
    // its channel serves once it is up and no other channel waits for it.
    setsockopt(fd.get(), IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
    if (bind(fd.get(), address.sa(), address.length) != 0 || listen(fd.get(), backlog) != 0) {
        int err = errno;
        fd.reset();
        errno = err;
    }
    return fd;
}

unique_fd connect_start(const sock_address &address, int *error)
{
    *error = 0;
    unique_fd fd(socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
        *error = errno;
        return fd;
    }
    set_nodelay(fd.get());
    if (connect(fd.get(), address.sa(), address.length) != 0 && errno != EINPROGRESS) {
        *error = errno;
        fd.reset();
    }
    return fd;
}

// Every write of a relay is a whole TLS record or a whole chunk an application sent, so Nagle's
// algorithm only adds delay: a small write right after another (a resumed handshake's Finished,
// then the first data) waited for the peer's delayed ACK, 40 ms on Linux. Harmless on a socket
// that is not TCP.
void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void set_keepalive(int fd, int idle_s, int interval_s, int count)
{
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

} // namespace clsgw
