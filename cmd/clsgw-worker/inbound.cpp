// An inbound (HKS4/HKS5) channel: the SMGW opens TLS to us (we are the server), proves itself
// against the chosen channel's trust, and only then is the local service connected.
//
// Several inbound channels may share a listener: the server_name in the SMGW's ClientHello
// picks one; a channel without server_name is the default; an unknown name with no default is
// refused during the handshake (unrecognized_name).
#include <strings.h>

#include <algorithm>

#include "../../lib/ipc.hpp"
#include "../../lib/net.hpp"
#include "../../lib/relay.hpp"
#include "worker.hpp"

namespace clsgw {

namespace {

struct route_choice {
    worker_context *ctx = nullptr;
    tls::endpoint *e = nullptr;
    int chosen = -1;
    int fallback = -1; // the default route
    std::string server_name; // printable: as the SMGW sent it, or with '?' for bytes a name cannot hold
    bool invalid_name = false;
    bytes new_session; // a full handshake's session, stored once the channel is chosen
    bytes new_session_id;
};

void choose(route_choice &c, int index)
{
    c.chosen = index;
    c.e->set_handshake_anchors(c.ctx->route_trust[static_cast<size_t>(index)]->get());
}

int on_server_name(void *arg, mbedtls_ssl_context *, const unsigned char *name, size_t len)
{
    auto &c = *static_cast<route_choice *>(arg);
    c.server_name.assign(reinterpret_cast<const char *>(name), std::min<size_t>(len, 255));
    if (!valid_dns_name(c.server_name) || len > 255) {
        // RFC 6066: a host name. Anything else picks no channel, not even the default one, and
        // reaches the logs and status only with its odd bytes replaced.
        for (auto &ch : c.server_name)
            if (static_cast<unsigned char>(ch) < 0x21 || static_cast<unsigned char>(ch) > 0x7e)
                ch = '?';
        c.invalid_name = true;
        c.chosen = -1;
        return -1;
    }
    const auto &routes = c.ctx->job.routes;
    for (size_t i = 0; i < routes.size(); i++)
        if (!routes[i].server_name.empty() && strcasecmp(routes[i].server_name.c_str(), c.server_name.c_str()) == 0) {
            choose(c, static_cast<int>(i));
            return 0;
        }
    if (c.fallback >= 0) {
        choose(c, c.fallback);
        return 0;
    }
    return -1; // mbedTLS answers with a fatal unrecognized_name alert
}

constexpr int UNKNOWN_SERVER_NAME = -0x7f01; // our own code, outside mbedTLS's ranges

// Once the ClientHello is processed a channel must be chosen; without server_name and without
// a default there is none, and the handshake ends here.
int require_route(void *arg, mbedtls_ssl_context *ssl)
{
    auto &c = *static_cast<route_choice *>(arg);
    if (!tls::past_client_hello(ssl) || c.chosen >= 0)
        return 0;
    mbedtls_ssl_send_alert_message(ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL, MBEDTLS_SSL_ALERT_MSG_UNRECOGNIZED_NAME);
    return UNKNOWN_SERVER_NAME;
}

// The session cache lives in the master, so that a session outlives the worker that made it.
// A lookup names the channel the server_name picked (mbedTLS asks after the SNI callback): the
// master answers only with a session whose full handshake that channel's trust accepted, so a
// session of one channel never opens another.
int cache_get(void *arg, const unsigned char *id, size_t id_len, mbedtls_ssl_session *session)
{
    auto &c = *static_cast<route_choice *>(arg);
    if (c.chosen < 0)
        return 1;
    const std::string &channel = c.ctx->job.routes[static_cast<size_t>(c.chosen)].channel_name;
    auto cached = ask_master(*c.ctx, msg_type::session_lookup, bytes(id, id + id_len),
                             bytes(channel.begin(), channel.end()));
    if (!cached || !load_session(session, cached->blob))
        return 1;
    c.ctx->resumed_session_age_ms = cached->age_ms;
    return 0;
}

// Kept until the worker has asked for its channel's service: the master files the session under
// the channel it then knows this worker serves.
int cache_set(void *arg, const unsigned char *id, size_t id_len, const mbedtls_ssl_session *session)
{
    auto &c = *static_cast<route_choice *>(arg);
    c.new_session_id.assign(id, id + id_len);
    c.new_session.assign(SESSION_BLOB_MAX, 0);
    size_t len = 0;
    if (mbedtls_ssl_session_save(session, c.new_session.data(), c.new_session.size(), &len) != 0) {
        c.new_session.clear();
        return 1;
    }
    c.new_session.resize(len);
    return 0;
}

void store_session(worker_context &ctx, route_choice &c)
{
    if (c.new_session.empty())
        return;
    session_message store;
    store.age_ms = now_ms() - ctx.started_ms; // its lifetime counts from this channel's start
    store.key = std::move(c.new_session_id);
    store.blob = std::move(c.new_session);
    ipc_send(CONTROL_FD, msg_type::session_store, encode_session_message(store));
}

void fail(worker_context &ctx, channel_reason reason)
{
    ctx.result.result = outcome::failed;
    ctx.result.reason = reason;
}

// RFC 8422: an ECDSA certificate must be on a curve the client listed in supported_groups. mbedTLS
// says only "no shared cipher suite"; the ClientHello tells when our certificate's curve is why.
void name_curve_mismatch(worker_context &ctx, const tls::endpoint &e)
{
    mbedtls_ecp_group_id own = tls::cert_curve(ctx.own_chain.get());
    if (ctx.result.reason != reason_of(reason_code::no_shared_cipher_suite) || !tls::cert_curve_not_offered(e.io(), own))
        return;
    ctx.result.reason = reason_of(reason_code::cert_curve_not_offered);
    std::string name = tls::group_name(own);
    log_warn("certificate curve not among the groups the SMGW offered",
             log_fields().add("certificate_curve", name).add("smgw_offered", tls::offered_groups(e.io()))
                 .add("fix", "a device key on one of the offered curves, or the SMGW offering " + name));
}

bool handshake(worker_context &ctx, tls::endpoint &e, route_choice &c)
{
    uint64_t begin = now_ms();
    tls::handshake_result h = e.handshake(ctx.handshake_deadline_ms, require_route, &c);
    ctx.result.handshake_ms = now_ms() - begin;
    ctx.result.smgw_wait_us = h.wait_us;
    ctx.result.target = c.server_name;
    if (h.timed_out) {
        fail(ctx, reason_of(reason_code::handshake_timeout));
        return false;
    }
    if (h.ret != 0) {
        bool unknown = h.ret == UNKNOWN_SERVER_NAME || (!c.server_name.empty() && c.chosen < 0);
        ctx.result.result = unknown ? outcome::refused : outcome::failed;
        ctx.result.reason = c.invalid_name ? reason_of(reason_code::invalid_server_name)
                            : unknown      ? reason_of(reason_code::unknown_server_name)
                                           : tls::handshake_reason(e.ssl(), h.ret);
        name_curve_mismatch(ctx, e);
        log_info("TLS handshake with the SMGW failed",
                 log_fields().add("reason", reason_name(ctx.result.reason, ctx.job.direction)).add("server_name", c.server_name.empty() ? "-" : c.server_name)
                     .add("error", unknown ? "no channel for this server_name" : tls::error_text(h.ret)));
        return false;
    }
    record_tls(ctx, e, h);
    return true;
}

} // namespace

void run_inbound(worker_context &ctx)
{
    tls::endpoint e;
    route_choice c;
    c.ctx = &ctx;
    c.e = &e;
    for (size_t i = 0; i < ctx.job.routes.size(); i++)
        if (ctx.job.routes[i].server_name.empty())
            c.fallback = static_cast<int>(i);
    const mbedtls_x509_crt *initial = ctx.route_trust[static_cast<size_t>(c.fallback >= 0 ? c.fallback : 0)]->get();
    int ret = configure_endpoint(ctx, e, MBEDTLS_SSL_IS_SERVER, initial);
    if (ret == 0) {
        e.on_server_name(on_server_name, &c);
        e.session_cache(cache_get, cache_set, &c);
        ret = open_endpoint(e, CONNECTION_FD);
    }
    if (ret != 0) {
        fail(ctx, reason_of(reason_code::tls_setup_failed));
        log_error("TLS setup failed", log_fields().add("error", tls::error_text(ret)));
        return;
    }
    if (c.fallback >= 0)
        c.chosen = c.fallback; // a ClientHello without server_name goes to the default
    if (!handshake(ctx, e, c))
        return;
    const std::string &name = ctx.job.routes[static_cast<size_t>(c.chosen)].channel_name;
    channel_reason failure;
    unique_fd service = request_upstream(ctx, name, failure);
    if (!service) {
        fail(ctx, failure);
        log_warn("local service unreachable; closing the SMGW's channel", log_fields().add("reason", reason_name(failure, ctx.job.direction)));
        e.close_notify();
        return;
    }
    store_session(ctx, c);
    ipc_send(CONTROL_FD, msg_type::established, encode_established(ctx.result));
    relay_options opt = channel_relay_options(ctx);
    // The SMGW's side opened the channel: its close_notify half-closes the service, whose
    // answer still flows back until it closes.
    opt.tls_close_is_half_close = true;
    relay_result rr = relay(service.get(), e.ssl(), e.io(), opt, "service", "smgw");
    ctx.result.bytes_up = rr.plain_to_tls; // service -> SMGW
    ctx.result.bytes_down = rr.tls_to_plain;
    ctx.result.result = rr.clean ? outcome::ok : outcome::failed;
    ctx.result.reason = rr.reason;
    if (!rr.clean && !rr.close_notify_sent)
        e.close_notify();
}

} // namespace clsgw
