"""Data integrity at volume. make check runs it with 64 MiB; make check-long with 1 GiB (CLSGW_DATA_MB)."""
import hashlib
import os
import random
import socket
import threading

from harness import Service, free_port, wait_until

EMT, EMT_PORT = "emt.example", 4443
MIB = 1 << 20


def stream_through(sock, total, seed, results, key):
    """Sends `total` pseudo-random bytes while reading the echo; records both SHA-256 digests."""
    sent, got = hashlib.sha256(), hashlib.sha256()
    received = [0]

    def reader():
        sock.settimeout(300)
        while True:
            data = sock.recv(1 << 18)
            if not data:
                break
            got.update(data)
            received[0] += len(data)

    t = threading.Thread(target=reader)
    t.start()
    rng = random.Random(seed)
    left = total
    while left:
        chunk = rng.randbytes(min(left, 1 << 18))
        sent.update(chunk)
        sock.sendall(chunk)
        left -= len(chunk)
    sock.shutdown(socket.SHUT_WR)
    t.join(600)
    results[key] = (sent.hexdigest(), got.hexdigest(), received[0])


def test_volume_through_an_outbound_and_an_inbound_channel_at_once(env):
    """CLSGW_DATA_MB (64 in make check, 1024 in make check-long) each way through an outbound and an
    inbound channel at the same time, verified by SHA-256"""
    total = int(os.environ.get("CLSGW_DATA_MB", "64")) * MIB
    echo = env.start_echo()
    smgw = env.start_sim([f"{EMT}:{EMT_PORT}=127.0.0.1:{echo}"])
    service = Service("echo")
    out_port, in_port = free_port(), free_port()
    env.start_clsgwd(env.write_config(smgw, {
        "out": {"listen": f"127.0.0.1:{out_port}", "ingress": "static", "target": f"{EMT}:{EMT_PORT}"},
        "in": {"direction": "inbound", "listen": f"127.0.0.1:{in_port}", "forward": f"127.0.0.1:{service.port}"},
    }, clsgw={"idle_timeout": "10m"}))
    [emt_in] = env.start_sim_inbound([(in_port, None)])
    results = {}
    threads = [
        threading.Thread(target=stream_through, args=(socket.create_connection(("127.0.0.1", out_port)), total, 1,
                                                      results, "outbound")),
        threading.Thread(target=stream_through, args=(socket.create_connection(("127.0.0.1", emt_in)), total, 2,
                                                      results, "inbound")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(1200)
    for direction in ("outbound", "inbound"):
        sent, got, count = results[direction]
        assert count == total and sent == got, (direction, count, total)
    wait_until(lambda: len(env.clsgwd.lines(r"channel closed .*outcome=ok")) == 2, 30, "both channels to close")
    assert env.clsgwd.lines(rf"channel closed .*name=out .*bytes_up={total} bytes_down={total}")
    assert env.clsgwd.lines(rf"channel closed .*name=in .*bytes_up={total} bytes_down={total}")
