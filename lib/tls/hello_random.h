/*
 * TR-03116-3 RANDOM_TIME: the first four bytes of ClientHello.random must not carry the clock.
 *
 * mbedTLS (MBEDTLS_HAVE_TIME) fills them with libc's time(). This project defines time() itself
 * (hello_random.c): linked into the executable, that definition is the one the library's call
 * reaches (with the static libraries, and with a shared libmbedtls too, as the executable comes
 * first in the dynamic lookup scope). While the flag below is set, time()
 * returns 32 random bits from getrandom; otherwise the real clock, so that certificate validity
 * checks and session timestamps are unaffected. run_handshake sets the flag around exactly the
 * step that writes our hello (ClientHello as client, ServerHello as server); only the first
 * time() of that step is answered with random bits.
 */
#ifndef CLSGW_HELLO_RANDOM_H
#define CLSGW_HELLO_RANDOM_H

#ifdef __cplusplus
extern "C" {
#endif

void clsgw_hide_clock(int on);

#ifdef __cplusplus
}
#endif

#endif
