#include "log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "fd.hpp"
#include "util.hpp"

namespace clsgw {

namespace {

struct log_state {
    std::string program = "clsgw";
    log_level threshold = log_level::info;
    bool journal = false;
    log_sink sink;
    log_record_sink record_sink;
    log_target target = log_target::stderr_stream;
    std::string file;
    int file_fd = -1;
};

log_state &state()
{
    static log_state s;
    return s;
}

// journald reads "<N>" priority prefixes on a stream and stamps its own time.
void stderr_sink(log_level level, const std::string &line)
{
    std::string out;
    if (state().journal) {
        unsigned prio = level == log_level::trace ? 7 : static_cast<unsigned>(level);
        out = "<" + std::to_string(prio) + ">" + line + "\n";
    } else {
        out = utc_timestamp() + " " + state().program + "[" + std::to_string(getpid()) + "] " +
              log_level_name(level) + " " + line + "\n";
    }
    // One write per line so that concurrent writers never interleave inside a line.
    int fd = state().target == log_target::file && state().file_fd >= 0 ? state().file_fd : STDERR_FILENO;
    ssize_t ignored = write(fd, out.data(), out.size());
    (void)ignored;
}

// systemd sets JOURNAL_STREAM=DEV:INODE for a service whose stderr is the journal; a child
// whose stderr went elsewhere (a pipe, a file) inherits the variable, so compare.
bool stderr_is_journal_stream(const char *value)
{
    unsigned long long dev = 0, ino = 0;
    struct stat st;
    if (!value || sscanf(value, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
        return false;
    return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

int syslog_priority(log_level level) { return level == log_level::trace ? LOG_DEBUG : static_cast<int>(level); }

constexpr mode_t LOG_FILE_MODE = 0640;

} // namespace

std::optional<log_level> parse_log_level(std::string_view name)
{
    if (name == "error")
        return log_level::error;
    if (name == "warn" || name == "warning")
        return log_level::warn;
    if (name == "info")
        return log_level::info;
    if (name == "debug")
        return log_level::debug;
    if (name == "trace")
        return log_level::trace;
    return std::nullopt;
}

const char *log_level_name(log_level level)
{
    switch (level) {
    case log_level::error: return "error";
    case log_level::warn: return "warn";
    case log_level::info: return "info";
    case log_level::debug: return "debug";
    case log_level::trace: return "trace";
    }
    return "info";
}

bool valid_log_level(uint8_t value)
{
    switch (static_cast<log_level>(value)) {
    case log_level::error:
    case log_level::warn:
    case log_level::info:
    case log_level::debug:
    case log_level::trace: return true;
    }
    return false;
}

log_fields &log_fields::add(std::string_view key, std::string_view value)
{
    if (!text_.empty())
        text_.push_back(' ');
    text_.append(key);
    text_.push_back('=');
    text_ += log_quote(value);
    pairs_.emplace_back(key, value);
    return *this;
}

log_fields &log_fields::add(std::string_view key, uint64_t value) { return add(key, std::to_string(value)); }
log_fields &log_fields::add(std::string_view key, int64_t value) { return add(key, std::to_string(value)); }

void log_init(std::string_view program, log_level threshold)
{
    state().program = std::string(program);
    state().threshold = threshold;
    state().journal = stderr_is_journal_stream(getenv("JOURNAL_STREAM"));
}

std::string journal_prefix(log_level level)
{
    if (!stderr_is_journal_stream(getenv("JOURNAL_STREAM")))
        return std::string();
    return "<" + std::to_string(level == log_level::trace ? 7u : static_cast<unsigned>(level)) + ">";
}

bool log_set_target(log_target target, const std::string &file, std::string *error)
{
    if (target == log_target::file) {
        std::string why;
        unique_fd fd = open_log_file(file, LOG_FILE_MODE, why);
        if (!fd) {
            if (error)
                *error = why;
            return false;
        }
        if (state().file_fd >= 0)
            close(state().file_fd);
        state().file_fd = fd.release();
        state().file = file;
        state().journal = false;
    } else if (target == log_target::syslog) {
        openlog(state().program.c_str(), LOG_PID | LOG_NDELAY, LOG_DAEMON);
    }
    state().target = target;
    return true;
}

bool log_reopen(std::string *error)
{
    if (state().target != log_target::file)
        return true;
    std::string why;
    unique_fd fd = open_log_file(state().file, LOG_FILE_MODE, why);
    if (!fd) {
        if (error)
            *error = why;
        return false; // the old file keeps the lines meanwhile
    }
    dup2(fd.get(), state().file_fd); // the old fd number now names the new file, atomically
    return true;
}

void log_set_threshold(log_level threshold) { state().threshold = threshold; }
log_level log_threshold() { return state().threshold; }
void log_set_sink(log_sink sink) { state().sink = std::move(sink); }
void log_set_record_sink(log_record_sink sink) { state().record_sink = std::move(sink); }

bool log_enabled(log_level level)
{
    return static_cast<uint8_t>(level) <= static_cast<uint8_t>(state().threshold);
}

void log_raw(log_level level, const std::string &line)
{
    if (!log_enabled(level))
        return;
    if (state().sink)
        state().sink(level, line);
    else if (state().target == log_target::syslog)
        syslog(syslog_priority(level), "%s", line.c_str());
    else
        stderr_sink(level, line);
}

void log_line(log_level level, std::string_view message, const log_fields &fields)
{
    if (!log_enabled(level))
        return;
    if (state().record_sink)
        return state().record_sink(level, message, fields);
    std::string line(message);
    if (!fields.str().empty()) {
        line.push_back(' ');
        line += fields.str();
    }
    log_raw(level, line);
}

void fatal(std::string_view message, const log_fields &fields)
{
    state().sink = nullptr;
    state().record_sink = nullptr;
    log_line(log_level::error, message, fields);
    exit(1);
}

} // namespace clsgw
