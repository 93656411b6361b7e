#include "endpoint.hpp"

#include <mbedtls/net_sockets.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "../../lib/net.hpp"
#include "../../lib/pki.hpp"

namespace clsgw::hanscan {

namespace {

void keep(wire::bytes &into, const unsigned char *data, int n)
{
    if (n > 0 && into.size() + static_cast<size_t>(n) <= tap::KEEP)
        into.insert(into.end(), data, data + n);
}

int tap_send(void *ctx, const unsigned char *buf, size_t len)
{
    auto *t = static_cast<tap *>(ctx);
    int n = tls::bio_send(&t->io, buf, len);
    keep(t->sent, buf, n);
    return n;
}

int tap_recv(void *ctx, unsigned char *buf, size_t len)
{
    auto *t = static_cast<tap *>(ctx);
    int n = tls::bio_recv(&t->io, buf, len);
    keep(t->received, buf, n);
    return n;
}

bool parse_key(tls::private_key &key, const std::string &pem, tls::rng &rng)
{
    return mbedtls_pk_parse_key(key.get(), reinterpret_cast<const unsigned char *>(pem.c_str()), pem.size() + 1,
                                nullptr, 0, tls::rng::random, &rng) == 0;
}

bool finish_identity(identity &id, tls::rng &rng, std::string &error)
{
    if (!id.cert.parse_pem(id.cert_pem, error))
        return false;
    if (!parse_key(id.key, id.key_pem, rng)) {
        error = "cannot parse the key";
        return false;
    }
    if (mbedtls_pk_check_pair(&id.cert.get()->pk, id.key.get(), tls::rng::random, &rng) != 0) {
        error = "certificate and key do not belong together";
        return false;
    }
    char subject[256];
    if (mbedtls_x509_dn_gets(subject, sizeof subject, &id.cert.get()->subject) > 0)
        id.subject = subject;
    return true;
}

} // namespace

bool load_identity(identity &id, const std::string &cert_file, const std::string &key_file, tls::rng &rng,
                   std::string &error)
{
    auto cert = read_file(cert_file, 256 * 1024);
    if (!cert) {
        error = cert_file + ": " + errno_text(errno);
        return false;
    }
    auto key = read_file(key_file, 64 * 1024);
    if (!key) {
        error = key_file + ": " + errno_text(errno);
        return false;
    }
    id.cert_pem = *cert;
    id.key_pem = *key;
    if (!finish_identity(id, rng, error)) {
        error = cert_file + ", " + key_file + ": " + error;
        return false;
    }
    return true;
}

std::string load_scan_files(const std::string &cert_file, const std::string &key_file, const std::string &trust_file,
                            tls::rng &rng, identity &own, tls::cert_list &trust)
{
    std::string error;
    auto trust_pem = read_file(trust_file, 1024 * 1024);
    if (!trust_pem)
        return "--trust " + trust_file + ": " + errno_text(errno); // before other calls overwrite errno
    if (!rng.seed("clsgw-hanscan"))
        return "cannot seed the random generator";
    if (!load_identity(own, cert_file, key_file, rng, error))
        return error;
    if (!trust.parse_pem(*trust_pem, error))
        return "--trust " + trust_file + ": " + error;
    return "";
}

bool make_untrusted_identity(identity &id, tls::rng &rng, std::string &error)
{
    pki::result key = pki::generate_key("brainpoolP256r1");
    pki::cert_request request;
    request.subject = "CN=clsgw-hanscan untrusted SMGW";
    request.key_pem = key.pem;
    request.days = 30;
    pki::result cert = key.ok ? pki::make_certificate(request) : key;
    if (!cert.ok) {
        error = cert.error;
        return false;
    }
    id.key_pem = key.pem;
    id.cert_pem = cert.pem;
    return finish_identity(id, rng, error);
}

bool make_expired_identity(identity &id, const identity &from, tls::rng &rng, std::string &error)
{
    pki::cert_request request;
    request.subject = from.subject;
    request.key_pem = from.key_pem;
    request.valid_from_days = -30;
    request.days = 10; // ended 20 days ago
    pki::result cert = pki::make_certificate(request);
    if (!cert.ok) {
        error = cert.error;
        return false;
    }
    id.key_pem = from.key_pem;
    id.cert_pem = cert.pem;
    return finish_identity(id, rng, error);
}

endpoint::endpoint(tls::rng &rng, const endpoint_settings &settings) : is_client_(settings.is_client)
{
    mbedtls_ssl_config_init(&conf_);
    mbedtls_ssl_init(&ssl_);
    mbedtls_ssl_config_defaults(&conf_, is_client_ ? MBEDTLS_SSL_IS_CLIENT : MBEDTLS_SSL_IS_SERVER,
                                MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    tls::apply_han_profile(&conf_);
    if (settings.suites)
        mbedtls_ssl_conf_ciphersuites(&conf_, settings.suites);
    mbedtls_ssl_conf_rng(&conf_, tls::rng::random, &rng);
    if (settings.trust) {
        mbedtls_ssl_conf_ca_chain(&conf_, const_cast<mbedtls_x509_crt *>(settings.trust->get()), nullptr);
        check_.anchors = settings.trust->get();
        mbedtls_ssl_conf_verify(&conf_, tls::trust_check::verify, &check_);
    }
    if (settings.own)
        mbedtls_ssl_conf_own_cert(&conf_, settings.own->cert.get(), settings.own->key.get());
    if (is_client_)
        mbedtls_ssl_conf_session_tickets(&conf_, settings.tickets ? MBEDTLS_SSL_SESSION_TICKETS_ENABLED
                                                                  : MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
    else if (settings.ticket_keys)
        mbedtls_ssl_conf_session_tickets_cb(&conf_, mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse,
                                            settings.ticket_keys);
    tls::setup(&ssl_, &conf_);
    if (is_client_ && !settings.server_name.empty())
        mbedtls_ssl_set_hostname(&ssl_, settings.server_name.c_str());
    if (settings.resume)
        mbedtls_ssl_set_session(&ssl_, settings.resume);
    tls::export_keys(&ssl_, &keys);
    mbedtls_ssl_set_bio(&ssl_, &tap_, tap_send, tap_recv, nullptr);
}

endpoint::~endpoint()
{
    mbedtls_ssl_free(&ssl_);
    mbedtls_ssl_config_free(&conf_);
}

std::string timeout_text(const char *name, uint64_t ms)
{
    return std::string(name) + " (" + format_duration_ms(ms) + ")";
}

bool endpoint::handshake(int fd, uint64_t timeout_ms)
{
    tap_.io.fd = fd;
    tls::handshake_result r = tls::run_handshake(&ssl_, fd, now_ms() + timeout_ms);
    if (r.ret == 0)
        return true;
    const char *peer = is_client_ ? "the device" : "the device (client)";
    int alert = tls::peer_alert(&ssl_, r.ret);
    peer_alerted = alert >= 0;
    if (r.timed_out)
        failure = "no answer within " + timeout_text("handshake_timeout", timeout_ms);
    else if (peer_alerted)
        failure = std::string("alert ") + alert_name(static_cast<unsigned char>(alert)) + " from " + peer;
    else if (r.ret == MBEDTLS_ERR_SSL_CONN_EOF || r.ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
        failure = std::string("closed by ") + peer;
    else if (r.ret == MBEDTLS_ERR_NET_CONN_RESET)
        failure = std::string("reset by ") + peer;
    else
        failure = reason_name(tls::handshake_reason(&ssl_, r.ret), reason_view::simulator) + " (" + tls::error_text(r.ret) + ")";
    return false;
}

wire::record_reader endpoint::received() const
{
    wire::record_reader r;
    r.feed(tap_.received.data(), tap_.received.size());
    return r;
}

wire::record_reader endpoint::sent() const
{
    wire::record_reader r;
    r.feed(tap_.sent.data(), tap_.sent.size());
    return r;
}

bool endpoint::seal_keys(tls::sealed_session &sealed)
{
    int suite = mbedtls_ssl_get_ciphersuite_id_from_ssl(&ssl_);
    return sealed.derive(keys, static_cast<uint16_t>(suite));
}

wire::bytes endpoint::unread()
{
    tls::bio &io = tap_.io;
    wire::bytes out;
    if (io.ahead && io.ahead_end > io.ahead_start)
        out.assign(io.ahead.get() + io.ahead_start, io.ahead.get() + io.ahead_end);
    io.ahead_start = io.ahead_end = 0;
    return out;
}

wait_end read_records(int fd, wire::bytes first, wire::record_reader &reader, uint64_t deadline_ms,
                      bool (*until)(const wire::record_reader &))
{
    reader.feed(first.data(), first.size());
    unsigned char buf[16384];
    for (;;) {
        if (until(reader) || reader.malformed)
            return wait_end::condition;
        uint64_t now = now_ms();
        if (now >= deadline_ms)
            return wait_end::timeout;
        pollfd p{fd, POLLIN, 0};
        int r = poll(&p, 1, static_cast<int>(deadline_ms - now));
        if (r < 0 && errno != EINTR)
            return wait_end::reset;
        if (r <= 0)
            continue;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0)
            return wait_end::closed;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0)
            return wait_end::reset;
        reader.feed(buf, static_cast<size_t>(n));
    }
}

unique_fd connect_with_deadline(const std::string &address, uint64_t timeout_ms, std::string &error)
{
    auto to = parse_sock_address(address);
    if (!to) {
        error = address + ": expected a numeric HOST:PORT";
        return unique_fd();
    }
    int err = 0;
    unique_fd fd = connect_start(*to, &err);
    if (!fd) {
        error = "connect to " + address + ": " + errno_text(err);
        return fd;
    }
    pollfd p{fd.get(), POLLOUT, 0};
    int r;
    do {
        r = poll(&p, 1, static_cast<int>(timeout_ms));
    } while (r < 0 && errno == EINTR);
    socklen_t len = sizeof err;
    if (r == 0) {
        error = "connect to " + address + ": no answer within " + timeout_text("connect_timeout", timeout_ms);
        return unique_fd();
    }
    if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        error = "connect to " + address + ": " + errno_text(err);
        return unique_fd();
    }
    return fd;
}

} // namespace clsgw::hanscan
