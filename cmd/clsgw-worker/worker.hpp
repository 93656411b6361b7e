// The worker's shared state: its job, its TLS material, and its link to the master and signer.
#pragma once

#include <cstdint>
#include <string>

#include "../../lib/job.hpp"
#include "../../lib/log.hpp"
#include "../../lib/tls/tls.hpp"
#include "../../lib/util.hpp"

namespace clsgw {

constexpr int CONTROL_FD = 3;
constexpr int CONNECTION_FD = 4;
constexpr int SIGNER_FD = 5;
// The master passes the upstream socket later; it lands on the lowest free number.
constexpr int HIGHEST_FD = 6;

struct worker_context {
    worker_job job;
    tls::rng rng;
    tls::cert_list own_chain;
    tls::cert_list trust;
    uint8_t key_id[32] = {};
    uint32_t sign_seq = 0;
    uint64_t started_ms = 0;
    uint64_t handshake_deadline_ms = 0;
    worker_result result;
};

// Fills ctx.result for one outbound (HKS3) channel on CONNECTION_FD.
void run_outbound(worker_context &ctx);

// The remote-key callback: asks clsgw-signer on SIGNER_FD, bounded by the signer timeout.
int sign_with_signer(void *arg, int md_alg, const unsigned char *hash, size_t hash_len, unsigned char *sig,
                     size_t sig_size, size_t *sig_len);

#ifdef CLSGW_TEST_HOOKS
// Test builds only: a target named "forbidden-CALL.test" makes that call after the sandbox.
void test_hook_forbidden_call(const std::string &target_host);
#endif

} // namespace clsgw
