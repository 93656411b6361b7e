#include "audit.hpp"

#include <mbedtls/sha256.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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

} // namespace

std::string genesis() { return sha256_hex("clsgw-audit-v1"); }

std::string next(const std::string &previous, const std::string &record_text)
{
    return sha256_hex(previous + "\n" + record_text);
}

tail read_tail(const std::string &path)
{
    tail t;
    t.chain = genesis();
    // As the signer opens it for appending: not through a symbolic link, not a FIFO.
    unique_fd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat st;
    if (!fd || fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
        return t;
    off_t from = st.st_size > 65536 ? st.st_size - 65536 : 0;
    std::string buf(static_cast<size_t>(st.st_size - from), '\0');
    if (pread(fd.get(), buf.data(), buf.size(), from) != static_cast<ssize_t>(buf.size())) {
        t.readable = false;
        return t;
    }
    while (!buf.empty() && buf.back() == '\n')
        buf.pop_back();
    size_t nl = buf.rfind('\n');
    parsed_record last = parse(nl == std::string::npos ? buf : buf.substr(nl + 1));
    if (!last.ok) {
        t.readable = false;
        return t;
    }
    t.seq = last.seq;
    t.chain = last.chain;
    return t;
}

std::string seal(tail &t, const std::string &record_text)
{
    std::string text = record_text + SEQ + std::to_string(t.seq + 1);
    t.seq++;
    t.chain = next(t.chain, text);
    return text + CHAIN + t.chain;
}

start_point chain_start(const std::string &path)
{
    start_point start;
    start.at = read_tail(path);
    if (!start.at.readable || start.at.seq > 0)
        return start;
    tail before = read_tail(path + ".1");
    if (before.seq > 0 || !before.readable) {
        start.at = before;
        start.predecessor = path + ".1";
    }
    return start;
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
            bool continues = r.seq > 1 && r.text.find(" result=" + std::string(CONTINUED) + " ") != std::string::npos;
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
