// An outbound (HKS3) channel: app -> [static | SOCKS5 ingress] -> TLS to the SMGW ->
// [SOCKS5 CONNECT inside TLS | SNI] -> relay.
#include <mbedtls/net_sockets.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "../../lib/config.hpp"
#include "../../lib/ipc.hpp"
#include "../../lib/relay.hpp"
#include "../../lib/signer_proto.hpp"
#include "../../lib/socks5.hpp"
#include "worker.hpp"

namespace clsgw {

namespace {

void set_result(worker_context &ctx, outcome o, channel_reason reason)
{
    ctx.result.result = o;
    ctx.result.reason = reason;
}

void set_result(worker_context &ctx, outcome o, reason_code reason) { set_result(ctx, o, reason_of(reason)); }

enum class io { ok, eof, timeout, error };

// Reads what is available into buf (up to max bytes total).
io read_some(int fd, bytes &buf, size_t max, uint64_t deadline_ms)
{
    uint8_t tmp[512];
    for (;;) {
        size_t room = std::min(max - buf.size(), sizeof tmp);
        ssize_t n = recv(fd, tmp, room, 0);
        if (n > 0) {
            buf.insert(buf.end(), tmp, tmp + n);
            return io::ok;
        }
        if (n == 0)
            return io::eof;
        if (errno != EAGAIN && errno != EINTR)
            return io::error;
        if (!wait_fd(fd, POLLIN, deadline_ms))
            return io::timeout;
    }
}

bool write_all(int fd, const bytes &data, uint64_t deadline_ms)
{
    size_t done = 0;
    while (done < data.size()) {
        ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
        if (n > 0) {
            done += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return false;
        if (!wait_fd(fd, POLLOUT, deadline_ms))
            return false;
    }
    return true;
}

// Why reading the app's SOCKS5 greeting or request ended before it was whole.
reason_code app_read_reason(io r)
{
    return r == io::timeout ? reason_code::handshake_timeout : r == io::eof ? reason_code::plain_closed : reason_code::plain_error;
}

// --- ingress -------------------------------------------------------------------------------

struct ingress_result {
    bool ok = false;
    host_port target;
    bytes early_data; // app bytes that arrived behind its SOCKS5 request
};

void reply_app(worker_context &ctx, uint8_t rep, const std::optional<host_port> &bound = std::nullopt)
{
    if (ctx.job.ingress == ingress_kind::socks5)
        write_all(CONNECTION_FD, socks5::encode_reply(rep, bound), ctx.handshake_deadline_ms);
}

ingress_result socks5_ingress(worker_context &ctx)
{
    ingress_result out;
    bytes buf;
    socks5::parsed<socks5::greeting> g;
    for (;;) {
        g = socks5::parse_greeting(buf.data(), buf.size());
        if (g.st != socks5::status::need_more)
            break;
        io r = read_some(CONNECTION_FD, buf, socks5::MAX_GREETING, ctx.handshake_deadline_ms);
        if (r != io::ok) {
            set_result(ctx, outcome::failed, app_read_reason(r));
            return out;
        }
    }
    if (g.st == socks5::status::invalid) {
        set_result(ctx, outcome::failed, reason_code::socks5_bad_greeting);
        log_info("app sent a bad SOCKS5 greeting", log_fields().add("error", g.error));
        return out;
    }
    if (!g.value.offers_no_auth) {
        write_all(CONNECTION_FD, socks5::encode_method_choice(socks5::METHOD_NONE_ACCEPTABLE), ctx.handshake_deadline_ms);
        set_result(ctx, outcome::refused, reason_code::socks5_no_acceptable_method);
        return out;
    }
    write_all(CONNECTION_FD, socks5::encode_method_choice(socks5::METHOD_NO_AUTH), ctx.handshake_deadline_ms);
    buf.erase(buf.begin(), buf.begin() + static_cast<long>(g.consumed));
    socks5::parsed<socks5::request> q;
    for (;;) {
        q = socks5::parse_request(buf.data(), buf.size());
        if (q.st != socks5::status::need_more)
            break;
        io r = read_some(CONNECTION_FD, buf, socks5::MAX_REQUEST + 4096, ctx.handshake_deadline_ms);
        if (r != io::ok) {
            set_result(ctx, outcome::failed, app_read_reason(r));
            return out;
        }
    }
    if (q.st == socks5::status::invalid) {
        reply_app(ctx, q.reply_code);
        set_result(ctx, outcome::failed, reason_code::socks5_bad_request);
        log_info("app sent a bad SOCKS5 request", log_fields().add("error", q.error));
        return out;
    }
    out.ok = true;
    out.target = q.value.target;
    out.early_data.assign(buf.begin() + static_cast<long>(q.consumed), buf.end());
    return out;
}

bool allowed(const worker_context &ctx, const host_port &target)
{
    for (const auto &rule : ctx.job.allow)
        if (allow_rule_matches(rule, target))
            return true;
    return false;
}

uint8_t app_code_for_upstream_failure(std::optional<upstream_failure> failure)
{
    if (failure == upstream_failure::connection_refused)
        return socks5::REP_CONNECTION_REFUSED;
    if (failure == upstream_failure::network_unreachable)
        return socks5::REP_NETWORK_UNREACHABLE;
    return socks5::REP_HOST_UNREACHABLE;
}

// --- TLS -----------------------------------------------------------------------------------

void offer_saved_session(worker_context &ctx, tls::endpoint &e)
{
    auto cached = ask_master(ctx, msg_type::session_request, bytes());
    if (!cached)
        return;
    mbedtls_ssl_session session;
    mbedtls_ssl_session_init(&session);
    if (load_session(&session, cached->blob) && mbedtls_ssl_set_session(e.ssl(), &session) == 0)
        ctx.resumed_session_age_ms = cached->age_ms;
    mbedtls_ssl_session_free(&session);
}

int setup_tls(worker_context &ctx, tls::endpoint &e, int fd, const host_port &target)
{
    int ret = configure_endpoint(ctx, e, MBEDTLS_SSL_IS_CLIENT, ctx.trust.get());
    // With proxy = sni the EMT's name rides in server_name; the SMGW is still verified by trust.
    if (ret == 0)
        ret = open_endpoint(e, fd, ctx.job.proxy == proxy_kind::sni ? target.host.c_str() : nullptr);
    return ret;
}

// An SMGW (OpenSSL: "wrong curve") refuses with illegal_parameter a client certificate whose curve
// is not among its groups; TLS 1.2 never shows the client the server's list, but the group it chose
// for the key exchange is one of them. Names the mismatch instead of leaving a bare alert.
void note_curve_mismatch(worker_context &ctx, const tls::handshake_result &h)
{
    std::string own = tls::group_name(tls::cert_curve(ctx.own_chain.get()));
    if (ctx.result.reason != peer_alert_reason(MBEDTLS_SSL_ALERT_MSG_ILLEGAL_PARAMETER) || h.group == MBEDTLS_ECP_DP_NONE ||
        own == tls::group_name(h.group))
        return;
    ctx.result.reason = reason_of(reason_code::smgw_refused_cert_curve);
    log_warn("certificate curve not among the groups the SMGW offered",
             log_fields().add("certificate_curve", own).add("smgw_chose", tls::group_name(h.group))
                 .add("fix", "a device key on one of the SMGW's groups, or the SMGW offering " + own));
}

bool tls_handshake(worker_context &ctx, tls::endpoint &e)
{
    uint64_t begin = now_ms();
    tls::handshake_result h = e.handshake(ctx.handshake_deadline_ms);
    ctx.result.handshake_ms = now_ms() - begin;
    ctx.result.smgw_wait_us = h.wait_us;
    if (h.timed_out) {
        set_result(ctx, outcome::failed, reason_code::handshake_timeout);
        return false;
    }
    if (tls::peer_alert(e.ssl(), h.ret) == MBEDTLS_SSL_ALERT_MSG_UNRECOGNIZED_NAME) {
        // With proxy = sni this is how the SMGW says the target is outside its proxy profile.
        set_result(ctx, outcome::refused, reason_code::smgw_refused_unrecognized_name);
        return false;
    }
    if (h.ret != 0) {
        set_result(ctx, outcome::failed, tls::handshake_reason(e.ssl(), h.ret));
        note_curve_mismatch(ctx, h);
        log_info("TLS handshake with the SMGW failed",
                 log_fields().add("reason", reason_name(ctx.result.reason, ctx.job.direction)).add("error", tls::error_text(h.ret)));
        return false;
    }
    record_tls(ctx, e, h);
    return true;
}

// SOCKS5 CONNECT inside the TLS session; the SMGW's reply code is returned through rep.
bool proxy_socks5(worker_context &ctx, tls::endpoint &e, const host_port &target, uint8_t &rep,
                  std::optional<host_port> &bound)
{
    bytes hello = socks5::encode_greeting();
    uint8_t buf[socks5::MAX_REQUEST];
    size_t got = 0;
    if (e.write_all(hello.data(), hello.size(), ctx.handshake_deadline_ms) != tls::io_status::ok) {
        set_result(ctx, outcome::failed, reason_code::tls_error);
        return false;
    }
    tls::io_status r = e.read_exact(buf, 2, got, ctx.handshake_deadline_ms);
    auto m = socks5::parse_method_choice(buf, got);
    if (r != tls::io_status::ok || m.st != socks5::status::ok) {
        set_result(ctx, outcome::failed, r == tls::io_status::timeout ? reason_code::handshake_timeout : reason_code::smgw_socks5_error);
        log_info("SMGW did not accept the SOCKS5 greeting",
                 log_fields().add("error", r == tls::io_status::ok ? m.error : "closed"));
        return false;
    }
    bytes request = socks5::encode_request(target);
    got = 0;
    if (e.write_all(request.data(), request.size(), ctx.handshake_deadline_ms) != tls::io_status::ok) {
        set_result(ctx, outcome::failed, reason_code::tls_error);
        return false;
    }
    // Read the fixed part, then exactly the rest, so payload behind the reply stays buffered.
    r = e.read_exact(buf, 5, got, ctx.handshake_deadline_ms);
    size_t total = socks5::reply_length(buf, got);
    if (r == tls::io_status::ok && total != SIZE_MAX && total > got && total <= sizeof buf)
        r = e.read_exact(buf, total, got, ctx.handshake_deadline_ms);
    if (got >= 2 && buf[0] == socks5::VERSION && buf[1] != socks5::REP_SUCCEEDED) {
        rep = buf[1]; // a failure reply counts even when its address part is cut or zeroed
        return true;
    }
    auto reply = socks5::parse_reply(buf, got);
    if (r != tls::io_status::ok || reply.st != socks5::status::ok) {
        set_result(ctx, outcome::failed, r == tls::io_status::timeout ? reason_code::handshake_timeout : reason_code::smgw_socks5_error);
        log_info("bad SOCKS5 reply from the SMGW",
                 log_fields().add("error", r == tls::io_status::ok ? reply.error : "closed"));
        return false;
    }
    rep = reply.value.rep;
    bound = reply.value.bound;
    return true;
}

} // namespace

void run_outbound(worker_context &ctx)
{
    ingress_result in;
    if (ctx.job.ingress == ingress_kind::socks5) {
        in = socks5_ingress(ctx);
        if (!in.ok)
            return;
    } else {
        in.ok = true;
        in.target = *ctx.job.target;
    }
    ctx.result.target = in.target.to_string();
#ifdef CLSGW_TEST_HOOKS
    test_hook_forbidden_call(in.target.host);
#endif
    if (ctx.job.proxy == proxy_kind::sni && is_ip_literal(in.target.host)) {
        // server_name carries names only (RFC 6066 section 3); an address there reaches no EMT.
        reply_app(ctx, socks5::REP_ADDRESS_TYPE_NOT_SUPPORTED);
        set_result(ctx, outcome::refused, reason_code::sni_cannot_name_an_address);
        log_info("proxy = sni names the EMT by server_name, which cannot carry an IP address: refused",
                 log_fields().add("target", in.target.to_string()).add("answer", "socks5_address_type_not_supported"));
        return;
    }
    if (ctx.job.ingress == ingress_kind::socks5 && !allowed(ctx, in.target)) {
        reply_app(ctx, socks5::REP_NOT_ALLOWED);
        set_result(ctx, outcome::refused, reason_code::target_not_allowed);
        return;
    }
    channel_reason failure;
    unique_fd upstream = request_upstream(ctx, in.target.to_string(), failure);
    if (!upstream) {
        reply_app(ctx, app_code_for_upstream_failure(ctx.upstream_failed));
        set_result(ctx, outcome::failed, failure);
        return;
    }
    tls::endpoint e;
    int ret = setup_tls(ctx, e, upstream.get(), in.target);
    if (ret != 0) {
        reply_app(ctx, socks5::REP_GENERAL_FAILURE);
        set_result(ctx, outcome::failed, reason_code::tls_setup_failed);
        log_error("TLS setup failed", log_fields().add("error", tls::error_text(ret)));
        return;
    }
    // A session from an earlier channel of the same scope (the master's: SMGW, channel and the
    // target it checked) saves the signature.
    offer_saved_session(ctx, e);
    if (!tls_handshake(ctx, e)) {
        reply_app(ctx, ctx.result.result == outcome::refused ? socks5::REP_NOT_ALLOWED : socks5::REP_GENERAL_FAILURE);
        return;
    }
    bytes blob;
    if (!ctx.result.resumed && save_session(e.ssl(), blob)) {
        session_message offer;
        offer.blob = std::move(blob);
        offer.age_ms = now_ms() - ctx.started_ms; // its lifetime counts from this channel's start
        ipc_send(CONTROL_FD, msg_type::session_offer, encode_session_message(offer));
    }
    std::optional<host_port> bound;
    if (ctx.job.proxy == proxy_kind::socks5) {
        uint8_t rep = socks5::REP_GENERAL_FAILURE;
        if (!proxy_socks5(ctx, e, in.target, rep, bound)) {
            reply_app(ctx, socks5::REP_GENERAL_FAILURE);
            return;
        }
        if (rep != socks5::REP_SUCCEEDED) {
            reply_app(ctx, socks5::app_reply_code(rep));
            // 0x02 is the SMGW's proxy profile saying no; every other code is the SMGW failing
            if (rep == socks5::REP_NOT_ALLOWED)
                set_result(ctx, outcome::refused, reason_code::smgw_refused_not_allowed);
            else
                set_result(ctx, outcome::failed, smgw_failed_reason(rep));
            e.close_notify();
            return;
        }
    }
    reply_app(ctx, socks5::REP_SUCCEEDED, bound);
    ipc_send(CONTROL_FD, msg_type::established, encode_established(ctx.result));
    if (!in.early_data.empty()) {
        if (e.write_all(in.early_data.data(), in.early_data.size(), now_ms() + ctx.job.idle_timeout_ms) !=
            tls::io_status::ok) {
            set_result(ctx, outcome::failed, reason_code::tls_error);
            return;
        }
        ctx.result.bytes_up += in.early_data.size();
    }
    relay_options opt = channel_relay_options(ctx);
    opt.plain_bytes_before = in.early_data.size();
    relay_result rr = relay(CONNECTION_FD, e.ssl(), e.io(), opt, "app", "smgw");
    ctx.result.bytes_up += rr.plain_to_tls;
    ctx.result.bytes_down += rr.tls_to_plain;
    set_result(ctx, rr.clean ? outcome::ok : outcome::failed, rr.reason);
    if (!rr.close_notify_sent &&
        (rr.reason.code == reason_code::max_session_lifetime || rr.reason.code == reason_code::idle_timeout ||
         rr.reason.code == reason_code::close_timeout))
        e.close_notify();
}

} // namespace clsgw
