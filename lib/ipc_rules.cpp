#include "ipc_rules.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "job.hpp"
#include "signer_proto.hpp"

namespace clsgw {

namespace {

constexpr size_t SESSION_MESSAGE_MAX = SESSION_BLOB_MAX + 512;

// clang-format off
const ipc_rule RULES[] = {
    // type                      name               from                       to                         max payload                 fd                        count
    {msg_type::job,              "job",             role_master,               role_worker,               ipc_max_payload,            ipc_rule::fd_optional,    1}, // a spare's carries its signer session
    {msg_type::upstream_ready,   "upstream_ready",  role_master,               role_worker,               0,                          ipc_rule::fd_required,    1},
    {msg_type::upstream_failed,  "upstream_failed", role_master,               role_worker,               1,                          ipc_rule::no_fd,          1}, // reason.hpp's code
    {msg_type::session_answer,   "session_answer",  role_master,               role_worker,               SESSION_MESSAGE_MAX,        ipc_rule::no_fd,          1},
    {msg_type::handover,         "handover",        role_master,               role_worker,               0,                          ipc_rule::fd_required,    1},
    // Never answered; the master prints at most WORKER_LOG_LINES_MAX a channel, and ends a worker
    // that sends more than this many. Not counted on the signer's link (ipc_budget's exemption).
    {msg_type::log,              "log",             role_worker | role_signer, role_master,               2048,                       ipc_rule::no_fd,          1000},
    {msg_type::upstream_request, "upstream_request",role_worker,               role_master,               UPSTREAM_CHOICE_MAX,        ipc_rule::no_fd,          1},
    {msg_type::established,      "established",     role_worker,               role_master,               2048,                       ipc_rule::no_fd,          1},
    {msg_type::result,           "result",          role_worker,               role_master,               4096,                       ipc_rule::no_fd,          1},
    {msg_type::session_request,  "session_request", role_worker,               role_master,               512,                        ipc_rule::no_fd,          1},
    {msg_type::session_offer,    "session_offer",   role_worker,               role_master,               SESSION_MESSAGE_MAX,        ipc_rule::no_fd,          1},
    {msg_type::session_store,    "session_store",   role_worker,               role_master,               SESSION_MESSAGE_MAX,        ipc_rule::no_fd,          1},
    {msg_type::session_lookup,   "session_lookup",  role_worker,               role_master,               512,                        ipc_rule::no_fd,          1},
    // Not counted (a channel may live 48 h): never answered, and the master holds it to once a
    // second (a burst of PROGRESS_BURST allowed).
    {msg_type::progress,         "progress",        role_worker,               role_master,               64,                         ipc_rule::no_fd,          0},
    {msg_type::signer_ready,     "signer_ready",    role_signer,               role_master,               1024,                       ipc_rule::no_fd,          1},
    // Not counted: one per channel on the master's connection; the signer bounds its sessions.
    {msg_type::session_open,     "session_open",    role_master,               role_signer,               1024,                       ipc_rule::fd_required,    0},
    // Not counted: on the master's connection, one per clsgwctl check or metrics waiting for it.
    {msg_type::signer_probe,     "signer_probe",    role_master,               role_signer,               64,                         ipc_rule::no_fd,          0},
    {msg_type::signer_counts,    "signer_counts",   role_signer,               role_master,               256,                        ipc_rule::no_fd,          0},
    {msg_type::sign_request,     "sign_request",    role_worker | role_master, role_signer,               signer::REQUEST_SIZE,       ipc_rule::no_fd,          signer::SIGNATURES_PER_SESSION},
    // Each signature's answer, and the refusal that ends the session.
    {msg_type::sign_answer,      "sign_answer",     role_signer,               role_worker | role_master, 256,                        ipc_rule::no_fd,          signer::SIGNATURES_PER_SESSION + 1},
};
// clang-format on

} // namespace

const ipc_rule *ipc_rule_for(msg_type type)
{
    for (const auto &r : RULES)
        if (r.type == type)
            return &r;
    return nullptr;
}

const ipc_rule *ipc_rules_begin() { return std::begin(RULES); }
const ipc_rule *ipc_rules_end() { return std::end(RULES); }

ipc_budget::ipc_budget(std::initializer_list<msg_type> uncounted)
{
    for (msg_type t : uncounted)
        uncounted_[static_cast<size_t>(t) % uncounted_.size()] = true;
}

bool ipc_budget::take(const ipc_rule &rule)
{
    size_t slot = static_cast<size_t>(rule.type) % counts_.size();
    uint32_t &n = counts_[slot];
    if (rule.max_count != 0 && !uncounted_[slot] && n >= rule.max_count)
        return false;
    n++;
    return true;
}

uint32_t ipc_budget::used(msg_type type) const { return counts_[static_cast<size_t>(type) % counts_.size()]; }

ipc_recv_result ipc_recv_checked(int socket, ipc_role me, ipc_budget &budget)
{
    ipc_recv_result r = ipc_recv(socket, true);
    if (r.status != ipc_status::ok)
        return r;
    auto broken = [&r](ipc_violation v, std::string why) {
        r.status = ipc_status::error;
        r.violation = v;
        r.error = std::move(why);
        r.message.fd.reset();
        return std::move(r);
    };
    const ipc_rule *rule = ipc_rule_for(r.message.type);
    if (!rule || !(rule->to & me))
        return broken(ipc_violation::not_for_receiver, "message type " + std::to_string(static_cast<unsigned>(r.message.type)) + " is not for this receiver");
    if (r.message.payload.size() > rule->max_payload)
        return broken(ipc_violation::over_size, std::string(rule->name) + " over its size (" + std::to_string(r.message.payload.size()) + " > " +
                      std::to_string(rule->max_payload) + ")");
    bool has_fd = static_cast<bool>(r.message.fd);
    if ((rule->fd == ipc_rule::no_fd && has_fd) || (rule->fd == ipc_rule::fd_required && !has_fd))
        return broken(ipc_violation::fd_rule, std::string(rule->name) + (has_fd ? " carried a file descriptor" : " without its file descriptor"));
    if (!budget.take(*rule))
        return broken(ipc_violation::over_count, std::string(rule->name) + " sent more often than its " + std::to_string(rule->max_count));
    return r;
}

} // namespace clsgw
