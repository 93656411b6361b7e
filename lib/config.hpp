// The INI configuration: parsed strictly, every error with file:line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "log.hpp"
#include "net.hpp"

namespace clsgw {

enum class channel_direction { outbound, inbound };
enum class ingress_kind { static_target, socks5 };
enum class proxy_kind { socks5, sni };

const char *direction_name(channel_direction d);
const char *ingress_name(ingress_kind k);
const char *proxy_name(proxy_kind k);

// One entry of a socks5 channel's allow list: host (exact, "*" or "*.suffix") and port (0 = any).
struct allow_rule {
    std::string host;
    uint16_t port = 0;
};
bool allow_rule_matches(const allow_rule &rule, const host_port &target);
std::optional<allow_rule> parse_allow_rule(std::string_view text);

struct channel_config {
    std::string name;
    int line = 0; // where the [channel:NAME] section starts
    channel_direction direction = channel_direction::outbound;
    std::string listen_text;
    std::optional<sock_address> listen; // unset: the listener comes from systemd only
    int listen_line = 0;
    ingress_kind ingress = ingress_kind::static_target;
    std::optional<host_port> target;
    std::vector<allow_rule> allow;
    proxy_kind proxy = proxy_kind::socks5;
    // inbound (HKS4/HKS5): the local service, and the name the SMGW's ClientHello must carry
    std::optional<sock_address> forward;
    std::string forward_text;
    std::string server_name; // empty: the default channel of its listener
    // Overrides [smgw] trust for this channel.
    struct {
        std::string path;
        int line = 0;
    } trust;

    // The key that groups channels sharing one listener.
    std::string listener_key() const { return listen_text.empty() ? "socket:" + name : listen_text; }
};

// A path value and the config line that named it, for error messages about the file itself.
struct config_path {
    std::string path;
    int line = 0;
};

struct config {
    std::string file;
    // [clsgw]
    unsigned max_channels = 64;
    int max_channels_line = 0;
    unsigned spare_workers = 2; // started and sandboxed ahead of time, one channel each
    uint64_t handshake_timeout_ms = 30 * 1000;
    uint64_t connect_timeout_ms = 10 * 1000;
    uint64_t idle_timeout_ms = 15 * 60 * 1000;
    uint64_t close_timeout_ms = 30 * 1000;
    uint64_t signer_timeout_ms = 5 * 1000;
    uint64_t shutdown_timeout_ms = 10 * 1000;
    uint64_t log_suppress_interval_ms = 60 * 1000;
    uint64_t smgw_backoff_max_ms = 60 * 1000; // 0: never back off
    // TCP keepalive on HAN sockets: a silently dead SMGW is noticed within
    // keepalive_idle + keepalive_interval * keepalive_probes (default 60s + 6 x 10s = 2 min).
    uint64_t keepalive_idle_ms = 60 * 1000;
    uint64_t keepalive_interval_ms = 10 * 1000;
    unsigned keepalive_probes = 6;
    uint64_t max_session_lifetime_ms = 48ULL * 3600 * 1000;
    log_level level = log_level::info;
    log_target target = log_target::stderr_stream;
    std::string log_file;
    std::string control_socket = "/run/clsgw/control.sock";
    std::string control_group; // owns the control socket; empty: clsgwd's own group
    int control_group_line = 0;
    uint64_t control_timeout_ms = 2 * 1000; // for a clsgwctl command to arrive, and for its answer to leave
    bool resumption = true;
    // TLS sessions clsgwd keeps for resumption, outbound and inbound together; each takes at most
    // 8 KiB (about 2 KiB with a brainpool certificate), in memory left out of core dumps.
    unsigned session_cache_entries = 512;
    std::string worker_user = "clsgw-worker";
    std::string worker_path; // empty: next to clsgwd, then the installed libexec path
    std::string signer_path;
    // [identity]
    config_path certificate;
    config_path key;
    config_path audit_log{"/var/log/clsgw/audit.log", 0};
    std::string signer_socket; // set: clsgw-signer runs as its own service; clsgwd connects here
    // signer_socket as configured when load_config found no socket there and key is set: clsgwd
    // starts the signer itself (run without systemd's clsgw-signer.socket)
    std::string signer_socket_absent;
    // [smgw]
    std::optional<sock_address> smgw_address;
    int smgw_address_line = 0;
    config_path smgw_trust;
    std::vector<channel_config> channels;

    const channel_config *find_channel(const std::string &name) const;
    // The trust file that applies to a channel: its own, else [smgw] trust.
    const std::string &trust_path(const channel_config &ch) const
    {
        return ch.trust.path.empty() ? smgw_trust.path : ch.trust.path;
    }
};

struct config_error {
    std::string file;
    int line = 0;
    std::string message;
    std::string to_string() const;
};

struct config_result {
    std::optional<config> value;
    std::vector<config_error> errors;
};

// Parses config text; `file` names it in errors and anchors relative paths.
config_result parse_config(const std::string &text, const std::string &file);
config_result load_config(const std::string &file);

// The largest config file accepted, and the longest line.
constexpr size_t config_max_size = 1 << 20;

} // namespace clsgw
