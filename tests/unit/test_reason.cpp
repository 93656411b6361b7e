#include <doctest/doctest.h>

#include <cerrno>
#include <set>
#include <string>

#include "../../lib/reason.hpp"

using namespace clsgw;

namespace {

const upstream_failure ALL[] = {upstream_failure::backoff, upstream_failure::connection_refused,
                                upstream_failure::network_unreachable, upstream_failure::connect_timeout,
                                upstream_failure::unreachable};

} // namespace

TEST_CASE("each upstream failure has its own name per direction, the ones the log and the tests know")
{
    CHECK(std::string(upstream_failure_name(upstream_failure::connection_refused, channel_direction::outbound)) ==
          "smgw_connection_refused");
    CHECK(std::string(upstream_failure_name(upstream_failure::connection_refused, channel_direction::inbound)) ==
          "service_connection_refused");
    CHECK(std::string(upstream_failure_name(upstream_failure::backoff, channel_direction::outbound)) == "smgw_backoff");
    CHECK(std::string(upstream_failure_name(upstream_failure::connect_timeout, channel_direction::inbound)) ==
          "service_connect_timeout");
    std::set<std::string> names;
    for (auto f : ALL) {
        std::string out = upstream_failure_name(f, channel_direction::outbound);
        std::string in = upstream_failure_name(f, channel_direction::inbound);
        CHECK(out.rfind("smgw_", 0) == 0);
        CHECK(in.rfind("service_", 0) == 0);
        CHECK(out.substr(5) == in.substr(8)); // the same failure, named for the other far end
        names.insert(out);
        names.insert(in);
    }
    CHECK(names.size() == 2 * std::size(ALL));
}

TEST_CASE("connect errors map to upstream failures")
{
    CHECK(upstream_failure_for_errno(ECONNREFUSED) == upstream_failure::connection_refused);
    CHECK(upstream_failure_for_errno(ENETUNREACH) == upstream_failure::network_unreachable);
    CHECK(upstream_failure_for_errno(EHOSTUNREACH) == upstream_failure::network_unreachable);
    CHECK(upstream_failure_for_errno(ETIMEDOUT) == upstream_failure::connect_timeout);
    CHECK(upstream_failure_for_errno(EACCES) == upstream_failure::unreachable);
}

TEST_CASE("an upstream failure travels as one byte; anything else is refused")
{
    for (auto f : ALL)
        CHECK(decode_upstream_failure(encode_upstream_failure(f)) == f);
    CHECK(encode_upstream_failure(upstream_failure::backoff).size() == 1);
    CHECK_FALSE(decode_upstream_failure({}).has_value());
    CHECK_FALSE(decode_upstream_failure({0}).has_value());
    CHECK_FALSE(decode_upstream_failure({6}).has_value());
    CHECK_FALSE(decode_upstream_failure({2, 2}).has_value());
    bytes text{'s', 'm', 'g', 'w'};
    CHECK_FALSE(decode_upstream_failure(text).has_value());
}

TEST_CASE("only the outbound names of the table count as clsgwd's own SMGW failures")
{
    for (auto f : ALL) {
        CHECK(is_smgw_upstream_failure(upstream_failure_name(f, channel_direction::outbound)));
        CHECK_FALSE(is_smgw_upstream_failure(upstream_failure_name(f, channel_direction::inbound)));
    }
    CHECK_FALSE(is_smgw_upstream_failure("smgw_tls_error"));
    CHECK_FALSE(is_smgw_upstream_failure("smgw_connect"));
    CHECK_FALSE(is_smgw_upstream_failure(""));
}
