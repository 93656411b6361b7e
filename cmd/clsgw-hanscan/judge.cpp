#include "judge.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "../../lib/tls/cert_facts.hpp"
#include "../../lib/tls/tls.hpp"

namespace clsgw::hanscan {

namespace {
constexpr long CLOCK_WINDOW_S = 3600;
} // namespace

size_t randoms_near_clock(const std::vector<wire::bytes> &randoms, time_t now)
{
    size_t near = 0;
    for (const auto &r : randoms) {
        if (r.size() < 4)
            continue;
        uint32_t first = static_cast<uint32_t>(r[0]) << 24 | r[1] << 16 | r[2] << 8 | r[3];
        int64_t diff = static_cast<int64_t>(first) - static_cast<int64_t>(static_cast<uint32_t>(now));
        if (diff > -CLOCK_WINDOW_S && diff < CLOCK_WINDOW_S)
            near++;
    }
    return near;
}

void judge_random_time(report &rep, const std::vector<wire::bytes> &randoms, time_t now, const char *hello_name)
{
    const char *item = "RANDOM_TIME";
    if (randoms.empty()) {
        rep.info(item, std::string("no ") + hello_name + " seen");
        return;
    }
    size_t near = randoms_near_clock(randoms, now);
    size_t distinct = 0;
    for (size_t i = 0; i < randoms.size(); i++) {
        bool repeated = false;
        for (size_t j = 0; j < i; j++)
            repeated |= randoms[i] == randoms[j];
        distinct += !repeated;
    }
    std::string counted = std::to_string(randoms.size()) + " " + hello_name + ".random";
    // A random value falls within the hour by chance once in about 600000 draws.
    if (near >= 2 || (near == 1 && randoms.size() < 4))
        rep.fail(item, std::to_string(near) + " of " + counted + " start with the clock (within 1 h of now)");
    else if (near == 1)
        rep.info(item, "1 of " + counted + " starts within 1 h of the clock (chance about 1 in 600000)");
    else
        rep.pass(item, "none of " + counted + " starts with the clock");
    if (distinct != randoms.size())
        rep.fail(item, std::to_string(randoms.size() - distinct) + " " + hello_name + ".random values repeat");
}

void judge_certificate(report &rep, const char *item, const wire::bytes &leaf)
{
    tls::certificate_facts f = tls::inspect_certificate(leaf);
    if (!f.parsed) {
        rep.fail(item, "certificate does not parse: " + f.error);
        return;
    }
    std::string what = "certificate " + f.subject + ": " + f.curve + ", " + f.signature + ", valid " +
                       f.valid_from + " to " + f.valid_to;
    std::vector<std::string> defects = f.defects();
    if (defects.empty()) {
        // without a keyUsage extension every usage is allowed: the evidence says so rather than
        // naming a digitalSignature bit the certificate does not carry
        rep.pass(item, what + (f.key_usage_listed ? ", digitalSignature" : ", no keyUsage extension (any usage)"));
        return;
    }
    for (const auto &d : defects)
        rep.fail(item, "certificate " + f.subject + ": " + d);
}

void collect_randoms(const wire::record_reader &peer, uint8_t hello_type, std::vector<wire::bytes> &into)
{
    for (const auto &m : peer.messages) {
        if (m.type != hello_type || m.body.size() < 34)
            continue;
        if (hello_type == wire::HS_SERVER_HELLO) {
            auto h = wire::parse_server_hello(m.body.data(), m.body.size());
            if (!h || h->is_retry_request())
                continue;
        }
        into.emplace_back(m.body.begin() + 2, m.body.begin() + 34);
    }
}

wire::bytes own_verify_data(endpoint &e, tls::sealed_session &sealed, bool we_are_client)
{
    wire::record_reader ours = e.sent();
    if (ours.sealed.empty() || ours.sealed[0].type != wire::CONTENT_HANDSHAKE)
        return {};
    sealed.set_sequence(we_are_client, 0);
    auto finished = sealed.open(we_are_client, wire::CONTENT_HANDSHAKE, ours.sealed[0].body);
    if (!finished || finished->size() != 16 || (*finished)[0] != wire::HS_FINISHED)
        return {};
    return wire::bytes(finished->begin() + 4, finished->end());
}

namespace {

bool answered_in_session(const wire::record_reader &r)
{
    for (const auto &s : r.sealed)
        if (s.type == wire::CONTENT_ALERT || s.type == wire::CONTENT_HANDSHAKE)
            return true;
    return r.sealed.size() >= 16;
}

} // namespace

bool renegotiation_answer(endpoint &e, int fd, tls::sealed_session &sealed, bool we_are_client,
                          const wire::bytes &message, uint8_t renegotiating, uint64_t wait_ms,
                          std::string &evidence)
{
    wire::bytes record = sealed.seal(we_are_client, wire::CONTENT_HANDSHAKE, message);
    if (record.empty() || send(fd, record.data(), record.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(record.size())) {
        evidence = "the session ended before the probe could be sent";
        return false;
    }
    wire::record_reader r;
    r.change_cipher_spec = true; // everything that follows is sealed
    wait_end end = read_records(fd, e.unread(), r, now_ms() + wait_ms, answered_in_session);
    for (const auto &s : r.sealed) {
        auto plain = sealed.open(!we_are_client, s.type, s.body);
        if (!plain) {
            evidence = "answered with a record that does not decrypt";
            return false;
        }
        if (s.type == wire::CONTENT_HANDSHAKE && !plain->empty()) {
            bool renegotiated = (*plain)[0] == renegotiating;
            evidence = renegotiated ? std::string("renegotiated: answered with ") +
                                          (renegotiating == wire::HS_SERVER_HELLO ? "a ServerHello" : "a ClientHello")
                                    : "answered with handshake message " + std::to_string((*plain)[0]);
            return renegotiated;
        }
        if (s.type == wire::CONTENT_ALERT && plain->size() == 2) {
            evidence = std::string((*plain)[0] == 1 ? "refused with a warning " : "refused with a fatal ") +
                       alert_name((*plain)[1]) + " alert";
            return false;
        }
    }
    if (end == wait_end::timeout)
        evidence = "ignored (no answer within " + timeout_text("renegotiation_wait", wait_ms) + ")";
    else
        evidence = end == wait_end::closed ? "refused by closing the connection" : "refused by resetting the connection";
    return false;
}

} // namespace clsgw::hanscan
