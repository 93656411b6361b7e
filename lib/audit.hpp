// The signer's audit log as a hash chain: each record ends with "seq=N chain=HEX", where
// chain = SHA-256(previous chain || the record's text before " chain="). Editing, inserting or
// removing a record breaks the chain at that point; `clsgwctl audit verify` finds it.
#pragma once

#include <cstdint>
#include <string>

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

// Appends " seq=N" and " chain=HEX" to a record's text and advances t.
std::string seal(tail &t, const std::string &record_text);

struct verdict {
    bool intact = false;
    uint64_t records = 0;
    std::string problem; // the first one: "record 3 (line 3) was altered", ...
};
verdict verify(const std::string &log_text);

} // namespace clsgw::audit
