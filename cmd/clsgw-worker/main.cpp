// clsgw-worker: serves exactly one channel, then exits. Exec'd by clsgwd with fixed fds:
// 3 = control socket to the master, 4 = the accepted connection, 5 = the signer session.
// Everything it needs arrives on fd 3; it confines itself before it reads a network byte.
//
// As a spare (`clsgw-worker --spare UID GID`, fd 3 only) it confines itself completely first,
// then waits: the connection (to fd 4) and the signer session (to fd 5) arrive over fd 3 with
// the job. A spare serves exactly one channel too; it only did its start-up ahead of time.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "../../lib/ipc.hpp"
#include "../../lib/log.hpp"
#include "../../lib/net.hpp"
#include "../../sandbox/sandbox.hpp"
#include "worker.hpp"

using namespace clsgw;

namespace {

// Worker log records travel to the master as message and fields; the master formats and tags
// them with the channel.
void send_log_to_master(log_level level, std::string_view message, const log_fields &fields)
{
    ipc_send(CONTROL_FD, msg_type::log, encode_log_record(level, message, fields));
}

[[noreturn]] void die(const std::string &what)
{
    log_error("worker cannot serve the channel", log_fields().add("error", what));
    _exit(1);
}

// A fresh worker's job comes within 10s of its start; a spare waits for one as long as the master
// lives (it exits quietly when the control socket closes). A spare's job arrives after a handover
// message with the connection; the job itself carries the signer session. Each passed fd must
// land on its fixed number: the lowest free ones, as nothing else is open.
worker_job receive_job(bool spare, ipc_budget &from_master)
{
    auto next = [&from_master](int timeout_ms, const char *what) {
        pollfd p{CONTROL_FD, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) != 1)
            die(std::string("no ") + what + " from the master within 10s");
        return ipc_recv_checked(CONTROL_FD, role_worker, from_master);
    };
    ipc_recv_result r = next(spare ? -1 : 10000, spare ? "connection" : "job");
    if (spare && r.status == ipc_status::closed)
        _exit(0); // clsgwd stopped or retired this spare
    if (spare) {
        if (r.status != ipc_status::ok || r.message.type != msg_type::handover || !r.message.payload.empty() ||
            r.message.fd.get() != CONNECTION_FD)
            die("bad handover message: " + r.error);
        (void)r.message.fd.release();
        r = next(10000, "job after the connection");
        if (r.status == ipc_status::ok && r.message.fd.get() != SIGNER_FD)
            die("the signer session did not arrive on fd 5");
        (void)r.message.fd.release();
    }
    if (r.status == ipc_status::closed)
        die("the master closed the control socket before the job");
    if (r.status != ipc_status::ok)
        die("bad job message: " + r.error);
    if (r.message.type != msg_type::job)
        die("bad job message: a message of type " + std::to_string(static_cast<unsigned>(r.message.type)) +
            " where the job belongs");
    if (!spare && r.message.fd)
        die("bad job message: a file descriptor with the job");
    std::string err;
    auto job = decode_job(r.message.payload, err);
    if (!job)
        die("bad job: " + err);
    return *job;
}

// Parses certificates: from memory only, so a spare does it inside its sandbox.
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
}

// Seeds the DRBG from getrandom(2), which the filter allows; done before the filter all the same.
void seed(worker_context &ctx)
{
    if (!ctx.rng.seed("clsgw-worker"))
        die("cannot seed the random generator");
}

// `--spare UID GID`: the ids the sandbox changes to when started as root (-1: keep).
bool parse_spare_args(int argc, char **argv, long &uid, long &gid)
{
    if (argc != 4 || std::string(argv[1]) != "--spare")
        return false;
    auto id = [](const char *text, long &out) {
        if (std::string(text) == "-1")
            return out = -1, true;
        auto n = parse_uint(text, 0x7fffffff);
        return n ? (out = static_cast<long>(*n), true) : false;
    };
    return id(argv[2], uid) && id(argv[3], gid);
}

void report(const worker_context &ctx)
{
    if (!ipc_send(CONTROL_FD, msg_type::result, encode_result(ctx.result)))
        _exit(3);
}

// The SMGW's TLS connection of an inbound channel ends with our last alert or close_notify
// delivered (net.hpp close_orderly): a refused SMGW then reads why, instead of a reset. The
// drain takes at most CLOSE_DRAIN_MS and CLOSE_DRAIN_BYTES, and before the handshake deadline
// has long passed it ends within half of clsgwd's grace after handshake_timeout, so that clsgwd
// never kills a worker for draining.
constexpr uint64_t CLOSE_DRAIN_MS = 500;
constexpr size_t CLOSE_DRAIN_BYTES = 64 * 1024;

void close_smgw_connection(const worker_context &ctx)
{
    uint64_t now = now_ms();
    uint64_t end = now + CLOSE_DRAIN_MS;
    uint64_t handshake_end = ctx.handshake_deadline_ms + CLOSE_DRAIN_MS;
    if (now < handshake_end)
        end = std::min(end, handshake_end);
    close_orderly(CONNECTION_FD, end, CLOSE_DRAIN_BYTES);
}

} // namespace

int main(int argc, char **argv)
{
    if (tls::print_version(argc, argv, "clsgw-worker"))
        return 0;
    log_init("clsgw-worker", log_level::info);
    log_set_record_sink(send_log_to_master);
    long spare_uid = -1, spare_gid = -1;
    const bool spare = argc > 1;
    bool fds_ok = fcntl(CONTROL_FD, F_GETFD) >= 0;
    if (spare)
        fds_ok = fds_ok && fcntl(CONNECTION_FD, F_GETFD) < 0 && fcntl(SIGNER_FD, F_GETFD) < 0;
    else
        fds_ok = fds_ok && fcntl(CONNECTION_FD, F_GETFD) >= 0 && fcntl(SIGNER_FD, F_GETFD) >= 0;
    if ((spare && !parse_spare_args(argc, argv, spare_uid, spare_gid)) || !fds_ok) {
        log_set_record_sink(nullptr);
        fatal("clsgw-worker is started by clsgwd with fds 3, 4 and 5 open, or as a spare "
              "(--spare UID GID) with fd 3 alone");
    }
    sandbox_limits limits;
    limits.highest_fd = HIGHEST_FD;
    std::string err = sandbox_prepare(spare ? CONTROL_FD : SIGNER_FD, limits);
    if (!err.empty())
        die(err);

    worker_context ctx;
    if (spare) {
        seed(ctx);
        err = sandbox_lockdown(worker_policy, spare_uid, spare_gid);
        if (!err.empty())
            die(err);
        release_freed_memory(); // while it waits, a spare keeps nothing of its start-up
        ctx.job = receive_job(true, ctx.from_master);
        if (static_cast<long>(ctx.job.uid) != spare_uid || static_cast<long>(ctx.job.gid) != spare_gid)
            die("the job is for other user ids than this spare was started with");
        ctx.started_ms = now_ms();
        log_set_threshold(ctx.job.level);
        load_tls_material(ctx);
    } else {
        ctx.started_ms = now_ms();
        ctx.job = receive_job(false, ctx.from_master);
        log_set_threshold(ctx.job.level);
        load_tls_material(ctx);
        seed(ctx);
        set_nonblocking(CONNECTION_FD, true); // fcntl is not in the filter; a spare's comes non-blocking
        err = sandbox_lockdown(worker_policy, static_cast<long>(ctx.job.uid), static_cast<long>(ctx.job.gid));
        if (!err.empty())
            die(err);
    }
    ctx.handshake_deadline_ms = ctx.started_ms + ctx.job.handshake_timeout_ms;

#ifdef CLSGW_TEST_HOOKS
    if (test_hook_hostile(ctx)) {
        report(ctx);
        return 0;
    }
#endif
    if (ctx.job.direction == channel_direction::inbound)
        run_inbound(ctx);
    else
        run_outbound(ctx);
    ctx.result.duration_ms = now_ms() - ctx.started_ms;
    report(ctx);
    if (ctx.job.direction == channel_direction::inbound)
        close_smgw_connection(ctx);
    return 0;
}
