"""clsgwd -t checks what the start checks: each configuration here passed -t and then failed to start."""
import json
import os
import subprocess

from harness import free_port, program, runs_emulated


def check(cfg):
    return subprocess.run([*program("clsgwd"), "-t", "-c", cfg], capture_output=True, text=True)


def line_of(cfg, text):
    with open(cfg) as f:
        return f.read().splitlines().index(text) + 1


@runs_emulated
def test_check_refuses_an_expired_identity_certificate(env):
    """an expired device certificate is an error at its [identity] line, not a warning"""
    os.remove(env.path("device.crt"))
    env.ctl("cert", "self-sign", "--key", env.path("device.key"), "--subject", "CN=expired", "--days", "5",
            "--valid-from-days", "-10", "--out", env.path("device.crt"))
    cfg = env.write_config(4443, {"app": {"listen": "127.0.0.1:7000", "ingress": "static", "target": "emt.example:443"}})
    r = check(cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{cfg}:{line_of(cfg, 'certificate = device.crt')}: certificate {env.path('device.crt')} expired on " \
        in r.stderr, r.stderr


@runs_emulated
def test_check_refuses_an_audit_log_in_a_missing_folder(env):
    """audit_log two folders deep into nothing is named with its line; one missing level is made at the start
    (as LogsDirectory= would), which -t says"""
    cfg = env.write_config(4443, {"app": {"listen": "127.0.0.1:7000", "ingress": "static", "target": "emt.example:443"}})
    with open(cfg) as f:
        text = f.read().replace("audit_log = audit.log", "audit_log = gone/deeper/audit.log")
    with open(cfg, "w") as f:
        f.write(text)
    r = check(cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{cfg}:{line_of(cfg, 'audit_log = gone/deeper/audit.log')}: audit_log " in r.stderr and \
        "does not exist, nor does" in r.stderr, r.stderr
    with open(cfg, "w") as f:
        f.write(text.replace("gone/deeper/audit.log", "gone/audit.log"))
    r = check(cfg)
    assert r.returncode == 0 and "the start makes it (mode 0750)" in r.stderr, r.stdout + r.stderr


@runs_emulated
def test_check_refuses_a_wildcard_beside_a_specific_address_on_one_port(env):
    """0.0.0.0:P beside 127.0.0.1:P cannot both be bound: the later channel's section is named"""
    port = free_port()
    cfg = env.write_config(4443, {
        "one": {"listen": f"127.0.0.1:{port}", "ingress": "static", "target": "emt.example:443"},
        "two": {"listen": f"0.0.0.0:{port}", "ingress": "static", "target": "emt.example:443"}})
    r = check(cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{cfg}:{line_of(cfg, '[channel:two]')}: channel 'two' listens on 0.0.0.0:{port}" in r.stderr, r.stderr


def test_check_refuses_max_channels_beyond_the_descriptor_limit(env):
    """max_channels that the hard descriptor limit cannot carry is an error naming LimitNOFILE= and the line"""
    cfg = env.write_config(4443, {"app": {"listen": "127.0.0.1:7000", "ingress": "static", "target": "emt.example:443"}},
                           clsgw={"max_channels": "1000"})
    r = subprocess.run(["prlimit", "--nofile=512:512", *program("clsgwd"), "-t", "-c", cfg], capture_output=True,
                       text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{cfg}:{line_of(cfg, 'max_channels = 1000')}: max_channels = 1000 needs " in r.stderr, r.stderr
    assert "LimitNOFILE=" in r.stderr, r.stderr
    r = subprocess.run(["prlimit", "--nofile=512:8192", *program("clsgwd"), "-t", "-c", cfg], capture_output=True,
                       text=True)
    assert r.returncode == 0, "a soft limit below the need is raised, not an error: " + r.stderr


@runs_emulated
def test_clsgwctl_usage_errors_exit_2_and_name_the_option(env):
    """a misspelled option, a missing value or a stray word is a usage error (exit 2) naming it, never ignored"""
    key = env.path("k.key")
    cases = [
        (["key", "generate", "--curv", "brainpoolP512r1", "--out", key], "--curv"),
        (["key", "generate", "--out"], "--out needs a value"),
        (["cert", "self-sign", "--key", env.path("device.key"), "--subject", "CN=x", "--dayz", "10"], "--dayz"),
        (["cert", "self-sign", "--key", env.path("device.key"), "--subject", "CN=x", "stray"], "'stray'"),
    ]
    for argv, named in cases:
        r = env.ctl(*argv, check=False)
        assert r.returncode == 2, f"clsgwctl {' '.join(argv)}: exit {r.returncode} {r.stdout}{r.stderr}"
        assert named in r.stderr, r.stderr
    assert not os.path.exists(key), "a key was written despite the misspelled option"


@runs_emulated
def test_clsgwctl_help_on_every_command(env):
    """--help anywhere prints the usage on stdout and exits 0; it never wants a value"""
    for argv in (["--help"], ["status", "--help"], ["key", "generate", "--help"], ["cert", "issue", "--help"],
                 ["cert", "self-sign", "--key", "--help"], ["log-level", "--help"]):
        r = env.ctl(*argv, check=False)
        assert r.returncode == 0 and "usage: clsgwctl" in r.stdout, f"{argv}: {r.returncode} {r.stderr}"


@runs_emulated
def test_clsgwctl_refuses_a_subject_that_is_not_a_dn(env):
    """--subject "not a dn" is refused (exit 2) instead of making a certificate with an empty subject"""
    out = env.path("bad.crt")
    r = env.ctl("cert", "self-sign", "--key", env.path("device.key"), "--subject", "not a dn", "--out", out, check=False)
    assert r.returncode == 2 and "not a dn" in r.stderr, r.stderr
    assert not os.path.exists(out)
    r = env.ctl("cert", "self-sign", "--key", env.path("device.key"), "--subject", "CN=ok,O=Example\\, Inc.",
                "--out", out, check=False)
    assert r.returncode == 0, r.stderr


@runs_emulated
def test_clsgwctl_checks_daemon_command_arguments_before_sending(env):
    """wrong arguments to daemon commands are usage errors found by clsgwctl, with no clsgwd to ask"""
    for argv, named in ((["log-level", "loud"], "'loud' is not a level"), (["log-level"], "LEVEL"),
                        (["reload", "now"], "reload takes no arguments"), (["status", "--jsn"], "--jsn")):
        r = env.ctl("-s", env.path("nobody-listens.sock"), *argv, check=False)
        assert r.returncode == 2 and named in r.stderr, f"{argv}: {r.returncode} {r.stderr}"


def with_key(cfg, key):
    import re
    with open(cfg) as f:
        text = re.sub(r"(?m)^key = .*$", f"key = {key}", f.read())
    with open(cfg, "w") as f:
        f.write(text)


def test_check_refuses_a_key_that_does_not_match_the_certificate(env):
    """a key that is not the certificate's is an error at its [identity] line, found by clsgw-signer itself (the
    program that reads the key at the start); a key on a curve outside the profile names the curve and the groups"""
    env.make_identity("other", "CN=other")
    cfg = env.write_config(4443, {"app": {"listen": "127.0.0.1:7000", "ingress": "static", "target": "emt.example:443"}})
    assert check(cfg).returncode == 0, check(cfg).stderr
    with_key(cfg, "other.key")
    r = check(cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{cfg}:{line_of(cfg, 'key = other.key')}: key {env.path('other.key')}: the private key does not match " \
        "the certificate" in r.stderr, r.stderr
    subprocess.run(["openssl", "ecparam", "-name", "secp521r1", "-genkey", "-noout", "-out", env.path("p521.key")],
                   check=True)
    os.chmod(env.path("p521.key"), 0o600)
    with_key(cfg, "p521.key")
    r = check(cfg)
    assert r.returncode == 1 and "it is secp521r1; clsgw offers and accepts brainpoolP256r1, brainpoolP384r1, " \
        "brainpoolP512r1, secp256r1, secp384r1" in r.stderr, r.stderr


def test_check_and_start_refuse_a_port_below_1024_that_clsgwd_cannot_bind(env):
    """listen on port 502 without CAP_NET_BIND_SERVICE (as under clsgwd.service) is an error at the listen line,
    from -t and from the start; with the capability, or with systemd passing the socket, it passes with a note"""
    from harness import BIN
    cfg = env.write_config(4443, {"modbus": {"direction": "inbound", "listen": "127.0.0.1:502",
                                             "forward": "127.0.0.1:1502"}})
    line = line_of(cfg, "listen = 127.0.0.1:502")
    no_cap = ["setpriv", "--bounding-set", "-net_bind_service", "--inh-caps", "-net_bind_service"]
    r = subprocess.run([*no_cap, *program("clsgwd"), "-t", "-c", cfg], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{cfg}:{line}: channel 'modbus': listen = 127.0.0.1:502 is below net.ipv4.ip_unprivileged_port_start " \
        "(1024) and clsgwd has no CAP_NET_BIND_SERVICE" in r.stderr, r.stderr
    r = subprocess.run([*no_cap, *program("clsgwd"), "-c", cfg], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and f"{cfg}:{line}: channel 'modbus'" in r.stderr, r.stderr
    r = check(cfg)  # root with every capability: it may bind, and says what the unit would need
    assert r.returncode == 0 and "note: channel 'modbus'" in r.stderr and "clsgw-channel@modbus.socket" in r.stderr, \
        r.stderr
    port = free_port()  # systemd (here systemd-socket-activate) binds it: nothing for clsgwd to bind
    p = env.start("check-activated", ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=modbus",
                                      *no_cap, os.path.join(BIN, "clsgwd"), "-t", "-c", cfg])
    p.wait_log(f"Listening on 127.0.0.1:{port}")
    import socket
    socket.create_connection(("127.0.0.1", port)).close()
    p.wait_log("is valid")
    assert "channel 'modbus'" in p.output(), p.output()  # its address differs from listen: named below


def test_a_systemd_socket_on_another_address_than_listen_is_a_loud_warning(env):
    """systemd's socket for a channel whose listen names another address: -t (when run with the sockets) and the
    start warn, naming both addresses and the listen line; the socket serves the channel"""
    from harness import socks5_connect, transfer
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}"])
    ini_port, socket_port = free_port(), free_port()
    cfg = env.write_config(sim, {"app": {"listen": f"127.0.0.1:{ini_port}", "ingress": "socks5", "allow": "*:*"}})
    line = line_of(cfg, f"listen = 127.0.0.1:{ini_port}")
    p = env.start_clsgwd(cfg, argv_prefix=["systemd-socket-activate", "-l", f"127.0.0.1:{socket_port}", "--fdname=app"],
                         wait_ready=False)
    p.wait_log(f"Listening on 127.0.0.1:{socket_port}")
    s, rep = socks5_connect(socket_port, "emt.example", 4443)
    assert rep == 0
    assert transfer(s, b"through the socket\n") == b"through the socket\n"
    warning = p.wait_log(" warn channel 'app': systemd's socket listens on")
    assert f"127.0.0.1:{socket_port}, not on listen = 127.0.0.1:{ini_port} ({cfg}:{line})" in warning, warning
    # clsgwctl status names the socket systemd passed, as systemd's
    listeners = json.loads(env.clsgwctl("status", "--json").stdout)["listeners"]
    assert listeners == [{"address": f"127.0.0.1:{socket_port}", "from": "systemd", "channels": ["app"]}], listeners
    text = env.clsgwctl("status").stdout
    assert f"listening: 127.0.0.1:{socket_port} (systemd) for app" in text, text


@runs_emulated
def test_cert_issue_refuses_an_issuer_that_is_not_a_ca(env):
    """clsgwctl cert issue with a CA:FALSE issuer (or one whose keyUsage lacks keyCertSign, as OpenSSL can make)
    fails with exit 1 and says why, and writes no certificate"""
    out = env.path("leaf.crt")
    r = env.ctl("cert", "issue", "--ca-cert", env.path("device.crt"), "--ca-key", env.path("device.key"),
                "--key", env.path("smgw.key"), "--subject", "CN=leaf", "--out", out, check=False)
    assert r.returncode == 1 and "not a CA certificate (basicConstraints without CA:TRUE)" in r.stderr, r.stderr
    assert not os.path.exists(out)
    ca_key = env.path("ca.key")
    env.ctl("key", "generate", "--curve", "secp256r1", "--out", ca_key)
    subprocess.run(["openssl", "req", "-x509", "-new", "-key", ca_key, "-subj", "/CN=sign-only", "-days", "30",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,digitalSignature",
                    "-out", env.path("ca.crt")], check=True, capture_output=True)
    r = env.ctl("cert", "issue", "--ca-cert", env.path("ca.crt"), "--ca-key", ca_key, "--key", env.path("smgw.key"),
                "--subject", "CN=leaf", "--out", out, check=False)
    assert r.returncode == 1 and "keyUsage does not allow keyCertSign" in r.stderr, r.stderr
    assert not os.path.exists(out)


@runs_emulated
def test_check_names_an_identity_curve_outside_the_han_groups(env):
    """a device certificate on secp521r1 (which clsgw neither offers nor accepts on the HAN): -t refuses it at its
    line, naming the curve and the groups to choose from"""
    subprocess.run(["openssl", "ecparam", "-name", "secp521r1", "-genkey", "-noout", "-out", env.path("p521.key")],
                   check=True)
    os.chmod(env.path("p521.key"), 0o600)
    subprocess.run(["openssl", "req", "-x509", "-new", "-key", env.path("p521.key"), "-subj", "/CN=p521", "-days", "30",
                    "-out", env.path("device.crt")], check=True, capture_output=True)
    cfg = env.write_config(4443, {"app": {"listen": "127.0.0.1:7000", "ingress": "static", "target": "emt.example:443"}})
    with_key(cfg, "p521.key")
    r = check(cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{cfg}:{line_of(cfg, 'certificate = device.crt')}: certificate {env.path('device.crt')}: the device key is " \
        "secp521r1, not one of the groups clsgw offers and accepts on the HAN (brainpoolP256r1, brainpoolP384r1, " \
        "brainpoolP512r1, secp256r1, secp384r1): make the key on one the SMGW offers" in r.stderr, r.stderr
