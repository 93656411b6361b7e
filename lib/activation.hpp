// systemd's socket activation and notification protocols, without libsystemd.
#pragma once

#include <sys/socket.h>

#include <string>
#include <vector>

#include "fd.hpp"

namespace clsgw {

struct activated_socket {
    std::string name; // FileDescriptorName=, "unknown" when systemd gave none
    unique_fd fd;
};

// Takes the listening sockets passed through LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES (fds 3..),
// checks that each is a listening stream socket, marks them CLOEXEC and non-blocking, and
// removes the variables so that no child sees them. Empty when none were passed.
std::vector<activated_socket> take_activated_sockets(std::string &error, int type = SOCK_STREAM);

// The sockets systemd passed to this process, without taking them: each name with the socket's
// local address ("127.0.0.1:7001"), for the checks made before the start (clsgwd -t). Empty when
// none were passed (or they were taken already).
struct activated_address {
    std::string name, address;
};
std::vector<activated_address> activated_addresses();

// Sends a state string ("READY=1", "STATUS=...", "STOPPING=1") to NOTIFY_SOCKET if set.
bool sd_notify_state(const std::string &state);

} // namespace clsgw
