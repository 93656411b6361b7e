// clsgw-signer: holds the device's private key, signs handshake digests for workers, audits
// every operation. Started by clsgwd with its control socket on fd 3, or by clsgw-signer.socket
// with a listening socket on fd 3 (clsgwd connects there); per-channel sessions arrive on the
// control connection as passed fds. Never dies from what a session sends, and never waits for a
// peer: every send and receive is non-blocking and each peer has a bounded queue.
#include <fcntl.h>
#include <getopt.h>
#include <linux/sockios.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <poll.h>
#include <pwd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "../../lib/activation.hpp"
#include "../../lib/audit.hpp"
#include "../../lib/event_budget.hpp"
#include "../../lib/fd.hpp"
#include "../../lib/fd_layout.h"
#include "../../lib/net.hpp"
#include "../../lib/ipc.hpp"
#include "../../lib/ipc_rules.hpp"
#include "../../lib/log.hpp"
#include "../../lib/outbox.hpp"
#include "../../lib/pki.hpp"
#include "../../lib/signer_proto.hpp"
#include "../../lib/tls/tls.hpp"
#include "../../lib/util.hpp"
#include "../../sandbox/sandbox.hpp"
#include "options.hpp"

using namespace clsgw;

namespace {

constexpr int FIRST_FD = CLSGW_SIGNER_FIRST_FD; // clsgwd's control socket, or systemd's listener
constexpr int AUDIT_FD = CLSGW_SIGNER_AUDIT_FD;
// What may wait for the master before it counts as not reading: log lines and signer_ready,
// behind the kernel's own socket buffer (about 200 KiB) that is full by then.
constexpr size_t MASTER_QUEUE_FRAMES = 64;
constexpr size_t MASTER_QUEUE_BYTES = 64 * 1024;
// A session gets at most three answers (two signatures, then a refusal ends it).
constexpr size_t SESSION_QUEUE_FRAMES = 3;
constexpr size_t SESSION_QUEUE_BYTES = 3 * (ipc_header_size + 7 + signer::MAX_SIG_LEN);
// Control messages read per poll round, so that sessions are served between them.
constexpr unsigned CONTROL_MESSAGES_PER_ROUND = 16;
// An accept that fails for want of fds (which the session limit should prevent) pauses the
// listener this long instead of spinning on it.
constexpr uint64_t ACCEPT_PAUSE_MS = 1000;

// The connection to the master: fd 3 when clsgwd started us; an accepted connection when we
// run as a service of our own; empty while no master is connected. Log lines travel on it too.
struct master_link {
    unique_fd fd{FIRST_FD};
    ipc_budget budget; // session_open and signer_probe are not counted: the master's link lives long
    outbox queue{MASTER_QUEUE_FRAMES, MASTER_QUEUE_BYTES};
};
master_link g_master;
bool g_service = false;

struct session {
    unique_fd fd;
    uint64_t channel_id = 0;
    std::string channel_name, peer;
    ipc_budget budget; // its requests, counted against the protocol table's row
    outbox queue{SESSION_QUEUE_FRAMES, SESSION_QUEUE_BYTES};
};

// The key as an ECDSA context kept for the signer's life. mbedtls_pk_sign copies an EC key into
// a fresh context for every signature, which rebuilds mbedTLS's table of multiples of the
// curve's generator each time (MBEDTLS_ECP_FIXED_POINT_OPTIM): more than half the cost of a
// brainpool signature. Kept here, that table is built once, at start.
struct ecdsa_key {
    mbedtls_ecdsa_context ctx;
    ecdsa_key() { mbedtls_ecdsa_init(&ctx); }
    ~ecdsa_key() { mbedtls_ecdsa_free(&ctx); }
    ecdsa_key(const ecdsa_key &) = delete;
    ecdsa_key &operator=(const ecdsa_key &) = delete;
};

class signer_service {
public:
    signer_service(const options &o)
        : opt_(o), refusals_(o.refusals_per_window, o.refusal_window_ms),
          refused_peers_(o.refusals_per_window, o.refusal_window_ms)
    {
    }
    void load_identity();
    void open_audit_log();
    void confine();
    void run();

private:
    const options &opt_;
    tls::private_key key_;
    ecdsa_key signing_key_;
    tls::rng rng_;
    uint8_t key_id_[signer::KEY_ID_LEN] = {};
    std::string key_id_hex_;
    bytes ready_; // signer_ready's payload: the key id
    std::map<int, session> sessions_;
    // Refused requests beyond the budget are counted by result, and summarised in one audit
    // record when the budget's window ends; refused connections likewise in one log line.
    event_budget refusals_;
    std::map<std::string, uint64_t> unitemised_refusals_;
    event_budget refused_peers_;
    uint64_t unlogged_peers_ = 0;
    uint64_t accept_paused_until_ms_ = 0;
    uint64_t log_closed_at_ms_ = 0; // when we found that a newer signer closed our audit log (0: it is open)
    uint64_t signatures_made_ = 0, requests_refused_ = 0; // since start, for signer_probe

    void serve_control();
    void answer_probe(const bytes &payload);
    void open_session(ipc_message &m);
    bool serve_request(session &s);
    bool refuse(session &s, const signer::request *req, signer::status st, uint64_t started_us);
    bool send_answer(session &s, const signer::request *req, signer::status st, const bytes &sig);
    bool answer_unread(const session &s) const;
    bool audit(const session &s, const signer::request *req, signer::status st, uint64_t latency_us);
    bool audit_line(const log_fields &f);
    void summarise_refusals(uint64_t now);
    void accept_connection();
    bool master_connected();
    void refuse_connection(std::string_view why, const ucred &peer);
    int poll_timeout(uint64_t now) const;
};

// Start-up failures: reported through the master (which quotes them, e.g. to a refused
// reload), then exit 1.
[[noreturn]] void die(std::string_view message, const log_fields &fields = log_fields())
{
    log_error(message, fields);
    exit(1);
}

void signer_service::load_identity()
{
    std::string loose = private_key_mode_problem(opt_.key_path);
    if (!loose.empty())
        die("refusing the private key", log_fields().add("error", loose));
    auto pem = read_file(opt_.key_path, 64 * 1024);
    if (!pem)
        die("cannot read the private key", log_fields().add("path", opt_.key_path).add("error", errno_text(errno)));
    // Parsing and checking a key pair take the random generator (blinding): it is seeded first.
    if (!rng_.seed("clsgw-signer"))
        die("cannot seed the random generator");
    int ret = mbedtls_pk_parse_key(key_.get(), reinterpret_cast<const unsigned char *>(pem->c_str()), pem->size() + 1,
                                   nullptr, 0, tls::rng::random, &rng_);
    mbedtls_platform_zeroize(pem->data(), pem->size());
    if (ret != 0)
        die("cannot parse the private key", log_fields().add("path", opt_.key_path).add("error", tls::error_text(ret)));
    auto cert_pem = read_file(opt_.certificate_path, 64 * 1024);
    tls::cert_list cert;
    std::string err = cert_pem ? "" : errno_text(errno);
    if (!cert_pem || !cert.parse_pem(*cert_pem, err))
        die("cannot read the certificate", log_fields().add("path", opt_.certificate_path).add("error", err));
    std::string wrong = pki::key_pair_problem(key_.get(), cert.get());
    if (!wrong.empty())
        die(wrong, log_fields().add("key", opt_.key_path).add("certificate", opt_.certificate_path));
    if (!tls::key_id(&cert.get()->pk, key_id_))
        die("cannot compute the key id");
    key_id_hex_ = hex(key_id_, sizeof key_id_);
    if (mbedtls_ecdsa_from_keypair(&signing_key_.ctx, mbedtls_pk_ec(*key_.get())) != 0)
        die("cannot prepare the key for signing");
    // Recomputing the public point (d x G) builds the generator table now rather than in the
    // first channel's handshake; it signs nothing.
    int warm = mbedtls_ecp_keypair_calc_public(&signing_key_.ctx, tls::rng::random, &rng_);
    if (warm != 0)
        die("cannot prepare the key for signing", log_fields().add("error", tls::error_text(warm)));
}

void signer_service::open_audit_log()
{
    std::string why;
    unique_fd fd = open_log_file(opt_.audit_path, 0640, why, true);
    if (!fd)
        die("cannot open the audit log", log_fields().add("path", opt_.audit_path).add("error", why));
    if (fd.get() == AUDIT_FD)
        fd.release(); // already in place: fd 4 is the audit log from now on
    else if (dup2(fd.get(), AUDIT_FD) != AUDIT_FD)
        die("cannot place the audit log fd");
    // On a new log after logrotate, the rotated one gets a closing record and this one a first
    // record that says it continues that chain (audit::continue_chain, under the file lock).
    std::string rotated = opt_.audit_path + ".1";
    auto record = [&](const char *result, const char *key, const std::string &log) {
        return log_fields().add("time", utc_timestamp()).add("key", key_id_hex_).add("result", result)
            .add(key, log).str();
    };
    audit::start_result start = audit::continue_chain(AUDIT_FD, opt_.audit_path,
                                                      record(audit::CLOSED, "next_log", opt_.audit_path),
                                                      record(audit::CONTINUED, "previous_log", rotated));
    if (!start.ok)
        die("the audit chain cannot be continued; repair or move the log (clsgwctl audit verify shows where)",
            log_fields().add("path", opt_.audit_path).add("error", start.error));
    if (!start.predecessor.empty())
        log_info("the audit chain continues from the rotated log",
                 log_fields().add("previous_log", start.predecessor).add("seq", start.at.seq));
}

void signer_service::confine()
{
    // The key stays out of swap; failure (RLIMIT_MEMLOCK) is reported, not fatal.
    if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0)
        log_warn("cannot lock memory; the key may be swapped", log_fields().add("error", errno_text(errno)));
    sandbox_limits limits;
    limits.highest_fd = AUDIT_FD + static_cast<int>(opt_.max_sessions) + 4;
    limits.keep_fsize = true;
    std::string err = sandbox_prepare(AUDIT_FD, limits);
    if (err.empty())
        err = sandbox_lockdown(signer_policy, -1, -1);
    if (!err.empty())
        die("sandbox", log_fields().add("error", err));
}

// Every record continues the chain from the file's own last record (another signer may have
// appended since); false when nothing was written.
bool signer_service::audit_line(const log_fields &f)
{
    audit::append_result r = audit::append(AUDIT_FD, f.str());
    if (!r.ok)
        log_error("audit record not written", log_fields().add("error", r.error).add("record", f.str()));
    if (!r.ok && r.at.closed && log_closed_at_ms_ == 0)
        log_closed_at_ms_ = now_ms();
    return r.ok;
}

bool signer_service::audit(const session &s, const signer::request *req, signer::status st, uint64_t latency_us)
{
    std::string digest = "-", md = "-";
    if (req) {
        uint8_t h[32];
        size_t len = req->hash_len <= signer::MAX_HASH_LEN ? req->hash_len : signer::MAX_HASH_LEN;
        mbedtls_sha256(req->hash, len, h, 0);
        digest = hex(h, sizeof h);
        md = signer::digest_length(req->digest_alg) ? signer::digest_name(static_cast<signer::digest>(req->digest_alg))
                                                    : "unsupported:" + std::to_string(req->digest_alg);
    }
    log_fields f;
    f.add("time", utc_timestamp())
        .add("channel", s.channel_id)
        .add("name", s.channel_name)
        .add("peer", s.peer)
        .add("key", key_id_hex_)
        .add("md", md)
        .add("digest_sha256", digest)
        .add("result", signer::status_name(st))
        .add("latency_us", latency_us);
    return audit_line(f);
}

// Once the refusal budget's window has ended, the refusals it only counted become one audit
// record (and one log line): a flood of refusals costs a bounded number of synced writes.
void signer_service::summarise_refusals(uint64_t now)
{
    if (!unitemised_refusals_.empty() && now >= refusals_.window_end_ms()) {
        uint64_t total = 0;
        for (auto &[result, n] : unitemised_refusals_)
            total += n;
        log_fields f;
        f.add("time", utc_timestamp()).add("key", key_id_hex_).add("result", "refusals_over_budget")
            .add("refused", total);
        for (auto &[result, n] : unitemised_refusals_)
            f.add(result, n); // by result: unknown_key=3 malformed=2
        audit_line(f);
        log_warn("signer refusals over the audit budget, summarised in one record",
                 log_fields().add("refused", total).add("budget", refusals_.per_window())
                     .add("window_ms", refusals_.window_ms()));
        unitemised_refusals_.clear();
    }
    if (unlogged_peers_ && now >= refused_peers_.window_end_ms()) {
        log_warn("more connections refused than logged one by one", log_fields().add("refused", unlogged_peers_));
        unlogged_peers_ = 0;
    }
}

// Queues an answer; false when the session's queue is full (its worker does not read) or the
// worker is gone. A signature's audit record is on disk before this is called.
bool signer_service::send_answer(session &s, const signer::request *req, signer::status st, const bytes &sig)
{
    signer::answer a;
    a.seq = req ? req->seq : 0;
    a.st = st;
    if (st == signer::status::ok)
        a.signature = sig;
    switch (s.queue.push(s.fd.get(), msg_type::sign_answer, signer::encode_answer(a))) {
    case outbox::result::sent:
    case outbox::result::queued: return true;
    case outbox::result::overflow:
        log_warn("signer session closed: its worker does not read its answers",
                 log_fields().add("channel", s.channel_id).add("name", s.channel_name));
        return false;
    case outbox::result::failed: return false;
    }
    return false;
}

// An answer the worker has not read yet is still counted in our socket's send queue: a worker
// asks, reads the answer, and only then asks again.
bool signer_service::answer_unread(const session &s) const
{
    int unread = 0;
    return s.queue.pending() || (ioctl(s.fd.get(), SIOCOUTQ, &unread) == 0 && unread > 0);
}

// A refused or malformed request ends its session: one audit record (or, beyond the refusal
// budget, a count for the summary), the error answer if the socket takes it, then the close.
// Returns false: the session is over.
bool signer_service::refuse(session &s, const signer::request *req, signer::status st, uint64_t started_us)
{
    requests_refused_++;
    uint64_t now = now_ms();
    summarise_refusals(now);
    if (refusals_.take(now)) {
        audit(s, req, st, now_us() - started_us);
        log_warn("signature refused; session closed", log_fields().add("channel", s.channel_id)
                                                          .add("name", s.channel_name)
                                                          .add("result", signer::status_name(st)));
    } else {
        unitemised_refusals_[signer::status_name(st)]++;
    }
    send_answer(s, req, st, {});
    return false;
}

// Serves one request of a session; false when the session is over (closed by its worker,
// refused, or not reading its answers).
bool signer_service::serve_request(session &s)
{
    uint64_t started = now_us();
    ipc_recv_result r = ipc_recv_checked(s.fd.get(), role_signer, s.budget);
    if (r.status == ipc_status::would_block)
        return true;
    if (r.status == ipc_status::closed)
        return false;
    // A request over the session's count is well-formed: it is refused for the quota, and audited
    // with its hash like any refusal. Any other frame outside its row is malformed.
    bool over_quota = r.violation == ipc_violation::over_count;
    std::optional<signer::request> req;
    if ((r.status == ipc_status::ok || over_quota) && r.message.type == msg_type::sign_request)
        req = signer::decode_request(r.message.payload);
    if (!req)
        return refuse(s, nullptr, signer::status::malformed, started);
    signer::status st = signer::validate_request(*req, key_id_);
    if (st == signer::status::ok && over_quota)
        st = signer::status::quota_exceeded;
    if (st == signer::status::ok && answer_unread(s))
        st = signer::status::answer_unread;
    if (st != signer::status::ok)
        return refuse(s, &*req, st, started);
    static const mbedtls_md_type_t md[] = {MBEDTLS_MD_NONE, MBEDTLS_MD_SHA256, MBEDTLS_MD_SHA384, MBEDTLS_MD_SHA512};
    unsigned char sig[MBEDTLS_ECDSA_MAX_LEN]; // what mbedtls_ecdsa_write_signature may write
    size_t sig_len = 0;
    int ret = mbedtls_ecdsa_write_signature(&signing_key_.ctx, md[req->digest_alg], req->hash, req->hash_len, sig,
                                            sizeof sig, &sig_len, tls::rng::random, &rng_);
    if (ret != 0 || sig_len > signer::MAX_SIG_LEN)
        return refuse(s, &*req, signer::status::sign_failed, started);
    // The record is on disk before the answer leaves: no signature is ever released unaudited.
    if (!audit(s, &*req, signer::status::ok, now_us() - started)) { // withheld, and logged
        requests_refused_++;
        send_answer(s, &*req, signer::status::sign_failed, {});
        return false;
    }
    signatures_made_++;
    return send_answer(s, &*req, signer::status::ok, bytes(sig, sig + sig_len));
}

void signer_service::open_session(ipc_message &m)
{
    auto tag = signer::decode_session_open(m.payload);
    if (!tag || !m.fd) {
        log_error("malformed session_open from the master");
        return;
    }
    uint64_t channel_id = tag->channel_id;
    if (sessions_.size() >= opt_.max_sessions) {
        log_error("too many signer sessions; refusing one: raise --max-sessions to clsgwd's max_channels + 16",
                  log_fields().add("channel", channel_id).add("max_sessions", static_cast<uint64_t>(opt_.max_sessions)));
        return;
    }
    int fd = m.fd.get();
    session s;
    s.fd = std::move(m.fd);
    s.channel_id = channel_id;
    s.channel_name = tag->channel_name;
    s.peer = tag->peer;
    sessions_[fd] = std::move(s);
}

// Lets go of the master: it has gone, or it does not read what we send. In child mode this
// ends the signer once its open sessions are done; as a service we wait for the next master.
void drop_master(std::string_view why)
{
    if (!g_master.fd)
        return;
    g_master.fd.reset();
    g_master.queue.clear();
    if (!why.empty())
        log_error(why); // with no master connected, this goes to stderr
}

// Sends to the master without waiting; a master whose queue is full is cut off.
void send_to_master(msg_type type, const bytes &payload)
{
    if (!g_master.fd)
        return;
    switch (g_master.queue.push(g_master.fd.get(), type, payload)) {
    case outbox::result::sent:
    case outbox::result::queued: return;
    case outbox::result::overflow:
        drop_master("the master does not read the signer's messages; its connection is closed");
        return;
    case outbox::result::failed: drop_master(""); return;
    }
}

// Reads what the master sent, a bounded number of messages per round.
void signer_service::serve_control()
{
    for (unsigned i = 0; i < CONTROL_MESSAGES_PER_ROUND && g_master.fd; i++) {
        ipc_recv_result r = ipc_recv_checked(g_master.fd.get(), role_signer, g_master.budget);
        if (r.status == ipc_status::would_block)
            return;
        if (r.status == ipc_status::closed) {
            drop_master("");
            return;
        }
        if (r.status == ipc_status::ok && r.message.type == msg_type::session_open)
            open_session(r.message);
        else if (r.status == ipc_status::ok && r.message.type == msg_type::signer_probe)
            answer_probe(r.message.payload);
        else
            log_error("unexpected message on the control socket", log_fields().add("error", r.error));
    }
}

// A liveness probe (clsgwctl check, clsgwctl metrics): answered from this loop, so an answer
// shows it turns; it signs nothing and writes no audit record.
void signer_service::answer_probe(const bytes &payload)
{
    auto seq = signer::decode_probe(payload);
    if (!seq) {
        log_error("malformed signer_probe from the master");
        return;
    }
    send_to_master(msg_type::signer_counts,
                   signer::encode_counts({*seq, signatures_made_, requests_refused_, sessions_.size()}));
}

// True while a master is connected. A master that has hung up is let go here first (its last
// session_open messages still served), so that its successor is not taken for a second one.
bool signer_service::master_connected()
{
    if (!g_master.fd)
        return false;
    pollfd p{g_master.fd.get(), POLLIN, 0};
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
        for (unsigned i = 0; i < 64 && g_master.fd; i++)
            serve_control();
        drop_master("");
    }
    return g_master.fd.valid();
}

// One log line per refused connection, up to the budget; the rest are counted.
void signer_service::refuse_connection(std::string_view why, const ucred &peer)
{
    uint64_t now = now_ms();
    summarise_refusals(now);
    if (!refused_peers_.take(now)) {
        unlogged_peers_++;
        return;
    }
    log_warn(why, log_fields().add("uid", static_cast<uint64_t>(peer.uid)).add("gid", static_cast<uint64_t>(peer.gid))
                      .add("pid", static_cast<int64_t>(peer.pid)));
}

// As a service of our own: a connection to our socket. Only a process of an allowed uid may be
// the master, and only one at a time; any other connection is closed at once, never served.
void signer_service::accept_connection()
{
    unique_fd fd(accept4(FIRST_FD, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            accept_paused_until_ms_ = now_ms() + ACCEPT_PAUSE_MS;
            log_error("cannot accept a connection; pausing the listener",
                      log_fields().add("error", errno_text(errno)).add("pause_ms", ACCEPT_PAUSE_MS));
        }
        return;
    }
    ucred peer{};
    socklen_t len = sizeof peer;
    if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 || len != sizeof peer) {
        log_error("cannot read a connection's peer credentials; closed", log_fields().add("error", errno_text(errno)));
        return;
    }
    bool allowed = opt_.master_uids.empty()
                       ? peer.uid == 0
                       : std::find(opt_.master_uids.begin(), opt_.master_uids.end(), peer.uid) != opt_.master_uids.end();
    if (!allowed) {
        refuse_connection("connection refused: not a master uid (see --master-uid)", peer);
        return;
    }
    if (master_connected()) {
        // Told why, best effort: it is a master by its uid, and its operator will read this.
        std::string line = "clsgw-signer serves one master at a time, and another one is connected";
        bytes log(1 + line.size());
        log[0] = static_cast<uint8_t>(log_level::error);
        memcpy(log.data() + 1, line.data(), line.size());
        outbox(0, 0).push(fd.get(), msg_type::log, log);
        refuse_connection("connection refused: a master is already connected", peer);
        return;
    }
    g_master.fd = std::move(fd);
    g_master.queue.clear();
    send_to_master(msg_type::signer_ready, ready_);
    log_info("master connected", log_fields().add("uid", static_cast<uint64_t>(peer.uid))
                                     .add("pid", static_cast<int64_t>(peer.pid)));
}

// Until the next summary is due or the paused listener resumes; -1: nothing timed.
int signer_service::poll_timeout(uint64_t now) const
{
    uint64_t next = UINT64_MAX;
    if (!unitemised_refusals_.empty())
        next = std::min(next, refusals_.window_end_ms());
    if (unlogged_peers_)
        next = std::min(next, refused_peers_.window_end_ms());
    if (accept_paused_until_ms_)
        next = std::min(next, accept_paused_until_ms_);
    if (log_closed_at_ms_)
        next = std::min(next, log_closed_at_ms_ + opt_.retire_wait_ms);
    if (next == UINT64_MAX)
        return -1;
    return next <= now ? 0 : static_cast<int>(std::min<uint64_t>(next - now, 60 * 60 * 1000));
}

void signer_service::run()
{
    ready_ = signer::encode_signer_ready(key_id_);
    if (!g_service) {
        send_to_master(msg_type::signer_ready, ready_);
        if (!g_master.fd)
            fatal("cannot reach the master on fd 3");
    }
    log_info("signer ready", log_fields().add("key", key_id_hex_).add("mode", g_service ? "service" : "child"));
    std::vector<pollfd> fds;
    // Without a master in child mode (it let go of us at a reload or stop, or was cut off): no
    // new sessions; the open ones may still need their signatures, then we exit.
    auto draining = [] { return !g_service && !g_master.fd; };
    while (g_service || !draining() || !sessions_.empty()) {
        // logrotate moved our log and a newer signer closed it. That signer normally takes over: a
        // reload's commit lets go of us (no master any more) and we finish as a retired signer.
        // One that is still our master's after retire_wait never took over (a reload refused after
        // its signer started): we can sign nothing more, so we end, and clsgwd (or systemd) starts
        // a signer on the current log, which continues the chain.
        if (log_closed_at_ms_ && g_master.fd && now_ms() >= log_closed_at_ms_ + opt_.retire_wait_ms)
            die("the audit log was closed by a newer signer that did not take over; ending so that a signer on the "
                "current log starts", log_fields().add("path", opt_.audit_path).add("retire_wait_ms", opt_.retire_wait_ms));
        uint64_t now = now_ms();
        summarise_refusals(now);
        if (accept_paused_until_ms_ && now >= accept_paused_until_ms_)
            accept_paused_until_ms_ = 0;
        fds.clear();
        short master_events = POLLIN | (g_master.queue.pending() ? POLLOUT : 0);
        fds.push_back({g_master.fd.get(), master_events, 0});
        fds.push_back({g_service && !accept_paused_until_ms_ ? FIRST_FD : -1, POLLIN, 0});
        for (auto &[fd, s] : sessions_)
            fds.push_back({fd, static_cast<short>(POLLIN | (s.queue.pending() ? POLLOUT : 0)), 0});
        if (poll(fds.data(), fds.size(), poll_timeout(now)) < 0) {
            if (errno == EINTR)
                continue;
            fatal("poll failed", log_fields().add("error", errno_text(errno)));
        }
        // The master before the listener: a master that hung up is gone before its successor knocks.
        if ((fds[0].revents & POLLOUT) && g_master.fd && !g_master.queue.flush(g_master.fd.get()))
            drop_master("");
        if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) && g_master.fd)
            serve_control();
        if (fds[1].revents)
            accept_connection();
        // One request per session and round: a busy session cannot starve the others.
        for (size_t i = 2; i < fds.size(); i++) {
            auto it = sessions_.find(fds[i].fd);
            if (!fds[i].revents || it == sessions_.end())
                continue;
            session &s = it->second;
            bool keep = true;
            if (fds[i].revents & POLLOUT)
                keep = s.queue.flush(s.fd.get());
            if (keep && (fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                keep = serve_request(s);
            if (!keep)
                sessions_.erase(it);
        }
    }
    summarise_refusals(UINT64_MAX); // nothing counted leaves without its record
    // The master has gone or retired us; nothing to report to.
}

void send_log_to_master(log_level level, const std::string &line)
{
    if (g_master.fd) {
        send_to_master(msg_type::log, signer::encode_log(level, line));
        if (g_master.fd)
            return;
    }
    // No master to tell: stderr it is; with the priority when stderr is the journal (a fatal
    // line of clsgw-signer.service must reach journalctl -p err).
    std::string priority = journal_prefix(level);
    std::string out = (priority.empty() ? "clsgw-signer: " : priority) + line + "\n";
    ssize_t ignored = write(STDERR_FILENO, out.data(), out.size());
    (void)ignored;
}

} // namespace

int main(int argc, char **argv)
{
    if (tls::print_version(argc, argv, "clsgw-signer"))
        return 0;
    options o = parse_options(argc, argv);
    log_init("clsgw-signer", o.level);
    if (o.check_only) {
        // clsgwd -t: the key as the start would load it, by the only program that reads it; the
        // reason of a refusal goes to stderr (no master is connected), exit 1.
        g_master.fd.reset(); // no master: log lines go to stderr
        log_set_sink(send_log_to_master);
        signer_service(o).load_identity();
        return 0;
    }
    std::string err;
    auto activated = take_activated_sockets(err, SOCK_SEQPACKET);
    if (!err.empty() || activated.size() > 1 || (activated.size() == 1 && activated[0].fd.get() != FIRST_FD))
        fatal("systemd must pass exactly one SOCK_SEQPACKET listening socket", log_fields().add("error", err));
    if (activated.size() == 1) {
        g_service = true; // clsgw-signer.socket: clsgwd connects to us
        (void)g_master.fd.release(); // fd 3 is the listening socket here, not a master
        set_nonblocking(activated[0].fd.release(), true);
    } else if (fcntl(FIRST_FD, F_GETFD) < 0) {
        fatal("no control socket on fd 3: clsgw-signer is started by clsgwd or by clsgw-signer.socket");
    } else {
        set_nonblocking(FIRST_FD, true);
    }
    // Log lines go to the master, which owns the log target (and reopens it); fatal() still
    // writes to stderr, for start-up failures.
    log_set_sink(send_log_to_master);
    signer_service service(o);
    service.load_identity();
    service.open_audit_log();
    service.confine();
    service.run();
    return 0;
}
