"""Containment: a hostile worker, a foreign SMGW client and a flood of names stay in their own lane.

The hostile worker is build/tests/clsgw-worker-testhooks (never installed): the real worker, started
and confined exactly like clsgw-worker, which for a channel named "hostile-ATTACK" sends what its
seccomp filter lets it send instead of serving the channel (cmd/clsgw-worker/hostile.cpp).
The SMGW is OpenSSL's s_server (reversing lines) or s_client: peers nobody here wrote.
"""
import json
import os
import socket
import subprocess
import threading
import time

from harness import TEST_BIN, Service, free_port, socks5_connect, wait_until

HOSTILE = os.path.join(TEST_BIN, "clsgw-worker-testhooks")
TARGET = "emt.example:443"


def status(env):
    return json.loads(env.clsgwctl("status", "--json").stdout)


def s_server(env, port, naccept):
    server = env.start(f"s_server-{len(env.processes)}", [
        "openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", str(naccept), "-cert", env.path("smgw.crt"),
        "-key", env.path("smgw.key"), "-Verify", "1", "-verify_return_error", "-CAfile", env.path("device.crt"),
        "-tls1_2", "-groups", "brainpoolP256r1:brainpoolP384r1", "-no_ticket", "-rev"])
    server.wait_log("ACCEPT")
    return server


def reverse_through(port):
    app = socket.create_connection(("127.0.0.1", port))
    app.settimeout(20)
    app.sendall(b"lane\n")
    got = b""
    try:
        while not got.endswith(b"\n"):
            chunk = app.recv(100)
            if not chunk:
                break
            got += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    app.close()
    return got


def outbound_gateway(env, smgw, names, clsgw=None):
    """Static SNI channels, one per name, all to the same target through the same SMGW."""
    channels, ports = {}, {}
    for name in names:
        ports[name] = free_port()
        channels[name] = {"listen": f"127.0.0.1:{ports[name]}", "ingress": "static", "target": TARGET,
                          "proxy": "sni"}
    settings = {"worker_path": HOSTILE, "spare_workers": "0"}
    settings.update(clsgw or {})
    env.start_clsgwd(env.write_config(smgw, channels, clsgw=settings))
    return ports


def channel_line(env, cid):
    return env.clsgwd.wait_log(rf"channel closed id={cid} ")


def open_hostile(ports, name):
    """Opens the hostile channel's connection; the worker does its attack without reading it."""
    return socket.create_connection(("127.0.0.1", ports[name]))


def lone_hostile_channel(env, name):
    """The channel line of a gateway's only channel, a hostile one (its SMGW never listens)."""
    ports = outbound_gateway(env, free_port(), [name])
    app = open_hostile(ports, name)
    line = channel_line(env, 1)
    app.close()
    return line


# --- sessions -------------------------------------------------------------------------------

def test_a_worker_cannot_read_another_channels_session(env):
    """a hostile worker asks for the session of another channel to the same SMGW and target, as an honest
    worker asks (it gets its own channel's scope: nothing), then by the key that used to be the
    server_name (it is ended); the victim's next channel still resumes its own session"""
    smgw = free_port()
    server = s_server(env, smgw, 3)
    ports = outbound_gateway(env, smgw, ["meter", "hostile-steal"])
    assert reverse_through(ports["meter"]) == b"enal\n"
    assert "resumed=no" in channel_line(env, 1)
    app = open_hostile(ports, "hostile-steal")
    line = channel_line(env, 2)
    app.close()
    answers = env.clsgwd.lines(r"hostile: session answer")
    assert len(answers) == 1 and "key=none bytes=0 " in answers[0], answers
    assert "reason=worker_protocol_violation" in line, line
    assert reverse_through(ports["meter"]) == b"enal\n"
    assert "resumed=yes" in channel_line(env, 3), "the victim's own session must still be there"
    server.wait_log(r"1 session cache hits")


def test_a_worker_cannot_plant_a_session_another_channel_resumes(env):
    """two hostile workers offer a session of their own making for the victim's SMGW and target: one
    under the victim's old key (it is ended), one as an honest worker offers (it lands in its own
    channel's scope); the victim's next channel resumes its real session, not a planted one"""
    smgw = free_port()
    server = s_server(env, smgw, 4)
    ports = outbound_gateway(env, smgw, ["meter", "hostile-plant-as-victim", "hostile-plant"])
    assert reverse_through(ports["meter"]) == b"enal\n"
    channel_line(env, 1)
    app = open_hostile(ports, "hostile-plant-as-victim")
    assert "reason=worker_protocol_violation" in channel_line(env, 2)
    app.close()
    app = open_hostile(ports, "hostile-plant")
    assert "reason=hostile_plant" in channel_line(env, 3)
    app.close()
    wait_until(lambda: status(env)["sessions"]["entries"] == 2, 5, "the victim's and the planted session")
    assert reverse_through(ports["meter"]) == b"enal\n"
    assert "outcome=ok" in channel_line(env, 4) and "resumed=yes" in channel_line(env, 4)
    server.wait_log(r"1 session cache hits")
    assert len(env.audit_lines()) == 1, "the victim resumed: no second signature"


def test_a_session_of_one_inbound_channel_does_not_open_another(env):
    """two inbound channels share a listener, a.example trusting SMGW A and b.example trusting SMGW B;
    s_client resumes A's session with server_name b.example and no certificate: no resumption, no
    handshake without a certificate, and service B sees no connection"""
    env.make_identity("smgw-b", "CN=smgw-b")
    service_a, service_b = Service("tag", b"A\n"), Service("tag", b"B\n")
    port = free_port()
    channels = {
        "a": {"direction": "inbound", "listen": f"127.0.0.1:{port}", "server_name": "a.example",
              "forward": f"127.0.0.1:{service_a.port}", "trust": "smgw.crt"},
        "b": {"direction": "inbound", "listen": f"127.0.0.1:{port}", "server_name": "b.example",
              "forward": f"127.0.0.1:{service_b.port}", "trust": "smgw-b.crt"},
    }
    env.start_clsgwd(env.write_config(None, channels))
    base = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-groups", "brainpoolP256r1",
            "-CAfile", env.path("device.crt")]
    first = subprocess.run([*base, "-servername", "a.example", "-cert", env.path("smgw.crt"), "-key",
                            env.path("smgw.key"), "-sess_out", env.path("a.pem")],
                           input=b"", capture_output=True, timeout=30).stdout.decode(errors="replace")
    assert "New, TLSv1.2" in first, first[-1500:]
    env.clsgwd.wait_log(r"channel closed id=1 .*name=a .*outcome=ok")
    second = subprocess.run([*base, "-servername", "b.example", "-sess_in", env.path("a.pem")],
                            input=b"", capture_output=True, timeout=30).stdout.decode(errors="replace")
    assert "Reused" not in second, second[-1500:]
    line = env.clsgwd.wait_log(r"channel closed id=2 ")
    assert "outcome=ok" not in line and "resumed=yes" not in line, line
    assert service_b.accepts == 0, "an SMGW without B's trust reached service B"
    # The same session with its own name still resumes: the scope holds, the cache works.
    third = subprocess.run([*base, "-servername", "a.example", "-sess_in", env.path("a.pem")],
                           input=b"", capture_output=True, timeout=30).stdout.decode(errors="replace")
    assert "Reused, TLSv1.2" in third, third[-1500:]


def test_the_session_cache_stays_bounded_after_1000_distinct_names(env):
    """1,000 distinct targets through an allow = *.example.org channel, each a full handshake that offers a
    session: the cache holds at most session_cache_entries, and one channel at most a quarter of them
    (its own oldest making room), so one channel's apps cannot push the others' sessions out"""
    sim = env.start_sim([])
    port = free_port()
    env.start_clsgwd(env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "socks5",
                                                    "allow": "*.example.org:*"}},
                                      clsgw={"session_cache_entries": "64", "log_level": "info"}))
    # 1,000 full handshakes take about a minute here; under ASan each costs ten times more, and the
    # sanitized run checks the same bound with 200.
    count = 200 if os.environ.get("CLSGW_SANITIZED") else 1000
    names = [f"name-{i}.example.org" for i in range(count)]
    replies = []

    def run(part):
        for name in part:
            s, rep = socks5_connect(port, name, 443, timeout=30)
            replies.append(rep)
            s.close()

    threads = [threading.Thread(target=run, args=(names[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(replies) == count and set(replies) == {0x02}, set(replies)  # the SMGW's profile refuses them
    wait_until(lambda: status(env)["finished"] >= count, 30, "every channel to end")
    st = status(env)["sessions"]
    assert st["capacity"] == 64 and st["entries"] == 16, st
    assert st["evicted"] == count - 16, st
    assert 0 < st["bytes"] <= 16 * 8192, st


def test_sessions_are_dropped_at_max_session_lifetime_without_further_traffic(env):
    """a kept session is gone from the cache once max_session_lifetime has passed, with no channel to
    trigger it: clsgwd sweeps on its own"""
    sim = env.start_sim([])
    port = free_port()
    env.start_clsgwd(env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "socks5",
                                                    "allow": "*:*"}},
                                      clsgw={"max_session_lifetime": "2s"}))
    s, rep = socks5_connect(port, "unknown.example", 443)
    s.close()
    wait_until(lambda: status(env)["sessions"]["entries"] == 1, 10, "the session to be kept")
    kept = time.monotonic()
    wait_until(lambda: status(env)["sessions"]["entries"] == 0, 10, "the sweep")
    assert 1.0 < time.monotonic() - kept < 4.0


# --- IPC floods and a worker's word ---------------------------------------------------------

def test_a_worker_flooding_the_master_is_ended_and_others_are_served_on_time(env):
    """a hostile worker sends thousands of requests the master must answer and reads none: each such request
    is allowed once per channel, so it is ended at its second, and a channel opened meanwhile completes in
    its normal time"""
    smgw = free_port()
    s_server(env, smgw, 2)
    ports = outbound_gateway(env, smgw, ["meter", "hostile-flood-master"])
    app = open_hostile(ports, "hostile-flood-master")
    started = time.monotonic()
    assert reverse_through(ports["meter"]) == b"enal\n"
    assert time.monotonic() - started < 3.0
    line = env.clsgwd.wait_log(r"channel closed id=\d+ name=hostile-flood-master ")
    assert "reason=worker_protocol_violation" in line, line
    env.clsgwd.wait_log(r"worker broke the IPC protocol; killed .*name=hostile-flood-master .*session_request sent "
                        r"more often than its 1")
    app.close()


def test_one_workers_word_does_not_back_off_the_smgw(env):
    """a hostile worker reports the SMGW as failing TLS (it never tried): the next channel still goes to
    the SMGW instead of failing fast with smgw_backoff"""
    smgw = free_port()
    s_server(env, smgw, 2)
    ports = outbound_gateway(env, smgw, ["meter", "hostile-smgw-failure"], clsgw={"smgw_backoff_max": "60s"})
    app = open_hostile(ports, "hostile-smgw-failure")
    assert "reason=smgw_tls_error" in channel_line(env, 1)
    app.close()
    assert reverse_through(ports["meter"]) == b"enal\n"
    assert "outcome=ok" in channel_line(env, 2)
    assert not env.clsgwd.lines("SMGW did not complete a channel")


def test_a_worker_cannot_forge_the_masters_log_lines(env):
    """a worker's text reaches the log only as the quoted value of a named key: a record imitating a
    channel line (with a line break) is quoted, and a free-text record ends the worker"""
    assert "reason=worker_protocol_violation" in lone_hostile_channel(env, "hostile-forge-log")
    quoted = env.clsgwd.wait_log(r'worker msg="channel closed id=999 ')
    assert "\\x0achannel closed id=998" in quoted, quoted
    forged = [l for l in env.clsgwd.output().splitlines() if "channel closed id=99" in l and "worker msg=" not in l]
    assert not forged, forged


def test_a_worker_flooding_the_signer_loses_its_session_and_others_are_signed(env):
    """a hostile worker sends thousands of sign requests on its signer session and reads no answer: the
    signer ends that session, and a channel opened meanwhile is signed in its normal time"""
    smgw = free_port()
    s_server(env, smgw, 1)
    ports = outbound_gateway(env, smgw, ["meter", "hostile-flood-signer"])
    app = open_hostile(ports, "hostile-flood-signer")
    env.clsgwd.wait_log(r"hostile: flooded the signer")
    started = time.monotonic()
    assert reverse_through(ports["meter"]) == b"enal\n"
    assert time.monotonic() - started < 3.0
    line = env.clsgwd.wait_log(r"channel closed id=\d+ name=meter ")
    assert "outcome=ok" in line and "resumed=no" in line, line
    app.close()
    signed = [l for l in env.audit_lines() if "result=ok" in l]
    assert len([l for l in signed if "name=meter" in l]) == 1, signed
    assert len([l for l in signed if "name=hostile-flood-signer" in l]) <= 2, signed


def test_a_signer_session_ends_at_its_first_refusal(env):
    """a hostile worker sends a refused request (an unknown key id), then a valid one on the same session:
    the valid one is never signed"""
    smgw = free_port()
    ports = outbound_gateway(env, smgw, ["hostile-signer-after-refusal"])
    app = open_hostile(ports, "hostile-signer-after-refusal")
    line = env.clsgwd.wait_log(r"hostile: signer after a refusal")
    app.close()
    assert "second=none" in line, line
    audit = [l for l in env.audit_lines() if "name=hostile-signer-after-refusal" in l]
    assert not [l for l in audit if "result=ok" in l], audit


def test_text_that_is_not_text_never_takes_clsgwd_down(env):
    """bytes that are not text where clsgwd shows text: a hostile worker reports a target of 0xff 0xfe (it
    is ended), and an SMGW sends such a server_name to an inbound default channel (refused,
    invalid_server_name); clsgwctl status answers throughout and clsgwd lives"""
    smgw = free_port()
    ports = outbound_gateway(env, smgw, ["hostile-not-text"])
    app = open_hostile(ports, "hostile-not-text")
    assert "reason=worker_protocol_violation" in channel_line(env, 1)
    app.close()
    assert status(env)["finished"] == 1
    env.clsgwd.stop()
    service = Service("tag", b"A\n")
    port = free_port()
    env.start_clsgwd(env.write_config(None, {"a": {"direction": "inbound", "listen": f"127.0.0.1:{port}",
                                                   "forward": f"127.0.0.1:{service.port}"}}))
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-groups",
                          "brainpoolP256r1", "-CAfile", env.path("device.crt"), "-servername", b"\xff\xfe.example",
                          "-cert", env.path("smgw.crt"), "-key", env.path("smgw.key")],
                         input=b"", capture_output=True, timeout=30).stdout.decode(errors="replace")
    assert "New, TLSv1.2" not in out, out[-1000:]
    line = env.clsgwd.wait_log(r"channel closed id=1 ")
    assert "outcome=refused reason=invalid_server_name" in line and "server_name=??.example" in line, line
    assert service.accepts == 0
    assert status(env)["finished"] == 1 and env.clsgwd.alive()


def test_a_handshake_under_way_during_a_reload_plants_nothing(env):
    """a channel that started under the old trust offers its session after a reload: it is not kept, so no
    later channel resumes a session the new trust never checked"""
    smgw = free_port()
    ports = outbound_gateway(env, smgw, ["hostile-late-offer"])
    app = open_hostile(ports, "hostile-late-offer")
    env.clsgwd.wait_log(r"channel accepted id=1 ")
    env.clsgwctl("reload")  # answered once the new configuration is committed
    env.clsgwd.wait_log(r"hostile: offered a session after waiting")
    channel_line(env, 1)
    app.close()
    assert status(env)["sessions"]["entries"] == 0


def test_a_worker_cannot_report_a_reason_outside_the_table(env):
    """reasons travel as codes of one table: a result whose code is not in it is refused as a
    protocol violation, and no name is made up for it in the log or the status counts"""
    assert "reason=worker_protocol_violation" in lone_hostile_channel(env, "hostile-forge-reason")
    env.clsgwd.wait_log(r'worker broke the IPC protocol; killed .*name=hostile-forge-reason .*error="malformed result: result with an unknown reason, or one a worker does not give"')
    outcomes = status(env)["outcomes"]
    assert outcomes == {"failed/worker_protocol_violation": 1}, outcomes
    assert "unknown_reason" not in env.clsgwd.output()
