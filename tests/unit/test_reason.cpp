#include <doctest/doctest.h>

#include <signal.h>

#include <cerrno>
#include <fstream>
#include <set>
#include <string>

#include "../../lib/ipc.hpp"
#include "../../lib/ipc_rules.hpp"
#include "../../lib/job.hpp"
#include "../../lib/reason.hpp"
#include "../../lib/socks5.hpp"

using namespace clsgw;

namespace {

const upstream_failure ALL[] = {upstream_failure::backoff, upstream_failure::connection_refused,
                                upstream_failure::network_unreachable, upstream_failure::connect_timeout,
                                upstream_failure::unreachable};

const reason_view VIEWS[] = {reason_view::outbound, reason_view::inbound, reason_view::simulator};

// A detail that fits each kind, so that every row can be sent.
uint16_t sample_detail(reason_detail kind)
{
    switch (kind) {
    case reason_detail::none: return 0;
    case reason_detail::alert: return 99; // an alert without a name
    case reason_detail::socks5_reply: return socks5::REP_CONNECTION_REFUSED;
    case reason_detail::signal: return SIGABRT;
    case reason_detail::attack: return static_cast<uint16_t>(hostile_attacks().size() - 1);
    }
    return 0;
}

bool from_worker(const reason_entry &e) { return e.source == reason_source::worker || e.source == reason_source::both; }

std::optional<worker_result> result_with(channel_reason why)
{
    worker_result r;
    r.result = outcome::failed;
    r.reason = why;
    r.target = "emt.example:4443";
    std::string err;
    return decode_result(encode_result(r), err);
}

// The result's fields as TLV tags (job.cpp): 2 the reason's code, 15 its detail.
bytes result_with_raw_reason(bool code_as_text)
{
    tlv_writer w;
    w.add_u64(1, 2);
    if (code_as_text)
        w.add(2, std::string("smgw_tls_error"));
    else
        w.add_u64(2, static_cast<uint64_t>(reason_code::tls_error));
    w.add(3, std::string("")).add(4, std::string("")).add(5, std::string("")).add(6, std::string("")).add(7, std::string(""));
    for (uint16_t tag = 8; tag <= 14; tag++)
        w.add_u64(tag, 0);
    w.add_u64(15, 0);
    return w.data();
}

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

TEST_CASE("every reason a worker gives round-trips through the result codec, code and detail")
{
    size_t sent = 0;
    for (const auto &e : reason_table()) {
        channel_reason why{e.code, sample_detail(e.detail)};
        CAPTURE(reason_name(why, reason_view::outbound));
        REQUIRE(reason_valid(why));
        auto back = result_with(why);
        if (from_worker(e)) {
            REQUIRE(back);
            CHECK(back->reason == why);
            sent++;
        } else {
            CHECK_FALSE(back.has_value()); // a worker cannot claim the master's reasons (or the simulator's)
        }
    }
    CHECK(sent > 50);
    for (auto f : ALL) // what the master tells the worker ends up in its result
        CHECK(result_with(reason_for(f))->reason == reason_for(f));
}

TEST_CASE("an unknown reason code, a detail that does not fit, or the reason as text is refused")
{
    CHECK(result_with(reason_of(reason_code::cert_expired)).has_value());
    CHECK_FALSE(result_with(reason_of(reason_code::none)).has_value());
    CHECK_FALSE(result_with({static_cast<reason_code>(9999), 0}).has_value());
    CHECK_FALSE(result_with({static_cast<reason_code>(UINT16_MAX), 0}).has_value());
    uint16_t past_the_end = 0;
    for (const auto &e : reason_table())
        past_the_end = std::max<uint16_t>(past_the_end, static_cast<uint16_t>(static_cast<uint16_t>(e.code) + 1));
    CHECK_FALSE(reason_row(static_cast<reason_code>(past_the_end)));
    CHECK_FALSE(result_with({static_cast<reason_code>(past_the_end), 0}).has_value());
    CHECK_FALSE(result_with({reason_code::cert_expired, 1}).has_value());      // no detail to carry
    CHECK_FALSE(result_with({reason_code::peer_alert, 256}).has_value());      // alerts are one byte
    CHECK_FALSE(result_with({reason_code::smgw_failed, 300}).has_value());     // SOCKS5 replies too
    CHECK_FALSE(result_with({reason_code::hostile, static_cast<uint16_t>(hostile_attacks().size())}).has_value());
    CHECK_FALSE(result_with(worker_died_reason(SIGKILL)).has_value());          // the master's
    CHECK_FALSE(result_with(reason_of(reason_code::worker_protocol_violation)).has_value());
    std::string err;
    CHECK(decode_result(result_with_raw_reason(false), err).has_value());
    CHECK_FALSE(decode_result(result_with_raw_reason(true), err).has_value()); // the former text field
}

TEST_CASE("a result with every text field at its longest fits the result message's size limit")
{
    worker_result r;
    r.reason = peer_alert_reason(255);
    r.target = std::string(300, 't');
    r.tls_version = std::string(32, 'v');
    r.cipher_suite = std::string(80, 's');
    r.group = std::string(32, 'g');
    r.peer_fingerprint = std::string(64, 'f');
    r.bytes_up = r.bytes_down = r.handshake_ms = r.duration_ms = r.smgw_wait_us = r.signer_us = UINT64_MAX;
    bytes encoded = encode_result(r);
    std::string err;
    REQUIRE(decode_result(encoded, err).has_value());
    CHECK(encoded.size() <= ipc_rule_for(msg_type::result)->max_payload);
}

TEST_CASE("names are unique in each view, and differ between views only for a side's reasons")
{
    for (auto view : VIEWS) {
        std::set<std::string> names;
        for (const auto &e : reason_table())
            names.insert(reason_doc_name(e, view));
        CHECK(names.size() == reason_table().size());
    }
    std::set<reason_code> codes;
    for (const auto &e : reason_table()) {
        codes.insert(e.code);
        CHECK(e.code != reason_code::none);
        std::string out = e.outbound, in = e.inbound;
        bool side = out.rfind("app_", 0) == 0 || out.rfind("smgw_", 0) == 0;
        if (out != in)
            CHECK(side);
    }
    CHECK(codes.size() == reason_table().size());
}

TEST_CASE("side reasons are named for the view: app or service, smgw or device")
{
    auto named = [](reason_code c, reason_view v) { return reason_name(reason_of(c), v); };
    CHECK(named(reason_code::plain_closed, reason_view::outbound) == "app_closed");
    CHECK(named(reason_code::plain_closed, reason_view::inbound) == "service_closed");
    CHECK(named(reason_code::plain_closed, reason_view::simulator) == "emt_closed");
    CHECK(named(reason_code::tls_closed, reason_view::inbound) == "smgw_closed");
    CHECK(named(reason_code::tls_closed, reason_view::simulator) == "device_closed");
    CHECK(named(reason_code::tls_closed_without_close_notify, reason_view::outbound) == "smgw_closed_without_close_notify");
    CHECK(named(reason_code::tls_error, reason_view::outbound) == "smgw_tls_error");
    CHECK(named(reason_code::cert_curve_not_offered, reason_view::inbound) == "cert_curve_not_offered");
    CHECK(reason_name(reason_of(reason_code::signer_unavailable), channel_direction::inbound) == "signer_unavailable");
}

TEST_CASE("a detail is named only when printed: alerts, with their number when they have no name, replies, signals, attacks")
{
    auto out = [](channel_reason r) { return reason_name(r, reason_view::outbound); };
    CHECK(out(peer_alert_reason(40)) == "peer_alert_handshake_failure");
    CHECK(out(peer_alert_reason(112)) == "peer_alert_unrecognized_name");
    CHECK(out(peer_alert_reason(47)) == "peer_alert_illegal_parameter");
    CHECK(out(peer_alert_reason(99)) == "peer_alert_unknown_99");
    CHECK(out(peer_alert_reason(0)) == "peer_alert_unknown_0");
    CHECK(out(peer_alert_reason(255)) == "peer_alert_unknown_255");
    CHECK(std::string(alert_name(99)) == "unknown");
    CHECK(out(smgw_failed_reason(socks5::REP_CONNECTION_REFUSED)) == "smgw_failed_connection_refused");
    CHECK(out(smgw_failed_reason(socks5::REP_GENERAL_FAILURE)) == "smgw_failed_general_failure");
    CHECK(out(reason_of(reason_code::smgw_refused_not_allowed)) == "smgw_refused_not_allowed_by_ruleset");
    CHECK(out(worker_died_reason(SIGABRT)) == "worker_died_SIGABRT");
    CHECK(out({reason_code::hostile, 1}) == "hostile_plant");
    CHECK(peer_alert_reason(40) != peer_alert_reason(47));
    CHECK(out({reason_code::cert_expired, 1}).rfind("unknown_reason_", 0) == 0); // never a made-up name
}

TEST_CASE("the SMGW's back-off follows the table: certificate refusals and our own side never count")
{
    const uint64_t timeout = 10000;
    for (const auto &e : reason_table()) {
        channel_reason why{e.code, sample_detail(e.detail)};
        std::string name = e.outbound;
        CAPTURE(name);
        bool counts = counts_against_smgw(why, false, timeout, timeout);
        CHECK(counts == (e.blame == smgw_blame::counts || e.blame == smgw_blame::if_half_the_time));
        if (name.rfind("cert_", 0) == 0 || e.code == reason_code::signer_failed)
            CHECK(e.blame == smgw_blame::not_smgw);
        CHECK_FALSE(counts_against_smgw(why, true, timeout, timeout)); // a refusal is the SMGW answering
    }
    for (auto f : ALL)
        CHECK_FALSE(counts_against_smgw(reason_for(f), false, timeout, timeout)); // counted by clsgwd's connect
    CHECK(counts_against_smgw(reason_of(reason_code::tls_error), false, 0, timeout));
    CHECK(counts_against_smgw(peer_alert_reason(40), false, timeout, timeout));
    CHECK(counts_against_smgw(std::nullopt, false, 0, timeout)); // a worker that left no reason
    CHECK_FALSE(counts_against_smgw(reason_of(reason_code::cert_untrusted), false, timeout, timeout));
    CHECK_FALSE(counts_against_smgw(reason_of(reason_code::worker_protocol_violation), false, timeout, timeout));
    CHECK_FALSE(counts_against_smgw(reason_of(reason_code::worker_not_reading), false, timeout, timeout));
    // a handshake timeout counts only when the SMGW had at least half of handshake_timeout
    channel_reason late = reason_of(reason_code::handshake_timeout);
    CHECK_FALSE(counts_against_smgw(late, false, 0, timeout));
    CHECK_FALSE(counts_against_smgw(late, false, timeout / 2 - 1, timeout));
    CHECK(counts_against_smgw(late, false, timeout / 2, timeout));
}

TEST_CASE("docs/reasons.md lists exactly the table's names")
{
    std::string here = __FILE__;
    std::string path = here.substr(0, here.rfind("tests/unit/")) + "docs/reasons.md";
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), path);
    std::set<std::string> listed;
    std::string line;
    while (std::getline(in, line)) // rows: | `name` | ...
        if (line.rfind("| `", 0) == 0)
            listed.insert(line.substr(3, line.find('`', 3) - 3));
    std::set<std::string> table;
    for (const auto &e : reason_table())
        if (e.source != reason_source::simulator)
            for (auto view : {reason_view::outbound, reason_view::inbound})
                table.insert(reason_doc_name(e, view));
    for (const auto &name : table)
        CHECK_MESSAGE(listed.count(name), name << " is not in " << path);
    for (const auto &name : listed)
        CHECK_MESSAGE(table.count(name), name << " in " << path << " is not in the table");
}
