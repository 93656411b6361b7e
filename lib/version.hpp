// clsgw's version as the programs report it (--version, clsgwctl status).
#pragma once

namespace clsgw {

// "clsgw VERSION" (make VERSION=, kept equal to PV in etc/yocto); --version adds the mbedTLS
// version (tls::print_version).
const char *clsgw_version_text();

} // namespace clsgw
