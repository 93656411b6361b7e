// The only C++ file that reads mbedTLS's private fields (MBEDTLS_PRIVATE): the handshake state,
// the last record received (a peer's alert) and whether a handshake resumes. mbedTLS 3.6 has no
// accessor for them; everything outside lib/tls uses the functions declared in tls.hpp.
#define MBEDTLS_ALLOW_PRIVATE_ACCESS
#include "tls.hpp"

#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/sha256.h>
#include <mbedtls/version.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "../util.hpp"
#include "hello_random.h"
#include "remote_pk.h"

namespace clsgw::tls {

std::string error_text(int ret)
{
    char buf[160];
    mbedtls_strerror(ret, buf, sizeof buf);
    return buf;
}

rng::rng()
{
    mbedtls_ctr_drbg_init(&drbg_);
}

rng::~rng()
{
    mbedtls_ctr_drbg_free(&drbg_);
}

namespace {

// The DRBG's seed and reseeds come from the kernel's CSPRNG through getrandom(2), which blocks
// until the kernel's pool is initialised and opens no file. mbedTLS's entropy module would poll
// the same source and hash it through a context of 38 KiB that every worker would carry.
int kernel_entropy(void *, unsigned char *out, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(out, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
        out += n;
        len -= static_cast<size_t>(n);
    }
    return 0;
}

} // namespace

bool rng::seed(const char *personalization)
{
    return mbedtls_ctr_drbg_seed(&drbg_, kernel_entropy, nullptr,
                                 reinterpret_cast<const unsigned char *>(personalization),
                                 strlen(personalization)) == 0;
}

int rng::random(void *self, unsigned char *out, size_t len)
{
    return mbedtls_ctr_drbg_random(static_cast<rng *>(self)->drbg(), out, len);
}

bool cert_list::parse_pem(const std::string &pem, std::string &error)
{
    if (pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
        error = "no PEM certificate found";
        return false;
    }
    // mbedtls_x509_crt_parse wants the terminating NUL counted in the length for PEM.
    int ret = mbedtls_x509_crt_parse(&crt_, reinterpret_cast<const unsigned char *>(pem.c_str()), pem.size() + 1);
    if (ret != 0) {
        error = ret > 0 ? std::to_string(ret) + " certificate(s) could not be parsed" : error_text(ret);
        // The library is built for the HAN profile only (deps/mbedtls.sh): an RSA certificate
        // is not even parsed, which must not read as a damaged file.
        if (ret < 0 && (-ret & 0xff80) == -MBEDTLS_ERR_X509_UNKNOWN_SIG_ALG)
            error = "its signature algorithm is not ECDSA (RSA, say): outside the HAN profile (" + error + ")";
        else if (ret == MBEDTLS_ERR_PK_UNKNOWN_PK_ALG)
            error = "its key is not an EC key (RSA, say): outside the HAN profile (" + error + ")";
        return false;
    }
    return true;
}

namespace {

const int han_suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, // C0,2B
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, // C0,2C
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, // C0,23
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384, // C0,24
    0,
};

const mbedtls_ecp_group_id han_groups[] = {
    MBEDTLS_ECP_DP_BP256R1, MBEDTLS_ECP_DP_BP384R1, MBEDTLS_ECP_DP_BP512R1,
    MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_SECP384R1, MBEDTLS_ECP_DP_NONE,
};

const uint16_t han_groups_tls[] = {
    MBEDTLS_SSL_IANA_TLS_GROUP_BP256R1,   MBEDTLS_SSL_IANA_TLS_GROUP_BP384R1,
    MBEDTLS_SSL_IANA_TLS_GROUP_BP512R1,   MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
    MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1, MBEDTLS_SSL_IANA_TLS_GROUP_NONE,
};

// signature_algorithms in our ClientHello and our CertificateRequest: ECDSA only.
const uint16_t han_sig_algs[] = {
    // In TLS 1.2 these code points mean ecdsa with sha512/384/256, whatever the curve.
    MBEDTLS_TLS1_3_SIG_ECDSA_SECP521R1_SHA512,
    MBEDTLS_TLS1_3_SIG_ECDSA_SECP384R1_SHA384,
    MBEDTLS_TLS1_3_SIG_ECDSA_SECP256R1_SHA256,
    MBEDTLS_TLS1_3_SIG_NONE,
};

} // namespace

const mbedtls_x509_crt_profile han_cert_profile = {
    MBEDTLS_X509_ID_FLAG(MBEDTLS_MD_SHA256) | MBEDTLS_X509_ID_FLAG(MBEDTLS_MD_SHA384) |
        MBEDTLS_X509_ID_FLAG(MBEDTLS_MD_SHA512),
    MBEDTLS_X509_ID_FLAG(MBEDTLS_PK_ECDSA) | MBEDTLS_X509_ID_FLAG(MBEDTLS_PK_ECKEY),
    MBEDTLS_X509_ID_FLAG(MBEDTLS_ECP_DP_BP256R1) | MBEDTLS_X509_ID_FLAG(MBEDTLS_ECP_DP_BP384R1) |
        MBEDTLS_X509_ID_FLAG(MBEDTLS_ECP_DP_BP512R1) | MBEDTLS_X509_ID_FLAG(MBEDTLS_ECP_DP_SECP256R1) |
        MBEDTLS_X509_ID_FLAG(MBEDTLS_ECP_DP_SECP384R1),
    0x7fffffff, // no RSA key is acceptable
};

const mbedtls_ecp_group_id *profile_curves() { return han_groups; }

bool curve_in_profile(mbedtls_ecp_group_id id)
{
    for (const auto *g = han_groups; *g != MBEDTLS_ECP_DP_NONE; g++)
        if (*g == id)
            return true;
    return false;
}

std::vector<uint16_t> profile_groups()
{
    std::vector<uint16_t> out;
    for (const uint16_t *g = han_groups_tls; *g != MBEDTLS_SSL_IANA_TLS_GROUP_NONE; g++)
        out.push_back(*g);
    return out;
}

void apply_han_profile(mbedtls_ssl_config *conf)
{
    mbedtls_ssl_conf_min_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_2);
    mbedtls_ssl_conf_max_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_2);
    mbedtls_ssl_conf_ciphersuites(conf, han_suites);
    mbedtls_ssl_conf_groups(conf, han_groups_tls);
    mbedtls_ssl_conf_sig_algs(conf, han_sig_algs);
    // The CertificateRequest names no authority: the pinned SMGW's name is nobody's business.
    mbedtls_ssl_conf_cert_req_ca_list(conf, MBEDTLS_SSL_CERT_REQ_CA_LIST_DISABLED);
    mbedtls_ssl_conf_cert_profile(conf, &han_cert_profile);
    mbedtls_ssl_conf_authmode(conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_encrypt_then_mac(conf, MBEDTLS_SSL_ETM_ENABLED);
    mbedtls_ssl_conf_extended_master_secret(conf, MBEDTLS_SSL_EXTENDED_MS_ENABLED);
    mbedtls_ssl_conf_renegotiation(conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    mbedtls_ssl_conf_legacy_renegotiation(conf, MBEDTLS_SSL_LEGACY_NO_RENEGOTIATION);
#if defined(MBEDTLS_SSL_TRUNCATED_HMAC)
    mbedtls_ssl_conf_truncated_hmac(conf, MBEDTLS_SSL_TRUNC_HMAC_DISABLED);
#endif
}

int setup(mbedtls_ssl_context *ssl, const mbedtls_ssl_config *conf)
{
    int ret = mbedtls_ssl_setup(ssl, conf);
    if (ret == 0 && mbedtls_ssl_conf_get_endpoint(conf) == MBEDTLS_SSL_IS_CLIENT)
        ret = mbedtls_ssl_set_hostname(ssl, nullptr);
    return ret;
}

namespace {

// True when an anchor is named as the certificate's issuer but its key does not verify the
// certificate's signature: a forged or damaged certificate rather than an unknown one.
bool signed_by_named_issuer_fails(const mbedtls_x509_crt *anchors, const mbedtls_x509_crt *crt)
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(crt->MBEDTLS_PRIVATE(sig_md));
    unsigned char hash[MBEDTLS_MD_MAX_SIZE];
    if (!md || mbedtls_md(md, crt->tbs.p, crt->tbs.len, hash) != 0)
        return false;
    for (const mbedtls_x509_crt *a = anchors; a && a->raw.p; a = a->next) {
        if (a->subject_raw.len != crt->issuer_raw.len ||
            memcmp(a->subject_raw.p, crt->issuer_raw.p, crt->issuer_raw.len) != 0)
            continue;
        if (mbedtls_pk_verify_ext(crt->MBEDTLS_PRIVATE(sig_pk), crt->MBEDTLS_PRIVATE(sig_opts),
                                  const_cast<mbedtls_pk_context *>(&a->pk), crt->MBEDTLS_PRIVATE(sig_md), hash,
                                  mbedtls_md_get_size(md), crt->MBEDTLS_PRIVATE(sig).p,
                                  crt->MBEDTLS_PRIVATE(sig).len) == 0)
            return false;
        return true;
    }
    return false;
}

} // namespace

int trust_check::verify(void *self, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    auto *t = static_cast<trust_check *>(self);
    // The SMGW's certificate names the SMGW, not the EMT that SNI or SOCKS5 names.
    *flags &= ~static_cast<uint32_t>(MBEDTLS_X509_BADCERT_CN_MISMATCH);
    // mbedTLS reports the chain from the top down, the leaf (depth 0) last.
    if (depth > 0) {
        if (*flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
            t->chain_untrusted = true;
        *flags &= ~static_cast<uint32_t>(MBEDTLS_X509_BADCERT_NOT_TRUSTED);
        return 0;
    }
    bool pinned = false;
    for (const mbedtls_x509_crt *a = t->anchors; a && a->raw.p; a = a->next)
        if (a->raw.len == crt->raw.len && memcmp(a->raw.p, crt->raw.p, crt->raw.len) == 0)
            pinned = true;
    if (!t->pinned_sha256.empty() && fingerprint(crt) == t->pinned_sha256)
        pinned = true;
    if (pinned)
        *flags &= ~static_cast<uint32_t>(MBEDTLS_X509_BADCERT_NOT_TRUSTED);
    else if (t->chain_untrusted)
        *flags |= MBEDTLS_X509_BADCERT_NOT_TRUSTED;
    if ((*flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) && signed_by_named_issuer_fails(t->anchors, crt))
        *flags |= BADCERT_SIGNATURE;
    return 0;
}

channel_reason verify_reason(uint32_t flags)
{
    reason_code c = reason_code::cert_invalid;
    if (flags & BADCERT_SIGNATURE)
        c = reason_code::cert_bad_signature;
    else if (flags & MBEDTLS_X509_BADCERT_EXPIRED)
        c = reason_code::cert_expired;
    else if (flags & MBEDTLS_X509_BADCERT_FUTURE)
        c = reason_code::cert_not_yet_valid;
    else if (flags & (MBEDTLS_X509_BADCERT_BAD_KEY | MBEDTLS_X509_BADCERT_BAD_PK | MBEDTLS_X509_BADCERT_BAD_MD))
        c = reason_code::cert_outside_profile;
    else if (flags & MBEDTLS_X509_BADCERT_KEY_USAGE)
        c = reason_code::cert_key_usage;
    else if (flags & MBEDTLS_X509_BADCERT_EXT_KEY_USAGE)
        c = reason_code::cert_ext_key_usage;
    else if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
        c = reason_code::cert_untrusted;
    else if (flags & MBEDTLS_X509_BADCERT_MISSING)
        c = reason_code::cert_missing;
    return reason_of(c);
}

channel_reason handshake_reason(int ret, uint32_t verify_flags)
{
    if (ret == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE)
        return reason_of(reason_code::no_client_certificate);
    if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED || (verify_flags != 0 && verify_flags != UINT32_MAX))
        return verify_reason(verify_flags);
    switch (ret) {
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE: return reason_of(reason_code::peer_sent_alert);
    case MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE: return reason_of(reason_code::no_shared_cipher_suite);
    case MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION: return reason_of(reason_code::protocol_version);
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
    case MBEDTLS_ERR_SSL_CONN_EOF: return reason_of(reason_code::peer_closed_in_handshake);
    case MBEDTLS_ERR_NET_CONN_RESET: return reason_of(reason_code::peer_reset_in_handshake);
    case CLSGW_ERR_REMOTE_SIGN_FAILED: return reason_of(reason_code::signer_failed);
    case MBEDTLS_ERR_X509_INVALID_FORMAT:
    case MBEDTLS_ERR_SSL_BAD_CERTIFICATE: return reason_of(reason_code::cert_corrupt);
    }
    if (ret <= -0x2000 && ret > -0x3000)
        return reason_of(reason_code::cert_corrupt); // the X.509 error range
    return reason_of(reason_code::handshake_failed);
}

mbedtls_ecp_group_id cert_curve(const mbedtls_x509_crt *crt)
{
    return crt ? key_group(&crt->pk) : MBEDTLS_ECP_DP_NONE;
}

std::string offered_groups(const bio &io)
{
    // mbedTLS 3.6 keeps the groups it parsed from the ClientHello in its private handshake
    // state; the received record stream saw the ClientHello itself and kept its supported_groups.
    std::string out;
    for (uint16_t tls_id : io.received.offered_groups) {
        const mbedtls_ecp_curve_info *info = mbedtls_ecp_curve_info_from_tls_id(tls_id);
        if (info) // groups mbedTLS does not know (FFDHE, ...) are left out, as mbedTLS itself does
            out += (out.empty() ? "" : ":") + std::string(info->name);
    }
    return out;
}

bool cert_curve_not_offered(const bio &io, mbedtls_ecp_group_id cert_curve)
{
    const mbedtls_ecp_curve_info *own = mbedtls_ecp_curve_info_from_grp_id(cert_curve);
    const std::vector<uint16_t> &groups = io.received.offered_groups, &suites = io.received.offered_suites;
    auto offered = [](const std::vector<uint16_t> &list, int id) {
        return std::find(list.begin(), list.end(), id) != list.end();
    };
    bool profile_suite = false, profile_group = false;
    for (const int *s = han_suites; *s != 0; s++)
        profile_suite |= offered(suites, *s);
    for (const uint16_t *g = han_groups_tls; *g != MBEDTLS_SSL_IANA_TLS_GROUP_NONE; g++)
        profile_group |= offered(groups, *g);
    return own != nullptr && profile_suite && profile_group && !offered(groups, own->tls_id);
}

int peer_alert(const mbedtls_ssl_context *ssl, int ret)
{
    if (ret != MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE || ssl->MBEDTLS_PRIVATE(in_msg) == nullptr)
        return -1;
    return ssl->MBEDTLS_PRIVATE(in_msg)[1];
}

channel_reason handshake_reason(const mbedtls_ssl_context *ssl, int ret)
{
    int alert = peer_alert(ssl, ret);
    if (alert >= 0)
        return peer_alert_reason(static_cast<uint8_t>(alert));
    return handshake_reason(ret, mbedtls_ssl_get_verify_result(ssl));
}

bool past_client_hello(const mbedtls_ssl_context *ssl)
{
    return ssl->MBEDTLS_PRIVATE(state) > MBEDTLS_SSL_CLIENT_HELLO;
}

mbedtls_ecp_group_id key_group(const mbedtls_pk_context *pk)
{
    if (!mbedtls_pk_can_do(pk, MBEDTLS_PK_ECKEY) && !mbedtls_pk_can_do(pk, MBEDTLS_PK_ECDSA))
        return MBEDTLS_ECP_DP_NONE;
    return mbedtls_ecp_keypair_get_group_id(mbedtls_pk_ec(*pk));
}

const char *library_version()
{
    static char text[18];
    mbedtls_version_get_string(text);
    return text;
}

bool print_version(int argc, char **argv, const char *program)
{
    if (argc != 2 || strcmp(argv[1], "--version") != 0)
        return false;
    printf("%s %s (mbedTLS %s)\n", program, CLSGW_VERSION, library_version());
    return true;
}

std::string fingerprint(const mbedtls_x509_crt *crt)
{
    uint8_t digest[32];
    mbedtls_sha256(crt->raw.p, crt->raw.len, digest, 0);
    return hex(digest, sizeof digest);
}

bool key_id(mbedtls_pk_context *pk, uint8_t out[32])
{
    unsigned char der[1024];
    int len = mbedtls_pk_write_pubkey_der(pk, der, sizeof der);
    if (len <= 0)
        return false;
    // mbedtls writes DER at the end of the buffer.
    return mbedtls_sha256(der + sizeof der - static_cast<size_t>(len), static_cast<size_t>(len), out, 0) == 0;
}

const char *group_name(mbedtls_ecp_group_id id)
{
    const mbedtls_ecp_curve_info *info = mbedtls_ecp_curve_info_from_grp_id(id);
    return info ? info->name : "none";
}

void bio::observe(const unsigned char *data, size_t len)
{
    received.watch_handshake_records = watch_handshake_records;
    received.observe(data, len);
    late_handshake_records = received.late_handshake_records;
}

int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    int fd = static_cast<bio *>(ctx)->fd;
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            static_cast<bio *>(ctx)->sent.observe(buf, static_cast<size_t>(n));
            return static_cast<int>(n);
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return MBEDTLS_ERR_SSL_WANT_WRITE;
        static_cast<bio *>(ctx)->failed_errno = errno;
        if (errno == EPIPE || errno == ECONNRESET || errno == ETIMEDOUT)
            return MBEDTLS_ERR_NET_CONN_RESET;
        return MBEDTLS_ERR_NET_SEND_FAILED;
    }
}

int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    auto *self = static_cast<bio *>(ctx);
    for (;;) {
        if (self->ahead_end > self->ahead_start) {
            size_t n = std::min(len, self->ahead_end - self->ahead_start);
            memcpy(buf, self->ahead.get() + self->ahead_start, n);
            self->ahead_start += n;
            self->observe(buf, n);
            return static_cast<int>(n);
        }
        if (!self->ahead)
            self->ahead.reset(new unsigned char[bio::READ_AHEAD]);
        ssize_t n = recv(self->fd, self->ahead.get(), bio::READ_AHEAD, 0);
        if (n > 0) {
            self->ahead_start = 0;
            self->ahead_end = static_cast<size_t>(n);
            continue;
        }
        if (n == 0)
            return 0; // the peer closed
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return MBEDTLS_ERR_SSL_WANT_READ;
        self->failed_errno = errno;
        if (errno == ECONNRESET || errno == EPIPE || errno == ETIMEDOUT)
            return MBEDTLS_ERR_NET_CONN_RESET;
        return MBEDTLS_ERR_NET_RECV_FAILED;
    }
}

bool wait_io(int fd, int want, uint64_t deadline_ms)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline_ms)
            return false;
        pollfd p{fd, static_cast<short>(want == MBEDTLS_ERR_SSL_WANT_WRITE ? POLLOUT : POLLIN), 0};
        uint64_t left = deadline_ms - now;
        int r = poll(&p, 1, left > 60000 ? 60000 : static_cast<int>(left));
        if (r > 0)
            return true;
        if (r < 0 && errno != EINTR)
            return true; // let the next TLS call report the error
    }
}

namespace {

// The group of the ServerKeyExchange that went by in either direction, if one did.
mbedtls_ecp_group_id negotiated_group(const bio *io)
{
    if (!io)
        return MBEDTLS_ECP_DP_NONE;
    int kex = io->sent.kex_group >= 0 ? io->sent.kex_group : io->received.kex_group;
    const mbedtls_ecp_curve_info *curve =
        kex >= 0 ? mbedtls_ecp_curve_info_from_tls_id(static_cast<uint16_t>(kex)) : nullptr;
    return curve ? curve->grp_id : MBEDTLS_ECP_DP_NONE;
}

} // namespace

handshake_result run_handshake(mbedtls_ssl_context *ssl, int fd, uint64_t deadline_ms, handshake_check after_step,
                               void *arg)
{
    handshake_result r;
    // Our own transport, when it is one (clsgw sets no other): it reads the key exchange.
    bio *io = ssl->MBEDTLS_PRIVATE(f_send) == bio_send ? static_cast<bio *>(ssl->MBEDTLS_PRIVATE(p_bio)) : nullptr;
    const int own_hello =
        mbedtls_ssl_conf_get_endpoint(mbedtls_ssl_context_get_config(ssl)) == MBEDTLS_SSL_IS_CLIENT
            ? MBEDTLS_SSL_CLIENT_HELLO
            : MBEDTLS_SSL_SERVER_HELLO;
    while (!mbedtls_ssl_is_handshake_over(ssl)) {
        // Only the step that writes our hello's random sees a clock without the time in it.
        clsgw_hide_clock(ssl->MBEDTLS_PRIVATE(state) == own_hello);
        int ret = mbedtls_ssl_handshake_step(ssl);
        clsgw_hide_clock(0);
        r.group = negotiated_group(io);
        if (ret == 0 && after_step && (ret = after_step(arg, ssl)) != 0) {
            r.ret = ret;
            return r;
        }
        if (ret == 0)
            continue;
        if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
            r.ret = ret;
            return r;
        }
        uint64_t waiting = now_us();
        bool ready = wait_io(fd, ret, deadline_ms);
        r.wait_us += now_us() - waiting;
        if (!ready) {
            r.timed_out = true;
            r.ret = ret;
            return r;
        }
    }
    // Every suite of the profile is ECDHE: a handshake without a ServerKeyExchange resumed.
    r.resumed = io && r.group == MBEDTLS_ECP_DP_NONE;
    return r;
}

} // namespace clsgw::tls
