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
