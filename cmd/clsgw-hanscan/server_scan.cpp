// Server mode: clsgw-hanscan plays the SMGW as TLS client against a device's HAN TLS server
// (HKS4/HKS5). Hand-made hellos first (server_probes.cpp), then whole handshakes made by mbedTLS
// with the profile: trust, client certificates, renegotiation, resumption and its lifetime.
#include <mbedtls/ssl.h>

#include <sys/random.h>

#include <cerrno>
#include <ctime>

#include "judge.hpp"
#include "scan.hpp"
#include "server_probes.hpp"

namespace clsgw::hanscan {

namespace {

constexpr uint32_t MAX_LIFETIME_S = 48 * 3600; // TR-03116-3: no session lives longer
constexpr int RESUME_ATTEMPTS = 5;
const std::string DEVICE_GONE = "the device stopped taking connections during the scan: ";

// The GCM suites only: records of our own can then be sealed after the handshake.
const int GCM_SUITES[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                          MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, 0};

struct server_scan {
    const scan_options &opt;
    report &rep;
    tls::rng &rng;
    identity &own;
    tls::cert_list &trust;
    std::vector<wire::bytes> randoms;

    struct connection {
        unique_fd fd;
        std::unique_ptr<endpoint> tls;
        bool ok = false;
    };

    // One handshake with the device; `error` is set when the device could not be reached.
    connection handshake(endpoint_settings settings, std::string &error)
    {
        connection c;
        settings.is_client = true;
        settings.trust = &trust;
        settings.server_name = opt.server_name;
        c.fd = connect_with_deadline(opt.address, opt.limits.connect_ms, error);
        if (!c.fd) {
            rep.could_not_test(DEVICE_GONE + error);
            return c;
        }
        c.tls = std::make_unique<endpoint>(rng, settings);
        c.ok = c.tls->handshake(c.fd.get(), opt.limits.handshake_ms);
        collect_randoms(c.tls->received(), wire::HS_SERVER_HELLO, randoms);
        return c;
    }

    static std::optional<uint32_t> ticket_lifetime(const endpoint &e)
    {
        for (const auto &m : e.received().messages)
            if (m.type == wire::HS_NEW_SESSION_TICKET)
                return wire::parse_new_session_ticket(m.body.data(), m.body.size());
        return std::nullopt;
    }

    // The trusted handshake: the device's certificate against --trust, its ticket, and a secure
    // renegotiation attempt inside the session. False: the scan cannot go on.
    bool trusted_session()
    {
        endpoint_settings s;
        s.own = &own;
        s.suites = GCM_SUITES;
        std::string error;
        connection c = handshake(s, error);
        if (!c.fd)
            return false;
        if (!c.ok) {
            uint32_t flags = c.tls->verify_flags();
            if (flags != 0 && flags != UINT32_MAX) {
                rep.fail("SERVER_CERT", "device certificate not accepted with --trust: " + reason_name(tls::verify_reason(flags), reason_view::simulator));
                return true;
            }
            rep.could_not_test("a handshake of the profile with the SMGW certificate of --cert failed: " + c.tls->failure);
            return false;
        }
        rep.pass("SERVER_CERT", "device certificate verified against --trust");
        judge_ticket(*c.tls);
        renegotiate(c, true);
        return true;
    }

    void judge_ticket(const endpoint &e)
    {
        auto hint = ticket_lifetime(e);
        if (!hint) {
            rep.info("DURATION", "no session ticket, so no lifetime on the wire; a session-id cache's lifetime is not "
                                 "visible from outside");
            rep.info("SESSION_TICKET", "no session ticket issued (resumption is recommended, not required)");
            return;
        }
        std::string text = "ticket lifetime hint " + std::to_string(*hint) + " s";
        if (*hint == 0)
            rep.fail("DURATION", text + ": unspecified, not bounded to 48 h");
        else if (*hint > MAX_LIFETIME_S)
            rep.fail("DURATION", text + ": longer than 48 h (172800 s)");
        else
            rep.pass("DURATION", text + " (at most 48 h)");
    }

    // A renegotiating ClientHello sealed in the session: with renegotiation_info bound to our
    // Finished (secure, RFC 5746), or with neither it nor the SCSV (insecure).
    void renegotiate(connection &c, bool secure)
    {
        const char *kind = secure ? "secure renegotiation" : "insecure renegotiation";
        tls::sealed_session sealed;
        if (!c.tls->seal_keys(sealed)) {
            rep.info("NO_RENEGOTIATION", std::string(kind) + " not probed: the session's suite is not AES-GCM");
            return;
        }
        wire::bytes verify_data = own_verify_data(*c.tls, sealed, true);
        prober p(opt.address, opt.server_name, opt.limits);
        wire::client_hello hello = p.profile_hello();
        hello.suites.pop_back(); // no SCSV in a renegotiating hello
        if (getrandom(hello.random, sizeof hello.random, 0) != sizeof hello.random)
            return;
        if (secure) {
            if (verify_data.size() != 12) {
                rep.info("NO_RENEGOTIATION", "secure renegotiation not probed: our Finished could not be read back");
                return;
            }
            wire::bytes info = verify_data; // renegotiated_connection<0..255>: client_verify_data
            info.insert(info.begin(), static_cast<uint8_t>(verify_data.size()));
            set_extension(hello, wire::EXT_RENEGOTIATION_INFO, info);
        }
        std::string evidence;
        bool renegotiated = renegotiation_answer(*c.tls, c.fd.get(), sealed, true, wire::encode_client_hello_message(hello),
                                                 wire::HS_SERVER_HELLO, opt.limits.renegotiation_ms, evidence);
        if (renegotiated)
            rep.fail("NO_RENEGOTIATION", std::string(kind) + ": " + evidence);
        else
            rep.pass("NO_RENEGOTIATION", std::string(kind) + " " + evidence);
    }

    void insecure_renegotiation()
    {
        endpoint_settings s;
        s.own = &own;
        s.suites = GCM_SUITES;
        std::string error;
        connection c = handshake(s, error);
        if (c.ok)
            renegotiate(c, false);
        else
            rep.info("NO_RENEGOTIATION", "insecure renegotiation not probed: " + (c.fd ? c.tls->failure : error));
    }

    // Resumption twice: by ticket (if the device issues them), and by session id with tickets off.
    void resumption()
    {
        for (bool by_ticket : {true, false}) {
            const char *item = by_ticket ? "SESSION_TICKET" : "SESSION_ID";
            endpoint_settings s;
            s.own = &own;
            s.tickets = by_ticket;
            std::string error;
            connection first = handshake(s, error);
            if (!first.ok) {
                rep.info(item, "not probed: " + (first.fd ? first.tls->failure : error));
                continue;
            }
            if (by_ticket && !ticket_lifetime(*first.tls))
                continue; // judged already: no ticket
            mbedtls_ssl_session session;
            mbedtls_ssl_session_init(&session);
            if (mbedtls_ssl_get_session(first.tls->ssl(), &session) != 0) {
                rep.info(item, "not probed: the session could not be saved");
                mbedtls_ssl_session_free(&session);
                continue;
            }
            first.fd.reset();
            s.resume = &session;
            // A device may file a new session only a moment after its handshake: the same session
            // is offered again after each full handshake, up to RESUME_ATTEMPTS times.
            std::string outcome;
            for (int attempt = 1; attempt <= RESUME_ATTEMPTS; attempt++) {
                connection again = handshake(s, error);
                if (again.ok && again.tls->resumed()) {
                    outcome = std::string(by_ticket ? "resumed by session ticket" : "resumed by session id") +
                              (attempt > 1 ? " (at attempt " + std::to_string(attempt) + ")" : "");
                    break;
                }
                outcome = again.ok ? "full handshakes" : again.fd ? again.tls->failure : error;
                if (!again.ok)
                    break;
            }
            if (outcome.rfind("resumed", 0) == 0)
                rep.pass(item, outcome);
            else
                rep.info(item, "not resumed (recommended, not required): " + outcome);
            mbedtls_ssl_session_free(&session);
        }
    }

    // A handshake that must fail: the device refuses the SMGW's certificate.
    void refused_identity(const char *item, identity *id, const std::string &what)
    {
        endpoint_settings s;
        s.own = id;
        std::string error;
        connection c = handshake(s, error);
        if (!c.fd)
            rep.info(item, what + " not probed: " + error);
        else if (c.ok)
            rep.fail(item, what + " accepted: the handshake completed");
        else
            rep.pass(item, what + " refused: " + c.tls->failure);
    }

    void client_certificates()
    {
        refused_identity("CLIENT_CERT", nullptr, "a handshake without a client certificate");
        identity untrusted, expired;
        std::string error;
        if (make_untrusted_identity(untrusted, rng, error))
            refused_identity("CHECK_CERTS", &untrusted, "an untrusted SMGW certificate (self-signed, unknown key)");
        else
            rep.info("CHECK_CERTS", "no untrusted certificate could be made: " + error);
        if (make_expired_identity(expired, own, rng, error))
            refused_identity("CHECK_CERTS", &expired, "an expired SMGW certificate (same key and subject)");
        else
            rep.info("CHECK_CERTS", "no expired certificate could be made: " + error);
    }
};

} // namespace

int scan_server(const scan_options &o)
{
    report rep("server", o.address);
    tls::rng rng;
    identity own;
    tls::cert_list trust;
    std::string error = load_scan_files(o.cert, o.key, o.trust, rng, own, trust);
    if (!error.empty())
        rep.could_not_test(error);
    if (rep.stopped()) {
        rep.print(o.json);
        return rep.exit_status();
    }
    prober p(o.address, o.server_name, o.limits);
    server_facts facts;
    if (check_baseline(rep, p, facts)) {
        check_versions(rep, p);
        check_suites(rep, p);
        check_groups(rep, p, facts);
        check_extensions(rep, p);
        server_scan scan{o, rep, rng, own, trust, {}};
        if (scan.trusted_session()) {
            scan.insecure_renegotiation();
            scan.resumption();
            scan.client_certificates();
        }
        std::vector<wire::bytes> randoms = p.randoms;
        randoms.insert(randoms.end(), scan.randoms.begin(), scan.randoms.end());
        if (!p.lost.empty())
            rep.could_not_test(DEVICE_GONE + p.lost);
        judge_random_time(rep, randoms, time(nullptr), "ServerHello");
    }
    rep.print(o.json);
    return rep.exit_status();
}

} // namespace clsgw::hanscan
