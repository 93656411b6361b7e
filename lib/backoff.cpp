#include "backoff.hpp"

namespace clsgw {

void backoff::double_delay()
{
    delay_ = delay_ > max_ / 2 ? max_ : delay_ * 2;
}

uint64_t backoff::fail()
{
    uint64_t wait = delay_;
    double_delay();
    return wait;
}

uint64_t backoff::fail_jittered(uint64_t random)
{
    uint64_t jitter = delay_ / 5;
    uint64_t wait = delay_ - jitter + random % (2 * jitter + 1);
    double_delay();
    return wait;
}

} // namespace clsgw
