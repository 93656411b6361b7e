"""clsgw-signer driven directly over its real protocol: fd 3 control socket (or its own listening
socket, as clsgw-signer.socket runs it), per-channel sessions.

The test plays the master (it opens sessions) and a hostile worker (it sends bad requests).
"""
import hashlib
import os
import select
import socket
import struct
import subprocess
import threading
import time

from harness import BIN, TestServer, wait_until

LOG, SIGNER_READY, SESSION_OPEN, SIGN_REQUEST, SIGN_ANSWER = 16, 32, 33, 48, 49
SHA256, SHA384, SHA512 = 1, 2, 3
STATUS = {0: "ok", 1: "malformed", 2: "unknown_key", 3: "unsupported_digest", 4: "wrong_digest_length",
          5: "quota_exceeded", 6: "sign_failed", 7: "answer_unread"}


def frame(msg_type, payload):
    return struct.pack("=HHI", msg_type, 0, len(payload)) + payload


def tlv(tag, value):
    return struct.pack("=HI", tag, len(value)) + value


def signer_argv(env, *extra, audit_log="audit.log"):
    return [os.path.join(BIN, "clsgw-signer"), "--key", env.path("device.key"), "--certificate", env.path("device.crt"),
            "--audit-log", env.path(audit_log), *extra]


class Signer:
    """A signer and the test as its master: started with fd 3 (as clsgwd does), or connected to a
    signer service's socket (control=...)."""

    def __init__(self, env, extra=(), control=None):
        self.env = env
        self.proc = None
        if control is None:
            self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            fd = theirs.fileno()
            self.proc = env.start("signer", signer_argv(env, *extra), pass_fds=(fd, 3),
                                  preexec_fn=lambda: os.dup2(fd, 3))
            theirs.close()
        else:
            self.control = control
        self.control.settimeout(10)
        self.log_lines = []
        msg_type, payload = self.next_control_frame()
        assert msg_type == SIGNER_READY, msg_type
        tag, vlen = struct.unpack("=HI", payload[:6])
        self.key_id = payload[6:6 + vlen]
        self.next_channel = 1

    def next_control_frame(self):
        """The next frame from the signer that is not a log line (log lines are kept in log_lines)."""
        while True:
            data = self.control.recv(4096)
            if not data:
                return None, b""
            msg_type, _, length = struct.unpack("=HHI", data[:8])
            if msg_type != LOG:
                return msg_type, data[8:]
            self.log_lines.append(data[9:].decode(errors="replace"))

    def wait_log(self, pattern, timeout=10):
        """Reads the signer's log lines off the control connection until one contains pattern."""
        deadline = time.monotonic() + timeout
        while not any(pattern in line for line in self.log_lines):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the signer never logged {pattern!r}; it logged {self.log_lines}")
            self.control.settimeout(left)
            try:
                data = self.control.recv(4096)
            except socket.timeout:
                continue
            if not data:
                raise AssertionError(f"the signer closed the control connection; it logged {self.log_lines}")
            if struct.unpack("=H", data[:2])[0] == LOG:
                self.log_lines.append(data[9:].decode(errors="replace"))
        return [line for line in self.log_lines if pattern in line][-1]

    def session(self, name="test"):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        payload = tlv(1, struct.pack("=Q", self.next_channel)) + tlv(2, name.encode()) + tlv(3, b"127.0.0.1:9")
        self.next_channel += 1
        socket.send_fds(self.control, [frame(SESSION_OPEN, payload)], [theirs.fileno()])
        theirs.close()
        mine.settimeout(10)
        return mine

    def request_frame(self, digest, seq=1, alg=SHA256, hash_len=None, key_id=None):
        hl = len(digest) if hash_len is None else hash_len
        body = struct.pack("=IBB32s64s", seq, alg, hl, key_id or self.key_id, digest.ljust(64, b"\0"))
        return frame(SIGN_REQUEST, body)

    def request(self, sock, digest, **kw):
        sock.send(self.request_frame(digest, **kw))
        return self.answer(sock)

    @staticmethod
    def answer(sock):
        """(seq, status, signature); None when the signer has closed the session."""
        data = sock.recv(4096)
        if not data:
            return None
        msg_type, _, length = struct.unpack("=HHI", data[:8])
        assert msg_type == SIGN_ANSWER and length == len(data) - 8
        seq, status, sig_len = struct.unpack("=IBH", data[8:15])
        return seq, STATUS[status], data[15:15 + sig_len]


def closed_by_the_signer(sock):
    """True once the signer has closed the session: nothing more to read, and a request cannot go."""
    sock.settimeout(5)
    if sock.recv(4096) != b"":
        return False
    try:
        sock.send(frame(SIGN_REQUEST, b"\0" * 102))
    except (BrokenPipeError, ConnectionResetError):
        return True
    return False


def start_service(env, *extra):
    """clsgw-signer as clsgw-signer.socket runs it: systemd passes the listening socket on fd 3."""
    path = env.path("signer.sock")
    p = env.start("signer-service", ["systemd-socket-activate", "--seqpacket", "-l", path,
                                     *signer_argv(env, *extra)])
    p.wait_log("Listening on")
    return p, path


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    return s


def spki_sha256(env):
    pub = subprocess.run(["openssl", "x509", "-in", env.path("device.crt"), "-noout", "-pubkey"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub, capture_output=True,
                         check=True).stdout
    with open(env.path("device.pub"), "wb") as f:
        f.write(pub)
    return hashlib.sha256(der).digest()


def verify_with_openssl(env, digest, signature):
    with open(env.path("digest.bin"), "wb") as f:
        f.write(digest)
    with open(env.path("sig.der"), "wb") as f:
        f.write(signature)
    r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", env.path("device.pub"),
                        "-in", env.path("digest.bin"), "-sigfile", env.path("sig.der")], capture_output=True, text=True)
    return r.returncode == 0


def audit(env):
    with open(env.path("audit.log")) as f:
        return f.read().splitlines()


def test_signer_key_id_is_the_sha256_of_the_public_key(env):
    """the key id the signer announces is SHA-256 over the certificate's SubjectPublicKeyInfo"""
    signer = Signer(env)
    assert signer.key_id == spki_sha256(env)


def test_signer_signs_twice_and_refuses_a_third(env):
    """one session gets at most two signatures; both verify with OpenSSL; the third is refused, audited and
    ends the session"""
    signer = Signer(env)
    spki_sha256(env)
    s = signer.session("quota")
    digests = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    seq, st, sig = signer.request(s, digests[0], seq=11)
    assert (seq, st) == (11, "ok") and verify_with_openssl(env, digests[0], sig)
    seq, st, sig = signer.request(s, digests[1], seq=12)
    assert (seq, st) == (12, "ok") and verify_with_openssl(env, digests[1], sig)
    seq, st, sig = signer.request(s, digests[2], seq=13)
    assert (seq, st, sig) == (13, "quota_exceeded", b"")
    assert closed_by_the_signer(s)
    lines = audit(env)  # written before each answer was sent
    assert len(lines) == 3, lines
    assert [l.split("result=")[1].split()[0] for l in lines] == ["ok", "ok", "quota_exceeded"]
    for line, digest in zip(lines, digests):
        assert f"digest_sha256={hashlib.sha256(digest).hexdigest()}" in line and "name=quota" in line
    # a new session has its own quota
    seq, st, sig = signer.request(signer.session(), digests[2], seq=1)
    assert st == "ok"


def test_signer_refuses_bad_requests_and_stays_up(env):
    """unknown key, unsupported digest, wrong digest length, malformed and oversize frames each get their
    error answer and end their session; the signer stays up and serves new sessions"""
    signer = Signer(env)
    d32 = hashlib.sha256(b"x").digest()
    bad = [(signer.request_frame(d32, key_id=b"\1" * 32), "unknown_key"),
           (signer.request_frame(d32, alg=9), "unsupported_digest"),
           (signer.request_frame(d32, alg=SHA384), "wrong_digest_length"),
           (signer.request_frame(d32, hash_len=200), "wrong_digest_length"),
           (frame(SIGN_REQUEST, b"short"), "malformed"),
           (b"\x01\x02\x03", "malformed"),
           (frame(SIGN_REQUEST, b"\0" * (70 * 1024)), "malformed"),
           (frame(7777, b""), "malformed")]
    for data, expected in bad:
        s = signer.session("hostile")
        s.send(data)
        assert Signer.answer(s)[1] == expected
        assert closed_by_the_signer(s)
    # the signer still serves, with a full quota for each new session
    assert signer.request(signer.session(), d32, seq=5)[1] == "ok"
    assert signer.request(signer.session(), hashlib.sha512(b"y").digest(), alg=SHA512)[1] == "ok"
    assert signer.proc.alive()
    results = [l.split("result=")[1].split()[0] for l in audit(env)]
    assert results == [e for _, e in bad] + ["ok", "ok"], results


def test_signer_session_ends_at_its_first_refused_request(env):
    """a session whose request is refused gets one audit line and its error answer, then the signer closes
    it: a further request gets nothing and writes nothing"""
    signer = Signer(env)
    s = signer.session("refused")
    d32 = hashlib.sha256(b"x").digest()
    assert signer.request(s, d32, seq=7, key_id=b"\2" * 32)[:2] == (7, "unknown_key")
    assert closed_by_the_signer(s)  # the further request cannot even be sent
    lines = audit(env)
    assert len(lines) == 1 and "name=refused" in lines[0] and "result=unknown_key" in lines[0], lines
    # a malformed frame in the middle of a good session ends it as well
    s = signer.session("malformed")
    assert signer.request(s, d32, seq=1)[1] == "ok"
    s.send(b"\x01\x02\x03")
    assert Signer.answer(s)[1] == "malformed"
    assert closed_by_the_signer(s)
    assert [l.split("result=")[1].split()[0] for l in audit(env)] == ["unknown_key", "ok", "malformed"]


def test_signer_cuts_off_a_session_that_floods_without_reading(env):
    """a worker that sends requests without reading the answers has its session closed (one signature,
    then one refusal: answer_unread); meanwhile another session gets its signature at once"""
    signer = Signer(env)
    flood = signer.session("flood")
    flood.setblocking(False)
    request = signer.request_frame(hashlib.sha256(b"flood").digest())
    sent, closed = 0, False
    while sent < 2000 and not closed:  # until the signer closes the session, or stops reading it
        try:
            flood.send(request)
            sent += 1
        except BlockingIOError:
            if not select.select([], [flood], [], 1.0)[1]:
                break
        except (BrokenPipeError, ConnectionResetError):
            closed = True
    other = signer.session("other")
    other.settimeout(5)
    started = time.monotonic()
    assert signer.request(other, hashlib.sha256(b"other").digest())[1] == "ok"
    assert time.monotonic() - started < 2
    assert closed, f"the signer kept reading the flooding session ({sent} requests)"
    # what the flooder gets: its one signature, the refusal, the end
    flood.setblocking(True)
    flood.settimeout(5)
    answers = []
    while True:
        try:
            a = Signer.answer(flood)
        except ConnectionResetError:  # the signer closed with requests of ours unread
            continue
        if a is None:
            break
        answers.append(a[1])
    assert answers == ["ok", "answer_unread"], answers
    flood_lines = [l for l in audit(env) if "name=flood" in l]
    assert [l.split("result=")[1].split()[0] for l in flood_lines] == ["ok", "answer_unread"]


def test_signer_refusal_flood_keeps_the_audit_log_bounded(env):
    """beyond the refusal budget (here 5 per 3s) refusals are counted, not written one by one, and become
    one chained summary record when the window ends; every refused session still gets its answer"""
    signer = Signer(env, extra=("--refusal-budget", "5/3s"))
    d32 = hashlib.sha256(b"x").digest()
    started = time.monotonic()
    for i in range(60):
        s = signer.session(f"bad{i}")
        assert signer.request(s, d32, key_id=b"\3" * 32)[1] == "unknown_key"
        assert Signer.answer(s) is None
        s.close()
    assert time.monotonic() - started < 3, "the flood took longer than one budget window"
    lines = audit(env)
    assert len(lines) == 5 and all("result=unknown_key" in l for l in lines), f"{len(lines)} audit lines"
    summary = wait_until(lambda: [l for l in audit(env) if "result=refusals_over_budget" in l], 10,
                         "the summary record")
    assert "refused=55" in summary[0] and "unknown_key=55" in summary[0], summary
    assert len(audit(env)) == 6
    assert "6 records, chain intact" in env.ctl("audit", "verify", env.path("audit.log")).stdout
    signer.wait_log("signer refusals over the audit budget")
    assert signer.request(signer.session(), d32)[1] == "ok"


def test_signer_cuts_off_a_master_that_does_not_read(env):
    """a master that does not read the signer's messages is cut off (logged) instead of blocking the
    signer: the open session still gets its signature, then the signer (in child mode) exits"""
    signer = Signer(env, extra=("--max-sessions", "1"))
    kept = signer.session("kept")
    signer.control.setblocking(False)
    # every session over the limit is refused with a log line to the master, who never reads them
    deadline = time.monotonic() + 20
    cut_off = False
    while time.monotonic() < deadline and not cut_off:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        payload = tlv(1, struct.pack("=Q", 99)) + tlv(2, b"extra") + tlv(3, b"127.0.0.1:9")
        try:
            socket.send_fds(signer.control, [frame(SESSION_OPEN, payload)], [theirs.fileno()])
        except BlockingIOError:
            select.select([], [signer.control], [], 0.5)
        except (BrokenPipeError, ConnectionResetError):
            cut_off = True
        finally:
            mine.close()
            theirs.close()
        cut_off = cut_off or bool(signer.proc.lines("does not read the signer's messages"))
    signer.proc.wait_log("the master does not read the signer's messages; its connection is closed")
    assert signer.request(kept, hashlib.sha256(b"kept").digest())[1] == "ok"
    kept.close()
    wait_until(lambda: signer.proc.proc.poll() is not None, 10, "the signer to exit")
    assert signer.proc.proc.returncode == 0


def connect_as_nobody(path):
    """Forks a child that becomes uid/gid 65534, connects to path and reports what it got first
    (b"closed" for a close without a word); returns (its pid, that report)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect(path)
            s.settimeout(5)
            data = s.recv(4096)
            os.write(w, data or b"closed")
        except BaseException as e:
            os.write(w, repr(e).encode())
        os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return pid, out


def test_signer_service_serves_only_the_master_uid(env):
    """as its own service the signer refuses a connection from another uid at once (one log line with its
    uid, gid and pid; no signer_ready), and the master keeps its connection and its signatures"""
    _, path = start_service(env)
    master = Signer(env, control=connect(path))
    os.chmod(env.dir, 0o711)  # as if nobody were in the socket's group
    os.chmod(path, 0o666)
    intruder, out = connect_as_nobody(path)
    assert out == b"closed", f"a process of uid 65534 was served: {out}"
    line = master.wait_log("connection refused: not a master uid")
    assert f"uid=65534 gid=65534 pid={intruder}" in line, line
    assert master.request(master.session("after"), hashlib.sha256(b"a").digest())[1] == "ok"
    assert [l for l in audit(env) if "name=after" in l and "result=ok" in l]


def test_signer_service_refuses_a_second_master(env):
    """while a master is connected, a second connection (even of the master's uid) is told why and closed;
    the first master keeps working; once it has gone, the next master is served"""
    _, path = start_service(env)
    first = Signer(env, control=connect(path))
    second = connect(path)
    second.settimeout(5)
    data = second.recv(4096)
    assert struct.unpack("=H", data[:2])[0] == LOG and b"serves one master at a time" in data, data
    assert second.recv(4096) == b""
    first.wait_log(f"connection refused: a master is already connected uid=0 gid=0 pid={os.getpid()}")
    assert first.request(first.session("first"), hashlib.sha256(b"1").digest())[1] == "ok"
    first.control.close()
    third = Signer(env, control=connect(path))  # the signer_ready proves it is served
    assert third.request(third.session("third"), hashlib.sha256(b"3").digest())[1] == "ok"


def test_signer_exits_when_the_master_goes_away(env):
    """the signer exits cleanly once its control socket closes"""
    signer = Signer(env)
    signer.control.close()
    wait_until(lambda: signer.proc.proc.poll() is not None, 5, "the signer to exit")
    assert signer.proc.proc.returncode == 0


def test_signer_refuses_a_key_that_does_not_match_the_certificate(env):
    """a key that does not belong to the certificate stops the signer at start with a clear message"""
    env.make_identity("other", "CN=other")
    control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fd = theirs.fileno()
    r = subprocess.run([os.path.join(BIN, "clsgw-signer"), "--key", env.path("other.key"), "--certificate",
                        env.path("device.crt"), "--audit-log", env.path("a.log")],
                       capture_output=True, text=True, pass_fds=(fd, 3), preexec_fn=lambda: os.dup2(fd, 3))
    theirs.close()
    assert r.returncode == 1
    record = control.recv(4096)  # the reason travels to the master as a log record
    msg_type, _, length = struct.unpack("=HHI", record[:8])
    assert msg_type == 16 and record[8] == 3  # log, level error
    assert b"the private key does not match the certificate" in record[9:], record


def test_audit_log_is_a_hash_chain_that_survives_restarts_and_shows_tampering(env):
    """the signer chains its records (also across a restart); clsgwctl audit verify finds an altered,
    a removed and an inserted record"""
    for round_ in range(2):  # a second signer continues the first one's chain
        signer = Signer(env)
        s = signer.session(f"round{round_}")
        for i in range(2):
            assert signer.request(s, hashlib.sha256(bytes([round_, i])).digest(), seq=i)[1] == "ok"
        s.close()  # a signer whose master went away exits once its sessions are done
        signer.control.close()
        wait_until(lambda: signer.proc.proc.poll() is not None, 10, "the signer to exit")
    lines = audit(env)
    assert [l.split(" seq=")[1].split()[0] for l in lines] == ["1", "2", "3", "4"]
    ok = env.ctl("audit", "verify", env.path("audit.log"))
    assert "4 records, chain intact" in ok.stdout

    def verify(edited):
        path = env.path("edited.log")
        with open(path, "w") as f:
            f.write("\n".join(edited) + "\n")
        r = env.ctl("audit", "verify", path, check=False)
        assert r.returncode == 1
        return r.stdout

    altered = list(lines)
    altered[1] = altered[1].replace("result=ok", "result=unknown_key")
    assert "record 2 (line 2) was altered" in verify(altered)
    assert "record 3 removed before record 4 (line 3)" in verify(lines[:2] + lines[3:])
    assert "record inserted (line 3): it repeats sequence number 2" in verify(lines[:2] + [lines[1]] + lines[2:])


def test_a_self_started_signer_that_refuses_its_key_is_named_every_time(env):
    """clsgwd started 20 times with a key that does not belong to the certificate: each time it exits 1 and says
    why the signer failed, not only its exit status (the signer's last line once lost the race with its SIGCHLD)"""
    from harness import program
    env.make_identity("other", "CN=other")
    cfg = env.write_config(4443, {"app": {"listen": "127.0.0.1:7000", "ingress": "static", "target": "emt.example:443"}})
    with open(cfg) as f:
        text = f.read().replace("key = device.key", "key = other.key")
    with open(cfg, "w") as f:
        f.write(text)
    lost = 0
    for _ in range(20):
        r = subprocess.run([*program("clsgwd"), "-c", cfg], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "the signer failed to start" in r.stderr, r.stderr
        lost += "the private key does not match the certificate" not in r.stderr
    assert lost == 0, f"the reason was missing in {lost} of 20 starts"


def test_audit_chain_continues_across_rotation_and_verify_names_a_missing_log(env):
    """after logrotate moves audit.log to audit.log.1 (twice), each new signer closes the rotated log with a
    log_closed record and its own log continues the chain and the sequence numbers; clsgwctl audit verify takes the
    logs oldest first, names a removed one and a reordered one"""
    def signer_round(tag):
        signer = Signer(env)
        s = signer.session(tag)
        for i in range(2):
            assert signer.request(s, hashlib.sha256(f"{tag}{i}".encode()).digest(), seq=i)[1] == "ok"
        s.close()
        signer.control.close()
        wait_until(lambda: signer.proc.proc.poll() is not None, 10, "the signer to exit")
        return signer

    log, log1, log2 = env.path("audit.log"), env.path("audit.log.1"), env.path("audit.log.2")
    signer_round("first")
    os.rename(log, log1)  # logrotate: audit.log -> audit.log.1, then the signer starts on a new audit.log
    signer = signer_round("second")
    assert "the audit chain continues from the rotated log" in signer.proc.output() + "".join(signer.log_lines)
    os.rename(log1, log2)
    os.rename(log, log1)
    signer_round("third")
    seqs = [l.split(" seq=")[1].split()[0] for l in audit(env)]
    assert seqs == ["8", "9", "10"], seqs
    assert "result=chain_continued" in audit(env)[0] and f"previous_log={log1}" in audit(env)[0]
    for rotated in (log2, log1):
        with open(rotated) as f:
            assert f"result=log_closed next_log={log} " in f.read().splitlines()[-1]
    r = env.ctl("audit", "verify", log2, log1, log)
    assert "3 logs: 10 records, chain intact" in r.stdout, r.stdout
    assert "3 records, chain intact" in env.ctl("audit", "verify", log).stdout  # alone: its first link unchecked
    r = env.ctl("audit", "verify", log2, log, check=False)
    assert r.returncode == 1 and f"{log}: starts at record 8 but {log2} ends at record 3: records 4-7 are missing " \
        "between them" in r.stdout, r.stdout
    r = env.ctl("audit", "verify", log1, log2, log, check=False)
    assert r.returncode == 1 and f"{log2}: starts at record 1, before the end of {log1}" in r.stdout, r.stdout


class HandshakeGate(TestServer):
    """A TCP relay in front of the SMGW simulator that can hold new connections before the SMGW's first byte:
    a channel held here is mid-handshake and has not asked its signer for a signature yet."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.open_gate, self.held_gate, self.waiting = threading.Event(), None, 0
        self.open_gate.set()
        super().__init__()

    def handle(self, conn):
        with self.lock:
            gate = self.open_gate
            self.waiting += not gate.is_set()
        gate.wait(30)
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))

        def pump(src, dst):
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        back = threading.Thread(target=pump, args=(upstream, conn), daemon=True)
        back.start()
        pump(conn, upstream)
        back.join(30)
        upstream.close()

    def hold(self):
        """Connections from now on wait until release()."""
        with self.lock:
            self.open_gate, self.waiting = threading.Event(), 0

    def pass_new(self):
        """Connections from now on pass; those held so far go on waiting."""
        with self.lock:
            self.held_gate, self.open_gate = self.open_gate, threading.Event()
            self.open_gate.set()

    def release(self):
        self.held_gate.set()

    def held(self):
        with self.lock:
            return self.waiting


def test_reloads_during_handshakes_keep_one_audit_chain_with_each_signature_once(env):
    """clsgwd in child mode reloaded three times while channels are held mid-handshake: each reload's new signer
    and the retired one (finishing the held handshakes) append to one audit log, which clsgwctl audit verify
    finds intact, with every channel's signature recorded exactly once"""
    from harness import free_port, transfer
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}"])
    gate = HandshakeGate(sim)
    port = free_port()
    channel = {"listen": f"127.0.0.1:{port}", "ingress": "static", "target": "emt.example:4443"}
    env.start_clsgwd(env.write_config(gate.port, {"app": channel}, clsgw={"resumption": "no"}))
    results, threads = {}, []

    def channel_round_trip(tag):
        s = socket.create_connection(("127.0.0.1", port))
        results[tag] = transfer(s, tag.encode())

    def open_channel(tag):
        t = threading.Thread(target=channel_round_trip, args=(tag,))
        t.start()
        threads.append(t)
        return t

    for round_ in range(3):
        gate.hold()
        for i in range(2):
            open_channel(f"held-{round_}-{i}")
        wait_until(lambda: gate.held() == 2, 10, "two channels held before the SMGW's first byte")
        gate.pass_new()
        env.clsgwctl("reload")  # answered once the new signer is ready and the reload committed
        wait_until(lambda: len(env.clsgwd.lines("reloaded channels=1 ")) == round_ + 1, 10, "the reload")
        open_channel(f"fresh-{round_}").join(30)  # signed by the new signer
        gate.release()  # the held ones are signed by the retired signer
    for t in threads:
        t.join(30)
    assert results == {tag: tag.encode() for tag in results} and len(results) == 9, results
    wait_until(lambda: len(env.clsgwd.lines("channel closed")) == 9, 20, "nine channels to close")
    assert len(env.clsgwd.lines("reloaded channels=1 ")) == 3
    r = env.ctl("audit", "verify", env.path("audit.log"), check=False)
    assert r.returncode == 0 and "9 records, chain intact" in r.stdout, r.stdout + r.stderr
    lines = env.audit_lines()
    channels = sorted(int(l.split(" channel=")[1].split()[0]) for l in lines if "result=ok" in l)
    assert channels == list(range(1, 10)), lines
    digests = [l.split("digest_sha256=")[1].split()[0] for l in lines]
    assert len(set(digests)) == 9, lines


def test_a_signer_whose_log_a_newer_signer_closed_ends_and_clsgwd_starts_one_on_the_current_log(env):
    """logrotate moves audit.log, then a newer signer that never takes over (a reload refused after its signer
    started) closes audit.log.1 with log_closed: clsgwd's running signer can sign nothing more, so it ends, saying
    why; clsgwd starts a signer on the current log, channels work again, and the two logs verify as one chain"""
    from harness import free_port, transfer
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}"])
    port = free_port()
    channel = {"listen": f"127.0.0.1:{port}", "ingress": "static", "target": "emt.example:4443"}
    env.start_clsgwd(env.write_config(sim, {"app": channel}, clsgw={"resumption": "no", "signer_timeout": "1s"}))

    def round_trip(tag):
        try:
            return transfer(socket.create_connection(("127.0.0.1", port)), tag) == tag
        except OSError:
            return False
    assert round_trip(b"before the rotation\n")
    log, log1 = env.path("audit.log"), env.path("audit.log.1")
    os.rename(log, log1)
    newer = Signer(env)  # starts on the new, empty audit.log: closes audit.log.1
    newer.control.close()
    wait_until(lambda: newer.proc.proc.poll() is not None, 10, "the newer signer to exit")
    with open(log1) as f:
        assert " result=log_closed " in f.read().splitlines()[-1]
    # The running signer finds its log closed at its next record: that channel fails; no reload retires the
    # signer, so it ends after twice signer_timeout.
    assert not round_trip(b"signed into a closed log\n")
    env.clsgwd.wait_log("the audit log was closed by a newer signer that did not take over; ending .*retire_wait_ms=2000")
    env.clsgwd.wait_log("signer exited; restarting")
    wait_until(lambda: len(env.clsgwd.lines("signer ready")) >= 2, 15, "clsgwd's new signer")
    assert wait_until(lambda: round_trip(b"after the new signer\n"), 15, "a channel through the new signer")
    r = env.ctl("audit", "verify", log1, log, check=False)
    assert r.returncode == 0 and "chain intact" in r.stdout, r.stdout + r.stderr
    assert "result=chain_continued" in open(log).read().splitlines()[0]
