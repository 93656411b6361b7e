"""clsgwd -t, clsgwctl identity commands, and systemd socket activation."""
import os
import re
import shutil
import socket
import subprocess

from harness import free_port, program, recv_all, runs_emulated, wait_until


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


@runs_emulated
def test_every_program_names_its_version_and_the_mbedtls_it_links(env):
    """--version on each of the six programs prints its name, clsgw's version and the mbedTLS 3.6
    it is linked with, and exits 0"""
    for name in ("clsgwd", "clsgw-worker", "clsgw-signer", "clsgwctl", "clsgw-smgw-sim", "clsgw-hanscan"):
        r = run([*program(name), "--version"], timeout=30)
        assert r.returncode == 0, (name, r.stderr)
        assert re.fullmatch(rf"{name} \S+ \(mbedTLS 3\.6\.\d+\)\n", r.stdout), (name, r.stdout)


def test_every_program_documents_version_in_its_man_page(env):
    """each program's man page lists --version in its synopsis and says that it names the mbedTLS
    the program is linked with, with that program's name in the example"""
    man = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "man")
    for name, section in (("clsgwd", 8), ("clsgw-worker", 8), ("clsgw-signer", 8), ("clsgwctl", 8),
                          ("clsgw-smgw-sim", 1)):
        with open(os.path.join(man, f"{name}.{section}")) as f:
            page = f.read()
        synopsis = page.split(".Sh SYNOPSIS", 1)[1].split(".Sh ", 1)[0]
        assert ".Fl -version" in synopsis, name
        body = page.split(".Sh DESCRIPTION", 1)[1]
        assert re.search(r"\.Fl -version\nprints the program's name, clsgw's version and the version of the "
                         r"mbedTLS it is\nlinked with, as in\n\.Dq " + re.escape(name) + r" 0\.1 \(mbedTLS 3\.6\.6\) ,",
                         body), name


@runs_emulated
def test_config_check_accepts_a_valid_file(env):
    """clsgwd -t exits 0 on a valid configuration"""
    cfg = env.write_config(4443, {"app": {"listen": "127.0.0.1:7000", "ingress": "static", "target": "emt.example:443"}})
    r = run([*program("clsgwd"), "-t", "-c", cfg])
    assert r.returncode == 0, r.stderr
    assert "is valid (1 channel(s))" in r.stdout


@runs_emulated
def test_config_check_reports_file_and_line(env):
    """clsgwd -t reports a broken configuration with file:line and exits 1"""
    cfg = env.write_config(4443, {"app": {"listen": "127.0.0.1:7000", "ingress": "static", "target": "emt.example:443"}},
                           clsgw={"idle_timeout": "soon"})
    with open(cfg) as f:
        lines = f.read().splitlines()
    bad = lines.index("idle_timeout = soon") + 1
    r = run([*program("clsgwd"), "-t", "-c", cfg])
    assert r.returncode == 1
    assert f"{cfg}:{bad}: idle_timeout: 'soon' is not a duration" in r.stderr, r.stderr


@runs_emulated
def test_config_check_reports_unreadable_files_at_their_key(env):
    """clsgwd -t names the line of a certificate that cannot be read or is not EC on the profile"""
    cfg = env.write_config(4443, {"app": {"listen": "127.0.0.1:7000", "ingress": "static", "target": "emt.example:443"}},
                           trust="missing.crt")
    with open(cfg) as f:
        bad = f.read().splitlines().index("trust = missing.crt") + 1
    r = run([*program("clsgwd"), "-t", "-c", cfg])
    assert r.returncode == 1
    assert f"{cfg}:{bad}: trust {env.path('missing.crt')}: No such file or directory" in r.stderr, r.stderr
    with open(env.path("missing.crt"), "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    r = run([*program("clsgwd"), "-t", "-c", cfg])
    assert r.returncode == 1 and f"{cfg}:{bad}: trust" in r.stderr, r.stderr


@runs_emulated
def test_fingerprint_matches_openssl(env):
    """clsgwctl fingerprint prints the SHA-256 that OpenSSL computes for the same certificate"""
    ours = env.ctl("fingerprint", env.path("device.crt")).stdout.strip()
    theirs = run(["openssl", "x509", "-in", env.path("device.crt"), "-noout", "-fingerprint", "-sha256"]).stdout
    assert ours.split()[1] == theirs.strip().split("=", 1)[1]


@runs_emulated
def test_key_generate_never_overwrites(env):
    """clsgwctl key generate refuses to replace an existing key and leaves it untouched"""
    before = open(env.path("device.key")).read()
    r = env.ctl("key", "generate", "--out", env.path("device.key"), check=False)
    assert r.returncode == 1 and "not replaced" in r.stderr
    assert open(env.path("device.key")).read() == before
    assert os.stat(env.path("device.key")).st_mode & 0o077 == 0


@runs_emulated
def test_key_generate_refuses_curves_outside_the_profile(env):
    """clsgwctl key generate accepts only the HAN profile's curves"""
    r = env.ctl("key", "generate", "--curve", "secp521r1", "--out", env.path("x.key"), check=False)
    assert r.returncode == 1 and "not in the HAN profile" in r.stderr
    assert not os.path.exists(env.path("x.key"))


def activation_config(env, smgw_port):
    return env.write_config(smgw_port, {"app": {"ingress": "static", "target": "emt.example:4443"}})


def test_socket_activation_serves_channels_by_name(env):
    """under systemd-socket-activate, the socket named after a channel serves that channel"""
    if not shutil.which("systemd-socket-activate"):
        raise AssertionError("systemd-socket-activate is missing (package systemd)")
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}"])
    cfg = activation_config(env, sim)
    port = free_port()
    p = env.start_clsgwd(cfg, argv_prefix=["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=app"],
                         wait_ready=False)
    p.wait_log(f"Listening on 127.0.0.1:{port}")
    # like systemd, systemd-socket-activate starts the service on the first connection
    s = socket.create_connection(("127.0.0.1", port))
    p.wait_log(rf"clsgwd ready channel=app@127.0.0.1:{port}")
    s.sendall(b"activated\n")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"activated\n"
    env.clsgwd.wait_log(r"channel closed .*name=app .*outcome=ok")


def test_socket_activation_rejects_an_unknown_name(env):
    """a socket whose name is no channel is a clear start-up error"""
    cfg = env.write_config(4443, {"app": {"listen": f"127.0.0.1:{free_port()}", "ingress": "static",
                                          "target": "emt.example:4443"}})
    port = free_port()
    p = env.start_clsgwd(cfg, argv_prefix=["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=other"],
                         wait_ready=False)
    p.wait_log(f"Listening on 127.0.0.1:{port}")
    socket.create_connection(("127.0.0.1", port))
    wait_until(lambda: p.proc.poll() is not None, 10, "clsgwd to exit")
    assert p.proc.returncode == 1
    assert "systemd passed a socket named 'other' but no [channel:other] exists" in p.output()


@runs_emulated
def test_channel_without_listener_is_a_startup_error(env):
    """a channel with no listen address and no socket from systemd stops start-up with its name"""
    cfg = env.write_config(4443, {"app": {"ingress": "static", "target": "emt.example:4443"}})
    p = env.start_clsgwd(cfg, wait_ready=False)
    wait_until(lambda: p.proc.poll() is not None, 10, "clsgwd to exit")
    assert p.proc.returncode == 1
    assert "channel 'app' has no listen address and systemd passed no socket named 'app'" in p.output()


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def check_named_tests(doc_name):
    """Every `test_module::test_function` a doc names exists (at least 20 are named); returns the doc."""
    import re
    doc = open(os.path.join(ROOT, "docs", doc_name)).read()
    named = set(re.findall(r"`(test_\w+)::(test_\w+)`", doc))
    assert len(named) >= 20, named
    for module, function in named:
        source = open(os.path.join(ROOT, "tests", "integration", f"{module}.py")).read()
        assert f"def {function}(" in source, f"{module}::{function} is named in docs/{doc_name} but missing"
    return doc


@runs_emulated
def test_conformance_table_names_only_existing_tests(env):
    """every test docs/conformance.md names exists, so the table cannot point at nothing"""
    check_named_tests("conformance.md")


@runs_emulated
def test_security_doc_names_only_existing_tests(env):
    """every test docs/security.md names exists"""
    import re
    doc = check_named_tests("security.md")
    units = set(re.findall(r"`unit: ([^`]+)`", doc))
    unit_sources = "".join(open(os.path.join(ROOT, "tests", "unit", f)).read()
                           for f in os.listdir(os.path.join(ROOT, "tests", "unit")))
    for title in units:
        assert f'TEST_CASE("{title}"' in unit_sources, f"unit test '{title}' is named but missing"
