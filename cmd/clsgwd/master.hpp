// The master: accepts, spawns one sandboxed worker per channel, connects upstream on the
// workers' behalf, supervises the signer. It never parses bytes from the network.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../../lib/config.hpp"
#include "../../lib/fd.hpp"
#include "../../lib/ipc.hpp"
#include "../../lib/ipc_rules.hpp"
#include "../../lib/job.hpp"
#include "../../lib/net.hpp"
#include "../../lib/session_cache.hpp"

namespace clsgw {

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
    std::optional<worker_result> result;
    std::string kill_reason; // set when the master killed it
    unsigned log_lines = 0;
    // Outbound: the target the channel serves, as checked by the master (a static channel's
    // own, or a SOCKS5 target its allow list admits); the scope of its sessions.
    std::optional<host_port> target;
    std::string resumed_channel; // inbound: the channel whose session the worker looked up
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
    bool ready = false;
    bool ever_ready = false;
    std::string key_id;
    uint64_t restart_at_ms = 0;
    uint64_t backoff_ms = 1000;
    uint64_t started_ms = 0;
    unsigned restarts = 0;
    bool external = false; // clsgw-signer.service: connected to, not started
    bool down() const { return external ? !control : pid < 0; }
};

class master {
public:
    // Re-reads the configuration file; keeps everything as it was on any error. "" on success.
    std::string reload();
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
    unique_fd control_;                                      // clsgwctl's socket
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
    uint64_t smgw_backoff_ms_ = 1000;
    // Counted only from what clsgwd sees itself (its own connect failing) or from failures of
    // several workers in a row: one worker's word cannot put every channel into fail-fast.
    unsigned smgw_failed_channels_ = 0;
    void note_smgw_outcome(const channel &ch);
    void smgw_back_off(const std::string &reason, const char *seen_by);
    // Workers dying before doing anything (a broken install, a filter that cannot load): after
    // three in a row clsgwd pauses accepting, doubling the pause, instead of spawning in a loop.
    unsigned useless_deaths_ = 0;
    uint64_t spawn_pause_ms_ = 1000;
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
    uint64_t spare_backoff_ms_ = 1000;
    void refill_spares();
    uint64_t spare_refill_due() const;
    bool hand_to_spare(channel &ch, int connection, int signer_session);
    void retire_spares();
    void on_spare_message(spare_worker &s);
    bool spare_exited(pid_t pid, int status);
    size_t spares_ready() const;

    void setup_signals();
    void start_signer();
    signer_process spawn_signer(const config &cfg);
    bool wait_signer_ready(signer_process &s, std::string &why);
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
    void start_upstream(channel &ch, const bytes &choice);
    void on_session_message(channel &ch, msg_type type, const bytes &payload);
    void answer_session(channel &ch, const std::string &key);
    void reset_session_cache();
    std::string client_scope(const channel &ch) const;
    std::string server_scope(const channel &ch, const std::string &channel_name, const bytes &id) const;
    bool check_target(channel &ch, const bytes &text);
    // Sends to a worker without waiting; a worker that leaves its socket full is killed.
    bool send_to_worker(channel &ch, msg_type type, const bytes &payload, int fd = -1);
    void finish_upstream(channel &ch);
    void fail_upstream(channel &ch, const std::string &reason);
    void kill_worker(channel &ch, const std::string &reason);
    void han_keepalive(int fd) const;
    void check_deadlines();
    void begin_stop(const char *why);
    bool accepting() const;
    int poll_timeout() const;
    void log_summary(const channel &ch, int status);
    worker_job make_job(const channel &ch) const;
    // control.cpp: clsgwctl's commands
    void open_control_socket();
    void on_control_connection();
    std::string run_command(const std::string &line);
    std::string status_json() const;
    std::string check();
    bool test_signature(std::string &why);
    void watch_certificates();
    void count_outcome(const std::string &outcome, const std::string &reason);
};

} // namespace clsgw
