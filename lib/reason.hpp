// Why clsgwd could not give a worker its upstream connection. It travels as one byte in
// upstream_failed; the name (what the log and `clsgwctl status` show) is taken from this one
// table on either side, for the far end of the channel's direction: the SMGW (outbound) or an
// inbound channel's local service.
#pragma once

#include <cstdint>
#include <optional>

#include "config.hpp"
#include "util.hpp"

namespace clsgw {

enum class upstream_failure : uint8_t {
    backoff = 1,         // clsgwd leaves the SMGW alone for a while (outbound only)
    connection_refused,  // ECONNREFUSED
    network_unreachable, // ENETUNREACH, EHOSTUNREACH
    connect_timeout,     // connect_timeout passed
    unreachable,         // any other connect error
};

upstream_failure upstream_failure_for_errno(int err);
// "smgw_connection_refused" for an outbound channel, "service_connection_refused" for an inbound one.
const char *upstream_failure_name(upstream_failure f, channel_direction direction);
bytes encode_upstream_failure(upstream_failure f);
// nullopt unless exactly one byte that names a failure.
std::optional<upstream_failure> decode_upstream_failure(const bytes &payload);
// True for the names of the table's outbound column (and only for those).
bool is_smgw_upstream_failure(const std::string &reason);

} // namespace clsgw
