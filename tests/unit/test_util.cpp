#include <doctest/doctest.h>

#include "../../lib/net.hpp"
#include "../../lib/tls/tls.hpp"
#include "../../lib/util.hpp"

#include <mbedtls/ctr_drbg.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

using namespace clsgw;

TEST_CASE("durations: units, bare seconds, and malformed values")
{
    CHECK(*parse_duration_ms("15s") == 15000);
    CHECK(*parse_duration_ms("15") == 15000);
    CHECK(*parse_duration_ms("250ms") == 250);
    CHECK(*parse_duration_ms("10m") == 600000);
    CHECK(*parse_duration_ms("48h") == 172800000);
    CHECK(*parse_duration_ms("2d") == 172800000);
    for (const char *bad : {"", "s", "-1s", "1.5s", "10 m", "10x", "99999999999999999999"})
        CHECK_FALSE(parse_duration_ms(bad).has_value());
    CHECK(format_duration_ms(172800000) == "2d");
    CHECK(format_duration_ms(1500) == "1500ms");
}

TEST_CASE("addresses: numeric only, IPv6 in brackets, port 1-65535")
{
    CHECK(parse_sock_address("127.0.0.1:80")->to_string() == "127.0.0.1:80");
    CHECK(parse_sock_address("[::1]:80")->to_string() == "[::1]:80");
    for (const char *bad : {"localhost:80", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:80", "[::1]80", ":80"})
        CHECK_FALSE(parse_sock_address(bad).has_value());
    CHECK(parse_host_port("emt.example:443")->host == "emt.example");
    CHECK(parse_host_port("[2001:db8::1]:443")->to_string() == "[2001:db8::1]:443");
    CHECK_FALSE(parse_host_port("emt..example:443").has_value());
    CHECK_FALSE(parse_host_port("emt.example:").has_value());
    // the master parses what the worker asks for the same way the worker parsed the app's request
    CHECK(parse_host_port("localhost.:80")->to_string() == "localhost:80");
    CHECK_FALSE(parse_host_port(".:80").has_value());
    CHECK(is_ip_literal("192.0.2.1"));
    CHECK(is_ip_literal("2001:db8::1"));
    CHECK_FALSE(is_ip_literal("emt.example"));
    CHECK(*normalise_target_host("[2001:db8::1]") == "2001:db8::1");
}

TEST_CASE("log values with spaces, quotes or control bytes are quoted")
{
    CHECK(log_quote("plain") == "plain");
    CHECK(log_quote("two words") == "\"two words\"");
    CHECK(log_quote("a\nb") == "\"a\\x0ab\"");
    CHECK(log_quote("") == "\"\"");
}

TEST_CASE("microseconds print as milliseconds with one decimal")
{
    CHECK(clsgw::format_ms_tenths(0) == "0.0");
    CHECK(clsgw::format_ms_tenths(49) == "0.0");
    CHECK(clsgw::format_ms_tenths(50) == "0.1");
    CHECK(clsgw::format_ms_tenths(9149) == "9.1");
    CHECK(clsgw::format_ms_tenths(9950) == "10.0");
    CHECK(clsgw::format_ms_tenths(123456789) == "123456.8");
}

TEST_CASE("the DRBG seeds from the kernel and two generators never agree")
{
    clsgw::tls::rng a, b;
    REQUIRE(a.seed("unit-a"));
    REQUIRE(b.seed("unit-a")); // same personalization: the seeds alone must tell them apart
    unsigned char x[64] = {}, y[64] = {}, zero[64] = {};
    REQUIRE(clsgw::tls::rng::random(&a, x, sizeof x) == 0);
    REQUIRE(clsgw::tls::rng::random(&b, y, sizeof y) == 0);
    CHECK(memcmp(x, y, sizeof x) != 0);
    CHECK(memcmp(x, zero, sizeof x) != 0);
    // a reseed goes to the same source and keeps the generator working
    REQUIRE(mbedtls_ctr_drbg_reseed(a.drbg(), nullptr, 0) == 0);
    REQUIRE(clsgw::tls::rng::random(&a, y, sizeof y) == 0);
    CHECK(memcmp(x, y, sizeof x) != 0);
}

namespace {

std::string contents(const std::string &path)
{
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

} // namespace

TEST_CASE("a log file is opened only when it is a regular file of one name, never through a symlink")
{
    char dir_template[] = "/tmp/clsgw-unit-log-XXXXXX";
    REQUIRE(mkdtemp(dir_template));
    std::string dir = dir_template, victim = dir + "/victim", error;
    { std::ofstream(victim) << "precious\n"; }

    unique_fd fd = open_log_file(dir + "/new.log", 0640, error);
    REQUIRE(fd);
    CHECK(write(fd.get(), "line\n", 5) == 5);
    struct stat st;
    REQUIRE(stat((dir + "/new.log").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777 & ~0640) == 0);

    REQUIRE(symlink(victim.c_str(), (dir + "/link.log").c_str()) == 0);
    CHECK_FALSE(open_log_file(dir + "/link.log", 0640, error));
    CHECK(error == dir + "/link.log is a symbolic link; name the file itself");
    REQUIRE(symlink((dir + "/nowhere").c_str(), (dir + "/dangling.log").c_str()) == 0);
    CHECK_FALSE(open_log_file(dir + "/dangling.log", 0640, error));
    CHECK(error.find("is a symbolic link") != std::string::npos);
    CHECK(access((dir + "/nowhere").c_str(), F_OK) != 0); // not created through the link

    REQUIRE(mkfifo((dir + "/fifo.log").c_str(), 0600) == 0); // no reader: a blocking open would hang
    CHECK_FALSE(open_log_file(dir + "/fifo.log", 0640, error));
    CHECK(error == dir + "/fifo.log is not a regular file");
    CHECK_FALSE(open_log_file(dir, 0640, error));

    REQUIRE(link(victim.c_str(), (dir + "/hard.log").c_str()) == 0);
    CHECK_FALSE(open_log_file(dir + "/hard.log", 0640, error));
    CHECK(error == dir + "/hard.log has 2 hard links; it must have no other name");
    CHECK(contents(victim) == "precious\n");

    for (const char *name : {"new.log", "link.log", "dangling.log", "fifo.log", "hard.log", "victim"})
        unlink((dir + "/" + name).c_str());
    rmdir(dir.c_str());
}

TEST_CASE("a private key open to group or others is named with the fix")
{
    char path[] = "/tmp/clsgw-unit-key-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    CHECK(private_key_mode_problem(path) == ""); // mkstemp makes it 0600
    chmod(path, 0400);
    CHECK(private_key_mode_problem(path) == "");
    chmod(path, 0640);
    std::string p = path;
    CHECK(private_key_mode_problem(p) ==
          "key " + p + " is accessible to group or others (mode 0640); make it private: chmod 0600 " + p);
    chmod(path, 0602);
    CHECK(private_key_mode_problem(path).find("(mode 0602)") != std::string::npos);
    unlink(path);
}
