#include "relay.hpp"

#include <mbedtls/net_sockets.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "log.hpp"
#include "tls/tls.hpp"
#include "util.hpp"

namespace clsgw {

namespace {

constexpr size_t BUFFER = 16384; // one TLS record

struct buffer {
    unsigned char data[BUFFER];
    size_t start = 0, end = 0;
    bool empty() const { return start == end; }
    size_t size() const { return end - start; }
    void clear() { start = end = 0; }
};

class relay_state {
public:
    relay_state(int plain, mbedtls_ssl_context *ssl, tls::bio &io, const relay_options &o, const char *pn,
                const char *tn)
        : plain_(plain), tls_fd_(io.fd), ssl_(ssl), io_(io), opt_(o), plain_name_(pn), tls_name_(tn)
    {
        io_.watch_handshake_records = true;
        io_.late_handshake_records = 0;
    }
    relay_result run();

private:
    int plain_, tls_fd_;
    mbedtls_ssl_context *ssl_;
    tls::bio &io_;
    const relay_options &opt_;
    std::string plain_name_, tls_name_;
    buffer up_, down_; // up: plain -> tls, down: tls -> plain
    bool plain_eof_ = false, tls_eof_ = false, close_notify_sent_ = false, plain_shut_ = false;
    bool want_plain_in_ = false, want_plain_out_ = false, want_tls_in_ = false, want_tls_out_ = false;
    bool done_ = false;
    bool holding_ = false; // the plain side closed; the TLS session stays open for the peer's rest
    bool truncated_ = false;
    bool idle_seen_ = false;
    reason_code first_close_ = reason_code::none; // plain_closed or tls_closed
    uint64_t last_activity_ = now_ms();
    uint64_t last_progress_ = 0;
    bool progress_pending_ = false;
    // Reports bytes moved at most once per second; a change is reported once the second is over.
    void report_progress()
    {
        if (!progress_pending_ || now_ms() - last_progress_ < 1000)
            return;
        progress_pending_ = false;
        last_progress_ = now_ms();
        opt_.on_progress(result_.plain_to_tls, result_.tls_to_plain);
    }
    relay_result result_;

    void finish(bool clean, reason_code reason)
    {
        done_ = true;
        result_.clean = clean;
        result_.reason = reason_of(reason);
    }
    void note_refused_renegotiation();
    bool tls_read();
    void tls_failed(int ret);
    bool plain_write();
    bool plain_read();
    bool tls_write();
    bool hold_tls();
    bool send_close_notify();
    void end_hold();
    bool closing();
    bool wait();
};

// mbedTLS (renegotiation disabled) answers a peer's renegotiation attempt itself, with a
// warning no_renegotiation alert, and tells its caller nothing. The bio sees the handshake
// record arrive; every one after the handshake is an attempt.
// A peer can send many in a burst (gnutls-cli -e sent 17 in 3 ms): the first is logged at once,
// the rest are counted into one line when the relay ends.
void relay_state::note_refused_renegotiation()
{
    if (result_.renegotiations_refused == 0 && io_.late_handshake_records > 0)
        log_warn("TLS renegotiation attempt refused", log_fields().add("by", tls_name_).add("answer", "no_renegotiation"));
    result_.renegotiations_refused = io_.late_handshake_records;
}

bool relay_state::tls_read()
{
    if (tls_eof_ || !down_.empty())
        return false;
    int r = mbedtls_ssl_read(ssl_, down_.data, BUFFER);
    if (r > 0) {
        down_.start = 0;
        down_.end = static_cast<size_t>(r);
        return true;
    }
    note_refused_renegotiation();
    if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
        want_tls_in_ = true;
        return false;
    }
    tls_eof_ = true;
    if (first_close_ == reason_code::none)
        first_close_ = reason_code::tls_closed;
    if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
        return true;
    if (r == 0 || r == MBEDTLS_ERR_SSL_CONN_EOF) {
        // A TCP close without close_notify: everything received is still delivered.
        truncated_ = true;
        return true;
    }
    tls_failed(r);
    return true;
}

void relay_state::tls_failed(int ret)
{
    if (io_.failed_errno == ETIMEDOUT) {
        finish(false, reason_code::tls_keepalive_timeout); // the peer stopped answering TCP keepalives
        return;
    }
    finish(false, ret == MBEDTLS_ERR_NET_CONN_RESET ? reason_code::tls_reset : reason_code::tls_error);
    if (ret != MBEDTLS_ERR_NET_CONN_RESET)
        log_info("TLS error ended the channel", log_fields().add("side", tls_name_).add("error", tls::error_text(ret)));
}

bool relay_state::plain_write()
{
    if (down_.empty())
        return false;
    ssize_t n = send(plain_, down_.data + down_.start, down_.size(), MSG_NOSIGNAL);
    if (n > 0) {
        down_.start += static_cast<size_t>(n);
        result_.tls_to_plain += static_cast<uint64_t>(n);
        if (down_.empty())
            down_.clear();
        return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        want_plain_out_ = true;
        return false;
    }
    finish(false, reason_code::plain_reset);
    return true;
}

bool relay_state::plain_read()
{
    if (plain_eof_ || !up_.empty())
        return false;
    ssize_t n = recv(plain_, up_.data, BUFFER, 0);
    if (n > 0) {
        up_.start = 0;
        up_.end = static_cast<size_t>(n);
        return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        want_plain_in_ = true;
        return false;
    }
    if (n < 0) {
        finish(false, reason_code::plain_reset);
        return true;
    }
    plain_eof_ = true;
    if (first_close_ == reason_code::none)
        first_close_ = reason_code::plain_closed;
    return true;
}

bool relay_state::tls_write()
{
    if (up_.empty())
        return false;
    int r = mbedtls_ssl_write(ssl_, up_.data + up_.start, up_.size());
    if (r > 0) {
        up_.start += static_cast<size_t>(r);
        result_.plain_to_tls += static_cast<uint64_t>(r);
        if (up_.empty())
            up_.clear();
        return true;
    }
    if (r == MBEDTLS_ERR_SSL_WANT_WRITE || r == MBEDTLS_ERR_SSL_WANT_READ) {
        want_tls_out_ = true;
        return false;
    }
    tls_failed(r);
    return true;
}

// After the plain side's FIN, whether the TLS session stays open for the peer's answer.
bool relay_state::hold_tls()
{
    if (!opt_.hold_tls_after_plain_close || tls_eof_ || result_.plain_to_tls + opt_.plain_bytes_before == 0)
        return false;
    if (!holding_) {
        holding_ = true;
        last_activity_ = now_ms();
        log_debug("plain side closed; the TLS session stays open for the rest",
                  log_fields().add("side", plain_name_).add("close_timeout_ms", opt_.close_timeout_ms));
    }
    return true;
}

// Sends close_notify and ends our writing on the TLS socket; false while it cannot be written.
bool relay_state::send_close_notify()
{
    int r = mbedtls_ssl_close_notify(ssl_);
    if (r == MBEDTLS_ERR_SSL_WANT_WRITE) {
        want_tls_out_ = true;
        return false;
    }
    close_notify_sent_ = true;
    result_.close_notify_sent = true;
    shutdown(tls_fd_, SHUT_WR);
    last_activity_ = now_ms();
    return true;
}

// The close wait after the plain side's FIN is over with nothing moving: nothing the peer sent is
// lost, so the channel ends cleanly as the plain side's close, with our close_notify.
void relay_state::end_hold()
{
    if (mbedtls_ssl_close_notify(ssl_) == 0) {
        close_notify_sent_ = true;
        result_.close_notify_sent = true;
    }
    log_info("close wait over: close_notify sent",
             log_fields().add("closed_first", plain_name_).add("silent", tls_name_).add("timeout", "close_timeout")
                 .add("close_timeout_ms", opt_.close_timeout_ms));
    finish(true, reason_code::plain_closed);
}

// Applies the close rules once the buffers allow; true when state changed.
bool relay_state::closing()
{
    bool changed = false;
    if (plain_eof_ && up_.empty() && !close_notify_sent_ && !(tls_eof_ && !opt_.tls_close_is_half_close)) {
        if (!hold_tls() && send_close_notify())
            changed = true;
    }
    if (tls_eof_ && down_.empty()) {
        if (!opt_.tls_close_is_half_close) {
            // RFC 5246 7.2.1: a close_notify is answered with one (best effort: the channel ends)
            if (!truncated_ && !close_notify_sent_ && mbedtls_ssl_close_notify(ssl_) == 0) {
                close_notify_sent_ = true;
                result_.close_notify_sent = true;
            }
            finish(!truncated_, truncated_ ? reason_code::tls_closed_without_close_notify : first_close_);
            return true;
        }
        if (!plain_shut_) {
            shutdown(plain_, SHUT_WR);
            plain_shut_ = true;
            changed = true;
        }
        if (plain_eof_ && up_.empty() && close_notify_sent_) {
            finish(!truncated_, first_close_);
            return true;
        }
    }
    return changed;
}

// Waits for any wanted event or a deadline; false when a timeout ended the relay.
bool relay_state::wait()
{
    pollfd p[2] = {{plain_, 0, 0}, {tls_fd_, 0, 0}};
    if (want_plain_in_)
        p[0].events |= POLLIN;
    if (want_plain_out_)
        p[0].events |= POLLOUT;
    if (want_tls_in_)
        p[1].events |= POLLIN;
    if (want_tls_out_)
        p[1].events |= POLLOUT;
    // An fd with nothing wanted stays out of the set, so a hang-up there cannot spin the loop.
    for (auto &entry : p)
        if (entry.events == 0)
            entry.fd = -1;
    uint64_t now = now_ms();
    bool half_closed = (close_notify_sent_ || holding_) && !tls_eof_;
    uint64_t idle_limit = half_closed ? std::min(opt_.close_timeout_ms, opt_.idle_timeout_ms) : opt_.idle_timeout_ms;
    uint64_t deadline = last_activity_ + idle_limit;
    if (opt_.lifetime_deadline_ms && opt_.lifetime_deadline_ms < deadline)
        deadline = opt_.lifetime_deadline_ms;
    if (now >= deadline) {
        if (opt_.lifetime_deadline_ms && now >= opt_.lifetime_deadline_ms)
            finish(false, reason_code::max_session_lifetime);
        else if (holding_ && !close_notify_sent_)
            end_hold();
        else
            finish(false, half_closed ? reason_code::close_timeout : reason_code::idle_timeout);
        return false;
    }
    if (opt_.on_first_idle && !idle_seen_) {
        idle_seen_ = true;
        opt_.on_first_idle();
    }
    uint64_t left = deadline - now;
    if (progress_pending_)
        left = std::min<uint64_t>(left, last_progress_ + 1000 > now ? last_progress_ + 1000 - now : 0);
    int r = poll(p, 2, left > 60000 ? 60000 : static_cast<int>(left));
    if (r < 0 && errno != EINTR) {
        finish(false, reason_code::poll_failed);
        return false;
    }
    return true;
}

relay_result relay_state::run()
{
    while (!done_) {
        want_plain_in_ = want_plain_out_ = want_tls_in_ = want_tls_out_ = false;
        uint64_t before = result_.plain_to_tls + result_.tls_to_plain;
        bool progress = false;
        progress |= tls_read();
        progress |= plain_write();
        progress |= plain_read();
        progress |= tls_write();
        if (done_)
            break;
        progress |= closing();
        if (result_.plain_to_tls + result_.tls_to_plain != before) {
            last_activity_ = now_ms();
            progress_pending_ = opt_.on_progress != nullptr;
        }
        report_progress();
        if (done_ || progress)
            continue;
        if (!wait())
            break;
    }
    note_refused_renegotiation();
    if (result_.renegotiations_refused > 1)
        log_warn("TLS renegotiation attempts refused", log_fields().add("by", tls_name_).add("count", result_.renegotiations_refused)
                                                         .add("answer", "no_renegotiation"));
    return result_;
}

} // namespace

relay_result relay(int plain_fd, mbedtls_ssl_context *ssl, tls::bio &tls_io, const relay_options &options,
                   const char *plain_name, const char *tls_name)
{
    relay_state state(plain_fd, ssl, tls_io, options, plain_name, tls_name);
    return state.run();
}

} // namespace clsgw
