// Framed messages over SOCK_SEQPACKET socketpairs, with optional fd passing, and a TLV codec.
//
// Frame: {u16 type, u16 flags, u32 len} in host order (both ends are on this machine), then
// len payload bytes. The kernel keeps message boundaries; a frame must arrive whole.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fd.hpp"
#include "util.hpp"

namespace clsgw {

enum class msg_type : uint16_t {
    // master -> worker
    job = 1,
    upstream_ready = 2, // carries the connected upstream fd
    upstream_failed = 3,
    session_answer = 4, // a cached TLS session (or none) for session_request / session_lookup
    handover = 5,       // to a spare worker: carries the connection; the job follows with the signer session
    // worker -> master
    log = 16,
    upstream_request = 17,
    established = 18,
    result = 19,
    session_request = 20, // client side: a session to resume with the SMGW, by server_name
    session_offer = 21,   // client side: the session of a full handshake, for later channels
    session_store = 22,   // server side: a new session, by session id
    session_lookup = 23,  // server side: the session for an id the SMGW wants to resume
    progress = 24,        // bytes each way so far, at most once per second
    // signer <-> master
    signer_ready = 32,
    session_open = 33, // carries the signer end of a per-channel session
    signer_probe = 34,  // liveness: answered with signer_counts, signs nothing
    signer_counts = 35, // the probe's sequence number, signatures and refusals since start, open sessions
    // worker <-> signer (on the session)
    sign_request = 48,
    sign_answer = 49,
};

constexpr size_t ipc_header_size = 8;
// Certificates and trust anchors travel in the job: 64 KiB holds long chains with room.
constexpr size_t ipc_max_payload = 64 * 1024;

struct ipc_message {
    msg_type type{};
    uint16_t flags = 0;
    bytes payload;
    unique_fd fd; // at most one passed fd per message
};

enum class ipc_status { ok, closed, would_block, error };

// Which part of its protocol-table row a well-formed frame broke (ipc_recv_checked).
enum class ipc_violation : uint8_t { none, not_for_receiver, over_size, fd_rule, over_count };

struct ipc_recv_result {
    ipc_status status = ipc_status::error;
    ipc_message message;  // after a violation: the frame as received, without its fd
    std::string error;    // why a frame was rejected
    ipc_violation violation = ipc_violation::none;
};

// Encodes a frame; nullopt when the payload is over the cap.
std::optional<bytes> ipc_encode(msg_type type, const bytes &payload, uint16_t flags = 0);
// Decodes one whole datagram into a message (no fd); error text on a malformed frame.
std::optional<ipc_message> ipc_decode(const uint8_t *data, size_t len, std::string &error);

// Sends one frame, optionally passing fd_to_pass; false with errno on failure.
bool ipc_send(int socket, msg_type type, const bytes &payload, int fd_to_pass = -1);
// Receives one frame; accepts a passed fd only when fd_allowed, else the frame is an error.
ipc_recv_result ipc_recv(int socket, bool fd_allowed);

// A SEQPACKET socketpair with CLOEXEC on both ends.
bool ipc_socketpair(unique_fd &a, unique_fd &b);

// Type-length-value records: {u16 tag, u32 len, bytes}. Each tag at most once.
class tlv_writer {
public:
    tlv_writer &add(uint16_t tag, const void *data, size_t len);
    tlv_writer &add(uint16_t tag, std::string_view s) { return add(tag, s.data(), s.size()); }
    tlv_writer &add_u64(uint16_t tag, uint64_t v);
    const bytes &data() const { return out_; }
    void reserve(size_t n) { out_.reserve(n); }
    bytes take() { return std::move(out_); } // without a copy left behind (records may hold secrets)

private:
    bytes out_;
};

class tlv_reader {
public:
    tlv_reader() = default;
    tlv_reader(const tlv_reader &) = delete;
    tlv_reader &operator=(const tlv_reader &) = delete;
    ~tlv_reader(); // overwrites what it parsed: records may carry TLS sessions
    // Parses the whole buffer; false on truncation, duplicates or trailing bytes.
    bool parse(const bytes &data, std::string &error);
    bool has(uint16_t tag) const { return fields_.count(tag) != 0; }
    size_t count() const { return fields_.size(); }
    std::optional<std::string> str(uint16_t tag, size_t max_len) const;
    // Like str, but only printable ASCII (0x20-0x7e): text that is shown or logged as it is.
    std::optional<std::string> text(uint16_t tag, size_t max_len) const;
    std::optional<uint64_t> u64(uint16_t tag) const;
    std::optional<bytes> raw(uint16_t tag, size_t max_len) const;

private:
    std::map<uint16_t, std::string> fields_;
};

} // namespace clsgw
