"""clsgw-signer driven directly over its real protocol: fd 3 control socket, per-channel sessions.

The test plays the master (it opens sessions) and a hostile worker (it sends bad requests).
"""
import hashlib
import os
import socket
import struct
import subprocess

from harness import BIN, wait_until

SIGNER_READY, SESSION_OPEN, SIGN_REQUEST, SIGN_ANSWER = 32, 33, 48, 49
SHA256, SHA384, SHA512 = 1, 2, 3
STATUS = {0: "ok", 1: "malformed", 2: "unknown_key", 3: "unsupported_digest", 4: "wrong_digest_length",
          5: "quota_exceeded", 6: "sign_failed"}


def frame(msg_type, payload):
    return struct.pack("=HHI", msg_type, 0, len(payload)) + payload


def tlv(tag, value):
    return struct.pack("=HI", tag, len(value)) + value


class Signer:
    def __init__(self, env):
        self.env = env
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fd = theirs.fileno()
        self.proc = env.start("signer", [os.path.join(BIN, "clsgw-signer"), "--key", env.path("device.key"),
                                         "--certificate", env.path("device.crt"), "--audit-log", env.path("audit.log")],
                              pass_fds=(fd, 3), preexec_fn=lambda: os.dup2(fd, 3))
        theirs.close()
        self.control.settimeout(10)
        ready = self.control.recv(1024)
        msg_type, _, length = struct.unpack("=HHI", ready[:8])
        assert msg_type == SIGNER_READY
        tag, vlen = struct.unpack("=HI", ready[8:14])
        self.key_id = ready[14:14 + vlen]
        self.next_channel = 1

    def session(self, name="test"):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        payload = tlv(1, struct.pack("=Q", self.next_channel)) + tlv(2, name.encode()) + tlv(3, b"127.0.0.1:9")
        self.next_channel += 1
        socket.send_fds(self.control, [frame(SESSION_OPEN, payload)], [theirs.fileno()])
        theirs.close()
        mine.settimeout(10)
        return mine

    def request(self, sock, digest, seq=1, alg=SHA256, hash_len=None, key_id=None):
        hl = len(digest) if hash_len is None else hash_len
        body = struct.pack("=IBB32s64s", seq, alg, hl, key_id or self.key_id, digest.ljust(64, b"\0"))
        sock.send(frame(SIGN_REQUEST, body))
        return self.answer(sock)

    @staticmethod
    def answer(sock):
        data = sock.recv(4096)
        msg_type, _, length = struct.unpack("=HHI", data[:8])
        assert msg_type == SIGN_ANSWER and length == len(data) - 8
        seq, status, sig_len = struct.unpack("=IBH", data[8:15])
        return seq, STATUS[status], data[15:15 + sig_len]


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
    """one session gets at most two signatures; both verify with OpenSSL; the third is refused and audited"""
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
    lines = audit(env)  # written before each answer was sent
    assert len(lines) == 3, lines
    assert [l.split("result=")[1].split()[0] for l in lines] == ["ok", "ok", "quota_exceeded"]
    for line, digest in zip(lines, digests):
        assert f"digest_sha256={hashlib.sha256(digest).hexdigest()}" in line and "name=quota" in line
    # a new session has its own quota
    seq, st, sig = signer.request(signer.session(), digests[2], seq=1)
    assert st == "ok"


def test_signer_refuses_bad_requests_and_stays_up(env):
    """unknown key, unsupported digest, wrong digest length, malformed and oversize frames get error answers"""
    signer = Signer(env)
    s = signer.session("hostile")
    d32 = hashlib.sha256(b"x").digest()
    assert signer.request(s, d32, key_id=b"\1" * 32)[1] == "unknown_key"
    assert signer.request(s, d32, alg=9)[1] == "unsupported_digest"
    assert signer.request(s, d32, alg=SHA384)[1] == "wrong_digest_length"
    assert signer.request(s, d32, hash_len=200)[1] == "wrong_digest_length"
    s.send(frame(SIGN_REQUEST, b"short"))
    assert Signer.answer(s)[1] == "malformed"
    s.send(b"\x01\x02\x03")
    assert Signer.answer(s)[1] == "malformed"
    s.send(frame(SIGN_REQUEST, b"\0" * (70 * 1024)))
    assert Signer.answer(s)[1] == "malformed"
    s.send(frame(7777, b""))
    assert Signer.answer(s)[1] == "malformed"
    # none of that counted against the quota, and the signer still serves
    assert signer.request(s, d32, seq=5)[1] == "ok"
    assert signer.request(signer.session(), hashlib.sha512(b"y").digest(), alg=SHA512)[1] == "ok"
    assert signer.proc.alive()
    assert len(audit(env)) == 10


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
