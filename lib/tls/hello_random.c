/* See hello_random.h: why this file defines time(). */
#include "hello_random.h"

#include <sys/random.h>
#include <time.h>

static int hide_clock;

void clsgw_hide_clock(int on) { hide_clock = on; }

time_t time(time_t *out)
{
    time_t now;
    if (hide_clock) {
        /* Only the first read of the step fills the hello's random; later reads in the same step
         * (the session's start time, set while writing ServerHello) get the real clock. */
        hide_clock = 0;
        unsigned int noise = 0;
        /* On failure the bytes stay zero: still no clock in the hello. */
        if (getrandom(&noise, sizeof noise, 0) != (ssize_t)sizeof noise)
            noise = 0;
        now = (time_t)noise;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        now = ts.tv_sec;
    }
    if (out)
        *out = now;
    return now;
}
