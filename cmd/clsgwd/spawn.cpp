// A new channel: its signer session, its worker (a spare, or one fork+exec'd for it) and the
// job that worker gets.
#include "master.hpp"

#include <unistd.h>

#include <cerrno>

#include "../../lib/log.hpp"
#include "../../lib/net.hpp"
#include "../../lib/signer_proto.hpp"
#include "../../lib/util.hpp"

namespace clsgw {

worker_job master::make_job(const channel &ch) const
{
    worker_job job;
    job.channel_id = ch.id;
    job.direction = ch.cfg.direction;
    job.channel_name = ch.cfg.name;
    if (job.direction == channel_direction::inbound)
        for (const auto &c : ch.candidates)
            job.routes.push_back({c.name, c.server_name, trust_pems_.at(cfg_.trust_path(c))});
    job.peer = ch.peer;
    job.ingress = ch.cfg.ingress;
    job.proxy = ch.cfg.proxy;
    job.target = ch.cfg.target;
    job.allow = ch.cfg.allow;
    job.handshake_timeout_ms = cfg_.handshake_timeout_ms;
    job.idle_timeout_ms = cfg_.idle_timeout_ms;
    job.close_timeout_ms = cfg_.close_timeout_ms;
    job.signer_timeout_ms = cfg_.signer_timeout_ms;
    job.max_session_lifetime_ms = cfg_.max_session_lifetime_ms;
    job.certificate_pem = certificate_pem_;
    job.trust_pem = trust_pems_.at(cfg_.trust_path(ch.cfg));
    auto level = channel_levels_.find(ch.cfg.name);
    job.level = level != channel_levels_.end() ? level->second : log_threshold();
    job.uid = worker_uid_;
    job.gid = worker_gid_;
    return job;
}

void master::spawn_worker(const listener &l, unique_fd connection, const std::string &peer)
{
    const channel_config &cc = *cfg_.find_channel(l.channels[0]);
    channel ch;
    ch.id = ++next_id_;
    ch.cfg = cc;
    for (const auto &name : l.channels)
        ch.candidates.push_back(*cfg_.find_channel(name));
    if (cfg_.smgw_address)
        ch.upstream = *cfg_.smgw_address;
    ch.peer = peer;
    if (cc.direction == channel_direction::inbound)
        han_keepalive(connection.get()); // the HAN side of an inbound channel
    ch.started_ms = now_ms();
    ch.cache_generation = cache_generation_;
    ch.handshake_deadline_ms = ch.started_ms + cfg_.handshake_timeout_ms + HANDSHAKE_GRACE_MS;
    unique_fd signer_end, worker_signer_end;
    if (!ipc_socketpair(signer_end, worker_signer_end)) {
        log_error("cannot create channel sockets", log_fields().add("error", errno_text(errno)));
        return;
    }
    bytes session = signer::encode_session_open({ch.id, cc.name, peer});
    // Never waits: a signer that leaves this many session requests unread is stuck, and the
    // channel ends at once with a reason instead of freezing every other channel.
    if (!ipc_send_nowait(signer_.control.get(), msg_type::session_open, session, signer_end.get())) {
        std::string why = reason_name(reason_of(reason_code::signer_unavailable), cc.direction);
        count_outcome("failed", why);
        log_error("cannot open a signer session; channel refused",
                  log_fields().add("name", cc.name).add("peer", peer).add("reason", why)
                      .add("error", errno == EAGAIN ? "the signer is not reading its requests" : errno_text(errno)));
        return;
    }
    signer_end.reset();
    bool spare = hand_to_spare(ch, connection.get(), worker_signer_end.get());
    if (!spare) {
        unique_fd worker_control;
        if (!ipc_socketpair(ch.control, worker_control)) {
            log_error("cannot create channel sockets", log_fields().add("error", errno_text(errno)));
            return;
        }
        pid_t pid = fork();
        if (pid < 0) {
            log_error("cannot fork a worker", log_fields().add("error", errno_text(errno)));
            return;
        }
        if (pid == 0)
            exec_child(paths_.worker, {worker_control.get(), connection.get(), worker_signer_end.get()},
                       {"clsgw-worker"}, false);
        ch.pid = pid;
        if (!send_to_worker(ch, msg_type::job, encode_job(make_job(ch))))
            log_error("cannot send the job to the worker",
                      log_fields().add("channel", ch.id).add("error", errno_text(errno)));
    }
    log_debug("channel accepted", log_fields().add("id", ch.id).add("name", cc.name).add("peer", peer)
                                      .add("pid", static_cast<int64_t>(ch.pid)).add("spare", spare ? "yes" : "no"));
    pid_to_channel_[ch.pid] = ch.id;
    accepted_total_++;
    channels_.emplace(ch.id, std::move(ch));
}

} // namespace clsgw
