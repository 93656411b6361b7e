// libFuzzer target: the signer's request decoder and validation (a hostile worker's input),
// and the worker's answer decoder.
#include <cassert>
#include <cstring>

#include "../../lib/signer_proto.hpp"

using namespace clsgw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bytes payload(data, data + size);
    static const uint8_t key[signer::KEY_ID_LEN] = {1};
    if (auto req = signer::decode_request(payload)) {
        signer::status st = signer::validate_request(*req, key);
        if (st == signer::status::ok)
            assert(req->hash_len == signer::digest_length(req->digest_alg) && req->hash_len <= signer::MAX_HASH_LEN);
    }
    if (auto a = signer::decode_answer(payload))
        assert(a->signature.size() <= signer::MAX_SIG_LEN && (a->st == signer::status::ok || a->signature.empty()));
    return 0;
}
