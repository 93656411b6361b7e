// A doubling back-off, as the master keeps one toward each thing that keeps failing (the
// signer, spare workers, the SMGW, workers that die before doing any work): each failure waits
// the current delay and doubles it, up to a ceiling; a success starts over from the first delay.
#pragma once

#include <cstdint>

namespace clsgw {

class backoff {
public:
    explicit backoff(uint64_t first_ms = 1000, uint64_t max_ms = 60000) : first_(first_ms), max_(max_ms), delay_(first_ms) {}
    // The wait the next failure gets.
    uint64_t delay() const { return delay_; }
    // A failure: its wait (the current delay), and the next one doubled up to the ceiling.
    uint64_t fail();
    // The same with +-20% jitter from `random` (any number, e.g. random()), so that many
    // devices do not retry in step.
    uint64_t fail_jittered(uint64_t random);
    void reset() { delay_ = first_; }
    // A new ceiling (at least the first delay), for the delays after the next failure.
    void set_max(uint64_t max_ms) { max_ = max_ms > first_ ? max_ms : first_; }

private:
    void double_delay();
    uint64_t first_, max_, delay_;
};

} // namespace clsgw
