// botan-smgw: a Botan 2 TLS peer that plays an SMGW's HAN side in the interop tests.
//
//   botan-smgw server PORT CERT KEY PINNED_DEVICE_CERT
//       TLS 1.2 server on 127.0.0.1:PORT that requires a client certificate and pins it by exact
//       match (Botan's path validation refuses a self-signed end entity), then takes a SOCKS5
//       CONNECT inside TLS, connects to the target on loopback and relays. A close_notify from
//       the device ends the channel at once, as Botan-based SMGWs do. One connection, then exit.
//   botan-smgw client HOST:PORT CERT KEY PINNED_DEVICE_CERT LINE
//       TLS 1.2 client (an SMGW opening an inbound channel) presenting CERT, pinning the device's
//       certificate; sends LINE, prints everything received until the device closes.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <botan/auto_rng.h>
#include <botan/credentials_manager.h>
#include <botan/data_src.h>
#include <botan/pkcs8.h>
#include <botan/tls_client.h>
#include <botan/tls_exceptn.h>
#include <botan/tls_server.h>
#include <botan/tls_session_manager.h>
#include <botan/pkix_types.h>
#include <botan/x509cert.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

const char *POLICY = "allow_tls10 = false\nallow_tls11 = false\nallow_tls12 = true\n"
                     "allow_dtls10 = false\nallow_dtls12 = false\n"
                     "ciphers = AES-256/GCM AES-128/GCM\nmacs = AEAD\nsignature_hashes = SHA-384 SHA-256\n"
                     "key_exchange_methods = ECDH\nsignature_methods = ECDSA\n"
                     "groups = brainpool256r1 brainpool384r1 secp256r1 secp384r1\n"
                     "require_client_certificate_authentication = true\n";

class creds : public Botan::Credentials_Manager {
public:
    creds(const std::string &cert, const std::string &key, Botan::RandomNumberGenerator &rng, const std::string &pin)
        : cert_(cert), pinned_(pin)
    {
        key_.reset(Botan::PKCS8::load_key(key, rng));
        roots_.add_certificate(pinned_);
    }
    std::vector<Botan::Certificate_Store *> trusted_certificate_authorities(const std::string &, const std::string &) override
    {
        return {&roots_}; // non-empty: the server asks for a client certificate
    }
    std::vector<Botan::X509_Certificate> cert_chain(const std::vector<std::string> &, const std::string &,
                                                    const std::string &) override
    {
        return {cert_};
    }
    Botan::Private_Key *private_key_for(const Botan::X509_Certificate &, const std::string &, const std::string &) override
    {
        return key_.get();
    }
    Botan::X509_Certificate pinned() const { return pinned_; }

private:
    Botan::X509_Certificate cert_, pinned_;
    std::unique_ptr<Botan::Private_Key> key_;
    Botan::Certificate_Store_In_Memory roots_;
};

class callbacks : public Botan::TLS::Callbacks {
public:
    callbacks(int fd, const Botan::X509_Certificate &pinned) : fd_(fd), pinned_(pinned) {}
    void tls_emit_data(const uint8_t data[], size_t size) override
    {
        while (size > 0) {
            ssize_t n = send(fd_, data, size, MSG_NOSIGNAL);
            if (n <= 0)
                throw std::runtime_error("send to the device failed");
            data += n;
            size -= static_cast<size_t>(n);
        }
    }
    void tls_record_received(uint64_t, const uint8_t data[], size_t size) override { received.append(reinterpret_cast<const char *>(data), size); }
    void tls_alert(Botan::TLS::Alert alert) override
    {
        if (alert.type() == Botan::TLS::Alert::CLOSE_NOTIFY)
            closed = true;
        std::cerr << "botan-smgw: alert " << alert.type_string() << "\n";
    }
    bool tls_session_established(const Botan::TLS::Session &) override
    {
        established = true;
        return false;
    }
    // Pinning by exact match: the only trust a self-signed device certificate can get from Botan.
    void tls_verify_cert_chain(const std::vector<Botan::X509_Certificate> &chain,
                               const std::vector<std::shared_ptr<const Botan::OCSP::Response>> &,
                               const std::vector<Botan::Certificate_Store *> &, Botan::Usage_Type, const std::string &,
                               const Botan::TLS::Policy &) override
    {
        if (chain.empty() || !(chain[0] == pinned_))
            throw Botan::TLS::TLS_Exception(Botan::TLS::Alert::BAD_CERTIFICATE, "certificate is not the pinned one");
        std::cerr << "botan-smgw: peer certificate pinned: " << chain[0].subject_dn().to_string() << "\n";
    }
    std::string received;
    bool closed = false, established = false;

private:
    int fd_;
    Botan::X509_Certificate pinned_;
};

// What either side needs: its certificate and key, the pinned peer, the HAN policy, no session
// cache.
struct endpoint {
    Botan::AutoSeeded_RNG rng;
    creds cr;
    std::istringstream policy_text{POLICY};
    Botan::TLS::Text_Policy policy{policy_text};
    Botan::TLS::Session_Manager_Noop sessions;
    endpoint(const char *cert, const char *key, const char *pinned) : cr(cert, key, rng, pinned) {}
};

int connect_to(const std::string &host, const std::string &port)
{
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, 0);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

// Feeds the channel what arrives on fd; false at EOF.
bool pump(int fd, Botan::TLS::Channel &channel)
{
    uint8_t buf[16384];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0)
        return false;
    channel.received_data(buf, static_cast<size_t>(n));
    return true;
}

// SOCKS5 inside TLS: greeting, CONNECT (DOMAIN, IPv4), reply; returns the EMT socket or -1.
int socks5_connect(int device, Botan::TLS::Channel &tls, callbacks &cb)
{
    while (cb.received.size() < 3)
        if (!pump(device, tls) || cb.closed)
            return -1;
    cb.received.erase(0, 2 + static_cast<uint8_t>(cb.received[1]));
    const uint8_t choice[] = {5, 0};
    tls.send(choice, sizeof choice);
    for (;;) {
        const std::string &r = cb.received;
        if (r.size() >= 5) {
            size_t need = r[3] == 3 ? 5 + static_cast<uint8_t>(r[4]) + 2 : r[3] == 1 ? 10 : 22;
            if (r.size() >= need)
                break;
        }
        if (!pump(device, tls) || cb.closed)
            return -1;
    }
    std::string r = cb.received;
    std::string host;
    size_t at;
    if (r[3] == 3) {
        host = r.substr(5, static_cast<uint8_t>(r[4]));
        at = 5 + host.size();
    } else {
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, r.data() + 4, text, sizeof text);
        host = text;
        at = 8;
    }
    int port = static_cast<uint8_t>(r[at]) << 8 | static_cast<uint8_t>(r[at + 1]);
    cb.received.erase(0, at + 2);
    int emt = connect_to(host, std::to_string(port));
    const uint8_t ok[] = {5, 0, 0, 1, 0, 0, 0, 0, 0, 0}, refused[] = {5, 5, 0, 1, 0, 0, 0, 0, 0, 0};
    tls.send(emt >= 0 ? ok : refused, sizeof ok);
    std::cerr << "botan-smgw: CONNECT " << host << ":" << port << (emt >= 0 ? " ok" : " refused") << "\n";
    return emt;
}

void relay(int device, int emt, Botan::TLS::Channel &tls, callbacks &cb)
{
    for (;;) {
        if (!cb.received.empty()) {
            if (send(emt, cb.received.data(), cb.received.size(), MSG_NOSIGNAL) < 0)
                return;
            cb.received.clear();
        }
        if (cb.closed) {
            std::cerr << "botan-smgw: close_notify from the device: channel closed\n";
            return; // Botan-based SMGWs end the channel here; the EMT connection goes with it
        }
        pollfd p[2] = {{device, POLLIN, 0}, {emt, POLLIN, 0}};
        if (poll(p, 2, 30000) <= 0)
            return;
        if (p[0].revents && !pump(device, tls))
            return;
        if (p[1].revents) {
            uint8_t buf[16384];
            ssize_t n = recv(emt, buf, sizeof buf, 0);
            if (n <= 0) {
                tls.close();
                return;
            }
            tls.send(buf, static_cast<size_t>(n));
        }
    }
}

int serve(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    endpoint ep(argv[3], argv[4], argv[5]);
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(atoi(argv[2])));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 || listen(l, 4) != 0)
        return 1;
    std::cerr << "botan-smgw: listening\n";
    int device = accept(l, nullptr, nullptr);
    callbacks cb(device, ep.cr.pinned());
    try {
        Botan::TLS::Server tls(cb, ep.sessions, ep.cr, ep.policy, ep.rng);
        while (!cb.established)
            if (!pump(device, tls))
                return 1;
        std::cerr << "botan-smgw: handshake done: " << tls.application_protocol() << "\n";
        int emt = socks5_connect(device, tls, cb);
        if (emt >= 0)
            relay(device, emt, tls, cb);
    } catch (const std::exception &e) {
        std::cerr << "botan-smgw: " << e.what() << "\n";
        return 1;
    }
    return 0;
}

int client(int argc, char **argv)
{
    if (argc != 7)
        return 2;
    std::string to = argv[2];
    size_t colon = to.rfind(':');
    int device = connect_to(to.substr(0, colon), to.substr(colon + 1));
    if (device < 0)
        return 1;
    endpoint ep(argv[3], argv[4], argv[5]);
    callbacks cb(device, ep.cr.pinned());
    try {
        Botan::TLS::Client tls(cb, ep.sessions, ep.cr, ep.policy, ep.rng, Botan::TLS::Server_Information(),
                               Botan::TLS::Protocol_Version::TLS_V12);
        while (!cb.established)
            if (!pump(device, tls))
                return 1;
        std::string line = std::string(argv[6]) + "\n";
        tls.send(line);
        // the device's service echoes; an SMGW closes once it has what it came for
        while (!cb.closed && cb.received.size() < line.size() && pump(device, tls)) {
        }
        tls.close();
        std::cout << cb.received << std::flush;
    } catch (const std::exception &e) {
        std::cerr << "botan-smgw: " << e.what() << "\n";
        return 1;
    }
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "server")
        return serve(argc, argv);
    if (mode == "client")
        return client(argc, argv);
    fprintf(stderr, "usage: botan-smgw server PORT CERT KEY PINNED | client HOST:PORT CERT KEY PINNED LINE\n");
    return 2;
}
