// Client mode: clsgw-hanscan plays the SMGW as TLS server for a device's HAN TLS client (HKS3)
// and judges what the device sends over N connections. Connection 2 presents an untrusted and
// connection 3 an expired SMGW certificate, which the device must refuse; the others present
// --cert, and the first of them sends a HelloRequest inside the session, which it must refuse.
#include <mbedtls/ssl_ticket.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include "../../lib/net.hpp"
#include "judge.hpp"
#include "probe.hpp"
#include "scan.hpp"

namespace clsgw::hanscan {

namespace {

constexpr uint32_t TICKET_LIFETIME_S = 48 * 3600;

std::string list_text(const std::vector<std::string> &parts)
{
    std::string out;
    for (const auto &p : parts)
        out += (out.empty() ? "" : ", ") + p;
    return out;
}

bool is_tls13_suite(uint16_t suite)
{
    return suite >> 8 == 0x13;
}

void judge_versions(report &rep, const wire::client_hello &h)
{
    if (h.version == wire::VERSION_TLS12)
        rep.pass("TLS_1.2", "ClientHello offers TLS 1.2 (client_version 3,3)");
    else
        rep.fail("TLS_1.2", "ClientHello client_version is " + wire::version_name(h.version));
    if (const wire::extension *v = h.find(wire::EXT_SUPPORTED_VERSIONS)) {
        for (size_t i = 1; i + 1 < v->data.size(); i += 2) {
            uint16_t version = static_cast<uint16_t>(v->data[i] << 8 | v->data[i + 1]);
            if (version != wire::VERSION_TLS12 && (version & 0xff00) == 0x0300)
                rep.fail("TLS_1.2", "supported_versions offers " + wire::version_name(version));
        }
    }
}

void judge_algorithms(report &rep, const wire::client_hello &h)
{
    std::vector<std::string> outside, offered, no_pfs;
    for (uint16_t s : h.suites) {
        if (s == wire::SUITE_RENEGOTIATION_SCSV || is_tls13_suite(s)) // TLS 1.3 suites: judged as TLS_1.2
            continue;
        std::string name = wire::hex16(s) + " " + wire::suite_name(s);
        (in_profile(PROFILE_SUITES, s) ? offered : outside).push_back(name);
        std::string plain = wire::suite_name(s);
        if (plain.rfind("ECDHE-", 0) != 0 && plain.rfind("DHE-", 0) != 0)
            no_pfs.push_back(name);
    }
    for (const auto &name : outside)
        rep.fail("ECC", "suite outside the profile offered: " + name);
    if (offered.empty())
        rep.fail("ECC", "none of the profile's suites offered");
    else
        rep.pass("ECC", "profile suites offered: " + list_text(offered));
    for (const auto &name : no_pfs)
        rep.fail("PFS", "suite without forward secrecy offered: " + name);
    if (no_pfs.empty())
        rep.pass("PFS", "every suite offered is ECDHE");
    auto check_list = [&](uint16_t type, const std::vector<uint16_t> &profile, const char *what,
                          const char *(*name)(uint16_t)) {
        const wire::extension *x = h.find(type);
        auto list = x ? wire::parse_u16_list(x->data) : std::nullopt;
        if (!list) {
            rep.fail("ECC", std::string(what) + (x ? " do not parse" : " not offered"));
            return;
        }
        std::vector<std::string> in, out;
        for (uint16_t v : *list)
            (in_profile(profile, v) ? in : out).push_back(name(v));
        if (!out.empty())
            rep.fail("ECC", std::string(what) + " outside the profile offered: " + list_text(out));
        if (!in.empty())
            rep.pass("ECC", std::string(what) + " offered: " + list_text(in));
    };
    check_list(wire::EXT_SUPPORTED_GROUPS, PROFILE_GROUPS, "groups", wire::group_name);
    check_list(wire::EXT_SIGNATURE_ALGORITHMS, PROFILE_SIGNATURES, "signature algorithms",
               wire::signature_algorithm_name);
}

void judge_extensions(report &rep, const wire::client_hello &h)
{
    if (h.compression == std::vector<uint8_t>{0})
        rep.pass("NO_COMPRESSION", "only null compression offered");
    else
        rep.fail("NO_COMPRESSION", "compression methods offered: " + std::to_string(h.compression.size()));
    if (h.find(wire::EXT_TRUNCATED_HMAC))
        rep.fail("NO_TRUNC_HMAC", "truncated_hmac offered");
    else
        rep.pass("NO_TRUNC_HMAC", "truncated_hmac not offered");
    bool cbc = std::any_of(h.suites.begin(), h.suites.end(), [](uint16_t s) { return s == 0xC023 || s == 0xC024; });
    if (h.find(wire::EXT_ENCRYPT_THEN_MAC))
        rep.pass("ENC_THEN_MAC", "encrypt_then_mac offered");
    else if (cbc)
        rep.fail("ENC_THEN_MAC", "CBC suites offered without encrypt_then_mac");
    else
        rep.info("ENC_THEN_MAC", "no CBC suite offered, no encrypt_then_mac");
    if (h.find(wire::EXT_EXTENDED_MASTER_SECRET))
        rep.pass("EXT_MASTER_SECRET", "extended_master_secret offered");
    else
        rep.fail("EXT_MASTER_SECRET", "extended_master_secret not offered");
    if (h.find(wire::EXT_SESSION_TICKET))
        rep.info("SESSION_TICKET", "session_ticket offered");
}

// Tickets for the device, with one key for the whole scan: a later connection may resume.
struct ticket_keys {
    mbedtls_ssl_ticket_context ctx;
    bool ready = false;
    explicit ticket_keys(tls::rng &rng)
    {
        mbedtls_ssl_ticket_init(&ctx);
        ready = mbedtls_ssl_ticket_setup(&ctx, tls::rng::random, &rng, MBEDTLS_CIPHER_AES_256_GCM, TICKET_LIFETIME_S) == 0;
    }
    ~ticket_keys() { mbedtls_ssl_ticket_free(&ctx); }
};

// The device's next connection; none by the deadline, or `error` when accepting itself fails
// (out of fds: the connection waits in the backlog, and polling again would only spin).
unique_fd accept_with_deadline(int listener, uint64_t deadline_ms, std::string &error)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline_ms)
            return unique_fd();
        pollfd p{listener, POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(std::min<uint64_t>(deadline_ms - now, 60000))) <= 0)
            continue;
        int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0)
            return unique_fd(fd);
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
            error = "cannot accept the device's connection: " + errno_text(errno);
            return unique_fd();
        }
    }
}

struct client_scan {
    const scan_options &opt;
    report &rep;
    tls::rng &rng;
    identity &own, &untrusted, &expired;
    tls::cert_list &trust;
    ticket_keys &tickets;
    std::vector<wire::bytes> randoms;
    bool renegotiation_probed = false, certificate_judged = false;
    unsigned trusted_sessions = 0;
    std::string untestable; // why a trusted handshake failed for no fault the scan can name
    std::string accept_error;

    // Reads the device's ClientHello of this connection and judges it.
    void judge_hello(endpoint &e, unsigned n)
    {
        wire::record_reader in = e.received();
        collect_randoms(in, wire::HS_CLIENT_HELLO, randoms);
        for (const auto &m : in.messages) {
            if (m.type != wire::HS_CLIENT_HELLO)
                continue;
            auto hello = wire::parse_client_hello(m.body.data(), m.body.size());
            if (!hello) {
                rep.fail("TLS_1.2", "connection " + std::to_string(n) + ": ClientHello does not parse");
                return;
            }
            judge_versions(rep, *hello);
            judge_algorithms(rep, *hello);
            judge_extensions(rep, *hello);
            if (!hello->session_id.empty())
                rep.info("SESSION_ID", "connection " + std::to_string(n) + " offers a session id");
            return;
        }
        if (in.malformed)
            rep.fail("TLS_1.2", "connection " + std::to_string(n) + ": not TLS: " + in.malformed_reason);
    }

    void trusted(endpoint &e, bool ok, int fd, unsigned n)
    {
        std::string at = "connection " + std::to_string(n) + ": ";
        if (!ok) {
            uint32_t flags = e.verify_flags();
            if (e.failure.find("no_client_certificate") != std::string::npos)
                rep.fail("CLIENT_CERT", at + "no client certificate presented");
            else if (flags != 0 && flags != UINT32_MAX)
                rep.fail("CLIENT_CERT", at + "device certificate not accepted with --trust: " + reason_name(tls::verify_reason(flags), reason_view::simulator));
            else
                untestable = "the handshake with the SMGW certificate of --cert failed: " + e.failure;
            return;
        }
        trusted_sessions++;
        if (e.resumed()) {
            rep.pass("SESSION_TICKET", at + "resumed with a ticket from an earlier connection");
        } else if (!certificate_judged) {
            certificate_judged = true;
            const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(e.ssl());
            rep.pass("CLIENT_CERT", "the device presented a certificate, verified against --trust");
            if (peer)
                judge_certificate(rep, "CLIENT_CERT", wire::bytes(peer->raw.p, peer->raw.p + peer->raw.len));
        }
        if (renegotiation_probed || !hello_request(e, fd))
            mbedtls_ssl_close_notify(e.ssl()); // best effort: the socket is closed right after
    }

    // True when the session was ended by hand (its records are no longer mbedTLS's to write).
    bool hello_request(endpoint &e, int fd)
    {
        tls::sealed_session sealed;
        if (!e.seal_keys(sealed)) {
            rep.info("NO_RENEGOTIATION", "HelloRequest not sent: the session's suite is not AES-GCM");
            return false;
        }
        renegotiation_probed = true;
        const wire::bytes hello_request{wire::HS_HELLO_REQUEST, 0, 0, 0};
        std::string evidence;
        if (renegotiation_answer(e, fd, sealed, false, hello_request, wire::HS_CLIENT_HELLO, opt.limits.renegotiation_ms,
                                 evidence))
            rep.fail("NO_RENEGOTIATION", "HelloRequest: " + evidence);
        else
            rep.pass("NO_RENEGOTIATION", "HelloRequest " + evidence);
        // The session's records are ours now: close it with a sealed close_notify.
        wire::bytes close = sealed.seal(false, wire::CONTENT_ALERT, {1, 0});
        if (!close.empty())
            (void)!send(fd, close.data(), close.size(), MSG_NOSIGNAL);
        return true;
    }

    void refused(endpoint &e, bool ok, const std::string &what)
    {
        if (ok) {
            rep.fail("CHECK_CERTS", what + " accepted: the handshake completed");
            return;
        }
        if (e.peer_alerted || e.failure.find("closed by") == 0 || e.failure.find("reset by") == 0)
            rep.pass("CHECK_CERTS", what + " refused: " + e.failure);
        else
            rep.info("CHECK_CERTS", what + " not judged: " + e.failure);
    }

    // One connection of the device; false when none came within accept_timeout.
    bool serve(int listener, unsigned n)
    {
        unique_fd fd = accept_with_deadline(listener, now_ms() + opt.limits.accept_ms, accept_error);
        if (!fd)
            return false;
        endpoint_settings s;
        s.is_client = false;
        s.trust = &trust;
        s.own = n == 2 ? &untrusted : n == 3 ? &expired : &own;
        s.ticket_keys = n == 2 || n == 3 || !tickets.ready ? nullptr : &tickets.ctx;
        endpoint e(rng, s);
        bool ok = e.handshake(fd.get(), opt.limits.handshake_ms);
        judge_hello(e, n);
        if (n == 2)
            refused(e, ok, "an untrusted SMGW certificate (self-signed, unknown key)");
        else if (n == 3)
            refused(e, ok, "an expired SMGW certificate (same key and subject)");
        else
            trusted(e, ok, fd.get(), n);
        return true;
    }
};

} // namespace

int scan_client(const scan_options &o)
{
    report rep("client", o.address);
    tls::rng rng;
    identity own, untrusted, expired;
    tls::cert_list trust;
    auto address = parse_sock_address(o.address);
    unique_fd listener;
    std::string error = load_scan_files(o.cert, o.key, o.trust, rng, own, trust);
    if (!error.empty())
        rep.could_not_test(error);
    else if (!make_untrusted_identity(untrusted, rng, error) || !make_expired_identity(expired, own, rng, error))
        rep.could_not_test("cannot make the test certificates: " + error);
    else if (!address)
        rep.could_not_test("--listen " + o.address + ": expected a numeric HOST:PORT");
    else if (!(listener = listen_on(*address, 16)))
        rep.could_not_test("cannot listen on " + o.address + ": " + errno_text(errno));
    if (rep.stopped()) {
        rep.print(o.json);
        return rep.exit_status();
    }
    fprintf(stderr, "clsgw-hanscan: listening on %s for %u connections of the device\n", o.address.c_str(),
            o.connections);
    ticket_keys tickets(rng);
    client_scan scan{o, rep, rng, own, untrusted, expired, trust, tickets, {}, false, false, 0, {}, {}};
    unsigned served = 0;
    while (served < o.connections && scan.serve(listener.get(), served + 1))
        served++;
    listener.reset(); // no device connects to a finished scan (and its descriptor is free again)
    if (!scan.accept_error.empty())
        rep.could_not_test(scan.accept_error);
    else if (scan.trusted_sessions == 0 && !scan.untestable.empty())
        rep.could_not_test(scan.untestable); // a device that refuses every SMGW proves nothing by refusing two
    else if (served < 3)
        rep.could_not_test(std::to_string(served) + " of " + std::to_string(o.connections) +
                           " connections came within " + timeout_text("accept_timeout", o.limits.accept_ms));
    else if (served < o.connections)
        rep.info("SESSION_TICKET", std::to_string(served) + " of " + std::to_string(o.connections) +
                                       " connections came within " + timeout_text("accept_timeout", o.limits.accept_ms));
    if (!scan.renegotiation_probed)
        rep.info("NO_RENEGOTIATION", "no trusted session to send a HelloRequest in");
    rep.info("DURATION", "a client's session lifetime is not visible on the wire within one scan");
    rep.info("SERVER_CERT", "the SMGW's certificate is --cert; the device's checking of it is CHECK_CERTS");
    judge_random_time(rep, scan.randoms, time(nullptr), "ClientHello");
    rep.print(o.json);
    return rep.exit_status();
}

} // namespace clsgw::hanscan
