#include <doctest/doctest.h>

#include <cstdlib>
#include <vector>

#include "../../lib/backoff.hpp"

using namespace clsgw;

TEST_CASE("a back-off waits its first delay, doubles it per failure up to the ceiling, and a success starts over")
{
    backoff b(1000, 60000);
    std::vector<uint64_t> waits;
    for (int i = 0; i < 9; i++)
        waits.push_back(b.fail());
    CHECK(waits == std::vector<uint64_t>{1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000});
    CHECK(b.delay() == 60000);
    b.reset();
    CHECK(b.delay() == 1000);
    CHECK(b.fail() == 1000);
    CHECK(b.delay() == 2000);
}

TEST_CASE("a back-off's delay is what the next failure waits, and reading it changes nothing")
{
    backoff b;
    CHECK(b.delay() == 1000);
    CHECK(b.delay() == 1000);
    CHECK(b.fail() == 1000);
    CHECK(b.delay() == 2000);
}

TEST_CASE("a back-off's ceiling is never below its first delay, and a lower one caps the next doubling")
{
    backoff b(1000, 60000);
    b.set_max(0);
    CHECK(b.fail() == 1000);
    CHECK(b.fail() == 1000);
    b.set_max(3000);
    CHECK(b.fail() == 1000);
    CHECK(b.fail() == 2000);
    CHECK(b.fail() == 3000);
    CHECK(b.delay() == 3000);
    backoff odd(2, 5); // the ceiling itself when doubling would pass it
    CHECK(odd.fail() == 2);
    CHECK(odd.fail() == 4);
    CHECK(odd.fail() == 5);
}

TEST_CASE("a jittered back-off waits within 20% of its delay, reaches both ends, and doubles like the plain one")
{
    backoff b(1000, 60000);
    CHECK(b.fail_jittered(0) == 800);
    CHECK(b.delay() == 2000);
    b.reset();
    CHECK(b.fail_jittered(400) == 1200); // 2 * 200 + 1 values: 800 .. 1200
    b.reset();
    CHECK(b.fail_jittered(401) == 800);
    for (uint64_t i = 0; i < 2000; i++) {
        backoff each(5000, 60000);
        uint64_t wait = each.fail_jittered(static_cast<uint64_t>(random()));
        CHECK(wait >= 4000);
        CHECK(wait <= 6000);
    }
    backoff tiny(4, 60000); // no room for jitter: the delay itself
    CHECK(tiny.fail_jittered(12345) == 4);
}
