#include <doctest/doctest.h>
#include <mbedtls/x509_crt.h>

#include "../../lib/pki.hpp"

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
