#include <doctest/doctest.h>

#include "../../lib/metrics.hpp"

using namespace clsgw;

TEST_CASE("metrics count bytes of every channel and handshake times into cumulative buckets")
{
    metrics::channel_counters c;
    c.finished(100, 200, 20);     // 0.025 s bucket
    c.finished(1, 2, 26);         // 0.05 s
    c.finished(5, 5, std::nullopt); // never reached TLS: bytes only
    c.finished(0, 0, 60000);      // beyond the last bucket: +Inf only
    CHECK(c.bytes_up() == 106);
    CHECK(c.bytes_down() == 207);
    CHECK(c.handshakes() == 3);
    CHECK(c.handshake_ms_sum() == 60046);
    CHECK(c.handshakes_within(0) == 1);
    CHECK(c.handshakes_within(1) == 2);
    CHECK(c.handshakes_within(metrics::HANDSHAKE_BUCKETS - 1) == 2);
}

TEST_CASE("metrics text is OpenMetrics: families typed, counters as _total, label values escaped, # EOF last")
{
    metrics::channel_counters c;
    c.finished(10, 20, 1500);
    metrics::snapshot now;
    now.version = "0.1 (mbedTLS 3.6.6)";
    now.open_channels = 2;
    now.open_bytes_up = 5;
    now.outcomes = {{"ok/app_closed", 3}, {"failed/odd\"reason\\", 1}};
    now.certificates = {{"identity", "CN=a\nb", "/etc/clsgw/device.crt", -4}};
    std::string text = metrics::openmetrics_text(c, now);
    CHECK(text.find("# TYPE clsgw_channels_finished counter\n") != std::string::npos);
    CHECK(text.find("clsgw_channels_finished_total{outcome=\"ok\",reason=\"app_closed\"} 3\n") != std::string::npos);
    CHECK(text.find("clsgw_channels_finished_total{outcome=\"failed\",reason=\"odd\\\"reason\\\\\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("clsgw_handshake_seconds_bucket{le=\"1\"} 0\n") != std::string::npos);
    CHECK(text.find("clsgw_handshake_seconds_bucket{le=\"2.5\"} 1\n") != std::string::npos);
    CHECK(text.find("clsgw_handshake_seconds_sum 1.5\n") != std::string::npos);
    CHECK(text.find("clsgw_bytes_up_total 15\n") != std::string::npos); // finished and still open
    CHECK(text.find("clsgw_signer_up 0\n") != std::string::npos);
    CHECK(text.find("clsgw_signer_signatures_total") == std::string::npos); // no answer, no sample
    CHECK(text.find("subject=\"CN=a\\nb\"") != std::string::npos);
    CHECK(text.find("} -4\n") != std::string::npos);
    REQUIRE(text.size() > 6);
    CHECK(text.substr(text.size() - 6) == "# EOF\n");
    now.signer = metrics::signer_counts{7, 1, 0};
    text = metrics::openmetrics_text(c, now);
    CHECK(text.find("clsgw_signer_up 1\nclsgw") == std::string::npos); // each family's samples follow its own header
    CHECK(text.find("# HELP clsgw_signer_signatures Signatures the running clsgw-signer made since its start.\n"
                    "clsgw_signer_signatures_total 7\n") != std::string::npos);
}
