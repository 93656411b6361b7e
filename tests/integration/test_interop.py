"""Foreign TLS peers play the SMGW: OpenSSL s_server and stunnel, on the HAN profile."""
import os
import shutil
import socket
import subprocess
import threading

from harness import Answerer, SkipTest, free_port, half_closed_request, sha256, transfer, wait_until

EMT = "emt.example"


def clsgwd_towards(env, smgw_port, proxy="sni"):
    port = free_port()
    env.start_clsgwd(env.write_config(smgw_port, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                                          "target": f"{EMT}:443", "proxy": proxy}}))
    return port


def test_openssl_s_server_as_smgw(env):
    """OpenSSL s_server (TLS 1.2, brainpool, client certificate required) accepts clsgw as the device"""
    port = free_port()
    server = env.start("s_server", ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1",
                                    "-cert", env.path("smgw.crt"), "-key", env.path("smgw.key"),
                                    "-Verify", "1", "-verify_return_error", "-CAfile", env.path("device.crt"),
                                    "-tls1_2", "-groups", "brainpoolP384r1:brainpoolP256r1", "-serverpref",
                                    "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384", "-rev"])
    server.wait_log("ACCEPT")
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


def test_stunnel_as_smgw_carries_a_megabyte(env):
    """stunnel in server mode, pinning the device certificate, relays 1 MiB both ways through clsgw"""
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    assert stunnel, "stunnel4 is missing"
    echo = env.start_echo()
    port = free_port()
    conf = env.path("stunnel.conf")
    with open(conf, "w") as f:
        f.write(f"""foreground = yes
pid =
debug = 5
[smgw]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{echo}
cert = {env.path('smgw.crt')}
key = {env.path('smgw.key')}
CAfile = {env.path('device.crt')}
verifyPeer = yes
sslVersionMin = TLSv1.2
sslVersionMax = TLSv1.2
curves = brainpoolP256r1
ciphers = ECDHE-ECDSA-AES128-GCM-SHA256
""")
    server = env.start("stunnel", [stunnel, conf])
    server.wait_log("Configuration successful")
    app = socket.create_connection(("127.0.0.1", clsgwd_towards(env, port)))
    payload = os.urandom(1 << 20)
    got = transfer(app, payload)
    assert sha256(got) == sha256(payload)
    env.clsgwd.wait_log(r"channel closed .*outcome=ok .*suite=TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256 "
                        r"group=brainpoolP256r1")


# --- half-close: TLS 1.2 has none, and these peers end the channel on close_notify -----------

REQUEST = b"GET /answer HTTP/1.0\r\n\r\n"


def stunnel_conf(env, port, connect, extra=""):
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
curves = brainpoolP256r1:brainpoolP384r1
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


def test_half_close_answer_from_openssl_s_server(env):
    """half-close against OpenSSL s_server (SNI): the answer written after the request still arrives"""
    smgw = free_port()
    server = env.start("s_server", ["openssl", "s_server", "-accept", f"127.0.0.1:{smgw}", "-naccept", "1",
                                    "-cert", env.path("smgw.crt"), "-key", env.path("smgw.key"),
                                    "-Verify", "1", "-verify_return_error", "-CAfile", env.path("device.crt"),
                                    "-tls1_2", "-groups", "brainpoolP256r1:brainpoolP384r1", "-ign_eof"],
                       stdin=subprocess.PIPE)
    server.wait_log("ACCEPT")
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
