// The two scans: `server` plays the SMGW as TLS client against a device's HAN TLS server,
// `client` plays the SMGW as TLS server for a device's HAN TLS client.
#pragma once

#include <string>

#include "endpoint.hpp"

namespace clsgw::hanscan {

struct scan_options {
    std::string mode;        // "server" or "client"
    std::string address;     // server: the device's HOST:PORT; client: where to listen
    std::string cert, key, trust;
    std::string server_name; // server mode: sent as SNI
    unsigned connections = 4; // client mode
    bool json = false;
    timeouts limits;
};

// Each runs its scan, prints the report and returns the exit status (0 pass, 1 fail, 2 untested).
int scan_server(const scan_options &options);
int scan_client(const scan_options &options);

} // namespace clsgw::hanscan
