"""What a local user, or a folder others can write to, can do to clsgw: the log and audit files, the key's
and the configuration's modes, the control socket."""
import os
import socket
import stat
import struct
import subprocess

from harness import BIN, SkipTest, children_of, free_port, proc_name, program, socks5_connect, wait_until

EMT, EMT_PORT = "emt.example", 4443


def gateway_config(env, clsgw=None):
    echo = env.start_echo()
    sim = env.start_sim([f"{EMT}:{EMT_PORT}=127.0.0.1:{echo}"])
    port = free_port()
    cfg = env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "socks5", "allow": "*:*"}},
                           clsgw=clsgw)
    return cfg, port


def config_check(cfg):
    return subprocess.run([*program("clsgwd"), "-t", "-c", cfg], capture_output=True, text=True)


def failed_start(env, cfg):
    """clsgwd started on cfg, which must exit 1; its output."""
    p = env.start_clsgwd(cfg, wait_ready=False)
    assert p.proc.wait(10) == 1, p.output()
    return p.output()


def signer_start_failure(env, key, audit_log):
    """clsgw-signer started as clsgwd starts it, expected to refuse: the error it sends to the master."""
    control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fd = theirs.fileno()
    r = subprocess.run([os.path.join(BIN, "clsgw-signer"), "--key", key, "--certificate", env.path("device.crt"),
                        "--audit-log", audit_log], capture_output=True, text=True, pass_fds=(fd, 3),
                       preexec_fn=lambda: os.dup2(fd, 3), timeout=10)
    theirs.close()
    assert r.returncode == 1, r
    record = control.recv(4096)
    msg_type, _, _ = struct.unpack("=HHI", record[:8])
    assert msg_type == 16 and record[8] == 3  # a log record, level error
    return record[9:].decode()


def victim_file(env):
    """A file root must never append to, standing for /etc/shadow or the like."""
    victim = env.path("victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    return victim


def test_a_symlinked_log_file_is_refused_and_its_target_untouched(env):
    """log_file naming a symbolic link is refused by clsgwd -t, at start, and when the file is reopened after
    logrotate; the file it points to is never written"""
    victim = victim_file(env)
    log = env.path("clsgwd-file.log")
    os.symlink(victim, log)
    cfg, port = gateway_config(env, {"log_target": "file", "log_file": log})
    r = config_check(cfg)
    assert r.returncode == 1 and f"log_file {log} is a symbolic link; name the file itself" in r.stderr, r.stderr
    assert "is a symbolic link" in failed_start(env, cfg)
    assert open(victim).read() == "precious\n"
    os.unlink(log)
    env.start_clsgwd(cfg, wait_ready=False)
    wait_until(lambda: os.path.exists(log) and "clsgwd ready" in open(log).read(), 10, "clsgwd to log to its file")
    os.rename(log, log + ".1")
    os.symlink(victim, log)  # what a writer of the log folder could slip in before the reopen
    r = env.clsgwctl("reopen-logs", check=False)
    assert r.returncode == 1 and f"cannot reopen the log file: {log} is a symbolic link" in r.stderr, r.stderr
    env.clsgwd.proc.send_signal(__import__("signal").SIGUSR1)
    wait_until(lambda: "cannot reopen the log file; logging on to the one open" in open(log + ".1").read()
               and open(log + ".1").read().count("is a symbolic link") == 2, 10, "the refused reopens in the old file")
    s, rep = socks5_connect(port, EMT, EMT_PORT)
    assert rep == 0
    s.close()
    wait_until(lambda: "channel closed id=1 " in open(log + ".1").read(), 10, "the channel's line in the old file")
    assert open(victim).read() == "precious\n"


def test_a_symlinked_audit_log_is_refused_and_its_target_untouched(env):
    """audit_log naming a symbolic link is refused by clsgwd -t and by the signer itself; the file it points to
    is never written"""
    victim = victim_file(env)
    audit = env.path("audit.log")
    os.symlink(victim, audit)
    cfg, _ = gateway_config(env)
    r = config_check(cfg)
    assert r.returncode == 1 and f"audit_log {audit} is a symbolic link; name the file itself" in r.stderr, r.stderr
    message = signer_start_failure(env, env.path("device.key"), audit)
    assert "cannot open the audit log" in message and f"{audit} is a symbolic link" in message, message
    os.unlink(audit)
    os.mkfifo(audit)  # a FIFO without a reader: refused at once, not waited on
    message = signer_start_failure(env, env.path("device.key"), audit)
    assert f"{audit} is not a regular file" in message, message
    assert open(victim).read() == "precious\n"


def test_a_private_key_open_to_group_or_others_is_refused(env):
    """a key readable by group or others stops clsgwd -t, the start and the signer, naming the fix (chmod 0600);
    clsgwctl key generate writes keys 0600"""
    key = env.path("device.key")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600, "clsgwctl key generate must write 0600"
    cfg, _ = gateway_config(env)
    with open(cfg) as f:
        line = f.read().splitlines().index("key = device.key") + 1
    os.chmod(key, 0o644)
    hint = f"key {key} is accessible to group or others (mode 0644); make it private: chmod 0600 {key}"
    r = config_check(cfg)
    assert r.returncode == 1 and f"{cfg}:{line}: {hint}" in r.stderr, r.stderr
    assert hint in failed_start(env, cfg)
    assert hint in signer_start_failure(env, key, env.path("audit.log"))
    os.chmod(key, 0o640)
    assert "(mode 0640); make it private: chmod 0600" in config_check(cfg).stderr
    os.chmod(key, 0o600)
    assert config_check(cfg).returncode == 0


def test_a_configuration_writable_by_others_gets_a_warning(env):
    """clsgwd -t and the start warn about a configuration file others may write, and go on"""
    cfg, _ = gateway_config(env)
    os.chmod(cfg, 0o666)
    warning = f"configuration file {cfg} is writable by others; chmod o-w {cfg}"
    r = config_check(cfg)
    assert r.returncode == 0 and f"clsgwd: warning: {warning}" in r.stderr, r.stderr
    env.start_clsgwd(cfg)
    assert env.clsgwd.lines(f"warn {warning}")
    os.chmod(cfg, 0o644)
    assert "warning" not in config_check(cfg).stderr


def silent_control_connections(env, n):
    """n connections to the control socket that never send a byte."""
    out = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(env.path("control.sock"))
        out.append(s)
    return out


def timed(action):
    import time
    started = time.monotonic()
    value = action()
    return value, time.monotonic() - started


def test_silent_control_connections_hold_up_neither_channels_nor_clsgwctl(env):
    """with five silent connections on the control socket, a new channel opens and clsgwctl status answers in
    well under a second"""
    cfg, port = gateway_config(env)
    env.start_clsgwd(cfg)
    silent = silent_control_connections(env, 5)

    def open_channel():
        s, rep = socks5_connect(port, EMT, EMT_PORT)
        s.sendall(b"ping")
        return rep, s.recv(4)

    (rep, echoed), took = timed(open_channel)
    assert rep == 0 and echoed == b"ping"
    assert took < 1.0, f"a channel took {took:.1f}s to open behind silent control connections"
    status, took = timed(lambda: env.clsgwctl("status", "--json"))
    assert took < 1.0, f"clsgwctl status took {took:.1f}s behind silent control connections"
    # each is closed at the documented default, which the log names
    wait_until(lambda: len(env.clsgwd.lines("control connection closed: no command within control_timeout "
                                            r"uid=0 control_timeout=2s")) == 5, 5, "the silent connections' end")
    assert all(s.recv(1) == b"" for s in silent)


def test_control_connections_are_capped_and_the_next_waits_its_turn(env):
    """sixteen silent control connections fill the cap; clsgwctl waits in the backlog and is answered once
    control_timeout has ended one of them"""
    cfg, _ = gateway_config(env, {"control_timeout": "1s"})
    env.start_clsgwd(cfg)
    silent = silent_control_connections(env, 16)
    env.clsgwd.wait_log("control connections at their limit; new ones wait in the listen backlog max=16")
    r, took = timed(lambda: env.clsgwctl("status", "--json"))
    assert r.returncode == 0 and took < 3.0, took
    assert len(env.clsgwd.lines("control connection closed: no command within control_timeout")) >= 1
    for s in silent:
        s.close()


def as_user(uid, gid, groups=()):
    return {"user": uid, "group": gid, "extra_groups": list(groups)}


def clsgwctl_as(env, who, *args):
    return subprocess.run([os.path.join(BIN, "clsgwctl"), "-s", env.path("control.sock"), *args],
                          capture_output=True, text=True, timeout=30, **who)


def test_control_socket_admits_root_and_its_group_and_refuses_other_users(env):
    """the control socket is 0660 and belongs to control_group; members of that group (primary or supplementary)
    may use clsgwctl; another user is stopped by the mode, and, where a wrong mode lets it connect, by its
    credentials"""
    import grp
    import pwd
    if os.geteuid() != 0:
        raise SkipTest("changing users needs root")
    cfg, _ = gateway_config(env, {"control_group": "nogroup"})
    env.start_clsgwd(cfg)
    sock = env.path("control.sock")
    nogroup = grp.getgrnam("nogroup").gr_gid
    st = os.stat(sock)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == nogroup, (oct(st.st_mode), st.st_gid)
    os.chmod(env.dir, 0o711)  # let the other users reach the socket's folder
    nobody = pwd.getpwnam("nobody")
    daemon = pwd.getpwnam("daemon")
    assert nobody.pw_gid == nogroup and daemon.pw_gid != nogroup
    assert clsgwctl_as(env, as_user(nobody.pw_uid, nogroup), "status").returncode == 0
    assert clsgwctl_as(env, as_user(daemon.pw_uid, daemon.pw_gid, [nogroup]), "status").returncode == 0
    r = clsgwctl_as(env, as_user(daemon.pw_uid, daemon.pw_gid), "status")
    assert r.returncode == 1 and "Permission denied" in r.stderr, r.stderr
    os.chmod(sock, 0o666)  # a wrong mode must not be all that stands between a user and clsgwd
    r = clsgwctl_as(env, as_user(daemon.pw_uid, daemon.pw_gid), "status")
    refusal = f"uid {daemon.pw_uid} may not use clsgwd (root, uid 0 or group nogroup may)"
    assert r.returncode == 1 and refusal in r.stderr, (r.returncode, r.stderr)
    env.clsgwd.wait_log(rf"control connection refused: .* uid={daemon.pw_uid} group=nogroup")
    r = clsgwctl_as(env, as_user(daemon.pw_uid, daemon.pw_gid), "reload")
    assert r.returncode == 1 and not env.clsgwd.lines("reloading")


def test_check_waiting_for_a_stopped_signer_holds_up_nothing(env):
    """clsgwctl check while the signer is stopped: status still answers at once, and check reports the silent
    signer after signer_timeout"""
    import signal
    cfg, _ = gateway_config(env, {"signer_timeout": "2s"})
    env.start_clsgwd(cfg)
    signer = [p for p in children_of(env.clsgwd.pid) if proc_name(p) == "clsgw-signer"][0]
    os.kill(signer, signal.SIGSTOP)
    try:
        check = subprocess.Popen([os.path.join(BIN, "clsgwctl"), "-s", env.path("control.sock"), "check"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        env.clsgwd.wait_log(r"control command uid=0 command=check")
        r, took = timed(lambda: env.clsgwctl("status", "--json"))
        assert took < 1.0, f"clsgwctl status took {took:.1f}s while a check waited for the signer"
        assert check.poll() is None, "status must be answered while the check still waits for the signer"
        out, err = check.communicate(timeout=10)
        assert check.returncode == 1 and "signer: no answer within signer_timeout (2s)" in err + out, (out, err)
        assert "is valid" in err + out
    finally:
        os.kill(signer, signal.SIGCONT)
    assert env.clsgwctl("check").returncode == 0


def test_reload_waiting_for_its_new_signer_holds_up_nothing(env):
    """clsgwctl reload while the new signer has not yet loaded its key: channels open and status answers meanwhile;
    the reload is answered once the new signer is ready"""
    fifo = env.path("signer-gate")
    os.mkfifo(fifo)
    gate = env.path("gated-signer")
    with open(gate, "w") as f:  # the signer starts once the test writes a line to the FIFO
        f.write(f"#!/bin/sh\nread go < {fifo}\nexec {os.path.join(BIN, 'clsgw-signer')} \"$@\"\n")
    os.chmod(gate, 0o755)
    cfg, port = gateway_config(env, {"signer_path": gate, "signer_timeout": "20s"})
    env.start_clsgwd(cfg, wait_ready=False)

    def let_a_signer_start():
        with open(fifo, "w") as f:
            f.write("go\n")

    let_a_signer_start()
    env.clsgwd.wait_log("clsgwd ready")
    reload = subprocess.Popen([os.path.join(BIN, "clsgwctl"), "-s", env.path("control.sock"), "reload"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    env.clsgwd.wait_log("reloading")
    s, rep = socks5_connect(port, EMT, EMT_PORT)
    s.sendall(b"during the reload")
    assert rep == 0 and s.recv(17) == b"during the reload"
    r, took = timed(lambda: env.clsgwctl("status", "--json"))
    assert took < 1.0, f"clsgwctl status took {took:.1f}s while a reload waited for its signer"
    assert reload.poll() is None, "the reload must wait for its signer"
    let_a_signer_start()
    out, err = reload.communicate(timeout=10)
    assert reload.returncode == 0, (out, err)
    env.clsgwd.wait_log("reloaded channels=1 ")
    s.close()
