// libFuzzer target: the SOCKS5 server side (what a local application sends to clsgw).
#include <cassert>

#include "../../lib/socks5.hpp"

using namespace clsgw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    auto g = socks5::parse_greeting(data, size);
    assert(g.st != socks5::status::ok || g.consumed <= size);
    if (g.st == socks5::status::ok) {
        auto r = socks5::parse_request(data + g.consumed, size - g.consumed);
        assert(r.st != socks5::status::ok || r.consumed <= size - g.consumed);
        if (r.st == socks5::status::ok) {
            // what we accept we can write back: the request round-trips
            bytes again = socks5::encode_request(r.value.target);
            auto back = socks5::parse_request(again.data(), again.size());
            assert(back.st == socks5::status::ok && back.value.target.port == r.value.target.port);
        }
    }
    return 0;
}
