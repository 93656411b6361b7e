"""HKS3 outbound channels end to end: app -> clsgwd -> worker -> TLS -> SMGW simulator -> EMT."""
import os
import socket
import threading

from harness import Answerer, free_port, half_closed_request, recv_all, sha256, socks5_connect, transfer, wait_until

EMT = "emt.example"
EMT_PORT = 4443


def gateway(env, channels, clsgw=None, routes=None, trust="smgw.crt"):
    echo = env.start_echo()
    sim = env.start_sim(routes if routes is not None else [f"{EMT}:{EMT_PORT}=127.0.0.1:{echo}"])
    for keys in channels.values():
        keys.setdefault("listen", f"127.0.0.1:{free_port()}")
    env.start_clsgwd(env.write_config(sim, channels, clsgw=clsgw, trust=trust))
    return {name: int(keys["listen"].rsplit(":", 1)[1]) for name, keys in channels.items()}


def echo_once(port, payload, socks=None):
    if socks:
        s, rep = socks5_connect(port, *socks)
        assert rep == 0, f"SOCKS5 reply {rep}"
    else:
        s = socket.create_connection(("127.0.0.1", port))
    return transfer(s, payload)


def test_every_ingress_and_proxy_combination(env):
    """static and socks5 ingress, each with SOCKS5-in-TLS and SNI proxy formats, carry data both ways"""
    ports = gateway(env, {
        "static-socks5": {"ingress": "static", "target": f"{EMT}:{EMT_PORT}", "proxy": "socks5"},
        "static-sni": {"ingress": "static", "target": f"{EMT}:{EMT_PORT}", "proxy": "sni"},
        "socks5-socks5": {"ingress": "socks5", "allow": f"{EMT}:{EMT_PORT}", "proxy": "socks5"},
        "socks5-sni": {"ingress": "socks5", "allow": f"{EMT}:*", "proxy": "sni"},
    })
    for name, port in ports.items():
        payload = f"through {name}\n".encode() * 100
        socks = (EMT, EMT_PORT) if name.startswith("socks5") else None
        assert echo_once(port, payload, socks) == payload, name
        env.clsgwd.wait_log(rf"channel closed .*name={name} .*outcome=ok reason=app_closed .*target={EMT}:{EMT_PORT} "
                            rf"proxy={name.split('-')[1]} (port_sent=no )?bytes_up={len(payload)} bytes_down={len(payload)}")
    formats = [l.split("format=")[1].split()[0] for l in env.sim.lines("channel open")]
    assert sorted(formats) == ["sni", "sni", "socks5", "socks5"], formats


def test_sixteen_mib_each_way_arrives_intact(env):
    """16 MiB of random data goes up and comes back down unchanged (sha256)"""
    ports = gateway(env, {"app": {"ingress": "static", "target": f"{EMT}:{EMT_PORT}"}})
    payload = os.urandom(16 << 20)
    got = echo_once(ports["app"], payload)
    assert len(got) == len(payload) and sha256(got) == sha256(payload)
    env.clsgwd.wait_log(rf"channel closed .*outcome=ok .*bytes_up={len(payload)} bytes_down={len(payload)}")


def test_half_close_delivers_the_tail(env):
    """after the app half-closes, everything the EMT still sends reaches the app"""
    ports = gateway(env, {"app": {"ingress": "socks5", "allow": "*:*", "proxy": "socks5"}})
    s, rep = socks5_connect(ports["app"], EMT, EMT_PORT)
    assert rep == 0
    payload = os.urandom(3 << 20)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)  # at once: most of the echo is still on its way back
    got = recv_all(s)
    assert sha256(got) == sha256(payload)


def test_half_closed_request_is_answered_through_a_strict_smgw(env):
    """an app that half-closes after its request gets the EMT's later answer, though the SMGW ends the
    channel on close_notify (TLS 1.2 has no half-close)"""
    emt = Answerer()
    sim = env.start_sim([f"{EMT}:{EMT_PORT}=127.0.0.1:{emt.port}"])
    port = free_port()
    env.start_clsgwd(env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "socks5",
                                                    "allow": f"{EMT}:*", "proxy": "socks5"}}))
    assert half_closed_request(port, socks=(EMT, EMT_PORT)) == emt.answer
    env.clsgwd.wait_log(rf"channel closed .*outcome=ok reason=app_closed .*bytes_down={len(emt.answer)} ")
    assert emt.requests == [b"GET / HTTP/1.0\r\n\r\n"]


def test_app_that_sends_nothing_and_closes_ends_its_channel_at_once(env):
    """an app that connects and closes without a byte (a health check) does not hold a channel open"""
    ports = gateway(env, {"app": {"ingress": "static", "target": f"{EMT}:{EMT_PORT}"}}, clsgw={"close_timeout": "1m"})
    s = socket.create_connection(("127.0.0.1", ports["app"]))
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s, timeout=10) == b""
    env.clsgwd.wait_log(r"channel closed .*outcome=ok reason=(app|smgw)_closed .*bytes_up=0 bytes_down=0", timeout=10)


def test_simulator_issues_tickets_and_the_next_channel_resumes(env):
    """the simulator issues session tickets like an SMGW: the channel after the first resumes, with no signature"""
    ports = gateway(env, {"app": {"ingress": "static", "target": f"{EMT}:{EMT_PORT}"}})
    for n in (1, 2):
        assert echo_once(ports["app"], b"hello\n") == b"hello\n"
        env.clsgwd.wait_log(rf"channel closed id={n} .*outcome=ok ")
    env.clsgwd.wait_log(r"channel closed id=2 .*resumed=yes ")
    env.sim.wait_log(r"channel open .*resumed=yes")
    assert len(env.audit_lines()) == 1


def test_smgw_refusal_reaches_the_app_as_socks5_not_allowed(env):
    """a target outside the SMGW's proxy profile reaches the app as SOCKS5 0x02 and a log line, both formats"""
    ports = gateway(env, {"via-socks5": {"ingress": "socks5", "allow": "*:*", "proxy": "socks5"},
                          "via-sni": {"ingress": "socks5", "allow": "*:*", "proxy": "sni"}})
    s, rep = socks5_connect(ports["via-socks5"], "not-in-profile.example", 443)
    assert rep == 0x02
    env.clsgwd.wait_log(r"channel closed .*name=via-socks5 .*outcome=refused reason=smgw_refused_not_allowed_by_ruleset "
                        r"target=not-in-profile.example:443")
    s, rep = socks5_connect(ports["via-sni"], "not-in-profile.example", 443)
    assert rep == 0x02
    env.clsgwd.wait_log(r"channel closed .*name=via-sni .*outcome=refused reason=smgw_refused_unrecognized_name")


def test_allow_list_refusal_never_reaches_the_smgw(env):
    """a target outside the channel's allow list gets SOCKS5 0x02 and no connection is made to the SMGW"""
    ports = gateway(env, {"app": {"ingress": "socks5", "allow": f"{EMT}:{EMT_PORT}"}})
    s, rep = socks5_connect(ports["app"], EMT, 22)
    assert rep == 0x02
    env.clsgwd.wait_log(r"channel closed .*outcome=refused reason=target_not_allowed target=emt.example:22")
    assert "channel open" not in env.sim.output() and "handshake" not in env.sim.output()


def test_wrong_smgw_certificate_is_refused(env):
    """an SMGW whose certificate is not the pinned one is refused, and the app is told"""
    env.make_identity("other", "CN=not-the-smgw")
    ports = gateway(env, {"app": {"ingress": "socks5", "allow": "*:*"}}, trust="other.crt")
    s, rep = socks5_connect(ports["app"], EMT, EMT_PORT)
    assert rep == 0x01
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=cert_untrusted")
    assert "channel open" not in env.sim.output()


def test_smgw_trusted_through_a_ca(env):
    """an SMGW certificate issued by the CA in the trust file is accepted"""
    env.make_identity("ca", "CN=HAN test CA", ca=True)
    os.remove(env.path("smgw.key"))
    os.remove(env.path("smgw.crt"))
    env.make_identity("smgw", "CN=smgw-from-ca", issuer="ca")
    ports = gateway(env, {"app": {"ingress": "static", "target": f"{EMT}:{EMT_PORT}"}}, trust="ca.crt")
    assert echo_once(ports["app"], b"via ca\n") == b"via ca\n"


def test_device_certificate_is_checked_by_the_smgw(env):
    """the simulator refuses a device whose certificate it does not pin (mutual authentication)"""
    env.make_identity("stranger", "CN=stranger")
    echo = env.start_echo()
    sim = env.start_sim([f"{EMT}:{EMT_PORT}=127.0.0.1:{echo}"], trust="stranger.crt")
    port = free_port()
    env.start_clsgwd(env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                                    "target": f"{EMT}:{EMT_PORT}"}}))
    s = socket.create_connection(("127.0.0.1", port))
    assert recv_all(s) == b""
    env.sim.wait_log(r"device handshake failed .*reason=cert_untrusted")
    env.clsgwd.wait_log(r"channel closed .*outcome=failed")


def curve_test_gateway(env, *sim_options):
    """clsgwd towards a simulator offering secp384r1 and brainpoolP384r1 only; returns the app's port"""
    echo = env.start_echo()
    sim = env.start_sim([f"{EMT}:{EMT_PORT}=127.0.0.1:{echo}"],
                        extra=["--groups", "secp384r1:brainpoolP384r1", *sim_options])
    port = free_port()
    env.start_clsgwd(env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                                    "target": f"{EMT}:{EMT_PORT}"}}))
    return port


def test_simulator_refuses_a_device_certificate_on_a_curve_it_does_not_offer(env):
    """the simulator with groups secp384r1 and brainpoolP384r1 refuses the brainpoolP256r1 device
    certificate as strict SMGWs do (illegal_parameter, RFC 8422), and clsgw names the mismatch"""
    s = socket.create_connection(("127.0.0.1", curve_test_gateway(env)))
    assert recv_all(s) == b""
    env.sim.wait_log(r"device certificate curve not among our groups: refused \(RFC 8422\) "
                     r"certificate_curve=brainpoolP256r1 groups=secp384r1:brainpoolP384r1")
    env.sim.wait_log(r"device handshake failed .*reason=cert_curve_not_offered")
    env.clsgwd.wait_log(r'certificate curve not among the groups the SMGW offered" certificate_curve=brainpoolP256r1 '
                        r"smgw_chose=secp384r1 ")
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=smgw_refused_cert_curve ")


def test_simulator_accepts_any_certificate_curve_when_told(env):
    """with --cert-curve any the same simulator takes the brainpoolP256r1 certificate, and the key
    exchange stays on its own groups"""
    s = socket.create_connection(("127.0.0.1", curve_test_gateway(env, "--cert-curve", "any")))
    assert transfer(s, b"any curve\n") == b"any curve\n"
    env.sim.wait_log(r"channel open .*group=secp384r1")


def test_smgw_down_gives_connection_refused(env):
    """with nothing listening at the SMGW address, a SOCKS5 app gets 0x05 and the log names the reason"""
    port = free_port()
    env.start_clsgwd(env.write_config(free_port(), {"app": {"listen": f"127.0.0.1:{port}", "ingress": "socks5",
                                                             "allow": "*:*"}}))
    s, rep = socks5_connect(port, EMT, EMT_PORT)
    assert rep == 0x05
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=smgw_connection_refused")


def test_handshake_timeout_ends_a_silent_smgw(env):
    """an SMGW that accepts TCP but never speaks TLS is ended by handshake_timeout, named in the log"""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = free_port()
    env.start_clsgwd(env.write_config(silent.getsockname()[1], {"app": {"listen": f"127.0.0.1:{port}",
                                      "ingress": "static", "target": f"{EMT}:{EMT_PORT}"}},
                                      clsgw={"handshake_timeout": "1s"}))
    s = socket.create_connection(("127.0.0.1", port))
    assert recv_all(s, timeout=10) == b""
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=handshake_timeout")
    silent.close()


def test_max_channels_holds_connections_in_the_backlog(env):
    """with max_channels = 1 a second app waits, unaccepted, and is served once the first channel ends"""
    ports = gateway(env, {"app": {"ingress": "static", "target": f"{EMT}:{EMT_PORT}"}}, clsgw={"max_channels": "1"})
    first = socket.create_connection(("127.0.0.1", ports["app"]))
    first.sendall(b"one")
    assert first.recv(3) == b"one"
    second = socket.create_connection(("127.0.0.1", ports["app"]))  # completes in the kernel backlog
    second.sendall(b"two")
    second.settimeout(0.5)
    try:
        early = second.recv(3)
    except socket.timeout:
        early = None
    assert early is None, "the second channel was served while the first was open"
    assert len(env.clsgwd.lines("channel accepted")) == 1
    first.shutdown(socket.SHUT_WR)
    recv_all(first)
    second.settimeout(10)
    assert second.recv(3) == b"two"
    env.clsgwd.wait_log("max_channels reached")


def test_audit_log_has_one_line_per_handshake(env):
    """the signer's audit log gets exactly one line per full handshake, naming channel and result"""
    # resumption off: the simulator issues tickets, and every channel here is to make a full handshake
    ports = gateway(env, {"app": {"ingress": "static", "target": f"{EMT}:{EMT_PORT}"}}, clsgw={"resumption": "no"})
    for i in range(5):
        assert echo_once(ports["app"], b"x") == b"x"
    wait_until(lambda: len(env.clsgwd.lines("channel closed")) == 5, 10, "five channels to close")
    lines = env.audit_lines()
    assert len(lines) == 5, lines
    for i, line in enumerate(lines, 1):
        assert f"channel={i} name=app " in line and "result=ok" in line and "md=SHA256" in line
        assert "peer=127.0.0.1:" in line and "key=" in line and "digest_sha256=" in line and "latency_us=" in line


def test_many_parallel_channels_each_intact(env):
    """twenty channels in parallel each deliver their own data"""
    ports = gateway(env, {"app": {"ingress": "socks5", "allow": "*:*"}}, clsgw={"max_channels": "32"})
    results = {}

    def one(i):
        payload = os.urandom(100000 + i)
        s, rep = socks5_connect(ports["app"], EMT, EMT_PORT)
        results[i] = rep == 0 and transfer(s, payload) == payload

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(results.get(i) for i in range(20)), results
