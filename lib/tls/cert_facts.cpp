#include "cert_facts.hpp"

#include <mbedtls/oid.h>
#include <mbedtls/x509_crt.h>

#include <cstdio>

#include "tls.hpp"

namespace clsgw::tls {

namespace {

std::string time_text(const mbedtls_x509_time &t)
{
    char text[32];
    snprintf(text, sizeof text, "%04d-%02d-%02d %02d:%02d:%02d", t.year, t.mon, t.day, t.hour, t.min, t.sec);
    return text;
}

const char *md_text(mbedtls_md_type_t md)
{
    switch (md) {
    case MBEDTLS_MD_SHA1: return "SHA1";
    case MBEDTLS_MD_SHA224: return "SHA224";
    case MBEDTLS_MD_SHA256: return "SHA256";
    case MBEDTLS_MD_SHA384: return "SHA384";
    case MBEDTLS_MD_SHA512: return "SHA512";
    default: return "another hash";
    }
}

} // namespace

std::vector<std::string> certificate_facts::defects() const
{
    std::vector<std::string> out;
    if (!parsed)
        return {"unparsable: " + error};
    if (!curve_in_profile)
        out.push_back("key " + curve + " outside the profile");
    if (!signature_in_profile)
        out.push_back("signature " + signature + " outside the profile");
    if (!digital_signature)
        out.push_back("key usage without digitalSignature");
    if (expired)
        out.push_back("expired " + valid_to);
    if (not_yet_valid)
        out.push_back("not valid before " + valid_from);
    return out;
}

certificate_facts inspect_certificate(const std::vector<uint8_t> &der)
{
    certificate_facts f;
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    int ret = mbedtls_x509_crt_parse_der(&crt, der.data(), der.size());
    if (ret != 0) {
        f.error = error_text(ret);
        mbedtls_x509_crt_free(&crt);
        return f;
    }
    f.parsed = true;
    char subject[256];
    if (mbedtls_x509_dn_gets(subject, sizeof subject, &crt.subject) > 0)
        f.subject = subject;
    mbedtls_ecp_group_id curve = cert_curve(&crt);
    f.curve = curve != MBEDTLS_ECP_DP_NONE ? group_name(curve) : mbedtls_pk_get_name(&crt.pk);
    f.curve_in_profile = curve != MBEDTLS_ECP_DP_NONE && curve_in_profile(curve);
    mbedtls_md_type_t md = MBEDTLS_MD_NONE;
    mbedtls_pk_type_t pk = MBEDTLS_PK_NONE;
    if (mbedtls_oid_get_sig_alg(&crt.sig_oid, &md, &pk) == 0) {
        f.signature = std::string(pk == MBEDTLS_PK_ECDSA ? "ECDSA" : pk == MBEDTLS_PK_RSA ? "RSA" : "another algorithm") +
                      " with " + md_text(md);
        f.signature_in_profile = pk == MBEDTLS_PK_ECDSA &&
                                 (md == MBEDTLS_MD_SHA256 || md == MBEDTLS_MD_SHA384 || md == MBEDTLS_MD_SHA512);
    } else {
        f.signature = "an unknown algorithm";
    }
    f.digital_signature = mbedtls_x509_crt_check_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE) == 0;
    f.key_usage_listed = mbedtls_x509_crt_has_ext_type(&crt, MBEDTLS_X509_EXT_KEY_USAGE) != 0;
    f.valid_from = time_text(crt.valid_from);
    f.valid_to = time_text(crt.valid_to);
    f.expired = mbedtls_x509_time_is_past(&crt.valid_to) != 0;
    f.not_yet_valid = mbedtls_x509_time_is_future(&crt.valid_from) != 0;
    f.fingerprint = fingerprint(&crt);
    mbedtls_x509_crt_free(&crt);
    return f;
}

} // namespace clsgw::tls
