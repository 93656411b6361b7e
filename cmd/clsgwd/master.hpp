// The master: accepts, spawns one sandboxed worker per channel, connects upstream on the
// workers' behalf, supervises the signer. It never parses bytes from the network. One class and
// one event loop (master.cpp); each of its jobs is a file of its own that says which in its first
// comment (listeners, spawn, spares, signer_link, worker_link, sessions, upstream, reports,
// throttle, reload, control, certificates; exec and environment are helpers).
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../../lib/backoff.hpp"
#include "../../lib/config.hpp"
#include "../../lib/fd.hpp"
#include "../../lib/ipc.hpp"
#include "../../lib/ipc_rules.hpp"
#include "../../lib/log.hpp"
#include "../../lib/job.hpp"
#include "../../lib/metrics.hpp"
#include "../../lib/net.hpp"
#include "../../lib/reason.hpp"
#include "../../lib/session_cache.hpp"

namespace clsgw {

constexpr uint64_t HANDSHAKE_GRACE_MS = 1000; // the worker reports its own timeout first
constexpr uint64_t SMGW_BACKOFF_FIRST_MS = 1000;

// exec.cpp: places the given fds at 3, 4, 5 (and /dev/null on 0-2) and execs; never returns.
[[noreturn]] void exec_child(const std::string &path, const std::vector<int> &fds, std::vector<std::string> args,
                             bool keep_stderr);
// worker_link.cpp: a worker's log record as one line, nullopt when malformed.
std::optional<std::pair<log_level, std::string>> worker_log_line(const bytes &p);
// sessions.cpp: overwrites a buffer that held a TLS session before it is freed.
void wipe(bytes &b);

struct master_paths {
    std::string worker;
    std::string signer;
};

// One listening socket and the channels it serves: one outbound channel, or inbound channels
// told apart by server_name.
struct listener {
    std::string key;
    std::vector<std::string> channels;
    unique_fd fd;
    bool from_systemd = false; // passed by systemd (a channel socket), not bound by clsgwd
};

struct channel {
    uint64_t id = 0;
    channel_config cfg;                     // inbound: the listener's first channel until the worker picks
    std::vector<channel_config> candidates; // the channels this worker may serve, as when it started
    sock_address upstream;                  // outbound: the SMGW, as configured when it started
    pid_t pid = -1;
    unique_fd control;
    ipc_budget budget; // what it has sent, checked against the protocol table
    std::string peer;
    uint64_t started_ms = 0;
    uint64_t handshake_deadline_ms = 0;
    bool established = false;
    bool upstream_requested = false;
    unique_fd connecting; // upstream connect in progress
    uint64_t connect_deadline_ms = 0;
    uint64_t upstream_ready_ms = 0; // when the worker got its upstream socket
    double progress_tokens = 5;     // progress reports: one a second, a burst of five
    uint64_t progress_at_ms = 0;
    std::optional<worker_result> result;
    std::optional<channel_reason> kill_reason; // set when the master killed it
    unsigned log_lines = 0;
    // Outbound: the target the channel serves, as checked by the master (a static channel's
    // own, or a SOCKS5 target its allow list admits); the scope of its sessions.
    std::optional<host_port> target;
    std::string resumed_channel; // inbound: the channel whose session the worker looked up
    uint64_t cache_generation = 0; // sessions_'s generation when it started (see reset_session_cache)
    channel_progress live;      // what the worker reported once established, and bytes since
};

// A certificate clsgwd watches for expiry (our identity and each trust anchor).
struct watched_certificate {
    std::string role, path, subject;
    int64_t not_after = 0; // Unix time
};

// A worker exec'd and sandboxed ahead of time (spare_workers), waiting for exactly one channel.
struct spare_worker {
    pid_t pid = -1;
    unique_fd control; // closed: the spare is dying and is not handed out
};

struct signer_process {
    pid_t pid = -1;
    unique_fd control;
    ipc_budget budget{msg_type::log}; // what this signer sent on control; it logs as long as it runs
    bool ready = false;
    bool ever_ready = false;
    std::string key_id;
    uint64_t restart_at_ms = 0;
    backoff restart_backoff{1000, 60000}; // a signer that lived a minute starts from 1s again
    uint64_t started_ms = 0;
    unsigned restarts = 0;
    bool external = false; // clsgw-signer.service: connected to, not started
    bool down() const { return external ? !control : pid < 0; }
};

// A clsgwctl connection: one command line in (at most 512 bytes), one answer out, each within
// control_timeout. `check` and `reload` wait for the signer without holding up the loop.
struct control_client {
    uint64_t id = 0;
    unique_fd fd;
    uid_t uid = 0;
    std::string received; // until its newline
    std::string answer;   // set: being sent
    size_t sent = 0;
    uint64_t deadline_ms = 0;
    bool waiting = false; // for a check's test signature or for a reload
    // check: a test signature on a signer session of its own, and the report so far
    unique_fd probe;
    ipc_budget probe_budget;
    bytes probe_hash;
    // check and metrics: the signer's liveness probe this client waits for (0: none)
    uint64_t probe_seq = 0;
    bool metrics = false; // the command is `metrics`
    std::string report, problems;
    bool failed = false;
    short poll_events() const { return !answer.empty() ? POLLOUT : waiting ? 0 : POLLIN; }
};

// A reload waiting for its new signer to prove its key: committed when the signer says it is
// ready, refused when it fails or signer_timeout passes. Listeners and certificates are
// prepared; nothing of the running configuration has changed yet.
struct pending_reload {
    config next;
    std::vector<listener> listeners;
    master_paths paths;
    std::string certificate_pem;
    std::map<std::string, std::string> trust_pems;
    long uid = -1, gid = -1;
    signer_process signer; // unset when the running signer stays (a signer service)
    uint64_t deadline_ms = 0;
    std::string signer_said; // its last log line: the reason when it fails
};

class master {
public:
    // Re-reads the configuration file; keeps everything as it was on any error. Done at once,
    // or when the new signer is ready (commit_reload); a reload under way is started over.
    void reload();
    master(config cfg, master_paths paths, std::string certificate_pem, std::map<std::string, std::string> trust_pems,
           long worker_uid, long worker_gid);
    // Takes activated sockets and binds the rest; false with a message on error.
    bool open_listeners(std::string &error);
    int run();

private:
    config cfg_;
    master_paths paths_;
    std::string certificate_pem_;
    std::map<std::string, std::string> trust_pems_; // by path
    long worker_uid_, worker_gid_;
    std::vector<listener> listeners_;
    std::map<uint64_t, channel> channels_;
    std::map<pid_t, uint64_t> pid_to_channel_;
    signer_process signer_;
    std::vector<pid_t> retired_signers_; // finishing the sessions of channels opened before a reload
    unique_fd signals_;
    uint64_t next_id_ = 0;
    bool stopping_ = false;
    uint64_t stop_deadline_ms_ = 0;
    uint64_t accept_paused_until_ms_ = 0;
    uint64_t limit_logged_ms_ = 0;
    uint64_t limit_hits_ = 0;
    bool announced_ready_ = false;
    session_cache sessions_; // keyed by a scope the master derives (client_scope, server_scope)
    // Bumped by every reset (reload): a channel that started under the old trust neither reads nor
    // stores sessions afterwards, so a handshake that straddles a reload plants nothing.
    uint64_t cache_generation_ = 0;
    unique_fd control_;                                      // clsgwctl's socket
    gid_t control_gid_ = 0;                                  // its group, whose members may use it
    std::map<uint64_t, control_client> control_clients_;
    uint64_t next_control_id_ = 0;
    bool control_full_logged_ = false;
    std::optional<pending_reload> reload_;
    std::vector<uint64_t> reload_waiters_; // control clients answered when the reload is done
    uint64_t started_ms_ = 0;
    uint64_t accepted_total_ = 0;
    std::map<std::string, uint64_t> outcomes_; // "outcome/reason" -> count since start
    std::vector<watched_certificate> certificates_;
    std::map<std::string, log_level> channel_levels_; // log-level set for one channel
    uint64_t watchdog_interval_ms_ = 0; // half of systemd's WATCHDOG_USEC; 0 = no watchdog
    uint64_t watchdog_next_ms_ = 0;
    std::string status_sent_;
    uint64_t status_sent_ms_ = 0;
    uint64_t status_due_ms_ = 0; // a changed status waits for this time; 0: nothing pending
    void notify_status();
    // Back-off toward an SMGW that refuses connections or TLS: some HAN ports lock up after
    // repeated failures, so clsgwd stops trying for a while and fails new channels at once.
    uint64_t smgw_blocked_until_ms_ = 0;
    backoff smgw_backoff_{SMGW_BACKOFF_FIRST_MS}; // its ceiling is smgw_backoff_max
    // Counted only from what clsgwd sees itself (its own connect failing) or from failures of
    // several workers in a row: one worker's word cannot put every channel into fail-fast.
    unsigned smgw_failed_channels_ = 0;
    void note_smgw_outcome(const channel &ch);
    void smgw_back_off(const std::string &reason, const char *seen_by);
    // Workers dying before doing anything (a broken install, a filter that cannot load): after
    // three in a row clsgwd pauses accepting, doubling the pause, instead of spawning in a loop.
    unsigned useless_deaths_ = 0;
    backoff spawn_pause_;
    void note_worker_usefulness(const channel &ch);
    // Repeated identical failures from one peer: the first few per interval are logged, the
    // rest counted and reported in one "suppressed" line.
    struct failure_window {
        uint64_t started_ms = 0;
        unsigned logged = 0;
        uint64_t suppressed = 0;
    };
    std::map<std::string, failure_window> failures_; // "peer-address reason"
    bool may_log_failure(const channel &ch, const std::string &reason);
    void flush_suppressed();
    uint64_t next_suppressed_flush() const;
    // The spare pool: a channel takes the oldest spare, the pool is refilled after the accept
    // round. Spares that die unused are logged and the refill waits, doubling up to 60s.
    std::vector<spare_worker> spares_;
    std::vector<pid_t> retired_spares_; // control closed (reload, stop); they exit on their own
    uint64_t spare_refill_at_ms_ = 0;
    backoff spare_backoff_;
    void refill_spares();
    uint64_t spare_refill_due() const;
    bool hand_to_spare(channel &ch, int connection, int signer_session);
    void retire_spares();
    void on_spare_message(spare_worker &s);
    bool spare_exited(pid_t pid, int status);
    size_t spares_ready() const;

    void setup_signals();
    void start_signer();
    signer_process spawn_signer(const config &cfg, const std::string &program);
    void on_reload_signer_message();
    void commit_reload(pending_reload &r);
    void refuse_reload(const std::string &why);
    bool build_listeners(const config &cfg, std::vector<listener> &out, std::string &error);
    void on_signer_message();
    void on_signal();
    void reap();
    void on_worker_exit(channel &ch, int status);
    void signer_exited(int status);
    void accept_on(listener &l);
    void spawn_worker(const listener &l, unique_fd connection, const std::string &peer);
    void refuse_without_signer(const listener &l, unique_fd connection, const std::string &peer);
    void on_worker_message(channel &ch);
    void start_upstream(channel &ch, const std::string &choice);
    void on_session_message(channel &ch, msg_type type, const bytes &payload);
    void answer_session(channel &ch, const std::string &key);
    void reset_session_cache();
    std::string client_scope(const channel &ch) const;
    std::string server_scope(const channel &ch, const std::string &channel_name, const bytes &id) const;
    bool check_target(channel &ch, const std::string &text);
    // Sends to a worker without waiting; a worker that leaves its socket full is killed.
    bool send_to_worker(channel &ch, msg_type type, const bytes &payload, int fd = -1);
    void finish_upstream(channel &ch);
    void fail_upstream(channel &ch, upstream_failure why);
    void connect_failed(channel &ch, upstream_failure why);
    void kill_worker(channel &ch, reason_code reason);
    void protocol_violation(channel &ch, const std::string &what);
    void han_keepalive(int fd) const;
    void check_deadlines();
    void begin_stop(const char *why);
    bool accepting() const;
    int poll_timeout() const;
    void log_summary(const channel &ch, int status);
    worker_job make_job(const channel &ch) const;
    // control.cpp: clsgwctl's commands
    void open_control_socket();
    bool control_accepting();
    void on_control_connection();
    bool control_peer_allowed(int fd, uid_t &uid) const;
    void on_control_client(uint64_t id);
    void answer_control(control_client &c, const std::string &answer);
    void run_command(control_client &c, const std::string &line);
    std::string log_level_command(const std::vector<std::string> &w);
    void answer_reload_waiters(const std::string &why);
    std::string status_json() const;
    void begin_check(control_client &c, bool sign);
    bool send_test_signature(control_client &c, std::string &why);
    void on_control_probe(uint64_t id);
    void end_check(control_client &c, bool signer_ok, const std::string &signer_line);
    // clsgwctl check (without --sign) and metrics: a signer_probe that signs nothing
    uint64_t next_probe_seq_ = 0;
    bool send_liveness_probe(control_client &c);
    void on_signer_counts(const bytes &payload);
    void answer_metrics(control_client &c, const std::optional<metrics::signer_counts> &signer);
    metrics::channel_counters channel_metrics_;
    void count_channel_metrics(const channel &ch);
    void check_control_deadlines();
    uint64_t next_control_deadline() const;
    void count_outcome(const std::string &outcome, const std::string &reason);
    // certificates.cpp: expiry warnings
    void watch_certificates();
    void check_certificate_expiry();
    static constexpr int64_t CERTIFICATE_CHECK_INTERVAL_S = 24 * 3600; // at least once a day
    uint64_t certificates_next_check_ms_ = 0;                           // when check_deadlines looks again
};

} // namespace clsgw
