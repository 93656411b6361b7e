#include "util.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "fd.hpp"

namespace clsgw {

std::string signal_name(int sig)
{
    const char *abbrev = sigabbrev_np(sig);
    return abbrev ? std::string("SIG") + abbrev : std::to_string(sig);
}

std::optional<uint64_t> parse_uint(std::string_view text, uint64_t max)
{
    if (text.empty() || text.size() > 20)
        return std::nullopt;
    uint64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9')
            return std::nullopt;
        uint64_t digit = static_cast<uint64_t>(c - '0');
        if (value > (max - digit) / 10)
            return std::nullopt;
        value = value * 10 + digit;
    }
    return value;
}

std::optional<uint64_t> parse_duration_ms(std::string_view text)
{
    size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
        digits++;
    if (digits == 0)
        return std::nullopt;
    std::string_view unit = text.substr(digits);
    uint64_t factor;
    if (unit.empty() || unit == "s")
        factor = 1000;
    else if (unit == "ms")
        factor = 1;
    else if (unit == "m")
        factor = 60 * 1000;
    else if (unit == "h")
        factor = 3600 * 1000;
    else if (unit == "d")
        factor = 86400 * 1000;
    else
        return std::nullopt;
    // Bound to ten years so that every later addition to a clock value is safe.
    const uint64_t max_ms = 10ULL * 365 * 86400 * 1000;
    auto number = parse_uint(text.substr(0, digits), max_ms / factor);
    if (!number)
        return std::nullopt;
    return *number * factor;
}

std::string format_duration_ms(uint64_t ms)
{
    struct unit {
        uint64_t factor;
        const char *suffix;
    };
    static const unit units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    if (ms == 0)
        return "0s";
    for (const auto &u : units)
        if (ms % u.factor == 0)
            return std::to_string(ms / u.factor) + u.suffix;
    return std::to_string(ms) + "ms";
}

std::string hex(const uint8_t *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(len * 2);
    for (size_t i = 0; i < len; i++) {
        out.push_back(digits[data[i] >> 4]);
        out.push_back(digits[data[i] & 15]);
    }
    return out;
}

uint64_t now_ms()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

std::string format_ms_tenths(uint64_t us)
{
    uint64_t tenths = (us + 50) / 100;
    return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10);
}

uint64_t now_us()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

std::string utc_timestamp()
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char buf[40];
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03ldZ", ts.tv_nsec / 1000000);
    return buf;
}

std::string errno_text(int err)
{
    char buf[128];
    // GNU strerror_r returns the message pointer, which need not be buf.
    const char *msg = strerror_r(err, buf, sizeof buf);
    return msg;
}

std::string trim(std::string_view s)
{
    size_t b = 0, e = s.size();
    while (b < e && (s[b] == ' ' || s[b] == '\t'))
        b++;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t'))
        e--;
    return std::string(s.substr(b, e - b));
}

std::vector<std::string> split_list(std::string_view s)
{
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
        size_t end = s.find_first_of(", ", start);
        if (end == std::string_view::npos)
            end = s.size();
        if (end > start)
            out.emplace_back(s.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

unique_fd open_log_file(const std::string &path, mode_t mode, std::string &error, bool readable)
{
    // O_NONBLOCK: opening a FIFO for writing would otherwise wait for a reader. readable: the
    // audit log, whose appends read the chain's tail back from the file.
    const int flags = (readable ? O_RDWR : O_WRONLY) | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    unique_fd fd(open(path.c_str(), flags, mode));
    int err = errno;
    struct stat st;
    bool seen = fd ? fstat(fd.get(), &st) == 0 : lstat(path.c_str(), &st) == 0;
    if (!fd && !seen) {
        error = path + ": " + errno_text(err);
        return unique_fd();
    }
    if (S_ISLNK(st.st_mode))
        error = path + " is a symbolic link; name the file itself";
    else if (!S_ISREG(st.st_mode))
        error = path + " is not a regular file";
    else if (st.st_nlink > 1)
        error = path + " has " + std::to_string(st.st_nlink) + " hard links; it must have no other name";
    else if (st.st_uid != geteuid()) // one made beforehand by a user of the folder stays theirs to read and rewrite
        error = path + " belongs to uid " + std::to_string(st.st_uid) + ", not to this process's uid " +
                std::to_string(geteuid());
    else if (!fd)
        error = path + ": " + errno_text(err);
    else if (fcntl(fd.get(), F_SETFL, O_APPEND) != 0)
        error = path + ": " + errno_text(errno);
    else
        return fd;
    return unique_fd();
}

std::string private_key_mode_problem(const std::string &path)
{
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || (st.st_mode & 077) == 0)
        return ""; // a missing or unreadable key is reported by whoever reads it
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return "key " + path + " is accessible to group or others (mode " + mode + "); make it private: chmod 0600 " + path;
}

std::optional<std::string> read_file(const std::string &path, size_t max_size)
{
    unique_fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return std::nullopt;
    std::string out;
    char buf[8192];
    for (;;) {
        ssize_t n = read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return std::nullopt;
        if (n == 0)
            break;
        if (out.size() + static_cast<size_t>(n) > max_size) {
            errno = EFBIG;
            return std::nullopt;
        }
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

std::string log_quote(std::string_view value)
{
    bool needs = value.empty();
    for (unsigned char c : value)
        if (c <= ' ' || c == '"' || c == '\\' || c >= 0x7f)
            needs = true;
    if (!needs)
        return std::string(value);
    std::string out = "\"";
    for (unsigned char c : value) {
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(static_cast<char>(c));
        } else if (c < ' ' || c >= 0x7f) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\x%02x", c);
            out += esc;
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    out.push_back('"');
    return out;
}

} // namespace clsgw
