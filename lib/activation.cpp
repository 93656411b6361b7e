#include "activation.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "net.hpp"
#include "util.hpp"

namespace clsgw {

namespace {

constexpr int LISTEN_FDS_START = 3;
constexpr unsigned MAX_ACTIVATED = 256;

std::vector<std::string> split_names(const char *names, size_t count)
{
    std::vector<std::string> out;
    if (names) {
        std::string all = names;
        size_t start = 0;
        for (;;) {
            size_t colon = all.find(':', start);
            out.push_back(all.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
            if (colon == std::string::npos)
                break;
            start = colon + 1;
        }
    }
    if (!names)
        out.assign(count, "unknown");
    return out;
}

} // namespace

std::vector<activated_socket> take_activated_sockets(std::string &error, int wanted_type)
{
    std::vector<activated_socket> out;
    const char *pid = getenv("LISTEN_PID");
    const char *fds = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    if (!pid || !fds)
        return out;
    auto p = parse_uint(pid, 0x7fffffff);
    auto n = parse_uint(fds, MAX_ACTIVATED);
    std::vector<std::string> labels = n ? split_names(names, *n) : std::vector<std::string>();
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (!p || static_cast<pid_t>(*p) != getpid())
        return out; // meant for another process
    if (!n) {
        error = std::string("LISTEN_FDS='") + fds + "' is not a number up to " + std::to_string(MAX_ACTIVATED);
        return out;
    }
    if (labels.size() != *n) {
        error = "LISTEN_FDNAMES has " + std::to_string(labels.size()) + " names for " + std::to_string(*n) + " sockets";
        return out;
    }
    for (unsigned i = 0; i < *n; i++) {
        int fd = LISTEN_FDS_START + static_cast<int>(i);
        int type = 0, listening = 0;
        socklen_t len = sizeof type;
        bool ok = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == wanted_type;
        len = sizeof listening;
        ok = ok && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening;
        if (!ok) {
            error = "socket " + std::to_string(fd) + " ('" + labels[i] + "') from systemd is not a listening socket of the expected type";
            out.clear();
            return out;
        }
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        set_nonblocking(fd, true);
        out.push_back({labels[i], unique_fd(fd)});
    }
    return out;
}

std::vector<activated_address> activated_addresses()
{
    std::vector<activated_address> out;
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    auto p = pid ? parse_uint(pid, 0x7fffffff) : std::nullopt;
    auto n = fds ? parse_uint(fds, MAX_ACTIVATED) : std::nullopt;
    if (!p || !n || static_cast<pid_t>(*p) != getpid())
        return out;
    std::vector<std::string> labels = split_names(getenv("LISTEN_FDNAMES"), *n);
    for (unsigned i = 0; i < *n && i < labels.size(); i++)
        out.push_back({labels[i], local_name(LISTEN_FDS_START + static_cast<int>(i))});
    return out;
}

bool sd_notify_state(const std::string &state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return false;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len >= sizeof addr.sun_path || (path[0] != '/' && path[0] != '@'))
        return false;
    memcpy(addr.sun_path, path, len);
    if (path[0] == '@')
        addr.sun_path[0] = '\0'; // abstract namespace
    unique_fd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd)
        return false;
    socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
    return sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr *>(&addr), alen) ==
           static_cast<ssize_t>(state.size());
}

} // namespace clsgw
