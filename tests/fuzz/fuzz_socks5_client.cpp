// libFuzzer target: the SOCKS5 client side (what the SMGW answers inside the TLS session).
#include <cassert>
#include <cstdint>

#include "../../lib/socks5.hpp"

using namespace clsgw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    auto m = socks5::parse_method_choice(data, size);
    assert(m.st != socks5::status::ok || m.consumed == 2);
    auto r = socks5::parse_reply(data, size);
    assert(r.st != socks5::status::ok || r.consumed <= size);
    size_t want = socks5::reply_length(data, size);
    assert(want == 0 || want == SIZE_MAX || want <= socks5::MAX_REQUEST);
    uint8_t code = socks5::app_reply_code(size ? data[0] : 0);
    assert(code >= 1 && code <= 8);
    return 0;
}
