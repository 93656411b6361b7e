"""clsgwd -t checks what the start checks: each configuration here passed -t and then failed to start."""
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
    """audit_log in a folder that does not exist is named with its line"""
    cfg = env.write_config(4443, {"app": {"listen": "127.0.0.1:7000", "ingress": "static", "target": "emt.example:443"}})
    with open(cfg) as f:
        text = f.read().replace("audit_log = audit.log", "audit_log = gone/audit.log")
    with open(cfg, "w") as f:
        f.write(text)
    r = check(cfg)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{cfg}:{line_of(cfg, 'audit_log = gone/audit.log')}: audit_log " in r.stderr and "does not exist" in r.stderr, \
        r.stderr


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
