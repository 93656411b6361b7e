"""clsgw-hanscan, the TR-03116-3 HAN scanner: against clsgw in both directions (every item passes), and
against OpenSSL and stunnel peers configured outside the profile (each mistake is the right FAIL)."""
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time

from harness import Service, SkipTest, TestServer, free_port, program, recv_all, recv_exact, scenario, wait_until

ITEMS = ["TLS_1.2", "ECC", "PFS", "CLIENT_CERT", "SERVER_CERT", "NO_COMPRESSION", "NO_TRUNC_HMAC", "RANDOM_TIME",
         "DURATION", "NO_RENEGOTIATION", "ENC_THEN_MAC", "EXT_MASTER_SECRET", "SESSION_ID", "SESSION_TICKET",
         "CHECK_CERTS"]
PROFILE_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA256:"
                   "ECDHE-ECDSA-AES256-SHA384")
PROFILE_GROUPS = "brainpoolP256r1:brainpoolP384r1:brainpoolP512r1:prime256v1:secp384r1"


def scan_server(env, port, *extra, timeout=180):
    """clsgw-hanscan server against 127.0.0.1:port as the SMGW (smgw identity), trusting the device's certificate."""
    r = subprocess.run([*program("clsgw-hanscan"), "server", f"127.0.0.1:{port}", "--cert", env.path("smgw.crt"),
                        "--key", env.path("smgw.key"), "--trust", env.path("device.crt"), "--json",
                        "--renegotiation-wait", "15s", *extra],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode in (0, 1, 2), (r.returncode, r.stderr)
    report = json.loads(r.stdout)
    report["status"] = r.returncode
    return report


def items(report):
    return {i["item"]: i for i in report["items"]}


def evidence(report, item):
    return " | ".join(e["text"] for e in items(report)[item]["evidence"])


def failed(report):
    return sorted(i["item"] for i in report["items"] if i["result"] == "FAIL")


def assert_only_failures(report, *expected):
    assert report["status"] == (1 if expected else 0), json.dumps(report, indent=1)
    assert failed(report) == sorted(expected), json.dumps(report, indent=1)


def test_server_scan_of_clsgw_inbound_passes_every_item(env):
    """server mode against clsgw's inbound listener: every item PASS or INFO, exit 0, the items of
    docs/conformance.md in its order"""
    service = Service("echo")
    port = free_port()
    env.start_clsgwd(env.write_config(None, {"in": {"direction": "inbound", "listen": f"127.0.0.1:{port}",
                                                    "forward": f"127.0.0.1:{service.port}"}}))
    report = scan_server(env, port)
    assert_only_failures(report)
    assert [i["item"] for i in report["items"]] == ITEMS
    result = {k: v["result"] for k, v in items(report).items()}
    for item in ("TLS_1.2", "ECC", "PFS", "CLIENT_CERT", "SERVER_CERT", "NO_COMPRESSION", "NO_TRUNC_HMAC",
                 "RANDOM_TIME", "NO_RENEGOTIATION", "ENC_THEN_MAC", "EXT_MASTER_SECRET", "SESSION_ID", "CHECK_CERTS"):
        assert result[item] == "PASS", (item, evidence(report, item))
    assert "TLSv1.3 refused" in evidence(report, "TLS_1.2") and "TLSv1.1 refused" in evidence(report, "TLS_1.2")
    assert "secure renegotiation refused with a warning no_renegotiation" in evidence(report, "NO_RENEGOTIATION")
    assert "expired SMGW certificate (same key and subject) refused: alert certificate_expired" in \
        evidence(report, "CHECK_CERTS")
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=cert_expired ")
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=cert_untrusted ")
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=no_client_certificate ")
    # the text form: one line per item in the same order, then the result
    r = subprocess.run([*program("clsgw-hanscan"), "server", f"127.0.0.1:{port}", "--cert", env.path("smgw.crt"),
                        "--key", env.path("smgw.key"), "--trust", env.path("device.crt")],
                       capture_output=True, text=True, timeout=180)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and [l.split()[0] for l in lines[:15]] == ITEMS, r.stdout
    assert lines[-1].startswith("result: every item passes"), r.stdout
    assert service.accepts >= 1  # the trusted handshakes reached the service


def test_clsgw_refusals_reach_the_scanner_whole_not_as_resets(env):
    """ten server scans of clsgw: an untrusted and an expired client certificate are refused with clsgw's
    fatal alert, and a handshake without one with an orderly close (mbedTLS sends no alert there), never
    with a reset: the worker half-closes after its alert and reads what the SMGW still sends, instead of
    closing with it unread (which makes Linux send a reset that can overtake the alert)"""
    service = Service("echo")
    port = free_port()
    env.start_clsgwd(env.write_config(None, {"in": {"direction": "inbound", "listen": f"127.0.0.1:{port}",
                                                    "forward": f"127.0.0.1:{service.port}"}}))
    expected = ["a handshake without a client certificate refused: closed by the device",
                "an untrusted SMGW certificate (self-signed, unknown key) refused: alert unknown_ca from the device",
                "an expired SMGW certificate (same key and subject) refused: alert certificate_expired from the device"]
    for scan in range(10):
        report = scan_server(env, port)
        assert_only_failures(report)
        refusals = [e["text"] for item in ("CLIENT_CERT", "CHECK_CERTS") for e in items(report)[item]["evidence"]
                    if " refused: " in e["text"]]
        assert refusals == expected, (scan, refusals)


def test_server_scan_sends_server_name(env):
    """server mode against a clsgw listener whose one channel has a server_name and no default: without
    --server-name the profile's hello is refused (unrecognized_name, exit 2); with it every item passes,
    and clsgw routed the scanner's handshakes by that name"""
    service = Service("echo")
    port = free_port()
    env.start_clsgwd(env.write_config(None, {"named": {"direction": "inbound", "listen": f"127.0.0.1:{port}",
                                                       "server_name": "meter.device",
                                                       "forward": f"127.0.0.1:{service.port}"}}))
    report = scan_server(env, port)
    assert report["status"] == 2 and "unrecognized_name" in report["reason"], report
    report = scan_server(env, port, "--server-name", "meter.device")
    assert_only_failures(report)
    assert items(report)["NO_RENEGOTIATION"]["result"] == "PASS", evidence(report, "NO_RENEGOTIATION")
    env.clsgwd.wait_log(r"channel closed .*name=named .*server_name=meter.device .*tls=TLSv1.2 ")
    env.clsgwd.wait_log(r"channel closed .*name=named .*reason=cert_untrusted server_name=meter.device ")
    assert service.accepts >= 1


# --- OpenSSL s_server as the device, configured outside the profile in one way each ------------

def device_server(env, *args, identity="device"):
    """OpenSSL s_server as a device's HAN TLS server; the profile unless args change it."""
    port = free_port()
    defaults = {"-tls1_2": [], "-cipher": [PROFILE_CIPHERS], "-groups": [PROFILE_GROUPS],
                "-Verify": ["1"], "-verify_return_error": []}
    argv = ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", env.path(f"{identity}.crt"),
            "-key", env.path(f"{identity}.key"), "-CAfile", env.path("smgw.crt"), "-rev"]
    drop = {a for a in args if a.startswith("no:")}
    for flag, values in defaults.items():
        if f"no:{flag}" not in drop and flag not in args:
            argv += [flag, *values]
    argv += [a for a in args if not a.startswith("no:")]
    server = env.start(f"s_server-{len(env.processes)}", argv)
    server.wait_log("ACCEPT")
    return port


@scenario("OpenSSL 3.0 s_server", "hanscan server", "the profile: every item passes")
def test_server_scan_of_openssl_on_the_profile_passes(env):
    """server mode against OpenSSL s_server on the profile: no item fails"""
    report = scan_server(env, device_server(env))
    assert_only_failures(report)
    assert "resumed by session ticket" in evidence(report, "SESSION_TICKET")
    assert "ticket lifetime hint 7200 s" in evidence(report, "DURATION")



def test_server_scan_does_not_claim_a_key_usage_the_certificate_lacks(env):
    """OpenSSL s_server on the profile with a device certificate that has no keyUsage extension (openssl req's
    own): SERVER_CERT says so instead of naming digitalSignature; the clsgwctl-made one names it"""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:brainpoolP256r1",
                    "-sha256", "-nodes", "-keyout", env.path("plain.key"), "-out", env.path("plain.crt"), "-days", "30",
                    "-subj", "/CN=plain-device"], check=True, capture_output=True)
    shutil.copy(env.path("device.crt"), env.path("clsgwctl-device.crt"))
    shutil.copy(env.path("plain.crt"), env.path("device.crt"))  # --trust
    report = scan_server(env, device_server(env, identity="plain"))
    assert_only_failures(report)
    text = evidence(report, "SERVER_CERT")
    assert "no keyUsage extension (any usage)" in text and "digitalSignature" not in text, text
    shutil.copy(env.path("clsgwctl-device.crt"), env.path("device.crt"))
    report = scan_server(env, device_server(env))
    assert "ECDSA with SHA256, valid " in evidence(report, "SERVER_CERT")
    assert ", digitalSignature" in evidence(report, "SERVER_CERT")

def test_server_scan_names_a_device_that_asks_for_no_client_certificate(env):
    """OpenSSL s_server without -Verify: CLIENT_CERT fails (no CertificateRequest, a handshake without
    certificate completes), and so does CHECK_CERTS (any certificate is taken)"""
    report = scan_server(env, device_server(env, "no:-Verify", "no:-verify_return_error"))
    assert_only_failures(report, "CLIENT_CERT", "CHECK_CERTS")
    assert "no CertificateRequest" in evidence(report, "CLIENT_CERT")
    assert "without a client certificate accepted" in evidence(report, "CLIENT_CERT")


def test_server_scan_names_a_device_that_accepts_any_certificate(env):
    """OpenSSL s_server -Verify 1 without -verify_return_error: CHECK_CERTS fails for the untrusted and
    the expired SMGW certificate; CLIENT_CERT still passes"""
    report = scan_server(env, device_server(env, "no:-verify_return_error"))
    assert_only_failures(report, "CHECK_CERTS")
    text = evidence(report, "CHECK_CERTS")
    assert "untrusted SMGW certificate (self-signed, unknown key) accepted" in text, text
    assert "expired SMGW certificate (same key and subject) accepted" in text, text


def test_server_scan_names_a_device_that_allows_tls13(env):
    """OpenSSL s_server without -tls1_2 (a P-256 device certificate, which TLS 1.3 can use): TLS_1.2 fails"""
    env.make_identity("device-p256", "CN=device-p256", curve="secp256r1")
    shutil.copy(env.path("device-p256.crt"), env.path("device.crt"))
    report = scan_server(env, device_server(env, "no:-tls1_2", identity="device-p256"))
    assert_only_failures(report, "TLS_1.2")
    assert "TLSv1.3 accepted" in evidence(report, "TLS_1.2")


def test_server_scan_names_cbc_sha1_suites(env):
    """OpenSSL s_server that also allows ECDHE-ECDSA-AES128-SHA and -AES256-SHA: ECC fails naming both"""
    report = scan_server(env, device_server(env, "-cipher", PROFILE_CIPHERS + ":ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"))
    assert_only_failures(report, "ECC")
    text = evidence(report, "ECC")
    assert "suite outside the profile accepted: C0,09 ECDHE-ECDSA-AES128-SHA" in text, text
    assert "suite outside the profile accepted: C0,0A ECDHE-ECDSA-AES256-SHA" in text, text


def test_server_scan_names_rsa_suites(env):
    """OpenSSL s_server with a second, RSA certificate and ECDHE-RSA and RSA key exchange suites allowed:
    ECC fails for each, PFS for the static RSA key exchange"""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", env.path("rsa.key"),
                    "-out", env.path("rsa.crt"), "-days", "30", "-subj", "/CN=rsa-device"], check=True,
                   capture_output=True)
    report = scan_server(env, device_server(env, "-dcert", env.path("rsa.crt"), "-dkey", env.path("rsa.key"),
                                            "-cipher", PROFILE_CIPHERS + ":ECDHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256"))
    assert_only_failures(report, "ECC", "PFS")
    assert "C0,2F ECDHE-RSA-AES128-GCM-SHA256" in evidence(report, "ECC")
    assert "suite without forward secrecy accepted: 00,9C AES128-GCM-SHA256" in evidence(report, "PFS")


def test_server_scan_names_a_device_that_renegotiates(env):
    """OpenSSL s_server -client_renegotiation: NO_RENEGOTIATION fails (it answers the renegotiating
    ClientHello with a ServerHello inside the session)"""
    report = scan_server(env, device_server(env, "-client_renegotiation"))
    assert_only_failures(report, "NO_RENEGOTIATION")
    assert "secure renegotiation: renegotiated: answered with a ServerHello" in evidence(report, "NO_RENEGOTIATION")


def test_server_scan_names_groups_outside_the_profile(env):
    """OpenSSL s_server that prefers X25519 and P-521 over the profile's groups: ECC fails naming both"""
    report = scan_server(env, device_server(env, "-groups", "X25519:P-521:" + PROFILE_GROUPS))
    assert_only_failures(report, "ECC")
    text = evidence(report, "ECC")
    assert "group outside the profile accepted: x25519" in text and "accepted: secp521r1" in text, text


def test_server_scan_cannot_test_what_is_not_there(env):
    """nothing listening: exit 2 and the reason; a TLS server that refuses the profile outright: exit 2"""
    report = scan_server(env, free_port())
    assert report["status"] == 2 and report["result"] == "could_not_test"
    assert "Connection refused" in report["reason"], report
    report = scan_server(env, device_server(env, "-cipher", "ECDHE-ECDSA-AES128-SHA", "-tls1_2"))
    assert report["status"] == 2 and "does not answer a ClientHello of the profile" in report["reason"], report


def stunnel_conf(env, name, service, extra):
    """A stunnel configuration for the device's side: its certificate, TLS 1.2, the profile's curves and suites."""
    conf = env.path(name)
    lines = ["foreground = yes", "pid =", "debug = 5", "[device]", *service, f"cert = {env.path('device.crt')}",
             f"key = {env.path('device.key')}", "sslVersionMin = TLSv1.2", "sslVersionMax = TLSv1.2",
             f"curves = {PROFILE_GROUPS}", f"ciphers = {PROFILE_CIPHERS}"]
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n" + extra)
    return conf


def stunnel_device(env, extra=""):
    """stunnel as a device's HAN TLS server in front of an echo service."""
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if not stunnel:
        raise SkipTest("stunnel4 is missing (make deps installs it)")
    service = Service("echo")
    port = free_port()
    conf = stunnel_conf(env, "stunnel.conf", [f"accept = 127.0.0.1:{port}", f"connect = 127.0.0.1:{service.port}"],
                        extra)
    env.start("stunnel", [stunnel, conf]).wait_log("Configuration successful")
    return port


@scenario("stunnel 5.68", "hanscan server", "device server on the profile, and without verifyPeer")
def test_server_scan_of_stunnel(env):
    """stunnel as the device's server: on the profile (verifyPeer, CAfile, renegotiation = no) no item fails;
    with its default verifyPeer = no, CLIENT_CERT and CHECK_CERTS fail"""
    report = scan_server(env, stunnel_device(env, f"CAfile = {env.path('smgw.crt')}\nverifyPeer = yes\n"
                                                  "renegotiation = no\n"))
    assert_only_failures(report)
    report = scan_server(env, stunnel_device(env))
    assert_only_failures(report, "CLIENT_CERT", "CHECK_CERTS")


# --- client mode: the device's HAN TLS client connects to clsgw-hanscan -------------------------

class ClientScan:
    """clsgw-hanscan client listening for the device; result() waits for its report."""

    def __init__(self, env, connections=4, *extra):
        self.port = free_port()
        self.proc = subprocess.Popen([*program("clsgw-hanscan"), "client", "--listen", f"127.0.0.1:{self.port}",
                                      "--cert", env.path("smgw.crt"), "--key", env.path("smgw.key"),
                                      "--trust", env.path("device.crt"), "--connections", str(connections),
                                      "--json", "--accept-timeout", "30s", "--renegotiation-wait", "15s", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: can_connect(self.port), 10, "clsgw-hanscan to listen")

    def result(self, timeout=120):
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode in (0, 1, 2), (self.proc.returncode, err)
        report = json.loads(out)
        report["status"] = self.proc.returncode
        return report


def can_connect(port):
    """True once something listens on port (checked through /proc, without connecting: every connection
    to the scanner counts)."""
    want = f":{port:04X} "
    with open("/proc/net/tcp") as f:
        return any(want in line and line.split()[3] == "0A" for line in f.readlines()[1:])


def device_client(env, port, *args, identity="device"):
    """OpenSSL s_client as a device's HAN TLS client; the profile unless args change it. It stays connected
    until the scanner ends the session (stdin kept open)."""
    defaults = {"-tls1_2": [], "-cipher": [PROFILE_CIPHERS], "-groups": [PROFILE_GROUPS],
                "-sigalgs": ["ECDSA+SHA512:ECDSA+SHA384:ECDSA+SHA256"], "-verify_return_error": [],
                "-cert": [env.path(f"{identity}.crt")], "-key": [env.path(f"{identity}.key")]}
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", env.path("smgw.crt")]
    drop = {a for a in args if a.startswith("no:")}
    for flag, values in defaults.items():
        if f"no:{flag}" not in drop and flag not in args:
            argv += [flag, *values]
    argv += [a for a in args if not a.startswith("no:")]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def scan_openssl_client(env, *args, connections=4):
    scan = ClientScan(env, connections)
    for _ in range(connections):
        device_client(env, scan.port, *args)
    return scan.result()


@scenario("OpenSSL 3.0 s_client", "hanscan client", "the profile, -no_renegotiation: every item passes")
def test_client_scan_of_openssl_on_the_profile_passes(env):
    """client mode against OpenSSL s_client on the profile (renegotiation off): no item fails"""
    report = scan_openssl_client(env, "-no_renegotiation")
    assert_only_failures(report)
    assert "untrusted SMGW certificate (self-signed, unknown key) refused" in evidence(report, "CHECK_CERTS")
    assert "expired SMGW certificate" in evidence(report, "CHECK_CERTS")
    assert "none of 4 ClientHello.random starts with the clock" in evidence(report, "RANDOM_TIME")


def test_client_scan_names_a_device_that_renegotiates(env):
    """client mode: OpenSSL s_client answers a HelloRequest with a new ClientHello: NO_RENEGOTIATION fails"""
    report = scan_openssl_client(env)
    assert_only_failures(report, "NO_RENEGOTIATION")
    assert "renegotiated: answered with a ClientHello" in evidence(report, "NO_RENEGOTIATION")


def test_client_scan_names_a_device_that_accepts_any_certificate(env):
    """client mode: OpenSSL s_client without -verify_return_error takes the untrusted and the expired SMGW
    certificate: CHECK_CERTS fails for both"""
    report = scan_openssl_client(env, "-no_renegotiation", "no:-verify_return_error")
    assert_only_failures(report, "CHECK_CERTS")
    assert "untrusted SMGW certificate (self-signed, unknown key) accepted" in evidence(report, "CHECK_CERTS")
    assert "expired SMGW certificate (same key and subject) accepted" in evidence(report, "CHECK_CERTS")


def test_client_scan_names_a_device_without_certificate(env):
    """client mode: OpenSSL s_client without -cert: CLIENT_CERT fails"""
    report = scan_openssl_client(env, "-no_renegotiation", "no:-cert", "no:-key")
    assert_only_failures(report, "CLIENT_CERT")
    assert "no client certificate presented" in evidence(report, "CLIENT_CERT")


def test_client_scan_names_tls13_and_suites_outside_the_profile(env):
    """client mode: s_client allowing TLS 1.3 fails TLS_1.2; one offering a CBC-SHA1 and an RSA suite fails ECC
    (and PFS for the RSA key exchange)"""
    report = scan_openssl_client(env, "-no_renegotiation", "no:-tls1_2", connections=3)
    assert_only_failures(report, "TLS_1.2")
    assert "supported_versions offers TLSv1.3" in evidence(report, "TLS_1.2")
    # OpenSSL leaves RSA suites out of a hello whose signature algorithms are ECDSA only
    report = scan_openssl_client(env, "-no_renegotiation", "no:-sigalgs", "-cipher",
                                 PROFILE_CIPHERS + ":ECDHE-ECDSA-AES128-SHA:AES128-GCM-SHA256", connections=3)
    assert_only_failures(report, "ECC", "PFS")
    assert "signature algorithms outside the profile offered: " in evidence(report, "ECC")
    assert "suite outside the profile offered: C0,09 ECDHE-ECDSA-AES128-SHA" in evidence(report, "ECC")
    assert "suite without forward secrecy offered: 00,9C AES128-GCM-SHA256" in evidence(report, "PFS")


def test_client_scan_of_clsgw_outbound_passes_every_item(env):
    """client mode against clsgw's outbound channel pointed at the scanner: every item PASS or INFO, exit 0;
    the device's later connection resumes with the scanner's ticket"""
    scan = ClientScan(env, 5)
    app_port = free_port()
    env.start_clsgwd(env.write_config(scan.port, {"app": {"listen": f"127.0.0.1:{app_port}", "ingress": "static",
                                                          "target": "emt.example:443", "proxy": "sni"}}))
    for _ in range(5):
        app = socket.create_connection(("127.0.0.1", app_port))
        assert recv_all(app, timeout=60) == b""  # the scanner ends every channel
        app.close()
    report = scan.result()
    assert_only_failures(report)
    for item in ("TLS_1.2", "ECC", "PFS", "CLIENT_CERT", "NO_COMPRESSION", "NO_TRUNC_HMAC", "RANDOM_TIME",
                 "NO_RENEGOTIATION", "ENC_THEN_MAC", "EXT_MASTER_SECRET", "CHECK_CERTS", "SESSION_TICKET"):
        assert items(report)[item]["result"] == "PASS", (item, evidence(report, item))
    assert "HelloRequest refused with a warning no_renegotiation alert" in evidence(report, "NO_RENEGOTIATION")
    env.clsgwd.wait_log(r"TLS renegotiation attempt refused")
    env.clsgwd.wait_log(r"channel closed id=2 .*outcome=failed reason=cert_untrusted ")
    env.clsgwd.wait_log(r"channel closed id=3 .*outcome=failed reason=cert_expired ")


@scenario("stunnel 5.68", "hanscan client", "device client: its defaults, then ECDSA signatures and NoRenegotiation")
def test_client_scan_of_stunnel(env):
    """client mode against stunnel as the device's TLS client (client = yes, verifyPeer, the profile's curves
    and suites): with its defaults ECC fails naming the RSA signature algorithms and NO_RENEGOTIATION fails (it
    answers a HelloRequest); with OpenSSL's SignatureAlgorithms set to
    ECDSA with SHA-2 and its Options NoRenegotiation no item fails"""
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if not stunnel:
        raise SkipTest("stunnel4 is missing (make deps installs it)")
    for extra in ("", "config = SignatureAlgorithms:ECDSA+SHA512:ECDSA+SHA384:ECDSA+SHA256\n"
                  "config = Options:NoRenegotiation\n"):
        scan = ClientScan(env, 3)
        port = free_port()
        conf = stunnel_conf(env, f"stunnel-client-{scan.port}.conf",
                            ["client = yes", f"accept = 127.0.0.1:{port}", f"connect = 127.0.0.1:{scan.port}",
                             f"CAfile = {env.path('smgw.crt')}", "verifyPeer = yes"], extra)
        tunnel = env.start(f"stunnel-{scan.port}", [stunnel, conf])
        tunnel.wait_log("Configuration successful")
        for _ in range(3):
            app = socket.create_connection(("127.0.0.1", port))
            app.sendall(b"x")  # stunnel connects on to the SMGW when the app connects
            try:
                recv_all(app, timeout=60)
            except ConnectionResetError:
                pass  # stunnel resets the app when the SMGW refuses; the scan's report says what happened
            app.close()
        report = scan.result()
        tunnel.stop()
        if extra:
            assert_only_failures(report)
        else:
            assert_only_failures(report, "ECC", "NO_RENEGOTIATION")
            assert "signature algorithms outside the profile offered: " in evidence(report, "ECC")
            assert "rsa_pkcs1_sha256" in evidence(report, "ECC")
            assert "renegotiated: answered with a ClientHello" in evidence(report, "NO_RENEGOTIATION")


# --- RANDOM_TIME: peers that put the clock into their hello random (RFC 5246's gmt_unix_time) ----

def clocked_random():
    return struct.pack(">I", int(time.time())) + os.urandom(28)


class ClockServer(TestServer):
    """A TLS 1.2 server that answers every ClientHello with a ServerHello whose random starts with the
    clock (C0,2B, extended master secret), and hangs up."""

    def handle(self, conn):
        header = recv_exact(conn, 5)
        if len(header) < 5:
            return
        recv_exact(conn, struct.unpack(">H", header[3:5])[0])
        ext = struct.pack(">HH", 23, 0)
        body = b"\x03\x03" + clocked_random() + b"\x00" + b"\xc0\x2b" + b"\x00" + struct.pack(">H", len(ext)) + ext
        message = b"\x02" + struct.pack(">I", len(body))[1:] + body
        conn.sendall(b"\x16\x03\x03" + struct.pack(">H", len(message)) + message)


def test_random_time_fails_for_a_server_that_sends_the_clock(env):
    """server mode: a server whose ServerHello.random starts with the clock fails RANDOM_TIME (it cannot
    be tested any further: exit 2, and the JSON still carries what was judged)"""
    report = scan_server(env, ClockServer().port)
    assert report["status"] == 2
    assert items(report)["RANDOM_TIME"]["result"] == "FAIL", evidence(report, "RANDOM_TIME")
    assert re.search(r"^\d+ of \d+ ServerHello.random start with the clock", evidence(report, "RANDOM_TIME"))


def test_random_time_fails_for_a_client_that_sends_the_clock(env):
    """client mode: a client whose ClientHello.random starts with the clock, three times, fails RANDOM_TIME;
    as it never completes a handshake with the trusted SMGW certificate, the scan says it could not test the
    rest (exit 2: refusing the untrusted certificates proves nothing then)"""
    scan = ClientScan(env, 3)
    for _ in range(3):
        suites = b"\xc0\x2b\xc0\x2c"
        ext = struct.pack(">HH", 10, 4) + b"\x00\x02\x00\x1a" + struct.pack(">HH", 13, 4) + b"\x00\x02\x04\x03"
        body = (b"\x03\x03" + clocked_random() + b"\x00" + struct.pack(">H", len(suites)) + suites + b"\x01\x00" +
                struct.pack(">H", len(ext)) + ext)
        message = b"\x01" + struct.pack(">I", len(body))[1:] + body
        s = socket.create_connection(("127.0.0.1", scan.port))
        s.sendall(b"\x16\x03\x01" + struct.pack(">H", len(message)) + message)
        recv_exact(s, 5)  # the scanner's first answer; then this client hangs up
        s.close()
    report = scan.result()
    assert report["status"] == 2 and "the handshake with the SMGW certificate of --cert failed" in report["reason"]
    assert "3 of 3 ClientHello.random start with the clock" in evidence(report, "RANDOM_TIME")


class Silent(TestServer):
    """Accepts and never says a word, until the client leaves."""

    def handle(self, conn):
        conn.recv(65536)
        recv_all(conn, timeout=60)


def test_every_wait_has_a_deadline_named_when_it_fires(env):
    """a device that accepts and stays silent is reported as not answering within answer_timeout (500ms),
    and a device that never connects in client mode within accept_timeout (1s): exit 2 both times"""
    started = time.monotonic()
    report = scan_server(env, Silent().port, "--answer-timeout", "500ms")
    assert report["status"] == 2 and "no answer within answer_timeout (500ms)" in report["reason"], report
    assert time.monotonic() - started < 10
    scan = ClientScan(env, 3, "--accept-timeout", "1s")
    report = scan.result(timeout=30)
    assert report["status"] == 2 and report["reason"] == "0 of 3 connections came within accept_timeout (1s)", report


class Trickle(TestServer):
    """Accepts and sends the start of a handshake record one byte every 100ms, never completing it."""

    def handle(self, conn):
        for byte in b"\x16\x03\x03\x40\x00" + b"\x02" * 4096:
            conn.sendall(bytes([byte]))
            time.sleep(0.1)  # the trickle itself, not a synchronisation


def test_a_peer_that_trickles_bytes_is_given_up_at_the_named_deadline(env):
    """server mode: a device that keeps sending one byte at a time without ever completing a record is
    reported as not answering within answer_timeout (1s), and the scan ends soon after: exit 2"""
    started = time.monotonic()
    report = scan_server(env, Trickle().port, "--answer-timeout", "1s")
    assert report["status"] == 2 and "no answer within answer_timeout (1s)" in report["reason"], report
    assert time.monotonic() - started < 10


class AnswersEveryVersion(TestServer):
    """Answers every ClientHello, whatever version it offers, with a TLS 1.2 ServerHello (C0,2B, extended
    master secret) and ServerHelloDone, and hangs up."""

    def handle(self, conn):
        header = recv_exact(conn, 5)
        recv_exact(conn, struct.unpack(">H", header[3:5])[0])
        ext = struct.pack(">HH", 23, 0)
        body = b"\x03\x03" + os.urandom(32) + b"\x00" + b"\xc0\x2b" + b"\x00" + struct.pack(">H", len(ext)) + ext
        messages = b"\x02" + struct.pack(">I", len(body))[1:] + body + b"\x0e\x00\x00\x00"
        conn.sendall(b"\x16\x03\x03" + struct.pack(">H", len(messages)) + messages)
        recv_all(conn, timeout=10)


def test_a_server_that_answers_old_hellos_with_tls12_does_not_refuse_them(env):
    """server mode: a server that answers TLS 1.0 and 1.1 hellos with a TLS 1.2 ServerHello (above the client's
    version, RFC 5246 E.1) instead of refusing them fails TLS_1.2 for both, naming its answer"""
    report = scan_server(env, AnswersEveryVersion().port)
    text = evidence(report, "TLS_1.2")
    assert items(report)["TLS_1.2"]["result"] == "FAIL", text
    for version in ("TLSv1.0", "TLSv1.1"):
        assert f"{version} hello not refused: answered with ServerHello TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256" in text, text


class GoneAfterOne(AnswersEveryVersion):
    """Answers one ClientHello as AnswersEveryVersion does and then stops listening: every later probe finds
    nothing to connect to."""

    def handle(self, conn):
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; no connection is queued after this
        self.sock.close()
        super().handle(conn)


def test_a_device_that_goes_away_during_the_scan_is_not_judged_by_its_absence(env):
    """server mode: a device that answers the first hello and then takes no connection cannot be tested
    (exit 2, the reason names the failed connect); its absence is not taken for refusing TLS 1.0,
    1.1 and 1.3 or the suites outside the profile"""
    server = GoneAfterOne()
    report = scan_server(env, server.port, "--answer-timeout", "2s")
    assert report["status"] == 2 and report["result"] == "could_not_test", report
    assert report["reason"].startswith("the device stopped taking connections during the scan: connect to "), report
    assert "Connection refused" in report["reason"], report
    assert server.accepts == 1


def test_files_that_cannot_be_used_are_named(env):
    """a missing --trust, --cert or --key file, and a key that is not the certificate's: exit 2 with the
    file and the reason, in the text and the JSON form"""
    env.make_identity("other", "CN=other")
    missing = env.path("missing.crt")
    cases = [
        (["--cert", env.path("smgw.crt"), "--key", env.path("smgw.key"), "--trust", missing],
         f"--trust {missing}: No such file or directory"),
        (["--cert", missing, "--key", env.path("smgw.key"), "--trust", env.path("device.crt")],
         f"{missing}: No such file or directory"),
        (["--cert", env.path("smgw.crt"), "--key", missing, "--trust", env.path("device.crt")],
         f"{missing}: No such file or directory"),
        (["--cert", env.path("smgw.crt"), "--key", env.path("other.key"), "--trust", env.path("device.crt")],
         "certificate and key do not belong together"),
    ]
    for files, reason in cases:
        for mode in (["server", f"127.0.0.1:{free_port()}"], ["client", "--listen", f"127.0.0.1:{free_port()}"]):
            r = subprocess.run([*program("clsgw-hanscan"), *mode, *files, "--json"], capture_output=True, text=True,
                               timeout=30)
            assert r.returncode == 2 and reason in json.loads(r.stdout)["reason"], (mode, files, r.stdout)
            r = subprocess.run([*program("clsgw-hanscan"), *mode, *files], capture_output=True, text=True, timeout=30)
            assert r.returncode == 2 and reason in r.stdout.splitlines()[-1], (mode, files, r.stdout)


def test_a_timeout_longer_than_a_day_is_refused(env):
    """every timeout option takes 1ms to 24h: 25h is refused at once with the option and its range (exit 2,
    usage), as a wait that long would overflow poll()'s timeout and never end"""
    for option in ("--connect-timeout", "--answer-timeout", "--handshake-timeout", "--renegotiation-wait",
                   "--accept-timeout"):
        r = subprocess.run([*program("clsgw-hanscan"), "server", f"127.0.0.1:{free_port()}", "--cert",
                            env.path("smgw.crt"), "--key", env.path("smgw.key"), "--trust", env.path("device.crt"),
                            option, "25h"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and f"{option} 25h: not understood (1ms to 24h)" in r.stderr, (option, r.stderr)
        assert r.stdout == ""


def test_client_scan_names_a_connection_it_cannot_accept(env):
    """client mode with no file descriptor left for the device's connection (RLIMIT_NOFILE 4: the listener
    is the last one): exit 2 at once, naming the failed accept, instead of spinning until accept_timeout and
    then claiming that no connection came"""
    if not shutil.which("prlimit"):
        raise SkipTest("prlimit (util-linux) is missing")
    if os.environ.get("CLSGW_SANITIZED"):
        # UBSan's vptr check finds out whether memory is readable by writing it into a pipe(2):
        # with no descriptor left, every such check reports a false "invalid vptr" and ends it.
        raise SkipTest("UBSan needs two free descriptors for its vptr check; this test leaves none")
    port = free_port()
    scan = subprocess.Popen(["prlimit", "--nofile=4", *program("clsgw-hanscan"), "client", "--listen",
                             f"127.0.0.1:{port}", "--cert", env.path("smgw.crt"), "--key", env.path("smgw.key"),
                             "--trust", env.path("device.crt"), "--connections", "3", "--accept-timeout", "60s",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: can_connect(port), 10, "clsgw-hanscan to listen")
    device = socket.create_connection(("127.0.0.1", port))
    started = time.monotonic()
    try:
        out, err = scan.communicate(timeout=30)
    finally:
        device.close()
        if scan.poll() is None:
            scan.kill()
            scan.wait()
    assert out, f"no report (exit {scan.returncode}): {err}"
    report = json.loads(out)
    assert scan.returncode == 2, (scan.returncode, err)
    assert report["reason"] == "cannot accept the device's connection: Too many open files", report
    assert time.monotonic() - started < 10
