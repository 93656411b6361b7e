// libFuzzer target: the configuration parser (bounded, strict, never crashing on any text).
#include <cassert>
#include <string>

#include "../../lib/config.hpp"

using namespace clsgw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    std::string text(reinterpret_cast<const char *>(data), size);
    config_result r = parse_config(text, "/fuzz/clsgw.ini");
    assert(r.value.has_value() == r.errors.empty());
    for (const auto &e : r.errors)
        assert(e.line >= 0 && !e.message.empty());
    return 0;
}
