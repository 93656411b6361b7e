// What `clsgwctl metrics` exports: counters of the channels clsgwd has finished since it started,
// and the OpenMetrics text (for node_exporter's textfile collector) made of them and of what
// clsgwd knows now.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace clsgw::metrics {

// Upper bounds of the handshake time histogram's buckets, in milliseconds (+Inf follows).
constexpr uint64_t HANDSHAKE_BUCKETS_MS[] = {25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000};
constexpr size_t HANDSHAKE_BUCKETS = sizeof HANDSHAKE_BUCKETS_MS / sizeof HANDSHAKE_BUCKETS_MS[0];

class channel_counters {
public:
    // A channel that ended: its bytes each way and, when its TLS handshake completed, how long
    // that took.
    void finished(uint64_t bytes_up, uint64_t bytes_down, std::optional<uint64_t> handshake_ms);
    uint64_t bytes_up() const { return bytes_up_; }
    uint64_t bytes_down() const { return bytes_down_; }
    // Handshakes that took at most HANDSHAKE_BUCKETS_MS[i] (cumulative, as OpenMetrics counts).
    uint64_t handshakes_within(size_t bucket) const;
    uint64_t handshakes() const { return handshakes_; }
    uint64_t handshake_ms_sum() const { return handshake_ms_sum_; }

private:
    uint64_t bytes_up_ = 0, bytes_down_ = 0;
    uint64_t handshakes_ = 0, handshake_ms_sum_ = 0;
    uint64_t bucket_counts_[HANDSHAKE_BUCKETS] = {}; // not cumulative: each handshake in its first bucket
};

struct signer_counts {
    uint64_t signatures = 0, refusals = 0, sessions = 0;
};

struct certificate_days {
    std::string role, subject, path;
    int64_t days_left = 0;
};

// Everything one metrics text shows.
struct snapshot {
    std::string version;
    uint64_t open_channels = 0, max_channels = 0, accepted = 0;
    uint64_t open_bytes_up = 0, open_bytes_down = 0; // of the channels still open, so far
    std::map<std::string, uint64_t> outcomes;         // "outcome/reason" -> channels
    std::optional<signer_counts> signer;              // unset: the signer did not answer
    uint64_t smgw_backoff_ms_left = 0;
    std::vector<certificate_days> certificates;
};

// The OpenMetrics text exposition, ending with "# EOF".
std::string openmetrics_text(const channel_counters &channels, const snapshot &now);

// A label value with backslash, double quote and newline escaped.
std::string label_value(std::string_view text);

} // namespace clsgw::metrics
