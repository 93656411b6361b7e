#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "../../lib/audit.hpp"

using namespace clsgw;

namespace {

std::vector<std::string> chained(int n)
{
    audit::tail t{0, audit::genesis(), true};
    std::vector<std::string> lines;
    for (int i = 1; i <= n; i++)
        lines.push_back(audit::seal(t, "channel=" + std::to_string(i) + " result=ok"));
    return lines;
}

std::string join(const std::vector<std::string> &lines)
{
    std::string out;
    for (const auto &l : lines)
        out += l + "\n";
    return out;
}

} // namespace

TEST_CASE("an untouched audit chain verifies")
{
    auto v = audit::verify(join(chained(5)));
    CHECK(v.intact);
    CHECK(v.records == 5);
    CHECK(audit::verify("").intact);
}

TEST_CASE("an altered record is named")
{
    auto lines = chained(5);
    lines[2].replace(lines[2].find("result=ok"), 9, "result=no");
    auto v = audit::verify(join(lines));
    CHECK_FALSE(v.intact);
    CHECK(v.problem == "record 3 (line 3) was altered");
    CHECK(v.records == 2);
}

TEST_CASE("removed records are named by their sequence numbers")
{
    auto lines = chained(6);
    lines.erase(lines.begin() + 2, lines.begin() + 4);
    auto v = audit::verify(join(lines));
    CHECK(v.problem == "records 3-4 removed before record 5 (line 3)");
}

TEST_CASE("an inserted record is named, also when it is a copy of a real one")
{
    auto lines = chained(4);
    lines.insert(lines.begin() + 2, lines[1]);
    auto v = audit::verify(join(lines));
    CHECK(v.problem == "record inserted (line 3): it repeats sequence number 2");
}

TEST_CASE("a forged record with the next sequence number but no valid chain is an alteration")
{
    auto lines = chained(3);
    lines.push_back("channel=9 result=ok seq=4 chain=" + std::string(64, 'a'));
    CHECK(audit::verify(join(lines)).problem == "record 4 (line 4) was altered");
}
