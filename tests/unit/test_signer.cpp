// The signer's means of never blocking and of bounding what refusals cost: the outgoing queue
// every peer gets, the refusal budget, and the calls its filter adds for them.
#include <doctest/doctest.h>
#include <linux/sockios.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "../../lib/event_budget.hpp"
#include "../../lib/outbox.hpp"
#include "../../lib/signer_proto.hpp"
#include "../../sandbox/sandbox.hpp"

using namespace clsgw;

namespace {

bool emulated() { return getenv("CLSGW_EMULATED") != nullptr; }

bytes numbered(uint32_t n, size_t size)
{
    bytes b(size, 0);
    memcpy(b.data(), &n, sizeof n);
    return b;
}

// Runs body in a child under the signer policy, with a connected SEQPACKET pair on fds 3 and 4;
// returns the wait status.
int run_as_signer(const std::function<int()> &body)
{
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGABRT, SIG_DFL);
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0 || dup2(sv[0], 3) != 3 || dup2(sv[1], 4) != 4)
            _exit(100);
        sandbox_limits limits;
        limits.highest_fd = 6;
        std::string err = sandbox_prepare(4, limits);
        if (err.empty())
            err = sandbox_lockdown(signer_policy, -1, -1);
        if (!err.empty())
            _exit(101);
        _exit(body());
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

} // namespace

TEST_CASE("an outbox sends at once, queues what the socket does not take, and overflows instead of blocking")
{
    unique_fd a, b;
    REQUIRE(ipc_socketpair(a, b)); // a blocking socket: the outbox must not wait on it either
    int small = 4096;
    REQUIRE(setsockopt(a.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    outbox out(4, 64 * 1024);
    uint32_t pushed = 0;
    outbox::result r = outbox::result::sent;
    while (r == outbox::result::sent && pushed < 1000)
        r = out.push(a.get(), msg_type::log, numbered(pushed++, 1000));
    REQUIRE(r == outbox::result::queued); // the kernel's buffer is full: the frame waits here
    CHECK(out.pending());
    CHECK(out.push(a.get(), msg_type::log, numbered(pushed++, 1000)) == outbox::result::queued);
    CHECK(out.push(a.get(), msg_type::log, numbered(pushed++, 1000)) == outbox::result::queued);
    CHECK(out.push(a.get(), msg_type::log, numbered(pushed++, 1000)) == outbox::result::queued);
    CHECK(out.queued_frames() == 4);
    CHECK(out.push(a.get(), msg_type::log, numbered(pushed, 1000)) == outbox::result::overflow);
    // the reader catches up: flushing delivers the queue, every frame once and in order
    for (uint32_t expected = 0; expected < pushed;) {
        auto m = ipc_recv(b.get(), false);
        if (m.status == ipc_status::would_block) {
            REQUIRE(out.flush(a.get()));
            continue;
        }
        REQUIRE(m.status == ipc_status::ok);
        uint32_t n;
        memcpy(&n, m.message.payload.data(), sizeof n);
        CHECK(n == expected++);
    }
    CHECK_FALSE(out.pending());
    CHECK(out.push(a.get(), msg_type::log, numbered(0, 10)) == outbox::result::sent);
}

TEST_CASE("an outbox reports a peer that has gone as failed")
{
    unique_fd a, b;
    REQUIRE(ipc_socketpair(a, b));
    b.reset();
    outbox out(4, 4096);
    CHECK(out.push(a.get(), msg_type::sign_answer, {1, 2, 3}) == outbox::result::failed);
    CHECK_FALSE(out.pending());
}

TEST_CASE("the refusal budget grants N per window, counts the rest, and opens a new window after it ends")
{
    event_budget budget(3, 1000);
    CHECK(budget.take(5000));
    CHECK(budget.take(5100));
    CHECK(budget.take(5200));
    CHECK_FALSE(budget.take(5300));
    CHECK_FALSE(budget.take(5999));
    CHECK(budget.window_end_ms() == 6000);
    CHECK(budget.take(6000)); // a new window, from this event
    CHECK(budget.window_end_ms() == 7000);
    event_budget none(0, 1000);
    CHECK_FALSE(none.take(1));
}

TEST_CASE("an answer_unread refusal travels to the worker like any other refusal")
{
    signer::answer a;
    a.seq = 9;
    a.st = signer::status::answer_unread;
    auto back = signer::decode_answer(signer::encode_answer(a));
    REQUIRE(back);
    CHECK(back->st == signer::status::answer_unread);
    CHECK(std::string(signer::status_name(back->st)) == "answer_unread");
}

TEST_CASE("the signer policy allows getsockopt for SO_PEERCRED and ioctl for SIOCOUTQ, and nothing else of either" *
          doctest::skip(emulated()))
{
    int s = run_as_signer([] {
        ucred cred{};
        socklen_t len = sizeof cred;
        int unread = 0;
        if (getsockopt(3, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid != getpid())
            return 1;
        if (send(3, "x", 1, MSG_DONTWAIT) != 1 || ioctl(3, SIOCOUTQ, &unread) != 0 || unread == 0)
            return 2;
        return 0;
    });
    REQUIRE(WIFEXITED(s));
    CHECK(WEXITSTATUS(s) == 0);
    s = run_as_signer([] {
        int size = 0;
        socklen_t len = sizeof size;
        return getsockopt(3, SOL_SOCKET, SO_SNDBUF, &size, &len) == 0 ? 1 : 2;
    });
    REQUIRE(WIFSIGNALED(s));
    CHECK(WTERMSIG(s) == SIGSYS);
    s = run_as_signer([] {
        int queued = 0;
        return ioctl(4, FIONREAD, &queued) == 0 ? 1 : 2;
    });
    REQUIRE(WIFSIGNALED(s));
    CHECK(WTERMSIG(s) == SIGSYS);
}
