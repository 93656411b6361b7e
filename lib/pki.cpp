#include "pki.hpp"

#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/x509_csr.h>

#include <cstring>
#include <ctime>

#include "tls/tls.hpp"
#include "util.hpp"

namespace clsgw::pki {

namespace {

std::optional<mbedtls_ecp_group_id> curve_id(const std::string &curve)
{
    const mbedtls_ecp_curve_info *info = mbedtls_ecp_curve_info_from_name(curve.c_str());
    if (!info || !tls::curve_in_profile(info->grp_id))
        return std::nullopt;
    return info->grp_id;
}

result failure(std::string what, int ret = 0)
{
    result r;
    r.error = ret ? what + ": " + tls::error_text(ret) : what;
    return r;
}

bool parse_key(mbedtls_pk_context *pk, const std::string &pem, tls::rng &rng)
{
    return mbedtls_pk_parse_key(pk, reinterpret_cast<const unsigned char *>(pem.c_str()), pem.size() + 1, nullptr, 0,
                                tls::rng::random, &rng) == 0;
}

// X.509 validity is "YYYYMMDDhhmmss" in UTC.
std::string x509_time(time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[16];
    strftime(buf, sizeof buf, "%Y%m%d%H%M%S", &tm);
    return buf;
}

class crt_writer {
public:
    crt_writer() { mbedtls_x509write_crt_init(&w_); }
    ~crt_writer() { mbedtls_x509write_crt_free(&w_); }
    mbedtls_x509write_cert *get() { return &w_; }

private:
    mbedtls_x509write_cert w_;
};

class mpi {
public:
    mpi() { mbedtls_mpi_init(&m_); }
    ~mpi() { mbedtls_mpi_free(&m_); }
    mbedtls_mpi *get() { return &m_; }

private:
    mbedtls_mpi m_;
};

} // namespace

bool curve_supported(const std::string &curve) { return curve_id(curve).has_value(); }

std::string profile_curves_text()
{
    std::string out;
    for (const auto *g = tls::profile_curves(); *g != MBEDTLS_ECP_DP_NONE; g++)
        out += (out.empty() ? "" : ", ") + std::string(tls::group_name(*g));
    return out;
}

std::string key_curve_name(const mbedtls_pk_context *key)
{
    if (!mbedtls_pk_can_do(key, MBEDTLS_PK_ECKEY))
        return "not an EC key";
    return tls::group_name(tls::key_group(key));
}

std::string key_pair_problem(mbedtls_pk_context *key, const mbedtls_x509_crt *cert)
{
    if (!mbedtls_pk_can_do(key, MBEDTLS_PK_ECDSA) || !tls::curve_in_profile(tls::key_group(key)))
        return "the private key is not an EC key on a HAN profile curve (it is " + key_curve_name(key) +
               "; clsgw offers and accepts " + profile_curves_text() + ")";
    tls::rng rng;
    if (!rng.seed("clsgw-pair-check"))
        return "cannot seed the random generator";
    // the pk context of a parsed certificate is only read here
    if (mbedtls_pk_check_pair(const_cast<mbedtls_pk_context *>(&cert->pk), key, tls::rng::random, &rng) != 0)
        return "the private key does not match the certificate (its public key is another)";
    return "";
}

std::string key_pair_problem(const std::string &key_pem, const std::string &cert_pem)
{
    tls::rng rng;
    tls::private_key key;
    tls::cert_list cert;
    std::string err;
    if (!rng.seed("clsgw-pair-check"))
        return "cannot seed the random generator";
    int ret = mbedtls_pk_parse_key(key.get(), reinterpret_cast<const unsigned char *>(key_pem.c_str()),
                                   key_pem.size() + 1, nullptr, 0, tls::rng::random, &rng);
    if (ret != 0)
        return "cannot parse the private key: " + tls::error_text(ret);
    if (!cert.parse_pem(cert_pem, err))
        return "cannot parse the certificate: " + err;
    return key_pair_problem(key.get(), cert.get());
}

std::string issuer_problem(const mbedtls_x509_crt *issuer)
{
    if (mbedtls_x509_crt_get_ca_istrue(issuer) != 1)
        return "it is not a CA certificate (basicConstraints without CA:TRUE)";
    if (mbedtls_x509_crt_check_key_usage(issuer, MBEDTLS_X509_KU_KEY_CERT_SIGN) != 0)
        return "its keyUsage does not allow keyCertSign";
    return "";
}

result generate_key(const std::string &curve)
{
    auto id = curve_id(curve);
    if (!id)
        return failure("curve '" + curve + "' is not in the HAN profile (" + profile_curves_text() + ")");
    tls::rng rng;
    if (!rng.seed("clsgw-keygen"))
        return failure("cannot seed the random generator");
    tls::private_key key;
    int ret = mbedtls_pk_setup(key.get(), mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (ret == 0)
        ret = mbedtls_ecp_gen_key(*id, mbedtls_pk_ec(*key.get()), tls::rng::random, &rng);
    if (ret != 0)
        return failure("key generation", ret);
    unsigned char buf[4096];
    ret = mbedtls_pk_write_key_pem(key.get(), buf, sizeof buf);
    if (ret != 0)
        return failure("key encoding", ret);
    result r;
    r.ok = true;
    r.pem = reinterpret_cast<char *>(buf);
    mbedtls_platform_zeroize(buf, sizeof buf);
    return r;
}

result make_certificate(const cert_request &req)
{
    tls::rng rng;
    if (!rng.seed("clsgw-cert"))
        return failure("cannot seed the random generator");
    bool self_signed = req.issuer_cert_pem.empty();
    tls::private_key subject_key, issuer_key;
    tls::cert_list issuer;
    if (!parse_key(subject_key.get(), req.key_pem, rng))
        return failure("cannot parse the subject key");
    std::string issuer_name = req.subject;
    if (!self_signed) {
        std::string err;
        if (!issuer.parse_pem(req.issuer_cert_pem, err))
            return failure("issuer certificate: " + err);
        std::string not_ca = issuer_problem(issuer.get());
        if (!not_ca.empty())
            return failure("the issuer certificate cannot issue certificates: " + not_ca +
                           " (make a CA with clsgwctl cert self-sign --ca)");
        if (!parse_key(issuer_key.get(), req.issuer_key_pem, rng))
            return failure("cannot parse the issuer key");
        std::string mismatch = key_pair_problem(issuer_key.get(), issuer.get());
        if (!mismatch.empty())
            return failure("issuer: " + mismatch);
        char name[512];
        if (mbedtls_x509_dn_gets(name, sizeof name, &issuer.get()->subject) < 0)
            return failure("issuer name too long");
        issuer_name = name;
    }
    mbedtls_pk_context *signing_key = self_signed ? subject_key.get() : issuer_key.get();
    crt_writer w;
    mbedtls_x509write_crt_set_version(w.get(), MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(w.get(), mbedtls_pk_get_bitlen(signing_key) > 256 ? MBEDTLS_MD_SHA384
                                                                                       : MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(w.get(), subject_key.get());
    mbedtls_x509write_crt_set_issuer_key(w.get(), signing_key);
    unsigned char serial_bytes[16];
    tls::rng::random(&rng, serial_bytes, sizeof serial_bytes);
    // Positive and in DER's shortest form: a leading zero byte is not allowed before a byte below
    // 0x80 (OpenSSL refuses such a certificate), so the first byte is never zero.
    serial_bytes[0] = static_cast<unsigned char>((serial_bytes[0] & 0x7f) | 0x40);
    time_t now = time(nullptr);
    time_t from = now + static_cast<time_t>(req.valid_from_days) * 86400 - 60;
    time_t until = from + static_cast<time_t>(req.days) * 86400;
    int ret = mbedtls_x509write_crt_set_serial_raw(w.get(), serial_bytes, sizeof serial_bytes);
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_subject_name(w.get(), req.subject.c_str());
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_issuer_name(w.get(), issuer_name.c_str());
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_validity(w.get(), x509_time(from).c_str(), x509_time(until).c_str());
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_basic_constraints(w.get(), req.is_ca ? 1 : 0, req.is_ca ? 0 : -1);
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_key_usage(
            w.get(), req.is_ca ? (MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_DIGITAL_SIGNATURE)
                               : MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_subject_key_identifier(w.get());
    if (ret == 0 && !self_signed)
        ret = mbedtls_x509write_crt_set_authority_key_identifier(w.get());
    if (ret != 0)
        return failure("certificate fields (subject '" + req.subject + "')", ret);
    unsigned char buf[8192];
    ret = mbedtls_x509write_crt_pem(w.get(), buf, sizeof buf, tls::rng::random, &rng);
    if (ret != 0)
        return failure("certificate signing", ret);
    result r;
    r.ok = true;
    r.pem = reinterpret_cast<char *>(buf);
    return r;
}

result make_request(const std::string &key_pem, const std::string &subject)
{
    tls::rng rng;
    tls::private_key key;
    if (!rng.seed("clsgw-csr"))
        return failure("cannot seed the random generator");
    if (!parse_key(key.get(), key_pem, rng))
        return failure("cannot parse the key");
    mbedtls_x509write_csr csr;
    mbedtls_x509write_csr_init(&csr);
    mbedtls_x509write_csr_set_md_alg(&csr, mbedtls_pk_get_bitlen(key.get()) > 256 ? MBEDTLS_MD_SHA384 : MBEDTLS_MD_SHA256);
    mbedtls_x509write_csr_set_key(&csr, key.get());
    int ret = mbedtls_x509write_csr_set_subject_name(&csr, subject.c_str());
    if (ret == 0)
        ret = mbedtls_x509write_csr_set_key_usage(&csr, MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
    unsigned char buf[4096];
    if (ret == 0)
        ret = mbedtls_x509write_csr_pem(&csr, buf, sizeof buf, tls::rng::random, &rng);
    mbedtls_x509write_csr_free(&csr);
    if (ret != 0)
        return failure("certificate request (subject '" + subject + "')", ret);
    result r;
    r.ok = true;
    r.pem = reinterpret_cast<char *>(buf);
    return r;
}

std::optional<std::string> fingerprint_pem(const std::string &pem, std::string &error)
{
    tls::cert_list certs;
    if (!certs.parse_pem(pem, error))
        return std::nullopt;
    std::string h = tls::fingerprint(certs.get());
    std::string out;
    for (size_t i = 0; i < h.size(); i += 2) {
        if (i)
            out.push_back(':');
        out.push_back(static_cast<char>(toupper(h[i])));
        out.push_back(static_cast<char>(toupper(h[i + 1])));
    }
    return out;
}

} // namespace clsgw::pki
