// Starting a child program (worker, spare, signer) with its fds at fixed numbers and nothing
// else inherited.
#include "master.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>

#include "../../lib/fd_layout.h"

namespace clsgw {

// Places the given fds at 3, 4, 5 (and /dev/null on 0-2) and execs; never returns.
[[noreturn]] void exec_child(const std::string &path, const std::vector<int> &fds, std::vector<std::string> args,
                             bool keep_stderr)
{
    std::vector<int> high;
    for (int fd : fds)
        high.push_back(fcntl(fd, F_DUPFD_CLOEXEC, 16));
    for (size_t i = 0; i < high.size(); i++)
        if (high[i] < 0 || dup2(high[i], CLSGW_CHILD_FIRST_FD + static_cast<int>(i)) < 0)
            _exit(126);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        if (!keep_stderr)
            dup2(null, 2);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    std::vector<char *> argv;
    for (auto &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    char *envp[] = {nullptr};
    execve(path.c_str(), argv.data(), envp);
    _exit(127);
}

} // namespace clsgw
