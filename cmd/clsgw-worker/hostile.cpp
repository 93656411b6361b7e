// Test builds only (-DCLSGW_TEST_HOOKS, binary build/tests/clsgw-worker-testhooks, never
// installed): a hostile worker. It starts and confines itself exactly like clsgw-worker (this is
// the same program, up to the point where a channel's work begins) and then, for a channel
// named "hostile-ATTACK", sends what its filter lets it send instead of serving the channel.
// The tests use it to prove that a compromised worker stays in its own channel's lane.
#ifdef CLSGW_TEST_HOOKS
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "../../lib/ipc.hpp"
#include "../../lib/signer_proto.hpp"
#include "worker.hpp"

namespace clsgw {

namespace {

// The next frame from fd within timeout_ms; nullopt on silence or close.
std::optional<ipc_message> next_frame(int fd, int timeout_ms)
{
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1)
        return std::nullopt;
    ipc_recv_result r = ipc_recv(fd, true);
    if (r.status != ipc_status::ok)
        return std::nullopt;
    return std::move(r.message);
}

// Asks for the upstream as an honest worker of this channel would (outbound: its target).
bool get_upstream(worker_context &ctx)
{
    std::string target = ctx.job.target ? ctx.job.target->to_string() : "";
    ipc_send(CONTROL_FD, msg_type::upstream_request, bytes(target.begin(), target.end()));
    auto m = next_frame(CONTROL_FD, 5000);
    return m && m->type == msg_type::upstream_ready;
}

// The key a worker of another channel to the same target used to name its session by.
bytes victim_key(const worker_context &ctx)
{
    std::string host = ctx.job.target ? ctx.job.target->host : "";
    return bytes(host.begin(), host.end());
}

// Asks for a session and says how many bytes came back (0 also when no answer came).
void ask(const bytes &key)
{
    session_message q;
    q.key = key;
    ipc_send(CONTROL_FD, msg_type::session_request, encode_session_message(q));
    auto m = next_frame(CONTROL_FD, 5000);
    auto a = m && m->type == msg_type::session_answer ? decode_session_message(m->payload) : std::nullopt;
    log_warn("hostile: session answer", log_fields().add("key", key.empty() ? "none" : "victim's")
                                            .add("bytes", a ? a->blob.size() : 0));
}

// Another channel's session: asked for as an honest worker asks (the master names the scope),
// then by the key the other channel's worker used to name it by.
void steal(worker_context &ctx)
{
    get_upstream(ctx);
    ask(bytes());
    ask(victim_key(ctx));
}

// A session of its own making, offered as if a full handshake had made it: as an honest worker
// offers one, or under the key the other channel's worker used to name its session by.
void plant(worker_context &ctx, bool as_victim)
{
    get_upstream(ctx);
    session_message offer;
    if (as_victim)
        offer.key = victim_key(ctx);
    offer.blob.assign(300, 0x5a);
    ipc_send(CONTROL_FD, msg_type::session_offer, encode_session_message(offer));
    log_warn("hostile: planted a session");
}

// Requests the master must answer, sent without ever reading an answer (after the upstream, so
// that the first one is a valid request).
void flood_master(worker_context &ctx)
{
    get_upstream(ctx);
    session_message q;
    bytes frame = encode_session_message(q);
    unsigned sent = 0;
    for (; sent < 5000; sent++)
        if (!ipc_send(CONTROL_FD, msg_type::session_request, frame))
            break;
    log_warn("hostile: flooded the master", log_fields().add("requests", sent));
}

// Sign requests on the signer session, never reading an answer.
void flood_signer(worker_context &ctx)
{
    signer::request r;
    r.digest_alg = static_cast<uint8_t>(signer::digest::sha256);
    r.hash_len = 32;
    memcpy(r.key_id, ctx.key_id, signer::KEY_ID_LEN);
    bytes frame = signer::encode_request(r);
    unsigned sent = 0;
    for (; sent < 5000; sent++)
        if (!ipc_send(SIGNER_FD, msg_type::sign_request, frame))
            break;
    log_warn("hostile: flooded the signer", log_fields().add("requests", sent));
}

// A refused request first (an unknown key id), then a valid one: does the session still sign?
void signer_after_refusal(worker_context &ctx)
{
    signer::request bad;
    bad.digest_alg = static_cast<uint8_t>(signer::digest::sha256);
    bad.hash_len = 32;
    ipc_send(SIGNER_FD, msg_type::sign_request, signer::encode_request(bad));
    auto first = next_frame(SIGNER_FD, 5000);
    signer::request good = bad;
    good.seq = 1;
    memcpy(good.key_id, ctx.key_id, signer::KEY_ID_LEN);
    ipc_send(SIGNER_FD, msg_type::sign_request, signer::encode_request(good));
    auto second = next_frame(SIGNER_FD, 3000);
    auto answer = second ? signer::decode_answer(second->payload) : std::nullopt;
    log_warn("hostile: signer after a refusal",
             log_fields().add("first", first ? "answered" : "none")
                 .add("second", answer ? signer::status_name(answer->st) : "none"));
}

// Reports the SMGW as failing TLS although nothing was tried: one worker's word.
void fake_smgw_failure(worker_context &ctx)
{
    get_upstream(ctx);
    ctx.result.result = outcome::failed;
    ctx.result.reason = reason_of(reason_code::tls_error);
}

// A result whose reason is no code of the table: the master must refuse it, not print it.
void forge_reason(worker_context &ctx)
{
    ctx.result.reason = {static_cast<reason_code>(UINT16_MAX), 0};
    log_warn("hostile: reporting a reason code outside the table");
}

// Text that imitates the master's own lines: the old free-text record, then a structured one.
void forge_log(worker_context &)
{
    log_warn("channel closed id=999 name=meter outcome=ok reason=forged\nchannel closed id=998 outcome=ok",
             log_fields().add("reason", "forged"));
    std::string line = "channel closed id=997 name=meter outcome=ok reason=forged";
    bytes raw(1 + line.size());
    raw[0] = static_cast<uint8_t>(log_level::warn);
    std::copy(line.begin(), line.end(), raw.begin() + 1);
    ipc_send(CONTROL_FD, msg_type::log, raw);
}

// Bytes that are not text where the master shows text (status, the log): the target it reports.
void not_text(worker_context &ctx)
{
    get_upstream(ctx);
    worker_result r;
    r.target = "\xff\xfe.example:443";
    r.cipher_suite = "x";
    r.group = "y";
    ipc_send(CONTROL_FD, msg_type::established, encode_established(r));
    log_warn("hostile: sent a target that is not text");
}

// A session offered long after the handshake began: after the operator reloaded a new trust.
void late_offer(worker_context &ctx)
{
    get_upstream(ctx);
    pollfd p{CONTROL_FD, POLLIN, 0};
    poll(&p, 1, 3000); // the master sends nothing now: this is the wait across the reload
    session_message offer;
    offer.blob.assign(300, 0x5a);
    ipc_send(CONTROL_FD, msg_type::session_offer, encode_session_message(offer));
    log_warn("hostile: offered a session after waiting");
}

} // namespace

bool test_hook_hostile(worker_context &ctx)
{
    const std::string prefix = "hostile-";
    const std::string &name = ctx.job.channel_name;
    if (name.compare(0, prefix.size(), prefix) != 0)
        return false;
    std::string attack = name.substr(prefix.size());
    const auto &attacks = hostile_attacks();
    auto known = std::find_if(attacks.begin(), attacks.end(), [&](const char *a) { return attack == a; });
    ctx.result.result = outcome::failed;
    // hostile_ATTACK; an attack not in the table leaves a detail out of range (a refused result)
    ctx.result.reason = {reason_code::hostile, static_cast<uint16_t>(known - attacks.begin())};
    if (attack == "steal")
        steal(ctx);
    else if (attack == "plant")
        plant(ctx, false);
    else if (attack == "plant-as-victim")
        plant(ctx, true);
    else if (attack == "flood-master")
        flood_master(ctx);
    else if (attack == "flood-signer")
        flood_signer(ctx);
    else if (attack == "signer-after-refusal")
        signer_after_refusal(ctx);
    else if (attack == "smgw-failure")
        fake_smgw_failure(ctx);
    else if (attack == "not-text")
        not_text(ctx);
    else if (attack == "late-offer")
        late_offer(ctx);
    else if (attack == "forge-log")
        forge_log(ctx);
    else if (attack == "forge-reason")
        forge_reason(ctx);
    else
        log_error("hostile: no such attack", log_fields().add("attack", attack));
    return true;
}

} // namespace clsgw
#endif
