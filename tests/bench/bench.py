#!/usr/bin/env python3
"""make bench: clsgw against stunnel and against the crypto floor of the same mbedTLS.

Every scenario is reported as a ratio to a reference measured in the same run, because absolute
times on a shared machine are noisy. Both sides talk to the same SMGW stand-in (stunnel in server
mode: it keeps a session cache and issues tickets, so resumption can be measured) which relays to
the same EMT echo. Writes build/bench/results.json, build/bench/results.md and
build/bench/scale.svg.
"""
import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

ap = argparse.ArgumentParser()
ap.add_argument("--build", default="build")
ap.add_argument("--floor", required=True, help="the crypto_floor program")
ap.add_argument("--latency-channels", type=int, default=200)
ap.add_argument("--scale-channels", type=int, default=1000)
ap.add_argument("--bulk-mib", type=int, default=64)
ap.add_argument("--out", default="build/bench")
ap.add_argument("--stunnel-fork", help="a stunnel built in fork mode, for B3 (tests/bench/stunnel_fork.sh)")
ap.add_argument("--spare-workers", type=int, help="clsgw's spare_workers (default: clsgw's own default)")
ap.add_argument("--only", default="B1,B2,B3", help="scenarios to run, e.g. B2 (B3 includes B4)")
ap.add_argument("--report-only", action="store_true", help="only remake the table and plot from results.json")
args = ap.parse_args()
only = set(args.only.split(","))
os.environ["CLSGW_BUILD"] = args.build

import harness  # noqa: E402  (needs CLSGW_BUILD first)
from harness import Env, free_port, wait_until, children_of  # noqa: E402

EMT = "emt.example"
STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")
SUITE, GROUP = "ECDHE-ECDSA-AES128-GCM-SHA256", "brainpoolP256r1"
TICK = os.sysconf("SC_CLK_TCK")


def say(*a):
    print("bench:", *a, flush=True)


# --- /proc readings ------------------------------------------------------------------------

def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children_of(p)
    return out


def cpu_split(pids):
    """User and kernel CPU seconds of pids (all threads), with their reaped children's: a worker
    that ended is counted in its master's."""
    user = system = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11]) + int(fields[13])
            system += int(fields[12]) + int(fields[14])
        except OSError:
            pass
    return user / TICK, system / TICK


def cpu_seconds(pids):
    return sum(cpu_split(pids))


def pss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def ctxt_switches(pid):
    with open(f"/proc/{pid}/status") as f:
        return sum(int(line.split()[1]) for line in f if "ctxt_switches:" in line)


# --- the two gateways under test ------------------------------------------------------------

class Clsgw:
    def __init__(self, env, smgw_port, echo_port, resumption, spares=None):
        self.name = "clsgw" if spares is None else f"clsgw_spares_{spares}"
        spares = args.spare_workers if spares is None else spares
        self.env = env
        self.port = free_port()
        self.inbound_port = free_port()
        cfg = env.write_config(smgw_port, {
            "app": {"listen": f"127.0.0.1:{self.port}", "ingress": "static", "target": f"{EMT}:443", "proxy": "sni"},
            "svc": {"direction": "inbound", "listen": f"127.0.0.1:{self.inbound_port}",
                    "forward": f"127.0.0.1:{echo_port}"},
        }, clsgw={"log_level": "info", "max_channels": str(args.scale_channels + 50), "handshake_timeout": "60s",
                  "resumption": "yes" if resumption else "no",
                  **({"spare_workers": str(spares)} if spares is not None else {})})
        self.proc = env.start_clsgwd(cfg)
        self.pid = self.proc.pid

    def pids(self):
        return tree(self.pid)

    def stop(self):
        self.proc.stop()
        self.env.processes.remove(self.proc)


class Stunnel:
    def __init__(self, env, smgw_port, echo_port, resumption, tag, binary=None):
        self.name = "stunnel_fork" if binary else "stunnel"
        tag = f"{tag}-fork" if binary else tag
        self.env = env
        self.port = free_port()
        self.inbound_port = free_port()
        me = ("device", "smgw")
        conf = stunnel_conf(env, f"stunnel-client-{tag}.conf", [
            ("app", self.port, smgw_port, me, ["client = yes", f"sni = {EMT}",
                                               f"sessionResume = {'yes' if resumption else 'no'}"]),
            ("svc", self.inbound_port, echo_port, me, []),
        ])
        self.proc = env.start(f"stunnel-client-{tag}", [binary or STUNNEL, conf])
        self.proc.wait_log("Configuration successful")
        self.pid = self.proc.pid

    def pids(self):
        return tree(self.pid)  # fork mode: one child per connection

    def stop(self):
        self.proc.stop()
        self.env.processes.remove(self.proc)


def stunnel_conf(env, name, services):
    """One stunnel configuration on the HAN profile; services are (name, accept, connect,
    (own identity, pinned peer), extra lines)."""
    lines = ["foreground = yes", "pid =", "debug = 5"]
    for service, accept, connect, (me, peer), extra in services:
        lines += [f"[{service}]", f"accept = 127.0.0.1:{accept}", f"connect = 127.0.0.1:{connect}",
                  f"cert = {env.path(me + '.crt')}", f"key = {env.path(me + '.key')}",
                  f"CAfile = {env.path(peer + '.crt')}", "verifyPeer = yes", "sslVersionMin = TLSv1.2",
                  "sslVersionMax = TLSv1.2", f"curves = {GROUP}:brainpoolP384r1", f"ciphers = {SUITE}", *extra]
    path = env.path(name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def start_smgw_standin(env, echo_port, sink_port, source_port):
    """One stunnel server with three services: to the EMT echo, to a sink, from a source."""
    ports = {"echo": free_port(), "sink": free_port(), "source": free_port()}
    backends = {"echo": echo_port, "sink": sink_port, "source": source_port}
    conf = stunnel_conf(env, "stunnel-smgw.conf", [(f"smgw-{k}", ports[k], backends[k], ("smgw", "device"), [])
                                                   for k in ports])
    p = env.start("stunnel-smgw", [STUNNEL, conf])
    p.wait_log("Configuration successful")
    return ports


# An EMT that only receives (sink) or only sends (source): one direction at a time, so that the
# gateway ciphers one stream on its core, as the GCM reference does. A process of its own, so that
# it competes with the gateway like every other peer here.
ONE_WAY_EMT = r"""
import socket, sys
mode, port, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", port))
l.listen(16)
print("listening", flush=True)
block = bytes(range(256)) * 4096
while True:
    c, _ = l.accept()
    if mode == "sink":
        while c.recv(1 << 20):
            pass
    else:
        for _ in range(mib):
            c.sendall(block)
    c.close()
"""


def start_one_way_emt(env, mode, mib):
    port = free_port()
    p = env.start(f"emt-{mode}", [sys.executable, "-c", ONE_WAY_EMT, mode, str(port), str(mib)])
    p.wait_log("listening")
    return port


# --- scenarios ------------------------------------------------------------------------------

def open_channel(port, token=b"x"):
    """Local connect, one byte out, the echo back: the setup latency a user sees."""
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(token)
    got = b""
    while len(got) < len(token):
        chunk = s.recv(len(token) - len(got))
        if not chunk:
            raise AssertionError("channel closed before the echo came back")
        got += chunk
    if got != token:
        raise AssertionError(f"echo mismatch: {got!r} != {token!r}")
    return s, (time.perf_counter() - t0) * 1000.0


def setup_latency(gw, n, pause=0.0):
    """n channels one after another (pause seconds between them: a device that is mostly idle)."""
    times = []
    for i in range(n):
        s, ms = open_channel(gw.port)
        s.close()
        times.append(ms)
        time.sleep(pause)  # the load pattern itself, not a synchronisation
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
            "channels": n}


def handshake_split(gw, n):
    """The TLS handshake alone and where its time went, as each channel's closing line reports it
    (p50 of each): the wait for the SMGW's flights, the signer's round trip, and the device's own
    side (handshake minus the SMGW wait). What the setup latency spends outside the handshake is
    the worker's hand-over and the local hops."""
    pattern = r"channel closed .*handshake_ms=(\d+) smgw_wait_ms=([\d.]+) signer_ms=([\d.]+)"
    lines = wait_until(lambda: (lambda l: l if len(l) >= n else None)(gw.proc.lines(pattern)), 30,
                       f"{n} channel summaries")
    rows = [[float(x) for x in re.search(pattern, line).groups()] for line in lines[-(n - 1):]]
    return {"handshake_p50_ms": statistics.median(r[0] for r in rows),
            "smgw_wait_p50_ms": round(statistics.median(r[1] for r in rows), 2),
            "signer_p50_ms": round(statistics.median(r[2] for r in rows), 2),
            "device_side_p50_ms": round(statistics.median(r[0] - r[1] for r in rows), 2)}


def bulk(gw, mib, port=None):
    """mib MiB up and the same back through one channel, concurrently; CPU of the gateway's processes."""
    s, _ = open_channel(port or gw.port)
    pids = gw.pids()
    user0, sys0 = cpu_split(pids)
    block = os.urandom(1 << 20)
    received = [0]

    def reader():
        while received[0] < mib << 20:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            received[0] += len(chunk)

    t0 = time.perf_counter()
    th = threading.Thread(target=reader)
    th.start()
    for _ in range(mib):
        s.sendall(block)
    th.join(300)
    elapsed = time.perf_counter() - t0
    pids = gw.pids()  # the worker of this channel is alive until the close below
    user1, sys1 = cpu_split(pids)
    user, system = user1 - user0, sys1 - sys0
    cpu = user + system
    s.close()
    if received[0] != mib << 20:
        raise AssertionError(f"{gw.name}: {received[0]} of {mib << 20} bytes came back")
    return {"mib_each_way": mib, "seconds": round(elapsed, 3), "mib_s_each_way": round(mib / elapsed, 1),
            "cpu_s": round(cpu, 3), "cpu_ms_per_mib": round(cpu * 1000.0 / (2 * mib), 3),
            "user_ms_per_mib": round(user * 1000.0 / (2 * mib), 3), "kernel_ms_per_mib": round(system * 1000.0 / (2 * mib), 3)}


def one_way(gw, mode, mib):
    """mib MiB in one direction only: up (app -> EMT sink) or down (EMT source -> app). Timed from
    the first byte to the end, with the CPU of the gateway's processes."""
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=60)
    user0, sys0 = cpu_split(gw.pids())
    moved = 0
    if mode == "up":
        block = os.urandom(1 << 20)
        t0 = time.perf_counter()
        for _ in range(mib):
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
        if s.recv(1):  # the sink closes once it has read everything
            raise AssertionError(f"{gw.name}: the sink sent data")
        moved = mib << 20
    else:
        first = s.recv(1 << 20)
        t0 = time.perf_counter()
        moved = len(first)
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            moved += len(chunk)
        if moved != mib << 20:
            raise AssertionError(f"{gw.name}: {moved} of {mib << 20} bytes came")
    elapsed = time.perf_counter() - t0
    pids = gw.pids()
    user1, sys1 = cpu_split(pids)
    s.close()
    return {"mib": mib, "seconds": round(elapsed, 3), "mib_s": round(mib / elapsed, 1),
            "user_ms_per_mib": round((user1 - user0) * 1000.0 / mib, 3),
            "kernel_ms_per_mib": round((sys1 - sys0) * 1000.0 / mib, 3)}


def scale(gw, total, batch=50):
    """Opens total channels in batches (the first of one), each verified by its own echo, and keeps
    them open; memory at 1 and at every 100 channels."""
    socks, points, lat = [], [], []
    starts = [0, 1] + list(range(batch, total, batch))
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else total
        results, errors = [None] * (end - start), []

        def one(i):
            try:
                results[i] = open_channel(gw.port, f"{start + i:06d}".encode())
            except Exception as e:  # noqa: BLE001  (reported below)
                errors.append(repr(e))

        ths = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
        for t in ths:
            t.start()
        for t in ths:
            t.join(120)
        if errors:
            raise AssertionError(f"{gw.name}: {len(errors)} channels failed at {start}: {errors[0]}")
        socks += [r[0] for r in results]
        lat += [r[1] for r in results]
        n = len(socks)
        if n == 1 or n % 100 == 0 or n == total:
            time.sleep(0.5)  # measurement pause only: lets workers finish handshake-time allocations
            points.append({"channels": n, "pss_kib": pss_kib(gw.pids()), "batch_p50_ms":
                           round(statistics.median(lat[-len(results):]), 2)})
            say(f"{gw.name}: {n} channels open, PSS {points[-1]['pss_kib']} KiB")
    return socks, points


def idle_master(pid, seconds=5.0):
    c0, w0 = cpu_seconds([pid]), ctxt_switches(pid)
    time.sleep(seconds)  # the measurement window itself
    return {"window_s": seconds, "cpu_ms": round((cpu_seconds([pid]) - c0) * 1000, 1),
            "wakeups": ctxt_switches(pid) - w0}


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(8 * args.scale_channels + 1024, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.makedirs(args.out, exist_ok=True)
    results = {"machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname()[2:5]),
                           "model": cpu_model(), "date": time.strftime("%Y-%m-%d")}}

    say("crypto floor (mbedTLS, one core)")
    results["floor_gcm"] = json.loads(subprocess.check_output([args.floor, "gcm", "2"]))
    ecc = json.loads(subprocess.check_output([args.floor, "ecc", "50"]))
    results["floor_ecc"] = ecc
    # the device's share of one full handshake: ECDHE on the group, the SMGW's ServerKeyExchange
    # signature checked (its key is brainpoolP384r1) in a fresh worker, i.e. cold, and
    # CertificateVerify signed (brainpoolP256r1) by the long-running signer, i.e. warm
    client_ms = (ecc[GROUP]["ecdhe_ms"] + ecc["brainpoolP384r1"]["verify_cold_ms"] +
                 ecc["brainpoolP256r1"]["sign_ms"])
    results["floor_handshake"] = {"client_ecc_ms": round(client_ms, 2)}

    fork_stunnel = args.stunnel_fork if args.stunnel_fork and os.access(args.stunnel_fork, os.X_OK) else None
    if not fork_stunnel:
        say("no stunnel in fork mode (tests/bench/stunnel_fork.sh): B3 compares with thread mode only")
    results["stunnel_fork_built"] = bool(fork_stunnel)
    env = Env("bench")
    try:
        echo = env.start_echo()
        one_way_mib = 2 * args.bulk_mib
        sink, source = start_one_way_emt(env, "sink", one_way_mib), start_one_way_emt(env, "source", one_way_mib)
        standin = start_smgw_standin(env, echo, sink, source)
        smgw = standin["echo"]
        for resumption in (False, True):
            kind = "resumed" if resumption else "full"
            # clsgw without spare workers: the pool's effect, measured in the same run (B2 only)
            # stunnel built in fork mode: the B3 reference for a process per connection
            makers = [lambda: Clsgw(env, smgw, echo, resumption),
                      lambda: Clsgw(env, smgw, echo, resumption, spares=0),
                      lambda: Stunnel(env, smgw, echo, resumption, kind)]
            if fork_stunnel and resumption and "B3" in only:
                makers.append(lambda: Stunnel(env, smgw, echo, resumption, kind, binary=fork_stunnel))
            for make in makers:
                gw = make()
                if gw.name == "stunnel_fork":
                    say(f"B3 {gw.name}: up to {args.scale_channels} open channels")
                    socks, points = scale(gw, args.scale_channels)
                    results.setdefault("B3", {})[gw.name] = points
                    for s in socks:
                        s.close()
                    gw.stop()
                    continue
                if gw.name != "clsgw" and gw.name != "stunnel" and "B2" not in only:
                    gw.stop()
                    continue
                open_channel(gw.port)[0].close()  # warm-up (and the session to resume from)
                if "B2" in only:
                    say(f"B2 {gw.name} {kind}: {args.latency_channels} channels, one after another")
                    b2 = results.setdefault("B2", {}).setdefault(gw.name, {})[kind] = setup_latency(
                        gw, args.latency_channels)
                    if gw.name.startswith("clsgw"):
                        b2.update(handshake_split(gw, args.latency_channels + 1))
                    if resumption:
                        say(f"B2 {gw.name} {kind}: {args.latency_channels} channels, one every 50 ms")
                        results.setdefault("B2_paced", {})[gw.name] = setup_latency(gw, args.latency_channels, 0.05)
                if gw.name not in ("clsgw", "stunnel"):
                    gw.stop()
                    continue
                if resumption and "B1" in only:
                    say(f"B1/B5 {gw.name}: {args.bulk_mib} MiB each way")
                    results.setdefault("B1", {})[gw.name] = bulk(gw, args.bulk_mib)
                    # inbound: the SMGW simulator's active side opens TLS to the device's listener
                    [emt] = env.start_sim_inbound([(gw.inbound_port, None)])
                    say(f"B1 {gw.name} inbound: {args.bulk_mib} MiB each way")
                    results.setdefault("B1_inbound", {})[gw.name] = bulk(gw, args.bulk_mib, port=emt)
                if resumption and "B3" in only:
                    say(f"B3/B4 {gw.name}: up to {args.scale_channels} open channels")
                    socks, points = scale(gw, args.scale_channels)
                    results.setdefault("B3", {})[gw.name] = points
                    if gw.name == "clsgw":
                        results["B4"] = {"channels": len(socks), "errors": 0, "master_idle": idle_master(gw.pid)}
                    for s in socks:
                        s.close()
                gw.stop()
        if "B1" in only:
            # one direction at a time: the gateway ciphers one stream, as the GCM reference does
            for mode, service in (("up", "sink"), ("down", "source")):
                for make in (lambda: Clsgw(env, standin[service], echo, True),
                             lambda: Stunnel(env, standin[service], echo, True, f"one-way-{mode}")):
                    gw = make()
                    if mode == "up":
                        one_way(gw, mode, 1)  # warm-up: the full handshake stays out of the timed run
                    say(f"B1 {gw.name} one way ({mode}): {one_way_mib} MiB")
                    results.setdefault("B1_one_way", {}).setdefault(gw.name, {})[mode] = one_way(gw, mode, one_way_mib)
                    gw.stop()
    except BaseException:
        env.close(keep=True)
        say(f"failed; logs kept in {env.dir}")
        raise
    env.close()

    if only != {"B1", "B2", "B3"}:  # a partial run: no table, and the full results stay as they are
        with open(os.path.join(args.out, "results-partial.json"), "w") as f:
            json.dump(results, f, indent=2)
        print(json.dumps({k: v for k, v in results.items() if k.startswith("B")}, indent=2))
        return
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    report()


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def slope(points):
    by = {p["channels"]: p["pss_kib"] for p in points}
    lo, hi = (100, 500) if 500 in by and 100 in by else (min(by), max(by))
    return (by[hi] - by[lo]) / max(1, hi - lo)


def table(r):
    g, b1, b2, b3 = r["floor_gcm"], r["B1"], r["B2"], r["B3"]
    fh = r["floor_handshake"]
    ecc_sum = fh["client_ecc_ms"]
    rows = [
        ("B1 outbound throughput one way, MiB/s (app → EMT / EMT → app)",
         f"{r['B1_one_way']['clsgw']['up']['mib_s']} / {r['B1_one_way']['clsgw']['down']['mib_s']}",
         f"{r['B1_one_way']['stunnel']['up']['mib_s']} / {r['B1_one_way']['stunnel']['down']['mib_s']}",
         f"AES-128-GCM {g['aes128gcm_mib_s']} MiB/s",
         f"{r['B1_one_way']['clsgw']['up']['mib_s'] / g['aes128gcm_mib_s']:.2f} / "
         f"{r['B1_one_way']['clsgw']['down']['mib_s'] / g['aes128gcm_mib_s']:.2f} × GCM; CPU per MiB "
         f"{r['B1_one_way']['clsgw']['up']['user_ms_per_mib']} + {r['B1_one_way']['clsgw']['up']['kernel_ms_per_mib']} / "
         f"{r['B1_one_way']['clsgw']['down']['user_ms_per_mib']} + {r['B1_one_way']['clsgw']['down']['kernel_ms_per_mib']} ms "
         f"(user + kernel; GCM alone {1000 / g['aes128gcm_mib_s']:.2f})", "≥ 0.85 × GCM"),
        ("B1 outbound throughput both ways at once, MiB/s each way", f"{b1['clsgw']['mib_s_each_way']}",
         f"{b1['stunnel']['mib_s_each_way']}",
         f"AES-128-GCM {g['aes128gcm_mib_s']} MiB/s",
         f"{b1['clsgw']['mib_s_each_way'] / g['aes128gcm_mib_s']:.2f} × GCM; "
         f"{2 * b1['clsgw']['mib_s_each_way'] / g['aes128gcm_mib_s']:.2f} × GCM/2 (one core ciphers both ways)",
         "≥ 0.85 × GCM"),
        ("B1 inbound throughput, MiB/s each way", f"{r['B1_inbound']['clsgw']['mib_s_each_way']}",
         f"{r['B1_inbound']['stunnel']['mib_s_each_way']}", "the same, through the SMGW simulator's inbound side",
         f"{r['B1_inbound']['clsgw']['mib_s_each_way'] / r['B1_inbound']['stunnel']['mib_s_each_way']:.2f} × stunnel",
         "as B1"),
        ("B2 full handshake, device side p50, ms (handshake minus the wait for the SMGW)",
         f"{b2['clsgw']['full']['device_side_p50_ms']}", "",
         f"client ECC {ecc_sum} ms (goal: {1.15 * ecc_sum + 2:.1f} ms)",
         f"{b2['clsgw']['full']['device_side_p50_ms'] / ecc_sum:.2f} × client ECC; handshake "
         f"{b2['clsgw']['full']['handshake_p50_ms']} ms = SMGW wait {b2['clsgw']['full']['smgw_wait_p50_ms']} + signer "
         f"{b2['clsgw']['full']['signer_p50_ms']} + worker", "≤ 1.15 × client ECC + 2 ms"),
        ("B2 full setup p50 / p99, ms", f"{b2['clsgw']['full']['p50_ms']} / {b2['clsgw']['full']['p99_ms']}",
         f"{b2['stunnel']['full']['p50_ms']} / {b2['stunnel']['full']['p99_ms']}", "stunnel (OpenSSL's ECC)",
         f"{b2['clsgw']['full']['p50_ms'] / b2['stunnel']['full']['p50_ms']:.2f} × stunnel", "—"),
        ("B2 resumed setup p50 / p99, ms", f"{b2['clsgw']['resumed']['p50_ms']} / {b2['clsgw']['resumed']['p99_ms']}",
         f"{b2['stunnel']['resumed']['p50_ms']} / {b2['stunnel']['resumed']['p99_ms']}", "stunnel resumed p50",
         f"{b2['clsgw']['resumed']['p50_ms'] / b2['stunnel']['resumed']['p50_ms']:.2f} × stunnel; handshake alone "
         f"{b2['clsgw']['resumed'].get('handshake_p50_ms', '?')} ms", "≤ 1.0 × stunnel"),
        ("B2 resumed setup p50, one channel every 50 ms, ms", f"{r['B2_paced']['clsgw']['p50_ms']}",
         f"{r['B2_paced']['stunnel']['p50_ms']}", "stunnel, the same pattern",
         f"{r['B2_paced']['clsgw']['p50_ms'] / r['B2_paced']['stunnel']['p50_ms']:.2f} × stunnel", "≤ 1.0 × stunnel"),
        ("B2 without spare workers (spare_workers = 0): full / resumed / resumed every 50 ms, p50 ms",
         f"{b2['clsgw_spares_0']['full']['p50_ms']} / {b2['clsgw_spares_0']['resumed']['p50_ms']} / "
         f"{r['B2_paced']['clsgw_spares_0']['p50_ms']}", "", "clsgw with its default 2 spares, above",
         f"{b2['clsgw']['full']['p50_ms'] / b2['clsgw_spares_0']['full']['p50_ms']:.2f} / "
         f"{b2['clsgw']['resumed']['p50_ms'] / b2['clsgw_spares_0']['resumed']['p50_ms']:.2f} / "
         f"{r['B2_paced']['clsgw']['p50_ms'] / r['B2_paced']['clsgw_spares_0']['p50_ms']:.2f} × (with spares / without)",
         "the pool's effect"),
        ("B3 memory per open channel, KiB (PSS slope 100→500)", f"{slope(b3['clsgw']):.0f}",
         f"{slope(b3['stunnel']):.0f} (thread mode); " +
         (f"{slope(b3['stunnel_fork']):.0f} (fork mode)" if "stunnel_fork" in b3 else "fork mode not built"),
         "stunnel per connection",
         (f"{slope(b3['clsgw']) / slope(b3['stunnel_fork']):.2f} × stunnel fork mode; " if "stunnel_fork" in b3 else "") +
         f"{slope(b3['clsgw']) / max(1, slope(b3['stunnel'])):.1f} × stunnel threads",
         "≤ 256 KiB and ≤ stunnel fork mode"),
        ("B4 concurrent channels verified", f"{r['B4']['channels']} ({r['B4']['errors']} errors)", "", "",
         f"master idle: {r['B4']['master_idle']['cpu_ms']} ms CPU, {r['B4']['master_idle']['wakeups']} wake-ups "
         f"in {r['B4']['master_idle']['window_s']} s", "1,000 with no error"),
        ("B5 CPU per MiB relayed, ms (user + kernel)",
         f"{b1['clsgw']['cpu_ms_per_mib']} ({b1['clsgw'].get('user_ms_per_mib', '?')} + "
         f"{b1['clsgw'].get('kernel_ms_per_mib', '?')})",
         f"{b1['stunnel']['cpu_ms_per_mib']} ({b1['stunnel'].get('user_ms_per_mib', '?')} + "
         f"{b1['stunnel'].get('kernel_ms_per_mib', '?')})",
         f"stunnel; mbedTLS GCM alone {1000 / g['aes128gcm_mib_s']:.2f} ms",
         f"{b1['clsgw']['cpu_ms_per_mib'] / b1['stunnel']['cpu_ms_per_mib']:.2f} × stunnel; clsgw's user space adds "
         f"{b1['clsgw'].get('user_ms_per_mib', 0) - 1000 / g['aes128gcm_mib_s']:.2f} ms "
         f"({b1['clsgw'].get('user_ms_per_mib', 0) * g['aes128gcm_mib_s'] / 1000 - 1:+.0%}) to the cipher",
         "≤ 1.0 × stunnel or explained"),
    ]
    m = r["machine"]
    out = [f"Machine: {m['model']}, {m['cpus']} CPUs, Linux {m['uname']}, {m['date']}", "",
           "| Scenario | clsgw | stunnel | Reference | Ratio | Goal |", "|---|---|---|---|---|---|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    out += ["", "Memory (PSS, KiB) against open channels:", "",
            "| channels | clsgw | stunnel (threads) | stunnel (fork) |", "|---|---|---|---|"]
    st = {p["channels"]: p for p in b3["stunnel"]}
    sf = {p["channels"]: p for p in b3.get("stunnel_fork", [])}
    for p in b3["clsgw"]:
        out.append(f"| {p['channels']} | {p['pss_kib']} | {st.get(p['channels'], {}).get('pss_kib', '')} | "
                   f"{sf.get(p['channels'], {}).get('pss_kib', '')} |")
    return "\n".join(out) + "\n"


def plot(r, out):
    if not shutil.which("gnuplot"):
        say("gnuplot is missing: no plot (apt-get install gnuplot-nox)")
        return
    data = os.path.join(out, "scale.dat")
    st = {p["channels"]: p for p in r["B3"]["stunnel"]}
    sf = {p["channels"]: p for p in r["B3"].get("stunnel_fork", [])}
    missing = {"pss_kib": float("nan"), "batch_p50_ms": float("nan")}
    with open(data, "w") as f:
        f.write("# channels clsgw_pss_mib clsgw_p50_ms stunnel_pss_mib stunnel_p50_ms fork_pss_mib fork_p50_ms\n")
        for p in r["B3"]["clsgw"]:
            s, k = st.get(p["channels"], missing), sf.get(p["channels"], missing)
            f.write(f"{p['channels']} {p['pss_kib'] / 1024:.1f} {p['batch_p50_ms']} {s['pss_kib'] / 1024:.1f} "
                    f"{s['batch_p50_ms']} {k['pss_kib'] / 1024:.1f} {k['batch_p50_ms']}\n")
    fork_pss = ", '' using 1:6 with linespoints title 'stunnel (fork)'" if sf else ""
    fork_p50 = ", '' using 1:7 with linespoints title 'stunnel (fork)'" if sf else ""
    script = f"""set terminal svg size 900,420 font 'sans,11'
set output '{os.path.join(out, 'scale.svg')}'
set multiplot layout 1,2
set xlabel 'open channels'
set ylabel 'PSS, MiB'
set key left top
plot '{data}' using 1:2 with linespoints title 'clsgw (all processes)', '' using 1:4 with linespoints title 'stunnel (threads)'{fork_pss}
set ylabel 'setup p50 of the last batch of 50, ms'
plot '{data}' using 1:3 with linespoints title 'clsgw', '' using 1:5 with linespoints title 'stunnel (threads)'{fork_p50}
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def report():
    with open(os.path.join(args.out, "results.json")) as f:
        results = json.load(f)
    md = table(results)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    plot(results, args.out)
    print(md)


if __name__ == "__main__":
    report() if args.report_only else main()
