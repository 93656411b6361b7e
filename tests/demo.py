#!/usr/bin/env python3
"""make demo: clsgw end to end on loopback with built-in defaults.

Makes a throwaway brainpool PKI with clsgwctl, starts the EMT stand-in (echo), the SMGW
simulator and clsgwd, sends traffic through static and socks5 ingress with both proxy
formats (SOCKS5 inside TLS, and SNI), shows one refusal, lets the EMT reach a device service
through an inbound (HKS4/HKS5) channel, prints the per-channel log lines
and the signer's audit lines, scans the inbound listener with clsgw-hanscan as a SMGW would
connect to it, stops everything and exits 0 (1 if anything went wrong).
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--keep", action="store_true", help="keep the demo folder")
    args = ap.parse_args()
    os.environ["CLSGW_BUILD"] = os.path.abspath(args.build)
    sys.path.insert(0, os.path.join(HERE, "integration"))
    import harness
    from harness import free_port, socks5_connect, transfer, wait_until

    env = harness.Env("demo")
    ok = True
    try:
        print("== 1. throwaway PKI (clsgwctl, brainpool curves)")
        env.make_identity("device-ca", "CN=Demo device sub-CA,O=clsgw demo", curve="brainpoolP384r1", ca=True)
        os.remove(env.path("device.key"))
        os.remove(env.path("device.crt"))
        env.make_identity("device", "CN=heat-pump-0001,O=clsgw demo", issuer="device-ca")
        fp = env.ctl("fingerprint", env.path("smgw.crt")).stdout.strip()
        print(f"   device certificate issued by a device sub-CA (brainpoolP256r1); SMGW certificate self-signed "
              f"(brainpoolP384r1), pinned by the device: {fp}")

        print("== 2. EMT stand-in, SMGW simulator (trusts the device sub-CA), clsgwd")
        echo = env.start_echo()
        smgw = env.start_sim([f"emt.example:4443=127.0.0.1:{echo}"], trust="device-ca.crt")
        channels = {
            "meter-data": {"ingress": "static", "target": "emt.example:4443", "proxy": "socks5"},
            "control-box": {"ingress": "static", "target": "emt.example:4443", "proxy": "sni"},
            "apps-socks5": {"ingress": "socks5", "allow": "emt.example:4443, *.emt.example:*", "proxy": "socks5"},
            "apps-sni": {"ingress": "socks5", "allow": "*.example:4443", "proxy": "sni"},
        }
        for keys in channels.values():
            keys["listen"] = f"127.0.0.1:{free_port()}"
        modbus = env.start_echo()  # stands in for a service on the device, e.g. Modbus TCP
        inbound_port = free_port()
        channels["modbus-in"] = {"direction": "inbound", "listen": f"127.0.0.1:{inbound_port}",
                                 "server_name": "modbus.heat-pump-0001", "forward": f"127.0.0.1:{modbus}"}
        cfg = env.write_config(smgw, channels, clsgw={"log_level": "info"})
        env.start_clsgwd(cfg)
        print(f"   clsgwd runs with {cfg}")
        [emt_in] = env.start_sim_inbound([(inbound_port, "modbus.heat-pump-0001")], trust="device-ca.crt")
        print(f"   the simulator's active side (HKS4/HKS5) lets the EMT in at 127.0.0.1:{emt_in}")

        print("== 3. traffic")
        for name, keys in channels.items():
            if keys.get("direction") == "inbound":
                continue
            port = int(keys["listen"].rsplit(":", 1)[1])
            message = f"hello EMT, this is {name}\n".encode()
            if keys["ingress"] == "socks5":
                sock, rep = socks5_connect(port, "emt.example", 4443)
                if rep != 0:
                    print(f"   {name}: SOCKS5 reply {rep}: FAILED")
                    ok = False
                    continue
            else:
                sock = __import__("socket").create_connection(("127.0.0.1", port))
            answer = transfer(sock, message)
            good = answer == message
            ok &= good
            print(f"   {name:12} ingress={keys['ingress']:7} proxy={keys['proxy']:7} sent {len(message)} bytes, "
                  f"EMT echoed {answer!r} {'OK' if good else 'MISMATCH'}")
        sock, rep = socks5_connect(int(channels["apps-socks5"]["listen"].rsplit(":", 1)[1]), "other.emt.example", 443)
        print(f"   apps-socks5 to other.emt.example:443 (allowed by clsgw, outside the SMGW's proxy profile): "
              f"SOCKS5 reply 0x{rep:02x} (0x02 = not allowed)")
        ok &= rep == 0x02
        sock.close()
        port = int(channels["meter-data"]["listen"].rsplit(":", 1)[1])
        again = transfer(__import__("socket").create_connection(("127.0.0.1", port)), b"meter-data again\n")
        resumed = wait_until(lambda: env.clsgwd.lines(r"channel closed .*name=meter-data .*resumed=yes"), 10,
                             "the resumed channel")
        print(f"   meter-data   again: the SMGW's session ticket resumes the TLS session, no signature needed "
              f"{'OK' if again == b'meter-data again' + bytes([10]) and resumed else 'FAILED'}")
        ok &= again == b"meter-data again\n"
        request = b"EMT reads register 40001\n"
        answer = transfer(__import__("socket").create_connection(("127.0.0.1", emt_in)), request)
        print(f"   modbus-in    inbound: EMT -> SMGW -> TLS -> clsgw -> device service, answer {answer!r} "
              f"{'OK' if answer == request else 'MISMATCH'}")
        ok &= answer == request
        wait_until(lambda: len(env.clsgwd.lines("channel closed")) == 7, 10, "seven channel summaries")

        print("== 4. clsgwd: one line per channel")
        for line in env.clsgwd.lines("channel closed"):
            print("   " + line.split(" ", 2)[2])
        print("== 5. clsgw-signer audit log: one line per signature (the resumed channel needed none)")
        audit = env.audit_lines()
        for line in audit:
            print("   " + line)
        ok &= len(audit) == 6

        print(f"== 6. clsgw-hanscan plays the SMGW against the inbound listener 127.0.0.1:{inbound_port}: "
              f"one line per TR-03116-3 item")
        scan = __import__("subprocess").run(
            [os.path.join(harness.BIN, "clsgw-hanscan"), "server", f"127.0.0.1:{inbound_port}",
             "--server-name", "modbus.heat-pump-0001", "--cert", env.path("smgw.crt"), "--key", env.path("smgw.key"),
             "--trust", env.path("device-ca.crt")], capture_output=True, text=True, timeout=300)
        for line in scan.stdout.splitlines():
            print("   " + (line if len(line) <= 160 else line[:157] + "..."))
        if scan.returncode != 0:
            print(f"   clsgw-hanscan exited {scan.returncode}: {scan.stderr.strip()}")
        ok &= scan.returncode == 0
    except Exception as e:  # the demo reports, then cleans up
        print(f"demo failed: {e}")
        ok = False
    finally:
        env.close(keep=args.keep or not ok)
    print("== demo finished: " + ("all channels worked" if ok else f"FAILED (folder kept: {env.dir})"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
