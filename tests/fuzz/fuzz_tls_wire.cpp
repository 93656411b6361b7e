// libFuzzer target: what a device sends in the clear to clsgw-hanscan (records, hellos, the
// messages of its first flight), through the same parsers the scanner uses.
#include <cassert>
#include <cstdint>

#include "../../lib/tls/wire.hpp"

using namespace clsgw::tls;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wire::record_reader reader;
    reader.feed(data, size / 2);
    reader.feed(data + size / 2, size - size / 2);
    for (const auto &m : reader.messages) {
        assert(m.body.size() <= wire::MAX_HANDSHAKE_MESSAGE);
        if (auto h = wire::parse_client_hello(m.body.data(), m.body.size()))
            assert(h->session_id.size() <= 32 && !h->suites.empty() && !h->compression.empty());
        if (auto h = wire::parse_server_hello(m.body.data(), m.body.size()))
            (void)h->negotiated_version();
        wire::parse_certificate(m.body.data(), m.body.size());
        wire::parse_ecdhe_server_key_exchange(m.body.data(), m.body.size());
        wire::parse_certificate_request(m.body.data(), m.body.size());
        wire::parse_new_session_ticket(m.body.data(), m.body.size());
    }
    // the bodies alone, as they come out of a reassembled message
    wire::parse_client_hello(data, size);
    wire::parse_server_hello(data, size);
    wire::parse_certificate(data, size);
    return 0;
}
