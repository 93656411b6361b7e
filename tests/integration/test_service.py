"""clsgw under a service manager: what the daemons make of the environment systemd gives them."""
import os

from harness import free_port


def start(env, journal_stream):
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}"])
    cfg = env.write_config(sim, {"app": {"listen": f"127.0.0.1:{free_port()}", "ingress": "socks5", "allow": "*:*"}},
                           clsgw={"log_level": "info"})
    return env.start_clsgwd(cfg, env=dict(os.environ, JOURNAL_STREAM=journal_stream), wait_ready=False)


def test_journal_prefixes_only_when_stderr_is_the_journal_stream(env):
    """JOURNAL_STREAM names the journal's stream; clsgwd writes "<N>" priority prefixes only when its stderr is
    that stream (DEV:INODE), not when it merely inherited the variable with stderr elsewhere"""
    p = start(env, "1:1")
    p.wait_log("clsgwd ready")
    line = p.lines("clsgwd ready")[0]
    assert not line.startswith("<"), f"a priority prefix on a stderr that is not the journal: {line}"


def test_journal_prefixes_when_stderr_is_the_journal_stream(env):
    """with JOURNAL_STREAM naming clsgwd's stderr, lines carry "<6>" and no timestamp (journald stamps them)"""
    log = env.path("clsgwd.log")
    open(log, "w").close()
    st = os.stat(log)
    p = start(env, f"{st.st_dev}:{st.st_ino}")
    p.wait_log("clsgwd ready")
    assert p.lines("clsgwd ready")[0].startswith("<6>clsgwd ready"), p.lines("clsgwd ready")


def test_a_listen_address_not_up_yet_stops_no_other_channel(env):
    """a channel whose HAN address is not configured yet (192.0.2.1, TEST-NET-1) is bound anyway (IP_FREEBIND):
    clsgwd starts and the other channel carries data"""
    from harness import socks5_connect, transfer
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}"])
    port = free_port()
    cfg = env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "socks5", "allow": "*:*"},
                                 "late": {"direction": "inbound", "listen": f"192.0.2.1:{free_port()}",
                                          "forward": f"127.0.0.1:{echo}"}})
    env.start_clsgwd(cfg)
    s, rep = socks5_connect(port, "emt.example", 4443)
    assert rep == 0
    assert transfer(s, b"still served\n") == b"still served\n"


def test_status_shows_version_listeners_and_back_off_and_its_exit_code_follows_health(env):
    """clsgwctl status names clsgw's version and each listener; exit 0 while healthy, 4 while the SMGW is in
    back-off (new channels fail at once), with the back-off shown"""
    from harness import socks5_connect
    port, dead_smgw = free_port(), free_port()  # nothing listens at the SMGW's address
    cfg = env.write_config(dead_smgw, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "socks5", "allow": "*:*"}},
                           clsgw={"smgw_backoff_max": "60s"})
    env.start_clsgwd(cfg)
    r = env.clsgwctl("status", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "version: clsgw " in r.stdout and f"listening: 127.0.0.1:{port} (clsgwd) for app" in r.stdout, r.stdout
    s, rep = socks5_connect(port, "emt.example", 4443)
    assert rep != 0
    s.close()
    r = env.clsgwctl("status", check=False)
    assert r.returncode == 4 and "backing off" in r.stdout, f"exit {r.returncode}\n{r.stdout}"


def test_the_control_socket_folder_is_made_when_missing(env):
    """run by hand (no RuntimeDirectory=), clsgwd makes the control socket's folder (/run/clsgw by default)"""
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}"])
    os.makedirs(env.path("run"))  # stands in for /run
    sock = env.path("run/clsgw/control.sock")
    cfg = env.write_config(sim, {"app": {"listen": f"127.0.0.1:{free_port()}", "ingress": "socks5", "allow": "*:*"}},
                           clsgw={"control_socket": sock})
    env.start_clsgwd(cfg)
    assert os.path.isdir(env.path("run/clsgw")) and (os.stat(env.path("run/clsgw")).st_mode & 0o777) == 0o750
    import subprocess
    from harness import BIN
    r = subprocess.run([os.path.join(BIN, "clsgwctl"), "-s", sock, "status"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_expired_trust_certificate_is_an_error_in_the_log_and_in_check(env):
    """a pinned SMGW certificate that has expired: clsgwd logs an error at the start (and daily), and clsgwctl check
    fails (exit 1) instead of the "expires soon" warning (exit 3)"""
    env.ctl("key", "generate", "--out", env.path("old.key"))
    env.ctl("cert", "self-sign", "--key", env.path("old.key"), "--subject", "CN=old-smgw", "--days", "5",
            "--valid-from-days", "-10", "--out", env.path("old.crt"))
    cfg = env.write_config(free_port(), {"app": {"listen": f"127.0.0.1:{free_port()}", "ingress": "socks5",
                                                 "allow": "*:*"}}, trust="old.crt")
    p = env.start_clsgwd(cfg)
    assert any("certificate expired" in l and "CN=old-smgw" in l for l in p.lines(" error ")), p.output()
    r = env.clsgwctl("check", check=False)
    assert r.returncode == 1 and "has expired" in r.stdout + r.stderr, f"exit {r.returncode}: {r.stdout}{r.stderr}"


OPENSSL_CA = """[ca]
default_ca = ca_section
[ca_section]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any_name
unique_subject = no
[any_name]
commonName = supplied
"""


def test_a_certificate_that_expires_while_clsgwd_runs_is_an_error_at_that_second(env):
    """a pinned SMGW certificate with seconds left: "expires soon" at the start, then "certificate expired" as an
    error within seconds of its notAfter (not at the next daily check), without a reload"""
    import datetime
    import subprocess
    folder = env.path("ca")
    os.makedirs(folder)
    open(os.path.join(folder, "index.txt"), "w").close()
    with open(os.path.join(folder, "serial"), "w") as f:
        f.write("01\n")
    with open(os.path.join(folder, "ca.cnf"), "w") as f:
        f.write(OPENSSL_CA)
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp = lambda t: t.strftime("%Y%m%d%H%M%SZ")  # noqa: E731
    not_after = now + datetime.timedelta(seconds=6)
    run = lambda *a: subprocess.run(["openssl", *a], cwd=folder, check=True, capture_output=True)  # noqa: E731
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "short.key")
    run("req", "-new", "-key", "short.key", "-subj", "/CN=short-lived-smgw", "-out", "short.csr")
    run("ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", "short.key", "-in", "short.csr",
        "-startdate", stamp(now - datetime.timedelta(days=1)), "-enddate", stamp(not_after), "-out", "short.crt")
    cfg = env.write_config(free_port(), {"app": {"listen": f"127.0.0.1:{free_port()}", "ingress": "socks5",
                                                 "allow": "*:*"}}, trust="ca/short.crt")
    p = env.start_clsgwd(cfg)
    assert any("certificate expires soon" in l and "CN=short-lived-smgw" in l for l in p.lines(" warn")), p.output()
    assert not p.lines("certificate expired"), p.output()
    line = p.wait_log("certificate expired", timeout=20)
    late = datetime.datetime.now(datetime.timezone.utc) - not_after
    assert " error " in line and "CN=short-lived-smgw" in line, line
    assert late < datetime.timedelta(seconds=8), f"logged {late} after notAfter: {line}"
