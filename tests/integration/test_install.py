"""make install / uninstall, the systemd units, and the man pages."""
import os
import re
import shutil
import stat
import subprocess

from harness import ARCH, BUILD, runs_emulated

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGES = {"clsgwd.8", "clsgw-worker.8", "clsgw-signer.8", "clsgwctl.8", "clsgw.ini.5", "clsgw-smgw-sim.1",
         "clsgw-hanscan.1"}


def make(*args):
    arch = [f"ARCH={ARCH}"] if ARCH != "native" else []
    r = subprocess.run(["make", "-s", "-C", ROOT, f"BUILD={BUILD}", *arch, *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def install(env):
    dest = env.path("root")
    make("install", f"DESTDIR={dest}")
    return dest


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@runs_emulated
def test_make_install_produces_the_documented_tree(env):
    """make install DESTDIR=... puts programs, helpers, units, sysusers/tmpfiles, logrotate, the example
    configuration and the man pages where README says; uninstall removes them and keeps /etc/clsgw"""
    dest = install(env)
    expected = {
        "usr/sbin/clsgwd": 0o755, "usr/bin/clsgwctl": 0o755, "usr/bin/clsgw-smgw-sim": 0o755,
        "usr/bin/clsgw-hanscan": 0o755, "usr/libexec/clsgw/clsgw-worker": 0o755, "usr/libexec/clsgw/clsgw-signer": 0o755,
        "usr/lib/systemd/system/clsgwd.service": 0o644, "usr/lib/systemd/system/clsgw-channel@.socket": 0o644,
        "usr/lib/systemd/system/clsgw-signer.service": 0o644, "usr/lib/systemd/system/clsgw-signer.socket": 0o644,
        "usr/lib/sysusers.d/clsgw.conf": 0o644, "usr/lib/tmpfiles.d/clsgw.conf": 0o644,
        "etc/logrotate.d/clsgw": 0o644, "etc/clsgw/clsgw.ini": 0o640, "etc/clsgw/private": 0o700,
        "usr/share/doc/clsgw/clsgw.ini.example": 0o644, "usr/share/doc/clsgw/conformance.md": 0o644,
    }
    for page in PAGES:
        expected[f"usr/share/man/man{page[-1]}/{page}"] = 0o644
    for path, want in expected.items():
        full = os.path.join(dest, path)
        assert os.path.exists(full), f"{path} is missing"
        assert mode(full) == want, f"{path}: mode {oct(mode(full))}, expected {oct(want)}"
    # the programs are built for the architecture asked for (ELF e_machine: 62 x86-64, 183 aarch64)
    machine = {"arm64": 183}.get(ARCH, 183 if os.uname().machine == "aarch64" else 62)
    for binary in ("usr/sbin/clsgwd", "usr/libexec/clsgw/clsgw-worker", "usr/libexec/clsgw/clsgw-signer"):
        header = open(os.path.join(dest, binary), "rb").read(20)
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == machine, binary
    unit = open(os.path.join(dest, "usr/lib/systemd/system/clsgwd.service")).read()
    assert "ExecStart=/usr/sbin/clsgwd -c /etc/clsgw/clsgw.ini" in unit and "@SBINDIR@" not in unit
    # the installed clsgwd finds its helpers in the libexec folder it was built for (its symbols kept: stripped,
    # the path may live only in instructions that build the string)
    kept = env.path("kept")
    make("install", f"DESTDIR={kept}", "STRIP=")
    r = subprocess.run(["strings", os.path.join(kept, "usr/sbin/clsgwd")], capture_output=True, text=True)
    assert "/usr/libexec/clsgw" in r.stdout
    with open(os.path.join(dest, "etc/clsgw/clsgw.ini"), "a") as f:
        f.write("; local change\n")
    make("install", f"DESTDIR={dest}")
    assert "; local change" in open(os.path.join(dest, "etc/clsgw/clsgw.ini")).read(), "install overwrote the config"
    make("uninstall", f"DESTDIR={dest}")
    left = sorted(os.path.relpath(os.path.join(d, f), dest) for d, _, files in os.walk(dest) for f in files)
    assert left == ["etc/clsgw/clsgw.ini"], left


def logrotate_entries(text):
    """{path: [directive lines]} of a logrotate file (postrotate scripts as their lines)."""
    entries = {}
    for paths, body in re.findall(r"^(/\S+(?: /\S+)*) \{\n(.*?)^\}", text, re.M | re.S):
        for path in paths.split():
            entries[path] = [line.strip() for line in body.splitlines() if line.strip()]
    return entries


def test_logrotate_rotates_every_audit_log_as_its_signer_can_follow(env):
    """the installed logrotate file rotates clsgwd's log (reopened by SIGUSR1), the signer service's audit log
    (the service restarted) and the audit log of the signer clsgwd starts itself, the path the example clsgw.ini
    names (clsgwd reloaded: its new signer continues the chain); audit logs keep audit.log.1 uncompressed for
    that and are never copied and truncated (a truncated log would restart the chain)"""
    dest = install(env)
    entries = logrotate_entries(open(os.path.join(dest, "etc/logrotate.d/clsgw")).read())
    ini = open(os.path.join(dest, "etc/clsgw/clsgw.ini")).read()
    child_log = re.search(r"^audit_log = (\S+)$", ini, re.M).group(1)
    assert child_log == "/var/log/clsgw/audit.log"
    assert set(entries) == {"/var/log/clsgw/clsgwd.log", "/var/log/clsgw-signer/audit.log", child_log}, entries
    assert "systemctl kill --signal=USR1 --kill-who=main clsgwd.service >/dev/null 2>&1 || true" in \
        entries["/var/log/clsgw/clsgwd.log"]
    assert "systemctl try-restart clsgw-signer.service >/dev/null 2>&1 || true" in \
        entries["/var/log/clsgw-signer/audit.log"]
    assert "systemctl reload clsgwd.service >/dev/null 2>&1 || true" in entries[child_log]
    for path in ("/var/log/clsgw-signer/audit.log", child_log):
        assert "delaycompress" in entries[path] and "missingok" in entries[path], path
        assert not {"copytruncate", "nodelaycompress"} & set(entries[path]), path
        assert entries[path].index("postrotate") < entries[path].index("endscript"), path


@runs_emulated
def test_units_verify(env):
    """systemd-analyze verify accepts clsgwd.service and a channel socket instance (with its address drop-in);
    the signer's socket belongs to a group only clsgwd joins, and the signer serves only clsgwd's uid"""
    if not shutil.which("systemd-analyze"):
        raise AssertionError("systemd-analyze is missing (package systemd)")
    dest = install(env)
    units = env.path("units")
    os.makedirs(units)
    for name in os.listdir(os.path.join(dest, "usr/lib/systemd/system")):
        text = open(os.path.join(dest, "usr/lib/systemd/system", name)).read()
        # the programs are checked where they were installed
        with open(os.path.join(units, name), "w") as f:
            f.write(text.replace("/usr/sbin/", os.path.join(dest, "usr/sbin/"))
                    .replace("/usr/bin/clsgwctl", os.path.join(dest, "usr/bin/clsgwctl"))
                    .replace("/usr/libexec/", os.path.join(dest, "usr/libexec/")))
    shutil.copy(os.path.join(units, "clsgw-channel@.socket"), os.path.join(units, "clsgw-channel@app.socket"))
    os.makedirs(os.path.join(units, "clsgw-channel@app.socket.d"))
    with open(os.path.join(units, "clsgw-channel@app.socket.d", "listen.conf"), "w") as f:
        f.write("[Socket]\nListenStream=127.0.0.1:7001\n")
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", os.path.join(units, "clsgwd.service"),
                        os.path.join(units, "clsgw-channel@app.socket"), os.path.join(units, "clsgw-signer.socket"),
                        os.path.join(units, "clsgw-signer.service")],
                       capture_output=True, text=True, cwd=units, env=dict(os.environ, SYSTEMD_UNIT_PATH=units + ":"))
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    for unit, limit in (("clsgwd.service", 3.0), ("clsgw-signer.service", 2.0)):
        r = subprocess.run(["systemd-analyze", "security", "--offline=yes", os.path.join(units, unit)],
                           capture_output=True, text=True)
        score = re.search(rf"Overall exposure level for {unit}: ([0-9.]+)", r.stdout + r.stderr)
        assert score and float(score.group(1)) <= limit, (unit, r.stdout[-500:])
    unit = open(os.path.join(units, "clsgwd.service")).read()
    assert "InaccessiblePaths=-/etc/clsgw/private" in unit, "the master's unit must not reach the key"
    # the signer's socket has a group of its own, which only clsgwd joins (not clsgwctl's group
    # clsgw), and the signer serves only clsgwd's uid
    socket_unit = open(os.path.join(units, "clsgw-signer.socket")).read()
    assert re.search(r"^SocketGroup=clsgw-signer-clients$", socket_unit, re.M), socket_unit
    assert re.search(r"^SocketMode=0660$", socket_unit, re.M), socket_unit
    assert re.search(r"^SupplementaryGroups=clsgw-signer-clients$", unit, re.M)
    assert not re.search(r"^User=", unit, re.M), "clsgwd runs as root: the signer's --master-uid 0 names it"
    signer_unit = open(os.path.join(units, "clsgw-signer.service")).read()
    assert re.search(r"^ExecStart=.* --master-uid 0( |$)", signer_unit, re.M), signer_unit
    sysusers = open(os.path.join(dest, "usr/lib/sysusers.d/clsgw.conf")).read()
    assert re.search(r"^g clsgw-signer-clients -$", sysusers, re.M), sysusers
    assert not re.search(r"^m \S+ clsgw-signer-clients$", sysusers, re.M), "nobody else joins the signer's group"


@runs_emulated
def test_man_pages_lint_clean_and_document_every_key(env):
    """mandoc -T lint finds nothing but cross-references to our own, not yet installed pages; clsgw.ini(5)
    documents every key the configuration parser accepts"""
    pages = {os.path.basename(p) for p in os.listdir(os.path.join(ROOT, "man"))}
    assert pages == PAGES
    for page in sorted(pages):
        r = subprocess.run(["mandoc", "-T", "lint", os.path.join(ROOT, "man", page)], capture_output=True, text=True)
        for line in (r.stdout + r.stderr).splitlines():
            m = re.search(r"referenced manual not found: Xr (\S+) (\d)", line)
            assert m and f"{m.group(1)}.{m.group(2)}" in PAGES, line
    manual = open(os.path.join(ROOT, "man", "clsgw.ini.5")).read()
    keys = set(re.findall(r'e\.key == "(\w+)"', open(os.path.join(ROOT, "lib", "config.cpp")).read()))
    assert len(keys) > 25
    for key in keys:
        assert re.search(rf"\.It Cm (\w+ , )*{key}\b", manual), f"{key} is not documented in clsgw.ini(5)"


@runs_emulated
def test_yocto_recipe_drives_the_makefile(env):
    """etc/yocto's recipe builds the programs target and installs through make install with the
    variables the Makefile reads, and installs what the unit files name"""
    recipe = open(os.path.join(ROOT, "etc", "yocto", "clsgw_0.1.bb")).read()
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    assert "oe_runmake programs" in recipe and "oe_runmake install DESTDIR='${D}'" in recipe
    assert re.search(r"^programs:", makefile, re.M)
    variables = re.findall(r"\b([A-Z]+DIR|DESTDIR|PREFIX|BUILD|CXX|CC|AR|OPT|LDFLAGS|MBEDTLS|VERSION)='", recipe)
    assert len(variables) >= 12, variables
    for var in variables:
        assert f"$({var})" in makefile, f"the recipe sets {var}, which the Makefile does not use"
    for unit in re.search(r'SYSTEMD_SERVICE:\$\{PN\} = "([^"]+)"', recipe).group(1).split():
        assert os.path.exists(os.path.join(ROOT, "etc", "systemd", unit)), unit
    for user in ("clsgw-worker", "clsgw-signer"):
        assert user in recipe and user in open(os.path.join(ROOT, "etc", "sysusers.d", "clsgw.conf")).read()
    groups = re.search(r'GROUPADD_PARAM:\$\{PN\} = "([^"]+)"', recipe).group(1)
    assert [g.split()[-1] for g in groups.split(";")] == ["clsgw", "clsgw-signer-clients"], groups


def has_symbols(path):
    r = subprocess.run(["readelf", "-S", "-W", path], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return ".symtab" in r.stdout


@runs_emulated
def test_make_install_strips_the_programs_unless_strip_is_empty(env):
    """make install strips every installed program (the build keeps its symbols); STRIP= installs them as built"""
    programs = ["usr/sbin/clsgwd", "usr/bin/clsgwctl", "usr/bin/clsgw-smgw-sim", "usr/bin/clsgw-hanscan",
                "usr/libexec/clsgw/clsgw-worker", "usr/libexec/clsgw/clsgw-signer"]
    dest = install(env)
    for p in programs:
        assert not has_symbols(os.path.join(dest, p)), f"{p} was installed with its symbol table"
    assert has_symbols(os.path.join(ROOT, BUILD, "bin", "clsgwd")), "the build itself lost its symbols"
    kept = env.path("kept")
    make("install", f"DESTDIR={kept}", "STRIP=")
    for p in programs:
        assert has_symbols(os.path.join(kept, p)), f"STRIP= still stripped {p}"


@runs_emulated
def test_tmpfiles_gives_group_clsgw_read_access_to_the_configuration(env):
    """the README says group clsgw may read /etc/clsgw/clsgw.ini: tmpfiles.d sets root:clsgw 0640 on it"""
    dest = install(env)
    rules = open(os.path.join(dest, "usr/lib/tmpfiles.d/clsgw.conf")).read().splitlines()
    assert any(r.split()[:5] == ["z", "/etc/clsgw/clsgw.ini", "0640", "root", "clsgw"] for r in rules), rules


def test_the_installed_example_also_works_without_systemd(env):
    """the installed clsgw.ini, its paths moved into a test folder: with no clsgw-signer.socket, -t says clsgwd starts
    the signer itself, and clsgwd so started (by hand, no systemd) carries a channel and makes the audit log's
    folder"""
    import socket
    from harness import BIN, free_port, recv_all
    dest = install(env)
    text = open(os.path.join(dest, "etc/clsgw/clsgw.ini")).read()
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example.org:443=127.0.0.1:{echo}"])
    meter, apps, modbus = free_port(), free_port(), free_port()
    os.makedirs(env.path("etc/private"))
    os.rename(env.path("device.key"), env.path("etc/private/device.key"))
    shutil.copy(env.path("device.crt"), env.path("etc/device.crt"))  # the simulator keeps using its own copies
    shutil.copy(env.path("smgw.crt"), env.path("etc/smgw-han.crt"))
    for old, new in (("/etc/clsgw/", env.path("etc") + "/"), ("/var/log/clsgw/", env.path("log") + "/"),
                     ("/run/clsgw-signer/", env.path("no-signer-socket") + "/"),
                     ("192.168.100.100:4443", f"127.0.0.1:{sim}"), ("127.0.0.1:7001", f"127.0.0.1:{meter}"),
                     ("127.0.0.1:1080", f"127.0.0.1:{apps}"), ("192.168.100.50:8443", f"127.0.0.1:{modbus}"),
                     ("close_timeout = 30s", "close_timeout = 1s"),  # the echo EMT never ends on its own
                     ("worker_user = clsgw-worker", f"worker_user = nobody\ncontrol_socket = {env.path('control.sock')}")):
        assert old in text, old
        text = text.replace(old, new)
    cfg = env.path("etc/clsgw.ini")
    with open(cfg, "w") as f:
        f.write(text)
    r = subprocess.run([os.path.join(BIN, "clsgwd"), "-t", "-c", cfg], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "does not exist (no clsgw-signer.socket here): clsgwd starts clsgw-signer itself" in r.stderr, r.stderr
    env.start_clsgwd(cfg)
    s = socket.create_connection(("127.0.0.1", meter))
    s.sendall(b"no systemd here\n")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"no systemd here\n"
    assert os.path.isdir(env.path("log")) and os.path.getsize(env.path("log/audit.log")) > 0


@runs_emulated
def test_clsgwctl_man_page_names_every_command_and_option_of_its_usage(env):
    """every command word and every --option clsgwctl's usage shows is documented in clsgwctl(8)"""
    from harness import program
    usage = subprocess.run([*program("clsgwctl"), "--help"], capture_output=True, text=True).stdout
    manual = open(os.path.join(ROOT, "man", "clsgwctl.8")).read()
    options = set(re.findall(r"--([a-z][a-z-]+)", usage))
    commands = set()
    for line in usage.splitlines():
        words = line.replace("usage:", "").replace("[-s SOCKET]", "").split()
        if len(words) > 1 and words[0] == "clsgwctl":
            commands.add(words[1])
    assert len(options) >= 10 and {"sign", "valid-from-days", "json"} <= options, options
    assert {"status", "check", "metrics", "audit", "cert", "key"} <= commands, commands
    for option in options:
        assert re.search(rf"^\.(Op )?Fl -{option}\b", manual, re.M) or f"Fl -{option}" in manual, f"--{option}"
    for command in commands:
        assert re.search(rf"^\.(It )?Cm {command}\b", manual, re.M), command
