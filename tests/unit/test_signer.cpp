// The signer's means of never blocking and of bounding what refusals cost: the outgoing queue
// every peer gets, and the refusal budget.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "../../lib/event_budget.hpp"
#include "../../lib/outbox.hpp"

using namespace clsgw;

namespace {

bytes numbered(uint32_t n, size_t size)
{
    bytes b(size, 0);
    memcpy(b.data(), &n, sizeof n);
    return b;
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
