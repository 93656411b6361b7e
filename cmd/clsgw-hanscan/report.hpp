// The scan's verdicts: one line per TR-03116-3 item (the names docs/conformance.md uses), each
// PASS, FAIL or INFO with its evidence; as text or JSON, and the exit status.
#pragma once

#include <string>
#include <vector>

namespace clsgw::hanscan {

enum class verdict { info, pass, fail };

class report {
public:
    report(std::string mode, std::string peer);
    // Evidence for an item; the item's verdict is FAIL if any evidence failed, else PASS if any
    // passed, else INFO.
    void pass(const std::string &item, const std::string &evidence);
    void fail(const std::string &item, const std::string &evidence);
    void info(const std::string &item, const std::string &evidence);
    // The scan could not test the peer at all (exit status 2); the reason is printed.
    void could_not_test(const std::string &why);
    bool stopped() const { return !stop_reason_.empty(); }
    void print(bool json) const;
    int exit_status() const;

private:
    struct entry {
        std::string item;
        verdict result = verdict::info;
        std::vector<std::pair<verdict, std::string>> evidence;
    };
    entry &find(const std::string &item);
    void add(const std::string &item, verdict v, const std::string &evidence);
    std::string mode_, peer_, stop_reason_;
    std::vector<entry> items_;
};

extern const char *const ITEMS[15]; // in the order of docs/conformance.md

} // namespace clsgw::hanscan
