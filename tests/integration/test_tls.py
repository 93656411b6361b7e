"""TR-03116-3 HAN profile, checked on the wire and against foreign peers (OpenSSL, stunnel)."""
import re
import socket
import struct
import subprocess
import threading
import time

from harness import Service, free_port, recv_exact, wait_until


class HelloCapture:
    """A fake SMGW that records the first TLS record of each connection, then hangs up."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.hellos = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                header = recv_exact(conn, 5)
                if len(header) == 5:
                    self.hellos.append(header + recv_exact(conn, struct.unpack(">H", header[3:5])[0]))


def hello_random(record):
    """The 32-byte random of a ClientHello/ServerHello record (type 22, handshake header 4, version 2)."""
    assert record[0] == 22, "not a handshake record"
    return record[5 + 4 + 2:5 + 4 + 2 + 32]


def looks_like_now(first4, now, slack=3600):
    return abs(struct.unpack(">I", first4)[0] - (int(now) & 0xffffffff)) < slack


def test_client_hello_random_carries_no_clock(env):
    """RANDOM_TIME: over 20 handshakes the first 4 bytes of our ClientHello.random are never the clock"""
    capture = HelloCapture()
    port = free_port()
    env.start_clsgwd(env.write_config(capture.port, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                                             "target": "emt.example:443"}}))
    for _ in range(20):
        socket.create_connection(("127.0.0.1", port)).close()
    wait_until(lambda: len(capture.hellos) == 20, 30, "20 ClientHellos")
    now = time.time()
    firsts = [hello_random(h)[:4] for h in capture.hellos]
    assert all(h[5] == 1 for h in capture.hellos), "not ClientHello messages"
    assert not [f for f in firsts if looks_like_now(f, now)], [f.hex() for f in firsts]
    assert len(set(firsts)) == 20, "the leading bytes repeat: not random"


def test_server_hello_random_carries_no_clock(env):
    """as TLS server (inbound) the ServerHello.random carries no clock either (OpenSSL s_client -msg)"""
    service = Service("echo")
    port = free_port()
    env.start_clsgwd(env.write_config(None, {"in": {"direction": "inbound", "listen": f"127.0.0.1:{port}",
                                                    "forward": f"127.0.0.1:{service.port}"}}))
    now = time.time()
    firsts = []
    for _ in range(5):
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-msg",
                            "-groups", "brainpoolP256r1", "-CAfile", env.path("device.crt")],
                           input=b"", capture_output=True, timeout=20)
        text = r.stdout.decode(errors="replace")
        m = re.search(r"<<< TLS 1.2, Handshake \[length [0-9a-f]+\], ServerHello\n((?:    [0-9a-f ]+\n)+)", text)
        assert m, text[-2000:]
        body = bytes.fromhex(m.group(1).replace("\n", " "))
        firsts.append(body[6:10])
    assert not [f for f in firsts if looks_like_now(f, now)], [f.hex() for f in firsts]
    assert len(set(firsts)) == 5
