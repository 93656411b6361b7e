"""A minimal Debian 12 booted with systemd-nspawn, with clsgw installed: make check-systemd.

The root is made once with debootstrap (--variant=minbase) from the Debian mirror apt uses and
kept under build/systemd/; every run boots a fresh copy of it with `make install DESTDIR=` done
into the copy. The container gets its own network namespace (loopback only) and is driven from
the host by entering its namespaces with nsenter: the host needs no system bus and no systemd
as PID 1 (--register=no --keep-unit).
"""
import hashlib
import json
import os
import shutil
import subprocess
import time

RUNTIME_PACKAGES = ["systemd", "systemd-sysv", "dbus", "libmbedtls14", "libmbedx509-1", "libmbedcrypto7",
                    "libseccomp2", "libcap-ng0", "libinih1", "python3", "procps", "iproute2"]
SUITE = "bookworm"


def debian_mirror():
    """The first Debian mirror apt is configured with (deb822 or one-line format)."""
    candidates = []
    for path in ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("URIs:"):
                    candidates += line.split()[1:]
                elif line.startswith("deb ") and "security" not in line:
                    candidates += [w for w in line.split()[1:] if "://" in w][:1]
    for uri in candidates:
        if "security" not in uri:
            return uri
    return "http://deb.debian.org/debian"


def run(argv, check=True, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    return r


def wait_until(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.1)


def base_root(cache):
    """The debootstrapped root, made once per package list and mirror."""
    mirror = debian_mirror()
    key = hashlib.sha256(" ".join([SUITE, mirror] + RUNTIME_PACKAGES).encode()).hexdigest()[:12]
    root = os.path.join(cache, f"debian-{SUITE}-{key}")
    if os.path.exists(os.path.join(root, ".clsgw-complete")):
        return root, False
    tmp = root + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(cache, exist_ok=True)
    log = os.path.join(cache, "debootstrap.log")
    with open(log, "w") as out:
        r = subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(RUNTIME_PACKAGES), SUITE, tmp,
                            mirror], stdout=out, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise AssertionError(f"debootstrap failed (exit {r.returncode}); see {log}")
    # what every boot of the copy needs: no getty fighting the test for the console, a machine id
    for unit in ["console-getty.service", "getty@.service", "systemd-networkd-wait-online.service"]:
        os.makedirs(os.path.join(tmp, "etc/systemd/system"), exist_ok=True)
        link = os.path.join(tmp, "etc/systemd/system", unit)
        if not os.path.lexists(link):
            os.symlink("/dev/null", link)
    open(os.path.join(tmp, ".clsgw-complete"), "w").close()
    os.rename(tmp, root)
    return root, True


class Machine:
    """One booted copy of the base root with clsgw installed."""

    def __init__(self, build, cache, make_args=()):
        self.cache = cache
        self.base, self.fresh = base_root(cache)
        self.dir = os.path.join(cache, "machine")
        self.nspawn = None
        self.init_pid = None
        shutil.rmtree(self.dir, ignore_errors=True)
        run(["cp", "-a", "--reflink=auto", self.base, self.dir])
        os.remove(os.path.join(self.dir, ".clsgw-complete"))
        run(["make", "--no-print-directory", "install", f"DESTDIR={os.path.abspath(self.dir)}", f"BUILD={build}",
             *make_args])

    def boot(self):
        self.console = open(os.path.join(self.cache, "console.log"), "w")
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--private-network", "--console=pipe",
             "--machine=clsgw-check", "-D", self.dir],
            stdin=subprocess.DEVNULL, stdout=self.console, stderr=subprocess.STDOUT)
        self.init_pid = wait_until(self._find_init, 30, "the container's init")
        state = wait_until(lambda: self._system_state(), 60, "the container's boot")
        return state

    def _find_init(self):
        """The container's PID 1: a descendant of systemd-nspawn whose innermost pid is 1."""
        if self.nspawn.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited {self.nspawn.returncode}; see {self.console.name}")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/status") as f:
                    status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
            except OSError:
                continue
            nspid = status.get("NSpid", "").split()
            if len(nspid) > 1 and nspid[-1] == "1" and self._descends_from(int(entry), self.nspawn.pid):
                return int(entry)
        return None

    @staticmethod
    def _descends_from(pid, ancestor):
        for _ in range(8):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    pid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                return False
            if pid == ancestor:
                return True
            if pid <= 1:
                return False
        return False

    def _system_state(self):
        r = self.sh("systemctl is-system-running", check=False)
        state = r.stdout.strip()
        return state if state in ("running", "degraded") else None

    def exec(self, argv, check=True, timeout=120, input=None):
        """Runs argv inside the container (all its namespaces, its root), as root."""
        r = subprocess.run(["nsenter", "-t", str(self.init_pid), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w",
                            "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
                            "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", *argv],
                           capture_output=True, text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise AssertionError(f"in the container: {' '.join(argv)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def sh(self, script, check=True, timeout=120):
        return self.exec(["/bin/sh", "-c", script], check=check, timeout=timeout)

    def write(self, path, text, mode=0o644):
        host = os.path.join(self.dir, path.lstrip("/"))
        os.makedirs(os.path.dirname(host), exist_ok=True)
        with open(host, "w") as f:
            f.write(text)
        os.chmod(host, mode)

    def read(self, path):
        with open(os.path.join(self.dir, path.lstrip("/"))) as f:
            return f.read()

    def prop(self, unit, name):
        return self.exec(["systemctl", "show", "-P", name, unit]).stdout.strip()

    def journal(self, *args):
        """journalctl -o cat ARGS, the messages only. An --after-cursor C is done here: Debian 12's
        journalctl (systemd 252) skips the first entry that matches the other filters when C's own
        entry does not match them (systemd issue #30288, fixed in v255), so `-p err -u UNIT
        --after-cursor C` lost the line that says why UNIT failed. journalctl --cursor C shows C's
        own entry when it matches, and that entry is dropped here by its cursor."""
        args = [part for a in args for part in (a.split("=", 1) if a.startswith("--after-cursor=") else [a])]
        if "--after-cursor" not in args:
            return self.exec(["journalctl", "--no-pager", "-o", "cat", *args], check=False).stdout
        at = args.index("--after-cursor")
        cursor = args[at + 1]
        args[at:at + 2] = ["--cursor", cursor]
        # --all: without it -o json gives null for a field over 4 KiB, where -o cat prints it
        out = self.exec(["journalctl", "--no-pager", "--all", "-o", "json", *args], check=False).stdout
        lines = []
        for line in out.splitlines():
            entry = json.loads(line)
            message = entry.get("MESSAGE")
            if entry.get("__CURSOR") == cursor or message is None:
                continue
            if isinstance(message, list):  # not valid UTF-8: journalctl gives the bytes
                message = bytes(message).decode("utf-8", "replace")
            lines.append(message)
        return "".join(m + "\n" for m in lines)

    def shutdown(self):
        if not self.nspawn:
            return
        if self.nspawn.poll() is None:
            self.nspawn.terminate()  # nspawn asks the container's systemd to power off
            try:
                self.nspawn.wait(30)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait()
        self.console.close()
