#include "audit.hpp"

#include <mbedtls/sha256.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "fd.hpp"
#include "util.hpp"

namespace clsgw::audit {

namespace {

constexpr const char *SEQ = " seq=";
constexpr const char *CHAIN = " chain=";

std::string sha256_hex(const std::string &data)
{
    uint8_t digest[32];
    mbedtls_sha256(reinterpret_cast<const unsigned char *>(data.data()), data.size(), digest, 0);
    return hex(digest, sizeof digest);
}

struct parsed_record {
    bool ok = false;
    uint64_t seq = 0;
    std::string text;  // everything before " chain="
    std::string chain; // the stored chain value
};

parsed_record parse(const std::string &line)
{
    parsed_record r;
    size_t c = line.rfind(CHAIN);
    size_t s = line.rfind(SEQ, c);
    if (c == std::string::npos || s == std::string::npos)
        return r;
    auto seq = parse_uint(line.substr(s + 5, c - s - 5), UINT64_MAX);
    r.chain = line.substr(c + 7);
    if (!seq || r.chain.size() != 64)
        return r;
    r.seq = *seq;
    r.text = line.substr(0, c);
    r.ok = true;
    return r;
}

// True when the record's own result field (unquoted, as the signer writes its results) is
// `result`. Fields are key=value separated by spaces; a quoted value (which may hold spaces and
// '=') is skipped whole, so text inside one never passes for a field.
bool result_is(const std::string &text, const char *result)
{
    size_t i = 0;
    while (i < text.size()) {
        if (text[i] == ' ') {
            i++;
            continue;
        }
        size_t eq = text.find('=', i), space = text.find(' ', i);
        if (eq == std::string::npos)
            return false;
        if (space < eq) { // a word without '=' (the signer writes none): skipped, never part of a key
            i = space;
            continue;
        }
        bool is_result = text.compare(i, eq - i, "result") == 0;
        size_t v = eq + 1;
        if (v < text.size() && text[v] == '"') {
            for (v++; v < text.size() && text[v] != '"'; v += text[v] == '\\' ? 2 : 1) {
            }
            i = v + 1;
            continue;
        }
        size_t end = std::min(text.find(' ', v), text.size());
        if (is_result)
            return text.compare(v, end - v, result) == 0;
        i = end;
    }
    return false;
}

} // namespace

std::string genesis() { return sha256_hex("clsgw-audit-v1"); }

std::string next(const std::string &previous, const std::string &record_text)
{
    return sha256_hex(previous + "\n" + record_text);
}

tail read_tail(int fd)
{
    tail t;
    t.chain = genesis();
    // The size through lseek rather than fstat: the signer's sandbox allows no stat calls (with
    // O_APPEND the offset moved here does not matter to the writes).
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < 0) {
        t.readable = false;
        return t;
    }
    if (size == 0)
        return t;
    // A record is a few hundred bytes: the last 4 KiB nearly always hold it whole; only a longer
    // last line is read again with the full window (and beyond that it is refused).
    std::string buf;
    size_t nl = std::string::npos;
    off_t from = size;
    for (size_t window : {size_t{4096}, TAIL_WINDOW}) {
        from = size > static_cast<off_t>(window) ? size - static_cast<off_t>(window) : 0;
        buf.assign(static_cast<size_t>(size - from), '\0');
        // Records end with exactly one newline; anything else at the end is a cut or foreign tail.
        if (pread(fd, buf.data(), buf.size(), from) != static_cast<ssize_t>(buf.size()) || buf.back() != '\n') {
            t.readable = false;
            return t;
        }
        buf.pop_back();
        nl = buf.rfind('\n');
        if (nl != std::string::npos || from == 0)
            break;
    }
    if (nl == std::string::npos && from > 0) { // the last line is longer than the window
        t.readable = false;
        return t;
    }
    parsed_record last = parse(nl == std::string::npos ? buf : buf.substr(nl + 1));
    if (!last.ok || last.seq == 0) {
        t.readable = false;
        return t;
    }
    t.seq = last.seq;
    t.chain = last.chain;
    t.closed = result_is(last.text, CLOSED);
    return t;
}

namespace {

// Holds an exclusive flock for its lifetime. The signer never waits on another process for
// long: a signer holds the lock for one append (microseconds, plus fdatasync), so the lock is
// tried without blocking, again every millisecond, for at most AUDIT_LOCK_TIMEOUT_MS; whoever
// holds it longer (anyone who may open the file can take it) fails this record, not the loop.
class exclusive_lock {
  public:
    explicit exclusive_lock(int fd) : fd_(fd)
    {
        uint64_t deadline = now_ms() + AUDIT_LOCK_TIMEOUT_MS;
        while (!(held_ = flock(fd_, LOCK_EX | LOCK_NB) == 0)) {
            if (errno != EWOULDBLOCK && errno != EINTR)
                break;
            if (now_ms() >= deadline) {
                errno = ETIMEDOUT;
                timed_out_ = true;
                break;
            }
            poll(nullptr, 0, 1); // the signer's sandbox allows poll, not the sleeps
        }
        error_ = held_ ? 0 : errno;
    }
    ~exclusive_lock()
    {
        if (held_)
            flock(fd_, LOCK_UN);
    }
    exclusive_lock(const exclusive_lock &) = delete;
    exclusive_lock &operator=(const exclusive_lock &) = delete;
    bool held() const { return held_; }
    int error() const { return error_; }
    bool timed_out() const { return timed_out_; }

  private:
    int fd_;
    bool timed_out_ = false;
    bool held_ = false;
    int error_ = 0;
};

// Seals the record after r.at and appends it to fd (whose lock the caller holds).
append_result write_sealed(int fd, append_result &r, const std::string &record_text)
{
    std::string line = seal(r.at, record_text) + "\n";
    // One write with O_APPEND under the lock: the record lands whole, right after the tail read.
    ssize_t n = write(fd, line.data(), line.size());
    if (n != static_cast<ssize_t>(line.size())) {
        r.error = "audit log write failed: " + (n < 0 ? errno_text(errno) : "short write");
        return r;
    }
    if (fdatasync(fd) != 0) {
        r.error = "audit log sync failed: " + errno_text(errno);
        return r;
    }
    r.ok = true;
    return r;
}

// Where the log on fd stands once its lock is held; an error when it cannot be continued.
std::string locked_tail(const exclusive_lock &lock, int fd, tail &at)
{
    if (lock.timed_out())
        return "audit_lock_timeout: another process has held the audit log's lock for " +
               std::to_string(AUDIT_LOCK_TIMEOUT_MS) + "ms";
    if (!lock.held())
        return "cannot lock the audit log: " + errno_text(lock.error());
    at = read_tail(fd);
    if (!at.readable)
        return "the audit log's last line is not a complete chained record";
    if (at.closed)
        return "the audit log was rotated and closed by a newer signer";
    return "";
}

} // namespace

append_result append(int fd, const std::string &record_text)
{
    append_result r;
    exclusive_lock lock(fd);
    r.error = locked_tail(lock, fd, r.at);
    return r.error.empty() ? write_sealed(fd, r, record_text) : r;
}

start_result continue_chain(int fd, const std::string &path, const std::string &closing_text,
                            const std::string &continued_text)
{
    start_result r;
    exclusive_lock lock(fd);
    r.error = locked_tail(lock, fd, r.at);
    if (!r.error.empty())
        return r;
    if (r.at.seq > 0)
        return r.ok = true, r;
    std::string rotated = path + ".1";
    unique_fd before(open(rotated.c_str(), O_RDWR | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (!before && errno == ENOENT)
        return r.ok = true, r; // no predecessor: the chain starts here
    struct stat st;
    if (!before || fstat(before.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
        r.error = rotated + ": " + (before ? std::string("not a regular file") : errno_text(errno));
        return r;
    }
    tail end = read_tail(before.get());
    if (end.seq == 0 && end.readable)
        return r.ok = true, r;
    if (!end.closed) {
        append_result closing = append(before.get(), closing_text);
        if (!closing.ok) {
            r.error = rotated + ": " + closing.error;
            return r;
        }
        end = closing.at;
    }
    append_result first;
    first.at = end;
    write_sealed(fd, first, continued_text);
    if (!first.ok) {
        r.error = first.error;
        return r;
    }
    r.at = first.at;
    r.predecessor = rotated;
    r.ok = true;
    return r;
}

std::string seal(tail &t, const std::string &record_text)
{
    std::string text = record_text + SEQ + std::to_string(t.seq + 1);
    t.seq++;
    t.chain = next(t.chain, text);
    return text + CHAIN + t.chain;
}

namespace {

// Where the chain stands while logs are read: the next sequence number and the chain value
// before it; expected == 0 before the first record.
struct chain_position {
    uint64_t expected = 0;
    std::string chain;
    std::string file; // the log the last record was in
};

// Checks one log's records from pos on; the problem names `name` when it is not empty.
bool verify_log(const std::string &name, const std::string &log_text, chain_position &pos, verdict &v)
{
    std::string in = name.empty() ? "" : name + ": ";
    uint64_t line_no = 0;
    size_t at = 0;
    while (at < log_text.size()) {
        size_t end = log_text.find('\n', at);
        std::string line = log_text.substr(at, end == std::string::npos ? std::string::npos : end - at);
        at = end == std::string::npos ? log_text.size() : end + 1;
        line_no++;
        if (line.empty())
            continue;
        parsed_record r = parse(line);
        std::string where = " (line " + std::to_string(line_no) + ")";
        if (!r.ok) {
            v.problem = in + "line " + std::to_string(line_no) + " is not a chained audit record";
            return false;
        }
        if (pos.expected == 0) { // the very first record
            bool continues = r.seq > 1 && result_is(r.text, CONTINUED);
            if (r.seq == 1 || continues) {
                pos.expected = r.seq;
                pos.chain = continues ? "" : genesis(); // the link into a log not given is not checked
            } else {
                pos.expected = 1;
            }
        }
        bool new_file = pos.file != name;
        if (r.seq > pos.expected) {
            std::string missing = "record" + std::string(r.seq - pos.expected > 1 ? "s " : " ") +
                                  std::to_string(pos.expected) +
                                  (r.seq - pos.expected > 1 ? "-" + std::to_string(r.seq - 1) : "");
            v.problem = new_file && !pos.file.empty()
                            ? in + "starts at record " + std::to_string(r.seq) + " but " + pos.file + " ends at record " +
                                  std::to_string(pos.expected - 1) + ": " + missing +
                                  " are missing between them (a log removed?)"
                            : in + missing + " removed before record " + std::to_string(r.seq) + where;
            return false;
        }
        if (r.seq < pos.expected) {
            v.problem = new_file && !pos.file.empty()
                            ? in + "starts at record " + std::to_string(r.seq) + ", before the end of " + pos.file +
                                  " (record " + std::to_string(pos.expected - 1) + "): give the logs oldest first"
                            : in + "record inserted" + where + ": it repeats sequence number " + std::to_string(r.seq);
            return false;
        }
        if (!pos.chain.empty() && next(pos.chain, r.text) != r.chain) {
            v.problem = new_file && !pos.file.empty()
                            ? in + "record " + std::to_string(r.seq) + where + " does not continue the chain of " +
                                  pos.file + " (altered, or not the log that follows it)"
                            : in + "record " + std::to_string(r.seq) + where + " was altered";
            return false;
        }
        pos.chain = r.chain;
        pos.expected++;
        pos.file = name;
        v.records++;
    }
    return true;
}

} // namespace

verdict verify(const std::string &log_text)
{
    verdict v;
    chain_position pos;
    v.intact = verify_log("", log_text, pos, v);
    return v;
}

verdict verify(const std::vector<named_log> &logs)
{
    verdict v;
    chain_position pos;
    for (const auto &log : logs)
        if (!verify_log(log.name, log.text, pos, v))
            return v;
    v.intact = true;
    return v;
}

} // namespace clsgw::audit
