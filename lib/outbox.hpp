// A bounded queue of outgoing frames for one non-blocking SEQPACKET peer. A frame goes out at
// once when nothing waits before it; what the socket does not take waits here, up to a limit.
// A peer that lets the limit fill is not reading: the owner cuts it off instead of blocking.
#pragma once

#include <cstddef>
#include <deque>

#include "ipc.hpp"

namespace clsgw {

class outbox {
public:
    outbox(size_t max_frames, size_t max_bytes) : max_frames_(max_frames), max_bytes_(max_bytes) {}

    enum class result {
        sent,     // the socket took it
        queued,   // waits for POLLOUT
        overflow, // the queue is full: the peer does not read
        failed,   // the peer is gone (or the frame is over the IPC cap)
    };
    // Sends one frame, or queues it behind those already waiting. Never blocks.
    result push(int socket, msg_type type, const bytes &payload);
    // Sends what waits, as far as the socket takes it; false when the peer is gone.
    bool flush(int socket);
    // True while frames wait: poll the socket for POLLOUT.
    bool pending() const { return !frames_.empty(); }
    size_t queued_frames() const { return frames_.size(); }
    void clear();

private:
    size_t max_frames_, max_bytes_;
    size_t bytes_ = 0;
    std::deque<bytes> frames_;
};

} // namespace clsgw
