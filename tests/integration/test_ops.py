"""Running clsgw as a service: clsgwctl status, log levels and log files."""
import json
import os
import signal
import socket

from harness import free_port, recv_all, socks5_connect, wait_until


def gateway(env, clsgw=None, wait_ready=True):
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}"])
    port = free_port()
    env.start_clsgwd(env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "socks5",
                                                    "allow": "*:*"}}, clsgw=clsgw), wait_ready=wait_ready)
    return port


def test_status_shows_an_open_channel_while_data_flows(env):
    """clsgwctl status lists the open channel with peer, target, suite, group, bytes and age; --json parses"""
    port = gateway(env)
    s, rep = socks5_connect(port, "emt.example", 4443)
    assert rep == 0
    s.sendall(b"x" * 5000)
    got = b""
    while len(got) < 5000:
        got += s.recv(65536)

    def open_channel():
        status = json.loads(env.clsgwctl("status", "--json").stdout)
        open_ones = [c for c in status["channels"]
                     if c["state"] == "open" and c["bytes_up"] == 5000 and c["bytes_down"] == 5000]
        return (status, open_ones[0]) if open_ones else None

    status, ch = wait_until(open_channel, 10, "the channel in clsgwctl status")
    assert ch["name"] == "app" and ch["direction"] == "outbound" and ch["target"] == "emt.example:4443"
    assert ch["peer"].startswith("127.0.0.1:") and ch["suite"] == "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"
    assert ch["group"] == "brainpoolP256r1" and ch["bytes_down"] == 5000 and ch["age_s"] >= 0
    assert status["signer"]["state"] == "ready" and len(status["signer"]["key_id"]) == 64
    roles = sorted(c["role"] for c in status["certificates"])
    assert roles == ["identity", "trust"] and all(c["days_left"] > 800 for c in status["certificates"])
    text = env.clsgwctl("status").stdout
    assert "#1 app outbound" in text and "target=emt.example:4443" in text and "up=4.9 KiB" in text
    s.shutdown(socket.SHUT_WR)
    recv_all(s)
    wait_until(lambda: json.loads(env.clsgwctl("status", "--json").stdout)["outcomes"].get("ok/app_closed") == 1,
               10, "the outcome counter")


def test_status_counts_refusals_by_reason(env):
    """the counters since start tell outcomes and reasons apart"""
    port = gateway(env)
    for _ in range(2):
        s, rep = socks5_connect(port, "not-in-profile.example", 1)
        assert rep == 2
    status = wait_until(lambda: (lambda st: st if st["finished"] == 2 else None)(
        json.loads(env.clsgwctl("status", "--json").stdout)), 10, "two finished channels")
    assert status["outcomes"] == {"refused/smgw_refused_not_allowed_by_ruleset": 2}


def test_log_level_changes_without_restart(env):
    """clsgwctl log-level debug makes clsgwd log debug lines from then on; a bad level or channel is refused"""
    port = gateway(env, clsgw={"log_level": "info"})
    socks5_connect(port, "emt.example", 4443)[0].close()
    env.clsgwd.wait_log(r"channel closed id=1 ")
    assert not env.clsgwd.lines(r" debug ")
    env.clsgwctl("log-level", "debug")
    socks5_connect(port, "emt.example", 4443)[0].close()
    env.clsgwd.wait_log(r" debug channel accepted id=2 ")
    bad = env.clsgwctl("log-level", "loud", check=False)
    # a usage error clsgwctl finds itself (exit 2), before asking clsgwd
    assert bad.returncode == 2 and "expected error, warn, info, debug or trace" in bad.stderr
    bad = env.clsgwctl("log-level", "debug", "nosuch", check=False)
    assert bad.returncode == 1 and "no channel named 'nosuch'" in bad.stderr


def test_log_file_is_reopened_after_rename(env):
    """with log_target = file, after logrotate's rename clsgwctl reopen-logs (or SIGUSR1) switches to the new file"""
    log = env.path("clsgwd-file.log")
    port = gateway(env, clsgw={"log_target": "file", "log_file": log}, wait_ready=False)
    wait_until(lambda: os.path.exists(log) and "clsgwd ready" in open(log).read(), 10, "clsgwd to log to its file")
    assert "signer ready" in open(log).read(), "the signer logs to the same file"
    os.rename(log, log + ".1")
    env.clsgwctl("reopen-logs")
    socks5_connect(port, "emt.example", 4443)[0].close()
    wait_until(lambda: os.path.exists(log) and "channel closed id=1 " in open(log).read(), 10, "a line in the new file")
    assert "channel closed" not in open(log + ".1").read()
    os.rename(log, log + ".2")
    env.clsgwd.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: os.path.exists(log), 10, "SIGUSR1 to reopen the file")
    socks5_connect(port, "emt.example", 4443)[0].close()
    wait_until(lambda: "channel closed id=2 " in open(log).read(), 10, "a line after SIGUSR1")
    assert "channel closed id=2 " not in open(log + ".2").read()


def test_clsgwctl_explains_an_unreachable_clsgwd(env):
    """clsgwctl says where it looked when no clsgwd answers"""
    r = env.clsgwctl("status", check=False)
    assert r.returncode == 1 and f"cannot reach clsgwd at {env.path('control.sock')}" in r.stderr


def test_reload_changes_the_target_for_new_channels_while_a_running_one_flows(env):
    """clsgwctl reload: the open channel keeps its EMT, new channels get the new target"""
    from harness import Service
    echo = env.start_echo()
    other = Service("tag", b"other EMT\n")
    sim = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}", f"other.example:4443=127.0.0.1:{other.port}"])
    port = free_port()
    channel = {"listen": f"127.0.0.1:{port}", "ingress": "static", "target": "emt.example:4443"}
    env.start_clsgwd(env.write_config(sim, {"app": dict(channel)}))
    running = socket.create_connection(("127.0.0.1", port))
    running.sendall(b"one")
    assert running.recv(3) == b"one"
    env.write_config(sim, {"app": dict(channel, target="other.example:4443")})
    env.clsgwctl("reload")
    env.clsgwd.wait_log(r"reloaded channels=1 ")
    running.sendall(b"two")
    assert running.recv(3) == b"two", "the running channel must keep its target"
    fresh = socket.create_connection(("127.0.0.1", port))
    fresh.sendall(b"hello")
    assert recv_all(fresh) == b"other EMT\n"
    running.shutdown(socket.SHUT_WR)
    recv_all(running)
    env.clsgwd.wait_log(r"channel closed id=1 .*target=emt.example:4443 .*outcome=ok|channel closed id=1 .*outcome=ok")
    assert len(env.audit_lines()) == 2


def test_reload_refuses_a_broken_config_or_a_mismatched_key_and_keeps_serving(env):
    """a reload with a syntax error, or a key that does not belong to the certificate, is refused with the
    reason, and the running configuration keeps serving"""
    port = gateway(env)
    good = open(env.path("clsgw.ini")).read()
    with open(env.path("clsgw.ini"), "a") as f:
        f.write("[channel:broken]\nlisten = 127.0.0.1:0\n")
    r = env.clsgwctl("reload", check=False)
    assert r.returncode == 1 and "reload refused" in r.stderr and "clsgw.ini:" in r.stderr, r.stderr
    env.make_identity("stranger", "CN=stranger")
    with open(env.path("clsgw.ini"), "w") as f:
        f.write(good.replace("key = device.key", "key = stranger.key"))
    r = env.clsgwctl("reload", check=False)
    assert r.returncode == 1 and "does not match the certificate" in r.stderr, r.stderr
    env.clsgwd.proc.send_signal(signal.SIGHUP)  # the same refusal through the signal
    wait_until(lambda: len(env.clsgwd.lines("reload refused")) == 3, 10, "the third refusal")
    s, rep = socks5_connect(port, "emt.example", 4443)
    assert rep == 0, "the old configuration must keep serving"
    s.sendall(b"still here")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"still here"
    assert json.loads(env.clsgwctl("status", "--json").stdout)["signer"]["restarts"] == 0


def test_reload_adds_and_removes_listeners(env):
    """a channel added by reload listens at once; a removed one stops accepting"""
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}"])
    first, second = free_port(), free_port()
    keep = {"listen": f"127.0.0.1:{first}", "ingress": "static", "target": "emt.example:4443"}
    env.start_clsgwd(env.write_config(sim, {"first": keep}))
    env.write_config(sim, {"second": dict(keep, listen=f"127.0.0.1:{second}")})
    env.clsgwctl("reload")
    s = socket.create_connection(("127.0.0.1", second))
    s.sendall(b"new")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"new"
    try:
        socket.create_connection(("127.0.0.1", first), timeout=2).close()
        refused = False
    except ConnectionRefusedError:
        refused = True
    assert refused, "the removed channel's listener must be closed"


def test_notify_protocol_ready_after_the_signer_status_watchdog_stopping(env):
    """on a NOTIFY_SOCKET: READY=1 only after the signer answered, STATUS= lines, WATCHDOG=1 at half of
    WATCHDOG_USEC, STOPPING=1 on SIGTERM"""
    import time
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(env.path("notify.sock"))
    notify.settimeout(10)
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}"])
    port = free_port()
    cfg = env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                         "target": "emt.example:4443"}})
    environment = dict(os.environ, NOTIFY_SOCKET=env.path("notify.sock"), WATCHDOG_USEC="400000")
    p = env.start_clsgwd(cfg, env=environment, wait_ready=False)
    messages = []

    def receive_until(predicate):
        while not predicate():
            messages.append(notify.recv(4096).decode())
        return True

    receive_until(lambda: "READY=1" in messages)
    assert p.lines("signer ready"), "READY=1 came before the signer answered"
    started = time.monotonic()
    receive_until(lambda: messages.count("WATCHDOG=1") >= 4)
    assert time.monotonic() - started < 2, "WATCHDOG=1 should come about every 200 ms"
    socket.create_connection(("127.0.0.1", port)).close()
    receive_until(lambda: any(m.startswith("STATUS=") and "1 finished" in m for m in messages))
    p.proc.send_signal(signal.SIGTERM)
    receive_until(lambda: "STOPPING=1" in messages)


def test_check_signs_through_the_running_signer_and_warns_of_expiry(env):
    """clsgwctl check --sign: config valid, a test signature verified against our certificate (and audited),
    exit 3 with a warning when a certificate expires within 30 days"""
    gateway(env)
    r = env.clsgwctl("check", "--sign")
    assert "is valid" in r.stdout and "test signature verified" in r.stdout, r.stdout
    assert [l for l in env.audit_lines() if "name=clsgwctl-check" in l and "result=ok" in l]
    env.clsgwd.stop()
    os.remove(env.path("device.crt"))
    env.ctl("cert", "self-sign", "--key", env.path("device.key"), "--subject", "CN=short-lived", "--days", "10",
            "--out", env.path("device.crt"))
    env.start_clsgwd(env.path("clsgw.ini"))
    r = env.clsgwctl("check", check=False)
    assert r.returncode == 3 and "warning: identity certificate 'CN=short-lived' expires in 9 days" in r.stdout, r.stdout
    env.clsgwd.wait_log(r"certificate expires soon role=identity")


def test_a_new_identity_is_accepted_and_pinned_by_its_fingerprint(env):
    """clsgwctl key generate + cert self-sign make an identity clsgwd accepts; the SMGW simulator pins the
    device by the fingerprint clsgwctl prints; cert request makes a CSR OpenSSL verifies"""
    ctl = env.ctl
    ctl("key", "generate", "--out", env.path("new.key"))
    ctl("cert", "self-sign", "--key", env.path("new.key"), "--subject", "CN=heat-pump-42,O=Example",
        "--out", env.path("new.crt"))
    fingerprint = ctl("fingerprint", env.path("new.crt")).stdout.split()[1]
    echo = env.start_echo()
    port, smgw = free_port(), free_port()
    env.start("smgw-pin", [os.path.join(os.environ["CLSGW_BUILD"], "bin", "clsgw-smgw-sim"), "smgw",
                           "--listen", f"127.0.0.1:{smgw}", "--cert", env.path("smgw.crt"), "--key",
                           env.path("smgw.key"), "--trust", env.path("smgw.crt"), "--pin-sha256", fingerprint,
                           "--route", f"emt.example:4443=127.0.0.1:{echo}"]).wait_log("listening")
    cfg = env.write_config(smgw, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                          "target": "emt.example:4443"}})
    with open(cfg) as f:
        text = f.read().replace("certificate = device.crt", "certificate = new.crt").replace("key = device.key",
                                                                                                "key = new.key")
    with open(cfg, "w") as f:
        f.write(text)
    env.start_clsgwd(cfg)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"new identity")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"new identity"
    ctl("cert", "request", "--key", env.path("new.key"), "--subject", "CN=heat-pump-42,O=Example",
        "--out", env.path("new.csr"))
    import subprocess
    r = subprocess.run(["openssl", "req", "-in", env.path("new.csr"), "-noout", "-verify", "-subject"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "CN = heat-pump-42" in r.stdout + r.stderr, r.stdout + r.stderr


def test_repeated_handshake_failures_from_one_peer_are_rate_limited(env):
    """ten identical handshake failures: three lines, then one 'suppressed' line with the count"""
    env.make_identity("other", "CN=not-the-smgw")
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}"])
    port = free_port()
    env.start_clsgwd(env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                                    "target": "emt.example:4443"}},
                                      clsgw={"log_suppress_interval": "2s"}, trust="other.crt"))
    for _ in range(10):
        recv_all(socket.create_connection(("127.0.0.1", port)))
    wait_until(lambda: json.loads(env.clsgwctl("status", "--json").stdout)["finished"] == 10, 20, "ten failures")
    assert len(env.clsgwd.lines(r"channel closed .*reason=cert_untrusted")) == 3
    # at the end of the interval clsgwd writes the summary on its own
    env.clsgwd.wait_log(r"suppressed repeated channel failures peer=127.0.0.1 reason=cert_untrusted suppressed=7 ")


def test_signer_as_its_own_socket_activated_service(env):
    """clsgw-signer started by systemd-socket-activate (as clsgw-signer.socket does) serves clsgwd, which
    needs no key path; after the signer service restarts, clsgwd reconnects"""
    signer_sock = env.path("signer.sock")
    signer_argv = ["systemd-socket-activate", "--seqpacket", "-l", signer_sock,
                   os.path.join(os.environ["CLSGW_BUILD"], "bin", "clsgw-signer"), "--key", env.path("device.key"),
                   "--certificate", env.path("device.crt"), "--audit-log", env.path("signer-audit.log")]
    first = env.start("signer-service", signer_argv)
    first.wait_log("Listening on")
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}"])
    port = free_port()
    cfg = env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                         "target": "emt.example:4443"}})
    with open(cfg) as f:
        text = f.read().replace("key = device.key", f"signer_socket = {signer_sock}")
    with open(cfg, "w") as f:
        f.write(text)
    env.start_clsgwd(cfg)
    env.clsgwd.wait_log(r"signer ready pid=-1 .*mode=service")

    def echo_once():
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"via the signer service")
        s.shutdown(socket.SHUT_WR)
        return recv_all(s)

    assert echo_once() == b"via the signer service"
    assert len(open(env.path("signer-audit.log")).read().splitlines()) == 1
    first.stop()
    env.clsgwd.wait_log("lost the connection to clsgw-signer; reconnecting")
    os.unlink(signer_sock)
    env.start("signer-service-2", signer_argv).wait_log("Listening on")
    wait_until(lambda: len(env.clsgwd.lines(r"signer ready pid=-1 .*mode=service")) == 2, 15, "the reconnect")
    assert echo_once() == b"via the signer service"
    assert json.loads(env.clsgwctl("status", "--json").stdout)["signer"]["mode"] == "service"


def test_health_probes_sign_nothing_and_still_find_a_dead_signer(env):
    """clsgwctl check (without --sign) and clsgwctl metrics ask the signer for a liveness answer: 20 of them add no
    audit line and no signature; a stopped signer fails check after signer_timeout, a killed one at once"""
    import subprocess
    from harness import children_of, proc_name
    port = gateway(env, clsgw={"signer_timeout": "1s"})
    s, rep = socks5_connect(port, "emt.example", 4443)
    assert rep == 0
    s.close()
    env.clsgwd.wait_log(r"channel closed id=1 ")
    before = env.audit_lines()
    assert before, "the channel's handshake was audited"
    for _ in range(10):
        r = env.clsgwctl("check")
        assert r.returncode == 0 and "signer: alive" in r.stdout and "nothing signed" in r.stdout, r.stdout + r.stderr
        assert "clsgw_signer_up 1" in env.clsgwctl("metrics").stdout
    assert env.audit_lines() == before, "a health probe wrote to the audit log"
    assert f"clsgw_signer_signatures_total {len(before)}" in env.clsgwctl("metrics").stdout
    signer = [p for p in children_of(env.clsgwd.pid) if proc_name(p) == "clsgw-signer"][0]
    os.kill(signer, signal.SIGSTOP)
    try:
        r = env.clsgwctl("check", check=False)
        assert r.returncode == 1 and "signer: no answer within signer_timeout (1s)" in r.stdout + r.stderr, \
            r.stdout + r.stderr
        assert "clsgw_signer_up 0" in env.clsgwctl("metrics").stdout
    finally:
        os.kill(signer, signal.SIGCONT)
    # A killed signer fails check at once. clsgwd restarts it after a back-off (1s, then 2s, ...); a
    # check that a slow machine runs only after the new signer is ready proves nothing, so the kill is
    # repeated (only) then, with a longer back-off each time.
    for attempt in range(4):
        exits = len(env.clsgwd.lines("signer exited; restarting"))
        readies = len(env.clsgwd.lines("signer ready"))
        os.kill(signer, signal.SIGKILL)
        wait_until(lambda: len(env.clsgwd.lines("signer exited; restarting")) > exits, 10, "clsgwd to see the signer die")
        r = env.clsgwctl("check", check=False)
        if "signer: not ready" in r.stdout + r.stderr:
            assert r.returncode == 1, r.stdout + r.stderr
            break
        assert len(env.clsgwd.lines("signer ready")) > readies, \
            f"check passed with the signer dead and not yet restarted:\n{r.stdout}{r.stderr}"
        signer = [p for p in children_of(env.clsgwd.pid) if proc_name(p) == "clsgw-signer"][0]
    else:
        raise AssertionError("each restarted signer was ready before check ran: a dead one was never checked")
    assert env.audit_lines() == before


def test_metrics_are_openmetrics_a_foreign_parser_reads(env):
    """clsgwctl metrics: OpenMetrics text ending in # EOF that prometheus_client's parser reads, with the open
    channels, channels by outcome and reason, the handshake histogram, bytes each way, the signer's signatures
    and the certificates' days left"""
    import subprocess
    port = gateway(env)
    s, rep = socks5_connect(port, "emt.example", 4443)
    assert rep == 0
    s.sendall(b"x" * 1000)
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"x" * 1000
    env.clsgwd.wait_log(r"channel closed id=1 .*outcome=ok")
    refused, rep = socks5_connect(port, "emt.example", 9)  # the simulator routes no such target
    refused.close()
    env.clsgwd.wait_log(r"channel closed id=2 ")
    held = socket.create_connection(("127.0.0.1", port))  # open: a channel still in its SOCKS5 exchange
    wait_until(lambda: json.loads(env.clsgwctl("status", "--json").stdout)["open_channels"] == 1, 10, "an open channel")
    text = env.clsgwctl("metrics").stdout
    held.close()
    assert text.endswith("# EOF\n"), text[-200:]
    parser = (
        "import json, sys\n"
        "from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n"
        "out = {}\n"
        "for f in parse(sys.stdin.read()):\n"
        "    out[f.name] = {'type': f.type, 'samples': [[s.name, s.labels, s.value] for s in f.samples]}\n"
        "print(json.dumps(out))\n")
    r = subprocess.run(["/usr/bin/python3", "-c", parser], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + text
    families = json.loads(r.stdout)

    def value(name, sample=None, **labels):
        for n, l, v in families[name]["samples"]:
            if n == (sample or name) and all(l.get(k) == v2 for k, v2 in labels.items()):
                return v
        raise AssertionError(f"no {sample or name} {labels} in {families[name]}")

    assert families["clsgw_channels_finished"]["type"] == "counter"
    assert value("clsgw_channels_open") == 1
    assert value("clsgw_channels_finished", "clsgw_channels_finished_total", outcome="ok") == 1
    assert sum(v for n, l, v in families["clsgw_channels_finished"]["samples"]) == 2
    assert families["clsgw_handshake_seconds"]["type"] == "histogram"
    assert value("clsgw_handshake_seconds", "clsgw_handshake_seconds_count") == 2  # both channels reached TLS
    assert value("clsgw_handshake_seconds", "clsgw_handshake_seconds_bucket", le="+Inf") == 2
    assert value("clsgw_bytes_up", "clsgw_bytes_up_total") >= 1000
    assert value("clsgw_bytes_down", "clsgw_bytes_down_total") >= 1000
    assert value("clsgw_signer_up") == 1
    assert value("clsgw_signer_signatures", "clsgw_signer_signatures_total") == len(env.audit_lines())
    assert value("clsgw_certificate_days_left", role="identity") > 800
    assert value("clsgw_certificate_days_left", role="trust") > 800
