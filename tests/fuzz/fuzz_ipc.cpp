// libFuzzer target: everything the master decodes from a (possibly compromised) worker, and the
// job a worker decodes: frames, TLV records, jobs, results, progress and session messages.
#include <cassert>

#include "../../lib/ipc.hpp"
#include "../../lib/job.hpp"

using namespace clsgw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    std::string err;
    auto m = ipc_decode(data, size, err);
    assert(m || !err.empty());
    bytes payload = m ? m->payload : bytes(data, data + size);
    tlv_reader r;
    (void)r.parse(payload, err);
    if (auto job = decode_job(payload, err))
        assert(job->direction != channel_direction::inbound || !job->routes.empty());
    if (auto res = decode_result(payload, err))
        assert(reason_valid(res->reason));
    (void)decode_established(payload);
    (void)decode_progress(payload);
    if (auto s = decode_session_message(payload))
        assert(s->blob.size() <= SESSION_BLOB_MAX && s->key.size() <= 255);
    return 0;
}
