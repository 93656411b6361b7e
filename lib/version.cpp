#include "version.hpp"

#include <cstdio>
#include <cstring>

namespace clsgw {

// Kept equal to PV in etc/yocto/clsgw_0.1.bb.
#define CLSGW_VERSION "0.1"

const char *clsgw_version_text() { return "clsgw " CLSGW_VERSION; }

bool print_version_if_asked(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "--version") != 0)
        return false;
    printf("%s %s\n", argv[0] && strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0], clsgw_version_text());
    return true;
}

} // namespace clsgw
