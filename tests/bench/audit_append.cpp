// The cost of one audit record as the signer writes it, per signature: the old path (seal from the
// chain kept in memory, one write, fdatasync) against audit::append (flock, lseek, pread of the
// file's last record, seal, write, fdatasync, unlock). Usage: audit_append FOLDER [RECORDS]
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "../../lib/audit.hpp"

using namespace clsgw;

namespace {

// A record of the size the signer writes for a signature.
std::string record(int i)
{
    return "time=2026-12-02T01:00:00.000Z channel=" + std::to_string(i) +
           " name=app peer=127.0.0.1:40000 key=" + std::string(64, 'a') + " md=SHA256 digest_sha256=" +
           std::string(64, 'b') + " result=ok latency_us=900";
}

// Microseconds per record for `records` records written by `one` to a fresh file.
template <typename F> double per_record(const std::string &path, int records, F one)
{
    unlink(path.c_str());
    int fd = open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        exit(2);
    auto started = std::chrono::steady_clock::now();
    for (int i = 0; i < records; i++)
        if (!one(fd, i))
            exit(3);
    auto took = std::chrono::steady_clock::now() - started;
    close(fd);
    unlink(path.c_str());
    return std::chrono::duration<double, std::micro>(took).count() / records;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 2)
        return fprintf(stderr, "usage: audit_append FOLDER [RECORDS]\n"), 1;
    std::string path = std::string(argv[1]) + "/audit-bench.log";
    int records = argc > 2 ? atoi(argv[2]) : 2000;
    audit::tail chain{0, audit::genesis(), true};
    double before = per_record(path, records, [&](int fd, int i) {
        std::string line = audit::seal(chain, record(i)) + "\n";
        bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
        return ok && fdatasync(fd) == 0;
    });
    double after = per_record(path, records, [](int fd, int i) { return audit::append(fd, record(i)).ok; });
    printf("records=%d in_memory_chain_us=%.1f locked_append_us=%.1f extra_us=%.1f\n", records, before, after,
           after - before);
    return 0;
}
