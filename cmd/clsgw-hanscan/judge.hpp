// Judgements both scan modes share: the clock in hello randoms, a peer's certificate, and a
// peer's answer to a renegotiation attempt inside the session.
#pragma once

#include <ctime>
#include <string>
#include <vector>

#include "../../lib/tls/sealed.hpp"
#include "../../lib/tls/wire.hpp"
#include "endpoint.hpp"
#include "report.hpp"

namespace clsgw::hanscan {

// RANDOM_TIME: none of the randoms may start with the clock (gmt_unix_time, RFC 5246 7.4.1.2).
void judge_random_time(report &rep, const std::vector<wire::bytes> &randoms, time_t now, const char *hello_name);
// How many of the randoms start within an hour of `now`.
size_t randoms_near_clock(const std::vector<wire::bytes> &randoms, time_t now);

// The peer's certificate chain from its Certificate message, judged against the profile.
void judge_certificate(report &rep, const char *item, const wire::bytes &leaf);

// The hello random of every hello the peer sent in a handshake.
void collect_randoms(const wire::record_reader &peer, uint8_t hello_type, std::vector<wire::bytes> &into);

// After a handshake: our own Finished, opened with our keys (its verify_data), or empty.
wire::bytes own_verify_data(endpoint &e, tls::sealed_session &sealed, bool we_are_client);

// Sends `message` (a handshake message) sealed in the session and reads the peer's answer until
// renegotiation_wait; returns true when the peer renegotiated (answered with `renegotiating`,
// a ServerHello or a ClientHello), and what it did in `evidence`.
bool renegotiation_answer(endpoint &e, int fd, tls::sealed_session &sealed, bool we_are_client,
                          const wire::bytes &message, uint8_t renegotiating, uint64_t wait_ms,
                          std::string &evidence);

} // namespace clsgw::hanscan
