// At most `per_window` events of a kind are handled one by one per window of `window_ms`; the
// rest are only counted, for one summary when the window ends. A window opens with the first
// event after the previous window ended, so a quiet process has no timer running.
#pragma once

#include <cstdint>

namespace clsgw {

class event_budget {
public:
    event_budget(unsigned per_window, uint64_t window_ms) : per_window_(per_window), window_ms_(window_ms) {}

    // True when this event may be handled one by one; false when it only counts.
    bool take(uint64_t now_ms)
    {
        if (!open_ || now_ms >= window_end_ms()) {
            open_ = true;
            start_ms_ = now_ms;
            used_ = 0;
        }
        if (used_ < per_window_) {
            used_++;
            return true;
        }
        return false;
    }
    // When the current (or last) window ends.
    uint64_t window_end_ms() const { return start_ms_ + window_ms_; }
    unsigned per_window() const { return per_window_; }
    uint64_t window_ms() const { return window_ms_; }

private:
    unsigned per_window_;
    uint64_t window_ms_;
    uint64_t start_ms_ = 0;
    unsigned used_ = 0;
    bool open_ = false;
};

} // namespace clsgw
