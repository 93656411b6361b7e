#include "outbox.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace clsgw {

namespace {

enum class sent { all, would_block, failed };

sent send_frame(int socket, const bytes &frame)
{
    for (;;) {
        ssize_t n = send(socket, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0) // SEQPACKET sends a frame whole or not at all
            return static_cast<size_t>(n) == frame.size() ? sent::all : sent::failed;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return sent::would_block;
        if (errno != EINTR)
            return sent::failed;
    }
}

} // namespace

outbox::result outbox::push(int socket, msg_type type, const bytes &payload)
{
    auto frame = ipc_encode(type, payload);
    if (!frame)
        return result::failed;
    if (frames_.empty()) {
        switch (send_frame(socket, *frame)) {
        case sent::all: return result::sent;
        case sent::failed: return result::failed;
        case sent::would_block: break;
        }
    }
    if (frames_.size() >= max_frames_ || bytes_ + frame->size() > max_bytes_)
        return result::overflow;
    bytes_ += frame->size();
    frames_.push_back(std::move(*frame));
    return result::queued;
}

bool outbox::flush(int socket)
{
    while (!frames_.empty()) {
        switch (send_frame(socket, frames_.front())) {
        case sent::all:
            bytes_ -= frames_.front().size();
            frames_.pop_front();
            break;
        case sent::would_block: return true;
        case sent::failed: return false;
        }
    }
    return true;
}

void outbox::clear()
{
    frames_.clear();
    bytes_ = 0;
}

} // namespace clsgw
