// Certificate expiry: our identity and each trust anchor, watched from the start, at each
// reload and once a day; a warning from 30 days before one expires, an error once it has.
#include "master.hpp"

#include <mbedtls/x509_crt.h>

#include <algorithm>
#include <ctime>

#include "../../lib/log.hpp"
#include "../../lib/tls/tls.hpp"
#include "../../lib/util.hpp"

namespace clsgw {

namespace {

int64_t unix_time(const mbedtls_x509_time &t)
{
    struct tm tm {};
    tm.tm_year = t.year - 1900;
    tm.tm_mon = t.mon - 1;
    tm.tm_mday = t.day;
    tm.tm_hour = t.hour;
    tm.tm_min = t.min;
    tm.tm_sec = t.sec;
    return static_cast<int64_t>(timegm(&tm));
}

} // namespace

void master::watch_certificates()
{
    certificates_.clear();
    auto add = [&](const std::string &role, const std::string &path, const std::string &pem) {
        tls::cert_list certs;
        std::string err;
        if (!certs.parse_pem(pem, err))
            return;
        for (const mbedtls_x509_crt *c = certs.get(); c && c->raw.p; c = c->next) {
            char subject[256];
            mbedtls_x509_dn_gets(subject, sizeof subject, &c->subject);
            certificates_.push_back({role, path, subject, unix_time(c->valid_to)});
        }
    };
    add("identity", cfg_.certificate.path, certificate_pem_);
    for (const auto &[path, pem] : trust_pems_)
        add("trust", path, pem);
    check_certificate_expiry();
}

// At the start, at each reload, once a day, and at the second a certificate crosses a line (30
// days left, or expired): a warning from 30 days before a certificate expires, an error once it
// has. The log says so when it happens, not up to a day later.
void master::check_certificate_expiry()
{
    uint64_t now = now_ms();
    int64_t wall = static_cast<int64_t>(time(nullptr));
    int64_t next_s = CERTIFICATE_CHECK_INTERVAL_S;
    for (const auto &c : certificates_) {
        int64_t days = (c.not_after - wall) / 86400;
        log_fields f;
        f.add("role", c.role).add("subject", c.subject).add("days_left", days).add("path", c.path);
        if (c.not_after < wall) {
            log_error("certificate expired", f);
            continue;
        }
        if (days < 30)
            log_warn("certificate expires soon", f);
        else
            next_s = std::min(next_s, c.not_after - 30 * 86400 - wall + 1);
        next_s = std::min(next_s, c.not_after - wall + 1); // not_after is the last valid second
    }
    certificates_next_check_ms_ = now + static_cast<uint64_t>(std::max<int64_t>(next_s, 1)) * 1000;
}

} // namespace clsgw
