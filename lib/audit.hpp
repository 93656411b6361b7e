// The signer's audit log as a hash chain: each record ends with "seq=N chain=HEX", where
// chain = SHA-256(previous chain || the record's text before " chain="). Editing, inserting or
// removing a record breaks the chain at that point; `clsgwctl audit verify` finds it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace clsgw::audit {

// The chain value before the first record.
std::string genesis();
// The chain value of a record, given the previous one.
std::string next(const std::string &previous, const std::string &record_text);

struct tail {
    uint64_t seq = 0;     // the last record's sequence number (0: no record yet)
    std::string chain;    // its chain value (genesis() for an empty log)
    bool readable = true; // false: the last line is not a complete chained record
    bool closed = false;  // the last record is a CLOSED one: the chain goes on in a newer log
};
// The result of the record a signer writes first in a log that continues its predecessor's chain.
constexpr const char *CONTINUED = "chain_continued";
// The result of the record that ends a rotated log once a newer log continues its chain: a signer
// still appending to the rotated file (retired by a reload, its fd on the old inode) is refused
// from then on instead of forking the chain.
constexpr const char *CLOSED = "log_closed";

// Appends " seq=N" and " chain=HEX" to a record's text and advances t.
std::string seal(tail &t, const std::string &record_text);

// Where the log open on fd leaves off: its last complete record, read from the file itself (at
// most its last TAIL_WINDOW bytes, with pread). A tail that is not a complete chained record
// (no final newline, a malformed line, a line longer than the window) is not readable.
constexpr size_t TAIL_WINDOW = 64 * 1024;
// How long an append waits for another process's lock on the log before it fails that record
// (named audit_lock_timeout in the error); a signer holds it for one append.
constexpr uint64_t AUDIT_LOCK_TIMEOUT_MS = 200;
tail read_tail(int fd);

// One record appended by one of possibly several signers sharing the log (a reload's new signer
// while the retired one still serves handshakes, a restarted one): under an exclusive flock on
// fd (opened O_RDWR | O_APPEND) the chain continues from the file's own last record, never from
// what this process last wrote, so the log stays one chain whoever appends.
struct append_result {
    bool ok = false;
    tail at;           // after the record (ok) or where the log stood (refused)
    std::string error; // why nothing was written: "the log's last line is not a chained record", ...
};
append_result append(int fd, const std::string &record_text);

// A signer starting on the log open on fd (O_RDWR | O_APPEND) at path: under the lock, when the
// log is empty and path + ".1" holds records, that rotated log gets closing_text as its last
// record and this one continued_text as its first (both chained). predecessor is then set.
struct start_result {
    bool ok = false;
    tail at;
    std::string predecessor;
    std::string error;
};
start_result continue_chain(int fd, const std::string &path, const std::string &closing_text,
                            const std::string &continued_text);

struct verdict {
    bool intact = false;
    uint64_t records = 0;
    std::string problem; // the first one: "record 3 (line 3) was altered", ...
};
verdict verify(const std::string &log_text);

// Several logs in order, oldest first (audit.log.2, audit.log.1, audit.log): each one's first
// record must continue the previous one's last, so a file removed, or given out of order, is
// named. Problems name their file. The first log may itself continue an earlier one not given
// (its first record is a chain_continued record): then its first link is not checked.
struct named_log {
    std::string name, text;
};
verdict verify(const std::vector<named_log> &logs);

} // namespace clsgw::audit
