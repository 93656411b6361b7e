// The IPC protocol in one table: for each message type, who sends it, who receives it, its
// largest payload, whether it carries a file descriptor and how often one peer may send it
// (per channel for a worker, per session for a signer session). Receivers check every frame
// against its row before they look at the payload (ipc_recv_checked); a frame outside its row
// is a protocol violation, and the receiver ends that peer. Modelled on OpenSSH's monitor
// dispatch table (one row per request, MON_ONCE-style counts).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>

#include "ipc.hpp"

namespace clsgw {

// Roles as bits, so that a row can name more than one sender (the master also opens a signer
// session of its own for `clsgwctl check`).
enum ipc_role : uint8_t { role_master = 1, role_worker = 2, role_signer = 4 };

struct ipc_rule {
    msg_type type;
    const char *name;
    uint8_t from, to; // ipc_role bits
    size_t max_payload;
    enum fd_rule : uint8_t { no_fd, fd_required, fd_optional } fd;
    uint32_t max_count; // per channel (or signer session); 0: not counted (see the row's comment)
};

// The row for a type, or nullptr for a type nobody sends.
const ipc_rule *ipc_rule_for(msg_type type);
// Every row, for documentation and tests.
const ipc_rule *ipc_rules_begin();
const ipc_rule *ipc_rules_end();

// Counts what one peer has sent, per message type.
class ipc_budget {
public:
    ipc_budget() = default;
    // A long-lived link (clsgwd's to its signer) leaves these types uncounted: the signer logs for
    // as long as it runs.
    explicit ipc_budget(std::initializer_list<msg_type> uncounted);
    // False once the type is over its row's count (the frame that went over is not counted).
    bool take(const ipc_rule &rule);
    uint32_t used(msg_type type) const;

private:
    std::array<uint32_t, 64> counts_{};
    std::array<bool, 64> uncounted_{};
};

// Receives one frame sent to `me` and checks it against its row: sender, size, fd, count.
// A frame that breaks its row comes back as ipc_status::error with the rule it broke.
ipc_recv_result ipc_recv_checked(int socket, ipc_role me, ipc_budget &budget);

// Sends without ever waiting: the socket's buffer is the peer's bounded queue. False with
// errno EAGAIN when the peer has left that much unread (the caller ends that peer).
bool ipc_send_nowait(int socket, msg_type type, const bytes &payload, int fd_to_pass = -1);

// Overwrites the receive buffer: after a frame that carried secrets (a TLS session).
void ipc_wipe_receive_buffer();

} // namespace clsgw
