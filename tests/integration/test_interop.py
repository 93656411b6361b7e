"""Foreign TLS peers play the SMGW: OpenSSL s_server and stunnel, on the HAN profile."""
import json
import os
import shutil
import socket
import subprocess
import threading

from harness import (TEST_BIN, Answerer, Service, SkipTest, TestServer, free_port, half_closed_request, recv_all,
                     recv_exact, scenario, sha256, socks5_connect, transfer, wait_until)

EMT = "emt.example"


def clsgwd_towards(env, smgw_port, proxy="sni"):
    port = free_port()
    env.start_clsgwd(env.write_config(smgw_port, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                                          "target": f"{EMT}:443", "proxy": proxy}}))
    return port


def start_s_server_smgw(env, port, groups, *extra, stdin=None):
    """OpenSSL s_server as the SMGW on port: TLS 1.2, one connection, the device's certificate required and
    checked; returns once it accepts"""
    server = env.start("s_server", ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1",
                                    "-cert", env.path("smgw.crt"), "-key", env.path("smgw.key"),
                                    "-Verify", "1", "-verify_return_error", "-CAfile", env.path("device.crt"),
                                    "-tls1_2", "-groups", groups, *extra], stdin=stdin)
    server.wait_log("ACCEPT")
    return server


@scenario("OpenSSL 3.0 s_server", "outbound", "SNI, brainpool, client certificate required")
def test_openssl_s_server_as_smgw(env):
    """OpenSSL s_server (TLS 1.2, brainpool, client certificate required) accepts clsgw as the device"""
    port = free_port()
    server = start_s_server_smgw(env, port, "brainpoolP384r1:brainpoolP256r1", "-serverpref",
                                 "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384", "-rev")
    app = socket.create_connection(("127.0.0.1", clsgwd_towards(env, port)))
    app.sendall(b"device says hello\n")
    app.settimeout(10)
    got = b""
    while b"\n" not in got:
        got += app.recv(100)
    assert got == b"olleh syas ecived\n"
    server.wait_log("Ciphersuite: ECDHE-ECDSA-AES256-GCM-SHA384")
    assert server.lines("Protocol version: TLSv1.2")
    assert server.lines("Peer certificate: CN = device-test")
    assert server.lines("Verification: OK")
    app.close()
    env.clsgwd.wait_log(r"channel closed .*tls=TLSv1.2 suite=TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384 "
                        r"group=brainpoolP384r1")


@scenario("stunnel 5.68", "outbound", "1 MiB each way, device certificate pinned")
def test_stunnel_as_smgw_carries_a_megabyte(env):
    """stunnel in server mode, pinning the device certificate, relays 1 MiB both ways through clsgw"""
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    assert stunnel, "stunnel4 is missing"
    echo = env.start_echo()
    port = free_port()
    server = env.start("stunnel", [stunnel, stunnel_conf(env, port, echo, curves="brainpoolP256r1")])
    server.wait_log("Configuration successful")
    app = socket.create_connection(("127.0.0.1", clsgwd_towards(env, port)))
    payload = os.urandom(1 << 20)
    got = transfer(app, payload)
    assert sha256(got) == sha256(payload)
    env.clsgwd.wait_log(r"channel closed .*outcome=ok .*suite=TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256 "
                        r"group=brainpoolP256r1")


# --- half-close: TLS 1.2 has none, and these peers end the channel on close_notify -----------

REQUEST = b"GET /answer HTTP/1.0\r\n\r\n"


def stunnel_conf(env, port, connect, extra="", curves="brainpoolP256r1:brainpoolP384r1"):
    conf = env.path(f"stunnel-{port}.conf")
    with open(conf, "w") as f:
        f.write(f"""foreground = yes
pid =
debug = 5
[smgw]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{connect}
cert = {env.path('smgw.crt')}
key = {env.path('smgw.key')}
CAfile = {env.path('device.crt')}
verifyPeer = yes
sslVersionMin = TLSv1.2
sslVersionMax = TLSv1.2
curves = {curves}
ciphers = ECDHE-ECDSA-AES128-GCM-SHA256
{extra}""")
    return conf


def stunnel_with_microsocks(env):
    """stunnel (pinning the device certificate) in front of microsocks: a SMGW that takes SOCKS5 inside TLS."""
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    microsocks = shutil.which("microsocks")
    if not stunnel or not microsocks:
        raise SkipTest("stunnel4 or microsocks is missing (make deps installs them)")
    socks = free_port()
    env.start("microsocks", [microsocks, "-i", "127.0.0.1", "-p", str(socks)])
    wait_until(lambda: can_connect(socks), 10, "microsocks to listen")
    port = free_port()
    server = env.start("stunnel", [stunnel, stunnel_conf(env, port, socks)])
    server.wait_log("Configuration successful")
    return port


def can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@scenario("stunnel 5.68 + microsocks", "outbound", "half-close: request, FIN, later answer (SOCKS5 inside TLS)")
def test_half_close_answer_through_stunnel_and_microsocks(env):
    """half-close against stunnel + microsocks (SOCKS5 inside TLS): the app's request gets its answer"""
    emt = Answerer()
    smgw = stunnel_with_microsocks(env)
    port = free_port()
    env.start_clsgwd(env.write_config(smgw, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                                     "target": f"localhost:{emt.port}", "proxy": "socks5"}}))
    assert half_closed_request(port, REQUEST) == emt.answer
    env.clsgwd.wait_log(rf"channel closed .*outcome=ok reason=app_closed .*bytes_up={len(REQUEST)} "
                        rf"bytes_down={len(emt.answer)}")


@scenario("OpenSSL 3.0 s_server", "outbound", "half-close: request, FIN, later answer (SNI)")
def test_half_close_answer_from_openssl_s_server(env):
    """half-close against OpenSSL s_server (SNI): the answer written after the request still arrives"""
    smgw = free_port()
    server = start_s_server_smgw(env, smgw, "brainpoolP256r1:brainpoolP384r1", "-ign_eof", stdin=subprocess.PIPE)
    port = clsgwd_towards(env, smgw)
    answer = b"the answer, written after the request arrived\n"
    result = {}
    app = threading.Thread(target=lambda: result.setdefault("got", half_closed_request(port, REQUEST)))
    app.start()
    server.wait_log("GET /answer")
    server.proc.stdin.write(answer)
    server.proc.stdin.flush()
    app.join(30)
    assert result.get("got") == answer
    env.clsgwd.wait_log(rf"channel closed .*outcome=ok reason=app_closed .*bytes_down={len(answer)}")


# --- SOCKS5 ingress as real clients use it ---------------------------------------------------

EMT_PORT = 4443


def socks5_gateway(env, proxy, allow=None):
    """clsgwd with one socks5-ingress channel towards the simulator, whose EMT answers one request."""
    emt = Answerer(think=0)
    routes = [f"{host}:{EMT_PORT}=127.0.0.1:{emt.port}" for host in (EMT, "localhost", "127.0.0.1")]
    sim = env.start_sim(routes)
    port = free_port()
    env.start_clsgwd(env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "socks5",
                                                    "allow": allow or "*:*", "proxy": proxy}}))
    return port, emt


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True, timeout=30)


def curl_through(env, proxy, option, host):
    """curl OPTION through a fresh SOCKS5 channel of the given proxy mode to http://HOST:EMT_PORT/"""
    port, emt = socks5_gateway(env, proxy)
    return curl(option, f"127.0.0.1:{port}", f"http://{host}:{EMT_PORT}/"), emt


def assert_the_answer(r):
    assert r.returncode == 0 and r.stdout == b"the answer\n", r.stderr


@scenario("curl 7.88 --socks5-hostname", "ingress", "name as DOMAIN on an sni channel, port_sent=no")
def test_curl_socks5_hostname_reaches_the_emt_by_name(env):
    """curl --socks5-hostname (DOMAIN) through an sni channel: the answer, and the log says the port was not sent"""
    r, _ = curl_through(env, "sni", "--socks5-hostname", EMT)
    assert_the_answer(r)
    env.clsgwd.wait_log(rf"channel closed .*outcome=ok .*target={EMT}:{EMT_PORT} proxy=sni port_sent=no ")


@scenario("curl 7.88 --socks5", "ingress", "IPv4 on an sni channel: refused 0x08")
def test_curl_socks5_with_an_ip_literal_is_refused_on_an_sni_channel(env):
    """curl --socks5 (IPv4) through an sni channel: SOCKS5 0x08 and a named reason, never SNI with an address"""
    r, emt = curl_through(env, "sni", "--socks5", "127.0.0.1")
    assert r.returncode == 97 and b"8" in r.stderr, (r.returncode, r.stderr)  # 97: proxy handshake refused
    env.clsgwd.wait_log(r"channel closed .*outcome=refused reason=sni_cannot_name_an_address .*target=127.0.0.1:4443")
    assert not env.sim.lines("server_name"), "the SMGW saw a handshake"
    assert emt.accepts == 0


@scenario("curl 7.88 --socks5", "ingress", "IPv4 on a socks5 channel: carried")
def test_curl_socks5_with_an_ip_literal_passes_on_a_socks5_channel(env):
    """curl --socks5 (IPv4) through a socks5 channel: the literal reaches the SMGW as an address"""
    r, _ = curl_through(env, "socks5", "--socks5", "127.0.0.1")
    assert_the_answer(r)
    env.clsgwd.wait_log(rf"channel closed .*outcome=ok .*target=127.0.0.1:{EMT_PORT} proxy=socks5 ")


@scenario("raw SOCKS5 client", "ingress", "DOMAIN-typed literal and trailing-dot name")
def test_domain_typed_literal_and_trailing_dot_are_accepted(env):
    """a DOMAIN-typed 127.0.0.1 is taken as the literal and "emt.example." as emt.example, by worker and master alike"""
    port, emt = socks5_gateway(env, "socks5", allow=f"{EMT}:{EMT_PORT}, 127.0.0.1:{EMT_PORT}")
    s, rep = socks5_connect(port, f"{EMT}.", EMT_PORT)
    assert rep == 0
    s.close()
    env.clsgwd.wait_log(rf"channel closed .*target={EMT}:{EMT_PORT} proxy=socks5 ")
    s, rep = socks5_connect(port, "127.0.0.1", EMT_PORT)  # DOMAIN-typed: the harness always sends ATYP 3
    s.close()
    env.clsgwd.wait_log(rf"channel closed .*target=127.0.0.1:{EMT_PORT} proxy=socks5 ")
    assert env.sim.lines(rf"127.0.0.1:{EMT_PORT}"), "the SMGW was asked for the literal"
    assert not env.clsgwd.lines("invalid domain name")


@scenario("raw SOCKS5 client", "ingress", "the app's port on an sni channel: allow list decides")
def test_app_port_on_an_sni_channel_is_checked_by_the_allow_list(env):
    """proxy = sni carries no port: an allow list naming the profile's port refuses another one, by name"""
    port, emt = socks5_gateway(env, "sni", allow=f"{EMT}:{EMT_PORT}")
    s, rep = socks5_connect(port, EMT, 1)
    assert rep == 0x02
    env.clsgwd.wait_log(rf"channel closed .*outcome=refused reason=target_not_allowed .*target={EMT}:1 ")


@scenario("ncat 7.93 --proxy-type socks5", "ingress", "DOMAIN, half-close on stdin EOF, answer arrives")
def test_ncat_half_closes_after_its_request_and_gets_the_answer(env):
    """printf ... | ncat --proxy-type socks5 (DOMAIN, half-close on stdin EOF) gets the EMT's answer"""
    if not shutil.which("ncat"):
        raise SkipTest("ncat is missing (make deps installs it)")
    port, emt = socks5_gateway(env, "socks5")
    emt.think = 0.3
    r = subprocess.run(["ncat", "--proxy-type", "socks5", "--proxy", f"127.0.0.1:{port}", EMT, str(EMT_PORT)],
                       input=b"GET / HTTP/1.0\r\n\r\n", capture_output=True, timeout=30)
    assert r.stdout == emt.answer, (r.returncode, r.stderr)


def pysocks_get(port, host, rdns):
    import socks  # python3-socks
    s = socks.socksocket()
    s.set_proxy(socks.SOCKS5, "127.0.0.1", port, rdns=rdns)
    s.settimeout(20)
    try:
        s.connect((host, EMT_PORT))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return recv_all(s, 20)
    except socks.ProxyError as e:
        return e
    finally:
        s.close()


@scenario("PySocks 1.7", "ingress", "rdns=True answered; rdns=False refused 0x08 on sni")
def test_pysocks_rdns_true_and_false(env):
    """PySocks rdns=True sends the name (answered); rdns=False resolves and sends IPv4: refused 0x08 on sni"""
    try:
        import socks  # noqa: F401
    except ImportError:
        raise SkipTest("python3-socks is missing (make deps installs it)")
    port, emt = socks5_gateway(env, "sni")
    assert pysocks_get(port, "localhost", rdns=True) == emt.answer
    refused = pysocks_get(port, "localhost", rdns=False)
    assert "0x08" in str(refused), refused
    env.clsgwd.wait_log(r"channel closed .*outcome=refused reason=sni_cannot_name_an_address .*target=127.0.0.1:4443")


@scenario("proxychains-ng 4.16 + curl", "ingress", "proxy_dns: name as DOMAIN, answered")
def test_proxychains4_sends_names_as_domain(env):
    """proxychains4 (proxy_dns) in front of curl: the name reaches clsgw as DOMAIN and the EMT answers"""
    if not shutil.which("proxychains4"):
        raise SkipTest("proxychains4 is missing (make deps installs it)")
    port, emt = socks5_gateway(env, "sni", allow=f"{EMT}:{EMT_PORT}")
    conf = env.path("proxychains.conf")
    with open(conf, "w") as f:
        f.write(f"strict_chain\nproxy_dns\nquiet_mode\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n"
                f"[ProxyList]\nsocks5 127.0.0.1 {port}\n")
    r = subprocess.run(["proxychains4", "-q", "-f", conf, "curl", "-sS", "--max-time", "20",
                        f"http://{EMT}:{EMT_PORT}/"], capture_output=True, timeout=30)
    assert r.stdout == b"the answer\n", (r.returncode, r.stderr)
    env.clsgwd.wait_log(rf"channel closed .*outcome=ok .*target={EMT}:{EMT_PORT} proxy=sni port_sent=no ")


# --- log hygiene under scanners and odd peers ------------------------------------------------

def inbound_device(env, clsgw=None):
    """clsgwd with one inbound channel in front of an echo service; returns its port."""
    echo = Service("echo")
    port = free_port()
    env.start_clsgwd(env.write_config(None, {"api": {"direction": "inbound", "listen": f"127.0.0.1:{port}",
                                                     "forward": f"127.0.0.1:{echo.port}"}}, clsgw=clsgw))
    return port


@scenario("GnuTLS 3.7 gnutls-cli -e", "inbound", "renegotiation attempts refused, one line and a count")
def test_gnutls_renegotiation_burst_is_one_line_with_a_count(env):
    """gnutls-cli -e (P-256 identities, client certificate) against an inbound channel: every renegotiation
    attempt refused, logged once at the first and once with the count at the end"""
    if not shutil.which("gnutls-cli"):
        raise SkipTest("gnutls-cli is missing (make deps installs gnutls-bin)")
    for name in ("device", "smgw"):  # GnuTLS has no brainpool
        for ext in ("key", "crt"):
            os.remove(env.path(f"{name}.{ext}"))
    env.make_identity("device", "CN=device-test", curve="secp256r1")
    env.make_identity("smgw", "CN=smgw-han-test", curve="secp384r1")
    port = inbound_device(env)
    r = subprocess.run(["gnutls-cli", "-e", "-p", str(port), "127.0.0.1", "--x509cafile", env.path("device.crt"),
                        "--x509certfile", env.path("smgw.crt"), "--x509keyfile", env.path("smgw.key"),
                        "--verify-hostname", "device-test", "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2"],
                       input=b"", capture_output=True, timeout=30)
    assert b"Handshake was completed" in r.stdout, r.stdout + r.stderr
    env.clsgwd.wait_log(r"channel closed .*name=api ")
    first = env.clsgwd.lines(r"TLS renegotiation attempt refused\"")
    counted = env.clsgwd.lines(r"TLS renegotiation attempts refused\" .*count=\d+")
    assert len(first) == 1, first
    assert len(counted) <= 1, counted


@scenario("raw TLS alert", "outbound", "unnamed alert 99 logged with its number")
def test_unnamed_alert_keeps_its_number(env):
    """a SMGW that answers the ClientHello with alert 99 (no name) is logged as peer_alert_unknown_99"""
    class Alerter(TestServer):
        def handle(self, conn):
            conn.recv(65536)
            conn.sendall(bytes([21, 3, 3, 0, 2, 2, 99]))  # a fatal alert, description 99
            recv_all(conn, 10)
    smgw = Alerter()
    clsgwd_towards(env, smgw.port)
    app = socket.create_connection(("127.0.0.1", env_port(env)))
    app.sendall(b"x")
    try:
        assert recv_all(app, 20) == b""
    except ConnectionResetError:
        pass  # the channel failed before it carried data: a reset is as good as a close
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=peer_alert_unknown_99 ")


def env_port(env):
    with open(env.path("clsgw.ini")) as f:
        return int([l for l in f if l.startswith("listen")][0].rsplit(":", 1)[1])


@scenario("stunnel 5.68 + microsocks", "outbound", "SMGW SOCKS5 failure 0x05: outcome=failed")
def test_smgw_socks5_failure_counts_as_failed_and_refusal_as_refused(env):
    """stunnel + microsocks answering CONNECT with 0x05 (connection refused): outcome=failed
    reason=smgw_failed_connection_refused; the app hears 0x05"""
    smgw = stunnel_with_microsocks(env)
    port = free_port()
    env.start_clsgwd(env.write_config(smgw, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "socks5",
                                                     "allow": "*:*", "proxy": "socks5"}}))
    s, rep = socks5_connect(port, "localhost", free_port())
    assert rep == 0x05
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=smgw_failed_connection_refused ")


@scenario("OpenSSL 3.0 s_client (scan)", "inbound", "8 failed handshakes: at most 3 lines per peer")
def test_failed_handshakes_are_rate_limited_per_peer(env):
    """a scanner's failed handshakes (s_client without a certificate, 8 times) give at most 3 worker lines
    and 3 channel lines per peer in an interval"""
    port = inbound_device(env, clsgw={"log_suppress_interval": "1m"})
    for _ in range(8):
        subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-groups",
                        "brainpoolP256r1:brainpoolP384r1"], input=b"", capture_output=True, timeout=20)
    wait_until(lambda: len(env.clsgwd.lines("channel accepted")) == 8, 10, "eight channels")
    wait_until(lambda: not json.loads(env.clsgwctl("status", "--json").stdout)["channels"], 10, "all channels closed")
    assert len(env.clsgwd.lines("TLS handshake with the SMGW failed")) <= 3
    assert len(env.clsgwd.lines("channel closed")) <= 3


# --- the device key's curve must be among the SMGW's groups (RFC 8422) ----------------------

@scenario("OpenSSL 3.0 s_server", "outbound", "device curve not among the groups the SMGW offers: named")
def test_curve_mismatch_is_named_outbound(env):
    """OpenSSL s_server offering only secp384r1 refuses the brainpoolP256r1 device certificate ("wrong
    curve", illegal_parameter): the log names both curves and what to change"""
    smgw = free_port()
    start_s_server_smgw(env, smgw, "secp384r1:brainpoolP384r1", "-rev")
    port = clsgwd_towards(env, smgw)
    app = socket.create_connection(("127.0.0.1", port))
    app.sendall(b"x\n")
    try:
        recv_all(app, 20)
    except ConnectionResetError:
        pass
    env.clsgwd.wait_log(r'certificate curve not among the groups the SMGW offered" certificate_curve=brainpoolP256r1 '
                        r'smgw_chose=(secp384r1|brainpoolP384r1)')
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=smgw_refused_cert_curve ")


@scenario("OpenSSL 3.0 s_client", "inbound", "device curve not among the groups the SMGW offers: named")
def test_curve_mismatch_is_named_inbound(env):
    """an SMGW (OpenSSL s_client) offering the profile's suites but only secp384r1 and X25519 to the
    brainpoolP256r1 device: the channel's reason is cert_curve_not_offered, and a line names the
    device's curve and the offered groups"""
    port = inbound_device(env)
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-groups", "secp384r1:X25519",
                        "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-SHA384",
                        "-cert", env.path("smgw.crt"), "-key", env.path("smgw.key")],
                       input=b"", capture_output=True, timeout=20)
    assert b"alert handshake failure" in r.stderr, r.stderr
    env.clsgwd.wait_log(r'certificate curve not among the groups the SMGW offered" certificate_curve=brainpoolP256r1 '
                        r'smgw_offered=secp384r1 ')
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=cert_curve_not_offered ")


# --- Botan 2 as the SMGW: pins the device certificate (its path validation refuses self-signed) ---

def botan_smgw():
    path = os.path.join(TEST_BIN, "botan-smgw")
    if not os.path.exists(path):
        raise SkipTest("botan-smgw is not built (make deps installs libbotan-2-dev)")
    return path


def pkcs8(env, name):
    """Botan reads PKCS #8 keys only; clsgwctl writes SEC1 ("EC PRIVATE KEY")."""
    out = env.path(f"{name}.p8")
    subprocess.run(["openssl", "pkey", "-in", env.path(f"{name}.key"), "-out", out], check=True, capture_output=True)
    return out


def botan_smgw_towards(env, emt):
    """Botan's SMGW server (device certificate required and pinned) and clsgwd with a static SOCKS5 channel to the
    EMT through it: the Botan process and the channel's port"""
    smgw = free_port()
    server = env.start("botan-smgw", [botan_smgw(), "server", str(smgw), env.path("smgw.crt"), pkcs8(env, "smgw"),
                                      env.path("device.crt")])
    server.wait_log("listening")
    port = free_port()
    env.start_clsgwd(env.write_config(smgw, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                                     "target": f"localhost:{emt.port}", "proxy": "socks5"}}))
    return server, port


@scenario("Botan 2.19 (library)", "outbound", "SOCKS5 inside TLS, device certificate required and pinned")
def test_botan_as_smgw_server_with_socks5_inside_tls(env):
    """Botan as SMGW server (client certificate required and pinned, SOCKS5 inside TLS) carries a request and its answer"""
    emt = Answerer(think=0)
    server, port = botan_smgw_towards(env, emt)
    app = socket.create_connection(("127.0.0.1", port))
    app.sendall(REQUEST)
    assert recv_all(app, 20) == emt.answer
    server.wait_log('peer certificate pinned: CN="device-test"')
    env.clsgwd.wait_log(r"channel closed .*outcome=ok .*tls=TLSv1.2 .*group=brainpoolP256r1")


@scenario("Botan 2.19 (library)", "outbound", "half-close: request, FIN, later answer")
def test_half_close_answer_through_botan(env):
    """half-close against Botan (which ends the channel on close_notify): the app's request gets its answer"""
    emt = Answerer()
    _, port = botan_smgw_towards(env, emt)
    assert half_closed_request(port, REQUEST) == emt.answer
    env.clsgwd.wait_log(rf"channel closed .*outcome=ok reason=app_closed .*bytes_down={len(emt.answer)}")


@scenario("Botan 2.19 (library)", "inbound", "SMGW as TLS client with its certificate, device pinned")
def test_botan_as_smgw_client_for_an_inbound_channel(env):
    """Botan as the SMGW's active side (client certificate, device pinned) reaches the device service"""
    helper = botan_smgw()
    port = inbound_device(env)
    r = subprocess.run([helper, "client", f"127.0.0.1:{port}", env.path("smgw.crt"), pkcs8(env, "smgw"),
                        env.path("device.crt"), "register 40001"], capture_output=True, timeout=30)
    assert r.stdout == b"register 40001\n", r.stderr
    env.clsgwd.wait_log(r"channel closed .*name=api .*outcome=ok .*tls=TLSv1.2")


# --- GnuTLS 3.7 (no brainpool: P-256 and P-384 identities), client certificate required ---------

def nist_identities(env, device_curve):
    for name in ("device", "smgw"):
        for ext in ("key", "crt"):
            os.remove(env.path(f"{name}.{ext}"))
    env.make_identity("device", "CN=device-test", curve=device_curve)
    env.make_identity("smgw", "CN=smgw-han-test", curve="secp384r1")


@scenario("GnuTLS 3.7 gnutls-serv", "outbound", "echo, P-256 and P-384 device keys, client certificate required")
def test_gnutls_serv_as_smgw_with_p256_and_p384(env):
    """gnutls-serv (TLS 1.2, client certificate required and verified) echoes through clsgw, P-256 and P-384 device keys"""
    if not shutil.which("gnutls-serv"):
        raise SkipTest("gnutls-serv is missing (make deps installs gnutls-bin)")
    for n, curve in enumerate(("secp256r1", "secp384r1"), 1):
        nist_identities(env, curve)
        smgw = free_port()
        server = env.start(f"gnutls-serv-{curve}", [
            "gnutls-serv", "--echo", "-p", str(smgw), "--x509certfile", env.path("smgw.crt"),
            "--x509keyfile", env.path("smgw.key"), "--x509cafile", env.path("device.crt"), "--require-client-cert",
            "--verify-client-cert", "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2"])
        wait_until(lambda: can_connect(smgw), 10, "gnutls-serv to listen")
        if n > 1:
            env.clsgwd.stop()
        port = clsgwd_towards(env, smgw)
        app = socket.create_connection(("127.0.0.1", port))
        app.sendall(b"through GnuTLS\n")
        assert recv_exact(app, 15, timeout=20) == b"through GnuTLS\n", curve
        app.close()
        env.clsgwd.wait_log(r"channel closed .*outcome=ok .*tls=TLSv1.2 ")
        server.stop()


@scenario("GnuTLS 3.7 gnutls-cli", "inbound", "SMGW as TLS client, P-256 and P-384 device keys, its certificate")
def test_gnutls_cli_as_smgw_client_with_p256_and_p384(env):
    """gnutls-cli as the SMGW's active side (its certificate, the device's verified) reaches the device service"""
    if not shutil.which("gnutls-cli"):
        raise SkipTest("gnutls-cli is missing (make deps installs gnutls-bin)")
    for n, curve in enumerate(("secp256r1", "secp384r1"), 1):
        nist_identities(env, curve)
        if n > 1:
            env.clsgwd.stop()
        port = inbound_device(env)
        r = subprocess.run(["gnutls-cli", "-p", str(port), "127.0.0.1", "--x509cafile", env.path("device.crt"),
                            "--x509certfile", env.path("smgw.crt"), "--x509keyfile", env.path("smgw.key"),
                            "--verify-hostname", "device-test", "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2"],
                           input=b"register 40001\n", capture_output=True, timeout=30)
        assert b"register 40001" in r.stdout, (curve, r.stdout[-500:], r.stderr[-500:])
        env.clsgwd.wait_log(r"channel closed .*name=api .*tls=TLSv1.2 ")
