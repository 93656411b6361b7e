#include "report.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>

namespace clsgw::hanscan {

const char *const ITEMS[15] = {
    "TLS_1.2", "ECC", "PFS", "CLIENT_CERT", "SERVER_CERT", "NO_COMPRESSION", "NO_TRUNC_HMAC", "RANDOM_TIME",
    "DURATION", "NO_RENEGOTIATION", "ENC_THEN_MAC", "EXT_MASTER_SECRET", "SESSION_ID", "SESSION_TICKET",
    "CHECK_CERTS",
};

namespace {

const char *verdict_text(verdict v)
{
    switch (v) {
    case verdict::pass: return "PASS";
    case verdict::fail: return "FAIL";
    case verdict::info: break;
    }
    return "INFO";
}

} // namespace

report::report(std::string mode, std::string peer) : mode_(std::move(mode)), peer_(std::move(peer))
{
    for (const char *item : ITEMS)
        items_.push_back(entry{item, verdict::info, {}});
}

report::entry &report::find(const std::string &item)
{
    for (auto &e : items_)
        if (e.item == item)
            return e;
    items_.push_back(entry{item, verdict::info, {}});
    return items_.back();
}

void report::add(const std::string &item, verdict v, const std::string &evidence)
{
    entry &e = find(item);
    for (const auto &[seen, text] : e.evidence)
        if (seen == v && text == evidence)
            return; // the same fact from another connection or probe
    e.evidence.emplace_back(v, evidence);
    if (v == verdict::fail || (v == verdict::pass && e.result == verdict::info))
        e.result = v;
}

void report::pass(const std::string &item, const std::string &evidence) { add(item, verdict::pass, evidence); }
void report::fail(const std::string &item, const std::string &evidence) { add(item, verdict::fail, evidence); }
void report::info(const std::string &item, const std::string &evidence) { add(item, verdict::info, evidence); }

void report::could_not_test(const std::string &why)
{
    if (stop_reason_.empty())
        stop_reason_ = why;
}

int report::exit_status() const
{
    if (stopped())
        return 2;
    for (const auto &e : items_)
        if (e.result == verdict::fail)
            return 1;
    return 0;
}

void report::print(bool json) const
{
    int status = exit_status();
    const char *summary = status == 0 ? "pass" : status == 1 ? "fail" : "could_not_test";
    if (json) {
        nlohmann::json out = {{"mode", mode_}, {"peer", peer_}, {"result", summary}, {"items", nlohmann::json::array()}};
        if (stopped())
            out["reason"] = stop_reason_;
        for (const auto &e : items_) {
            nlohmann::json evidence = nlohmann::json::array();
            for (const auto &[v, text] : e.evidence)
                evidence.push_back({{"result", verdict_text(v)}, {"text", text}});
            out["items"].push_back({{"item", e.item}, {"result", verdict_text(e.result)}, {"evidence", evidence}});
        }
        printf("%s\n", out.dump(1).c_str());
        return;
    }
    for (const auto &e : items_) {
        if (stopped() && e.evidence.empty())
            continue; // what was judged before the scan had to stop is still worth reading
        // The failed evidence first: the line names what is wrong before what is right.
        std::string text;
        for (verdict want : {verdict::fail, verdict::pass, verdict::info})
            for (const auto &[v, line] : e.evidence)
                if (v == want)
                    text += (text.empty() ? "" : "; ") + line;
        printf("%-17s %s  %s\n", e.item.c_str(), verdict_text(e.result), text.empty() ? "-" : text.c_str());
    }
    if (stopped())
        printf("result: could not test %s: %s\n", peer_.c_str(), stop_reason_.c_str());
    else
        printf("result: %s (%s mode, %s)\n", status == 0 ? "every item passes" : "FAIL", mode_.c_str(), peer_.c_str());
}

} // namespace clsgw::hanscan
