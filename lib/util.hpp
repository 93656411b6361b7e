// Small helpers shared by every program: durations, hex, clocks, errno text.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fd.hpp"

namespace clsgw {

using bytes = std::vector<uint8_t>;

// Parses "15s", "10m", "48h", "250ms", "2d" or a bare number of seconds into milliseconds.
std::optional<uint64_t> parse_duration_ms(std::string_view text);
// Formats milliseconds the way the config takes them back ("48h", "15s", "250ms").
std::string format_duration_ms(uint64_t ms);
// Microseconds as milliseconds with one decimal, rounded: 9149 -> "9.1".
std::string format_ms_tenths(uint64_t us);
// Parses a decimal unsigned integer with an inclusive upper bound; no sign, no spaces.
std::optional<uint64_t> parse_uint(std::string_view text, uint64_t max);

std::string hex(const uint8_t *data, size_t len);
inline std::string hex(const bytes &b) { return hex(b.data(), b.size()); }

// Milliseconds on CLOCK_MONOTONIC.
uint64_t now_ms();
uint64_t now_us(); // monotonic, microseconds
// Wall clock as an RFC 3339 UTC string with milliseconds.
std::string utc_timestamp();

std::string errno_text(int err);
// "SIGTERM"; the number for a signal without a name.
std::string signal_name(int sig);
std::string trim(std::string_view s);
std::vector<std::string> split_list(std::string_view s);

// Reads a whole file (bounded); nullopt and errno set on failure or when over max_size.
std::optional<std::string> read_file(const std::string &path, size_t max_size);

// Opens a log or audit file for appending, creating it with `mode` when missing, the way a root
// process may in a folder others can write to: never through a symbolic link, and only a
// regular file with no other name (no FIFO, device or hard link to a file elsewhere). An
// invalid fd and `error` (naming the path) otherwise.
unique_fd open_log_file(const std::string &path, mode_t mode, std::string &error, bool readable = false);

// "" when a private key file can be read by its owner alone; else what is wrong and the fix.
std::string private_key_mode_problem(const std::string &path);

// Quotes a log field value when it contains spaces, quotes or control bytes.
std::string log_quote(std::string_view value);

} // namespace clsgw
