"""Sandbox facts of a live worker, read from /proc, and forbidden calls that must kill."""
import json
import os
import pwd
import socket

from harness import (TEST_BIN, SkipTest, channel_pids, channel_worker, children_of, echoed_socks5_channel, free_port,
                     proc_name, proc_status, recv_all, recv_exact, socks5_connect, wait_until)

EMT, EMT_PORT = "emt.example", 4443


def gateway(env, worker_path=None, allow="*:*", settings=None):
    echo = env.start_echo()
    sim = env.start_sim([f"{EMT}:{EMT_PORT}=127.0.0.1:{echo}"])
    port = free_port()
    clsgw = {"worker_path": worker_path} if worker_path else {}
    clsgw.update(settings or {})
    env.start_clsgwd(env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "socks5",
                                                    "allow": allow}}, clsgw=clsgw))
    return port


def test_open_channel_worker_is_confined(env):
    """while a channel is open its worker shows Seccomp 2, NoNewPrivs 1, no capabilities, and the worker user"""
    port = gateway(env)
    s = echoed_socks5_channel(port, EMT, EMT_PORT)
    worker = channel_worker(env)
    status = proc_status(worker)
    assert status["Seccomp"].strip() == "2", status
    assert status["NoNewPrivs"].strip() == "1"
    for cap in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        assert int(status[cap], 16) == 0, (cap, status[cap])
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        assert status["Uid"].split()[0] == str(nobody.pw_uid)
        assert status["Gid"].split()[0] == str(nobody.pw_gid)
        assert status["Groups"].strip() == ""
        assert int(status["CapBnd"], 16) == 0, "bounding set not cleared"
    fds = sorted(int(f) for f in os.listdir(f"/proc/{worker}/fd"))
    assert fds == [0, 1, 2, 3, 4, 5, 6], fds
    with open(f"/proc/{worker}/limits") as f:
        limits = f.read()
    assert [l for l in limits.splitlines() if l.startswith("Max open files")][0].split()[3] == "8"
    s.close()


def test_forbidden_calls_kill_the_worker_and_the_master_serves_on(env):
    """open, socket, connect, execve, ptrace and fork in a worker end it by SIGSYS; clsgwd logs it and serves
    the next"""
    port = gateway(env, worker_path=os.path.join(TEST_BIN, "clsgw-worker-testhooks"))
    for n, call in enumerate(("open", "socket", "connect", "execve", "ptrace", "fork"), 1):
        s, rep = socks5_connect(port, f"forbidden-{call}.test", 1)
        assert rep is None, f"{call}: worker answered instead of dying"
        env.clsgwd.wait_log(rf"making a forbidden call\" call={call}")
        wait_until(lambda: len(env.clsgwd.lines(r"sandbox violation.*signal=SIGSYS")) == n, 10,
                   f"sandbox violation number {n}")
        assert not env.clsgwd.lines("forbidden call returned")
        s2, rep = socks5_connect(port, EMT, EMT_PORT)
        assert rep == 0
        s2.sendall(b"still serving")
        s2.shutdown(socket.SHUT_WR)
        assert recv_all(s2) == b"still serving"
    assert env.clsgwd.alive()


def private_scalar(env):
    """The device key's secret scalar, as big-endian bytes (from OpenSSL's reading of the key)."""
    import re
    import subprocess
    text = subprocess.run(["openssl", "pkey", "-in", env.path("device.key"), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    block = re.search(r"priv:\n((?:\s+[0-9a-f:]+\n)+)", text).group(1)
    return bytes.fromhex(re.sub(r"[\s:]", "", block)).lstrip(b"\0")


def memory_contains(pid, needle):
    """Scans every readable mapping of pid (root reads non-dumpable processes) for needle, in either
    byte order (mbedTLS keeps bignums as little-endian limbs). Reservations over 1 GiB (sanitizer
    shadow memory) are skipped; chunks overlap so that no match is split."""
    step = 1 << 20
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if "r" not in fields[1] or end - start > 1 << 30 or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            for at in range(start, end, step):
                try:
                    mem.seek(at)
                    chunk = mem.read(min(step + len(needle), end - at))
                except (OSError, ValueError, OverflowError):
                    continue
                if needle in chunk or needle[::-1] in chunk:
                    return True
    return False


def test_private_key_never_appears_in_a_worker(env):
    """while a channel is open, the key's secret scalar is nowhere in the worker's memory, but is in the
    signer's (the scan works)"""
    if os.geteuid() != 0:
        raise SkipTest("reading another process's memory needs root")
    port = gateway(env)
    s = echoed_socks5_channel(port, EMT, EMT_PORT)
    scalar = private_scalar(env)
    assert len(scalar) >= 30
    worker = channel_worker(env)
    signer = [p for p in children_of(env.clsgwd.pid) if proc_name(p) == "clsgw-signer"][0]
    # mbedTLS stores bignum limbs as 64-bit words: look for the scalar's least significant 16 bytes in
    # both byte orders, a span no other data matches by chance
    needle = scalar[-16:]
    assert memory_contains(signer, needle), "the scan must find the key where it is"
    assert not memory_contains(worker, needle), "the private key must never be inside a worker"
    s.close()


def proc_state(pid):
    """The one-letter state of pid from /proc/PID/stat ("T": stopped), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def stop_and_continue(pid):
    """SIGSTOP, wait until the kernel shows the process stopped, SIGCONT, wait until it runs or sleeps again."""
    import signal
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: proc_state(pid) == "T", 5, f"pid {pid} to stop")
    os.kill(pid, signal.SIGCONT)
    wait_until(lambda: proc_state(pid) not in ("T", "t"), 5, f"pid {pid} to continue")


def test_stop_and_continue_leave_a_worker_a_spare_and_the_signer_alive(env):
    """SIGSTOP then SIGCONT to an idle channel's worker, a spare and the signer: each lives on and serves
    (a debugger or the cgroup freezer does the same; the interrupted poll resumes through restart_syscall)"""
    from test_spares import pool_full
    port = gateway(env, settings={"resumption": "no"})  # the new channel must ask the signer
    s = echoed_socks5_channel(port, EMT, EMT_PORT)
    worker = channel_worker(env)
    spares = pool_full(env)
    signer = json.loads(env.clsgwctl("status", "--json").stdout)["signer"]["pid"]
    assert signer > 0 and proc_name(signer) == "clsgw-signer"
    for pid in (worker, spares[0], signer):
        stop_and_continue(pid)
    s.sendall(b"after SIGCONT")
    assert recv_exact(s, 13) == b"after SIGCONT", "the stopped worker's channel must still carry data"
    audited = len(env.audit_lines())
    second = echoed_socks5_channel(port, EMT, EMT_PORT, b"new channel")
    assert channel_pids(env)[1] == spares[0], "the oldest spare, stopped and continued, serves the next channel"
    assert len(env.audit_lines()) == audited + 1, "the signer signed for the new channel"
    assert json.loads(env.clsgwctl("status", "--json").stdout)["signer"]["pid"] == signer
    assert all(proc_state(p) not in (None, "Z") for p in (worker, spares[0], signer))
    assert not env.clsgwd.lines("SIGSYS|sandbox violation|signer exited|spare worker ended")
    s.close()
    second.close()
