"""Behaviour under faults: dying helpers, a dying SMGW, silent and slow peers, a connection flood."""
import json
import os
import signal
import socket
import threading
import time

from harness import (channel_worker, children_of, echoed_socks5_channel, free_port, proc_name, recv_all,
                     socks5_connect, wait_until)

EMT, EMT_PORT = "emt.example", 4443


def gateway(env, clsgw=None, ingress="socks5"):
    echo = env.start_echo()
    sim = env.start_sim([f"{EMT}:{EMT_PORT}=127.0.0.1:{echo}"])
    port = free_port()
    keys = {"listen": f"127.0.0.1:{port}", "ingress": ingress}
    keys.update({"allow": "*:*"} if ingress == "socks5" else {"target": f"{EMT}:{EMT_PORT}"})
    env.start_clsgwd(env.write_config(sim, {"app": keys}, clsgw=clsgw))
    return port


def open_channel(port):
    return echoed_socks5_channel(port, EMT, EMT_PORT, b"first")


def child(env, name):
    return wait_until(lambda: [p for p in children_of(env.clsgwd.pid) if proc_name(p) == name], 5, name)


def status(env):
    return json.loads(env.clsgwctl("status", "--json").stdout)


def test_signer_killed_open_channels_flow_new_ones_fail_fast_then_work_again(env):
    """with the signer killed, an open channel keeps flowing; a new channel ends at once with a named
    reason; after the master restarted the signer (with back-off) channels work again"""
    port = gateway(env)
    running = open_channel(port)
    os.kill(child(env, "clsgw-signer")[0], signal.SIGKILL)
    env.clsgwd.wait_log(r"signer exited; restarting status=signal=SIGKILL in_ms=1000")
    running.sendall(b"still flowing")
    assert running.recv(13) == b"still flowing"
    started = time.monotonic()
    refused = socket.create_connection(("127.0.0.1", port))
    assert recv_all(refused, timeout=5) == b""
    assert time.monotonic() - started < 2, "a channel without a signer must end at once"
    env.clsgwd.wait_log(r"channel refused: the signer is restarting .*reason=signer_unavailable")
    wait_until(lambda: len(env.clsgwd.lines(r"signer ready pid=")) == 2, 10, "the restarted signer")
    open_channel(port).close()
    assert status(env)["signer"]["restarts"] == 1
    running.close()


def test_killed_worker_is_logged_and_disturbs_nothing_else(env):
    """a worker killed from outside is logged with its signal and counted; the other channel goes on"""
    port = gateway(env)
    first = open_channel(port)
    first_worker = channel_worker(env)
    second = open_channel(port)
    os.kill(first_worker, signal.SIGKILL)
    env.clsgwd.wait_log(r"channel failed: worker died id=1 .*signal=SIGKILL")
    assert recv_all(first, timeout=5) == b""
    second.sendall(b"unaffected")
    assert second.recv(10) == b"unaffected"
    assert status(env)["outcomes"].get("failed/worker_died_SIGKILL") == 1
    second.close()


def test_smgw_dying_mid_transfer_ends_the_channel_never_hangs(env):
    """the SMGW's process dies while data flows: the app sees the end promptly and the log names it"""
    smgw = free_port()
    port = free_port()
    env.start_clsgwd(env.write_config(smgw, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                                     "target": f"{EMT}:443", "proxy": "sni"}}))
    server = env.start("s_server", ["openssl", "s_server", "-accept", f"127.0.0.1:{smgw}", "-naccept", "1",
                                    "-cert", env.path("smgw.crt"), "-key", env.path("smgw.key"), "-Verify", "1",
                                    "-CAfile", env.path("device.crt"), "-tls1_2", "-groups",
                                    "brainpoolP256r1:brainpoolP384r1", "-rev"])
    server.wait_log("ACCEPT")
    app = socket.create_connection(("127.0.0.1", port))
    app.sendall(b"line\n")
    app.settimeout(10)
    assert app.recv(5) == b"enil\n"
    server.stop(signal.SIGKILL)
    started = time.monotonic()
    try:
        ended = recv_all(app, timeout=10) == b""
    except ConnectionResetError:
        ended = True
    assert ended and time.monotonic() - started < 5
    env.clsgwd.wait_log(r"channel closed id=1 .*outcome=failed reason=(smgw_reset|smgw_closed_without_close_notify) ")


def test_silent_app_is_ended_by_handshake_timeout(env):
    """a local app that connects and says nothing is ended by handshake_timeout, named in the log"""
    port = gateway(env, clsgw={"handshake_timeout": "1s"})
    silent = socket.create_connection(("127.0.0.1", port))
    assert recv_all(silent, timeout=10) == b""
    env.clsgwd.wait_log(r"channel closed id=1 .*outcome=failed reason=handshake_timeout ")


def test_one_byte_per_second_socks_client_is_ended_by_handshake_timeout(env):
    """a SOCKS5 client trickling its greeting cannot hold a channel beyond handshake_timeout"""
    port = gateway(env, clsgw={"handshake_timeout": "2s"})
    slow = socket.create_connection(("127.0.0.1", port))
    greeting = b"\x05\x01\x00\x05\x01\x00\x03\x0bemt.example\x11\x5b"
    closed = threading.Event()

    def trickle():
        for byte in greeting:  # the slowness is the behaviour under test, not synchronisation
            try:
                slow.send(bytes([byte]))
            except OSError:
                break
            if closed.wait(0.5):
                break

    t = threading.Thread(target=trickle)
    t.start()
    started = time.monotonic()
    slow.settimeout(15)
    try:
        while slow.recv(64):
            pass
    except ConnectionResetError:
        pass
    closed.set()
    t.join()
    assert time.monotonic() - started < 6
    env.clsgwd.wait_log(r"channel closed id=1 .*reason=handshake_timeout ")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int([l for l in f if l.startswith("VmRSS:")][0].split()[1])


def test_connection_flood_stays_bounded(env):
    """600 connects against max_channels = 2: real channels amid the flood complete, the limit is logged
    once per interval, and the master's fds and memory return to their baseline"""
    port = gateway(env, clsgw={"max_channels": "2", "handshake_timeout": "5s"})
    pid = env.clsgwd.pid
    wait_until(lambda: status(env)["signer"]["state"] == "ready", 5, "a ready signer")
    base_fds, base_rss = fd_count(pid), rss_kib(pid)
    results = []

    def real_channel():
        try:
            s, rep = socks5_connect(port, EMT, EMT_PORT, timeout=60)
            s.sendall(b"amid the flood")
            s.shutdown(socket.SHUT_WR)
            results.append(rep == 0 and recv_all(s, timeout=60) == b"amid the flood")
        except OSError as e:
            results.append(e)

    workers = [threading.Thread(target=real_channel) for _ in range(6)]
    deadline = time.monotonic() + 30
    flood = 0
    for i in range(600):  # bounded in count and time
        if time.monotonic() > deadline:
            break
        if i % 100 == 0 and workers:
            workers.pop().start()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            flood += 1
        except OSError:
            pass
    for w in workers:
        w.start()
    wait_until(lambda: len(results) == 6, 90, "the real channels")
    assert all(r is True for r in results), results
    wait_until(lambda: status(env)["open_channels"] == 0, 60, "the flood to drain")
    wait_until(lambda: fd_count(pid) <= base_fds, 10, "the master's fds back to baseline")
    if not os.environ.get("CLSGW_SANITIZED"):  # ASan's quarantine keeps freed memory on purpose
        assert rss_kib(pid) < base_rss + 8 * 1024, (base_rss, rss_kib(pid))
    assert flood > 300
    elapsed_intervals = int((time.monotonic() - deadline + 30) / 10) + 1
    assert 1 <= len(env.clsgwd.lines("max_channels reached")) <= elapsed_intervals + 1


def test_an_smgw_refusing_tls_is_backed_off_and_apps_fail_fast_meanwhile(env):
    """after three channels in a row find the SMGW refusing TLS, clsgwd leaves it alone for about a
    second (then two): apps get SOCKS5 0x04 at once with reason smgw_backoff, and the SMGW sees no
    connection meanwhile"""
    from harness import TestServer

    class RefusingSmgw(TestServer):
        def __init__(self):
            self.accepted_at = []
            super().__init__()

        def handle(self, conn):
            self.accepted_at.append(time.monotonic())  # and hang up: no TLS here

    smgw = RefusingSmgw()
    port = free_port()
    env.start_clsgwd(env.write_config(smgw.port, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "socks5",
                                                          "allow": "*:*"}}, clsgw={"smgw_backoff_max": "60s"}))
    replies = []
    deadline = time.monotonic() + 15
    while len(smgw.accepted_at) < 5 and time.monotonic() < deadline:
        s, rep = socks5_connect(port, EMT, EMT_PORT)
        replies.append(rep)
        s.close()
        wait_until(lambda: status(env)["open_channels"] == 0, 5, "the channel to end")
    assert len(smgw.accepted_at) == 5, "clsgwd stopped retrying"
    # A failed TLS handshake is the worker's report: three channels in a row must fail before
    # clsgwd believes it (one worker's word does not stop every channel); then 1s, then 2s.
    gaps = [b - a for a, b in zip(smgw.accepted_at, smgw.accepted_at[1:])]
    assert gaps[0] < 0.75 and gaps[1] < 0.75, gaps
    assert 0.75 < gaps[2] < 1.6 and 1.55 < gaps[3] < 3.0, gaps
    assert replies.count(0x04) >= 3 and set(replies) <= {0x01, 0x04}, replies
    env.clsgwd.wait_log(r"channel closed .*outcome=failed reason=smgw_backoff ")
    backoffs = env.clsgwd.lines("SMGW did not complete a channel")
    assert len(backoffs) == 3 and all("seen_by=workers" in l for l in backoffs), backoffs


def test_workers_dying_before_any_work_make_clsgwd_pause_and_say_so(env):
    """with a worker that dies at once, clsgwd pauses accepting after three deaths (1s, then 2s) and logs
    why, instead of spawning in a loop"""
    import re
    port = free_port()
    env.start_clsgwd(env.write_config(free_port(), {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                                            "target": f"{EMT}:{EMT_PORT}"}},
                                      clsgw={"worker_path": "/bin/false"}))
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    paused = env.clsgwd.wait_log(r"workers die before doing any work; new channels wait in the listen backlog "
                                 r"deaths_in_a_row=3 pause_ms=1000")
    clients += [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]  # wait in the backlog
    env.clsgwd.wait_log(r"deaths_in_a_row=4 pause_ms=2000", timeout=15)

    def stamp(line):
        return time.mktime(time.strptime(line[:19], "%Y-%m-%dT%H:%M:%S")) + int(line[20:23]) / 1000

    closed = [stamp(l) for l in env.clsgwd.lines(r"channel closed .*reason=worker_exited_without_result")]
    # nothing was accepted during the pause: the next channels ended only after it
    assert len(closed) >= 4 and closed[3] - stamp(paused) >= 0.9, (closed, paused)
    assert all(re.search("exit=1", l) for l in env.clsgwd.lines(r"worker_exited_without_result"))
    for c in clients:
        c.close()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_fd_exhaustion_makes_accept_back_off_not_spin(env):
    """with no file descriptor left, clsgwd pauses accepting (and says so) instead of spinning; once fds are
    available again the waiting connections are served"""
    import resource
    port = gateway(env)
    pid = env.clsgwd.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (fd_count(pid), hard))
    waiting = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    env.clsgwd.wait_log(r"out of file descriptors or memory; pausing accept for 1s")
    before, started = cpu_seconds(pid), time.monotonic()
    wait_until(lambda: time.monotonic() - started > 2, 5, "two seconds of exhaustion")  # the span we measure
    used = cpu_seconds(pid) - before
    assert used < 0.3, f"clsgwd spent {used}s of CPU in 2s: it spins"
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    s = waiting[0]
    s.sendall(b"\x05\x01\x00")
    s.settimeout(10)
    assert s.recv(2) == b"\x05\x00", "the waiting connection must be served once fds are back"
    for w in waiting:
        w.close()


def test_an_idle_master_sleeps(env):
    """after some channels, an idle clsgwd does not wake up on its own: no CPU used over two seconds"""
    port = gateway(env)
    for _ in range(3):
        open_channel(port).close()
    wait_until(lambda: status(env)["open_channels"] == 0 and status(env)["finished"] == 3, 10, "idle")
    pid = env.clsgwd.pid
    before, started = cpu_seconds(pid), time.monotonic()
    wait_until(lambda: time.monotonic() - started > 2, 5, "two idle seconds")  # the span we measure
    assert cpu_seconds(pid) - before < 0.05


def test_silently_dead_smgw_is_detected_by_keepalive(env):
    """the SMGW in a network namespace whose link is cut: clsgw notices within keepalive_idle +
    keepalive_interval x keepalive_probes and ends the channel with smgw_keepalive_timeout"""
    import subprocess
    import uuid
    from harness import SkipTest, program
    if os.geteuid() != 0:
        raise SkipTest("network namespaces need root")
    ns, host_if, ns_if = f"clsgw-{uuid.uuid4().hex[:8]}", f"cg{uuid.uuid4().hex[:6]}", f"cs{uuid.uuid4().hex[:6]}"
    smgw_ip, device_ip = "169.254.77.2", "169.254.77.1"  # link-local, like many SMGWs' HAN address

    def ip(*args, check=True):
        return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)

    ip("netns", "add", ns)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("addr", "add", f"{device_ip}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{smgw_ip}/30", "dev", ns_if)
        ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        inside = ["ip", "netns", "exec", ns]
        env.start("emt-in-ns", inside + program("clsgw-smgw-sim") + ["emt-echo", "--listen", "127.0.0.1:9000"]) \
            .wait_log("listening")
        env.start("smgw-in-ns", inside + program("clsgw-smgw-sim") + [
            "smgw", "--listen", f"{smgw_ip}:4443", "--cert", env.path("smgw.crt"), "--key", env.path("smgw.key"),
            "--trust", env.path("device.crt"), "--route", f"{EMT}:{EMT_PORT}=127.0.0.1:9000"]).wait_log("listening")
        port = free_port()
        cfg = env.write_config(4443, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                              "target": f"{EMT}:{EMT_PORT}"}},
                               clsgw={"keepalive_idle": "1s", "keepalive_interval": "1s", "keepalive_probes": "2"})
        with open(cfg) as f:
            text = f.read().replace("address = 127.0.0.1:4443", f"address = {smgw_ip}:4443")
        with open(cfg, "w") as f:
            f.write(text)
        env.start_clsgwd(cfg)
        app = socket.create_connection(("127.0.0.1", port))
        app.sendall(b"before the cut")
        app.settimeout(10)
        assert app.recv(14) == b"before the cut"
        ip("link", "set", host_if, "down")  # no FIN, no RST: the SMGW just goes silent
        cut = time.monotonic()
        app.settimeout(20)
        assert recv_all(app, timeout=20) == b""
        assert time.monotonic() - cut < 1 + 1 * 2 + 3, "detected within the keepalive interval (plus slack)"
        env.clsgwd.wait_log(r"channel closed id=1 .*outcome=failed reason=smgw_keepalive_timeout ")
    finally:
        ip("link", "del", host_if, check=False)
        ip("netns", "del", ns, check=False)
