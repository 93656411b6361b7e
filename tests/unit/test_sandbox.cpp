#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <functional>

#include "../../sandbox/sandbox.hpp"

using namespace clsgw;

namespace {

// Runs body in a child under the worker policy; returns the wait status.
int run_confined(const std::function<int()> &body)
{
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGABRT, SIG_DFL); // doctest's crash handler is not part of a worker
        sandbox_limits limits;
        limits.highest_fd = 6;
        std::string err = sandbox_prepare(2, limits);
        if (err.empty())
            err = sandbox_lockdown(worker_policy, -1, -1);
        if (!err.empty())
            _exit(100);
        _exit(body());
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

} // namespace

TEST_CASE("the worker policy kills a process that creates a socket, forks or execs")
{
    int s = run_confined([] { return socket(AF_INET, SOCK_STREAM, 0) >= 0 ? 1 : 2; });
    REQUIRE(WIFSIGNALED(s));
    CHECK(WTERMSIG(s) == SIGSYS);
    s = run_confined([] { return fork() >= 0 ? 1 : 2; });
    REQUIRE(WIFSIGNALED(s));
    CHECK(WTERMSIG(s) == SIGSYS);
    s = run_confined([] {
        char *const argv[] = {const_cast<char *>("/bin/true"), nullptr};
        execve("/bin/true", argv, nullptr);
        return 1;
    });
    REQUIRE(WIFSIGNALED(s));
    CHECK(WTERMSIG(s) == SIGSYS);
}

TEST_CASE("the worker policy lets file opens fail softly with EACCES and keeps allowed calls working")
{
    int s = run_confined([] {
        int fd = open("/etc/hostname", O_RDONLY);
        if (fd >= 0 || errno != EACCES)
            return 1;
        void *p = malloc(1 << 20); // large: served by mmap
        if (!p)
            return 2;
        free(p);
        return 0;
    });
    REQUIRE(WIFEXITED(s));
    CHECK(WEXITSTATUS(s) == 0);
}

TEST_CASE("abort() in a confined worker is reported as SIGABRT, not as a sandbox violation")
{
    int s = run_confined([] {
        abort();
        return 0;
    });
    REQUIRE(WIFSIGNALED(s));
    CHECK(WTERMSIG(s) == SIGABRT);
}

TEST_CASE("both policies build for x86_64 and aarch64")
{
    for (const char *arch : {"x86_64", "aarch64"}) {
        CAPTURE(arch);
        CHECK_FALSE(export_policy_bpf(worker_policy, arch).empty());
        CHECK_FALSE(export_policy_bpf(signer_policy, arch).empty());
    }
}
