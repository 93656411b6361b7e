#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "../../lib/session_cache.hpp"

using namespace clsgw;

namespace {

bytes blob_of(uint8_t fill, size_t len) { return bytes(len, fill); }

// Stores blob under key, made at `created` and stored at `now` (by default the same time).
bool put(session_cache &c, const std::string &key, const std::string &group, const bytes &blob, uint64_t created,
         std::optional<uint64_t> now = std::nullopt)
{
    return c.put(key, group, blob.data(), blob.size(), created, now.value_or(created));
}

bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

// The VmFlags line of the mapping that starts at addr, from /proc/self/smaps.
std::string vm_flags(const void *addr)
{
    char start[32];
    snprintf(start, sizeof start, "%lx-", reinterpret_cast<unsigned long>(addr));
    std::ifstream in("/proc/self/smaps");
    bool inside = false;
    for (std::string line; std::getline(in, line);) {
        if (line.find('-') != std::string::npos && line.find(' ') != std::string::npos && isxdigit(line[0]))
            inside = line.rfind(start, 0) == 0;
        else if (inside && line.rfind("VmFlags:", 0) == 0)
            return line;
    }
    return "";
}

} // namespace

TEST_CASE("the session cache keeps entries per key, replaces a key's entry and never answers another key")
{
    session_cache c;
    REQUIRE(c.reset(4, 1000, 4));
    bytes a = blob_of(0xa1, 100), b = blob_of(0xb2, 200);
    REQUIRE(put(c, "out/smgw/meter/emt:443", "g", a, 10));
    REQUIRE(put(c, "out/smgw/other/emt:443", "g", b, 10));
    auto v = c.get("out/smgw/meter/emt:443", 20);
    REQUIRE(v);
    CHECK(bytes(v->data, v->data + v->len) == a);
    CHECK(!c.get("out/smgw/meter/emt:444", 20));
    CHECK(!c.get("out/smgw/meter", 20));
    bytes a2 = blob_of(0xa3, 50);
    REQUIRE(put(c, "out/smgw/meter/emt:443", "g", a2, 15));
    CHECK(c.size() == 2);
    v = c.get("out/smgw/meter/emt:443", 20);
    REQUIRE(v);
    CHECK(v->len == 50);
    CHECK(c.bytes_used() == 250);
}

TEST_CASE("the session cache is bounded: the oldest entry makes room, and its bytes are overwritten")
{
    session_cache c;
    REQUIRE(c.reset(3, 1000000, 3));
    for (int i = 0; i < 1000; i++) {
        bytes x = blob_of(static_cast<uint8_t>(i | 1), 1500);
        REQUIRE(put(c, "name-" + std::to_string(i), "g", x, static_cast<uint64_t>(i)));
        CHECK(c.size() <= 3);
    }
    CHECK(c.size() == 3);
    CHECK(c.evicted() == 997);
    CHECK(c.get("name-999", 1000));
    CHECK(c.get("name-997", 1000));
    CHECK(!c.get("name-996", 1000));
    // Three live entries of 1500 bytes; everything else in the arena is zero.
    size_t nonzero = 0;
    for (size_t i = 0; i < c.arena_size(); i++)
        nonzero += c.arena()[i] != 0;
    CHECK(nonzero == 3 * 1500);
    bytes big = blob_of(1, session_cache::SLOT_SIZE + 1);
    CHECK(!put(c, "too-big", "g", big, 1000));
}

TEST_CASE("the session cache drops entries at their lifetime: on lookup, by sweep, and zeroes them")
{
    session_cache c;
    REQUIRE(c.reset(8, 100, 8));
    bytes x = blob_of(0x55, 64);
    REQUIRE(put(c, "a", "g", x, 0));
    REQUIRE(put(c, "b", "g", x, 50));
    CHECK(!put(c, "stale", "g", x, 0, 100)); // already as old as the lifetime
    CHECK(c.next_expiry() == 100);
    CHECK(c.get("a", 99));
    CHECK(!c.get("a", 100));
    CHECK(c.size() == 1);
    CHECK(c.sweep(149) == 0);
    CHECK(c.sweep(150) == 1);
    CHECK(c.size() == 0);
    CHECK(c.next_expiry() == UINT64_MAX);
    CHECK(all_zero(c.arena(), c.arena_size()));
}

// Under qemu-user, /proc/self/smaps shows the emulator's mappings, not the program's: skipped there.
TEST_CASE("the session cache's memory is left out of core dumps and wiped in forked children" *
          doctest::skip(getenv("CLSGW_EMULATED") != nullptr))
{
    session_cache c;
    REQUIRE(c.reset(2, 1000, 2));
    std::string flags = vm_flags(c.arena());
    INFO(flags);
    CHECK(flags.find(" dd") != std::string::npos);
    CHECK(flags.find(" wf") != std::string::npos);
    session_cache none;
    REQUIRE(none.reset(0, 1000, 1));
    bytes x = blob_of(1, 10);
    CHECK(!put(none, "a", "g", x, 0));
}

TEST_CASE("one group cannot push the others out: it makes room from its own oldest entries")
{
    session_cache c;
    REQUIRE(c.reset(8, 1000000, 2));
    bytes x = blob_of(7, 100);
    REQUIRE(put(c, "meter", "out meter", x, 0));
    for (int i = 1; i <= 500; i++)
        REQUIRE(put(c, "name-" + std::to_string(i), "out app", x, static_cast<uint64_t>(i)));
    CHECK(c.size() == 3);
    CHECK(c.get("meter", 600));
    CHECK(c.get("name-500", 600));
    CHECK(c.get("name-499", 600));
    CHECK(!c.get("name-498", 600));
}
