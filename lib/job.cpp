#include "job.hpp"

#include <algorithm>

#include "ipc.hpp"

namespace clsgw {

namespace {

enum job_tag : uint16_t {
    J_CHANNEL_ID = 1, J_NAME, J_PEER, J_INGRESS, J_PROXY, J_TARGET, J_ALLOW,
    J_HANDSHAKE_TIMEOUT, J_IDLE_TIMEOUT, J_CLOSE_TIMEOUT, J_SIGNER_TIMEOUT, J_LIFETIME,
    J_CERTIFICATE, J_TRUST, J_LOG_LEVEL, J_UID, J_GID, J_DIRECTION, J_ROUTES,
};

enum route_tag : uint16_t { RT_NAME = 1, RT_SERVER_NAME, RT_TRUST };
constexpr size_t MAX_ROUTES = 64;

enum result_tag : uint16_t {
    R_OUTCOME = 1, R_REASON, R_TARGET, R_VERSION, R_SUITE, R_GROUP, R_FINGERPRINT,
    R_BYTES_UP, R_BYTES_DOWN, R_HANDSHAKE_MS, R_DURATION_MS, R_RESUMED, R_SMGW_WAIT_US, R_SIGNER_US,
    R_REASON_DETAIL,
};

constexpr size_t SHORT = 512;
constexpr size_t PEM = 48 * 1024;

std::string join_allow(const std::vector<allow_rule> &rules)
{
    std::string out;
    for (const auto &r : rules) {
        if (!out.empty())
            out.push_back(',');
        out += r.host + ":" + (r.port ? std::to_string(r.port) : "*");
    }
    return out;
}

} // namespace

bytes encode_job(const worker_job &job)
{
    tlv_writer w;
    w.add_u64(J_CHANNEL_ID, job.channel_id)
        .add(J_NAME, job.channel_name)
        .add(J_PEER, job.peer)
        .add_u64(J_INGRESS, static_cast<uint64_t>(job.ingress))
        .add_u64(J_PROXY, static_cast<uint64_t>(job.proxy))
        .add(J_ALLOW, join_allow(job.allow))
        .add_u64(J_HANDSHAKE_TIMEOUT, job.handshake_timeout_ms)
        .add_u64(J_IDLE_TIMEOUT, job.idle_timeout_ms)
        .add_u64(J_CLOSE_TIMEOUT, job.close_timeout_ms)
        .add_u64(J_SIGNER_TIMEOUT, job.signer_timeout_ms)
        .add_u64(J_LIFETIME, job.max_session_lifetime_ms)
        .add(J_CERTIFICATE, job.certificate_pem)
        .add(J_TRUST, job.trust_pem)
        .add_u64(J_LOG_LEVEL, static_cast<uint64_t>(job.level))
        .add_u64(J_UID, static_cast<uint64_t>(job.uid))
        .add_u64(J_GID, static_cast<uint64_t>(job.gid));
    if (job.target)
        w.add(J_TARGET, job.target->to_string());
    w.add_u64(J_DIRECTION, static_cast<uint64_t>(job.direction));
    // Routes nest: a TLV list of TLV records.
    tlv_writer routes;
    for (const auto &r : job.routes) {
        tlv_writer one;
        one.add(RT_NAME, r.channel_name).add(RT_SERVER_NAME, r.server_name).add(RT_TRUST, r.trust_pem);
        routes.add(static_cast<uint16_t>(&r - job.routes.data()), one.data().data(), one.data().size());
    }
    w.add(J_ROUTES, routes.data().data(), routes.data().size());
    return w.data();
}

namespace {

bool decode_routes(const bytes &data, std::vector<inbound_route> &out, std::string &error)
{
    tlv_reader list;
    if (!list.parse(data, error))
        return false;
    for (uint16_t i = 0; list.has(i); i++) {
        if (i >= MAX_ROUTES) {
            error = "too many routes";
            return false;
        }
        tlv_reader one;
        auto raw = list.raw(i, PEM + 1024);
        if (!raw || !one.parse(*raw, error))
            return false;
        auto name = one.str(RT_NAME, SHORT), sni = one.str(RT_SERVER_NAME, 255), trust = one.str(RT_TRUST, PEM);
        if (!name || !sni || !trust) {
            error = "route lacks a field";
            return false;
        }
        out.push_back({*name, *sni, *trust});
    }
    return true;
}

} // namespace

std::optional<worker_job> decode_job(const bytes &payload, std::string &error)
{
    tlv_reader r;
    if (!r.parse(payload, error))
        return std::nullopt;
    worker_job job;
    auto id = r.u64(J_CHANNEL_ID);
    auto name = r.str(J_NAME, SHORT);
    auto peer = r.str(J_PEER, SHORT);
    auto ingress = r.u64(J_INGRESS);
    auto proxy = r.u64(J_PROXY);
    auto allow = r.str(J_ALLOW, 16 * 1024);
    auto cert = r.str(J_CERTIFICATE, PEM);
    auto trust = r.str(J_TRUST, PEM);
    auto level = r.u64(J_LOG_LEVEL);
    auto uid = r.u64(J_UID), gid = r.u64(J_GID);
    auto hs = r.u64(J_HANDSHAKE_TIMEOUT), idle = r.u64(J_IDLE_TIMEOUT), close = r.u64(J_CLOSE_TIMEOUT),
         signer = r.u64(J_SIGNER_TIMEOUT), lifetime = r.u64(J_LIFETIME);
    if (!id || !name || !peer || !ingress || *ingress > 1 || !proxy || *proxy > 1 || !allow || !cert || !trust ||
        !level || *level > 255 || !valid_log_level(static_cast<uint8_t>(*level)) || !uid || !gid || !hs || !idle || !close || !signer || !lifetime) {
        error = "job record lacks a field or has one out of range";
        return std::nullopt;
    }
    job.channel_id = *id;
    job.channel_name = *name;
    job.peer = *peer;
    job.ingress = static_cast<ingress_kind>(*ingress);
    job.proxy = static_cast<proxy_kind>(*proxy);
    for (const auto &item : split_list(*allow)) {
        auto rule = parse_allow_rule(item);
        if (!rule) {
            error = "bad allow rule in job";
            return std::nullopt;
        }
        job.allow.push_back(*rule);
    }
    if (r.has(J_TARGET)) {
        auto t = r.str(J_TARGET, SHORT);
        job.target = t ? parse_host_port(*t) : std::nullopt;
        if (!job.target) {
            error = "bad target in job";
            return std::nullopt;
        }
    }
    job.handshake_timeout_ms = *hs;
    job.idle_timeout_ms = *idle;
    job.close_timeout_ms = *close;
    job.signer_timeout_ms = *signer;
    job.max_session_lifetime_ms = *lifetime;
    job.certificate_pem = *cert;
    job.trust_pem = *trust;
    job.level = static_cast<log_level>(*level);
    job.uid = static_cast<int64_t>(*uid);
    job.gid = static_cast<int64_t>(*gid);
    auto direction = r.u64(J_DIRECTION);
    auto routes = r.raw(J_ROUTES, ipc_max_payload);
    if (!direction || *direction > 1 || !routes || !decode_routes(*routes, job.routes, error)) {
        if (error.empty())
            error = "job record lacks its direction or routes";
        return std::nullopt;
    }
    job.direction = static_cast<channel_direction>(*direction);
    if (job.direction == channel_direction::inbound && job.routes.empty()) {
        error = "inbound job without routes";
        return std::nullopt;
    }
    return job;
}

const char *outcome_name(outcome o)
{
    switch (o) {
    case outcome::ok: return "ok";
    case outcome::refused: return "refused";
    case outcome::failed: return "failed";
    }
    return "failed";
}

bytes encode_result(const worker_result &res)
{
    tlv_writer w;
    w.add_u64(R_OUTCOME, static_cast<uint64_t>(res.result))
        .add_u64(R_REASON, static_cast<uint64_t>(res.reason.code))
        .add_u64(R_REASON_DETAIL, res.reason.detail)
        .add(R_TARGET, res.target)
        .add(R_VERSION, res.tls_version)
        .add(R_SUITE, res.cipher_suite)
        .add(R_GROUP, res.group)
        .add(R_FINGERPRINT, res.peer_fingerprint)
        .add_u64(R_BYTES_UP, res.bytes_up)
        .add_u64(R_BYTES_DOWN, res.bytes_down)
        .add_u64(R_HANDSHAKE_MS, res.handshake_ms)
        .add_u64(R_DURATION_MS, res.duration_ms)
        .add_u64(R_RESUMED, res.resumed ? 1 : 0)
        .add_u64(R_SMGW_WAIT_US, res.smgw_wait_us)
        .add_u64(R_SIGNER_US, res.signer_us);
    return w.data();
}

std::optional<worker_result> decode_result(const bytes &payload, std::string &error)
{
    tlv_reader r;
    if (!r.parse(payload, error))
        return std::nullopt;
    worker_result res;
    auto oc = r.u64(R_OUTCOME);
    auto code = r.u64(R_REASON), detail = r.u64(R_REASON_DETAIL); // checked against the table below
    // Shown in status and the log as they are: printable ASCII only, else the record is refused.
    auto target = r.text(R_TARGET, 300), version = r.text(R_VERSION, 32),
         suite = r.text(R_SUITE, 80), group = r.text(R_GROUP, 32), fp = r.text(R_FINGERPRINT, 64);
    auto up = r.u64(R_BYTES_UP), down = r.u64(R_BYTES_DOWN), hs = r.u64(R_HANDSHAKE_MS), dur = r.u64(R_DURATION_MS);
    auto resumed = r.u64(R_RESUMED), wait = r.u64(R_SMGW_WAIT_US), signer = r.u64(R_SIGNER_US);
    if (!wait || !signer || !resumed || *resumed > 1 || !oc || *oc > 2 || !code || !detail || !target || !version || !suite || !group || !fp || !up || !down || !hs || !dur) {
        error = "result record lacks a field or has one out of range";
        return std::nullopt;
    }
    if (*code > UINT16_MAX || *detail > UINT16_MAX) {
        error = "result with a reason out of range";
        return std::nullopt;
    }
    res.reason = {static_cast<reason_code>(*code), static_cast<uint16_t>(*detail)};
    const reason_entry *row = reason_row(res.reason.code);
    if (!row || !reason_valid(res.reason) || (row->source != reason_source::worker && row->source != reason_source::both)) {
        error = "result with an unknown reason, or one a worker does not give";
        return std::nullopt;
    }
    res.result = static_cast<outcome>(*oc);
    res.target = *target;
    res.tls_version = *version;
    res.cipher_suite = *suite;
    res.group = *group;
    res.peer_fingerprint = *fp;
    res.bytes_up = *up;
    res.bytes_down = *down;
    res.handshake_ms = *hs;
    res.duration_ms = *dur;
    res.resumed = *resumed == 1;
    res.smgw_wait_us = *wait;
    res.signer_us = *signer;
    return res;
}

bytes encode_established(const worker_result &r)
{
    tlv_writer w;
    w.add(1, r.target).add(2, r.cipher_suite).add(3, r.group).add_u64(4, r.resumed ? 1 : 0);
    return w.data();
}

std::optional<channel_progress> decode_established(const bytes &payload)
{
    tlv_reader r;
    std::string err;
    if (!r.parse(payload, err))
        return std::nullopt;
    auto target = r.text(1, 300), suite = r.text(2, 80), group = r.text(3, 32);
    auto resumed = r.u64(4);
    if (!target || !suite || !group || !resumed || *resumed > 1)
        return std::nullopt;
    channel_progress p;
    p.target = *target;
    p.cipher_suite = *suite;
    p.group = *group;
    p.resumed = *resumed == 1;
    return p;
}

bytes encode_upstream_request(const std::string &choice) { return bytes(choice.begin(), choice.end()); }

std::optional<std::string> decode_upstream_request(const bytes &payload)
{
    if (payload.empty() || payload.size() > UPSTREAM_CHOICE_MAX)
        return std::nullopt;
    for (uint8_t c : payload)
        if (c <= ' ' || c >= 0x7f)
            return std::nullopt;
    return std::string(payload.begin(), payload.end());
}

bytes encode_progress(uint64_t up, uint64_t down)
{
    tlv_writer w;
    w.add_u64(1, up).add_u64(2, down);
    return w.data();
}

std::optional<std::pair<uint64_t, uint64_t>> decode_progress(const bytes &payload)
{
    tlv_reader r;
    std::string err;
    if (!r.parse(payload, err))
        return std::nullopt;
    auto up = r.u64(1), down = r.u64(2);
    if (!up || !down)
        return std::nullopt;
    return std::make_pair(*up, *down);
}

bytes encode_session_message(const session_message &m)
{
    tlv_writer w;
    w.reserve(4 * 6 + m.key.size() + m.blob.size() + sizeof m.age_ms + m.channel.size()); // one buffer, no copies
    w.add(1, m.key.data(), m.key.size()).add(2, m.blob.data(), m.blob.size()).add_u64(3, m.age_ms);
    if (!m.channel.empty())
        w.add(4, m.channel.data(), m.channel.size());
    return w.take();
}

std::optional<session_message> decode_session_message(const bytes &payload)
{
    tlv_reader r;
    std::string err;
    if (!r.parse(payload, err))
        return std::nullopt;
    auto key = r.raw(1, 255), blob = r.raw(2, SESSION_BLOB_MAX);
    auto age = r.u64(3);
    auto channel = r.has(4) ? r.raw(4, 128) : bytes();
    if (!key || !blob || !age || !channel || r.count() != (r.has(4) ? 4u : 3u))
        return std::nullopt;
    session_message m;
    m.key = *key;
    m.blob = std::move(*blob);
    m.age_ms = *age;
    m.channel = *channel;
    return m;
}

namespace {

bool log_key_ok(const std::string &k)
{
    if (k.empty() || k.size() > 32 || k == "msg" || k == "channel" || k == "name" || k == "spare_pid")
        return false;
    for (char c : k)
        if (!((c >= 'a' && c <= 'z') || c == '_'))
            return false;
    return true;
}

} // namespace

bytes encode_log_record(log_level level, std::string_view message, const log_fields &fields)
{
    tlv_writer w;
    w.add(1, message.substr(0, LOG_RECORD_MESSAGE_MAX));
    uint16_t tag = 2;
    for (const auto &[k, v] : fields.pairs()) {
        if (tag >= 2 + 2 * LOG_RECORD_FIELDS_MAX)
            break;
        w.add(tag, k).add(static_cast<uint16_t>(tag + 1), std::string_view(v).substr(0, LOG_RECORD_VALUE_MAX));
        tag = static_cast<uint16_t>(tag + 2);
    }
    bytes out(1 + w.data().size());
    out[0] = static_cast<uint8_t>(level);
    std::copy(w.data().begin(), w.data().end(), out.begin() + 1);
    return out;
}

std::optional<log_record> decode_log_record(const bytes &payload, std::string &error)
{
    if (payload.empty() || !valid_log_level(payload[0])) {
        error = "log record without a valid level";
        return std::nullopt;
    }
    tlv_reader r;
    if (!r.parse(bytes(payload.begin() + 1, payload.end()), error))
        return std::nullopt;
    log_record rec;
    rec.level = static_cast<log_level>(payload[0]);
    auto message = r.str(1, LOG_RECORD_MESSAGE_MAX);
    if (!message) {
        error = "log record without a message";
        return std::nullopt;
    }
    rec.message = *message;
    size_t expected = 1;
    for (uint16_t tag = 2; r.has(tag); tag = static_cast<uint16_t>(tag + 2)) {
        auto k = r.str(tag, 32), v = r.str(static_cast<uint16_t>(tag + 1), LOG_RECORD_VALUE_MAX);
        if (rec.fields.size() == LOG_RECORD_FIELDS_MAX || !k || !v || !log_key_ok(*k)) {
            error = "log record with a bad field";
            return std::nullopt;
        }
        rec.fields.emplace_back(*k, *v);
        expected += 2;
    }
    if (r.count() != expected) {
        error = "log record with stray fields";
        return std::nullopt;
    }
    return rec;
}

} // namespace clsgw
