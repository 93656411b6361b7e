// The worker's shared state: its job, its TLS material, and its link to the master and signer.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../../lib/fd.hpp"
#include "../../lib/fd_layout.h"
#include "../../lib/ipc.hpp"
#include "../../lib/ipc_rules.hpp"
#include "../../lib/job.hpp"
#include "../../lib/log.hpp"
#include "../../lib/reason.hpp"
#include "../../lib/relay.hpp"
#include "../../lib/tls/endpoint.hpp"
#include "../../lib/util.hpp"

namespace clsgw {

constexpr int CONTROL_FD = CLSGW_WORKER_CONTROL_FD;
constexpr int CONNECTION_FD = CLSGW_WORKER_CONNECTION_FD;
constexpr int SIGNER_FD = CLSGW_WORKER_SIGNER_FD;
// The master passes the upstream socket later; it lands on the lowest free number.
constexpr int HIGHEST_FD = 6;

struct worker_context {
    worker_job job;
    tls::rng rng;
    tls::cert_list own_chain;
    tls::cert_list trust;
    std::vector<std::unique_ptr<tls::cert_list>> route_trust; // inbound: one per route
    uint8_t key_id[32] = {};
    uint32_t sign_seq = 0;
    uint64_t started_ms = 0;
    uint64_t handshake_deadline_ms = 0;
    uint64_t resumed_session_age_ms = 0; // age of the session this channel resumed
    std::optional<upstream_failure> upstream_failed; // what the master said instead of a socket
    worker_result result;
    // What the master and the signer sent, counted against the protocol table (lib/ipc_rules).
    ipc_budget from_master, from_signer;
};

// Fills ctx.result for one outbound (HKS3) channel on CONNECTION_FD.
void run_outbound(worker_context &ctx);
// Fills ctx.result for one inbound (HKS4/HKS5) channel: the SMGW's TLS on CONNECTION_FD.
void run_inbound(worker_context &ctx);

// Sets up e as our end of a channel, client or server (MBEDTLS_SSL_IS_*): the HAN profile, our
// chain with the signer-held key, trusting `trust`. 0 or an mbedTLS error.
int configure_endpoint(worker_context &ctx, tls::endpoint &e, int role, const mbedtls_x509_crt *trust);
// Opens e on fd, a client naming server_name when given; 0 or an mbedTLS error.
int open_endpoint(tls::endpoint &e, int fd, const char *server_name = nullptr);
// Fills the TLS fields of ctx.result after a successful handshake.
void record_tls(worker_context &ctx, const tls::endpoint &e, const tls::handshake_result &h);
// Hands the pages of freed memory back to the kernel (the handshake's, the filter compiler's):
// an open channel then costs only what it still uses.
void release_freed_memory();

// Session resumption through the master. ask_master sends a request (session_request or
// session_lookup) and waits for its session_answer; an empty blob means none.
std::optional<session_message> ask_master(worker_context &ctx, msg_type type, const bytes &key,
                                          const bytes &channel = bytes());
bool save_session(const mbedtls_ssl_context *ssl, bytes &out);
// The relay settings every channel shares: the job's timeouts, the TLS session held open after
// the plain side's FIN until the SMGW closes or close_timeout passes quietly, the end at max_session_lifetime
// (counted from the TLS session's full handshake), progress reports to the master (for clsgwctl
// status), and freed memory handed back once the relay first goes idle.
relay_options channel_relay_options(const worker_context &ctx);
bool load_session(mbedtls_ssl_session *session, const bytes &blob);

// Waits until fd is ready for events or the deadline (monotonic ms) passes; false on timeout.
bool wait_fd(int fd, short events, uint64_t deadline_ms);
// Asks the master for the upstream socket (outbound: the SMGW; inbound: the chosen channel's
// service, named by `choice`). On failure returns an invalid fd and the reason.
unique_fd request_upstream(worker_context &ctx, const std::string &choice, channel_reason &failure);

// The remote-key callback: asks clsgw-signer on SIGNER_FD, bounded by the signer timeout.
int sign_with_signer(void *arg, int md_alg, const unsigned char *hash, size_t hash_len, unsigned char *sig,
                     size_t sig_size, size_t *sig_len);

#ifdef CLSGW_TEST_HOOKS
// Test builds only: a target named "forbidden-CALL.test" makes that call after the sandbox.
void test_hook_forbidden_call(const std::string &target_host);
// Test builds only: a channel named "hostile-ATTACK" runs that attack (hostile.cpp) instead of its
// work, after the same start-up and sandbox as any worker; true when it did.
bool test_hook_hostile(worker_context &ctx);
#endif

} // namespace clsgw
