#include "metrics.hpp"

#include <cstdio>

namespace clsgw::metrics {

namespace {

// Milliseconds as seconds in decimal: 1500 -> "1.5".
std::string seconds(uint64_t ms)
{
    std::string text = std::to_string(ms / 1000);
    if (uint64_t rest = ms % 1000) {
        char frac[8];
        snprintf(frac, sizeof frac, ".%03u", static_cast<unsigned>(rest));
        text += frac;
        while (text.back() == '0')
            text.pop_back();
    }
    return text;
}

// One metric family: its TYPE, HELP and samples, in the order OpenMetrics asks for.
class family {
public:
    family(std::string &out, const char *name, const char *type, const char *help) : out_(out), name_(name)
    {
        out_ += std::string("# TYPE ") + name + " " + type + "\n# HELP " + name + " " + help + "\n";
    }
    family &sample(const char *suffix, const std::string &labels, const std::string &value)
    {
        out_ += name_ + suffix + (labels.empty() ? "" : "{" + labels + "}") + " " + value + "\n";
        return *this;
    }

private:
    std::string &out_;
    std::string name_;
};

std::string label(const char *name, std::string_view value) { return std::string(name) + "=\"" + label_value(value) + "\""; }

} // namespace

void channel_counters::finished(uint64_t bytes_up, uint64_t bytes_down, std::optional<uint64_t> handshake_ms)
{
    bytes_up_ += bytes_up;
    bytes_down_ += bytes_down;
    if (!handshake_ms)
        return;
    handshakes_++;
    handshake_ms_sum_ += *handshake_ms;
    for (size_t i = 0; i < HANDSHAKE_BUCKETS; i++)
        if (*handshake_ms <= HANDSHAKE_BUCKETS_MS[i]) {
            bucket_counts_[i]++;
            break;
        }
}

uint64_t channel_counters::handshakes_within(size_t bucket) const
{
    uint64_t n = 0;
    for (size_t i = 0; i <= bucket && i < HANDSHAKE_BUCKETS; i++)
        n += bucket_counts_[i];
    return n;
}

std::string label_value(std::string_view text)
{
    std::string out;
    for (char c : text) {
        if (c == '\\' || c == '"')
            out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

std::string openmetrics_text(const channel_counters &channels, const snapshot &now)
{
    std::string out;
    family(out, "clsgw_build_info", "gauge", "clsgw's version and the mbedTLS it is linked with.")
        .sample("", label("version", now.version), "1");
    family(out, "clsgw_channels_open", "gauge", "Channels open now.").sample("", "", std::to_string(now.open_channels));
    family(out, "clsgw_channels_max", "gauge", "max_channels: beyond it connections wait in the listen backlog.")
        .sample("", "", std::to_string(now.max_channels));
    family(out, "clsgw_channels_accepted", "counter", "Connections clsgwd accepted as channels since it started.")
        .sample("_total", "", std::to_string(now.accepted));
    family finished(out, "clsgw_channels_finished", "counter",
                    "Channels that ended since clsgwd started, by outcome and reason (as in their log lines).");
    for (const auto &[key, count] : now.outcomes) {
        size_t slash = key.find('/');
        finished.sample("_total", label("outcome", key.substr(0, slash)) + "," +
                                      label("reason", slash == std::string::npos ? "" : key.substr(slash + 1)),
                        std::to_string(count));
    }
    family handshakes(out, "clsgw_handshake_seconds", "histogram",
                      "Time from accept to a completed TLS handshake, of channels that ended.");
    for (size_t i = 0; i < HANDSHAKE_BUCKETS; i++)
        handshakes.sample("_bucket", label("le", seconds(HANDSHAKE_BUCKETS_MS[i])),
                          std::to_string(channels.handshakes_within(i)));
    handshakes.sample("_bucket", label("le", "+Inf"), std::to_string(channels.handshakes()))
        .sample("_count", "", std::to_string(channels.handshakes()))
        .sample("_sum", "", seconds(channels.handshake_ms_sum()));
    family(out, "clsgw_bytes_up", "counter", "Bytes from the device side toward the SMGW (bytes_up), open channels included.")
        .sample("_total", "", std::to_string(channels.bytes_up() + now.open_bytes_up));
    family(out, "clsgw_bytes_down", "counter", "Bytes from the SMGW toward the device side (bytes_down), open channels included.")
        .sample("_total", "", std::to_string(channels.bytes_down() + now.open_bytes_down));
    family(out, "clsgw_smgw_backoff_seconds", "gauge", "How long new outbound channels still fail at once (SMGW back-off).")
        .sample("", "", seconds(now.smgw_backoff_ms_left));
    family(out, "clsgw_signer_up", "gauge", "1 when clsgw-signer answered this export's liveness probe, else 0.")
        .sample("", "", now.signer ? "1" : "0");
    // Counted by the signer: without its answer these families have no sample.
    family signatures(out, "clsgw_signer_signatures", "counter", "Signatures the running clsgw-signer made since its start.");
    if (now.signer)
        signatures.sample("_total", "", std::to_string(now.signer->signatures));
    family refusals(out, "clsgw_signer_refusals", "counter", "Requests the running clsgw-signer refused since its start.");
    if (now.signer)
        refusals.sample("_total", "", std::to_string(now.signer->refusals));
    family sessions(out, "clsgw_signer_sessions", "gauge", "Signer sessions open now (one per channel in its handshake).");
    if (now.signer)
        sessions.sample("", "", std::to_string(now.signer->sessions));
    family days(out, "clsgw_certificate_days_left", "gauge",
                "Whole days until a certificate expires (negative: expired); identity and trust.");
    for (const auto &c : now.certificates)
        days.sample("", label("role", c.role) + "," + label("subject", c.subject) + "," + label("path", c.path),
                    std::to_string(c.days_left));
    return out + "# EOF\n";
}

} // namespace clsgw::metrics
