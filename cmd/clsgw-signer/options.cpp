// clsgw-signer's command line: the key, certificate and audit log it is given, its limits and
// the users who may be its master.
#include "options.hpp"

#include <getopt.h>
#include <pwd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "../../lib/util.hpp"

namespace clsgw {

namespace {

void usage()
{
    fprintf(stderr, "usage: clsgw-signer --key FILE --certificate FILE --audit-log FILE [--max-sessions N]\n"
                    "                    [--master-uid USER]... [--refusal-budget N/DURATION] [--retire-wait DURATION]\n"
                    "                    [--log-level LEVEL]\n"
                    "       clsgw-signer --check --key FILE --certificate FILE\n"
                    "(started by clsgwd with its control socket on fd 3, or by clsgw-signer.socket)\n");
    exit(2);
}

// A user name or a numeric uid.
std::optional<uid_t> parse_user(const char *text)
{
    if (auto n = parse_uint(text, UINT32_MAX - 1))
        return static_cast<uid_t>(*n);
    if (const passwd *pw = getpwnam(text))
        return pw->pw_uid;
    return std::nullopt;
}

// "N/DURATION": N refusals audited one by one per DURATION, e.g. 10/1m.
bool parse_refusal_budget(std::string_view text, options &o)
{
    size_t slash = text.find('/');
    if (slash == std::string_view::npos)
        return false;
    auto n = parse_uint(text.substr(0, slash), 100000);
    auto ms = parse_duration_ms(text.substr(slash + 1));
    if (!n || !ms || *ms < 100 || *ms > 24 * 3600 * 1000)
        return false;
    o.refusals_per_window = static_cast<unsigned>(*n);
    o.refusal_window_ms = *ms;
    return true;
}

} // namespace

options parse_options(int argc, char **argv)
{
    options o;
    static const struct option longopts[] = {
        {"key", required_argument, nullptr, 'k'},          {"certificate", required_argument, nullptr, 'c'},
        {"audit-log", required_argument, nullptr, 'a'},    {"max-sessions", required_argument, nullptr, 'm'},
        {"log-level", required_argument, nullptr, 'l'},    {"master-uid", required_argument, nullptr, 'u'},
        {"refusal-budget", required_argument, nullptr, 'r'}, {"check", no_argument, nullptr, 't'},
        {"retire-wait", required_argument, nullptr, 'w'},
        {nullptr, 0, nullptr, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, nullptr)) != -1) {
        switch (c) {
        case 't': o.check_only = true; break;
        case 'k': o.key_path = optarg; break;
        case 'c': o.certificate_path = optarg; break;
        case 'a': o.audit_path = optarg; break;
        case 'm': {
            auto n = parse_uint(optarg, 65536);
            if (!n || *n == 0)
                usage();
            o.max_sessions = static_cast<unsigned>(*n);
            break;
        }
        case 'l': {
            auto l = parse_log_level(optarg);
            if (!l)
                usage();
            o.level = *l;
            break;
        }
        case 'u': {
            auto uid = parse_user(optarg);
            if (!uid || o.master_uids.size() >= 8) {
                fprintf(stderr, "clsgw-signer: --master-uid %s: not a user (at most 8 may be named)\n", optarg);
                exit(2);
            }
            o.master_uids.push_back(*uid);
            break;
        }
        case 'r':
            if (!parse_refusal_budget(optarg, o)) {
                fprintf(stderr, "clsgw-signer: --refusal-budget %s: expected N/DURATION, e.g. 10/1m\n", optarg);
                exit(2);
            }
            break;
        case 'w': {
            auto ms = parse_duration_ms(optarg);
            if (!ms || *ms < 100 || *ms > 3600 * 1000) {
                fprintf(stderr, "clsgw-signer: --retire-wait %s: expected a duration from 100ms to 1h\n", optarg);
                exit(2);
            }
            o.retire_wait_ms = *ms;
            break;
        }
        default: usage();
        }
    }
    if (o.key_path.empty() || o.certificate_path.empty() || (o.audit_path.empty() && !o.check_only) || optind != argc)
        usage();
    return o;
}

} // namespace clsgw
