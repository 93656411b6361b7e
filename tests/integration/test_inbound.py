"""HKS4/HKS5 inbound channels: the SMGW opens TLS to clsgw, which relays to a local service."""
import os
import socket
import subprocess

from harness import (Service, channel_worker, free_port, proc_status, recv_all, recv_exact, sha256, transfer,
                     wait_until)


def device(env, channels, clsgw=None):
    """clsgwd with inbound channels; returns the listen port of each channel."""
    for keys in channels.values():
        keys["direction"] = "inbound"
        keys.setdefault("listen", f"127.0.0.1:{free_port()}")
    env.start_clsgwd(env.write_config(None, channels, clsgw=clsgw))
    return {name: int(keys["listen"].rsplit(":", 1)[1]) for name, keys in channels.items()}


def emt_exchange(port, payload=b"request\n"):
    s = socket.create_connection(("127.0.0.1", port))
    return transfer(s, payload)


def s_client(env, port, *extra, stdin=b"hello\n", timeout=20):
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
            "-groups", "brainpoolP256r1:brainpoolP384r1", "-CAfile", env.path("device.crt"), *extra]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)


def test_simulator_offering_other_groups_gets_the_curve_named(env):
    """the simulator offering only secp384r1 to the brainpoolP256r1 device: the device finds no suite
    for its certificate (RFC 8422) and names why: reason cert_curve_not_offered, with the curve and
    the groups offered"""
    echo = Service("echo")
    ports = device(env, {"modbus": {"forward": f"127.0.0.1:{echo.port}"}})
    [emt] = env.start_sim_inbound([(ports["modbus"], None)], extra=["--groups", "secp384r1"])
    assert recv_all(socket.create_connection(("127.0.0.1", emt))) == b""
    env.sim.wait_log(r"TLS to the device failed .*reason=peer_alert_handshake_failure")
    env.clsgwd.wait_log(r'certificate curve not among the groups the SMGW offered" certificate_curve=brainpoolP256r1 '
                        r"smgw_offered=secp384r1 ")
    env.clsgwd.wait_log(r"channel closed .*name=modbus direction=inbound .*outcome=failed reason=cert_curve_not_offered ")
    assert echo.accepts == 0


def test_sixteen_mib_both_ways_with_half_close(env):
    """16 MiB from the EMT reach the device service and come back intact, after the EMT half-closed"""
    echo = Service("echo")
    ports = device(env, {"modbus": {"forward": f"127.0.0.1:{echo.port}"}})
    [emt] = env.start_sim_inbound([(ports["modbus"], None)])
    payload = os.urandom(16 << 20)
    got = emt_exchange(emt, payload)
    assert len(got) == len(payload) and sha256(got) == sha256(payload)
    env.clsgwd.wait_log(rf"channel closed .*name=modbus direction=inbound .*outcome=ok reason=smgw_closed "
                        rf"server_name=- forward=127.0.0.1:{echo.port} bytes_up={len(payload)} bytes_down={len(payload)}")
    assert echo.accepts == 1


class Greeter(Service):
    """A local service that greets, half-closes at once and then counts what the EMT still sends."""

    def handle(self, conn):
        conn.sendall(b"ready\n")
        conn.shutdown(socket.SHUT_WR)
        while True:
            data = conn.recv(65536)
            if not data:
                return
            self.received += len(data)


def test_service_half_close_still_receives_the_smgw_data(env):
    """a local service that half-closes first still gets all the EMT sends afterwards: clsgw keeps the
    TLS session open (TLS 1.2 cannot carry the half-close) until the SMGW closes"""
    service = Greeter()
    ports = device(env, {"modbus": {"forward": f"127.0.0.1:{service.port}"}})
    [emt] = env.start_sim_inbound([(ports["modbus"], None)])
    s = socket.create_connection(("127.0.0.1", emt))
    assert recv_exact(s, 6) == b"ready\n"
    # the EMT takes its time; the service's FIN has long reached clsgw
    wait_until(lambda: env.clsgwd.lines(r"plain side closed|channel closed"), 10, "the service's FIN at clsgw")
    payload = os.urandom(1 << 20)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s, timeout=20) == b""
    wait_until(lambda: service.received == len(payload), 10, "the EMT's bytes at the service")
    env.clsgwd.wait_log(rf"channel closed .*name=modbus .*outcome=ok reason=service_closed .*bytes_down={len(payload)}")


def test_unauthenticated_smgw_never_reaches_the_service(env):
    """no client certificate, an unpinned one, or one from another CA: refused, and the service sees no connection"""
    env.make_identity("han-ca", "CN=HAN CA", ca=True)
    env.make_identity("other-ca", "CN=other CA", ca=True)
    env.make_identity("smgw-ca", "CN=smgw via HAN CA", issuer="han-ca")
    env.make_identity("smgw-other-ca", "CN=smgw via other CA", issuer="other-ca")
    env.make_identity("impostor", "CN=impostor")
    service = Service("tag", b"service answered\n")
    ports = device(env, {"pinned": {"forward": f"127.0.0.1:{service.port}"},
                         "by-ca": {"forward": f"127.0.0.1:{service.port}", "trust": "han-ca.crt"}})
    r = s_client(env, ports["pinned"])
    assert b"service answered" not in r.stdout
    env.clsgwd.wait_log(r"channel closed .*name=pinned .*outcome=failed reason=no_client_certificate")
    [emt] = env.start_sim_inbound([(ports["pinned"], None)], identity="impostor")
    assert emt_exchange(emt) == b""
    env.clsgwd.wait_log(r"channel closed .*name=pinned .*outcome=failed reason=cert_untrusted")
    [emt] = env.start_sim_inbound([(ports["by-ca"], None)], identity="smgw-other-ca")
    assert emt_exchange(emt) == b""
    env.clsgwd.wait_log(r"channel closed .*name=by-ca .*outcome=failed reason=cert_untrusted")
    assert service.accepts == 0
    # the control: the SMGW certificate issued by the trusted CA gets through
    [emt] = env.start_sim_inbound([(ports["by-ca"], None)], identity="smgw-ca")
    assert emt_exchange(emt) == b"service answered\n"
    assert service.accepts == 1


def test_server_name_routes_channels_sharing_a_listener(env):
    """two channels on one listener reach two services by server_name; an unknown name is refused"""
    a, b = Service("tag", b"modbus\n"), Service("tag", b"api\n")
    listen = f"127.0.0.1:{free_port()}"
    device(env, {"modbus": {"listen": listen, "server_name": "modbus.device", "forward": f"127.0.0.1:{a.port}"},
                 "api": {"listen": listen, "server_name": "api.device", "forward": f"127.0.0.1:{b.port}"}})
    port = int(listen.rsplit(":", 1)[1])
    e_modbus, e_api, e_unknown, e_none = env.start_sim_inbound(
        [(port, "modbus.device"), (port, "API.device"), (port, "unknown.device"), (port, None)])
    assert emt_exchange(e_modbus) == b"modbus\n"
    assert emt_exchange(e_api) == b"api\n"
    assert emt_exchange(e_unknown) == b""
    env.clsgwd.wait_log(r"channel closed .*outcome=refused reason=unknown_server_name server_name=unknown.device")
    assert emt_exchange(e_none) == b""
    wait_until(lambda: len(env.clsgwd.lines("channel closed .*reason=unknown_server_name")) == 2, 10,
               "the second refusal")
    assert (a.accepts, b.accepts) == (1, 1)
    assert env.sim.lines(r"TLS to the device failed .*reason=peer_alert_unrecognized_name")


def test_a_listener_default_channel_takes_other_names(env):
    """a channel without server_name is its listener's default, also for names no channel claims"""
    a, d = Service("tag", b"modbus\n"), Service("tag", b"default\n")
    listen = f"127.0.0.1:{free_port()}"
    device(env, {"modbus": {"listen": listen, "server_name": "modbus.device", "forward": f"127.0.0.1:{a.port}"},
                 "fallback": {"listen": listen, "forward": f"127.0.0.1:{d.port}"}})
    port = int(listen.rsplit(":", 1)[1])
    e_modbus, e_other, e_none = env.start_sim_inbound([(port, "modbus.device"), (port, "other.device"), (port, None)])
    assert emt_exchange(e_modbus) == b"modbus\n"
    assert emt_exchange(e_other) == b"default\n"
    assert emt_exchange(e_none) == b"default\n"
    assert (a.accepts, d.accepts) == (1, 2)


def test_openssl_s_client_as_smgw(env):
    """OpenSSL s_client with the SMGW's certificate (TLS 1.2, brainpool) reaches the device service"""
    service = Service("tag", b"hello from the device\n")
    ports = device(env, {"api": {"server_name": "api.device", "forward": f"127.0.0.1:{service.port}"}})
    r = s_client(env, ports["api"], "-cert", env.path("smgw.crt"), "-key", env.path("smgw.key"),
                 "-servername", "api.device", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384", "-quiet")
    assert b"hello from the device" in r.stdout, r.stderr.decode()
    env.clsgwd.wait_log(r"channel closed .*name=api .*outcome=ok .*server_name=api.device .*"
                        r"suite=TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384")


def test_renegotiation_by_a_foreign_client_is_refused_and_logged(env):
    """s_client's R command: clsgwd refuses the renegotiation, logs it, and signs no second handshake"""
    service = Service("echo")
    ports = device(env, {"api": {"forward": f"127.0.0.1:{service.port}"}})
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{ports['api']}", "-tls1_2",
            "-groups", "brainpoolP256r1:brainpoolP384r1", "-CAfile", env.path("device.crt"),
            "-cert", env.path("smgw.crt"), "-key", env.path("smgw.key")]
    client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client.stdin.write(b"hello\n")
    client.stdin.flush()
    # s_client takes "R" as a command only on a line of its own: wait until "hello" went through
    wait_until(lambda: service.received >= 6, 10, "hello to reach the service")
    client.stdin.write(b"R\n")
    client.stdin.flush()
    env.clsgwd.wait_log(r'worker msg="TLS renegotiation attempt refused" by=smgw answer=no_renegotiation channel=1 name=api')
    client.stdin.close()
    client.wait(20)
    out = client.stdout.read()
    assert b"RENEGOTIATING" in out
    env.clsgwd.wait_log(r"channel closed id=1 ")
    assert len(env.audit_lines()) == 1, "a second handshake was signed"


def test_local_service_down_closes_the_smgw_side_with_a_reason(env):
    """with nothing listening at forward, the SMGW's channel is closed with close_notify and the log says why"""
    ports = device(env, {"modbus": {"forward": f"127.0.0.1:{free_port()}"}})
    [emt] = env.start_sim_inbound([(ports["modbus"], None)])
    # the EMT keeps its side open (no half-close), so the device's close is the first the SMGW sees
    s = socket.create_connection(("127.0.0.1", emt))
    s.sendall(b"request\n")
    assert recv_all(s) == b""
    s.close()
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=service_connection_refused")
    env.sim.wait_log(r"inbound channel closed .*reason=device_closed")


def test_inbound_worker_is_confined(env):
    """an inbound channel's worker shows the same sandbox facts as an outbound one"""
    echo = Service("echo")
    ports = device(env, {"modbus": {"forward": f"127.0.0.1:{echo.port}"}})
    [emt] = env.start_sim_inbound([(ports["modbus"], None)])
    s = socket.create_connection(("127.0.0.1", emt))
    s.sendall(b"ping")
    s.settimeout(10)
    assert s.recv(4) == b"ping"
    status = proc_status(channel_worker(env))
    assert status["Seccomp"].strip() == "2" and status["NoNewPrivs"].strip() == "1"
    assert all(int(status[c], 16) == 0 for c in ("CapEff", "CapPrm", "CapInh", "CapAmb"))
    if os.geteuid() == 0:
        assert status["Uid"].split()[0] != "0"
    s.close()
