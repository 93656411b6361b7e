#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <seccomp.h>
#include <set>
#include <sstream>

#include "../../lib/audit.hpp"
#include "../../sandbox/sandbox.hpp"
#include "policy_export.hpp"

using namespace clsgw;

namespace {

// Under qemu-user (make check ARCH=arm64) libseccomp cannot ask the kernel about filter actions
// and an emulated program cannot load a filter: these cases are reported as skipped there.
bool emulated() { return getenv("CLSGW_EMULATED") != nullptr; }

// Runs body in a child under a policy (the worker's unless told); returns the wait status.
// started, when given, runs in the parent meanwhile with the child's pid.
int run_confined(const std::function<int()> &body, const policy_rule *policy = worker_policy,
                 const std::function<void(pid_t)> &started = nullptr)
{
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGABRT, SIG_DFL); // doctest's crash handler is not part of a worker
        sandbox_limits limits;
        limits.highest_fd = 6;
        std::string err = sandbox_prepare(2, limits);
        if (err.empty())
            err = sandbox_lockdown(policy, -1, -1);
        if (!err.empty())
            _exit(100);
        _exit(body());
    }
    if (started)
        started(pid);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

// A field of /proc/PID/stat (after the command name): 0 is the state letter.
std::string proc_stat_field(pid_t pid, size_t index)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream rest(text.substr(text.rfind(')') + 1));
    std::string field;
    for (size_t i = 0; i <= index && rest >> field; i++) {
    }
    return field;
}

bool confined(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("Seccomp:", 0) == 0)
            return line.find('2') != std::string::npos;
    return false;
}

// Polls cond every 10 ms for at most 5 s.
bool wait_for(const std::function<bool()> &cond)
{
    for (int i = 0; i < 500; i++) {
        if (cond())
            return true;
        poll(nullptr, 0, 10);
    }
    return false;
}

// Stops a confined child once it sleeps in poll(), waits until the kernel shows it stopped, and
// continues it: what a debugger or the cgroup freezer does.
void stop_and_continue(pid_t pid)
{
    CHECK(wait_for([pid] { return confined(pid) && proc_stat_field(pid, 0) == "S"; }));
    kill(pid, SIGSTOP);
    CHECK(wait_for([pid] { return proc_stat_field(pid, 0) == "T"; }));
    kill(pid, SIGCONT);
}

} // namespace

TEST_CASE("the worker policy kills a process that creates a socket, forks or execs" * doctest::skip(emulated()))
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

TEST_CASE("the worker policy kills a process that opens a file, lets stat fail softly, and keeps allowed calls"
          * doctest::skip(emulated()))
{
    int s = run_confined([] { return open("/etc/hostname", O_RDONLY) >= 0 ? 1 : 2; });
    REQUIRE(WIFSIGNALED(s));
    CHECK(WTERMSIG(s) == SIGSYS);
    s = run_confined([] {
        struct stat st;
        if (stat("/etc/hostname", &st) == 0 || errno != EACCES)
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

TEST_CASE("abort() in a confined worker is reported as SIGABRT, not as a sandbox violation" * doctest::skip(emulated()))
{
    int s = run_confined([] {
        abort();
        return 0;
    });
    REQUIRE(WIFSIGNALED(s));
    CHECK(WTERMSIG(s) == SIGABRT);
}

TEST_CASE("a confined worker or signer stopped and continued inside poll() lives on" * doctest::skip(emulated()))
{
    for (const policy_rule *policy : {worker_policy, signer_policy}) {
        CAPTURE(policy == worker_policy ? "worker" : "signer");
        int s = run_confined([] { return poll(nullptr, 0, 1500) == 0 ? 0 : 1; }, policy, stop_and_continue);
        CHECK_MESSAGE(WIFEXITED(s), "killed by signal ", WIFSIGNALED(s) ? WTERMSIG(s) : 0);
        CHECK(s == 0); // exited with 0
    }
}

TEST_CASE("both policies build for x86_64 and aarch64" * doctest::skip(emulated()))
{
    for (const char *arch : {"x86_64", "aarch64"}) {
        CAPTURE(arch);
        CHECK_FALSE(export_policy_bpf(worker_policy, arch).empty());
        CHECK_FALSE(export_policy_bpf(signer_policy, arch).empty());
    }
}

namespace {

// syscall name -> actions found in its block of libseccomp's pseudo filter code ("ALLOW",
// "ERRNO(13)"); a name whose number is a libseccomp pseudo-number gets "pseudo" (never matches).
std::map<std::string, std::set<std::string>> pfc_rules(const std::string &pfc, std::string &default_action,
                                                       std::string &badarch_action)
{
    std::map<std::string, std::set<std::string>> rules;
    std::istringstream in(pfc);
    std::string line, current, pending;
    while (std::getline(in, line)) {
        auto filter = line.find("# filter for syscall \"");
        if (filter != std::string::npos) {
            size_t start = filter + 22, end = line.find('"', start);
            current = line.substr(start, end - start);
            unsigned long long nr = std::stoull(line.substr(line.find('(', end) + 1));
            if (nr > 0xffff0000ULL)
                rules[current].insert("pseudo");
            continue;
        }
        if (line.find("# default action") != std::string::npos)
            pending = "default";
        else if (line.find("# invalid architecture action") != std::string::npos)
            pending = "badarch";
        auto action = line.find("action ");
        if (action == std::string::npos || line.find('#') != std::string::npos)
            continue;
        std::string what = line.substr(action + 7, line.find(';') - action - 7);
        if (pending == "default")
            default_action = what;
        else if (pending == "badarch")
            badarch_action = what;
        else if (!current.empty())
            rules[current].insert(what);
        if (!pending.empty())
            current.clear();
    }
    return rules;
}

} // namespace

TEST_CASE("the worker policy means the same on x86_64 and aarch64: ppoll allowed, no files, no sockets" * doctest::skip(emulated()))
{
    for (const char *arch : {"x86_64", "aarch64"}) {
        CAPTURE(arch);
        std::string def, bad;
        auto rules = pfc_rules(export_policy_pfc(worker_policy, arch), def, bad);
        CHECK(def == "KILL_PROCESS");
        CHECK(bad == "KILL_PROCESS");
        for (const char *allowed : {"read", "write", "ppoll", "close", "shutdown", "getrandom", "exit_group"})
            CHECK_MESSAGE(rules[allowed].count("ALLOW"), allowed);
        for (const char *soft : {"newfstatat", "faccessat"})
            CHECK_MESSAGE(rules[soft] == std::set<std::string>{"ERRNO(13)"}, soft);
        for (const char *forbidden : {"open", "openat", "openat2", "creat", "socket", "connect", "bind", "accept4",
                                      "execve", "execveat", "clone", "clone3", "fork", "vfork", "ptrace", "kill",
                                      "mount", "setuid"})
            CHECK_MESSAGE(rules.count(forbidden) == 0, forbidden);
        CHECK(rules["restart_syscall"] == std::set<std::string>{"ALLOW"}); // SIGSTOP/SIGCONT during poll()
        CHECK(rules["sendmsg"].count("ALLOW")); // argument-filtered: control and signer fds only
        CHECK(rules["recvmsg"].count("ALLOW"));
    }
    std::string def, bad;
    auto arm = pfc_rules(export_policy_pfc(worker_policy, "aarch64"), def, bad);
    // aarch64 has no poll/stat: those names become pseudo-numbers that never match
    for (const char *absent : {"poll", "stat", "lstat", "access"})
        CHECK_MESSAGE(arm[absent].count("pseudo"), absent);
}

TEST_CASE("every policy rule names a system call libseccomp knows on both architectures" * doctest::skip(emulated()))
{
    const std::set<std::string> x86_only = {"poll", "stat", "lstat", "access"};
    for (const policy_rule *table : {worker_policy, signer_policy})
        for (const policy_rule *r = table; r->syscall; r++)
            for (uint32_t arch : {SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64}) {
                CAPTURE(r->syscall);
                int nr = seccomp_syscall_resolve_name_arch(arch, r->syscall);
                CHECK(nr != __NR_SCMP_ERROR);
                if (arch == SCMP_ARCH_X86_64 || !x86_only.count(r->syscall))
                    CHECK(nr >= 0);
            }
}

TEST_CASE("the signer policy allows accept4 only on fd 3 and never sockets, exec or fork" * doctest::skip(emulated()))
{
    for (const char *arch : {"x86_64", "aarch64"}) {
        CAPTURE(arch);
        std::string def, bad;
        auto rules = pfc_rules(export_policy_pfc(signer_policy, arch), def, bad);
        CHECK(def == "KILL_PROCESS");
        CHECK(rules["accept4"].count("ALLOW"));
        CHECK(rules["ppoll"].count("ALLOW"));
        CHECK(rules["restart_syscall"] == std::set<std::string>{"ALLOW"});
        for (const char *forbidden : {"open", "openat", "socket", "connect", "execve", "clone", "fork", "ptrace"})
            CHECK_MESSAGE(rules.count(forbidden) == 0, forbidden);
    }
    CHECK(export_policy_pfc(signer_policy, "x86_64").find("if ($a0.lo32 == 3)") != std::string::npos);
}

TEST_CASE("a confined signer appends to a shared audit log: lock, read its tail, write" * doctest::skip(emulated()))
{
    char path[] = "/tmp/clsgw-audit-log-XXXXXX";
    int made = mkstemp(path);
    REQUIRE(made >= 0);
    close(made);
    pid_t pid = fork();
    if (pid == 0) { // as the signer confines itself (keeping its file size limit), the log on fd 2
        int fd = open(path, O_RDWR | O_APPEND);
        if (fd < 0 || dup2(fd, 2) != 2)
            _exit(3);
        sandbox_limits limits;
        limits.highest_fd = 6;
        limits.keep_fsize = true;
        std::string err = sandbox_prepare(2, limits);
        if (err.empty())
            err = sandbox_lockdown(signer_policy, -1, -1);
        if (!err.empty())
            _exit(100);
        for (int i = 0; i < 2; i++)
            if (!audit::append(2, "channel=" + std::to_string(i) + " result=ok").ok)
                _exit(1);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    std::ifstream in(path);
    std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    unlink(path);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(audit::verify(log).records == 2);
}
