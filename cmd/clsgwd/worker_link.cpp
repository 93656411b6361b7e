// What a worker sends to the master, dispatched by type after the protocol table's checks
// (ipc_recv_checked), and what the master sends back without waiting.
#include "master.hpp"

#include <signal.h>

#include <algorithm>
#include <cerrno>

#include "../../lib/log.hpp"
#include "../../lib/util.hpp"

namespace clsgw {

namespace {

constexpr unsigned WORKER_LOG_LINES_MAX = 200;

} // namespace

// A worker's log record as a line in which all its text is the value of a named key:
// `worker msg="..." key=value ...`. nullopt when malformed (a protocol violation).
std::optional<std::pair<log_level, std::string>> worker_log_line(const bytes &p)
{
    std::string err;
    auto rec = decode_log_record(p, err);
    if (!rec)
        return std::nullopt;
    log_fields f;
    f.add("msg", rec->message.empty() ? "-" : rec->message);
    for (const auto &[k, v] : rec->fields)
        f.add(k, v);
    return std::make_pair(rec->level, "worker " + f.str());
}

// Every violation is logged with what it was; the channel's line then says worker_protocol_violation.
void master::protocol_violation(channel &ch, const std::string &what)
{
    if (!ch.kill_reason)
        log_warn("worker broke the IPC protocol; killed",
                 log_fields().add("channel", ch.id).add("name", ch.cfg.name).add("error", what));
    kill_worker(ch, reason_code::worker_protocol_violation);
}

void master::kill_worker(channel &ch, reason_code reason)
{
    if (!ch.kill_reason)
        ch.kill_reason = reason_of(reason);
    kill(ch.pid, SIGKILL);
}

void master::on_worker_message(channel &ch)
{
    ipc_recv_result r = ipc_recv_checked(ch.control.get(), role_master, ch.budget);
    if (r.status == ipc_status::would_block)
        return;
    if (r.status == ipc_status::closed) {
        ch.control.reset();
        return;
    }
    if (r.status != ipc_status::ok) {
        return protocol_violation(ch, r.error);
    }
    const bytes &p = r.message.payload;
    switch (r.message.type) {
    case msg_type::log: {
        auto line = worker_log_line(p);
        if (!line)
            return protocol_violation(ch, "malformed log record");
        if (++ch.log_lines > WORKER_LOG_LINES_MAX)
            return;
        auto level = channel_levels_.find(ch.cfg.name);
        if (level != channel_levels_.end() && line->first > level->second)
            return;
        // What a worker says before its channel carries data is about a failed start (a scanner's
        // handshakes, bad SOCKS5): rate-limited per peer like the channel lines; warnings pass.
        if (!ch.established && line->first >= log_level::info && !may_log_failure(ch, "worker_detail"))
            return;
        log_raw(line->first, line->second + " " + log_fields().add("channel", ch.id).add("name", ch.cfg.name).str());
        return;
    }
    case msg_type::upstream_request: {
        auto choice = decode_upstream_request(p);
        if (!choice)
            return protocol_violation(ch, "malformed upstream_request");
        ch.upstream_requested = true;
        return start_upstream(ch, *choice);
    }
    case msg_type::established: {
        auto info = decode_established(p);
        if (!info || !ch.upstream_requested || ch.established)
            return protocol_violation(ch, "established out of order or malformed");
        ch.established = true;
        ch.live = *info;
        return;
    }
    case msg_type::progress: {
        auto bytes_moved = decode_progress(p);
        uint64_t now = now_ms();
        if (ch.progress_at_ms)
            ch.progress_tokens = std::min(5.0, ch.progress_tokens + static_cast<double>(now - ch.progress_at_ms) / 1000.0);
        ch.progress_at_ms = now;
        if (ch.progress_tokens < 1)
            return protocol_violation(ch, "progress more often than once a second");
        ch.progress_tokens -= 1;
        if (!bytes_moved || !ch.established)
            return protocol_violation(ch, "progress before established or malformed");
        ch.live.bytes_up = bytes_moved->first;
        ch.live.bytes_down = bytes_moved->second;
        return;
    }
    case msg_type::result: {
        std::string err;
        auto res = decode_result(p, err);
        if (!res)
            return protocol_violation(ch, "malformed result: " + err);
        ch.result = std::move(res);
        return;
    }
    case msg_type::session_request:
    case msg_type::session_offer:
    case msg_type::session_store:
    case msg_type::session_lookup:
        on_session_message(ch, r.message.type, p);
        return wipe(r.message.payload);
    default:
        return protocol_violation(ch, "unexpected message type");
    }
}

bool master::send_to_worker(channel &ch, msg_type type, const bytes &payload, int fd)
{
    if (ipc_send_nowait(ch.control.get(), type, payload, fd))
        return true;
    if (errno == EAGAIN) {
        log_warn("worker does not read its messages; killed",
                 log_fields().add("channel", ch.id).add("name", ch.cfg.name).add("message", ipc_rule_for(type)->name));
        kill_worker(ch, reason_code::worker_not_reading);
    }
    return false;
}

} // namespace clsgw
