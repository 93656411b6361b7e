// libFuzzer target: tls::record_stream, which reads a peer's TLS records (the ClientHello's
// cipher suites and supported_groups, a ServerKeyExchange's group, handshake records after the
// handshake) as they arrive, byte by byte across any split. The first input byte chooses how
// the rest is cut into pieces and whether late handshake records are counted; whatever the cut,
// the stream must see the same, and keep no more than its bound.
#include <cassert>
#include <cstdint>
#include <vector>

#include "../../lib/tls/record_stream.hpp"

using namespace clsgw;

namespace {

struct seen {
    int kex_group;
    unsigned late;
    std::vector<uint16_t> groups, suites;
    bool operator==(const seen &o) const
    {
        return kex_group == o.kex_group && late == o.late && groups == o.groups && suites == o.suites;
    }
};

seen feed(const uint8_t *data, size_t size, size_t piece, bool watch)
{
    tls::record_stream s;
    s.watch_handshake_records = watch;
    for (size_t at = 0; at < size; at += piece)
        s.observe(data + at, piece < size - at ? piece : size - at);
    // a ClientHello body is kept up to CLIENT_HELLO_MAX bytes: at most half as many 16-bit values
    assert(s.offered_groups.size() <= tls::record_stream::CLIENT_HELLO_MAX / 2);
    assert(s.offered_suites.size() <= tls::record_stream::CLIENT_HELLO_MAX / 2);
    assert(s.kex_group >= -1 && s.kex_group <= 0xffff);
    return {s.kex_group, s.late_handshake_records, s.offered_groups, s.offered_suites};
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t piece = (data[0] & 0x7f) + 1;
    bool watch = data[0] & 0x80;
    seen whole = feed(data + 1, size - 1, size, watch);
    assert(feed(data + 1, size - 1, piece, watch) == whole);
    assert(feed(data + 1, size - 1, 1, watch) == whole);
    return 0;
}
