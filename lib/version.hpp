// The version every program prints for --version.
#pragma once

namespace clsgw {

// One line, e.g. "clsgw 0.1"; the place to add what else a version report should name.
const char *clsgw_version_text();

// argv holds exactly "--version" (after the program name): prints clsgw_version_text() and
// returns true, for programs whose own parsing would take it for something else.
bool print_version_if_asked(int argc, char **argv);

} // namespace clsgw
