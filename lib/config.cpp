#include "config.hpp"

#include <sys/stat.h>

#include <ini.h>
#include <strings.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "util.hpp"

namespace clsgw {

const char *direction_name(channel_direction d) { return d == channel_direction::outbound ? "outbound" : "inbound"; }
const char *ingress_name(ingress_kind k) { return k == ingress_kind::static_target ? "static" : "socks5"; }
const char *proxy_name(proxy_kind k) { return k == proxy_kind::socks5 ? "socks5" : "sni"; }

std::string config_error::to_string() const
{
    if (line <= 0)
        return file + ": " + message;
    return file + ":" + std::to_string(line) + ": " + message;
}

const channel_config *config::find_channel(const std::string &name) const
{
    for (const auto &c : channels)
        if (c.name == name)
            return &c;
    return nullptr;
}

std::optional<allow_rule> parse_allow_rule(std::string_view text)
{
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon)
        return std::nullopt;
    allow_rule rule;
    std::string_view host = text.substr(0, colon);
    std::string_view port = text.substr(colon + 1);
    if (port != "*") {
        auto p = parse_uint(port, 65535);
        if (!p || *p == 0)
            return std::nullopt;
        rule.port = static_cast<uint16_t>(*p);
    }
    std::string_view name = host;
    if (host.substr(0, 2) == "*.")
        name = host.substr(2);
    if (host != "*" && !valid_dns_name(name) && !parse_host_port(std::string(host) + ":1"))
        return std::nullopt;
    rule.host = std::string(host);
    for (auto &c : rule.host)
        c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    return rule;
}

bool allow_rule_matches(const allow_rule &rule, const host_port &target)
{
    if (rule.port != 0 && rule.port != target.port)
        return false;
    if (rule.host == "*")
        return true;
    std::string host = target.host;
    for (auto &c : host)
        c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    if (rule.host.compare(0, 2, "*.") == 0) {
        std::string suffix = rule.host.substr(1); // ".example.org"
        return host.size() > suffix.size() && host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0;
    }
    return host == rule.host;
}

namespace {

std::string lowercase(std::string s)
{
    for (auto &c : s)
        c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    return s;
}

struct ini_entry {
    std::string section, key, value;
    int line;
};

// Feeds inih one line at a time, counting lines and checking each line's form first,
// so that errors carry the right line and nothing is silently cut or joined.
struct line_reader {
    const std::string *text;
    size_t pos = 0;
    int line = 0;
    std::set<int> bad_lines;
    std::vector<config_error> errors;
    std::string file;
    std::vector<ini_entry> entries;

    void error(int at, std::string message)
    {
        bad_lines.insert(at);
        errors.push_back({file, at, std::move(message)});
    }

    void check_form(std::string_view raw)
    {
        std::string t = trim(raw);
        if (t.empty() || t[0] == ';' || t[0] == '#')
            return;
        if (raw[0] == ' ' || raw[0] == '\t') {
            error(line, "indented line: continuation lines are not supported");
            return;
        }
        if (t[0] == '[') {
            if (t.back() != ']')
                error(line, "section header is missing ']'");
            return;
        }
        size_t eq = t.find('=');
        if (eq == std::string::npos)
            error(line, "expected 'key = value' or '[section]'");
        else if (trim(t.substr(0, eq)).empty())
            error(line, "missing key before '='");
    }

    char *next(char *out, int size)
    {
        if (pos >= text->size())
            return nullptr;
        size_t end = text->find('\n', pos);
        size_t stop = end == std::string::npos ? text->size() : end;
        std::string_view raw(text->data() + pos, stop - pos);
        if (!raw.empty() && raw.back() == '\r')
            raw.remove_suffix(1);
        pos = end == std::string::npos ? text->size() : end + 1;
        line++;
        size_t room = static_cast<size_t>(size) - 2; // newline and terminator
        if (raw.size() > room) {
            error(line, "line longer than " + std::to_string(room) + " characters");
            raw = raw.substr(0, room);
        } else if (raw.find('\0') != std::string_view::npos) {
            error(line, "NUL byte in line");
        } else {
            check_form(raw);
        }
        memcpy(out, raw.data(), raw.size());
        out[raw.size()] = '\n';
        out[raw.size() + 1] = '\0';
        return out;
    }
};

char *reader_cb(char *str, int num, void *stream) { return static_cast<line_reader *>(stream)->next(str, num); }

int handler_cb(void *user, const char *section, const char *name, const char *value)
{
    auto *r = static_cast<line_reader *>(user);
    if (r->bad_lines.count(r->line) == 0)
        r->entries.push_back({section, name, value, r->line});
    return 1;
}

std::string dir_of(const std::string &file)
{
    size_t slash = file.rfind('/');
    return slash == std::string::npos ? "." : file.substr(0, slash == 0 ? 1 : slash);
}

// Interprets the entries of every section; collects all errors instead of stopping at the first.
class interpreter {
public:
    interpreter(std::string file, std::vector<config_error> &errors) : file_(std::move(file)), errors_(errors)
    {
        cfg_.file = file_;
    }

    void run(const std::vector<ini_entry> &entries, const std::map<std::string, int> &section_lines);
    config take() { return std::move(cfg_); }

private:
    std::string file_;
    std::vector<config_error> &errors_;
    config cfg_;

    void error(int line, std::string message) { errors_.push_back({file_, line, std::move(message)}); }
    std::string resolve(const std::string &path) const
    {
        if (path.empty() || path[0] == '/')
            return path;
        return dir_of(file_) + "/" + path;
    }
    void duration(const ini_entry &e, uint64_t &out, uint64_t max_ms, bool allow_zero);
    void global(const ini_entry &e);
    void identity(const ini_entry &e);
    void smgw(const ini_entry &e);
    void channel(channel_config &ch, const ini_entry &e);
    void check_channel(const channel_config &ch, const std::set<std::string> &keys);
    void check_listeners();
    void check_whole();
};

void interpreter::duration(const ini_entry &e, uint64_t &out, uint64_t max_ms, bool allow_zero)
{
    auto ms = parse_duration_ms(e.value);
    if (!ms)
        return error(e.line, e.key + ": '" + e.value + "' is not a duration (e.g. 15s, 10m, 48h)");
    if (*ms > max_ms)
        return error(e.line, e.key + ": " + e.value + " is above the maximum of " + format_duration_ms(max_ms));
    if (*ms == 0 && !allow_zero)
        return error(e.line, e.key + ": must be greater than 0");
    out = *ms;
}

void interpreter::global(const ini_entry &e)
{
    const uint64_t day = 86400ULL * 1000;
    if (e.key == "max_channels") {
        auto n = parse_uint(e.value, 65536);
        if (!n || *n == 0)
            return error(e.line, "max_channels: expected a number from 1 to 65536");
        cfg_.max_channels = static_cast<unsigned>(*n);
        cfg_.max_channels_line = e.line;
    } else if (e.key == "spare_workers") {
        auto n = parse_uint(e.value, 64);
        if (!n)
            return error(e.line, "spare_workers: expected a number from 0 to 64");
        cfg_.spare_workers = static_cast<unsigned>(*n);
    } else if (e.key == "handshake_timeout") {
        duration(e, cfg_.handshake_timeout_ms, day, false);
    } else if (e.key == "connect_timeout") {
        duration(e, cfg_.connect_timeout_ms, day, false);
    } else if (e.key == "idle_timeout") {
        duration(e, cfg_.idle_timeout_ms, 2 * day, false);
    } else if (e.key == "close_timeout") {
        duration(e, cfg_.close_timeout_ms, day, false);
    } else if (e.key == "signer_timeout") {
        duration(e, cfg_.signer_timeout_ms, 60 * 1000, false);
    } else if (e.key == "keepalive_idle") {
        duration(e, cfg_.keepalive_idle_ms, 2 * 3600 * 1000, false);
    } else if (e.key == "keepalive_interval") {
        duration(e, cfg_.keepalive_interval_ms, 3600 * 1000, false);
    } else if (e.key == "keepalive_probes") {
        auto n = parse_uint(e.value, 100);
        if (!n || *n == 0)
            return error(e.line, "keepalive_probes: expected a number from 1 to 100");
        cfg_.keepalive_probes = static_cast<unsigned>(*n);
    } else if (e.key == "smgw_backoff_max") {
        duration(e, cfg_.smgw_backoff_max_ms, 3600 * 1000, true);
    } else if (e.key == "log_suppress_interval") {
        duration(e, cfg_.log_suppress_interval_ms, day, true);
    } else if (e.key == "shutdown_timeout") {
        duration(e, cfg_.shutdown_timeout_ms, 3600 * 1000, true);
    } else if (e.key == "max_session_lifetime") {
        duration(e, cfg_.max_session_lifetime_ms, 2 * day, false);
    } else if (e.key == "log_level") {
        auto l = parse_log_level(e.value);
        if (!l)
            return error(e.line, "log_level: expected error, warn, info, debug or trace");
        cfg_.level = *l;
    } else if (e.key == "log_target") {
        if (e.value == "stderr")
            cfg_.target = log_target::stderr_stream;
        else if (e.value == "syslog")
            cfg_.target = log_target::syslog;
        else if (e.value == "file")
            cfg_.target = log_target::file;
        else
            error(e.line, "log_target: expected stderr, syslog or file");
    } else if (e.key == "log_file") {
        if (e.value.empty())
            return error(e.line, "log_file: empty path");
        cfg_.log_file = resolve(e.value);
    } else if (e.key == "control_socket") {
        if (e.value.empty() || e.value.size() > 100)
            return error(e.line, "control_socket: a path of 1 to 100 characters");
        cfg_.control_socket = resolve(e.value);
    } else if (e.key == "control_group") {
        if (e.value.empty())
            return error(e.line, "control_group: empty");
        cfg_.control_group = e.value;
        cfg_.control_group_line = e.line;
    } else if (e.key == "control_timeout") {
        duration(e, cfg_.control_timeout_ms, 60 * 1000, false);
    } else if (e.key == "resumption") {
        if (e.value != "yes" && e.value != "no")
            return error(e.line, "resumption: expected yes or no");
        cfg_.resumption = e.value == "yes";
    } else if (e.key == "session_cache_entries") {
        auto n = parse_uint(e.value, 65536);
        if (!n)
            return error(e.line, "session_cache_entries: expected a number from 0 to 65536");
        cfg_.session_cache_entries = static_cast<unsigned>(*n);
    } else if (e.key == "worker_user") {
        if (e.value.empty())
            return error(e.line, "worker_user: empty");
        cfg_.worker_user = e.value;
    } else if (e.key == "worker_path") {
        cfg_.worker_path = resolve(e.value);
    } else if (e.key == "signer_path") {
        cfg_.signer_path = resolve(e.value);
    } else {
        error(e.line, "unknown key '" + e.key + "' in [clsgw]");
    }
}

void interpreter::identity(const ini_entry &e)
{
    if (e.key == "signer_socket") {
        if (e.value.empty() || e.value.size() > 100)
            return error(e.line, "signer_socket: a path of 1 to 100 characters");
        cfg_.signer_socket = resolve(e.value);
        return;
    }
    config_path *target = nullptr;
    if (e.key == "certificate")
        target = &cfg_.certificate;
    else if (e.key == "key")
        target = &cfg_.key;
    else if (e.key == "audit_log")
        target = &cfg_.audit_log;
    else
        return error(e.line, "unknown key '" + e.key + "' in [identity]");
    if (e.value.empty())
        return error(e.line, e.key + ": empty path");
    *target = {resolve(e.value), e.line};
}

void interpreter::smgw(const ini_entry &e)
{
    if (e.key == "address") {
        cfg_.smgw_address = parse_sock_address(e.value);
        cfg_.smgw_address_line = e.line;
        if (!cfg_.smgw_address)
            error(e.line, "address: '" + e.value + "' is not a numeric address:port (IPv6 as [addr]:port)");
    } else if (e.key == "trust") {
        if (e.value.empty())
            return error(e.line, "trust: empty path");
        cfg_.smgw_trust = {resolve(e.value), e.line};
    } else {
        error(e.line, "unknown key '" + e.key + "' in [smgw]");
    }
}

void interpreter::channel(channel_config &ch, const ini_entry &e)
{
    const std::string &v = e.value;
    if (e.key == "direction") {
        if (v == "outbound")
            ch.direction = channel_direction::outbound;
        else if (v == "inbound")
            ch.direction = channel_direction::inbound;
        else
            error(e.line, "direction: expected outbound or inbound");
    } else if (e.key == "listen") {
        ch.listen_text = v;
        ch.listen_line = e.line;
        ch.listen = parse_sock_address(v);
        if (!ch.listen)
            error(e.line, "listen: '" + v + "' is not a numeric address:port (IPv6 as [addr]:port)");
    } else if (e.key == "ingress") {
        if (v == "static")
            ch.ingress = ingress_kind::static_target;
        else if (v == "socks5")
            ch.ingress = ingress_kind::socks5;
        else
            error(e.line, "ingress: expected static or socks5");
    } else if (e.key == "target") {
        ch.target = parse_host_port(v);
        if (!ch.target)
            error(e.line, "target: '" + v + "' is not host:port");
    } else if (e.key == "allow") {
        for (const auto &item : split_list(v)) {
            auto rule = parse_allow_rule(item);
            if (!rule)
                error(e.line, "allow: '" + item + "' is not host:port (host may be * or *.domain, port may be *)");
            else
                ch.allow.push_back(*rule);
        }
    } else if (e.key == "proxy") {
        if (v == "socks5")
            ch.proxy = proxy_kind::socks5;
        else if (v == "sni")
            ch.proxy = proxy_kind::sni;
        else
            error(e.line, "proxy: expected socks5 or sni");
    } else if (e.key == "forward") {
        ch.forward_text = v;
        ch.forward = parse_sock_address(v);
        if (!ch.forward)
            error(e.line, "forward: '" + v + "' is not a numeric address:port (IPv6 as [addr]:port)");
    } else if (e.key == "server_name") {
        ch.server_name = v;
        if (!valid_dns_name(v))
            error(e.line, "server_name: '" + v + "' is not a DNS name");
    } else if (e.key == "trust") {
        if (v.empty())
            return error(e.line, "trust: empty path");
        ch.trust.path = resolve(v);
        ch.trust.line = e.line;
    } else {
        error(e.line, "unknown key '" + e.key + "' in [channel:" + ch.name + "]");
    }
}

void interpreter::check_channel(const channel_config &ch, const std::set<std::string> &keys)
{
    const std::string where = "channel '" + ch.name + "': ";
    if (ch.direction == channel_direction::inbound) {
        for (const char *k : {"ingress", "target", "allow", "proxy"})
            if (keys.count(k))
                error(ch.line, where + k + " applies to outbound channels only");
        if (!ch.forward)
            error(ch.line, where + "an inbound channel needs forward = address:port (the local service)");
        return;
    }
    for (const char *k : {"forward", "server_name"})
        if (keys.count(k))
            error(ch.line, where + k + " applies to inbound channels only");
    if (ch.ingress == ingress_kind::static_target) {
        if (!ch.target)
            error(ch.line, where + "ingress = static needs target = host:port");
        if (!ch.allow.empty())
            error(ch.line, where + "allow applies to ingress = socks5 only");
    } else {
        if (ch.target)
            error(ch.line, where + "target applies to ingress = static only (socks5 apps name their target)");
        if (ch.allow.empty())
            error(ch.line, where + "ingress = socks5 needs an allow list");
    }
    if (ch.proxy == proxy_kind::sni && ch.target && !valid_dns_name(ch.target->host))
        error(ch.line, where + "proxy = sni needs a DNS name as target host (server_name carries no address)");
}

void interpreter::check_whole()
{
    if (cfg_.certificate.path.empty())
        error(0, "[identity] certificate is required");
    if (cfg_.key.path.empty() && cfg_.signer_socket.empty())
        error(0, "[identity] key is required (or signer_socket, when clsgw-signer runs as its own service)");
    if (cfg_.channels.empty())
        error(0, "no [channel:NAME] section: nothing to do");
    if (cfg_.target == log_target::file && cfg_.log_file.empty())
        error(0, "[clsgw] log_target = file needs log_file = PATH");
    bool outbound = false;
    for (const auto &ch : cfg_.channels) {
        outbound |= ch.direction == channel_direction::outbound;
        if (cfg_.smgw_trust.path.empty() && ch.trust.path.empty())
            error(ch.line, "channel '" + ch.name + "': no trust: set [smgw] trust or the channel's trust");
    }
    if (outbound && !cfg_.smgw_address)
        error(0, "[smgw] address is required for outbound channels");
    check_listeners();
}

// Outbound channels own their listener. Inbound channels may share one, told apart by the
// server_name in the SMGW's ClientHello; at most one of them has none (the default).
void interpreter::check_listeners()
{
    std::map<std::string, std::vector<const channel_config *>> groups;
    for (const auto &ch : cfg_.channels)
        if (ch.listen)
            groups[ch.listen->to_string()].push_back(&ch);
    for (const auto &[address, members] : groups) {
        const channel_config *first = members[0];
        const channel_config *default_channel = first->server_name.empty() ? first : nullptr;
        std::set<std::string> names;
        if (!first->server_name.empty())
            names.insert(lowercase(first->server_name));
        for (size_t i = 1; i < members.size(); i++) {
            const channel_config *ch = members[i];
            const std::string where = "channel '" + ch->name + "': listen " + ch->listen_text;
            if (ch->direction == channel_direction::outbound || first->direction == channel_direction::outbound) {
                error(ch->line, where + " is already used by channel '" + first->name +
                                    "' (only inbound channels share a listener)");
            } else if (ch->server_name.empty()) {
                if (default_channel)
                    error(ch->line, where + ": channels '" + default_channel->name + "' and '" + ch->name +
                                        "' share it without server_name; only one may be the default");
                default_channel = ch;
            } else if (!names.insert(lowercase(ch->server_name)).second) {
                error(ch->line, where + ": server_name " + ch->server_name + " is used twice on it");
            }
        }
    }
}

bool valid_channel_name(const std::string &name)
{
    if (name.empty() || name.size() > 64)
        return false;
    for (char c : name)
        if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
            return false;
    return true;
}

void interpreter::run(const std::vector<ini_entry> &entries, const std::map<std::string, int> &section_lines)
{
    std::set<std::pair<std::string, std::string>> seen;
    std::map<std::string, size_t> channel_index;
    std::map<std::string, std::set<std::string>> channel_keys;
    std::vector<std::pair<int, std::string>> in_file_order;
    for (const auto &[section, line] : section_lines)
        in_file_order.emplace_back(line, section);
    std::sort(in_file_order.begin(), in_file_order.end());
    for (const auto &[line, section] : in_file_order) {
        if (section.rfind("channel:", 0) != 0)
            continue;
        std::string name = section.substr(8);
        if (!valid_channel_name(name)) {
            error(line, "channel name '" + name + "': use 1-64 letters, digits, '-', '_' or '.'");
            continue;
        }
        channel_config ch;
        ch.name = name;
        ch.line = line;
        channel_index[section] = cfg_.channels.size();
        cfg_.channels.push_back(ch);
    }
    for (const auto &e : entries) {
        if (!seen.insert({e.section, e.key}).second) {
            error(e.line, "duplicate key '" + e.key + "' in [" + e.section + "]");
            continue;
        }
        if (e.section == "clsgw")
            global(e);
        else if (e.section == "identity")
            identity(e);
        else if (e.section == "smgw")
            smgw(e);
        else if (channel_index.count(e.section)) {
            channel(cfg_.channels[channel_index[e.section]], e);
            channel_keys[e.section.substr(8)].insert(e.key);
        }
        else if (e.section.empty())
            error(e.line, "key '" + e.key + "' outside of any section");
    }
    for (const auto &ch : cfg_.channels)
        check_channel(ch, channel_keys[ch.name]);
    check_whole();
}

// Finds section headers, unknown and repeated sections, with their lines.
std::map<std::string, int> scan_sections(const std::string &text, const std::string &file,
                                         std::vector<config_error> &errors)
{
    static const std::set<std::string> known = {"clsgw", "identity", "smgw"};
    std::map<std::string, int> lines;
    int line = 0;
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t end = text.find('\n', pos);
        if (end == std::string::npos)
            end = text.size();
        line++;
        std::string t = trim(std::string_view(text).substr(pos, end - pos));
        if (!t.empty() && t.back() == '\r')
            t.pop_back();
        if (t.size() >= 2 && t.front() == '[' && t.back() == ']') {
            std::string name = trim(std::string_view(t).substr(1, t.size() - 2));
            if (!known.count(name) && name.rfind("channel:", 0) != 0)
                errors.push_back({file, line, "unknown section [" + name + "]"});
            else if (!lines.emplace(name, line).second)
                errors.push_back({file, line, "section [" + name + "] appears twice"});
        }
        pos = end + 1;
    }
    return lines;
}

} // namespace

config_result parse_config(const std::string &text, const std::string &file)
{
    config_result result;
    if (text.size() > config_max_size) {
        result.errors.push_back({file, 0, "file larger than 1 MiB"});
        return result;
    }
    line_reader reader;
    reader.text = &text;
    reader.file = file;
    ini_parse_stream(reader_cb, &reader, handler_cb, &reader);
    result.errors = reader.errors;
    auto sections = scan_sections(text, file, result.errors);
    interpreter in(file, result.errors);
    in.run(reader.entries, sections);
    if (result.errors.empty())
        result.value = in.take();
    std::stable_sort(result.errors.begin(), result.errors.end(),
                     [](const config_error &a, const config_error &b) { return a.line < b.line; });
    return result;
}

config_result load_config(const std::string &file)
{
    auto text = read_file(file, config_max_size);
    if (!text) {
        config_result result;
        result.errors.push_back({file, 0, "cannot read: " + errno_text(errno)});
        return result;
    }
    config_result result = parse_config(*text, file);
    // With key set too, signer_socket is used when its socket exists (systemd's clsgw-signer.socket
    // made it); without one, as when clsgwd runs by hand, clsgwd starts the signer itself.
    struct stat st;
    if (result.value && !result.value->signer_socket.empty() && !result.value->key.path.empty() &&
        (stat(result.value->signer_socket.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode))) {
        result.value->signer_socket_absent = result.value->signer_socket;
        result.value->signer_socket.clear();
    }
    return result;
}

} // namespace clsgw
