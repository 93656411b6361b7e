#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../../lib/fd.hpp"
#include "../../lib/util.hpp"

#include "../../lib/audit.hpp"

using namespace clsgw;

namespace {

std::vector<std::string> chained(int n)
{
    audit::tail t{0, audit::genesis(), true};
    std::vector<std::string> lines;
    for (int i = 1; i <= n; i++)
        lines.push_back(audit::seal(t, "channel=" + std::to_string(i) + " result=ok"));
    return lines;
}

std::string join(const std::vector<std::string> &lines)
{
    std::string out;
    for (const auto &l : lines)
        out += l + "\n";
    return out;
}

} // namespace

TEST_CASE("an untouched audit chain verifies")
{
    auto v = audit::verify(join(chained(5)));
    CHECK(v.intact);
    CHECK(v.records == 5);
    CHECK(audit::verify("").intact);
}

TEST_CASE("an altered record is named")
{
    auto lines = chained(5);
    lines[2].replace(lines[2].find("result=ok"), 9, "result=no");
    auto v = audit::verify(join(lines));
    CHECK_FALSE(v.intact);
    CHECK(v.problem == "record 3 (line 3) was altered");
    CHECK(v.records == 2);
}

TEST_CASE("removed records are named by their sequence numbers")
{
    auto lines = chained(6);
    lines.erase(lines.begin() + 2, lines.begin() + 4);
    auto v = audit::verify(join(lines));
    CHECK(v.problem == "records 3-4 removed before record 5 (line 3)");
}

TEST_CASE("an inserted record is named, also when it is a copy of a real one")
{
    auto lines = chained(4);
    lines.insert(lines.begin() + 2, lines[1]);
    auto v = audit::verify(join(lines));
    CHECK(v.problem == "record inserted (line 3): it repeats sequence number 2");
}

TEST_CASE("a forged record with the next sequence number but no valid chain is an alteration")
{
    auto lines = chained(3);
    lines.push_back("channel=9 result=ok seq=4 chain=" + std::string(64, 'a'));
    CHECK(audit::verify(join(lines)).problem == "record 4 (line 4) was altered");
}

namespace {

// Logs as logrotate leaves them: every `per_log` records the signer starts a new log, whose first
// record says it continues the last one's chain.
std::vector<audit::named_log> rotated(int logs, int per_log)
{
    audit::tail t{0, audit::genesis(), true};
    std::vector<audit::named_log> out;
    for (int f = 0; f < logs; f++) {
        audit::named_log log{"audit.log." + std::to_string(logs - f), ""};
        if (f > 0)
            log.text += audit::seal(t, "time=x key=k result=chain_continued previous_log=audit.log.1") + "\n";
        for (int i = 0; i < per_log; i++)
            log.text += audit::seal(t, "channel=" + std::to_string(i) + " result=ok") + "\n";
        out.push_back(log);
    }
    return out;
}

} // namespace

TEST_CASE("rotated audit logs given oldest first verify as one chain; a log that continues one not given verifies alone")
{
    auto logs = rotated(3, 2);
    auto v = audit::verify(logs);
    CHECK(v.intact);
    CHECK(v.records == 8); // two records a log, and one chain_continued record in each later log
    CHECK(audit::verify(logs[2].text).intact);
    CHECK(audit::verify(std::vector<audit::named_log>(logs.begin() + 1, logs.end())).intact);
}

TEST_CASE("a removed, a reordered or a foreign log among rotated ones is named")
{
    auto logs = rotated(3, 2);
    auto v = audit::verify(std::vector<audit::named_log>{logs[0], logs[2]});
    CHECK_FALSE(v.intact);
    CHECK(v.problem == "audit.log.1: starts at record 6 but audit.log.3 ends at record 2: records 3-5 are missing "
                       "between them (a log removed?)");
    v = audit::verify(std::vector<audit::named_log>{logs[1], logs[0], logs[2]});
    CHECK(v.problem == "audit.log.3: starts at record 1, before the end of audit.log.2 (record 5): give the logs "
                       "oldest first");
    audit::tail elsewhere{2, audit::next(audit::genesis(), "another gateway"), true}; // same numbers, another chain
    audit::named_log foreign{"foreign.log", audit::seal(elsewhere, "time=x key=k result=chain_continued") + "\n"};
    v = audit::verify(std::vector<audit::named_log>{logs[0], foreign});
    CHECK(v.problem == "foreign.log: record 3 (line 1) does not continue the chain of audit.log.3 (altered, or not the "
                       "log that follows it)");
}

TEST_CASE("a log that starts past record 1 without saying it continues another has lost its first records")
{
    auto lines = chained(4);
    lines.erase(lines.begin());
    CHECK(audit::verify(join(lines)).problem == "record 1 removed before record 2 (line 1)");
}

namespace {

// A fresh folder for log files, removed with what is in it.
struct log_folder {
    std::string path;
    log_folder()
    {
        char name[] = "/tmp/clsgw-audit-XXXXXX";
        REQUIRE(mkdtemp(name));
        path = name;
    }
    ~log_folder() { (void)!system(("rm -rf " + path).c_str()); }
    std::string file(const std::string &name) const { return path + "/" + name; }
};

// As the signer opens its audit log: read-write, appending.
unique_fd open_log(const std::string &path)
{
    return unique_fd(open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
}

std::string contents(const std::string &path)
{
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

} // namespace

TEST_CASE("two writers appending alternately to one log keep one chain: each continues the file's last record")
{
    log_folder dir;
    std::string path = dir.file("audit.log");
    unique_fd retired = open_log(path), fresh = open_log(path); // two open files, as two signers have
    for (int i = 0; i < 6; i++) {
        auto r = audit::append(i % 2 ? fresh.get() : retired.get(), "channel=" + std::to_string(i) + " result=ok");
        REQUIRE_MESSAGE(r.ok, r.error);
        CHECK(r.at.seq == static_cast<uint64_t>(i + 1));
    }
    auto v = audit::verify(contents(path));
    CHECK_MESSAGE(v.intact, v.problem);
    CHECK(v.records == 6);
}

TEST_CASE("a lock held by another process fails the record within audit_lock_timeout, not the signer's loop")
{
    log_folder dir;
    std::string path = dir.file("audit.log");
    unique_fd signer = open_log(path), other = open_log(path);
    REQUIRE(audit::append(signer.get(), "channel=1 result=ok").ok);
    std::string before = contents(path);
    REQUIRE(flock(other.get(), LOCK_EX) == 0); // as `flock audit.log sleep 1d` by anyone who may read it
    uint64_t started = now_ms();
    auto r = audit::append(signer.get(), "channel=2 result=ok");
    uint64_t waited = now_ms() - started;
    CHECK_FALSE(r.ok);
    CHECK(r.error.find("audit_lock_timeout") == 0);
    CHECK(waited >= audit::AUDIT_LOCK_TIMEOUT_MS);
    CHECK(waited < 10 * audit::AUDIT_LOCK_TIMEOUT_MS);
    CHECK(contents(path) == before);
    REQUIRE(flock(other.get(), LOCK_UN) == 0);
    CHECK(audit::append(signer.get(), "channel=2 result=ok").ok);
}

TEST_CASE("an append after a cut or foreign last line is refused and writes nothing; the chain never restarts")
{
    log_folder dir;
    std::string path = dir.file("audit.log");
    unique_fd fd = open_log(path);
    REQUIRE(audit::append(fd.get(), "channel=1 result=ok").ok);
    std::string intact = contents(path);
    for (const std::string &tail : {intact.substr(0, intact.size() - 10), intact.substr(0, intact.size() - 1),
                                    intact + "not a record\n", intact + std::string(70000, 'x') + "\n"}) {
        REQUIRE(ftruncate(fd.get(), 0) == 0);
        REQUIRE(write(fd.get(), tail.data(), tail.size()) == static_cast<ssize_t>(tail.size()));
        auto r = audit::append(fd.get(), "channel=2 result=ok");
        CHECK_FALSE(r.ok);
        CHECK(r.error == "the audit log's last line is not a complete chained record");
        CHECK(contents(path) == tail);
    }
}

TEST_CASE("a new log after rotation closes the rotated one, continues its chain, and a writer left on it is refused")
{
    log_folder dir;
    std::string path = dir.file("audit.log"), rotated = path + ".1";
    unique_fd retired = open_log(path);
    REQUIRE(audit::append(retired.get(), "channel=1 result=ok").ok);
    REQUIRE(rename(path.c_str(), rotated.c_str()) == 0); // logrotate; the retired writer keeps its fd
    unique_fd fresh = open_log(path);
    auto start = audit::continue_chain(fresh.get(), path, "key=k result=log_closed next_log=audit.log",
                                       "key=k result=chain_continued previous_log=audit.log.1");
    REQUIRE_MESSAGE(start.ok, start.error);
    CHECK(start.predecessor == rotated);
    CHECK(start.at.seq == 3);
    auto late = audit::append(retired.get(), "channel=2 result=ok");
    CHECK_FALSE(late.ok);
    CHECK(late.error == "the audit log was rotated and closed by a newer signer");
    REQUIRE(audit::append(fresh.get(), "channel=3 result=ok").ok);
    auto v = audit::verify(std::vector<audit::named_log>{{rotated, contents(rotated)}, {path, contents(path)}});
    CHECK_MESSAGE(v.intact, v.problem);
    CHECK(v.records == 4);
    // A second signer starting on the now non-empty log continues it and writes nothing at start.
    unique_fd third = open_log(path);
    auto again = audit::continue_chain(third.get(), path, "x result=log_closed", "x result=chain_continued");
    CHECK(again.ok);
    CHECK(again.predecessor.empty());
    CHECK(again.at.seq == 4);
}

TEST_CASE("only a record's own result field closes a log, never text quoted in another field")
{
    log_folder dir;
    std::string path = dir.file("audit.log");
    unique_fd fd = open_log(path);
    REQUIRE(audit::append(fd.get(), "name=\"x result=log_closed y\" peer=\"a\\\" result=log_closed \" result=ok").ok);
    CHECK_FALSE(audit::read_tail(fd.get()).closed);
    REQUIRE(audit::append(fd.get(), "name=n result=ok note=\"result=log_closed\"").ok);
    CHECK_FALSE(audit::read_tail(fd.get()).closed);
    REQUIRE(audit::append(fd.get(), "key=k result=log_closed_not next_log=audit.log").ok);
    CHECK_FALSE(audit::read_tail(fd.get()).closed);
    REQUIRE(audit::append(fd.get(), "key=k xresult=log_closed result_x=log_closed result=ok").ok);
    CHECK_FALSE(audit::read_tail(fd.get()).closed);
    REQUIRE(audit::append(fd.get(), "key=k result=log_closed next_log=audit.log").ok);
    CHECK(audit::read_tail(fd.get()).closed);
    // An escaped backslash ends a quoted value; a word without '=' before the field does not hide it.
    unique_fd other = open_log(dir.file("other.log"));
    REQUIRE(audit::append(other.get(), "note=\"a\\\\\" key=k word result=log_closed").ok);
    CHECK(audit::read_tail(other.get()).closed);
}
