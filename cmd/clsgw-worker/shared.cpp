// What both directions of a worker share: bounded waits, the upstream socket from the master,
// and the remote-key call to the signer.
#include <mbedtls/md.h>
#include <malloc.h>
#include <poll.h>

#include <algorithm>
#include <optional>
#include <cerrno>
#include <cstring>

#include "../../lib/ipc.hpp"
#include "../../lib/signer_proto.hpp"
#include "worker.hpp"

namespace clsgw {

// Waits for fd to be readable/writable until the deadline.
bool wait_fd(int fd, short events, uint64_t deadline_ms)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline_ms)
            return false;
        pollfd p{fd, events, 0};
        int r = poll(&p, 1, static_cast<int>(std::min<uint64_t>(deadline_ms - now, 60000)));
        if (r > 0)
            return true;
        if (r < 0 && errno != EINTR)
            return true;
    }
}

// Asks the master for the connected SMGW socket; the master alone decides where it goes.
unique_fd request_upstream(worker_context &ctx, const std::string &choice, channel_reason &failure)
{
    if (!ipc_send(CONTROL_FD, msg_type::upstream_request, encode_upstream_request(choice))) {
        failure = reason_of(reason_code::master_unreachable);
        return unique_fd();
    }
    for (;;) {
        if (!wait_fd(CONTROL_FD, POLLIN, ctx.handshake_deadline_ms)) {
            failure = reason_of(reason_code::handshake_timeout);
            return unique_fd();
        }
        ipc_recv_result r = ipc_recv_checked(CONTROL_FD, role_worker, ctx.from_master);
        if (r.status == ipc_status::would_block)
            continue;
        if (r.status == ipc_status::ok && r.message.type == msg_type::upstream_ready && r.message.fd)
            return std::move(r.message.fd);
        if (r.status == ipc_status::ok && r.message.type == msg_type::upstream_failed) {
            ctx.upstream_failed = decode_upstream_failure(r.message.payload).value_or(upstream_failure::unreachable);
            failure = reason_for(*ctx.upstream_failed);
            return unique_fd();
        }
        failure = reason_of(reason_code::master_protocol_error);
        return unique_fd();
    }
}

int sign_with_signer(void *arg, int md_alg, const unsigned char *hash, size_t hash_len, unsigned char *sig,
                     size_t sig_size, size_t *sig_len)
{
    auto &ctx = *static_cast<worker_context *>(arg);
    signer::request req;
    req.seq = ++ctx.sign_seq;
    switch (md_alg) {
    case MBEDTLS_MD_SHA256: req.digest_alg = static_cast<uint8_t>(signer::digest::sha256); break;
    case MBEDTLS_MD_SHA384: req.digest_alg = static_cast<uint8_t>(signer::digest::sha384); break;
    case MBEDTLS_MD_SHA512: req.digest_alg = static_cast<uint8_t>(signer::digest::sha512); break;
    default: return -1;
    }
    if (hash_len > signer::MAX_HASH_LEN)
        return -1;
    req.hash_len = static_cast<uint8_t>(hash_len);
    memcpy(req.key_id, ctx.key_id, sizeof req.key_id);
    memcpy(req.hash, hash, hash_len);
    struct count_time { // however this returns, the wait is counted
        uint64_t since, &total;
        ~count_time() { total += now_us() - since; }
    } counted{now_us(), ctx.result.signer_us};
    if (!ipc_send(SIGNER_FD, msg_type::sign_request, signer::encode_request(req))) {
        log_warn("signer unreachable", log_fields().add("error", errno_text(errno)));
        return -1;
    }
    uint64_t deadline = now_ms() + ctx.job.signer_timeout_ms;
    for (;;) {
        if (!wait_fd(SIGNER_FD, POLLIN, deadline)) {
            log_warn("signer did not answer in time", log_fields().add("timeout", "signer_timeout"));
            return -1;
        }
        ipc_recv_result r = ipc_recv_checked(SIGNER_FD, role_worker, ctx.from_signer);
        if (r.status == ipc_status::would_block)
            continue;
        if (r.status != ipc_status::ok || r.message.type != msg_type::sign_answer) {
            log_warn("signer session failed", log_fields().add("error", r.error));
            return -1;
        }
        auto a = signer::decode_answer(r.message.payload);
        if (!a)
            return -1;
        if (a->seq != req.seq)
            continue; // a late answer to an earlier request: dropped
        if (a->st != signer::status::ok || a->signature.size() > sig_size) {
            log_warn("signer refused", log_fields().add("result", signer::status_name(a->st)));
            return -1;
        }
        memcpy(sig, a->signature.data(), a->signature.size());
        *sig_len = a->signature.size();
        return 0;
    }
}

namespace {

int remote_sign(void *arg, mbedtls_md_type_t md, const unsigned char *hash, size_t hash_len, unsigned char *sig,
                size_t sig_size, size_t *sig_len)
{
    return sign_with_signer(arg, static_cast<int>(md), hash, hash_len, sig, sig_size, sig_len);
}

} // namespace

int configure_endpoint(worker_context &ctx, tls::endpoint &e, int role, const mbedtls_x509_crt *trust)
{
    int ret = e.configure(role, ctx.rng, trust);
    if (ret == 0)
        ret = e.remote_key(&ctx.own_chain.get()->pk, remote_sign, &ctx);
    if (ret == 0)
        ret = e.own_cert(ctx.own_chain.get());
    return ret;
}

int open_endpoint(tls::endpoint &e, int fd, const char *server_name)
{
    // mbedTLS's two record buffers (16 KiB and a bit each) from mmap: fresh zero pages, of
    // which an idle channel touches only the first few, where calloc from the heap would
    // clear them whole. Only for them: mmap for every mid-sized allocation would slow the
    // handshake (measured: +0.6 ms).
    mallopt(M_MMAP_THRESHOLD, 16 * 1024);
    int ret = e.open(fd, server_name);
    mallopt(M_MMAP_THRESHOLD, 128 * 1024); // glibc's default
    return ret;
}

void record_tls(worker_context &ctx, const tls::endpoint &e, const tls::handshake_result &h)
{
    ctx.result.tls_version = mbedtls_ssl_get_version(e.ssl());
    ctx.result.cipher_suite = mbedtls_ssl_get_ciphersuite(e.ssl());
    ctx.result.group = h.resumed ? "resumed" : tls::group_name(h.group);
    ctx.result.resumed = h.resumed;
    if (const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(e.ssl()))
        ctx.result.peer_fingerprint = tls::fingerprint(peer);
}

void release_freed_memory()
{
    malloc_trim(0); // brk and madvise(MADV_DONTNEED), both in the filter
}

std::optional<session_message> ask_master(worker_context &ctx, msg_type type, const bytes &key, const bytes &channel)
{
    session_message q;
    q.key = key;
    q.channel = channel;
    if (!ipc_send(CONTROL_FD, type, encode_session_message(q)))
        return std::nullopt;
    uint64_t deadline = std::min(ctx.handshake_deadline_ms, now_ms() + 2000);
    while (wait_fd(CONTROL_FD, POLLIN, deadline)) {
        ipc_recv_result r = ipc_recv_checked(CONTROL_FD, role_worker, ctx.from_master);
        if (r.status == ipc_status::would_block)
            continue;
        if (r.status != ipc_status::ok || r.message.type != msg_type::session_answer)
            return std::nullopt;
        auto a = decode_session_message(r.message.payload);
        if (!a || a->blob.empty())
            return std::nullopt;
        return a;
    }
    return std::nullopt;
}

bool save_session(const mbedtls_ssl_context *ssl, bytes &out)
{
    mbedtls_ssl_session session;
    mbedtls_ssl_session_init(&session);
    size_t len = 0;
    out.assign(SESSION_BLOB_MAX, 0);
    bool ok = mbedtls_ssl_get_session(ssl, &session) == 0 &&
              mbedtls_ssl_session_save(&session, out.data(), out.size(), &len) == 0;
    mbedtls_ssl_session_free(&session);
    out.resize(ok ? len : 0);
    return ok;
}

relay_options channel_relay_options(const worker_context &ctx)
{
    relay_options opt;
    opt.idle_timeout_ms = ctx.job.idle_timeout_ms;
    opt.close_timeout_ms = ctx.job.close_timeout_ms;
    opt.hold_tls_after_plain_close = true; // TLS 1.2 cannot carry the app's half-close: wait for the answer
    uint64_t age = ctx.result.resumed ? ctx.resumed_session_age_ms : 0;
    uint64_t left = ctx.job.max_session_lifetime_ms > age ? ctx.job.max_session_lifetime_ms - age : 0;
    opt.lifetime_deadline_ms = ctx.started_ms + left;
    opt.on_progress = [](uint64_t up, uint64_t down) {
        ipc_send(CONTROL_FD, msg_type::progress, encode_progress(up, down));
    };
    opt.on_first_idle = release_freed_memory; // so that it never delays a channel's first bytes
    return opt;
}

bool load_session(mbedtls_ssl_session *session, const bytes &blob)
{
    return mbedtls_ssl_session_load(session, blob.data(), blob.size()) == 0;
}

} // namespace clsgw
