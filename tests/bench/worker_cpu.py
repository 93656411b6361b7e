#!/usr/bin/env python3
"""The workers' CPU time per channel: a number that machine noise moves far less than wall time.

Starts the SMGW simulator, an EMT echo and clsgwd (resumption off, so every channel is a full
handshake) from one build folder, opens N channels one after another (a line there and back,
then close), and reads the CPU time of clsgwd's reaped children (its workers; the signer is not
reaped while clsgwd runs) from /proc. Compare two builds by running it for each, alternately:

    python3 tests/bench/worker_cpu.py --build BUILD_A --channels 200
    python3 tests/bench/worker_cpu.py --build BUILD_B --channels 200
"""
import argparse
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

ap = argparse.ArgumentParser()
ap.add_argument("--build", default="build")
ap.add_argument("--channels", type=int, default=200)
args = ap.parse_args()
os.environ["CLSGW_BUILD"] = os.path.abspath(args.build)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import Env, free_port, recv_exact, wait_until  # noqa: E402

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def children_cpu_ms(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) * TICK_MS  # cutime + cstime


env = Env("worker-cpu")
try:
    echo = env.start_echo()
    sim = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}"])
    port = free_port()
    env.start_clsgwd(env.write_config(sim, {"app": {"listen": f"127.0.0.1:{port}", "ingress": "static",
                                                    "target": "emt.example:4443"}}, clsgw={"resumption": "no"}))

    def channel():
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"x\n")
        assert recv_exact(s, 2) == b"x\n"
        s.close()

    def closed():
        return len(env.clsgwd.lines("channel closed"))

    for _ in range(5):  # warm-up: spares started, caches filled
        channel()
    wait_until(lambda: closed() == 5, 20, "the warm-up channels to close")
    before, started = children_cpu_ms(env.clsgwd.pid), time.monotonic()
    for _ in range(args.channels):
        channel()
    wait_until(lambda: closed() == 5 + args.channels, 60, "every channel to close")
    took = time.monotonic() - started
    # A worker's time counts once clsgwd has reaped it, right after its report: read until it holds still.
    last = [None]

    def settled():
        now = children_cpu_ms(env.clsgwd.pid)
        done, last[0] = now == last[0], now
        time.sleep(0.3)
        return now if done else None
    spent = wait_until(settled, 10, "the workers' CPU time to settle")
    print(f"{args.build}: {(spent - before) / args.channels:.2f} ms worker CPU per channel, "
          f"{took * 1000 / args.channels:.1f} ms per channel in all ({args.channels} channels)")
finally:
    for p in env.processes:
        try:
            p.proc.kill()
        except OSError:
            pass
