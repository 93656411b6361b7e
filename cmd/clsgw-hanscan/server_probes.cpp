// Server mode, the hand-made part: versions, suites, groups and extensions, each judged from the
// device's answer to one ClientHello, read in the clear.
#include "server_probes.hpp"

#include <algorithm>

#include "../../lib/tls/cert_facts.hpp"
#include "judge.hpp"

namespace clsgw::hanscan {

namespace {

std::string suite_text(uint16_t suite)
{
    return wire::hex16(suite) + " " + wire::suite_name(suite);
}

std::string joined(const std::vector<std::string> &parts, const char *separator = ", ")
{
    std::string out;
    for (const auto &p : parts)
        out += (out.empty() ? "" : separator) + p;
    return out;
}

// Suites no profile peer may accept: CBC with SHA-1, RSA, CCM, ChaCha20, static ECDH, plain RSA
// key exchange, 3DES, RC4.
const std::vector<uint16_t> OTHER_SUITES = {
    0xC009, 0xC00A, 0xCCA9, 0xC0AC, 0xC0AD, 0xC0AE, 0xC0AF, 0xC02F, 0xC030, 0xC027, 0xC028, 0xC013, 0xC014,
    0xCCA8, 0xC004, 0xC005, 0xC025, 0xC02D, 0xC02E, 0x009E, 0x009C, 0x009D, 0x003C, 0x002F, 0x0035, 0x000A, 0x0005,
};
const std::vector<uint16_t> OTHER_SIGNATURES = {0x0603, 0x0503, 0x0403, 0x0804, 0x0805, 0x0806,
                                                0x0601, 0x0501, 0x0401, 0x0203, 0x0201};
// Groups outside the profile: P-521, X25519, X448, P-224, P-192, FFDHE.
const std::vector<uint16_t> OTHER_GROUPS = {25, 29, 30, 21, 19, 256, 257};

bool ephemeral(uint16_t suite)
{
    std::string name = wire::suite_name(suite);
    return name.rfind("ECDHE-", 0) == 0 || name.rfind("DHE-", 0) == 0;
}

} // namespace

std::optional<probe_answer> check_baseline(report &rep, prober &p, server_facts &facts)
{
    probe_answer a = p.send(p.profile_hello());
    if (a.what == probe_answer::kind::no_connection) {
        rep.could_not_test(a.error);
        return std::nullopt;
    }
    if (!a.accepted() || a.hello->version != wire::VERSION_TLS12) {
        rep.could_not_test("the device does not answer a ClientHello of the profile: " + a.text());
        return std::nullopt;
    }
    const wire::server_hello &h = *a.hello;
    rep.pass("TLS_1.2", "TLS 1.2 accepted (" + suite_text(h.suite) + ")");
    if (h.find(wire::EXT_EXTENDED_MASTER_SECRET))
        rep.pass("EXT_MASTER_SECRET", "extended_master_secret granted");
    else
        rep.fail("EXT_MASTER_SECRET", "extended_master_secret offered, not granted");
    if (!in_profile(PROFILE_SUITES, h.suite))
        rep.fail("ECC", "chose " + suite_text(h.suite) + " from the profile's suites");
    if (const auto *cert = a.find(wire::HS_CERTIFICATE)) {
        auto chain = wire::parse_certificate(cert->body.data(), cert->body.size());
        if (chain && !chain->empty()) {
            judge_certificate(rep, "SERVER_CERT", chain->front());
            tls::certificate_facts f = tls::inspect_certificate(chain->front());
            for (uint16_t g : PROFILE_GROUPS)
                if (f.parsed && f.curve == wire::group_name(g))
                    facts.certificate_group = g;
        } else {
            rep.fail("SERVER_CERT", "Certificate message does not parse or is empty");
        }
    } else {
        rep.fail("SERVER_CERT", "no Certificate message");
    }
    if (auto kex = a.key_exchange()) {
        if (!in_profile(PROFILE_SIGNATURES, kex->signature_algorithm))
            rep.fail("ECC", std::string("ServerKeyExchange signed with ") +
                                wire::signature_algorithm_name(kex->signature_algorithm));
    } else {
        rep.fail("PFS", "no ECDHE ServerKeyExchange");
    }
    const auto *request = a.find(wire::HS_CERTIFICATE_REQUEST);
    auto req = request ? wire::parse_certificate_request(request->body.data(), request->body.size()) : std::nullopt;
    if (req) {
        std::vector<std::string> algs;
        for (uint16_t s : req->signature_algorithms)
            algs.push_back(wire::signature_algorithm_name(s));
        rep.pass("CLIENT_CERT", "CertificateRequest (" + joined(algs, " ") + ", " + std::to_string(req->authorities) +
                                    " authorities)");
    } else {
        rep.fail("CLIENT_CERT", request ? "CertificateRequest does not parse" : "no CertificateRequest: the device "
                                                                                "does not ask for the SMGW's certificate");
    }
    return a;
}

void check_versions(report &rep, prober &p)
{
    for (uint16_t version : {wire::VERSION_TLS10, wire::VERSION_TLS11}) {
        wire::client_hello h = p.profile_hello();
        h.record_version = h.version = version;
        h.suites = {0xC009, 0xC00A, 0xC013, 0xC014, 0x002F, 0x0035, wire::SUITE_RENEGOTIATION_SCSV};
        drop_extension(h, wire::EXT_SIGNATURE_ALGORITHMS); // not defined before TLS 1.2
        std::vector<uint16_t> groups = PROFILE_GROUPS;
        groups.insert(groups.end(), {25, 29});
        set_extension(h, wire::EXT_SUPPORTED_GROUPS, wire::u16_list(groups));
        probe_answer a = p.send(h);
        std::string name = wire::version_name(version);
        if (a.accepted() && a.hello->version <= wire::VERSION_TLS11)
            rep.fail("TLS_1.2", name + " accepted: " + a.text());
        else if (a.accepted()) // RFC 5246 E.1: never above the client's version; refusing is an alert
            rep.fail("TLS_1.2", name + " hello not refused: answered with " + a.text() +
                                    ", a version above the client's");
        else
            rep.pass("TLS_1.2", name + " refused: " + a.text());
    }
    // A TLS 1.3-only hello (RFC 8446): supported_versions names 1.3 alone and the key_share is
    // empty, so a TLS 1.3 server answers with a ServerHello or a HelloRetryRequest for 1.3.
    wire::client_hello h = p.profile_hello();
    h.suites = {0x1301, 0x1302, 0x1303};
    set_extension(h, wire::EXT_SUPPORTED_VERSIONS, {2, 0x03, 0x04});
    set_extension(h, wire::EXT_KEY_SHARE, {0, 0});
    set_extension(h, wire::EXT_SIGNATURE_ALGORITHMS,
                  wire::u16_list({0x0403, 0x0503, 0x0603, 0x081A, 0x081B, 0x081C, 0x0804, 0x0805, 0x0806}));
    std::vector<uint16_t> groups = PROFILE_GROUPS;
    groups.insert(groups.end(), {29, 25});
    set_extension(h, wire::EXT_SUPPORTED_GROUPS, wire::u16_list(groups));
    probe_answer a = p.send(h);
    if (a.accepted() && a.hello->negotiated_version() == wire::VERSION_TLS13)
        rep.fail("TLS_1.2", "TLSv1.3 accepted: " + a.text());
    else
        rep.pass("TLS_1.2", "TLSv1.3 refused: " + a.text());
}

void check_suites(report &rep, prober &p)
{
    std::vector<std::string> accepted;
    for (uint16_t suite : PROFILE_SUITES) {
        wire::client_hello h = p.profile_hello();
        h.suites = {suite, wire::SUITE_RENEGOTIATION_SCSV};
        probe_answer a = p.send(h);
        if (a.accepted() && a.hello->suite == suite && a.hello->version == wire::VERSION_TLS12)
            accepted.push_back(wire::hex16(suite));
        else
            rep.fail("ECC", "profile suite " + suite_text(suite) + " refused: " + a.text());
    }
    if (!accepted.empty())
        rep.pass("ECC", "profile suites accepted: " + joined(accepted, " "));
    // Suites outside the profile, offered together; each one the device picks is taken out and
    // the rest offered again, until it refuses.
    std::vector<uint16_t> others = OTHER_SUITES;
    std::vector<uint16_t> taken;
    std::string refusal;
    for (int round = 0; round < 12 && !others.empty(); round++) {
        wire::client_hello h = p.profile_hello();
        h.suites = others;
        h.suites.push_back(wire::SUITE_RENEGOTIATION_SCSV);
        // RSA signatures too: a device with an RSA certificate besides its EC one may show its RSA suites
        set_extension(h, wire::EXT_SIGNATURE_ALGORITHMS, wire::u16_list(OTHER_SIGNATURES));
        probe_answer a = p.send(h);
        auto at = a.accepted() ? std::find(others.begin(), others.end(), a.hello->suite) : others.end();
        if (at == others.end()) {
            refusal = a.text();
            break;
        }
        taken.push_back(*at);
        others.erase(at);
    }
    if (taken.empty()) {
        rep.pass("ECC", std::to_string(OTHER_SUITES.size()) + " suites outside the profile refused: " + refusal);
        rep.pass("PFS", "static ECDH and RSA key exchange suites refused: " + refusal);
    }
    for (uint16_t suite : taken) {
        rep.fail("ECC", "suite outside the profile accepted: " + suite_text(suite));
        if (!ephemeral(suite))
            rep.fail("PFS", "suite without forward secrecy accepted: " + suite_text(suite));
    }
    if (!taken.empty() && std::all_of(taken.begin(), taken.end(), ephemeral))
        rep.pass("PFS", "every suite accepted uses ECDHE");
}

namespace {

probe_answer with_groups(prober &p, const std::vector<uint16_t> &groups)
{
    wire::client_hello h = p.profile_hello();
    set_extension(h, wire::EXT_SUPPORTED_GROUPS, wire::u16_list(groups));
    return p.send(h);
}

int chosen_group(const probe_answer &a)
{
    auto kex = a.key_exchange();
    return a.accepted() && kex ? kex->group : -1;
}

} // namespace

void check_groups(report &rep, prober &p, const server_facts &facts)
{
    // RFC 8422 5.1: a server may only use an ECDSA certificate on a curve the client offers, so
    // each group is offered next to the certificate's, and alone when the device prefers that one.
    uint16_t own = facts.certificate_group;
    std::vector<std::string> accepted, only_alone;
    std::string alone_answer;
    for (uint16_t g : PROFILE_GROUPS) {
        std::vector<uint16_t> offer{g};
        if (own && own != g)
            offer.push_back(own);
        probe_answer a = with_groups(p, offer);
        if (chosen_group(a) != g && own && own != g && chosen_group(a) == own)
            a = with_groups(p, {g});
        if (chosen_group(a) == g) {
            accepted.push_back(wire::group_name(g));
        } else if (own && own != g && !a.accepted()) {
            only_alone.push_back(wire::group_name(g));
            alone_answer = a.text();
        } else {
            rep.fail("ECC", std::string("profile group ") + wire::group_name(g) + " refused: " +
                                (a.accepted() ? "chose group " + std::to_string(chosen_group(a)) : a.text()));
        }
    }
    if (!only_alone.empty())
        rep.info("ECC", joined(only_alone, " ") + " not chosen next to " + wire::group_name(own) +
                            " and refused alone (" + alone_answer + "): the certificate is on " + wire::group_name(own) +
                            " (RFC 8422 5.1)");
    if (!accepted.empty())
        rep.pass("ECC", "profile groups accepted: " + joined(accepted, " "));
    std::vector<uint16_t> others = OTHER_GROUPS;
    std::vector<std::string> taken;
    for (int round = 0; round < 8 && !others.empty(); round++) {
        std::vector<uint16_t> offer = others;
        if (own)
            offer.push_back(own);
        probe_answer a = with_groups(p, offer);
        int g = chosen_group(a);
        auto at = std::find(others.begin(), others.end(), g);
        if (at == others.end()) {
            std::string names;
            for (uint16_t o : OTHER_GROUPS)
                names += std::string(names.empty() ? "" : " ") + wire::group_name(o);
            if (taken.empty())
                rep.pass("ECC", "groups outside the profile (" + names + ") not chosen: " +
                                    (g >= 0 ? std::string("chose ") + wire::group_name(static_cast<uint16_t>(g))
                                            : a.text()));
            break;
        }
        taken.push_back(wire::group_name(static_cast<uint16_t>(g)));
        others.erase(at);
    }
    for (const auto &name : taken)
        rep.fail("ECC", "group outside the profile accepted: " + name);
}

void check_extensions(report &rep, prober &p)
{
    // encrypt_then_mac and truncated_hmac matter for CBC suites only: offered with those alone.
    wire::client_hello h = p.profile_hello();
    h.suites = {0xC023, 0xC024, wire::SUITE_RENEGOTIATION_SCSV};
    set_extension(h, wire::EXT_TRUNCATED_HMAC, {});
    probe_answer a = p.send(h);
    if (!a.accepted()) {
        rep.info("ENC_THEN_MAC", "not judged: the CBC suites were refused (" + a.text() + ")");
        rep.pass("NO_TRUNC_HMAC", "truncated_hmac never granted: the CBC suites were refused");
    } else {
        if (a.hello->find(wire::EXT_ENCRYPT_THEN_MAC))
            rep.pass("ENC_THEN_MAC", "encrypt_then_mac granted with " + suite_text(a.hello->suite));
        else
            rep.fail("ENC_THEN_MAC", "encrypt_then_mac offered, not granted with " + suite_text(a.hello->suite));
        if (a.hello->find(wire::EXT_TRUNCATED_HMAC))
            rep.fail("NO_TRUNC_HMAC", "truncated_hmac granted with " + suite_text(a.hello->suite));
        else
            rep.pass("NO_TRUNC_HMAC", "truncated_hmac offered, not granted");
    }
    wire::client_hello c = p.profile_hello();
    c.compression = {1, 0}; // DEFLATE first
    probe_answer b = p.send(c);
    if (b.accepted() && b.hello->compression != 0)
        rep.fail("NO_COMPRESSION", "compression method " + std::to_string(b.hello->compression) + " chosen");
    else if (b.accepted())
        rep.pass("NO_COMPRESSION", "DEFLATE offered, null compression chosen");
    else
        rep.pass("NO_COMPRESSION", "a hello offering DEFLATE refused: " + b.text());
}

} // namespace clsgw::hanscan
