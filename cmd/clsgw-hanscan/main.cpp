// clsgw-hanscan: judges a CLS device's HAN TLS against TR-03116-3, playing the SMGW.
//
//   clsgw-hanscan server HOST:PORT --cert SMGW.crt --key SMGW.key --trust DEVICE.crt
//                 [--server-name NAME] [--json] [timeouts]
//       against the device's TLS server (HKS4/HKS5: the SMGW connects to the device)
//   clsgw-hanscan client --listen HOST:PORT --cert SMGW.crt --key SMGW.key --trust DEVICE.crt
//                 [--connections N] [--json] [timeouts]
//       for the device's TLS client (HKS3: the device connects to the SMGW)
//
// One line per profile item, PASS, FAIL or INFO with the evidence; exit 0 when every item
// passes, 1 when one fails, 2 when the device could not be tested. It needs no privileges and
// reads no network byte it has not bounded; it runs unsandboxed, as a tool on a test bench.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "../../lib/tls/tls.hpp"
#include "scan.hpp"

using namespace clsgw;
using namespace clsgw::hanscan;

namespace {

int usage()
{
    fprintf(stderr,
            "usage: clsgw-hanscan server HOST:PORT --cert SMGW.crt --key SMGW.key --trust DEVICE.crt\n"
            "                     [--server-name NAME] [--json] [TIMEOUTS]\n"
            "       clsgw-hanscan client --listen HOST:PORT --cert SMGW.crt --key SMGW.key --trust DEVICE.crt\n"
            "                     [--connections N] [--json] [TIMEOUTS]\n"
            "TIMEOUTS: --connect-timeout DUR (10s) --answer-timeout DUR (10s) --handshake-timeout DUR (30s)\n"
            "          --renegotiation-wait DUR (3s) --accept-timeout DUR (120s)\n"
            "exit status: 0 every item passes, 1 an item fails, 2 the device could not be tested\n");
    return 2;
}

// Up to a day: every wait is a poll() whose timeout is an int of milliseconds.
constexpr uint64_t MAX_TIMEOUT_MS = 24 * 3600 * 1000;

bool set_duration(uint64_t &into, const std::string &value)
{
    auto ms = parse_duration_ms(value);
    if (!ms || *ms == 0 || *ms > MAX_TIMEOUT_MS)
        return false;
    into = *ms;
    return true;
}

} // namespace

int main(int argc, char **argv)
{
    if (tls::print_version(argc, argv, "clsgw-hanscan"))
        return 0;
    if (argc < 2)
        return usage();
    signal(SIGPIPE, SIG_IGN);
    scan_options o;
    o.mode = argv[1];
    int i = 2;
    if (o.mode == "server" && argc > 2 && argv[2][0] != '-')
        o.address = argv[i++];
    for (; i < argc; i++) {
        std::string opt = argv[i];
        if (opt == "--json") {
            o.json = true;
            continue;
        }
        if (i + 1 >= argc)
            return usage();
        std::string val = argv[++i];
        bool ok = true;
        if (opt == "--cert") o.cert = val;
        else if (opt == "--key") o.key = val;
        else if (opt == "--trust") o.trust = val;
        else if (opt == "--server-name" && o.mode == "server") o.server_name = val;
        else if (opt == "--listen" && o.mode == "client") o.address = val;
        else if (opt == "--connections" && o.mode == "client") {
            auto n = parse_uint(val, 100);
            ok = n && *n >= 3;
            o.connections = n ? static_cast<unsigned>(*n) : 0;
        }
        else if (opt == "--connect-timeout") ok = set_duration(o.limits.connect_ms, val);
        else if (opt == "--answer-timeout") ok = set_duration(o.limits.answer_ms, val);
        else if (opt == "--handshake-timeout") ok = set_duration(o.limits.handshake_ms, val);
        else if (opt == "--renegotiation-wait") ok = set_duration(o.limits.renegotiation_ms, val);
        else if (opt == "--accept-timeout") ok = set_duration(o.limits.accept_ms, val);
        else ok = false;
        if (!ok) {
            const char *range = opt == "--connections" ? " (3 to 100)"
                                : opt.find("-timeout") != std::string::npos || opt == "--renegotiation-wait"
                                    ? " (1ms to 24h)"
                                    : "";
            fprintf(stderr, "clsgw-hanscan: %s %s: not understood%s\n", opt.c_str(), val.c_str(), range);
            return usage();
        }
    }
    if ((o.mode != "server" && o.mode != "client") || o.address.empty() || o.cert.empty() || o.key.empty() ||
        o.trust.empty())
        return usage();
    return o.mode == "server" ? scan_server(o) : scan_client(o);
}
