// tls::endpoint: a client and a server over a socketpair, with certificates made for the test.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "../../lib/pki.hpp"
#include "../../lib/tls/endpoint.hpp"
#include "../../lib/util.hpp"

using namespace clsgw;

namespace {

struct identity {
    std::string key_pem;
    tls::cert_list cert;
    explicit identity(const char *subject)
    {
        auto key = pki::generate_key("brainpoolP256r1");
        REQUIRE(key.ok);
        key_pem = key.pem;
        pki::cert_request req;
        req.subject = subject;
        req.key_pem = key.pem;
        auto made = pki::make_certificate(req);
        REQUIRE(made.ok);
        std::string error;
        REQUIRE(cert.parse_pem(made.pem, error));
    }
};

struct socket_pair {
    int fd[2] = {-1, -1};
    socket_pair() { REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd) == 0); }
    ~socket_pair() { close_side(0), close_side(1); }
    void close_side(int i)
    {
        if (fd[i] >= 0)
            close(fd[i]);
        fd[i] = -1;
    }
};

struct side {
    tls::rng rng;
    tls::endpoint e;
    // own may be null: a client without a certificate.
    side(int role, const identity *own, const tls::cert_list &trust)
    {
        REQUIRE(rng.seed("clsgw unit test"));
        REQUIRE(e.configure(role, rng, trust.get()) == 0);
        if (own) {
            REQUIRE(e.parse_key(own->key_pem) == 0);
            REQUIRE(e.own_cert(const_cast<mbedtls_x509_crt *>(own->cert.get())) == 0);
        }
    }
};

struct both_results {
    tls::handshake_result client, server;
};

// Both handshakes in this one thread, as far as each can go without waiting, in turns: mbedTLS is
// built without its threading support and clsgw's hello-clock switch is per process, so two
// threads must not drive TLS at once (under qemu-user that raced into a spin). A side that fails
// closes its socket, as its process would.
both_results handshake_both(side &client, side &server, socket_pair &sp)
{
    both_results r;
    bool client_done = false, server_done = false;
    uint64_t deadline = now_ms() + 60000;
    while ((!client_done || !server_done) && now_ms() < deadline) {
        if (!client_done) {
            r.client = client.e.handshake(now_ms());
            if ((client_done = !r.client.timed_out) && r.client.ret != 0)
                sp.close_side(0);
        }
        if (!server_done) {
            r.server = server.e.handshake(now_ms());
            if ((server_done = !r.server.timed_out) && r.server.ret != 0)
                sp.close_side(1);
        }
    }
    return r;
}

int remember_name(void *arg, mbedtls_ssl_context *, const unsigned char *name, size_t len)
{
    static_cast<std::string *>(arg)->assign(reinterpret_cast<const char *>(name), len);
    return 0;
}

// A client and a server, each trusting the other's certificate, handshaken over a socketpair.
struct channel {
    identity client_id{"CN=device"}, server_id{"CN=smgw"};
    socket_pair sp;
    side client{MBEDTLS_SSL_IS_CLIENT, &client_id, server_id.cert};
    side server{MBEDTLS_SSL_IS_SERVER, &server_id, client_id.cert};
    std::string server_name;
    both_results r;
    channel()
    {
        server.e.on_server_name(remember_name, &server_name);
        REQUIRE(client.e.open(sp.fd[0], "emt.example") == 0);
        REQUIRE(server.e.open(sp.fd[1]) == 0);
        r = handshake_both(client, server, sp);
        REQUIRE(r.client.ret == 0);
        REQUIRE(r.server.ret == 0);
    }
};

} // namespace

TEST_CASE("endpoint: a client and a server handshake, each checking the other's certificate by trust")
{
    channel c;
    CHECK_FALSE(c.r.client.timed_out);
    CHECK_FALSE(c.r.client.resumed);
    CHECK(c.server_name == "emt.example");
    CHECK(c.r.client.group == MBEDTLS_ECP_DP_BP256R1); // the profile's first group
    CHECK(c.r.server.group == MBEDTLS_ECP_DP_BP256R1);
    CHECK(c.client.e.peer_cert_curve() == MBEDTLS_ECP_DP_BP256R1);
    CHECK(c.server.e.peer_cert_curve() == MBEDTLS_ECP_DP_BP256R1);
    const mbedtls_x509_crt *seen_by_server = mbedtls_ssl_get_peer_cert(c.server.e.ssl());
    REQUIRE(seen_by_server != nullptr);
    CHECK(tls::fingerprint(seen_by_server) == tls::fingerprint(c.client_id.cert.get()));

    // More than the socket and one record hold: the reader takes it in pieces.
    std::vector<unsigned char> sent(300 * 1024);
    for (size_t i = 0; i < sent.size(); i++)
        sent[i] = static_cast<unsigned char>(i * 7 + i / 251);
    // Written and read in turns in this one thread (see handshake_both): the writer as far as the
    // socket takes, the reader with a deadline of now, resuming with what it has got so far.
    size_t written = 0, got = 0;
    std::vector<unsigned char> received(sent.size());
    tls::io_status read = tls::io_status::timeout;
    for (uint64_t deadline = now_ms() + 60000; read == tls::io_status::timeout && now_ms() < deadline;) {
        if (written < sent.size()) {
            int w = mbedtls_ssl_write(c.server.e.ssl(), sent.data() + written, sent.size() - written);
            REQUIRE((w > 0 || w == MBEDTLS_ERR_SSL_WANT_WRITE));
            written += w > 0 ? static_cast<size_t>(w) : 0;
        }
        read = c.client.e.read_exact(received.data(), received.size(), got, now_ms());
    }
    CHECK(written == sent.size());
    CHECK(read == tls::io_status::ok);
    CHECK(got == sent.size());
    CHECK(received == sent);
}

TEST_CASE("endpoint: read_exact ends at its deadline with what arrived, and says when the peer closed")
{
    channel c;
    unsigned char buf[4] = {};
    size_t got = 0;
    uint64_t begin = now_ms();
    CHECK(c.client.e.read_exact(buf, 4, got, begin + 150) == tls::io_status::timeout);
    CHECK(now_ms() - begin >= 150);
    CHECK(got == 0);

    const unsigned char two[] = {'o', 'k'};
    REQUIRE(c.server.e.write_all(two, 2, now_ms() + 1000) == tls::io_status::ok);
    CHECK(c.client.e.read_exact(buf, 4, got, now_ms() + 150) == tls::io_status::timeout);
    CHECK(got == 2);
    CHECK(buf[0] == 'o');

    SUBCASE("close_notify")
    {
        c.server.e.close_notify();
        CHECK(c.client.e.read_exact(buf, 4, got, now_ms() + 5000) == tls::io_status::closed);
    }
    SUBCASE("the socket closed without close_notify")
    {
        c.sp.close_side(1);
        CHECK(c.client.e.read_exact(buf, 4, got, now_ms() + 5000) == tls::io_status::closed);
    }
    CHECK(got == 2);
}

TEST_CASE("endpoint: write_all ends at its deadline when the peer reads nothing")
{
    channel c;
    std::vector<unsigned char> lots(8 * 1024 * 1024, 0x5a);
    uint64_t begin = now_ms();
    CHECK(c.client.e.write_all(lots.data(), lots.size(), begin + 200) == tls::io_status::timeout);
    CHECK(now_ms() - begin >= 200);
}

TEST_CASE("endpoint: a server requiring a client certificate refuses a client without one")
{
    identity server_id("CN=smgw"), someone("CN=someone");
    socket_pair sp;
    side client(MBEDTLS_SSL_IS_CLIENT, nullptr, server_id.cert);
    side server(MBEDTLS_SSL_IS_SERVER, &server_id, someone.cert);
    REQUIRE(client.e.open(sp.fd[0]) == 0);
    REQUIRE(server.e.open(sp.fd[1]) == 0);
    both_results r = handshake_both(client, server, sp);
    CHECK(r.server.ret == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE);
    CHECK_FALSE(r.server.timed_out);
    CHECK(r.client.ret != 0);
    CHECK_FALSE(r.client.timed_out);
    CHECK(mbedtls_ssl_get_peer_cert(server.e.ssl()) == nullptr);
}

TEST_CASE("endpoint: a server outside the anchors is refused, unless its certificate is pinned")
{
    identity client_id("CN=device"), server_id("CN=smgw"), other("CN=other");
    for (bool pinned : {false, true}) {
        CAPTURE(pinned);
        socket_pair sp;
        side client(MBEDTLS_SSL_IS_CLIENT, &client_id, other.cert);
        side server(MBEDTLS_SSL_IS_SERVER, &server_id, client_id.cert);
        if (pinned) {
            // as administrators copy it: upper case with colons
            std::string fp = tls::fingerprint(server_id.cert.get()), colons;
            for (size_t i = 0; i < fp.size(); i += 2)
                colons += (i ? ":" : "") + fp.substr(i, 2);
            for (char &ch : colons)
                ch = static_cast<char>(toupper(static_cast<unsigned char>(ch)));
            client.e.pin_sha256(colons);
        }
        REQUIRE(client.e.open(sp.fd[0]) == 0);
        REQUIRE(server.e.open(sp.fd[1]) == 0);
        both_results r = handshake_both(client, server, sp);
        if (pinned) {
            CHECK(r.client.ret == 0);
        } else {
            CHECK(r.client.ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
            CHECK((mbedtls_ssl_get_verify_result(client.e.ssl()) & MBEDTLS_X509_BADCERT_NOT_TRUSTED) != 0);
        }
    }
}

TEST_CASE("endpoint: the groups set are offered, and chosen, in their order")
{
    identity client_id("CN=device"), server_id("CN=smgw");
    socket_pair sp;
    side client(MBEDTLS_SSL_IS_CLIENT, &client_id, server_id.cert);
    side server(MBEDTLS_SSL_IS_SERVER, &server_id, client_id.cert);
    const std::vector<uint16_t> groups{MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1, MBEDTLS_SSL_IANA_TLS_GROUP_BP256R1};
    client.e.set_groups(groups);
    server.e.set_groups(groups); // by default the server would choose brainpoolP256r1
    REQUIRE(client.e.open(sp.fd[0]) == 0);
    REQUIRE(server.e.open(sp.fd[1]) == 0);
    both_results r = handshake_both(client, server, sp);
    REQUIRE(r.server.ret == 0);
    CHECK(r.server.group == MBEDTLS_ECP_DP_SECP384R1);
    CHECK(tls::offered_groups(server.e.io()) == "secp384r1:brainpoolP256r1");
}
