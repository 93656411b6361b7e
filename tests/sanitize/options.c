/*
 * Linked into the programs only in sanitizer builds (make SANITIZE=...). The sandboxed worker
 * and signer may not ptrace, which LeakSanitizer needs at exit, and their stderr is not the
 * terminal: leak checking is off, and every report ends the process with a distinct status so
 * that the master logs it and the test fails.
 */
const char *__asan_default_options(void);
const char *__ubsan_default_options(void);

const char *__asan_default_options(void) { return "detect_leaks=0:exitcode=86:abort_on_error=0"; }
const char *__ubsan_default_options(void) { return "print_stacktrace=1:halt_on_error=1:exitcode=87"; }
