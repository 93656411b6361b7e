#include "ipc.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace clsgw {

namespace {

struct frame_header {
    uint16_t type;
    uint16_t flags;
    uint32_t len;
};
static_assert(sizeof(frame_header) == ipc_header_size, "frame header must be 8 bytes");

bool known_type(uint16_t t)
{
    switch (static_cast<msg_type>(t)) {
    case msg_type::job:
    case msg_type::upstream_ready:
    case msg_type::upstream_failed:
    case msg_type::log:
    case msg_type::upstream_request:
    case msg_type::established:
    case msg_type::result:
    case msg_type::session_answer:
    case msg_type::handover:
    case msg_type::session_request:
    case msg_type::session_offer:
    case msg_type::session_store:
    case msg_type::session_lookup:
    case msg_type::progress:
    case msg_type::signer_ready:
    case msg_type::session_open:
    case msg_type::signer_probe:
    case msg_type::signer_counts:
    case msg_type::sign_request:
    case msg_type::sign_answer:
        return true;
    }
    return false;
}

} // namespace

std::optional<bytes> ipc_encode(msg_type type, const bytes &payload, uint16_t flags)
{
    if (payload.size() > ipc_max_payload)
        return std::nullopt;
    frame_header h{static_cast<uint16_t>(type), flags, static_cast<uint32_t>(payload.size())};
    bytes out(ipc_header_size + payload.size());
    memcpy(out.data(), &h, sizeof h);
    if (!payload.empty())
        memcpy(out.data() + ipc_header_size, payload.data(), payload.size());
    return out;
}

std::optional<ipc_message> ipc_decode(const uint8_t *data, size_t len, std::string &error)
{
    if (len < ipc_header_size) {
        error = "frame shorter than its header";
        return std::nullopt;
    }
    frame_header h;
    memcpy(&h, data, sizeof h);
    if (!known_type(h.type)) {
        error = "unknown message type " + std::to_string(h.type);
        return std::nullopt;
    }
    if (h.len > ipc_max_payload) {
        error = "payload length " + std::to_string(h.len) + " over the cap";
        return std::nullopt;
    }
    if (h.len != len - ipc_header_size) {
        error = "payload length " + std::to_string(h.len) + " does not match the frame (" +
                std::to_string(len - ipc_header_size) + ")";
        return std::nullopt;
    }
    ipc_message m;
    m.type = static_cast<msg_type>(h.type);
    m.flags = h.flags;
    m.payload.assign(data + ipc_header_size, data + len);
    return m;
}

namespace {

bool send_frame(int socket, msg_type type, const bytes &payload, int fd_to_pass, int flags)
{
    auto frame = ipc_encode(type, payload);
    if (!frame) {
        errno = EMSGSIZE;
        return false;
    }
    iovec iov{frame->data(), frame->size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    if (fd_to_pass >= 0) {
        memset(control, 0, sizeof control);
        mh.msg_control = control;
        mh.msg_controllen = sizeof control;
        cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd_to_pass, sizeof(int));
    }
    for (;;) {
        ssize_t n = sendmsg(socket, &mh, MSG_NOSIGNAL | flags);
        if (n < 0 && errno == EINTR)
            continue;
        int saved = errno;
        explicit_bzero(frame->data(), frame->size()); // frames may carry TLS sessions
        errno = saved;
        return n >= 0 && static_cast<size_t>(n) == frame->size();
    }
}

// Our programs are single-threaded. A plain static buffer lives in .bss, where only the pages a
// message fills become the process's own memory; a thread_local one is zeroed whole when the
// process starts (64 KiB of every worker's memory).
uint8_t recv_buf[ipc_header_size + ipc_max_payload + 1];
size_t recv_used = 0; // how much of it the last frame filled

} // namespace

bool ipc_send(int socket, msg_type type, const bytes &payload, int fd_to_pass)
{
    return send_frame(socket, type, payload, fd_to_pass, 0);
}

bool ipc_send_nowait(int socket, msg_type type, const bytes &payload, int fd_to_pass)
{
    return send_frame(socket, type, payload, fd_to_pass, MSG_DONTWAIT);
}

void ipc_wipe_receive_buffer()
{
    explicit_bzero(recv_buf, recv_used);
    recv_used = 0;
}

ipc_recv_result ipc_recv(int socket, bool fd_allowed)
{
    ipc_recv_result r;
    uint8_t *buf = recv_buf;
    iovec iov{buf, sizeof recv_buf};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    // Room for several fds so that a peer sending too many is detected, not silently truncated.
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n;
    do
        n = recvmsg(socket, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        // A peer that went away with our message unread resets the socket: it is closed, not hostile.
        if (errno == ECONNRESET)
            r.status = ipc_status::closed;
        else
            r.status = (errno == EAGAIN || errno == EWOULDBLOCK) ? ipc_status::would_block : ipc_status::error;
        r.error = errno_text(errno);
        return r;
    }
    std::vector<unique_fd> fds;
    for (cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            fds.emplace_back(fd);
        }
    }
    recv_used = std::max(recv_used, static_cast<size_t>(n > 0 ? n : 0));
    if (n == 0 && fds.empty()) {
        r.status = ipc_status::closed;
        return r;
    }
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        r.error = "frame or its control data truncated";
        return r;
    }
    if (fds.size() > 1 || (!fd_allowed && !fds.empty())) {
        r.error = "unexpected file descriptors in frame";
        return r;
    }
    auto m = ipc_decode(buf, static_cast<size_t>(n), r.error);
    if (!m)
        return r;
    r.message = std::move(*m);
    if (!fds.empty())
        r.message.fd = std::move(fds[0]);
    r.status = ipc_status::ok;
    return r;
}

bool ipc_socketpair(unique_fd &a, unique_fd &b)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return false;
    a.reset(sv[0]);
    b.reset(sv[1]);
    return true;
}

tlv_writer &tlv_writer::add(uint16_t tag, const void *data, size_t len)
{
    uint32_t l = static_cast<uint32_t>(len);
    size_t at = out_.size();
    out_.resize(at + 6 + len);
    memcpy(out_.data() + at, &tag, 2);
    memcpy(out_.data() + at + 2, &l, 4);
    if (len)
        memcpy(out_.data() + at + 6, data, len);
    return *this;
}

tlv_writer &tlv_writer::add_u64(uint16_t tag, uint64_t v) { return add(tag, &v, sizeof v); }

tlv_reader::~tlv_reader()
{
    for (auto &[tag, value] : fields_)
        explicit_bzero(value.data(), value.size());
}

bool tlv_reader::parse(const bytes &data, std::string &error)
{
    fields_.clear();
    size_t pos = 0;
    while (pos < data.size()) {
        if (data.size() - pos < 6) {
            error = "truncated field header";
            return false;
        }
        uint16_t tag;
        uint32_t len;
        memcpy(&tag, data.data() + pos, 2);
        memcpy(&len, data.data() + pos + 2, 4);
        pos += 6;
        if (len > data.size() - pos) {
            error = "field " + std::to_string(tag) + " longer than the record";
            return false;
        }
        auto value = std::string(reinterpret_cast<const char *>(data.data() + pos), len);
        if (!fields_.emplace(tag, std::move(value)).second) {
            error = "field " + std::to_string(tag) + " repeated";
            return false;
        }
        pos += len;
    }
    return true;
}

std::optional<std::string> tlv_reader::str(uint16_t tag, size_t max_len) const
{
    auto it = fields_.find(tag);
    if (it == fields_.end() || it->second.size() > max_len)
        return std::nullopt;
    return it->second;
}

std::optional<std::string> tlv_reader::text(uint16_t tag, size_t max_len) const
{
    auto s = str(tag, max_len);
    if (s)
        for (unsigned char c : *s)
            if (c < 0x20 || c > 0x7e)
                return std::nullopt;
    return s;
}

std::optional<uint64_t> tlv_reader::u64(uint16_t tag) const
{
    auto it = fields_.find(tag);
    if (it == fields_.end() || it->second.size() != sizeof(uint64_t))
        return std::nullopt;
    uint64_t v;
    memcpy(&v, it->second.data(), sizeof v);
    return v;
}

std::optional<bytes> tlv_reader::raw(uint16_t tag, size_t max_len) const
{
    auto it = fields_.find(tag);
    if (it == fields_.end() || it->second.size() > max_len)
        return std::nullopt;
    return bytes(it->second.begin(), it->second.end());
}

} // namespace clsgw
