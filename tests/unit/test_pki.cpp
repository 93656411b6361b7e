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

TEST_CASE("a key pair is checked as the signer checks it: the certificate's own key, on a profile curve")
{
    auto key = pki::generate_key("brainpoolP256r1"), other = pki::generate_key("brainpoolP256r1");
    REQUIRE(key.ok);
    REQUIRE(other.ok);
    pki::cert_request req;
    req.subject = "CN=pair";
    req.key_pem = key.pem;
    auto cert = pki::make_certificate(req);
    REQUIRE(cert.ok);
    CHECK(pki::key_pair_problem(key.pem, cert.pem) == "");
    CHECK(pki::key_pair_problem(other.pem, cert.pem).find("does not match the certificate") != std::string::npos);
    CHECK(pki::key_pair_problem("not a key", cert.pem).find("cannot parse the private key") == 0);
    CHECK(pki::key_pair_problem(key.pem, "not a certificate").find("cannot parse the certificate") == 0);
    CHECK(pki::profile_curves_text() == "brainpoolP256r1, brainpoolP384r1, brainpoolP512r1, secp256r1, secp384r1");
}

TEST_CASE("only a CA certificate issues: CA:FALSE or a keyUsage without keyCertSign is refused, with why")
{
    auto ca_key = pki::generate_key("secp256r1"), leaf_key = pki::generate_key("secp256r1");
    REQUIRE(ca_key.ok);
    REQUIRE(leaf_key.ok);
    pki::cert_request self;
    self.subject = "CN=not-a-ca";
    self.key_pem = ca_key.pem;
    auto not_ca = pki::make_certificate(self);
    self.subject = "CN=ca";
    self.is_ca = true;
    auto ca = pki::make_certificate(self);
    REQUIRE(not_ca.ok);
    REQUIRE(ca.ok);
    pki::cert_request issue;
    issue.subject = "CN=leaf";
    issue.key_pem = leaf_key.pem;
    issue.issuer_key_pem = ca_key.pem;
    issue.issuer_cert_pem = not_ca.pem;
    auto refused = pki::make_certificate(issue);
    CHECK_FALSE(refused.ok);
    CHECK(refused.error.find("not a CA certificate (basicConstraints without CA:TRUE)") != std::string::npos);
    issue.issuer_cert_pem = ca.pem;
    CHECK(pki::make_certificate(issue).ok);
    issue.issuer_key_pem = leaf_key.pem; // not the CA's key
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
