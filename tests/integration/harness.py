"""Integration test harness: real clsgw programs on loopback, in a throwaway folder.

Every wait is a condition with a deadline (wait_until), never a bare sleep used as
synchronisation. Each test gets a fresh Env; Env.close() stops everything it started.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

BUILD = os.environ.get("CLSGW_BUILD", "build")
BIN = os.path.abspath(os.path.join(BUILD, "bin"))
TEST_BIN = os.path.abspath(os.path.join(BUILD, "tests"))
# make check ARCH=arm64: programs run under qemu-user, e.g. "qemu-aarch64 -L /usr/aarch64-linux-gnu"
EMULATOR = os.environ.get("CLSGW_EMULATOR", "").split()
ARCH = os.environ.get("CLSGW_ARCH", "native")


def program(name):
    """The command line that runs one of our programs (under the emulator when there is one)."""
    return [*EMULATOR, os.path.join(BIN, name)]


def runs_emulated(test):
    """Marks a test that needs nothing qemu-user cannot do (no sandboxed helper processes)."""
    test.runs_emulated = True
    return test


def scenario(peer, direction, what):
    """Marks a test as one cell of docs/interop.md's matrix: a foreign peer, a direction, a scenario."""
    def mark(test):
        test.scenario = {"peer": peer, "direction": direction, "what": what}
        return test
    return mark


class SkipTest(Exception):
    """Raised by a test that cannot run here; reported as skipped, never as passed."""


def wait_until(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recv_all(sock, timeout=30.0):
    sock.settimeout(timeout)
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def recv_exact(sock, n, timeout=10.0):
    sock.settimeout(timeout)
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            break
        out += data
    return out


def socks5_connect(port, host, target_port, timeout=10.0):
    """Opens a SOCKS5 CONNECT through clsgw; returns (socket, reply code)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(b"\x05\x01\x00")
    if recv_exact(s, 2) != b"\x05\x00":
        raise AssertionError("SOCKS5 method negotiation failed")
    name = host.encode()
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", target_port))
    reply = recv_exact(s, 10)
    if len(reply) < 2:
        return s, None
    return s, reply[1]


def echoed_socks5_channel(port, host, target_port, token=b"ping"):
    """A SOCKS5 channel through clsgw to an echoing target, proven open by one echo."""
    s, rep = socks5_connect(port, host, target_port)
    assert rep == 0, f"SOCKS5 reply {rep}"
    s.sendall(token)
    assert recv_exact(s, len(token)) == token
    return s


def transfer(sock, payload, chunk=65536):
    """Sends payload while reading the echo concurrently; half-closes; returns all received."""
    received = []

    def reader():
        try:
            received.append(recv_all(sock, timeout=120))
        except OSError:  # a reset is what some tests expect; what arrived is checked by the caller
            received.append(b"")

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(0, len(payload), chunk):
            sock.sendall(payload[i:i + chunk])
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the peer refused or reset; the reader tells what came back
    t.join(180)
    return received[0] if received else b""


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Process:
    def __init__(self, name, argv, log_path, env=None, pass_fds=(), preexec_fn=None, stdin=subprocess.DEVNULL):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     pass_fds=pass_fds, preexec_fn=preexec_fn, start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def lines(self, pattern):
        return [l for l in self.output().splitlines() if re.search(pattern, l)]

    def wait_log(self, pattern, timeout=10.0):
        def found():
            hits = self.lines(pattern)
            return hits[-1] if hits else None
        try:
            return wait_until(found, timeout, f"{self.name} to log /{pattern}/")
        except AssertionError:
            raise AssertionError(f"{self.name} never logged /{pattern}/; its output:\n{self.output()[-4000:]}")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class Env:
    """A throwaway PKI, and helpers to start the simulator, the EMT echo and clsgwd."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"clsgw-{name}-")
        self.processes = []
        self.make_identity("device", "CN=device-test")
        self.make_identity("smgw", "CN=smgw-han-test", curve="brainpoolP384r1")

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def ctl(self, *args, check=True):
        r = subprocess.run([*program("clsgwctl"), *args], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"clsgwctl {' '.join(args)} failed: {r.stderr}")
        return r

    def make_identity(self, name, subject, curve="brainpoolP256r1", issuer=None, ca=False):
        key, crt = self.path(f"{name}.key"), self.path(f"{name}.crt")
        self.ctl("key", "generate", "--curve", curve, "--out", key)
        if issuer:
            self.ctl("cert", "issue", "--ca-cert", self.path(f"{issuer}.crt"), "--ca-key", self.path(f"{issuer}.key"),
                     "--key", key, "--subject", subject, "--out", crt, *(["--ca"] if ca else []))
        else:
            self.ctl("cert", "self-sign", "--key", key, "--subject", subject, "--out", crt, *(["--ca"] if ca else []))
        return key, crt

    def start(self, name, argv, **kw):
        p = Process(name, argv, self.path(f"{name}.log"), **kw)
        self.processes.append(p)
        return p

    def start_echo(self):
        port = free_port()
        p = self.start("emt-echo", [os.path.join(BIN, "clsgw-smgw-sim"), "emt-echo", "--listen", f"127.0.0.1:{port}"])
        p.wait_log("listening")
        return port

    def start_sim(self, routes, trust="device.crt", extra=()):
        port = free_port()
        argv = [os.path.join(BIN, "clsgw-smgw-sim"), "smgw", "--listen", f"127.0.0.1:{port}",
                "--cert", self.path("smgw.crt"), "--key", self.path("smgw.key"), "--trust", self.path(trust)]
        for r in routes:
            argv += ["--route", r]
        p = self.start("smgw-sim", argv + list(extra))
        p.wait_log("listening")
        self.sim = p
        return port

    def start_sim_inbound(self, links, identity="smgw", trust="device.crt", extra=()):
        """The SMGW's active side: each link (device_port, server_name or None) gets an EMT port."""
        argv = [os.path.join(BIN, "clsgw-smgw-sim"), "smgw", "--cert", self.path(f"{identity}.crt"),
                "--key", self.path(f"{identity}.key"), "--trust", self.path(trust), *extra]
        emt_ports = []
        for device_port, server_name in links:
            emt = free_port()
            emt_ports.append(emt)
            argv += ["--inbound", f"127.0.0.1:{emt}=127.0.0.1:{device_port}" + (f"/{server_name}" if server_name else "")]
        p = self.start(f"smgw-sim-{identity}-{len(self.processes)}", argv)
        wait_until(lambda: len(p.lines("listening")) == len(links), 10, "the simulator's EMT listeners")
        self.sim = p
        return emt_ports

    def write_config(self, smgw_port, channels, clsgw=None, trust="smgw.crt"):
        # every channel's summary line is visible, and every channel tries the SMGW, unless a test
        # is about the rate limit or the back-off; an app's half-close keeps its channel open for
        # the EMT's rest until 1s pass with nothing moving (the echo EMT never learns of the FIN)
        settings = {"worker_user": "nobody", "log_level": "debug", "handshake_timeout": "10s",
                    "control_socket": self.path("control.sock"), "log_suppress_interval": "0s",
                    "smgw_backoff_max": "0s", "close_timeout": "1s"}
        settings.update(clsgw or {})
        lines = ["[clsgw]"] + [f"{k} = {v}" for k, v in settings.items()]
        lines += ["[identity]", "certificate = device.crt", "key = device.key", "audit_log = audit.log",
                  "[smgw]", f"trust = {trust}"]
        if smgw_port:
            lines.append(f"address = 127.0.0.1:{smgw_port}")
        for name, keys in channels.items():
            lines.append(f"[channel:{name}]")
            lines += [f"{k} = {v}" for k, v in keys.items()]
        path = self.path("clsgw.ini")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start_clsgwd(self, config, argv_prefix=(), env=None, wait_ready=True):
        p = self.start("clsgwd", [*argv_prefix, *program("clsgwd"), "-c", config], env=env)
        if wait_ready:
            p.wait_log("clsgwd ready")
        self.clsgwd = p
        return p

    def clsgwctl(self, *args, check=True):
        r = subprocess.run([os.path.join(BIN, "clsgwctl"), "-s", self.path("control.sock"), *args],
                           capture_output=True, text=True, timeout=30)
        # status answers with 3 or 4 when clsgwd needs attention; its output is what a test reads
        answered = r.returncode == 0 or ("status" in args and r.returncode in (3, 4))
        if check and not answered:
            raise AssertionError(f"clsgwctl {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def audit_lines(self):
        try:
            with open(self.path("audit.log")) as f:
                return [l for l in f.read().splitlines() if l]
        except FileNotFoundError:
            return []

    def close(self, keep=False):
        for p in reversed(self.processes):
            p.stop()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


class TestServer:
    """A TCP server on loopback that runs handle(conn) for each connection in a thread of its own."""

    def __init__(self):
        self.accepts = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepts += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            self.handle(conn)
        except OSError:
            pass  # the client went away; what the server recorded tells what happened
        finally:
            conn.close()

    def handle(self, conn):
        raise NotImplementedError

    def close(self):
        self.sock.close()


class Answerer(TestServer):
    """An EMT that reads a request up to an empty line, takes `think` seconds to work, answers and
    closes: what an HTTP/1.0 server does for a client that half-closed after its request."""

    def __init__(self, answer=b"HTTP/1.0 200 OK\r\n\r\nthe answer\n", think=0.5):
        self.answer, self.think = answer, think
        self.requests = []
        super().__init__()

    def handle(self, conn):
        request = b""
        while b"\r\n\r\n" not in request:
            data = conn.recv(65536)
            if not data:
                return
            request += data
        self.requests.append(request)
        time.sleep(self.think)  # the EMT's own work, not a synchronisation
        conn.sendall(self.answer)


def half_closed_request(port, request=b"GET / HTTP/1.0\r\n\r\n", socks=None):
    """Sends a request, shuts down the write side at once, returns everything that comes back."""
    if socks:
        s, rep = socks5_connect(port, *socks)
        assert rep == 0, f"SOCKS5 reply {rep}"
    else:
        s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request)
    s.shutdown(socket.SHUT_WR)
    try:
        return recv_all(s, timeout=20)
    except ConnectionResetError:
        return b""
    finally:
        s.close()


class Service(TestServer):
    """A local service on the device that counts the connections it accepts.

    mode "echo": sends back everything, then half-closes after the peer did;
    mode "tag": answers the first bytes with its tag and closes.
    """

    def __init__(self, mode="echo", tag=b""):
        self.mode, self.tag = mode, tag
        self.received = 0
        super().__init__()

    def handle(self, conn):
        if self.mode == "tag":
            conn.recv(65536)
            conn.sendall(self.tag)
            return
        while True:
            data = conn.recv(65536)
            if not data:
                break
            self.received += len(data)
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)


def children_of(pid):
    """The pids whose parent is pid (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(entry))
        except (OSError, IndexError):
            pass
    return out


def channel_pids(env):
    """The worker pid of each open channel, as clsgwctl status reports them."""
    return [c["pid"] for c in json.loads(env.clsgwctl("status", "--json").stdout)["channels"]]


def channel_worker(env, index=0):
    """The worker of the index-th open channel, waiting until that channel is listed."""
    return wait_until(lambda: (lambda pids: pids[index] if len(pids) > index else None)(channel_pids(env)), 5,
                      f"open channel #{index}'s worker")


def spare_pids(env):
    """clsgwd's worker processes that serve no channel: the spare pool."""
    busy = set(channel_pids(env))
    return sorted(p for p in children_of(env.clsgwd.pid) if proc_name(p) == "clsgw-worker" and p not in busy)


def proc_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
