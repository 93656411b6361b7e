// clsgwctl: the operator's tool. This version has the identity commands: key generation,
// self-signed or CA-issued certificates, and the SHA-256 fingerprint a gateway administrator pins.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "../../lib/pki.hpp"
#include "../../lib/util.hpp"

using namespace clsgw;

namespace {

int usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: clsgwctl key generate [--curve CURVE] --out FILE\n"
            "       clsgwctl cert self-sign --key FILE --subject DN [--days N] [--ca] [--out FILE]\n"
            "       clsgwctl cert issue --ca-cert FILE --ca-key FILE --key FILE --subject DN [--days N] [--ca]\n"
            "                           [--valid-from-days N] [--out FILE]\n"
            "       clsgwctl fingerprint FILE\n"
            "curves: brainpoolP256r1 (default), brainpoolP384r1, brainpoolP512r1, secp256r1, secp384r1\n");
    return code;
}

int fail(const std::string &message)
{
    fprintf(stderr, "clsgwctl: %s\n", message.c_str());
    return 1;
}

// --name value pairs and --flags after the subcommand words.
struct arguments {
    std::map<std::string, std::string> values;
    std::map<std::string, bool> flags;
    std::string error;
};

arguments parse_arguments(int argc, char **argv, int start, const std::vector<std::string> &flag_names)
{
    arguments a;
    for (int i = start; i < argc; i++) {
        std::string word = argv[i];
        if (word.rfind("--", 0) != 0) {
            a.error = "unexpected argument '" + word + "'";
            return a;
        }
        std::string name = word.substr(2);
        bool is_flag = false;
        for (const auto &f : flag_names)
            is_flag |= f == name;
        if (is_flag) {
            a.flags[name] = true;
        } else if (i + 1 < argc) {
            a.values[name] = argv[++i];
        } else {
            a.error = "option " + word + " needs a value";
            return a;
        }
    }
    return a;
}

// Writes a new file; never replaces an existing one (a key lost is an identity lost).
int write_new_file(const std::string &path, const std::string &text, mode_t mode)
{
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return fail("cannot create " + path + ": " + errno_text(errno) + (errno == EEXIST ? " (not replaced)" : ""));
    bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ok = fsync(fd) == 0 && ok;
    close(fd);
    if (!ok)
        return fail("cannot write " + path + ": " + errno_text(errno));
    return 0;
}

int output(const arguments &a, const std::string &text, mode_t mode)
{
    auto it = a.values.find("out");
    if (it == a.values.end()) {
        fputs(text.c_str(), stdout);
        return 0;
    }
    return write_new_file(it->second, text, mode);
}

std::optional<std::string> read_input(const arguments &a, const char *name, std::string &error)
{
    auto it = a.values.find(name);
    if (it == a.values.end()) {
        error = std::string("--") + name + " is required";
        return std::nullopt;
    }
    auto text = read_file(it->second, 64 * 1024);
    if (!text)
        error = "cannot read " + it->second + ": " + errno_text(errno);
    return text;
}

int key_generate(const arguments &a)
{
    if (!a.values.count("out"))
        return fail("key generate needs --out FILE (the key is never printed)");
    std::string curve = a.values.count("curve") ? a.values.at("curve") : "brainpoolP256r1";
    pki::result key = pki::generate_key(curve);
    if (!key.ok)
        return fail(key.error);
    return output(a, key.pem, 0600);
}

int cert_make(const arguments &a, bool self_signed)
{
    pki::cert_request req;
    std::string err;
    auto key = read_input(a, "key", err);
    if (!key)
        return fail(err);
    req.key_pem = *key;
    if (!a.values.count("subject"))
        return fail("--subject is required (for example CN=device-0001,O=Example)");
    req.subject = a.values.at("subject");
    req.is_ca = a.flags.count("ca") != 0;
    if (a.values.count("days")) {
        auto d = parse_uint(a.values.at("days"), 36500);
        if (!d || *d == 0)
            return fail("--days takes a number from 1 to 36500");
        req.days = static_cast<int>(*d);
    }
    if (a.values.count("valid-from-days")) {
        std::string v = a.values.at("valid-from-days");
        bool negative = !v.empty() && v[0] == '-';
        auto d = parse_uint(negative ? v.substr(1) : v, 36500);
        if (!d)
            return fail("--valid-from-days takes a whole number of days (negative: in the past)");
        req.valid_from_days = negative ? -static_cast<int>(*d) : static_cast<int>(*d);
    }
    if (!self_signed) {
        auto ca_cert = read_input(a, "ca-cert", err);
        auto ca_key = ca_cert ? read_input(a, "ca-key", err) : std::nullopt;
        if (!ca_cert || !ca_key)
            return fail(err);
        req.issuer_cert_pem = *ca_cert;
        req.issuer_key_pem = *ca_key;
    }
    pki::result cert = pki::make_certificate(req);
    if (!cert.ok)
        return fail(cert.error);
    return output(a, cert.pem, 0644);
}

int fingerprint(const char *path)
{
    auto text = read_file(path, 64 * 1024);
    if (!text)
        return fail(std::string("cannot read ") + path + ": " + errno_text(errno));
    std::string err;
    auto fp = pki::fingerprint_pem(*text, err);
    if (!fp)
        return fail(std::string(path) + ": " + err);
    printf("SHA256 %s\n", fp->c_str());
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(2);
    std::string cmd = argv[1];
    std::string sub = argc > 2 ? argv[2] : "";
    if (cmd == "-h" || cmd == "--help" || cmd == "help")
        return usage(0);
    if (cmd == "fingerprint")
        return argc == 3 ? fingerprint(argv[2]) : usage(2);
    if (cmd == "key" && sub == "generate") {
        arguments a = parse_arguments(argc, argv, 3, {});
        return a.error.empty() ? key_generate(a) : fail(a.error);
    }
    if (cmd == "cert" && (sub == "self-sign" || sub == "issue")) {
        arguments a = parse_arguments(argc, argv, 3, {"ca"});
        return a.error.empty() ? cert_make(a, sub == "self-sign") : fail(a.error);
    }
    return usage(2);
}
