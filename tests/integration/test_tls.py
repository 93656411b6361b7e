"""TR-03116-3 HAN profile, checked on the wire and against foreign peers (OpenSSL, stunnel)."""
import re
import socket
import struct
import subprocess
import time

from harness import Service, TestServer, free_port, recv_exact, scenario, wait_until


class HelloCapture(TestServer):
    """A fake SMGW that records the first TLS record of each connection, then hangs up."""

    def __init__(self):
        self.hellos = []
        super().__init__()

    def handle(self, conn):
        header = recv_exact(conn, 5)
        if len(header) == 5:
            self.hellos.append(header + recv_exact(conn, struct.unpack(">H", header[3:5])[0]))


def hello_random(record):
    """The 32-byte random of a ClientHello/ServerHello record (type 22, handshake header 4, version 2)."""
    assert record[0] == 22, "not a handshake record"
    return record[5 + 4 + 2:5 + 4 + 2 + 32]


def looks_like_now(first4, now, slack=3600):
    return abs(struct.unpack(">I", first4)[0] - (int(now) & 0xffffffff)) < slack


def test_client_hello_random_carries_no_clock(env):
    """RANDOM_TIME: over 20 handshakes the first 4 bytes of our ClientHello.random are never the clock"""
    capture = HelloCapture()
    port = free_port()
    env.start_clsgwd(env.write_config(capture.port, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                                             "target": "emt.example:443"}}))
    for _ in range(20):
        socket.create_connection(("127.0.0.1", port)).close()
    wait_until(lambda: len(capture.hellos) == 20, 30, "20 ClientHellos")
    now = time.time()
    firsts = [hello_random(h)[:4] for h in capture.hellos]
    assert all(h[5] == 1 for h in capture.hellos), "not ClientHello messages"
    assert not [f for f in firsts if looks_like_now(f, now)], [f.hex() for f in firsts]
    assert len(set(firsts)) == 20, "the leading bytes repeat: not random"


def test_server_hello_random_carries_no_clock(env):
    """as TLS server (inbound) the ServerHello.random carries no clock either (OpenSSL s_client -msg)"""
    service = Service("echo")
    port = free_port()
    env.start_clsgwd(env.write_config(None, {"in": {"direction": "inbound", "listen": f"127.0.0.1:{port}",
                                                    "forward": f"127.0.0.1:{service.port}"}}))
    now = time.time()
    firsts = []
    for _ in range(5):
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-msg",
                            "-groups", "brainpoolP256r1", "-CAfile", env.path("device.crt")],
                           input=b"", capture_output=True, timeout=20)
        text = r.stdout.decode(errors="replace")
        m = re.search(r"<<< TLS 1.2, Handshake \[length [0-9a-f]+\], ServerHello\n((?:    [0-9a-f ]+\n)+)", text)
        assert m, text[-2000:]
        body = bytes.fromhex(m.group(1).replace("\n", " "))
        firsts.append(body[6:10])
    assert not [f for f in firsts if looks_like_now(f, now)], [f.hex() for f in firsts]
    assert len(set(firsts)) == 5


# --- certificate defects -------------------------------------------------------------------

def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def openssl_identity(env, name, curve="brainpoolP256r1", md="sha256", ext=None):
    key, crt = env.path(f"{name}.key"), env.path(f"{name}.crt")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}", "-pkeyopt",
            "ec_param_enc:named_curve", "-out", key)
    openssl("req", "-new", "-x509", "-key", key, "-out", crt, "-days", "30", "-subj", f"/CN={name}", f"-{md}",
            *(["-addext", ext] if ext else []))


def corrupt_signature(env, name):
    """Flips one bit in the last byte of the certificate: the ECDSA signature, still valid DER."""
    import base64
    pem = open(env.path(f"{name}.crt")).read()
    body = "".join(pem.strip().splitlines()[1:-1])
    der = bytearray(base64.b64decode(body))
    der[-1] ^= 0x01
    b64 = base64.b64encode(bytes(der)).decode()
    with open(env.path(f"{name}.crt"), "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\n" + "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64)) +
                "\n-----END CERTIFICATE-----\n")


def defective_identity(env, kind):
    """Makes an SMGW identity with one defect; returns (identity, trust file, OpenSSL cipher suffix)."""
    name = f"smgw-{kind}"
    if kind == "expired":
        env.ctl("key", "generate", "--out", env.path(f"{name}.key"))
        env.ctl("cert", "self-sign", "--key", env.path(f"{name}.key"), "--subject", f"CN={name}",
                "--valid-from-days", "-30", "--days", "10", "--out", env.path(f"{name}.crt"))
        return name, f"{name}.crt", ""
    if kind == "not_yet_valid":
        env.ctl("key", "generate", "--out", env.path(f"{name}.key"))
        env.ctl("cert", "self-sign", "--key", env.path(f"{name}.key"), "--subject", f"CN={name}",
                "--valid-from-days", "10", "--days", "10", "--out", env.path(f"{name}.crt"))
        return name, f"{name}.crt", ""
    if kind == "bad_signature":
        env.make_identity("han-ca", "CN=HAN CA", ca=True)
        env.make_identity(name, f"CN={name}", issuer="han-ca")
        corrupt_signature(env, name)
        return name, "han-ca.crt", ""
    if kind == "sha1_signature":
        openssl_identity(env, name, md="sha1")
        return name, f"{name}.crt", ":@SECLEVEL=0"
    if kind == "no_digital_signature_usage":
        openssl_identity(env, name, ext="keyUsage=critical,keyCertSign")
        return name, f"{name}.crt", ""
    if kind == "p521_key":
        openssl_identity(env, name, curve="secp521r1")
        return name, "smgw.crt", ""  # a P-521 trust file is itself refused by clsgwd -t
    raise AssertionError(kind)


EXPECTED = {"expired": "cert_expired", "not_yet_valid": "cert_not_yet_valid", "bad_signature": "cert_bad_signature",
            "sha1_signature": "cert_outside_profile", "no_digital_signature_usage": "cert_key_usage",
            "p521_key": "cert_outside_profile"}


def restart_clsgwd(env, smgw_port, channels, trust):
    if getattr(env, "clsgwd", None):
        env.clsgwd.stop()
    for keys in channels.values():
        keys.setdefault("listen", f"127.0.0.1:{free_port()}")
    # each app here reads its answer before it closes: a short close wait ends each channel soon after
    env.start_clsgwd(env.write_config(smgw_port, channels, trust=trust, clsgw={"close_timeout": "200ms"}))
    return int(next(iter(channels.values()))["listen"].rsplit(":", 1)[1])


def test_smgw_certificate_defects_each_have_their_reason(env):
    """outbound: OpenSSL s_server as SMGW with an expired, not yet valid, badly signed or SHA-1 signed
    certificate is refused, each with its own log reason"""
    # A server certificate without digitalSignature cannot be tested this way: OpenSSL (and mbedTLS)
    # refuse to serve ECDHE-ECDSA with it ("no shared cipher"). The key usage check is exercised
    # from the other side in test_smgw_client_certificate_defects_each_have_their_reason.
    for kind in ("expired", "not_yet_valid", "bad_signature", "sha1_signature"):
        identity, trust, seclevel = defective_identity(env, kind)
        port = free_port()
        server = env.start(f"s_server-{kind}", [
            "openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1", "-cert", env.path(f"{identity}.crt"),
            "-key", env.path(f"{identity}.key"), "-Verify", "1", "-CAfile", env.path("device.crt"), "-tls1_2",
            "-groups", "brainpoolP256r1", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256" + seclevel, "-rev"])
        server.wait_log("ACCEPT")
        app_port = restart_clsgwd(env, port, {"app": {"ingress": "static", "target": "emt.example:443",
                                                      "proxy": "sni"}}, trust)
        app = socket.create_connection(("127.0.0.1", app_port))
        assert app.recv(10) == b"", kind
        env.clsgwd.wait_log(rf"channel closed .*outcome=failed reason={EXPECTED[kind]} ")


def test_smgw_client_certificate_defects_each_have_their_reason(env):
    """inbound: OpenSSL s_client as SMGW with a defective certificate is refused with its reason; the
    local service never sees a connection"""
    service = Service("echo")
    for kind in ("expired", "not_yet_valid", "bad_signature", "sha1_signature", "no_digital_signature_usage",
                 "p521_key"):
        identity, trust, seclevel = defective_identity(env, kind)
        port = restart_clsgwd(env, None, {"in": {"direction": "inbound", "forward": f"127.0.0.1:{service.port}"}},
                              trust)
        subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
                        "-groups", "brainpoolP256r1:secp521r1", "-CAfile", env.path("device.crt"),
                        "-cert", env.path(f"{identity}.crt"), "-key", env.path(f"{identity}.key"),
                        "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256" + seclevel],
                       input=b"", capture_output=True, timeout=20)
        env.clsgwd.wait_log(rf"channel closed .*outcome=failed reason={EXPECTED[kind]} ")
    assert service.accepts == 0


def test_corrupt_certificate_encoding_is_named_both_ways(env):
    """a certificate whose DER is broken on the wire is refused as cert_corrupt, as client and as server"""
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example:443=127.0.0.1:{echo}"], extra=["--corrupt-cert", "yes"])
    app_port = restart_clsgwd(env, sim, {"app": {"ingress": "static", "target": "emt.example:443"}}, "smgw.crt")
    assert socket.create_connection(("127.0.0.1", app_port)).recv(10) == b""
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=cert_corrupt ")
    service = Service("echo")
    port = restart_clsgwd(env, None, {"in": {"direction": "inbound", "forward": f"127.0.0.1:{service.port}"}},
                          "smgw.crt")
    argv = [a for a in env.sim.proc.args]
    link_sim = env.start("sim-corrupt", [argv[0], "smgw", "--cert", env.path("smgw.crt"), "--key", env.path("smgw.key"),
                                         "--trust", env.path("device.crt"), "--corrupt-cert", "yes",
                                         "--inbound", f"127.0.0.1:{free_port()}=127.0.0.1:{port}"])
    emt_port = int(link_sim.wait_log("listening").rsplit(":", 1)[1])
    socket.create_connection(("127.0.0.1", emt_port)).close()
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=cert_corrupt ")
    assert service.accepts == 0


# --- the profile against foreign peers -----------------------------------------------------

SUITES = {  # OpenSSL name -> mbedTLS name (as logged by clsgwd)
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-SHA256": "TLS-ECDHE-ECDSA-WITH-AES-128-CBC-SHA256",
    "ECDHE-ECDSA-AES256-SHA384": "TLS-ECDHE-ECDSA-WITH-AES-256-CBC-SHA384",
}
GROUPS = {"brainpoolP256r1": "brainpoolP256r1", "brainpoolP384r1": "brainpoolP384r1",
          "brainpoolP512r1": "brainpoolP512r1", "prime256v1": "secp256r1", "secp384r1": "secp384r1"}


def groups_with_certificates(first):
    """OpenSSL must also list the curves of both certificates (brainpoolP256r1/384r1), after `first`."""
    return ":".join(dict.fromkeys([first, "brainpoolP256r1", "brainpoolP384r1"]))


def s_server(env, port, *args, name="s_server"):
    server = env.start(f"{name}-{len(env.processes)}", [
        "openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1", "-cert", env.path("smgw.crt"),
        "-key", env.path("smgw.key"), "-Verify", "1", "-verify_return_error", "-CAfile", env.path("device.crt"),
        "-rev", *args])
    server.wait_log("ACCEPT")
    return server


def reverse_through(port):
    app = socket.create_connection(("127.0.0.1", port))
    got = b""
    try:
        app.sendall(b"HAN profile\n")
        app.settimeout(20)
        while not got.endswith(b"\n"):
            chunk = app.recv(100)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass  # a refused channel may end with a reset; nothing came back either way
    app.close()
    return got


@scenario("OpenSSL 3.0 s_server", "outbound", "4 suites x 5 groups, client certificate required")
def test_every_suite_and_group_as_client(env):
    """outbound: each of the 4 suites with each of the 5 groups handshakes with OpenSSL s_server"""
    smgw = free_port()
    app = restart_clsgwd(env, smgw, {"app": {"ingress": "static", "target": "emt.example:443", "proxy": "sni"}},
                         "smgw.crt")
    n = 0
    for suite, suite_name in SUITES.items():
        for group, group_name in GROUPS.items():
            server = s_server(env, smgw, "-tls1_2", "-cipher", suite, "-groups", groups_with_certificates(group),
                              "-serverpref")
            assert reverse_through(app) == b"eliforp NAH\n", (suite, group)
            n += 1
            env.clsgwd.wait_log(rf"channel closed id={n} .*outcome=ok .*tls=TLSv1.2 suite={suite_name} "
                                rf"group={group_name} ")
            # the next s_server binds the same port: this one holds it until it has exited
            wait_until(lambda: server.proc.poll() is not None, 10, f"{server.name} to exit")


@scenario("OpenSSL 3.0 s_client", "inbound", "4 suites x 5 groups, client certificate")
def test_every_suite_and_group_as_server(env):
    """inbound: each of the 4 suites with each of the 5 groups handshakes with OpenSSL s_client"""
    # As server, mbedTLS picks the group by our preference (brainpool first). A device certificate
    # on secp384r1, last in that order, lets the client's single other group win every time;
    # OpenSSL needs the certificate's curve in its list to accept our ServerKeyExchange.
    import os
    os.remove(env.path("device.key"))
    os.remove(env.path("device.crt"))
    env.make_identity("device", "CN=device-p384", curve="secp384r1")
    service = Service("tag", b"profile ok\n")
    port = restart_clsgwd(env, None, {"in": {"direction": "inbound", "forward": f"127.0.0.1:{service.port}"}},
                          "smgw.crt")
    n = 0
    for suite, suite_name in SUITES.items():
        for group, group_name in GROUPS.items():
            r = s_client(env, port, "-tls1_2", "-cipher", suite, "-groups", ":".join(dict.fromkeys([group, "secp384r1"])))
            assert b"profile ok" in r.stdout, (suite, group, r.stderr[-500:])
            n += 1
            env.clsgwd.wait_log(rf"channel closed id={n} .*outcome=ok .*tls=TLSv1.2 suite={suite_name} "
                                rf"group={group_name} ")


def s_client(env, port, *args):
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-quiet",
                           "-CAfile", env.path("device.crt"), "-cert", env.path("smgw.crt"),
                           "-key", env.path("smgw.key"), *args],
                          input=b"hello\n", capture_output=True, timeout=30)


def rsa_identity(env):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", env.path("rsa.key"), "-out",
            env.path("rsa.crt"), "-days", "30", "-subj", "/CN=rsa-smgw")


NEGATIVE_PEERS = {  # name -> (OpenSSL arguments, our reason as client, our reason as server)
    # A TLS 1.1 server takes the version down, then finds none of our TLS 1.2 suites usable.
    "tls1.1": (["-tls1_1", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"], "peer_alert_handshake_failure",
               "protocol_version"),
    "tls1.3 only": (["-tls1_3"], "peer_alert_protocol_version", "no_shared_cipher_suite"),
    "rsa suites": (["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256:AES256-SHA256"],
                   "peer_alert_handshake_failure", "no_shared_cipher_suite"),
    "cbc-sha1 suites": (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"],
                        "peer_alert_handshake_failure", "no_shared_cipher_suite"),
    "P-521 only": (["-tls1_2", "-groups", "P-521"], "peer_alert_handshake_failure", "no_shared_cipher_suite"),
    "X25519 only": (["-tls1_2", "-groups", "X25519"], "peer_alert_handshake_failure", "no_shared_cipher_suite"),
}


def test_peers_outside_the_profile_are_refused_as_client(env):
    """outbound: TLS 1.1, TLS 1.3-only, RSA, CBC-SHA1, P-521-only and X25519-only servers fail, each for its reason"""
    smgw = free_port()
    app = restart_clsgwd(env, smgw, {"app": {"ingress": "static", "target": "emt.example:443", "proxy": "sni"}},
                         "smgw.crt")
    rsa_identity(env)
    for n, (name, (args, client_reason, _)) in enumerate(NEGATIVE_PEERS.items(), 1):
        extra = ["-cert", env.path("rsa.crt"), "-key", env.path("rsa.key")] if name == "rsa suites" else []
        s_server(env, smgw, *args, *extra)
        assert reverse_through(app) == b"", name
        env.clsgwd.wait_log(rf"channel closed id={n} .*outcome=failed reason={client_reason} ")


def test_peers_outside_the_profile_are_refused_as_server(env):
    """inbound: TLS 1.1, TLS 1.3-only, RSA, CBC-SHA1, P-521-only and X25519-only clients fail, each for its reason"""
    service = Service("echo")
    port = restart_clsgwd(env, None, {"in": {"direction": "inbound", "forward": f"127.0.0.1:{service.port}"}},
                          "smgw.crt")
    for n, (name, (args, _, server_reason)) in enumerate(NEGATIVE_PEERS.items(), 1):
        s_client(env, port, *args)
        env.clsgwd.wait_log(rf"channel closed id={n} .*outcome=failed reason={server_reason} ")
    assert service.accepts == 0


# --- what we put on the wire ---------------------------------------------------------------

def parse_client_hello(record):
    """Cipher suites, compression methods and extensions {type: data} of a ClientHello record."""
    body = record[5 + 4:]
    pos = 2 + 32
    pos += 1 + body[pos]
    n = struct.unpack(">H", body[pos:pos + 2])[0]
    suites = [struct.unpack(">H", body[pos + 2 + i:pos + 4 + i])[0] for i in range(0, n, 2)]
    pos += 2 + n
    compression = list(body[pos + 1:pos + 1 + body[pos]])
    pos += 1 + body[pos]
    end = pos + 2 + struct.unpack(">H", body[pos:pos + 2])[0]
    pos += 2
    extensions = {}
    while pos < end:
        kind, length = struct.unpack(">HH", body[pos:pos + 4])
        extensions[kind] = body[pos + 4:pos + 4 + length]
        pos += 4 + length
    return suites, compression, extensions


def test_client_hello_offers_exactly_the_profile(env):
    """our ClientHello offers the 4 suites, the 5 groups, ECDSA signatures only, null compression, EtM and EMS,
    and no truncated HMAC"""
    capture = HelloCapture()
    port = free_port()
    env.start_clsgwd(env.write_config(capture.port, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                                             "target": "emt.example:443"}}))
    socket.create_connection(("127.0.0.1", port)).close()
    wait_until(lambda: capture.hellos, 10, "a ClientHello")
    suites, compression, ext = parse_client_hello(capture.hellos[0])
    assert set(suites) - {0x00FF} == {0xC02B, 0xC02C, 0xC023, 0xC024}, [hex(s) for s in suites]
    assert compression == [0]
    groups = [struct.unpack(">H", ext[10][2 + i:4 + i])[0] for i in range(0, len(ext[10]) - 2, 2)]
    assert sorted(groups) == sorted([26, 27, 28, 23, 24]), groups  # brainpoolP256/384/512r1, secp256r1/384r1
    sigalgs = [ext[13][2 + i:4 + i] for i in range(0, len(ext[13]) - 2, 2)]
    assert sorted(sigalgs) == [b"\x04\x03", b"\x05\x03", b"\x06\x03"], sigalgs  # ECDSA with SHA-256/384/512 only
    assert 22 in ext and 23 in ext, "encrypt_then_mac and extended_master_secret must be offered"
    assert 4 not in ext, "truncated_hmac must not be offered"


def test_server_accepts_encrypt_then_mac_and_extended_master_secret(env):
    """as server we answer EtM (CBC suites) and EMS, without compression (OpenSSL s_client -tlsextdebug)"""
    service = Service("tag", b"x\n")
    port = restart_clsgwd(env, None, {"in": {"direction": "inbound", "forward": f"127.0.0.1:{service.port}"}},
                          "smgw.crt")
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-tlsextdebug",
                        "-groups", "brainpoolP256r1", "-cipher", "ECDHE-ECDSA-AES128-SHA256", "-CAfile",
                        env.path("device.crt"), "-cert", env.path("smgw.crt"), "-key", env.path("smgw.key")],
                       input=b"", capture_output=True, timeout=20)
    out = r.stdout.decode()
    assert 'TLS server extension "encrypt-then-mac" (id=22)' in out, out
    assert 'TLS server extension "extended master secret" (id=23)' in out
    assert "Compression: NONE" in out and "Extended master secret: yes" in out


# --- resumption and the 48 h lifetime -------------------------------------------------------

def resume_against(env, *server_args):
    smgw = free_port()
    app = restart_clsgwd(env, smgw, {"app": {"ingress": "static", "target": "emt.example:443", "proxy": "sni"}},
                         "smgw.crt")
    server = s_server(env, smgw, "-tls1_2", "-groups", "brainpoolP256r1:brainpoolP384r1", "-naccept", "2",
                      *server_args)
    assert reverse_through(app) == b"eliforp NAH\n"
    assert reverse_through(app) == b"eliforp NAH\n"
    env.clsgwd.wait_log(r"channel closed id=1 .*outcome=ok .*resumed=no ")
    env.clsgwd.wait_log(r"channel closed id=2 .*outcome=ok .*group=resumed .*resumed=yes ")
    assert len(env.audit_lines()) == 1, "a resumed channel must not ask the signer"
    # where each handshake's time went: the full one waited for a signature, the resumed one did not
    split = r"handshake_ms=(\d+) smgw_wait_ms=(\d+\.\d) signer_ms=(\d+\.\d) "
    full, resumed = (re.search(split, env.clsgwd.lines(rf"channel closed id={i} ")[0]).groups() for i in (1, 2))
    assert float(full[2]) > 0 and float(resumed[2]) == 0, (full, resumed)
    for handshake, wait, signer in (full, resumed):
        assert float(wait) + float(signer) <= int(handshake) + 1, (handshake, wait, signer)
    return server


def test_second_channel_resumes_by_session_id_as_client(env):
    """outbound SESSION_ID: with tickets off, the next channel resumes by session id (OpenSSL counts a cache
    hit) and signs nothing"""
    server = resume_against(env, "-no_ticket")
    server.wait_log(r"1 session cache hits")


def test_second_channel_resumes_by_ticket_as_client(env):
    """outbound SESSION_TICKET: with OpenSSL's session cache off, only a ticket can resume, and it does"""
    server = resume_against(env, "-no_cache")
    server.wait_log(r"1 session cache hits")  # OpenSSL counts ticket resumptions here too
    assert server.lines(r"^\s+0 items in the session cache"), "with its cache off only a ticket can resume"


def sclient_session(env, port, *args, stdin=b"", keep_open=False):
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-groups", "brainpoolP256r1",
            "-CAfile", env.path("device.crt"), "-cert", env.path("smgw.crt"), "-key", env.path("smgw.key"), *args]
    if keep_open:
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=30).stdout.decode(errors="replace")


def test_second_channel_resumes_without_a_signature_as_server(env):
    """inbound: an SMGW presenting its earlier session id resumes from the master's cache, signs nothing"""
    service = Service("tag", b"x\n")
    port = restart_clsgwd(env, None, {"in": {"direction": "inbound", "forward": f"127.0.0.1:{service.port}"}},
                          "smgw.crt")
    first = sclient_session(env, port, "-sess_out", env.path("session.pem"))
    assert "New, TLSv1.2" in first
    second = sclient_session(env, port, "-sess_in", env.path("session.pem"))
    assert "Reused, TLSv1.2" in second, second[-1500:]
    env.clsgwd.wait_log(r"channel closed id=2 .*outcome=ok .*resumed=yes ")
    assert len(env.audit_lines()) == 1


def test_lifetime_closes_the_channel_and_the_session_is_not_resumed_as_client(env):
    """outbound, max_session_lifetime = 2s: the open channel is closed at the limit (the app sees the end),
    and the next channel does a full handshake"""
    smgw = free_port()
    if getattr(env, "clsgwd", None):
        env.clsgwd.stop()
    port = free_port()
    env.start_clsgwd(env.write_config(smgw, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                                     "target": "emt.example:443", "proxy": "sni"}},
                                      clsgw={"max_session_lifetime": "2s"}))
    server = s_server(env, smgw, "-tls1_2", "-groups", "brainpoolP256r1:brainpoolP384r1", "-naccept", "2")
    app = socket.create_connection(("127.0.0.1", port))
    app.sendall(b"abc\n")
    app.settimeout(10)
    assert app.recv(4) == b"cba\n"
    started = time.monotonic()
    assert app.recv(10) == b"", "clsgw must end the channel at the lifetime"
    assert 1.5 < time.monotonic() - started < 6
    env.clsgwd.wait_log(r"channel closed id=1 .*reason=max_session_lifetime ")
    assert reverse_through(port) == b"eliforp NAH\n"
    env.clsgwd.wait_log(r"channel closed id=2 .*outcome=ok .*resumed=no ")
    server.wait_log(r"0 session cache hits")
    assert len(env.audit_lines()) == 2


def test_lifetime_closes_the_channel_and_the_session_is_not_resumed_as_server(env):
    """inbound, max_session_lifetime = 2s: clsgw closes the SMGW's channel at the limit, and the session
    it offers afterwards is not resumed"""
    service = Service("echo")
    port = free_port()
    env.start_clsgwd(env.write_config(None, {"in": {"direction": "inbound", "listen": f"127.0.0.1:{port}",
                                                    "forward": f"127.0.0.1:{service.port}"}},
                                      clsgw={"max_session_lifetime": "2s"}))
    client = sclient_session(env, port, "-sess_out", env.path("session.pem"), keep_open=True)
    env.clsgwd.wait_log(r"channel closed id=1 .*reason=max_session_lifetime ", timeout=15)
    out = client.communicate(timeout=15)[0].decode(errors="replace")  # s_client ends: the server closed
    assert "New, TLSv1.2" in out
    second = sclient_session(env, port, "-sess_in", env.path("session.pem"))
    assert "New, TLSv1.2" in second and "Reused" not in second
    env.clsgwd.wait_log(r"channel closed id=2 .*resumed=no ")


# --- hand-made ClientHellos for what OpenSSL 3 cannot send ----------------------------------

def client_hello(suites, extensions):
    """A TLS 1.2 ClientHello record with the given suites and {type: data} extensions."""
    import os as _os
    body = b"\x03\x03" + _os.urandom(32) + b"\x00"
    body += struct.pack(">H", 2 * len(suites)) + b"".join(struct.pack(">H", s) for s in suites) + b"\x01\x00"
    ext = b"".join(struct.pack(">HH", k, len(v)) + v for k, v in extensions.items())
    body += struct.pack(">H", len(ext)) + ext
    handshake = b"\x01" + struct.pack(">I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack(">H", len(handshake)) + handshake


PROFILE_EXTENSIONS = {
    10: b"\x00\x02\x00\x1a",          # supported_groups: brainpoolP256r1
    11: b"\x01\x00",                  # ec_point_formats: uncompressed
    13: b"\x00\x02\x04\x03",          # signature_algorithms: ecdsa_secp256r1_sha256
}


def first_record(port, hello):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(hello)
    header = recv_exact(s, 5)
    body = recv_exact(s, struct.unpack(">H", header[3:5])[0]) if len(header) == 5 else b""
    s.close()
    return header, body


def test_static_ecdh_suites_are_refused_as_server(env):
    """PFS: a client offering only static ECDH(-ECDSA) suites gets handshake_failure and the log says why"""
    service = Service("echo")
    port = restart_clsgwd(env, None, {"in": {"direction": "inbound", "forward": f"127.0.0.1:{service.port}"}},
                          "smgw.crt")
    header, body = first_record(port, client_hello([0xC004, 0xC005, 0xC025, 0xC02D], PROFILE_EXTENSIONS))
    assert header[0] == 21 and body == b"\x02\x28", (header, body)  # fatal handshake_failure
    env.clsgwd.wait_log(r"channel closed id=1 .*outcome=failed reason=no_shared_cipher_suite ")


def test_truncated_hmac_is_not_granted_as_server(env):
    """NO_TRUNC_HMAC: a client asking for truncated_hmac gets a ServerHello without it"""
    service = Service("echo")
    port = restart_clsgwd(env, None, {"in": {"direction": "inbound", "forward": f"127.0.0.1:{service.port}"}},
                          "smgw.crt")
    header, body = first_record(port, client_hello([0xC023], {**PROFILE_EXTENSIONS, 4: b"", 22: b""}))
    assert header[0] == 22 and body[0] == 2, "expected a ServerHello"
    sid_len = body[4 + 2 + 32]
    pos = 4 + 2 + 32 + 1 + sid_len + 2 + 1
    end = pos + 2 + struct.unpack(">H", body[pos:pos + 2])[0]
    pos += 2
    kinds = []
    while pos < end:
        kind, length = struct.unpack(">HH", body[pos:pos + 4])
        kinds.append(kind)
        pos += 4 + length
    assert 4 not in kinds, kinds
    assert 22 in kinds, "encrypt_then_mac should be granted for a CBC suite"


def test_server_hello_request_is_refused_as_client(env):
    """NO_RENEGOTIATION as client: a HelloRequest from the SMGW (OpenSSL s_server's R command) is refused
    and logged; no second handshake is signed"""
    smgw = free_port()
    app_port = restart_clsgwd(env, smgw, {"app": {"ingress": "static", "target": "emt.example:443",
                                                  "proxy": "sni"}}, "smgw.crt")
    log_path = env.path("s_server-R.log")
    with open(log_path, "wb") as log:
        server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{smgw}", "-naccept", "1",
                                   "-cert", env.path("smgw.crt"), "-key", env.path("smgw.key"), "-Verify", "1",
                                   "-CAfile", env.path("device.crt"), "-tls1_2", "-groups",
                                   "brainpoolP256r1:brainpoolP384r1"],
                                  stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: b"ACCEPT" in open(log_path, "rb").read(), 10, "s_server to listen")
        app = socket.create_connection(("127.0.0.1", app_port))
        app.sendall(b"ping\n")
        wait_until(lambda: b"ping" in open(log_path, "rb").read(), 10, "data through the channel")
        server.stdin.write(b"R\n")
        server.stdin.flush()
        env.clsgwd.wait_log(r"TLS renegotiation attempt refused\" by=smgw answer=no_renegotiation")
        app.close()
        env.clsgwd.wait_log(r"channel closed id=1 ")
        assert len(env.audit_lines()) == 1
    finally:
        server.kill()
        server.wait()


# --- the wire as OpenSSL's -trace shows it -------------------------------------------------

PROFILE_SIGALGS = ["ecdsa_secp521r1_sha512", "ecdsa_secp384r1_sha384", "ecdsa_secp256r1_sha256"]


def trace_message(trace, message):
    """The lines of one handshake message in `openssl -trace` output (up to the next record)."""
    lines = trace.splitlines()
    start = next(i for i, line in enumerate(lines) if re.search(rf"\b{message}, Length=", line))
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"(Sent|Received) Record", lines[i])),
               len(lines))
    return lines[start:end]


def trace_items(block, heading):
    """The names listed under `heading` in a trace block: "ecdsa_secp256r1_sha256 (0x0403)" -> the name."""
    start = next(i for i, line in enumerate(block) if re.search(heading, line))
    indent = len(block[start]) - len(block[start].lstrip())
    items = []
    for line in block[start + 1:]:
        if len(line) - len(line.lstrip()) <= indent:
            break
        m = re.match(r"\s+(\S+) \((0x[0-9a-f]+|\d+)\)$", line)
        if m:
            items.append(m.group(1))
    return items


def trace_extensions(block):
    return re.findall(r"extension_type=(\w+)\(\d+\)", "\n".join(block))


def test_client_hello_signature_algorithms_are_ecdsa_only(env):
    """our ClientHello's signature_algorithms are exactly ECDSA with SHA-512/384/256 (OpenSSL s_server -trace)"""
    smgw = free_port()
    app = restart_clsgwd(env, smgw, {"app": {"ingress": "static", "target": "emt.example:443", "proxy": "sni"}},
                         "smgw.crt")
    server = s_server(env, smgw, "-tls1_2", "-groups", "brainpoolP256r1:brainpoolP384r1", "-trace")
    assert reverse_through(app) == b"eliforp NAH\n"
    env.clsgwd.wait_log(r"channel closed id=1 .*outcome=ok ")
    hello = trace_message(server.output(), "ClientHello")
    assert trace_items(hello, r"extension_type=signature_algorithms\(13\)") == PROFILE_SIGALGS, hello
    assert "max_fragment_length" not in trace_extensions(hello)


def inbound_trace(env, *args):
    service = Service("echo")
    port = restart_clsgwd(env, None, {"in": {"direction": "inbound", "forward": f"127.0.0.1:{service.port}"}},
                          "smgw.crt")
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-trace",
                        "-groups", "brainpoolP256r1:brainpoolP384r1", "-CAfile", env.path("device.crt"),
                        "-cert", env.path("smgw.crt"), "-key", env.path("smgw.key"), *args],
                       input=b"hello\n", capture_output=True, timeout=30)
    env.clsgwd.wait_log(r"channel closed id=1 .*outcome=ok ")
    return r.stdout.decode()


def test_certificate_request_asks_for_ecdsa_and_names_no_authority(env):
    """as server our CertificateRequest lists only ECDSA (with SHA-384 and SHA-256) and no certificate
    authority (OpenSSL s_client -trace): the pinned SMGW's name is not told to whoever connects"""
    request = trace_message(inbound_trace(env), "CertificateRequest")
    # mbedTLS keeps TLS 1.2's handshake transcript in SHA-256 and SHA-384 only, so a client's
    # CertificateVerify can use no other hash: SHA-512 is left out of the request.
    assert trace_items(request, r"signature_algorithms \(len=") == PROFILE_SIGALGS[1:], request
    assert any(re.search(r"certificate_authorities \(len=0\)", line) for line in request), request


def test_certificate_request_lists_ecdsa_sign_only(env):
    """as server our CertificateRequest's certificate_types is ecdsa_sign alone (OpenSSL s_client -trace):
    mbedTLS adds rsa_sign whenever RSA is compiled in, and deps/mbedtls.sh builds it without"""
    request = trace_message(inbound_trace(env), "CertificateRequest")
    assert trace_items(request, r"certificate_types \(len=") == ["ecdsa_sign"], request


def test_max_fragment_length_is_not_granted_as_server(env):
    """as server a client's max_fragment_length is not granted: the ServerHello leaves it out, the channel
    works with full-size records (OpenSSL s_client -maxfraglen 512 -trace)"""
    trace = inbound_trace(env, "-maxfraglen", "512")
    assert "max_fragment_length" in trace_extensions(trace_message(trace, "ClientHello"))
    server_hello = trace_message(trace, "ServerHello")
    assert "max_fragment_length" not in trace_extensions(server_hello), server_hello
