// tls::endpoint: one TLS endpoint's setup, handshake and deadline-bounded reads and writes.
#include "endpoint.hpp"

#include <mbedtls/net_sockets.h>

#include <cctype>

namespace clsgw::tls {

endpoint::endpoint()
{
    mbedtls_ssl_config_init(&conf_);
    mbedtls_ssl_init(&ssl_);
    mbedtls_pk_init(&key_);
}

endpoint::~endpoint()
{
    mbedtls_ssl_free(&ssl_);
    mbedtls_ssl_config_free(&conf_);
    mbedtls_pk_free(&key_);
}

int endpoint::configure(int role, rng &random, const mbedtls_x509_crt *anchors)
{
    int ret = mbedtls_ssl_config_defaults(&conf_, role, MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0)
        return ret;
    apply_han_profile(&conf_);
    rng_ = &random;
    mbedtls_ssl_conf_rng(&conf_, rng::random, rng_);
    mbedtls_ssl_conf_ca_chain(&conf_, const_cast<mbedtls_x509_crt *>(anchors), nullptr);
    check_.anchors = anchors;
    mbedtls_ssl_conf_verify(&conf_, verify, this);
    return 0;
}

int endpoint::parse_key(const std::string &pem)
{
    if (!rng_) // configure first: parsing a key takes the random generator (blinding)
        return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    return mbedtls_pk_parse_key(&key_, reinterpret_cast<const unsigned char *>(pem.c_str()), pem.size() + 1,
                                nullptr, 0, rng::random, rng_);
}

int endpoint::remote_key(const mbedtls_pk_context *public_key, clsgw_remote_sign_fn sign, void *arg)
{
    return clsgw_remote_pk_setup(&key_, public_key, sign, arg);
}

int endpoint::own_cert(mbedtls_x509_crt *chain)
{
    return mbedtls_ssl_conf_own_cert(&conf_, chain, &key_);
}

void endpoint::pin_sha256(const std::string &fingerprint)
{
    check_.pinned_sha256.clear();
    for (char c : fingerprint)
        if (c != ':')
            check_.pinned_sha256.push_back(static_cast<char>(tolower(static_cast<unsigned char>(c))));
}

void endpoint::set_groups(const std::vector<uint16_t> &groups)
{
    groups_ = groups;
    groups_.push_back(MBEDTLS_SSL_IANA_TLS_GROUP_NONE);
    mbedtls_ssl_conf_groups(&conf_, groups_.data());
}

void endpoint::on_server_name(server_name_hook hook, void *arg)
{
    mbedtls_ssl_conf_sni(&conf_, hook, arg);
}

void endpoint::session_cache(mbedtls_ssl_cache_get_t *get, mbedtls_ssl_cache_set_t *set, void *arg)
{
    mbedtls_ssl_conf_session_cache(&conf_, arg, get, set);
}

void endpoint::session_tickets(mbedtls_ssl_ticket_write_t *write, mbedtls_ssl_ticket_parse_t *parse, void *arg)
{
    mbedtls_ssl_conf_session_tickets_cb(&conf_, write, parse, arg);
}

int endpoint::open(int fd, const char *server_name)
{
    io_.fd = fd;
    int ret = setup(&ssl_, &conf_);
    if (ret == 0 && server_name && *server_name)
        ret = mbedtls_ssl_set_hostname(&ssl_, server_name);
    mbedtls_ssl_set_bio(&ssl_, &io_, bio_send, bio_recv, nullptr);
    return ret;
}

void endpoint::set_handshake_anchors(const mbedtls_x509_crt *anchors)
{
    check_.anchors = anchors;
    mbedtls_ssl_set_hs_ca_chain(&ssl_, const_cast<mbedtls_x509_crt *>(anchors), nullptr);
}

// Notes the leaf's curve, then checks the chain by trust alone.
int endpoint::verify(void *self, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    auto *e = static_cast<endpoint *>(self);
    if (depth == 0)
        e->peer_curve_ = cert_curve(crt);
    return trust_check::verify(&e->check_, crt, depth, flags);
}

handshake_result endpoint::handshake(uint64_t deadline_ms, handshake_check after_step, void *arg)
{
    return run_handshake(&ssl_, io_.fd, deadline_ms, after_step, arg);
}

namespace {

bool want_io(int ret)
{
    return ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE;
}

} // namespace

io_status endpoint::read_exact(unsigned char *out, size_t n, size_t &got, uint64_t deadline_ms)
{
    while (got < n) {
        int r = mbedtls_ssl_read(&ssl_, out + got, n - got);
        if (r > 0) {
            got += static_cast<size_t>(r);
            continue;
        }
        if (!want_io(r))
            return (r == 0 || r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || r == MBEDTLS_ERR_SSL_CONN_EOF)
                       ? io_status::closed
                       : io_status::error;
        if (!wait_io(io_.fd, r, deadline_ms))
            return io_status::timeout;
    }
    return io_status::ok;
}

io_status endpoint::write_all(const unsigned char *data, size_t len, uint64_t deadline_ms)
{
    for (size_t done = 0; done < len;) {
        int r = mbedtls_ssl_write(&ssl_, data + done, len - done);
        if (r > 0) {
            done += static_cast<size_t>(r);
            continue;
        }
        if (!want_io(r))
            return r == MBEDTLS_ERR_NET_CONN_RESET ? io_status::closed : io_status::error;
        if (!wait_io(io_.fd, r, deadline_ms))
            return io_status::timeout;
    }
    return io_status::ok;
}

} // namespace clsgw::tls
