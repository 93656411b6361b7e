// The signer's audit log as a hash chain: each record ends with "seq=N chain=HEX", where
// chain = SHA-256(previous chain || the record's text before " chain="). Editing, inserting or
// removing a record breaks the chain at that point; `clsgwctl audit verify` finds it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace clsgw::audit {

// The chain value before the first record.
std::string genesis();
// The chain value of a record, given the previous one.
std::string next(const std::string &previous, const std::string &record_text);

struct tail {
    uint64_t seq = 0;           // the last record's sequence number (0: no record yet)
    std::string chain;          // its chain value (genesis() for an empty log)
    bool readable = true;       // false: the last line is not a chained record
};
// Where an existing log leaves off (reads at most its last 64 KiB).
tail read_tail(const std::string &path);

// Where a signer starting on the log at path continues the chain: after the log's last record;
// when the log is empty or missing (logrotate has just moved it away), after the last record of
// its predecessor path + ".1" (logrotate's name for it; delaycompress keeps it uncompressed).
struct start_point {
    tail at;
    std::string predecessor; // set when the chain continues from that file
};
start_point chain_start(const std::string &path);
// The result of the record a signer writes first in a log that continues its predecessor's chain.
constexpr const char *CONTINUED = "chain_continued";

// Appends " seq=N" and " chain=HEX" to a record's text and advances t.
std::string seal(tail &t, const std::string &record_text);

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
