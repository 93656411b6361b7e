#include "version.hpp"

namespace clsgw {

const char *clsgw_version_text() { return "clsgw " CLSGW_VERSION; }

} // namespace clsgw
