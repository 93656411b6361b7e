#include "probe.hpp"

#include <sys/random.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "../../lib/tls/tls.hpp"

namespace clsgw::hanscan {

const std::vector<uint16_t> PROFILE_SUITES = {0xC02B, 0xC02C, 0xC023, 0xC024};
const std::vector<uint16_t> PROFILE_GROUPS = {26, 27, 28, 23, 24};
const std::vector<uint16_t> PROFILE_SIGNATURES = {0x0603, 0x0503, 0x0403};

bool in_profile(const std::vector<uint16_t> &list, uint16_t value)
{
    return std::find(list.begin(), list.end(), value) != list.end();
}

void set_extension(wire::client_hello &hello, uint16_t type, const wire::bytes &data)
{
    for (auto &x : hello.extensions)
        if (x.type == type) {
            x.data = data;
            return;
        }
    hello.extensions.push_back({type, data});
}

void drop_extension(wire::client_hello &hello, uint16_t type)
{
    hello.extensions.erase(std::remove_if(hello.extensions.begin(), hello.extensions.end(),
                                          [type](const wire::extension &x) { return x.type == type; }),
                           hello.extensions.end());
}

const wire::handshake_message *probe_answer::find(uint8_t type) const
{
    for (const auto &m : messages)
        if (m.type == type)
            return &m;
    return nullptr;
}

std::optional<wire::key_exchange> probe_answer::key_exchange() const
{
    const wire::handshake_message *m = find(wire::HS_SERVER_KEY_EXCHANGE);
    return m ? wire::parse_ecdhe_server_key_exchange(m->body.data(), m->body.size()) : std::nullopt;
}

std::string probe_answer::text() const
{
    switch (what) {
    case kind::server_hello:
        if (hello->negotiated_version() == wire::VERSION_TLS13)
            return hello->is_retry_request() ? "HelloRetryRequest for TLSv1.3" : "ServerHello TLSv1.3";
        return "ServerHello " + wire::version_name(hello->version) + " " + wire::suite_name(hello->suite) + " (" +
               wire::hex16(hello->suite) + ")";
    case kind::alert:
        return std::string(alert->first == 1 ? "warning" : "alert") + " " + alert_name(alert->second);
    case kind::closed: return "closed without an answer";
    case kind::reset: return "reset without an answer";
    case kind::timeout: return "no answer within " + error;
    case kind::malformed: return "malformed answer: " + error;
    case kind::no_connection: return error;
    }
    return "?";
}

wire::client_hello prober::profile_hello() const
{
    wire::client_hello h;
    h.suites = PROFILE_SUITES;
    h.suites.push_back(wire::SUITE_RENEGOTIATION_SCSV);
    h.extensions = {
        {wire::EXT_SUPPORTED_GROUPS, wire::u16_list(PROFILE_GROUPS)},
        {wire::EXT_EC_POINT_FORMATS, {1, 0}},
        {wire::EXT_SIGNATURE_ALGORITHMS, wire::u16_list(PROFILE_SIGNATURES)},
        {wire::EXT_ENCRYPT_THEN_MAC, {}},
        {wire::EXT_EXTENDED_MASTER_SECRET, {}},
    };
    if (!server_name_.empty()) {
        wire::bytes name{0}; // host_name
        name.push_back(static_cast<uint8_t>(server_name_.size() >> 8));
        name.push_back(static_cast<uint8_t>(server_name_.size()));
        name.insert(name.end(), server_name_.begin(), server_name_.end());
        wire::bytes list{static_cast<uint8_t>(name.size() >> 8), static_cast<uint8_t>(name.size())};
        list.insert(list.end(), name.begin(), name.end());
        h.extensions.insert(h.extensions.begin(), {wire::EXT_SERVER_NAME, list});
    }
    return h;
}

namespace {

bool answered(const wire::record_reader &r)
{
    if (r.alert || r.change_cipher_spec)
        return true;
    for (const auto &m : r.messages) {
        if (m.type == wire::HS_SERVER_HELLO_DONE)
            return true;
        if (m.type == wire::HS_SERVER_HELLO) {
            auto h = wire::parse_server_hello(m.body.data(), m.body.size());
            if (!h || h->negotiated_version() == wire::VERSION_TLS13)
                return true; // the rest is encrypted, or nothing sensible follows
        }
    }
    return false;
}

bool send_all(int fd, const wire::bytes &data, uint64_t deadline_ms)
{
    size_t done = 0;
    while (done < data.size()) {
        ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
        if (n > 0) {
            done += static_cast<size_t>(n);
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!tls::wait_io(fd, MBEDTLS_ERR_SSL_WANT_WRITE, deadline_ms))
                return false;
        } else {
            return false;
        }
    }
    return true;
}

} // namespace

probe_answer prober::send(const wire::client_hello &request)
{
    probe_answer a;
    wire::client_hello hello = request;
    if (getrandom(hello.random, sizeof hello.random, 0) != sizeof hello.random) {
        a.what = probe_answer::kind::no_connection;
        a.error = "getrandom failed";
        return a;
    }
    unique_fd fd = connect_with_deadline(address_, limits_.connect_ms, a.error);
    if (!fd) {
        a.what = probe_answer::kind::no_connection;
        if (lost.empty())
            lost = a.error;
        return a;
    }
    uint64_t deadline = now_ms() + limits_.answer_ms;
    wire::record_reader reader;
    wait_end end = send_all(fd.get(), wire::encode_client_hello_record(hello), deadline)
                       ? read_records(fd.get(), {}, reader, deadline, answered)
                       : wait_end::reset;
    a.messages = reader.messages;
    a.alert = reader.alert;
    const wire::handshake_message *sh = a.find(wire::HS_SERVER_HELLO);
    if (sh)
        a.hello = wire::parse_server_hello(sh->body.data(), sh->body.size());
    if (reader.malformed || (sh && !a.hello)) {
        a.what = probe_answer::kind::malformed;
        a.error = reader.malformed ? reader.malformed_reason : "ServerHello does not parse";
    } else if (a.hello) {
        a.what = probe_answer::kind::server_hello;
        if (!a.hello->is_retry_request())
            randoms.emplace_back(a.hello->random, a.hello->random + 32);
    } else if (a.alert) {
        a.what = probe_answer::kind::alert;
    } else {
        a.error = timeout_text("answer_timeout", limits_.answer_ms);
        a.what = end == wait_end::timeout ? probe_answer::kind::timeout
                 : end == wait_end::reset ? probe_answer::kind::reset
                                          : probe_answer::kind::closed;
    }
    return a;
}

} // namespace clsgw::hanscan
