// clsgw-smgw-sim: a stand-in for a Smart Meter Gateway's HAN side, for the demo, the tests and
// integrators without a SMGW on the bench.
//
//   clsgw-smgw-sim smgw --listen ADDR --cert F --key F --trust F --route NAME:PORT=ADDR ...
//       TLS server on the HAN profile; the device's client certificate is checked against
//       --trust (pinned certificate or CA). The proxy profile is the list of routes: a target
//       outside it is refused (SOCKS5 REP 0x02, or an unrecognized_name alert for SNI).
//   clsgw-smgw-sim emt-echo --listen ADDR
//       an EMT stand-in that echoes what it receives and half-closes after the client does.
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "../../lib/config.hpp"
#include "../../lib/log.hpp"
#include "../../lib/net.hpp"
#include "../../lib/relay.hpp"
#include "../../lib/socks5.hpp"
#include "../../lib/tls/endpoint.hpp"
#include "../../lib/util.hpp"

using namespace clsgw;

namespace {

constexpr uint64_t STEP_TIMEOUT_MS = 30000;

struct route {
    std::string name;
    uint16_t port;
    sock_address to;
};

struct inbound_link;

struct sim_options {
    std::string listen, cert, key, trust;
    std::vector<route> routes;
    std::string proxy = "auto"; // auto: SNI when the ClientHello names a server, else SOCKS5
    uint64_t idle_timeout_ms = 15 * 60 * 1000;
    std::vector<struct inbound_link> inbound;
    bool corrupt_cert = false; // test knob: send our certificate with a broken DER length
    std::string pin_sha256;    // trust the device by its certificate's SHA-256 fingerprint
    // Like stunnel or Botan, the simulator ends a device's channel on its close_notify (TLS 1.2 has
    // no half-close) and drops what the EMT still sends; --half-close yes half-closes the EMT
    // connection instead and keeps relaying its answer, for tests of that leniency.
    bool half_close = false;
    // The groups the simulator offers (as client) and accepts (as server), as TLS ids: --groups,
    // or the HAN profile's five.
    std::vector<uint16_t> groups;
    // RFC 8422, as the strictest SMGWs apply it (OpenSSL: "wrong curve"): a device certificate whose
    // curve is not among those groups is refused with illegal_parameter; --cert-curve any accepts a
    // device certificate on any curve of the profile (outbound only: on inbound channels it is the
    // device that finds no suite for a curve the simulator did not offer).
    bool cert_curve_strict = true;
};

// The SMGW's active side (HKS4/HKS5): an EMT connecting to `emt` reaches the device at `device`.
struct inbound_link {
    sock_address emt;
    sock_address device;
    std::string server_name; // sent in the ClientHello when set
};

[[noreturn]] void die(const std::string &msg)
{
    fprintf(stderr, "clsgw-smgw-sim: %s\n", msg.c_str());
    exit(2);
}

const route *find_route(const sim_options &o, const std::string &name, int port)
{
    for (const auto &r : o.routes) {
        if (strcasecmp(r.name.c_str(), name.c_str()) == 0 && (port < 0 || r.port == port))
            return &r;
    }
    return nullptr;
}

struct sim_tls {
    tls::cert_list own, trust;
    tls::rng rng;
    tls::endpoint e; // declared after what it points to: destroyed first
    std::string sni;
    const sim_options *opt = nullptr;
    std::optional<channel_reason> refused; // why enforce_groups ended the handshake
};

// Session tickets, as SMGWs issue them: one key for all connections. Each connection is served by
// a child process, so an in-memory session-id cache would die with it; the ticket key is made once
// in the parent, before the first fork, and every child encrypts with its own random generator.
struct ticket_keys {
    mbedtls_ssl_ticket_context ctx;
    tls::rng rng;
    bool ready = false;
    ticket_keys() { mbedtls_ssl_ticket_init(&ctx); }
    ~ticket_keys() { mbedtls_ssl_ticket_free(&ctx); }
};
ticket_keys tickets;

// Every random byte the ticket context asks for (nonces, a rotated key) comes from the generator
// of the connection at hand: a forked copy of the parent's generator would repeat its nonces.
tls::rng *ticket_rng = &tickets.rng;
int ticket_random(void *, unsigned char *out, size_t len)
{
    return tls::rng::random(ticket_rng, out, len);
}

void setup_tickets()
{
    const uint32_t lifetime_s = 48 * 3600; // TR-03116-3: no session older than 48 h
    if (!tickets.rng.seed("clsgw-smgw-sim tickets") ||
        mbedtls_ssl_ticket_setup(&tickets.ctx, ticket_random, nullptr, MBEDTLS_CIPHER_AES_256_GCM, lifetime_s) != 0)
        die("cannot set up session tickets");
    tickets.ready = true;
}

void offer_tickets(tls::endpoint &e, tls::rng *connection_rng)
{
    if (!tickets.ready)
        return;
    ticket_rng = connection_rng;
    e.session_tickets(mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse, &tickets.ctx);
}

// Refuses, during the handshake, a server_name that is not in the proxy profile.
int on_sni(void *arg, mbedtls_ssl_context *, const unsigned char *name, size_t len)
{
    auto *t = static_cast<sim_tls *>(arg);
    t->sni.assign(reinterpret_cast<const char *>(name), len);
    if (t->opt->proxy == "socks5" || !find_route(*t->opt, t->sni, -1)) {
        log_warn("server_name outside the proxy profile", log_fields().add("server_name", t->sni));
        return -1;
    }
    return 0;
}

bool among(const std::vector<uint16_t> &groups, mbedtls_ecp_group_id id)
{
    const mbedtls_ecp_curve_info *info = mbedtls_ecp_curve_info_from_grp_id(id);
    return info && std::find(groups.begin(), groups.end(), info->tls_id) != groups.end();
}

std::string group_names(const std::vector<uint16_t> &groups)
{
    std::string out;
    for (uint16_t id : groups)
        if (const mbedtls_ecp_curve_info *info = mbedtls_ecp_curve_info_from_tls_id(id))
            out += (out.empty() ? "" : ":") + std::string(info->name);
    return out;
}

// After each handshake step of the server side: the certificate-curve rule, and a key exchange on
// one of our groups (mbedTLS is given the rest of the profile's groups after ours, so that
// --cert-curve any can accept a certificate on them).
int enforce_groups(void *arg, mbedtls_ssl_context *ssl)
{
    auto *t = static_cast<sim_tls *>(arg);
    const std::vector<uint16_t> &ours = t->opt->groups;
    mbedtls_ecp_group_id device_curve = t->e.peer_cert_curve();
    if (t->opt->cert_curve_strict && device_curve != MBEDTLS_ECP_DP_NONE && !among(ours, device_curve)) {
        log_warn("device certificate curve not among our groups: refused (RFC 8422)",
                 log_fields().add("certificate_curve", tls::group_name(device_curve)).add("groups", group_names(ours)));
        mbedtls_ssl_send_alert_message(ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL, MBEDTLS_SSL_ALERT_MSG_ILLEGAL_PARAMETER);
        t->refused = reason_of(reason_code::cert_curve_not_offered);
        return MBEDTLS_ERR_SSL_BAD_CERTIFICATE;
    }
    if (t->e.io().sent.kex_group >= 0 && std::find(ours.begin(), ours.end(), t->e.io().sent.kex_group) == ours.end()) {
        log_warn("the device offered none of our groups", log_fields().add("groups", group_names(ours)));
        mbedtls_ssl_send_alert_message(ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL, MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE);
        t->refused = reason_of(reason_code::no_shared_group);
        return MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE;
    }
    return 0;
}

void setup_tls(sim_tls &t, const sim_options &o, int role)
{
    std::string err;
    auto cert = read_file(o.cert, 65536), key = read_file(o.key, 65536), trust = read_file(o.trust, 65536);
    if (!cert || !t.own.parse_pem(*cert, err))
        die("--cert " + o.cert + ": " + err);
    if (!trust || !t.trust.parse_pem(*trust, err))
        die("--trust " + o.trust + ": " + err);
    if (!t.rng.seed("clsgw-smgw-sim"))
        die("cannot seed the random generator");
    if (t.e.configure(role, t.rng, t.trust.get()) != 0)
        die("cannot configure TLS");
    if (!key || t.e.parse_key(*key) != 0)
        die("--key " + o.key + ": cannot parse");
    t.opt = &o;
    t.e.pin_sha256(o.pin_sha256);
    // As client: exactly our groups in the ClientHello. As server: ours first (mbedTLS picks the
    // key exchange's group by the server's order), then the profile's others.
    std::vector<uint16_t> groups = o.groups;
    if (role == MBEDTLS_SSL_IS_SERVER)
        for (uint16_t id : tls::profile_groups())
            if (std::find(o.groups.begin(), o.groups.end(), id) == o.groups.end())
                groups.push_back(id);
    t.e.set_groups(groups);
    if (role == MBEDTLS_SSL_IS_SERVER) {
        t.e.on_server_name(on_sni, &t);
        offer_tickets(t.e, &t.rng);
    }
    if (t.e.own_cert(t.own.get()) != 0)
        die("certificate and key do not fit together");
    // What goes on the wire is the raw DER: damaging the outer SEQUENCE's length byte makes the
    // peer's certificate parser fail while our own parsed copy stays usable.
    if (o.corrupt_cert)
        t.own.get()->raw.p[1] ^= 0x01;
}

// One step of the device's SOCKS5 exchange, bounded like every step.
bool read_exact(sim_tls &t, uint8_t *out, size_t n, size_t &got)
{
    return t.e.read_exact(out, n, got, now_ms() + STEP_TIMEOUT_MS) == tls::io_status::ok;
}

bool write_all(sim_tls &t, const bytes &data)
{
    return t.e.write_all(data.data(), data.size(), now_ms() + STEP_TIMEOUT_MS) == tls::io_status::ok;
}

// Reads one SOCKS5 greeting and request from the device; returns the requested target.
std::optional<host_port> socks5_exchange(sim_tls &t)
{
    uint8_t buf[socks5::MAX_REQUEST];
    size_t got = 0;
    if (!read_exact(t, buf, 2, got) || !read_exact(t, buf, 2 + buf[1], got))
        return std::nullopt;
    auto g = socks5::parse_greeting(buf, got);
    if (g.st != socks5::status::ok || !g.value.offers_no_auth) {
        write_all(t, socks5::encode_method_choice(socks5::METHOD_NONE_ACCEPTABLE));
        return std::nullopt;
    }
    write_all(t, socks5::encode_method_choice(socks5::METHOD_NO_AUTH));
    got = 0;
    socks5::parsed<socks5::request> q;
    do {
        if (!read_exact(t, buf, got + 1, got))
            return std::nullopt;
        q = socks5::parse_request(buf, got);
    } while (q.st == socks5::status::need_more && got < sizeof buf);
    if (q.st != socks5::status::ok) {
        write_all(t, socks5::encode_reply(q.reply_code));
        return std::nullopt;
    }
    return q.value.target;
}

unique_fd connect_emt(const sock_address &to)
{
    unique_fd fd(socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd && connect(fd.get(), to.sa(), to.length) != 0)
        fd.reset();
    if (fd)
        set_nonblocking(fd.get(), true);
    return fd;
}

void serve_device(const sim_options &o, unique_fd device)
{
    sim_tls t;
    setup_tls(t, o, MBEDTLS_SSL_IS_SERVER);
    set_nonblocking(device.get(), true);
    std::string peer = peer_name(device.get());
    if (int ret = t.e.open(device.get()); ret != 0) {
        log_warn("TLS setup failed", log_fields().add("peer", peer).add("error", tls::error_text(ret)));
        return;
    }
    tls::handshake_result h = t.e.handshake(now_ms() + STEP_TIMEOUT_MS, enforce_groups, &t);
    if (h.ret != 0 || h.timed_out) {
        log_warn("device handshake failed", log_fields().add("peer", peer)
                     .add("reason", reason_name(h.timed_out ? reason_of(reason_code::handshake_timeout)
                                                : t.refused ? *t.refused
                                                            : tls::handshake_reason(t.e.ssl(), h.ret),
                                                reason_view::simulator))
                     .add("error", tls::error_text(h.ret)));
        if (t.refused) {
            // The device's last flight (its Certificate up to Finished) is still unread: a close now
            // would reset the connection before the device reads our alert. Its close, or a second.
            shutdown(device.get(), SHUT_WR);
            uint64_t deadline = now_ms() + 1000;
            char unread[4096];
            while (tls::wait_io(device.get(), MBEDTLS_ERR_SSL_WANT_READ, deadline) && recv(device.get(), unread, sizeof unread, 0) > 0) {
            }
        }
        return;
    }
    const mbedtls_x509_crt *client = mbedtls_ssl_get_peer_cert(t.e.ssl());
    std::string fp = client ? tls::fingerprint(client) : "none";
    const route *r = nullptr;
    std::string target;
    if (!t.sni.empty() && o.proxy != "socks5") {
        r = find_route(o, t.sni, -1);
        target = t.sni;
    } else {
        auto req = socks5_exchange(t);
        if (!req) {
            log_warn("bad SOCKS5 exchange from device", log_fields().add("peer", peer));
            return;
        }
        target = req->to_string();
        r = find_route(o, req->host, req->port);
        if (!r) {
            write_all(t, socks5::encode_reply(socks5::REP_NOT_ALLOWED));
            t.e.close_notify();
            log_warn("target outside the proxy profile: refused", log_fields().add("peer", peer).add("target", target)
                                                                       .add("rep", "0x02"));
            return;
        }
    }
    unique_fd emt = connect_emt(r->to);
    if (!emt) {
        if (t.sni.empty())
            write_all(t, socks5::encode_reply(socks5::REP_CONNECTION_REFUSED));
        t.e.close_notify();
        log_warn("EMT unreachable", log_fields().add("target", target).add("emt", r->to.to_string()));
        return;
    }
    if (t.sni.empty() && !write_all(t, socks5::encode_reply(socks5::REP_SUCCEEDED, host_port{"0.0.0.0", 0})))
        return;
    log_info("channel open", log_fields().add("peer", peer).add("device_cert", fp).add("target", target)
                                 .add("resumed", h.resumed ? "yes" : "no")
                                 .add("format", t.sni.empty() ? "socks5" : "sni").add("suite", mbedtls_ssl_get_ciphersuite(t.e.ssl()))
                                 .add("group", tls::group_name(h.group)));
    relay_options opt;
    opt.idle_timeout_ms = o.idle_timeout_ms;
    opt.tls_close_is_half_close = o.half_close;
    relay_result rr = relay(emt.get(), t.e.ssl(), t.e.io(), opt, "emt", "device");
    log_info("channel closed", log_fields().add("peer", peer).add("target", target).add("reason", reason_name(rr.reason, reason_view::simulator))
                                   .add("bytes_to_emt", rr.tls_to_plain).add("bytes_to_device", rr.plain_to_tls));
}

// HKS4/HKS5: the EMT is connected to us; open TLS to the device and relay.
void serve_emt(const sim_options &o, const inbound_link &link, unique_fd emt)
{
    sim_tls t;
    setup_tls(t, o, MBEDTLS_SSL_IS_CLIENT);
    unique_fd device = connect_emt(link.device); // a plain TCP connect, like the EMT's
    std::string to = link.device.to_string();
    if (!device) {
        log_warn("device unreachable", log_fields().add("device", to).add("error", errno_text(errno)));
        return;
    }
    set_nonblocking(emt.get(), true);
    if (int ret = t.e.open(device.get(), link.server_name.c_str()); ret != 0) {
        log_warn("TLS setup failed", log_fields().add("device", to).add("error", tls::error_text(ret)));
        return;
    }
    tls::handshake_result h = t.e.handshake(now_ms() + STEP_TIMEOUT_MS);
    if (h.ret != 0 || h.timed_out) {
        log_warn("TLS to the device failed", log_fields().add("device", to)
                     .add("reason", reason_name(h.timed_out ? reason_of(reason_code::handshake_timeout)
                                                            : tls::handshake_reason(t.e.ssl(), h.ret),
                                                reason_view::simulator))
                     .add("error", tls::error_text(h.ret)));
        return;
    }
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(t.e.ssl());
    log_info("inbound channel open", log_fields().add("device", to).add("server_name", link.server_name.empty() ? "-" : link.server_name)
                                         .add("device_cert", peer ? tls::fingerprint(peer) : "none")
                                         .add("suite", mbedtls_ssl_get_ciphersuite(t.e.ssl())));
    relay_options opt;
    opt.idle_timeout_ms = o.idle_timeout_ms;
    relay_result rr = relay(emt.get(), t.e.ssl(), t.e.io(), opt, "emt", "device");
    log_info("inbound channel closed", log_fields().add("device", to).add("reason", reason_name(rr.reason, reason_view::simulator))
                                           .add("bytes_to_device", rr.plain_to_tls).add("bytes_to_emt", rr.tls_to_plain));
}

void echo(unique_fd conn)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(conn.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(conn.get(), buf + done, static_cast<size_t>(n - done));
            if (w <= 0)
                return;
            done += w;
        }
    }
    shutdown(conn.get(), SHUT_WR);
}

using handler = std::function<void(unique_fd)>;

unique_fd listen_or_die(const sock_address &addr)
{
    unique_fd l = listen_on(addr, 256);
    if (!l)
        die("cannot listen on " + addr.to_string() + ": " + errno_text(errno));
    log_info("listening", log_fields().add("address", local_name(l.get())));
    return l;
}

// Accepts on every listener and runs each connection's handler in a child of its own.
[[noreturn]] void serve_forever(std::vector<std::pair<unique_fd, handler>> listeners)
{
    signal(SIGCHLD, SIG_IGN); // children are reaped by the kernel
    signal(SIGPIPE, SIG_IGN);
    std::vector<pollfd> fds;
    for (auto &l : listeners)
        fds.push_back({l.first.get(), POLLIN, 0});
    for (;;) {
        if (poll(fds.data(), fds.size(), -1) < 0)
            continue;
        for (size_t i = 0; i < fds.size(); i++) {
            if (!fds[i].revents)
                continue;
            int fd = accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                    usleep(100000); // out of fds or similar: do not spin
                continue;
            }
            pid_t pid = fork();
            if (pid == 0) {
                for (auto &l : listeners)
                    close(l.first.release());
                listeners[i].second(unique_fd(fd));
                _exit(0);
            }
            close(fd);
        }
    }
}

int usage()
{
    fprintf(stderr, "usage: clsgw-smgw-sim smgw [--listen ADDR] --cert FILE --key FILE --trust FILE\n"
                    "                      [--route NAME:PORT=ADDR]... [--proxy auto|socks5|sni] [--idle-timeout DUR]\n"
                    "                      [--inbound EMT_ADDR=DEVICE_ADDR[/SERVER_NAME]]... [--corrupt-cert yes]\n"
                    "                      [--pin-sha256 FINGERPRINT] [--half-close yes|no]\n"
                    "                      [--groups GROUP[:GROUP]...] [--cert-curve strict|any]\n"
                    "       clsgw-smgw-sim emt-echo --listen ADDR\n");
    return 2;
}

inbound_link parse_inbound(const std::string &text)
{
    size_t eq = text.find('='), slash = text.find('/');
    inbound_link link;
    auto emt = eq == std::string::npos ? std::nullopt : parse_sock_address(text.substr(0, eq));
    auto device = eq == std::string::npos ? std::nullopt : parse_sock_address(text.substr(eq + 1, slash == std::string::npos ? std::string::npos : slash - eq - 1));
    if (!emt || !device)
        die("--inbound " + text + ": expected EMT_ADDR=DEVICE_ADDR[/SERVER_NAME]");
    link.emt = *emt;
    link.device = *device;
    if (slash != std::string::npos)
        link.server_name = text.substr(slash + 1);
    return link;
}

std::vector<uint16_t> parse_groups(const std::string &text)
{
    std::vector<uint16_t> out;
    for (size_t at = 0; at <= text.size();) {
        size_t colon = std::min(text.find(':', at), text.size());
        std::string name = text.substr(at, colon - at);
        at = colon + 1;
        const mbedtls_ecp_curve_info *info = mbedtls_ecp_curve_info_from_name(name.c_str());
        if (!info || !tls::curve_in_profile(info->grp_id))
            die("--groups " + text + ": " + name + " is not a group of the HAN profile");
        if (std::find(out.begin(), out.end(), info->tls_id) == out.end())
            out.push_back(info->tls_id);
    }
    if (out.empty())
        die("--groups " + text + ": expected GROUP[:GROUP]...");
    return out;
}

route parse_route(const std::string &text)
{
    size_t eq = text.find('=');
    auto from = eq == std::string::npos ? std::nullopt : parse_host_port(text.substr(0, eq));
    auto to = eq == std::string::npos ? std::nullopt : parse_sock_address(text.substr(eq + 1));
    if (!from || !to)
        die("--route " + text + ": expected NAME:PORT=ADDR:PORT");
    return route{from->host, from->port, *to};
}

} // namespace

int main(int argc, char **argv)
{
    if (tls::print_version(argc, argv, "clsgw-smgw-sim"))
        return 0;
    if (argc < 2)
        return usage();
    std::string mode = argv[1];
    sim_options o;
    for (int i = 2; i < argc; i++) {
        std::string opt = argv[i];
        if (i + 1 >= argc)
            return usage();
        std::string val = argv[++i];
        if (opt == "--listen") o.listen = val;
        else if (opt == "--cert") o.cert = val;
        else if (opt == "--key") o.key = val;
        else if (opt == "--trust") o.trust = val;
        else if (opt == "--route") o.routes.push_back(parse_route(val));
        else if (opt == "--inbound") o.inbound.push_back(parse_inbound(val));
        else if (opt == "--corrupt-cert" && val == "yes") o.corrupt_cert = true;
        else if (opt == "--pin-sha256") o.pin_sha256 = val;
        else if (opt == "--half-close" && (val == "yes" || val == "no")) o.half_close = val == "yes";
        else if (opt == "--proxy" && (val == "auto" || val == "socks5" || val == "sni")) o.proxy = val;
        else if (opt == "--idle-timeout" && parse_duration_ms(val)) o.idle_timeout_ms = *parse_duration_ms(val);
        else if (opt == "--groups") o.groups = parse_groups(val);
        else if (opt == "--cert-curve" && (val == "strict" || val == "any")) o.cert_curve_strict = val == "strict";
        else return usage();
    }
    if (o.groups.empty())
        o.groups = tls::profile_groups();
    std::vector<std::pair<unique_fd, handler>> listeners;
    if (mode == "emt-echo") {
        log_init("emt-echo", log_level::info);
        if (o.listen.empty())
            return usage();
        auto addr = parse_sock_address(o.listen);
        if (!addr)
            die("--listen " + o.listen + ": expected a numeric address:port");
        listeners.emplace_back(listen_or_die(*addr), [](unique_fd c) { echo(std::move(c)); });
        serve_forever(std::move(listeners));
    }
    if (mode != "smgw" || o.cert.empty() || o.key.empty() || o.trust.empty() || (o.listen.empty() && o.inbound.empty()))
        return usage();
    log_init("clsgw-smgw-sim", log_level::info);
    { sim_tls check; setup_tls(check, o, MBEDTLS_SSL_IS_SERVER); } // fail at start, not per connection
    setup_tickets();
    if (!o.listen.empty()) {
        auto addr = parse_sock_address(o.listen);
        if (!addr)
            die("--listen " + o.listen + ": expected a numeric address:port");
        listeners.emplace_back(listen_or_die(*addr), [&o](unique_fd c) { serve_device(o, std::move(c)); });
    }
    for (const auto &link : o.inbound)
        listeners.emplace_back(listen_or_die(link.emt), [&o, &link](unique_fd c) { serve_emt(o, link, std::move(c)); });
    serve_forever(std::move(listeners));
}
