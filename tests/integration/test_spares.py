"""The spare-worker pool: workers exec'd and sandboxed ahead of time, one channel each."""
import json
import os
import pwd
import signal
import socket

from harness import (channel_pids, channel_worker, children_of, echoed_socks5_channel, free_port, proc_name,
                     proc_status, spare_pids, wait_until)

EMT, EMT_PORT = "emt.example", 4443


def gateway(env, **clsgw):
    echo = env.start_echo()
    sim = env.start_sim([f"{EMT}:{EMT_PORT}=127.0.0.1:{echo}"])
    port = free_port()
    env.start_clsgwd(env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "socks5",
                                                    "allow": "*:*"}}, clsgw=clsgw))
    return port


def status(env):
    return json.loads(env.clsgwctl("status", "--json").stdout)


def pool_full(env, size=2):
    """The spare pids once the pool holds size spares that have reached their wait for a job."""
    def ready():
        pids = spare_pids(env)
        if len(pids) != size or status(env)["spare_workers"]["ready"] != size:
            return None
        # sandboxed and waiting: the filter is loaded (done just before the wait)
        return pids if all(proc_status(p)["Seccomp"].strip() == "2" for p in pids) else None
    return wait_until(ready, 10, f"{size} sandboxed spare workers")


def open_channel(port):
    return echoed_socks5_channel(port, EMT, EMT_PORT)


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_spares_are_confined_before_any_input(env):
    """with no channel open, each spare already shows Seccomp 2, NoNewPrivs 1, no capabilities, the worker user,
    and holds only its control socket (fds 0-3); clsgwctl status counts them"""
    gateway(env)
    pids = pool_full(env)
    assert "spare workers: 2 of 2 waiting" in env.clsgwctl("status").stdout
    for pid in pids:
        st = proc_status(pid)
        assert st["Seccomp"].strip() == "2" and st["NoNewPrivs"].strip() == "1", st
        for cap in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
            assert int(st[cap], 16) == 0, (cap, st[cap])
        if os.geteuid() == 0:
            assert st["Uid"].split()[0] == str(pwd.getpwnam("nobody").pw_uid)
            assert int(st["CapBnd"], 16) == 0
        assert sorted(int(f) for f in os.listdir(f"/proc/{pid}/fd")) == [0, 1, 2, 3]
        with open(f"/proc/{pid}/cmdline") as f:
            assert f.read().split("\0")[1] == "--spare"


def test_a_spare_serves_exactly_one_channel_and_the_pool_refills(env):
    """a new channel is served by a waiting spare (with the connection on fd 4, the signer session on fd 5); the
    pool is refilled with new processes; the spare exits when its channel ends"""
    port = gateway(env)
    before = pool_full(env)
    s = open_channel(port)
    worker = channel_worker(env)
    assert worker in before, (worker, before)
    assert sorted(int(f) for f in os.listdir(f"/proc/{worker}/fd")) == [0, 1, 2, 3, 4, 5, 6]
    after = pool_full(env)
    assert worker not in after and len(set(after) - set(before)) == 1, (before, after)
    second = open_channel(port)
    assert channel_pids(env)[1] in after
    s.close()
    second.close()
    wait_until(lambda: gone(worker), 10, "the spare's exit after its channel")
    wait_until(lambda: status(env)["open_channels"] == 0, 10, "both channels closed")
    assert len(env.clsgwd.lines(r"channel closed .*outcome=ok")) == 2


def test_without_spares_each_channel_gets_a_fresh_worker(env):
    """spare_workers = 0: no worker runs while idle, and a channel still gets a confined worker of its own"""
    port = gateway(env, spare_workers="0")
    assert spare_pids(env) == []
    s = open_channel(port)
    worker = channel_worker(env)
    st = proc_status(worker)
    assert st["Seccomp"].strip() == "2" and int(st["CapEff"], 16) == 0
    with open(f"/proc/{worker}/cmdline") as f:
        assert f.read().split("\0")[:2] == ["clsgw-worker", ""]
    assert status(env)["spare_workers"] == {"configured": 0, "ready": 0}
    s.close()
    wait_until(lambda: [p for p in children_of(env.clsgwd.pid) if proc_name(p) == "clsgw-worker"] == [], 10,
               "no worker left")


def test_a_killed_spare_is_logged_and_replaced(env):
    """a spare killed from outside is logged with its signal and replaced after the refill pause; channels are
    served all along"""
    port = gateway(env)
    victim = pool_full(env)[0]
    os.kill(victim, signal.SIGKILL)
    env.clsgwd.wait_log(rf"a spare worker ended before serving a channel; the pool refills later pid={victim} "
                        r"status=SIGKILL retry_in_ms=1000")
    open_channel(port).close()  # served by the other spare or a fresh worker meanwhile
    after = pool_full(env)
    assert victim not in after
    assert env.clsgwd.alive()


def test_reload_replaces_the_spares(env):
    """after a reload the spares started under the old configuration exit and new ones take their place"""
    gateway(env)
    before = pool_full(env)
    env.clsgwctl("reload")
    env.clsgwd.wait_log("reloaded")
    wait_until(lambda: all(gone(p) for p in before), 10, "the old spares' exit")
    after = pool_full(env)
    assert not set(after) & set(before)


def test_stop_ends_the_spares(env):
    """SIGTERM to clsgwd: the spares exit with it, none is left behind"""
    gateway(env)
    spares = pool_full(env)
    env.clsgwd.stop()
    wait_until(lambda: all(gone(p) for p in spares), 10, "the spares' exit")


def run_spare_by_hand(args):
    """clsgw-worker started with a SEQPACKET socket as fd 3 (and nothing on 4 and 5), as clsgwd starts a
    spare; our end is closed at once, which a waiting spare takes as its cue to exit."""
    import subprocess
    from harness import program
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    def on_fd_3():
        os.dup2(theirs.fileno(), 3)
    # subprocess closes other fds after preexec_fn: fd 3 is named as one to keep
    p = subprocess.Popen([*program("clsgw-worker"), *args], stderr=subprocess.PIPE, text=True, preexec_fn=on_fd_3,
                         pass_fds=(3,))
    theirs.close()
    ours.close()
    _, err = p.communicate(timeout=10)
    return p.returncode, err


def test_worker_refuses_a_bad_spare_command_line(env):
    """clsgw-worker with its control socket on fd 3 but malformed --spare arguments says how it must be
    started; with well-formed ones it sandboxes itself, waits, and leaves quietly when fd 3 closes"""
    for bad in (["--spare", "nobody", "x"], ["--spare", "1"], ["--spare", "-2", "0"], ["--standby", "0", "0"]):
        code, err = run_spare_by_hand(bad)
        assert code != 0, bad
        assert "or as a spare (--spare UID GID) with fd 3 alone" in err, (bad, err)
    code, err = run_spare_by_hand(["--spare", "-1", "-1"])
    assert (code, err) == (0, ""), (code, err)
