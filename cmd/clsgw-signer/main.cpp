// clsgw-signer: holds the device's private key, signs handshake digests for workers, audits
// every operation. Started by clsgwd with its control socket on fd 3; per-channel sessions
// arrive on that socket as passed fds. Never dies from what a session sends.
#include <fcntl.h>
#include <getopt.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "../../lib/activation.hpp"
#include "../../lib/audit.hpp"
#include "../../lib/fd.hpp"
#include "../../lib/net.hpp"
#include "../../lib/ipc.hpp"
#include "../../lib/log.hpp"
#include "../../lib/signer_proto.hpp"
#include "../../lib/tls/tls.hpp"
#include "../../lib/util.hpp"
#include "../../sandbox/sandbox.hpp"

using namespace clsgw;

namespace {

constexpr int FIRST_FD = 3; // the control socket from clsgwd, or the listening socket from systemd
// The connection to the master: fd 3 when clsgwd started us; an accepted connection when we
// run as a service of our own; -1 while no master is connected.
int g_control = FIRST_FD;
bool g_service = false;
constexpr int AUDIT_FD = 4;

struct options {
    std::string key_path, certificate_path, audit_path;
    unsigned max_sessions = 64;
    log_level level = log_level::info;
};

struct session {
    unique_fd fd;
    uint64_t channel_id = 0;
    std::string channel_name, peer;
    unsigned signatures = 0;
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
    signer_service(const options &o) : opt_(o) {}
    void load_identity();
    void open_audit_log();
    void confine();
    void run();
    void accept_master(const bytes &ready);

private:
    const options &opt_;
    tls::private_key key_;
    ecdsa_key signing_key_;
    tls::rng rng_;
    uint8_t key_id_[signer::KEY_ID_LEN] = {};
    std::string key_id_hex_;
    std::map<int, session> sessions_;
    audit::tail chain_; // where the audit log's hash chain stands

    void open_session(ipc_message &m);
    void handle_session(session &s);
    void answer(session &s, const signer::request *req, signer::status st, const bytes &sig, uint64_t started_us);
    void audit(const session &s, const signer::request *req, signer::status st, uint64_t latency_us);
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
    int ret = mbedtls_pk_parse_key(key_.get(), reinterpret_cast<const unsigned char *>(pem->c_str()), pem->size() + 1,
                                   nullptr, 0);
    mbedtls_platform_zeroize(pem->data(), pem->size());
    if (ret != 0)
        die("cannot parse the private key", log_fields().add("path", opt_.key_path).add("error", tls::error_text(ret)));
    if (!mbedtls_pk_can_do(key_.get(), MBEDTLS_PK_ECDSA) ||
        !tls::curve_in_profile(mbedtls_pk_ec(*key_.get())->grp.id))
        die("the private key is not an EC key on a HAN profile curve", log_fields().add("path", opt_.key_path));
    auto cert_pem = read_file(opt_.certificate_path, 64 * 1024);
    tls::cert_list cert;
    std::string err;
    if (!cert_pem || !cert.parse_pem(*cert_pem, err))
        die("cannot read the certificate", log_fields().add("path", opt_.certificate_path).add("error", err));
    if (mbedtls_pk_check_pair(&cert.get()->pk, key_.get()) != 0)
        die("the private key does not match the certificate",
              log_fields().add("key", opt_.key_path).add("certificate", opt_.certificate_path));
    if (!tls::key_id(&cert.get()->pk, key_id_))
        die("cannot compute the key id");
    key_id_hex_ = hex(key_id_, sizeof key_id_);
    if (!rng_.seed("clsgw-signer"))
        die("cannot seed the random generator");
    if (mbedtls_ecdsa_from_keypair(&signing_key_.ctx, mbedtls_pk_ec(*key_.get())) != 0)
        die("cannot prepare the key for signing");
    // 1 x G builds the generator table now rather than in the first channel's handshake; it
    // signs nothing.
    mbedtls_ecp_point r;
    mbedtls_mpi one;
    mbedtls_ecp_point_init(&r);
    mbedtls_mpi_init(&one);
    int warm = mbedtls_mpi_lset(&one, 1);
    if (warm == 0)
        warm = mbedtls_ecp_mul(&signing_key_.ctx.grp, &r, &one, &signing_key_.ctx.grp.G, tls::rng::random, &rng_);
    mbedtls_ecp_point_free(&r);
    mbedtls_mpi_free(&one);
    if (warm != 0)
        die("cannot prepare the key for signing", log_fields().add("error", tls::error_text(warm)));
}

void signer_service::open_audit_log()
{
    chain_ = audit::read_tail(opt_.audit_path);
    if (!chain_.readable) {
        log_error("the audit log's last line is not a chained record; the chain restarts here "
                  "(clsgwctl audit verify will show where)", log_fields().add("path", opt_.audit_path));
        chain_ = audit::tail{0, audit::genesis(), true};
    }
    std::string why;
    unique_fd fd = open_log_file(opt_.audit_path, 0640, why);
    if (!fd)
        die("cannot open the audit log", log_fields().add("path", opt_.audit_path).add("error", why));
    if (fd.get() == AUDIT_FD)
        fd.release(); // already in place: fd 4 is the audit log from now on
    else if (dup2(fd.get(), AUDIT_FD) != AUDIT_FD)
        die("cannot place the audit log fd");
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

void signer_service::audit(const session &s, const signer::request *req, signer::status st, uint64_t latency_us)
{
    std::string digest = "-", md = "-";
    if (req) {
        uint8_t h[32];
        size_t len = req->hash_len <= signer::MAX_HASH_LEN ? req->hash_len : signer::MAX_HASH_LEN;
        mbedtls_sha256_ret(req->hash, len, h, 0);
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
    std::string line = audit::seal(chain_, f.str()) + "\n";
    // One write per record with O_APPEND: a record is never split or interleaved.
    if (write(AUDIT_FD, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        log_error("audit log write failed", log_fields().add("error", errno_text(errno)));
    fdatasync(AUDIT_FD);
}

void signer_service::answer(session &s, const signer::request *req, signer::status st, const bytes &sig,
                            uint64_t started_us)
{
    signer::answer a;
    a.seq = req ? req->seq : 0;
    a.st = st;
    if (st == signer::status::ok)
        a.signature = sig;
    // The record is on disk before the answer leaves: no signature is ever released unaudited.
    audit(s, req, st, now_us() - started_us);
    ipc_send(s.fd.get(), msg_type::sign_answer, signer::encode_answer(a));
    if (st != signer::status::ok)
        log_warn("signature refused", log_fields().add("channel", s.channel_id).add("name", s.channel_name)
                                          .add("result", signer::status_name(st)));
}

void signer_service::handle_session(session &s)
{
    uint64_t started = now_us();
    ipc_recv_result r = ipc_recv(s.fd.get(), false);
    if (r.status == ipc_status::would_block)
        return;
    if (r.status == ipc_status::closed) {
        sessions_.erase(s.fd.get());
        return;
    }
    if (r.status != ipc_status::ok || r.message.type != msg_type::sign_request) {
        answer(s, nullptr, signer::status::malformed, {}, started);
        return;
    }
    auto req = signer::decode_request(r.message.payload);
    if (!req) {
        answer(s, nullptr, signer::status::malformed, {}, started);
        return;
    }
    signer::status st = signer::validate_request(*req, key_id_);
    if (st == signer::status::ok && s.signatures >= signer::SIGNATURES_PER_SESSION)
        st = signer::status::quota_exceeded;
    if (st != signer::status::ok) {
        answer(s, &*req, st, {}, started);
        return;
    }
    s.signatures++;
    static const mbedtls_md_type_t md[] = {MBEDTLS_MD_NONE, MBEDTLS_MD_SHA256, MBEDTLS_MD_SHA384, MBEDTLS_MD_SHA512};
    unsigned char sig[MBEDTLS_ECDSA_MAX_LEN]; // what mbedtls_ecdsa_write_signature may write
    size_t sig_len = 0;
    int ret = mbedtls_ecdsa_write_signature(&signing_key_.ctx, md[req->digest_alg], req->hash, req->hash_len, sig,
                                            &sig_len, tls::rng::random, &rng_);
    if (ret != 0 || sig_len > signer::MAX_SIG_LEN) {
        answer(s, &*req, signer::status::sign_failed, {}, started);
        return;
    }
    answer(s, &*req, signer::status::ok, bytes(sig, sig + sig_len), started);
}

void signer_service::open_session(ipc_message &m)
{
    tlv_reader r;
    std::string err;
    bool parsed = r.parse(m.payload, err);
    auto id = r.u64(1);
    auto name = r.str(2, 128), peer = r.str(3, 128);
    if (!parsed || !m.fd || !id || !name || !peer) {
        log_error("malformed session_open from the master");
        return;
    }
    uint64_t channel_id = id.value_or(0);
    if (sessions_.size() >= opt_.max_sessions) {
        log_warn("too many signer sessions; refusing one", log_fields().add("channel", channel_id));
        return;
    }
    int fd = m.fd.get();
    session s;
    s.fd = std::move(m.fd);
    s.channel_id = channel_id;
    s.channel_name = *name;
    s.peer = *peer;
    sessions_[fd] = std::move(s);
}

// As a service of our own: a master connected; it replaces an earlier one (whose sessions,
// already passed to us, continue).
void signer_service::accept_master(const bytes &ready)
{
    int fd = accept4(FIRST_FD, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    if (g_control >= 0)
        close(g_control);
    g_control = fd;
    ipc_send(g_control, msg_type::signer_ready, ready);
    log_info("master connected");
}

void signer_service::run()
{
    tlv_writer ready;
    ready.add(1, key_id_, sizeof key_id_);
    if (!g_service && !ipc_send(g_control, msg_type::signer_ready, ready.data()))
        fatal("cannot reach the master on fd 3");
    log_info("signer ready", log_fields().add("key", key_id_hex_).add("mode", g_service ? "service" : "child"));
    std::vector<pollfd> fds;
    bool draining = false; // the master let go of us (reload or stop): finish open sessions, then exit
    while (g_service || !draining || !sessions_.empty()) {
        fds.clear();
        fds.push_back({draining || g_control < 0 ? -1 : g_control, POLLIN, 0});
        fds.push_back({g_service ? FIRST_FD : -1, POLLIN, 0});
        for (auto &[fd, s] : sessions_)
            fds.push_back({fd, POLLIN, 0});
        if (poll(fds.data(), fds.size(), -1) < 0) {
            if (errno == EINTR)
                continue;
            fatal("poll failed", log_fields().add("error", errno_text(errno)));
        }
        if (fds[1].revents)
            accept_master(ready.data());
        if (fds[0].revents && g_control >= 0) {
            ipc_recv_result r = ipc_recv(g_control, true);
            if (r.status == ipc_status::closed && g_service) {
                close(g_control); // the master went away; we stay for the next one
                g_control = -1;
                continue;
            }
            if (r.status == ipc_status::closed) {
                draining = true; // no new sessions; the open ones may still need their signatures
                continue;
            }
            if (r.status == ipc_status::ok && r.message.type == msg_type::session_open)
                open_session(r.message);
            else if (r.status != ipc_status::would_block)
                log_error("unexpected message on the control socket", log_fields().add("error", r.error));
        }
        for (size_t i = 2; i < fds.size(); i++) {
            auto it = sessions_.find(fds[i].fd);
            if (fds[i].revents && it != sessions_.end())
                handle_session(it->second);
        }
    }
    // The master has gone or retired us; nothing to report to.
}

void send_log_to_master(log_level level, const std::string &line)
{
    size_t n = line.size() > 1024 ? 1024 : line.size();
    bytes payload(1 + n);
    payload[0] = static_cast<uint8_t>(level);
    memcpy(payload.data() + 1, line.data(), n);
    if (g_control < 0 || !ipc_send(g_control, msg_type::log, payload)) {
        std::string out = "clsgw-signer: " + line + "\n"; // no master to tell: stderr it is
        ssize_t ignored = write(STDERR_FILENO, out.data(), out.size());
        (void)ignored;
    }
}

void usage()
{
    fprintf(stderr, "usage: clsgw-signer --key FILE --certificate FILE --audit-log FILE [--max-sessions N] "
                    "[--log-level LEVEL]\n"
                    "(started by clsgwd with its control socket on fd 3, or by clsgw-signer.socket)\n");
    exit(2);
}

} // namespace

int main(int argc, char **argv)
{
    options o;
    static const struct option longopts[] = {
        {"key", required_argument, nullptr, 'k'},          {"certificate", required_argument, nullptr, 'c'},
        {"audit-log", required_argument, nullptr, 'a'},    {"max-sessions", required_argument, nullptr, 'm'},
        {"log-level", required_argument, nullptr, 'l'},    {nullptr, 0, nullptr, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, nullptr)) != -1) {
        switch (c) {
        case 'k': o.key_path = optarg; break;
        case 'c': o.certificate_path = optarg; break;
        case 'a': o.audit_path = optarg; break;
        case 'm': {
            auto n = parse_uint(optarg, 65536);
            if (!n || *n == 0)
                usage();
            o.max_sessions = static_cast<unsigned>(*n);
            break;
        }
        case 'l': {
            auto l = parse_log_level(optarg);
            if (!l)
                usage();
            o.level = *l;
            break;
        }
        default: usage();
        }
    }
    if (o.key_path.empty() || o.certificate_path.empty() || o.audit_path.empty() || optind != argc)
        usage();
    log_init("clsgw-signer", o.level);
    std::string err;
    auto activated = take_activated_sockets(err, SOCK_SEQPACKET);
    if (!err.empty() || activated.size() > 1 || (activated.size() == 1 && activated[0].fd.get() != FIRST_FD))
        fatal("systemd must pass exactly one SOCK_SEQPACKET listening socket", log_fields().add("error", err));
    if (activated.size() == 1) {
        g_service = true; // clsgw-signer.socket: clsgwd connects to us
        g_control = -1;
        set_nonblocking(activated[0].fd.release(), true);
    } else if (fcntl(FIRST_FD, F_GETFD) < 0) {
        fatal("no control socket on fd 3: clsgw-signer is started by clsgwd or by clsgw-signer.socket");
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
