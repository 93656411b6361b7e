// Test builds only (-DCLSGW_TEST_HOOKS, binary build/tests/clsgw-worker-testhooks, never
// installed): forbidden calls made on purpose after the sandbox is up, so that the tests can
// prove the filter kills the worker and the master survives it.
#ifdef CLSGW_TEST_HOOKS
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "worker.hpp"

namespace clsgw {

void test_hook_forbidden_call(const std::string &host)
{
    const std::string prefix = "forbidden-", suffix = ".test";
    if (host.compare(0, prefix.size(), prefix) != 0 || host.size() <= prefix.size() + suffix.size())
        return;
    std::string call = host.substr(prefix.size(), host.size() - prefix.size() - suffix.size());
    log_warn("test hook: making a forbidden call", log_fields().add("call", call));
    if (call == "socket") {
        socket(AF_INET, SOCK_STREAM, 0);
    } else if (call == "connect") {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        connect(CONNECTION_FD, reinterpret_cast<sockaddr *>(&a), sizeof a);
    } else if (call == "execve") {
        char *const argv[] = {const_cast<char *>("/bin/true"), nullptr};
        execve("/bin/true", argv, nullptr);
    } else if (call == "ptrace") {
        ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
    } else if (call == "fork") {
        fork();
    } else if (call == "open") {
        open("/etc/hostname", O_RDONLY);
    }
    log_error("test hook: forbidden call returned", log_fields().add("call", call));
}

} // namespace clsgw
#endif
