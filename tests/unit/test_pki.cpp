#include <doctest/doctest.h>
#include <mbedtls/x509_crt.h>

#include "../../lib/pki.hpp"
#include "../../lib/tls/tls.hpp"

using namespace clsgw;

// DER wants an INTEGER in its shortest form: OpenSSL refuses a serial with a needless leading
// zero byte, which a random 16-byte serial produced about once in 128 certificates.
TEST_CASE("certificate serials are positive and in DER's shortest form, so OpenSSL reads every one")
{
    auto key = pki::generate_key("secp256r1");
    REQUIRE(key.ok);
    pki::cert_request req;
    req.subject = "CN=serial-test";
    req.key_pem = key.pem;
    for (int i = 0; i < 300; i++) {
        auto cert = pki::make_certificate(req);
        REQUIRE(cert.ok);
        mbedtls_x509_crt crt;
        mbedtls_x509_crt_init(&crt);
        REQUIRE(mbedtls_x509_crt_parse(&crt, reinterpret_cast<const unsigned char *>(cert.pem.c_str()),
                                       cert.pem.size() + 1) == 0);
        REQUIRE(crt.serial.len == 16);
        CHECK(crt.serial.p[0] != 0);
        CHECK(crt.serial.p[0] < 0x80);
        mbedtls_x509_crt_free(&crt);
    }
}

namespace {

std::string new_key(const char *curve)
{
    auto key = pki::generate_key(curve);
    REQUIRE(key.ok);
    return key.pem;
}

std::string self_signed(const std::string &key_pem, const char *subject, bool is_ca = false)
{
    pki::cert_request req;
    req.subject = subject;
    req.key_pem = key_pem;
    req.is_ca = is_ca;
    auto cert = pki::make_certificate(req);
    REQUIRE(cert.ok);
    return cert.pem;
}

} // namespace

TEST_CASE("a key pair is checked as the signer checks it: the certificate's own key, on a profile curve")
{
    std::string key = new_key("brainpoolP256r1"), other = new_key("brainpoolP256r1");
    std::string cert = self_signed(key, "CN=pair");
    CHECK(pki::key_pair_problem(key, cert) == "");
    CHECK(pki::key_pair_problem(other, cert).find("does not match the certificate") != std::string::npos);
    CHECK(pki::key_pair_problem("not a key", cert).find("cannot parse the private key") == 0);
    CHECK(pki::key_pair_problem(key, "not a certificate").find("cannot parse the certificate") == 0);
    CHECK(pki::profile_curves_text() == "brainpoolP256r1, brainpoolP384r1, brainpoolP512r1, secp256r1, secp384r1");
}

TEST_CASE("only a CA certificate issues: CA:FALSE or a keyUsage without keyCertSign is refused, with why")
{
    std::string ca_key = new_key("secp256r1"), leaf_key = new_key("secp256r1");
    std::string not_ca = self_signed(ca_key, "CN=not-a-ca"), ca = self_signed(ca_key, "CN=ca", true);
    pki::cert_request issue;
    issue.subject = "CN=leaf";
    issue.key_pem = leaf_key;
    issue.issuer_key_pem = ca_key;
    issue.issuer_cert_pem = not_ca;
    auto refused = pki::make_certificate(issue);
    CHECK_FALSE(refused.ok);
    CHECK(refused.error.find("not a CA certificate (basicConstraints without CA:TRUE)") != std::string::npos);
    issue.issuer_cert_pem = ca;
    CHECK(pki::make_certificate(issue).ok);
    issue.issuer_key_pem = leaf_key; // not the CA's key
    auto wrong_key = pki::make_certificate(issue);
    CHECK_FALSE(wrong_key.ok);
    CHECK(wrong_key.error.find("does not match the certificate") != std::string::npos);
}

// The library is built without RSA (deps/mbedtls.sh): an RSA certificate cannot be parsed at all,
// and the reason must say what is wrong with it, not only that parsing failed.
static const char rsa_certificate_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIICAjCCAWugAwIBAgIUJVDf0HcJQswjV1/C6PNBwIZTVq4wDQYJKoZIhvcNAQEL\n"
    "BQAwEzERMA8GA1UEAwwIcnNhLXRlc3QwHhcNMjYxMjAyMDIwNzQxWhcNMzYxMTI5\n"
    "MDIwNzQxWjATMREwDwYDVQQDDAhyc2EtdGVzdDCBnzANBgkqhkiG9w0BAQEFAAOB\n"
    "jQAwgYkCgYEAxLsJfqQaCmnFbPPoG8pd4Xon7JAX+j9eqW0Zm1S+sMC1zr8IvFiA\n"
    "/eDQXeyVcIgAxBlbIP1lWqxlK6wKzsmMeap2RzOLOiLSSoRBAEZA9fTSwJ6Cpoar\n"
    "qQY9l4lJb8t401zIMAVFE+i7rtz+SyFmuTWGmVFscA2VeT/nfltbxocCAwEAAaNT\n"
    "MFEwHQYDVR0OBBYEFFphXFnlpQPMwJJeepAgudchFTh6MB8GA1UdIwQYMBaAFFph\n"
    "XFnlpQPMwJJeepAgudchFTh6MA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZIhvcNAQEL\n"
    "BQADgYEAdENzGV/oPBT4ofOHmu3atWS7tsFIuQbaeXylwKjS/avpMy9wgm4rxldz\n"
    "N3idrIhFdFMrIJYdT4zkJmvLzIoR+6yutEgJo6W81S40W0b25sBOV4AzjNAKL863\n"
    "wCYZcfSHAyloOoUmhWxFYJvmjQEp05lPWAPQJ3HelD1Lp80Guds=\n"
    "-----END CERTIFICATE-----\n";

TEST_CASE("an RSA certificate is refused as a key type outside the HAN profile, saying so")
{
    tls::cert_list certs;
    std::string error;
    CHECK_FALSE(certs.parse_pem(rsa_certificate_pem, error));
    INFO(error);
    CHECK(error.find("not ECDSA") != std::string::npos);
    CHECK(error.find("HAN profile") != std::string::npos);
}
