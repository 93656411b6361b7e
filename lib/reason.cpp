#include "reason.hpp"

#include <cerrno>

namespace clsgw {

namespace {

struct upstream_failure_names {
    upstream_failure failure;
    const char *outbound, *inbound;
};

const upstream_failure_names NAMES[] = {
    {upstream_failure::backoff, "smgw_backoff", "service_backoff"},
    {upstream_failure::connection_refused, "smgw_connection_refused", "service_connection_refused"},
    {upstream_failure::network_unreachable, "smgw_network_unreachable", "service_network_unreachable"},
    {upstream_failure::connect_timeout, "smgw_connect_timeout", "service_connect_timeout"},
    {upstream_failure::unreachable, "smgw_unreachable", "service_unreachable"},
};

} // namespace

upstream_failure upstream_failure_for_errno(int err)
{
    switch (err) {
    case ECONNREFUSED: return upstream_failure::connection_refused;
    case ENETUNREACH:
    case EHOSTUNREACH: return upstream_failure::network_unreachable;
    case ETIMEDOUT: return upstream_failure::connect_timeout;
    }
    return upstream_failure::unreachable;
}

const char *upstream_failure_name(upstream_failure f, channel_direction direction)
{
    for (const auto &n : NAMES)
        if (n.failure == f)
            return direction == channel_direction::outbound ? n.outbound : n.inbound;
    return direction == channel_direction::outbound ? "smgw_unreachable" : "service_unreachable";
}

bytes encode_upstream_failure(upstream_failure f) { return bytes{static_cast<uint8_t>(f)}; }

std::optional<upstream_failure> decode_upstream_failure(const bytes &payload)
{
    if (payload.size() != 1)
        return std::nullopt;
    for (const auto &n : NAMES)
        if (static_cast<uint8_t>(n.failure) == payload[0])
            return n.failure;
    return std::nullopt;
}

bool is_smgw_upstream_failure(const std::string &reason)
{
    for (const auto &n : NAMES)
        if (reason == n.outbound)
            return true;
    return false;
}

} // namespace clsgw
