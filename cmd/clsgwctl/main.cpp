// clsgwctl: the operator's tool. The identity commands (key generation, self-signed or CA-issued
// certificates, the SHA-256 fingerprint a gateway administrator pins) and the commands it sends
// to clsgwd's control socket (status, check, reload, log-level, reopen-logs).
#include <fcntl.h>
#include <getopt.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <vector>

#include "../../lib/audit.hpp"
#include "../../lib/log.hpp"
#include "../../lib/pki.hpp"
#include "../../lib/tls/tls.hpp"
#include "../../lib/util.hpp"

using namespace clsgw;

namespace {

int usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: clsgwctl [-s SOCKET] status [--json]\n"
            "       clsgwctl [-s SOCKET] log-level LEVEL [CHANNEL]\n"
            "       clsgwctl [-s SOCKET] reopen-logs\n"
            "       clsgwctl [-s SOCKET] reload\n"
            "       clsgwctl [-s SOCKET] check [--sign]\n"
            "       clsgwctl [-s SOCKET] metrics\n"
            "       clsgwctl key generate [--curve CURVE] --out FILE\n"
            "       clsgwctl cert self-sign --key FILE --subject DN [--days N] [--ca] [--out FILE]\n"
            "       clsgwctl cert issue --ca-cert FILE --ca-key FILE --key FILE --subject DN [--days N] [--ca]\n"
            "                           [--valid-from-days N] [--out FILE]\n"
            "       clsgwctl cert request --key FILE --subject DN [--out FILE]\n"
            "       clsgwctl fingerprint FILE\n"
            "       clsgwctl audit verify FILE...\n"
            "curves: brainpoolP256r1 (default), brainpoolP384r1, brainpoolP512r1, secp256r1, secp384r1\n");
    return code;
}

int fail(const std::string &message)
{
    fprintf(stderr, "clsgwctl: %s\n", message.c_str());
    return 1;
}

// A usage error: what was wrong, where to look, exit 2 (clsgwctl(8)).
int usage_error(const std::string &message)
{
    fprintf(stderr, "clsgwctl: %s (clsgwctl --help)\n", message.c_str());
    return 2;
}

// --name value pairs and --flags after the subcommand words, by getopt_long: an option the
// subcommand does not take, or one without its value, is an error naming it.
struct arguments {
    std::map<std::string, std::string> values;
    std::map<std::string, bool> flags;
    std::string error;
    bool help = false;
};

arguments parse_arguments(int argc, char **argv, int start, const std::vector<std::string> &value_names,
                          const std::vector<std::string> &flag_names = {})
{
    arguments a;
    std::vector<option> table;
    for (const auto &n : value_names)
        table.push_back({n.c_str(), required_argument, nullptr, 'v'});
    for (const auto &n : flag_names)
        table.push_back({n.c_str(), no_argument, nullptr, 'f'});
    table.push_back({"help", no_argument, nullptr, 'h'});
    table.push_back({nullptr, 0, nullptr, 0});
    // argv[start - 1] (the subcommand's last word) stands in for the program name
    std::vector<char *> args(argv + start - 1, argv + argc);
    args.push_back(nullptr);
    optind = 0; // also resets getopt's state between calls
    opterr = 0;
    int index = -1, opt;
    while ((opt = getopt_long(static_cast<int>(args.size() - 1), args.data(), "+:", table.data(), &index)) != -1) {
        std::string seen = args[optind - 1] ? args[optind - 1] : "";
        if (opt == 'v' && seen.rfind("--", 0) != 0) // "--key FILE": the option is the word before
            seen = args[optind - 2];
        // getopt_long takes "--curv" for --curve; clsgwctl wants options spelt out
        if ((opt == 'v' || opt == 'f') && seen.substr(2, seen.find('=') - 2) != table[index].name) {
            a.error = "unknown option " + seen.substr(0, seen.find('=')) + " (did you mean --" + table[index].name + "?)";
            return a;
        }
        if (opt == 'v')
            a.values[table[index].name] = optarg;
        else if (opt == 'f')
            a.flags[table[index].name] = true;
        else if (opt == 'h')
            a.help = true;
        else if (opt == ':')
            a.error = "option " + seen.substr(0, seen.find('=')) + " needs a value";
        else
            a.error = "unknown option " + seen.substr(0, seen.find('='));
        if (!a.error.empty())
            return a;
        index = -1;
    }
    if (optind < static_cast<int>(args.size() - 1))
        a.error = std::string("unexpected argument '") + args[optind] + "'";
    return a;
}

// Writes a new file; never replaces an existing one (a key lost is an identity lost).
int write_new_file(const std::string &path, const std::string &text, mode_t mode)
{
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return fail("cannot create " + path + ": " + errno_text(errno) + (errno == EEXIST ? " (not replaced)" : ""));
    bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ok = fsync(fd) == 0 && ok;
    close(fd);
    if (!ok)
        return fail("cannot write " + path + ": " + errno_text(errno));
    return 0;
}

int output(const arguments &a, const std::string &text, mode_t mode)
{
    auto it = a.values.find("out");
    if (it == a.values.end()) {
        fputs(text.c_str(), stdout);
        return 0;
    }
    return write_new_file(it->second, text, mode);
}

std::optional<std::string> read_input(const arguments &a, const char *name, std::string &error)
{
    auto it = a.values.find(name);
    if (it == a.values.end()) {
        error = std::string("--") + name + " is required";
        return std::nullopt;
    }
    auto text = read_file(it->second, 64 * 1024);
    if (!text)
        error = "cannot read " + it->second + ": " + errno_text(errno);
    return text;
}

int key_generate(const arguments &a)
{
    if (!a.values.count("out"))
        return fail("key generate needs --out FILE (the key is never printed)");
    std::string curve = a.values.count("curve") ? a.values.at("curve") : "brainpoolP256r1";
    pki::result key = pki::generate_key(curve);
    if (!key.ok)
        return fail(key.error);
    return output(a, key.pem, 0600);
}

int cert_make(const arguments &a, bool self_signed)
{
    pki::cert_request req;
    std::string err;
    auto key = read_input(a, "key", err);
    if (!key)
        return fail(err);
    req.key_pem = *key;
    if (!a.values.count("subject"))
        return fail("--subject is required (for example CN=device-0001,O=Example)");
    req.subject = a.values.at("subject");
    req.is_ca = a.flags.count("ca") != 0;
    if (a.values.count("days")) {
        auto d = parse_uint(a.values.at("days"), 36500);
        if (!d || *d == 0)
            return fail("--days takes a number from 1 to 36500");
        req.days = static_cast<int>(*d);
    }
    if (a.values.count("valid-from-days")) {
        std::string v = a.values.at("valid-from-days");
        bool negative = !v.empty() && v[0] == '-';
        auto d = parse_uint(negative ? v.substr(1) : v, 36500);
        if (!d)
            return fail("--valid-from-days takes a whole number of days (negative: in the past)");
        req.valid_from_days = negative ? -static_cast<int>(*d) : static_cast<int>(*d);
    }
    if (!self_signed) {
        auto ca_cert = read_input(a, "ca-cert", err);
        auto ca_key = ca_cert ? read_input(a, "ca-key", err) : std::nullopt;
        if (!ca_cert || !ca_key)
            return fail(err);
        req.issuer_cert_pem = *ca_cert;
        req.issuer_key_pem = *ca_key;
    }
    pki::result cert = pki::make_certificate(req);
    if (!cert.ok)
        return fail(cert.error);
    return output(a, cert.pem, 0644);
}

int fingerprint(const char *path)
{
    auto text = read_file(path, 64 * 1024);
    if (!text)
        return fail(std::string("cannot read ") + path + ": " + errno_text(errno));
    std::string err;
    auto fp = pki::fingerprint_pem(*text, err);
    if (!fp)
        return fail(std::string(path) + ": " + err);
    printf("SHA256 %s\n", fp->c_str());
    return 0;
}

// audit verify FILE...: one log alone, or rotated logs oldest first, each continuing the last.
int audit_verify(int count, char **paths)
{
    std::vector<audit::named_log> logs;
    for (int i = 0; i < count; i++) {
        auto text = read_file(paths[i], 1ULL << 30);
        if (!text)
            return fail(std::string("cannot read ") + paths[i] + ": " + errno_text(errno));
        logs.push_back({paths[i], std::move(*text)});
    }
    std::string names = logs.size() == 1 ? logs[0].name : std::to_string(logs.size()) + " logs";
    audit::verdict v = logs.size() == 1 ? audit::verify(logs[0].text) : audit::verify(logs);
    if (!v.intact) {
        printf("%s: %s (%llu records verified before it)\n", logs.size() == 1 ? names.c_str() : "audit verify",
               v.problem.c_str(), static_cast<unsigned long long>(v.records));
        return 1;
    }
    printf("%s: %llu records, chain intact\n", names.c_str(), static_cast<unsigned long long>(v.records));
    return 0;
}

// Sends one command to clsgwd and returns its answer; first line "ok" or "error: ...".
bool ask_clsgwd(const std::string &socket_path, const std::string &command, std::string &answer)
{
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof addr.sun_path) {
        answer = "error: socket path too long\n";
        return false;
    }
    memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval limit{10, 0}; // the send limit also bounds a connect that waits in a full backlog
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    }
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
        answer = "error: cannot reach clsgwd at " + socket_path + ": " + errno_text(errno) + "\n";
        if (fd >= 0)
            close(fd);
        return false;
    }
    std::string line = command + "\n";
    // A refusal may come, and the connection close, before the command is sent: read it anyway.
    bool sent = send(fd, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size());
    int send_error = errno;
    char buf[8192];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        answer.append(buf, static_cast<size_t>(n));
    close(fd);
    if (!sent && answer.empty())
        answer = "error: cannot send the command to clsgwd: " + errno_text(send_error) + "\n";
    return answer.rfind("ok\n", 0) == 0;
}

std::string human_bytes(uint64_t n)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(n);
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    char buf[32];
    snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

void print_status(const nlohmann::json &s)
{
    printf("clsgwd pid %d, up %llus, log level %s\n", s["pid"].get<int>(),
           static_cast<unsigned long long>(s["uptime_s"].get<uint64_t>()), s["log_level"].get<std::string>().c_str());
    if (s.contains("version"))
        printf("version: %s\n", s["version"].get<std::string>().c_str());
    for (const auto &l : s.value("listeners", nlohmann::json::array())) {
        std::string names;
        for (const auto &n : l["channels"])
            names += (names.empty() ? "" : ",") + n.get<std::string>();
        printf("listening: %s (%s) for %s\n", l["address"].get<std::string>().c_str(),
               l["from"].get<std::string>().c_str(), names.c_str());
    }
    if (s.contains("smgw")) {
        uint64_t left = s["smgw"].value("backoff_ms_left", uint64_t(0));
        printf("smgw: %s%s\n", s["smgw"]["address"].get<std::string>().c_str(),
               left ? (", backing off for " + std::to_string((left + 999) / 1000) + "s: new channels fail at once").c_str()
                    : "");
    }
    printf("channels: %zu open of %u, %llu accepted, %llu finished\n", s["channels"].size(),
           s["max_channels"].get<unsigned>(), static_cast<unsigned long long>(s["accepted"].get<uint64_t>()),
           static_cast<unsigned long long>(s["finished"].get<uint64_t>()));
    printf("spare workers: %u of %u waiting\n", s["spare_workers"]["ready"].get<unsigned>(),
           s["spare_workers"]["configured"].get<unsigned>());
    for (const auto &c : s["channels"]) {
        printf("  #%llu %s %s pid=%d peer=%s state=%s age=%llus", static_cast<unsigned long long>(c["id"].get<uint64_t>()),
               c["name"].get<std::string>().c_str(), c["direction"].get<std::string>().c_str(), c["pid"].get<int>(),
               c["peer"].get<std::string>().c_str(), c["state"].get<std::string>().c_str(),
               static_cast<unsigned long long>(c["age_s"].get<uint64_t>()));
        if (c.contains("target"))
            printf(" target=%s suite=%s group=%s%s", c["target"].get<std::string>().c_str(),
                   c["suite"].get<std::string>().c_str(), c["group"].get<std::string>().c_str(),
                   c["resumed"].get<bool>() ? " resumed" : "");
        printf(" up=%s down=%s\n", human_bytes(c["bytes_up"].get<uint64_t>()).c_str(),
               human_bytes(c["bytes_down"].get<uint64_t>()).c_str());
    }
    printf("outcomes since start:\n");
    for (const auto &[key, count] : s["outcomes"].items())
        printf("  %-60s %llu\n", key.c_str(), static_cast<unsigned long long>(count.get<uint64_t>()));
    const auto &sig = s["signer"];
    printf("signer: %s pid %d, key %s, %u restarts\n", sig["state"].get<std::string>().c_str(), sig["pid"].get<int>(),
           sig["key_id"].get<std::string>().c_str(), sig["restarts"].get<unsigned>());
    printf("certificates:\n");
    for (const auto &c : s["certificates"])
        printf("  %-8s %5lld days left  %s (%s)\n", c["role"].get<std::string>().c_str(),
               static_cast<long long>(c["days_left"].get<int64_t>()), c["subject"].get<std::string>().c_str(),
               c["path"].get<std::string>().c_str());
}

// The daemon commands' arguments, checked here: clsgwd would only say "unknown command".
std::string control_arguments_problem(int argc, char **argv, int first)
{
    std::string cmd = argv[first];
    std::vector<std::string> rest(argv + first + 1, argv + argc);
    for (const auto &word : rest)
        if (word.rfind("-", 0) == 0 && !(cmd == "status" && word == "--json") && !(cmd == "check" && word == "--sign"))
            return cmd + ": unknown option " + word.substr(0, word.find('='));
    if (cmd == "status")
        return rest.size() > 1 || (rest.size() == 1 && rest[0] != "--json") ? "status takes only --json" : "";
    if (cmd == "check")
        return rest.size() > 1 || (rest.size() == 1 && rest[0] != "--sign") ? "check takes only --sign" : "";
    if (cmd != "log-level")
        return rest.empty() ? "" : cmd + " takes no arguments";
    if (rest.empty() || rest.size() > 2)
        return "log-level takes LEVEL [CHANNEL]";
    if (!parse_log_level(rest[0]))
        return "log-level: '" + rest[0] + "' is not a level: expected error, warn, info, debug or trace";
    if (rest.size() == 2)
        for (char c : rest[1])
            if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
                return "log-level: '" + rest[1] + "' is not a channel name";
    return "";
}

// A subject DN as clsgwctl writes it: KEY=VALUE pairs separated by commas, each key one that
// certificates carry. mbedTLS would take "not a dn" and issue a certificate with an empty subject.
std::string subject_problem(const std::string &dn)
{
    static const char *const keys[] = {"CN", "O", "OU", "C", "L", "ST", "R", "serialNumber", "emailAddress",
                                       "title", "DC", "UID", "street", "postalCode", "pseudonym", "generationQualifier",
                                       "initials", "givenName", "SN"};
    if (dn.empty())
        return "--subject is empty (for example CN=device-0001,O=Example)";
    size_t start = 0;
    while (start <= dn.size()) {
        size_t end = start;
        while (end < dn.size() && dn[end] != ',')
            end += dn[end] == '\\' ? 2 : 1;
        std::string rdn = dn.substr(start, end - start);
        size_t eq = rdn.find('=');
        std::string key = eq == std::string::npos ? "" : rdn.substr(0, eq);
        while (!key.empty() && key.front() == ' ')
            key.erase(0, 1);
        bool known = false;
        for (const char *k : keys)
            known |= key == k;
        if (eq == std::string::npos || !known || eq + 1 >= rdn.size())
            return "--subject '" + dn + "': '" + rdn + "' is not KEY=VALUE with a known key (CN, O, OU, C, ...)";
        start = end + 1;
    }
    return "";
}

// status's exit code, for monitoring: 4 when clsgwd answers but cannot serve as it should (the
// signer not ready, the SMGW in back-off, a certificate expired), 3 when a certificate expires
// within 30 days, else 0.
int status_health(const nlohmann::json &s)
{
    bool sick = s["signer"].value("state", "") != "ready" ||
                (s.contains("smgw") && s["smgw"].value("backoff_ms_left", uint64_t(0)) > 0);
    bool soon = false;
    for (const auto &c : s["certificates"]) {
        int64_t days = c.value("days_left", int64_t(0));
        sick |= c.value("not_after", int64_t(0)) < static_cast<int64_t>(time(nullptr));
        soon |= days < 30;
    }
    return sick ? 4 : soon ? 3 : 0;
}

int control(const std::string &socket_path, int argc, char **argv, int first)
{
    std::string cmd = argv[first];
    bool json_out = false;
    std::string command = cmd;
    for (int i = first + 1; i < argc; i++) {
        if (cmd == "status" && std::string(argv[i]) == "--json")
            json_out = true;
        else
            command += std::string(" ") + argv[i];
    }
    std::string answer;
    bool ok = ask_clsgwd(socket_path, command, answer);
    if (!ok) {
        fprintf(stderr, "clsgwctl: %s", answer.empty() ? "no answer from clsgwd\n" : answer.c_str());
        return 1;
    }
    if (cmd == "check" && answer.find("\nwarning: ") != std::string::npos) {
        fputs(answer.substr(3).c_str(), stdout);
        return 3; // works, but something needs attention soon
    }
    std::string body = answer.substr(3);
    if (cmd == "status") {
        auto status = nlohmann::json::parse(body, nullptr, false);
        if (status.is_discarded()) {
            fprintf(stderr, "clsgwctl: clsgwd's status is not JSON\n");
            return 1;
        }
        if (json_out)
            printf("%s\n", status.dump(2).c_str());
        else
            print_status(status);
        return status_health(status);
    }
    fputs(body.c_str(), stdout);
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    if (tls::print_version(argc, argv, "clsgwctl"))
        return 0;
    std::string socket_path = getenv("CLSGW_CONTROL") ? getenv("CLSGW_CONTROL") : "/run/clsgw/control.sock";
    int first = 1;
    if (argc > 2 && std::string(argv[1]) == "-s") {
        socket_path = argv[2];
        first = 3;
    }
    if (argc <= first)
        return usage(2);
    std::string cmd = argv[first];
    for (int i = 1; i < argc; i++)
        if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h")
            return usage(0);
    if (cmd == "status" || cmd == "log-level" || cmd == "reopen-logs" || cmd == "reload" || cmd == "check" ||
        cmd == "metrics") {
        std::string wrong = control_arguments_problem(argc, argv, first);
        return wrong.empty() ? control(socket_path, argc, argv, first) : usage_error(wrong);
    }
    if (first != 1)
        return usage(2);
    std::string sub = argc > 2 ? argv[2] : "";
    if (cmd == "-h" || cmd == "--help" || cmd == "help")
        return usage(0);
    if (cmd == "audit" && sub == "verify" && argc >= 4)
        return audit_verify(argc - 3, argv + 3);
    if (cmd == "fingerprint")
        return argc == 3 ? fingerprint(argv[2]) : usage(2);
    if (cmd == "key" && sub == "generate") {
        arguments a = parse_arguments(argc, argv, 3, {"curve", "out"});
        return a.error.empty() ? key_generate(a) : usage_error(a.error);
    }
    if (cmd == "cert" && sub == "request") {
        arguments a = parse_arguments(argc, argv, 3, {"key", "subject", "out"});
        if (!a.error.empty())
            return usage_error(a.error);
        std::string bad_dn = subject_problem(a.values.count("subject") ? a.values.at("subject") : "");
        if (a.values.count("subject") && !bad_dn.empty())
            return usage_error(bad_dn);
        std::string err;
        auto key = read_input(a, "key", err);
        if (!key)
            return fail(err);
        if (!a.values.count("subject"))
            return fail("--subject is required (for example CN=device-0001,O=Example)");
        pki::result csr = pki::make_request(*key, a.values.at("subject"));
        return csr.ok ? output(a, csr.pem, 0644) : fail(csr.error);
    }
    if (cmd == "cert" && (sub == "self-sign" || sub == "issue")) {
        std::vector<std::string> values = {"key", "subject", "days", "valid-from-days", "out"};
        if (sub == "issue")
            values.insert(values.end(), {"ca-cert", "ca-key"});
        arguments a = parse_arguments(argc, argv, 3, values, {"ca"});
        if (!a.error.empty())
            return usage_error(a.error);
        std::string bad_dn = subject_problem(a.values.count("subject") ? a.values.at("subject") : "");
        if (a.values.count("subject") && !bad_dn.empty())
            return usage_error(bad_dn);
        return cert_make(a, sub == "self-sign");
    }
    return usage(2);
}
