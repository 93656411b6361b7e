"""What a local user, or a folder others can write to, can do to clsgw: the log and audit files, the key's
and the configuration's modes, the control socket."""
import os
import socket
import stat
import struct
import subprocess

from harness import BIN, free_port, program, socks5_connect, wait_until

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
