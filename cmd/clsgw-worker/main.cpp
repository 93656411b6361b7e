// clsgw-worker: serves exactly one channel, then exits. Exec'd by clsgwd with fixed fds:
// 3 = control socket to the master, 4 = the accepted connection, 5 = the signer session.
// Everything it needs arrives on fd 3; it confines itself before it reads a network byte.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "../../lib/ipc.hpp"
#include "../../lib/log.hpp"
#include "../../lib/net.hpp"
#include "../../sandbox/sandbox.hpp"
#include "worker.hpp"

using namespace clsgw;

namespace {

// Worker log lines travel to the master, which tags them with the channel.
void send_log_to_master(log_level level, const std::string &line)
{
    size_t n = line.size() > 1024 ? 1024 : line.size();
    bytes payload(1 + n);
    payload[0] = static_cast<uint8_t>(level);
    memcpy(payload.data() + 1, line.data(), n);
    ipc_send(CONTROL_FD, msg_type::log, payload);
}

[[noreturn]] void die(const std::string &what)
{
    log_error("worker cannot serve the channel", log_fields().add("error", what));
    _exit(1);
}

worker_job receive_job()
{
    pollfd p{CONTROL_FD, POLLIN, 0};
    if (poll(&p, 1, 10000) != 1)
        die("no job from the master within 10s");
    ipc_recv_result r = ipc_recv(CONTROL_FD, false);
    if (r.status != ipc_status::ok || r.message.type != msg_type::job)
        die("bad job message: " + r.error);
    std::string err;
    auto job = decode_job(r.message.payload, err);
    if (!job)
        die("bad job: " + err);
    return *job;
}

// Parses certificates and seeds the DRBG while that may still touch the system.
void load_tls_material(worker_context &ctx)
{
    std::string err;
    if (!ctx.own_chain.parse_pem(ctx.job.certificate_pem, err))
        die("own certificate: " + err);
    if (!ctx.trust.parse_pem(ctx.job.trust_pem, err))
        die("trust anchors: " + err);
    for (const auto &route : ctx.job.routes) {
        ctx.route_trust.push_back(std::make_unique<tls::cert_list>());
        if (!ctx.route_trust.back()->parse_pem(route.trust_pem, err))
            die("trust anchors of channel " + route.channel_name + ": " + err);
    }
    if (!tls::key_id(&ctx.own_chain.get()->pk, ctx.key_id))
        die("cannot compute the key id");
    if (!ctx.rng.seed("clsgw-worker"))
        die("cannot seed the random generator");
}

void report(const worker_context &ctx)
{
    if (!ipc_send(CONTROL_FD, msg_type::result, encode_result(ctx.result)))
        _exit(3);
}

} // namespace

int main()
{
    log_init("clsgw-worker", log_level::info);
    log_set_sink(send_log_to_master);
    if (fcntl(CONTROL_FD, F_GETFD) < 0 || fcntl(CONNECTION_FD, F_GETFD) < 0 || fcntl(SIGNER_FD, F_GETFD) < 0) {
        log_set_sink(nullptr);
        fatal("clsgw-worker is started by clsgwd with fds 3, 4 and 5 open");
    }
    sandbox_limits limits;
    limits.highest_fd = HIGHEST_FD;
    std::string err = sandbox_prepare(SIGNER_FD, limits);
    if (!err.empty())
        die(err);

    worker_context ctx;
    ctx.started_ms = now_ms();
    ctx.job = receive_job();
    log_set_threshold(ctx.job.level);
    ctx.handshake_deadline_ms = ctx.started_ms + ctx.job.handshake_timeout_ms;
    load_tls_material(ctx);
    set_nonblocking(CONNECTION_FD, true); // fcntl is not in the filter


    err = sandbox_lockdown(worker_policy, static_cast<long>(ctx.job.uid), static_cast<long>(ctx.job.gid));
    if (!err.empty())
        die(err);

    if (ctx.job.direction == channel_direction::inbound)
        run_inbound(ctx);
    else
        run_outbound(ctx);
    ctx.result.duration_ms = now_ms() - ctx.started_ms;
    report(ctx);
    return 0;
}
