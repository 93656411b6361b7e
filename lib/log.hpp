// One-line, key=value logging with levels and a replaceable sink.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clsgw {

enum class log_level : uint8_t { error = 3, warn = 4, info = 6, debug = 7, trace = 8 };

std::optional<log_level> parse_log_level(std::string_view name);
const char *log_level_name(log_level level);
// True for the byte values of log_level (as they travel in a worker's log message).
bool valid_log_level(uint8_t value);

// Builds the "key=value key=value" tail of a log line, quoting values that need it.
class log_fields {
public:
    log_fields &add(std::string_view key, std::string_view value);
    log_fields &add(std::string_view key, const char *value) { return add(key, std::string_view(value)); }
    log_fields &add(std::string_view key, const std::string &value) { return add(key, std::string_view(value)); }
    log_fields &add(std::string_view key, uint64_t value);
    log_fields &add(std::string_view key, int64_t value);
    log_fields &add(std::string_view key, int value) { return add(key, static_cast<int64_t>(value)); }
    log_fields &add(std::string_view key, unsigned value) { return add(key, static_cast<uint64_t>(value)); }
    const std::string &str() const { return text_; }
    // The fields as added, for sinks that carry them apart (a worker's records to the master).
    const std::vector<std::pair<std::string, std::string>> &pairs() const { return pairs_; }

private:
    std::string text_;
    std::vector<std::pair<std::string, std::string>> pairs_;
};

using log_sink = std::function<void(log_level, const std::string &line)>;

void log_init(std::string_view program, log_level threshold);
// "<N>" for a line of this level when stderr is systemd's journal stream (JOURNAL_STREAM names it),
// else "": lets programs that print their own lines to stderr still set the journal priority.
std::string journal_prefix(log_level level);

enum class log_target { stderr_stream, syslog, file };
// Sends lines to syslog (facility daemon) or appends them to a file instead of stderr.
// For a file, returns false with the reason in *error when it cannot be opened: a symbolic
// link, a FIFO or anything else but a regular file of one name is refused (open_log_file).
bool log_set_target(log_target target, const std::string &file = std::string(), std::string *error = nullptr);
// Reopens the log file (after logrotate moved it); a no-op for other targets. On failure the
// lines keep going to the file that was open.
bool log_reopen(std::string *error = nullptr);
void log_set_threshold(log_level threshold);
log_level log_threshold();
// Replaces the default stderr sink (the signer sends its lines to the master instead).
void log_set_sink(log_sink sink);
// Replaces every sink with one that gets the message and its fields apart (the worker sends them
// to the master as a structured record, never as a line of its own making).
using log_record_sink = std::function<void(log_level, std::string_view message, const log_fields &fields)>;
void log_set_record_sink(log_record_sink sink);
bool log_enabled(log_level level);

void log_line(log_level level, std::string_view message, const log_fields &fields = log_fields());
// Writes an already formatted line (message plus fields) through the sink, filtered by level.
void log_raw(log_level level, const std::string &line);

inline void log_error(std::string_view m, const log_fields &f = log_fields()) { log_line(log_level::error, m, f); }
inline void log_warn(std::string_view m, const log_fields &f = log_fields()) { log_line(log_level::warn, m, f); }
inline void log_info(std::string_view m, const log_fields &f = log_fields()) { log_line(log_level::info, m, f); }
inline void log_debug(std::string_view m, const log_fields &f = log_fields()) { log_line(log_level::debug, m, f); }

// Writes to stderr and exits 1: only for start-up and configuration errors.
[[noreturn]] void fatal(std::string_view message, const log_fields &fields = log_fields());

} // namespace clsgw
